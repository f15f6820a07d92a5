"""Automatic seasonal ARIMA per series, on statsmodels' SARIMAX.

For each series the adapter picks the differencing first and the orders second, in the
spirit of Hyndman & Khandakar's ``auto.arima`` (FPP3 section 9.7) but with a fixed handful
of candidates instead of a stepwise search, so a fit costs a few SARIMAX fits:

- seasonal differencing ``D = 1`` when the STL seasonal strength exceeds 0.64 and the series
  holds at least three seasons; then ``d = 1`` when a KPSS test rejects level stationarity of
  the (seasonally differenced) series at 5 percent;
- candidate orders ``(p, q)`` and seasonal ``(P, Q)`` (:data:`CANDIDATE_ORDERS`), the one with
  the lowest AIC wins; a constant when nothing is differenced, a drift when once;
- long seasons (more than :data:`MAX_SEASONAL_LAG` steps, such as 52 weeks) are modelled
  with Fourier terms as regressors instead of seasonal lags, whose state space would be
  too large to fit quickly (dynamic harmonic regression, FPP3 section 12.1);
- regressors of the panel enter as a regression with ARIMA errors.

Quantiles are normal around the point forecast with the Kalman filter's forecast standard
errors. Only the chosen orders and parameters are kept (a statsmodels results object holds
megabytes of filter output per series); predict re-runs the filter once.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from models.base import Capabilities, Forecaster
from models.baselines import normal_quantiles
from models.panel import Panel

__all__ = [
    "ARIMA",
    "CANDIDATE_ORDERS",
    "MAX_SEASONAL_LAG",
    "ArimaFit",
    "design_matrix",
    "fourier_terms",
    "quiet_statsmodels",
    "single_threaded",
]

#: Candidate ``(p, q, P, Q)`` orders; those with seasonal terms are tried only on seasonal
#: series. Cheap ones first; the seasonal ones cost most (their state vector spans a season).
CANDIDATE_ORDERS: tuple[tuple[int, int, int, int], ...] = (
    (1, 0, 0, 0),
    (0, 1, 0, 0),
    (1, 1, 0, 0),
    (2, 1, 0, 0),
    (1, 0, 1, 0),
    (0, 1, 0, 1),
)

#: Longest season modelled with seasonal lags; longer ones get Fourier terms.
MAX_SEASONAL_LAG = 12

_SEASONAL_STRENGTH = 0.64  # the threshold auto.arima uses for seasonal differencing
_FOURIER_PAIRS = 3
_KPSS_ALPHA = 0.05
_EXPLOSION_FACTOR = 10.0


@dataclass(frozen=True)
class ArimaFit:
    """What the order search chose for one series, and the fitted parameters."""

    order: tuple[int, int, int]
    seasonal_order: tuple[int, int, int, int]
    trend: str | None
    fourier_period: int
    fourier_pairs: int
    regressors: tuple[str, ...]
    params: dict[str, float]
    aic: float
    converged: bool


@contextmanager
def quiet_statsmodels() -> Iterator[list[warnings.WarningMessage]]:
    """Capture every warning raised inside and yield their list.

    statsmodels warns about starting values, convergence and frequencies; callers keep what
    matters (non-convergence) as a note instead of letting the warnings reach the user.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


@contextmanager
def single_threaded() -> Iterator[None]:
    """Limit BLAS to one thread inside.

    State-space filters multiply tiny matrices: idle BLAS threads spinning on a busy machine
    cost several times the work itself. scipy's BLAS is imported first, since only libraries
    already loaded are limited.
    """
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _convergence_messages(caught: list[warnings.WarningMessage]) -> list[str]:
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    return [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


def seasonal_strength(y: np.ndarray, period: int) -> float:
    """STL seasonal strength ``max(0, 1 - var(R) / var(S + R))`` (FPP3 section 4.3)."""
    from statsmodels.tsa.seasonal import STL

    parts = STL(y, period=period, robust=False).fit()
    denominator = float(np.var(parts.seasonal + parts.resid))
    if denominator <= 0.0:
        return 0.0
    return max(0.0, 1.0 - float(np.var(parts.resid)) / denominator)


def kpss_differences(y: np.ndarray) -> int:
    """1 when a KPSS test rejects level stationarity at 5 percent, else 0."""
    from statsmodels.tsa.stattools import kpss

    if np.ptp(y) == 0.0 or y.size < 8:
        return 0
    _, p_value, *_ = kpss(y, regression="c", nlags="auto")
    return int(p_value < _KPSS_ALPHA)


def fourier_terms(start: int, length: int, period: int, pairs: int) -> np.ndarray:
    """Sine and cosine columns of the first ``pairs`` harmonics at steps ``start..``."""
    t = np.arange(start, start + length, dtype=float)[:, None]
    k = np.arange(1, pairs + 1, dtype=float)[None, :]
    angle = 2.0 * np.pi * k * t / period
    return np.hstack([np.sin(angle), np.cos(angle)])


class ARIMA(Forecaster):
    """Seasonal ARIMA per series with a small automatic order search (see the module)."""

    name: ClassVar[str] = "arima"
    capabilities: ClassVar[Capabilities] = Capabilities(
        probabilistic=True, exogenous=True, min_history=10
    )

    def __init__(
        self,
        *,
        season_length: int | None = None,
        seed: int = 0,
        candidate_orders: tuple[tuple[int, int, int, int], ...] = CANDIDATE_ORDERS,
        maxiter: int = 50,
    ) -> None:
        super().__init__(season_length=season_length, seed=seed)
        self.candidate_orders = candidate_orders
        self.maxiter = maxiter

    # -- fit -------------------------------------------------------------------------
    def _fit_panel(self, panel: Panel) -> None:
        self.notes_: dict[str, str] = {}
        self.fits_: dict[str, ArimaFit] = {}
        with single_threaded():
            for i, sid in enumerate(panel.series_ids):
                self._fit_row(panel, i, sid)

    def _fit_row(self, panel: Panel, i: int, sid: str) -> None:
        y = panel.series(i)
        exog = self._history_regressors(panel, i)
        try:
            fit, note = self._fit_series(y, exog)
        except Exception as exc:  # one bad series must not stop the panel
            self.failures_[sid] = f"ARIMA fit failed: {type(exc).__name__}: {exc}"
            return
        if note:
            self.notes_[sid] = note
        self.fits_[sid] = fit

    def _history_regressors(self, panel: Panel, row: int) -> dict[str, np.ndarray]:
        n = int(panel.lengths[row])
        return {
            name: matrix[row, matrix.shape[1] - n :] for name, matrix in panel.regressors.items()
        }

    def _fit_series(self, y: np.ndarray, regressors: dict[str, np.ndarray]) -> tuple[ArimaFit, str]:
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        for name, values in regressors.items():
            if not np.isfinite(values).all():
                raise ValueError(f"regressor '{name}' has missing or non-finite values")
        # A constant regressor is collinear with the constant (or differenced away).
        used = tuple(name for name, values in regressors.items() if np.ptp(values) > 0.0)
        m = self.season_length_
        n = y.size
        seasonal_lags = 1 < m <= MAX_SEASONAL_LAG and n >= 3 * m
        pairs = min(_FOURIER_PAIRS, m // 2) if m > MAX_SEASONAL_LAG and n >= 2 * m else 0
        exog = design_matrix(used, regressors, 0, n, m, pairs)
        with quiet_statsmodels():
            # Differencing is chosen on the series net of its regressors (as auto.arima does).
            net = y if exog is None else y - exog @ _ols(y, exog)
            big_d = int(seasonal_lags and seasonal_strength(net, m) > _SEASONAL_STRENGTH)
            d = kpss_differences(_difference(net, 0, big_d, m))
        seasonal_period = m if seasonal_lags else 0
        # SARIMAX adds the trend to the differenced equation: a constant is the mean when
        # nothing is differenced and a drift when differenced once.
        trend = "c" if d + big_d <= 1 else None
        # The order search runs on the series net of OLS regressor effects (estimated on the
        # differenced data, like the regression with ARIMA errors); only the winner is
        # refitted jointly with the regressors, starting from the two-step estimates.
        beta = None
        target = y
        if exog is not None:
            beta = _ols(_difference(y, d, big_d, m), _difference(exog, d, big_d, m))
            target = y - exog @ beta
        best: tuple[float, Any, tuple[int, int, int, int], list[str]] | None = None
        for p, q, big_p, big_q in self.candidate_orders:
            if (big_p or big_q) and not seasonal_lags:
                continue
            if p + q + big_p + big_q + 2 > n // 3:
                continue
            with quiet_statsmodels() as caught:
                model = SARIMAX(
                    target,
                    order=(p, d, q),
                    seasonal_order=(big_p, big_d, big_q, seasonal_period),
                    trend=trend,
                    concentrate_scale=True,
                    simple_differencing=True,
                )
                result = model.fit(disp=False, cov_type="none", maxiter=self.maxiter)
            aic = float(result.aic)
            if not np.isfinite(aic) or not np.isfinite(result.params).all():
                continue
            if best is None or aic < best[0]:
                best = (aic, result, (p, q, big_p, big_q), _convergence_messages(caught))
        if best is None:
            raise ValueError("no candidate order gave a finite likelihood")
        aic, result, (p, q, big_p, big_q), messages = best
        order = (p, d, q)
        seasonal_order = (big_p, big_d, big_q, seasonal_period)
        if exog is not None and beta is not None:
            start = dict(zip(result.model.param_names, result.params, strict=True))
            with quiet_statsmodels() as caught:
                model = SARIMAX(
                    y,
                    exog=exog,
                    order=order,
                    seasonal_order=seasonal_order,
                    trend=trend,
                    concentrate_scale=True,
                    simple_differencing=True,
                )
                names = model.param_names
                start.update(zip([k for k in names if k not in start], beta, strict=True))
                result = model.fit(
                    start_params=np.array([start[name] for name in names]),
                    disp=False,
                    cov_type="none",
                    maxiter=self.maxiter,
                )
            aic = float(result.aic)
            messages = _convergence_messages(caught)
            if not np.isfinite(result.params).all():
                raise ValueError("the regression with ARIMA errors has non-finite parameters")
        converged = bool(result.mle_retvals.get("converged", True))
        fit = ArimaFit(
            order=order,
            seasonal_order=seasonal_order,
            trend=trend,
            fourier_period=m if pairs else 0,
            fourier_pairs=pairs,
            regressors=used,
            params=dict(zip(result.model.param_names, map(float, result.params), strict=True)),
            aic=aic,
            converged=converged,
        )
        if converged:
            return fit, ""
        probe = max(2 * m, 14)
        held = {k: np.repeat(v[-1:], probe) for k, v in regressors.items()}
        mean, sigma = _forecast(fit, y, regressors, held, probe)
        if not _usable(y, mean, sigma):
            raise ValueError(
                f"the optimizer did not converge for order {order}{seasonal_order} and the "
                f"forecast is unusable: {'; '.join(messages) or 'no message'}"
            )
        note = (
            f"optimizer did not converge for order {order}{seasonal_order} "
            f"({'; '.join(messages) or 'no message'}); the forecast looked sound and was kept"
        )
        return fit, note

    # -- predict ---------------------------------------------------------------------
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
                ahead = {name: future[name][i] for name in fit.regressors}
                history = self._history_regressors(panel, i)
                try:
                    row_mean, row_sigma = _forecast(fit, panel.series(i), history, ahead, horizon)
                except Exception as exc:  # recorded; the engine falls back for this series
                    self.failures_[sid] = f"ARIMA forecast failed: {type(exc).__name__}: {exc}"
                    continue
                if not (np.isfinite(row_mean).all() and np.isfinite(row_sigma).all()):
                    self.failures_[sid] = "ARIMA forecast is not finite"
                    continue
                mean[i], sigma[i] = row_mean, row_sigma
        return mean, normal_quantiles(mean, sigma, quantiles)


def design_matrix(
    used: tuple[str, ...],
    regressors: Mapping[str, np.ndarray],
    start: int,
    length: int,
    period: int,
    fourier_pairs: int,
) -> np.ndarray | None:
    """The exogenous matrix: the regressors in use, then any Fourier terms."""
    columns = [np.asarray(regressors[name], dtype=float)[:, None] for name in used]
    if fourier_pairs:
        columns.append(fourier_terms(start, length, period, fourier_pairs))
    return np.hstack(columns) if columns else None


def _forecast(
    fit: ArimaFit,
    y: np.ndarray,
    history: Mapping[str, np.ndarray],
    ahead: Mapping[str, np.ndarray],
    horizon: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of the forecast of a fitted series.

    The search fits the differenced series (cheaper, same likelihood); this filters the
    undifferenced model with those parameters, so the forecast integrates back correctly.
    """
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    n = y.size
    m, pairs = fit.fourier_period, fit.fourier_pairs
    with quiet_statsmodels():
        model = SARIMAX(
            y,
            exog=design_matrix(fit.regressors, history, 0, n, m, pairs),
            order=fit.order,
            seasonal_order=fit.seasonal_order,
            trend=fit.trend,
            concentrate_scale=True,
        )
        result = model.filter(np.array(list(fit.params.values())))
        forecast = result.get_forecast(
            horizon, exog=design_matrix(fit.regressors, ahead, n, horizon, m, pairs)
        )
        return (
            np.asarray(forecast.predicted_mean, dtype=float),
            np.asarray(forecast.se_mean, dtype=float),
        )


def _ols(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Coefficients of ``x`` in a least-squares fit of ``y`` on a constant and ``x``."""
    design = np.hstack([np.ones((x.shape[0], 1)), x])
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    return np.asarray(coefficients[1:], dtype=float)


def _difference(values: np.ndarray, d: int, big_d: int, period: int) -> np.ndarray:
    """Apply ``d`` first and ``big_d`` seasonal differences along the first axis."""
    for _ in range(big_d):
        values = values[period:] - values[:-period]
    for _ in range(d):
        values = np.diff(values, axis=0)
    return values


def _usable(y: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> bool:
    """Finite, and within a wide band around the history (not exploding)."""
    if not (np.isfinite(mean).all() and np.isfinite(sigma).all()):
        return False
    spread = float(np.ptp(y)) + 1e-9 * (abs(float(y.mean())) + 1.0)
    low = float(y.min()) - _EXPLOSION_FACTOR * spread
    high = float(y.max()) + _EXPLOSION_FACTOR * spread
    return bool(((mean >= low) & (mean <= high)).all())
