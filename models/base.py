"""The forecaster contract and the registry of models by name.

Every model follows one small contract (scikit-learn's): the constructor stores its
settings and nothing else; :meth:`Forecaster.fit` validates a long frame, learns, and
returns ``self`` (learned state ends in ``_``; fitting again equals a fresh fit);
:meth:`Forecaster.predict` returns ``series_id, ds, h, mean`` and one column per quantile
(named by :func:`models.quantiles.quantile_column`). Forecasts are never negative and
quantiles never cross: :func:`models.panel.sanitize_forecasts` enforces both for every model.

Models declare what they can do in :class:`Capabilities` rather than being probed. Per-series
models report series they could not fit in ``failures_`` (series id -> reason) and forecast
NaN for them, so the engine can fall back to the next model and say why; ``failures_`` may
also gain series whose forecast failed at predict time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl

from models.frames import LongFrameError, infer_frequency
from models.frequency import FREQUENCY_KINDS, Frequency
from models.panel import Panel, forecast_frame, sanitize_forecasts
from models.quantiles import DEFAULT_QUANTILES, validate_quantiles

__all__ = [
    "Capabilities",
    "Forecaster",
    "NotFittedError",
    "PanelForecast",
    "create",
    "registered",
]


class NotFittedError(RuntimeError):
    """``predict`` was called before ``fit``."""


@dataclass(frozen=True)
class Capabilities:
    """What a model can do, declared up front.

    ``min_history`` is in seasons when ``min_history_in_seasons`` is true (so a seasonal
    model needs two weeks of daily data but two days of hourly data), else in steps.
    """

    probabilistic: bool = True
    exogenous: bool = False
    global_model: bool = False
    min_history: int = 2
    min_history_in_seasons: bool = False
    frequencies: tuple[str, ...] = (*FREQUENCY_KINDS, "other")

    def min_length(self, freq: Frequency) -> int:
        """The fewest observations a series needs at this frequency."""
        if self.min_history_in_seasons:
            return self.min_history * freq.season_length
        return self.min_history


@dataclass(frozen=True)
class PanelForecast:
    """Forecast matrices for every row of a panel: (series, horizon) arrays."""

    mean: np.ndarray
    quantiles: Mapping[float, np.ndarray]


class Forecaster(ABC):
    """Base of every model: subclasses implement :meth:`_fit_panel` and :meth:`_predict_panel`.

    The base class turns frames into panels and back, checks frequencies and history
    lengths, and sanitizes outputs; subclasses see numpy arrays only.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: Settings that make the model quick on the contract checks' tiny panels (a global
    #: model's fixed cost per boosting iteration, say); the checks build models with them.
    check_settings: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, *, season_length: int | None = None, seed: int = 0) -> None:
        self.season_length = season_length
        self.seed = seed

    # -- public contract -------------------------------------------------------------
    def fit(self, history: pl.DataFrame, *, freq: str | Frequency | None = None) -> Self:
        """Learn from a long frame (``series_id, ds, y`` plus regressors); return ``self``."""
        frequency = _resolve_frequency(history, freq)
        regressors = [c for c in history.columns if c not in ("series_id", "ds", "y")]
        if regressors and not self.capabilities.exogenous:
            regressors = []
        return self.fit_panel(Panel.from_frame(history, frequency, regressors=regressors))

    def fit_panel(self, panel: Panel) -> Self:
        """Learn from a panel directly (the engine's path: no frame round trip)."""
        if panel.freq.kind not in self.capabilities.frequencies:
            raise LongFrameError(
                f"model '{self.name}' does not support {panel.freq.kind} data "
                f"(it supports {', '.join(self.capabilities.frequencies)})"
            )
        if panel.regressors and not self.capabilities.exogenous:
            panel = panel.without_regressors()
        need = self.capabilities.min_length(panel.freq)
        short = np.flatnonzero(panel.lengths < need)
        if short.size:
            sid = panel.series_ids[int(short[0])]
            raise LongFrameError(
                f"model '{self.name}' needs at least {need} observations per series; "
                f"{short.size} series have fewer, first '{sid}' with "
                f"{int(panel.lengths[short[0]])}"
            )
        self.failures_: dict[str, str] = {}
        self.panel_ = panel
        self.regressors_ = tuple(panel.regressors)
        self._fit_panel(panel)
        return self

    def predict(
        self,
        horizon: int,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        *,
        future: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        """Forecast ``horizon`` steps past each series' end.

        Returns ``series_id, ds, h, mean`` and one column per quantile level. ``future``
        carries regressor values for the forecast steps (``series_id, ds`` + regressors).
        """
        result = self.predict_panel(horizon, quantiles, future=future)
        return forecast_frame(self.panel_, result.mean, result.quantiles)

    def predict_panel(
        self,
        horizon: int,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        *,
        future: pl.DataFrame | None = None,
        future_regressors: Mapping[str, np.ndarray] | None = None,
    ) -> PanelForecast:
        """Like :meth:`predict` but returns matrices aligned with ``self.panel_``.

        Future regressor values come either from ``future`` (a frame) or, on the engine's
        path, from ``future_regressors`` ((series, >= horizon) matrices by name).
        """
        if not hasattr(self, "panel_"):
            raise NotFittedError(f"model '{self.name}' must be fitted before predict")
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1 step, got {horizon}")
        levels = validate_quantiles(quantiles)
        future_regressors = self._future_regressors(horizon, future, future_regressors)
        mean, qs = self._predict_panel(horizon, levels, future_regressors)
        if not self.capabilities.probabilistic:
            qs = {}
        mean, qs = sanitize_forecasts(mean, qs)
        return PanelForecast(mean, qs)

    def get_params(self) -> dict[str, Any]:
        """The constructor settings (what ``__init__`` stored)."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- for subclasses --------------------------------------------------------------
    @property
    def season_length_(self) -> int:
        """The seasonal period in use: the constructor's, else the frequency's main one."""
        return self.season_length or self.panel_.freq.season_length

    @abstractmethod
    def _fit_panel(self, panel: Panel) -> None:
        """Learn from the panel; store learned state in attributes ending in ``_``."""

    @abstractmethod
    def _predict_panel(
        self,
        horizon: int,
        quantiles: tuple[float, ...],
        future: Mapping[str, np.ndarray],
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        """Return the mean (series, horizon) and a matrix per quantile level."""

    def _future_regressors(
        self,
        horizon: int,
        future: pl.DataFrame | None,
        matrices: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        if not self.regressors_:
            return {}
        if matrices is not None:
            missing = [name for name in self.regressors_ if name not in matrices]
            if missing:
                raise LongFrameError(f"no future values for regressor(s) {', '.join(missing)}")
            return {name: np.asarray(matrices[name])[:, :horizon] for name in self.regressors_}
        if future is None:
            raise LongFrameError(
                f"model '{self.name}' was fitted with regressors "
                f"{', '.join(self.regressors_)}: pass their future values in `future`"
            )
        missing = [c for c in ("series_id", "ds", *self.regressors_) if c not in future.columns]
        if missing:
            raise LongFrameError(f"future frame lacks column(s) {', '.join(missing)}")
        panel = self.panel_
        out = {name: np.full((panel.n_series, horizon), np.nan) for name in self.regressors_}
        index = {sid: i for i, sid in enumerate(panel.series_ids)}
        expected = forecast_frame(panel, np.zeros((panel.n_series, horizon)), {}).select(
            "series_id", "ds", "h"
        )
        joined = expected.join(future, on=["series_id", "ds"], how="left")
        if joined.select(pl.any_horizontal(pl.col(self.regressors_).is_null()).any()).item():
            first = joined.filter(pl.any_horizontal(pl.col(self.regressors_).is_null())).row(
                0, named=True
            )
            raise LongFrameError(
                f"future frame has no regressor values for series '{first['series_id']}' "
                f"at {first['ds']}: give every regressor for every forecast step"
            )
        rows = np.array([index[s] for s in joined["series_id"].to_list()])
        cols = joined["h"].to_numpy() - 1
        for name in self.regressors_:
            out[name][rows, cols] = joined[name].cast(pl.Float64).to_numpy()
        return out


def _resolve_frequency(history: pl.DataFrame, freq: str | Frequency | None) -> Frequency:
    if isinstance(freq, Frequency):
        return freq
    if freq is not None:
        return Frequency.parse(freq)
    steps = set(infer_frequency(history).values())
    if len(steps) != 1:
        raise LongFrameError(
            f"series have different frequencies ({', '.join(sorted(steps))}): "
            "forecast them separately or give one frequency"
        )
    return Frequency.parse(steps.pop())


def registered() -> tuple[str, ...]:
    """Names of every model in the catalog, sorted."""
    from models.catalog import MODELS

    return tuple(sorted(MODELS))


def create(name: str, **settings: Any) -> Forecaster:
    """Build a model by name with the given settings."""
    from models.catalog import MODELS

    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; known models: {', '.join(registered())}")
    return MODELS[name](**settings)
