"""Every Streamlit cache of the app, in one place.

Cached readers take the workspace root and the table file's modification time, so a new
ingest (which atomically replaces the file) is picked up on the next rerun.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import polars as pl
import streamlit as st

from workbench.store import Workspace
from workbench.usage import UsageFilter, hour_pattern, usage_history, weekday_pattern

__all__ = [
    "cached_filter_choices",
    "cached_hour_pattern",
    "cached_table",
    "cached_usage_history",
    "cached_weekday_pattern",
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


@st.cache_data(show_spinner=False, max_entries=64)
def cached_weekday_pattern(root: str, usage_version: float, selection: UsageFilter) -> pl.DataFrame:
    """Average chip-hours per weekday of a slice, cached per table version and filter."""
    return weekday_pattern(cached_table(root, "usage_daily", usage_version), selection)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_hour_pattern(root: str, hourly_version: float, selection: UsageFilter) -> pl.DataFrame:
    """Average chip-hours per weekday and hour of a slice (from ``usage_hourly``)."""
    return hour_pattern(cached_table(root, "usage_hourly", hourly_version), selection)
