"""Held-out scoring of fleet forecasts, level by level, over several forecast origins.

For each origin (a last day of history), the fleet forecast is made from usage up to that
day only and compared with what happened after it: the generator's true unconstrained
demand (``truth``: ``date, accelerator, region, team, demand_chip_hours``), aggregated
through the same hierarchy. One origin is one draw of the future (a fleet-wide surprise
moves every level at once), so calibration is judged over several origins a quarter apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

import polars as pl

from workbench.forecasting import ForecastSettings, forecast_fleet
from workbench.hierarchy import aggregate, build_hierarchy

__all__ = ["HeldOut", "coverage_by_level", "held_out_forecasts", "origins_before"]

#: Nominal interval -> (lower, upper) quantile columns.
INTERVALS: dict[str, tuple[str, str]] = {
    "80%": ("p10", "p90"),
    "90%": ("p05", "p95"),
    "95%": ("p2_5", "p97_5"),
}
LEVEL_ORDER = ("fleet", "accelerator", "pool", "team")


@dataclass(frozen=True)
class HeldOut:
    """Forecasts joined with what happened: one row per origin, node and day."""

    scored: pl.DataFrame  # origin, series_id, level, ds, h, mean, quantiles..., y
    seconds: dict[str, float]


def origins_before(last_day: date, horizon: int, count: int, spacing: int = 91) -> list[date]:
    """``count`` origins ``spacing`` days apart whose whole horizon ends by ``last_day``."""
    return [last_day - timedelta(days=horizon + spacing * k) for k in range(count)]


def held_out_forecasts(
    usage_daily: pl.DataFrame,
    events: pl.DataFrame | None,
    catalog: pl.DataFrame,
    truth: pl.DataFrame,
    settings: ForecastSettings,
    origins: Sequence[date],
    *,
    on_origin: Callable[[date, float], None] | None = None,
) -> HeldOut:
    """Forecast from each origin and join the true demand of every node and day after it."""
    import time

    parts = []
    seconds: dict[str, float] = {}
    for origin in origins:
        began = time.perf_counter()
        forecast = forecast_fleet(
            usage_daily.filter(pl.col("date") <= origin), events, catalog, replace(settings)
        ).forecast
        teams = forecast.filter(pl.col("level") == "team").select("accelerator", "region", "team")
        teams = teams.unique()
        actual = (
            truth.filter(
                pl.col("date") > origin,
                pl.col("date") <= origin + timedelta(days=settings.horizon),
            )
            .group_by("accelerator", "region", "team", pl.col("date").alias("ds"))
            .agg((pl.col("demand_chip_hours").sum() / 24.0).alias("y"))
            .join(teams, on=["accelerator", "region", "team"], how="semi")
        )
        nodes = aggregate(build_hierarchy(teams), actual, ("y",))
        parts.append(
            forecast.join(
                nodes.select("series_id", "ds", "y"), on=["series_id", "ds"]
            ).with_columns(pl.lit(origin).alias("origin"))
        )
        seconds[str(origin)] = round(time.perf_counter() - began, 2)
        if on_origin is not None:
            on_origin(origin, seconds[str(origin)])
    return HeldOut(scored=pl.concat(parts, how="diagonal_relaxed"), seconds=seconds)


def coverage_by_level(scored: pl.DataFrame) -> pl.DataFrame:
    """Share of outcomes inside each nominal interval, and below the median, per level."""
    inside = [
        ((pl.col("y") >= pl.col(lo)) & (pl.col("y") <= pl.col(hi))).mean().alias(name)
        for name, (lo, hi) in INTERVALS.items()
    ]
    return (
        scored.group_by("level")
        .agg(
            pl.col("series_id").n_unique().alias("series"),
            pl.col("origin").n_unique().alias("origins"),
            *inside,
            (pl.col("y") <= pl.col("p50")).mean().alias("below median"),
            ((pl.col("mean") - pl.col("y")).abs().sum() / pl.col("y").sum()).alias("WAPE"),
        )
        .with_columns(
            pl.col("level")
            .replace_strict(
                {level: i for i, level in enumerate(LEVEL_ORDER)}, default=len(LEVEL_ORDER)
            )
            .alias("_order")
        )
        .sort("_order")
        .drop("_order")
    )
