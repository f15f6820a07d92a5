"""A floor for the job-record ingest: the least polars work that gives daily chip-hours.

Not a reference (it does not compute ``usage_daily``): it says how fast any polars program
could go on this machine, so that the issue's "at least 3x faster than pandas" can be
weighed. It reads the file (all text for CSV), parses the three timestamps with one
explicit format, drops rows whose run does not parse or is empty, splits each job's run at
UTC midnights and sums chips x hours per (day, accelerator, region, team, workload), with
polars' streaming engine on every core. It does none of the rest: no trimming, no aliases,
no checks with a reason per row, no exact duplicates, no queued hours, no peak chips, no
reconciliation (a bad timestamp or chip count is silently dropped).

    python benchmarks/ingest_floor.py JOBS.csv|JOBS.parquet
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

__all__ = ["TIMESTAMP_FORMAT", "daily_chip_hours"]

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%#z"
_DAY_US = 86_400_000_000
_US_PER_HOUR = 3_600_000_000
_KEYS = ("accelerator", "region", "team", "workload")
_INSTANTS = ("submit_time", "start_time", "end_time")


def _scan(path: Path) -> pl.LazyFrame:
    if path.suffix == ".parquet":
        frame = pl.scan_parquet(path)
    else:
        frame = pl.scan_csv(path, infer_schema=False)  # all text: no guessing, no failing
    schema = frame.collect_schema()
    return frame.with_columns(
        pl.col(name).str.to_datetime(
            TIMESTAMP_FORMAT, time_zone="UTC", time_unit="us", strict=False
        )
        if schema[name] == pl.String
        else pl.col(name).dt.convert_time_zone("UTC")
        for name in _INSTANTS
    ).with_columns(pl.col("chips").cast(pl.Float64, strict=False))


def daily_chip_hours(path: Path, *, engine: str = "streaming") -> pl.DataFrame:
    """Chips x run hours per day and series: ``date, accelerator, region, team, workload``."""
    start, end = pl.col("start_time").dt.epoch("us"), pl.col("end_time").dt.epoch("us")
    day = pl.col("day")
    return (
        _scan(path)
        .with_columns(start=start, end=end)
        .filter(pl.col("end") > pl.col("start"), pl.col("chips") > 0)
        .with_columns(
            day=pl.int_ranges(pl.col("start") // _DAY_US, (pl.col("end") - 1) // _DAY_US + 1)
        )
        .explode("day")
        .with_columns(
            chip_hours=(
                pl.min_horizontal("end", (day + 1) * _DAY_US)
                - pl.max_horizontal("start", day * _DAY_US)
            )
            / _US_PER_HOUR
            * pl.col("chips")
        )
        .group_by("day", *_KEYS)
        .agg(pl.col("chip_hours").sum())
        .with_columns(date=(day * _DAY_US).cast(pl.Datetime("us")).dt.date())
        .select("date", *_KEYS, "chip_hours")
        .collect(engine=engine)  # type: ignore[call-overload]
        .sort("date", *_KEYS, nulls_last=True)
    )


def _peak_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", type=Path, help="job records (.csv or .parquet)")
    parser.add_argument("--engine", default="streaming", choices=("streaming", "in-memory"))
    args = parser.parse_args(argv)
    began = time.perf_counter()
    usage = daily_chip_hours(args.jobs, engine=args.engine)
    seconds = time.perf_counter() - began
    print(
        f"{args.jobs}: {seconds:.1f} s, peak {_peak_mb():,.0f} MB, {usage.height:,} rows, "
        f"{usage['chip_hours'].sum():,.0f} chip-hours run"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
