"""Prophet per series, wrapped so that it behaves like every other model here.

Prophet (``prophet.Prophet``) is a model to wrap, not to imitate: it mutates the frames it is
given, can be fitted only once, draws its uncertainty from numpy's global random state and
logs through ``prophet`` and ``cmdstanpy`` at INFO. This adapter

- builds its own pandas frames from the panel's arrays (pandas stays inside this module)
  and a fresh ``prophet.Prophet`` per series on every fit;
- passes the seed to Stan's optimizer, and seeds numpy's global random state for each
  series' uncertainty draws, restoring the caller's state afterwards (Prophet 1.5 has no
  random-generator argument: ``sample_model_vectorized`` calls ``np.random`` directly);
- silences ``prophet`` and ``cmdstanpy`` logging inside a context, restoring the levels
  and handlers on exit, and keeps their warnings as notes per series.

The mean is Prophet's ``yhat``; quantiles at any level come from ``predictive_samples``
(``uncertainty_samples`` draws of future paths, trend changes and noise included).
Holidays and events come as a polars frame ``holiday, ds`` with optional ``lower_window``,
``upper_window``, ``prior_scale`` and ``series_id`` (rows with a series id apply only to
that series; rows without one apply to all).
"""

from __future__ import annotations

import logging
import warnings
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import polars as pl

from models.base import Capabilities, Forecaster
from models.frames import LongFrameError
from models.panel import Panel

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Prophet", "quiet_prophet"]

_LOGGERS = ("prophet", "cmdstanpy")
_HOLIDAY_COLUMNS = ("holiday", "ds", "lower_window", "upper_window", "prior_scale")


class _Collect(logging.Handler):
    def __init__(self, messages: list[str]) -> None:
        super().__init__(level=logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def quiet_prophet() -> Iterator[list[str]]:
    """Route ``prophet`` and ``cmdstanpy`` logging and warnings into a list, then restore.

    INFO chatter is dropped; WARNING and above, and Python warnings, are collected in the
    yielded list. Logger levels, handlers and propagation are restored on exit.
    """
    from cmdstanpy.utils import get_logger

    get_logger()  # cmdstanpy configures its logger on first use: let it, then override
    messages: list[str] = []
    handler = _Collect(messages)
    saved = []
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate, list(logger.handlers)))
        logger.setLevel(logging.WARNING)
        logger.propagate = False
        logger.handlers = [handler]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages.extend(str(w.message) for w in caught)
    finally:
        for logger, level, propagate, handlers in saved:
            logger.setLevel(level)
            logger.propagate = propagate
            logger.handlers = handlers


@contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed numpy's global random state inside, and give the caller's state back after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class Prophet(Forecaster):
    """Prophet per series, with holidays, regressors and sampled quantiles (see the module).

    ``growth`` is ``"linear"`` or ``"flat"`` (logistic growth needs a capacity per step,
    which the long-frame contract does not carry). ``fit_kwargs`` go to Stan's optimizer;
    by default L-BFGS with the model's seed.
    """

    name: ClassVar[str] = "prophet"
    capabilities: ClassVar[Capabilities] = Capabilities(
        probabilistic=True, exogenous=True, min_history=3
    )

    def __init__(
        self,
        *,
        season_length: int | None = None,
        seed: int = 0,
        holidays: pl.DataFrame | None = None,
        weekly_seasonality: bool | int | Literal["auto"] = "auto",
        yearly_seasonality: bool | int | Literal["auto"] = "auto",
        daily_seasonality: bool | int | Literal["auto"] = "auto",
        growth: Literal["linear", "flat"] = "linear",
        changepoint_prior_scale: float = 0.05,
        uncertainty_samples: int = 200,
        fit_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(season_length=season_length, seed=seed)
        self.holidays = holidays
        self.weekly_seasonality = weekly_seasonality
        self.yearly_seasonality = yearly_seasonality
        self.daily_seasonality = daily_seasonality
        self.growth = growth
        self.changepoint_prior_scale = changepoint_prior_scale
        self.uncertainty_samples = uncertainty_samples
        self.fit_kwargs = fit_kwargs

    # -- fit -------------------------------------------------------------------------
    def _fit_panel(self, panel: Panel) -> None:
        if self.growth not in ("linear", "flat"):
            raise ValueError(f"growth must be 'linear' or 'flat', got {self.growth!r}")
        if self.uncertainty_samples < 2:
            raise ValueError("uncertainty_samples must be at least 2 to give quantiles")
        holidays = _validated_holidays(self.holidays)
        self.notes_: dict[str, str] = {}
        self.fits_: dict[str, Any] = {}
        self.regressors_used_: dict[str, tuple[str, ...]] = {}
        for i, sid in enumerate(panel.series_ids):
            n = int(panel.lengths[i])
            history = {
                name: matrix[i, matrix.shape[1] - n :] for name, matrix in panel.regressors.items()
            }
            used = tuple(name for name, values in history.items() if np.ptp(values) > 0.0)
            frame = _pandas_frame(panel.freq.history(panel.last_ds[i], n), history, used)
            frame["y"] = panel.series(i)
            try:
                with quiet_prophet() as messages:
                    model = self._new_model(_holidays_for(holidays, sid))
                    for name in used:
                        model.add_regressor(name)
                    model.fit(frame, **self._stan_kwargs())
            except Exception as exc:  # one bad series must not stop the panel
                self.failures_[sid] = f"Prophet fit failed: {type(exc).__name__}: {exc}"
                continue
            if messages:
                self.notes_[sid] = "; ".join(messages)
            self.fits_[sid] = model
            self.regressors_used_[sid] = used

    def _new_model(self, holidays: pd.DataFrame | None) -> Any:
        from prophet import Prophet as ProphetModel

        return ProphetModel(
            growth=self.growth,
            holidays=holidays,
            weekly_seasonality=self.weekly_seasonality,
            yearly_seasonality=self.yearly_seasonality,
            daily_seasonality=self.daily_seasonality,
            changepoint_prior_scale=self.changepoint_prior_scale,
            uncertainty_samples=self.uncertainty_samples,
            mcmc_samples=0,
        )

    def _stan_kwargs(self) -> dict[str, Any]:
        return {"algorithm": "LBFGS", "seed": self.seed, **(self.fit_kwargs or {})}

    # -- predict ---------------------------------------------------------------------
    def _predict_panel(
        self,
        horizon: int,
        quantiles: tuple[float, ...],
        future: Mapping[str, np.ndarray],
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        panel = self.panel_
        mean = np.full((panel.n_series, horizon), np.nan)
        bands = np.full((len(quantiles), panel.n_series, horizon), np.nan)
        for i, sid in enumerate(panel.series_ids):
            model = self.fits_.get(sid)
            if model is None:
                continue
            used = self.regressors_used_[sid]
            ahead = {name: future[name][i] for name in used}
            frame = _pandas_frame(panel.freq.future(panel.last_ds[i], horizon), ahead, used)
            try:
                with quiet_prophet(), _seeded_global_rng(self._series_seed(sid)):
                    yhat = model.predict(frame)["yhat"].to_numpy(dtype=float)
                    samples = model.predictive_samples(frame)["yhat"]
            except Exception as exc:  # recorded; the engine falls back for this series
                self.failures_[sid] = f"Prophet forecast failed: {type(exc).__name__}: {exc}"
                continue
            mean[i] = yhat
            bands[:, i, :] = np.quantile(np.asarray(samples, dtype=float), quantiles, axis=1)
        return mean, {q: bands[k] for k, q in enumerate(quantiles)}

    def _series_seed(self, sid: str) -> int:
        """A seed per series: its draws do not depend on which other series are in the panel."""
        return (self.seed * 1_000_003 + zlib.crc32(sid.encode())) % 2**32


def _pandas_frame(
    ds: pl.Series, regressors: Mapping[str, np.ndarray], used: tuple[str, ...]
) -> pd.DataFrame:
    """A fresh pandas frame ``ds`` plus the regressors in use (Prophet's input)."""
    import pandas as pd

    frame = pd.DataFrame({"ds": pd.to_datetime(ds.to_numpy())})
    for name in used:
        frame[name] = np.asarray(regressors[name], dtype=float)
    return frame


def _validated_holidays(holidays: pl.DataFrame | None) -> pl.DataFrame | None:
    """Check the holiday frame's columns; return it with ``ds`` as a datetime."""
    if holidays is None or holidays.height == 0:
        return None
    missing = [c for c in ("holiday", "ds") if c not in holidays.columns]
    if missing:
        raise LongFrameError(
            f"holidays frame lacks column(s) {', '.join(missing)}; it needs holiday and ds "
            "(optional lower_window, upper_window, prior_scale, series_id)"
        )
    unknown = [c for c in holidays.columns if c not in (*_HOLIDAY_COLUMNS, "series_id")]
    if unknown:
        raise LongFrameError(
            f"holidays frame has unknown column(s) {', '.join(unknown)}; allowed: "
            f"{', '.join((*_HOLIDAY_COLUMNS, 'series_id'))}"
        )
    return holidays.with_columns(pl.col("ds").cast(pl.Datetime("us")))


def _holidays_for(holidays: pl.DataFrame | None, sid: str) -> pd.DataFrame | None:
    """The holiday rows that apply to one series, as the pandas frame Prophet expects."""
    if holidays is None:
        return None
    rows = holidays
    if "series_id" in holidays.columns:
        rows = holidays.filter(
            pl.col("series_id").is_null() | (pl.col("series_id").cast(pl.String) == sid)
        ).drop("series_id")
    if rows.height == 0:
        return None
    return rows.to_pandas()
