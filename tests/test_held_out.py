"""Held-out calibration of the fleet forecast at every level (workbench.held_out)."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from tests.conftest import SAMPLE, IngestedSample
from workbench.cli_plan import FAST_MODELS
from workbench.forecasting import ForecastSettings
from workbench.held_out import coverage_by_level, held_out_forecasts, origins_before


def test_origins_leave_room_for_the_whole_horizon() -> None:
    assert origins_before(date(2026, 10, 31), 182, 3) == [
        date(2026, 5, 2),
        date(2026, 1, 31),
        date(2025, 11, 1),
    ]


def test_coverage_counts_outcomes_inside_each_interval() -> None:
    scored = pl.DataFrame(
        {
            "origin": [date(2026, 1, 1)] * 4,
            "series_id": ["fleet", "fleet", "team=a", "team=a"],
            "level": ["fleet", "fleet", "team", "team"],
            "y": [10.0, 30.0, 5.0, 5.0],
            "mean": [10.0, 10.0, 4.0, 6.0],
            "p2_5": [0.0] * 4,
            "p05": [1.0] * 4,
            "p10": [2.0] * 4,
            "p50": [10.0, 10.0, 5.0, 5.0],
            "p90": [20.0, 20.0, 9.0, 9.0],
            "p95": [25.0, 25.0, 9.5, 9.5],
            "p97_5": [40.0, 40.0, 10.0, 10.0],
        }
    )
    table = {row["level"]: row for row in coverage_by_level(scored).iter_rows(named=True)}
    assert list(table) == ["fleet", "team"]  # top level first
    assert table["fleet"]["80%"] == 0.5 and table["fleet"]["95%"] == 1.0
    assert table["fleet"]["below median"] == 0.5
    assert table["fleet"]["WAPE"] == pytest.approx(20 / 40)
    assert table["team"]["80%"] == 1.0 and table["team"]["WAPE"] == pytest.approx(2 / 10)


@pytest.mark.slow
def test_intervals_stay_calibrated_at_every_level_on_held_out_quarters(
    sample_workspace: IngestedSample,
) -> None:
    """Three origins a quarter apart, each forecast from its own past, scored on the true
    demand after it: every level's 80% and 90% intervals cover close to what they say."""
    ws = sample_workspace.workspace
    usage = ws.read_table("usage_daily")
    last: date = usage["date"].max()  # type: ignore[assignment]
    held = held_out_forecasts(
        usage,
        ws.read_table("events"),
        ws.read_table("sku_catalog"),
        pl.read_parquet(SAMPLE / "truth" / "demand_daily.parquet"),
        ForecastSettings(horizon=182, models=FAST_MODELS, sample_paths=200),
        origins_before(last, 182, 3),
    )
    assert held.scored["origin"].n_unique() == 3
    # Nothing after an origin leaked into its forecast: the forecast starts the day after.
    firsts = held.scored.group_by("origin").agg(pl.col("ds").min())
    assert all(d == o + timedelta(days=1) for o, d in firsts.iter_rows())
    table = {row["level"]: row for row in coverage_by_level(held.scored).iter_rows(named=True)}
    assert set(table) == {"fleet", "accelerator", "pool", "team"}
    for level in ("accelerator", "pool", "team"):
        assert 0.72 <= table[level]["80%"] <= 0.92, (level, table[level])
        assert 0.84 <= table[level]["90%"] <= 0.98, (level, table[level])
    # One fleet series over three origins is a handful of draws: it must not under-cover.
    assert table["fleet"]["90%"] >= 0.84, table["fleet"]
