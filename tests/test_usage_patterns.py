"""Weekday and hour-of-day patterns of usage, checked on small hand-made frames."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from workbench.usage import UsageFilter, hour_pattern, weekday_pattern


def _hourly(rows: list[tuple[datetime, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "hour": [r[0] for r in rows],
            "accelerator": [r[1] for r in rows],
            "region": ["r1"] * len(rows),
            "team": ["t"] * len(rows),
            "workload": ["serving"] * len(rows),
            "chip_hours_used": [r[2] for r in rows],
            "chip_hours_queued": [0.0] * len(rows),
            "peak_chips": [r[2] for r in rows],
            "source": ["test"] * len(rows),
        },
        schema_overrides={"hour": pl.Datetime("us", "UTC")},
    )


def test_hour_pattern_averages_each_weekday_hour_with_missing_hours_as_zero():
    monday = datetime(2026, 11, 2, tzinfo=UTC)
    rows = [
        (monday + timedelta(hours=9), "h100", 10.0),
        (monday + timedelta(days=7, hours=9), "h100", 30.0),
        (monday + timedelta(days=7, hours=10), "h100", 4.0),
        (monday + timedelta(hours=9), "a100", 1000.0),  # another accelerator: filtered out
    ]
    pattern = hour_pattern(_hourly(rows), UsageFilter(accelerator="h100"))
    cell = pattern.filter((pl.col("day") == "Mon") & (pl.col("hour") == 9))
    assert cell["chip_hours_used"].item() == pytest.approx(20.0)
    # Monday 10:00 happened twice (the range covers both Mondays); once with 4 chip-hours.
    cell = pattern.filter((pl.col("day") == "Mon") & (pl.col("hour") == 10))
    assert cell["chip_hours_used"].item() == pytest.approx(2.0)
    assert pattern.filter(pl.col("day") == "Tue")["chip_hours_used"].sum() == 0.0
    assert pattern.height == 7 * 24


def test_patterns_of_an_empty_slice_are_empty():
    assert hour_pattern(_hourly([]), UsageFilter()).is_empty()
    usage = pl.DataFrame(
        {
            "date": [date(2026, 11, 2)],
            "accelerator": ["h100"],
            "region": ["r1"],
            "team": ["t"],
            "workload": ["training"],
            "chip_hours_used": [5.0],
            "chip_hours_queued": [1.0],
        }
    )
    assert weekday_pattern(usage, UsageFilter(team="nobody")).is_empty()
    only = weekday_pattern(usage, UsageFilter())
    assert only["day"].to_list() == ["Mon"]
    assert only["chip_hours_queued"].to_list() == [1.0]
