"""Allocations onto usage_daily: shares per workload, idle reservations, idempotence."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from workbench.allocation import attach_allocations
from workbench.schema import ALLOCATIONS, USAGE_DAILY

KEYS = ["date", "accelerator", "region", "team", "workload"]


def _usage(rows: list[tuple[date, str, str, float, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "date": d,
                "accelerator": "h100-80gb",
                "region": "us-central1",
                "team": team,
                "workload": workload,
                "chip_hours_used": used,
                "chip_hours_allocated": None,
                "chip_hours_queued": queued,
                "peak_chips": used / 24,
                "source": "jobs:/x.csv",
            }
            for d, team, workload, used, queued in rows
        ],
        schema=USAGE_DAILY.schema,
    )


def _allocations(rows: list[tuple[str, date, date | None, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "team": team,
                "accelerator": "h100-80gb",
                "region": "us-central1",
                "valid_from": start,
                "chips": chips,
                "valid_to": end,
                "kind": "reservation",
                "source": "allocations:/a.csv",
            }
            for team, start, end, chips in rows
        ],
        schema=ALLOCATIONS.schema,
    )


def test_a_teams_allocation_is_shared_across_its_workloads_by_demand():
    usage = _usage(
        [
            (date(2026, 1, 1), "vision", "training", 300.0, 0.0),
            (date(2026, 1, 1), "vision", "serving", 50.0, 50.0),
        ]
    )
    out = attach_allocations(usage, _allocations([("vision", date(2026, 1, 1), None, 32)]))
    shares = dict(out.select("workload", "chip_hours_allocated").iter_rows())
    assert shares == {
        "training": pytest.approx(32 * 24 * 0.75),
        "serving": pytest.approx(32 * 24 * 0.25),
    }
    assert out.schema == USAGE_DAILY.schema


def test_an_idle_allocation_becomes_a_row_with_zero_use():
    usage = _usage(
        [
            (date(2026, 1, 1), "vision", "training", 100.0, 0.0),
            (date(2026, 1, 2), "vision", "training", 100.0, 0.0),
        ]
    )
    allocations = _allocations(
        [("vision", date(2026, 1, 1), date(2026, 1, 2), 8), ("speech", date(2026, 1, 2), None, 16)]
    )
    out = attach_allocations(usage, allocations)
    idle = out.filter(pl.col("team") == "speech")
    assert idle.select("date", "workload", "chip_hours_used", "chip_hours_allocated").rows() == [
        (date(2026, 1, 2), "unknown", 0.0, 16 * 24.0)
    ]
    assert idle["source"].to_list() == ["allocations:/a.csv"]
    # Allocations are only expanded over the days the usage covers, not into the future.
    assert out["date"].max() == date(2026, 1, 2)


def test_a_pool_day_without_allocation_keeps_a_null_allocation():
    usage = _usage([(date(2026, 1, 1), "vision", "training", 100.0, 0.0)])
    out = attach_allocations(usage, _allocations([("speech", date(2026, 1, 1), None, 8)]))
    assert out.filter(pl.col("team") == "vision")["chip_hours_allocated"].to_list() == [None]


def test_attaching_twice_equals_attaching_once():
    usage = _usage(
        [
            (date(2026, 1, 1), "vision", "training", 100.0, 0.0),
            (date(2026, 1, 1), "vision", "batch", 0.0, 0.0),
        ]
    )
    allocations = _allocations(
        [("vision", date(2026, 1, 1), None, 8), ("speech", date(2026, 1, 1), None, 4)]
    )
    once = attach_allocations(usage, allocations)
    twice = attach_allocations(once, allocations)
    assert once.sort(KEYS).equals(twice.sort(KEYS))


def test_sample_allocations_add_up_per_team_pool_day(sample_workspace):
    usage = sample_workspace.workspace.read_table("usage_daily")
    allocations = sample_workspace.workspace.read_table("allocations")
    day = usage["date"].max()
    per_team = (
        usage.filter(pl.col("date") == day)
        .group_by("team", "accelerator", "region")
        .agg(pl.col("chip_hours_allocated").sum())
    )
    held = (
        allocations.filter((pl.col("valid_from") <= day) & (pl.col("valid_to") >= day))
        .group_by("team", "accelerator", "region")
        .agg((pl.col("chips").sum() * 24).alias("expected"))
    )
    joined = held.join(per_team, on=["team", "accelerator", "region"], how="left")
    assert joined.height > 10
    assert (joined["chip_hours_allocated"] - joined["expected"]).abs().max() < 1e-6
