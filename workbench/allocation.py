"""Allocations onto usage: ``chip_hours_allocated`` of ``usage_daily``.

Reservations and quotas are held per team and pool, while ``usage_daily`` is per workload
too. Each team's allocated chip-hours of a pool-day are split across the team's workloads in
proportion to their demand (used + queued) that day, so the workloads of a team add up to
its allocation exactly. An allocation with no usage at all that day still costs money: it
gets a row of workload ``unknown`` with zero use (idle, reclaimable capacity), sourced to the
allocations file.
"""

from __future__ import annotations

import polars as pl

from workbench.schema import USAGE_DAILY
from workbench.usage import allocated_daily

__all__ = ["IDLE_SOURCE_PREFIX", "attach_allocations"]

IDLE_SOURCE_PREFIX = "allocations:"
_TEAM_POOL_DAY = ["date", "accelerator", "region", "team"]


def attach_allocations(usage: pl.DataFrame, allocations: pl.DataFrame) -> pl.DataFrame:
    """Return ``usage`` with ``chip_hours_allocated`` filled from ``allocations``.

    Idempotent: rows it added before (idle allocations) are recomputed, not added twice.
    Team-pool-days without any allocation keep a null ``chip_hours_allocated``.
    """
    base = usage.filter(~pl.col("source").str.starts_with(IDLE_SOURCE_PREFIX)).drop(
        "chip_hours_allocated"
    )
    if base.height == 0 or allocations.height == 0:
        return base.with_columns(
            pl.lit(None, dtype=pl.Float64).alias("chip_hours_allocated")
        ).select(USAGE_DAILY.schema.names())
    first, last = base["date"].min(), base["date"].max()
    daily = allocated_daily(allocations, first, last)
    sources = allocations.group_by("team", "accelerator", "region").agg(
        pl.col("source").sort().last().alias("__alloc_source")
    )
    demand = pl.col("chip_hours_used") + pl.col("chip_hours_queued")
    shared = (
        base.join(daily, on=_TEAM_POOL_DAY, how="left")
        .with_columns(
            demand.sum().over(_TEAM_POOL_DAY).alias("__team_demand"),
            pl.len().over(_TEAM_POOL_DAY).alias("__rows"),
        )
        .with_columns(
            pl.when(pl.col("__team_demand") > 0)
            .then(pl.col("chip_hours_allocated") * demand / pl.col("__team_demand"))
            .otherwise(pl.col("chip_hours_allocated") / pl.col("__rows"))
            .alias("chip_hours_allocated")
        )
        .drop("__team_demand", "__rows")
    )
    idle = (
        daily.join(base.select(_TEAM_POOL_DAY).unique(), on=_TEAM_POOL_DAY, how="anti")
        .join(sources, on=["team", "accelerator", "region"], how="left")
        .select(
            *_TEAM_POOL_DAY,
            pl.lit("unknown").alias("workload"),
            pl.lit(0.0).alias("chip_hours_used"),
            "chip_hours_allocated",
            pl.lit(0.0).alias("chip_hours_queued"),
            pl.lit(0.0).alias("peak_chips"),
            pl.col("__alloc_source").fill_null(IDLE_SOURCE_PREFIX).alias("source"),
        )
    )
    return (
        pl.concat(
            [shared.select(USAGE_DAILY.schema.names()), idle.select(USAGE_DAILY.schema.names())]
        )
        .sort("date", "accelerator", "region", "team", "workload")
        .cast(dict(USAGE_DAILY.schema))  # type: ignore[arg-type]
    )
