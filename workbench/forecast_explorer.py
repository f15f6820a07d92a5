"""One series of a forecast run, taken apart for people: history, bands, events, models.

Pure functions over a fleet forecast run's outputs (``forecast``, ``history``,
``selection``, ``backtest``, ``fallbacks``, ``cold_start``, ``events_applied``) and the
``events`` table; the app's forecast explorer is a thin view over them.

Series ids follow the hierarchy: ``fleet``, ``accelerator=<a>``, ``pool=<a>/<r>``,
``team=<a>/<r>/<t>``; the run's frames carry the keys as ``level, accelerator, region,
team`` (null above their level).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from models.quantiles import interval_bounds, quantile_column

__all__ = [
    "BANDS",
    "LEVELS",
    "ModelChoice",
    "band_columns",
    "decompose",
    "events_on_series",
    "model_choice",
    "model_comparison",
    "series_catalog",
    "series_in_slice",
]

LEVELS: tuple[str, ...] = ("fleet", "accelerator", "pool", "team")
"""Levels of the hierarchy, most aggregated first."""

BANDS: tuple[float, ...] = (0.9, 0.5)
"""Central intervals drawn on the fan chart: p05-p95 (outer) and p25-p75 (inner)."""

_KEYS = ["accelerator", "region", "team"]


def series_catalog(forecast: pl.DataFrame) -> pl.DataFrame:
    """Every series of a run: ``series_id, level, accelerator, region, team``, fleet first."""
    return (
        forecast.select("series_id", "level", *_KEYS)
        .unique("series_id")
        .with_columns(
            pl.col("level")
            .replace_strict(list(LEVELS), list(range(len(LEVELS))), default=len(LEVELS))
            .alias("__order")
        )
        .sort("__order", *_KEYS, nulls_last=False)
        .drop("__order")
    )


def series_in_slice(
    catalog: pl.DataFrame,
    accelerator: str | None = None,
    region: str | None = None,
    team: str | None = None,
) -> pl.DataFrame:
    """The series inside a slice of the fleet, most aggregated first.

    A series is inside when every dimension the slice fixes is that series' own value:
    with ``accelerator="h100"`` the H100 accelerator series, its pools and teams, not the
    fleet. A slice with no dimension fixed holds every series.
    """
    predicate = pl.lit(True)
    for column, value in zip(_KEYS, (accelerator, region, team), strict=True):
        if value is not None:
            predicate = predicate & (pl.col(column) == value)
    return catalog.filter(predicate)


def band_columns(levels: Sequence[float] = BANDS) -> list[tuple[str, str]]:
    """Quantile columns ``(lower, upper)`` of each central interval: ``[("p05", "p95"), ...]``."""
    out = []
    for coverage in levels:
        low, high = interval_bounds(coverage)
        out.append((quantile_column(low), quantile_column(high)))
    return out


def events_on_series(
    events: pl.DataFrame,
    applied: pl.DataFrame,
    series: dict[str, str | None],
    start: date,
    end: date,
) -> pl.DataFrame:
    """Known events on a series' timeline between ``start`` and ``end``.

    An event is on a series when its accelerator (and region, team, where both name one)
    match the series' keys; for team and pool series, an event naming no region or team
    is on the aggregate above them, not on them. Adds ``expected_chip_days`` from the
    run's ``events_applied`` (null for past events, which the run removed or kept in the
    history). Columns ``event_id, name, kind, start, end, chips, probability,
    expected_chip_days``, by start.
    """
    if events.is_empty():
        return pl.DataFrame(
            schema={
                "event_id": pl.String,
                "name": pl.String,
                "kind": pl.String,
                "start": pl.Date,
                "end": pl.Date,
                "chips": pl.Float64,
                "probability": pl.Float64,
                "expected_chip_days": pl.Float64,
            }
        )
    predicate = (pl.col("start") <= end) & (pl.col("end").is_null() | (pl.col("end") >= start))
    for column in _KEYS:
        value = series.get(column)
        if value is not None:
            predicate = predicate & (pl.col(column) == value)
    chosen = events.filter(predicate)
    sid = series.get("series_id")
    effects = (
        applied.filter(pl.col("series_id") == sid)
        .group_by("event_id")
        .agg(pl.col("expected_chip_days").sum())
        if applied.height and sid is not None
        else pl.DataFrame(schema={"event_id": pl.String, "expected_chip_days": pl.Float64})
    )
    return (
        chosen.join(effects, on="event_id", how="left")
        .select(
            "event_id",
            "name",
            "kind",
            "start",
            "end",
            "chips",
            "probability",
            "expected_chip_days",
        )
        .sort("start", "event_id")
    )


def model_comparison(
    backtest: pl.DataFrame, selection: pl.DataFrame, series_id: str
) -> pl.DataFrame:
    """Backtest scores of every candidate of a series, best first.

    ``model, mase_mean`` (the mean over windows: what selection ranks by), ``mase_best``,
    ``mase_worst``, ``windows`` (scored windows) and ``chosen``. Models that could not be
    scored (a series too young for a window) have null scores and come last.
    """
    chosen = selection.filter(pl.col("series_id") == series_id)["model"].to_list()
    return (
        backtest.filter(pl.col("series_id") == series_id)
        .group_by("model")
        .agg(
            pl.col("mase").mean().alias("mase_mean"),
            pl.col("mase").min().alias("mase_best"),
            pl.col("mase").max().alias("mase_worst"),
            pl.col("mase").is_not_null().sum().alias("windows"),
        )
        .with_columns(pl.col("model").is_in(chosen).alias("chosen"))
        .sort("mase_mean", "model", nulls_last=True)
    )


@dataclass(frozen=True)
class ModelChoice:
    """Which model forecast a series and why, in words."""

    model: str
    produced_by: str
    backtest_mase: float | None
    reason: str
    fallbacks: pl.DataFrame


def model_choice(
    selection: pl.DataFrame,
    comparison: pl.DataFrame,
    fallbacks: pl.DataFrame,
    cold_start: pl.DataFrame,
    series_id: str,
) -> ModelChoice:
    """The chosen model of a series and the reason: selection, fallback or cold start."""
    row = selection.filter(pl.col("series_id") == series_id)
    model = str(row["model"][0]) if row.height else "unknown"
    produced_by = str(row["produced_by"][0]) if row.height else model
    mase = row["backtest_mase"][0] if row.height else None
    scored = comparison.filter(pl.col("mase_mean").is_not_null())
    own = fallbacks.filter(pl.col("series_id") == series_id) if fallbacks.height else fallbacks
    young = (
        cold_start.filter(pl.col("series_id") == series_id)["cold_start"].to_list()
        if cold_start.height
        else []
    )
    if young and young[0]:
        reason = f"Cold start: too little history to select by backtest; {young[0]}."
    elif mase is not None and scored.height:
        reason = (
            f"Lowest mean backtest MASE ({mase:.3f}) of {scored.height} scored candidates "
            f"over {int(scored['windows'].max())} rolling-origin windows."  # type: ignore[arg-type]
        )
        if scored.height > 1:
            runner_up = scored.filter(~pl.col("chosen")).row(0, named=True)
            reason += f" Next best: {runner_up['model']} ({runner_up['mase_mean']:.3f})."
    else:
        reason = "No backtest window fits this series' history; the default model was used."
    if produced_by != model:
        reason += f" The forecast itself was produced by {produced_by} (fallback)."
    if own.height:
        reason += f" {own.height} fallback(s): see the table."
    return ModelChoice(
        model=model,
        produced_by=produced_by,
        backtest_mase=None if mase is None else float(mase),
        reason=reason,
        fallbacks=own,
    )


def decompose(history: pl.DataFrame, *, period: int = 7, last_days: int = 365) -> pl.DataFrame:
    """Trend, weekly seasonality and remainder of a daily series by STL (statsmodels).

    ``history`` has ``ds, y`` for one series; the last ``last_days`` days are decomposed
    (robust STL, so campaigns and outages go to the remainder instead of bending the
    trend). Returns ``ds, observed, trend, seasonal, remainder`` with observed = trend +
    seasonal + remainder; empty when there are fewer than two periods of history.
    """
    from statsmodels.tsa.seasonal import STL

    series = history.sort("ds").tail(last_days)
    schema = {
        "ds": pl.Date,
        "observed": pl.Float64,
        "trend": pl.Float64,
        "seasonal": pl.Float64,
        "remainder": pl.Float64,
    }
    if series.height < 2 * period + 1:
        return pl.DataFrame(schema=schema)
    observed = series["y"].to_numpy().astype(float)
    fit = STL(observed, period=period, robust=True).fit()
    return pl.DataFrame(
        {
            "ds": series["ds"],
            "observed": observed,
            "trend": np.asarray(fit.trend, dtype=float),
            "seasonal": np.asarray(fit.seasonal, dtype=float),
            "remainder": np.asarray(fit.resid, dtype=float),
        },
        schema=schema,
    )
