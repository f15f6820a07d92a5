"""Held-out interval coverage of fleet forecasts at every level (``make bench-calibration``).

Ingests the sample fleet into a temporary workspace, forecasts from several origins a
quarter apart (each with usage up to that day only), and scores every level of the
hierarchy (fleet, accelerator, pool, team) against the generator's true demand after the
origin: 80/90/95% interval coverage, share below the median, WAPE of the mean. Runs with and
without the per-level calibration in one go and prints a Markdown table for the README.

    python benchmarks/level_coverage.py                      # 6 origins, h = 182, fast models
    python benchmarks/level_coverage.py --models default     # the full candidate set (slower)
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import polars as pl

from models.engine import DEFAULT_CANDIDATES
from workbench.cli_plan import FAST_MODELS
from workbench.forecasting import ForecastSettings
from workbench.held_out import INTERVALS, coverage_by_level, held_out_forecasts, origins_before
from workbench.ingest import ingest
from workbench.store import Workspace

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data_samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origins", type=int, default=6, help="forecast origins, 91 days apart")
    parser.add_argument("--horizon", type=int, default=182, help="days forecast from each")
    parser.add_argument("--models", choices=("fast", "default"), default="fast")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as folder:
        ws = Workspace(Path(folder) / "workspace").init()
        ingest(ws, "catalog", [SAMPLE / "catalog" / "sku_catalog.toml"])
        ingest(ws, "events", [SAMPLE / "events" / "events.csv"])
        ingest(ws, "jobs", [SAMPLE / "jobs" / "jobs.csv.gz"])
        usage, events = ws.read_table("usage_daily"), ws.read_table("events")
        catalog = ws.read_table("sku_catalog")
    truth = pl.read_parquet(SAMPLE / "truth" / "demand_daily.parquet")
    origins = origins_before(usage["date"].max(), args.horizon, args.origins)  # type: ignore[arg-type]
    models = FAST_MODELS if args.models == "fast" else DEFAULT_CANDIDATES
    settings = ForecastSettings(horizon=args.horizon, models=models, sample_paths=200, workers=1)
    tables = {}
    for label, calibrated in (("per-level calibration", True), ("engine calibration only", False)):

        def progress(day: object, seconds: float, label: str = label) -> None:
            print(f"  {label}: origin {day} in {seconds:.1f} s", flush=True)

        held = held_out_forecasts(
            usage,
            events,
            catalog,
            truth,
            replace(settings, level_calibration=calibrated),
            origins,
            on_origin=progress,
        )
        tables[label] = coverage_by_level(held.scored)
    first, last = min(origins), max(origins)
    print(
        f"\n{len(origins)} origins from {first} to {last}, horizon {args.horizon} days, "
        f"{args.models} models; scored on the generator's true demand\n"
    )
    names = list(INTERVALS)
    print(
        "| level | series | "
        + " | ".join(f"{n} covered" for n in names)
        + " | below median | WAPE | without per-level calibration (80/90/95%) |"
    )
    print("|---|---:|" + "---:|" * len(names) + "---:|---:|---|")
    base = {row["level"]: row for row in tables["engine calibration only"].iter_rows(named=True)}
    for row in tables["per-level calibration"].iter_rows(named=True):
        old = base.get(row["level"], {})
        before = " / ".join(f"{old.get(n, float('nan')):.0%}" for n in names)
        print(
            f"| {row['level']} | {row['series']} | "
            + " | ".join(f"{row[n]:.1%}" for n in names)
            + f" | {row['below median']:.0%} | {row['WAPE']:.1%} | {before} |"
        )


if __name__ == "__main__":
    main()
