"""The ``workbench`` command line: help that reads well, one-line errors that name the file,
line and field (through the real entry point), and each command on a real workspace."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import typer
from typer.testing import CliRunner, Result

from workbench import cli
from workbench.store import Workspace

ROOT = Path(__file__).resolve().parent.parent
WORKBENCH = Path(sys.executable).parent / "workbench"
GOOD_JOB = (
    "{id},2026-01-01T01:00:00Z,2026-01-01T01:00:00Z,2026-01-01T05:00:00Z,8,"
    "{accelerator},us-central1,maps,batch"
)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Rich tables fit the terminal; make it wide so ids and paths are never cut."""
    monkeypatch.setattr(cli.console, "width", 200)


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(cli.app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def run_workbench(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``workbench`` entry point, as a user would."""
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_WORKSPACE"}
    return subprocess.run(
        [str(WORKBENCH), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a failed command, after checking it is just that."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def flat(text: str) -> str:
    return " ".join(text.split())


def command_paths() -> list[tuple[str, ...]]:
    """Every command and group of the CLI, as argument paths."""
    found: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        found.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(cli.app), ())
    return found


def click_command(path: tuple[str, ...]) -> Any:
    command: Any = typer.main.get_command(cli.app)
    for name in path:
        command = command.commands[name]
    return command


# -- help -------------------------------------------------------------------------------------


def test_top_level_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    assert "Usage: workbench" in result.output
    for name in ("init", "ingest", "sample-fleet", "runs", "quarantine", "sql"):
        assert re.search(rf"│ {re.escape(name)}\s", result.output), name


@pytest.mark.parametrize("path", command_paths()[1:], ids=" ".join)
def test_every_command_help_reads_well(path):
    command = click_command(path)
    result = invoke(*path, "--help")
    assert result.exit_code == 0
    assert f"Usage: workbench {' '.join(path)}" in result.output
    summary = (command.help or "").strip().split("\n\n")[0]
    assert summary, f"'{' '.join(path)}' has no description"
    assert flat(summary) in flat(result.output)
    for parameter in command.params:
        assert getattr(parameter, "help", None), f"'{parameter.name}' of {path} has no help"


# -- errors through the real entry point ---------------------------------------------------------


def test_a_bad_path_is_a_one_line_error_naming_the_file(tmp_path):
    missing = tmp_path / "exports" / "jobs.csv"
    line = one_line_error(
        run_workbench("ingest", "jobs", str(missing), "--workspace", str(tmp_path / "ws"))
    )
    assert str(missing) in line
    assert "file not found" in line


def test_a_csv_without_a_required_column_names_file_line_and_field(catalog_workspace, write_file):
    path = write_file(
        "jobs.csv",
        ["j1,2026-01-01T00:00:00Z"],
        header="job_id,submit_time,start_time,end_time,chips,accelerator,region",
    )
    line = one_line_error(
        run_workbench("ingest", "jobs", str(path), "--workspace", str(catalog_workspace.root))
    )
    assert f"{path}, line 1, field 'team'" in line
    assert "missing required column" in line


@pytest.mark.parametrize(
    ("args", "mentions"), [(("init", "--bogus"), "--bogus"), (("runs", "show"), "run_id")]
)
def test_a_usage_error_is_a_short_message_not_an_internal_error(tmp_path, args, mentions):
    result = run_workbench(*args, "--workspace", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr
    assert mentions in result.stderr.lower()


def test_a_command_on_a_folder_that_is_not_a_workspace_says_how_to_make_one(tmp_path):
    line = one_line_error(run_workbench("runs", "list", "--workspace", str(tmp_path / "none")))
    assert str(tmp_path / "none") in line
    assert "workbench init" in line


def test_bad_sql_is_a_one_line_error(catalog_workspace):
    result = run_workbench("sql", "selec 1", "--workspace", str(catalog_workspace.root))
    line = one_line_error(result)
    assert "SQL failed" in line
    assert "field 'query'" in line


def test_strict_ingest_fails_naming_the_row_and_writes_nothing(catalog_workspace, write_jobs):
    path = write_jobs(
        [
            GOOD_JOB.format(id="a", accelerator="l4"),
            GOOD_JOB.format(id="b", accelerator="AMD MI300X"),
        ]
    )
    runs = len(catalog_workspace.runs())
    line = one_line_error(
        run_workbench(
            "ingest", "jobs", str(path), "--strict", "--workspace", str(catalog_workspace.root)
        )
    )
    assert f"{path}, line 3, field 'accelerator'" in line
    assert "nothing was written" in line
    assert len(catalog_workspace.runs()) == runs
    assert not catalog_workspace.has_table("usage_daily")


# -- commands --------------------------------------------------------------------------------------


def test_init_creates_a_workspace_and_is_safe_to_repeat(tmp_path):
    target = tmp_path / "ws"
    for _ in range(2):
        result = invoke("init", "--workspace", str(target))
        assert result.exit_code == 0
        assert str(target) in result.output
    assert Workspace(target).exists()


def test_ingest_reports_reconciliation_and_unknown_accelerators_with_file_line_field(
    catalog_workspace, write_jobs
):
    path = write_jobs(
        [
            GOOD_JOB.format(id="a", accelerator="NVIDIA L4"),
            GOOD_JOB.format(id="b", accelerator="AMD MI300X"),
            GOOD_JOB.format(id="c", accelerator="l4-24gb"),
        ]
    )
    result = invoke("ingest", "jobs", str(path), "--workspace", str(catalog_workspace.root))
    assert result.exit_code == 0, result.output
    assert f"{path.resolve()}, line 3, field 'accelerator': unknown accelerator 'AMD MI300X'" in (
        result.output
    )
    assert "Reconciliation" in result.output
    assert re.search(r"jobs\.csv\s*│\s*3\s*│\s*2\s*│\s*1\s*│\s*0\s*│", result.output), result.output
    (run,) = catalog_workspace.runs("ingest")[-1:]
    assert f"Run {run.run_id} committed." in result.output
    again = invoke("ingest", "jobs", str(path), "--workspace", str(catalog_workspace.root))
    assert "Nothing changed" in again.output


def test_runs_list_and_show_by_prefix(sample_workspace):
    root = str(sample_workspace.workspace.root)
    runs = sample_workspace.workspace.runs()
    listing = invoke("runs", "list", "--workspace", root)
    assert listing.exit_code == 0
    for run in runs:
        assert run.run_id in listing.output
    assert "jobs.csv.gz" in listing.output
    jobs_run = sample_workspace.workspace.run(sample_workspace.reports["jobs"].run_id)
    others = [r.run_id for r in runs if r.run_id != jobs_run.run_id]
    prefix = next(
        jobs_run.run_id[:n]
        for n in range(1, len(jobs_run.run_id) + 1)
        if not any(o.startswith(jobs_run.run_id[:n]) for o in others)
    )
    shown = invoke("runs", "show", prefix, "--workspace", root)
    assert shown.exit_code == 0
    manifest = json.loads(shown.output[: shown.output.rindex("}") + 1])
    assert manifest["run_id"] == jobs_run.run_id
    assert manifest["inputs"][0]["sha256"] == jobs_run.manifest["inputs"][0]["sha256"]
    assert "quarantine" in shown.output.splitlines()[-1]


def test_runs_list_on_an_empty_workspace_says_so(empty_workspace):
    result = invoke("runs", "list", "--workspace", str(empty_workspace.root))
    assert result.exit_code == 0
    assert "No runs yet" in result.output


def test_quarantine_show_lists_file_line_field_and_reason(sample_workspace):
    result = invoke(
        "quarantine", "show", "--workspace", str(sample_workspace.workspace.root), "--limit", "500"
    )
    assert result.exit_code == 0
    quarantine = sample_workspace.workspace.read_table("quarantine")
    assert f"{quarantine.height:,} quarantined row(s)" in result.output
    first = quarantine.row(0, named=True)
    row_pattern = rf"jobs\.csv\.gz\s*│\s*{first['line']:,}\s*│\s*{first['field']}\s"
    assert re.search(row_pattern, result.output)
    for reason in ("team is missing", "unknown accelerator 'AMD MI300X'", "is not a timestamp"):
        assert reason in result.output


def test_quarantine_show_on_a_clean_workspace_says_so(catalog_workspace):
    result = invoke("quarantine", "show", "--workspace", str(catalog_workspace.root))
    assert "No quarantined rows" in result.output


def test_sql_prints_the_query_result(sample_workspace):
    workspace = sample_workspace.workspace
    expected = workspace.read_table("usage_daily").height
    result = invoke(
        "sql", "select count(*) as usage_rows from usage_daily", "--workspace", str(workspace.root)
    )
    assert result.exit_code == 0
    assert "usage_rows" in result.output
    assert f"{expected:,}" in result.output


def test_sample_fleet_writes_the_committed_files(tmp_path, sample_dir):
    out = tmp_path / "fleet"
    result = invoke("sample-fleet", "--out", str(out), "--scale", "small", "--seed", "7")
    assert result.exit_code == 0, result.output
    summary = json.loads((sample_dir / "truth" / "summary.json").read_text())
    assert f"{summary['jobs']:,} jobs" in flat(result.output)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    committed = sorted(str(p.relative_to(sample_dir)) for p in sample_dir.rglob("*") if p.is_file())
    assert written == committed
    for name in ("README.md", "truth/summary.json", "truth/defects.csv", "orders/orders.csv"):
        assert (out / name).read_bytes() == (sample_dir / name).read_bytes(), name
    orders = pl.read_csv(out / "orders" / "orders.csv")
    assert orders.height == summary["orders"]


def test_sample_fleet_refuses_an_unknown_scale(tmp_path):
    line = one_line_error(
        run_workbench("sample-fleet", "--scale", "huge", "--out", str(tmp_path / "fleet"))
    )
    assert "unknown scale 'huge'" in line
    assert not (tmp_path / "fleet").exists()
