"""Helpers for the app's money and data pages' tests: one page at a time, and a workspace
with every run those pages read.

Pages are driven through ``AppTest`` with a two-line script that calls the page's
``render()``, so a test sees exactly one page; the sidebar's fleet filter is set through
its session-state keys (``shell_accelerator``, ``shell_region``, ``shell_team``), which is
all :func:`workbench.ui.shell.current_filter` reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_cli_reclaim import FAST
from workbench.cli_forecast import run_fleet_forecast
from workbench.cli_plan import run_plan
from workbench.cli_reclaim import run_reclaim
from workbench.planning_inputs import InputSettings
from workbench.procurement import PlanLimits
from workbench.reclaim import ReclaimSettings
from workbench.store import Workspace

__all__ = ["PLAN_LIMITS", "PLAN_SETTINGS", "build_money_workspace", "open_page"]

PLAN_SETTINGS = InputSettings(horizon_quarters=4)
PLAN_LIMITS = PlanLimits(time_limit_s=10.0)


def build_money_workspace(billed: Workspace, target: Path) -> Workspace:
    """Copy ``billed`` (the sample fleet and its bill) to ``target``; forecast (fast
    models), plan four quarters and make reclaim recommendations, as the demo does."""
    shutil.copytree(billed.root, target)
    workspace = Workspace(target)
    run_fleet_forecast(workspace, FAST, quiet=True)
    run_plan(workspace, PLAN_LIMITS, PLAN_SETTINGS)
    run_reclaim(workspace, ReclaimSettings())
    return workspace


def open_page(
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    page: str,
    state: dict[str, object] | None = None,
) -> AppTest:
    """Run ``workbench.ui.<page>.render()`` on ``workspace`` and check it raised nothing."""
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(workspace))
    app = AppTest.from_string(
        f"from workbench.ui import {page}\n{page}.render()\n", default_timeout=60
    )
    for key, value in (state or {}).items():
        app.session_state[key] = value
    app.run()
    assert not app.exception, app.exception
    return app
