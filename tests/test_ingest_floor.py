"""The ingest floor (``benchmarks/ingest_floor.py``) computes the chip-hours it claims to.

Its time is weighed against the pipeline's in the README, so it must do the work it names:
split each run at UTC midnights and sum chips x hours per day and series, from CSV and
Parquet alike. Expected figures are worked out by hand below.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from benchmarks.ingest_floor import daily_chip_hours, main

HAND_WRITTEN = """\
job_id,submit_time,start_time,end_time,chips,accelerator,region,team,workload
a1,2025-01-01T20:00:00Z,2025-01-01T22:00:00Z,2025-01-02T04:00:00Z,8,tpu-v5p,us-east4,team-a,training
a2,2025-01-02T09:00:00+09:00,2025-01-02T09:00:00+09:00,2025-01-02T10:30:00+09:00,4,tpu-v5p,us-east4,team-a,training
b1,2025-01-01T00:00:00Z,2025-01-01T00:00:00Z,2025-01-01T00:00:00Z,3,h100-80gb,us-east4,team-b,serving
b2,2025-02-30T10:00:00Z,2025-02-30T10:00:00Z,2025-02-30T11:00:00Z,3,h100-80gb,us-east4,team-b,serving
b3,2025-01-03T10:00:00Z,2025-01-03T10:00:00Z,2025-01-03T11:00:00Z,eight,h100-80gb,us-east4,team-b,serving
b4,2025-01-03T10:00:00Z,2025-01-03T10:00:00Z,2025-01-03T13:00:00Z,2,h100-80gb,us-east4,team-b,serving
"""
# a1: 8 chips x 2 h on Jan 1 (22:00-24:00) = 16, 8 x 4 h on Jan 2 = 32
# a2: 00:00-01:30 UTC on Jan 2, 4 chips x 1.5 h = 6 -> Jan 2 of team-a: 38
# b1: zero length; b2: no such day; b3: no chip count -> dropped, not counted
# b4: 2 chips x 3 h on Jan 3 = 6
EXPECTED = {
    (date(2025, 1, 1), "team-a"): 16.0,
    (date(2025, 1, 2), "team-a"): 38.0,
    (date(2025, 1, 3), "team-b"): 6.0,
}


@pytest.fixture(params=["csv", "parquet"])
def jobs_file(request, tmp_path: Path) -> Path:
    csv = tmp_path / "jobs.csv"
    csv.write_text(HAND_WRITTEN)
    if request.param == "csv":
        return csv
    parquet = tmp_path / "jobs.parquet"
    pl.read_csv(csv, infer_schema=False).write_parquet(parquet)
    return parquet


@pytest.mark.parametrize("engine", ["streaming", "in-memory"])
def test_the_floor_splits_runs_at_midnight_and_sums_chip_hours(jobs_file, engine):
    usage = daily_chip_hours(jobs_file, engine=engine)
    got = {(row["date"], row["team"]): row["chip_hours"] for row in usage.iter_rows(named=True)}
    assert got == pytest.approx(EXPECTED)
    assert usage.columns == ["date", "accelerator", "region", "team", "workload", "chip_hours"]


def test_the_floor_command_prints_time_peak_and_total(tmp_path, capsys):
    csv = tmp_path / "jobs.csv"
    csv.write_text(HAND_WRITTEN)
    assert main([str(csv)]) == 0
    out = capsys.readouterr().out
    assert " s, peak " in out and " MB, 3 rows, 60 chip-hours run" in out
