"""Executors: where the forecasting fan-out runs.

The engine (:func:`models.engine.run_engine`) takes any ``map``-like callable; an executor
provides one. :class:`SerialExecutor` runs in this process, :class:`LocalExecutor` on all
cores with worker processes (BLAS and OpenMP limited to one thread per worker, so workers
do not fight over cores), :class:`DaskExecutor` on a Dask cluster (``dask.distributed``):
each task is one batch of series, submitted as a future with ``pure=False`` (a batch is
never deduplicated against another run's) and ``retries``; a batch whose worker dies is
rescheduled by the scheduler and, past its allowed failures, resubmitted here.

Which executor runs a batch never changes its result: a batch is a pure function of its
series, settings and seed. The engine's batching (``chunks``) does matter (a global model is
fitted per batch), which is why the Dask executor reports one worker per cluster thread: the
default batching of a cluster with N threads is that of ``--workers N`` on one machine.
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from workbench.errors import WorkbenchError

__all__ = [
    "SCHEDULER_ENV",
    "DaskExecutor",
    "Executor",
    "LocalExecutor",
    "SerialExecutor",
    "default_executor",
    "make_executor",
]

#: Environment variable naming the Dask scheduler when ``--scheduler`` is not given.
SCHEDULER_ENV = "WORKBENCH_DASK_SCHEDULER"

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


def _single_thread_worker_setup(dask_worker: Any = None) -> None:
    """Limit a Dask worker's BLAS and OpenMP pools to one thread (once per worker).

    A worker runs one task per thread; a task whose BLAS spawned a thread per core would
    oversubscribe the host. The environment covers libraries loaded later (the nanny
    already sets it for the worker process by default); threadpoolctl limits the pools
    loaded already. Done once at worker start: per task, threadpoolctl's scan of the loaded
    libraries would cost more than the scheduler's own overhead.
    """
    from threadpoolctl import threadpool_limits

    os.environ.update({k: v for k, v in _SINGLE_THREAD.items() if k != "POLARS_MAX_THREADS"})
    threadpool_limits(limits=1)


class DaskExecutor:
    """Batches on a Dask cluster, through a ``distributed.Client`` at ``address``.

    ``retries`` is how often a batch that raised (or whose workers kept dying) is tried
    again. Use it as a context manager, or call :meth:`close`, to release the client.
    """

    def __init__(self, address: str, *, retries: int = 2, timeout: float = 20.0) -> None:
        from distributed import Client

        self.address = address
        self.retries = retries
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise WorkbenchError(
                f"cannot reach the Dask scheduler at {address}: {exc}",
                field="--scheduler",
                fix="start one ('dask scheduler' and 'dask worker ADDRESS') or fix the address",
            ) from None
        # Runs on every worker now and on every worker that joins later.
        self.client.register_worker_callbacks(_single_thread_worker_setup)

    @property
    def workers(self) -> int:
        """Threads of the cluster's workers, at least one: the default number of batches."""
        return max(1, sum(self.client.nthreads().values()))

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        """Submit every task as a future and yield results as they complete.

        Each task's data is scattered to a worker first, so the series travel from here to
        a worker once instead of through the scheduler inside the task graph. A batch whose
        worker died (its data or its run lost: ``KilledWorker``, a cancelled future) is
        scattered and submitted again, up to ``retries`` times. An exception raised by
        ``fn`` itself propagates after ``retries``.
        """
        from distributed import as_completed as dask_as_completed
        from distributed.scheduler import KilledWorker
        from distributed.utils import CancelledError

        run = uuid.uuid4().hex[:12]
        items = list(tasks)
        futures = {self._submit(fn, task, f"{run}-{i}"): i for i, task in enumerate(items)}
        attempts = dict.fromkeys(futures.values(), 0)
        pending = dask_as_completed(list(futures), loop=self.client.loop)
        for future in pending:
            index = futures.pop(future)
            try:
                result = future.result()
            except (KilledWorker, CancelledError):
                if attempts[index] >= self.retries:
                    raise
                attempts[index] += 1
                again = self._submit(fn, items[index], f"{run}-{index}-{attempts[index]}")
                futures[again] = index
                pending.add(again)
                continue
            finally:
                future.release()
            yield result

    def _submit(self, fn: Callable[[Any], Any], task: Any, name: str) -> Any:
        # A list of one: scattering a tuple would scatter each of its items apart.
        (data,) = self.client.scatter([task], hash=False)
        return self.client.submit(
            fn, data, key=f"workbench-batch-{name}", pure=False, retries=self.retries
        )

    def close(self) -> None:
        """Close the client (the cluster keeps running)."""
        self.client.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def make_executor(workers: int | None = None, scheduler: str | None = None) -> Executor:
    """The Dask executor when a scheduler is named (argument or :data:`SCHEDULER_ENV`).

    Otherwise :func:`default_executor`. Close a :class:`DaskExecutor` when done.
    """
    address = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if address:
        return DaskExecutor(address)
    return default_executor(workers)
