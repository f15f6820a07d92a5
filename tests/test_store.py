"""The workspace store: atomic tables, runs that appear only whole (even when the writer is
killed), manifests that make a run reproducible, run lookup and SQL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from workbench.errors import WorkbenchError
from workbench.ingest import ingest
from workbench.schema import QUARANTINE_SCHEMA, TABLES
from workbench.store import Workspace, file_sha256

ROOT = Path(__file__).resolve().parent.parent

# A writer that holds the lock, builds a run, and is stopped (by the test's SIGKILL) in the
# middle of replacing a table: after the new table was written aside, before the rename.
KILLED_WRITER = """
import os, sys, time
from pathlib import Path
import polars as pl
from workbench.store import Workspace

workspace = Workspace(sys.argv[1])
ready = Path(sys.argv[2])

def stalled_replace(source, target):
    ready.write_text(str(source))
    time.sleep(600)

with workspace.writer_lock():
    with workspace.new_run("forecast", config={"horizon": 90}, seed=1) as run:
        run.write("forecast", pl.DataFrame({"ds": [1, 2, 3], "mean": [1.0, 2.0, 3.0]}))
        os.replace = stalled_replace
        workspace.write_table("usage_daily", pl.DataFrame({"killed": [True]}))
"""


def staging_leftovers(workspace: Workspace) -> list[Path]:
    return [*workspace.runs_dir.glob(".staging-*"), *workspace.tables_dir.glob(".staging-*")]


def wait_for_file(process: subprocess.Popen, path: Path, limit_seconds: float = 120) -> None:
    """Poll until the child writes ``path``; fail with its stderr if it exits first."""
    deadline = time.monotonic() + limit_seconds
    while not path.exists():
        try:
            process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the writer never reached the table rename: {path}")
            continue
        _, stderr = process.communicate()
        pytest.fail(f"the writer exited early ({process.returncode}): {stderr}")


def test_a_writer_killed_mid_run_leaves_no_run_and_the_tables_unchanged(catalog_workspace):
    workspace = catalog_workspace
    workspace.write_table("usage_daily", TABLES["usage_daily"].empty())
    tables_before = {
        name: hashlib.sha256(workspace.table_path(name).read_bytes()).hexdigest()
        for name in workspace.table_names()
    }
    runs_before = [r.run_id for r in workspace.runs()]
    ready = workspace.root.parent / "writer-ready"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(workspace.root), str(ready)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_file(process, ready)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert process.returncode == -signal.SIGKILL

    # The crash left its half-built run and its half-replaced table aside ...
    assert any(p.parent == workspace.runs_dir for p in staging_leftovers(workspace))
    assert Path(ready.read_text()).exists()
    # ... where readers never see them.
    assert [r.run_id for r in workspace.runs()] == runs_before
    assert workspace.runs("forecast") == []
    assert {
        name: hashlib.sha256(workspace.table_path(name).read_bytes()).hexdigest()
        for name in workspace.table_names()
    } == tables_before
    assert workspace.read_table("usage_daily").schema == TABLES["usage_daily"].schema

    # The next writer sweeps the leftovers.
    ingest(workspace, "catalog", [ROOT / "data_samples" / "catalog" / "sku_catalog.toml"])
    assert staging_leftovers(workspace) == []
    assert [r.kind for r in workspace.runs()] == ["ingest"] * len(runs_before)


def test_an_exception_inside_a_run_leaves_nothing(empty_workspace):
    with (
        pytest.raises(RuntimeError, match="model diverged"),
        empty_workspace.new_run("forecast", config={"model": "ets"}) as run,
    ):
        run.write("forecast", pl.DataFrame({"y": [1.0]}))
        raise RuntimeError("model diverged")
    assert list(empty_workspace.runs_dir.iterdir()) == []
    assert empty_workspace.runs() == []


def test_an_interrupt_inside_a_run_leaves_nothing(empty_workspace):
    with pytest.raises(KeyboardInterrupt), empty_workspace.new_run("plan") as run:
        run.write_json("notes", {"step": 1})
        raise KeyboardInterrupt
    assert list(empty_workspace.runs_dir.iterdir()) == []


def test_a_run_manifest_holds_config_inputs_versions_seed_timings_and_row_counts(
    empty_workspace, tmp_path
):
    source = tmp_path / "input.csv"
    source.write_bytes(b"a,b\n1,2\n")
    with empty_workspace.new_run("forecast", config={"horizon": 90}, seed=42) as run:
        digest = run.add_input(source)
        with run.timed("fit"):
            run.write("forecast", pl.DataFrame({"y": [1.0, 2.0, 3.0]}))
    (info,) = empty_workspace.runs()
    manifest = info.manifest
    assert manifest == json.loads((info.path / "manifest.json").read_text())
    assert manifest["run_id"] == info.run_id == run.run_id
    assert manifest["kind"] == info.kind == "forecast"
    assert manifest["config"] == {"horizon": 90}
    assert manifest["seed"] == 42
    expected_digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert digest == expected_digest == file_sha256(source)
    assert manifest["inputs"] == [{"path": str(source), "sha256": expected_digest, "bytes": 8}]
    assert manifest["versions"]["polars"] == pl.__version__
    assert manifest["versions"]["python"].count(".") == 2
    assert "fleet-workbench" in manifest["versions"]
    assert set(manifest["timings"]) >= {"fit", "total"}
    assert all(seconds >= 0 for seconds in manifest["timings"].values())
    assert manifest["row_counts"] == {"forecast": 3}
    assert manifest["started_at"] <= manifest["finished_at"]
    assert info.outputs() == ["forecast"]
    assert info.read("forecast")["y"].to_list() == [1.0, 2.0, 3.0]


def test_reading_a_missing_run_output_names_the_outputs(empty_workspace):
    with empty_workspace.new_run("forecast") as run:
        run.write("forecast", pl.DataFrame({"y": [1.0]}))
    (info,) = empty_workspace.runs()
    with pytest.raises(WorkbenchError) as caught:
        info.read("plan")
    assert "forecast" in (caught.value.fix or "")


def test_an_ingest_manifest_records_the_input_hash(catalog_workspace):
    (run,) = catalog_workspace.runs("ingest")
    path = ROOT / "data_samples" / "catalog" / "sku_catalog.toml"
    (entry,) = run.manifest["inputs"]
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert run.manifest["config"]["kind"] == "catalog"
    assert run.manifest["row_counts"]["table:sku_catalog"] == 8


def test_a_table_write_replaces_the_table_atomically(empty_workspace, monkeypatch):
    old = pl.DataFrame({"chips": [1, 2, 3]})
    empty_workspace.write_table("inventory", old)

    def crash_midway(frame, target, *args, **kwargs):
        Path(target).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        empty_workspace.write_table("inventory", pl.DataFrame({"chips": [9]}))
    monkeypatch.undo()
    assert empty_workspace.read_table("inventory").equals(old)
    assert staging_leftovers(empty_workspace), "the half-written file was aside"
    with empty_workspace.writer_lock():
        assert staging_leftovers(empty_workspace) == []
    new = pl.DataFrame({"chips": [4]})
    empty_workspace.write_table("inventory", new)
    assert empty_workspace.read_table("inventory").equals(new)
    assert staging_leftovers(empty_workspace) == []


@pytest.mark.parametrize("name", sorted(TABLES))
def test_a_never_written_table_reads_empty_with_its_schema(empty_workspace, name):
    frame = empty_workspace.read_table(name)
    assert frame.height == 0
    assert frame.schema == TABLES[name].schema
    assert empty_workspace.scan_table(name).collect_schema() == TABLES[name].schema
    assert not empty_workspace.has_table(name)


def test_a_never_written_quarantine_reads_empty_with_its_schema(empty_workspace):
    assert empty_workspace.read_table("quarantine").schema == QUARANTINE_SCHEMA


def test_an_unknown_table_is_a_readable_error(empty_workspace):
    with pytest.raises(WorkbenchError) as caught:
        empty_workspace.read_table("usage_weekly")
    assert caught.value.field == "table"


def test_runs_are_listed_oldest_first_and_found_by_a_unique_prefix(empty_workspace):
    for kind in ("ingest", "forecast", "ingest"):
        with empty_workspace.new_run(kind):
            pass
    runs = empty_workspace.runs()
    assert [r.kind for r in runs] == ["ingest", "forecast", "ingest"]
    assert [r.started_at for r in runs] == sorted(r.started_at for r in runs)
    assert [r.run_id for r in empty_workspace.runs("ingest")] == [runs[0].run_id, runs[2].run_id]
    for run in runs:
        others = [r.run_id for r in runs if r is not run]
        length = next(
            n
            for n in range(1, len(run.run_id) + 1)
            if not any(o.startswith(run.run_id[:n]) for o in others)
        )
        assert empty_workspace.run(run.run_id[:length]).run_id == run.run_id
        assert empty_workspace.run(run.run_id).run_id == run.run_id


def test_an_ambiguous_or_unknown_run_prefix_is_a_readable_error(empty_workspace):
    for _ in range(2):
        with empty_workspace.new_run("forecast"):
            pass
    with pytest.raises(WorkbenchError, match="2 runs matching") as caught:
        empty_workspace.run("")
    assert caught.value.field == "run_id"
    with pytest.raises(WorkbenchError, match="no run matching 'nope'"):
        empty_workspace.run("nope")


def test_staging_folders_and_folders_without_a_manifest_are_not_runs(empty_workspace):
    staged = empty_workspace.runs_dir / ".staging-20260101T000000-forecast-abcdef"
    staged.mkdir()
    (staged / "manifest.json").write_text('{"kind": "forecast"}')
    (empty_workspace.runs_dir / "20260101T000000-forecast-123456").mkdir()
    assert empty_workspace.runs() == []


def test_sql_runs_over_tables_and_the_latest_run_outputs(empty_workspace):
    empty_workspace.write_table(
        "inventory", pl.DataFrame({"accelerator": ["a", "b", "a"], "installed_chips": [1, 2, 3]})
    )
    for value in (1.0, 2.0):
        with empty_workspace.new_run("forecast") as run:
            run.write("forecast", pl.DataFrame({"mean": [value]}))
    totals = empty_workspace.sql(
        "select accelerator, sum(installed_chips) as chips from inventory "
        "group by accelerator order by accelerator"
    )
    assert totals.rows() == [("a", 4), ("b", 2)]
    assert empty_workspace.sql("select mean from run_forecast").rows() == [(2.0,)]


@pytest.mark.parametrize(
    ("query", "problem"),
    [("selec * from inventory", "syntax error"), ("select * from usage_weekly", "usage_weekly")],
)
def test_bad_sql_is_a_readable_one_line_error(empty_workspace, query, problem):
    empty_workspace.write_table("inventory", pl.DataFrame({"installed_chips": [1]}))
    with pytest.raises(WorkbenchError) as caught:
        empty_workspace.sql(query)
    assert caught.value.field == "query"
    assert caught.value.message.startswith("SQL failed")
    assert problem in caught.value.message
    assert "inventory" in (caught.value.fix or "")
    assert "\n" not in caught.value.one_line()


def test_an_uninitialized_folder_is_not_a_workspace(tmp_path):
    workspace = Workspace(tmp_path / "nothing-here")
    assert not workspace.exists()
    with pytest.raises(WorkbenchError) as caught:
        workspace.require()
    assert caught.value.file == str(tmp_path / "nothing-here")
    assert "workbench init" in (caught.value.fix or "")
    with pytest.raises(WorkbenchError), workspace.new_run("forecast"):
        pass
    assert not workspace.root.exists()


def test_init_is_idempotent_and_refuses_a_file(tmp_path):
    workspace = Workspace(tmp_path / "ws").init()
    marker = (workspace.root / "workspace.json").read_bytes()
    workspace.init()
    assert (workspace.root / "workspace.json").read_bytes() == marker
    assert json.loads(marker)["layout_version"] == 1
    assert staging_leftovers(workspace) == []
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(WorkbenchError, match="is a file"):
        Workspace(a_file).init()


def test_the_workspace_layout_is_tables_and_runs(catalog_workspace):
    root = catalog_workspace.root
    assert sorted(p.name for p in root.iterdir()) == [".lock", "runs", "tables", "workspace.json"]
    assert sorted(os.listdir(root / "tables")) == ["quarantine.parquet", "sku_catalog.parquet"]
