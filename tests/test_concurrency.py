"""Concurrency: writers serialize, readers never see half a run, app sessions stay apart.

* Two ``workbench ingest`` processes over overlapping files at once: they serialize on the
  writer lock; the tables equal a one-at-a-time ingest, and no file is counted twice.
* The app reading (AppTest, the data page that lists runs and tables) while the CLI commits
  a new run: every rerun succeeds.
* Several app sessions at once (AppTest in threads), each with its own team slice: no
  errors, and each shows only its own slice.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from tests.app_money import open_page
from tests.conftest import SAMPLE_CATALOG, SAMPLE_JOBS
from tests.test_cli_costs import billed_workspace  # noqa: F401  (module fixture)
from workbench.ingest import ingest
from workbench.store import Workspace

WORKBENCH = [sys.executable, "-m", "workbench.cli"]


def _job_slices(folder: Path, rows: int) -> tuple[Path, Path]:
    """Two job files sharing ``rows // 2`` records: A = lines 1..rows, B = rows/2..rows*1.5."""
    with gzip.open(SAMPLE_JOBS, "rt") as handle:
        lines = handle.read().splitlines()
    header, body = lines[0], lines[1:]
    first = folder / "jobs-a.csv"
    second = folder / "jobs-b.csv"
    first.write_text("\n".join([header, *body[:rows]]) + "\n")
    second.write_text("\n".join([header, *body[rows // 2 : rows + rows // 2]]) + "\n")
    return first, second


def _catalog_workspace(root: Path) -> Workspace:
    workspace = Workspace(root).init()
    ingest(workspace, "catalog", [SAMPLE_CATALOG])
    return workspace


def test_two_ingests_of_overlapping_files_at_once_serialize(tmp_path):
    first, second = _job_slices(tmp_path, 20_000)
    workspace = _catalog_workspace(tmp_path / "ws")
    processes = [
        subprocess.Popen(
            [*WORKBENCH, "ingest", "jobs", *map(str, files), "-w", str(workspace.root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for files in ([first], [first, second])
    ]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs

    reference = _catalog_workspace(tmp_path / "reference")
    ingest(reference, "jobs", [first, second])
    key = ["date", "accelerator", "region", "team", "workload"]
    got = workspace.read_table("usage_daily").sort(key)
    want = reference.read_table("usage_daily").sort(key)
    assert got.drop("source").equals(want.drop("source"))
    # Each file was ingested exactly once, whichever process got the lock first.
    sources = [
        item["source"]
        for run in workspace.runs("ingest")
        for item in run.manifest.get("files", [])
        if item["source"].startswith("jobs:")
    ]
    assert sorted(sources) == sorted(f"jobs:{p.resolve()}" for p in (first, second))


def test_the_app_reads_while_the_cli_commits_a_run(sample_workspace, tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "ws"
    shutil.copytree(sample_workspace.workspace.root, root)
    first, second = _job_slices(tmp_path, 30_000)
    writer = subprocess.Popen(
        [*WORKBENCH, "ingest", "jobs", str(first), str(second), "-w", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    reruns = during_write = 0
    try:
        app = open_page(root, monkeypatch, "data_page")
        while writer.poll() is None or reruns < 2:
            during_write += writer.poll() is None
            app.run()
            assert not app.exception, app.exception
            reruns += 1
    finally:
        writer.wait(timeout=300)
    assert writer.returncode == 0
    assert during_write >= 1
    assert len(Workspace(root).runs("ingest")) == len(sample_workspace.workspace.runs("ingest")) + 1


@pytest.mark.parametrize("sessions", [4])
def test_several_app_sessions_at_once_keep_their_own_slice(billed_workspace, monkeypatch, sessions):  # noqa: F811
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(billed_workspace.root))
    teams = billed_workspace.read_table("usage_daily")["team"].drop_nulls().unique().sort()
    chosen = teams.to_list()[:sessions]
    assert len(chosen) == sessions
    shown: dict[str, set[str]] = {}
    errors: list[BaseException] = []
    # The sessions are open at once, in their own threads, sharing the process's caches;
    # their runs take turns: AppTest installs one process-wide mock runtime per run and
    # removes it when the run ends, so two runs at the same instant break each other
    # ("Runtime hasn't been created!"). Concurrent runs on one server: the browser tests.
    turn = threading.Lock()

    def session(team: str) -> None:
        try:
            app = AppTest.from_string(
                "from workbench.ui import costs_page\ncosts_page.render()\n", default_timeout=120
            )
            app.session_state["shell_team"] = team
            for _ in range(2):
                with turn:
                    app.run()
                assert not app.exception, app.exception
                table = app.dataframe[1].value
                frame = table if isinstance(table, pl.DataFrame) else pl.from_pandas(table)
                shown[team] = set(frame["team"])
        except BaseException as error:  # reported below, with the team
            errors.append(error)

    threads = [threading.Thread(target=session, args=(team,)) for team in chosen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    assert shown == {team: {team} for team in chosen}
