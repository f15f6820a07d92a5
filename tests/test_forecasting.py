"""Fleet forecasting: demand series, events, cold start, sample paths, peaks, whole runs."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from models.quantiles import quantile_column
from tests.conftest import IngestedSample
from workbench.executors import SerialExecutor
from workbench.forecasting import (
    ForecastSettings,
    apply_future_events,
    cold_start,
    demand_series,
    forecast_fleet,
    path_correlation,
    planning_periods,
    predecessors,
    remove_past_events,
    sample_paths,
)
from workbench.sample_fleet.demand import Scale, simulate_fleet

LEVELS = (0.05, 0.1, 0.5, 0.9, 0.95)
FAST_MODELS = ("seasonal_naive", "naive2", "drift", "ets")


def _usage(rows: list[tuple[date, str, str, str, float, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "date": pl.Date,
            "accelerator": pl.String,
            "region": pl.String,
            "team": pl.String,
            "chip_hours_used": pl.Float64,
            "chip_hours_queued": pl.Float64,
        },
        orient="row",
    )


def _events(rows: list[dict[str, object]]) -> pl.DataFrame:
    schema = {
        "event_id": pl.String,
        "name": pl.String,
        "kind": pl.String,
        "start": pl.Date,
        "end": pl.Date,
        "accelerator": pl.String,
        "region": pl.String,
        "team": pl.String,
        "chips": pl.Float64,
        "probability": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def test_demand_is_used_plus_queued_in_chips_with_gaps_filled() -> None:
    d0 = date(2026, 1, 1)
    usage = _usage(
        [
            (d0, "h100", "us", "search", 240.0, 48.0),
            (d0, "h100", "us", "search", 24.0, 0.0),  # a second workload, same team
            (d0 + timedelta(days=2), "h100", "us", "search", 480.0, 0.0),
            (d0 + timedelta(days=1), "h100", "us", "ads", 24.0, 24.0),
        ]
    )
    demand = demand_series(usage)
    search = demand.filter(pl.col("team") == "search")
    assert search["y"].to_list() == [13.0, 0.0, 20.0]  # (240+48+24)/24, gap, 480/24
    assert demand.filter(pl.col("team") == "ads")["ds"].to_list() == [
        d0 + timedelta(days=1),
        d0 + timedelta(days=2),
    ]
    used_only = demand_series(usage, target="usage")
    assert used_only.filter(pl.col("team") == "search")["y"][0] == pytest.approx(11.0)


def test_past_campaigns_are_removed_but_launches_stay() -> None:
    d0 = date(2026, 1, 1)
    days = [d0 + timedelta(days=i) for i in range(10)]
    bottom = pl.DataFrame(
        {
            "accelerator": "h100",
            "region": "us",
            "team": ["a"] * 10 + ["b"] * 10,
            "ds": days * 2,
            "y": [100.0] * 10 + [300.0] * 10,
        }
    )
    events = _events(
        [
            # a campaign on team a: 40 chips on days 2-4
            {
                "event_id": "E1",
                "name": "campaign",
                "kind": "training_campaign",
                "start": days[2],
                "end": days[4],
                "accelerator": "h100",
                "region": "us",
                "team": "a",
                "chips": 40.0,
                "probability": 1.0,
            },
            # a pool-wide campaign (no team): 100 chips on day 6, split 1:3 by demand
            {
                "event_id": "E2",
                "name": "pool campaign",
                "kind": "training_campaign",
                "start": days[6],
                "end": days[6],
                "accelerator": "h100",
                "region": "us",
                "team": None,
                "chips": 100.0,
                "probability": 1.0,
            },
            # a launch is a new level: it stays
            {
                "event_id": "E3",
                "name": "launch",
                "kind": "launch",
                "start": days[1],
                "end": None,
                "accelerator": "h100",
                "region": "us",
                "team": "a",
                "chips": 50.0,
                "probability": 1.0,
            },
            # a campaign too big for the series: removed only down to zero
            {
                "event_id": "E4",
                "name": "huge",
                "kind": "training_campaign",
                "start": days[8],
                "end": days[8],
                "accelerator": "h100",
                "region": "us",
                "team": "a",
                "chips": 1000.0,
                "probability": 1.0,
            },
        ]
    )
    out, removed = remove_past_events(bottom, events, days[-1])
    a = out.filter(pl.col("team") == "a")["y"].to_list()
    b = out.filter(pl.col("team") == "b")["y"].to_list()
    assert a == [100, 100, 60, 60, 60, 100, 75, 100, 0, 100]
    assert b == [300] * 6 + [225] + [300] * 3
    chip_days = dict(zip(removed["event_id"], removed["chip_days_removed"], strict=True))
    assert chip_days == {"E1": 120.0, "E2": 100.0, "E4": 100.0}


def test_sample_path_marginals_follow_the_quantiles() -> None:
    levels = (0.05, 0.25, 0.5, 0.75, 0.95)
    values = np.array([[[10.0, 20.0, 30.0, 40.0, 50.0]] * 3])  # 1 series, 3 steps
    paths = sample_paths(values, levels, 20_000, seed=1)
    assert paths.shape == (20_000, 1, 3)
    for q, expected in zip((0.25, 0.5, 0.75), (20.0, 30.0, 40.0), strict=True):
        assert np.quantile(paths[:, 0, 1], q) == pytest.approx(expected, abs=0.6)
    # Day-to-day errors persist: consecutive steps are strongly correlated.
    assert np.corrcoef(paths[:, 0, 0], paths[:, 0, 1])[0, 1] > 0.85


def _flat_forecast(series: list[str], start: date, horizon: int, level: float) -> pl.DataFrame:
    rows = []
    for sid in series:
        for h in range(horizon):
            row = {"series_id": sid, "ds": start + timedelta(days=h), "h": h + 1, "mean": level}
            for q in LEVELS:
                row[quantile_column(q)] = level * (0.8 + 0.4 * q)
            rows.append(row)
    return pl.DataFrame(rows)


def test_future_events_add_expected_chips_and_widen_uncertain_ones() -> None:
    start = date(2027, 1, 1)
    forecast = _flat_forecast(
        ["pool=h100/us", "team=h100/us/a", "team=h100/us/b"], start, 14, 100.0
    )
    nodes = pl.DataFrame(
        {
            "series_id": ["pool=h100/us", "team=h100/us/a", "team=h100/us/b"],
            "accelerator": ["h100"] * 3,
            "region": ["us"] * 3,
            "team": [None, "a", "b"],
        }
    )
    events = _events(
        [
            {
                "event_id": "L",
                "name": "launch",
                "kind": "launch",
                "start": start + timedelta(days=7),
                "end": None,
                "accelerator": "h100",
                "region": "us",
                "team": "a",
                "chips": 50.0,
                "probability": 0.5,
            },
        ]
    )
    out, applied = apply_future_events(forecast, nodes, events, LEVELS, n_paths=4000, seed=3)
    team_a = out.filter(pl.col("series_id") == "team=h100/us/a").sort("ds")
    team_b = out.filter(pl.col("series_id") == "team=h100/us/b").sort("ds")
    pool = out.filter(pl.col("series_id") == "pool=h100/us").sort("ds")
    assert team_a["mean"].head(7).to_list() == [100.0] * 7
    assert team_a["mean"].tail(7).to_list() == [125.0] * 7
    assert pool["mean"].tail(1).item() == 125.0
    assert team_b.equals(forecast.filter(pl.col("series_id") == "team=h100/us/b").sort("ds"))
    before = forecast.filter(pl.col("series_id") == "team=h100/us/a").sort("ds")
    width_before = (before["p95"] - before["p05"]).tail(1).item()
    width_after = (team_a["p95"] - team_a["p05"]).tail(1).item()
    assert width_after > width_before + 30  # a coin flip of 50 chips widens the interval
    assert set(applied["series_id"]) == {"pool=h100/us", "team=h100/us/a"}
    assert applied["expected_chip_days"].to_list() == [175.0, 175.0]


def test_a_pool_wide_launch_is_shared_by_the_pools_teams_by_recent_demand() -> None:
    start = date(2027, 1, 1)
    ids = ["accelerator=h100", "pool=h100/us", "team=h100/us/a", "team=h100/us/b"]
    forecast = _flat_forecast(ids, start, 14, 100.0)
    nodes = pl.DataFrame(
        {
            "series_id": ids,
            "accelerator": ["h100"] * 4,
            "region": [None, "us", "us", "us"],
            "team": [None, None, "a", "b"],
        }
    )
    events = _events(
        [
            {
                "event_id": "P",
                "name": "pool launch",
                "kind": "launch",
                "start": start,
                "end": None,
                "accelerator": "h100",
                "region": "us",
                "team": None,
                "chips": 80.0,
                "probability": 1.0,
            },
        ]
    )
    out, applied = apply_future_events(
        forecast,
        nodes,
        events,
        LEVELS,
        n_paths=500,
        team_demand={"team=h100/us/a": 30.0, "team=h100/us/b": 10.0},
    )
    last = out.group_by("series_id").agg(pl.col("mean").last())
    means = dict(zip(last["series_id"], last["mean"], strict=True))
    assert means["team=h100/us/a"] == pytest.approx(160.0)  # 3/4 of 80 chips
    assert means["team=h100/us/b"] == pytest.approx(120.0)
    assert means["pool=h100/us"] == pytest.approx(180.0)
    assert means["accelerator=h100"] == pytest.approx(180.0)
    assert applied.height == 4
    # Without team demand the teams are not told apart: only the aggregates move.
    out, _ = apply_future_events(forecast, nodes, events, LEVELS, n_paths=500)
    last = out.group_by("series_id").agg(pl.col("mean").last())
    means = dict(zip(last["series_id"], last["mean"], strict=True))
    assert means["team=h100/us/a"] == 100.0 and means["pool=h100/us"] == 180.0


def test_planning_peaks_of_a_certain_forecast_are_the_weekly_maxima() -> None:
    start = date(2027, 3, 1)  # 4 whole weeks in Q1 (from Mar 1), then Q2
    horizon = 56
    rows = []
    for h in range(horizon):
        level = 100.0 + h  # rising demand, no uncertainty
        row = {"series_id": "pool=x", "ds": start + timedelta(days=h), "mean": level}
        row.update({quantile_column(q): level for q in LEVELS})
        rows.append(row)
    peaks = planning_periods(pl.DataFrame(rows), LEVELS, n_paths=50)
    q1 = peaks.filter(pl.col("quarter") == "2027Q1").row(0, named=True)
    # weeks start Mar 1, 8, 15, 22, 29: the Mar 29 week belongs to Q1 as well
    assert q1["weeks"] == 5
    assert q1["peak_p50"] == pytest.approx(100 + 28 + 3)  # mean of days 28..34
    assert q1["peak_p99"] == pytest.approx(q1["peak_p50"])


def test_predecessors_follow_family_and_performance() -> None:
    catalog = pl.DataFrame(
        {
            "accelerator": ["a100", "h100", "b200", "v5e", "v6e"],
            "vendor": ["NVIDIA"] * 3 + ["Google"] * 2,
            "family": ["gpu"] * 3 + ["tpu"] * 2,
            "perf_index": [1.0, 3.0, 7.0, 1.2, 2.5],
        }
    )
    assert predecessors(catalog) == {"h100": "a100", "b200": "h100", "v6e": "v5e"}


def test_cold_start_borrows_the_predecessor_shape_and_says_so() -> None:
    start = date(2027, 1, 1)
    ids = ["pool=b200/us", "pool=h100/us"]
    forecast = _flat_forecast(ids, start, 14, 10.0)
    grow = pl.Series([100.0 + 10 * h for h in range(14)])
    forecast = forecast.with_columns(
        pl.when(pl.col("series_id") == "pool=h100/us")
        .then(pl.lit(grow).gather(pl.col("h") - 1))
        .otherwise(pl.col("mean"))
        .alias("mean")
    )
    history = pl.concat(
        [
            pl.DataFrame({"series_id": "pool=h100/us", "y": [100.0] * 300}),
            pl.DataFrame({"series_id": "pool=b200/us", "y": [20.0] * 10}),
        ]
    )
    nodes = pl.DataFrame(
        {
            "series_id": ids,
            "level": ["pool", "pool"],
            "accelerator": ["b200", "h100"],
            "region": ["us", "us"],
            "team": [None, None],
        },
        schema_overrides={"team": pl.String},
    )
    catalog = pl.DataFrame(
        {
            "accelerator": ["h100", "b200"],
            "vendor": ["N", "N"],
            "family": ["g", "g"],
            "perf_index": [3.0, 7.0],
        }
    )
    out, notes = cold_start(forecast, history, nodes, catalog, LEVELS, min_days=56)
    b200 = out.filter(pl.col("series_id") == "pool=b200/us").sort("ds")
    anchor = float(np.mean([100.0 + 10 * h for h in range(7)]))
    expected = [20.0 * (100.0 + 10 * h) / anchor for h in range(14)]
    np.testing.assert_allclose(b200["mean"].to_numpy(), expected)
    assert notes.to_dicts() == [
        {"series_id": "pool=b200/us", "cold_start": "shape of pool=h100/us"}
    ]


def test_fleet_forecast_on_the_sample_fleet_is_coherent_and_complete(
    sample_workspace: IngestedSample,
) -> None:
    ws = sample_workspace.workspace
    settings = ForecastSettings(horizon=35, step=35, models=FAST_MODELS, sample_paths=200)
    result = forecast_fleet(
        ws.read_table("usage_daily"),
        ws.read_table("events"),
        ws.read_table("sku_catalog"),
        settings,
        executor=SerialExecutor(),
    )
    forecast = result.forecast
    assert set(forecast["level"]) == {"fleet", "accelerator", "pool", "team"}
    assert forecast.group_by("series_id").len()["len"].unique().to_list() == [35]
    # Reconciled means add up at every level.
    teams = forecast.filter(pl.col("level") == "team")
    pools = forecast.filter(pl.col("level") == "pool")
    summed = teams.group_by("accelerator", "region", "ds").agg(pl.col("mean").sum().alias("teams"))
    joined = pools.join(summed, on=["accelerator", "region", "ds"])
    np.testing.assert_allclose(joined["mean"].to_numpy(), joined["teams"].to_numpy(), rtol=1e-6)
    fleet = forecast.filter(pl.col("level") == "fleet").sort("ds")["mean"].to_numpy()
    np.testing.assert_allclose(
        fleet,
        teams.group_by("ds").agg(pl.col("mean").sum()).sort("ds")["mean"].to_numpy(),
        rtol=1e-6,
    )
    # Quantiles never cross and nothing is negative.
    values = forecast.select([quantile_column(q) for q in settings.quantiles]).to_numpy()
    assert (values >= 0).all() and (np.diff(values, axis=1) >= -1e-9).all()
    # The B200 pool, weeks old, borrowed its shape and says so.
    young = dict(zip(result.cold_start["series_id"], result.cold_start["cold_start"], strict=True))
    assert any("b200" in sid for sid in young)
    # Peaks per pool and quarter, past events removed, future ones applied.
    assert set(result.planning["level"]) >= {"pool"}
    assert result.events_removed["chip_days_removed"].sum() > 0
    assert result.events_applied.height > 0
    assert set(result.outputs()) >= {"forecast", "backtest", "selection", "fallbacks", "planning"}
    # Every level was calibrated on its reconciled backtests (the fleet pooled with the
    # accelerators: one node has too few windows of its own).
    groups = set(result.level_calibration["group"])
    assert "team" in groups and any(g.startswith("fleet+") for g in groups)


def test_a_fleet_younger_than_a_backtest_window_is_reconciled_without_backtest_errors(
    sample_workspace: IngestedSample,
) -> None:
    """MinT needs every node's backtest errors; 60 days of history give none for a 91-day
    horizon, so the forecast falls back to structural weights, says so, and stays coherent
    (it stopped with a HierarchyError before)."""
    ws = sample_workspace.workspace
    usage = ws.read_table("usage_daily")
    first: date = usage["date"].min()  # type: ignore[assignment]
    young = usage.filter(pl.col("date") < first + timedelta(days=60))
    settings = ForecastSettings(horizon=91, models=FAST_MODELS, sample_paths=50)
    assert settings.reconcile == "mint_shrink"
    result = forecast_fleet(
        young, None, ws.read_table("sku_catalog"), settings, executor=SerialExecutor()
    )
    assert any("reconciled with wls_struct" in note for note in result.notes), result.notes
    assert result.reconciled_with == "wls_struct"
    forecast = result.forecast
    pools = forecast.filter(pl.col("level") == "pool")
    teams = forecast.filter(pl.col("level") == "team")
    summed = teams.group_by("accelerator", "region", "ds").agg(pl.col("mean").sum().alias("teams"))
    joined = pools.join(summed, on=["accelerator", "region", "ds"])
    assert joined.height == pools.height > 0
    np.testing.assert_allclose(joined["mean"].to_numpy(), joined["teams"].to_numpy(), rtol=1e-6)
    assert forecast.group_by("series_id").len()["len"].unique().to_list() == [91]


@pytest.mark.slow
def test_forecasting_unconstrained_demand_beats_censored_usage() -> None:
    """On the sample fleet with its two tight pools starved of capacity, forecasts of demand
    (used + queued) are closer to the generator's true demand than forecasts of usage."""
    fleet = simulate_fleet(Scale.named("small"), 7, tight_order_bias=0.6)
    history_days = fleet.history_days
    horizon = 91
    days = pl.Series(fleet.days[:history_days].astype("datetime64[D]")).cast(pl.Date)
    rows = []
    for s, spec in enumerate(fleet.series):
        used = fleet.used_chips[s, :history_days]
        demand = fleet.demand_chips[s, :history_days]
        rows.append(
            pl.DataFrame(
                {
                    "date": days,
                    "accelerator": spec.accelerator,
                    "region": spec.region,
                    "team": spec.team,
                    "chip_hours_used": used * 24,
                    "chip_hours_queued": (demand - used) * 24,
                }
            )
        )
    usage = pl.concat(rows).filter(pl.col("chip_hours_used") > 0)
    truth_days = pl.Series(
        fleet.days[history_days : history_days + horizon].astype("datetime64[D]")
    ).cast(pl.Date)
    errors = {}
    for target in ("demand", "usage"):
        settings = ForecastSettings(
            horizon=horizon,
            step=91,
            models=FAST_MODELS,
            target=target,
            events=False,
            reconcile="none",
            sample_paths=100,
        )
        catalog = pl.DataFrame(
            schema={
                "accelerator": pl.String,
                "vendor": pl.String,
                "family": pl.String,
                "perf_index": pl.Float64,
            }
        )
        result = forecast_fleet(usage, None, catalog, settings, executor=SerialExecutor())
        for accelerator, region in (("h100-80gb", "us-east4"), ("tpu-v6e", "us-central1")):
            in_pool = [
                s
                for s, spec in enumerate(fleet.series)
                if (spec.accelerator, spec.region) == (accelerator, region)
            ]
            truth = fleet.demand_chips[in_pool, history_days : history_days + horizon].sum(axis=0)
            pool = result.forecast.filter(
                (pl.col("level") == "pool")
                & (pl.col("accelerator") == accelerator)
                & (pl.col("region") == region)
            ).sort("ds")
            assert pool["ds"].to_list() == truth_days.to_list()
            errors[(target, accelerator)] = float(np.mean(np.abs(pool["mean"].to_numpy() - truth)))
    for accelerator in ("h100-80gb", "tpu-v6e"):
        assert errors[("demand", accelerator)] < errors[("usage", accelerator)], errors


def test_peak_scenarios_are_joint_paths_with_the_planning_distribution() -> None:
    from workbench.forecasting import peak_scenarios

    start = date(2027, 1, 4)
    forecast = _flat_forecast(["pool=a", "pool=b"], start, 182, 100.0)
    scenarios = peak_scenarios(forecast, LEVELS, n_scenarios=400, seed=2)
    assert scenarios.columns == ["series_id", "scenario", "quarter", "peak_chips"]
    assert set(scenarios["quarter"]) == {"2027Q1", "2027Q2"}  # 26 whole weeks from Jan 4
    assert scenarios.group_by("series_id", "quarter").len()["len"].unique().to_list() == [400]
    a = scenarios.filter(pl.col("series_id") == "pool=a")
    q1 = a.filter(pl.col("quarter") == "2027Q1").sort("scenario")["peak_chips"].to_numpy()
    q2 = a.filter(pl.col("quarter") == "2027Q2").sort("scenario")["peak_chips"].to_numpy()
    # A high first quarter tends to go with a high second one (same path).
    assert np.corrcoef(q1, q2)[0, 1] > 0
    # The peak of a quarter is above the mean and within the forecast's range.
    assert 100.0 < float(np.median(q1)) <= 100.0 * (0.8 + 0.4 * 0.95)


def test_path_correlation_recovers_an_ar1_error_process() -> None:
    rng = np.random.default_rng(4)
    horizon, windows, n_series, rho = 91, 3, 40, 0.985
    z = np.empty((n_series * windows, horizon))
    z[:, 0] = rng.standard_normal(z.shape[0])
    for t in range(1, horizon):
        z[:, t] = rho * z[:, t - 1] + np.sqrt(1 - rho**2) * rng.standard_normal(z.shape[0])
    errors = z.reshape(n_series, windows * horizon) * rng.uniform(50, 100, (n_series, 1))
    errors[n_series // 2 :] = rng.normal(0, 75, (n_series // 2, windows * horizon))
    residuals = pl.DataFrame(
        {
            "series_id": np.repeat([f"s{i}" for i in range(n_series)], windows * horizon),
            "step": np.tile(np.arange(windows * horizon), n_series),
            "residual": errors.ravel(),
        }
    )
    persistent = [f"s{i}" for i in range(n_series // 2)]
    assert path_correlation(residuals, horizon, series=persistent) == pytest.approx(rho, abs=0.005)
    # Half the series with errors that forget at once pull the estimate down.
    assert path_correlation(residuals, horizon) < rho - 0.01
    assert path_correlation(residuals.head(10), horizon, default=0.9) == 0.9


def test_persistent_errors_lower_the_peak_of_a_quarter() -> None:
    # Same marginals; errors that persist from day to day make quarterly peaks lower than
    # errors that decorrelate within weeks (the max of few independent draws is lower).
    days = [date(2027, 1, 1) + timedelta(days=k) for k in range(91)]
    levels = (0.05, 0.5, 0.95)
    forecast = pl.DataFrame(
        {
            "series_id": "pool=a/r",
            "ds": days,
            "mean": 100.0,
            "p05": 80.0,
            "p50": 100.0,
            "p95": 120.0,
        }
    )
    fast = planning_periods(forecast, levels, n_paths=400, correlation=0.9)
    slow = planning_periods(forecast, levels, n_paths=400, correlation=0.995)
    assert slow["peak_p50"][0] < fast["peak_p50"][0] - 5
