"""Rolling-origin backtests as long frames, for scoring with :mod:`models.metrics`.

:func:`backtest` refits every model at each cutoff on the history up to it and forecasts
the next ``horizon`` steps; the last window ends at the end of the data, the others
``step`` steps apart before it (the same windows the engine selects and calibrates on).
Failed fits fall back as in the engine, and the ``model_used`` column says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from models.engine import DEFAULT_FALLBACK, EngineConfig, backtest_cutoffs, forecast_rows
from models.frequency import Frequency
from models.panel import Panel, forecast_frame
from models.quantiles import DEFAULT_QUANTILES

__all__ = ["backtest", "backtest_panel", "training_scale_frame"]


def backtest_panel(
    panel: Panel,
    models: Sequence[str],
    horizon: int,
    *,
    windows: int = 3,
    step: int | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    fallback: Sequence[str] = DEFAULT_FALLBACK,
    seed: int = 0,
    on_fit_done: Callable[[str], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Backtest a panel; return (forecasts with actuals, training frame with ``cutoff``).

    The forecast frame has ``model, model_used, cutoff, series_id, ds, h, y, mean, p..``;
    the training frame (``cutoff, series_id, ds, y``) lets the caller compute MASE scales
    per cutoff with :func:`models.metrics.seasonal_scale`. ``on_fit_done`` is called with
    the model name after each model's fit at each cutoff (for progress bars).
    """
    config = EngineConfig(
        horizon=horizon,
        models=tuple(models),
        windows=windows,
        step=step,
        quantiles=tuple(quantiles),
        fallback=tuple(fallback),
        seed=seed,
    )
    parts: list[pl.DataFrame] = []
    training: list[pl.DataFrame] = []
    for removed in backtest_cutoffs(config):
        train, rows = panel.truncate(removed, min_length=2)
        if train.n_series == 0:
            continue
        end = panel.values.shape[1] - removed
        actual = panel.values[rows, end : end + horizon]
        cutoff = pl.Series("cutoff", list(train.last_ds))
        train_frame = train.to_frame()
        training.append(
            train_frame.join(
                pl.DataFrame({"series_id": list(train.series_ids), "cutoff": cutoff}),
                on="series_id",
            )
        )
        future = None
        if panel.regressors:
            future = {k: v[rows, end : end + horizon] for k, v in panel.regressors.items()}
        for name in models:
            result = forecast_rows(name, config, train, future)
            frame = forecast_frame(train, result.mean, result.quantiles).with_columns(
                pl.lit(name).alias("model"),
                pl.Series("model_used", np.repeat(result.used.astype(str), horizon)),
                cutoff.gather(np.repeat(np.arange(train.n_series), horizon)),
                pl.Series("y", actual.reshape(-1)),
            )
            parts.append(frame)
            if on_fit_done is not None:
                on_fit_done(name)
    if not parts:
        raise ValueError(
            f"no series is long enough for a backtest of {windows} window(s) of {horizon} steps"
        )
    out = pl.concat(parts)
    front = ["model", "model_used", "cutoff", "series_id", "ds", "h", "y", "mean"]
    return out.select(*front, pl.exclude(front)), pl.concat(training)


def backtest(
    frame: pl.DataFrame,
    models: Sequence[str],
    horizon: int,
    windows: int = 3,
    step: int | None = None,
    *,
    freq: str | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    seed: int = 0,
) -> pl.DataFrame:
    """Backtest ``models`` on a long frame (``series_id, ds, y``); see :func:`backtest_panel`."""
    from models.frames import infer_frequency

    if freq is None:
        steps = sorted(set(infer_frequency(frame).values()))
        if len(steps) != 1:
            raise ValueError(f"series have different steps ({', '.join(steps)}): give freq")
        freq = steps[0]
    panel = Panel.from_frame(frame.select("series_id", "ds", "y"), Frequency.parse(freq))
    out, _ = backtest_panel(
        panel, models, horizon, windows=windows, step=step, quantiles=quantiles, seed=seed
    )
    return out


def training_scale_frame(training: pl.DataFrame, season_length: int) -> pl.DataFrame:
    """MASE scales per series and cutoff from a backtest's training frame."""
    from models.metrics import seasonal_scale

    return seasonal_scale(training, season_length, keys=("cutoff",))
