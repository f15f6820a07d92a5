"""Every Streamlit cache of the app, in one place.

Cached readers take the workspace root and the table file's modification time, so a new
ingest (which atomically replaces the file) is picked up on the next rerun.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Hashable
from datetime import date
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io
import polars as pl
import streamlit as st

from workbench.forecast_explorer import decompose
from workbench.overview import MonthlySpend, Slice, monthly_spend, pool_status, shortfall_risks
from workbench.reclaim_views import team_history
from workbench.scenarios import ScenarioOutcome, read_outcome
from workbench.showback import Showback, ShowbackPolicy, showback
from workbench.store import RunInfo, Workspace
from workbench.tco import TcoAssumptions, tco_table
from workbench.usage import UsageFilter, hour_pattern, usage_history, weekday_pattern

__all__ = [
    "cached_decomposition",
    "cached_figure",
    "cached_filter_choices",
    "cached_fleet_accelerators",
    "cached_hour_pattern",
    "cached_monthly_spend",
    "cached_pool_status",
    "cached_run_output",
    "cached_scenario_outcome",
    "cached_shortfall_risks",
    "cached_showback",
    "cached_table",
    "cached_tco_table",
    "cached_team_history",
    "cached_usage_history",
    "cached_weekday_pattern",
    "latest_run",
    "table_version",
    "workspace_root",
]


def workspace_root() -> Path:
    """The workspace the app shows: ``--workspace`` after ``--``, else the environment."""
    argv = sys.argv[1:]
    if "--workspace" in argv:
        index = argv.index("--workspace")
        if index + 1 < len(argv):
            return Path(argv[index + 1])
    return Path(os.environ.get("WORKBENCH_WORKSPACE", "workspace"))


def table_version(root: Path, table: str) -> float:
    """Modification time of a table's file (0 if absent): part of every cache key."""
    path = Workspace(root).table_path(table)
    return path.stat().st_mtime if path.exists() else 0.0


@st.cache_data(show_spinner=False, max_entries=32)
def cached_table(root: str, table: str, version: float) -> pl.DataFrame:
    """A workspace table, cached per file version."""
    del version
    return Workspace(root).read_table(table)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_usage_history(
    root: str, usage_version: float, allocations_version: float, selection: UsageFilter
) -> pl.DataFrame:
    """Usage history of a slice, cached per table versions and filter."""
    usage = cached_table(root, "usage_daily", usage_version)
    allocations = cached_table(root, "allocations", allocations_version)
    return usage_history(usage, allocations, selection)


@st.cache_data(show_spinner=False, max_entries=8)
def cached_filter_choices(
    root: str, usage_version: float, allocations_version: float
) -> pl.DataFrame:
    """Distinct ``accelerator, region, team`` of the workspace's usage and allocations.

    The sidebar's fleet filter offers these; an empty frame (with the three columns) when
    the workspace has neither table.
    """
    columns = ["accelerator", "region", "team"]
    parts = [
        cached_table(root, table, version).select(columns).unique()
        for table, version in (("usage_daily", usage_version), ("allocations", allocations_version))
        if version
    ]
    if not parts:
        return pl.DataFrame(schema=dict.fromkeys(columns, pl.String))
    return pl.concat(parts).unique().sort(columns)


@st.cache_data(show_spinner=False, max_entries=128)
def _figure_spec(name: str, inputs: tuple[Hashable, ...], _build: Callable[[], go.Figure]) -> str:
    del name, inputs  # the cache key: ``_build`` (not hashed) reads nothing else
    return plotly.io.to_json(_build(), validate=False)


def cached_figure(
    name: str, inputs: tuple[Hashable, ...], build: Callable[[], go.Figure]
) -> go.Figure:
    """The figure ``build`` makes, built once per ``name`` and ``inputs``.

    ``inputs`` must hold everything ``build`` reads (run id, table versions, the slice,
    colours). Plotly checks every point of a figure as it is built: on a cached page that was
    most of the server's time (0.1-0.8 s a chart on the loaded 2-core machine). The cache
    keeps the figure's JSON, and the figure comes back without that check.
    """
    spec: dict[str, Any] = json.loads(_figure_spec(name, inputs, build))
    return go.Figure(spec, _validate=False)


@st.cache_data(show_spinner=False, max_entries=8)
def cached_fleet_accelerators(root: str, catalog_version: float, usage_version: float) -> list[str]:
    """Every accelerator of the workspace: its SKU catalog's and its usage's.

    What chart colours are given by (:func:`workbench.palette.accelerator_colors`): the whole
    fleet's, whoever looks and whatever the slice, as in the quarterly report.
    """
    names: set[str] = set()
    for table, version in (("sku_catalog", catalog_version), ("usage_daily", usage_version)):
        if version:
            column = cached_table(root, table, version).get_column("accelerator")
            names.update(str(name) for name in column.drop_nulls().unique().to_list())
    return sorted(names)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_weekday_pattern(root: str, usage_version: float, selection: UsageFilter) -> pl.DataFrame:
    """Average chip-hours per weekday of a slice, cached per table version and filter."""
    return weekday_pattern(cached_table(root, "usage_daily", usage_version), selection)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_hour_pattern(root: str, hourly_version: float, selection: UsageFilter) -> pl.DataFrame:
    """Average chip-hours per weekday and hour of a slice (from ``usage_hourly``)."""
    return hour_pattern(cached_table(root, "usage_hourly", hourly_version), selection)


def latest_run(root: Path, kind: str, *, having: str | None = None) -> RunInfo | None:
    """The newest committed run of a kind (that has the output ``having``), or None.

    Not cached: listing runs reads one small manifest per run, and a new run must show at
    once.
    """
    runs = [r for r in Workspace(root).runs(kind) if having is None or having in r.outputs()]
    return runs[-1] if runs else None


@st.cache_data(show_spinner=False, max_entries=64)
def cached_run_output(root: str, run_id: str, name: str) -> pl.DataFrame:
    """One output of a run; runs never change once committed, so the id is the version."""
    return Workspace(root).run(run_id).read(name)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_pool_status(
    root: str, usage_version: float, inventory_version: float, window_days: int, where: Slice
) -> pl.DataFrame:
    """Capacity and use per pool (see :func:`workbench.overview.pool_status`)."""
    return pool_status(
        cached_table(root, "usage_daily", usage_version),
        cached_table(root, "inventory", inventory_version),
        window_days=window_days,
        where=where,
    )


@st.cache_data(show_spinner=False, max_entries=32)
def cached_monthly_spend(
    root: str, versions: tuple[float, ...], where: Slice
) -> MonthlySpend | None:
    """Spend this month and last (see :func:`workbench.overview.monthly_spend`).

    ``versions`` are the file versions of usage_daily, inventory, billing, price_book and
    sku_catalog, in that order.
    """
    usage_v, inventory_v, billing_v, prices_v, catalog_v = versions
    return monthly_spend(
        cached_table(root, "usage_daily", usage_v),
        cached_table(root, "inventory", inventory_v),
        cached_table(root, "billing", billing_v),
        cached_table(root, "price_book", prices_v) if prices_v else None,
        cached_table(root, "sku_catalog", catalog_v) if catalog_v else None,
        where=where,
    )


@st.cache_data(show_spinner=False, max_entries=32)
def cached_shortfall_risks(
    root: str,
    forecast_run: str,
    inventory_version: float,
    orders_version: float,
    quarter: str,
    where: Slice,
) -> pl.DataFrame:
    """Next quarter's shortfall risks of a forecast run against today's capacity."""
    return shortfall_risks(
        cached_run_output(root, forecast_run, "planning"),
        cached_run_output(root, forecast_run, "scenarios"),
        cached_table(root, "inventory", inventory_version),
        cached_table(root, "orders", orders_version) if orders_version else None,
        quarter,
        where=where,
    )


@st.cache_data(show_spinner=False, max_entries=16)
def cached_showback(
    root: str,
    versions: tuple[float, ...],
    months: tuple[date, ...],
    idle: str,
    basis: str,
) -> Showback:
    """The showback of ``months`` (see :func:`workbench.showback.showback`), whole fleet.

    ``versions`` are the file versions of usage_daily, inventory, billing, price_book and
    sku_catalog, in that order; pages slice the result by the sidebar's filter.
    """
    usage_v, inventory_v, billing_v, prices_v, catalog_v = versions
    return showback(
        cached_table(root, "usage_daily", usage_v),
        cached_table(root, "inventory", inventory_v),
        cached_table(root, "billing", billing_v),
        cached_table(root, "price_book", prices_v),
        cached_table(root, "sku_catalog", catalog_v),
        months,
        ShowbackPolicy(idle=idle, basis=basis),  # type: ignore[arg-type]
    )


@st.cache_data(show_spinner=False, max_entries=16)
def cached_tco_table(
    root: str, prices_version: float, catalog_version: float, utilization: float
) -> pl.DataFrame:
    """Owned cost per chip-hour by component, cloud prices and break-evens, every pool."""
    return tco_table(
        cached_table(root, "price_book", prices_version),
        cached_table(root, "sku_catalog", catalog_version),
        TcoAssumptions(utilization=utilization),
    )


@st.cache_data(show_spinner=False, max_entries=32)
def cached_decomposition(root: str, run_id: str, series_id: str) -> pl.DataFrame:
    """STL trend and weekly seasonality of one series' history in a forecast run."""
    history = cached_run_output(root, run_id, "history")
    return decompose(history.filter(pl.col("series_id") == series_id).select("ds", "y"))


@st.cache_data(show_spinner=False, max_entries=32)
def cached_team_history(
    root: str, usage_version: float, allocations_version: float, team: str, first: date, last: date
) -> pl.DataFrame:
    """One team's daily used and allocated chips per pool (reclaim's measure of use)."""
    return team_history(
        cached_table(root, "usage_daily", usage_version),
        cached_table(root, "allocations", allocations_version),
        team,
        first,
        last,
    )


@st.cache_data(show_spinner=False, max_entries=16)
def cached_scenario_outcome(root: str, run_id: str) -> ScenarioOutcome:
    """A scenario run's baseline vs scenario tables (a committed run never changes)."""
    return read_outcome(Workspace(root).run(run_id))
