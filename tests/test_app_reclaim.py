"""The Reclaim page through AppTest: the ranked table and totals are the latest reclaim
run's, sliced by the sidebar filter; a team's drill-down shows its rows and daily use,
whose p50/p95 over the lookback are the run's; no run names the command."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from tests.app_money import build_money_workspace, open_page
from tests.test_cli_costs import billed_workspace  # noqa: F401  (module fixture)
from workbench.reclaim_views import reclaim_totals, team_history
from workbench.store import Workspace
from workbench.ui.format import chips, usd_short

PAGE = "reclaim_page"


@pytest.fixture(scope="module")
def money_workspace(billed_workspace, tmp_path_factory) -> Workspace:  # noqa: F811
    return build_money_workspace(billed_workspace, tmp_path_factory.mktemp("reclaim") / "ws")


def _reclaim(workspace: Workspace) -> pl.DataFrame:
    return workspace.runs("reclaim")[-1].read("reclaim")


def _metrics(app) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def test_ranked_table_and_totals_are_the_runs(money_workspace, monkeypatch):
    app = open_page(money_workspace.root, monkeypatch, PAGE)
    table = _reclaim(money_workspace)
    totals = reclaim_totals(table)
    shown = _metrics(app)
    assert shown["Reclaimable"] == chips(table["reclaimable_chips"].sum())
    assert shown["Savings / year"] == usd_short(totals.annual_savings_usd)
    ranked = app.dataframe[0].value
    expected = table.filter((pl.col("reclaimable_chips") > 0) | pl.col("idle")).sort("rank")
    assert ranked["rank"].tolist() == expected["rank"].to_list()
    assert ranked["annual_savings_usd"].tolist() == pytest.approx(
        [float(v) for v in expected["annual_savings_usd"]]
    )
    savings = ranked["annual_savings_usd"].tolist()
    assert savings == sorted(savings, reverse=True)
    app.toggle(key="reclaim_only").set_value(False).run()
    assert len(app.dataframe[0].value) == table.height


def test_the_team_filter_slices_the_table_and_opens_its_drill_down(money_workspace, monkeypatch):
    team = "speech"
    app = open_page(money_workspace.root, monkeypatch, PAGE, {"shell_team": team})
    rows = _reclaim(money_workspace).filter(pl.col("team") == team)
    assert _metrics(app)["Reclaimable"] == chips(rows["reclaimable_chips"].sum())
    assert app.selectbox(key="reclaim_team").value == team
    assert _metrics(app)["Team allocated"] == chips(rows["allocated_chips"].sum())
    assert len(app.get("plotly_chart")) == 2  # per-pool bars, daily history


def test_choosing_a_team_shows_its_daily_use_matching_the_runs_quantiles(
    money_workspace, monkeypatch
):
    app = open_page(money_workspace.root, monkeypatch, PAGE)
    table = _reclaim(money_workspace)
    picker = app.selectbox(key="reclaim_team")
    assert picker.value == table.sort("rank")["team"][0]  # the top-ranked team first
    team = next(t for t in picker.options if t != picker.value)
    picker.set_value(team).run()
    assert not app.exception
    rows = table.filter(pl.col("team") == team)
    assert _metrics(app)["Team reclaimable"] == chips(rows["reclaimable_chips"].sum())
    history = app.dataframe[-1].value
    assert set(history["pool"]) == set(rows["pool"].to_list())
    run = money_workspace.runs("reclaim")[-1]
    as_of = date.fromisoformat(run.manifest["config"]["as_of"])
    lookback = run.manifest["config"]["lookback_days"]
    for row in rows.iter_rows(named=True):
        used = history[history["pool"] == row["pool"]]["used_chips"]
        assert used.quantile(0.5) == pytest.approx(row["used_p50_chips"])
        assert used.quantile(0.95) == pytest.approx(row["used_p95_chips"])
    assert str(history["date"].min())[:10] == str(as_of - timedelta(days=lookback - 1))
    app.radio(key="reclaim_history_span").set_value("1 year").run()
    assert not app.exception
    assert len(app.dataframe[-1].value) > len(history)


def test_team_history_allocated_matches_a_plain_loop(money_workspace):
    allocations = money_workspace.read_table("allocations")
    first, last = date(2026, 6, 1), date(2026, 10, 31)
    history = team_history(
        money_workspace.read_table("usage_daily"), allocations, "speech", first, last
    )
    for row in history.sample(30, seed=1).iter_rows(named=True):
        held = allocations.filter(
            (pl.col("team") == "speech")
            & (pl.col("accelerator") == row["accelerator"])
            & (pl.col("region") == row["region"])
            & (pl.col("valid_from") <= row["date"])
            & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= row["date"]))
        )
        assert row["allocated_chips"] == pytest.approx(float(held["chips"].sum()))
    assert team_history(
        money_workspace.read_table("usage_daily"), allocations, "nobody", first, last
    ).is_empty()


def test_without_a_reclaim_run_the_page_names_the_command(billed_workspace, monkeypatch):  # noqa: F811
    app = open_page(billed_workspace.root, monkeypatch, PAGE)
    assert "workbench reclaim" in app.info[0].value
