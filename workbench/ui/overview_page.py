"""Fleet overview: capacity, use, unmet demand, spend and next quarter's risks.

Each part is a click away from its detail page; links keep the sidebar's filter.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import streamlit as st
from streamlit.elements.lib.column_types import ColumnConfig

from workbench.errors import WorkbenchError
from workbench.overview import next_quarter
from workbench.ui.cache import (
    cached_monthly_spend,
    cached_pool_status,
    cached_run_output,
    cached_shortfall_risks,
    cached_table,
    latest_run,
    table_version,
    workspace_root,
)
from workbench.ui.format import chip_hours, chips, percent, usd, usd_short
from workbench.ui.shell import current_filter, link_to

__all__ = ["WINDOW_DAYS", "render"]

WINDOW_DAYS = 28
"""Utilization and queued demand are over the last four weeks of usage."""

_KEY = "overview_"


def _capacity(root: str, versions: dict[str, float]) -> pl.DataFrame | None:
    fleet = current_filter()
    status = cached_pool_status(
        root, versions["usage_daily"], versions["inventory"], WINDOW_DAYS, fleet.as_slice()
    )
    if status.is_empty():
        st.warning(f"No pools for {fleet.describe()}.")
        return None
    installed = float(status["installed_chips"].sum())
    healthy = float(status["healthy_chips"].sum())
    used = float(status["chip_hours_used"].sum())
    queued = float(status["chip_hours_queued"].sum())
    # Pools with use but no inventory have no capacity to divide by; leave them out.
    capacity_hours = installed * 24.0 * WINDOW_DAYS
    tiles = st.columns(4)
    tiles[0].metric("Installed", chips(installed))
    tiles[1].metric(
        "Healthy",
        chips(healthy),
        help="Chips of the latest inventory snapshot that are in service.",
    )
    tiles[2].metric(
        f"Utilization, last {WINDOW_DAYS} days",
        percent(used / capacity_hours if capacity_hours else None),
        help="Chip-hours used / installed chip-hours over the last four weeks of usage.",
    )
    tiles[3].metric(
        f"Queued demand, last {WINDOW_DAYS} days",
        chip_hours(queued, short=True),
        help="Chip-hours jobs waited to start: demand the fleet did not serve.",
    )
    return status


def _spend(root: str, versions: dict[str, float]) -> None:
    fleet = current_filter()
    try:
        spend = cached_monthly_spend(
            root,
            tuple(
                versions[t]
                for t in ("usage_daily", "inventory", "billing", "price_book", "sku_catalog")
            ),
            fleet.as_slice(),
        )
    except WorkbenchError as exc:
        st.warning(f"Spend is not available: {exc.one_line()}")
        return
    if spend is None:
        st.info(
            "No prices or bills yet: ingest a price book (`workbench ingest price-book FILE`) "
            "or a FOCUS bill (`workbench ingest billing FILE`) to see spend."
        )
        return
    label = f"Spend {spend.this_month:%B %Y}" + (
        f" (to {spend.through:%d %b})" if spend.partial else ""
    )
    change = spend.this_usd - spend.last_usd
    columns = st.columns([1, 3])
    columns[0].metric(
        label,
        usd_short(spend.this_usd),
        delta=f"{'+' if change >= 0 else '-'}{usd_short(abs(change))} vs {spend.last_month:%B}",
        delta_color="inverse",
        help=(
            "Owned cost (TCO of installed chips) plus the cloud bill, allocated to teams (showback)"
            if spend.source == "showback"
            else "The cloud bill's EffectiveCost (no price book for owned capacity)"
        ),
    )
    columns[1].caption(
        f"{spend.last_month:%B %Y}: {usd(spend.last_usd)}; {spend.this_month:%B %Y}"
        f"{' so far' if spend.partial else ''}: {usd(spend.this_usd)} "
        f"(from {spend.source})."
    )
    with columns[1]:
        link_to("costs", "Cost breakdown by team, pool and month", icon=":material/payments:")


def _number(label: str) -> ColumnConfig:
    """A whole-number column with thousands separators."""
    return st.column_config.NumberColumn(label, format="%,.0f")


def _pool_table(status: pl.DataFrame) -> None:
    st.dataframe(
        status.select(
            "accelerator",
            "region",
            "installed_chips",
            "healthy_chips",
            "utilization",
            "chip_hours_used",
            "chip_hours_queued",
            "queued_share",
            "snapshot",
        ),
        hide_index=True,
        key=f"{_KEY}pools",
        column_config={
            "installed_chips": st.column_config.NumberColumn(
                "installed (chips)", format="localized"
            ),
            "healthy_chips": _number("healthy (chips)"),
            "utilization": st.column_config.NumberColumn("utilization", format="percent"),
            "chip_hours_used": _number("used (chip-h)"),
            "chip_hours_queued": st.column_config.NumberColumn(
                "queued (chip-h)", format="localized"
            ),
            "queued_share": st.column_config.NumberColumn("queued share", format="percent"),
            "snapshot": st.column_config.DateColumn("inventory as of"),
        },
    )


def _risks(root: str, versions: dict[str, float], history_end: date | None) -> None:
    st.subheader("Next quarter's shortfall risks")
    run = latest_run(workspace_root(), "forecast", having="scenarios")
    if run is None:
        st.info("No forecast run yet: run `workbench forecast` (or `workbench demo`).")
        return
    if not versions["inventory"]:
        st.info("No inventory to compare with: run `workbench ingest inventory FILE`.")
        return
    planning = cached_run_output(root, run.run_id, "planning")
    quarters = sorted(set(planning["quarter"].to_list()))
    wanted = next_quarter(history_end) if history_end is not None else quarters[0]
    quarter = wanted if wanted in quarters else quarters[-1]
    risks = cached_shortfall_risks(
        root,
        run.run_id,
        versions["inventory"],
        versions["orders"],
        quarter,
        current_filter().as_slice(),
    )
    at_risk = risks.filter(pl.col("shortfall_probability") >= 0.5)
    st.caption(
        f"{quarter}: peak weekly demand of forecast run `{run.run_id}` against healthy chips "
        "plus open orders due before the quarter. "
        f"{at_risk.height} of {risks.height} pools are more likely than not to run short."
    )
    st.dataframe(
        risks,
        hide_index=True,
        key=f"{_KEY}risks",
        column_config={
            "healthy_chips": _number("healthy (chips)"),
            "arriving_chips": _number("arriving (chips)"),
            "capacity_chips": _number("capacity (chips)"),
            "peak_p50": st.column_config.NumberColumn("peak p50 (chips)", format="%,.0f"),
            "peak_p90": st.column_config.NumberColumn("peak p90 (chips)", format="%,.0f"),
            "peak_p95": st.column_config.NumberColumn("peak p95 (chips)", format="%,.0f"),
            "shortfall_p90": st.column_config.NumberColumn("short at p90 (chips)", format="%,.0f"),
            "shortfall_probability": st.column_config.ProgressColumn(
                "shortfall probability", format="percent", min_value=0.0, max_value=1.0
            ),
        },
    )
    links = st.columns(2)
    with links[0]:
        link_to("forecast", "Explore the forecast", icon=":material/timeline:")
    with links[1]:
        link_to("plan", "What to buy: procurement plan", icon=":material/shopping_cart:")


def render() -> None:
    """Draw the fleet overview."""
    root = workspace_root()
    st.title("Fleet overview")
    tables = ("usage_daily", "inventory", "orders", "billing", "price_book", "sku_catalog")
    versions = {t: table_version(root, t) for t in tables}
    if not versions["usage_daily"] and not versions["inventory"]:
        st.info(
            f"The workspace `{root}` is empty. Load the sample fleet with `workbench demo`, or "
            "ingest a first export: `workbench ingest catalog FILE`, then `workbench ingest "
            "inventory FILE` and `workbench ingest jobs FILE`."
        )
        return
    fleet = current_filter()
    st.caption(f"Showing {fleet.describe()}. Change the slice in the sidebar.")
    status = _capacity(str(root), versions)
    if status is not None:
        with st.expander("Capacity and use per pool", expanded=False):
            _pool_table(status)
        link_to("usage", "Usage history and weekly rhythm", icon=":material/monitoring:")
    st.subheader("Spend")
    _spend(str(root), versions)
    history_end = None
    if versions["usage_daily"]:
        last_day = cached_table(str(root), "usage_daily", versions["usage_daily"])["date"].max()
        history_end = last_day if isinstance(last_day, date) else None
    _risks(str(root), versions, history_end)
