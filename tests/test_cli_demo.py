"""The demo's last step: after the forecast, a plan, reclaim and costs run for the app."""

from __future__ import annotations

import shutil

from tests.test_cli_reclaim import forecast_workspace  # noqa: F401  (module fixture)
from workbench import cli
from workbench.store import Workspace


def test_the_demo_commits_plan_reclaim_and_costs_runs(forecast_workspace, tmp_path, capsys):  # noqa: F811
    target = tmp_path / "ws"
    shutil.copytree(forecast_workspace.root, target)
    workspace = Workspace(target)
    cli._demo_plan_reclaim_costs(workspace)
    plan, reclaim, costs = (workspace.runs(kind)[-1] for kind in ("plan", "reclaim", "costs"))
    assert {"plan", "limits", "attached", "lifecycle"} <= set(plan.outputs())
    assert plan.manifest["config"]["forecast_run"] == workspace.runs("forecast")[-1].run_id
    assert reclaim.read("reclaim").height > 0
    assert costs.manifest["config"]["months"][0] < costs.manifest["config"]["months"][-1]
    out = capsys.readouterr().out
    assert f"Plan run {plan.run_id}" in out
    assert f"Reclaim run {reclaim.run_id}" in out
    assert "reconciled to the cent" in out
