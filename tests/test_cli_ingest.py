"""`workbench ingest` for every source kind, with its options, as a user runs it."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from workbench import cli
from workbench.store import Workspace

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data_samples"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(cli.console, "width", 220)


def run(*args: str) -> str:
    result = CliRunner().invoke(cli.app, list(args))
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_billing_and_metrics_ingest_reconcile_and_fill_tables(workspace_copy: Workspace):
    ws = str(workspace_copy.root)
    out = run("ingest", "billing", str(SAMPLE / "billing" / "focus_billing.csv"), "-w", ws)
    assert "effective cost usd:" in out and "yes" in out
    billing = workspace_copy.read_table("billing")
    assert billing.height == 1496
    assert billing["team"].null_count() == 0
    out = run(
        "ingest",
        "metrics",
        str(SAMPLE / "metrics" / "utilization.csv"),
        str(SAMPLE / "metrics" / "dcgm_gpu_util.json"),
        "-w",
        ws,
    )
    assert "chip hours busy:" in out
    utilization = workspace_copy.read_table("utilization_daily")
    assert set(utilization["metric"].unique()) >= {"DCGM_FI_DEV_GPU_UTIL"}
    # Every pool-day of the sample has job records, so metrics add no usage rows.
    assert (
        workspace_copy.read_table("usage_daily")
        .filter(pl.col("source").str.starts_with("metrics:"))
        .is_empty()
    )


def test_hour_grain_writes_usage_hourly_beside_usage_daily(workspace_copy: Workspace, tmp_path):
    jobs = tmp_path / "serving.csv"
    jobs.write_text(
        "job_id,submit_time,start_time,end_time,chips,accelerator,region,team,workload\n"
        "s1,2026-11-01T09:00:00Z,2026-11-01T09:30:00Z,2026-11-01T11:00:00Z,8,l4,us-central1,"
        "llm-serving,serving\n"
    )
    ws = str(workspace_copy.root)
    run("ingest", "jobs", str(jobs), "--grain", "hour", "-w", ws)
    hourly = workspace_copy.read_table("usage_hourly")
    assert hourly["chip_hours_used"].to_list() == [4.0, 8.0]
    assert hourly["chip_hours_queued"].to_list() == [4.0, 0.0]
    # The same file at the other grain is a different ingest, not "unchanged".
    out = run("ingest", "jobs", str(jobs), "-w", ws)
    assert "unchanged" not in out


def test_running_jobs_are_cut_at_the_export_time(workspace_copy: Workspace, tmp_path):
    jobs = tmp_path / "pods.jsonl"
    jobs.write_text(
        '{"metadata": {"namespace": "vision", "name": "p1", "uid": "u1", '
        '"creationTimestamp": "2026-11-01T10:00:00Z", "labels": {"workload": "research"}}, '
        '"spec": {"nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"}, '
        '"containers": [{"resources": {"requests": {"nvidia.com/gpu": "2"}}}]}, '
        '"status": {"startTime": "2026-11-01T10:00:00Z"}}\n'
    )
    ws = str(workspace_copy.root)
    # A preset plus the region on the command line...
    out = run(
        "ingest",
        "jobs",
        str(jobs),
        "--map",
        "k8s-pods",
        "--region",
        "us-central1",
        "--export-time",
        "2026-11-01T16:00:00Z",
        "-w",
        ws,
    )
    assert "yes" in out
    # ...or a site map that extends the preset: the same rows, replaced, not added.
    site_map = tmp_path / "our-cluster.toml"
    site_map.write_text('extends = "k8s-pods"\n\n[columns]\nregion = { value = "us-central1" }\n')
    out = run(
        "ingest",
        "jobs",
        str(jobs),
        "--map",
        str(site_map),
        "--export-time",
        "2026-11-01T16:00:00Z",
        "-w",
        ws,
    )
    assert "yes" in out
    usage = workspace_copy.read_table("usage_daily").filter(pl.col("team") == "vision")
    assert usage.filter(pl.col("date") == pl.date(2026, 11, 1))["chip_hours_used"].sum() == 12.0


def test_a_bad_export_time_is_a_readable_error(workspace_copy: Workspace):
    result = CliRunner().invoke(
        cli.app,
        [
            "ingest",
            "jobs",
            str(SAMPLE / "jobs" / "jobs.csv.gz"),
            "--export-time",
            "yesterday",
            "-w",
            str(workspace_copy.root),
        ],
    )
    assert result.exit_code != 0
    assert "--export-time" in str(result.exception)
