"""``workbench forecast`` and ``workbench backtest``: fleet runs and bring-your-own series."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from typer.testing import CliRunner

from tests.test_cli import one_line_error, run_workbench
from workbench.cli import app
from workbench.store import Workspace

runner = CliRunner()
FAST = "seasonal_naive,drift,theta"


def _series_file(path: Path, *, hourly: bool = False, n: int = 3) -> Path:
    rng = np.random.default_rng(0)
    parts = []
    length = 24 * 30 if hourly else 200
    for i in range(n):
        ds: list[date] | list[datetime]
        if hourly:
            start = datetime(2026, 1, 1)
            ds = [start + timedelta(hours=k) for k in range(length)]
            season = 10 * np.sin(2 * np.pi * np.arange(length) / 24)
        else:
            ds = [date(2026, 1, 1) + timedelta(days=k) for k in range(length)]
            season = 10 * np.sin(2 * np.pi * np.arange(length) / 7)
        y = 100 + 20 * i + season + rng.normal(0, 2, length)
        parts.append(pl.DataFrame({"series_id": f"warehouse-{i}", "ds": ds, "y": y}))
    frame = pl.concat(parts)
    if path.suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path)
    return path


def test_forecast_a_series_file_writes_quantile_columns(tmp_path: Path) -> None:
    source = _series_file(tmp_path / "daily.csv")
    out = tmp_path / "out" / "forecast.parquet"
    result = runner.invoke(
        app,
        [
            "forecast",
            "--series",
            str(source),
            "--horizon",
            "14",
            "--models",
            FAST,
            "--windows",
            "2",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    forecast = pl.read_parquet(out)
    assert forecast.columns[:5] == ["series_id", "ds", "h", "model", "mean"]
    assert {"p05", "p50", "p95", "p99"} <= set(forecast.columns)
    assert forecast.height == 3 * 14
    assert forecast["ds"].min() == date(2026, 7, 20)  # the day after the last observation
    assert "Chosen models" in result.output


def test_forecast_an_hourly_file_at_its_own_frequency(tmp_path: Path) -> None:
    source = _series_file(tmp_path / "hourly.parquet", hourly=True, n=2)
    result = runner.invoke(
        app,
        [
            "forecast",
            "--series",
            str(source),
            "--horizon",
            "48",
            "--models",
            FAST,
            "--windows",
            "2",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    written = pl.read_parquet(tmp_path / "hourly.forecast.parquet")
    steps = written.filter(pl.col("series_id") == "warehouse-0")["ds"].diff().drop_nulls()
    assert steps.unique().to_list() == [timedelta(hours=1)]


def test_a_bad_series_file_is_one_readable_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,date,value\na,2026-01-01,3\n")
    line = one_line_error(
        run_workbench("forecast", "--series", str(bad), "--horizon", "7", "--models", FAST)
    )
    assert str(bad) in line
    assert "missing column(s) series_id, ds, y" in line
    unknown = one_line_error(
        run_workbench("forecast", "--series", str(bad), "--models", "crystal_ball")
    )
    assert "unknown model(s) crystal_ball" in unknown
    assert "--models" in unknown


def test_backtest_a_series_file_prints_metrics(tmp_path: Path) -> None:
    source = _series_file(tmp_path / "daily.csv")
    out = tmp_path / "metrics.csv"
    result = runner.invoke(
        app,
        [
            "backtest",
            "--series",
            str(source),
            "--horizon",
            "14",
            "--models",
            "seasonal_naive,drift",
            "--windows",
            "2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = pl.read_csv(out)
    assert set(metrics["model"]) == {"seasonal_naive", "drift"}
    assert {"mase", "smape", "coverage_90"} <= set(metrics.columns)
    # On weekly-seasonal data, seasonal naive beats drift.
    by_model = metrics.group_by("model").agg(pl.col("mase").mean())
    mase = dict(zip(by_model["model"], by_model["mase"], strict=True))
    assert mase["seasonal_naive"] < mase["drift"]


def test_forecast_the_fleet_writes_a_run(workspace_copy: Workspace) -> None:
    result = runner.invoke(
        app,
        [
            "forecast",
            "-w",
            str(workspace_copy.root),
            "--horizon",
            "28",
            "--step",
            "28",
            "--windows",
            "2",
            "--models",
            FAST,
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    run = workspace_copy.runs("forecast")[-1]
    assert {"forecast", "backtest", "selection", "fallbacks", "planning", "calibration"} <= set(
        run.outputs()
    )
    assert run.manifest["config"]["horizon"] == 28
    assert "engine theta" in run.manifest["timings"]
    forecast = run.read("forecast")
    assert set(forecast["level"]) == {"fleet", "accelerator", "pool", "team"}
    assert "Peak weekly demand per pool" in result.output
    backtest = runner.invoke(
        app,
        [
            "backtest",
            "-w",
            str(workspace_copy.root),
            "--horizon",
            "14",
            "--windows",
            "2",
            "--models",
            "seasonal_naive,theta",
        ],
    )
    assert backtest.exit_code == 0, backtest.output
    assert workspace_copy.runs("backtest")[-1].read("metrics").height > 0
