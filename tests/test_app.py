"""The app's usage page, driven through Streamlit's AppTest with real widget changes."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from tests.app_fixtures import go_to
from workbench.ingest import ingest
from workbench.store import Workspace
from workbench.ui.format import chip_hours
from workbench.usage import ALL, UsageFilter, usage_history, usage_totals, weekday_pattern

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data_samples"


@pytest.fixture(scope="module")
def app_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    workspace = Workspace(tmp_path_factory.mktemp("app") / "workspace").init()
    ingest(workspace, "catalog", [SAMPLE / "catalog" / "sku_catalog.toml"])
    ingest(workspace, "allocations", [SAMPLE / "allocations" / "allocations.csv"])
    ingest(workspace, "jobs", [SAMPLE / "jobs" / "jobs.csv.gz"])
    return workspace


def _app(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(workspace))
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    return go_to(app, "usage")


def _metrics(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def _expected(workspace: Workspace, selection: UsageFilter) -> dict[str, float | None]:
    history = usage_history(
        workspace.read_table("usage_daily"), workspace.read_table("allocations"), selection
    )
    return usage_totals(history)


def _millions(value: float | None) -> str:
    assert value is not None
    return chip_hours(value, short=True)


def test_usage_page_shows_fleet_totals_and_a_chart(app_workspace, monkeypatch):
    app = _app(app_workspace.root, monkeypatch)
    expected = _expected(app_workspace, UsageFilter(grain="week"))
    metrics = _metrics(app)
    assert metrics["Used"] == _millions(expected["chip_hours_used"])
    assert metrics["Allocated"] == _millions(expected["chip_hours_allocated"])
    assert [s.label for s in app.sidebar.selectbox] == ["Accelerator", "Region", "Team"]
    assert [s.label for s in app.main.selectbox] == ["Workload"]
    # The history, and the weekday pattern (no hourly usage here: a note says so).
    assert len(app.get("plotly_chart")) == 2
    assert any("--grain hour" in info.value for info in app.info)


def test_picking_accelerator_region_and_team_narrows_the_numbers(app_workspace, monkeypatch):
    app = _app(app_workspace.root, monkeypatch)
    fleet_used = _metrics(app)["Used"]
    app.selectbox(key="shell_accelerator").set_value("h100-80gb").run()
    assert not app.exception
    h100 = _metrics(app)["Used"]
    assert h100 != fleet_used
    assert h100 == _millions(
        _expected(app_workspace, UsageFilter(accelerator="h100-80gb"))["chip_hours_used"]
    )
    # Region options narrow to the regions that have H100 usage.
    usage = app_workspace.read_table("usage_daily")
    h100_regions = sorted(usage.filter(pl.col("accelerator") == "h100-80gb")["region"].unique())
    assert app.selectbox(key="shell_region").options == [ALL, *h100_regions]
    app.selectbox(key="shell_region").set_value("us-central1").run()
    team = app.selectbox(key="shell_team").options[1]
    app.selectbox(key="shell_team").set_value(team).run()
    assert not app.exception
    selection = UsageFilter(accelerator="h100-80gb", region="us-central1", team=team, grain="week")
    expected = _expected(app_workspace, selection)
    value = expected["chip_hours_used"]
    assert value is not None
    assert _metrics(app)["Used"] == chip_hours(value, short=True)
    # The filter is in the URL, so a link reproduces the view.
    assert app.query_params["accelerator"] == "h100-80gb"
    assert app.query_params["team"] == team


def test_choosing_one_workload_hides_allocations(app_workspace, monkeypatch):
    app = _app(app_workspace.root, monkeypatch)
    app.selectbox(key="usage_workload").set_value("serving").run()
    assert not app.exception
    assert _metrics(app)["Allocated"] == "n/a"
    assert _metrics(app)["Used / allocated"] == "n/a"


def test_grain_changes_the_number_of_periods(app_workspace, monkeypatch):
    app = _app(app_workspace.root, monkeypatch)
    app.radio(key="usage_grain").set_value("month").run()
    monthly = app.dataframe[0].value
    app.radio(key="usage_grain").set_value("day").run()
    daily = app.dataframe[0].value
    assert len(daily) > 28 * len(monthly)
    assert daily["chip_hours_used"].sum() == pytest.approx(monthly["chip_hours_used"].sum())


def test_empty_workspace_explains_what_to_do(tmp_path, monkeypatch):
    workspace = Workspace(tmp_path / "empty").init()
    app = _app(workspace.root, monkeypatch)
    assert "workbench demo" in app.info[0].value
    assert "Usage" in app.title[0].value


def test_usage_history_matches_a_plain_loop(app_workspace):
    usage = app_workspace.read_table("usage_daily")
    history = usage_history(
        usage, app_workspace.read_table("allocations"), UsageFilter(team="speech", grain="month")
    )
    for row in history.iter_rows(named=True):
        start = row["period"]
        end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
        in_month = usage.filter(
            (pl.col("team") == "speech") & (pl.col("date") >= start) & (pl.col("date") < end)
        )
        assert row["chip_hours_used"] == pytest.approx(in_month["chip_hours_used"].sum())
        assert row["chip_hours_queued"] == pytest.approx(in_month["chip_hours_queued"].sum())


def test_a_link_with_query_parameters_opens_that_slice(app_workspace, monkeypatch):
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(app_workspace.root))
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    app.query_params["accelerator"] = "tpu-v5p"
    app.query_params["region"] = "nowhere-1"
    app.run()
    # A value the data does not have falls back to All, with a warning naming it.
    assert any("nowhere-1" in w.value for w in app.sidebar.warning)
    go_to(app, "usage")
    assert app.selectbox(key="shell_accelerator").value == "tpu-v5p"
    assert app.selectbox(key="shell_region").value == ALL
    expected = _expected(app_workspace, UsageFilter(accelerator="tpu-v5p", grain="week"))
    assert _metrics(app)["Used"] == _millions(expected["chip_hours_used"])


def test_weekday_pattern_matches_a_plain_loop(app_workspace):
    usage = app_workspace.read_table("usage_daily")
    pattern = weekday_pattern(usage, UsageFilter(accelerator="h100-80gb"))
    h100 = usage.filter(pl.col("accelerator") == "h100-80gb")
    daily = dict(h100.group_by("date").agg(pl.col("chip_hours_used").sum()).iter_rows())
    first, last = min(daily), max(daily)
    sums = [0.0] * 7
    counts = [0] * 7
    day = first
    while day <= last:
        sums[day.weekday()] += daily.get(day, 0.0)
        counts[day.weekday()] += 1
        day = day.fromordinal(day.toordinal() + 1)
    assert pattern["day"].to_list() == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    assert pattern["days"].to_list() == counts
    assert pattern["chip_hours_used"].to_list() == pytest.approx(
        [s / c for s, c in zip(sums, counts, strict=True)]
    )


def test_hourly_usage_adds_the_hour_of_day_heatmap(tmp_path, monkeypatch):
    from workbench.ingest import IngestOptions

    workspace = Workspace(tmp_path / "hourly").init()
    ingest(workspace, "catalog", [SAMPLE / "catalog" / "sku_catalog.toml"])
    jobs = tmp_path / "jobs.csv"
    header = "job_id,submit_time,start_time,end_time,chips,accelerator,region,team,workload"
    rows = [  # one serving job a weekday 09:00-17:00 UTC for two weeks
        f"j{d},2026-10-{d:02d}T09:00:00Z,2026-10-{d:02d}T09:00:00Z,"
        f"2026-10-{d:02d}T17:00:00Z,8,h100-80gb,us-central1,search,serving"
        for d in range(5, 19)
        if date(2026, 10, d).weekday() < 5
    ]
    jobs.write_text("\n".join([header, *rows]) + "\n")
    ingest(workspace, "jobs", [jobs])
    ingest(workspace, "jobs", [jobs], options=IngestOptions(grain="hour"))
    app = _app(workspace.root, monkeypatch)
    charts = app.get("plotly_chart")
    assert len(charts) == 3  # history, weekdays, weekday x hour
    assert not any("--grain hour" in info.value for info in app.info)
    heatmap = json.loads(charts[2].proto.spec)["data"][0]
    assert heatmap["type"] == "heatmap"
    monday = heatmap["y"].index("Mon")
    assert heatmap["z"][monday][heatmap["x"].index(10)] == pytest.approx(8.0)
    assert heatmap["z"][monday][heatmap["x"].index(20)] == pytest.approx(0.0)
