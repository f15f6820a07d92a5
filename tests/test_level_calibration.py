"""Quantiles calibrated at every level after reconciliation (workbench.level_calibration)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from models.quantiles import quantile_column
from workbench.hierarchy import build_hierarchy
from workbench.level_calibration import (
    Z90,
    backtest_frame,
    calibrate_levels,
    level_groups,
)

END = date(2026, 12, 31)
QUANTILES = (0.05, 0.1, 0.5, 0.9, 0.95)
HORIZON = 10


def test_small_levels_pool_with_the_level_below() -> None:
    sizes = [("fleet", 3), ("accelerator", 21), ("pool", 51), ("team", 186)]
    assert level_groups(sizes, 20) == {
        "fleet": "fleet+accelerator",
        "accelerator": "fleet+accelerator",
        "pool": "pool",
        "team": "team",
    }
    # A small bottom level joins the group above it; one level alone stays itself.
    assert level_groups([("fleet", 30), ("team", 5)], 20) == {
        "fleet": "fleet+team",
        "team": "fleet+team",
    }
    assert level_groups([("team", 2)], 20) == {"team": "team"}


def test_backtest_frame_lines_steps_up_with_their_days() -> None:
    days = [END - timedelta(days=k) for k in range(60)]
    history = pl.DataFrame(
        {"series_id": ["a"] * 60, "ds": days, "y": [float(k) for k in range(60)]}
    ).sort("ds")
    # Two windows of 10 steps ending 30 and 20 days before the end; residual 1 everywhere
    # except one missing step.
    residuals = pl.DataFrame(
        {"series_id": ["a"] * 20, "step": list(range(20)), "residual": [1.0] * 19 + [np.nan]}
    )
    frame = backtest_frame(history, residuals, history_end=END, horizon=10, removed=[30, 20])
    first = frame.filter(pl.col("step") == 0).row(0, named=True)
    assert first["ds"] == END - timedelta(days=29)
    assert first["window"] == 0 and first["h"] == 1
    assert first["actual"] == pytest.approx(29.0)  # y counts days back from the end
    assert first["mean"] == pytest.approx(28.0) and first["own"]
    last = frame.filter(pl.col("step") == 19).row(0, named=True)
    assert last["ds"] == END - timedelta(days=10) and last["window"] == 1 and last["h"] == 10
    assert not last["own"] and last["mean"] == last["actual"]


def _fleet(n_regions: int = 2, n_teams: int = 5) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (acc, f"r{r}", f"t{t}")
            for acc in ("h100", "tpu")
            for r in range(n_regions)
            for t in range(n_teams)
        ],
        schema=["accelerator", "region", "team"],
        orient="row",
    )


def _simulate(hierarchy, rng, n_times: int) -> np.ndarray:
    """Errors of every node: teams share a common shock, so aggregates add correlated errors."""
    summing = hierarchy.summing.toarray()
    n_bottom = summing.shape[1]
    common = rng.normal(0.0, 1.0, (n_times, 1))
    own = rng.normal(0.0, 1.0, (n_times, n_bottom))
    return (common + own) @ summing.T  # (n_times, n_nodes)


def test_aggregates_that_ignore_correlation_are_widened_to_their_nominal_coverage() -> None:
    rng = np.random.default_rng(3)
    hierarchy = build_hierarchy(_fleet())
    nodes = hierarchy.nodes.select("series_id", "level")
    ids = hierarchy.series_ids
    n_teams = np.asarray(hierarchy.summing.sum(axis=1)).ravel()
    level = 100.0 * n_teams
    # Base spread: right for a team (sd sqrt(2)), but sums assume independent teams.
    sigma = np.sqrt(2.0 * n_teams)
    days = [END + timedelta(days=h) for h in range(1, HORIZON + 1)]
    forecast = pl.DataFrame(
        {
            "series_id": np.repeat(ids, HORIZON),
            "ds": days * len(ids),
            "h": np.tile(np.arange(1, HORIZON + 1), len(ids)),
            "mean": np.repeat(level, HORIZON),
            **{
                quantile_column(q): np.repeat(level + z * sigma, HORIZON)
                for q, z in zip(QUANTILES, (-1.6449, -Z90, 0.0, Z90, 1.6449), strict=True)
            },
        }
    )
    history = pl.DataFrame(
        {
            "series_id": np.repeat(ids, 400),
            "ds": [END - timedelta(days=k) for k in range(400)] * len(ids),
            "y": np.repeat(level, 400),
        }
    )
    windows = 30
    removed = [HORIZON * (windows - w) for w in range(windows)]
    errors = _simulate(hierarchy, rng, windows * HORIZON)
    steps = np.arange(windows * HORIZON)
    backtest = pl.DataFrame(
        {
            "series_id": np.repeat(ids, steps.size),
            "step": np.tile(steps, len(ids)).astype(np.int32),
            "window": np.tile(steps // HORIZON, len(ids)).astype(np.int32),
            "h": np.tile(steps % HORIZON + 1, len(ids)).astype(np.int32),
            "ds": [
                END - timedelta(days=int(removed[s // HORIZON] - (s % HORIZON + 1))) for s in steps
            ]
            * len(ids),
            "actual": (level[None, :] + errors).T.ravel(),
            "mean": np.repeat(level, steps.size),
            "own": True,
        }
    )
    result = calibrate_levels(
        forecast,
        backtest,
        nodes,
        history,
        quantiles=QUANTILES,
        buckets=np.zeros(HORIZON, dtype=np.int64),
    )
    # Fresh outcomes from the same process: every level now covers about its nominal.
    fresh = _simulate(hierarchy, rng, 4000)
    out = result.forecast.filter(pl.col("h") == 1).sort(
        pl.col("series_id").replace_strict({sid: i for i, sid in enumerate(ids)})
    )
    lo80, hi80 = out["p10"].to_numpy(), out["p90"].to_numpy()
    lo90, hi90 = out["p05"].to_numpy(), out["p95"].to_numpy()
    actual = level[None, :] + fresh
    levels = nodes["level"].to_numpy()
    before_lo = forecast.filter(pl.col("h") == 1)["p10"].to_numpy()
    for name in ("fleet", "accelerator", "pool", "team"):
        mine = levels == name
        inside80 = ((actual >= lo80) & (actual <= hi80))[:, mine].mean()
        inside90 = ((actual >= lo90) & (actual <= hi90))[:, mine].mean()
        assert 0.74 <= inside80 <= 0.87, (name, inside80)
        assert 0.85 <= inside90 <= 0.95, (name, inside90)
    # The fleet needed far more than its independent-teams spread; teams kept theirs.
    fleet = levels == "fleet"
    assert (lo80[fleet] < before_lo[fleet] - 2 * sigma[fleet]).all()  # about 3.2x wider
    team = levels == "team"
    assert np.allclose(lo80[team], before_lo[team], atol=0.5 * sigma[team].max())
    # Means are untouched (coherence holds) and quantiles never cross.
    assert result.forecast["mean"].equals(forecast["mean"])
    values = result.forecast.select(quantile_column(q) for q in QUANTILES).to_numpy()
    assert (np.diff(values, axis=1) >= 0).all()
    assert set(result.table["group"]) == {"fleet", "accelerator", "pool", "team"}


def test_calibration_never_narrows_the_engine_intervals() -> None:
    # Backtests calmer than the forecast's own spread leave the quantiles as they were.
    hierarchy = build_hierarchy(_fleet(1, 3))
    ids = hierarchy.series_ids
    nodes = hierarchy.nodes.select("series_id", "level")
    forecast = pl.DataFrame(
        {
            "series_id": ids,
            "ds": [END + timedelta(days=1)] * len(ids),
            "h": [1] * len(ids),
            "mean": [50.0] * len(ids),
            **{quantile_column(q): [50.0 + 20 * (q - 0.5)] * len(ids) for q in QUANTILES},
        }
    )
    history = pl.DataFrame({"series_id": ids, "ds": [END] * len(ids), "y": [50.0] * len(ids)})
    rng = np.random.default_rng(0)
    backtest = pl.DataFrame(
        {
            "series_id": np.repeat(ids, 40),
            "step": np.tile(np.arange(40), len(ids)).astype(np.int32),
            "window": np.tile(np.arange(40), len(ids)).astype(np.int32),
            "h": [1] * (40 * len(ids)),
            "ds": [END - timedelta(days=5)] * (40 * len(ids)),
            "actual": 50.0 + rng.normal(0, 0.01, 40 * len(ids)),
            "mean": [50.0] * (40 * len(ids)),
            "own": True,
        }
    )
    result = calibrate_levels(
        forecast, backtest, nodes, history, quantiles=QUANTILES, buckets=np.zeros(1, dtype=int)
    )
    for q in QUANTILES:
        column = quantile_column(q)
        assert result.forecast[column].to_list() == pytest.approx(forecast[column].to_list())


def test_level_calibration_needs_the_80_percent_interval() -> None:
    with pytest.raises(ValueError, match=r"0\.1 and 0\.9"):
        calibrate_levels(
            pl.DataFrame(),
            pl.DataFrame(),
            pl.DataFrame(),
            pl.DataFrame({"ds": [END]}),
            quantiles=(0.05, 0.95),
            buckets=np.zeros(1, dtype=int),
        )
