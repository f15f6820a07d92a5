"""Crash safety: ``workbench`` commands killed with SIGKILL mid-way leave a consistent workspace.

Each test starts a real CLI process on a private copy of the sample workspace, waits for a
crash point (a staging folder appearing, i.e. the run is being written; or a moment during
the reading), kills the process with SIGKILL (no cleanup code runs), and then shows:

* no partial run is visible: ``Workspace.runs()`` lists exactly the runs from before;
* every table and every committed run output is readable Parquet;
* rerunning the command completes, and its result equals an uninterrupted run's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from workbench.ingest import ingest
from workbench.store import Workspace

from .conftest import SAMPLE_JOBS

WORKBENCH = [sys.executable, "-m", "workbench.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [*WORKBENCH, *args], env=ENV, capture_output=True, text=True, check=False, timeout=600
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    return completed


CrashPoint = Callable[[int], bool]


def kill_at(args: list[str], crash_point: CrashPoint, *, timeout: float = 300) -> None:
    """Start ``workbench *args`` and SIGKILL it as soon as ``crash_point(pid)`` holds."""
    process = subprocess.Popen(
        [*WORKBENCH, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    began = time.monotonic()
    try:
        while True:
            elapsed = time.monotonic() - began
            if crash_point(process.pid):
                process.send_signal(signal.SIGKILL)
                break
            if process.poll() is not None:
                error = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"{args[0]} finished before the crash point: {error[-500:]}")
            if elapsed > timeout:
                pytest.fail(f"{args[0]} never reached the crash point")
            time.sleep(0.002)
    finally:
        process.wait()
        if process.stderr:
            process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def staging_in(folder: Path) -> CrashPoint:
    """The crash point "a writer has started staging something in ``folder``"."""
    return lambda _pid: any(folder.glob(".staging-*"))


def reading(path: Path, *, for_seconds: float = 0.05) -> CrashPoint:
    """The crash point "the process has had ``path`` open for a while" (Linux: its /proc
    fd links): into reading its records (a new file is hashed beside its reading, so the
    whole read is short: 0.3 s was sometimes past the end of it)."""
    target = str(path.resolve())
    first_seen: list[float] = []

    def is_reading(pid: int) -> bool:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:  # a descriptor closed while listing; ask again
            return False
        if target not in links:
            return False
        first_seen.append(time.monotonic())
        return first_seen[-1] - first_seen[0] >= for_seconds

    return is_reading


def assert_consistent(workspace: Workspace, runs_before: list[str]) -> None:
    """No partial run listed; every table and run output reads."""
    assert [r.run_id for r in workspace.runs()] == runs_before
    for name in workspace.table_names():
        workspace.read_table(name)
    for run in workspace.runs():
        for output in run.outputs():
            run.read(output)


def copy_workspace(source: Workspace, target: Path) -> Workspace:
    shutil.copytree(source.root, target)
    return Workspace(target)


@pytest.fixture
def jobs_file(tmp_path: Path) -> Path:
    """The sample job records under a new name: new to the workspace, so really ingested."""
    path = tmp_path / "inputs" / "more-jobs.csv.gz"
    path.parent.mkdir()
    shutil.copyfile(SAMPLE_JOBS, path)
    return path


@pytest.mark.parametrize(
    "crash_point",
    ["reading", "run staging", "table writes"],
)
def test_ingest_killed_mid_way(sample_workspace, tmp_path, jobs_file, crash_point):
    workspace = copy_workspace(sample_workspace.workspace, tmp_path / "ws")
    reference = copy_workspace(sample_workspace.workspace, tmp_path / "reference")
    before = [r.run_id for r in workspace.runs()]
    point = {
        "reading": reading(jobs_file),
        "run staging": staging_in(workspace.runs_dir),
        "table writes": staging_in(workspace.tables_dir),
    }[crash_point]
    kill_at(["ingest", "jobs", str(jobs_file), "-w", str(workspace.root)], point)

    assert_consistent(workspace, before)
    run_cli("ingest", "jobs", str(jobs_file), "-w", str(workspace.root))
    ingest(reference, "jobs", [jobs_file])
    for table in ("usage_daily", "quarantine"):
        assert workspace.read_table(table).equals(reference.read_table(table)), table
    # The rerun swept what the killed writer left behind.
    assert not list(workspace.runs_dir.glob(".staging-*"))
    assert not list(workspace.tables_dir.glob(".staging-*"))


FORECAST_ARGS = ["--models", "seasonal_naive,theta", "--horizon", "14", "--windows", "1"]


def test_forecast_killed_while_writing_its_run(sample_workspace, tmp_path):
    workspace = copy_workspace(sample_workspace.workspace, tmp_path / "ws")
    before = [r.run_id for r in workspace.runs()]
    kill_at(["forecast", *FORECAST_ARGS, "-w", str(workspace.root)], staging_in(workspace.runs_dir))
    assert_consistent(workspace, before)
    assert workspace.runs("forecast") == []

    run_cli("forecast", *FORECAST_ARGS, "-w", str(workspace.root))
    run_cli("forecast", *FORECAST_ARGS, "-w", str(workspace.root))
    first, second = workspace.runs("forecast")
    assert first.read("forecast").equals(second.read("forecast"))


def test_finance_report_killed_while_writing_its_run(sample_workspace, tmp_path):
    workspace = copy_workspace(sample_workspace.workspace, tmp_path / "ws")
    before = [r.run_id for r in workspace.runs()]
    args = ["report", "finance", "--month", "2026-10", "-w", str(workspace.root)]
    kill_at(args, staging_in(workspace.runs_dir))
    assert_consistent(workspace, before)

    run_cli(*args)
    run_cli(*args)
    first, second = workspace.runs("report")
    assert first.outputs() == second.outputs()
    for output in first.outputs():
        left, right = first.read(output), second.read(output)
        assert left.equals(right), output
    assert not list(workspace.runs_dir.glob(".staging-*"))


def test_staging_leftovers_are_never_listed(empty_workspace):
    """What a crash leaves (a staging run with a manifest) is invisible to readers."""
    leftover = empty_workspace.runs_dir / ".staging-20260101T000000-ingest-abcdef"
    leftover.mkdir()
    (leftover / "manifest.json").write_text('{"kind": "ingest"}')
    pl.DataFrame({"x": [1]}).write_parquet(empty_workspace.tables_dir / ".staging-x-1.parquet")
    assert empty_workspace.runs() == []
    assert empty_workspace.table_names() == []
    with empty_workspace.writer_lock():
        pass
    assert not leftover.exists()
