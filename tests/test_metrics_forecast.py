"""Forecast accuracy metrics (models.metrics): oracles, hand-computed cases, errors, properties.

Each oracle test recomputes a metric with a plain per-group Python loop over the rows of a
seeded random backtest frame (several series, models and cutoffs; zeros, nulls and NaN in
the actuals and forecasts) and compares it with the vectorised polars version.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from models.frames import LongFrameError
from models.metrics import (
    DEFAULT_METRICS,
    bias,
    evaluate,
    horizon_buckets,
    interval_coverage,
    interval_width,
    mase,
    pinball_loss,
    quantile_columns,
    rmsse,
    seasonal_scale,
    smape,
    wape,
)
from models.quantiles import DEFAULT_QUANTILES, quantile_column

SEASON = 3
HORIZON = 10
SERIES = ("flat", "short", "small", "large", "zeros")
MODELS = ("ets", "naive")
CUTOFFS = (date(2026, 3, 1), date(2026, 3, 11), date(2026, 3, 21))
QUANTILE_COLUMNS = [quantile_column(level) for level in DEFAULT_QUANTILES]

Row = dict[str, Any]
Key = tuple[Any, ...]


# --- the seeded backtest --------------------------------------------------------------------


def _training_values(series: str, length: int, rng: np.random.Generator) -> list[float | None]:
    if series == "flat":  # constant: seasonal and naive scales are 0, the level is used
        return [4.0] * length
    if series == "short":  # fewer than SEASON + 1 points: only the naive scale exists
        return [float(v) for v in rng.integers(0, 5, size=2)]
    if series == "zeros":  # all zero: every scale is 0, the unit scale is used
        return [0.0] * length
    level = 3.0 if series == "small" else 500.0
    values: list[float | None] = [
        float(max(0.0, round(level + level * 0.3 * rng.normal(), 1))) for _ in range(length)
    ]
    values[2] = None  # a gap: the differences it takes part in are left out
    return values


def _backtest(seed: int = 7) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (training rows with a cutoff column, forecast rows) of a random backtest."""
    rng = np.random.default_rng(seed)
    train: list[Row] = []
    forecast: list[Row] = []
    for cutoff in CUTOFFS:
        for series in SERIES:
            history = _training_values(series, 12 + (cutoff - CUTOFFS[0]).days, rng)
            for i, value in enumerate(history):
                train.append(
                    {
                        "series_id": series,
                        "cutoff": cutoff,
                        "ds": cutoff - timedelta(days=len(history) - 1 - i),
                        "y": value,
                    }
                )
            level = {"flat": 4.0, "short": 2.0, "small": 3.0, "large": 500.0, "zeros": 0.0}[series]
            actuals = [
                0.0
                if series == "zeros" or rng.random() < 0.15
                else float(rng.gamma(2.0, level / 2))
                for _ in range(HORIZON)
            ]
            for model in MODELS:
                for h, actual in enumerate(actuals, start=1):
                    if series == "zeros":
                        mean = 0.0 if model == "naive" else float(rng.random())
                    else:
                        mean = max(0.0, actual + level * 0.4 * float(rng.normal()))
                    offsets = np.sort(rng.normal(0.0, level * 0.5 + 0.1, len(DEFAULT_QUANTILES)))
                    row: Row = {
                        "series_id": series,
                        "model": model,
                        "cutoff": cutoff,
                        "ds": cutoff + timedelta(days=h),
                        "h": h,
                        "y": actual,
                        "mean": mean,
                    }
                    row.update(
                        {c: mean + float(o) for c, o in zip(QUANTILE_COLUMNS, offsets, strict=True)}
                    )
                    forecast.append(row)
    # Missing values in the actual and in forecasts: nulls and a NaN.
    for index in (5, 77, 230):
        forecast[index]["y"] = None
    forecast[12]["mean"] = None
    forecast[40]["mean"] = float("nan")
    forecast[41]["p90"] = None
    forecast[90]["p05"] = float("nan")
    return pl.DataFrame(train), pl.DataFrame(forecast)


TRAIN, FRAME = _backtest()


# --- the oracle: plain Python over rows -----------------------------------------------------


def _num(value: Any) -> float | None:
    """A row value as a float, or None if it is missing (null or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _groups(frame: pl.DataFrame, by: Sequence[str]) -> dict[Key, list[Row]]:
    groups: dict[Key, list[Row]] = defaultdict(list)
    for row in frame.iter_rows(named=True):
        groups[tuple(row[k] for k in by)].append(row)
    return groups


def _pairs(rows: list[Row], *columns: str) -> list[tuple[float, ...]]:
    """The rows where every column has a value, as tuples of floats."""
    out = []
    for row in rows:
        values = [_num(row[c]) for c in columns]
        if all(v is not None for v in values):
            out.append(tuple(v for v in values if v is not None))
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def oracle_scale(values: list[float | None], m: int, kind: str) -> tuple[float, str]:
    loss: Callable[[float], float] = abs if kind == "mae" else (lambda d: d * d)

    def lagged(lag: int) -> float | None:
        diffs = []
        for i in range(lag, len(values)):
            now, before = _num(values[i]), _num(values[i - lag])
            if now is not None and before is not None:
                diffs.append(loss(now - before))
        return _mean(diffs)

    level = _mean([loss(v) for v in (_num(x) for x in values) if v is not None])
    for source, candidate in (("seasonal", lagged(m)), ("naive", lagged(1)), ("level", level)):
        if candidate is not None and 0 < candidate < math.inf:
            return candidate, source
    return 1.0, "unit"


def _oracle_scales(kind: str) -> dict[tuple[str, date], float]:
    scales = {}
    for (series, cutoff), rows in _groups(TRAIN, ("series_id", "cutoff")).items():
        ordered = sorted(rows, key=lambda r: r["ds"])
        scales[series, cutoff] = oracle_scale([r["y"] for r in ordered], SEASON, kind)[0]
    return scales


def _as_float(value: float | None) -> float:
    return np.nan if value is None else value


def _assert_matches(
    result: pl.DataFrame, by: Sequence[str], column: str, expected: dict[Key, float | None]
) -> None:
    got = {tuple(row[k] for k in by): row[column] for row in result.iter_rows(named=True)}
    assert sorted(got) == sorted(expected), "not one output row per group"
    keys = sorted(expected)
    assert_allclose(
        [_as_float(got[k]) for k in keys],
        [_as_float(expected[k]) for k in keys],
        rtol=1e-10,
        atol=1e-12,
    )


BYS = [
    ("series_id",),
    ("series_id", "model"),
    ("model", "series_id", "cutoff"),
    ("model",),
]


# --- oracle tests -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mae", "mse"])
def test_seasonal_scale_matches_oracle(kind):
    result = seasonal_scale(TRAIN, SEASON, kind=kind, keys=("cutoff",))
    assert result.columns == ["cutoff", "series_id", "scale", "scale_source"]
    expected: dict[Key, float | None] = {}
    sources: dict[Key, str] = {}
    for (cutoff, series), rows in _groups(TRAIN, ("cutoff", "series_id")).items():
        ordered = [r["y"] for r in sorted(rows, key=lambda r: r["ds"])]
        expected[cutoff, series], sources[cutoff, series] = oracle_scale(ordered, SEASON, kind)
    _assert_matches(result, ("cutoff", "series_id"), "scale", expected)
    got_sources = {
        (r["cutoff"], r["series_id"]): r["scale_source"] for r in result.iter_rows(named=True)
    }
    assert got_sources == sources
    assert {"seasonal", "naive", "level", "unit"} == set(sources.values())


@pytest.mark.parametrize("by", BYS)
@pytest.mark.parametrize("metric", ["mase", "rmsse"])
def test_scaled_metrics_match_oracle_with_a_scale_per_cutoff(metric, by):
    kind: Literal["mae", "mse"] = "mae" if metric == "mase" else "mse"
    scale = seasonal_scale(TRAIN, SEASON, kind=kind, keys=("cutoff",))
    scales = _oracle_scales(kind)
    function = mase if metric == "mase" else rmsse
    expected: dict[Key, float | None] = {}
    for key, rows in _groups(FRAME, by).items():
        terms = []
        for row in rows:
            y, f = _num(row["y"]), _num(row["mean"])
            if y is not None and f is not None:
                s = scales[row["series_id"], row["cutoff"]]
                terms.append(abs(y - f) / s if metric == "mase" else (y - f) ** 2 / s)
        value = _mean(terms)
        expected[key] = value if metric == "mase" or value is None else math.sqrt(value)
    _assert_matches(function(FRAME, scale, by=by), by, metric, expected)


@pytest.mark.parametrize("by", BYS)
def test_wape_matches_oracle(by):
    expected: dict[Key, float | None] = {}
    for key, rows in _groups(FRAME, by).items():
        pairs = _pairs(rows, "y", "mean")
        denominator = sum(abs(y) for y, _ in pairs)
        expected[key] = sum(abs(y - f) for y, f in pairs) / denominator if denominator else None
    result = wape(FRAME, by=by)
    _assert_matches(result, by, "wape", expected)
    if by == ("series_id",):
        assert result.filter(pl.col("series_id") == "zeros")["wape"].to_list() == [None]


@pytest.mark.parametrize("by", BYS)
def test_smape_matches_oracle(by):
    expected: dict[Key, float | None] = {}
    for key, rows in _groups(FRAME, by).items():
        terms = [
            0.0 if abs(y) + abs(f) == 0 else 200 * abs(y - f) / (abs(y) + abs(f))
            for y, f in _pairs(rows, "y", "mean")
        ]
        expected[key] = _mean(terms)
    _assert_matches(smape(FRAME, by=by), by, "smape", expected)


def _oracle_pinball(rows: list[Row], column: str, scales: dict[tuple[str, date], float] | None):
    level = float(column[1:].replace("_", ".")) / 100
    losses = []
    for row in rows:
        y, q = _num(row["y"]), _num(row[column])
        if y is None or q is None:
            continue
        loss = level * (y - q) if y >= q else (1 - level) * (q - y)
        losses.append(loss / scales[row["series_id"], row["cutoff"]] if scales else loss)
    return _mean(losses)


@pytest.mark.parametrize("by", BYS)
@pytest.mark.parametrize("scaled", [False, True])
def test_pinball_matches_oracle(by, scaled):
    scales = _oracle_scales("mae") if scaled else None
    scale = seasonal_scale(TRAIN, SEASON, keys=("cutoff",)) if scaled else None
    result = pinball_loss(FRAME, scale=scale, by=by)
    prefix = "scaled_pinball" if scaled else "pinball"
    assert result.columns == [
        *by,
        *(f"{prefix}_{c}" for c in QUANTILE_COLUMNS),
        f"{prefix}_mean",
    ]
    per_level: dict[str, dict[Key, float | None]] = {c: {} for c in QUANTILE_COLUMNS}
    for key, rows in _groups(FRAME, by).items():
        for column in QUANTILE_COLUMNS:
            per_level[column][key] = _oracle_pinball(rows, column, scales)
    for column, expected in per_level.items():
        _assert_matches(result, by, f"{prefix}_{column}", expected)
    means: dict[Key, float | None] = {}
    for key in per_level[QUANTILE_COLUMNS[0]]:
        values = [per_level[c][key] for c in QUANTILE_COLUMNS]
        means[key] = _mean([v for v in values if v is not None])
    _assert_matches(result, by, f"{prefix}_mean", means)


@pytest.mark.parametrize("by", BYS)
@pytest.mark.parametrize("coverage", [0.5, 0.8, 0.9, 0.95])
def test_interval_coverage_and_width_match_oracle(by, coverage):
    tail = round((1 - coverage) / 2, 8)
    lower, upper = quantile_column(tail), quantile_column(1 - tail)
    suffix = quantile_column(coverage)[1:]
    inside: dict[Key, float | None] = {}
    width: dict[Key, float | None] = {}
    for key, rows in _groups(FRAME, by).items():
        triples = _pairs(rows, "y", lower, upper)
        inside[key] = _mean([1.0 if lo <= y <= hi else 0.0 for y, lo, hi in triples])
        width[key] = _mean([hi - lo for _, lo, hi in triples])
    _assert_matches(interval_coverage(FRAME, coverage, by=by), by, f"coverage_{suffix}", inside)
    _assert_matches(interval_width(FRAME, coverage, by=by), by, f"width_{suffix}", width)


@pytest.mark.parametrize("by", BYS)
def test_bias_matches_oracle(by):
    mean_bias: dict[Key, float | None] = {}
    relative: dict[Key, float | None] = {}
    for key, rows in _groups(FRAME, by).items():
        pairs = _pairs(rows, "y", "mean")
        mean_bias[key] = _mean([f - y for y, f in pairs])
        total = sum(y for y, _ in pairs)
        relative[key] = sum(f - y for y, f in pairs) / total if total else None
    result = bias(FRAME, by=by)
    _assert_matches(result, by, "bias", mean_bias)
    _assert_matches(result, by, "relative_bias", relative)


def test_metrics_per_horizon_bucket_match_oracle():
    bucketed = horizon_buckets(FRAME, edges=(3, 7))
    by = ("series_id", "horizon_bucket")

    def bucket(h: int) -> str:
        return "1-3" if h <= 3 else "4-7" if h <= 7 else "8+"

    expected: dict[Key, float | None] = {}
    groups: dict[Key, list[Row]] = defaultdict(list)
    for row in FRAME.iter_rows(named=True):
        groups[row["series_id"], bucket(row["h"])].append(row)
    for key, rows in groups.items():
        expected[key] = _mean([abs(y - f) for y, f in _pairs(rows, "y", "mean")])
    scale = pl.DataFrame({"series_id": list(SERIES), "scale": [1.0] * len(SERIES)})
    _assert_matches(mase(bucketed, scale, by=by), by, "mase", expected)


def test_evaluate_joins_the_same_numbers_as_each_metric():
    by = ("series_id", "model")
    mae_scale = seasonal_scale(TRAIN, SEASON, keys=("cutoff",))
    mse_scale = seasonal_scale(TRAIN, SEASON, kind="mse", keys=("cutoff",))
    result = evaluate(
        FRAME,
        mae_scale=mae_scale,
        mse_scale=mse_scale,
        metrics=(*DEFAULT_METRICS, "scaled_pinball"),
        by=by,
        coverages=(0.8, 0.9),
    )
    parts = [
        mase(FRAME, mae_scale, by=by),
        rmsse(FRAME, mse_scale, by=by),
        wape(FRAME, by=by),
        smape(FRAME, by=by),
        pinball_loss(FRAME, by=by),
        interval_coverage(FRAME, 0.8, by=by),
        interval_coverage(FRAME, 0.9, by=by),
        interval_width(FRAME, 0.8, by=by),
        interval_width(FRAME, 0.9, by=by),
        bias(FRAME, by=by),
        pinball_loss(FRAME, scale=mae_scale, by=by),
    ]
    assert result.height == FRAME.select(pl.struct(by).n_unique()).item()
    for part in parts:
        assert part.select(by).equals(result.select(by))
        for column in part.columns[len(by) :]:
            assert_allclose(
                result[column].to_numpy(), part[column].to_numpy(), rtol=1e-12, err_msg=column
            )


# --- hand-computed examples ---------------------------------------------------------------


def _toy_train() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "series_id": ["a"] * 4 + ["b"] * 4,
            "ds": [date(2026, 1, d) for d in range(1, 5)] * 2,
            "y": [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 10.0, 20.0],
        }
    )


def _toy_forecast() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "series_id": ["a", "a", "b", "b"],
            "ds": [date(2026, 1, 5), date(2026, 1, 6)] * 2,
            "y": [5.0, 6.0, 10.0, 20.0],
            "mean": [5.0, 8.0, 12.0, 17.0],
        }
    )


def test_mase_of_a_two_series_toy():
    # a: seasonal (m=2) differences 3-1, 4-2 -> scale 2; errors 0, 2 -> MAE 1 -> 0.5.
    # b: repeats every 2 steps, so its seasonal scale is 0 and the naive one (10) is used;
    #    errors 2, 3 -> MAE 2.5 -> 0.25.
    scale = seasonal_scale(_toy_train(), 2)
    assert scale["scale"].to_list() == [2.0, 10.0]
    assert scale["scale_source"].to_list() == ["seasonal", "naive"]
    result = mase(_toy_forecast(), scale)
    assert result.rows() == [("a", 0.5), ("b", 0.25)]
    # Across both series: the mean of the four scaled errors, (0 + 1 + 0.2 + 0.3) / 4.
    assert mase(_toy_forecast(), scale, by=()).item() == pytest.approx(0.375)


def test_rmsse_of_a_two_series_toy():
    # a: squared seasonal differences 4, 4 -> scale 4; squared errors 0, 4 -> sqrt(2 / 4).
    # b: naive fallback, scale 100; squared errors 4, 9 -> sqrt(6.5 / 100).
    scale = seasonal_scale(_toy_train(), 2, kind="mse")
    assert scale["scale"].to_list() == [4.0, 100.0]
    result = rmsse(_toy_forecast(), scale)
    assert_allclose(result["rmsse"].to_numpy(), [math.sqrt(0.5), math.sqrt(0.065)])


def test_scale_fallbacks_never_give_zero_or_inf():
    train = pl.DataFrame(
        {
            "series_id": ["const", "const", "const", "one", "zero", "zero", "gap", "gap"],
            "ds": [date(2026, 1, d) for d in (1, 2, 3, 1, 1, 2, 1, 2)],
            "y": [5.0, 5.0, 5.0, -3.0, 0.0, 0.0, None, 2.0],
        }
    )
    result = seasonal_scale(train, 7)
    assert result.rows() == [
        ("const", 5.0, "level"),
        ("gap", 2.0, "level"),
        ("one", 3.0, "level"),
        ("zero", 1.0, "unit"),
    ]


def test_smape_counts_a_zero_over_zero_term_as_zero():
    frame = pl.DataFrame({"series_id": ["s", "s"], "y": [0.0, 2.0], "mean": [0.0, 1.0]})
    # Terms: 0 (0/0) and 200 * 1 / 3.
    assert smape(frame).item(0, "smape") == pytest.approx(100 / 3)


def test_pinball_for_q90_punishes_under_forecasts_nine_times_more():
    frame = pl.DataFrame({"series_id": ["under", "over"], "y": [10.0, 10.0], "p90": [8.0, 12.0]})
    result = pinball_loss(frame, [0.9])
    assert result["series_id"].to_list() == ["over", "under"]
    assert_allclose(result["pinball_p90"].to_numpy(), [0.2, 1.8])
    assert_allclose(result["pinball_mean"].to_numpy(), [0.2, 1.8])
    assert result.columns == ["series_id", "pinball_p90", "pinball_mean"]


def test_coverage_of_a_known_frame_is_the_fraction_inside():
    frame = pl.DataFrame(
        {
            "series_id": ["s"] * 5,
            "y": [1.0, 5.0, 10.0, 3.0, None],
            "p05": [0.0, 6.0, 9.0, 3.0, 0.0],
            "p95": [2.0, 7.0, 11.0, 4.0, 1.0],
        }
    )
    # Inside: 1 in [0, 2], 10 in [9, 11], 3 on the bound of [3, 4]; 5 is outside [6, 7];
    # the row without an actual is not scored.
    assert interval_coverage(frame).rows() == [("s", 0.75)]
    assert interval_width(frame).rows() == [("s", 1.5)]


def test_wape_and_relative_bias_are_null_without_actual_volume():
    frame = pl.DataFrame({"series_id": ["s", "s"], "y": [0.0, 0.0], "mean": [1.0, 2.0]})
    assert wape(frame).item(0, "wape") is None
    assert bias(frame).row(0) == ("s", 1.5, None)


def test_rows_missing_the_actual_or_forecast_are_not_scored_but_groups_stay():
    frame = pl.DataFrame(
        {
            "series_id": ["a", "a", "a", "b"],
            "y": [1.0, None, 2.0, None],
            "mean": [2.0, 100.0, float("nan"), 1.0],
        }
    )
    result = evaluate(frame, metrics=("wape", "smape", "bias"))
    assert result["series_id"].to_list() == ["a", "b"]
    assert result.row(0) == ("a", 1.0, pytest.approx(200 / 3), 1.0, 1.0)
    assert result.row(1) == ("b", None, None, None, None)


def test_horizon_buckets_labels_and_order():
    frame = pl.DataFrame({"h": [1, 7, 8, 30, 31, 90, 91, 400, None]})
    buckets = horizon_buckets(frame)["horizon_bucket"]
    assert buckets.to_list() == ["1-7", "1-7", "8-30", "8-30", "31-90", "31-90", "91+", "91+", None]
    assert buckets.dtype == pl.Enum(["1-7", "8-30", "31-90", "91+"])
    one_step = horizon_buckets(pl.DataFrame({"h": [1, 2, 9]}), edges=(1, 7))["horizon_bucket"]
    assert one_step.to_list() == ["1", "2-7", "8+"]


@pytest.mark.parametrize("edges", [(), (7, 7), (30, 7), (0, 7), (1.5, 7)])
def test_horizon_buckets_reject_bad_edges(edges):
    with pytest.raises(ValueError, match="edges"):
        horizon_buckets(pl.DataFrame({"h": [1]}), edges=edges)


def test_horizon_buckets_reject_steps_below_one():
    with pytest.raises(LongFrameError, match="1-based"):
        horizon_buckets(pl.DataFrame({"h": [0, 1]}))


def test_quantile_columns_finds_only_quantile_names():
    frame = pl.DataFrame({c: [1.0] for c in ("p95", "pred", "p2_5", "p0", "p50", "p1e1", "mean")})
    assert quantile_columns(frame) == ["p2_5", "p50", "p95"]


# --- errors name what is missing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: wape(f.drop("y")), "missing column\\(s\\) y"),
        (lambda f: smape(f.drop("mean")), "missing column\\(s\\) mean"),
        (lambda f: bias(f, pred_col="forecast"), "missing column\\(s\\) forecast"),
        (lambda f: wape(f, by=("series_id", "region")), "missing column\\(s\\) region"),
        (lambda f: pinball_loss(f, [0.5, 0.42]), "missing column\\(s\\) p42"),
        (
            lambda f: interval_coverage(f.drop("p05", "p95"), 0.9),
            "needs quantile column\\(s\\) p05, p95",
        ),
        (lambda f: interval_width(f.drop("p90"), 0.8), "needs quantile column\\(s\\) p90"),
        (lambda f: pinball_loss(f.select("series_id", "y")), "no quantile columns"),
        (lambda f: wape(f.with_columns(pl.col("y").cast(pl.String))), "'y' must be numeric"),
    ],
)
def test_errors_name_the_missing_column(call, message):
    with pytest.raises(LongFrameError, match=message):
        call(FRAME)


def test_scale_errors_name_what_does_not_fit():
    scale = seasonal_scale(TRAIN, SEASON, keys=("cutoff",))
    # The scale has one row per cutoff but the frame has no cutoff to tell them apart.
    with pytest.raises(LongFrameError, match=r"more than one row per \(series_id\); .* cutoff"):
        mase(FRAME.drop("cutoff"), scale)
    with pytest.raises(LongFrameError, match=r"no scale .* series_id=zeros"):
        mase(FRAME, scale.filter(pl.col("series_id") != "zeros"))
    with pytest.raises(LongFrameError, match="positive and finite"):
        mase(FRAME, scale.with_columns(pl.lit(0.0).alias("scale")))
    with pytest.raises(LongFrameError, match="scale frame is missing column\\(s\\) scale"):
        rmsse(FRAME, scale.drop("scale"))
    with pytest.raises(LongFrameError, match="training frame is missing column\\(s\\) ds"):
        seasonal_scale(TRAIN.drop("ds"), SEASON)


def test_evaluate_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="mase need\\(s\\) mae_scale"):
        evaluate(FRAME)
    with pytest.raises(ValueError, match="rmsse needs mse_scale"):
        evaluate(FRAME, metrics=("rmsse",))
    with pytest.raises(ValueError, match="unknown metric\\(s\\) mape"):
        evaluate(FRAME, metrics=("wape", "mape"))
    with pytest.raises(ValueError, match="season_length must be at least 1"):
        seasonal_scale(TRAIN, 0)


# --- properties ---------------------------------------------------------------------------

finite = st.floats(-1e6, 1e6, allow_nan=False)
forecast_rows = st.lists(st.tuples(finite, finite, finite, finite), min_size=1, max_size=30)


def _property_frame(rows: list[tuple[float, float, float, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "series_id": [f"s{i % 3}" for i in range(len(rows))],
            "y": [r[0] for r in rows],
            "mean": [r[1] for r in rows],
            "p05": [min(r[2], r[3]) for r in rows],
            "p95": [max(r[2], r[3]) for r in rows],
        }
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forecast_rows)
def test_metric_ranges_hold_on_any_frame(rows):
    result = evaluate(
        _property_frame(rows), metrics=("smape", "pinball", "coverage", "width", "wape")
    )
    pinball = result.select("pinball_p05", "pinball_p95", "pinball_mean").to_numpy()
    assert (pinball >= 0).all()
    smapes = result["smape"].to_numpy()
    assert ((smapes >= 0) & (smapes <= 200 + 1e-9)).all()
    coverages = result["coverage_90"].to_numpy()
    assert ((coverages >= 0) & (coverages <= 1)).all()
    assert (result["width_90"].to_numpy() >= 0).all()
    assert (result["wape"].drop_nulls().to_numpy() >= 0).all()
