"""Limits: pathological series forecast without errors; big files stream in bounded memory.

* Series that are all zeros, one point, constant, or one huge spike get a finite,
  non-negative, ordered forecast for every step (falling back where a model cannot fit).
* A job-record file of hundreds of MB is ingested block by block, its jobs spilled to disk
  past a budget: peak memory stays under 1 GB whatever the file's size
  (``-m slow``; set ``WORKBENCH_STREAM_MB`` for another size, e.g. 5000 for 5 GB).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.conftest import SAMPLE_CATALOG, SAMPLE_JOBS
from workbench.forecasting import ForecastSettings, run_series_engine

HORIZON = 14
MODELS = ("seasonal_naive", "naive2", "theta")


def _series(name: str, values: list[float]) -> pl.DataFrame:
    start = date(2026, 1, 1)
    return pl.DataFrame(
        {
            "series_id": [name] * len(values),
            "ds": [start + timedelta(days=i) for i in range(len(values))],
            "y": values,
        }
    )


PATHOLOGICAL = {
    "zeros": [0.0] * 120,
    "one_point": [5.0],
    "two_points": [5.0, 0.0],
    "constant": [42.0] * 120,
    "spike": [1.0] * 60 + [1e12] + [1.0] * 59,
    "huge": [1e15 + i for i in range(120)],
    "mostly_zero": [0.0] * 100 + [3.0] + [0.0] * 19,
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_pathological_series_forecast_without_errors(name):
    settings = ForecastSettings(horizon=HORIZON, models=MODELS, windows=2, step=14, seed=0)
    result = run_series_engine(_series(name, PATHOLOGICAL[name]), settings, freq="1d")
    forecast = result.forecast.filter(pl.col("series_id") == name)
    # One row per step (of each model shown), finite, non-negative, quantiles ordered.
    assert forecast.height >= HORIZON
    assert set(forecast["h"]) == set(range(1, HORIZON + 1))
    quantiles = [c for c in forecast.columns if c.startswith("p") and c[1:].isdigit()]
    values = forecast.select("mean", *quantiles).to_numpy()
    assert np.isfinite(values).all()
    assert (values >= 0).all()
    ordered = forecast.select(quantiles).to_numpy()
    assert (np.diff(ordered, axis=1) >= -1e-9 * np.maximum(1.0, np.abs(ordered[:, 1:]))).all()
    if name in ("zeros", "constant"):
        level = PATHOLOGICAL[name][0]
        assert np.allclose(forecast["mean"].to_numpy(), level, atol=1e-6 * max(1.0, level))


# The peak is the process's own high-water mark (VmHWM), not getrusage's ru_maxrss: Linux
# carries the parent's high-water RSS over the fork and exec into the child's ru_maxrss, so
# inside the whole test suite (a pytest process of about 1.2 GB by then) it reported pytest's
# size, not the ingest's.
_MEASURE = """
import sys
from pathlib import Path
from workbench.ingest import ingest
from workbench.store import Workspace
workspace = Workspace(Path(sys.argv[1])).init()
ingest(workspace, "catalog", [Path(sys.argv[2])])
report = ingest(workspace, "jobs", [Path(sys.argv[3])])
rec = report.files[0].reconciliation
assert rec["balanced"], rec
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(rec["rows_read"], peak_kb)
"""


def _big_job_file(path: Path, megabytes: int) -> int:
    """Repeat the sample's records (with fresh job ids) until the file is ``megabytes``."""
    with gzip.open(SAMPLE_JOBS, "rt") as handle:
        header, *body = handle.read().splitlines()
    rows = 0
    with path.open("w") as out:
        out.write(header + "\n")
        copy = 0
        while out.tell() < megabytes * 1_000_000:
            chunk = "\n".join(f"c{copy}-{line}" for line in body) + "\n"
            out.write(chunk)
            rows += len(body)
            copy += 1
    return rows


@pytest.mark.slow
def test_a_big_job_file_streams_in_bounded_memory(tmp_path):
    megabytes = int(os.environ.get("WORKBENCH_STREAM_MB", "500"))
    big = tmp_path / "big-jobs.csv"
    rows = _big_job_file(big, megabytes)
    completed = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path / "ws"), str(SAMPLE_CATALOG), str(big)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1", "POLARS_MAX_THREADS": "2"},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    rows_read, peak_kb = map(int, completed.stdout.split())
    assert rows_read == rows
    size_mb = big.stat().st_size / 1e6
    peak_mb = peak_kb / 1000
    print(f"{size_mb:,.0f} MB, {rows:,} rows: peak RSS {peak_mb:,.0f} MB")
    # The text is streamed in blocks, and the compact jobs (52 bytes each) past a million go
    # to disk in sorted runs, split a window at a time: memory stays level however large
    # the file (500 MB, 4.0 M records, 523-606 MB; 5 GB, 40 M records, 621 MB; the README's
    # figures). Loading the text as a frame of strings would take several times its size.
    assert peak_mb < 1_000, (size_mb, rows, peak_mb)
