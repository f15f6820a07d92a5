"""Benchmark models: naive, seasonal naive, Naive2 and drift, vectorised over the panel.

Their prediction intervals follow the textbook formulas (Hyndman & Athanasopoulos, FPP3
section 5.5) from the one-step residuals, assuming normal errors; the engine calibrates
every model's quantiles on backtest residuals afterwards.

Series of different lengths are handled without a loop over series: the right-aligned panel
is turned into a left-aligned matrix (:func:`left_align`, every series starting in column 0
so that seasonal phases line up with positions) and every sum runs under a validity mask.

The M4 seasonality test and classical multiplicative decomposition used by Naive2 and Theta
live here too (:func:`m4_seasonal_indices`): a series is treated as seasonal when it has at
least three full seasons and ``|acf_m| > 1.645 * sqrt((1 + 2 * sum_{k<m} acf_k^2) / n)``
(the 90% test of the M4 benchmarks); its seasonal indices are the per-phase means of
``y / centred moving average``, normalised to average one. Multiplicative indices need
positive moving averages and indices: a series whose indices are not all above 1% of the
mean (for example a series that is zero every weekend) is treated as non-seasonal.
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import NormalDist
from typing import ClassVar

import numpy as np

from models.base import Capabilities, Forecaster
from models.panel import Panel

__all__ = [
    "Drift",
    "Naive",
    "Naive2",
    "SeasonalNaive",
    "centred_moving_average",
    "left_align",
    "m4_seasonal_indices",
    "normal_quantiles",
    "seasonal_index_at",
]

#: z of the one-sided 95% normal quantile: the M4 seasonality test at the 90% level.
_M4_SEASONALITY_Z = 1.645
#: Seasonal indices below this share of the mean make multiplicative decomposition unstable.
_MIN_SEASONAL_INDEX = 0.01


def normal_quantiles(
    mean: np.ndarray, sigma: np.ndarray, quantiles: tuple[float, ...]
) -> dict[float, np.ndarray]:
    """Quantiles of normal forecasts: ``mean + z_q * sigma`` (both (series, horizon))."""
    return {q: mean + NormalDist().inv_cdf(q) * sigma for q in quantiles}


def _residual_sigma(residuals: np.ndarray) -> np.ndarray:
    """Root mean square of residuals per row, ignoring NaN; 0 for rows without any."""
    squared = np.where(np.isnan(residuals), 0.0, residuals**2)
    counts = (~np.isnan(residuals)).sum(axis=1)
    return np.sqrt(squared.sum(axis=1) / np.maximum(counts, 1))


def left_align(panel: Panel) -> tuple[np.ndarray, np.ndarray]:
    """Return the panel's values left-aligned (series start in column 0) and the valid mask.

    Positions after a series' end hold 0.0 and are ``False`` in the mask, so sums need no
    NaN handling; position ``t`` of every row is the ``t``-th observation of its series.
    """
    n_steps = panel.values.shape[1]
    columns = np.arange(n_steps)[None, :] + (n_steps - panel.lengths)[:, None]
    valid = columns < n_steps
    shifted = np.take_along_axis(panel.values, np.minimum(columns, n_steps - 1), axis=1)
    return np.where(valid, shifted, 0.0), valid


def _autocorrelations(values: np.ndarray, valid: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelations at lags 0..max_lag per row (FFT), NaN for constant rows."""
    counts = valid.sum(axis=1)
    means = values.sum(axis=1) / counts
    centred = np.where(valid, values - means[:, None], 0.0)
    size = 1 << int(np.ceil(np.log2(2 * values.shape[1] + 1)))
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    covariance = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, : max_lag + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        acf: np.ndarray = covariance / covariance[:, :1]
    return np.where(covariance[:, :1] > 1e-12 * np.maximum(means**2, 1.0)[:, None], acf, np.nan)


def centred_moving_average(values: np.ndarray, lengths: np.ndarray, period: int) -> np.ndarray:
    """Centred moving average of order ``period`` (2 x period when even), NaN at the ends."""
    n_series, n_steps = values.shape
    cumulative = np.zeros((n_series, n_steps + 1))
    np.cumsum(values, axis=1, out=cumulative[:, 1:])
    half = period // 2
    average = np.full((n_series, n_steps), np.nan)
    positions = np.arange(half, n_steps - half)
    if positions.size == 0:
        return average
    if period % 2:
        window = cumulative[:, positions + half + 1] - cumulative[:, positions - half]
        average[:, positions] = window / period
    else:
        first = cumulative[:, positions + half] - cumulative[:, positions - half]
        second = cumulative[:, positions + half + 1] - cumulative[:, positions - half + 1]
        average[:, positions] = (first + second) / (2 * period)
    inside = np.arange(n_steps)[None, :] <= (lengths - 1 - half)[:, None]
    return np.where(inside, average, np.nan)


def m4_seasonal_indices(
    values: np.ndarray, valid: np.ndarray, lengths: np.ndarray, period: int
) -> np.ndarray:
    """Multiplicative seasonal indices per phase, (series, period); ones where not seasonal.

    ``values``/``valid`` are left-aligned (see :func:`left_align`), so phase ``j`` is every
    position ``t`` with ``t % period == j``. A row is seasonal when it has at least three
    seasons, passes the M4 90% autocorrelation test and yields usable multiplicative
    indices (see the module docstring).
    """
    n_series, n_steps = values.shape
    indices = np.ones((n_series, max(period, 1)))
    if period < 2 or n_steps < 3 * period:
        return indices
    acf = _autocorrelations(values, valid, period)
    limit = _M4_SEASONALITY_Z * np.sqrt(
        (1.0 + 2.0 * np.sum(acf[:, 1:period] ** 2, axis=1)) / lengths
    )
    with np.errstate(invalid="ignore"):
        candidate = (lengths >= 3 * period) & (np.abs(acf[:, period]) > limit)
    if not candidate.any():
        return indices
    rows = np.flatnonzero(candidate)
    sub_values, sub_lengths = values[rows], lengths[rows]
    trend = centred_moving_average(sub_values, sub_lengths, period)
    usable_trend = np.all(np.isnan(trend) | (trend > 0), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = sub_values / trend
    present = np.isfinite(ratios)
    ratios = np.where(present, ratios, 0.0)
    width = -(-n_steps // period) * period
    pad = width - n_steps
    ratios = np.pad(ratios, ((0, 0), (0, pad))).reshape(rows.size, -1, period)
    present = np.pad(present, ((0, 0), (0, pad))).reshape(rows.size, -1, period)
    counts = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        phase_means = ratios.sum(axis=1) / counts
        phase_means = phase_means / phase_means.mean(axis=1, keepdims=True)
    usable = (
        usable_trend
        & np.all(counts > 0, axis=1)
        & np.all(np.isfinite(phase_means), axis=1)
        & np.all(phase_means > _MIN_SEASONAL_INDEX, axis=1)
    )
    indices[rows[usable]] = phase_means[usable]
    return indices


def seasonal_index_at(indices: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Seasonal indices at left-aligned positions: ``positions`` is (series, k) ints."""
    period = indices.shape[1]
    return np.take_along_axis(indices, positions % period, axis=1)


def _future_positions(lengths: np.ndarray, horizon: int) -> np.ndarray:
    """Left-aligned positions of the forecast steps, (series, horizon)."""
    return lengths[:, None] + np.arange(horizon)[None, :]


class Naive(Forecaster):
    """Every future step equals the last observation; sigma grows with sqrt(h)."""

    name: ClassVar[str] = "naive"
    capabilities: ClassVar[Capabilities] = Capabilities(min_history=2)

    def _fit_panel(self, panel: Panel) -> None:
        self.last_ = panel.values[:, -1].copy()
        self.sigma_ = _residual_sigma(np.diff(panel.values, axis=1))

    def _predict_panel(
        self,
        horizon: int,
        quantiles: tuple[float, ...],
        future: Mapping[str, np.ndarray],
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        steps = np.arange(1, horizon + 1)
        mean = np.repeat(self.last_[:, None], horizon, axis=1)
        sigma = self.sigma_[:, None] * np.sqrt(steps)[None, :]
        return mean, normal_quantiles(mean, sigma, quantiles)


class SeasonalNaive(Forecaster):
    """Every future step repeats the value one season earlier (the last season, cycled).

    Needs one full season; with no seasonality (period 1) it is the naive model. Sigma is
    the RMS of the seasonal differences and grows with the number of seasons ahead:
    ``sigma * sqrt(floor((h - 1) / m) + 1)`` (FPP3 table 5.2).
    """

    name: ClassVar[str] = "seasonal_naive"
    capabilities: ClassVar[Capabilities] = Capabilities(min_history=1, min_history_in_seasons=True)

    def _fit_panel(self, panel: Panel) -> None:
        period = self.season_length_
        self.period_ = period
        self.last_season_ = panel.values[:, -period:].copy()
        values = panel.values
        if values.shape[1] > period:
            self.sigma_ = _residual_sigma(values[:, period:] - values[:, :-period])
        else:
            self.sigma_ = np.zeros(panel.n_series)

    def _predict_panel(
        self,
        horizon: int,
        quantiles: tuple[float, ...],
        future: Mapping[str, np.ndarray],
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        steps = np.arange(horizon)
        mean = self.last_season_[:, steps % self.period_]
        seasons_ahead = steps // self.period_ + 1
        sigma = self.sigma_[:, None] * np.sqrt(seasons_ahead)[None, :]
        return mean, normal_quantiles(mean, sigma, quantiles)


class Naive2(Forecaster):
    """The M4 benchmark: naive on the seasonally adjusted series, then reseasonalised.

    Seasonality is tested per series (M4 90% autocorrelation test, at least three seasons);
    seasonal series are divided by classical multiplicative indices (see the module
    docstring), others are forecast by plain naive. Sigma is the RMS of the adjusted
    series' differences times ``sqrt(h)``, scaled by the index of each forecast step.
    """

    name: ClassVar[str] = "naive2"
    capabilities: ClassVar[Capabilities] = Capabilities(min_history=2)

    def _fit_panel(self, panel: Panel) -> None:
        values, valid = left_align(panel)
        lengths = panel.lengths
        indices = m4_seasonal_indices(values, valid, lengths, self.season_length_)
        positions = np.broadcast_to(np.arange(values.shape[1]), values.shape)
        adjusted = np.where(valid, values / seasonal_index_at(indices, positions), np.nan)
        self.indices_ = indices
        self.lengths_ = lengths.copy()
        self.last_adjusted_ = adjusted[np.arange(panel.n_series), lengths - 1]
        self.sigma_ = _residual_sigma(np.diff(adjusted, axis=1))

    def _predict_panel(
        self,
        horizon: int,
        quantiles: tuple[float, ...],
        future: Mapping[str, np.ndarray],
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        season = seasonal_index_at(self.indices_, _future_positions(self.lengths_, horizon))
        mean = self.last_adjusted_[:, None] * season
        steps = np.sqrt(np.arange(1, horizon + 1))[None, :]
        sigma = self.sigma_[:, None] * steps * season
        return mean, normal_quantiles(mean, sigma, quantiles)


class Drift(Forecaster):
    """The line from the first to the last observation, extended (random walk with drift).

    Sigma is the RMS of the differences around the mean slope, widened by
    ``sqrt(h * (1 + h / n))`` for the uncertainty of the slope (FPP3 table 5.2).
    """

    name: ClassVar[str] = "drift"
    capabilities: ClassVar[Capabilities] = Capabilities(min_history=2)

    def _fit_panel(self, panel: Panel) -> None:
        values, _ = left_align(panel)
        lengths = panel.lengths
        rows = np.arange(panel.n_series)
        first = values[:, 0]
        last = values[rows, lengths - 1]
        self.slope_ = (last - first) / np.maximum(lengths - 1, 1)
        self.last_ = last
        self.lengths_ = lengths.copy()
        self.sigma_ = _residual_sigma(np.diff(panel.values, axis=1) - self.slope_[:, None])

    def _predict_panel(
        self,
        horizon: int,
        quantiles: tuple[float, ...],
        future: Mapping[str, np.ndarray],
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        steps = np.arange(1, horizon + 1)[None, :]
        mean = self.last_[:, None] + self.slope_[:, None] * steps
        widen = np.sqrt(steps * (1.0 + steps / self.lengths_[:, None]))
        sigma = self.sigma_[:, None] * widen
        return mean, normal_quantiles(mean, sigma, quantiles)
