"""The money and data pages in a real browser: each loads without a Streamlit exception,
shows its key content, and one interaction changes what is shown (a CSV download arrives
from the costs page)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app_money import build_money_workspace
from tests.browser import chromium, serve_app
from tests.test_cli_costs import billed_workspace  # noqa: F401  (module fixture)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def money_app(billed_workspace, tmp_path_factory) -> Iterator[str]:  # noqa: F811
    workspace = build_money_workspace(billed_workspace, tmp_path_factory.mktemp("money") / "ws")
    with serve_app(workspace.root) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as launched:
        yield launched


def _open(browser, url: str, title: str):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.goto(url)
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=60_000)
    return page


def _no_exception(page) -> None:
    assert not page.locator('[data-testid="stException"]').count()


def _metric(page, label: str):
    return page.locator('[data-testid="stMetric"]').filter(has_text=label).first


def test_costs_page_shows_totals_and_a_csv_download_arrives(money_app, browser, tmp_path):
    from playwright.sync_api import expect

    page = _open(browser, money_app + "costs", "Costs")
    expect(_metric(page, "Total cost")).to_contain_text("$", timeout=60_000)
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
    page.get_by_role("tab", name="Table").click()
    button = page.locator('[data-testid="stDownloadButton"]').filter(has_text="Download CSV")
    with page.expect_download(timeout=60_000) as download_info:
        button.locator("visible=true").first.click()
    target = Path(tmp_path) / "costs.csv"
    download_info.value.save_as(target)
    header = target.read_text().splitlines()[0]
    assert header.startswith("team,accelerator,") and "total_usd" in header
    _no_exception(page)
    page.close()


def test_plan_page_shows_the_plan_and_the_toggle_narrows_it(money_app, browser):
    from playwright.sync_api import expect

    page = _open(browser, money_app + "plan", "Procurement plan")
    expect(_metric(page, "Expected cost")).to_contain_text("$", timeout=60_000)
    expect(page.get_by_text("Capacity against demand")).to_be_visible()
    caption = page.get_by_text("pool-quarters.", exact=False).first
    before = caption.inner_text()
    page.get_by_text("Only rows with a decision or a risk").click()
    expect(caption).not_to_have_text(before, timeout=60_000)
    _no_exception(page)
    page.close()


def test_reclaim_page_ranks_and_drills_into_a_team(money_app, browser):
    from playwright.sync_api import expect

    page = _open(browser, money_app + "reclaim", "Reclaim")
    expect(_metric(page, "Reclaimable")).to_contain_text("chips", timeout=60_000)
    team_metric = _metric(page, "Team allocated")
    expect(team_metric).to_contain_text("chips", timeout=60_000)
    before = team_metric.inner_text()
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Team").last.click()
    options = page.get_by_role("option")
    current = page.locator('[data-testid="stSelectbox"]').filter(has_text="Team").last
    chosen = next(
        name
        for name in (options.nth(i).inner_text() for i in range(options.count()))
        if name not in current.inner_text()
    )
    page.get_by_role("option", name=chosen, exact=True).click()
    expect(team_metric).not_to_have_text(before, timeout=60_000)
    _no_exception(page)
    page.close()


def test_data_page_shows_sources_and_quarantine(money_app, browser):
    from playwright.sync_api import expect

    page = _open(browser, money_app + "data", "Data")
    expect(_metric(page, "Tables")).to_be_visible(timeout=60_000)
    expect(_metric(page, "Quarantined rows")).to_contain_text("168")
    page.get_by_role("tab", name="Quarantine").click()
    # The grid draws on a canvas; its cells are in the accessibility layer, not visible.
    expect(page.get_by_text("chips must be positive").first).to_be_attached(timeout=60_000)
    page.get_by_role("tab", name="Upload").click()
    expect(page.get_by_text("Raw export (up to 200 MB and 5,000,000 records)")).to_be_visible()
    _no_exception(page)
    page.close()
