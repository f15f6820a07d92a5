"""Views of reclaim recommendations: totals, and one team's daily use against its allocation.

Pure functions over a ``reclaim`` run's table (:data:`workbench.reclaim.RECLAIM_COLUMNS`)
and the workspace's ``usage_daily`` and ``allocations``. Invariants:

* Totals are sums of the rows given, so a slice's totals add up to the whole run's.
* A team's history uses the reclaim's own measure of use (:func:`workbench.reclaim.daily_used`:
  daily peak chips summed over workloads, zeros on allocated days without use), so its
  p50 and p95 over the run's lookback are the run's ``used_p50_chips`` and
  ``used_p95_chips``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import polars as pl

from workbench.reclaim import daily_used

__all__ = ["ReclaimTotals", "reclaim_totals", "team_history"]

_PAIR = ["team", "accelerator", "region"]


@dataclass(frozen=True)
class ReclaimTotals:
    """Totals of reclaim recommendations (or a slice of them)."""

    allocated_chips: float
    reclaimable_chips: float
    annual_savings_usd: Decimal
    team_pools: int
    with_reclaim: int
    """Team-pools with chips to reclaim."""
    idle: int
    """Allocations nothing ran on for the idle threshold or more days."""


def reclaim_totals(table: pl.DataFrame) -> ReclaimTotals:
    """Totals of the reclaim rows given (see :class:`ReclaimTotals`)."""
    if table.height == 0:
        return ReclaimTotals(0.0, 0.0, Decimal(0), 0, 0, 0)
    sums = table.select(
        pl.col("allocated_chips").sum(),
        pl.col("reclaimable_chips").sum(),
        pl.col("annual_savings_usd").sum(),
        (pl.col("reclaimable_chips") > 0).sum().alias("with_reclaim"),
        pl.col("idle").sum().alias("idle"),
    ).row(0, named=True)
    return ReclaimTotals(
        allocated_chips=float(sums["allocated_chips"]),
        reclaimable_chips=float(sums["reclaimable_chips"]),
        annual_savings_usd=Decimal(sums["annual_savings_usd"]),
        team_pools=table.height,
        with_reclaim=int(sums["with_reclaim"]),
        idle=int(sums["idle"]),
    )


def team_history(
    usage_daily: pl.DataFrame, allocations: pl.DataFrame, team: str, first: date, last: date
) -> pl.DataFrame:
    """One team's daily used and allocated chips per pool from ``first`` to ``last``.

    Returns ``date, accelerator, region, pool, used_chips, allocated_chips`` for every pool
    the team holds an allocation in, one row per day from the later of ``first`` and its
    first allocated day (``pool`` is ``accelerator/region``).
    """
    held = allocations.filter(pl.col("team") == team)
    schema = {
        "date": pl.Date,
        "accelerator": pl.String,
        "region": pl.String,
        "pool": pl.String,
        "used_chips": pl.Float64,
        "allocated_chips": pl.Float64,
    }
    if held.height == 0 or first > last:
        return pl.DataFrame(schema=schema)
    pairs = held.group_by(_PAIR).agg(pl.col("valid_from").min().alias("allocated_since"))
    used = daily_used(usage_daily.filter(pl.col("team") == team), pairs, first, last)
    spans = held.select(
        *_PAIR,
        "chips",
        pl.date_ranges(
            pl.max_horizontal(pl.col("valid_from"), pl.lit(first)),
            pl.min_horizontal(pl.col("valid_to").fill_null(pl.lit(last)), pl.lit(last)),
            "1d",
        ).alias("date"),
    ).explode("date")
    allocated = (
        spans.drop_nulls("date")
        .group_by(*_PAIR, "date")
        .agg(pl.col("chips").sum().cast(pl.Float64).alias("allocated_chips"))
    )
    return (
        used.join(allocated, on=[*_PAIR, "date"], how="left")
        .select(
            "date",
            "accelerator",
            "region",
            pl.concat_str("accelerator", "region", separator="/").alias("pool"),
            pl.col("used_chips").cast(pl.Float64),
            pl.col("allocated_chips").fill_null(0.0),
        )
        .sort("pool", "date")
    )
