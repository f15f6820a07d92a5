"""Forecasting benchmark: our automatic selection against AutoETS, Prophet and seasonal naive.

The series are the sample fleet's team-level demand series (the generator of
``workbench sample-fleet`` with more team copies, seed 7): ``--series`` daily series with 3
years of history each. Every method does the same work: 3 rolling-origin backtest windows
of ``--horizon`` days plus the final forecast, on ``--workers`` cores. The final forecasts
are scored against the generator's true future demand:

* MASE (seasonal period 7, scale from each series' history),
* mean pinball loss over the quantiles 0.025 ... 0.99, scaled like MASE,
* coverage of the 90% interval (p05 - p95),
* wall time (Prophet runs on a random ``--prophet-sample`` series and its time is scaled to
  all series; its scores are on that sample, next to ours on the same sample).

Then the scaling run: ours on 10x the series (``--no-scaling`` skips it).

    python benchmarks/forecast_bench.py                   # 1,000 series, then 10,000
    python benchmarks/forecast_bench.py --series 200 --no-scaling    # a quick look

Results print as Markdown (for the README) and go to ``benchmarks/out/forecast.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from models.backtest import backtest_panel
from models.base import create
from models.frequency import Frequency
from models.panel import Panel
from models.quantiles import DEFAULT_QUANTILES, quantile_column
from workbench.executors import default_executor
from workbench.forecasting import ForecastSettings, run_series_engine
from workbench.sample_fleet.demand import Scale, simulate_fleet

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
SEASON = 7
LEVELS = DEFAULT_QUANTILES


def fleet_series(n_series: int, horizon: int, seed: int = 7) -> tuple[pl.DataFrame, np.ndarray]:
    """``n_series`` full-history team series and their true future demand (n x horizon)."""
    copies = 1
    while True:
        fleet = simulate_fleet(replace(Scale.named("small"), team_copies=copies), seed)
        full = [i for i, s in enumerate(fleet.series) if s.start_index == 0]
        if len(full) >= n_series:
            break
        copies = int(copies * n_series / max(len(full), 1)) + 1
    chosen = full[:n_series]
    history = fleet.history_days
    start = fleet.days[0].astype("datetime64[D]").item()
    ds = pl.date_range(
        start, start + (history - 1) * (fleet.days[1] - fleet.days[0]).item(), eager=True
    )
    frames = []
    for k, i in enumerate(chosen):
        spec = fleet.series[i]
        frames.append(
            pl.DataFrame(
                {
                    "series_id": f"{spec.team}/{spec.accelerator}/{spec.region}/{k}",
                    "ds": ds,
                    "y": fleet.demand_chips[i, :history],
                }
            )
        )
    truth = fleet.demand_chips[chosen, history : history + horizon]
    return pl.concat(frames), truth


def scales(frame: pl.DataFrame) -> np.ndarray:
    """In-sample seasonal-naive MAE per series (MASE denominator), in series order."""
    values = frame["y"].to_numpy().reshape(frame["series_id"].n_unique(), -1)
    diffs = np.abs(values[:, SEASON:] - values[:, :-SEASON]).mean(axis=1)
    return np.where(diffs > 0, diffs, 1.0)


def score(
    mean: np.ndarray, quantiles: dict[float, np.ndarray], truth: np.ndarray, scale: np.ndarray
) -> dict[str, float]:
    """MASE, scaled mean pinball loss and 90% coverage of forecasts (series x horizon)."""
    mase = float(np.mean(np.abs(mean - truth).mean(axis=1) / scale))
    losses = []
    for q, values in quantiles.items():
        diff = truth - values
        losses.append((np.maximum(q * diff, (q - 1) * diff).mean(axis=1) / scale).mean())
    inside = (truth >= quantiles[0.05]) & (truth <= quantiles[0.95])
    return {"mase": mase, "pinball": float(np.mean(losses)), "coverage_90": float(inside.mean())}


def matrices(
    forecast: pl.DataFrame, ids: list[str], horizon: int
) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """Forecast frame -> (mean, {level: matrix}) in the order of ``ids``."""
    order = pl.DataFrame({"series_id": ids, "__i": np.arange(len(ids))})
    sorted_ = forecast.join(order, on="series_id").sort("__i", "ds")
    mean = sorted_["mean"].to_numpy().reshape(len(ids), horizon)
    qs = {q: sorted_[quantile_column(q)].to_numpy().reshape(len(ids), horizon) for q in LEVELS}
    return mean, qs


def run_ours(
    frame: pl.DataFrame, horizon: int, workers: int
) -> tuple[pl.DataFrame, float, dict[str, float]]:
    settings = ForecastSettings(horizon=horizon, windows=3, step=horizon, workers=workers)
    began = time.perf_counter()
    result = run_series_engine(frame, settings, freq="1d", executor=default_executor(workers))
    seconds = time.perf_counter() - began
    chosen = result.selection["model"].value_counts().sort("count", descending=True)
    return (
        result.forecast,
        seconds,
        dict(zip(chosen["model"], chosen["count"] / frame["series_id"].n_unique(), strict=True)),
    )


def run_seasonal_naive(frame: pl.DataFrame, horizon: int) -> tuple[pl.DataFrame, float]:
    panel = Panel.from_frame(frame, Frequency.parse("1d"))
    began = time.perf_counter()
    backtest_panel(panel, ["seasonal_naive"], horizon, windows=3, step=horizon, fallback=())
    forecast = create("seasonal_naive").fit_panel(panel)
    result = forecast.predict(horizon, LEVELS)
    return result, time.perf_counter() - began


def run_autoets(
    frame: pl.DataFrame, horizon: int, workers: int, python: Path
) -> tuple[pl.DataFrame, float]:
    """AutoETS through ``reference_autoets.py`` under its own environment's ``python``."""
    if not python.exists():
        raise SystemExit(
            f"no AutoETS environment at {python}: run 'make bench-forecast' (it builds "
            "benchmarks/.venv-autoets with statsforecast), or pass --skip autoets"
        )
    with tempfile.TemporaryDirectory(prefix="autoets-") as scratch:
        series, out = Path(scratch) / "series.parquet", Path(scratch) / "forecast.parquet"
        frame.write_parquet(series)
        command = [
            str(python),
            str(ROOT / "benchmarks" / "reference_autoets.py"),
            str(series),
            str(out),
            "--horizon",
            str(horizon),
            "--workers",
            str(workers),
        ]
        subprocess.run(command, check=True)
        seconds = float(json.loads(out.with_suffix(".json").read_text())["seconds"])
        forecast = pl.read_parquet(out)
    clipped = [
        pl.col(c).clip(lower_bound=0.0) for c in forecast.columns if c not in ("series_id", "ds")
    ]
    return forecast.with_columns(clipped), seconds


def run_prophet(frame: pl.DataFrame, horizon: int, sample: list[str]) -> tuple[pl.DataFrame, float]:
    subset = frame.filter(pl.col("series_id").is_in(sample))
    panel = Panel.from_frame(subset, Frequency.parse("1d"))
    logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
    began = time.perf_counter()
    backtest_panel(panel, ["prophet"], horizon, windows=3, step=horizon, fallback=())
    forecast = create("prophet").fit_panel(panel).predict(horizon, LEVELS)
    return forecast, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--horizon", type=int, default=90)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--prophet-sample", type=int, default=100)
    parser.add_argument("--no-scaling", action="store_true", help="skip the 10x-series run")
    parser.add_argument("--skip", default="", help="comma-separated: autoets,prophet")
    parser.add_argument(
        "--autoets-python",
        type=Path,
        default=ROOT / "benchmarks" / ".venv-autoets" / "bin" / "python",
        help="python of the environment with statsforecast",
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    warnings.simplefilter("ignore")
    frame, truth = fleet_series(args.series, args.horizon)
    ids = frame["series_id"].unique(maintain_order=True).to_list()
    scale = scales(frame)
    rows: list[dict[str, Any]] = []

    forecast, seconds, shares = run_ours(frame, args.horizon, args.workers)
    mean, qs = matrices(forecast, ids, args.horizon)
    ours_mean, ours_qs = mean, qs
    seconds_ours = seconds
    ours = {"method": "ours (auto selection)", "seconds": seconds, **score(mean, qs, truth, scale)}
    rows.append(ours)
    print(
        f"ours: {seconds:,.1f} s; chosen: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()),
        flush=True,
    )

    forecast, seconds = run_seasonal_naive(frame, args.horizon)
    mean, qs = matrices(forecast, ids, args.horizon)
    rows.append({"method": "seasonal naive", "seconds": seconds, **score(mean, qs, truth, scale)})

    if "autoets" not in skip:
        forecast, seconds = run_autoets(frame, args.horizon, args.workers, args.autoets_python)
        mean, qs = matrices(forecast, ids, args.horizon)
        rows.append(
            {"method": "statsforecast AutoETS", "seconds": seconds, **score(mean, qs, truth, scale)}
        )
        print(f"AutoETS: {seconds:,.1f} s", flush=True)

    if "prophet" not in skip:
        rng = np.random.default_rng(0)
        sample_idx = np.sort(
            rng.choice(len(ids), size=min(args.prophet_sample, len(ids)), replace=False)
        )
        sample = [ids[i] for i in sample_idx]
        forecast, seconds = run_prophet(frame, args.horizon, sample)
        mean, qs = matrices(forecast, sample, args.horizon)
        scaled_seconds = seconds * len(ids) / len(sample)
        rows.append(
            {
                "method": f"Prophet ({len(sample)} series, time x{len(ids) / len(sample):g})",
                "seconds": scaled_seconds,
                **score(mean, qs, truth[sample_idx], scale[sample_idx]),
            }
        )
        rows.append(
            {
                "method": f"ours on the same {len(sample)} series",
                "seconds": float("nan"),
                **score(
                    ours_mean[sample_idx],
                    {q: v[sample_idx] for q, v in ours_qs.items()},
                    truth[sample_idx],
                    scale[sample_idx],
                ),
            }
        )

    scaling: dict[str, float] = {}
    if not args.no_scaling:
        big, _ = fleet_series(args.series * 10, args.horizon)
        _, big_seconds, _ = run_ours(big, args.horizon, args.workers)
        scaling = {
            "series": args.series * 10,
            "seconds": big_seconds,
            "ratio": big_seconds / seconds_ours,
        }

    print()
    days = frame.height // args.series
    print(
        f"{args.series:,} daily series x {days:,} days, horizon {args.horizon}, "
        f"3 windows + final, {args.workers} workers"
    )
    print()
    print("| method | MASE | pinball (scaled) | 90% coverage | wall time |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        wall = "-" if np.isnan(row["seconds"]) else f"{row['seconds']:,.1f} s"
        print(
            f"| {row['method']} | {row['mase']:.3f} | {row['pinball']:.3f} "
            f"| {row['coverage_90']:.1%} | {wall} |"
        )
    if scaling:
        print()
        print(
            f"Scaling: {scaling['series']:,} series in {scaling['seconds']:,.1f} s "
            f"({scaling['ratio']:.2f}x the time of {args.series:,})."
        )
    _print_targets(rows, scaling)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "forecast.json").write_text(
        json.dumps(
            {"rows": rows, "scaling": scaling, "args": vars(args), "chosen": shares},
            indent=2,
            default=str,
        )
    )


def _print_targets(rows: list[dict[str, Any]], scaling: dict[str, float]) -> None:
    """The issue's targets, measured: ratios against each reference."""
    ours = rows[0]
    others = [r for r in rows[1:] if not r["method"].startswith("ours")]
    if not others:
        return
    print()
    best = min(others, key=lambda r: r["mase"])
    print(
        f"MASE: ours / best other ({best['method']}) = "
        f"{ours['mase'] / best['mase']:.3f} (target <= 0.9)"
    )
    for row in others:
        print(f"pinball: ours {ours['pinball']:.3f} vs {row['method']} {row['pinball']:.3f}")
    print(f"90% interval coverage: {ours['coverage_90']:.1%} (target 87-93%)")
    for row in others:
        if row["method"].startswith(("statsforecast", "Prophet")):
            print(f"wall time: {row['method']} / ours = {row['seconds'] / ours['seconds']:.1f}x")
    if scaling:
        print(
            f"10x series: {scaling['ratio']:.2f}x the time (target <= 11x); "
            f"{scaling['series']:,.0f} series in {scaling['seconds']:,.0f} s (target < 900 s)"
        )


if __name__ == "__main__":
    main()
