"""Executors: where the forecasting fan-out runs.

The engine (:func:`models.engine.run_engine`) takes any ``map``-like callable; an executor
provides one. :class:`SerialExecutor` runs in this process, :class:`LocalExecutor` on all
cores with worker processes (BLAS and OpenMP limited to one thread per worker, so workers
do not fight over cores). A cluster executor (Dask) implements the same two members.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Executor", "LocalExecutor", "SerialExecutor", "default_executor"]

_SINGLE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "POLARS_MAX_THREADS": "1",
}


class Executor(Protocol):
    """Runs a function over tasks; results may arrive in any order."""

    @property
    def workers(self) -> int:
        """How many tasks run at once."""
        ...

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        """Yield ``fn(task)`` for every task as each finishes."""
        ...


@dataclass(frozen=True)
class SerialExecutor:
    """Runs every task in this process, one after another."""

    @property
    def workers(self) -> int:
        """One."""
        return 1

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        """Yield results in task order."""
        return map(fn, tasks)


def _limit_threads() -> None:
    os.environ.update(_SINGLE_THREAD)


@dataclass(frozen=True)
class LocalExecutor:
    """Worker processes on this machine (``spawn``ed, one BLAS thread each)."""

    n_workers: int

    @property
    def workers(self) -> int:
        """The number of worker processes."""
        return self.n_workers

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        """Submit every task and yield results as they complete.

        The pool is started with the single-thread environment already set, so libraries
        that read it at import (OpenBLAS, polars) honour it in the workers.
        """
        saved = {k: os.environ.get(k) for k in _SINGLE_THREAD}
        os.environ.update(_SINGLE_THREAD)
        try:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=self.n_workers, mp_context=context, initializer=_limit_threads
            ) as pool:
                futures: list[Future[Any]] = [pool.submit(fn, task) for task in tasks]
                for future in as_completed(futures):
                    yield future.result()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def default_executor(workers: int | None = None) -> Executor:
    """All cores by default; ``workers=1`` runs in this process."""
    count = workers if workers is not None else (os.cpu_count() or 1)
    if count <= 1:
        return SerialExecutor()
    return LocalExecutor(count)
