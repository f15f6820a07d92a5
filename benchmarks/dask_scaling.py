"""Scaling of the forecast fan-out: local processes against a Dask cluster on this machine.

Forecasts ``--series`` fleet series (the generator of :mod:`benchmarks.forecast_bench`) four
ways in one run, with the same batches of ``--batch-series`` series each so every way gives
the same forecasts (checked): in this process (1 local process), 2 local processes, and a
Dask cluster started here (``dask scheduler`` + ``dask worker --nthreads 1``) with 1 and with
2 workers. Reports series per second, the cluster's throughput against the local one with as
many processes, and the cluster's added cost per series.

It also measures the batch-size rule: the cluster's round trip for an empty task (per-task
overhead) and the engine's fixed cost per batch (fit of a small and a large batch in this
process), and prints the smallest batch that keeps both under 1% of a batch's time.

    .venv/bin/python -m benchmarks.dask_scaling --series 10000   (make bench-dask)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.forecast_bench import fleet_series
from tests.dask_cluster import local_cluster
from workbench.executors import DaskExecutor, Executor, LocalExecutor, SerialExecutor
from workbench.forecasting import ForecastSettings, run_series_engine

MODELS = ("seasonal_naive", "naive2", "theta")


def _noop(task: int) -> int:
    return task


def _warm(task: int) -> int:
    """Import the engine on a worker, as a long-running cluster's workers have it."""
    import models.engine  # noqa: F401
    import workbench.forecasting  # noqa: F401

    return task


def forecast_seconds(
    frame: pl.DataFrame, settings: ForecastSettings, executor: Executor
) -> tuple[float, pl.DataFrame]:
    began = time.perf_counter()
    result = run_series_engine(frame, settings, freq="1d", executor=executor)
    return time.perf_counter() - began, result.forecast


def task_overhead_ms(executor: DaskExecutor, tasks: int = 200) -> float:
    """Wall time per empty task through the cluster (submit, run, result), in ms."""
    list(executor.map_unordered(_noop, range(20)))  # warm the connection
    began = time.perf_counter()
    list(executor.map_unordered(_noop, range(tasks)))
    return (time.perf_counter() - began) / tasks * 1000


def batch_cost(frame: pl.DataFrame, settings: ForecastSettings) -> tuple[float, float]:
    """(fixed seconds per batch, seconds per series) from one small and one large batch."""
    ids = frame["series_id"].unique(maintain_order=True)
    timings = []
    one = replace(settings, chunks=1)
    forecast_seconds(frame.filter(pl.col("series_id") == ids[0]), one, SerialExecutor())  # warm
    for size in (50, 500):
        part = frame.filter(pl.col("series_id").is_in(ids.head(size).implode()))
        seconds, _ = forecast_seconds(part, one, SerialExecutor())
        timings.append((size, seconds))
    (n1, t1), (n2, t2) = timings
    per_series = (t2 - t1) / (n2 - n1)
    return max(0.0, t1 - per_series * n1), per_series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--horizon", type=int, default=91)
    parser.add_argument("--batch-series", type=int, default=1250)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/dask_scaling.json"))
    args = parser.parse_args()
    os.environ.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})

    frame, _ = fleet_series(args.series, args.horizon)
    n_series = frame["series_id"].n_unique()
    batches = math.ceil(n_series / args.batch_series)
    settings = ForecastSettings(
        horizon=args.horizon, models=MODELS, windows=3, step=args.horizon, chunks=batches
    )
    load_before = os.getloadavg()
    fixed_s, per_series_s = batch_cost(frame, settings)
    rows: list[dict[str, Any]] = []
    reference: pl.DataFrame | None = None

    def record(name: str, workers: int, executor: Executor) -> None:
        nonlocal reference
        seconds, forecast = forecast_seconds(frame, settings, executor)
        if reference is None:
            reference = forecast
        same = forecast.equals(reference)
        rows.append(
            {
                "executor": name,
                "workers": workers,
                "seconds": round(seconds, 2),
                "series_per_s": round(n_series / seconds, 1),
                "ms_per_series": round(seconds / n_series * 1000, 3),
                "same_forecast": same,
                "load_1min": round(os.getloadavg()[0], 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    record("local", 1, SerialExecutor())
    record("local", 2, LocalExecutor(2))
    overhead = {}
    with tempfile.TemporaryDirectory() as logs:
        for workers in (1, 2):
            with (
                local_cluster(workers, Path(logs) / str(workers)) as cluster,
                DaskExecutor(cluster.address) as executor,
            ):
                # Warm the workers' imports, as a long-running cluster would have them.
                list(executor.map_unordered(_warm, range(workers * 2)))
                record("dask", workers, executor)
                overhead[workers] = task_overhead_ms(executor)

    by = {(r["executor"], r["workers"]): r for r in rows}
    summary = {
        "series": n_series,
        "batch_series": args.batch_series,
        "batches": batches,
        "models": list(MODELS),
        "horizon": args.horizon,
        "load_avg_before": [round(x, 2) for x in load_before],
        "rows": rows,
        "task_overhead_ms": {str(k): round(v, 2) for k, v in overhead.items()},
        "dask2_vs_local2": round(
            float(by[("dask", 2)]["series_per_s"]) / float(by[("local", 2)]["series_per_s"]), 3
        ),
        "local2_speedup": round(
            float(by[("local", 2)]["series_per_s"]) / float(by[("local", 1)]["series_per_s"]), 3
        ),
        "dask_added_ms_per_series": {
            str(w): round(
                float(by[("dask", w)]["ms_per_series"]) - float(by[("local", w)]["ms_per_series"]),
                3,
            )
            for w in (1, 2)
        },
    }
    summary["engine_fixed_ms_per_batch"] = round(fixed_s * 1000, 1)
    summary["engine_ms_per_series_in_batch"] = round(per_series_s * 1000, 3)
    summary["min_batch_for_1pct_engine_fixed_cost"] = math.ceil(fixed_s / (0.01 * per_series_s))
    per_series_ms = float(by[("local", 1)]["ms_per_series"])
    worst_overhead = max(overhead.values())
    summary["min_batch_for_1pct_task_overhead"] = math.ceil(worst_overhead / (0.01 * per_series_ms))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
