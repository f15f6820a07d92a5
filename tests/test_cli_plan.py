"""``workbench plan`` and ``workbench replay`` on the sample workspace."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLE
from workbench.cli import app
from workbench.cli_plan import parse_power
from workbench.errors import WorkbenchError
from workbench.store import Workspace

runner = CliRunner()


def test_plan_prints_a_readable_table_and_writes_a_plan_run(workspace_copy: Workspace) -> None:
    ws = str(workspace_copy.root)
    # The plan makes its own forecast with the fast models (seconds), then plans 8 quarters.
    result = runner.invoke(app, ["plan", "-w", ws, "--forecast-horizon", "182"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Procurement plan per pool and quarter" in out
    assert re.search(r"\$\d{1,3}(,\d{3})+\.\d\d", out)  # dollars with commas and cents
    assert re.search(r"\b\d{1,3}(,\d{3})+\b", out)  # chip counts with commas
    assert "Why:" in out and "lead time" in out
    assert "Attached resources" in out
    assert "Lifecycle" in out
    run = workspace_copy.runs("plan")[-1]
    assert {"plan", "limits", "attached", "lifecycle"} <= set(run.outputs())
    plan = run.read("plan")
    assert plan["quarter"].n_unique() == 8
    expected = {
        "demand_p50",
        "installed",
        "on_order",
        "buy_chips",
        "committed_chips",
        "burst_mean",
        "cost_cents",
        "utilization",
        "shortfall_probability",
        "binding",
        "rationale",
        "extrapolated",
    }
    assert expected <= set(plan.columns)
    assert plan.filter(pl.col("extrapolated")).height > 0  # a 182-day forecast covers 2-3
    assert (plan["buy_chips"] >= 0).all()
    assert run.manifest["config"]["forecast_run"] == workspace_copy.runs("forecast")[-1].run_id

    # A power budget of 1 MW in us-central1 binds, and the plan says by how much.
    limited = runner.invoke(app, ["plan", "-w", ws, "--power-mw", "us-central1=1"])
    assert limited.exit_code == 0, limited.output
    assert "binding: power us-central1" in limited.output
    limits = workspace_copy.runs("plan")[-1].read("limits")
    assert limits.filter(pl.col("binding"))["short_by"].max() > 0  # type: ignore[operator]
    assert workspace_copy.runs("plan")[-1].manifest["config"]["commitment_recourse"] is False

    # With recourse, later commitments wait for demand; the run says so.
    two_stage = runner.invoke(app, ["plan", "-w", ws, "--recourse"])
    assert two_stage.exit_code == 0, two_stage.output
    assert workspace_copy.runs("plan")[-1].manifest["config"]["commitment_recourse"] is True


def test_plan_without_a_forecast_is_one_readable_line(workspace_copy: Workspace) -> None:
    result = runner.invoke(app, ["plan", "-w", str(workspace_copy.root)])
    assert result.exit_code != 0
    assert isinstance(result.exception, WorkbenchError)
    assert "no forecast run" in str(result.exception)


def test_power_budgets_parse() -> None:
    assert parse_power("us-central1=40, us-east4=2.5") == {"us-central1": 40.0, "us-east4": 2.5}
    with pytest.raises(WorkbenchError, match="region=MW"):
        parse_power("us-central1:40")


def test_replay_of_two_quarters_writes_its_comparison(
    workspace_copy: Workspace, tmp_path: Path
) -> None:
    out = tmp_path / "replay.md"
    truth = SAMPLE / "truth" / "demand_daily.parquet"
    args = ["replay", "-w", str(workspace_copy.root), "--quarters", "2", "--out", str(out)]
    result = runner.invoke(app, [*args, "--truth", str(truth)])
    assert result.exit_code == 0, result.output
    assert "perfect" in result.output and "rule" in result.output
    assert "generator truth" in result.output
    table = out.read_text()
    assert table.startswith("| policy | cost |")
    assert table.count("\n") == 5  # header, rule and three policies
    assert "| perfect foresight |" in table
    run = workspace_copy.runs("replay")[-1]
    comparison = run.read("comparison")
    assert comparison["policy"].to_list() == ["plan", "perfect foresight", "rule"]
    assert (comparison["cost_cents"] > 0).all()
    assert (comparison["unmet_share"] < 0.2).all()
    assert run.manifest["config"]["reconcile"] == "mint_shrink"  # the forecast's default
    # Another reconciliation is asked for by name; a wrong name is one readable line.
    bottom_up = runner.invoke(app, [*args, "--reconcile", "bottom_up"])
    assert bottom_up.exit_code == 0, bottom_up.output
    assert workspace_copy.runs("replay")[-1].manifest["config"]["reconcile"] == "bottom_up"
    wrong = runner.invoke(app, [*args, "--reconcile", "mint"])
    assert wrong.exit_code != 0
    assert isinstance(wrong.exception, WorkbenchError)
    assert "unknown reconciliation 'mint'" in str(wrong.exception)
