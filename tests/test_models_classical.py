"""Classical models (seasonal naive, Naive2, drift, ETS, Theta): contract and correctness.

Cross-checks against statsmodels use one fixed form per case; coverage checks simulate
series from the model's own assumptions, so the nominal level should be met.
"""

from __future__ import annotations

import warnings
from datetime import date, datetime

import numpy as np
import pytest

from models.base import Forecaster
from models.baselines import (
    Drift,
    Naive,
    Naive2,
    SeasonalNaive,
    left_align,
    m4_seasonal_indices,
)
from models.ets import ETS, EtsForm, phi_range
from models.frequency import Frequency
from models.panel import Panel
from models.theta import Theta
from tests.model_checks import CHECKS

CLASSES: tuple[type[Forecaster], ...] = (SeasonalNaive, Naive2, Drift, ETS, Theta)


def make_panel(rows: list[np.ndarray], freq: str = "daily") -> Panel:
    """A right-aligned panel of series of any lengths."""
    frequency = Frequency.parse(freq)
    width = max(len(r) for r in rows)
    values = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        values[i, width - len(r) :] = r
    last = datetime(2025, 1, 1) if frequency.kind == "hourly" else date(2025, 1, 1)
    return Panel(
        tuple(f"s{i}" for i in range(len(rows))),
        values,
        np.array([len(r) for r in rows]),
        tuple([last] * len(rows)),
        frequency,
    )


def simulate_ets(
    rng: np.random.Generator,
    n: int,
    *,
    alpha: float,
    beta: float = 0.0,
    gamma: float = 0.0,
    phi: float = 1.0,
    period: int = 7,
    amplitude: float = 0.0,
    level: float = 1000.0,
    slope: float = 0.0,
    sigma: float = 2.0,
) -> np.ndarray:
    """One path of an additive-error ETS model."""
    season = list(amplitude * np.sin(2 * np.pi * np.arange(period) / period))
    out = np.empty(n)
    for t in range(n):
        error = rng.normal(0, sigma)
        current = season[t % period]
        out[t] = level + phi * slope + current + error
        level, slope = level + phi * slope + alpha * error, phi * slope + beta * error
        season[t % period] = current + gamma * error
    return out


# -- contract ---------------------------------------------------------------------------
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.name)
def test_contract(cls: type[Forecaster], check: object) -> None:
    check(cls)  # type: ignore[operator]


# -- benchmarks -------------------------------------------------------------------------
def test_seasonal_naive_repeats_last_season() -> None:
    rng = np.random.default_rng(0)
    rows = [rng.uniform(1, 10, 30), rng.uniform(1, 10, 9)]
    out = SeasonalNaive().fit_panel(make_panel(rows)).predict_panel(17)
    for i, r in enumerate(rows):
        expected = np.tile(r[-7:], 3)[:17]
        np.testing.assert_array_equal(out.mean[i], expected)


def test_drift_continues_a_line() -> None:
    rows = [5.0 + 2.0 * np.arange(40), 100.0 - 0.5 * np.arange(12)]
    out = Drift().fit_panel(make_panel(rows)).predict_panel(10)
    np.testing.assert_allclose(out.mean[0], 5.0 + 2.0 * np.arange(40, 50))
    np.testing.assert_allclose(out.mean[1], 100.0 - 0.5 * np.arange(12, 22))
    np.testing.assert_allclose(out.quantiles[0.95], out.mean, atol=1e-9)  # no noise, no width


def m4_reference_indices(series: np.ndarray, period: int) -> np.ndarray:
    """Plain-loop transcription of the M4 benchmark's seasonality test and decomposition."""
    n = len(series)
    if n < 3 * period:
        return np.ones(period)
    mean = series.mean()

    def acf(k: int) -> float:
        top = sum((series[i] - mean) * (series[i - k] - mean) for i in range(k, n))
        return float(top / sum((series[i] - mean) ** 2 for i in range(n)))

    total = sum(acf(k) ** 2 for k in range(1, period))
    if abs(acf(period)) <= 1.645 * np.sqrt((1 + 2 * total) / n):
        return np.ones(period)
    trend = np.full(n, np.nan)
    half = period // 2
    for t in range(half, n - half):
        if period % 2:
            trend[t] = series[t - half : t + half + 1].mean()
        else:
            window = series[t - half : t + half + 1]
            trend[t] = (window[1:-1].sum() + 0.5 * (window[0] + window[-1])) / period
    ratios = series / trend
    phases = [np.nanmean(ratios[j::period]) for j in range(period)]
    indices = np.array(phases)
    return indices / indices.mean()


@pytest.mark.parametrize("period", [7, 4, 12])
def test_m4_seasonal_indices_match_a_plain_loop(period: int) -> None:
    rng = np.random.default_rng(period)
    rows = []
    for length in (3 * period - 1, 3 * period, 5 * period + 3, 9 * period):
        t = np.arange(length)
        shape = 1 + 0.3 * np.sin(2 * np.pi * t / period)
        rows.append((50 + 0.2 * t) * shape * rng.uniform(0.95, 1.05, length))
    rows.append(50 + rng.normal(0, 1, 9 * period))  # white noise: rarely seasonal
    panel = make_panel(rows)
    values, valid = left_align(panel)
    got = m4_seasonal_indices(values, valid, panel.lengths, period)
    for i, r in enumerate(rows):
        np.testing.assert_allclose(got[i], m4_reference_indices(r, period), rtol=1e-9)
    assert np.allclose(got[0], 1.0), "fewer than three seasons is never seasonal"
    assert not np.allclose(got[3], 1.0)


def test_naive2_reproduces_multiplicative_seasonality() -> None:
    rng = np.random.default_rng(1)
    pattern = np.array([1.0, 1.2, 1.4, 1.1, 0.9, 0.6, 0.8])
    t = np.arange(10 * 7)
    y = 100 * pattern[t % 7] * rng.uniform(0.99, 1.01, t.size)
    out = Naive2().fit_panel(make_panel([y])).predict_panel(14)
    ratios = out.mean[0] / out.mean[0].mean()
    expected = pattern[np.arange(70, 84) % 7]
    np.testing.assert_allclose(ratios, expected / expected.mean(), rtol=0.03)


# -- ETS --------------------------------------------------------------------------------
def test_ets_form_names_round_trip() -> None:
    for name in ("ANN", "AAN", "AAdN", "ANA", "AAA", "AAdA", "log_AAdA"):
        assert EtsForm.parse(name).label == name
    with pytest.raises(ValueError, match="unknown ETS form"):
        EtsForm.parse("MAM")


def test_ets_recovers_alpha_of_a_local_level() -> None:
    rng = np.random.default_rng(2)
    rows = [simulate_ets(rng, 600, alpha=0.3) for _ in range(20)]
    model = ETS(forms=("ANN",)).fit_panel(make_panel(rows))
    assert abs(float(np.median(model.alpha_)) - 0.3) < 0.05
    assert np.all(np.abs(model.alpha_ - 0.3) < 0.15)
    automatic = ETS().fit_panel(make_panel(rows))
    assert abs(float(np.median(automatic.alpha_)) - 0.3) < 0.05


def test_ets_beats_naive_on_seasonal_series() -> None:
    rng = np.random.default_rng(3)
    horizon = 28
    rows = [
        simulate_ets(rng, 400 + horizon, alpha=0.2, gamma=0.05, amplitude=30) for _ in range(10)
    ]
    history = make_panel([r[:-horizon] for r in rows])
    actual = np.array([r[-horizon:] for r in rows])
    ets = ETS().fit_panel(history)
    naive = Naive().fit_panel(history)
    ets_error = np.abs(ets.predict_panel(horizon).mean - actual).mean()
    naive_error = np.abs(naive.predict_panel(horizon).mean - actual).mean()
    assert ets_error < 0.6 * naive_error
    assert all(ets.forms_[c].endswith("A") for c in ets.choice_), "seasonality not chosen"


def test_ets_takes_the_log_form_for_proportional_growth() -> None:
    rng = np.random.default_rng(4)
    t = np.arange(3 * 365)
    rows = [
        100
        * np.exp(0.002 * t)
        * (1 + 0.3 * np.sin(2 * np.pi * t / 7))
        * rng.lognormal(0, 0.03, t.size)
        for _ in range(3)
    ]
    model = ETS().fit_panel(make_panel(rows))
    assert all(model.forms_[c].startswith("log_") for c in model.choice_)
    out = model.predict_panel(14)
    level = np.array([r[-28:].mean() for r in rows])
    assert np.all(np.abs(out.mean.mean(axis=1) / level - 1) < 0.1)


def test_ets_log_forms_do_not_explode_on_volatile_series() -> None:
    rng = np.random.default_rng(13)
    rows = [np.exp(np.cumsum(rng.normal(0, 0.2, 200))) * 1000 for _ in range(5)]
    model = ETS(forms=("log_ANN",)).fit_panel(make_panel(rows))
    out = model.predict_panel(90, (0.5, 0.9))
    assert np.all(out.mean <= 1.2 * out.quantiles[0.5][:, :1])
    assert np.all(out.mean >= out.quantiles[0.5])


@pytest.mark.parametrize(
    ("freq", "days", "per_month"),
    [
        ("daily", 1.0, 30.4375),
        ("hourly", 1 / 24, 730.5),
        ("weekly", 7.0, 30.4375 / 7),
        ("monthly", 30.4375, 1.0),
        ("quarterly", 91.3125, 1 / 3),
    ],
)
def test_frequency_step_length(freq: str, days: float, per_month: float) -> None:
    frequency = Frequency.parse(freq)
    assert frequency.step_days == pytest.approx(days)
    assert frequency.steps_per_month == pytest.approx(per_month)


def test_damping_range_means_the_same_per_month_at_every_frequency() -> None:
    assert phi_range(1.0) == (0.8, 0.98)
    assert phi_range(1 / 3) == (0.8, 0.98)  # coarser than monthly: statsmodels' range
    low, high = phi_range(Frequency.parse("daily").steps_per_month)
    assert low**30.4375 == pytest.approx(0.8)
    assert high**30.4375 == pytest.approx(0.98)


def test_daily_damped_trend_keeps_growing_past_two_months() -> None:
    # A steady 2%-a-week growth: with the per-step range of monthly data (phi <= 0.98) the
    # trend would die out within weeks and the forecast would stall below the path.
    rng = np.random.default_rng(21)
    t = np.arange(400)
    y = 1000 * np.exp(0.02 / 7 * t) * (1 + rng.normal(0, 0.01, t.size))
    model = ETS(forms=("log_AAdN",)).fit_panel(make_panel([y]))
    median = np.log(model.predict_panel(91, (0.5,)).quantiles[0.5][0])
    first_step, last_step = median[1] - median[0], median[-1] - median[-2]
    assert last_step > 0.4 * first_step  # phi <= 0.98 per day would leave 0.98**90 = 16%
    truth = 1000 * np.exp(0.02 / 7 * (t[-1] + 91))
    assert np.exp(median[-1]) > 0.85 * truth


@pytest.mark.parametrize(
    ("form", "trend", "damped", "seasonal"),
    [("ANN", False, False, False), ("AAdN", True, True, False), ("AAA", True, False, True)],
)
def test_ets_matches_statsmodels(form: str, trend: bool, damped: bool, seasonal: bool) -> None:
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    rng = np.random.default_rng(5)
    y = simulate_ets(
        rng,
        500,
        alpha=0.3,
        beta=0.02 if trend else 0.0,
        gamma=0.1 if seasonal else 0.0,
        phi=0.95 if damped else 1.0,
        slope=0.1 if trend else 0.0,
        amplitude=10.0 if seasonal else 0.0,
    )
    horizon = 28
    mine = ETS(forms=(form,)).fit_panel(make_panel([y])).predict_panel(horizon).mean[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = ETSModel(
            y,
            error="add",
            trend="add" if trend else None,
            damped_trend=damped,
            seasonal="add" if seasonal else None,
            seasonal_periods=7 if seasonal else None,
        ).fit(disp=False)
    theirs = np.asarray(reference.forecast(horizon))
    assert np.abs(mine - theirs).mean() < 0.02 * np.abs(y[-28:]).mean()


@pytest.mark.parametrize(
    ("settings", "coverage_range"),
    [
        ({"alpha": 0.3}, (0.85, 0.95)),
        ({"alpha": 0.2, "gamma": 0.1, "amplitude": 20.0}, (0.85, 0.95)),
    ],
)
def test_ets_interval_coverage(
    settings: dict[str, float], coverage_range: tuple[float, float]
) -> None:
    rng = np.random.default_rng(6)
    horizon = 14
    rows = [simulate_ets(rng, 300 + horizon, **settings) for _ in range(300)]  # type: ignore[arg-type]
    model = ETS().fit_panel(make_panel([r[:-horizon] for r in rows]))
    out = model.predict_panel(horizon, (0.05, 0.95))
    actual = np.array([r[-horizon:] for r in rows])
    inside = (actual >= out.quantiles[0.05]) & (actual <= out.quantiles[0.95])
    low, high = coverage_range
    assert low <= inside.mean() <= high, inside.mean()


def test_ets_interval_coverage_of_a_trend() -> None:
    rng = np.random.default_rng(7)
    horizon = 14
    rows = [simulate_ets(rng, 300 + horizon, alpha=0.3, beta=0.05, slope=0.5) for _ in range(300)]
    model = ETS(forms=("AAN",)).fit_panel(make_panel([r[:-horizon] for r in rows]))
    out = model.predict_panel(horizon, (0.05, 0.95))
    actual = np.array([r[-horizon:] for r in rows])
    inside = (actual >= out.quantiles[0.05]) & (actual <= out.quantiles[0.95])
    assert 0.85 <= inside.mean() <= 0.95, inside.mean()


# -- Theta ------------------------------------------------------------------------------
@pytest.mark.parametrize("seasonal", [False, True])
def test_theta_matches_statsmodels(seasonal: bool) -> None:
    from statsmodels.tsa.forecasting.theta import ThetaModel

    rng = np.random.default_rng(8)
    t = np.arange(400)
    shape = 1 + 0.2 * np.sin(2 * np.pi * t / 7) if seasonal else 1.0
    y = (100 + 0.1 * t + np.cumsum(rng.normal(0, 1, t.size))) * shape + rng.normal(0, 2, t.size)
    mine = Theta().fit_panel(make_panel([y])).predict_panel(28).mean[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.asarray(ThetaModel(y, period=7, deseasonalize=seasonal).fit().forecast(28))
    assert np.abs(mine - theirs).mean() < 0.02 * y[-28:].mean()


def test_theta_interval_coverage() -> None:
    rng = np.random.default_rng(9)
    horizon = 10
    rows = [simulate_ets(rng, 300 + horizon, alpha=0.4) for _ in range(300)]
    out = (
        Theta()
        .fit_panel(make_panel([r[:-horizon] for r in rows]))
        .predict_panel(horizon, (0.05, 0.95))
    )
    actual = np.array([r[-horizon:] for r in rows])
    inside = (actual >= out.quantiles[0.05]) & (actual <= out.quantiles[0.95])
    assert 0.85 <= inside.mean() <= 0.95, inside.mean()


# -- panels of unequal series, awkward series -------------------------------------------
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.name)
def test_panel_equals_one_series_at_a_time(cls: type[Forecaster]) -> None:
    """Vectorised over unequal lengths = fitted alone (the oracle test)."""
    rng = np.random.default_rng(10)
    rows = [
        simulate_ets(rng, length, alpha=0.3, gamma=0.1, amplitude=15, level=200)
        for length in (120, 45, 20, 13, 7)
    ]
    together = cls().fit_panel(make_panel(rows)).predict_panel(9, (0.1, 0.9))
    for i, r in enumerate(rows):
        alone = cls().fit_panel(make_panel([r])).predict_panel(9, (0.1, 0.9))
        np.testing.assert_allclose(together.mean[i], alone.mean[0], rtol=1e-6)
        np.testing.assert_allclose(together.quantiles[0.9][i], alone.quantiles[0.9][0], rtol=1e-6)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.name)
def test_constant_zero_and_short_series(cls: type[Forecaster]) -> None:
    rows = [
        np.full(60, 7.0),
        np.zeros(60),
        np.array([0.0, 0.0, 5.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 4.0] * 4),
        np.array([3.0, 4.0, 5.0, 4.5, 5.5, 6.0, 5.0, 6.5, 7.0, 6.0]),  # between 1 and 2 seasons
        np.array([2.0, 3.0, 4.0, 3.5, 4.5, 5.0, 5.5]),  # exactly the minimum for every model
        np.linspace(-50.0, 20.0, 60) + np.tile([0.0, 3.0, -2.0], 20),  # negative values
        np.linspace(60.0, 10.0, 60),  # falling: starts at its maximum
    ]
    model = cls().fit_panel(make_panel(rows))
    out = model.predict_panel(10, (0.05, 0.5, 0.95))
    assert np.isfinite(out.mean).all()
    assert not model.failures_
    np.testing.assert_allclose(out.mean[0], 7.0, rtol=1e-6)
    np.testing.assert_allclose(out.mean[1], 0.0, atol=1e-9)
    assert (out.quantiles[0.95][2] > out.quantiles[0.05][2]).all()
    assert out.mean[3].max() < 15 and out.mean[4].max() < 15
    assert out.mean[6, 0] < 20


@pytest.mark.parametrize("cls", [ETS, Theta, Naive2, SeasonalNaive], ids=lambda c: c.name)
@pytest.mark.parametrize(("freq", "period"), [("hourly", 24), ("monthly", 12), ("quarterly", 4)])
def test_seasonal_periods_of_other_frequencies(
    cls: type[Forecaster], freq: str, period: int
) -> None:
    rng = np.random.default_rng(11)
    horizon = 2 * period
    t = np.arange(8 * period + horizon)
    rows = [
        (100 + 0.1 * t)
        * (1 + 0.3 * np.sin(2 * np.pi * t / period))
        * rng.uniform(0.97, 1.03, t.size)
        for _ in range(4)
    ]
    history = make_panel([r[:-horizon] for r in rows], freq)
    actual = np.array([r[-horizon:] for r in rows])
    model_error = np.abs(cls().fit_panel(history).predict_panel(horizon).mean - actual).mean()
    naive_error = np.abs(Naive().fit_panel(history).predict_panel(horizon).mean - actual).mean()
    assert model_error < 0.5 * naive_error


def test_ets_is_fast_enough_for_the_engine() -> None:
    """A smoke guard on vectorisation: 200 series x 730 days in well under the budget."""
    import time

    rng = np.random.default_rng(12)
    rows = [simulate_ets(rng, 730, alpha=0.2, gamma=0.05, amplitude=10) for _ in range(5)]
    panel = make_panel(rows * 40)
    started = time.process_time()
    ETS().fit_panel(panel).predict_panel(90)
    assert time.process_time() - started < 10
