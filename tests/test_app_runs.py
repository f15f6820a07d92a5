"""The runs page, driven through AppTest, and its library (workbench.run_compare)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from tests.app_fixtures import FAST_FORECAST, build_app_workspace, open_app
from tests.conftest import IngestedSample
from workbench.cli_forecast import run_fleet_forecast
from workbench.cli_plan import plan_command
from workbench.run_compare import (
    compare_forecasts,
    compare_plans,
    explain,
    manifest_differences,
)
from workbench.store import Workspace
from workbench.ui.format import chips, usd


@pytest.fixture(scope="module")
def workspace(
    sample_workspace: IngestedSample, tmp_path_factory: pytest.TempPathFactory
) -> Workspace:
    """Two forecast runs (seeds 0 and 1) and a plan from each."""
    ws = build_app_workspace(sample_workspace, tmp_path_factory.mktemp("runs") / "ws")
    run_fleet_forecast(ws, replace(FAST_FORECAST, seed=1), quiet=True)
    plan_command(workspace=ws.root, horizon=4, time_limit=10.0)
    return ws


def _metrics(app) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def test_two_forecast_runs_compare_per_series_and_say_why(workspace, monkeypatch):
    app = open_app(workspace.root, monkeypatch, "runs")
    assert app.radio(key="runs_kind").value == "forecast"
    listed = app.dataframe[0].value
    assert len(listed) == 2 and set(listed["kind"]) == {"forecast"}
    before, after = workspace.runs("forecast")
    assert app.selectbox(key="runs_a").value == before.run_id
    assert app.selectbox(key="runs_b").value == after.run_id
    expected = compare_forecasts(before.read("forecast"), after.read("forecast"))
    fleet = expected.filter(pl.col("series_id") == "fleet").row(0, named=True)
    assert _metrics(app)["Fleet mean demand, A"] == chips(fleet["mean_a"])
    assert _metrics(app)["Fleet mean demand, B"] == chips(fleet["mean_b"])
    why = "\n".join(m.value for m in app.markdown)
    assert "Seed 0 in A, 1 in B" in why
    # Swapping A and B flips the sign of the change.
    app.selectbox(key="runs_a").set_value(after.run_id).run()
    app.selectbox(key="runs_b").set_value(before.run_id).run()
    assert not app.exception
    assert _metrics(app)["Fleet mean demand, A"] == chips(fleet["mean_b"])


def test_plan_runs_compare_per_pool_and_quarter_within_the_filter(workspace, monkeypatch):
    app = open_app(workspace.root, monkeypatch, "runs", {"accelerator": "h100-80gb"})
    app.radio(key="runs_kind").set_value("plan").run()
    assert not app.exception
    before, after = workspace.runs("plan")
    expected = compare_plans(before.read("plan"), after.read("plan")).filter(
        pl.col("accelerator") == "h100-80gb"
    )
    table = next(d.value for d in app.dataframe if "cost_change_usd" in d.value.columns)
    assert set(table["accelerator"]) == {"h100-80gb"}
    assert len(table) == expected.height
    change = float(expected["cost_change_usd"].sum())
    shown = _metrics(app)["Expected cost, B - A"]
    assert shown == ("+" if change >= 0 else "-") + usd(abs(change))
    why = "\n".join(m.value for m in app.markdown)
    assert "different forecast runs" in why


def test_an_empty_workspace_says_what_makes_a_run(tmp_path: Path, monkeypatch):
    empty = Workspace(tmp_path / "empty").init()
    app = open_app(empty.root, monkeypatch, "runs")
    assert "workbench demo" in app.info[0].value


def test_manifest_differences_name_settings_inputs_and_versions():
    a = {
        "config": {"horizon": 182, "models": ["theta"], "limits": {"power": 1}},
        "inputs": [{"path": "jobs.csv", "sha256": "aaaa1111"}, {"path": "old.csv", "sha256": "x"}],
        "versions": {"polars": "2.0"},
        "seed": 0,
    }
    b = {
        "config": {"horizon": 91, "models": ["theta"], "limits": {"power": 2}},
        "inputs": [{"path": "jobs.csv", "sha256": "bbbb2222"}],
        "versions": {"polars": "2.1"},
        "seed": 0,
    }
    found = manifest_differences(a, b)
    assert found.select("section", "key").rows() == [
        ("config", "horizon"),
        ("config", "limits.power"),
        ("input", "jobs.csv"),
        ("input", "old.csv"),
        ("versions", "polars"),
    ]
    reasons = explain("forecast", found)
    assert "Setting horizon: 182 in A, 91 in B." in reasons
    assert "Input jobs.csv changed (SHA-256 aaaa1111 -> bbbb2222)." in reasons
    assert "Input old.csv was read by A only." in reasons
    assert reasons[-1] == "Software: polars 2.0 -> 2.1."
    assert "same settings" in explain("plan", manifest_differences(a, a))[0]


def test_compare_plans_matches_a_hand_computed_case():
    a = pl.DataFrame(
        {
            "accelerator": ["h100", "h100"],
            "region": ["r1", "r1"],
            "quarter": ["2027Q1", "2027Q2"],
            "buy_chips": [8, 0],
            "committed_chips": [0.0, 4.0],
            "cost_cents": [100_000, 50_000],
        }
    )
    b = pl.DataFrame(
        {
            "accelerator": ["h100", "a100"],
            "region": ["r1", "r1"],
            "quarter": ["2027Q1", "2027Q1"],
            "buy_chips": [16, 8],
            "committed_chips": [2.0, 0.0],
            "cost_cents": [150_000, 20_000],
        }
    )
    table = compare_plans(a, b)
    rows = {(r["accelerator"], r["quarter"]): r for r in table.iter_rows(named=True)}
    assert rows[("h100", "2027Q1")]["buy_change"] == 8
    assert rows[("h100", "2027Q1")]["cost_change_usd"] == pytest.approx(500.0)
    assert rows[("h100", "2027Q2")]["cost_change_usd"] == pytest.approx(-500.0)
    assert rows[("a100", "2027Q1")]["buy_a"] == 0.0
    assert table["cost_change_usd"].sum() == pytest.approx(700.0 - 1500.0 + 0.0 + 200.0 + 800.0)


def test_compare_forecasts_uses_only_common_dates():
    def frame(days: list[int], means: list[float]) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "series_id": ["fleet"] * len(days),
                "level": ["fleet"] * len(days),
                "ds": [date(2027, 1, d) for d in days],
                "mean": means,
                "p90": [m * 1.5 for m in means],
            }
        )

    table = compare_forecasts(frame([1, 2, 3], [10.0, 20.0, 30.0]), frame([2, 3, 4], [40, 50, 60]))
    row = table.row(0, named=True)
    assert row["days"] == 2
    assert row["mean_a"] == pytest.approx(25.0)
    assert row["mean_b"] == pytest.approx(45.0)
    assert row["mean_change_pct"] == pytest.approx(0.8)
    assert row["p90_change"] == pytest.approx(30.0)
