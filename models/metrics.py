"""Forecast accuracy metrics over long forecast frames, one row per group.

A forecast (evaluation) frame has one row per series, forecast origin and time step:
``series_id``, ``ds``, the actual ``y``, the point forecast ``mean`` and quantile columns
named by :func:`models.quantiles.quantile_column` (``p05``, ``p50``, ``p97_5``, ...),
optionally ``cutoff`` (the origin of a backtest window), ``h`` (the 1-based horizon step)
and ``model``. Every metric takes column names as keyword arguments and returns one row per
group of the ``by`` keys (by default one per ``series_id``; pass
``("model", "series_id", "cutoff")`` or add a :func:`horizon_buckets` column to split
further, or ``()`` for a single overall row), sorted by those keys.

Promises shared by every metric:

* Missing or non-numeric columns raise :class:`~models.frames.LongFrameError` naming them.
* A row whose actual or whose forecast used by the metric is null or NaN is not scored; the
  other rows of its group still are. A group with no scored row is kept and gets null
  metrics. Infinite values are scored, so a broken forecast shows up as ``inf``.
* Scaled metrics (:func:`mase`, :func:`rmsse`, scaled :func:`pinball_loss`) divide each row
  by the scale of its own series (and cutoff, when the scale has one) before averaging, so a
  group spanning several series averages comparable numbers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Literal

import polars as pl

from models.frames import LongFrameError
from models.quantiles import (
    interval_bounds,
    quantile_column,
    quantile_from_column,
    validate_quantiles,
)

__all__ = [
    "DEFAULT_METRICS",
    "HORIZON_BUCKET_COL",
    "SCALE_COL",
    "bias",
    "evaluate",
    "horizon_buckets",
    "interval_coverage",
    "interval_width",
    "mase",
    "pinball_loss",
    "quantile_columns",
    "rmsse",
    "seasonal_scale",
    "smape",
    "wape",
]

#: Name of the scale column :func:`seasonal_scale` writes and the scaled metrics read.
SCALE_COL = "scale"
#: Name of the column :func:`horizon_buckets` adds.
HORIZON_BUCKET_COL = "horizon_bucket"
#: Metrics :func:`evaluate` computes unless told otherwise.
DEFAULT_METRICS: tuple[str, ...] = (
    "mase",
    "rmsse",
    "wape",
    "smape",
    "pinball",
    "coverage",
    "width",
    "bias",
)
_KNOWN_METRICS: tuple[str, ...] = (*DEFAULT_METRICS, "scaled_pinball")

# Internal names of the scale columns joined onto the rows; the double underscore keeps them
# clear of any column a caller might have.
_MAE_SCALE = "__mae_scale"
_MSE_SCALE = "__mse_scale"
_SCALE_SOURCE = "scale_source"

ScaleKind = Literal["mae", "mse"]


# --- validation ---------------------------------------------------------------------------


def _require(frame: pl.DataFrame, columns: Iterable[str], *, what: str = "frame") -> None:
    """Raise naming every column of ``columns`` the frame lacks."""
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise LongFrameError(
            f"{what} is missing column(s) {', '.join(missing)}; "
            f"it has {', '.join(frame.columns) or 'no columns'}"
        )


def _require_numeric(frame: pl.DataFrame, columns: Iterable[str], *, what: str = "frame") -> None:
    """Raise naming the first of ``columns`` that is not numeric."""
    for column in columns:
        dtype = frame.schema[column]
        if not (dtype.is_numeric() or dtype == pl.Null):
            raise LongFrameError(f"{what} column '{column}' must be numeric, got {dtype}")


def _check(
    frame: pl.DataFrame, by: Sequence[str], values: Sequence[str], *, what: str = "frame"
) -> list[str]:
    """Check the key and value columns of a metric and return the keys as a list."""
    keys = list(by)
    _require(frame, [*keys, *values], what=what)
    _require_numeric(frame, values, what=what)
    return keys


def quantile_columns(frame: pl.DataFrame) -> list[str]:
    """Return the frame's quantile columns (``p05``, ``p97_5``, ...) in increasing level.

    A column counts only if it is exactly the name :func:`models.quantiles.quantile_column`
    gives its level, so ``pred`` or ``p0`` are not mistaken for quantiles.
    """
    found: list[tuple[float, str]] = []
    for column in frame.columns:
        try:
            level = quantile_from_column(column)
            if quantile_column(level) == column:
                found.append((level, column))
        except ValueError:
            continue
    return [column for _, column in sorted(found)]


# --- row-level expressions ----------------------------------------------------------------


def _value(column: str) -> pl.Expr:
    """The column as Float64 with NaN turned into null, so aggregations skip it."""
    return pl.col(column).cast(pl.Float64).fill_nan(None)


def _error(target_col: str, pred_col: str) -> pl.Expr:
    """Forecast minus actual; null where either is missing."""
    return _value(pred_col) - _value(target_col)


def _where_scored(expr: pl.Expr, *columns: str) -> pl.Expr:
    """``expr`` on rows where every column has a value, null elsewhere."""
    scored = pl.all_horizontal([_value(c).is_not_null() for c in columns])
    return pl.when(scored).then(expr)


def _pinball(target_col: str, quantile_col: str, level: float) -> pl.Expr:
    """Row pinball loss of one quantile: ``max(q (y - f), (q - 1) (y - f))``."""
    residual = _value(target_col) - _value(quantile_col)
    return pl.max_horizontal(level * residual, (level - 1.0) * residual)


def _ratio_or_null(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """``numerator / denominator``, null when the denominator is zero."""
    return pl.when(denominator != 0).then(numerator / denominator)


# --- aggregations, shared by the public metrics and evaluate -------------------------------


def _mase_aggs(target_col: str, pred_col: str) -> list[pl.Expr]:
    scaled = _error(target_col, pred_col).abs() / pl.col(_MAE_SCALE)
    return [scaled.mean().alias("mase")]


def _rmsse_aggs(target_col: str, pred_col: str) -> list[pl.Expr]:
    scaled = _error(target_col, pred_col).pow(2) / pl.col(_MSE_SCALE)
    return [scaled.mean().sqrt().alias("rmsse")]


def _wape_aggs(target_col: str, pred_col: str) -> list[pl.Expr]:
    absolute_error = _error(target_col, pred_col).abs()
    absolute_actual = _where_scored(_value(target_col).abs(), target_col, pred_col)
    return [_ratio_or_null(absolute_error.sum(), absolute_actual.sum()).alias("wape")]


def _smape_aggs(target_col: str, pred_col: str) -> list[pl.Expr]:
    denominator = _value(target_col).abs() + _value(pred_col).abs()
    term = (
        pl.when(denominator == 0)
        .then(0.0)
        .otherwise(200.0 * _error(target_col, pred_col).abs() / denominator)
    )
    return [term.mean().alias("smape")]


def _pinball_aggs(target_col: str, columns: Sequence[str], *, scaled: bool) -> list[pl.Expr]:
    prefix = "scaled_pinball" if scaled else "pinball"
    per_quantile: list[pl.Expr] = []
    for column in columns:
        loss = _pinball(target_col, column, quantile_from_column(column))
        if scaled:
            loss = loss / pl.col(_MAE_SCALE)
        per_quantile.append(loss.mean().alias(f"{prefix}_{column}"))
    # The mean over levels of each level's mean loss: every level weighs the same even when
    # one quantile column has more missing values than another.
    overall = pl.mean_horizontal(per_quantile).alias(f"{prefix}_mean")
    return [*per_quantile, overall]


def _interval_suffix(coverage: float) -> str:
    """``0.9`` -> ``90``, ``0.975`` -> ``97_5``: the percent, as quantile columns spell it."""
    return quantile_column(coverage)[1:]


def _interval_columns(frame: pl.DataFrame, coverage: float) -> tuple[str, str]:
    """Return the lower and upper quantile columns of a central interval, or raise."""
    lower, upper = (quantile_column(level) for level in interval_bounds(coverage))
    missing = [c for c in (lower, upper) if c not in frame.columns]
    if missing:
        raise LongFrameError(
            f"the {coverage * 100:g}% interval needs quantile column(s) {', '.join(missing)}; "
            f"the frame has {', '.join(quantile_columns(frame)) or 'no quantile columns'}"
        )
    _require_numeric(frame, (lower, upper))
    return lower, upper


def _coverage_aggs(target_col: str, lower: str, upper: str, coverage: float) -> list[pl.Expr]:
    y = _value(target_col)
    inside = ((_value(lower) <= y) & (y <= _value(upper))).cast(pl.Float64)
    return [inside.mean().alias(f"coverage_{_interval_suffix(coverage)}")]


def _width_aggs(target_col: str, lower: str, upper: str, coverage: float) -> list[pl.Expr]:
    width = _where_scored(_value(upper) - _value(lower), target_col)
    return [width.mean().alias(f"width_{_interval_suffix(coverage)}")]


def _bias_aggs(target_col: str, pred_col: str) -> list[pl.Expr]:
    error = _error(target_col, pred_col)
    actual = _where_scored(_value(target_col), target_col, pred_col)
    return [
        error.mean().alias("bias"),
        _ratio_or_null(error.sum(), actual.sum()).alias("relative_bias"),
    ]


def _aggregate(frame: pl.DataFrame, keys: list[str], aggs: list[pl.Expr]) -> pl.DataFrame:
    """One row per group of ``keys`` (one row overall without keys), sorted by the keys."""
    if not keys:
        return frame.select(aggs)
    return frame.group_by(keys).agg(aggs).sort(keys, nulls_last=True)


# --- scales -------------------------------------------------------------------------------


def seasonal_scale(
    train: pl.DataFrame,
    season_length: int,
    *,
    kind: ScaleKind = "mae",
    keys: Sequence[str] = (),
    id_col: str = "series_id",
    time_col: str = "ds",
    target_col: str = "y",
) -> pl.DataFrame:
    """Return each training series' in-sample seasonal-naive error, the MASE/RMSSE scale.

    With ``m = season_length``, ``kind="mae"`` gives ``mean |y_t - y_{t-m}|`` (the MASE
    scale) and ``kind="mse"`` gives ``mean (y_t - y_{t-m})**2`` (the RMSSE scale of the M5
    competition). Lags are taken by position within each series sorted by ``time_col``; a
    null or NaN ``y`` leaves out the differences it is part of.

    The scale is never 0, null or infinite: a series whose seasonal scale is undefined
    (fewer than ``m + 1`` points) or 0 (a seasonal series repeating exactly) falls back to
    the 1-step naive scale, then to its mean absolute level (``mean |y|``, or ``mean y**2``
    for ``kind="mse"``), then to 1.0. Column ``scale_source`` says which one was used:
    ``seasonal``, ``naive``, ``level`` or ``unit``.

    ``keys`` partition the training data further: a backtest whose windows train on
    different data passes its training rows with a ``cutoff`` column and
    ``keys=("cutoff",)``, and gets one scale per series and cutoff.

    Returns columns ``*keys, id_col, scale, scale_source``, one row per series (and keys).
    """
    if isinstance(season_length, bool) or not isinstance(season_length, int):
        raise TypeError(f"season_length must be an int, got {season_length!r}")
    if season_length < 1:
        raise ValueError(f"season_length must be at least 1, got {season_length}")
    if kind not in ("mae", "mse"):
        raise ValueError(f"kind must be 'mae' or 'mse', got {kind!r}")
    group = [*keys, id_col]
    _require(train, [*group, time_col, target_col], what="training frame")
    _require_numeric(train, [target_col], what="training frame")

    def loss(expr: pl.Expr) -> pl.Expr:
        return expr.abs() if kind == "mae" else expr.pow(2)

    y = _value(target_col)
    candidates = (
        train.sort([*group, time_col])
        .group_by(group, maintain_order=True)
        .agg(
            loss(y - y.shift(season_length)).mean().alias("seasonal"),
            loss(y - y.shift(1)).mean().alias("naive"),
            loss(y).mean().alias("level"),
        )
    )

    def usable(column: str) -> pl.Expr:
        return (pl.col(column) > 0) & pl.col(column).is_finite()

    return candidates.select(
        *group,
        pl.when(usable("seasonal"))
        .then(pl.col("seasonal"))
        .when(usable("naive"))
        .then(pl.col("naive"))
        .when(usable("level"))
        .then(pl.col("level"))
        .otherwise(1.0)
        .alias(SCALE_COL),
        pl.when(usable("seasonal"))
        .then(pl.lit("seasonal"))
        .when(usable("naive"))
        .then(pl.lit("naive"))
        .when(usable("level"))
        .then(pl.lit("level"))
        .otherwise(pl.lit("unit"))
        .alias(_SCALE_SOURCE),
    ).sort(group)


def _join_scale(
    frame: pl.DataFrame,
    scale: pl.DataFrame,
    *,
    as_column: str,
    id_col: str,
    scale_col: str,
) -> pl.DataFrame:
    """Attach each row's scale as ``as_column``, or raise naming what does not fit.

    The join keys are the scale frame's columns (other than the scale and its source) that
    the forecast frame also has; ``id_col`` must be one of them. A scale frame left with
    several rows per key (say it has ``cutoff`` and the forecast frame does not), a
    non-positive or missing scale, or a series without a scale raises.
    """
    _require(scale, [id_col, scale_col], what="scale frame")
    _require_numeric(scale, [scale_col], what="scale frame")
    keys = [c for c in scale.columns if c not in (scale_col, _SCALE_SOURCE) and c in frame.columns]
    if id_col not in frame.columns:
        _require(frame, [id_col])
    unused = [c for c in scale.columns if c not in (scale_col, _SCALE_SOURCE, *keys)]
    scale_rows = scale.select(*keys, pl.col(scale_col).cast(pl.Float64).alias(as_column))
    if scale_rows.select(pl.struct(keys).is_duplicated().any()).item():
        extra = f"; its column(s) {', '.join(unused)} are not in the frame" if unused else ""
        raise LongFrameError(f"scale frame has more than one row per ({', '.join(keys)}){extra}")
    bad = scale_rows.filter(~((pl.col(as_column) > 0) & pl.col(as_column).is_finite()))
    if bad.height:
        first = bad.row(0, named=True)
        raise LongFrameError(
            f"scale must be positive and finite; series '{first[id_col]}' has "
            f"{first[as_column]} (seasonal_scale never returns such a scale)"
        )
    joined = frame.join(scale_rows, on=keys, how="left", maintain_order="left")
    unscaled = joined.filter(pl.col(as_column).is_null())
    if unscaled.height:
        first = unscaled.row(0, named=True)
        where = ", ".join(f"{k}={first[k]}" for k in keys)
        raise LongFrameError(
            f"{unscaled.height} row(s) have no scale in the scale frame, first at {where}"
        )
    return joined


# --- public metrics -----------------------------------------------------------------------


def mase(
    frame: pl.DataFrame,
    scale: pl.DataFrame,
    *,
    by: Sequence[str] = ("series_id",),
    id_col: str = "series_id",
    target_col: str = "y",
    pred_col: str = "mean",
    scale_col: str = SCALE_COL,
) -> pl.DataFrame:
    """Mean absolute scaled error per group: ``mean(|y - f| / scale)``, column ``mase``.

    ``scale`` is a frame like :func:`seasonal_scale` with ``kind="mae"`` returns: one
    positive scale per series, or per series and any other key (``cutoff``) the forecast
    frame shares. Within one series this is MAE divided by the scale.
    """
    keys = _check(frame, by, [target_col, pred_col])
    scaled = _join_scale(frame, scale, as_column=_MAE_SCALE, id_col=id_col, scale_col=scale_col)
    return _aggregate(scaled, keys, _mase_aggs(target_col, pred_col))


def rmsse(
    frame: pl.DataFrame,
    scale: pl.DataFrame,
    *,
    by: Sequence[str] = ("series_id",),
    id_col: str = "series_id",
    target_col: str = "y",
    pred_col: str = "mean",
    scale_col: str = SCALE_COL,
) -> pl.DataFrame:
    """Root mean squared scaled error per group: ``sqrt(mean((y - f)**2 / scale))``.

    ``scale`` is the in-sample seasonal-naive MSE, as :func:`seasonal_scale` with
    ``kind="mse"`` returns (the M5 definition). Within one series this is the M5 RMSSE; for
    a group spanning several series it is the root of their pooled mean scaled squared
    error, not the mean of per-series RMSSE. Column ``rmsse``.
    """
    keys = _check(frame, by, [target_col, pred_col])
    scaled = _join_scale(frame, scale, as_column=_MSE_SCALE, id_col=id_col, scale_col=scale_col)
    return _aggregate(scaled, keys, _rmsse_aggs(target_col, pred_col))


def wape(
    frame: pl.DataFrame,
    *,
    by: Sequence[str] = ("series_id",),
    target_col: str = "y",
    pred_col: str = "mean",
) -> pl.DataFrame:
    """Weighted absolute percentage error per group: ``sum|y - f| / sum|y|``, column ``wape``.

    A fraction (0.1 is 10 %). Null when ``sum|y|`` over the scored rows is 0, since no
    error is small or large relative to nothing.
    """
    keys = _check(frame, by, [target_col, pred_col])
    return _aggregate(frame, keys, _wape_aggs(target_col, pred_col))


def smape(
    frame: pl.DataFrame,
    *,
    by: Sequence[str] = ("series_id",),
    target_col: str = "y",
    pred_col: str = "mean",
) -> pl.DataFrame:
    """Symmetric MAPE per group, the M4 definition on the 0-200 scale, column ``smape``.

    ``mean(200 |y - f| / (|y| + |f|))``, where a row with ``y = f = 0`` is a perfect
    forecast and counts as 0. Always in [0, 200] (null for a group with no scored row).
    """
    keys = _check(frame, by, [target_col, pred_col])
    return _aggregate(frame, keys, _smape_aggs(target_col, pred_col))


def _pinball_columns(frame: pl.DataFrame, quantiles: Sequence[float] | None) -> list[str]:
    """The quantile columns to score: the asked levels (which must exist) or all found."""
    if quantiles is None:
        columns = quantile_columns(frame)
        if not columns:
            raise LongFrameError(
                "frame has no quantile columns (p05, p50, p97_5, ...); "
                f"it has {', '.join(frame.columns)}"
            )
        return columns
    columns = [quantile_column(level) for level in validate_quantiles(quantiles)]
    if not columns:
        raise ValueError("quantiles must name at least one level")
    _require(frame, columns)
    return columns


def pinball_loss(
    frame: pl.DataFrame,
    quantiles: Sequence[float] | None = None,
    *,
    scale: pl.DataFrame | None = None,
    by: Sequence[str] = ("series_id",),
    id_col: str = "series_id",
    target_col: str = "y",
    scale_col: str = SCALE_COL,
) -> pl.DataFrame:
    """Mean pinball (quantile) loss per group and quantile level, and their mean.

    For level ``q`` and forecast ``f`` the row loss is ``q (y - f)`` when ``y >= f`` and
    ``(1 - q) (f - y)`` otherwise; it is never negative. ``quantiles=None`` scores every
    quantile column of the frame; levels given explicitly must all have their column.
    Returns ``pinball_<column>`` per level (``pinball_p90``) and ``pinball_mean``, the mean
    over levels. With a ``scale`` frame (:func:`seasonal_scale` with ``kind="mae"``) each
    row is divided by its series' scale and the columns are named ``scaled_pinball_*``,
    so that series of different sizes can be averaged.
    """
    columns = _pinball_columns(frame, quantiles)
    keys = _check(frame, by, [target_col, *columns])
    if scale is None:
        return _aggregate(frame, keys, _pinball_aggs(target_col, columns, scaled=False))
    scaled = _join_scale(frame, scale, as_column=_MAE_SCALE, id_col=id_col, scale_col=scale_col)
    return _aggregate(scaled, keys, _pinball_aggs(target_col, columns, scaled=True))


def interval_coverage(
    frame: pl.DataFrame,
    coverage: float = 0.9,
    *,
    by: Sequence[str] = ("series_id",),
    target_col: str = "y",
) -> pl.DataFrame:
    """Fraction of actuals inside the central interval, bounds included, per group.

    The interval of ``coverage`` 0.9 runs from ``p05`` to ``p95``
    (:func:`models.quantiles.interval_bounds`); a frame without those columns raises naming
    them. Column ``coverage_90`` (``coverage_97_5`` for 0.975); a well calibrated forecast
    scores close to ``coverage``.
    """
    lower, upper = _interval_columns(frame, coverage)
    keys = _check(frame, by, [target_col])
    return _aggregate(frame, keys, _coverage_aggs(target_col, lower, upper, coverage))


def interval_width(
    frame: pl.DataFrame,
    coverage: float = 0.9,
    *,
    by: Sequence[str] = ("series_id",),
    target_col: str = "y",
) -> pl.DataFrame:
    """Mean width (upper minus lower bound) of the central interval per group.

    Scored on the same rows as :func:`interval_coverage` (those with an actual and both
    bounds), so the two read together. Column ``width_90`` for ``coverage`` 0.9; raises
    naming the quantile columns the interval needs if the frame lacks them.
    """
    lower, upper = _interval_columns(frame, coverage)
    keys = _check(frame, by, [target_col])
    return _aggregate(frame, keys, _width_aggs(target_col, lower, upper, coverage))


def bias(
    frame: pl.DataFrame,
    *,
    by: Sequence[str] = ("series_id",),
    target_col: str = "y",
    pred_col: str = "mean",
) -> pl.DataFrame:
    """Forecast bias per group: ``bias = mean(f - y)`` and ``relative_bias = sum(f - y) / sum(y)``.

    Positive means over-forecasting. ``relative_bias`` is null when ``sum(y)`` over the
    scored rows is 0.
    """
    keys = _check(frame, by, [target_col, pred_col])
    return _aggregate(frame, keys, _bias_aggs(target_col, pred_col))


def _bucket_labels(edges: Sequence[int]) -> list[str]:
    labels: list[str] = []
    start = 1
    for edge in edges:
        labels.append(str(start) if edge == start else f"{start}-{edge}")
        start = edge + 1
    labels.append(f"{start}+")
    return labels


def horizon_buckets(
    frame: pl.DataFrame,
    edges: Sequence[int] = (7, 30, 90),
    *,
    h_col: str = "h",
    bucket_col: str = HORIZON_BUCKET_COL,
) -> pl.DataFrame:
    """Return the frame with a column grouping horizon steps into buckets.

    Edges ``(7, 30, 90)`` give ``1-7``, ``8-30``, ``31-90`` and ``91+`` (a bucket of one step
    is labelled by that step alone). The column is an ordered ``pl.Enum``, so sorting by it
    sorts by horizon; a null step gets a null bucket. Pass
    ``by=("series_id", "horizon_bucket")`` to any metric to score each bucket. Raises for
    edges that are not increasing positive integers and for steps below 1.
    """
    edge_list = list(edges)
    if not edge_list:
        raise ValueError("edges must hold at least one horizon step")
    if any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in edge_list) or any(
        b <= a for a, b in itertools.pairwise(edge_list)
    ):
        raise ValueError(f"edges must be strictly increasing positive integers, got {edges}")
    _require(frame, [h_col])
    if not frame.schema[h_col].is_integer():
        raise LongFrameError(f"column '{h_col}' must be an integer step, got {frame.schema[h_col]}")
    below_one = frame.filter(pl.col(h_col) < 1)
    if below_one.height:
        raise LongFrameError(
            f"column '{h_col}' is 1-based but has {below_one.height} step(s) below 1, "
            f"first {below_one[h_col][0]}"
        )
    labels = _bucket_labels(edge_list)
    h = pl.col(h_col)
    bucket: pl.Expr = pl.when(h.is_not_null()).then(pl.lit(labels[-1]))
    for edge, label in reversed(list(zip(edge_list, labels[:-1], strict=True))):
        bucket = pl.when(h <= edge).then(pl.lit(label)).otherwise(bucket)
    return frame.with_columns(bucket.cast(pl.Enum(labels)).alias(bucket_col))


def evaluate(
    frame: pl.DataFrame,
    *,
    mae_scale: pl.DataFrame | None = None,
    mse_scale: pl.DataFrame | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    by: Sequence[str] = ("series_id",),
    quantiles: Sequence[float] | None = None,
    coverages: Sequence[float] = (0.9,),
    id_col: str = "series_id",
    target_col: str = "y",
    pred_col: str = "mean",
    scale_col: str = SCALE_COL,
) -> pl.DataFrame:
    """Compute several metrics in one pass and return them side by side, one row per group.

    ``metrics`` picks from ``mase``, ``rmsse``, ``wape``, ``smape``, ``pinball``,
    ``scaled_pinball``, ``coverage``, ``width`` and ``bias``; each yields the same columns
    as its function and the same values. ``mase`` and ``scaled_pinball`` need
    ``mae_scale`` and ``rmsse`` needs ``mse_scale`` (:func:`seasonal_scale` with
    ``kind="mae"`` and ``kind="mse"``); asking for them without it raises. ``quantiles``
    is passed to :func:`pinball_loss`; ``coverage`` and ``width`` are reported for each of
    ``coverages``.
    """
    unknown = [m for m in metrics if m not in _KNOWN_METRICS]
    if unknown:
        raise ValueError(
            f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(_KNOWN_METRICS)}"
        )
    wanted = set(metrics)
    if not wanted:
        raise ValueError("metrics must name at least one metric")
    needs_mae = wanted & {"mase", "scaled_pinball"}
    if needs_mae and mae_scale is None:
        raise ValueError(
            f"{' and '.join(sorted(needs_mae))} need(s) mae_scale "
            "(seasonal_scale(train, season_length, kind='mae'))"
        )
    if "rmsse" in wanted and mse_scale is None:
        raise ValueError("rmsse needs mse_scale (seasonal_scale(train, season_length, kind='mse'))")

    point = [pred_col] if wanted & {"mase", "rmsse", "wape", "smape", "bias"} else []
    keys = _check(frame, by, [target_col, *point])
    pinball_columns = (
        _pinball_columns(frame, quantiles) if wanted & {"pinball", "scaled_pinball"} else []
    )
    _require_numeric(frame, pinball_columns)
    intervals = (
        [(c, *_interval_columns(frame, c)) for c in coverages]
        if wanted & {"coverage", "width"}
        else []
    )

    rows = frame
    if needs_mae and mae_scale is not None:
        rows = _join_scale(
            rows, mae_scale, as_column=_MAE_SCALE, id_col=id_col, scale_col=scale_col
        )
    if "rmsse" in wanted and mse_scale is not None:
        rows = _join_scale(
            rows, mse_scale, as_column=_MSE_SCALE, id_col=id_col, scale_col=scale_col
        )

    aggs: list[pl.Expr] = []
    for metric in dict.fromkeys(metrics):
        if metric == "mase":
            aggs += _mase_aggs(target_col, pred_col)
        elif metric == "rmsse":
            aggs += _rmsse_aggs(target_col, pred_col)
        elif metric == "wape":
            aggs += _wape_aggs(target_col, pred_col)
        elif metric == "smape":
            aggs += _smape_aggs(target_col, pred_col)
        elif metric == "pinball":
            aggs += _pinball_aggs(target_col, pinball_columns, scaled=False)
        elif metric == "scaled_pinball":
            aggs += _pinball_aggs(target_col, pinball_columns, scaled=True)
        elif metric == "coverage":
            for coverage, lower, upper in intervals:
                aggs += _coverage_aggs(target_col, lower, upper, coverage)
        elif metric == "width":
            for coverage, lower, upper in intervals:
                aggs += _width_aggs(target_col, lower, upper, coverage)
        else:
            aggs += _bias_aggs(target_col, pred_col)
    return _aggregate(rows, keys, aggs)
