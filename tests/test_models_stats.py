"""The statsmodels and Prophet adapters: the contract checks, plus what each adapter promises."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from models.arima import ARIMA
from models.base import Forecaster
from models.mstl import MSTL
from models.prophet_model import Prophet
from tests.model_checks import CHECKS, synthetic_frame

MODELS: tuple[type[Forecaster], ...] = (ARIMA, MSTL, Prophet)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.name)
def test_contract(cls: type[Forecaster], check: object) -> None:
    check(cls)  # type: ignore[operator]


def _daily(series_id: str, y: np.ndarray, start: date = date(2023, 1, 1), **columns: object):
    ds = pl.date_range(start, start + timedelta(days=len(y) - 1), eager=True)
    return pl.DataFrame({"series_id": series_id, "ds": ds, "y": y, **columns})


def _ar1(n: int, phi: float, level: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.empty(n)
    y[0] = level
    for t in range(1, n):
        y[t] = level + phi * (y[t - 1] - level) + rng.normal(0, 2)
    return y


# -- ARIMA ---------------------------------------------------------------------------------
def test_arima_recovers_ar1_and_matches_sarimax() -> None:
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    y = _ar1(500, 0.7, 50.0, seed=0)
    model = ARIMA().fit(_daily("ar", y))
    fit = model.fits_["ar"]
    assert fit.order == (1, 0, 0)
    assert fit.seasonal_order[:3] == (0, 0, 0)
    assert fit.params["ar.L1"] == pytest.approx(0.7, abs=0.08)
    out = model.predict(10, (0.05, 0.5, 0.95))

    direct = SARIMAX(y, order=fit.order, trend=fit.trend).fit(disp=False)
    forecast = direct.get_forecast(10)
    expected_mean = np.asarray(forecast.predicted_mean)
    interval = np.asarray(forecast.conf_int(alpha=0.1))
    np.testing.assert_allclose(out["mean"].to_numpy(), expected_mean, rtol=1e-3)
    np.testing.assert_allclose(out["p05"].to_numpy(), interval[:, 0], rtol=1e-3)
    np.testing.assert_allclose(out["p95"].to_numpy(), interval[:, 1], rtol=1e-3)


def test_arima_uses_a_regressor() -> None:
    rng = np.random.default_rng(2)
    n = 300
    load = rng.uniform(0, 1, n)
    y = 40 + 15 * load + _ar1(n, 0.5, 0.0, seed=3)
    model = ARIMA().fit(_daily("x", y, load=load))
    assert model.fits_["x"].regressors == ("load",)
    future_ds = pl.Series(
        "ds", [date(2023, 1, 1) + timedelta(days=n + k) for k in range(5)], dtype=pl.Date
    )
    low = model.predict(5, future=pl.DataFrame({"series_id": "x", "ds": future_ds, "load": 0.0}))
    high = model.predict(5, future=pl.DataFrame({"series_id": "x", "ds": future_ds, "load": 1.0}))
    effect = (high["mean"] - low["mean"]).to_numpy()
    np.testing.assert_allclose(effect, 15, atol=2.0)


def test_arima_notes_non_convergence_and_keeps_the_forecast() -> None:
    model = ARIMA(maxiter=1).fit(_daily("ar", _ar1(200, 0.6, 30.0, seed=5)))
    assert "did not converge" in model.notes_["ar"]
    assert not model.failures_
    assert model.predict(5)["mean"].is_finite().all()


def test_arima_forecasts_a_constant_series() -> None:
    model = ARIMA().fit(_daily("flat", np.full(60, 5.0)))
    out = model.predict(3)
    assert not model.failures_
    np.testing.assert_allclose(out["mean"].to_numpy(), 5.0, atol=1e-6)


# -- MSTL ----------------------------------------------------------------------------------
def test_mstl_reproduces_daily_and_weekly_hourly_patterns() -> None:
    rng = np.random.default_rng(6)
    weeks, horizon = 5, 168
    t = np.arange(weeks * 168 + horizon)
    daily = 20 * np.sin(2 * np.pi * t / 24)
    weekly = 15 * np.cos(2 * np.pi * t / 168)
    truth = 200 + daily + weekly
    y = truth + rng.normal(0, 5, t.size)
    n = weeks * 168
    start = datetime(2024, 1, 1)
    ds = pl.datetime_range(start, start + timedelta(hours=n - 1), "1h", eager=True)
    frame = pl.DataFrame({"series_id": "pool", "ds": ds, "y": y[:n]})

    model = MSTL().fit(frame)
    assert model.fits_["pool"].periods == (24, 168)
    forecast = model.predict(horizon)["mean"].to_numpy()
    future = truth[n:]
    mstl_error = np.abs(forecast - future).mean()
    naive_day = np.abs(np.tile(y[n - 24 : n], 7) - future).mean()
    naive_week = np.abs(y[n - 168 : n] - future).mean()
    # The daily seasonal naive misses the weekly pattern; the weekly one repeats a week of
    # noise, which MSTL averages over five weeks.
    assert mstl_error < 0.5 * naive_day
    assert mstl_error < naive_week


# -- Prophet -------------------------------------------------------------------------------
def _event_series() -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray, np.ndarray]:
    """Two years of daily demand with a monthly training campaign (+40 on the 15th)."""
    rng = np.random.default_rng(7)
    start, n, horizon = date(2023, 1, 1), 730, 90
    days = [start + timedelta(days=k) for k in range(n + horizon)]
    event = np.array([d.day == 15 for d in days])
    t = np.arange(n + horizon)
    truth = 100 + 10 * np.sin(2 * np.pi * t / 7) + 40 * event
    y = truth + rng.normal(0, 2, t.size)
    frame = _daily("pool", y[:n], start=start)
    holidays = pl.DataFrame(
        {"holiday": "campaign", "ds": [d for d, e in zip(days, event, strict=True) if e]}
    )
    return frame, holidays, truth[n:], event[n:]


def test_prophet_holidays_reduce_error_on_event_days() -> None:
    frame, holidays, future, on_event = _event_series()
    plain = Prophet(yearly_seasonality=False).fit(frame).predict(90)["mean"].to_numpy()
    with_events = (
        Prophet(holidays=holidays, yearly_seasonality=False).fit(frame).predict(90)["mean"]
    ).to_numpy()
    plain_error = np.abs(plain - future)[on_event].mean()
    event_error = np.abs(with_events - future)[on_event].mean()
    assert event_error < 0.5 * plain_error


def test_prophet_holidays_can_target_one_series() -> None:
    frame, holidays, _, on_event = _event_series()
    other = frame.with_columns(series_id=pl.lit("other"))
    targeted = holidays.with_columns(series_id=pl.lit("pool"))
    model = Prophet(holidays=targeted, yearly_seasonality=False, uncertainty_samples=20)
    out = model.fit(pl.concat([frame, other])).predict(90)
    pool = out.filter(pl.col("series_id") == "pool")["mean"].to_numpy()
    rest = out.filter(pl.col("series_id") == "other")["mean"].to_numpy()
    # Only the targeted series learns the campaign, though both histories have it.
    assert (pool - rest)[on_event].mean() > 20
    with pytest.raises(ValueError, match="lacks column"):
        Prophet(holidays=holidays.rename({"ds": "day"})).fit(frame)


def test_prophet_is_deterministic_and_leaves_the_caller_alone() -> None:
    frame = synthetic_frame("daily", n_series=2, regressor=True)
    original = frame.clone()
    future = pl.concat(
        [
            pl.DataFrame(
                {
                    "series_id": sid,
                    "ds": pl.date_range(
                        last + timedelta(days=1), last + timedelta(days=7), eager=True
                    ),
                    "load": np.linspace(0, 1, 7),
                }
            )
            for sid, last in frame.group_by("series_id").agg(pl.col("ds").max()).iter_rows()
        ]
    )
    np.random.seed(123)
    state = np.random.get_state(legacy=True)
    levels = {name: logging.getLogger(name).level for name in ("prophet", "cmdstanpy")}

    first = Prophet(seed=4).fit(frame).predict(7, future=future)
    second = Prophet(seed=4).fit(frame).predict(7, future=future)
    other_seed = Prophet(seed=5).fit(frame).predict(7, future=future)

    assert first.equals(second)
    assert not first.equals(other_seed)
    assert frame.equals(original)
    after = np.random.get_state(legacy=True)
    assert isinstance(state, tuple)
    assert isinstance(after, tuple)
    assert after[0] == state[0]
    np.testing.assert_array_equal(after[1], state[1])
    assert after[2:] == state[2:]
    assert {name: logging.getLogger(name).level for name in levels} == levels


# -- failures ------------------------------------------------------------------------------
class _FailingArima(ARIMA):
    def _fit_series(self, y, regressors):
        if np.ptp(y) == 0:
            raise RuntimeError("injected failure")
        return super()._fit_series(y, regressors)


class _FailingMstl(MSTL):
    def _fit_series(self, y, periods):
        if np.ptp(y) == 0:
            raise RuntimeError("injected failure")
        return super()._fit_series(y, periods)


class _FailingProphet(Prophet):
    def _new_model(self, holidays):
        model = super()._new_model(holidays)
        fit = model.fit

        def failing_fit(df, **kwargs):
            if df["y"].nunique() == 1:
                raise RuntimeError("injected failure")
            return fit(df, **kwargs)

        model.fit = failing_fit
        return model


@pytest.mark.parametrize("cls", [_FailingArima, _FailingMstl, _FailingProphet])
def test_a_failing_series_gets_nan_rows_and_a_reason(cls: type[Forecaster]) -> None:
    frame = synthetic_frame("daily", n_series=2, regressor=cls.capabilities.exogenous)
    constant = frame.filter(pl.col("series_id") == "s0").with_columns(
        series_id=pl.lit("stuck"), y=pl.lit(7.0)
    )
    model = cls().fit(pl.concat([frame, constant]))
    assert "injected failure" in model.failures_["stuck"]
    future = None
    if cls.capabilities.exogenous:
        rows = []
        for sid, last in (
            pl.concat([frame, constant]).group_by("series_id").agg(pl.col("ds").max()).iter_rows()
        ):
            ds = pl.date_range(last + timedelta(days=1), last + timedelta(days=5), eager=True)
            rows.append(pl.DataFrame({"series_id": sid, "ds": ds, "load": 0.5}))
        future = pl.concat(rows)
    out = model.predict(5, future=future)
    stuck = out.filter(pl.col("series_id") == "stuck").drop("series_id", "ds", "h")
    others = out.filter(pl.col("series_id") != "stuck").drop("series_id", "ds", "h")
    assert np.isnan(stuck.to_numpy()).all()
    assert np.isfinite(others.to_numpy()).all()
    assert set(model.failures_) == {"stuck"}
