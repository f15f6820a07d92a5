"""Scheduler job records -> ``usage_daily`` (or ``usage_hourly``), streaming.

Each job holds ``chips`` from ``start_time`` to ``end_time`` and waited from ``submit_time``
to ``start_time``. Both intervals are split at UTC period boundaries (midnights, or hours
with ``grain="hour"``), so a job contributes to each period exactly the time it ran or
waited in it:

* ``chip_hours_used``: sum over jobs of chips x hours run in the period;
* ``chip_hours_queued``: sum over jobs of chips x hours waited in the period (unmet demand);
* ``peak_chips``: the most chips running at one instant in the period, from a sweep over the
  start and end events of the period's job segments (ends before starts at equal instants,
  so back-to-back jobs do not overlap), not from an average. Segments covering the whole
  period add a constant, so only partial segments are swept.

The file is read in blocks (:class:`~pipelines.readers.RecordReader`) by three stages in
threads: the reader numbers and hashes each block's rows; two judges validate blocks at once
(plainly good rows straight to typed columns, the few others left for the full,
reason-writing validation, which runs in batches); the accumulating thread keeps each loaded
job in compact form (ordinal, series id, three instants, chips and the raw row's 64-bit
hash: 52 bytes) in a :class:`~pipelines.job_store.JobStore`, which writes them to disk in
runs sorted by submit instant past a million. The split then takes the jobs a window of
submit periods at a time (about 250,000 jobs), carrying a job still running or waiting at a
window's end into the next, and splits two windows at once: memory stays level however
large the file, and never holds every job-day at once. Nothing is lost: every data row is
loaded, quarantined with a reason, excluded by the column map's filter, or dropped as an
exact duplicate (the hash finds candidates; what each became must match too; repeats share
their submit instant, so they meet in one window), and :class:`JobIngest` carries the
reconciliation.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from queue import Full, Queue
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import numpy as np
import polars as pl

from pipelines.job_store import COMPACT_DTYPES, SPILL_ROWS, WINDOW_ROWS, JobStore
from pipelines.readers import PROBLEM_COLUMN, RAW_COLUMN, RecordReader, split_broken_rows
from workbench.schema import (
    QUARANTINE_SCHEMA,
    USAGE_DAILY,
    USAGE_HOURLY,
    AcceleratorResolver,
    plainly_good_jobs,
    validate_job_records,
)

if TYPE_CHECKING:
    from pipelines.column_map import ColumnMap

__all__ = [
    "JOB_REQUIRED_COLUMNS",
    "SERIES_KEYS",
    "JobIngest",
    "ingest_job_records",
    "jobs_to_usage",
    "jobs_to_usage_daily",
]

JOB_REQUIRED_COLUMNS = (
    "job_id",
    "submit_time",
    "start_time",
    "end_time",
    "chips",
    "accelerator",
    "region",
    "team",
)
JOB_OPTIONAL_COLUMNS = ("workload",)
SERIES_KEYS = ("accelerator", "region", "team", "workload")
Grain = Literal["day", "hour"]
_In = TypeVar("_In")
_Out = TypeVar("_Out")
_US_PER_HOUR = 3_600_000_000
_PERIOD_US: dict[str, int] = {"day": 24 * _US_PER_HOUR, "hour": _US_PER_HOUR}
_SPLIT_THREADS = 2
_JUDGES = 2
_PENDING_ROWS = 50_000
_PENDING_SHARE = 0.02
_SLICE = 1 << 20
_SEGMENTS_PER_CHUNK = 500_000


@dataclass(frozen=True)
class JobIngest:
    """The outcome of reading one job-record file."""

    source: str
    usage_daily: pl.DataFrame
    """The usage table produced: ``usage_daily``, or ``usage_hourly`` for the hour grain."""
    quarantine: pl.DataFrame
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    duplicates_dropped: int
    blank_lines: int
    chip_hours_in: float
    """Chips x run hours of the loaded jobs, before splitting."""
    chip_hours_out: float
    """Sum of ``chip_hours_used`` of the produced rows."""
    queued_chip_hours_in: float
    queued_chip_hours_out: float
    rows_excluded: int = 0
    """Rows the column map's filter left out on purpose (e.g. Slurm job steps)."""
    running_jobs: int = 0
    """Jobs with no end yet, cut at the export time."""
    grain: Grain = "day"
    excluded: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=QUARANTINE_SCHEMA))
    spilled_runs: int = 0
    """Sorted runs of compact jobs written to disk (0: the file's jobs fit in memory)."""

    @property
    def table(self) -> str:
        """Name of the produced table."""
        return "usage_hourly" if self.grain == "hour" else "usage_daily"

    @property
    def balanced(self) -> bool:
        """Rows read = loaded + quarantined + excluded + duplicates, and chip-hours in = out."""
        rows_ok = self.rows_read == (
            self.rows_loaded + self.rows_quarantined + self.rows_excluded + self.duplicates_dropped
        )
        tolerance = 1e-9 * max(1.0, abs(self.chip_hours_in))
        hours_ok = abs(self.chip_hours_in - self.chip_hours_out) <= tolerance
        queued_tolerance = 1e-9 * max(1.0, abs(self.queued_chip_hours_in))
        queued_ok = abs(self.queued_chip_hours_in - self.queued_chip_hours_out) <= queued_tolerance
        return rows_ok and hours_ok and queued_ok

    def reconciliation(self) -> dict[str, object]:
        """The reconciliation as a plain mapping, for manifests and printing."""
        return {
            "source": self.source,
            "table": self.table,
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
            "rows_excluded": self.rows_excluded,
            "duplicates_dropped": self.duplicates_dropped,
            "blank_lines": self.blank_lines,
            "running_jobs": self.running_jobs,
            "chip_hours_in": self.chip_hours_in,
            "chip_hours_out": self.chip_hours_out,
            "queued_chip_hours_in": self.queued_chip_hours_in,
            "queued_chip_hours_out": self.queued_chip_hours_out,
            "balanced": self.balanced,
        }


# -- the split -------------------------------------------------------------------------
def _period_split(
    start: np.ndarray, end: np.ndarray, period_us: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split ``[start, end)`` at period boundaries: (job index, period, seg start, seg end)."""
    keep = np.flatnonzero(end > start)
    first = start[keep] // period_us
    last = (end[keep] - 1) // period_us
    count = (last - first + 1).astype(np.int64)
    total = int(count.sum())
    job = np.repeat(keep, count)
    offset = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    period = np.repeat(first, count) + offset
    period_start = period * period_us
    seg_start = np.maximum(start[job], period_start)
    seg_end = np.minimum(end[job], period_start + period_us)
    return job, period, seg_start, seg_end


def _usage_of_chunk(
    series: np.ndarray,
    submit: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    chips: np.ndarray,
    period_us: int,
) -> pl.DataFrame:
    """Used, queued and peak per (series, period) for jobs whose series are all here."""
    job, period, seg_start, seg_end = _period_split(start, end, period_us)
    q_job, q_period, q_start, q_end = _period_split(submit, start, period_us)
    raw_keys = (
        np.concatenate([series[job], series[q_job]]),
        np.concatenate([period, q_period]),
    )
    if raw_keys[0].size == 0:
        return _empty_usage()
    cells, cell_series, cell_period = _cells(*raw_keys)
    run_cell, wait_cell = cells[: job.size], cells[job.size :]
    n_cells = cell_series.size
    used = np.bincount(
        run_cell, weights=chips[job] * ((seg_end - seg_start) / _US_PER_HOUR), minlength=n_cells
    ).astype(np.float64, copy=False)
    queued = np.bincount(
        wait_cell, weights=chips[q_job] * ((q_end - q_start) / _US_PER_HOUR), minlength=n_cells
    ).astype(np.float64, copy=False)
    # Peak: segments covering the whole period are a constant; sweep the partial ones.
    period_start = period * period_us
    whole = (seg_start == period_start) & (seg_end == period_start + period_us)
    peak = np.bincount(run_cell[whole], weights=chips[job[whole]], minlength=n_cells).astype(
        np.float64, copy=False
    )
    partial = np.flatnonzero(~whole)
    if partial.size:
        p_chips = chips[job[partial]]
        event_cell = np.concatenate([run_cell[partial], run_cell[partial]])
        event_at = np.concatenate([seg_start[partial], seg_end[partial]])
        event_delta = np.concatenate([p_chips, -p_chips])
        order = np.lexsort((event_delta, event_at, event_cell))
        event_cell, event_delta = event_cell[order], event_delta[order]
        running = np.cumsum(event_delta)
        first = np.flatnonzero(np.r_[True, event_cell[1:] != event_cell[:-1]])
        before = running[first] - event_delta[first]
        peak[event_cell[first]] += np.maximum.reduceat(running, first) - before
    return pl.DataFrame(
        {
            "series": cell_series,
            "period": cell_period,
            "chip_hours_used": used,
            "chip_hours_queued": queued,
            "peak_chips": peak,
        }
    )


def _cells(series: np.ndarray, period: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Number each distinct (series, period): per-element cell ids and each cell's keys."""
    s_min, p_min = int(series.min()), int(period.min())
    p_span = int(period.max()) - p_min + 1
    dense = (series - s_min) * p_span + (period - p_min)
    n_dense = (int(series.max()) - s_min + 1) * p_span
    if n_dense <= max(8_000_000, 2 * dense.size):
        seen = np.zeros(n_dense, dtype=bool)
        seen[dense] = True
        occupied = np.flatnonzero(seen)
        index = np.full(n_dense, -1, dtype=np.int64)
        index[occupied] = np.arange(occupied.size)
        cells = index[dense]
    else:
        occupied, cells = np.unique(dense, return_inverse=True)
    return cells, occupied // p_span + s_min, occupied % p_span + p_min


def _empty_usage() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "series": pl.Int64,
            "period": pl.Int64,
            "chip_hours_used": pl.Float64,
            "chip_hours_queued": pl.Float64,
            "peak_chips": pl.Float64,
        }
    )


def _chunks_by_series(series: np.ndarray, segments: np.ndarray) -> Iterator[slice]:
    """Slices of series-sorted jobs, cut between series, of about _SEGMENTS_PER_CHUNK."""
    n = series.size
    begin = 0
    cumulative = np.cumsum(segments)
    while begin < n:
        target = (cumulative[begin - 1] if begin else 0) + _SEGMENTS_PER_CHUNK
        stop = int(np.searchsorted(cumulative, target, side="right"))
        stop = max(stop, begin + 1)
        if stop < n:
            # never cut inside a series: move the cut to the next series boundary
            boundary = int(np.searchsorted(series, series[stop - 1], side="right"))
            stop = max(boundary, begin + 1)
        yield slice(begin, min(stop, n))
        begin = min(stop, n)


def jobs_to_usage(jobs: pl.DataFrame, source: str, *, grain: Grain = "day") -> pl.DataFrame:
    """Turn validated job records into ``usage_daily`` (or ``usage_hourly``) rows."""
    spec = USAGE_HOURLY if grain == "hour" else USAGE_DAILY
    if jobs.height == 0:
        return spec.empty()
    keys = jobs.select(SERIES_KEYS).unique(maintain_order=True).with_row_index("series")
    compact = jobs.join(keys, on=list(SERIES_KEYS), how="left").select(
        pl.col("series").cast(pl.Int64),
        pl.col("submit_time").dt.epoch("us").alias("submit"),
        pl.col("start_time").dt.epoch("us").alias("start"),
        pl.col("end_time").dt.epoch("us").alias("end"),
        pl.col("chips").cast(pl.Float64),
    )
    usage = _usage_of_compact({c: compact[c].to_numpy() for c in compact.columns}, grain)
    return _finish_usage(usage, keys, source, grain)


def jobs_to_usage_daily(jobs: pl.DataFrame, source: str) -> pl.DataFrame:
    """Turn validated job records into ``usage_daily`` rows (one per series and day)."""
    return jobs_to_usage(jobs, source, grain="day")


def _usage_of_compact(
    compact: dict[str, np.ndarray], grain: Grain, *, threads: int = _SPLIT_THREADS
) -> pl.DataFrame:
    """Usage of compact jobs, a chunk of whole series at a time (bounded memory).

    ``threads`` chunks at once; 1 where the caller already splits two windows at once.
    """
    period_us = _PERIOD_US[grain]
    series_all = compact["series"]
    submit_all = compact["submit"]
    start_all = compact["start"]
    end_all = compact["end"]
    chips_all = compact["chips"]
    # Sort an index, not the frame: the jobs themselves are gathered chunk by chunk.
    order = np.argsort(series_all, kind="stable")
    series = series_all[order]
    # Each job's periods run and waited (+1): a slice at a time, few temporaries at once.
    weight = np.empty(series_all.size, dtype=np.int64)
    for at in range(0, series_all.size, _SLICE):
        part = slice(at, at + _SLICE)
        submit, start, end = submit_all[part], start_all[part], end_all[part]
        run_periods = np.where(end > start, (end - 1) // period_us - start // period_us + 1, 0)
        wait_periods = np.where(
            start > submit, (start - 1) // period_us - submit // period_us + 1, 0
        )
        weight[part] = run_periods + wait_periods + 1
    weight = weight[order]

    def usage_of(chunk: slice) -> pl.DataFrame:
        rows = order[chunk]
        return _usage_of_chunk(
            series[chunk],
            submit_all[rows],
            start_all[rows],
            end_all[rows],
            chips_all[rows],
            period_us,
        )

    chunks = list(_chunks_by_series(series, weight))
    if len(chunks) > 1 and threads > 1:
        # numpy's sorts, sums and gathers release the GIL: two chunks at a time use both
        # cores; each holds half of what one chunk at a time would, so memory stays level.
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="day-split") as pool:
            parts = list(pool.map(usage_of, chunks))
    else:
        parts = [usage_of(chunk) for chunk in chunks]
    return pl.concat(parts) if parts else _empty_usage()


def _finish_usage(
    usage: pl.DataFrame, keys: pl.DataFrame, source: str, grain: Grain
) -> pl.DataFrame:
    spec = USAGE_HOURLY if grain == "hour" else USAGE_DAILY
    period_us = _PERIOD_US[grain]
    instant = pl.from_epoch(pl.col("period") * period_us, time_unit="us").dt.replace_time_zone(
        "UTC"
    )
    when = instant.alias("hour") if grain == "hour" else instant.dt.date().alias("date")
    extra = (
        [] if grain == "hour" else [pl.lit(None, dtype=pl.Float64).alias("chip_hours_allocated")]
    )
    frame = (
        usage.join(keys.with_columns(pl.col("series").cast(pl.Int64)), on="series", how="left")
        .with_columns(when, pl.lit(source).alias("source"), *extra)
        .select(spec.schema.names())
        .sort(spec.schema.names()[0], *SERIES_KEYS)
    )
    return frame.cast(dict(spec.schema))  # type: ignore[arg-type]


# -- the file --------------------------------------------------------------------------
@dataclass
class _Accumulator:
    """What the blocks of one file add up to: the compact jobs and the odd rows."""

    jobs: JobStore
    series: dict[tuple[str | None, ...], int] = field(default_factory=dict)
    quarantine: list[pl.DataFrame] = field(default_factory=list)
    excluded: list[pl.DataFrame] = field(default_factory=list)
    running: int = 0

    def series_ids(self, judged: _Judged) -> np.ndarray:
        """The file-wide series id of each job of ``judged`` (from its block's own ids)."""
        known = self.series
        mapping = np.fromiter(
            (known.setdefault(row, len(known)) for row in judged.series_keys.iter_rows()),
            dtype=np.int32,
            count=judged.series_keys.height,
        )
        return mapping[judged.local_series]

    def keys_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            [(v, *k) for k, v in self.series.items()],
            schema={"series": pl.Int64, **{k: pl.String for k in SERIES_KEYS}},
            orient="row",
        )


def ingest_job_records(
    path: Path,
    *,
    resolver: AcceleratorResolver,
    source: str | None = None,
    column_map: ColumnMap | None = None,
    export_time: datetime | None = None,
    grain: Grain = "day",
    progress: Callable[[int], None] | None = None,
    spill_rows: int = SPILL_ROWS,
    spill_dir: Path | None = None,
    window_rows: int = WINDOW_ROWS,
) -> JobIngest:
    """Read, map, deduplicate, validate and split one job-record file, streaming.

    ``column_map`` translates another scheduler's layout (see :mod:`pipelines.column_map`);
    ``export_time`` cuts jobs still running. ``progress`` is called with the rows read so far.
    Past ``spill_rows`` loaded jobs, they are written to a temporary folder in ``spill_dir``
    (default ``TMPDIR``) in sorted runs and split ``window_rows`` at a time, so memory stays
    level however large the file (:class:`pipelines.job_store.JobStore`).
    """
    source = source or f"job_records:{path}"
    if column_map is not None:
        reader = RecordReader(
            path,
            required=tuple(column_map.source_columns),
            delimiter=column_map.delimiter,
            has_header=column_map.has_header,
            column_names=column_map.column_names,
            format=column_map.format,
        )
    else:
        reader = RecordReader(path, required=JOB_REQUIRED_COLUMNS, optional=JOB_OPTIONAL_COLUMNS)
    with JobStore(_PERIOD_US[grain], spill_rows=spill_rows, directory=spill_dir) as jobs:
        acc = _Accumulator(jobs=jobs)
        _accumulate(reader, acc, source, resolver, column_map, export_time, progress)
        return _split(acc, reader, source, grain, window_rows)


def _accumulate(
    reader: RecordReader,
    acc: _Accumulator,
    source: str,
    resolver: AcceleratorResolver,
    column_map: ColumnMap | None,
    export_time: datetime | None,
    progress: Callable[[int], None] | None,
) -> None:
    """Read, map and validate every block, keeping the loaded jobs in compact form."""
    numbered = _prefetched(reader, _Numbering())
    judge = _Judge(source=source, resolver=resolver, column_map=column_map, export_time=export_time)
    pending: list[pl.DataFrame] = []
    waiting = 0

    def take(judged: _Judged) -> None:
        acc.running += judged.running
        acc.excluded.extend(judged.excluded)
        acc.quarantine.extend(judged.quarantine)
        acc.jobs.add(
            ordinal=judged.ordinal,
            series=acc.series_ids(judged),
            submit=judged.submit,
            start=judged.start,
            end=judged.end,
            chips=judged.chips,
            hash=judged.hashes,
        )

    for judged in _mapped_in_order(numbered, judge, workers=_JUDGES):
        take(judged)
        if judged.pending is not None and judged.pending.height:
            pending.append(judged.pending)
            waiting += judged.pending.height
        if waiting >= _PENDING_ROWS:
            take(_judge_fully(pl.concat(pending), source, resolver))
            pending, waiting = [], 0
        if progress is not None:
            progress(judged.rows_seen)
    if pending:
        take(_judge_fully(pl.concat(pending), source, resolver))


def _split(
    acc: _Accumulator, reader: RecordReader, source: str, grain: Grain, window_rows: int
) -> JobIngest:
    """Drop duplicates and split the jobs into usage, a window of submit periods at a time.

    A job still running (or waiting) at a window's end is carried into the next window, and
    each window counts only the time inside it, so every period sees every job touching it.
    """
    empty_odd = pl.DataFrame(
        schema={**dict(QUARANTINE_SCHEMA), "__ordinal": pl.Int64, "__hash": pl.UInt64}
    )
    quarantine = pl.concat(acc.quarantine, how="diagonal_relaxed") if acc.quarantine else empty_odd
    excluded = pl.concat(acc.excluded, how="diagonal_relaxed") if acc.excluded else empty_odd
    acc.quarantine.clear()
    acc.excluded.clear()
    repeated = _repeated_odd_rows(quarantine, excluded)
    if repeated.len():
        wanted = repeated.implode()
        quarantine = quarantine.filter(~pl.col("__ordinal").is_in(wanted))
        excluded = excluded.filter(~pl.col("__ordinal").is_in(wanted))
    duplicates = int(repeated.len())
    loaded = 0
    run_hours = wait_hours = 0.0
    parts: list[pl.DataFrame] = []
    carried: dict[str, np.ndarray] = {
        name: np.zeros(0, dtype=COMPACT_DTYPES[name]) for name in _SPLIT_COLUMNS
    }
    # While one window is split in a thread, the next is read and de-duplicated.
    splitting: deque[Future[pl.DataFrame]] = deque()
    with ThreadPoolExecutor(max_workers=_SPLIT_THREADS, thread_name_prefix="window") as pool:
        for window in acc.jobs.windows(window_rows):
            owned = window.jobs
            keep = ~_repeated_jobs(owned)
            if not keep.all():
                duplicates += int(keep.size - keep.sum())
                owned = {name: values[keep] for name, values in owned.items()}
            del keep
            loaded += int(owned["ordinal"].size)
            run, wait = _chip_hours_in(owned)
            run_hours, wait_hours = run_hours + run, wait_hours + wait
            active = {
                name: np.concatenate([carried[name], owned.pop(name)]) for name in _SPLIT_COLUMNS
            }
            del owned
            clipped = _clipped(active, window.begin, window.end)
            # one chunk at a time within a window: two windows at once already use both
            # cores, and four chunks at once peaked hundreds of MB higher
            splitting.append(pool.submit(_usage_of_compact, clipped, grain, threads=1))
            del clipped
            if window.end is not None:
                still = active["end"] > window.end
                carried = {name: values[still] for name, values in active.items()}
            del active
            if len(splitting) >= _SPLIT_THREADS:
                parts.append(splitting.popleft().result())
        parts.extend(future.result() for future in splitting)
    quarantine = (
        quarantine.sort("line")
        .select(QUARANTINE_SCHEMA.names())
        .cast(
            dict(QUARANTINE_SCHEMA)  # type: ignore[arg-type]
        )
    )
    excluded = excluded.sort("line").select(QUARANTINE_SCHEMA.names())
    usage = _finish_usage(
        pl.concat(parts) if parts else _empty_usage(), acc.keys_frame(), source, grain
    )
    return JobIngest(
        source=source,
        usage_daily=usage,
        quarantine=quarantine,
        rows_read=reader.rows_read,
        rows_loaded=loaded,
        rows_quarantined=quarantine.height,
        duplicates_dropped=duplicates,
        blank_lines=reader.blank_lines,
        chip_hours_in=run_hours,
        chip_hours_out=float(usage["chip_hours_used"].sum()),
        queued_chip_hours_in=wait_hours,
        queued_chip_hours_out=float(usage["chip_hours_queued"].sum()),
        rows_excluded=excluded.height,
        running_jobs=acc.running,
        grain=grain,
        excluded=excluded,
        spilled_runs=acc.jobs.spilled_runs,
    )


_SPLIT_COLUMNS = ("series", "submit", "start", "end", "chips")


def _clipped(jobs: dict[str, np.ndarray], begin: int, end: int | None) -> dict[str, np.ndarray]:
    """The jobs' instants held to ``[begin, end)``: each keeps only its time in the window.

    submit <= start <= end, so the run ``[start, end)`` and the wait ``[submit, start)``
    clipped this way are exactly their parts inside the window (empty when outside it).
    """
    high = np.iinfo(np.int64).max if end is None else end
    return {
        "series": jobs["series"],
        "submit": np.clip(jobs["submit"], begin, high),
        "start": np.clip(jobs["start"], begin, high),
        "end": np.clip(jobs["end"], begin, high),
        "chips": jobs["chips"],
    }


class _Numbering:
    """Stage one, in the reader's thread: each raw row's ordinal and a hash of its text."""

    def __init__(self) -> None:
        self.next_ordinal = 0

    def __call__(self, block: pl.DataFrame) -> pl.DataFrame:
        first, self.next_ordinal = self.next_ordinal, self.next_ordinal + block.height
        data_columns = [c for c in block.columns if c not in ("line", PROBLEM_COLUMN)]
        return block.with_columns(
            pl.int_range(first, self.next_ordinal, dtype=pl.Int64).alias("__ordinal"),
            # A 64-bit hash of each raw row finds exact duplicates (see _repeated_jobs).
            block.select(data_columns).hash_rows(seed=11).alias("__hash"),
        )


@dataclass
class _Judged:
    """One block after mapping and validation: its loaded jobs in compact form."""

    series_keys: pl.DataFrame
    """The distinct series of the block's loaded jobs (SERIES_KEYS columns)."""
    local_series: np.ndarray
    """Each loaded job's row in ``series_keys``."""
    ordinal: np.ndarray
    submit: np.ndarray
    start: np.ndarray
    end: np.ndarray
    chips: np.ndarray
    quarantine: list[pl.DataFrame] = field(default_factory=list)
    excluded: list[pl.DataFrame] = field(default_factory=list)
    running: int = 0
    rows_seen: int = 0
    hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    """The raw-row hash of each loaded job (quarantined and excluded rows carry theirs)."""
    pending: pl.DataFrame | None = None
    """Rows left for the full validation (raw, with line, ordinal and hash)."""

    def keys(self) -> pl.DataFrame:
        """Each loaded job's series keys."""
        return self.series_keys[self.local_series]


@dataclass
class _Judge:
    """Stage two, in a thread of its own: map, split broken rows off, validate one block.

    It keeps no state between blocks, so it can run ahead of the accumulation.
    """

    source: str
    resolver: AcceleratorResolver
    column_map: ColumnMap | None
    export_time: datetime | None

    def __call__(self, block: pl.DataFrame) -> _Judged:
        source = self.source
        rows = block
        excluded: list[pl.DataFrame] = []
        quarantine: list[pl.DataFrame] = []
        running = 0
        if self.column_map is not None:
            from pipelines.column_map import apply_column_map

            result = apply_column_map(rows, self.column_map, export_time=self.export_time)
            mapped = _with_ordinals(result.mapped, rows)
            if RAW_COLUMN in rows.columns and RAW_COLUMN not in mapped.columns:
                # a broken JSON line's text, for its quarantine record (the map drops it)
                mapped = mapped.join(rows.select("line", RAW_COLUMN), on="line", how="left")
            if result.excluded.height:
                excluded.append(_excluded_rows(_with_ordinals(result.excluded, rows), source))
            if "running" in mapped.columns:
                running = int(mapped["running"].fill_null(False).sum())
                mapped = mapped.drop("running")
            rows = mapped
        sound, broken = split_broken_rows(rows, table="job_records", source=source)
        if broken.height:
            quarantine.append(
                broken.with_columns(
                    rows.filter(pl.col(PROBLEM_COLUMN).is_not_null()).select("__ordinal", "__hash")
                )
            )
        plain = plainly_good_jobs(sound, resolver=self.resolver)
        if plain is None:  # typed columns (a column map's output): judged here, whole
            judged = _judge_fully(sound, source, self.resolver)
            judged.quarantine[:0] = quarantine
            judged.excluded, judged.running = excluded, running
        else:
            good, rest = plain
            at = good["__row"]
            judged = _compact(good, sound["__ordinal"].gather(at), sound["__hash"].gather(at))
            rest = rest.drop("__row")
            if rest.height > _PENDING_SHARE * sound.height:  # many odd rows: judge them now
                late = _judge_fully(rest, source, self.resolver)
                judged = _joined(judged, late)
            elif rest.height:
                # The few rows that are not plainly good wait for the full validation in the
                # accumulating thread, many blocks' worth at once: its cost is mostly per
                # call. They are copied out, or their text would keep the whole block alive.
                judged.pending = _detached(rest)
            judged.quarantine[:0] = quarantine
            judged.excluded, judged.running = excluded, running
        judged.rows_seen = int(block["__ordinal"][-1]) + 1 if block.height else 0
        # Quarantined and excluded rows are kept to the end: copied out of the block, as the
        # pending rows are (a quarantined value's text kept its column of the block alive:
        # a 5 GB file grew by about 600 MB of such blocks).
        judged.quarantine = [_detached(frame) for frame in judged.quarantine]
        judged.excluded = [_detached(frame) for frame in judged.excluded]
        return judged


def _detached(frame: pl.DataFrame) -> pl.DataFrame:
    """A copy of a few rows that shares no memory with the block they were taken from.

    polars keeps text longer than 12 bytes in the buffers of the column it came from, and a
    filtered frame keeps those whole buffers alive; a copy through Python objects does not.
    """
    return pl.DataFrame(frame.to_dict(as_series=False), schema=frame.schema)


def _judge_fully(sound: pl.DataFrame, source: str, resolver: AcceleratorResolver) -> _Judged:
    """Validate rows with every reason written; the loaded ones in compact form."""
    validated = validate_job_records(sound, source=source, resolver=resolver, shortcut=False)
    if validated.quarantine.height:
        quarantine = [
            validated.quarantine.join(
                sound.select("line", "__ordinal", "__hash"), on="line", how="left"
            )
        ]
        loaded = sound.join(
            validated.quarantine.select("line"), on="line", how="anti", maintain_order="left"
        )
    else:
        quarantine, loaded = [], sound
    judged = _compact(validated.good, loaded["__ordinal"], loaded["__hash"])
    judged.quarantine = quarantine
    return judged


def _joined(first: _Judged, second: _Judged) -> _Judged:
    """Two judged parts of one block as one."""
    return _Judged(
        **_local_series(pl.concat([first.keys(), second.keys()])),
        ordinal=np.concatenate([first.ordinal, second.ordinal]),
        submit=np.concatenate([first.submit, second.submit]),
        start=np.concatenate([first.start, second.start]),
        end=np.concatenate([first.end, second.end]),
        chips=np.concatenate([first.chips, second.chips]),
        hashes=np.concatenate([first.hashes, second.hashes]),
        quarantine=[*first.quarantine, *second.quarantine],
    )


def _local_series(keys: pl.DataFrame) -> dict[str, Any]:
    """The distinct series of ``keys`` and each row's place among them.

    Done where a block is judged (in parallel); the accumulating thread then only maps the
    few distinct series of a block to the file's ids.
    """
    distinct = keys.unique(maintain_order=True)
    local = keys.join(
        distinct.with_row_index("__local"),
        on=list(SERIES_KEYS),
        how="left",
        maintain_order="left",
        nulls_equal=True,
    )["__local"]
    return {"series_keys": distinct, "local_series": local.to_numpy()}


def _compact(good: pl.DataFrame, ordinal: pl.Series, hashes: pl.Series) -> _Judged:
    return _Judged(
        **_local_series(good.select(SERIES_KEYS)),
        ordinal=ordinal.to_numpy(),
        submit=good["submit_time"].dt.epoch("us").to_numpy(),
        start=good["start_time"].dt.epoch("us").to_numpy(),
        end=good["end_time"].dt.epoch("us").to_numpy(),
        chips=good["chips"].to_numpy(),
        hashes=hashes.to_numpy(),
    )


def _prefetched(items: Iterable[_In], prepare: Callable[[_In], _Out]) -> Iterator[_Out]:
    """``prepare`` each item in a thread of its own, one or two items ahead of the consumer.

    polars and numpy release the GIL, so reading the next block overlaps with judging this
    one. Errors surface in order; if the consumer stops early, the thread stops too, and
    closes ``items`` when it can be closed.
    """
    done = object()
    stop = threading.Event()
    queue: Queue[object] = Queue(maxsize=2)

    def hand_over(item: object) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand_over(prepare(item)):
                    return
            hand_over(done)
        except BaseException as exc:  # handed to the consumer, raised there
            hand_over(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="record-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = queue.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield cast("_Out", item)
    finally:
        stop.set()
        worker.join()


def _mapped_in_order(
    items: Iterable[_In], prepare: Callable[[_In], _Out], *, workers: int
) -> Iterator[_Out]:
    """``prepare`` items in ``workers`` threads at once, handing results back in order.

    Blocks are judged independently, and most of judging one is polars and numpy work
    that releases the GIL: two judges keep both cores busy where one could not. At most
    ``workers + 1`` items are in flight; an error surfaces at its item's turn, and if the
    consumer stops early the items not started are cancelled.
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="record-judge")
    window: deque[Future[_Out]] = deque()
    try:
        for item in items:
            window.append(pool.submit(prepare, item))
            if len(window) > workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _chip_hours_in(compact: dict[str, np.ndarray]) -> tuple[float, float]:
    """Chips x run hours and chips x queued hours of the loaded jobs, a slice at a time."""
    run = wait = 0.0
    for at in range(0, compact["chips"].size, _SLICE):
        part = slice(at, at + _SLICE)
        chips, submit = compact["chips"][part], compact["submit"][part]
        start, end = compact["start"][part], compact["end"][part]
        run += float(np.dot(chips, np.clip(end - start, 0, None) / _US_PER_HOUR))
        wait += float(np.dot(chips, np.clip(start - submit, 0, None) / _US_PER_HOUR))
    return run, wait


def _with_ordinals(frame: pl.DataFrame, batch: pl.DataFrame) -> pl.DataFrame:
    """Give mapped rows back the ordinals of the raw rows they came from (by line)."""
    if "__ordinal" in frame.columns:
        return frame
    if PROBLEM_COLUMN not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(PROBLEM_COLUMN))
    return frame.join(batch.select("line", "__ordinal", "__hash"), on="line", how="left")


def _repeated_jobs(jobs: dict[str, np.ndarray]) -> np.ndarray:
    """Which loaded jobs repeat an earlier row exactly (a mask).

    The 64-bit hash of each raw row finds the candidates (rare); a candidate is a duplicate
    only if the job it became is identical too, so a hash collision can never drop a
    distinct row. Exact repeats share their submit instant, so they meet in one window.
    """
    repeated = np.zeros(jobs["hash"].size, dtype=bool)
    ordered = np.sort(jobs["hash"])
    twice = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    del ordered
    if twice.size == 0:
        return repeated
    at = np.flatnonzero(np.isin(jobs["hash"], twice))
    candidates = pl.DataFrame({name: values[at] for name, values in jobs.items()}).with_columns(
        pl.Series("__at", at)
    )
    later = candidates.sort("ordinal").filter(
        ~pl.struct("hash", "series", "submit", "start", "end", "chips").is_first_distinct()
    )
    repeated[later["__at"].to_numpy()] = True
    return repeated


def _repeated_odd_rows(quarantine: pl.DataFrame, excluded: pl.DataFrame) -> pl.Series:
    """Ordinals of quarantined or excluded rows that repeat an earlier such row exactly.

    Same raw-row hash and the same record: identical text is judged identically, so a row's
    repeat lands where the row did (a loaded row's repeats are found by _repeated_jobs).
    """
    odd = pl.concat(
        [frame.select("__ordinal", "__hash", "record") for frame in (quarantine, excluded)]
    ).sort("__ordinal")
    return odd.filter(~pl.struct("__hash", "record").is_first_distinct())["__ordinal"]


def _excluded_rows(excluded: pl.DataFrame, source: str) -> pl.DataFrame:
    data_columns = [
        c
        for c in excluded.columns
        if c not in ("line", PROBLEM_COLUMN, "__ordinal", "reason") and not c.startswith("__")
    ]
    reason = (
        pl.col("reason") if "reason" in excluded.columns else pl.lit("excluded by the column map")
    )
    return excluded.select(
        pl.lit("job_records").alias("table"),
        pl.lit(source).alias("source"),
        pl.col("line").cast(pl.Int64),
        pl.lit("line").alias("field"),
        pl.lit(None, dtype=pl.String).alias("value"),
        reason.cast(pl.String).alias("reason"),
        pl.struct(data_columns).struct.json_encode().alias("record"),
        pl.col("__ordinal"),
        pl.col("__hash"),
    )
