"""Forecasting runs for a fleet: demand series, events, cold start, reconciliation, peaks.

The target is unconstrained demand in chips (average concurrent chips per day): chip-hours
used plus chip-hours queued, over 24. Observed usage plateaus when a pool is full while
jobs wait; the queue is the demand that did not run, so forecasting usage alone would
forecast the plateau.

A fleet forecast runs in these steps, each a pure function here:

1. :func:`demand_series`: team-level daily demand from ``usage_daily``, gaps filled with 0
   from each series' first day to the end of history.
2. :func:`remove_past_events`: one-off events in the past (training campaigns: events with
   an end date, other than migrations) are subtracted, so a campaign does not become trend.
   Launches and migrations change the level for good and stay in the history.
3. The hierarchy fleet -> accelerator -> pool -> team is aggregated and every node goes
   through the engine (:mod:`models.engine`): backtests, selection, calibration.
4. :func:`cold_start`: series with less than ``cold_start_days`` of history borrow the
   shape of their predecessor generation's pool (same family in the SKU catalog, the next
   lower performance index), or else take their recent share of their pool's forecast.
5. :func:`apply_future_events`: future events add ``probability x chips`` to the mean and
   widen the quantiles (a mixture of "happens" and "does not happen", from sample paths).
6. Reconciliation (:mod:`workbench.hierarchy`), MinT with shrinkage by default.
7. :func:`planning_periods`: the distribution of each quarter's peak weekly demand per
   pool, from sample paths (a Gaussian copula with day-to-day correlation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from models.engine import (
    DEFAULT_CANDIDATES,
    EngineConfig,
    EngineResult,
    backtest_cutoffs,
    run_engine,
)
from models.frequency import Frequency
from models.panel import Panel
from models.quantiles import DEFAULT_QUANTILES, quantile_column
from workbench.errors import WorkbenchError
from workbench.executors import Executor, SerialExecutor
from workbench.hierarchy import (
    METHODS,
    Hierarchy,
    aggregate,
    build_hierarchy,
    reconcile,
)
from workbench.level_calibration import backtest_frame, calibrate_levels

__all__ = [
    "FleetForecast",
    "ForecastSettings",
    "apply_future_events",
    "cold_start",
    "demand_series",
    "forecast_fleet",
    "path_correlation",
    "peak_scenarios",
    "planning_periods",
    "remove_past_events",
    "run_series_engine",
    "sample_paths",
]

HOURS_PER_DAY = 24.0


@dataclass(frozen=True)
class ForecastSettings:
    """What a forecast run does; recorded whole in the run's manifest."""

    horizon: int = 182
    models: tuple[str, ...] = DEFAULT_CANDIDATES
    windows: int = 3
    step: int | None = 91
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    reconcile: str = "mint_shrink"
    target: str = "demand"
    events: bool = True
    cold_start_days: int = 56
    seed: int = 0
    workers: int | None = None
    chunks: int | None = None
    sample_paths: int = 1000
    level_calibration: bool = True
    model_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.target not in ("demand", "usage"):
            raise ValueError(f"target must be 'demand' or 'usage', got '{self.target}'")
        if self.reconcile not in ("none", *METHODS):
            raise ValueError(
                f"unknown reconciliation '{self.reconcile}': use none or {', '.join(METHODS)}"
            )

    def engine_config(self) -> EngineConfig:
        """The engine's part of the settings."""
        return EngineConfig(
            horizon=self.horizon,
            models=self.models,
            windows=self.windows,
            step=self.step,
            quantiles=self.quantiles,
            seed=self.seed,
            model_settings=self.model_settings,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly settings for the manifest."""
        out = asdict(self)
        out["model_settings"] = {k: dict(v) for k, v in self.model_settings.items()}
        return out


# --------------------------------------------------------------------------------------
# Series
# --------------------------------------------------------------------------------------
def demand_series(
    usage_daily: pl.DataFrame, *, target: str = "demand", end: date | None = None
) -> pl.DataFrame:
    """Team-level daily series ``accelerator, region, team, ds, y`` in chips.

    ``y`` is (chip-hours used + queued) / 24 for ``target="demand"``, used only for
    ``"usage"``. Each series runs from its first day with demand to ``end`` (default: the
    last day of the table), missing days filled with 0.
    """
    if usage_daily.is_empty():
        raise WorkbenchError(
            "usage_daily is empty: nothing to forecast",
            fix="ingest job records first: workbench ingest jobs FILE",
        )
    value = pl.col("chip_hours_used")
    if target == "demand":
        value = value + pl.col("chip_hours_queued").fill_null(0.0)
    daily = (
        usage_daily.group_by("accelerator", "region", "team", pl.col("date").alias("ds"))
        .agg((value.sum() / HOURS_PER_DAY).alias("y"))
        .filter(pl.col("y") > 0)
    )
    last = end or daily["ds"].max()
    starts = daily.group_by("accelerator", "region", "team").agg(pl.col("ds").min().alias("first"))
    grid = starts.with_columns(
        pl.date_ranges(pl.col("first"), pl.lit(last), "1d").alias("ds")
    ).explode("ds")
    return (
        grid.join(daily, on=["accelerator", "region", "team", "ds"], how="left")
        .with_columns(pl.col("y").fill_null(0.0))
        .select("accelerator", "region", "team", "ds", "y")
        .filter(pl.col("ds") <= last)
        .sort("accelerator", "region", "team", "ds")
    )


def _event_shape(kind: str, start: date, end: date | None, days: Sequence[date]) -> np.ndarray:
    """Fraction of an event's chips in effect on each day (a migration ramps up linearly)."""
    index = np.array([(d - start).days for d in days], dtype=np.float64)
    if kind == "migration" and end is not None and end > start:
        return np.clip((index + 1) / ((end - start).days + 1), 0.0, 1.0)
    active = index >= 0
    if end is not None and kind != "migration":
        active &= np.array([d <= end for d in days])
    return active.astype(np.float64)


def _is_one_off(kind: str | None, end: date | None) -> bool:
    return end is not None and kind != "migration"


def _matching(frame: pl.DataFrame, event: Mapping[str, Any]) -> pl.Expr:
    condition = pl.col("accelerator") == event["accelerator"]
    for key in ("region", "team"):
        if event.get(key) is not None and key in frame.columns:
            condition &= pl.col(key) == event[key]
    return condition


def remove_past_events(
    bottom: pl.DataFrame, events: pl.DataFrame, history_end: date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Subtract past one-off events from team series; return the series and what was removed.

    An event without a team (or region) is spread over the matching series in proportion
    to their demand on each day. Demand never goes below zero; when it would, the event
    is removed only down to zero. The second frame lists ``event_id, name,
    chip_days_removed`` (chip-days: chips x days).
    """
    schema = {"event_id": pl.String, "name": pl.String, "chip_days_removed": pl.Float64}
    past = events.filter(
        pl.col("end").is_not_null()
        & (pl.col("kind").fill_null("") != "migration")
        & (pl.col("start") <= history_end)
        & (pl.col("probability") > 0)
    )
    if past.is_empty():
        return bottom, pl.DataFrame(schema=schema)
    event_days = (
        past.select(
            "event_id",
            "accelerator",
            pl.col("region").alias("event_region"),
            pl.col("team").alias("event_team"),
            "chips",
            pl.date_ranges("start", pl.min_horizontal("end", pl.lit(history_end)), "1d").alias(
                "ds"
            ),
        )
        .explode("ds")
        .drop_nulls("ds")
    )
    keys = ["accelerator", "region", "team", "ds"]
    matched = (
        bottom.join(event_days, on=["accelerator", "ds"])
        .filter(
            (pl.col("event_region").is_null() | (pl.col("event_region") == pl.col("region")))
            & (pl.col("event_team").is_null() | (pl.col("event_team") == pl.col("team")))
        )
        .with_columns(
            pl.col("y").sum().over("event_id", "ds").alias("total"),
            pl.len().over("event_id", "ds").alias("count"),
        )
        .with_columns(
            (
                pl.col("chips")
                * pl.when(pl.col("total") > 0)
                .then(pl.col("y") / pl.col("total"))
                .otherwise(1.0 / pl.col("count"))
            ).alias("delta")
        )
        .with_columns(pl.col("delta").sum().over(keys).alias("row_delta"))
        # When events would take a day below zero, each gives back its share of the excess.
        .with_columns(
            (
                pl.col("delta")
                * pl.when(pl.col("row_delta") > pl.col("y"))
                .then(pl.col("y") / pl.col("row_delta"))
                .otherwise(1.0)
            ).alias("removed")
        )
    )
    per_row = matched.group_by(keys).agg(pl.col("removed").sum())
    out = (
        bottom.join(per_row, on=keys, how="left")
        .with_columns(
            (pl.col("y") - pl.col("removed").fill_null(0.0)).clip(lower_bound=0.0).alias("y")
        )
        .drop("removed")
    )
    removed = (
        past.select("event_id", "name")
        .join(
            matched.group_by("event_id").agg(pl.col("removed").sum().alias("chip_days_removed")),
            on="event_id",
            how="left",
        )
        .with_columns(pl.col("chip_days_removed").fill_null(0.0))
    )
    return out, removed.cast(schema)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Sample paths from quantiles
# --------------------------------------------------------------------------------------
def sample_paths(
    quantiles: np.ndarray,
    levels: Sequence[float],
    n_paths: int,
    *,
    correlation: float = 0.95,
    seed: int = 0,
) -> np.ndarray:
    """Draw sample paths (paths, series, horizon) whose marginals follow the quantiles.

    ``quantiles`` is (series, horizon, levels). Each path draws ``u_t = Phi(z_t)`` with
    ``z`` an AR(1) process of the given step-to-step correlation (a Gaussian copula), and
    reads the quantile function at ``u_t`` by linear interpolation, held flat beyond the
    outermost levels. Forecast errors persist from one day to the next, so peaks over a
    quarter need paths, not per-day quantiles.
    """
    from scipy.special import ndtr

    rng = np.random.default_rng(seed)
    n_series, horizon, n_levels = quantiles.shape
    grid = np.asarray(levels, dtype=np.float64)
    z = np.empty((n_paths, n_series, horizon))
    z[:, :, 0] = rng.standard_normal((n_paths, n_series))
    innovation = math.sqrt(1.0 - correlation**2)
    for t in range(1, horizon):
        z[:, :, t] = correlation * z[:, :, t - 1] + innovation * rng.standard_normal(
            (n_paths, n_series)
        )
    u = np.clip(ndtr(z), grid[0], grid[-1])
    upper = np.clip(np.searchsorted(grid, u, side="right"), 1, n_levels - 1)
    lower = upper - 1
    weight = (u - grid[lower]) / (grid[upper] - grid[lower])
    series_index = np.arange(n_series)[None, :, None]
    step_index = np.arange(horizon)[None, None, :]
    low = quantiles[series_index, step_index, lower]
    high = quantiles[series_index, step_index, upper]
    return low + weight * (high - low)


def path_correlation(
    residuals: pl.DataFrame,
    horizon: int,
    *,
    series: Sequence[str] | None = None,
    lags: Sequence[int] = (7, 14, 28),
    default: float = 0.95,
    bounds: tuple[float, float] = (0.9, 0.999),
) -> float:
    """Day-to-day correlation of forecast errors, from the engine's backtest residuals.

    ``residuals`` is ``series_id, step, residual`` (step ``w * horizon + h - 1``). The
    errors are not demeaned (a forecast that is wrong about the level stays wrong, and that
    persistence is the point); their pooled autocorrelation is taken at each lag, and the
    AR(1) coefficient is the median of ``corr_k ** (1 / k)`` over ``lags``, within
    ``bounds``. Without enough residuals the ``default`` comes back.
    """
    frame = residuals.filter(pl.col("residual").is_not_nan())
    if series is not None:
        frame = frame.filter(pl.col("series_id").is_in(list(series)))
    if frame.height < 2 * max(lags):
        return default
    wide = (
        frame.with_columns((pl.col("step") // horizon).alias("window"), pl.col("step") % horizon)
        .pivot(on="step", index=["series_id", "window"], values="residual", sort_columns=True)
        .sort("series_id", "window")
    )
    wide = wide.drop("series_id", "window")
    steps = sorted(int(c) for c in wide.columns)
    errors = np.full((wide.height, horizon), np.nan)
    errors[:, steps] = wide.select([str(c) for c in steps]).to_numpy()
    # Pooled as they are: the big pools, which drive the plan's cost, weigh the most.
    # (Scaling each series to unit size biases a persistent process' correlation down.)
    estimates = []
    for lag in lags:
        if lag >= horizon:
            continue
        a, b = errors[:, :-lag].reshape(-1), errors[:, lag:].reshape(-1)
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 30:
            continue
        corr = float(np.sum(a[ok] * b[ok]) / np.sqrt(np.sum(a[ok] ** 2) * np.sum(b[ok] ** 2)))
        if corr > 0:
            estimates.append(corr ** (1.0 / lag))
    if not estimates:
        return default
    return float(np.clip(np.median(estimates), *bounds))


def _quantile_matrix(frame: pl.DataFrame, levels: Sequence[float]) -> np.ndarray:
    """(series, horizon, levels) from a forecast frame sorted by series_id, ds."""
    n_series = frame["series_id"].n_unique()
    values = frame.select([quantile_column(q) for q in levels]).to_numpy(writable=True)
    return values.reshape(n_series, -1, len(levels))


# --------------------------------------------------------------------------------------
# Future events
# --------------------------------------------------------------------------------------
def apply_future_events(
    forecast: pl.DataFrame,
    nodes: pl.DataFrame,
    events: pl.DataFrame,
    levels: Sequence[float],
    *,
    n_paths: int = 1000,
    seed: int = 0,
    team_demand: Mapping[str, float] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Add future events to the forecast of every node they fall under.

    The mean moves by ``probability x chips x shape`` (the shape is 1 while a campaign
    runs, 1 from a launch on, a linear ramp for a migration). Quantiles come from sample
    paths in which each event happens or not with its probability, so an uncertain event
    widens the interval and a certain one shifts it. ``nodes`` maps ``series_id`` to the
    key columns (accelerator, region, team; null above their level). Returns the forecast
    and a frame of ``event_id, series_id, expected_chip_days``.

    An event naming no team (a pool-wide launch) lands in full on the aggregates it falls
    under and, given ``team_demand`` (recent demand per team ``series_id``), is shared out
    over the teams of those pools by their recent demand, so teams still add up to their
    pool and reconciliation has nothing to undo. Without ``team_demand`` it stays on the
    aggregates.
    """
    forecast = forecast.sort("series_id", "ds")
    ds_values = forecast.filter(pl.col("series_id") == forecast["series_id"][0])["ds"].to_list()
    if not ds_values:
        return forecast, pl.DataFrame()
    first, last = ds_values[0], ds_values[-1]
    upcoming = events.filter(
        (pl.col("probability") > 0)
        & (pl.col("start") <= last)
        & (pl.col("end").is_null() | (pl.col("end") >= first))
    )
    ids = forecast["series_id"].unique(maintain_order=True).to_list()
    position = {sid: i for i, sid in enumerate(ids)}
    horizon = len(ds_values)
    effects: dict[int, list[tuple[np.ndarray, float]]] = {}
    applied: list[dict[str, Any]] = []
    history_end = first - timedelta(days=1)
    for event in upcoming.iter_rows(named=True):
        kind, start, end = event["kind"] or "", event["start"], event.get("end")
        shape = _event_shape(kind, start, end, ds_values)
        if start <= history_end and not _is_one_off(kind, end):
            # A launch or migration under way is in the history already, as far as it got.
            shape = shape - _event_shape(kind, start, end, [history_end])[0]
            if not shape.any():
                continue
        delta = float(event["chips"]) * shape
        matches = pl.col("accelerator").is_null() | (pl.col("accelerator") == event["accelerator"])
        for key in ("region", "team"):
            if event.get(key) is not None:  # an event naming no region (team) spans them all
                matches &= pl.col(key).is_null() | (pl.col(key) == event[key])
        under = nodes.filter(matches)
        targets: list[tuple[str, np.ndarray]] = []
        teams = under.filter(pl.col("team").is_not_null())
        weights = np.array(
            [max((team_demand or {}).get(t, 0.0), 0.0) for t in teams["series_id"].to_list()]
        )
        if event.get("team") is None and team_demand is not None and weights.sum() > 0:
            # The teams under it share it by their recent demand; every aggregate above them
            # takes the sum of its teams' shares, so the hierarchy stays coherent.
            share = weights / weights.sum()
            team_keys = teams.select("accelerator", "region").rows()
            for node in under.filter(pl.col("team").is_null()).iter_rows(named=True):
                inside = np.array(
                    [
                        (node["accelerator"] is None or node["accelerator"] == acc)
                        and (node["region"] is None or node["region"] == reg)
                        for acc, reg in team_keys
                    ]
                )
                if share[inside].sum() > 0:
                    targets.append((node["series_id"], delta * share[inside].sum()))
            targets += [
                (t, delta * w)
                for t, w in zip(teams["series_id"].to_list(), share, strict=True)
                if w > 0
            ]
        else:
            # Without team demand, an event naming no team lands on the aggregates only.
            if event.get("team") is None:
                under = under.filter(pl.col("team").is_null())
            if event.get("region") is None:
                under = under.filter(pl.col("region").is_null())
            targets += [(sid, delta) for sid in under["series_id"].to_list()]
        for sid, part in targets:
            if sid not in position:
                continue
            effects.setdefault(position[sid], []).append((part, float(event["probability"])))
            applied.append(
                {
                    "event_id": event["event_id"],
                    "series_id": sid,
                    "expected_chip_days": float(event["probability"]) * float(part.sum()),
                }
            )
    if not effects:
        return forecast, pl.DataFrame(
            applied,
            schema={
                "event_id": pl.String,
                "series_id": pl.String,
                "expected_chip_days": pl.Float64,
            },
        )
    rows = np.array(sorted(effects))
    qmat = _quantile_matrix(forecast, levels)
    mean = forecast["mean"].to_numpy().reshape(len(ids), horizon).copy()
    rng = np.random.default_rng(seed + 1)
    paths = sample_paths(qmat[rows], levels, n_paths, seed=seed)
    for j, row in enumerate(rows):
        for delta, probability in effects[int(row)]:
            happens = rng.random(n_paths) < probability
            paths[:, j, :] += happens[:, None] * delta[None, :]
            mean[row] += probability * delta
    new_q = np.quantile(np.maximum(paths, 0.0), levels, axis=0)  # (levels, rows, horizon)
    for k, _ in enumerate(levels):
        qmat[rows, :, k] = new_q[k]
    qmat = np.sort(np.maximum(qmat, 0.0), axis=2)
    columns = {quantile_column(q): qmat[:, :, k].reshape(-1) for k, q in enumerate(levels)}
    updated = forecast.with_columns(
        pl.Series("mean", np.maximum(mean, 0.0).reshape(-1)),
        *[pl.Series(name, values) for name, values in columns.items()],
    )
    return updated, pl.DataFrame(applied)


# --------------------------------------------------------------------------------------
# Cold start
# --------------------------------------------------------------------------------------
def predecessors(catalog: pl.DataFrame) -> dict[str, str]:
    """Map each accelerator to its predecessor generation in the SKU catalog.

    The predecessor has the same vendor and family and the next lower ``perf_index``.
    """
    out: dict[str, str] = {}
    rows = catalog.select("accelerator", "vendor", "family", "perf_index").to_dicts()
    for row in rows:
        older = [
            r
            for r in rows
            if r["vendor"] == row["vendor"]
            and r["family"] == row["family"]
            and (r["perf_index"] or 0) < (row["perf_index"] or 0)
        ]
        if older:
            out[row["accelerator"]] = max(older, key=lambda r: r["perf_index"] or 0)["accelerator"]
    return out


def cold_start(
    forecast: pl.DataFrame,
    history: pl.DataFrame,
    nodes: pl.DataFrame,
    catalog: pl.DataFrame,
    levels: Sequence[float],
    *,
    min_days: int = 56,
    widen: float = 1.25,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Replace the forecasts of series with too little history, and say how.

    A young team or pool series takes the growth shape of the same place one generation
    back (its predecessor's pool in the same region, else the predecessor accelerator),
    scaled to its own recent level (the mean of its last 7 days); the quantiles follow the
    predecessor's relative spread, widened by ``widen``. Without a predecessor, a young team
    takes its recent share of its pool's forecast. Returns the forecast and a frame
    ``series_id, cold_start`` saying what each young series borrowed.
    """
    lengths = history.group_by("series_id").agg(
        pl.len().alias("days"), pl.col("y").tail(7).mean().alias("recent")
    )
    young = lengths.filter(pl.col("days") < min_days).join(nodes, on="series_id")
    notes: list[dict[str, str]] = []
    if young.is_empty():
        return forecast, pl.DataFrame(schema={"series_id": pl.String, "cold_start": pl.String})
    older = predecessors(catalog)
    columns = ["mean", *[quantile_column(q) for q in levels]]
    by_id = {sid: part for (sid,), part in forecast.sort("ds").group_by("series_id")}
    node_of = {
        (r["level"], r["accelerator"], r["region"], r["team"]): r["series_id"]
        for r in nodes.iter_rows(named=True)
    }
    lengths_of = dict(zip(lengths["series_id"], lengths["days"], strict=True))
    replaced: dict[str, pl.DataFrame] = {}
    for row in young.iter_rows(named=True):
        sid, level = row["series_id"], row["level"]
        if level not in ("pool", "team", "accelerator"):
            continue
        recent = float(row["recent"] or 0.0)
        predecessor = older.get(row["accelerator"] or "")
        donor = None
        if predecessor:
            donor = node_of.get(("pool", predecessor, row["region"], None)) or node_of.get(
                ("accelerator", predecessor, None, None)
            )
        if donor and donor in by_id and lengths_of.get(donor, 0) >= min_days:
            base = by_id[donor]
            anchor = float(base["mean"].head(7).mean() or 0.0)  # type: ignore[arg-type]
            if anchor > 0:
                factor = recent / anchor
                center = base["mean"] * factor
                new = by_id[sid].with_columns(
                    *[
                        (center + (base[c] * factor - center) * (widen if c != "mean" else 1.0))
                        .clip(lower_bound=0.0)
                        .alias(c)
                        for c in columns
                    ]
                )
                replaced[sid] = new
                notes.append({"series_id": sid, "cold_start": f"shape of {donor}"})
                continue
        if level == "team":
            pool = node_of.get(("pool", row["accelerator"], row["region"], None))
            if pool and pool in by_id:
                pool_recent = float(
                    history.filter(pl.col("series_id") == pool)["y"].tail(7).mean() or 0.0  # type: ignore[arg-type]
                )
                share = recent / pool_recent if pool_recent > 0 else 0.0
                base = by_id[pool]
                replaced[sid] = by_id[sid].with_columns(
                    *[(base[c] * share).alias(c) for c in columns]
                )
                notes.append({"series_id": sid, "cold_start": f"{share:.1%} share of {pool}"})
    if not replaced:
        return forecast, pl.DataFrame(
            notes, schema={"series_id": pl.String, "cold_start": pl.String}
        )
    kept = forecast.filter(~pl.col("series_id").is_in(list(replaced)))
    out = pl.concat([kept, *replaced.values()], how="vertical_relaxed").sort("series_id", "ds")
    return out, pl.DataFrame(notes, schema={"series_id": pl.String, "cold_start": pl.String})


# --------------------------------------------------------------------------------------
# Planning periods
# --------------------------------------------------------------------------------------
def _quarter(day: date) -> str:
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


def _quarter_peaks(
    forecast: pl.DataFrame,
    levels: Sequence[float],
    n_paths: int,
    seed: int,
    correlation: float = 0.95,
) -> tuple[list[str], list[tuple[str, int, np.ndarray]]]:
    """Series ids and, per quarter, (quarter, whole weeks, peaks (paths, series))."""
    forecast = forecast.sort("series_id", "ds")
    ids = forecast["series_id"].unique(maintain_order=True).to_list()
    if not ids:
        return [], []
    ds_values = forecast.filter(pl.col("series_id") == ids[0])["ds"].to_list()
    horizon = len(ds_values)
    n_weeks = horizon // 7
    if n_weeks == 0:
        raise WorkbenchError(
            f"a horizon of {horizon} days has no whole week: planning periods need 7 or more",
            fix="forecast with --horizon 7 or more",
        )
    paths = sample_paths(
        _quantile_matrix(forecast, levels), levels, n_paths, correlation=correlation, seed=seed
    )
    weekly = paths[:, :, : n_weeks * 7].reshape(n_paths, len(ids), n_weeks, 7).mean(axis=3)
    week_quarter = np.array([_quarter(ds_values[7 * w]) for w in range(n_weeks)])
    out = []
    for quarter in dict.fromkeys(week_quarter.tolist()):
        mask = week_quarter == quarter
        out.append((quarter, int(mask.sum()), weekly[:, :, mask].max(axis=2)))
    return ids, out


def planning_periods(
    forecast: pl.DataFrame,
    levels: Sequence[float],
    *,
    n_paths: int = 1000,
    seed: int = 0,
    report_levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95, 0.99),
    correlation: float = 0.95,
) -> pl.DataFrame:
    """Distribution of each quarter's peak weekly demand, per series (pool), from paths.

    Weeks are the 7-day blocks from the first forecast day; a week belongs to the quarter
    of its first day, and only whole weeks count. Returns ``series_id, quarter, weeks,
    mean_peak_chips`` and ``peak_p50 ...`` columns (chips).
    """
    ids, quarters = _quarter_peaks(forecast, levels, n_paths, seed, correlation)
    rows: list[dict[str, Any]] = []
    for quarter, weeks, peaks in quarters:
        stats = np.quantile(peaks, report_levels, axis=0)
        for i, sid in enumerate(ids):
            row: dict[str, Any] = {
                "series_id": sid,
                "quarter": quarter,
                "weeks": weeks,
                "mean_peak_chips": float(peaks[:, i].mean()),
            }
            for k, q in enumerate(report_levels):
                row[f"peak_{quantile_column(q)}"] = float(stats[k, i])
            rows.append(row)
    return pl.DataFrame(rows)


def peak_scenarios(
    forecast: pl.DataFrame,
    levels: Sequence[float],
    *,
    n_scenarios: int = 100,
    seed: int = 0,
    correlation: float = 0.95,
) -> pl.DataFrame:
    """Joint scenarios of each quarter's peak weekly demand, one row per scenario.

    Columns ``series_id, scenario, quarter, peak_chips``. Scenario k of every quarter comes
    from the same sample path, so a scenario that runs high early tends to stay high: a
    stochastic plan over these scenarios sees the persistence that per-quarter quantiles
    hide.
    """
    ids, quarters = _quarter_peaks(forecast, levels, n_scenarios, seed, correlation)
    parts = [
        pl.DataFrame(
            {
                "series_id": np.tile(np.array(ids, dtype=str), n_scenarios),
                "scenario": np.repeat(np.arange(n_scenarios, dtype=np.int32), len(ids)),
                "quarter": quarter,
                "peak_chips": peaks.reshape(-1),
            }
        )
        for quarter, _, peaks in quarters
    ]
    return pl.concat(parts) if parts else pl.DataFrame()


# --------------------------------------------------------------------------------------
# Running the engine, and a whole fleet forecast
# --------------------------------------------------------------------------------------
def run_series_engine(
    frame: pl.DataFrame,
    settings: ForecastSettings,
    *,
    freq: str | None = None,
    executor: Executor | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> EngineResult:
    """Backtest, select and forecast every series of a long frame (``series_id, ds, y``).

    The frequency is inferred unless given; ``settings.horizon`` counts steps of it.
    """
    from models.frames import LongFrameError, infer_frequency

    try:
        if freq is None:
            steps = sorted(set(infer_frequency(frame).values()))
            if len(steps) != 1:
                raise LongFrameError(
                    f"series have different steps ({', '.join(steps)}): pass --freq or split them"
                )
            freq = steps[0]
        panel = Panel.from_frame(frame.select("series_id", "ds", "y"), Frequency.parse(freq))
    except (LongFrameError, ValueError) as exc:
        raise WorkbenchError(
            str(exc), fix="give a long frame series_id, ds, y with regular steps"
        ) from exc
    executor = executor or SerialExecutor()
    chunks = settings.chunks or executor.workers
    return run_engine(
        panel,
        settings.engine_config(),
        map_fn=executor.map_unordered,
        n_chunks=chunks,
        on_chunk_done=on_progress,
    )


@dataclass(frozen=True)
class FleetForecast:
    """Everything a fleet forecast run writes."""

    forecast: pl.DataFrame
    history: pl.DataFrame
    selection: pl.DataFrame
    scores: pl.DataFrame
    fallbacks: pl.DataFrame
    calibration: pl.DataFrame
    planning: pl.DataFrame
    scenarios: pl.DataFrame
    events_applied: pl.DataFrame
    events_removed: pl.DataFrame
    cold_start: pl.DataFrame
    adjustments: pl.DataFrame
    level_calibration: pl.DataFrame
    notes: tuple[str, ...]
    timings: dict[str, float]
    reconciled_with: str = "none"
    """The reconciliation used: the one asked for, or what it fell back to (see the notes)."""

    def outputs(self) -> dict[str, pl.DataFrame]:
        """The run's tables by output name."""
        return {
            "forecast": self.forecast,
            "history": self.history,
            "selection": self.selection,
            "backtest": self.scores,
            "fallbacks": self.fallbacks,
            "calibration": self.calibration,
            "planning": self.planning,
            "scenarios": self.scenarios,
            "events_applied": self.events_applied,
            "events_removed": self.events_removed,
            "cold_start": self.cold_start,
            "reconciliation": self.adjustments,
            "level_calibration": self.level_calibration,
        }


def _impute_residuals(
    residuals: pl.DataFrame, nodes: pl.DataFrame, history: pl.DataFrame
) -> pl.DataFrame:
    """Fill missing backtest errors of young series from their parent, by recent share.

    MinT needs every node's error at the same steps; a series too young for a backtest
    window gets its parent's error times its share of the parent's recent demand.
    """
    recent = history.group_by("series_id").agg(pl.col("y").tail(28).mean().alias("recent"))
    wide = residuals.pivot(on="series_id", index="step", values="residual").sort("step")
    parent_of = dict(zip(nodes["series_id"], nodes["parent_id"], strict=True))
    level_of = dict(zip(recent["series_id"], recent["recent"], strict=True))
    for sid in nodes["series_id"].to_list():  # nodes are ordered top first
        if sid not in wide.columns:
            wide = wide.with_columns(pl.lit(None, dtype=pl.Float64).alias(sid))
        parent = parent_of.get(sid)
        if parent is None or parent not in wide.columns:
            continue
        parent_level = level_of.get(parent) or 0.0
        share = (level_of.get(sid) or 0.0) / parent_level if parent_level > 0 else 0.0
        wide = wide.with_columns(
            pl.col(sid).fill_nan(None).fill_null(pl.col(parent) * share).alias(sid)
        )
    return wide.unpivot(index="step", variable_name="series_id", value_name="residual").drop_nulls()


def _calibrate_levels(
    forecast: pl.DataFrame,
    result: EngineResult,
    hierarchy: Hierarchy,
    history: pl.DataFrame,
    history_end: date,
    settings: ForecastSettings,
    residuals: pl.DataFrame,
    method: str,
) -> Any:
    """Reconcile the backtest windows with ``method``, then calibrate level by level."""
    config = settings.engine_config()
    backtest = backtest_frame(
        history.select("series_id", "ds", "y"),
        result.residuals,
        history_end=history_end,
        horizon=settings.horizon,
        removed=backtest_cutoffs(config),
    )
    if method != "none":
        reconciled = reconcile(
            hierarchy,
            backtest.select("series_id", "step", "mean"),
            method,  # type: ignore[arg-type]
            residuals=residuals,
            history=history.rename({"ds": "step"}),
            residual_index="step",
            time_col="step",
        )
        backtest = backtest.drop("mean").join(
            reconciled.forecast.select("series_id", "step", "mean"),
            on=["series_id", "step"],
            how="left",
        )
    return calibrate_levels(
        forecast,
        backtest,
        hierarchy.nodes.select("series_id", "level"),
        history.select("series_id", "ds", "y"),
        quantiles=settings.quantiles,
        buckets=config.bucket_of(np.arange(1, settings.horizon + 1)),
    )


def forecast_fleet(
    usage_daily: pl.DataFrame,
    events: pl.DataFrame | None,
    catalog: pl.DataFrame,
    settings: ForecastSettings,
    *,
    executor: Executor | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> FleetForecast:
    """Forecast demand for every node of the fleet hierarchy (see the module docstring)."""
    import time

    timings: dict[str, float] = {}
    notes: list[str] = []

    def stage(name: str) -> None:
        timings[name] = time.perf_counter()
        if on_stage is not None:
            on_stage(name)

    stage("series")
    bottom = demand_series(usage_daily, target=settings.target)
    history_end: date = bottom["ds"].max()  # type: ignore[assignment]
    events = events if events is not None and settings.events else None
    removed = pl.DataFrame(
        schema={"event_id": pl.String, "name": pl.String, "chip_days_removed": pl.Float64}
    )
    if events is not None and events.height:
        bottom, removed = remove_past_events(bottom, events, history_end)
    hierarchy = build_hierarchy(bottom.select("accelerator", "region", "team").unique())
    history = aggregate(hierarchy, bottom, ("y",))
    nodes = hierarchy.nodes
    stage("engine")
    result = run_series_engine(
        history.select("series_id", "ds", "y"),
        settings,
        freq="1d",
        executor=executor,
        on_progress=on_progress,
    )
    levels = settings.quantiles
    stage("cold start")
    forecast = result.forecast.sort("series_id", "ds")
    forecast, young = cold_start(
        forecast, history, nodes, catalog, levels, min_days=settings.cold_start_days
    )
    stage("events")
    applied = pl.DataFrame(
        schema={"event_id": pl.String, "series_id": pl.String, "expected_chip_days": pl.Float64}
    )
    if events is not None and events.height:
        recent = (
            history.filter(
                pl.col("level") == "team", pl.col("ds") > history_end - timedelta(days=28)
            )
            .group_by("series_id")
            .agg(pl.col("y").mean())
        )
        forecast, applied = apply_future_events(
            forecast,
            nodes,
            events,
            levels,
            n_paths=settings.sample_paths,
            seed=settings.seed,
            team_demand=dict(zip(recent["series_id"], recent["y"], strict=True)),
        )
    stage("reconcile")
    adjustments = pl.DataFrame()
    residuals = _impute_residuals(result.residuals, nodes, history).filter(
        pl.col("residual").is_finite()
    )
    method = settings.reconcile
    if method in ("mint_shrink", "wls_var"):
        without = nodes.height - residuals["series_id"].n_unique()
        if without:
            # A fleet younger than the horizon plus a backtest window has no backtest errors
            # (nor any parent to borrow them from): weights from the hierarchy alone.
            method = "wls_struct"
            notes.append(
                f"{without:,} of {nodes.height:,} series have no backtest errors (the history "
                f"is too short for a backtest window of {settings.horizon:,} days): reconciled "
                f"with wls_struct (structural weights) instead of {settings.reconcile}"
            )
    reconciled_with = method
    if method != "none":
        reconciled = reconcile(
            hierarchy,
            forecast,
            method,  # type: ignore[arg-type]
            residuals=residuals,
            history=history,
            residual_index="step",
        )
        forecast = reconciled.forecast
        adjustments = reconciled.adjustments
        notes.extend(reconciled.warnings)
        reconciled_with = reconciled.method_used
        if reconciled.method_used != method:
            notes.append(f"reconciliation used {reconciled.method_used} instead of {method}")
    stage("level calibration")
    level_table = pl.DataFrame()
    if settings.level_calibration and settings.windows > 0:
        calibrated = _calibrate_levels(
            forecast, result, hierarchy, history, history_end, settings, residuals, method
        )
        forecast, level_table = calibrated.forecast, calibrated.table
        notes.extend(calibrated.notes)
    stage("planning")
    pools = forecast.drop("level", strict=False).join(
        nodes.select("series_id", "level"), on="series_id", how="left"
    )
    pool_ids = nodes.filter(pl.col("level") == "pool")["series_id"].to_list()
    correlation = path_correlation(result.residuals, settings.horizon, series=pool_ids)
    notes.append(
        f"sample paths: day-to-day error correlation {correlation:.4f}, from the pools' "
        "backtest errors"
    )
    planning = planning_periods(
        pools.filter(pl.col("level").is_in(["pool", "accelerator", "fleet"])),
        levels,
        n_paths=settings.sample_paths,
        seed=settings.seed,
        correlation=correlation,
    )
    scenarios = peak_scenarios(
        pools.filter(pl.col("level") == "pool"),
        levels,
        n_scenarios=100,
        seed=settings.seed,
        correlation=correlation,
    )
    stage("done")
    marks = list(timings.items())
    durations = {name: round(marks[i + 1][1] - t, 4) for i, (name, t) in enumerate(marks[:-1])}
    durations.update({f"engine {k}": round(v, 4) for k, v in result.timings.items()})
    keyed = nodes.select("series_id", "level", "accelerator", "region", "team")
    forecast = (
        forecast.drop(
            [c for c in ("level", "accelerator", "region", "team") if c in forecast.columns]
        )
        .join(keyed, on="series_id", how="left")
        .join(young, on="series_id", how="left")
    )
    front = [
        "series_id",
        "level",
        "accelerator",
        "region",
        "team",
        "ds",
        "h",
        "model",
        "cold_start",
    ]
    forecast = forecast.select(*front, pl.exclude(front)).sort("series_id", "ds")
    return FleetForecast(
        forecast=forecast,
        history=history.join(keyed, on=["series_id", "level"], how="left"),
        selection=result.selection.join(keyed, on="series_id", how="left"),
        scores=result.scores,
        fallbacks=result.fallbacks,
        calibration=result.calibration,
        planning=planning.join(keyed, on="series_id", how="left") if planning.height else planning,
        scenarios=scenarios.join(keyed, on="series_id", how="left")
        if scenarios.height
        else scenarios,
        events_applied=applied,
        events_removed=removed,
        cold_start=young,
        adjustments=adjustments,
        level_calibration=level_table,
        notes=tuple(notes),
        timings=durations,
        reconciled_with=reconciled_with,
    )
