"""MSTL per series: several seasonal patterns, a trend model on what remains.

Each series is decomposed by statsmodels' MSTL (Bandara, Hyndman & Bergmeir 2021) into one
seasonal component per period plus trend and remainder. Periods are the frequency's seasonal
periods that fit twice in the history (hourly 24 and 168, daily 7 and, with two years, 365,
weekly 52, monthly 12, quarterly 4), or the constructor's ``season_length`` alone.

The forecast is the sum of

- each seasonal component repeated from its last cycle, and
- an exponential smoothing forecast of the deseasonalized series (trend + remainder): the
  damped-trend and the level-only models are both fitted and the lower AIC wins.

Quantiles are normal with the smoothing model's forecast standard errors: the seasonal
components are taken as known, as in statsforecast's MSTL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from models.arima import quiet_statsmodels, single_threaded
from models.base import Capabilities, Forecaster
from models.baselines import normal_quantiles
from models.frequency import FREQUENCY_KINDS
from models.panel import Panel

__all__ = ["MSTL", "MstlFit", "seasonal_periods_that_fit"]


@dataclass(frozen=True)
class MstlFit:
    """The decomposition and smoothing model kept for one series."""

    periods: tuple[int, ...]
    last_cycles: tuple[np.ndarray, ...]
    deseasonalized: np.ndarray
    damped_trend: bool
    params: np.ndarray
    aic: float
    converged: bool


def seasonal_periods_that_fit(candidates: tuple[int, ...], length: int) -> tuple[int, ...]:
    """The periods longer than one step that fit at least twice in ``length`` steps."""
    return tuple(sorted(p for p in set(candidates) if p > 1 and length >= 2 * p))


class MSTL(Forecaster):
    """Multiple seasonal decomposition plus exponential smoothing (see the module)."""

    name: ClassVar[str] = "mstl"
    capabilities: ClassVar[Capabilities] = Capabilities(
        probabilistic=True,
        exogenous=False,
        min_history=2,
        min_history_in_seasons=True,
        frequencies=FREQUENCY_KINDS,
    )

    def __init__(
        self, *, season_length: int | None = None, seed: int = 0, iterate: int = 2
    ) -> None:
        super().__init__(season_length=season_length, seed=seed)
        self.iterate = iterate

    def _fit_panel(self, panel: Panel) -> None:
        self.notes_: dict[str, str] = {}
        self.fits_: dict[str, MstlFit] = {}
        candidates = (self.season_length,) if self.season_length else panel.freq.seasonal_periods
        with single_threaded():
            for i, sid in enumerate(panel.series_ids):
                y = panel.series(i)
                try:
                    fit = self._fit_series(y, seasonal_periods_that_fit(candidates, y.size))
                except Exception as exc:  # one bad series must not stop the panel
                    self.failures_[sid] = f"MSTL fit failed: {type(exc).__name__}: {exc}"
                    continue
                if not fit.converged:
                    self.notes_[sid] = (
                        "the smoothing model's optimizer did not converge; "
                        "its forecast was finite and kept"
                    )
                self.fits_[sid] = fit

    def _fit_series(self, y: np.ndarray, periods: tuple[int, ...]) -> MstlFit:
        from statsmodels.tsa import seasonal
        from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

        cycles: tuple[np.ndarray, ...] = ()
        deseasonalized = y.astype(float)
        if periods:
            with quiet_statsmodels():
                parts = seasonal.MSTL(y, periods=periods, iterate=self.iterate).fit()
            components = np.asarray(parts.seasonal, dtype=float).reshape(y.size, -1)
            cycles = tuple(components[-p:, j].copy() for j, p in enumerate(periods))
            deseasonalized = y - components.sum(axis=1)
        best = None
        for damped in (True, False):
            with quiet_statsmodels():
                model = ExponentialSmoothing(deseasonalized, trend=damped, damped_trend=damped)
                result = model.fit(disp=False, cov_type="none")
            aic = float(result.aic)
            finite = np.isfinite(aic) and np.isfinite(result.params).all()
            if finite and (best is None or aic < best[0]):
                converged = bool(result.mle_retvals.get("converged", True))
                best = (aic, damped, np.asarray(result.params, dtype=float), converged)
        if best is None:
            raise ValueError("no smoothing model gave a finite likelihood")
        aic, damped, params, converged = best
        fit = MstlFit(periods, cycles, deseasonalized, damped, params, aic, converged)
        if not converged:
            mean, sigma = _forecast(fit, 2 * max(periods, default=7))
            if not (np.isfinite(mean).all() and np.isfinite(sigma).all()):
                raise ValueError(
                    "the smoothing model's optimizer did not converge and its forecast is "
                    "not finite"
                )
        return fit

    def _predict_panel(
        self,
        horizon: int,
        quantiles: tuple[float, ...],
        future: Mapping[str, np.ndarray],
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        panel = self.panel_
        mean = np.full((panel.n_series, horizon), np.nan)
        sigma = np.full((panel.n_series, horizon), np.nan)
        with single_threaded():
            for i, sid in enumerate(panel.series_ids):
                fit = self.fits_.get(sid)
                if fit is None:
                    continue
                try:
                    row_mean, row_sigma = _forecast(fit, horizon)
                except Exception as exc:  # recorded; the engine falls back for this series
                    self.failures_[sid] = f"MSTL forecast failed: {type(exc).__name__}: {exc}"
                    continue
                if not (np.isfinite(row_mean).all() and np.isfinite(row_sigma).all()):
                    self.failures_[sid] = "MSTL forecast is not finite"
                    continue
                mean[i], sigma[i] = row_mean, row_sigma
        return mean, normal_quantiles(mean, sigma, quantiles)


def _forecast(fit: MstlFit, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error: smoothing forecast plus each seasonal's last cycle."""
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

    with quiet_statsmodels():
        model = ExponentialSmoothing(
            fit.deseasonalized, trend=fit.damped_trend, damped_trend=fit.damped_trend
        )
        forecast = model.filter(fit.params).get_forecast(horizon)
        mean = np.asarray(forecast.predicted_mean, dtype=float)
        sigma = np.asarray(forecast.se_mean, dtype=float)
    steps = np.arange(horizon)
    for period, cycle in zip(fit.periods, fit.last_cycles, strict=True):
        mean = mean + cycle[steps % period]
    return mean, sigma
