"""One colour per accelerator on every chart of the app (the palette of workbench.palette).

Walks the pages' plotly figures through ``AppTest`` (each chart's spec is the JSON plotly.js
draws) and checks that every trace, bar or treemap node drawn for an accelerator wears that
accelerator's colour, whichever page it is on and whatever the slice.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest

from tests.app_money import build_money_workspace, open_page
from tests.test_cli_costs import billed_workspace  # noqa: F401  (module fixture)
from workbench.palette import COLORS, accelerator_colors, with_accelerator
from workbench.store import Workspace


@pytest.fixture(scope="module")
def money_workspace(billed_workspace, tmp_path_factory) -> Workspace:  # noqa: F811
    return build_money_workspace(billed_workspace, tmp_path_factory.mktemp("colors") / "ws")


@pytest.fixture(scope="module")
def fleet_colors(money_workspace) -> dict[str, str]:
    """The palette as the app must apply it: over the catalog's and the usage's accelerators."""
    names = set(money_workspace.read_table("sku_catalog")["accelerator"].to_list())
    names |= set(money_workspace.read_table("usage_daily")["accelerator"].to_list())
    return accelerator_colors(names)


def _figures(app) -> list[dict[str, Any]]:
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def _traces(app) -> list[dict[str, Any]]:
    return [trace for figure in _figures(app) for trace in figure["data"]]


def _colour(trace: dict[str, Any]) -> str:
    return str((trace.get("line") or {}).get("color") or trace["marker"]["color"])


def test_the_sample_fleet_has_a_distinct_colour_per_accelerator(fleet_colors):
    assert len(fleet_colors) == 8
    assert len(set(fleet_colors.values())) == 8


@pytest.mark.parametrize(
    ("main", "color"), [("used", "#D55E00"), ("demand", "#009E73"), ("demand", "#CC79A7")]
)
def test_a_one_accelerator_chart_keeps_its_series_apart(main, color):
    colors = with_accelerator(COLORS, main, color)
    assert colors[main] == color
    # A series that wore the accelerator's colour (queued, capacity, events) steps aside.
    for name, usual in COLORS.items():
        if name != main and usual == color:
            assert colors[name] == COLORS[main]
    assert with_accelerator(COLORS, main, None) == COLORS


def test_usage_of_one_accelerator_wears_its_colour(money_workspace, monkeypatch, fleet_colors):
    app = open_page(money_workspace.root, monkeypatch, "usage_page")
    assert {_colour(t) for t in _traces(app) if t["name"] == "used"} == {COLORS["used"]}
    for accelerator in ("h100-80gb", "tpu-v5e"):  # tpu-v5e wears queued's vermillion
        app = open_page(
            money_workspace.root, monkeypatch, "usage_page", {"shell_accelerator": accelerator}
        )
        used = [t for t in _traces(app) if t["name"] == "used"]
        assert len(used) == 2  # the history and the weekday bars
        assert {_colour(t) for t in used} == {fleet_colors[accelerator]}
        queued = [t for t in _traces(app) if t["name"].startswith("queued")]
        assert queued and all(_colour(t) != fleet_colors[accelerator] for t in queued)


def test_forecast_of_one_accelerator_wears_its_colour(money_workspace, monkeypatch, fleet_colors):
    app = open_page(money_workspace.root, monkeypatch, "forecast_page")
    assert app.selectbox(key="forecast_series").value == "fleet"
    demand = next(t for t in _traces(app) if t["name"] == "demand (history)")
    assert _colour(demand) == COLORS["demand"]
    forecast = money_workspace.runs("forecast")[-1].read("forecast")
    for accelerator in ("b200-180gb", "h200-141gb"):  # the forecast's orange, the events' purple
        pools = forecast.filter(
            (pl.col("level") == "pool") & (pl.col("accelerator") == accelerator)
        )["series_id"]
        app = open_page(
            money_workspace.root,
            monkeypatch,
            "forecast_page",
            {"forecast_series": pools.sort()[0]},
        )
        fan, decomposition = _figures(app)
        colour = fleet_colors[accelerator]
        assert _colour(next(t for t in fan["data"] if t["name"] == "demand (history)")) == colour
        mean = next(t for t in fan["data"] if t["name"] == "forecast mean")
        assert _colour(mean) != colour
        events = {shape["fillcolor"] for shape in fan["layout"].get("shapes", [])}
        assert colour not in events
        assert {_colour(t) for t in decomposition["data"]} == {colour}


def test_plan_pool_chart_wears_its_accelerator_colour(money_workspace, monkeypatch, fleet_colors):
    plan = money_workspace.runs("plan")[-1].read("plan")
    pools = plan.select("accelerator", "region").unique().sort("accelerator", "region")
    seen = set()
    for accelerator, region in pools.iter_rows():
        if accelerator in seen:
            continue
        seen.add(accelerator)
        app = open_page(
            money_workspace.root, monkeypatch, "plan_page", {"plan_pool": f"{accelerator} {region}"}
        )
        traces = _figures(app)[0]["data"]
        demand = [t for t in traces if t["name"].startswith("demand")]
        assert {_colour(t) for t in demand} == {fleet_colors[accelerator]}
        others = {_colour(t) for t in traces if not t["name"].startswith("demand")}
        assert fleet_colors[accelerator] not in others  # capacity and burst stay apart


def test_reclaim_history_wears_each_pool_accelerator_colour(
    money_workspace, monkeypatch, fleet_colors
):
    reclaim = money_workspace.runs("reclaim")[-1].read("reclaim")
    # The team with the most pools, so the chart has several accelerators.
    team = reclaim.group_by("team").len().sort("len", "team", descending=[True, False])[0, "team"]
    app = open_page(money_workspace.root, monkeypatch, "reclaim_page", {"reclaim_team": team})
    history = [t for t in _figures(app)[1]["data"]]
    assert len({t["name"].split("/")[0] for t in history}) > 1
    for trace in history:
        accelerator = trace["name"].split("/")[0]
        assert _colour(trace) == fleet_colors[accelerator], trace["name"]


@pytest.mark.parametrize(
    "path", ["accelerator > region > team", "team > accelerator", "region > accelerator"]
)
def test_costs_treemap_accelerators_wear_their_colour(
    money_workspace, monkeypatch, fleet_colors, path
):
    app = open_page(money_workspace.root, monkeypatch, "costs_page", {"costs_treemap": path})
    treemap = _figures(app)[0]["data"][0]
    depth = path.split(" > ").index("accelerator")
    colours = dict(zip(treemap["ids"], treemap["marker"]["colors"], strict=True))
    under = {node: c for node, c in colours.items() if node.count("/") >= depth}
    assert under
    for node, colour in under.items():
        assert colour == fleet_colors[node.split("/")[depth]], node
    assert not set(colours.values()) - set(fleet_colors.values()) - {"#D9D9D9"}


def test_a_slice_keeps_the_fleet_colours(money_workspace, monkeypatch, fleet_colors):
    """The palette is the workspace's, not the slice's: an accelerator's colour never moves."""
    usage = money_workspace.read_table("usage_daily").filter(pl.col("accelerator") == "tpu-v6e")
    slices = [
        {},
        {"shell_team": usage["team"].sort()[0]},
        {"shell_region": usage["region"].sort()[-1]},
    ]
    for state in slices:
        app = open_page(
            money_workspace.root,
            monkeypatch,
            "usage_page",
            {"shell_accelerator": "tpu-v6e", **state},
        )
        used = [t for t in _traces(app) if t["name"] == "used"]
        assert len(used) == 2, state
        assert {_colour(t) for t in used} == {fleet_colors["tpu-v6e"]}
