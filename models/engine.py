"""The forecasting engine: backtests, fallbacks, per-series selection, ensemble, calibration.

One engine owns the panel of series (the statsforecast habit); models only see matrices.
For a set of candidate models it

1. runs rolling-origin backtests (``windows`` cutoffs ``step`` apart, the last ending at the
   end of the history) on the same data the forecast uses;
2. falls back, series by series, to the next model of the fallback chain when a fit fails,
   does not converge or explodes (a forecast more than :data:`EXPLOSION_FACTOR` times the
   history's maximum), and records which model was used and why;
3. scores every candidate per series by MASE (seasonal period stated in the result) and adds
   an ensemble of the best candidates weighted by backtest skill: the weights applied to a
   window come from the *other* windows, so the ensemble's backtest score is out of sample;
4. picks per series the candidate with the lowest backtest MASE;
5. calibrates quantiles conformally: for each model, quantile level and horizon bucket, the
   empirical quantile of the scaled backtest errors ``(y - q) / scale`` is added (times the
   series' scale) to that model's final quantile, so a nominal 90% interval covers 90% of
   outcomes like those of the backtest.

The work is split into chunks of series that run through ``map_fn`` (any ``map``-like
callable: the built-in ``map``, a process pool, a Dask client), so a cluster executor plugs
in without the engine knowing. Chunks return compact results; selection happens inside a
chunk and calibration, which pools all series, happens here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from models.base import Forecaster, create
from models.frames import LongFrameError
from models.panel import Panel, forecast_frame, sanitize_forecasts
from models.quantiles import DEFAULT_QUANTILES, quantile_column, validate_quantiles

__all__ = [
    "DEFAULT_CANDIDATES",
    "DEFAULT_FALLBACK",
    "EXPLOSION_FACTOR",
    "QUANTILE_EXPLOSION_FACTOR",
    "ChunkResult",
    "EngineConfig",
    "EngineResult",
    "backtest_cutoffs",
    "forecast_rows",
    "run_chunk",
    "run_engine",
]

#: Candidates of the automatic selection: fast, vectorised models plus the global GBM.
DEFAULT_CANDIDATES: tuple[str, ...] = ("seasonal_naive", "naive2", "theta", "ets", "gbm")
#: Where a failed model falls back to, in order (the first that fits the series is used).
DEFAULT_FALLBACK: tuple[str, ...] = ("theta", "seasonal_naive", "naive")
LAST_VALUE = "last_value"
"""What a series too short for every fallback model is forecast with (its last value)."""
#: A forecast above this multiple of the history's maximum counts as exploded.
EXPLOSION_FACTOR = 10.0
#: An upper quantile above this multiple of the history's maximum counts as exploded too
#: (a log-scale trend's variance can compound to absurd tails while the mean stays sane).
QUANTILE_EXPLOSION_FACTOR = 100.0
ENSEMBLE = "ensemble"
#: At most this many series per chunk contribute errors to the conformal calibration pool.
CALIBRATION_SAMPLE = 400

MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]


@dataclass(frozen=True)
class EngineConfig:
    """Settings of one engine run (frozen: a run's manifest records it)."""

    horizon: int
    models: tuple[str, ...] = DEFAULT_CANDIDATES
    windows: int = 3
    step: int | None = None
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    fallback: tuple[str, ...] = DEFAULT_FALLBACK
    ensemble: bool = True
    ensemble_size: int = 2
    calibrate: bool = True
    horizon_buckets: int = 6
    selection: str = "best"
    seed: int = 0
    season_length: int | None = None
    model_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon must be at least 1 step, got {self.horizon}")
        if self.windows < 0:
            raise ValueError(f"windows must be 0 or more, got {self.windows}")
        if not self.models:
            raise ValueError("give at least one model")
        if self.selection not in ("best", "ensemble"):
            raise ValueError(f"selection must be 'best' or 'ensemble', got '{self.selection}'")
        object.__setattr__(self, "quantiles", validate_quantiles(self.quantiles))

    @property
    def window_step(self) -> int:
        """Steps between backtest cutoffs (default: the horizon, so windows do not overlap)."""
        return self.step or self.horizon

    def bucket_of(self, h: np.ndarray) -> np.ndarray:
        """Horizon bucket (0-based) of 1-based steps: equal-width buckets over the horizon."""
        width = math.ceil(self.horizon / max(1, min(self.horizon_buckets, self.horizon)))
        return np.minimum((np.asarray(h) - 1) // width, self.horizon_buckets - 1)

    def make(self, name: str) -> Forecaster:
        """Build a candidate with its settings, the run's seed and season length."""
        settings = dict(self.model_settings.get(name, {}))
        settings.setdefault("seed", self.seed)
        if self.season_length is not None:
            settings.setdefault("season_length", self.season_length)
        return create(name, **settings)


def backtest_cutoffs(config: EngineConfig) -> list[int]:
    """Steps removed from the end of the history for each window, oldest window first."""
    return [
        config.horizon + (config.windows - 1 - k) * config.window_step
        for k in range(config.windows)
    ]


# --------------------------------------------------------------------------------------
# Fitting with fallback
# --------------------------------------------------------------------------------------
@dataclass
class _Forecasts:
    """Forecast matrices for rows of a panel, and which model produced each row."""

    mean: np.ndarray
    quantiles: dict[float, np.ndarray]
    used: np.ndarray  # model name per row (object array)
    reasons: dict[int, str]


def _seasonal_scale(values: np.ndarray, lengths: np.ndarray, season: int) -> np.ndarray:
    """In-sample seasonal-naive MAE of each right-aligned row (the MASE denominator).

    Falls back to the 1-step naive MAE, then the mean level, then 1.0, so it is never 0.
    """
    scale = np.ones(values.shape[0])
    with np.errstate(invalid="ignore"):
        for lag in (season, 1):
            if values.shape[1] <= lag:
                continue
            diffs = np.abs(values[:, lag:] - values[:, :-lag])
            counts = (~np.isnan(diffs)).sum(axis=1)
            sums = np.nansum(diffs, axis=1)
            candidate = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
            missing = (scale == 1.0) & (candidate > 0)
            scale = np.where(missing, candidate, scale)
        level = _nanmean(np.abs(values), axis=1)
    unresolved = (scale == 1.0) & np.isfinite(level) & (level > 0)
    return np.where(unresolved, level, scale)


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean ignoring NaN; NaN (without a warning) where a slice has no value."""
    present = ~np.isnan(values)
    counts = present.sum(axis=axis)
    sums = np.where(present, values, 0.0).sum(axis=axis)
    return np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)


def _exploded(mean: np.ndarray, history: np.ndarray, upper: np.ndarray | None = None) -> np.ndarray:
    """Rows whose forecast is not finite or beyond a multiple of the history's maximum.

    The mean may not exceed EXPLOSION_FACTOR x that maximum, the ``upper`` quantile not
    QUANTILE_EXPLOSION_FACTOR x it.

    Rows already NaN (a model's reported failure) are left to their recorded reason.
    """
    failed = np.isnan(mean).all(axis=1)
    top = np.maximum(np.max(np.where(np.isnan(history), 0.0, np.abs(history)), axis=1), 1e-9)
    peak = np.max(np.where(np.isnan(mean), -np.inf, mean), axis=1)
    exploded = ~np.isfinite(mean).all(axis=1) | (peak > EXPLOSION_FACTOR * top)
    if upper is not None:
        tail = np.max(np.where(np.isnan(upper), -np.inf, upper), axis=1)
        exploded |= (tail > QUANTILE_EXPLOSION_FACTOR * top) | np.isposinf(upper).any(axis=1)
    return ~failed & exploded


def _fit_predict(
    model: Forecaster,
    panel: Panel,
    horizon: int,
    levels: tuple[float, ...],
    future: Mapping[str, np.ndarray] | None,
) -> tuple[np.ndarray, dict[float, np.ndarray], dict[int, str]]:
    """Fit on the rows long enough for the model; return NaN rows and reasons for the rest."""
    n = panel.n_series
    mean = np.full((n, horizon), np.nan)
    qs = {q: np.full((n, horizon), np.nan) for q in levels}
    reasons: dict[int, str] = {}
    need = model.capabilities.min_length(panel.freq)
    rows = np.flatnonzero(panel.lengths >= need)
    for i in np.flatnonzero(panel.lengths < need):
        reasons[int(i)] = f"needs {need} observations, has {int(panel.lengths[i])}"
    if rows.size == 0:
        return mean, qs, reasons
    sub = panel if rows.size == n else panel.subset(rows)
    sub_future = None
    if future is not None and model.capabilities.exogenous:
        sub_future = {k: v[rows] for k, v in future.items()}
    try:
        model.fit_panel(sub)
        result = model.predict_panel(horizon, levels, future_regressors=sub_future)
    except Exception as exc:  # a model's failure is data for the fallback, not a crash
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        for i in rows:
            reasons[int(i)] = reason
        return mean, qs, reasons
    mean[rows] = result.mean
    for q in levels:
        if q in result.quantiles:
            qs[q][rows] = result.quantiles[q]
    index = {sid: int(rows[j]) for j, sid in enumerate(sub.series_ids)}
    for sid, why in getattr(model, "failures_", {}).items():
        reasons[index[sid]] = why
        mean[index[sid]] = np.nan
    highest = max(levels) if levels else None
    upper = qs[highest][rows] if highest is not None and highest > 0.5 else None
    exploded = _exploded(mean[rows], sub.values, upper)
    for row in rows[exploded].tolist():
        if row not in reasons:
            top = float(np.nanmax(panel.series(row)))
            peak = float(np.nanmax(mean[row]))
            if upper is not None and peak <= EXPLOSION_FACTOR * top:
                tail = float(np.nanmax(qs[highest][row]))  # type: ignore[index]
                reasons[row] = (
                    f"forecast exploded (quantile {highest:g} up to {tail:.4g} vs history "
                    f"{top:.4g})"
                )
            else:
                reasons[row] = f"forecast exploded (max {peak:.4g} vs history {top:.4g})"
    return mean, qs, reasons


def forecast_rows(
    name: str,
    config: EngineConfig,
    panel: Panel,
    future: Mapping[str, np.ndarray] | None = None,
    timings: dict[str, float] | None = None,
) -> _Forecasts:
    """Forecast every row of ``panel`` with model ``name`` and the fallback chain."""
    return _forecast_with_fallback(
        name, config, panel, config.quantiles, future, {} if timings is None else timings
    )


def _forecast_with_fallback(
    name: str,
    config: EngineConfig,
    panel: Panel,
    levels: tuple[float, ...],
    future: Mapping[str, np.ndarray] | None,
    timings: dict[str, float],
) -> _Forecasts:
    """Forecast every row with ``name``, falling back along ``config.fallback``."""
    n = panel.n_series
    out = _Forecasts(
        np.full((n, config.horizon), np.nan),
        {q: np.full((n, config.horizon), np.nan) for q in levels},
        np.full(n, None, dtype=object),
        {},
    )
    pending = np.arange(n)
    chain = [name, *[m for m in config.fallback if m != name]]
    for model_name in chain:
        if pending.size == 0:
            break
        sub = panel if pending.size == n else panel.subset(pending)
        sub_future = None if future is None else {k: v[pending] for k, v in future.items()}
        started = time.perf_counter()
        mean, qs, reasons = _fit_predict(
            config.make(model_name), sub, config.horizon, levels, sub_future
        )
        timings[model_name] = timings.get(model_name, 0.0) + time.perf_counter() - started
        failed = np.array(sorted(reasons), dtype=np.int64)
        ok = np.setdiff1d(np.arange(pending.size), failed)
        rows = pending[ok]
        out.mean[rows] = mean[ok]
        for q in levels:
            out.quantiles[q][rows] = qs[q][ok]
        out.used[rows] = model_name
        for j in failed:
            i = int(pending[j])
            prefix = out.reasons.get(i)
            note = f"{model_name}: {reasons[int(j)]}"
            out.reasons[i] = f"{prefix}; {note}" if prefix else note
        pending = pending[failed]
    # A series too short for every model in the chain (one observation) still gets a
    # forecast: its last value, flat and certain, and the reason says so.
    for i in pending.tolist():
        observed = panel.series(int(i))
        finite = observed[np.isfinite(observed)]
        level = float(finite[-1]) if finite.size else 0.0
        out.mean[i] = level
        for q in levels:
            out.quantiles[q][i] = level
        out.used[i] = LAST_VALUE
        note = f"{LAST_VALUE}: no model fits this few observations; the last one is repeated"
        out.reasons[i] = f"{out.reasons[i]}; {note}" if i in out.reasons else note
    return out


# --------------------------------------------------------------------------------------
# One chunk of series: backtests, selection, ensemble, final forecasts
# --------------------------------------------------------------------------------------
@dataclass
class ChunkResult:
    """What one chunk of series sends back: small enough to pickle across processes."""

    series_ids: tuple[str, ...]
    mean: np.ndarray  # final forecast of the chosen model, raw quantiles below
    quantiles: dict[float, np.ndarray]
    chosen: np.ndarray  # chosen candidate per series (object array)
    produced_by: np.ndarray  # model that produced the final forecast (after fallback)
    scale: np.ndarray  # MASE scale of the full history per series
    scores: pl.DataFrame  # series_id, model, cutoff, mase, smape, coverage...
    fallbacks: pl.DataFrame  # series_id, stage, requested, used, reason
    errors: dict[tuple[str, str], dict[float, np.ndarray]]  # (group, model) -> level -> errors
    groups: np.ndarray  # calibration group of each series
    timings: dict[str, float]
    weights: pl.DataFrame  # series_id, model, weight (ensemble members)
    residuals: np.ndarray  # chosen candidate's backtest errors, windows side by side


def _ensemble_weights(mase: np.ndarray, size: int) -> np.ndarray:
    """Inverse-MASE weights over the ``size`` best finite candidates of each row."""
    weights = np.zeros_like(mase)
    finite = np.isfinite(mase)
    ranked = np.argsort(np.where(finite, mase, np.inf), axis=1)[:, :size]
    rows = np.arange(mase.shape[0])[:, None]
    chosen = mase[rows, ranked]
    inverse = np.where(np.isfinite(chosen), 1.0 / np.maximum(chosen, 1e-6), 0.0)
    total = inverse.sum(axis=1, keepdims=True)
    np.put_along_axis(
        weights, ranked, np.divide(inverse, total, out=np.zeros_like(inverse), where=total > 0), 1
    )
    return weights


def _combine(
    weights: np.ndarray, means: list[np.ndarray], qs: list[dict[float, np.ndarray]]
) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """Weighted mean of forecasts and of quantiles (quantile averaging), NaN-safe."""
    stacked = np.stack(means)  # (models, series, horizon)
    w = weights.T[:, :, None] * np.isfinite(stacked)
    total = w.sum(axis=0)
    mean = np.where(
        total > 0,
        np.nansum(np.nan_to_num(stacked) * w, axis=0) / np.where(total > 0, total, 1),
        np.nan,
    )
    out = {}
    for q in qs[0]:
        sq = np.stack([m[q] for m in qs])
        wq = weights.T[:, :, None] * np.isfinite(sq)
        tq = wq.sum(axis=0)
        out[q] = np.where(
            tq > 0, np.nansum(np.nan_to_num(sq) * wq, axis=0) / np.where(tq > 0, tq, 1), np.nan
        )
    return mean, out


ChunkTask = tuple[Panel, EngineConfig, dict[str, np.ndarray] | None, np.ndarray]


def run_chunk(task: ChunkTask) -> ChunkResult:
    """Backtest, select and forecast one chunk of series (runs in a worker)."""
    panel, config, future, groups = task
    levels = config.quantiles
    season = config.season_length or panel.freq.season_length
    names = list(config.models)
    n, horizon = panel.n_series, config.horizon
    timings: dict[str, float] = {}
    fallback_rows: list[dict[str, Any]] = []
    score_parts: list[pl.DataFrame] = []
    cutoffs = backtest_cutoffs(config)
    n_models = len(names)
    # abs errors summed per (model, window, series) and counted, for MASE per window
    window_mase = np.full((n_models, len(cutoffs), n), np.nan)
    bt_mean: list[list[np.ndarray]] = [[] for _ in names]
    bt_qs: list[list[dict[float, np.ndarray]]] = [[] for _ in names]
    actuals: list[np.ndarray] = []
    scales: list[np.ndarray] = []
    rng = np.random.default_rng(config.seed)
    # Calibration errors come from up to CALIBRATION_SAMPLE series of each group.
    samples = {
        str(group): np.sort(rng.permutation(members)[:CALIBRATION_SAMPLE])
        for group in np.unique(groups)
        for members in [np.flatnonzero(groups == group)]
    }

    for w, removed in enumerate(cutoffs):
        train, rows = panel.truncate(removed, min_length=2)
        end = panel.values.shape[1] - removed
        actual = np.full((n, horizon), np.nan)
        scale = np.full(n, np.nan)
        if rows.size:  # else no series is long enough for this window
            actual[rows] = panel.values[rows, end : end + horizon]
            scale[rows] = _seasonal_scale(train.values, train.lengths, season)
        train_future = None
        if panel.regressors and rows.size:
            train_future = {k: v[rows, end : end + horizon] for k, v in panel.regressors.items()}
        actuals.append(actual)
        scales.append(scale)
        for m, name in enumerate(names):
            mean = np.full((n, horizon), np.nan)
            qs = {q: np.full((n, horizon), np.nan) for q in levels}
            if rows.size:
                result = _forecast_with_fallback(name, config, train, levels, train_future, timings)
                mean[rows] = result.mean
                for q in levels:
                    qs[q][rows] = result.quantiles[q]
                for j, why in result.reasons.items():
                    fallback_rows.append(
                        {
                            "series_id": train.series_ids[j],
                            "stage": f"backtest window {w + 1}",
                            "requested": name,
                            "used": result.used[j],
                            "reason": why,
                        }
                    )
            bt_mean[m].append(mean)
            bt_qs[m].append(qs)
            with np.errstate(invalid="ignore"):
                window_mase[m, w] = _nanmean(np.abs(actual - mean), axis=1) / scale

    # Ensemble: weights for window w come from the other windows (out of sample).
    total_mase = _nanmean(window_mase, axis=1).T if cutoffs else np.full((n, n_models), np.nan)
    candidates = list(names)
    if config.ensemble and n_models > 1:
        ens_window = np.full((len(cutoffs), n), np.nan)
        ens_mean_w: list[np.ndarray] = []
        ens_qs_w: list[dict[float, np.ndarray]] = []
        for w in range(len(cutoffs)):
            others = [k for k in range(len(cutoffs)) if k != w]
            if others:
                with np.errstate(invalid="ignore"):
                    loo = _nanmean(window_mase[:, others], axis=1).T
            else:
                loo = np.ones((n, n_models))
            weights = _ensemble_weights(loo, config.ensemble_size)
            mean, qs = _combine(
                weights,
                [bt_mean[m][w] for m in range(n_models)],
                [bt_qs[m][w] for m in range(n_models)],
            )
            ens_mean_w.append(mean)
            ens_qs_w.append(qs)
            with np.errstate(invalid="ignore"):
                ens_window[w] = _nanmean(np.abs(actuals[w] - mean), axis=1) / scales[w]
        bt_mean.append(ens_mean_w)
        bt_qs.append(ens_qs_w)
        window_mase = np.concatenate([window_mase, ens_window[None]], axis=0)
        with np.errstate(invalid="ignore"):
            total_mase = _nanmean(window_mase, axis=1).T
        candidates.append(ENSEMBLE)

    # Selection: lowest backtest MASE. A series too short for any backtest window takes a
    # robust default: Theta (the M4 benchmark winner among the simple methods) when it is a
    # candidate, else ETS, else the first candidate.
    ranked = np.where(np.isfinite(total_mase), total_mase, np.inf)
    choice = np.argmin(ranked, axis=1)
    default = next((candidates.index(m) for m in ("theta", "ets") if m in candidates), 0)
    choice = np.where(np.isinf(ranked).all(axis=1), default, choice)
    if config.selection == "ensemble" and ENSEMBLE in candidates:
        choice = np.full(n, candidates.index(ENSEMBLE))
    chosen = np.array([candidates[c] for c in choice], dtype=object)

    # Backtest errors of each series' chosen candidate, every window side by side.
    residuals = np.full((n, len(cutoffs) * horizon), np.nan)
    for w in range(len(cutoffs)):
        for c in range(len(candidates)):
            rows_c = choice == c
            residuals[rows_c, w * horizon : (w + 1) * horizon] = (
                actuals[w][rows_c] - bt_mean[c][w][rows_c]
            )

    # Scores per series, model and window (raw quantiles: calibration comes later).
    for m, name in enumerate(candidates):
        for w, removed in enumerate(cutoffs):
            score_parts.append(
                pl.DataFrame(
                    {
                        "series_id": list(panel.series_ids),
                        "model": name,
                        "window": w + 1,
                        "steps_before_end": removed,
                        "mase": window_mase[m, w],
                    },
                    schema_overrides={"mase": pl.Float64},
                ).with_columns(pl.col("mase").fill_nan(None))  # no window: null, not NaN
            )

    # Conformal errors of each candidate, for a sample of series of each group.
    errors: dict[tuple[str, str], dict[float, np.ndarray]] = {}
    for group, sample in samples.items():
        for m, name in enumerate(candidates):
            per_level: dict[float, np.ndarray] = {}
            for q in levels:
                stacked = (
                    np.stack(
                        [
                            (actuals[w][sample] - bt_qs[m][w][q][sample]) / scales[w][sample, None]
                            for w in range(len(cutoffs))
                        ]
                    )
                    if cutoffs
                    else np.empty((0, sample.size, horizon))
                )
                per_level[q] = stacked.reshape(-1, horizon).astype(np.float32)
            errors[(group, name)] = per_level

    # Final forecasts: each model on the full history for the series that chose it.
    final_mean = np.full((n, horizon), np.nan)
    final_qs = {q: np.full((n, horizon), np.nan) for q in levels}
    produced_by = np.full(n, None, dtype=object)
    needed = set(chosen.tolist())
    weights_final = np.zeros((n, n_models))
    if ENSEMBLE in needed:
        weights_final = _ensemble_weights(total_mase[:, :n_models], config.ensemble_size)
        members = np.flatnonzero(chosen == ENSEMBLE)
        for member in np.flatnonzero(weights_final[members].sum(axis=0) > 0).tolist():
            needed.add(names[member])
    final_by_model: dict[str, _Forecasts] = {}
    for name in names:
        if name not in needed:
            continue
        rows = np.flatnonzero(
            (chosen == name) | ((chosen == ENSEMBLE) & (weights_final[:, names.index(name)] > 0))
        )
        sub = panel.subset(rows)
        sub_future = None if future is None else {k: v[rows] for k, v in future.items()}
        result = _forecast_with_fallback(name, config, sub, levels, sub_future, timings)
        full = _Forecasts(
            np.full((n, horizon), np.nan),
            {q: np.full((n, horizon), np.nan) for q in levels},
            np.full(n, None, dtype=object),
            {},
        )
        full.mean[rows] = result.mean
        for q in levels:
            full.quantiles[q][rows] = result.quantiles[q]
        full.used[rows] = result.used
        for j, why in result.reasons.items():
            fallback_rows.append(
                {
                    "series_id": sub.series_ids[j],
                    "stage": "final",
                    "requested": name,
                    "used": result.used[j],
                    "reason": why,
                }
            )
        final_by_model[name] = full
        own = rows[chosen[rows] == name]
        final_mean[own] = full.mean[own]
        for q in levels:
            final_qs[q][own] = full.quantiles[q][own]
        produced_by[own] = full.used[own]
    if ENSEMBLE in needed:
        members = np.flatnonzero(chosen == ENSEMBLE)
        blank = np.full((n, horizon), np.nan)
        means = [final_by_model[nm].mean if nm in final_by_model else blank for nm in names]
        qss = [
            final_by_model[nm].quantiles if nm in final_by_model else {q: blank for q in levels}
            for nm in names
        ]
        mean, qs = _combine(weights_final, means, qss)
        final_mean[members] = mean[members]
        for q in levels:
            final_qs[q][members] = qs[q][members]
        produced_by[members] = ENSEMBLE
    weight_rows = [
        (panel.series_ids[i], names[m], float(weights_final[i, m]))
        for i in np.flatnonzero(chosen == ENSEMBLE)
        for m in range(n_models)
        if weights_final[i, m] > 0
    ]
    weights_frame = pl.DataFrame(
        weight_rows,
        schema={"series_id": pl.String, "model": pl.String, "weight": pl.Float64},
        orient="row",
    )
    fallbacks = pl.DataFrame(
        fallback_rows,
        schema={
            "series_id": pl.String,
            "stage": pl.String,
            "requested": pl.String,
            "used": pl.String,
            "reason": pl.String,
        },
    )
    return ChunkResult(
        series_ids=panel.series_ids,
        mean=final_mean,
        quantiles=final_qs,
        chosen=chosen,
        produced_by=produced_by,
        scale=_seasonal_scale(panel.values, panel.lengths, season),
        scores=pl.concat(score_parts) if score_parts else pl.DataFrame(),
        fallbacks=fallbacks,
        errors=errors,
        timings=timings,
        weights=weights_frame,
        residuals=residuals,
        groups=groups,
    )


# --------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineResult:
    """Outputs of an engine run, as long frames."""

    forecast: pl.DataFrame  # series_id, ds, h, model, mean, p..
    selection: pl.DataFrame  # series_id, model, produced_by, backtest_mase
    scores: pl.DataFrame  # series_id, model, window, steps_before_end, mase
    fallbacks: pl.DataFrame  # series_id, stage, requested, used, reason
    calibration: pl.DataFrame  # model, level, horizon_bucket, correction, n_errors
    ensemble_weights: pl.DataFrame  # series_id, model, weight
    residuals: pl.DataFrame  # series_id, step, residual: the chosen models' backtest errors
    timings: dict[str, float]
    season_length: int


def _chunks(n: int, n_chunks: int) -> list[np.ndarray]:
    return [c for c in np.array_split(np.arange(n), max(1, min(n, n_chunks))) if c.size]


def _calibration(
    results: Sequence[ChunkResult], config: EngineConfig
) -> tuple[dict[tuple[str, str], dict[float, np.ndarray]], pl.DataFrame]:
    """Per group, model, level and horizon bucket: the level-quantile of scaled errors."""
    buckets = config.bucket_of(np.arange(1, config.horizon + 1))
    corrections: dict[tuple[str, str], dict[float, np.ndarray]] = {}
    rows: list[tuple[str, str, float, int, float, int]] = []
    keys = {key for r in results for key in r.errors}
    for key in sorted(keys):
        corrections[key] = {}
        for q in config.quantiles:
            pooled = np.concatenate([r.errors[key][q] for r in results if key in r.errors], axis=0)
            per_step = np.zeros(config.horizon)
            for b in np.unique(buckets):
                values = pooled[:, buckets == b].reshape(-1)
                values = values[np.isfinite(values)]
                correction = float(np.quantile(values, q)) if values.size >= 20 else 0.0
                per_step[buckets == b] = correction
                rows.append((*key, q, int(b) + 1, correction, int(values.size)))
            corrections[key][q] = per_step
    frame = pl.DataFrame(
        rows,
        schema={
            "group": pl.String,
            "model": pl.String,
            "level": pl.Float64,
            "horizon_bucket": pl.Int32,
            "correction": pl.Float64,
            "n_errors": pl.Int64,
        },
        orient="row",
    )
    return corrections, frame


def run_engine(
    panel: Panel,
    config: EngineConfig,
    *,
    map_fn: MapFn = map,
    n_chunks: int = 1,
    future: Mapping[str, np.ndarray] | None = None,
    on_chunk_done: Callable[[int], None] | None = None,
    groups: Mapping[str, str] | None = None,
) -> EngineResult:
    """Backtest, select, forecast and calibrate every series of ``panel``.

    ``groups`` maps series ids to calibration groups (levels of a hierarchy, say): errors
    are pooled per group, so each group's intervals are calibrated on its own kind of
    series. Without it all series form one group.

    ``map_fn`` runs the chunks (``map`` for in-process, an executor's ``map`` otherwise);
    ``on_chunk_done`` is called with the number of series of each finished chunk (progress).
    ``future`` holds regressor values for the forecast steps, (series, horizon) per name.
    """
    if panel.n_series == 0:
        raise LongFrameError("no series to forecast")
    for name in config.models:
        config.make(name)  # unknown names fail here, before any work
    chunks = _chunks(panel.n_series, n_chunks)
    labels = np.array(
        [(groups or {}).get(sid, "all") for sid in panel.series_ids], dtype=object
    ).astype(str)
    tasks: list[ChunkTask] = [
        (
            panel.subset(rows),
            config,
            None if future is None else {k: np.asarray(v)[rows] for k, v in future.items()},
            labels[rows],
        )
        for rows in chunks
    ]
    results: list[ChunkResult] = []
    for result in map_fn(run_chunk, tasks):
        results.append(result)
        if on_chunk_done is not None:
            on_chunk_done(len(result.series_ids))
    return _assemble(panel, config, results)


def _assemble(panel: Panel, config: EngineConfig, results: Sequence[ChunkResult]) -> EngineResult:
    levels = config.quantiles
    corrections, calibration = (
        _calibration(results, config) if config.calibrate else ({}, pl.DataFrame())
    )
    order = {sid: i for i, sid in enumerate(panel.series_ids)}
    n, horizon = panel.n_series, config.horizon
    mean = np.full((n, horizon), np.nan)
    qs = {q: np.full((n, horizon), np.nan) for q in levels}
    chosen = np.full(n, None, dtype=object)
    produced = np.full(n, None, dtype=object)
    timings: dict[str, float] = {}
    for r in results:
        rows = np.array([order[s] for s in r.series_ids])
        mean[rows] = r.mean
        chosen[rows] = r.chosen
        produced[rows] = r.produced_by
        for q in levels:
            raw = r.quantiles[q]
            if corrections:
                shift = (
                    np.stack(
                        [
                            corrections.get((str(g), str(c)), {}).get(q, np.zeros(horizon))
                            for g, c in zip(r.groups, r.chosen, strict=True)
                        ]
                    )
                    if len(r.chosen)
                    else np.zeros((0, horizon))
                )
                raw = raw + r.scale[:, None] * shift
            qs[q][rows] = raw
        for k, v in r.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    mean, qs = sanitize_forecasts(mean, qs)
    forecast = forecast_frame(panel, mean, qs).with_columns(
        model=pl.Series(np.repeat(chosen.astype(str), horizon))
    )
    forecast = forecast.select(
        "series_id", "ds", "h", "model", "mean", *[quantile_column(q) for q in levels]
    )
    scores = (
        pl.concat([r.scores for r in results if r.scores.height]) if results else pl.DataFrame()
    )
    best = (
        scores.group_by("series_id", "model").agg(pl.col("mase").mean().alias("backtest_mase"))
        if scores.height
        else pl.DataFrame(
            schema={"series_id": pl.String, "model": pl.String, "backtest_mase": pl.Float64}
        )
    )
    selection = pl.DataFrame(
        {
            "series_id": list(panel.series_ids),
            "model": chosen.astype(str),
            "produced_by": produced.astype(str),
        }
    ).join(best, on=["series_id", "model"], how="left")
    return EngineResult(
        forecast=forecast,
        selection=selection,
        scores=scores,
        fallbacks=pl.concat([r.fallbacks for r in results]),
        calibration=calibration,
        ensemble_weights=pl.concat([r.weights for r in results]),
        residuals=_residual_frame(results),
        timings=timings,
        season_length=config.season_length or panel.freq.season_length,
    )


def _residual_frame(results: Sequence[ChunkResult]) -> pl.DataFrame:
    parts = []
    for r in results:
        n, width = r.residuals.shape
        parts.append(
            pl.DataFrame(
                {
                    "series_id": np.repeat(np.array(r.series_ids, dtype=str), width),
                    "step": np.tile(np.arange(width, dtype=np.int32), n),
                    "residual": r.residuals.reshape(-1),
                }
            )
        )
    return pl.concat(parts) if parts else pl.DataFrame()
