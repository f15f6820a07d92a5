"""Loaded jobs in compact form: in memory up to a budget, then in sorted runs on disk.

A job-record file of any size is split into usage a *window* of time at a time. Each loaded
job is kept as seven numbers (row ordinal, series id, submit/start/end instants, chips, and
the hash of its raw row: 52 bytes). Past ``spill_rows`` jobs, the buffer is sorted by submit
instant and written to a temporary folder as one *run* (a file per column), so memory holds
at most one buffer however long the file. :meth:`JobStore.windows` then hands back the jobs
a window of submit periods at a time, about ``window_rows`` of them, read from every run.

Windows partition the jobs by submit period, and exact repeats of a row share their submit
instant, so duplicates always meet in one window. A job that is still running or waiting at
a window's end is carried into the next window by the caller (see
:func:`pipelines.jobs.ingest_job_records`), so every period is computed from every job that
touches it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

__all__ = ["COMPACT_DTYPES", "JobStore", "Window", "sweep_abandoned_runs"]

_PREFIX = "workbench-jobs-"
"""Runs' folders are named ``workbench-jobs-<pid>-<random>``: the pid tells whether the
process that wrote them is still alive."""

COMPACT_DTYPES: dict[str, type] = {
    "ordinal": np.int64,
    "series": np.int32,
    "submit": np.int64,
    "start": np.int64,
    "end": np.int64,
    "chips": np.float64,
    "hash": np.uint64,
}
"""A loaded job in 52 bytes: its row ordinal, series id, three instants (us), chips, and the
64-bit hash of its raw row (duplicates)."""

SPILL_ROWS = 1_000_000
"""Jobs held in memory before they are written to disk as a sorted run (52 MB)."""
WINDOW_ROWS = 250_000
"""Jobs a window aims at (a window is at least one period, so it may hold more). Small
windows keep the split's working arrays small (a 10 M-job file peaked at 1,088 MB with
windows of a million, 682 MB with 250,000) at no measurable cost in time."""


@dataclass(frozen=True)
class Window:
    """The jobs submitted in ``[begin, end)`` (instants in us; ``end`` None for the last)."""

    begin: int
    end: int | None
    jobs: dict[str, np.ndarray]


@dataclass
class _Run:
    """Jobs sorted by submit instant, in memory or in a folder with a file per column."""

    size: int
    periods: np.ndarray
    """The submit periods that hold jobs, ascending."""
    counts: np.ndarray
    """Jobs in each of ``periods``."""
    columns: dict[str, np.ndarray] | None = None
    folder: Path | None = None
    position: int = 0
    cumulative: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.cumulative = np.cumsum(self.counts)

    def rows_before(self, period: int) -> int:
        """How many of the run's jobs were submitted before ``period``."""
        at = int(np.searchsorted(self.periods, period, side="left"))
        return int(self.cumulative[at - 1]) if at else 0

    def read(self, name: str, begin: int, stop: int) -> np.ndarray:
        dtype = np.dtype(COMPACT_DTYPES[name])
        if self.columns is not None:
            return self.columns[name][begin:stop]
        assert self.folder is not None
        # A plain read, not a memory map: mapped pages would stay in the process's memory.
        path = self.folder / f"{name}.bin"
        return np.fromfile(path, dtype=dtype, count=stop - begin, offset=begin * dtype.itemsize)


class JobStore:
    """Compact jobs of one file, spilled to disk in sorted runs past ``spill_rows``.

    Use as a context manager (or call :meth:`close`): the temporary folder of the runs is
    removed at the end. ``directory`` is where that folder goes (default: the system's
    temporary directory, ``TMPDIR``).
    """

    def __init__(
        self,
        period_us: int,
        *,
        spill_rows: int = SPILL_ROWS,
        directory: Path | None = None,
    ) -> None:
        if spill_rows < 1:
            raise ValueError("spill_rows must be at least 1")
        self.period_us = period_us
        self.spill_rows = spill_rows
        self.directory = directory
        self.size = 0
        self._parts: dict[str, list[np.ndarray]] = {name: [] for name in COMPACT_DTYPES}
        self._buffered = 0
        self._runs: list[_Run] = []
        self._folder: Path | None = None

    # -- filling --------------------------------------------------------------------------
    def add(self, **columns: np.ndarray) -> None:
        """Add jobs, one array per column of :data:`COMPACT_DTYPES` (all the same length)."""
        sizes = {values.size for values in columns.values()}
        if set(columns) != set(COMPACT_DTYPES) or len(sizes) != 1:
            raise ValueError("add() needs every compact column, all of one length")
        (size,) = sizes
        if size == 0:
            return
        for name, values in columns.items():
            self._parts[name].append(values.astype(COMPACT_DTYPES[name], copy=False))
        self._buffered += size
        self.size += size
        if self._buffered >= self.spill_rows:
            self._spill()

    @property
    def spilled_runs(self) -> int:
        """How many sorted runs were written to disk."""
        return sum(1 for run in self._runs if run.folder is not None)

    def _take_buffer(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name, dtype in COMPACT_DTYPES.items():
            parts = self._parts[name]
            out[name] = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
            parts.clear()
        self._buffered = 0
        return out

    def _sorted_run(self, columns: dict[str, np.ndarray], folder: Path | None) -> _Run:
        order = np.argsort(columns["submit"], kind="stable")
        periods = counts = np.zeros(0, dtype=np.int64)
        kept: dict[str, np.ndarray] = {}
        for name in COMPACT_DTYPES:  # a column at a time: one column's copy in memory at once
            values = columns.pop(name)[order]
            if folder is None:
                kept[name] = values
            else:
                values.tofile(folder / f"{name}.bin")
            if name == "submit":
                periods, counts = np.unique(values // self.period_us, return_counts=True)
        size = int(order.size)
        return _Run(
            size=size,
            periods=periods,
            counts=counts,
            columns=kept if folder is None else None,
            folder=folder,
        )

    def _spill(self) -> None:
        if self._folder is None:
            parent = Path(self.directory or tempfile.gettempdir())
            sweep_abandoned_runs(parent)
            self._folder = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=parent))
        folder = self._folder / f"run-{len(self._runs):05d}"
        folder.mkdir()
        self._runs.append(self._sorted_run(self._take_buffer(), folder))

    # -- reading --------------------------------------------------------------------------
    def windows(self, window_rows: int = WINDOW_ROWS) -> Iterator[Window]:
        """The jobs, a window of whole submit periods at a time, windows in time order.

        Jobs within a window are in no particular order. Consecutive windows meet: each
        one's ``begin`` is the previous one's ``end``.
        """
        if self.size == 0:
            return
        buffer = self._take_buffer()
        if not self._runs and buffer["submit"].size <= window_rows:
            # Everything fits one window: no sort needed.
            begin = int(buffer["submit"].min()) // self.period_us * self.period_us
            yield Window(begin=begin, end=None, jobs=buffer)
            return
        if buffer["submit"].size:
            self._runs.append(self._sorted_run(buffer, None))
        del buffer
        runs = self._runs
        every_period, at = np.unique(np.concatenate([r.periods for r in runs]), return_inverse=True)
        per_period = np.bincount(at, weights=np.concatenate([r.counts for r in runs]))
        cumulative = np.cumsum(per_period)
        n = every_period.size
        first = 0
        while first < n:
            target = (cumulative[first - 1] if first else 0.0) + window_rows
            last = max(int(np.searchsorted(cumulative, target, side="right")), first + 1)
            begin = int(every_period[first]) * self.period_us
            end = int(every_period[last]) * self.period_us if last < n else None
            jobs: dict[str, list[np.ndarray]] = {name: [] for name in COMPACT_DTYPES}
            for run in runs:
                stop = run.rows_before(int(every_period[last])) if last < n else run.size
                if stop > run.position:
                    for name in COMPACT_DTYPES:
                        jobs[name].append(run.read(name, run.position, stop))
                    run.position = stop
            yield Window(
                begin=begin,
                end=end,
                jobs={
                    name: np.concatenate(parts)
                    if parts
                    else np.zeros(0, dtype=COMPACT_DTYPES[name])
                    for name, parts in jobs.items()
                },
            )
            first = last

    # -- cleaning up ----------------------------------------------------------------------
    def close(self) -> None:
        """Drop the jobs and remove the runs' temporary folder."""
        for parts in self._parts.values():
            parts.clear()
        self._runs.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> JobStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def sweep_abandoned_runs(parent: Path) -> list[Path]:
    """Remove runs' folders in ``parent`` whose process is gone (killed mid-ingest).

    A folder of a process still alive (another ingest at work) is left alone. Returns the
    folders removed.
    """
    removed: list[Path] = []
    for folder in parent.glob(f"{_PREFIX}*-*"):
        pid_text = folder.name[len(_PREFIX) :].split("-", 1)[0]
        if not folder.is_dir() or not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
