"""Fleet Workbench app: page config and routing only; pages live in workbench/ui/."""

from __future__ import annotations

import streamlit as st

from workbench.ui import usage_page

st.set_page_config(page_title="Fleet Workbench", page_icon=":material/memory:", layout="wide")

navigation = st.navigation(
    [
        st.Page(
            usage_page.render,
            title="Usage",
            icon=":material/monitoring:",
            url_path="usage",
            default=True,
        )
    ]
)
navigation.run()
