"""Scenarios: add or edit future events and growth, rerun forecast and plan, compare.

A scenario is built in the page from changes (an event, or a growth multiplier), saved by
name in the workspace, and run: the pools it touches are forecast and planned with and
without it (``workbench.scenarios.run_scenario``), and the two are shown side by side. A
scenario already run on the same data is read back from its run instead of recomputed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from workbench.errors import WorkbenchError
from workbench.overview import next_quarter
from workbench.planning_inputs import quarter_start
from workbench.scenarios import (
    EVENT_KINDS,
    GrowthMultiplier,
    Scenario,
    ScenarioEvent,
    ScenarioOutcome,
    find_scenario_run,
    list_scenarios,
    load_scenario,
    run_scenario,
    save_scenario,
)
from workbench.store import Workspace
from workbench.ui.cache import (
    cached_filter_choices,
    cached_scenario_outcome,
    cached_table,
    table_version,
    workspace_root,
)
from workbench.ui.format import COLORS, usd
from workbench.ui.shell import ALL, current_filter, link_to
from workbench.uploads import safe_download_name

__all__ = ["NEW", "render"]

_KEY = "scenarios_"
NEW = "(new scenario)"
_WHOLE_POOL = "(whole pool)"


def _draft() -> Scenario:
    return st.session_state.get(f"{_KEY}draft") or Scenario(name="")


def _set_draft(scenario: Scenario) -> None:
    st.session_state[f"{_KEY}draft"] = scenario


def _on_pick() -> None:
    """Load the picked scenario into the editor (or start an empty one)."""
    picked = st.session_state[f"{_KEY}pick"]
    if picked == NEW:
        _set_draft(Scenario(name=""))
        st.session_state[f"{_KEY}name"] = ""
        return
    scenario = load_scenario(Workspace(workspace_root()), picked)
    _set_draft(scenario)
    st.session_state[f"{_KEY}name"] = scenario.name


def _pool_of(label: str) -> tuple[str, str]:
    accelerator, _, region = label.partition(" / ")
    return accelerator, region


def _on_add() -> None:
    """Add the change in the editor to the draft."""
    state = st.session_state
    draft = _draft()
    try:
        if state[f"{_KEY}change_type"] == "Event":
            accelerator, region = _pool_of(state[f"{_KEY}event_pool"])
            team = state[f"{_KEY}event_team"]
            kind = state[f"{_KEY}event_kind"]
            event = ScenarioEvent(
                name=state[f"{_KEY}event_name"] or f"{kind} on {accelerator} {region}",
                kind=kind,
                accelerator=accelerator,
                region=region,
                team=None if team == _WHOLE_POOL else team,
                start=state[f"{_KEY}event_start"],
                end=None if kind == "launch" else state[f"{_KEY}event_end"],
                chips=float(state[f"{_KEY}event_chips"]),
                probability=float(state[f"{_KEY}event_probability"]),
            )
            _set_draft(replace(draft, events=(*draft.events, event)))
        else:
            region = state[f"{_KEY}growth_region"]
            growth = GrowthMultiplier(
                accelerator=state[f"{_KEY}growth_accelerator"],
                region=None if region == ALL else region,
                factor=float(state[f"{_KEY}growth_factor"]),
                start=state[f"{_KEY}growth_start"],
            )
            _set_draft(replace(draft, growth=(*draft.growth, growth)))
        state[f"{_KEY}error"] = ""
    except WorkbenchError as exc:
        state[f"{_KEY}error"] = exc.one_line()


def _changes(draft: Scenario) -> pl.DataFrame:
    rows: list[dict[str, Any]] = [
        {
            "change": f"event {i + 1}",
            "what": f"{e.kind}: {e.name}",
            "pool": f"{e.accelerator} / {e.region}",
            "team": e.team or _WHOLE_POOL,
            "from": e.start,
            "to": e.end,
            "amount": f"{e.chips:+,.0f} chips at p={e.probability:.0%}",
        }
        for i, e in enumerate(draft.events)
    ] + [
        {
            "change": f"growth {i + 1}",
            "what": "growth multiplier",
            "pool": f"{g.accelerator} / {g.region or 'all regions'}",
            "team": "all",
            "from": g.start,
            "to": None,
            "amount": f"x{g.factor:.2f} demand",
        }
        for i, g in enumerate(draft.growth)
    ]
    return pl.DataFrame(
        rows,
        schema={
            "change": pl.String,
            "what": pl.String,
            "pool": pl.String,
            "team": pl.String,
            "from": pl.Date,
            "to": pl.Date,
            "amount": pl.String,
        },
    )


def _without(draft: Scenario, change: str) -> Scenario:
    kind, _, number = change.partition(" ")
    index = int(number) - 1
    if kind == "event":
        return replace(draft, events=draft.events[:index] + draft.events[index + 1 :])
    return replace(draft, growth=draft.growth[:index] + draft.growth[index + 1 :])


def _on_remove() -> None:
    change = st.session_state.get(f"{_KEY}which")
    if change:
        _set_draft(_without(_draft(), change))


def _on_edit() -> None:
    """Move a change back into the editor: change it there, then add it again."""
    change = st.session_state.get(f"{_KEY}which")
    if not change:
        return
    draft = _draft()
    kind, _, number = change.partition(" ")
    index = int(number) - 1
    state = st.session_state
    if kind == "event":
        event = draft.events[index]
        state[f"{_KEY}change_type"] = "Event"
        state[f"{_KEY}event_kind"] = event.kind
        state[f"{_KEY}event_pool"] = f"{event.accelerator} / {event.region}"
        state[f"{_KEY}event_team"] = event.team or _WHOLE_POOL
        state[f"{_KEY}event_name"] = event.name
        state[f"{_KEY}event_start"] = event.start
        if event.end is not None:
            state[f"{_KEY}event_end"] = event.end
        state[f"{_KEY}event_chips"] = float(event.chips)
        state[f"{_KEY}event_probability"] = float(event.probability)
    else:
        growth = draft.growth[index]
        state[f"{_KEY}change_type"] = "Growth multiplier"
        state[f"{_KEY}growth_accelerator"] = growth.accelerator
        state[f"{_KEY}growth_region"] = growth.region or ALL
        state[f"{_KEY}growth_factor"] = float(growth.factor)
        if growth.start is not None:
            state[f"{_KEY}growth_start"] = growth.start
    _set_draft(_without(draft, change))


def _editor(choices: pl.DataFrame, first_day: date) -> None:
    """Widgets for one change and the button that adds it."""
    fleet = current_filter()
    pools = fleet.apply(choices.select("accelerator", "region").unique()).sort(
        "accelerator", "region"
    )
    labels = [f"{a} / {r}" for a, r in pools.iter_rows()]
    if not labels:
        st.warning(f"No pools in {fleet.describe()}: widen the sidebar's filter.")
        return
    # Defaults live in session state (not in value=), so "Edit" can refill the widgets.
    for name, default in (
        ("event_start", first_day),
        ("event_end", first_day + timedelta(days=60)),
        ("event_chips", 256.0),
        ("event_probability", 1.0),
        ("growth_factor", 1.2),
        ("growth_start", first_day),
    ):
        st.session_state.setdefault(f"{_KEY}{name}", default)
    change_type = st.radio(
        "Change", ["Event", "Growth multiplier"], horizontal=True, key=f"{_KEY}change_type"
    )
    if change_type == "Event":
        columns = st.columns(3)
        kind = columns[0].selectbox("Kind", EVENT_KINDS, key=f"{_KEY}event_kind")
        if st.session_state.get(f"{_KEY}event_pool") not in labels:
            st.session_state[f"{_KEY}event_pool"] = labels[0]
        pool = columns[1].selectbox("Pool", labels, key=f"{_KEY}event_pool")
        accelerator, region = _pool_of(str(pool))
        teams = (
            choices.filter((pl.col("accelerator") == accelerator) & (pl.col("region") == region))
            .get_column("team")
            .unique()
            .sort()
            .to_list()
        )
        options = [_WHOLE_POOL, *teams]
        if st.session_state.get(f"{_KEY}event_team") not in options:
            st.session_state[f"{_KEY}event_team"] = (
                fleet.team if fleet.team in options else _WHOLE_POOL
            )
        columns[2].selectbox("Team", options, key=f"{_KEY}event_team")
        when = st.columns(4)
        when[0].date_input("From", key=f"{_KEY}event_start")
        if kind != "launch":
            when[1].date_input("To", key=f"{_KEY}event_end")
        when[2].number_input(
            "Chips (demand added; negative to remove)",
            step=8.0,
            key=f"{_KEY}event_chips",
        )
        when[3].slider("Probability", 0.0, 1.0, step=0.05, key=f"{_KEY}event_probability")
        st.text_input("Name", key=f"{_KEY}event_name", placeholder="e.g. LLM serving launch")
    else:
        accelerators = sorted(set(pools["accelerator"].to_list()))
        growth = st.columns(4)
        accelerator = growth[0].selectbox(
            "Accelerator", accelerators, key=f"{_KEY}growth_accelerator"
        )
        regions = sorted(pools.filter(pl.col("accelerator") == accelerator)["region"].to_list())
        if st.session_state.get(f"{_KEY}growth_region") not in [ALL, *regions]:
            st.session_state[f"{_KEY}growth_region"] = ALL
        growth[1].selectbox("Region", [ALL, *regions], key=f"{_KEY}growth_region")
        growth[2].number_input(
            "Demand multiplier",
            min_value=0.0,
            max_value=10.0,
            step=0.05,
            key=f"{_KEY}growth_factor",
            help="1.2 = 20% more demand than forecast, 0.8 = 20% less.",
        )
        growth[3].date_input("From", key=f"{_KEY}growth_start")
    st.button("Add change", on_click=_on_add, key=f"{_KEY}add", icon=":material/add:")
    if st.session_state.get(f"{_KEY}error"):
        st.error(st.session_state[f"{_KEY}error"])


def _demand_chart(outcome: ScenarioOutcome) -> go.Figure:
    demand = outcome.demand.with_columns(
        pl.concat_str("accelerator", "region", "quarter", separator=" ").alias("label")
    )
    figure = go.Figure(
        [
            go.Bar(
                x=demand["label"].to_list(),
                y=demand["p90_baseline"].to_list(),
                name="baseline p90",
                marker={"color": COLORS["demand"]},
            ),
            go.Bar(
                x=demand["label"].to_list(),
                y=demand["p90_scenario"].to_list(),
                name="scenario p90",
                marker={"color": COLORS["forecast"]},
            ),
        ]
    )
    figure.update_layout(
        barmode="group",
        height=340,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis_title="peak weekly demand (chips)",
        legend={"orientation": "h", "y": 1.12},
    )
    figure.update_yaxes(tickformat=",.0f")
    return figure


def _plan_side(plan: pl.DataFrame, suffix: str) -> pl.DataFrame:
    return plan.select(
        "accelerator",
        "region",
        "quarter",
        pl.col(f"buy_{suffix}").alias("buy (chips)"),
        pl.col(f"commit_{suffix}").alias("commit (chips)"),
        pl.col(f"cost_{suffix}_usd").alias("cost (USD)"),
    ).sort("accelerator", "region", "quarter")


def _show(outcome: ScenarioOutcome) -> None:
    plan = outcome.plan
    cost = float(plan["cost_change_usd"].sum())
    bought = float(plan["buy_change"].sum())
    committed = float(plan["commit_change"].sum())
    peak = float(outcome.demand["p90_change"].max() or 0.0) if outcome.demand.height else 0.0  # type: ignore[arg-type]
    tiles = st.columns(4)
    tiles[0].metric(
        "Expected cost, scenario - baseline", ("+" if cost >= 0 else "-") + usd(abs(cost))
    )
    tiles[1].metric("Chips bought, change", f"{bought:+,.0f} chips")
    tiles[2].metric("Chips committed, change", f"{committed:+,.0f} chips")
    tiles[3].metric("Largest p90 peak change", f"{peak:+,.0f} chips")
    pools = ", ".join(f"{a} {r}" for a, r in outcome.pools)
    st.caption(
        f"Forecast and plan of {pools} (run `{outcome.run_id}`), fast models, with and without "
        "the scenario on the same data: every difference is the scenario's."
    )
    st.plotly_chart(_demand_chart(outcome), key=f"{_KEY}demand_chart")
    money = {"cost (USD)": st.column_config.NumberColumn(format="dollar")}
    sides = st.columns(2)
    with sides[0]:
        st.markdown("**Baseline plan**")
        st.dataframe(
            _plan_side(plan, "a"), hide_index=True, key=f"{_KEY}baseline", column_config=money
        )
    with sides[1]:
        st.markdown("**Scenario plan**")
        st.dataframe(
            _plan_side(plan, "b"), hide_index=True, key=f"{_KEY}scenario", column_config=money
        )
    st.download_button(
        "Download scenario vs baseline (CSV)",
        plan.write_csv(),
        file_name=safe_download_name(f"scenario_{outcome.scenario.name}_plan.csv"),
        mime="text/csv",
        key=f"{_KEY}download",
    )
    link_to("plan", "The full procurement plan", icon=":material/shopping_cart:")


def render() -> None:
    """Draw the scenarios page."""
    root = workspace_root()
    workspace = Workspace(root)
    st.title("Scenarios")
    versions = {t: table_version(root, t) for t in ("usage_daily", "allocations", "price_book")}
    if not versions["usage_daily"] or not versions["price_book"]:
        st.info(
            f"Scenarios need usage and prices in the workspace `{root}`: run `workbench demo`, "
            "or ingest a SKU catalog, price book, inventory and job records."
        )
        return
    choices = cached_filter_choices(str(root), versions["usage_daily"], versions["allocations"])
    history_end = cached_table(str(root), "usage_daily", versions["usage_daily"])["date"].max()
    first_day = (
        quarter_start(next_quarter(history_end)) if isinstance(history_end, date) else date.today()
    )
    saved = list_scenarios(workspace)
    st.selectbox(
        "Scenario", [NEW, *saved], key=f"{_KEY}pick", on_change=_on_pick, help="Saved by name."
    )
    st.text_input("Name", key=f"{_KEY}name", placeholder="e.g. llm-launch-2027")
    with st.container(border=True):
        _editor(choices, first_day)
    draft = _draft()
    changes = _changes(draft)
    if changes.is_empty():
        st.info("Add an event or a growth multiplier to build the scenario.")
        return
    st.dataframe(
        changes,
        hide_index=True,
        key=f"{_KEY}changes",
        column_config={"from": st.column_config.DateColumn(), "to": st.column_config.DateColumn()},
    )
    columns = st.columns([2, 1, 1])
    columns[0].selectbox("Change", changes["change"].to_list(), key=f"{_KEY}which")
    columns[1].button("Edit", on_click=_on_edit, key=f"{_KEY}edit", icon=":material/edit:")
    columns[2].button("Remove", on_click=_on_remove, key=f"{_KEY}remove", icon=":material/delete:")
    name = st.session_state.get(f"{_KEY}name", "").strip()
    scenario = replace(draft, name=name or "unnamed")
    actions = st.columns(2)
    if actions[0].button("Save scenario", key=f"{_KEY}save", icon=":material/save:"):
        try:
            path = save_scenario(workspace, scenario)
            st.success(f"Saved as `{path.stem}`.")
        except WorkbenchError as exc:
            st.error(exc.one_line())
    run = find_scenario_run(workspace, scenario)
    if actions[1].button(
        "Run scenario", key=f"{_KEY}run", type="primary", icon=":material/play_arrow:"
    ):
        with st.status("Forecasting and planning the touched pools...", expanded=True) as status:
            try:
                outcome = run_scenario(
                    workspace, scenario, on_stage=lambda stage: status.update(label=stage)
                )
            except WorkbenchError as exc:
                status.update(label="The scenario did not run", state="error")
                st.error(exc.one_line())
                return
            status.update(label=f"Done: run {outcome.run_id}", state="complete", expanded=False)
        run = find_scenario_run(workspace, scenario)
    if run is None:
        st.info("Run the scenario to forecast and plan the pools it touches, with and without it.")
        return
    st.subheader("Scenario vs baseline")
    _show(cached_scenario_outcome(str(root), run.run_id))
