"""Usage page: the sidebar's slice by workload, used vs allocated vs queued, weekly rhythm."""

from __future__ import annotations

from typing import cast

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from workbench.ui.cache import (
    cached_figure,
    cached_hour_pattern,
    cached_table,
    cached_usage_history,
    cached_weekday_pattern,
    table_version,
    workspace_root,
)
from workbench.ui.format import COLORS, chip_hours, percent, with_accelerator
from workbench.ui.shell import accelerator_color, current_filter
from workbench.usage import ALL, GRAINS, Grain, UsageFilter, usage_totals

__all__ = ["render"]

_KEY = "usage_"


def _figure(history: pl.DataFrame, grain: str, colors: dict[str, str]) -> go.Figure:
    figure = go.Figure()
    x = history["period"].to_list()
    figure.add_trace(
        go.Scatter(
            x=x,
            y=history["chip_hours_used"].to_list(),
            name="used",
            mode="lines",
            line={"color": colors["used"]},
        )
    )
    if history["chip_hours_allocated"].drop_nulls().len():
        figure.add_trace(
            go.Scatter(
                x=x,
                y=history["chip_hours_allocated"].to_list(),
                name="allocated",
                mode="lines",
                line={"color": colors["allocated"], "dash": "dash"},
            )
        )
    figure.add_trace(
        go.Bar(
            x=x,
            y=history["chip_hours_queued"].to_list(),
            name="queued, unmet (right axis)",
            marker={"color": colors["queued"]},
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


def _weekday_figure(pattern: pl.DataFrame, colors: dict[str, str]) -> go.Figure:
    figure = go.Figure(
        [
            go.Bar(
                x=pattern["day"].to_list(),
                y=pattern["chip_hours_used"].to_list(),
                name="used",
                marker={"color": colors["used"]},
            ),
            go.Bar(
                x=pattern["day"].to_list(),
                y=pattern["chip_hours_queued"].to_list(),
                name="queued",
                marker={"color": colors["queued"]},
            ),
        ]
    )
    figure.update_layout(
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        barmode="stack",
        yaxis_title="average chip-hours per day",
        legend={"orientation": "h", "y": 1.12},
    )
    figure.update_yaxes(tickformat=",.0f")
    return figure


def _hour_figure(pattern: pl.DataFrame) -> go.Figure:
    wide = pattern.pivot(on="hour", index="day", values="chip_hours_used", sort_columns=True)
    hours = [c for c in wide.columns if c != "day"]
    figure = go.Figure(
        go.Heatmap(
            z=wide.select(hours).to_numpy().tolist(),
            x=[int(h) for h in hours],
            y=wide["day"].to_list(),
            colorscale="Cividis",  # perceptually uniform and colour-blind safe
            colorbar={"title": "chip-h"},
            hovertemplate="%{y} %{x}:00 UTC: %{z:,.0f} chip-h<extra></extra>",
        )
    )
    figure.update_layout(
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title="hour of day (UTC)",
        yaxis={"autorange": "reversed"},
    )
    return figure


def _patterns(
    root: str, selection: UsageFilter, usage_version: float, colors: dict[str, str]
) -> None:
    st.subheader("Weekly rhythm")
    hourly_version = table_version(workspace_root(), "usage_hourly")
    columns = st.columns(2)
    weekday = cached_weekday_pattern(root, usage_version, selection)
    figure = cached_figure(
        "usage_weekday",
        (root, usage_version, selection, tuple(colors.items())),
        lambda: _weekday_figure(weekday, colors),
    )
    columns[0].plotly_chart(figure, key=f"{_KEY}weekday_chart")
    if hourly_version:
        hourly = cached_hour_pattern(root, hourly_version, selection)
        if hourly.height:
            figure = cached_figure(
                "usage_hour", (root, hourly_version, selection), lambda: _hour_figure(hourly)
            )
            columns[1].plotly_chart(figure, key=f"{_KEY}hour_chart")
            return
    columns[1].info(
        "Hour-of-day patterns need hourly usage: ingest the job records with "
        "`workbench ingest jobs FILE --grain hour`. Showing weekdays only."
    )


def render() -> None:
    """Draw the usage page."""
    root = workspace_root()
    fleet = current_filter()
    st.title("Usage")
    usage_version = table_version(root, "usage_daily")
    if usage_version == 0.0:
        st.info(
            f"No usage in the workspace `{root}` yet. Run `workbench demo`, or "
            "`workbench ingest jobs FILE` after ingesting a SKU catalog."
        )
        return
    usage = cached_table(str(root), "usage_daily", usage_version)
    st.caption(f"Showing {fleet.describe()}. Change the slice in the sidebar.")
    columns = st.columns([2, 3])
    workloads = fleet.apply(usage).get_column("workload").unique().sort().to_list()
    workload = columns[0].selectbox("Workload", [ALL, *workloads], key=f"{_KEY}workload")
    grain = cast(
        Grain, columns[1].radio("Per", list(GRAINS), index=1, horizontal=True, key=f"{_KEY}grain")
    )
    selection = UsageFilter(
        accelerator=fleet.accelerator,
        region=fleet.region,
        team=fleet.team,
        workload=workload,
        grain=grain,
    )
    history = cached_usage_history(
        str(root), usage_version, table_version(root, "allocations"), selection
    )
    if history.height == 0:
        st.warning(f"No usage for {fleet.describe()} and workload {workload}.")
        return
    totals = usage_totals(history)
    metrics = st.columns(4)
    metrics[0].metric("Used", chip_hours(totals["chip_hours_used"], short=True))
    metrics[1].metric(
        "Queued (unmet demand)",
        chip_hours(totals["chip_hours_queued"], short=True),
        help="Chip-hours jobs waited between submit and start: demand the fleet did not serve.",
    )
    metrics[2].metric(
        "Allocated",
        chip_hours(totals["chip_hours_allocated"], short=True),
        help="Reservations and quotas of the selected teams and pools.",
    )
    metrics[3].metric("Used / allocated", percent(totals["efficiency"]))
    complete = history.filter(pl.col("complete")) if grain != "day" else history
    partial = history.height - complete.height
    # One accelerator's usage wears its colour, as that accelerator does on every chart.
    colors = with_accelerator(COLORS, "used", accelerator_color(fleet.accelerator))
    shown = complete if complete.height else history
    figure = cached_figure(
        "usage",
        (
            str(root),
            usage_version,
            table_version(root, "allocations"),
            selection,
            tuple(colors.items()),
        ),
        lambda: _figure(shown, grain, colors),
    )
    st.plotly_chart(figure, key=f"{_KEY}chart")
    periods = history["period"].cast(pl.String)
    first, last = str(periods.min()), str(periods.max())
    note = (
        f" The chart leaves out {partial} partly covered {grain}(s) at the ends." if partial else ""
    )
    st.caption(
        f"{history.height:,} {grain}s from {first} to {last}. Demand is used + queued: where the "
        f"pool was full, usage plateaus and the rest waits in the queue.{note}"
    )
    _patterns(str(root), selection, usage_version, colors)
    with st.expander("Data"):
        st.dataframe(history.sort("period", descending=True), key=f"{_KEY}table")
        st.download_button(
            "Download CSV",
            history.write_csv(),
            file_name="usage_history.csv",
            mime="text/csv",
            key=f"{_KEY}download",
        )
