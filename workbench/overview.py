"""The fleet at a glance: capacity, use, unmet demand, spend and next quarter's risks.

Pure functions over the workspace's tables and a forecast run's outputs; the app's fleet
overview page is a thin view over them. Every function takes an optional
``accelerator``/``region``/``team`` slice as a polars predicate builder (see
:class:`Slice`); dimensions a table lacks (inventory has no team) are not filtered on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from workbench.showback import month_range, showback

__all__ = [
    "MonthlySpend",
    "Slice",
    "monthly_spend",
    "next_quarter",
    "pool_status",
    "shortfall_risks",
]

_POOL = ["accelerator", "region"]


@dataclass(frozen=True)
class Slice:
    """Which part of the fleet to summarize; ``None`` leaves a dimension unfiltered."""

    accelerator: str | None = None
    region: str | None = None
    team: str | None = None

    def on(
        self, frame: pl.DataFrame, columns: Iterable[str] = ("accelerator", "region", "team")
    ) -> pl.DataFrame:
        """Rows of ``frame`` in the slice, over the given dimensions it has."""
        predicate = pl.lit(True)
        for dimension in columns:
            value = getattr(self, dimension)
            if value is not None and dimension in frame.columns:
                predicate = predicate & (pl.col(dimension) == value)
        return frame.filter(predicate)


def _latest_snapshot(inventory: pl.DataFrame, as_of: date | None) -> pl.DataFrame:
    if as_of is not None:
        inventory = inventory.filter(pl.col("date") <= as_of)
    return inventory.filter(pl.col("date") == pl.col("date").max().over(_POOL))


def pool_status(
    usage: pl.DataFrame,
    inventory: pl.DataFrame,
    *,
    window_days: int = 28,
    where: Slice | None = None,
) -> pl.DataFrame:
    """Capacity and use per pool over the last ``window_days`` days of usage.

    One row per pool (``accelerator, region``) with the latest inventory snapshot on or
    before the last usage day (``installed_chips``, ``healthy_chips``, ``snapshot``), and
    over the window: ``chip_hours_used``, ``chip_hours_queued``, ``utilization`` (used /
    installed chip-hours of the window) and ``queued_share`` (queued / (used + queued)).
    A team in the slice narrows usage (and the pools) to that team's; capacity stays the
    pool's, so utilization is the team's share of the pool. Pools
    with usage and no inventory have null capacity and utilization.
    """
    where = where or Slice()
    last = usage["date"].max() if usage.height else None
    first = last - timedelta(days=window_days - 1) if isinstance(last, date) else None
    window = (
        where.on(usage).filter(pl.col("date").is_between(first, last))
        if first is not None
        else where.on(usage)
    )
    used = window.group_by(_POOL).agg(
        pl.col("chip_hours_used").sum(), pl.col("chip_hours_queued").sum()
    )
    snapshot = (
        where.on(_latest_snapshot(inventory, last if isinstance(last, date) else None), _POOL)
        .select(
            *_POOL,
            pl.col("date").alias("snapshot"),
            pl.col("installed_chips").cast(pl.Float64),
            pl.col("healthy_chips").cast(pl.Float64),
        )
        .unique(_POOL, keep="last")
    )
    hours = 24.0 * window_days
    return (
        # With a team, only the pools it used; else every pool with chips or use.
        snapshot.join(used, on=_POOL, how="right" if where.team else "full", coalesce=True)
        .with_columns(pl.col("chip_hours_used", "chip_hours_queued").fill_null(0.0))
        .with_columns(
            (pl.col("chip_hours_used") / (pl.col("installed_chips") * hours)).alias("utilization"),
            pl.when(pl.col("chip_hours_used") + pl.col("chip_hours_queued") > 0)
            .then(
                pl.col("chip_hours_queued")
                / (pl.col("chip_hours_used") + pl.col("chip_hours_queued"))
            )
            .otherwise(0.0)
            .alias("queued_share"),
        )
        .with_columns(
            pl.when(pl.col("installed_chips") > 0).then(pl.col("utilization")).alias("utilization")
        )
        .sort(_POOL)
    )


@dataclass(frozen=True)
class MonthlySpend:
    """Spend of the latest month with data and the one before, in USD.

    ``source`` says where it came from: ``showback`` (owned TCO + cloud bill) or
    ``billing`` (the cloud bill's EffectiveCost only). ``partial`` is true when the latest
    month is not complete (month to date, through ``through``).
    """

    this_month: date
    last_month: date
    this_usd: float
    last_usd: float
    through: date
    partial: bool
    source: str


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _previous_month(month: date) -> date:
    return (month - timedelta(days=1)).replace(day=1)


def monthly_spend(
    usage: pl.DataFrame,
    inventory: pl.DataFrame,
    billing: pl.DataFrame,
    price_book: pl.DataFrame | None,
    sku_catalog: pl.DataFrame | None,
    *,
    where: Slice | None = None,
) -> MonthlySpend | None:
    """What the slice cost in the latest month of data and the month before.

    With a price book and SKU catalog, the showback total (owned + cloud, every team's
    line and idle; see :mod:`workbench.showback`) of the cells in the slice; without, the
    billing's EffectiveCost of the slice. ``None`` when there is nothing to price.
    """
    where = where or Slice()
    if price_book is not None and sku_catalog is not None and price_book.height and usage.height:
        through: date = usage["date"].max()  # type: ignore[assignment]
        this_month = _month_start(through)
        months = month_range(_previous_month(this_month), this_month)
        result = showback(usage, inventory, billing, price_book, sku_catalog, months)
        cells = where.on(result.cells)
        totals = dict(cells.group_by("month").agg(pl.col("total_cents").sum()).iter_rows())
        source = "showback"
    elif billing.height:
        bill = billing.with_columns(
            pl.col("ChargePeriodStart").dt.date().alias("day"),
            pl.col("RegionId").alias("region"),
        )
        bill = where.on(bill)
        if bill.is_empty():
            return None
        through = bill["day"].max()  # type: ignore[assignment]
        this_month = _month_start(through)
        totals = dict(
            bill.group_by(pl.col("day").dt.truncate("1mo").alias("month"))
            .agg((pl.col("EffectiveCost").sum() * 100).round(0).cast(pl.Int64))
            .iter_rows()
        )
        source = "billing"
    else:
        return None
    last_month = _previous_month(this_month)
    next_month = (this_month + timedelta(days=32)).replace(day=1)
    return MonthlySpend(
        this_month=this_month,
        last_month=last_month,
        this_usd=totals.get(this_month, 0) / 100,
        last_usd=totals.get(last_month, 0) / 100,
        through=through,
        partial=through < next_month - timedelta(days=1),
        source=source,
    )


def next_quarter(today: date) -> str:
    """The calendar quarter after the one ``today`` is in: ``2027Q1`` for 2026-10-31."""
    quarter = (today.month - 1) // 3 + 1
    year, quarter = (today.year + 1, 1) if quarter == 4 else (today.year, quarter + 1)
    return f"{year}Q{quarter}"


def shortfall_risks(
    planning: pl.DataFrame,
    scenarios: pl.DataFrame,
    inventory: pl.DataFrame,
    orders: pl.DataFrame | None,
    quarter: str,
    *,
    where: Slice | None = None,
) -> pl.DataFrame:
    """Pools whose peak weekly demand in ``quarter`` may exceed their capacity.

    Capacity is the latest snapshot's healthy chips plus open orders expected before the
    quarter starts. From a forecast run's ``planning`` (pool rows: ``peak_p50``,
    ``peak_p90``, ``peak_p95``) and ``scenarios`` (peak per scenario): ``shortfall_p90``
    (chips the p90 peak is above capacity, at least 0) and ``shortfall_probability`` (share
    of scenarios whose peak exceeds capacity). Sorted by probability, then p90 shortfall.
    """
    where = where or Slice()
    year, q = int(quarter[:4]), int(quarter[-1])
    starts = date(year, 3 * (q - 1) + 1, 1)
    healthy = (
        _latest_snapshot(inventory, None)
        .group_by(_POOL)
        .agg(pl.col("healthy_chips").cast(pl.Float64).sum().alias("healthy_chips"))
    )
    arriving = (
        orders.filter((pl.col("status") == "open") & (pl.col("expected_on") < starts))
        .group_by(_POOL)
        .agg(pl.col("quantity").cast(pl.Float64).sum().alias("arriving_chips"))
        if orders is not None and orders.height
        else pl.DataFrame(schema={"accelerator": pl.String, "region": pl.String}).with_columns(
            pl.lit(0.0).alias("arriving_chips")
        )
    )
    peaks = where.on(
        planning.filter((pl.col("level") == "pool") & (pl.col("quarter") == quarter)), _POOL
    ).select(*_POOL, "peak_p50", "peak_p90", "peak_p95")
    capacity = (
        peaks.join(healthy, on=_POOL, how="left")
        .join(arriving, on=_POOL, how="left")
        .with_columns(
            (
                pl.col("healthy_chips").fill_null(0.0) + pl.col("arriving_chips").fill_null(0.0)
            ).alias("capacity_chips")
        )
    )
    exceed = (
        scenarios.filter(pl.col("quarter") == quarter)
        .join(capacity.select(*_POOL, "capacity_chips"), on=_POOL, how="inner")
        .group_by(_POOL)
        .agg(
            (pl.col("peak_chips") > pl.col("capacity_chips")).mean().alias("shortfall_probability")
        )
    )
    return (
        capacity.join(exceed, on=_POOL, how="left")
        .with_columns(
            pl.lit(quarter).alias("quarter"),
            (pl.col("peak_p90") - pl.col("capacity_chips"))
            .clip(lower_bound=0.0)
            .alias("shortfall_p90"),
            pl.col("shortfall_probability").fill_null(
                (pl.col("peak_p50") > pl.col("capacity_chips")).cast(pl.Float64)
            ),
            pl.col("healthy_chips").fill_null(0.0),
            pl.col("arriving_chips").fill_null(0.0),
        )
        .select(
            *_POOL,
            "quarter",
            "healthy_chips",
            "arriving_chips",
            "capacity_chips",
            "peak_p50",
            "peak_p90",
            "peak_p95",
            "shortfall_p90",
            "shortfall_probability",
        )
        .sort(["shortfall_probability", "shortfall_p90"], descending=True)
    )
