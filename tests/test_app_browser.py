"""The app in a real browser: `workbench app` serves it on its port and a person can use it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser import ROOT, chromium, serve_app
from workbench.ingest import ingest
from workbench.store import Workspace

pytestmark = pytest.mark.browser

SAMPLE = ROOT / "data_samples"


@pytest.fixture(scope="module")
def served_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workspace = Workspace(tmp_path_factory.mktemp("browser") / "workspace").init()
    ingest(workspace, "catalog", [SAMPLE / "catalog" / "sku_catalog.toml"])
    ingest(workspace, "allocations", [SAMPLE / "allocations" / "allocations.csv"])
    ingest(workspace, "jobs", [SAMPLE / "jobs" / "jobs.csv.gz"])
    with serve_app(workspace.root) as url:
        yield url


def test_app_answers_and_a_selection_changes_the_numbers(served_app):
    from playwright.sync_api import expect

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{served_app}usage")  # the fleet overview is the default page
        used = page.locator('[data-testid="stMetric"]').filter(has_text="Used").first
        expect(used).to_contain_text("M chip-h", timeout=60_000)
        # The history and the weekly rhythm.
        expect(page.locator(".js-plotly-plot")).to_have_count(2, timeout=60_000)
        before = used.inner_text()
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Accelerator").click()
        page.get_by_role("option", name="tpu-v5p").click()
        expect(used).not_to_have_text(before, timeout=60_000)
        expect(page.get_by_text("Used / allocated")).to_be_visible()
        assert not page.locator('[data-testid="stException"]').count()
