"""A global gradient-boosting model: one direct multi-horizon learner for the whole panel.

:class:`GlobalGBM` learns from every series at once. A training example is a triple
(series, origin ``t``, step ``h``) from the history whose origin and target are observed;
the target is ``y[t + h] / scale``, where the scale is the series' mean absolute value over
the last season at the origin, floored at a tenth of its mean up to the origin (examples with
a zero scale, an all-zero past, are left out; such series forecast zero). Features:

- the step ``h`` and the calendar of the target time (hour, weekday, day of month, day of
  year, ISO week, month or quarter, as the frequency calls for);
- known at the origin, divided by the scale: the last value; the seasonal-naive value for the
  target step, ``y[t - m + ((h - 1) mod m) + 1]``, and the mean of that phase over the last
  four seasons; means of the last windows (7/28/91/365 days; 24/168/672/2184 hours; ...,
  NaN when the window reaches before the series' start); the trend (mean of the last 28
  days over the 28 before); the value one year before the target and its mean over a
  season around it (when that time is in the past at the origin); ``log(scale)``;
- each regressor at the target time and at the origin (raw values).

HistGradientBoosting handles the NaN of short series itself. Features with no value in any
example are dropped at fit time.

The model is direct, not recursive: one learner covers every step. Steps beyond the longest
trained step (``max_horizon_``) are fed as that step for the ``h`` feature, while the
calendar, seasonal and regressor features still follow the true target time.

Cost is bounded by construction: at most ``max_train_rows`` examples are drawn (uniformly
over all valid triples, with a seeded generator), so fit time does not grow with the number
of series beyond building features. The mean comes from a squared-error learner. Each level
of ``quantile_levels`` gets a quantile-loss learner, fitted on a seeded subsample of at most
``quantile_train_rows`` examples with fewer, larger boosting steps (scikit-learn's quantile
loss recomputes a percentile per leaf in Python, so ten such learners at the mean's budget
would cost four times the whole fit). Predict receives its levels after the fit, so other
levels are interpolated linearly in the level between the two fitted levels around them;
levels outside the fitted range are extrapolated from the two outermost fitted levels
linearly in the normal score (exact for normal errors).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingRegressor

from models.base import Capabilities, Forecaster
from models.frequency import Frequency
from models.panel import Panel
from models.quantiles import DEFAULT_QUANTILES, validate_quantiles

__all__ = ["GlobalGBM"]

#: A normalised target beyond this many scales is an outlier that would swamp the
#: squared-error learner (a series waking up after a long quiet spell); it is clipped.
_MAX_RATIO = 1_000.0

#: How many past seasons the same-phase mean averages.
_PHASE_SEASONS = 4


@dataclass(frozen=True)
class _FrequencyPlan:
    """What the features look like at one frequency kind."""

    windows: tuple[int, ...]
    annual: int | None
    annual_window: int
    max_horizon: int
    calendar: tuple[str, ...]


_PLANS: dict[str, _FrequencyPlan] = {
    "hourly": _FrequencyPlan((24, 168, 672, 2184), 24 * 365, 24, 336, ("hour", "weekday", "yday")),
    "daily": _FrequencyPlan((7, 28, 91, 365), 365, 7, 180, ("weekday", "mday", "yday", "month")),
    "weekly": _FrequencyPlan((4, 13, 26, 52), 52, 3, 52, ("week", "month")),
    "monthly": _FrequencyPlan((3, 6, 12, 24), 12, 1, 24, ("month",)),
    "quarterly": _FrequencyPlan((2, 4, 8), 4, 1, 8, ("quarter",)),
    "other": _FrequencyPlan((4, 16, 64), None, 1, 32, ("hour", "weekday", "yday", "month")),
}


@contextmanager
def _openmp_threads(limit: int | None) -> Iterator[None]:
    """Limit scikit-learn's OpenMP threads inside (None: leave them alone).

    One thread is the default: the engine runs one worker per core, and on a busy machine
    idle OpenMP threads spinning between boosting iterations cost far more than the work
    (a tiny fit took 38 s with two threads under load and 0.5 s with one).
    """
    if limit is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit, user_api="openmp"):
        yield


class GlobalGBM(Forecaster):
    """Direct multi-horizon gradient boosting over the whole panel (see the module docstring).

    Settings: ``max_horizon`` is the longest step trained (default by frequency: 336 hours,
    180 days, 52 weeks, 24 months, 8 quarters); ``max_train_rows`` caps the training
    examples; ``quantile_levels`` are the levels with their own learner. ``max_iter``,
    ``learning_rate``, ``max_leaf_nodes`` and ``min_samples_leaf`` configure the
    scikit-learn ``HistGradientBoostingRegressor`` of the mean; ``quantile_max_iter``,
    ``quantile_learning_rate`` and ``quantile_train_rows`` those of the quantile learners.
    Early stopping is off; ``seed`` drives the sampling and the learners. ``n_threads``
    limits OpenMP threads during fit and predict (default 1; None leaves them alone).
    """

    name: ClassVar[str] = "gbm"
    capabilities: ClassVar[Capabilities] = Capabilities(
        probabilistic=True, exogenous=True, global_model=True, min_history=2
    )
    check_settings: ClassVar[Mapping[str, Any]] = {
        "max_iter": 15,
        "learning_rate": 0.2,
        "quantile_max_iter": 8,
        "quantile_learning_rate": 0.3,
        "max_train_rows": 3000,
        "quantile_train_rows": 1500,
    }

    def __init__(
        self,
        *,
        season_length: int | None = None,
        seed: int = 0,
        max_horizon: int | None = None,
        max_train_rows: int = 200_000,
        quantile_levels: Sequence[float] = DEFAULT_QUANTILES,
        max_iter: int = 200,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 50,
        quantile_max_iter: int = 60,
        quantile_learning_rate: float = 0.15,
        quantile_train_rows: int = 50_000,
        n_threads: int | None = 1,
    ) -> None:
        super().__init__(season_length=season_length, seed=seed)
        self.max_horizon = max_horizon
        self.n_threads = n_threads
        self.max_train_rows = max_train_rows
        self.quantile_levels = tuple(quantile_levels)
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.quantile_max_iter = quantile_max_iter
        self.quantile_learning_rate = quantile_learning_rate
        self.quantile_train_rows = quantile_train_rows

    # -- fit -------------------------------------------------------------------------
    def _fit_panel(self, panel: Panel) -> None:
        with _openmp_threads(self.n_threads):
            self._fit_learners(panel)

    def _fit_learners(self, panel: Panel) -> None:
        if self.max_train_rows < 1 or self.quantile_train_rows < 1:
            raise ValueError("max_train_rows and quantile_train_rows must be at least 1")
        levels = validate_quantiles(self.quantile_levels)
        if not levels:
            raise ValueError("quantile_levels needs at least one level")
        plan = _PLANS.get(panel.freq.kind, _PLANS["other"])
        n_steps = panel.values.shape[1]
        self.plan_ = plan
        self.max_horizon_ = max(1, min(self.max_horizon or plan.max_horizon, n_steps - 1))
        self.history_ = _History(panel.values, self.season_length_)
        rng = np.random.default_rng(self.seed)

        rows, origins, steps = _sample_triples(
            panel.lengths, n_steps, self.max_horizon_, self.max_train_rows, rng
        )
        targets = rows, origins + steps
        calendar = _calendar_columns(panel.freq, panel.last_ds, range(1 - n_steps, 1), plan)
        target_calendar = {k: v[targets] for k, v in calendar.items()}
        target_regressors = {k: m[targets] for k, m in panel.regressors.items()}
        origin_regressors = {k: m[rows, origins] for k, m in panel.regressors.items()}
        features, scale = self._features(
            rows, origins, steps, target_calendar, target_regressors, origin_regressors
        )
        keep = scale > 0
        # A feature with no value in any example (a 365-step mean on a short panel) says
        # nothing, and scikit-learn cannot bin it: leave it out.
        self.feature_names_ = tuple(
            name for name, column in features.items() if not np.isnan(column[keep]).all()
        )
        x = np.column_stack([features[name][keep] for name in self.feature_names_])
        y = np.clip(panel.values[targets][keep] / scale[keep], -_MAX_RATIO, _MAX_RATIO)
        self.n_train_rows_ = int(keep.sum())

        self.mean_model_ = (
            _fit_quietly(self._learner("squared_error", None), x, y) if y.size else None
        )
        subset = np.arange(y.size)
        if y.size > self.quantile_train_rows:
            subset = np.sort(rng.choice(y.size, self.quantile_train_rows, replace=False))
        self.quantile_models_: dict[float, HistGradientBoostingRegressor] = {}
        if y.size:
            for level in levels:
                model = self._learner("quantile", level)
                self.quantile_models_[level] = _fit_quietly(model, x[subset], y[subset])
        self.fitted_levels_ = levels

    def _learner(self, loss: str, level: float | None) -> HistGradientBoostingRegressor:
        if level is None:
            return HistGradientBoostingRegressor(
                loss=loss,
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                max_leaf_nodes=self.max_leaf_nodes,
                min_samples_leaf=self.min_samples_leaf,
                early_stopping=False,
                random_state=self.seed,
            )
        return HistGradientBoostingRegressor(
            loss=loss,
            quantile=level,
            max_iter=self.quantile_max_iter,
            learning_rate=self.quantile_learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            early_stopping=False,
            random_state=self.seed,
        )

    # -- predict ---------------------------------------------------------------------
    def _predict_panel(
        self,
        horizon: int,
        quantiles: tuple[float, ...],
        future: Mapping[str, np.ndarray],
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        with _openmp_threads(self.n_threads):
            return self._predict_learners(horizon, quantiles, future)

    def _predict_learners(
        self,
        horizon: int,
        quantiles: tuple[float, ...],
        future: Mapping[str, np.ndarray],
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        panel = self.panel_
        n_series, n_steps = panel.values.shape
        rows = np.repeat(np.arange(n_series), horizon)
        steps = np.tile(np.arange(1, horizon + 1), n_series)
        origins = np.full(rows.size, n_steps - 1)
        calendar = _calendar_columns(panel.freq, panel.last_ds, range(1, horizon + 1), self.plan_)
        target_calendar = {k: v[rows, steps - 1] for k, v in calendar.items()}
        target_regressors = {k: future[k][rows, steps - 1] for k in panel.regressors}
        origin_regressors = {k: m[rows, origins] for k, m in panel.regressors.items()}
        features, scale = self._features(
            rows, origins, steps, target_calendar, target_regressors, origin_regressors
        )
        x = np.column_stack([features[name] for name in self.feature_names_])
        shape = (n_series, horizon)
        scale_matrix = scale.reshape(shape)

        def predict(model: HistGradientBoostingRegressor | None) -> np.ndarray:
            if model is None:  # no example had a non-zero scale: repeat the last value
                return np.nan_to_num(features["last"]).reshape(shape) * scale_matrix
            return _predict_quietly(model, x).reshape(shape) * scale_matrix

        mean = predict(self.mean_model_)
        needed = {lvl for q in quantiles for lvl, _ in _level_weights(q, self.fitted_levels_)}
        fitted = {lvl: predict(self.quantile_models_.get(lvl)) for lvl in sorted(needed)}
        out = {
            q: sum(w * fitted[lvl] for lvl, w in _level_weights(q, self.fitted_levels_))
            for q in quantiles
        }
        return mean, {q: np.asarray(v, dtype=float) for q, v in out.items()}

    # -- features --------------------------------------------------------------------
    def _features(
        self,
        rows: np.ndarray,
        origins: np.ndarray,
        steps: np.ndarray,
        target_calendar: Mapping[str, np.ndarray],
        target_regressors: Mapping[str, np.ndarray],
        origin_regressors: Mapping[str, np.ndarray],
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Features of (series, origin, step) triples and the scale of each triple.

        Lags are divided by the scale; rows with a zero scale (an all-zero past, whose lags
        are all zero) keep their lags as they are and are left out of training.
        """
        history = self.history_
        plan = self.plan_
        season = self.season_length_
        scale = history.scale(rows, origins)
        safe = np.where(scale > 0, scale, 1.0)
        features: dict[str, np.ndarray] = {"h": np.minimum(steps, self.max_horizon_)}
        features.update(target_calendar)
        features["level"] = np.log(safe)
        features["last"] = history.value(rows, origins) / safe
        if season > 1:
            seasonal = origins - season + (steps - 1) % season + 1
            features["seasonal_naive"] = history.value(rows, seasonal) / safe
            # The same phase over the last few seasons: the seasonal shape with less noise.
            same_phase = np.stack(
                [history.value(rows, seasonal - k * season) for k in range(_PHASE_SEASONS)]
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN for short series
                features["seasonal_mean"] = np.nanmean(same_phase, axis=0) / safe
        for window in plan.windows:
            features[f"mean_{window}"] = history.window_mean(rows, origins, window) / safe
        trend_window = plan.windows[1]
        recent = history.window_mean(rows, origins, trend_window)
        before = history.window_mean(rows, origins - trend_window, trend_window)
        with np.errstate(divide="ignore", invalid="ignore"):
            features["trend"] = np.where(before > 0, recent / before, np.nan)
        if plan.annual is not None:
            year_ago = origins + steps - plan.annual
            known = year_ago <= origins  # the value one year back is in the past at the origin
            value = history.value(rows, np.where(known, year_ago, -1))
            features["year_ago"] = value / safe
            if plan.annual_window > 1:
                half = plan.annual_window // 2
                end = year_ago + half
                smooth = history.window_mean(
                    rows, np.where(end <= origins, end, -1), plan.annual_window
                )
                features["year_ago_smooth"] = smooth / safe
        for name in target_regressors:
            features[f"{name}_at_target"] = target_regressors[name]
            features[f"{name}_at_origin"] = origin_regressors[name]
        return {k: np.asarray(v, dtype=np.float64) for k, v in features.items()}, scale


def _fit_quietly(
    model: HistGradientBoostingRegressor, x: np.ndarray, y: np.ndarray
) -> HistGradientBoostingRegressor:
    """Fit with scikit-learn's warnings kept local (tests turn warnings into errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(x, y)


def _predict_quietly(model: HistGradientBoostingRegressor, x: np.ndarray) -> np.ndarray:
    """Predict with scikit-learn's warnings kept local."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(model.predict(x), dtype=np.float64)


class _History:
    """Windowed lookups into a right-aligned panel matrix, in O(1) per lookup."""

    def __init__(self, values: np.ndarray, season: int) -> None:
        n_series, n_steps = values.shape
        self.values = values
        self.first = n_steps - (~np.isnan(values)).sum(axis=1)
        zeros = np.zeros((n_series, 1))
        filled = np.nan_to_num(values, nan=0.0)
        self.cumulative = np.hstack([zeros, np.cumsum(filled, axis=1)])
        # Demand is rarely negative: share the sums rather than hold a second matrix.
        self.cumulative_abs = (
            self.cumulative
            if (filled >= 0).all()
            else np.hstack([zeros, np.cumsum(np.abs(filled), axis=1)])
        )
        self.season = max(season, 1)

    def value(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """``y[row, column]``, NaN before the series starts (or at a negative column)."""
        valid = columns >= self.first[rows]
        safe = np.where(valid, columns, self.first[rows])
        return np.where(valid, self.values[rows, safe], np.nan)

    def window_mean(self, rows: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
        """Mean of the ``window`` values ending at column ``end``; NaN unless all observed."""
        starts = ends - window + 1
        valid = (starts >= self.first[rows]) & (ends >= 0)
        safe_end = np.where(valid, ends, 0) + 1
        safe_start = np.where(valid, starts, 0)
        total = self.cumulative[rows, safe_end] - self.cumulative[rows, safe_start]
        return np.where(valid, total / window, np.nan)

    def scale(self, rows: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """Mean |y| over the last season at the origin, floored at 0.1 x the mean so far."""
        first = self.first[rows]
        end = origins + 1
        start = np.maximum(end - self.season, first)
        recent = (self.cumulative_abs[rows, end] - self.cumulative_abs[rows, start]) / (end - start)
        so_far = (self.cumulative_abs[rows, end] - self.cumulative_abs[rows, first]) / (end - first)
        return np.maximum(recent, 0.1 * so_far)


def _sample_triples(
    lengths: np.ndarray,
    n_steps: int,
    max_horizon: int,
    cap: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw up to ``cap`` (series, origin column, step) triples, uniform over valid ones.

    A triple is valid when the origin and the target are both observed. When there are no
    more valid triples than ``cap`` every one is used; otherwise ``cap`` flat indices are
    drawn with replacement and duplicates dropped (so slightly fewer than ``cap`` remain).
    """
    steps = np.arange(1, max_horizon + 1)
    counts = np.maximum(lengths[:, None] - steps[None, :], 0).reshape(-1)
    ends = np.cumsum(counts)
    total = int(ends[-1]) if ends.size else 0
    # Drawing with replacement and dropping duplicates costs O(cap), not O(total).
    flat = np.arange(total) if total <= cap else np.unique(rng.integers(0, total, size=cap))
    cell = np.searchsorted(ends, flat, side="right")
    within = flat - (ends[cell] - counts[cell])
    rows = cell // max_horizon
    step = cell % max_horizon + 1
    origins = (n_steps - lengths[rows]) + within
    return rows, origins, step


def _level_weights(level: float, fitted: tuple[float, ...]) -> list[tuple[float, float]]:
    """Weights on fitted levels whose combination estimates the quantile at ``level``.

    Inside the fitted range: linear in the level between the two neighbours. Outside it:
    linear in the normal score through the two outermost levels on that side.
    """
    if level in fitted or len(fitted) == 1:
        return [(level if level in fitted else fitted[0], 1.0)]
    if fitted[0] < level < fitted[-1]:
        upper = next(i for i, f in enumerate(fitted) if f > level)
        lo, hi = fitted[upper - 1], fitted[upper]
        w = (level - lo) / (hi - lo)
        return [(lo, 1.0 - w), (hi, w)]
    lo, hi = (fitted[0], fitted[1]) if level < fitted[0] else (fitted[-2], fitted[-1])
    z = NormalDist().inv_cdf
    w = (z(level) - z(lo)) / (z(hi) - z(lo))
    return [(lo, 1.0 - w), (hi, w)]


def _calendar_columns(
    freq: Frequency,
    last_ds: Sequence[date | datetime],
    offsets: range,
    plan: _FrequencyPlan,
) -> dict[str, np.ndarray]:
    """Calendar features of each series' steps ``last_ds[i] + offset``: (series, offsets).

    Series mostly share their last timestamp, so each distinct one is stepped only once.
    """
    distinct = sorted(set(last_ds), key=lambda d: (str(type(d)), d))
    group = {d: g for g, d in enumerate(distinct)}
    tables = []
    for anchor in distinct:
        stamps = freq.shifted(anchor, offsets)
        tables.append(_calendar_of(stamps, plan.calendar))
    index = np.array([group[d] for d in last_ds], dtype=np.int64)
    return {
        name: np.stack([t[name] for t in tables])[index] if tables else np.empty((0, len(offsets)))
        for name in plan.calendar
    }


def _calendar_of(stamps: pl.Series, fields: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named calendar fields of timestamps (hour is 0 for dates)."""
    is_datetime = isinstance(stamps.dtype, pl.Datetime)
    exprs = {
        "hour": pl.col("ds").dt.hour() if is_datetime else pl.lit(0),
        "weekday": pl.col("ds").dt.weekday(),
        "mday": pl.col("ds").dt.day(),
        "yday": pl.col("ds").dt.ordinal_day(),
        "week": pl.col("ds").dt.week(),
        "month": pl.col("ds").dt.month(),
        "quarter": pl.col("ds").dt.quarter(),
    }
    frame = pl.DataFrame({"ds": stamps}).select(
        **{name: exprs[name].cast(pl.Float64) for name in fields}
    )
    return {name: frame[name].to_numpy() for name in fields}
