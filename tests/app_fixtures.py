"""A small, complete workspace for the app's tests: the sample fleet, a fast forecast, a plan.

Built from the session's ingested sample (``tests.conftest.sample_workspace``) plus the
sample bill; the forecast uses the plan command's fast models (``FAST_MODELS``, seconds on
one core) and 200 sample paths, the plan four quarters. Test modules wrap
:func:`build_app_workspace` in a module-scoped fixture.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from tests.conftest import ROOT, SAMPLE, IngestedSample
from workbench.cli_forecast import run_fleet_forecast
from workbench.cli_plan import FAST_MODELS, plan_command
from workbench.forecasting import ForecastSettings
from workbench.ingest import ingest
from workbench.store import Workspace

__all__ = ["APP_TIMEOUT_S", "FAST_FORECAST", "build_app_workspace", "go_to", "open_app"]

APP_TIMEOUT_S = 60
FAST_FORECAST = ForecastSettings(horizon=182, models=FAST_MODELS, sample_paths=200, workers=1)


def build_app_workspace(sample: IngestedSample, target: Path, *, plan: bool = True) -> Workspace:
    """Copy the ingested sample to ``target``, add the bill, a fast forecast and a plan."""
    shutil.copytree(sample.workspace.root, target)
    workspace = Workspace(target)
    ingest(workspace, "billing", [SAMPLE / "billing" / "focus_billing.csv"])
    run_fleet_forecast(workspace, FAST_FORECAST, quiet=True)
    if plan:
        plan_command(workspace=target, horizon=4, time_limit=10.0)
    return workspace


def open_app(
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    page: str | None = None,
    query: dict[str, str] | None = None,
) -> AppTest:
    """Run ``app.py`` on ``workspace`` (on ``page``, with URL ``query``) and check it ran."""
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(workspace))
    monkeypatch.setitem(os.environ, "OMP_NUM_THREADS", "1")
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=APP_TIMEOUT_S)
    for key, value in (query or {}).items():
        app.query_params[key] = value
    app.run()
    if page is not None:
        go_to(app, page)
    assert not app.exception, app.exception
    return app


def go_to(app: AppTest, url_path: str) -> AppTest:
    """Open the page registered under ``url_path`` and run it.

    ``AppTest.switch_page`` only finds file-based pages; ours are callables, which
    ``st.navigation`` registers under the hash of their URL path (what a browser asks
    for), so the test asks for that hash the same way.
    """
    app._page_hash = calc_hash(url_path)
    app.run()
    assert not app.exception, app.exception
    return app
