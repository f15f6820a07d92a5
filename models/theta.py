"""The Theta method (Assimakopoulos & Nikolopoulos, 2000) as in the M4 competition.

Per series, vectorised over the panel:

1. seasonality test and classical multiplicative deseasonalisation, exactly as Naive2 does
   (:func:`models.baselines.m4_seasonal_indices`: the M4 90% autocorrelation test, three
   seasons at least, positive indices);
2. the theta = 0 line: the least-squares slope ``b`` of the adjusted series on time;
3. the theta = 2 line, extrapolated by simple exponential smoothing (SES) with ``alpha``
   and the initial level chosen to minimise the in-sample one-step squared errors (as
   R's ``forecast::thetaf`` via ``ses``). The initial level is profiled out in closed form
   (the one-step errors are linear in it), ``alpha`` is found by a vectorised grid search
   refined twice around the best point;
4. forecast = SES forecast + ``b / 2 * (h - 1 + 1/alpha - (1 - alpha)^n / alpha)``
   (Hyndman & Billah, 2003), reseasonalised.

Prediction intervals are those of SES on the adjusted series,
``sigma^2 * (1 + alpha^2 * (h - 1))``, scaled by the seasonal index of each step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from models.base import Capabilities, Forecaster
from models.baselines import left_align, m4_seasonal_indices, normal_quantiles, seasonal_index_at
from models.panel import Panel

__all__ = ["Theta", "fit_ses"]

_ALPHA_RANGE = (1e-4, 0.9999)
_GRID_POINTS = 21
_REFINE_POINTS = 9
_REFINE_ROUNDS = 2


def _ses_sse(
    values: np.ndarray, valid: np.ndarray, alpha: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SES with the best initial level for each alpha: (SSE, initial level, level at end).

    ``values``/``valid`` are (steps, series), left-aligned (0 and False after the end);
    ``alpha`` is (k, series). The one-step error is ``e0_t - (1 - alpha)^t * l0`` where
    ``e0`` is the error of the run started at 0, so the best ``l0`` is a least-squares fit.
    """
    level = np.zeros_like(alpha)
    weight = np.ones_like(alpha)
    sum_ee = np.zeros_like(alpha)
    sum_ew = np.zeros_like(alpha)
    sum_ww = np.zeros_like(alpha)
    error = np.empty_like(alpha)
    decay = 1.0 - alpha
    for t in range(values.shape[0]):
        np.subtract(values[t], level, out=error)
        error *= valid[t]
        sum_ee += error * error
        masked = weight * valid[t]
        sum_ew += error * masked
        sum_ww += masked * weight
        level += alpha * error
        weight *= decay
    initial = sum_ew / sum_ww
    sse = np.maximum(sum_ee - sum_ew * initial, 0.0)
    # After its end a series' errors are 0: ``level`` froze there, ``weight`` did not.
    lengths = valid.sum(axis=0)
    end_level = level + decay**lengths * initial
    return sse, initial, end_level


def fit_ses(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit SES to every row of a left-aligned (series, steps) matrix at once.

    Returns ``alpha``, the in-sample SSE and the level after the last observation, each
    (series,). The search runs on standardised rows (SES is equivariant to affine scaling).
    """
    n_series = values.shape[0]
    counts = valid.sum(axis=1)
    mean = np.where(valid, values, 0.0).sum(axis=1) / counts
    spread = np.sqrt(np.where(valid, (values - mean[:, None]) ** 2, 0.0).sum(axis=1) / counts)
    spread = np.where(spread > 0, spread, 1.0)
    standard = np.ascontiguousarray(
        np.where(valid, (values - mean[:, None]) / spread[:, None], 0.0).T
    )
    mask = np.ascontiguousarray(valid.T, dtype=float)
    low, high = _ALPHA_RANGE
    # Square-spaced grid: small alphas, where daily demand usually lives, get finer steps.
    grid = low + (high - low) * np.linspace(0.0, 1.0, _GRID_POINTS) ** 2
    candidates = np.repeat(grid[:, None], n_series, axis=1)
    columns = np.arange(n_series)
    best_alpha = np.full(n_series, grid[0])
    best_sse = np.full(n_series, np.inf)
    for round_ in range(_REFINE_ROUNDS + 1):
        with np.errstate(all="ignore"):
            sse, _, _ = _ses_sse(standard, mask, candidates)
        sse = np.where(np.isfinite(sse), sse, np.inf)
        winner = np.argmin(sse, axis=0)
        better = sse[winner, columns] < best_sse
        best_sse = np.where(better, sse[winner, columns], best_sse)
        best_alpha = np.where(better, candidates[winner, columns], best_alpha)
        if round_ == _REFINE_ROUNDS:
            break
        below = candidates[np.maximum(winner - 1, 0), columns]
        above = candidates[np.minimum(winner + 1, candidates.shape[0] - 1), columns]
        fractions = np.linspace(0.0, 1.0, _REFINE_POINTS)[:, None]
        candidates = below[None, :] + (above - below)[None, :] * fractions
    with np.errstate(all="ignore"):
        sse, _, end_level = _ses_sse(standard, mask, best_alpha[None, :])
    return best_alpha, sse[0] * spread**2, end_level[0] * spread + mean


class Theta(Forecaster):
    """The standard Theta method of the M4 competition (see the module docstring)."""

    name: ClassVar[str] = "theta"
    capabilities: ClassVar[Capabilities] = Capabilities(min_history=3)

    def _fit_panel(self, panel: Panel) -> None:
        values, valid = left_align(panel)
        lengths = panel.lengths.astype(np.int64)
        indices = m4_seasonal_indices(values, valid, lengths, self.season_length_)
        positions = np.broadcast_to(np.arange(values.shape[1]), values.shape)
        adjusted = np.where(valid, values / seasonal_index_at(indices, positions), 0.0)
        time = np.where(valid, positions.astype(float), 0.0)
        counts = lengths.astype(float)
        time_mean = time.sum(axis=1) / counts
        centred_time = np.where(valid, time - time_mean[:, None], 0.0)
        spread = (centred_time**2).sum(axis=1)
        self.slope_ = np.where(
            spread > 0, (centred_time * adjusted).sum(axis=1) / np.where(spread > 0, spread, 1), 0
        )
        alpha, sse, level = fit_ses(adjusted, valid)
        self.alpha_ = alpha
        self.level_ = level
        self.sigma2_ = sse / counts
        self.indices_ = indices
        self.lengths_ = lengths

    def _predict_panel(
        self,
        horizon: int,
        quantiles: tuple[float, ...],
        future: Mapping[str, np.ndarray],
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        steps = np.arange(1, horizon + 1)[None, :]
        alpha = self.alpha_[:, None]
        n = self.lengths_[:, None]
        drift = 0.5 * self.slope_[:, None] * (steps - 1 + (1 - (1 - alpha) ** n) / alpha)
        season = seasonal_index_at(
            self.indices_, self.lengths_[:, None] + np.arange(horizon)[None, :]
        )
        mean = (self.level_[:, None] + drift) * season
        sigma = np.sqrt(self.sigma2_[:, None] * (1 + alpha**2 * (steps - 1))) * season
        return mean, normal_quantiles(mean, sigma, quantiles)
