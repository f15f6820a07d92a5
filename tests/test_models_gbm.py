"""GlobalGBM: the contract checks, accuracy against seasonal naive, calibration, regressors.

The learners are kept small through the constructor (few iterations, few rows) so the whole
file runs in seconds; the default settings are timed in the report, not here.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest

from models.frequency import Frequency
from models.gbm import GlobalGBM, _level_weights, _sample_triples
from models.panel import Panel

QUICK: dict[str, Any] = {
    "max_iter": 40,
    "learning_rate": 0.1,
    "quantile_max_iter": 20,
    "max_train_rows": 8_000,
    "quantile_train_rows": 4_000,
}

#: Smaller still, for tests that check plumbing rather than accuracy.
TINY: dict[str, Any] = {
    "max_iter": 15,
    "learning_rate": 0.2,
    "quantile_max_iter": 8,
    "quantile_learning_rate": 0.3,
    "max_train_rows": 3_000,
    "quantile_train_rows": 1_500,
}


def test_check_settings_are_the_quick_learners() -> None:
    # The catalog's contract test builds GlobalGBM with these (tests/test_models_contract.py).
    assert {k: v for k, v in TINY.items() if k in GlobalGBM.check_settings} == dict(
        GlobalGBM.check_settings
    )


def weekly_panel(
    n_series: int = 50, length: int = 238, seed: int = 0
) -> tuple[pl.DataFrame, np.ndarray]:
    """Daily series with weekly seasonality, levels from 5 to 5,000 and 10% noise.

    Returns the long frame and the (series, length) matrix of values.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    level = np.exp(rng.uniform(np.log(5), np.log(5_000), n_series))[:, None]
    shape = 1 + 0.4 * np.sin(2 * np.pi * (t[None, :] + rng.integers(0, 7, (n_series, 1))) / 7)
    y = level * shape * (1 + rng.normal(0, 0.1, (n_series, length)))
    ds = pl.date_range(date(2024, 1, 1), date(2024, 1, 1) + timedelta(days=length - 1), eager=True)
    frame = pl.DataFrame(
        {
            "series_id": np.repeat([f"s{i:02d}" for i in range(n_series)], length),
            "ds": pl.concat([ds] * n_series),
            "y": y.reshape(-1),
        }
    )
    return frame, y


@pytest.fixture(scope="module")
def held_out() -> tuple[GlobalGBM, pl.DataFrame, np.ndarray, np.ndarray]:
    """A model fitted on all but the last 28 days, its forecast, the truth and the history."""
    horizon = 28
    frame, y = weekly_panel()
    cut = frame["ds"].max() - timedelta(days=horizon)  # type: ignore[operator]
    model = GlobalGBM(seed=1, **QUICK).fit(frame.filter(pl.col("ds") <= cut))
    forecast = model.predict(horizon, (0.1, 0.5, 0.9))
    return model, forecast, y[:, -horizon:], y[:, :-horizon]


def test_beats_seasonal_naive(held_out: Any) -> None:
    _, forecast, truth, history = held_out
    horizon = truth.shape[1]
    mean = forecast["mean"].to_numpy().reshape(truth.shape)
    last_week = history[:, -7:]
    seasonal_naive = np.tile(last_week, horizon // 7)
    scale = history.mean(axis=1, keepdims=True)  # compare across levels on one footing
    gbm_error = np.mean(np.abs(mean - truth) / scale)
    naive_error = np.mean(np.abs(seasonal_naive - truth) / scale)
    assert gbm_error < 0.9 * naive_error, (gbm_error, naive_error)


def test_80_percent_interval_covers_about_80_percent(held_out: Any) -> None:
    _, forecast, truth, _ = held_out
    low = forecast["p10"].to_numpy().reshape(truth.shape)
    high = forecast["p90"].to_numpy().reshape(truth.shape)
    coverage = np.mean((truth >= low) & (truth <= high))
    assert 0.7 <= coverage <= 0.9, coverage


def test_row_cap_is_honoured() -> None:
    frame, _ = weekly_panel(n_series=10, length=120)
    model = GlobalGBM(max_iter=5, quantile_max_iter=5, max_train_rows=500, quantile_train_rows=200)
    model.fit(frame)
    assert 450 <= model.n_train_rows_ <= 500  # duplicates of the draw are dropped
    for learner in model.quantile_models_.values():
        assert learner.n_features_in_ == len(model.feature_names_)
    uncapped = GlobalGBM(max_iter=5, quantile_max_iter=5, max_horizon=10).fit(frame)
    # 10 series of 120 days, steps 1..10: every valid (origin, step) pair is used.
    assert uncapped.n_train_rows_ == 10 * sum(120 - h for h in range(1, 11))


def test_fit_is_deterministic_for_a_seed() -> None:
    frame, _ = weekly_panel(n_series=8, length=100)
    first = GlobalGBM(seed=7, **TINY).fit(frame).predict(14)
    second = GlobalGBM(seed=7, **TINY).fit(frame).predict(14)
    assert first.equals(second)


def test_forecast_follows_the_future_regressor() -> None:
    rng = np.random.default_rng(3)
    n_series, length, jump = 12, 200, 50.0
    ds = pl.date_range(date(2024, 1, 1), date(2024, 1, 1) + timedelta(days=length - 1), eager=True)
    parts = []
    for i in range(n_series):
        promo = (rng.uniform(size=length) < 0.2).astype(float)
        y = 100.0 + 5 * i + jump * promo + rng.normal(0, 3, length)
        parts.append(pl.DataFrame({"series_id": f"s{i}", "ds": ds, "y": y, "promo": promo}))
    model = GlobalGBM(seed=0, **QUICK).fit(pl.concat(parts))
    horizon = 14
    future_ds = Frequency.parse("daily").future(ds[-1], horizon)
    on = np.tile([0.0, 1.0], horizon // 2)
    future = pl.concat(
        pl.DataFrame({"series_id": f"s{i}", "ds": future_ds, "promo": on}) for i in range(n_series)
    )
    out = model.predict(horizon, (0.5,), future=future).join(future, on=["series_id", "ds"])
    by_promo = out.group_by("promo").agg(pl.col("mean").mean()).sort("promo")["mean"]
    lift = float(by_promo[1] - by_promo[0])
    assert 0.6 * jump < lift < 1.4 * jump, lift


def test_series_of_any_length_and_frequency() -> None:
    rng = np.random.default_rng(5)
    rows = [rng.uniform(10, 20, n) for n in (400, 30, 3, 2)] + [np.zeros(50)]
    width = max(len(r) for r in rows)
    values = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        values[i, width - len(r) :] = r
    for kind in ("hourly", "daily", "weekly", "monthly", "quarterly"):
        freq = Frequency.parse(kind)
        last = datetime(2025, 3, 31, 23) if kind == "hourly" else date(2025, 3, 1)
        panel = Panel(
            tuple(f"s{i}" for i in range(len(rows))),
            values,
            np.array([len(r) for r in rows]),
            tuple([last] * len(rows)),
            freq,
        )
        model = GlobalGBM(**TINY)
        result = model.fit_panel(panel).predict_panel(60, (0.1, 0.9))
        assert np.isfinite(result.mean).all(), kind
        assert result.mean.shape == (len(rows), 60)
        np.testing.assert_array_equal(result.mean[-1], 0.0)  # an all-zero history stays zero
        assert model.max_horizon_ <= width - 1


def test_levels_between_and_beyond_the_fitted_ones() -> None:
    fitted = (0.1, 0.25, 0.5, 0.75, 0.9)
    assert _level_weights(0.5, fitted) == [(0.5, 1.0)]
    (low, w_low), (high, w_high) = _level_weights(0.3, fitted)
    assert (low, high) == (0.25, 0.5)
    assert w_low == pytest.approx(0.8)
    assert w_high == pytest.approx(0.2)
    (a, w_a), (b, w_b) = _level_weights(0.99, fitted)
    assert (a, b) == (0.75, 0.9)
    assert w_b > 1.0  # extrapolated past the outermost fitted level
    assert w_a < 0.0
    assert w_a + w_b == pytest.approx(1.0)
    frame, _ = weekly_panel(n_series=5, length=80)
    model = GlobalGBM(quantile_levels=fitted, **TINY).fit(frame)
    out = model.predict(7, (0.25, 0.3, 0.5, 0.99))
    assert (out["p30"] >= out["p25"] - 1e-9).all()
    assert (out["p30"] <= out["p50"] + 1e-9).all()
    assert (out["p99"] >= out["p50"]).all()


def test_sampled_triples_are_observed() -> None:
    lengths = np.array([50, 10, 2])
    rng = np.random.default_rng(0)
    rows, origins, steps = _sample_triples(lengths, 50, 20, 300, rng)
    first = 50 - lengths[rows]
    assert rows.size <= 300
    assert (origins >= first).all()
    assert (origins + steps <= 49).all()
    assert ((steps >= 1) & (steps <= 20)).all()
    everything = _sample_triples(lengths, 50, 20, 10**6, rng)
    expected = sum(max(n - h, 0) for n in lengths for h in range(1, 21))
    assert everything[0].size == expected
