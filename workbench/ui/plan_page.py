"""Procurement plan page: what to buy, commit or rent per pool and quarter.

Reads the latest ``plan`` run: the pool table, capacity against demand, budget and power
use, attached resources, lifecycle candidates, and the decision replay if one was run.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from workbench.money import format_usd
from workbench.plan_views import capex_by_quarter, plan_table, plan_totals, power_by_region
from workbench.ui.cache import (
    cached_figure,
    cached_run_output,
    cached_table,
    latest_run,
    table_version,
    workspace_root,
)
from workbench.ui.format import (
    COLORS,
    PALETTE,
    chips,
    percent,
    rgba,
    usd,
    usd_short,
    with_accelerator,
)
from workbench.ui.shell import accelerator_color, current_filter

__all__ = ["render"]

_KEY = "plan_"


def _download(frame: pl.DataFrame, name: str, key: str) -> None:
    st.download_button(
        "Download CSV", frame.write_csv(), file_name=name, mime="text/csv", key=f"{_KEY}{key}"
    )


def _pool_figure(rows: pl.DataFrame, title: str, colors: dict[str, str]) -> go.Figure:
    quarters = rows["quarter"].to_list()
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=quarters,
            y=rows["demand_p95"].to_list(),
            name="demand p95",
            mode="lines",
            line={"color": colors["demand"], "width": 0.5},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=quarters,
            y=rows["demand_p50"].to_list(),
            name="demand p50 to p95",
            mode="lines",
            line={"color": colors["demand"], "width": 2},
            fill="tonexty",
            fillcolor=rgba(colors["demand"], 0.2),
        )
    )
    figure.add_trace(
        go.Scatter(
            x=quarters,
            y=rows["demand_p90"].to_list(),
            name="demand p90",
            mode="lines",
            line={"color": colors["demand"], "dash": "dot"},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=quarters,
            y=rows["capacity"].to_list(),
            name="capacity (healthy owned + commitments)",
            mode="lines+markers",
            line={"color": colors["capacity"], "shape": "hv", "width": 3},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=quarters,
            y=(rows["capacity"] + rows["burst_mean"]).to_list(),
            name="+ mean on-demand burst",
            mode="lines",
            line={"color": colors["on_demand"], "shape": "hv", "dash": "dash"},
        )
    )
    figure.update_layout(
        title=title,
        height=420,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        yaxis_title="chips (peak weekly demand)",
        hovermode="x unified",
        legend={"orientation": "h", "y": -0.15},
    )
    figure.update_yaxes(tickformat=",.0f", rangemode="tozero")
    return figure


def _capex_figure(capex: pl.DataFrame, budget: float | None) -> go.Figure:
    figure = go.Figure(
        go.Bar(
            x=capex["quarter"].to_list(),
            y=capex["capex_usd"].to_list(),
            name="capex of purchases ordered",
            marker={"color": COLORS["owned"]},
        )
    )
    if budget:
        figure.add_hline(
            y=budget, line={"color": COLORS["unmet"], "dash": "dash"}, annotation_text="budget"
        )
    figure.update_layout(
        title="Capex per quarter of order",
        height=340,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    figure.update_yaxes(tickprefix="$", tickformat=",.0f")
    return figure


def _power_figure(power: pl.DataFrame, limits: dict[str, float]) -> go.Figure:
    figure = go.Figure()
    for index, region in enumerate(power["region"].unique().sort().to_list()):
        part = power.filter(pl.col("region") == region)
        color = PALETTE[index % len(PALETTE)]
        figure.add_trace(
            go.Scatter(
                x=part["quarter"].to_list(),
                y=part["power_mw"].to_list(),
                name=region,
                mode="lines+markers",
                line={"color": color},
            )
        )
        if region in limits:
            figure.add_hline(
                y=limits[region],
                line={"color": color, "dash": "dash"},
                annotation_text=f"{region} limit",
            )
    figure.update_layout(
        title="Power in service per region (MW at the facility)",
        height=340,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    figure.update_yaxes(tickformat=",.1f", rangemode="tozero")
    return figure


def _table_config() -> dict[str, Any]:
    number = st.column_config.NumberColumn
    return {
        "demand_p50": number("demand p50", format="%,.0f"),
        "demand_p95": number("demand p95", format="%,.0f"),
        "installed": number(format="%,.0f"),
        "on_order": number("on order", format="%,.0f"),
        "buy_chips": number("buy", format="%,d"),
        "lands_in": st.column_config.TextColumn("lands in"),
        "commit_chips": number("commit (new)", format="%,.0f"),
        "committed_chips": number("committed", format="%,.0f"),
        "burst_mean": number("burst", format="%,.0f"),
        "cost_usd": number("cost", format="dollar"),
        "utilization": number(format="percent"),
        "shortfall_probability": number("shortfall risk", format="percent"),
    }


def _limits_section(run_config: dict[str, Any], rows: pl.DataFrame, root: str, run_id: str) -> None:
    prices = cached_table(root, "price_book", table_version(workspace_root(), "price_book"))
    catalog = cached_table(root, "sku_catalog", table_version(workspace_root(), "sku_catalog"))
    budget = run_config.get("capex_budget_usd")
    power_limits = {str(k): float(v) for k, v in (run_config.get("power_mw") or {}).items()}
    capex = capex_by_quarter(rows, prices)
    power = power_by_region(rows, prices, catalog)
    left, right = st.columns(2)
    inputs = (root, run_id, current_filter(), table_version(workspace_root(), "price_book"))
    capex_figure = cached_figure(
        "plan_capex", inputs, lambda: _capex_figure(capex, float(budget) if budget else None)
    )
    left.plotly_chart(capex_figure, key=f"{_KEY}capex_chart")
    power_figure = cached_figure(
        "plan_power",
        (*inputs, table_version(workspace_root(), "sku_catalog")),
        lambda: _power_figure(power, power_limits),
    )
    right.plotly_chart(power_figure, key=f"{_KEY}power_chart")
    budget_text = f"capex budget {usd(float(budget))} per quarter" if budget else "no capex budget"
    power_text = (
        "power limits " + ", ".join(f"{r} {mw:,.1f} MW" for r, mw in power_limits.items())
        if power_limits
        else "no power limits"
    )
    st.caption(
        f"The plan was solved with {budget_text} and {power_text} "
        "(`workbench plan --capex-budget USD --power-mw REGION=MW,...` sets them). Capex "
        f"of the purchases shown: {usd(capex['capex_usd'].sum())}."
    )


def _replay_section(root: str) -> None:
    replay = latest_run(workspace_root(), "replay", having="comparison")
    if replay is None:
        st.caption(
            "No decision replay yet: `workbench replay --quarters 8` plays the plan against "
            "perfect foresight and the last-four-quarters rule on past quarters."
        )
        return
    comparison = cached_run_output(root, replay.run_id, "comparison")
    shown = comparison.with_columns(
        (pl.col(c) / 100).alias(c.removesuffix("_cents") + "_usd")
        for c in comparison.columns
        if c.endswith("_cents")
    ).drop([c for c in comparison.columns if c.endswith("_cents")])
    config = {
        c: st.column_config.NumberColumn(format="dollar")
        for c in shown.columns
        if c.endswith("_usd")
    } | {
        c: st.column_config.NumberColumn(format="percent")
        for c in shown.columns
        if c in ("unmet_share", "utilization") or c.startswith("vs_")
    }
    st.dataframe(shown, column_config=config, hide_index=True, key=f"{_KEY}replay")
    quarters = replay.manifest.get("config", {}).get("quarters", "?")
    st.caption(f"Replay run {replay.run_id}: {quarters} past quarters.")
    _download(shown, "replay.csv", "replay_download")


def render() -> None:
    """Draw the procurement plan page."""
    root = workspace_root()
    root_text = str(root)
    st.title("Procurement plan")
    run = latest_run(root, "plan", having="plan")
    if run is None:
        st.info(
            f"No procurement plan in the workspace `{root}` yet. Run `workbench plan` (after "
            "`workbench forecast`; or `workbench plan --forecast-horizon 182` makes a fast "
            "forecast first), or `workbench demo` for the sample fleet."
        )
        return
    fleet = current_filter()
    config = run.manifest.get("config", {})
    rows = fleet.apply(cached_run_output(root_text, run.run_id, "plan"))
    st.caption(
        f"Plan run {run.run_id} from forecast run {config.get('forecast_run', '?')}, "
        f"service level {percent(config.get('service_level'))}; {fleet.describe()}. "
        "Chips are peak weekly demand; * marks quarters extrapolated beyond the forecast."
    )
    if rows.height == 0:
        st.warning(f"The plan has no pool for {fleet.describe()}.")
        return
    totals = plan_totals(rows)
    metrics = st.columns(5)
    metrics[0].metric(
        "Expected cost",
        usd_short(totals.cost_usd),
        help=f"{format_usd(round(totals.cost_usd * 100))} over {totals.quarters} quarters: "
        "installed base, purchases, commitments, burst and the unmet penalty.",
    )
    metrics[1].metric("Buy", chips(totals.buy_chips))
    metrics[2].metric("Commit (new)", chips(totals.commit_chips))
    metrics[3].metric(
        "Worst shortfall risk",
        percent(totals.max_shortfall_probability),
        help="Largest share of demand scenarios a pool-quarter falls short in.",
    )
    metrics[4].metric("Rows held by a limit", f"{totals.binding_rows:,}")

    st.subheader("Per pool and quarter")
    decisions_only = st.toggle(
        "Only rows with a decision or a risk", value=False, key=f"{_KEY}decisions"
    )
    table = plan_table(rows)
    if decisions_only:
        table = table.filter(
            (pl.col("buy_chips") > 0)
            | (pl.col("commit_chips") > 0.5)
            | (pl.col("shortfall_probability") > 0)
        )
    st.dataframe(table, column_config=_table_config(), hide_index=True, key=f"{_KEY}table")
    st.caption(f"{table.height:,} of {rows.height:,} pool-quarters.")
    _download(table, "plan.csv", "table_download")

    st.subheader("Capacity against demand")
    pools = rows.select("accelerator", "region").unique().sort("accelerator", "region")
    labels = [f"{a} {r}" for a, r in pools.iter_rows()]
    label = st.selectbox("Pool", labels, key=f"{_KEY}pool")
    accelerator, region = pools.row(labels.index(str(label)))
    pool_rows = rows.filter(
        (pl.col("accelerator") == accelerator) & (pl.col("region") == region)
    ).sort("quarter")
    # The pool's demand wears its accelerator's colour, as on every chart.
    colors = with_accelerator(COLORS, "demand", accelerator_color(str(accelerator)))
    figure = cached_figure(
        "plan_pool",
        (root_text, run.run_id, str(label), tuple(colors.items())),
        lambda: _pool_figure(pool_rows, str(label), colors),
    )
    st.plotly_chart(figure, key=f"{_KEY}pool_chart")
    why = pool_rows.select("quarter", "binding", "rationale")
    st.dataframe(why, hide_index=True, key=f"{_KEY}why")

    st.subheader("Budget and power")
    _limits_section(config, rows, root_text, run.run_id)
    limits = cached_run_output(root_text, run.run_id, "limits")
    if limits.height:
        st.dataframe(limits, hide_index=True, key=f"{_KEY}limits")

    st.subheader("Attached resources")
    attached = fleet.apply(cached_run_output(root_text, run.run_id, "attached"))
    if attached.height:
        st.dataframe(
            attached,
            column_config={
                "new_chips": st.column_config.NumberColumn("new chips", format="%,.0f"),
                "host_cores": st.column_config.NumberColumn("host cores", format="%,.0f"),
                "storage_tb": st.column_config.NumberColumn("storage TB", format="%,.1f"),
                "network_gbps": st.column_config.NumberColumn("network Gbps", format="%,.0f"),
                "power_mw": st.column_config.NumberColumn("MW", format="%.2f"),
            },
            hide_index=True,
            key=f"{_KEY}attached",
        )
        st.caption("Hosts, storage, network and power the new purchases need where they land.")
    else:
        st.caption("No purchases land in the plan's horizon here: nothing to attach.")

    st.subheader("Lifecycle candidates")
    lifecycle = fleet.apply(cached_run_output(root_text, run.run_id, "lifecycle"))
    if lifecycle.height:
        shown = lifecycle.with_columns(
            (pl.col("saving_cents_per_year") / 100).alias("saving_usd_per_year")
        ).drop("saving_cents_per_year")
        st.dataframe(
            shown,
            column_config={
                "saving_usd_per_year": st.column_config.NumberColumn(
                    "saving / year", format="dollar"
                ),
                "failure_rate": st.column_config.NumberColumn(format="percent"),
            },
            hide_index=True,
            key=f"{_KEY}lifecycle",
        )
    else:
        st.caption("No refresh or decommission candidates.")

    st.subheader("Decision replay")
    _replay_section(root_text)
