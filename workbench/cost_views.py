"""Finance's views of a showback: totals, a monthly trend by kind of cost, treemap nodes.

Pure functions over a :class:`workbench.showback.Showback` (the same cells ``workbench
costs`` breaks down), used by the app's Costs page. Invariants:

* Every view sums the showback's cells, in whole cents, so each agrees with
  :func:`workbench.showback.breakdown` and with the ``costs`` run of the same months.
* A slice (:func:`slice_showback`) keeps the cells of the chosen teams and pools; the idle
  line (team ``(idle)``) belongs to no team, so a team slice leaves it out.
* The monthly trend splits each month's total into charged to teams, idle and commitment
  waste, and the three add up to the total exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

import polars as pl

from workbench.money import CENTS_PER_USD
from workbench.showback import IDLE, Showback, month_range

__all__ = [
    "CostTotals",
    "cost_totals",
    "monthly_trend",
    "slice_showback",
    "treemap_nodes",
    "usage_months",
]

_MONEY = ("owned", "cloud", "commitment_waste", "idle_share", "total")


@dataclass(frozen=True)
class CostTotals:
    """What a slice of the fleet cost over the selected months, in USD (to the cent).

    ``idle_usd`` is capacity nobody used or reserved: the ``(idle)`` line plus any idle
    shared into teams' bills. ``unit_cost_usd_per_used_chip_hour`` is the total over used
    chip-hours (``None`` without use).
    """

    total_usd: Decimal
    owned_usd: Decimal
    cloud_usd: Decimal
    commitment_waste_usd: Decimal
    idle_usd: Decimal
    chip_hours_used: float
    unit_cost_usd_per_used_chip_hour: float | None


def usage_months(usage_daily: pl.DataFrame) -> list[date]:
    """First days of every month from the first to the last day of usage (empty if none)."""
    dates = usage_daily["date"].drop_nulls()
    if dates.len() == 0:
        return []
    first, last = dates.min(), dates.max()
    assert isinstance(first, date) and isinstance(last, date)
    return month_range(first, last)


def slice_showback(result: Showback, predicate: pl.Expr) -> Showback:
    """The showback restricted to the cells ``predicate`` keeps (over the cell columns)."""
    return replace(result, cells=result.cells.filter(predicate))


def _cents(column: str) -> pl.Expr:
    return pl.col(f"{column}_cents").sum().cast(pl.Int64)


def _usd(cents: int) -> Decimal:
    return Decimal(int(cents)) / CENTS_PER_USD


def cost_totals(result: Showback) -> CostTotals:
    """Totals of every cell of ``result`` (see :class:`CostTotals`)."""
    cells = result.cells
    sums = cells.select(
        *[_cents(name).alias(name) for name in _MONEY],
        pl.col("total_cents").filter(pl.col("team") == IDLE).sum().cast(pl.Int64).alias("idle"),
        pl.col("chip_hours_used").sum().alias("used"),
    ).row(0, named=True)
    total = int(sums["total"] or 0)
    used = float(sums["used"] or 0.0)
    return CostTotals(
        total_usd=_usd(total),
        owned_usd=_usd(sums["owned"] or 0),
        cloud_usd=_usd(sums["cloud"] or 0),
        commitment_waste_usd=_usd(sums["commitment_waste"] or 0),
        idle_usd=_usd((sums["idle"] or 0) + (sums["idle_share"] or 0)),
        chip_hours_used=used,
        unit_cost_usd_per_used_chip_hour=total / CENTS_PER_USD / used if used > 0 else None,
    )


def monthly_trend(result: Showback) -> pl.DataFrame:
    """Per month: ``teams_usd``, ``idle_usd``, ``commitment_waste_usd`` and ``total_usd``.

    Idle is the ``(idle)`` line plus idle shared into teams; commitment waste is charged to
    the teams tagged on unused commitments; teams is the rest, so the three add up to the
    total. Every selected month has a row (zeros where the slice cost nothing).
    """
    is_idle = pl.col("team") == IDLE
    grouped = result.cells.group_by("month").agg(
        pl.col("total_cents").sum().alias("total"),
        (
            pl.col("total_cents").filter(is_idle).sum()
            + pl.col("idle_share_cents").filter(~is_idle).sum()
        ).alias("idle"),
        pl.col("commitment_waste_cents").filter(~is_idle).sum().alias("waste"),
    )
    months = pl.DataFrame({"month": list(result.months)}, schema={"month": pl.Date})
    frame = months.join(grouped, on="month", how="left").with_columns(
        pl.col("total", "idle", "waste").fill_null(0).cast(pl.Int64)
    )
    return frame.select(
        "month",
        ((pl.col("total") - pl.col("idle") - pl.col("waste")) / CENTS_PER_USD).alias("teams_usd"),
        (pl.col("idle") / CENTS_PER_USD).alias("idle_usd"),
        (pl.col("waste") / CENTS_PER_USD).alias("commitment_waste_usd"),
        (pl.col("total") / CENTS_PER_USD).alias("total_usd"),
    ).sort("month")


def treemap_nodes(table: pl.DataFrame, path: Sequence[str], value: str) -> pl.DataFrame:
    """Nodes of a treemap over ``path`` (outer level first): ``id, parent, label, value``.

    ``table`` has the ``path`` columns and a non-negative ``value`` column (a breakdown);
    every node's value is the sum of its leaves, so the treemap's areas add up ("total"
    branch values). Ids are the path joined by ``/``; the top level's parent is ``""``.
    """
    if not path:
        raise ValueError("a treemap needs at least one level")
    leaves = table.select(
        *[pl.col(c).cast(pl.String) for c in path], pl.col(value).cast(pl.Float64)
    )
    levels = []
    for depth in range(1, len(path) + 1):
        keys = list(path[:depth])
        grouped = leaves.group_by(keys).agg(pl.col(value).sum())
        levels.append(
            grouped.select(
                pl.concat_str(keys, separator="/").alias("id"),
                (pl.concat_str(keys[:-1], separator="/") if depth > 1 else pl.lit("")).alias(
                    "parent"
                ),
                pl.col(keys[-1]).alias("label"),
                pl.col(value).alias("value"),
            )
        )
    return pl.concat(levels).filter(pl.col("value") > 0).sort("id")
