"""Benchmark models: naive, seasonal naive, Naive2 and drift, vectorised over the panel.

Their prediction intervals follow the textbook formulas (Hyndman & Athanasopoulos, FPP3
section 5.5) from the one-step residuals, assuming normal errors; the engine calibrates
every model's quantiles on backtest residuals afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import NormalDist
from typing import ClassVar

import numpy as np

from models.base import Capabilities, Forecaster
from models.panel import Panel

__all__ = ["Naive", "normal_quantiles"]


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
