"""Fleet Workbench app: page config, the shared sidebar filter and routing.

Pages live in ``workbench/ui/``, grouped in sections of the sidebar: add a page by appending
an ``st.Page`` to its section below (``url_path`` is what links and shared URLs use).
"""

from __future__ import annotations

import streamlit as st

from workbench.access import restrict_frame
from workbench.ui import (
    costs_page,
    data_page,
    forecast_page,
    overview_page,
    plan_page,
    reclaim_page,
    runs_page,
    scenarios_page,
    usage_page,
)
from workbench.ui.access_gate import current_viewer
from workbench.ui.cache import cached_filter_choices, table_version, workspace_root
from workbench.ui.shell import draw_sidebar_filter, register_pages

st.set_page_config(page_title="Fleet Workbench", page_icon=":material/memory:", layout="wide")

sections: dict[str, list[st.Page]] = {
    "Fleet": [
        st.Page(
            overview_page.render,
            title="Fleet overview",
            icon=":material/dashboard:",
            url_path="overview",
            default=True,
        ),
        st.Page(usage_page.render, title="Usage", icon=":material/monitoring:", url_path="usage"),
    ],
    "Plan": [
        st.Page(
            forecast_page.render,
            title="Forecast explorer",
            icon=":material/timeline:",
            url_path="forecast",
        ),
        st.Page(
            scenarios_page.render,
            title="Scenarios",
            icon=":material/alt_route:",
            url_path="scenarios",
        ),
        st.Page(
            plan_page.render,
            title="Procurement plan",
            icon=":material/shopping_cart:",
            url_path="plan",
        ),
        st.Page(
            reclaim_page.render,
            title="Reclaim",
            icon=":material/recycling:",
            url_path="reclaim",
        ),
    ],
    "Money": [
        st.Page(costs_page.render, title="Costs", icon=":material/payments:", url_path="costs"),
    ],
    "Data": [
        st.Page(data_page.render, title="Data", icon=":material/database:", url_path="data"),
        st.Page(runs_page.render, title="Runs", icon=":material/history:", url_path="runs"),
    ],
}
# Who is looking (sign-in is optional; see workbench/access.py). A team's viewer gets the
# usage and costs pages, a filter offering only its teams, and the team always set.
viewer = current_viewer()
if not viewer.sees_all:
    sections = {
        "Fleet": [page for page in sections["Fleet"] if page.url_path == "usage"],
        "Money": sections["Money"],
    }
sections = {name: pages for name, pages in sections.items() if pages}

# The filter is drawn before the page runs, so every page sees the same slice of the fleet.
root = workspace_root()
choices = restrict_frame(
    cached_filter_choices(
        str(root), table_version(root, "usage_daily"), table_version(root, "allocations")
    ),
    viewer,
)
if viewer.teams is not None:
    allowed = sorted(viewer.teams)
    if st.session_state.get("shell_team") not in allowed:
        st.session_state["shell_team"] = allowed[0]
draw_sidebar_filter(choices)
register_pages(sections)
navigation = st.navigation(sections)
navigation.run()
