"""Forecasts and backtests on a real Dask cluster equal the local run's, a lost worker too.

The fixture starts ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1
(see :mod:`tests.dask_cluster`); the same batches run locally and on the cluster must give
the same forecasts for the same seed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from benchmarks.forecast_bench import fleet_series
from models.frequency import Frequency
from models.panel import Panel
from tests.dask_cluster import Cluster, free_port, local_cluster
from workbench.cli import app
from workbench.errors import WorkbenchError
from workbench.executors import DaskExecutor, SerialExecutor
from workbench.fanout import backtest_batches
from workbench.forecasting import ForecastSettings, run_series_engine

# Fast vectorised models: the point is where batches run, not how long they take.
MODELS = ("seasonal_naive", "naive2", "theta")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with local_cluster(2, tmp_path_factory.mktemp("dask-logs")) as running:
        yield running


@pytest.fixture(scope="module")
def series() -> pl.DataFrame:
    frame, _ = fleet_series(12, 28, seed=3)
    # The last 200 days are plenty to backtest two 28-day windows, and quick to fit.
    return frame.filter(pl.col("ds") > pl.col("ds").max() - pl.duration(days=200))


def _settings(chunks: int) -> ForecastSettings:
    return ForecastSettings(horizon=28, models=MODELS, windows=2, step=28, seed=5, chunks=chunks)


def test_cluster_forecast_equals_local_forecast(cluster: Cluster, series: pl.DataFrame) -> None:
    local = run_series_engine(series, _settings(4), freq="1d", executor=SerialExecutor())
    done: list[int] = []
    with DaskExecutor(cluster.address) as executor:
        assert executor.workers == 2
        remote = run_series_engine(
            series, _settings(4), freq="1d", executor=executor, on_progress=done.append
        )
    assert sorted(done) == [3, 3, 3, 3]  # progress per batch, from the cluster's futures
    assert_frame_equal(remote.forecast, local.forecast)
    assert_frame_equal(remote.selection, local.selection)


def test_cluster_backtest_equals_local_backtest(cluster: Cluster, series: pl.DataFrame) -> None:
    panel = Panel.from_frame(series, Frequency.parse("1d"))
    kwargs = {"windows": 2, "step": 28, "seed": 5, "batches": 3}
    local, local_training = backtest_batches(panel, MODELS, 28, **kwargs)  # type: ignore[arg-type]
    with DaskExecutor(cluster.address) as executor:
        remote, remote_training = backtest_batches(
            panel,
            MODELS,
            28,
            executor=executor,
            **kwargs,  # type: ignore[arg-type]
        )
    assert_frame_equal(remote, local)
    assert_frame_equal(remote_training, local_training)


def test_cli_forecast_and_backtest_take_a_scheduler(
    cluster: Cluster, series: pl.DataFrame, tmp_path: Path
) -> None:
    """The scheduler from the environment; one batch per cluster thread, as --workers 2."""
    path = tmp_path / "warehouse.parquet"
    series.write_parquet(path)
    runner = CliRunner()
    common = ["--series", str(path), "--horizon", "28", "--models", ",".join(MODELS)]
    out = tmp_path / "remote.parquet"
    result = runner.invoke(
        app,
        ["forecast", *common, "--windows", "2", "--seed", "5", "--out", str(out)],
        env={"WORKBENCH_DASK_SCHEDULER": cluster.address},
    )
    assert result.exit_code == 0, result.output
    local = run_series_engine(series, _settings(2), freq="1d", executor=SerialExecutor())
    columns = ["series_id", "ds", "mean", "p50", "p90"]
    assert_frame_equal(
        pl.read_parquet(out).select(columns).sort("series_id", "ds"),
        local.forecast.select(columns).sort("series_id", "ds"),
        check_dtypes=False,
    )
    result = runner.invoke(
        app, ["backtest", *common, "--windows", "2", "--scheduler", cluster.address]
    )
    assert result.exit_code == 0, result.output
    assert "mase" in result.output.lower()


def test_an_unreachable_scheduler_is_one_readable_error() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(WorkbenchError, match="cannot reach the Dask scheduler") as error:
        DaskExecutor(f"tcp://127.0.0.1:{port}", timeout=2)
    assert error.value.fix and "dask scheduler" in error.value.fix


@pytest.mark.slow
def test_a_run_survives_a_lost_worker(tmp_path: Path, series: pl.DataFrame) -> None:
    settings = ForecastSettings(horizon=28, models=MODELS, windows=2, step=28, seed=5, chunks=8)
    local = run_series_engine(series, settings, freq="1d", executor=SerialExecutor())
    with local_cluster(2, tmp_path / "logs") as lossy, DaskExecutor(lossy.address) as executor:
        done: list[int] = []

        def kill_after_first_batch() -> None:
            deadline = time.monotonic() + 60
            while not done and time.monotonic() < deadline:
                time.sleep(0.05)
            lossy.kill_worker(0)

        killer = threading.Thread(target=kill_after_first_batch)
        killer.start()
        remote = run_series_engine(
            series, settings, freq="1d", executor=executor, on_progress=done.append
        )
        killer.join()
        assert lossy.workers[0].poll() is not None  # the worker really died mid-run
    assert sum(done) == series["series_id"].n_unique()
    assert_frame_equal(remote.forecast, local.forecast)
