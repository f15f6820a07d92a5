"""The Procurement plan page through AppTest: its numbers are the latest plan run's, sliced
by the sidebar filter; the toggle and pool picker change what is shown; the replay table
appears once a replay run exists; no plan says which command makes one."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from tests.app_money import build_money_workspace, open_page
from tests.test_cli_costs import billed_workspace  # noqa: F401  (module fixture)
from workbench.plan_views import capex_by_quarter, plan_totals, power_by_region
from workbench.store import Workspace
from workbench.ui.format import chips, usd_short

PAGE = "plan_page"


@pytest.fixture(scope="module")
def money_workspace(billed_workspace, tmp_path_factory) -> Workspace:  # noqa: F811
    return build_money_workspace(billed_workspace, tmp_path_factory.mktemp("plan") / "ws")


def _plan(workspace: Workspace) -> pl.DataFrame:
    return workspace.runs("plan")[-1].read("plan")


def _metrics(app) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def test_metrics_and_table_are_the_latest_plan_runs(money_workspace, monkeypatch):
    app = open_page(money_workspace.root, monkeypatch, PAGE)
    plan = _plan(money_workspace)
    shown = _metrics(app)
    assert shown["Expected cost"] == usd_short(plan["cost_cents"].sum() / 100)
    assert shown["Buy"] == chips(plan["buy_chips"].sum())
    table = app.dataframe[0].value
    assert len(table) == plan.height
    assert table["cost_usd"].sum() == pytest.approx(plan["cost_cents"].sum() / 100)
    assert money_workspace.runs("plan")[-1].run_id in app.caption[0].value
    assert len(app.get("plotly_chart")) == 3  # capacity vs demand, capex, power
    assert any("No decision replay yet" in c.value for c in app.caption)


def test_the_accelerator_filter_and_decision_toggle_narrow_the_rows(money_workspace, monkeypatch):
    app = open_page(money_workspace.root, monkeypatch, PAGE, {"shell_accelerator": "h100-80gb"})
    h100 = _plan(money_workspace).filter(pl.col("accelerator") == "h100-80gb")
    assert _metrics(app)["Buy"] == chips(h100["buy_chips"].sum())
    assert _metrics(app)["Expected cost"] == usd_short(plan_totals(h100).cost_usd)
    assert set(app.dataframe[0].value["accelerator"]) == {"h100-80gb"}
    app.toggle(key="plan_decisions").set_value(True).run()
    assert not app.exception
    decided = h100.filter(
        (pl.col("buy_chips") > 0)
        | (pl.col("commit_1y_chips") + pl.col("commit_3y_chips") > 0.5)
        | (pl.col("shortfall_probability") > 0)
    )
    assert len(app.dataframe[0].value) == decided.height


def test_picking_a_pool_redraws_its_capacity_against_demand(money_workspace, monkeypatch):
    app = open_page(money_workspace.root, monkeypatch, PAGE)
    picker = app.selectbox(key="plan_pool")
    assert picker.value == picker.options[0]
    chosen = picker.options[-1]
    picker.set_value(chosen).run()
    assert not app.exception
    accelerator, region = chosen.split(" ")
    why = app.dataframe[1].value
    expected = _plan(money_workspace).filter(
        (pl.col("accelerator") == accelerator) & (pl.col("region") == region)
    )
    assert why["quarter"].tolist() == sorted(expected["quarter"].to_list())
    figure = app.get("plotly_chart")[0].proto.spec
    assert chosen in figure


def test_a_replay_run_adds_its_comparison_table(money_workspace, monkeypatch, tmp_path):
    target = tmp_path / "ws"
    shutil.copytree(money_workspace.root, target)
    workspace = Workspace(target)
    comparison = pl.DataFrame(
        {
            "policy": ["plan", "perfect foresight", "rule"],
            "cost_cents": [1_000_00, 900_00, 1_100_00],
            "unmet_share": [0.01, 0.0, 0.03],
        }
    )
    with workspace.new_run("replay", config={"quarters": 2}) as run:
        run.write("comparison", comparison)
    app = open_page(target, monkeypatch, PAGE)
    replay = app.dataframe[-1].value
    assert replay["policy"].tolist() == ["plan", "perfect foresight", "rule"]
    assert replay["cost_usd"].tolist() == [1000.0, 900.0, 1100.0]


def test_without_a_plan_the_page_names_the_command(billed_workspace, monkeypatch):  # noqa: F811
    app = open_page(billed_workspace.root, monkeypatch, PAGE)
    assert "workbench plan" in app.info[0].value
    assert not app.metric


def test_capex_and_power_match_a_plain_loop(money_workspace):
    plan = _plan(money_workspace)
    prices = money_workspace.read_table("price_book")
    catalog = money_workspace.read_table("sku_catalog")
    capex = dict(zip(*capex_by_quarter(plan, prices).select("quarter", "capex_usd"), strict=True))
    power = power_by_region(plan, prices, catalog)
    price = {(r["accelerator"], r["region"]): r for r in prices.iter_rows(named=True)}
    watts = dict(zip(catalog["accelerator"], catalog["power_w"], strict=True))
    by_quarter: dict[str, float] = {}
    by_region: dict[tuple[str, str], float] = {}
    for row in plan.iter_rows(named=True):
        entry = price[(row["accelerator"], row["region"])]
        by_quarter[row["quarter"]] = (
            by_quarter.get(row["quarter"], 0.0) + row["buy_chips"] * entry["capex_usd"]
        )
        in_service = row["installed"] + row["on_order"] + row["landed_chips"]
        key = (row["region"], row["quarter"])
        mw = in_service * watts[row["accelerator"]] * entry["pue"] / 1e6
        by_region[key] = by_region.get(key, 0.0) + mw
    assert capex == pytest.approx(by_quarter)
    for row in power.iter_rows(named=True):
        assert row["power_mw"] == pytest.approx(by_region[(row["region"], row["quarter"])])
    totals = plan_totals(plan)
    assert totals.quarters == 4
    assert totals.buy_chips == plan["buy_chips"].sum()
    assert plan_totals(plan.clear()).cost_usd == 0.0
