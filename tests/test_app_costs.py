"""The Costs page through AppTest: the numbers it shows are the showback's, for the months,
policy and slice chosen; the TCO tab follows its utilization slider; empty says what to do."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from tests.app_money import open_page
from tests.test_cli_costs import billed_workspace  # noqa: F401  (module fixture)
from workbench.cost_views import cost_totals, slice_showback
from workbench.showback import Showback, ShowbackPolicy, breakdown, showback
from workbench.store import Workspace
from workbench.tco import TcoAssumptions, tco_table
from workbench.ui.format import usd, usd_short

PAGE = "costs_page"
TREND, TABLE, TCO = 0, 1, 2  # the dataframes in tab order


def _expected(
    workspace: Workspace, months: list[date], policy: ShowbackPolicy | None = None
) -> Showback:
    return showback(
        workspace.read_table("usage_daily"),
        workspace.read_table("inventory"),
        workspace.read_table("billing"),
        workspace.read_table("price_book"),
        workspace.read_table("sku_catalog"),
        months,
        policy or ShowbackPolicy(),
    )


def _metrics(app) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def test_totals_are_the_showbacks_of_the_last_three_months(billed_workspace, monkeypatch):  # noqa: F811
    app = open_page(billed_workspace.root, monkeypatch, PAGE)
    last = billed_workspace.read_table("usage_daily")["date"].max()
    assert isinstance(last, date)
    months = [date(2026, 8, 1), date(2026, 9, 1), date(2026, 10, 1)]
    assert months[-1] == last.replace(day=1)
    totals = cost_totals(_expected(billed_workspace, months))
    shown = _metrics(app)
    assert shown["Total cost"] == usd_short(totals.total_usd)
    assert shown["Idle cost"] == usd_short(totals.idle_usd)
    assert shown["Commitment waste"] == usd_short(totals.commitment_waste_usd)
    # The breakdown table adds up to the same total, to the cent.
    table = app.dataframe[TABLE].value
    assert Decimal(str(round(table["total_usd"].sum(), 2))) == totals.total_usd
    assert any(usd(totals.total_usd, cents=True) in c.value for c in app.caption)
    assert len(app.get("plotly_chart")) == 3  # treemap, trend, TCO components
    assert any("Reconciled to the cent" in c.value for c in app.caption)


def test_one_month_and_one_team_show_that_teams_bill(billed_workspace, monkeypatch):  # noqa: F811
    app = open_page(billed_workspace.root, monkeypatch, PAGE, {"shell_team": "search-ranking"})
    app.select_slider(key="costs_months").set_value(("2026-10", "2026-10")).run()
    assert not app.exception
    october = _expected(billed_workspace, [date(2026, 10, 1)])
    team = slice_showback(october, pl.col("team") == "search-ranking")
    expected = cost_totals(team)
    assert _metrics(app)["Total cost"] == usd_short(expected.total_usd)
    assert _metrics(app)["Idle cost"] == usd_short(Decimal(0))
    table = app.dataframe[TABLE].value
    assert set(table["team"]) == {"search-ranking"}
    by_accelerator = breakdown(team, ["team", "accelerator"])
    assert table["total_usd"].round(2).tolist() == pytest.approx(
        [float(v) for v in by_accelerator["total_usd"]]
    )


def test_shared_idle_keeps_the_total_and_adds_the_idle_share_column(billed_workspace, monkeypatch):  # noqa: F811
    app = open_page(billed_workspace.root, monkeypatch, PAGE)
    before = _metrics(app)["Total cost"]
    assert "idle_share_usd" not in app.dataframe[TABLE].value.columns
    app.radio(key="costs_idle").set_value("shared").run()
    assert not app.exception
    assert _metrics(app)["Total cost"] == before
    table = app.dataframe[TABLE].value
    assert "idle_share_usd" in table.columns
    assert "(idle)" not in set(table["team"]) or table["idle_share_usd"].sum() > 0
    app.multiselect(key="costs_by").set_value(["month"]).run()
    assert len(app.dataframe[TABLE].value) == 3


def test_the_tco_tab_follows_the_utilization_and_the_region_filter(billed_workspace, monkeypatch):  # noqa: F811
    app = open_page(billed_workspace.root, monkeypatch, PAGE, {"shell_region": "us-central1"})
    app.slider(key="costs_utilization").set_value(0.8).run()
    assert not app.exception
    shown = app.dataframe[TCO].value
    expected = tco_table(
        billed_workspace.read_table("price_book"),
        billed_workspace.read_table("sku_catalog"),
        TcoAssumptions(utilization=0.8),
        region="us-central1",
    )
    assert shown["accelerator"].tolist() == expected["accelerator"].to_list()
    assert shown["owned_usd_per_used_chip_hour"].tolist() == pytest.approx(
        expected["owned_usd_per_used_chip_hour"].to_list()
    )
    assert set(shown["region"]) == {"us-central1"}


def test_an_empty_workspace_says_how_to_load_data(tmp_path, monkeypatch):
    workspace = Workspace(tmp_path / "empty").init()
    app = open_page(workspace.root, monkeypatch, PAGE)
    assert "workbench demo" in app.info[0].value
    assert not app.metric


def test_the_treemap_gives_each_accelerator_its_fleet_colour(billed_workspace, monkeypatch):  # noqa: F811
    import json

    from workbench.ui.format import accelerator_colors

    fleet = billed_workspace.read_table("usage_daily")["accelerator"].unique().to_list()
    app = open_page(
        billed_workspace.root,
        monkeypatch,
        PAGE,
        {"shell_accelerators": sorted(fleet), "costs_treemap": "accelerator > region > team"},
    )
    spec = json.loads(app.get("plotly_chart")[0].proto.spec)
    treemap = spec["data"][0]
    colours = dict(zip(treemap["ids"], treemap["marker"]["colors"], strict=True))
    expected = accelerator_colors(fleet)
    tops = [node for node in colours if "/" not in node]
    assert tops and all(colours[node] == expected[node] for node in tops)
    # Children wear their accelerator's colour.
    assert all(colours[node] == expected[node.split("/")[0]] for node in colours)
