"""``workbench reclaim`` on the ingested sample fleet, with and without a forecast run."""

from __future__ import annotations

import shutil
from decimal import Decimal

import polars as pl
import pytest

from tests.test_cli import invoke, run_workbench
from workbench import cli
from workbench.cli_forecast import run_fleet_forecast
from workbench.forecasting import ForecastSettings
from workbench.reclaim import RECLAIM_COLUMNS
from workbench.store import Workspace
from workbench.tco import owned_cost

FAST = ForecastSettings(
    models=("seasonal_naive", "theta"),
    horizon=91,
    step=91,
    windows=2,
    sample_paths=100,
    workers=1,
)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(cli.console, "width", 220)


@pytest.fixture(scope="module")
def forecast_workspace(sample_workspace, tmp_path_factory) -> Workspace:
    """The sample workspace plus a fast forecast run (module-wide; do not change it)."""
    target = tmp_path_factory.mktemp("reclaim") / "workspace"
    shutil.copytree(sample_workspace.workspace.root, target)
    workspace = Workspace(target)
    run_fleet_forecast(workspace, FAST, quiet=True)
    return workspace


@pytest.fixture
def forecast_copy(forecast_workspace, tmp_path) -> Workspace:
    target = tmp_path / "workspace"
    shutil.copytree(forecast_workspace.root, target)
    return Workspace(target)


def test_reclaim_prints_a_ranked_table_and_writes_a_reclaim_run(forecast_copy, tmp_path):
    out = tmp_path / "reclaim.csv"
    result = invoke("reclaim", "--out", str(out), "--workspace", str(forecast_copy.root))
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Reclaim as of 2026-10-31" in text
    assert "forecast and risk over 2026-11-01 to 2027-01-30" in text
    assert "team level" in text
    (run,) = forecast_copy.runs("reclaim")
    table = run.read("reclaim")
    assert tuple(table.columns) == RECLAIM_COLUMNS
    assert (
        table.height
        == forecast_copy.read_table("allocations")
        .filter(
            (pl.col("valid_from") <= pl.date(2026, 10, 31))
            & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= pl.date(2026, 10, 31)))
        )
        .select("team", "accelerator", "region")
        .unique()
        .height
    )
    # Ranked by savings; every number keeps its promises.
    savings = table["annual_savings_usd"].to_list()
    assert savings == sorted(savings, reverse=True)
    assert table["rank"].to_list() == list(range(1, table.height + 1))
    assert (table["reclaimable_chips"] >= 0).all()
    assert (table["recommended_chips"] >= table["used_p95_chips"]).all()
    assert (table["recommended_chips"] >= table["forecast_p90_chips"]).all()
    assert (table["recommended_chips"] % 8 == 0).all()
    expected = (table["allocated_chips"] - table["recommended_chips"]).clip(lower_bound=0)
    assert (table["reclaimable_chips"] - expected).abs().max() == pytest.approx(0.0)
    assert (table["forecast_source"] == "forecast").all()
    assert table["risk"].is_between(0, 1).all()
    # Savings: reclaimable x 8,760 h x the pool's owned cost per chip-hour, to the cent.
    rates = owned_cost(
        forecast_copy.read_table("price_book"), forecast_copy.read_table("sku_catalog")
    )
    top = table.row(0, named=True)
    assert top["reclaimable_chips"] > 0
    rate = rates.filter(
        (pl.col("accelerator") == top["accelerator"]) & (pl.col("region") == top["region"])
    )["owned_usd_per_chip_hour"].item()
    assert float(top["annual_savings_usd"]) == pytest.approx(
        top["reclaimable_chips"] * 8760 * rate, abs=0.01
    )
    # The printed table: the top row with chips, dollars with commas, a risk in percent.
    dollars = f"${int(top['annual_savings_usd']):,}."
    line = next(line for line in text.splitlines() if line.lstrip().startswith("1 "))
    assert top["team"] in line
    assert top["pool"] in line
    assert dollars in line
    assert "%" in line
    assert f"{top['reclaimable_chips']:,.0f}" in line
    assert f"Run {run.run_id} committed" in text
    assert run.manifest["config"]["forecast_run"] == forecast_copy.runs("forecast")[-1].run_id
    written = pl.read_csv(out)
    assert written["team"].to_list() == table["team"].to_list()


def test_the_ongoing_training_campaign_protects_its_capacity(forecast_copy):
    # Two campaigns of recommendations on A100s in us-east4 run into the quarter:
    # EV-0129 (975.4 chips, to 2026-11-16) and EV-0133 (851 chips, to 2026-11-26).
    result = invoke(
        "reclaim",
        "--team",
        "recommendations",
        "--pool",
        "a100-80gb/us-east4",
        "--workspace",
        str(forecast_copy.root),
    )
    assert result.exit_code == 0, result.output
    row = forecast_copy.runs("reclaim")[-1].read("reclaim").row(0, named=True)
    assert row["event_chips"] == pytest.approx(975.4 + 851.0)
    assert row["recommended_chips"] >= (row["used_p50_chips"] + 1826.4) * 1.1
    assert row["reclaimable_chips"] == 0.0


def test_filters_headroom_and_the_fallback_without_a_forecast(workspace_copy):
    result = invoke(
        "reclaim",
        "--team",
        "vision",
        "--headroom",
        "0.2",
        "--lookback",
        "60",
        "--workspace",
        str(workspace_copy.root),
    )
    assert result.exit_code == 0, result.output
    assert "note: no forecast run" in result.output
    assert "n/a" in result.output
    (run,) = workspace_copy.runs("reclaim")
    table = run.read("reclaim")
    assert set(table["team"]) == {"vision"}
    assert table["risk"].is_null().all()
    assert table["forecast_source"].str.starts_with("fallback").all()
    assert (table["recommended_chips"] >= table["used_p95_chips"] * 1.2 - 1e-6).all()
    assert run.manifest["config"]["headroom"] == 0.2
    assert run.manifest["config"]["forecast_run"] is None
    assert table["annual_savings_usd"].dtype == pl.Decimal(38, 2)
    assert table["annual_savings_usd"].sum() >= Decimal(0)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--pool", "h100-80gb"), "field '--pool': 'h100-80gb' is not a pool"),
        (("--team", "nobody"), "field '--team': no allocation for team 'nobody'"),
        (("--headroom", "-1"), "field 'headroom': headroom is out of range"),
        (("--pool", "h100-80gb/mars-1"), "field '--pool': no allocation in pool"),
    ],
)
def test_bad_options_are_one_line_errors(sample_workspace, args, words):
    result = run_workbench("reclaim", *args, "--workspace", str(sample_workspace.workspace.root))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert words in line
