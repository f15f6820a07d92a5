"""Scenarios: the library (workbench.scenarios) and the page, driven through AppTest."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from tests.app_fixtures import build_app_workspace, open_app
from tests.conftest import IngestedSample
from workbench.errors import WorkbenchError
from workbench.scenarios import (
    GrowthMultiplier,
    Scenario,
    ScenarioEvent,
    find_scenario_run,
    list_scenarios,
    load_scenario,
    read_outcome,
    sanitize_name,
    save_scenario,
    scenario_events,
    with_growth,
)
from workbench.store import Workspace
from workbench.ui.format import usd

POOL = "h100-80gb / us-east4"


@pytest.fixture(scope="module")
def workspace(
    sample_workspace: IngestedSample, tmp_path_factory: pytest.TempPathFactory
) -> Workspace:
    return build_app_workspace(
        sample_workspace, tmp_path_factory.mktemp("scenarios") / "ws", plan=False
    )


def _metrics(app) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def test_a_launch_built_in_the_page_raises_demand_and_changes_the_plan(workspace, monkeypatch):
    app = open_app(workspace.root, monkeypatch, "scenarios", {"accelerator": "h100-80gb"})
    app.text_input(key="scenarios_name").input("LLM launch 2027").run()
    assert app.selectbox(key="scenarios_event_pool").options[0].startswith("h100-80gb")
    app.selectbox(key="scenarios_event_pool").set_value(POOL).run()
    app.number_input(key="scenarios_event_chips").set_value(800.0).run()
    app.slider(key="scenarios_event_probability").set_value(0.8).run()
    app.button(key="scenarios_add").click().run()
    assert not app.exception
    changes = next(d.value for d in app.dataframe if "amount" in d.value.columns)
    assert list(changes["amount"]) == ["+800 chips at p=80%"]
    app.button(key="scenarios_save").click().run()
    assert list_scenarios(workspace) == ["llm-launch-2027"]
    app.button(key="scenarios_run").click().run()
    assert not app.exception, app.exception
    run = workspace.runs("scenario")[-1]
    outcome = read_outcome(run)
    # The launch lands after the first forecast quarter: from then on, the pool's p50
    # peak rises by about probability x chips = 640 (sampling noise aside).
    after = outcome.demand.filter(pl.col("quarter") > "2027Q1")
    assert after["p50_change"].to_list() == pytest.approx([640.0] * after.height, rel=0.25)
    cost = float(outcome.plan["cost_change_usd"].sum())
    shown = _metrics(app)["Expected cost, scenario - baseline"]
    assert shown == ("+" if cost >= 0 else "-") + usd(abs(cost))
    assert float(outcome.plan["buy_b"].sum()) >= float(outcome.plan["buy_a"].sum())
    baseline = next(d.value for d in app.dataframe if "buy (chips)" in d.value.columns)
    assert baseline["buy (chips)"].sum() == pytest.approx(outcome.plan["buy_a"].sum())
    # Reopened later, the saved scenario's run is read back, not recomputed.
    again = open_app(workspace.root, monkeypatch, "scenarios")
    again.selectbox(key="scenarios_pick").set_value("llm-launch-2027").run()
    assert _metrics(again)["Expected cost, scenario - baseline"] == shown
    assert len(workspace.runs("scenario")) == 1


def test_a_saved_scenario_reloads_and_a_change_is_edited(workspace, monkeypatch):
    scenario = Scenario(
        "tpu growth",
        growth=(GrowthMultiplier("tpu-v5p", 1.3, region="us-east4"),),
    )
    save_scenario(workspace, scenario)
    app = open_app(workspace.root, monkeypatch, "scenarios")
    app.selectbox(key="scenarios_pick").set_value("tpu-growth").run()
    assert app.text_input(key="scenarios_name").value == "tpu growth"
    changes = next(d.value for d in app.dataframe if "amount" in d.value.columns)
    assert list(changes["amount"]) == ["x1.30 demand"]
    # Edit: the change goes back into the editor, is changed there and added again.
    app.selectbox(key="scenarios_which").set_value("growth 1").run()
    app.button(key="scenarios_edit").click().run()
    assert app.radio(key="scenarios_change_type").value == "Growth multiplier"
    assert app.number_input(key="scenarios_growth_factor").value == pytest.approx(1.3)
    app.number_input(key="scenarios_growth_factor").set_value(1.5).run()
    app.button(key="scenarios_add").click().run()
    changes = next(d.value for d in app.dataframe if "amount" in d.value.columns)
    assert list(changes["amount"]) == ["x1.50 demand"]
    app.button(key="scenarios_save").click().run()
    assert load_scenario(workspace, "tpu-growth").growth[0].factor == 1.5
    # Not run yet: the page says so.
    assert find_scenario_run(workspace, load_scenario(workspace, "tpu-growth")) is None
    assert any("Run the scenario" in i.value for i in app.info)


def test_scenarios_need_data(tmp_path: Path, monkeypatch):
    empty = Workspace(tmp_path / "empty").init()
    app = open_app(empty.root, monkeypatch, "scenarios")
    assert "workbench demo" in app.info[0].value


def test_names_are_sanitized_and_round_trip(workspace):
    assert sanitize_name("  LLM Launch / 2027 ") == "llm-launch-2027"
    assert sanitize_name("../../etc/passwd") == "etc-passwd"
    with pytest.raises(WorkbenchError, match="no letters"):
        sanitize_name("../")
    scenario = Scenario(
        "Round trip",
        events=(
            ScenarioEvent(
                "campaign",
                "training_campaign",
                "h100-80gb",
                "us-east4",
                date(2027, 2, 1),
                -64.0,
                end=date(2027, 3, 1),
                team="speech",
                probability=0.5,
            ),
        ),
        growth=(GrowthMultiplier("tpu-v5p", 0.9, start=date(2027, 1, 1)),),
    )
    path = save_scenario(workspace, scenario)
    assert path.parent == workspace.root / "scenarios"
    assert load_scenario(workspace, "round trip") == scenario
    with pytest.raises(WorkbenchError, match="ends"):
        ScenarioEvent(
            "x", "training_campaign", "a", "r", date(2027, 2, 1), 1.0, end=date(2027, 1, 1)
        )


def test_touched_pools_and_events_split_over_teams(workspace):
    usage = workspace.read_table("usage_daily")
    known = [tuple(p) for p in usage.select("accelerator", "region").unique().iter_rows()]
    scenario = Scenario(
        "s",
        events=(ScenarioEvent("l", "launch", "h100-80gb", "us-east4", date(2027, 1, 1), 100.0),),
        growth=(GrowthMultiplier("tpu-v5p", 1.1),),
    )
    tpu_pools = sorted(p for p in known if p[0] == "tpu-v5p")
    assert scenario.touched_pools(known) == sorted([("h100-80gb", "us-east4"), *tpu_pools])
    rows = scenario_events(scenario, workspace.read_table("events"), usage)
    assert rows["chips"].sum() == pytest.approx(100.0)
    assert rows["team"].null_count() == 0 and rows.height > 1
    assert rows["source"].unique().to_list() == ["scenario:s"]


def test_growth_scales_pool_and_team_rows_from_its_start():
    days = [date(2027, 1, 1) + timedelta(days=i) for i in range(4)]
    forecast = pl.DataFrame(
        {
            "series_id": ["pool=a/r"] * 4 + ["accelerator=a"] * 4,
            "level": ["pool"] * 4 + ["accelerator"] * 4,
            "accelerator": ["a"] * 8,
            "region": ["r"] * 4 + [None] * 4,
            "ds": days * 2,
            "mean": [10.0] * 8,
            "p90": [20.0] * 8,
            "p2_5": [1.0] * 8,
        }
    )
    grown = with_growth(forecast, [GrowthMultiplier("a", 2.0, start=days[2])])
    pool = grown.filter(pl.col("level") == "pool")
    assert pool["mean"].to_list() == [10.0, 10.0, 20.0, 20.0]
    assert pool["p2_5"].to_list() == [1.0, 1.0, 2.0, 2.0]
    assert grown.filter(pl.col("level") == "accelerator")["p90"].to_list() == [20.0] * 4
