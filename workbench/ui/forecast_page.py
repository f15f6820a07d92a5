"""Forecast explorer: any series of a forecast run, its bands, events, models and trend.

A fan chart of history and quantile bands with the known events, the backtest scores of
the candidate models and why one was chosen, and an STL decomposition of the history.
"""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
import streamlit as st
from plotly.subplots import make_subplots

from workbench.forecast_explorer import (
    band_columns,
    events_on_series,
    model_choice,
    model_comparison,
    series_catalog,
    series_in_slice,
)
from workbench.store import Workspace
from workbench.ui.cache import (
    cached_decomposition,
    cached_figure,
    cached_run_output,
    cached_table,
    table_version,
    workspace_root,
)
from workbench.ui.format import COLORS, chips, rgba, with_accelerator
from workbench.ui.shell import accelerator_color, current_filter, link_to
from workbench.uploads import safe_download_name

__all__ = ["HISTORY_WINDOWS", "render", "series_label"]

_KEY = "forecast_"

HISTORY_WINDOWS: dict[str, int | None] = {"6 months": 182, "1 year": 365, "all": None}
"""How much history the fan chart shows before the forecast."""


def series_label(row: dict[str, str | None]) -> str:
    """``pool h100-80gb / us-east4``: a series as a planner reads it."""
    level = row["level"]
    if level == "fleet":
        return "fleet (all accelerators)"
    keys = [row[k] for k in ("accelerator", "region", "team") if row.get(k)]
    return f"{level} {' / '.join(str(k) for k in keys)}"


def _fan_chart(
    history: pl.DataFrame,
    forecast: pl.DataFrame,
    events: pl.DataFrame,
    colors: dict[str, str],
) -> go.Figure:
    figure = go.Figure()
    x = forecast["ds"].to_list()
    for (low, high), alpha in zip(band_columns(), (0.18, 0.35), strict=True):
        figure.add_trace(
            go.Scatter(
                x=x + x[::-1],
                y=forecast[high].to_list() + forecast[low].to_list()[::-1],
                fill="toself",
                fillcolor=rgba(colors["forecast"], alpha),
                line={"width": 0},
                name=f"{low}-{high}",
                hoverinfo="skip",
            )
        )
    figure.add_trace(
        go.Scatter(
            x=history["ds"].to_list(),
            y=history["y"].to_list(),
            name="demand (history)",
            mode="lines",
            line={"color": colors["demand"], "width": 1.5},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=forecast["mean"].to_list(),
            name="forecast mean",
            mode="lines",
            line={"color": colors["forecast"], "width": 2},
        )
    )
    # Shapes in one layout update: add_vrect per event re-validates the layout each time.
    # Campaigns are spans; launches and migrations (no end) are a line where they start.
    first_day = history["ds"].min() if history.height else forecast["ds"].min()
    history_end = forecast["ds"].min()
    shapes: list[dict[str, object]] = []
    labels: list[dict[str, object]] = []
    for event in events.iter_rows(named=True):
        if event["end"] is None and event["start"] < first_day:
            continue  # began before the window: its effect is in the level already
        line = event["end"] is None
        shapes.append(
            {
                "type": "line" if line else "rect",
                "xref": "x",
                "yref": "paper",
                "x0": max(event["start"], first_day),
                "x1": max(event["start"], first_day) if line else event["end"],
                "y0": 0,
                "y1": 1,
                "fillcolor": colors["event"],
                "opacity": 0.6 if line else 0.12,
                "line": {"width": 1.5, "color": colors["event"], "dash": "dot"}
                if line
                else {"width": 0},
                "layer": "below",
            }
        )
        # Name the upcoming events only: past ones are many and already in the history.
        if event["end"] is None or event["end"] >= history_end:
            labels.append(
                {
                    "x": max(event["start"], history_end),
                    "y": 1 - 0.06 * (len(labels) % 4),  # stagger so names do not overlap
                    "xref": "x",
                    "yref": "paper",
                    "text": event["name"],
                    "showarrow": False,
                    "xanchor": "left",
                    "yanchor": "top",
                    "font": {"size": 10},
                }
            )
    figure.update_layout(shapes=shapes, annotations=labels[:12])
    figure.update_layout(
        height=440,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis_title="demand (average chips per day)",
        hovermode="x unified",
        legend={"orientation": "h", "y": 1.1},
    )
    figure.update_yaxes(tickformat=",.0f", rangemode="tozero")
    return figure


def _decomposition_chart(parts: pl.DataFrame, color: str) -> go.Figure:
    figure = make_subplots(
        rows=3, cols=1, shared_xaxes=True, subplot_titles=("trend", "weekly seasonality", "rest")
    )
    x = parts["ds"].to_list()
    for row, column in enumerate(("trend", "seasonal", "remainder"), start=1):
        figure.add_trace(
            go.Scatter(
                x=x,
                y=parts[column].to_list(),
                name=column,
                mode="lines",
                line={"color": color},
                showlegend=False,
            ),
            row=row,
            col=1,
        )
    figure.update_layout(height=480, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    figure.update_yaxes(tickformat=",.0f")
    return figure


def _pick_run(root: str) -> str | None:
    runs = [
        r
        for r in Workspace(root).runs("forecast")
        if {"forecast", "history", "selection"} <= set(r.outputs())
    ]
    if not runs:
        return None
    ids = [r.run_id for r in reversed(runs)]
    key = f"{_KEY}run"
    if st.session_state.get(key) not in ids:
        st.session_state[key] = ids[0]
    return str(
        st.selectbox(
            "Forecast run",
            ids,
            key=key,
            help="The newest first. Compare two runs on the Runs page.",
        )
    )


def render() -> None:
    """Draw the forecast explorer."""
    root = str(workspace_root())
    st.title("Forecast explorer")
    controls = st.columns([2, 3, 2])
    with controls[0]:
        run_id = _pick_run(root)
    if run_id is None:
        st.info(
            "No forecast run yet. Run `workbench forecast` (all cores, about a minute on the "
            "sample fleet) or `workbench demo`, then come back."
        )
        return
    forecast = cached_run_output(root, run_id, "forecast")
    fleet = current_filter()
    inside = series_in_slice(series_catalog(forecast), **vars(fleet.as_slice()))
    if inside.is_empty():
        st.warning(f"Forecast run `{run_id}` has no series for {fleet.describe()}.")
        return
    rows = {r["series_id"]: r for r in inside.iter_rows(named=True)}
    key = f"{_KEY}series"
    if st.session_state.get(key) not in rows:
        st.session_state[key] = next(iter(rows))
    series_id = str(
        controls[1].selectbox(
            "Series",
            list(rows),
            key=key,
            format_func=lambda sid: series_label(rows[sid]),
            help=f"Series inside {fleet.describe()}, most aggregated first.",
        )
    )
    window = controls[2].radio(
        "History shown", list(HISTORY_WINDOWS), index=1, horizontal=True, key=f"{_KEY}history"
    )
    own = forecast.filter(pl.col("series_id") == series_id).sort("ds")
    history = (
        cached_run_output(root, run_id, "history")
        .filter(pl.col("series_id") == series_id)
        .sort("ds")
    )
    days = HISTORY_WINDOWS[str(window)]
    shown = history.tail(days) if days else history
    first, last = shown["ds"].min(), own["ds"].max()
    events_version = table_version(workspace_root(), "events")
    events = events_on_series(
        cached_table(root, "events", events_version) if events_version else pl.DataFrame(),
        cached_run_output(root, run_id, "events_applied"),
        {**rows[series_id], "series_id": series_id},
        first,  # type: ignore[arg-type]
        last,  # type: ignore[arg-type]
    )
    recent = history.tail(28)["y"].mean() if history.height else None
    tiles = st.columns(4)
    tiles[0].metric("Demand, last 4 weeks", chips(recent))  # type: ignore[arg-type]
    tiles[1].metric("Forecast mean over the horizon", chips(own["mean"].mean()))  # type: ignore[arg-type]
    tiles[2].metric("Highest daily p90", chips(own["p90"].max()))  # type: ignore[arg-type]
    tiles[3].metric("Horizon", f"{own.height:,} days")
    # A series of one accelerator (its pools and teams too) draws its demand in its colour.
    colors = with_accelerator(COLORS, "demand", accelerator_color(rows[series_id]["accelerator"]))
    figure = cached_figure(
        "forecast_fan",
        (root, run_id, series_id, days, events_version, tuple(colors.items())),
        lambda: _fan_chart(shown, own, events, colors),
    )
    st.plotly_chart(figure, key=f"{_KEY}fan")
    st.caption(
        "Demand is used + queued chip-hours over 24 (average chips). Bands: p05-p95 and "
        "p25-p75, calibrated on backtest errors. Shaded spans are known events."
    )
    if events.height:
        with st.expander(f"Known events on this series ({events.height})"):
            st.dataframe(events, hide_index=True, key=f"{_KEY}events")
    st.subheader("How the model was chosen")
    comparison = model_comparison(
        cached_run_output(root, run_id, "backtest"),
        cached_run_output(root, run_id, "selection"),
        series_id,
    )
    choice = model_choice(
        cached_run_output(root, run_id, "selection"),
        comparison,
        cached_run_output(root, run_id, "fallbacks"),
        cached_run_output(root, run_id, "cold_start"),
        series_id,
    )
    st.markdown(f"**Chosen: `{choice.model}`.** {choice.reason}")
    st.dataframe(
        comparison,
        hide_index=True,
        key=f"{_KEY}models",
        column_config={
            "mase_mean": st.column_config.NumberColumn("MASE, mean", format="%.3f"),
            "mase_best": st.column_config.NumberColumn("best window", format="%.3f"),
            "mase_worst": st.column_config.NumberColumn("worst window", format="%.3f"),
        },
    )
    if choice.fallbacks.height:
        st.dataframe(choice.fallbacks, hide_index=True, key=f"{_KEY}fallbacks")
    st.subheader("Trend and weekly seasonality")
    parts = cached_decomposition(root, run_id, series_id)
    if parts.is_empty():
        st.info("Too little history to decompose (two weeks or more are needed).")
    else:
        figure = cached_figure(
            "forecast_decomposition",
            (root, run_id, series_id, colors["demand"]),
            lambda: _decomposition_chart(parts, colors["demand"]),
        )
        st.plotly_chart(figure, key=f"{_KEY}decomposition")
        st.caption(
            f"Robust STL (weekly period) of the last {parts.height:,} days: campaigns and "
            "outages go to the rest instead of bending the trend."
        )
    st.download_button(
        "Download this series' forecast (CSV)",
        own.write_csv(),
        file_name=safe_download_name(f"forecast_{series_id.replace('=', '-')}.csv"),
        mime="text/csv",
        # One button per series: under one key the browser kept, now and then, the button of
        # the series shown before (its file, then a dead link) after the picker changed.
        key=f"{_KEY}download_{series_id}",
    )
    link_to("plan", "What the plan buys for this demand", icon=":material/shopping_cart:")
