"""Costs page (finance): who paid for what, idle and waste, unit cost, TCO and break-evens.

Widgets -> months and policy -> one cached showback (:func:`workbench.showback.showback`,
as ``workbench costs`` computes it) sliced by the sidebar's filter -> totals, a treemap, a
monthly trend and a breakdown table; the TCO tab reads :func:`workbench.tco.tco_table`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from workbench.access import restrict_showback
from workbench.cost_views import (
    cost_totals,
    monthly_trend,
    slice_showback,
    treemap_nodes,
    usage_months,
)
from workbench.errors import WorkbenchError
from workbench.showback import DIMENSIONS, Showback, breakdown, reconcile
from workbench.tco import COMPONENTS
from workbench.ui.access_gate import current_viewer
from workbench.ui.cache import (
    cached_showback,
    cached_table,
    cached_tco_table,
    table_version,
    workspace_root,
)
from workbench.ui.format import COLORS, PALETTE, percent, usd, usd_short
from workbench.ui.shell import current_filter, fleet_accelerator_colors

__all__ = ["render"]

_KEY = "costs_"
_NEEDED = ("usage_daily", "inventory", "price_book", "sku_catalog")
_SOURCES = ("usage_daily", "inventory", "billing", "price_book", "sku_catalog")
_TREEMAPS: dict[str, tuple[str, ...]] = {
    "team > accelerator": ("team", "accelerator"),
    "accelerator > region > team": ("accelerator", "region", "team"),
    "region > accelerator": ("region", "accelerator"),
    "team > workload": ("team", "workload"),
}
_COMPONENT_COLORS = dict(zip(COMPONENTS, PALETTE, strict=False))
_NEUTRAL = "#D9D9D9"  # a team or region above its accelerators in a treemap


def _month_label(month: date) -> str:
    return f"{month:%Y-%m}"


def _for_display(frame: pl.DataFrame) -> pl.DataFrame:
    """Decimal money as floats for the grid (the CSV download keeps the exact decimals)."""
    return frame.with_columns(pl.col(pl.Decimal).cast(pl.Float64))


def _money_columns(frame: pl.DataFrame) -> dict[str, Any]:
    return {
        name: st.column_config.NumberColumn(format="dollar")
        for name in frame.columns
        if name.endswith("_usd")
    }


def _node_colors(ids: list[str], path: tuple[str, ...], fleet: dict[str, str]) -> list[str]:
    """Marker colours of treemap nodes: an accelerator's node and those under it wear its colour.

    That is the accelerator's colour of every page; nodes above the accelerator level are
    grey. Without an accelerator level the top level's nodes take the palette in turn and
    their children their colour.
    """
    if "accelerator" in path:
        depth = path.index("accelerator")
        return [
            fleet.get(parts[depth], _NEUTRAL) if len(parts) > depth else _NEUTRAL
            for parts in (node.split("/") for node in ids)
        ]
    top = sorted({node.split("/", 1)[0] for node in ids})
    colors = {label: PALETTE[index % len(PALETTE)] for index, label in enumerate(top)}
    return [colors[node.split("/", 1)[0]] for node in ids]


def _treemap(nodes: pl.DataFrame, path: tuple[str, ...], fleet: dict[str, str]) -> go.Figure:
    marker_colors = _node_colors(nodes["id"].to_list(), path, fleet)
    figure = go.Figure(
        go.Treemap(
            ids=nodes["id"].to_list(),
            parents=nodes["parent"].to_list(),
            labels=nodes["label"].to_list(),
            values=nodes["value"].to_list(),
            branchvalues="total",
            marker={"colors": marker_colors},
            texttemplate="%{label}<br>$%{value:,.0f}",
            hovertemplate="%{id}<br>$%{value:,.2f}<br>%{percentRoot:.1%} of the total"
            "<extra></extra>",
        )
    )
    figure.update_layout(height=480, margin={"l": 0, "r": 0, "t": 30, "b": 0})
    figure.update_layout(title=" > ".join(path))
    return figure


def _trend_figure(trend: pl.DataFrame) -> go.Figure:
    figure = go.Figure()
    months = trend["month"].to_list()
    for column, name, color in (
        ("teams_usd", "charged to teams", COLORS["used"]),
        ("idle_usd", "idle", COLORS["idle"]),
        ("commitment_waste_usd", "commitment waste", COLORS["waste"]),
    ):
        figure.add_trace(
            go.Bar(
                x=months,
                y=trend[column].to_list(),
                name=name,
                marker={"color": color},
                hovertemplate="%{x|%Y-%m}: $%{y:,.0f}<extra>" + name + "</extra>",
            )
        )
    figure.update_layout(
        barmode="stack",
        height=400,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis_title="USD per month",
        legend={"orientation": "h", "y": 1.08},
    )
    figure.update_yaxes(tickprefix="$", tickformat=",.0f")
    return figure


def _tco_figure(tco: pl.DataFrame) -> go.Figure:
    figure = go.Figure()
    pools = [f"{a} {r}" for a, r in zip(tco["accelerator"], tco["region"], strict=True)]
    for component in COMPONENTS:
        figure.add_trace(
            go.Bar(
                x=pools,
                y=tco[f"{component}_usd_per_chip_hour"].to_list(),
                name=component.replace("_", " "),
                marker={"color": _COMPONENT_COLORS[component]},
            )
        )
    figure.add_trace(
        go.Scatter(
            x=pools,
            y=tco["on_demand_usd_per_hour"].to_list(),
            name="cloud on demand",
            mode="markers",
            marker={"color": COLORS["on_demand"], "symbol": "diamond", "size": 10},
        )
    )
    figure.update_layout(
        barmode="stack",
        height=420,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis_title="USD per installed chip-hour",
        legend={"orientation": "h", "y": 1.1},
    )
    figure.update_yaxes(tickprefix="$", tickformat=",.2f")
    return figure


def _download(frame: pl.DataFrame, name: str, key: str) -> None:
    st.download_button(
        "Download CSV",
        frame.write_csv(),
        file_name=name,
        mime="text/csv",
        key=f"{_KEY}{key}_download",
    )


def _reconciliation_caption(result: Showback) -> None:
    check = reconcile(result)
    if bool(check["balanced"].all()):
        st.caption(
            "Reconciled to the cent for every month: teams + idle = pool cost = owned + "
            "cloud, and the cloud part = the bill's EffectiveCost (`workbench costs` prints "
            "the same lines)."
        )
    else:
        st.error("The breakdown does not reconcile: report this with the workspace; a bug.")


def _tco_tab(root_text: str, prices_version: float, catalog_version: float) -> None:
    fleet = current_filter()
    utilization = st.slider(
        "Utilization (used / installed chip-hours)",
        min_value=0.1,
        max_value=1.0,
        value=0.6,
        step=0.05,
        key=f"{_KEY}utilization",
    )
    try:
        tco = cached_tco_table(root_text, prices_version, catalog_version, float(utilization))
    except WorkbenchError as exc:
        st.error(exc.one_line())
        return
    tco = fleet.apply(tco)
    if tco.height == 0:
        st.info(f"No price book entry for {fleet.describe()}.")
        return
    st.plotly_chart(_tco_figure(tco), key=f"{_KEY}tco_chart")
    labels = {f"{c}_usd_per_chip_hour": c.replace("_", " ") + " $/chip-h" for c in COMPONENTS} | {
        "owned_usd_per_chip_hour": "owned $/chip-h",
        "owned_usd_per_used_chip_hour": "owned $/used chip-h",
        "on_demand_usd_per_hour": "on demand $/h",
        "commit_1y_usd_per_hour": "1y commit $/h",
        "commit_3y_usd_per_hour": "3y commit $/h",
        "break_even_on_demand": "break-even vs on demand",
        "break_even_commit_1y": "break-even vs 1y",
        "break_even_commit_3y": "break-even vs 3y",
    }
    config: dict[str, Any] = {
        name: st.column_config.NumberColumn(
            label, format="%.0f%%" if name.startswith("break_even") else "$%.3f"
        )
        for name, label in labels.items()
    }
    shown = tco.with_columns(pl.col("^break_even_.*$") * 100)
    st.dataframe(
        shown.drop("utilization"),
        column_config=config,
        hide_index=True,
        key=f"{_KEY}tco_table",
    )
    st.caption(
        f"Owned cost per installed chip-hour by component; per used chip-hour at "
        f"{percent(utilization)} utilization. Break-even: the utilization above which owning "
        "costs less per used chip-hour than that cloud price (over 100%: never). "
        + "; ".join(
            f"prices as of {as_of}: {source}"
            for (source, as_of), _ in tco.group_by(["source", "as_of"], maintain_order=True)
        )
    )
    _download(tco, "tco.csv", "tco")


def render() -> None:
    """Draw the costs page."""
    root = workspace_root()
    root_text = str(root)
    st.title("Costs")
    versions = tuple(table_version(root, table) for table in _SOURCES)
    missing = [t for t in _NEEDED if table_version(root, t) == 0.0]
    if missing:
        st.info(
            f"The workspace `{root}` has no {', '.join(missing)} yet, so there is nothing to "
            "cost. Run `workbench demo` to load the sample fleet, or ingest your own: "
            "`workbench ingest catalog FILE`, `workbench ingest price-book FILE`, "
            "`workbench ingest inventory FILE`, `workbench ingest jobs FILE` (and "
            "`workbench ingest billing FILE` for cloud spend)."
        )
        return
    months = usage_months(cached_table(root_text, "usage_daily", versions[0]))
    if not months:
        st.info("No usage in the workspace yet: run `workbench ingest jobs FILE`.")
        return
    fleet = current_filter()
    labels = [_month_label(m) for m in months]
    controls = st.columns([3, 1, 1])
    first, last = controls[0].select_slider(
        "Months",
        options=labels,
        value=(labels[max(0, len(labels) - 3)], labels[-1]),
        key=f"{_KEY}months",
    )
    idle = controls[1].radio(
        "Idle capacity",
        ["separate", "shared"],
        horizontal=True,
        key=f"{_KEY}idle",
        help="separate: on its own (idle) line; shared: spread over the pool's teams by use.",
    )
    basis = controls[2].radio(
        "Teams pay for",
        ["max", "used"],
        format_func=lambda b: "max(allocated, used)" if b == "max" else "used only",
        key=f"{_KEY}basis",
    )
    chosen = tuple(m for m in months if first <= _month_label(m) <= last)
    try:
        result = cached_showback(root_text, versions, chosen, str(idle), str(basis))
    except WorkbenchError as exc:
        st.error(exc.one_line())
        return
    # A team's viewer gets its own cells only, whatever the filter says (workbench.access).
    visible = restrict_showback(result, current_viewer())
    sliced = slice_showback(visible, fleet.expression(visible.cells.columns))
    totals = cost_totals(sliced)
    period = first if first == last else f"{first} to {last}"
    st.caption(f"{fleet.describe().capitalize()}, {period}.")
    metrics = st.columns(5)
    metrics[0].metric(
        "Total cost",
        usd_short(totals.total_usd),
        help=f"{usd(totals.total_usd, cents=True)}: owned {usd(totals.owned_usd)} + cloud "
        f"{usd(totals.cloud_usd)} + commitment waste {usd(totals.commitment_waste_usd)}.",
    )
    metrics[1].metric(
        "Idle cost",
        usd_short(totals.idle_usd),
        help="Capacity nobody used or reserved (the (idle) line, or idle shared into teams).",
    )
    metrics[2].metric(
        "Commitment waste",
        usd_short(totals.commitment_waste_usd),
        help="Unused cloud commitments, charged to the team tagged on the commitment.",
    )
    metrics[3].metric(
        "Unit cost",
        "n/a"
        if totals.unit_cost_usd_per_used_chip_hour is None
        else f"${totals.unit_cost_usd_per_used_chip_hour:,.3f} / chip-h",
        help="Total cost / used chip-hours.",
    )
    metrics[4].metric(
        "Cloud share",
        percent(totals.cloud_usd / totals.total_usd if totals.total_usd else None),
        help="Cloud spend (with commitment waste) as a share of the total.",
    )
    if sliced.cells.height == 0:
        st.warning(f"No costs for {fleet.describe()} in {period}.")
        return
    tabs = st.tabs(["Breakdown", "Monthly trend", "Table", "TCO and break-evens"])
    with tabs[0]:
        choice = st.selectbox("Treemap", list(_TREEMAPS), key=f"{_KEY}treemap")
        path = _TREEMAPS[str(choice)]
        table = breakdown(sliced, list(path))
        nodes = treemap_nodes(table, path, "total_usd")
        st.plotly_chart(
            _treemap(nodes, path, fleet_accelerator_colors()), key=f"{_KEY}treemap_chart"
        )
    with tabs[1]:
        trend = monthly_trend(sliced)
        st.plotly_chart(_trend_figure(trend), key=f"{_KEY}trend_chart")
        st.dataframe(
            trend,
            column_config=_money_columns(trend),
            hide_index=True,
            key=f"{_KEY}trend_table",
        )
        _download(trend, "costs_monthly.csv", "trend")
    with tabs[2]:
        keys = st.multiselect(
            "Break down by",
            list(DIMENSIONS),
            default=["team", "accelerator"],
            key=f"{_KEY}by",
        )
        table = breakdown(sliced, keys)
        if idle != "shared":
            table = table.drop("idle_share_usd")
        st.dataframe(
            _for_display(table),
            column_config=_money_columns(table),
            hide_index=True,
            key=f"{_KEY}table",
        )
        st.caption(
            f"{table.height:,} rows; total {usd(totals.total_usd, cents=True)}. Teams pay for "
            + ("max(allocated, used)" if basis == "max" else "used")
            + " chip-hours; $/used chip-h = total / used."
        )
        _download(table, "costs.csv", "table")
    with tabs[3]:
        _tco_tab(root_text, versions[3], versions[4])
    _reconciliation_caption(result)
