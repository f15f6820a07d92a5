"""Scheduler job records -> ``usage_daily``.

Each job holds ``chips`` from ``start_time`` to ``end_time`` and waited from ``submit_time``
to ``start_time``. The pipeline splits both intervals at UTC midnights, so a job that spans
days contributes to each day exactly the hours it ran (or waited) on it:

* ``chip_hours_used``: sum over jobs of chips x hours run that day;
* ``chip_hours_queued``: sum over jobs of chips x hours waited that day (unmet demand);
* ``peak_chips``: the most chips running at one instant that day, from a sweep over the
  start and end events of the day's job segments (ends before starts at equal instants, so
  back-to-back jobs are not counted as overlapping), not from an average.

Nothing is lost: every data row is loaded, quarantined with a reason, or dropped as an
exact duplicate, and :class:`JobIngest` carries the reconciliation that proves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines.readers import PROBLEM_COLUMN, RawTable, read_delimited, split_broken_rows
from workbench.schema import (
    USAGE_DAILY,
    AcceleratorResolver,
    validate_job_records,
)

__all__ = [
    "JOB_REQUIRED_COLUMNS",
    "JobIngest",
    "ingest_job_records",
    "jobs_to_usage_daily",
    "split_by_day",
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
_HOUR_US = 3_600_000_000


@dataclass(frozen=True)
class JobIngest:
    """The outcome of reading one job-record file."""

    source: str
    usage_daily: pl.DataFrame
    quarantine: pl.DataFrame
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    duplicates_dropped: int
    blank_lines: int
    chip_hours_in: float
    """Chips x run hours of the loaded jobs, before splitting."""
    chip_hours_out: float
    """Sum of ``chip_hours_used`` of the produced ``usage_daily`` rows."""
    queued_chip_hours_in: float
    queued_chip_hours_out: float

    @property
    def balanced(self) -> bool:
        """Rows read = loaded + quarantined + duplicates, and chip-hours in = out."""
        rows_ok = (
            self.rows_read == self.rows_loaded + self.rows_quarantined + self.duplicates_dropped
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
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
            "duplicates_dropped": self.duplicates_dropped,
            "blank_lines": self.blank_lines,
            "chip_hours_in": self.chip_hours_in,
            "chip_hours_out": self.chip_hours_out,
            "queued_chip_hours_in": self.queued_chip_hours_in,
            "queued_chip_hours_out": self.queued_chip_hours_out,
            "balanced": self.balanced,
        }


def split_by_day(
    frame: pl.LazyFrame, start: str, end: str, keys: tuple[str, ...] = SERIES_KEYS
) -> pl.LazyFrame:
    """Split ``[start, end)`` intervals at UTC midnights.

    Returns one row per interval and day it touches, with the keys, ``chips``, ``date`` and
    the segment's ``segment_start``/``segment_end`` instants. Empty intervals vanish.
    """
    day = pl.duration(days=1)
    return (
        frame.filter(pl.col(end) > pl.col(start))
        .with_columns(
            pl.date_ranges(
                pl.col(start).dt.date(),
                (pl.col(end) - pl.duration(microseconds=1)).dt.date(),
                interval="1d",
            ).alias("date")
        )
        .explode("date")
        .with_columns(pl.col("date").cast(pl.Datetime("us", "UTC")).alias("__day_start"))
        .select(
            *keys,
            "chips",
            "date",
            pl.max_horizontal(pl.col(start), pl.col("__day_start")).alias("segment_start"),
            pl.min_horizontal(pl.col(end), pl.col("__day_start") + day).alias("segment_end"),
        )
    )


def _segment_hours() -> pl.Expr:
    return (pl.col("segment_end") - pl.col("segment_start")).dt.total_microseconds() / _HOUR_US


def jobs_to_usage_daily(jobs: pl.DataFrame, source: str) -> pl.DataFrame:
    """Turn validated job records into ``usage_daily`` rows (one per series and day)."""
    lazy = jobs.lazy()
    run_segments = split_by_day(lazy, "start_time", "end_time")
    used = run_segments.group_by(*SERIES_KEYS, "date").agg(
        (pl.col("chips") * _segment_hours()).sum().alias("chip_hours_used")
    )
    queued = (
        split_by_day(lazy, "submit_time", "start_time")
        .group_by(*SERIES_KEYS, "date")
        .agg((pl.col("chips") * _segment_hours()).sum().alias("chip_hours_queued"))
    )
    events = pl.concat(
        [
            run_segments.select(
                *SERIES_KEYS,
                "date",
                pl.col("segment_start").alias("at"),
                pl.col("chips").alias("delta"),
            ),
            run_segments.select(
                *SERIES_KEYS,
                "date",
                pl.col("segment_end").alias("at"),
                (-pl.col("chips")).alias("delta"),
            ),
        ]
    )
    peak = (
        events.sort(*SERIES_KEYS, "date", "at", "delta")
        .with_columns(pl.col("delta").cum_sum().over(*SERIES_KEYS, "date").alias("running"))
        .group_by(*SERIES_KEYS, "date")
        .agg(pl.col("running").max().alias("peak_chips"))
    )
    daily = (
        used.join(queued, on=[*SERIES_KEYS, "date"], how="full", coalesce=True)
        .join(peak, on=[*SERIES_KEYS, "date"], how="left", coalesce=True)
        .with_columns(
            pl.col("chip_hours_used").fill_null(0.0),
            pl.col("chip_hours_queued").fill_null(0.0),
            pl.col("peak_chips").fill_null(0.0),
            pl.lit(None, dtype=pl.Float64).alias("chip_hours_allocated"),
            pl.lit(source).alias("source"),
        )
        .select(USAGE_DAILY.schema.names())
        .sort("date", *SERIES_KEYS)
    )
    return daily.collect().cast(dict(USAGE_DAILY.schema))  # type: ignore[arg-type]


def _hours(start: str, end: str) -> pl.Expr:
    return (pl.col(end) - pl.col(start)).dt.total_microseconds().clip(lower_bound=0) / _HOUR_US


def ingest_job_records(
    path: Path, *, resolver: AcceleratorResolver, source: str | None = None
) -> JobIngest:
    """Read, deduplicate, validate and split one job-record file."""
    source = source or f"job_records:{path}"
    raw: RawTable = read_delimited(
        path, required=JOB_REQUIRED_COLUMNS, optional=JOB_OPTIONAL_COLUMNS
    )
    frame = raw.frame
    data_columns = [c for c in frame.columns if c not in ("line", PROBLEM_COLUMN)]
    # An exact copy of an earlier row is the same job exported twice: drop it, count it.
    first = frame.select(pl.struct(data_columns).is_first_distinct()).to_series()
    duplicates = int((~first).sum())
    frame = frame.filter(first)
    sound, broken = split_broken_rows(frame, table="job_records", source=source)
    validated = validate_job_records(sound, source=source, resolver=resolver)
    quarantine = pl.concat([validated.quarantine, broken]).sort("line")
    good = validated.good
    usage = jobs_to_usage_daily(good, source)
    chip_hours_in = float(
        good.select((pl.col("chips") * _hours("start_time", "end_time")).sum()).item() or 0.0
    )
    queued_in = float(
        good.select((pl.col("chips") * _hours("submit_time", "start_time")).sum()).item() or 0.0
    )
    return JobIngest(
        source=source,
        usage_daily=usage,
        quarantine=quarantine,
        rows_read=raw.rows_read,
        rows_loaded=good.height,
        rows_quarantined=quarantine.height,
        duplicates_dropped=duplicates,
        blank_lines=raw.blank_lines,
        chip_hours_in=chip_hours_in,
        chip_hours_out=float(usage["chip_hours_used"].sum()),
        queued_chip_hours_in=queued_in,
        queued_chip_hours_out=float(usage["chip_hours_queued"].sum()),
    )
