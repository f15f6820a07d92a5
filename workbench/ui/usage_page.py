"""Usage page: history by accelerator, region, team and workload; used vs allocated vs queued."""

from __future__ import annotations

from typing import cast

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from workbench.ui.cache import cached_table, cached_usage_history, table_version, workspace_root
from workbench.usage import ALL, GRAINS, Grain, UsageFilter, usage_totals

__all__ = ["render"]

_KEY = "usage_"


def _options(usage: pl.DataFrame, column: str, narrowed: pl.Expr) -> list[str]:
    values = usage.filter(narrowed).get_column(column).unique().sort().to_list()
    return [ALL, *values]


def _chip_hours(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1e6:
        return f"{value / 1e6:,.2f} M chip-h"
    return f"{value:,.0f} chip-h"


def _figure(history: pl.DataFrame, grain: str) -> go.Figure:
    figure = go.Figure()
    x = history["period"].to_list()
    figure.add_trace(
        go.Scatter(
            x=x,
            y=history["chip_hours_used"].to_list(),
            name="used",
            mode="lines",
            line={"color": "#1f77b4"},
        )
    )
    if history["chip_hours_allocated"].drop_nulls().len():
        figure.add_trace(
            go.Scatter(
                x=x,
                y=history["chip_hours_allocated"].to_list(),
                name="allocated",
                mode="lines",
                line={"color": "#7f7f7f", "dash": "dash"},
            )
        )
    figure.add_trace(
        go.Bar(
            x=x,
            y=history["chip_hours_queued"].to_list(),
            name="queued, unmet (right axis)",
            marker={"color": "#d62728"},
            opacity=0.6,
            yaxis="y2",
        )
    )
    figure.update_layout(
        height=420,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis_title=f"chip-hours per {grain}",
        hovermode="x unified",
        legend={"orientation": "h", "y": 1.08},
        # Queued chip-hours are small next to used ones but matter: give them their own scale.
        yaxis2={
            "title": "queued chip-hours",
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "tickformat": ",.0f",
            "rangemode": "tozero",
        },
        barmode="overlay",
    )
    figure.update_yaxes(tickformat=",.0f", rangemode="tozero")
    return figure


def render() -> None:
    """Draw the usage page."""
    root = workspace_root()
    st.title("Usage")
    usage_version = table_version(root, "usage_daily")
    if usage_version == 0.0:
        st.info(
            f"No usage in the workspace `{root}` yet. Run `workbench demo`, or "
            "`workbench ingest jobs FILE` after ingesting a SKU catalog."
        )
        return
    usage = cached_table(str(root), "usage_daily", usage_version)
    columns = st.columns(5)
    accelerator = columns[0].selectbox(
        "Accelerator", _options(usage, "accelerator", pl.lit(True)), key=f"{_KEY}accelerator"
    )
    narrowed = UsageFilter(accelerator=accelerator).expression()
    region = columns[1].selectbox(
        "Region", _options(usage, "region", narrowed), key=f"{_KEY}region"
    )
    narrowed = UsageFilter(accelerator=accelerator, region=region).expression()
    team = columns[2].selectbox("Team", _options(usage, "team", narrowed), key=f"{_KEY}team")
    narrowed = UsageFilter(accelerator=accelerator, region=region, team=team).expression()
    workload = columns[3].selectbox(
        "Workload", _options(usage, "workload", narrowed), key=f"{_KEY}workload"
    )
    grain = cast(
        Grain, columns[4].radio("Per", list(GRAINS), index=1, horizontal=True, key=f"{_KEY}grain")
    )
    selection = UsageFilter(
        accelerator=accelerator, region=region, team=team, workload=workload, grain=grain
    )
    history = cached_usage_history(
        str(root), usage_version, table_version(root, "allocations"), selection
    )
    if history.height == 0:
        st.warning("No usage for this selection.")
        return
    totals = usage_totals(history)
    metrics = st.columns(4)
    metrics[0].metric("Used", _chip_hours(totals["chip_hours_used"]))
    metrics[1].metric(
        "Queued (unmet demand)",
        _chip_hours(totals["chip_hours_queued"]),
        help="Chip-hours jobs waited between submit and start: demand the fleet did not serve.",
    )
    efficiency = totals["efficiency"]
    metrics[2].metric(
        "Allocated",
        _chip_hours(totals["chip_hours_allocated"]),
        help="Reservations and quotas of the selected teams and pools.",
    )
    metrics[3].metric("Used / allocated", "n/a" if efficiency is None else f"{efficiency:.0%}")
    complete = history.filter(pl.col("complete")) if grain != "day" else history
    partial = history.height - complete.height
    st.plotly_chart(_figure(complete if complete.height else history, grain), key=f"{_KEY}chart")
    periods = history["period"].cast(pl.String)
    first, last = str(periods.min()), str(periods.max())
    note = (
        f" The chart leaves out {partial} partly covered {grain}(s) at the ends." if partial else ""
    )
    st.caption(
        f"{history.height:,} {grain}s from {first} to {last}. Demand is used + queued: where the "
        f"pool was full, usage plateaus and the rest waits in the queue.{note}"
    )
    with st.expander("Data"):
        st.dataframe(history.sort("period", descending=True), key=f"{_KEY}table")
        st.download_button(
            "Download CSV",
            history.write_csv(),
            file_name="usage_history.csv",
            mime="text/csv",
            key=f"{_KEY}download",
        )
