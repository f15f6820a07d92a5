"""The forecast explorer, driven through AppTest, and its library (workbench.forecast_explorer)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.app_fixtures import build_app_workspace, open_app
from tests.conftest import IngestedSample
from workbench.forecast_explorer import (
    band_columns,
    decompose,
    events_on_series,
    model_comparison,
    series_catalog,
    series_in_slice,
)
from workbench.store import Workspace
from workbench.ui.format import chips


@pytest.fixture(scope="module")
def workspace(
    sample_workspace: IngestedSample, tmp_path_factory: pytest.TempPathFactory
) -> Workspace:
    return build_app_workspace(
        sample_workspace, tmp_path_factory.mktemp("forecast") / "ws", plan=False
    )


def _metrics(app) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def _trace(app, name: str) -> dict:
    spec = json.loads(app.get("plotly_chart")[0].proto.spec)
    return next(t for t in spec["data"] if t.get("name") == name)


def test_explorer_opens_the_slice_and_follows_the_series_picker(workspace, monkeypatch):
    app = open_app(workspace.root, monkeypatch, "forecast", {"accelerator": "h100-80gb"})
    run = workspace.runs("forecast")[-1]
    forecast = run.read("forecast")
    picker = app.selectbox(key="forecast_series")
    assert picker.value == "accelerator=h100-80gb"
    assert all("h100-80gb" in option for option in picker.options)
    assert _metrics(app)["Forecast mean over the horizon"] == chips(
        forecast.filter(pl.col("series_id") == "accelerator=h100-80gb")["mean"].mean()
    )
    pool = "pool=h100-80gb/us-east4"
    picker.set_value(pool).run()
    assert not app.exception
    own = forecast.filter(pl.col("series_id") == pool)
    assert _metrics(app)["Forecast mean over the horizon"] == chips(own["mean"].mean())
    assert _metrics(app)["Highest daily p90"] == chips(own["p90"].max())
    # The model table is the backtest's, best first, with the chosen model marked.
    expected = model_comparison(run.read("backtest"), run.read("selection"), pool)
    shown = next(d.value for d in app.dataframe if "mase_mean" in d.value.columns)
    assert list(shown["model"]) == expected["model"].to_list()
    assert list(shown["mase_mean"]) == pytest.approx(expected["mase_mean"].to_list())
    chosen = run.read("selection").filter(pl.col("series_id") == pool)["model"].item()
    assert any(f"Chosen: `{chosen}`" in m.value for m in app.markdown)
    # Fan chart with both bands and the mean, and the decomposition chart.
    assert len(app.get("plotly_chart")) == 2
    assert _trace(app, "forecast mean")["y"] == pytest.approx(own["mean"].to_list())
    upper = _trace(app, "p05-p95")["y"][: own.height]
    assert upper == pytest.approx(own["p95"].to_list())


def test_history_window_changes_the_chart(workspace, monkeypatch):
    app = open_app(workspace.root, monkeypatch, "forecast")
    assert app.selectbox(key="forecast_series").value == "fleet"
    assert len(_trace(app, "demand (history)")["x"]) == 365
    app.radio(key="forecast_history").set_value("6 months").run()
    assert len(_trace(app, "demand (history)")["x"]) == 182
    app.radio(key="forecast_history").set_value("all").run()
    history = workspace.runs("forecast")[-1].read("history")
    assert (
        len(_trace(app, "demand (history)")["x"])
        == history.filter(pl.col("series_id") == "fleet").height
    )


def test_without_a_forecast_run_the_page_says_what_to_run(tmp_path: Path, monkeypatch):
    empty = Workspace(tmp_path / "empty").init()
    app = open_app(empty.root, monkeypatch, "forecast")
    assert "workbench forecast" in app.info[0].value


def test_series_in_slice_holds_the_slice_and_what_is_under_it(workspace):
    catalog = series_catalog(workspace.runs("forecast")[-1].read("forecast"))
    assert catalog["series_id"][0] == "fleet"
    assert catalog["level"].to_list().index("team") > catalog["level"].to_list().index("pool")
    assert series_in_slice(catalog).height == catalog.height
    pools = series_in_slice(catalog, region="us-east4")
    assert set(pools["level"]) == {"pool", "team"}
    assert (pools["region"] == "us-east4").all()
    team = series_in_slice(catalog, team="speech")
    assert set(team["level"]) == {"team"}


def test_decomposition_adds_up_and_finds_the_weekly_shape():
    days = 140
    start = date(2026, 1, 5)  # a Monday
    weekly = np.array([10.0, 10.0, 10.0, 10.0, 10.0, -25.0, -25.0])
    y = 100.0 + 0.5 * np.arange(days) + np.tile(weekly, days // 7)
    history = pl.DataFrame({"ds": [start + timedelta(days=i) for i in range(days)], "y": y})
    parts = decompose(history)
    total = parts["trend"] + parts["seasonal"] + parts["remainder"]
    assert total.to_list() == pytest.approx(parts["observed"].to_list())
    saturday = parts.filter(pl.col("ds").dt.weekday() == 6)["seasonal"].mean()
    assert saturday == pytest.approx(-25.0, abs=2.0)
    assert decompose(history.head(10)).is_empty()


def test_events_on_a_series_match_its_keys_and_window():
    events = pl.DataFrame(
        {
            "event_id": ["E1", "E2", "E3", "E4"],
            "name": ["launch", "campaign", "other pool", "too early"],
            "kind": ["launch", "training_campaign", "launch", "training_campaign"],
            "start": [date(2026, 12, 1), date(2027, 1, 1), date(2026, 12, 1), date(2025, 1, 1)],
            "end": [None, date(2027, 2, 1), None, date(2025, 2, 1)],
            "accelerator": ["h100", "h100", "h100", "h100"],
            "region": ["r1", "r1", "r2", "r1"],
            "team": ["a", None, "a", "a"],
            "chips": [10.0, 50.0, 5.0, 7.0],
            "probability": [0.5, 1.0, 1.0, 1.0],
        }
    )
    applied = pl.DataFrame(
        {"event_id": ["E1"], "series_id": ["pool=h100/r1"], "expected_chip_days": [300.0]}
    )
    series = {"series_id": "pool=h100/r1", "accelerator": "h100", "region": "r1", "team": None}
    found = events_on_series(events, applied, series, date(2026, 6, 1), date(2027, 6, 1))
    assert found["event_id"].to_list() == ["E1", "E2"]
    assert found["expected_chip_days"].to_list() == [300.0, None]
    assert band_columns() == [("p05", "p95"), ("p25", "p75")]
