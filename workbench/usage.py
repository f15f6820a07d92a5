"""Usage history for people: filter, aggregate by period, and line up allocations.

Pure functions over ``usage_daily`` and ``allocations``; the app's usage page is a thin view
over :func:`usage_history`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

__all__ = [
    "ALL",
    "GRAINS",
    "WEEKDAYS",
    "Grain",
    "UsageFilter",
    "allocated_daily",
    "hour_pattern",
    "usage_history",
    "usage_totals",
    "weekday_pattern",
]

WEEKDAYS: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

ALL = "All"
Grain = Literal["day", "week", "month"]
GRAINS: dict[str, str] = {"day": "1d", "week": "1w", "month": "1mo"}


@dataclass(frozen=True)
class UsageFilter:
    """Which slice of the fleet to look at; ``ALL`` means no filter on that dimension."""

    accelerator: str = ALL
    region: str = ALL
    team: str = ALL
    workload: str = ALL
    grain: Grain = "day"

    def expression(self, *, with_workload: bool = True) -> pl.Expr:
        """A polars predicate selecting the slice."""
        predicate = pl.lit(True)
        dimensions = ["accelerator", "region", "team"] + (["workload"] if with_workload else [])
        for dimension in dimensions:
            value = getattr(self, dimension)
            if value != ALL:
                predicate = predicate & (pl.col(dimension) == value)
        return predicate


def allocated_daily(allocations: pl.DataFrame, first: object, last: object) -> pl.DataFrame:
    """Expand allocations to one row per team, pool and day with ``chip_hours_allocated``.

    Open-ended allocations (no ``valid_to``) hold until ``last``.
    """
    if allocations.height == 0:
        return pl.DataFrame(
            schema={
                "date": pl.Date,
                "accelerator": pl.String,
                "region": pl.String,
                "team": pl.String,
                "chip_hours_allocated": pl.Float64,
            }
        )
    return (
        allocations.lazy()
        .with_columns(
            pl.max_horizontal(pl.col("valid_from"), pl.lit(first).cast(pl.Date)).alias("__from"),
            pl.min_horizontal(
                pl.col("valid_to").fill_null(pl.lit(last).cast(pl.Date)), pl.lit(last).cast(pl.Date)
            ).alias("__to"),
        )
        .filter(pl.col("__to") >= pl.col("__from"))
        .with_columns(pl.date_ranges("__from", "__to", interval="1d").alias("date"))
        .explode("date")
        .group_by("date", "accelerator", "region", "team")
        .agg((pl.col("chips") * 24.0).sum().alias("chip_hours_allocated"))
        .collect()
    )


def usage_history(
    usage: pl.DataFrame, allocations: pl.DataFrame, selection: UsageFilter
) -> pl.DataFrame:
    """Used, queued and allocated chip-hours per period for a slice of the fleet.

    Returns columns ``period`` (start date of the day, week or month), ``chip_hours_used``,
    ``chip_hours_queued``, ``chip_hours_allocated`` (null when the slice is one workload:
    allocations are per team and pool, not per workload), ``peak_chips`` (largest daily sum
    of the series' peaks in the period) and ``complete`` (false for a first or last period
    the data covers only in part, whose totals are not comparable with the others).
    """
    sliced = usage.filter(selection.expression())
    if sliced.height == 0:
        return pl.DataFrame(
            schema={
                "period": pl.Date,
                "chip_hours_used": pl.Float64,
                "chip_hours_queued": pl.Float64,
                "chip_hours_allocated": pl.Float64,
                "peak_chips": pl.Float64,
                "complete": pl.Boolean,
            }
        )
    daily = sliced.group_by("date").agg(
        pl.col("chip_hours_used").sum(),
        pl.col("chip_hours_queued").sum(),
        pl.col("peak_chips").sum(),
    )
    first, last = daily["date"].min(), daily["date"].max()
    if selection.workload == ALL:
        allocated = (
            allocated_daily(allocations, first, last)
            .filter(selection.expression(with_workload=False))
            .group_by("date")
            .agg(pl.col("chip_hours_allocated").sum())
        )
        daily = daily.join(allocated, on="date", how="left").with_columns(
            pl.col("chip_hours_allocated").fill_null(0.0)
        )
    else:
        daily = daily.with_columns(pl.lit(None, dtype=pl.Float64).alias("chip_hours_allocated"))
    return (
        daily.sort("date")
        .group_by_dynamic("date", every=GRAINS[selection.grain], start_by="window")
        .agg(
            pl.col("chip_hours_used").sum(),
            pl.col("chip_hours_queued").sum(),
            pl.col("chip_hours_allocated").sum(),
            pl.col("peak_chips").max(),
        )
        .rename({"date": "period"})
        .with_columns(
            pl.col("period").dt.offset_by(GRAINS[selection.grain]).alias("__next"),
        )
        .with_columns(
            # A period is complete when the data covers it from its first to its last day.
            (
                (pl.col("period") >= first)
                & (pl.col("__next") <= pl.lit(last) + pl.duration(days=1))
            ).alias("complete"),
        )
        .drop("__next")
        .with_columns(
            pl.when(pl.lit(selection.workload == ALL))
            .then(pl.col("chip_hours_allocated"))
            .otherwise(None)
            .alias("chip_hours_allocated")
        )
    )


def usage_totals(history: pl.DataFrame) -> dict[str, float | None]:
    """Headline numbers of a history: totals, efficiency (used / allocated) and peak."""
    used = float(history["chip_hours_used"].sum()) if history.height else 0.0
    queued = float(history["chip_hours_queued"].sum()) if history.height else 0.0
    allocated_values = history["chip_hours_allocated"].drop_nulls() if history.height else None
    allocated = (
        float(allocated_values.sum())
        if allocated_values is not None and allocated_values.len()
        else None
    )
    return {
        "chip_hours_used": used,
        "chip_hours_queued": queued,
        "chip_hours_allocated": allocated,
        "efficiency": used / allocated if allocated else None,
        "peak_chips": float(history["peak_chips"].max()) if history.height else 0.0,  # type: ignore[arg-type]
        "queued_share": queued / (used + queued) if used + queued else 0.0,
    }


def weekday_pattern(usage: pl.DataFrame, selection: UsageFilter) -> pl.DataFrame:
    """Average used and queued chip-hours of the slice per day of the week.

    Each calendar day from the slice's first to its last day counts once (days without a
    row count as zero), so the averages of a weekday are over comparable days. Returns
    ``weekday`` (1 = Monday), ``day`` (``Mon``...), ``days`` (how many were averaged),
    ``chip_hours_used`` and ``chip_hours_queued``.
    """
    sliced = usage.filter(selection.expression())
    schema = {
        "weekday": pl.Int8,
        "day": pl.String,
        "days": pl.UInt32,
        "chip_hours_used": pl.Float64,
        "chip_hours_queued": pl.Float64,
    }
    if sliced.height == 0:
        return pl.DataFrame(schema=schema)
    daily = sliced.group_by("date").agg(
        pl.col("chip_hours_used").sum(), pl.col("chip_hours_queued").sum()
    )
    calendar = daily.select(
        pl.date_range(pl.col("date").min(), pl.col("date").max(), "1d").alias("date")
    )
    return (
        calendar.join(daily, on="date", how="left")
        .fill_null(0.0)
        .group_by(pl.col("date").dt.weekday().alias("weekday"))
        .agg(
            pl.len().alias("days"),
            pl.col("chip_hours_used").mean(),
            pl.col("chip_hours_queued").mean(),
        )
        .sort("weekday")
        .with_columns(
            pl.col("weekday")
            .replace_strict(list(range(1, 8)), list(WEEKDAYS), return_dtype=pl.String)
            .alias("day")
        )
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
    )


def hour_pattern(usage_hourly: pl.DataFrame, selection: UsageFilter) -> pl.DataFrame:
    """Average used chip-hours of the slice per weekday and UTC hour of the day.

    Each hour from the slice's first to its last hour counts once (hours without a row as
    zero). Returns ``weekday`` (1 = Monday), ``day``, ``hour`` (0-23) and
    ``chip_hours_used`` (the average of that hour of that weekday).
    """
    sliced = usage_hourly.filter(selection.expression())
    schema = {
        "weekday": pl.Int8,
        "day": pl.String,
        "hour": pl.Int8,
        "chip_hours_used": pl.Float64,
    }
    if sliced.height == 0:
        return pl.DataFrame(schema=schema)
    hourly = sliced.group_by("hour").agg(pl.col("chip_hours_used").sum())
    calendar = hourly.select(
        pl.datetime_range(pl.col("hour").min(), pl.col("hour").max(), "1h").alias("hour")
    )
    return (
        calendar.join(hourly, on="hour", how="left")
        .fill_null(0.0)
        .group_by(
            pl.col("hour").dt.weekday().alias("weekday"),
            pl.col("hour").dt.hour().alias("hour_of_day"),
        )
        .agg(pl.col("chip_hours_used").mean())
        .sort("weekday", "hour_of_day")
        .with_columns(
            pl.col("weekday")
            .replace_strict(list(range(1, 8)), list(WEEKDAYS), return_dtype=pl.String)
            .alias("day"),
        )
        .rename({"hour_of_day": "hour"})
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
    )
