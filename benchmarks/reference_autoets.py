"""AutoETS reference for the forecast benchmark, run in its own environment.

statsforecast pins pandas below 3 while the workbench runs on pandas 3, so this script runs
under a separate virtualenv (``make bench-forecast`` builds ``benchmarks/.venv-autoets``).
It reads the series (Parquet: ``series_id, ds, y``), runs the same protocol as the
benchmark (3 rolling windows of ``--horizon`` plus the final forecast, ``--workers``
processes) and writes the final forecast with quantile columns and the wall time.

    python reference_autoets.py SERIES.parquet OUT.parquet --horizon 90 --workers 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl

LEVELS = [50, 80, 90, 95, 98]


def _column(level: float) -> str:
    percent = round(level * 100, 6)
    if percent == int(percent):
        return f"p{int(percent):02d}"
    return "p" + f"{percent:g}".replace(".", "_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("series", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--horizon", type=int, default=90)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--season", type=int, default=7)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    frame = pl.read_parquet(args.series).rename({"series_id": "unique_id"})
    df = frame.to_pandas()
    df["ds"] = pd.to_datetime(df["ds"])
    began = time.perf_counter()
    engine = StatsForecast(
        models=[AutoETS(season_length=args.season)], freq="D", n_jobs=args.workers
    )
    engine.cross_validation(
        df=df, h=args.horizon, n_windows=args.windows, step_size=args.horizon, level=LEVELS
    )
    final: Any = engine.forecast(df=df, h=args.horizon, level=LEVELS)
    seconds = time.perf_counter() - began
    if "unique_id" not in final.columns:
        final = final.reset_index()
    out = pl.from_pandas(final)
    columns = {"mean": pl.col("AutoETS"), "p50": pl.col("AutoETS")}
    for level in LEVELS:
        tail = (100 - level) / 200
        columns[_column(round(tail, 4))] = pl.col(f"AutoETS-lo-{level}")
        columns[_column(round(1 - tail, 4))] = pl.col(f"AutoETS-hi-{level}")
    result = out.select(
        pl.col("unique_id").cast(pl.String).alias("series_id"),
        pl.col("ds").cast(pl.Date),
        **columns,
    )
    result.write_parquet(args.out)
    args.out.with_suffix(".json").write_text(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
