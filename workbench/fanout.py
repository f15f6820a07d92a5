"""Backtests fanned out over an executor, batch by batch of series.

:func:`backtest_batches` cuts a panel into ``batches`` contiguous batches of series (the
engine's rule, :func:`numpy.array_split` over the panel's order) and runs
:func:`models.backtest.backtest_panel` on each through an executor (local processes or a
Dask cluster). The result depends on the batching, not on the executor: a global model
learns from the series of its batch, so the same batches give the same rows wherever they
run. Rows come back in the panel's order whatever order the batches finish in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from models.panel import Panel
from workbench.executors import Executor, SerialExecutor

__all__ = ["BacktestBatch", "backtest_batches"]


@dataclass(frozen=True)
class BacktestBatch:
    """One batch of a fanned-out backtest: its position, series and settings."""

    index: int
    panel: Panel
    models: tuple[str, ...]
    horizon: int
    windows: int
    step: int | None
    seed: int


def _run_batch(batch: BacktestBatch) -> tuple[int, pl.DataFrame, pl.DataFrame]:
    """Backtest one batch (runs in a worker); returns its index, forecasts and training."""
    from models.backtest import backtest_panel

    forecasts, training = backtest_panel(
        batch.panel,
        batch.models,
        batch.horizon,
        windows=batch.windows,
        step=batch.step,
        seed=batch.seed,
    )
    return batch.index, forecasts, training


def backtest_batches(
    panel: Panel,
    models: Sequence[str],
    horizon: int,
    *,
    windows: int = 3,
    step: int | None = None,
    seed: int = 0,
    executor: Executor | None = None,
    batches: int | None = None,
    on_batch_done: Callable[[int], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Backtest ``panel`` in batches of series; same outputs as ``backtest_panel``.

    ``batches`` defaults to the executor's workers; ``on_batch_done`` is called with the
    number of series of each finished batch.
    """
    executor = executor or SerialExecutor()
    count = max(1, min(panel.n_series, batches or executor.workers))
    tasks = [
        BacktestBatch(i, panel.subset(rows), tuple(models), horizon, windows, step, seed)
        for i, rows in enumerate(np.array_split(np.arange(panel.n_series), count))
        if rows.size
    ]
    done: dict[int, tuple[pl.DataFrame, pl.DataFrame]] = {}
    for index, forecasts, training in executor.map_unordered(_run_batch, tasks):
        done[index] = (forecasts, training)
        if on_batch_done is not None:
            on_batch_done(tasks[index].panel.n_series)
    ordered = [done[i] for i in sorted(done)]
    return (
        pl.concat([f for f, _ in ordered], how="diagonal_relaxed"),
        pl.concat([t for _, t in ordered]),
    )
