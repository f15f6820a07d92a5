"""Compact jobs spilled to disk in sorted runs, split a window at a time (pipelines.job_store).

The spilled, windowed split must give what the whole file in memory gives: the same usage
(used, queued and peak chips per series and period), the same quarantine, the same counts.
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import pipelines.jobs as jobs_module
from pipelines.job_store import COMPACT_DTYPES, JobStore
from pipelines.jobs import ingest_job_records
from workbench.catalog import SkuCatalog, load_sku_catalog

ROOT = Path(__file__).resolve().parent.parent
HEADER = "job_id,submit_time,start_time,end_time,chips,accelerator,region,team,workload"
DAY_US = 86_400_000_000


@pytest.fixture(scope="module")
def catalog() -> SkuCatalog:
    return load_sku_catalog(ROOT / "data_samples" / "catalog" / "sku_catalog.toml")


def _jobs(submit: list[int], *, first_ordinal: int = 0) -> dict[str, np.ndarray]:
    n = len(submit)
    at = np.asarray(submit, dtype=np.int64)
    return {
        "ordinal": np.arange(first_ordinal, first_ordinal + n, dtype=np.int64),
        "series": np.zeros(n, dtype=np.int32),
        "submit": at,
        "start": at,
        "end": at + 3_600_000_000,
        "chips": np.ones(n),
        "hash": np.arange(n, dtype=np.uint64),
    }


def test_windows_hand_back_every_job_once_in_whole_periods_and_remove_the_runs(tmp_path):
    submit_days = [5, 0, 3, 3, 9, 1, 0, 7, 3, 2, 8, 6]
    with JobStore(DAY_US, spill_rows=4, directory=tmp_path) as store:
        for at in range(0, len(submit_days), 3):  # in pieces, as blocks come
            part = [d * DAY_US + 7 for d in submit_days[at : at + 3]]
            store.add(**_jobs(part, first_ordinal=at))
        assert store.spilled_runs == 2  # pieces of 3: a run once 4 or more wait (6, then 6)
        assert len(list(tmp_path.iterdir())) == 1
        windows = list(store.windows(window_rows=3))
    assert not list(tmp_path.iterdir()), "the runs' folder is removed at the end"
    ordinals = np.concatenate([w.jobs["ordinal"] for w in windows])
    assert sorted(ordinals.tolist()) == list(range(len(submit_days)))
    for before, after in itertools.pairwise(windows):
        assert before.end == after.begin
    assert windows[-1].end is None
    for window in windows:
        assert window.begin % DAY_US == 0
        assert (window.jobs["submit"] >= window.begin).all()
        if window.end is not None:
            assert (window.jobs["submit"] < window.end).all()
        # a window holds whole periods: three jobs of day 3 stay together
        days = window.jobs["submit"] // DAY_US
        assert not (3 in days and window.jobs["submit"].size < 3)
        assert {name: values.dtype for name, values in window.jobs.items()} == {
            name: np.dtype(dtype) for name, dtype in COMPACT_DTYPES.items()
        }


def test_a_small_store_is_one_window_and_never_touches_the_disk(tmp_path):
    with JobStore(DAY_US, directory=tmp_path) as store:
        store.add(**_jobs([DAY_US * 2 + 5, DAY_US]))
        (window,) = store.windows()
        assert store.spilled_runs == 0
    assert window.begin == DAY_US and window.end is None
    assert not list(tmp_path.iterdir())


def test_add_refuses_a_missing_column(tmp_path):
    with JobStore(DAY_US, directory=tmp_path) as store, pytest.raises(ValueError):
        store.add(**{k: v for k, v in _jobs([0]).items() if k != "hash"})


# -- the spilled split against the whole file in memory --------------------------------
_T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def _iso(seconds: int) -> str:
    return (
        pl.Series([(_T0 + seconds) * 1_000_000])
        .cast(pl.Datetime("us", "UTC"))
        .dt.strftime("%Y-%m-%dT%H:%M:%SZ")[0]
    )


job_rows = st.lists(
    st.tuples(
        st.integers(0, 6),  # job id: repeats make exact duplicates likely
        st.integers(0, 10 * 86_400),  # start, seconds into the year
        st.sampled_from([0, 600, 3_600, 30_000, 86_400, 4 * 86_400]),  # run: to days long
        st.sampled_from([0, 0, 900, 50_000, 2 * 86_400]),  # wait before the start
        st.sampled_from(["8", "1", "0.5", "-4", "eight"]),  # some rows are quarantined
        st.sampled_from(["h100", "NVIDIA L4"]),
        st.sampled_from(["vision", "maps"]),
    ),
    min_size=1,
    max_size=40,
)


def _line(row: tuple[int, int, int, int, str, str, str]) -> str:
    job, start, run, wait, chips, accelerator, team = row
    submit = start - wait
    fields = [f"j{job}", _iso(submit), _iso(start), _iso(start + run), chips]
    return ",".join([*fields, f'"{accelerator}"', "us-central1", team, "batch"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(job_rows, st.integers(1, 5), st.integers(1, 6), st.sampled_from(["day", "hour"]))
def test_spilled_windows_give_what_memory_gives(jobs, spill_rows, window_rows, grain):
    catalog = load_sku_catalog(ROOT / "data_samples" / "catalog" / "sku_catalog.toml")
    lines = [_line(r) for r in jobs]
    # exact repeats, some far from their first copy
    lines += lines[: len(lines) // 3]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "jobs.csv"
        path.write_text("\n".join([HEADER, *lines]) + "\n")
        whole = ingest_job_records(path, resolver=catalog, source="s", grain=grain)
        spill_dir = Path(scratch) / "spill"
        spill_dir.mkdir()
        # blocks of a few rows: many additions, so several runs on disk to merge
        small_blocks = functools.partial(jobs_module.RecordReader, block_bytes=400)
        with mock.patch.object(jobs_module, "RecordReader", small_blocks):
            spilled = ingest_job_records(
                path,
                resolver=catalog,
                source="s",
                grain=grain,
                spill_rows=spill_rows,
                spill_dir=spill_dir,
                window_rows=window_rows,
            )
        assert not list(spill_dir.iterdir())
    assert whole.spilled_runs == 0
    if whole.rows_loaded >= spill_rows:
        assert spilled.spilled_runs >= 1
    if whole.rows_loaded >= 4 * (spill_rows + 4):  # blocks hold at most 4 rows
        assert spilled.spilled_runs >= 2
    assert_frame_equal(spilled.usage_daily, whole.usage_daily, check_exact=False, rel_tol=1e-12)
    assert spilled.quarantine.equals(whole.quarantine)
    for count in ("rows_read", "rows_loaded", "rows_quarantined", "duplicates_dropped"):
        assert getattr(spilled, count) == getattr(whole, count), count
    assert spilled.chip_hours_in == pytest.approx(whole.chip_hours_in, rel=1e-12)
    assert spilled.balanced and whole.balanced


def test_a_job_running_across_many_windows_counts_in_each_period_once(tmp_path, catalog):
    # One four-day job and a one-hour job a day: windows of one day each must carry the long
    # job through, and its peak must stack with the short ones'.
    lines = [f"long,{_iso(0)},{_iso(0)},{_iso(4 * 86_400)},8,h100,us-central1,vision,batch"]
    for day in range(4):
        at = day * 86_400 + 3_600
        span = f"{_iso(at)},{_iso(at)},{_iso(at + 3_600)}"
        lines.append(f"s{day},{span},2,h100,us-central1,vision,batch")
    path = tmp_path / "jobs.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    result = ingest_job_records(
        path, resolver=catalog, source="s", spill_rows=1, spill_dir=tmp_path, window_rows=1
    )
    assert result.spilled_runs == 1  # one block, one run
    usage = result.usage_daily
    assert usage["chip_hours_used"].to_list() == [8 * 24 + 2] * 4
    assert usage["peak_chips"].to_list() == [10.0] * 4
    assert result.balanced


def test_a_failing_ingest_removes_its_spilled_runs(tmp_path, catalog):
    lines = [
        f"j{i},{_iso(i * 3_600)},{_iso(i * 3_600)},{_iso(i * 3_600 + 60)},1,h100,r,t,batch"
        for i in range(6)
    ]
    path = tmp_path / "jobs.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()

    def stop(rows: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_job_records(
            path, resolver=catalog, source="s", spill_rows=1, spill_dir=spill_dir, progress=stop
        )
    assert not list(spill_dir.iterdir())


def test_runs_left_by_a_killed_ingest_are_swept_by_the_next_one(tmp_path):
    # A process killed mid-ingest (SIGKILL) cannot remove its runs; the next store that
    # spills in the same folder removes those of dead processes, never a live one's.
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import numpy as np, os, signal, sys\n"
            "from pathlib import Path\n"
            "from pipelines.job_store import COMPACT_DTYPES, JobStore\n"
            "store = JobStore(86_400_000_000, spill_rows=1, directory=Path(sys.argv[1]))\n"
            "store.add(**{k: np.zeros(3, dtype=t) for k, t in COMPACT_DTYPES.items()})\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n",
            str(tmp_path),
        ],
        cwd=ROOT,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    (left,) = tmp_path.iterdir()
    assert left.name.startswith("workbench-jobs-")
    alive = tmp_path / f"workbench-jobs-{os.getppid()}-other"  # a live process's runs
    alive.mkdir()
    unrelated = tmp_path / "workbench-jobs-notes"
    unrelated.mkdir()
    with JobStore(DAY_US, spill_rows=1, directory=tmp_path) as store:
        store.add(**_jobs([0, DAY_US]))
        assert store.spilled_runs == 1
        assert not left.exists()
        assert alive.exists() and unrelated.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, unrelated.name])
