"""The fleet overview page, driven through AppTest and checked against the library."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tests.app_fixtures import build_app_workspace, open_app
from tests.conftest import IngestedSample
from workbench.overview import Slice, monthly_spend, next_quarter, pool_status, shortfall_risks
from workbench.store import Workspace
from workbench.ui.format import chip_hours, chips, percent, usd_short
from workbench.ui.overview_page import WINDOW_DAYS


@pytest.fixture(scope="module")
def workspace(
    sample_workspace: IngestedSample, tmp_path_factory: pytest.TempPathFactory
) -> Workspace:
    return build_app_workspace(
        sample_workspace, tmp_path_factory.mktemp("overview") / "ws", plan=False
    )


def _metrics(app) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def _expected_tiles(ws: Workspace, where: Slice) -> dict[str, str]:
    status = pool_status(
        ws.read_table("usage_daily"), ws.read_table("inventory"), window_days=28, where=where
    )
    installed = float(status["installed_chips"].sum())
    used = float(status["chip_hours_used"].sum())
    return {
        "Installed": chips(installed),
        "Healthy": chips(float(status["healthy_chips"].sum())),
        f"Utilization, last {WINDOW_DAYS} days": percent(used / (installed * 24 * 28)),
        f"Queued demand, last {WINDOW_DAYS} days": chip_hours(
            float(status["chip_hours_queued"].sum()), short=True
        ),
    }


def test_overview_tiles_match_the_library_and_narrow_with_the_sidebar(workspace, monkeypatch):
    app = open_app(workspace.root, monkeypatch)
    assert app.title[0].value == "Fleet overview"
    shown = _metrics(app)
    for label, value in _expected_tiles(workspace, Slice()).items():
        assert shown[label] == value, label
    app.selectbox(key="shell_accelerator").set_value("tpu-v5p").run()
    assert not app.exception
    shown = _metrics(app)
    for label, value in _expected_tiles(workspace, Slice(accelerator="tpu-v5p")).items():
        assert shown[label] == value, label
    assert shown["Installed"] != _expected_tiles(workspace, Slice())["Installed"]


def test_spend_this_month_vs_last_is_the_showback_total(workspace, monkeypatch):
    app = open_app(workspace.root, monkeypatch, query={"team": "speech"})
    spend = monthly_spend(
        workspace.read_table("usage_daily"),
        workspace.read_table("inventory"),
        workspace.read_table("billing"),
        workspace.read_table("price_book"),
        workspace.read_table("sku_catalog"),
        where=Slice(team="speech"),
    )
    assert spend is not None and spend.source == "showback"
    metric = next(m for m in app.metric if m.label.startswith("Spend"))
    assert metric.label == f"Spend {spend.this_month:%B %Y}"
    assert metric.value == usd_short(spend.this_usd)
    assert f"vs {spend.last_month:%B}" in str(metric.delta)


def test_shortfall_risks_come_from_the_latest_forecast(workspace, monkeypatch):
    app = open_app(workspace.root, monkeypatch, query={"accelerator": "h100-80gb"})
    run = workspace.runs("forecast")[-1]
    history_end = workspace.read_table("usage_daily")["date"].max()
    quarter = next_quarter(history_end)
    expected = shortfall_risks(
        run.read("planning"),
        run.read("scenarios"),
        workspace.read_table("inventory"),
        workspace.read_table("orders"),
        quarter,
        where=Slice(accelerator="h100-80gb"),
    )
    table = next(d for d in app.dataframe if "shortfall_probability" in d.value.columns).value
    assert sorted(table["region"]) == sorted(expected["region"].to_list())
    assert set(table["accelerator"]) == {"h100-80gb"}
    shown = pl.from_pandas(table).sort("region")
    assert shown["shortfall_probability"].to_list() == pytest.approx(
        expected.sort("region")["shortfall_probability"].to_list()
    )
    assert any(quarter in c.value and run.run_id in c.value for c in app.caption)


def test_links_to_detail_pages_keep_the_filter(workspace, monkeypatch):
    app = open_app(workspace.root, monkeypatch, query={"region": "us-east4"})
    links = {link.proto.page: link.proto for link in app.get("page_link")}
    assert {"usage", "forecast"} <= set(links)
    assert links["usage"].query_string == "region=us-east4"


def test_empty_workspace_says_how_to_load_the_sample(tmp_path: Path, monkeypatch):
    empty = Workspace(tmp_path / "empty").init()
    app = open_app(empty.root, monkeypatch)
    assert "workbench demo" in app.info[0].value


def test_pool_status_oracle(workspace):
    usage = workspace.read_table("usage_daily")
    inventory = workspace.read_table("inventory")
    status = pool_status(usage, inventory, window_days=7)
    last = usage["date"].max()
    for row in status.head(5).iter_rows(named=True):
        pool = (pl.col("accelerator") == row["accelerator"]) & (pl.col("region") == row["region"])
        window = usage.filter(pool & (pl.col("date") > last - pl.duration(days=7)))
        snapshots = inventory.filter(pool & (pl.col("date") <= last)).sort("date")
        installed = float(snapshots["installed_chips"][-1])
        assert row["installed_chips"] == installed
        assert row["chip_hours_used"] == pytest.approx(window["chip_hours_used"].sum())
        assert row["utilization"] == pytest.approx(
            window["chip_hours_used"].sum() / (installed * 24 * 7)
        )
