"""Reclaim page: allocated chips teams do not need, ranked by savings, with risk.

Reads the latest ``reclaim`` run, sliced by the sidebar's filter: the ranked table, then a
team's drill-down (its allocations against used p50/p95 and forecast p90 per pool, and its
daily use against its allocation over time).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from workbench.reclaim_views import reclaim_totals
from workbench.ui.cache import (
    cached_run_output,
    cached_team_history,
    latest_run,
    table_version,
    workspace_root,
)
from workbench.ui.format import COLORS, PALETTE, chips, usd, usd_short
from workbench.ui.shell import ALL, current_filter, fleet_accelerator_colors
from workbench.uploads import safe_download_name

__all__ = ["render"]

_KEY = "reclaim_"
_HISTORY_DAYS = {"lookback": 0, "1 year": 365, "2 years": 730}
_USED_DASHES = ("solid", "dot", "dashdot")  # allocated lines are dashed


def _table_config() -> dict[str, Any]:
    number = st.column_config.NumberColumn
    return {
        "allocated_chips": number("allocated", format="%,.0f"),
        "used_p50_chips": number("used p50", format="%,.0f"),
        "used_p95_chips": number("used p95", format="%,.0f"),
        "forecast_p90_chips": number("forecast p90", format="%,.0f"),
        "event_chips": number("event chips", format="%,.0f"),
        "recommended_chips": number("recommended", format="%,.0f"),
        "reclaimable_chips": number("reclaimable", format="%,.0f"),
        "annual_savings_usd": number("savings / year", format="dollar"),
        "risk": number("risk", format="percent"),
        "unused_days": number("unused days", format="%d"),
    }


_SHOWN = [
    "rank",
    "team",
    "pool",
    "allocated_chips",
    "used_p50_chips",
    "used_p95_chips",
    "forecast_p90_chips",
    "event_chips",
    "recommended_chips",
    "reclaimable_chips",
    "annual_savings_usd",
    "risk",
    "idle",
    "unused_days",
    "forecast_source",
]


def _team_figure(rows: pl.DataFrame) -> go.Figure:
    pools = rows["pool"].to_list()
    figure = go.Figure()
    for column, name, color in (
        ("allocated_chips", "allocated", COLORS["allocated"]),
        ("used_p50_chips", "used p50", PALETTE[5]),
        ("used_p95_chips", "used p95", COLORS["used"]),
        ("forecast_p90_chips", "forecast p90", COLORS["forecast"]),
        ("recommended_chips", "recommended", COLORS["capacity"]),
    ):
        figure.add_trace(
            go.Bar(x=pools, y=rows[column].to_list(), name=name, marker={"color": color})
        )
    figure.update_layout(
        barmode="group",
        height=360,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis_title="chips",
        legend={"orientation": "h", "y": 1.1},
    )
    figure.update_yaxes(tickformat=",.0f")
    return figure


def _history_figure(history: pl.DataFrame, colors: dict[str, str]) -> go.Figure:
    """Used (solid) and allocated (dashed) chips per pool, in the pool's accelerator colour.

    Pools of one accelerator in several regions share its colour; their used lines differ
    by dash (solid, dotted, dash-dot, in region order) and the legend names the region.
    """
    figure = go.Figure()
    pools = history.select("pool", "accelerator").unique().sort("pool")
    seen: dict[str, int] = {}
    for pool, accelerator in pools.iter_rows():
        part = history.filter(pl.col("pool") == pool)
        color = colors.get(accelerator, COLORS["used"])
        dash = _USED_DASHES[seen.get(accelerator, 0) % len(_USED_DASHES)]
        seen[accelerator] = seen.get(accelerator, 0) + 1
        figure.add_trace(
            go.Scatter(
                x=part["date"].to_list(),
                y=part["used_chips"].to_list(),
                name=f"{pool} used",
                mode="lines",
                line={"color": color, "dash": dash},
                legendgroup=pool,
            )
        )
        figure.add_trace(
            go.Scatter(
                x=part["date"].to_list(),
                y=part["allocated_chips"].to_list(),
                name=f"{pool} allocated",
                mode="lines",
                line={"color": color, "dash": "dash", "shape": "hv", "width": 1},
                legendgroup=pool,
            )
        )
    figure.update_layout(
        height=400,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis_title="chips (daily peak)",
        hovermode="x unified",
        legend={"orientation": "h", "y": -0.15},
    )
    figure.update_yaxes(tickformat=",.0f", rangemode="tozero")
    return figure


def _drill_down(table: pl.DataFrame, as_of: date, lookback_days: int) -> None:
    root = workspace_root()
    teams = table["team"].unique().sort().to_list()
    if not teams:
        return
    fleet = current_filter()
    ranked = table.sort("rank")["team"].to_list()
    default = fleet.team if fleet.team != ALL and fleet.team in teams else ranked[0]
    key = f"{_KEY}team"
    if st.session_state.get(key) not in teams:
        st.session_state[key] = default
    team = str(st.selectbox("Team", teams, key=key))
    rows = table.filter(pl.col("team") == team).sort("pool")
    totals = reclaim_totals(rows)
    columns = st.columns(3)
    columns[0].metric("Team allocated", chips(totals.allocated_chips))
    columns[1].metric("Team reclaimable", chips(totals.reclaimable_chips))
    columns[2].metric("Team savings / year", usd_short(totals.annual_savings_usd))
    st.plotly_chart(_team_figure(rows), key=f"{_KEY}team_chart")
    span = st.radio("History", list(_HISTORY_DAYS), horizontal=True, key=f"{_KEY}history_span")
    days = _HISTORY_DAYS[str(span)] or lookback_days
    first = as_of - timedelta(days=days - 1)
    history = cached_team_history(
        str(root),
        table_version(root, "usage_daily"),
        table_version(root, "allocations"),
        team,
        first,
        as_of,
    )
    pools = set(rows["pool"].to_list())
    history = history.filter(pl.col("pool").is_in(list(pools)))
    if history.height:
        st.plotly_chart(
            _history_figure(history, fleet_accelerator_colors()), key=f"{_KEY}history_chart"
        )
        st.caption(
            f"Daily peak chips of {team} (summed over workloads) against its allocation, "
            f"{first} to {as_of}; the used p50/p95 above are over the run's "
            f"{lookback_days}-day lookback."
        )
        with st.expander("Daily data"):
            st.dataframe(history, hide_index=True, key=f"{_KEY}history_table")
            st.download_button(
                "Download CSV",
                history.write_csv(),
                file_name=safe_download_name(f"reclaim_{team}_history.csv"),
                mime="text/csv",
                key=f"{_KEY}history_download",
            )


def render() -> None:
    """Draw the reclaim page."""
    root = workspace_root()
    st.title("Reclaim")
    run = latest_run(root, "reclaim", having="reclaim")
    if run is None:
        st.info(
            f"No reclaim recommendations in the workspace `{root}` yet. Run `workbench "
            "reclaim` (after `workbench forecast` for forecast-based risk), or `workbench "
            "demo` for the sample fleet."
        )
        return
    fleet = current_filter()
    config = run.manifest.get("config", {})
    table = fleet.apply(cached_run_output(str(root), run.run_id, "reclaim"))
    as_of = date.fromisoformat(str(config.get("as_of")))
    lookback_days = int(config.get("lookback_days", 90))
    window = config.get("window") or ["?", "?"]
    st.caption(
        f"Reclaim run {run.run_id} as of {as_of}; {fleet.describe()}. Used = daily peak chips "
        f"over the last {lookback_days} days; forecast p90 and risk over {window[0]} to "
        f"{window[1]} (forecast run {config.get('forecast_run') or 'none'})."
    )
    if table.height == 0:
        st.warning(f"No allocations for {fleet.describe()} in this reclaim run.")
        return
    totals = reclaim_totals(table)
    metrics = st.columns(4)
    metrics[0].metric("Reclaimable", chips(totals.reclaimable_chips))
    metrics[1].metric(
        "Savings / year",
        usd_short(totals.annual_savings_usd),
        help=f"{usd(totals.annual_savings_usd, cents=True)}: reclaimable chips x 8,760 h x "
        "the pool's owned cost per chip-hour.",
    )
    metrics[2].metric("Team-pools to trim", f"{totals.with_reclaim:,} of {totals.team_pools:,}")
    metrics[3].metric(
        "Idle allocations",
        f"{totals.idle:,}",
        help=f"Nothing ran for {config.get('idle_days', 14)} days or more.",
    )
    st.subheader("Ranked recommendations")
    only = st.toggle("Only team-pools with chips to reclaim or idle", value=True, key=f"{_KEY}only")
    shown = table.sort("rank")
    if only:
        shown = shown.filter((pl.col("reclaimable_chips") > 0) | pl.col("idle"))
    shown = shown.select(_SHOWN)
    st.dataframe(
        shown.with_columns(pl.col("annual_savings_usd").cast(pl.Float64)),
        column_config=_table_config(),
        hide_index=True,
        key=f"{_KEY}table",
    )
    st.caption(
        f"{shown.height:,} of {table.height:,} team-pools. recommended = max(used p95, "
        f"forecast p90, used p50 + event chips) x {1 + float(config.get('headroom', 0.1)):g}, "
        f"rounded up to {config.get('granularity', 8)} chips; risk = the largest daily "
        "chance over the window that demand exceeds the recommendation."
    )
    st.download_button(
        "Download CSV",
        shown.write_csv(),
        file_name="reclaim.csv",
        mime="text/csv",
        key=f"{_KEY}download",
    )
    for note in run.manifest.get("notes", []):
        st.caption(f"Note: {note}")
    st.subheader("Team drill-down")
    _drill_down(table, as_of, lookback_days)
