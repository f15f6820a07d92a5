"""Decision replay: carrying out decisions, the spreadsheet rule, daily scoring, the whole run."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from tests.conftest import SAMPLE, IngestedSample
from tests.test_procurement import pool
from workbench.errors import WorkbenchError
from workbench.procurement import PoolSpec
from workbench.replay import (
    POLICIES,
    ReplaySettings,
    _carry_out,
    _Fleet,
    _rule,
    _score,
    comparison_markdown,
    replay_workspace,
    track_record_scale,
)


def _fleet(owned: float, quarters: int = 6) -> _Fleet:
    return _Fleet(
        owned=np.full((1, quarters), owned),
        commit_chips=np.zeros((1, quarters)),
        commit_usd_per_hour=np.zeros((1, quarters)),
    )


def test_purchases_land_after_their_lead_time_and_commitments_run_their_term() -> None:
    fleet = _fleet(100.0)
    spec = pool(lead_time_weeks=26, lot_chips=8)  # two quarters
    _carry_out(fleet, [spec], np.array([3.0]), np.array([10.0]), np.array([0.0]), k=1)
    assert fleet.owned[0].tolist() == [100, 100, 100, 124, 124, 124]
    assert fleet.commit_chips[0].tolist() == [0, 10, 10, 10, 10, 0]
    assert fleet.commit_usd_per_hour[0, 1] == pytest.approx(10 * 4.0)


def _daily(start: date, days: int, values: list[float] | float) -> pl.DataFrame:
    y = values if isinstance(values, list) else [values] * days
    return pl.DataFrame(
        {
            "accelerator": "h100",
            "region": "r1",
            "ds": [start + timedelta(days=i) for i in range(days)],
            "y": y,
        }
    )


def test_the_rule_buys_last_four_quarters_peak_plus_growth_plus_twenty_percent() -> None:
    # Eight whole quarters of flat 100 chips, then the fleet holds 100: the rule wants
    # 100 x (1 + 0 growth) x 1.2 = 120 when a purchase lands, so it buys 3 lots of 8.
    history = _daily(date(2024, 1, 1), 731, 100.0)
    fleet = _fleet(100.0)
    spec = pool(lot_chips=8, lead_time_weeks=13)
    _rule(fleet, [spec], np.ones(1), history, [("h100", "r1")], 0, [], ReplaySettings())
    assert fleet.owned[0].tolist() == [100, 124, 124, 124, 124, 124]


def test_scoring_bursts_up_to_the_cap_then_counts_unmet_chip_hours() -> None:
    # 2027Q1 has 90 days; demand 120 on 10 days and 100 otherwise against 100 chips, with
    # a burst cap of 15: 10 days x 15 chips burst, 10 days x 5 chips unmet.
    values = [120.0] * 10 + [100.0] * 80
    real = _daily(date(2027, 1, 1), 90, values)
    spec = replace(pool(), burst_cap_chips=15.0)
    rows = _score("plan", _fleet(100.0), [spec], np.ones(1), real, [("h100", "r1")], ["2027Q1"])
    row = rows[0]
    assert row["burst_chip_hours"] == pytest.approx(10 * 15 * 24)
    assert row["unmet_chip_hours"] == pytest.approx(10 * 5 * 24)
    assert row["burst_cost_cents"] == round(10 * 15 * 24 * 6.0 * 100)
    assert row["owned_cost_cents"] == round(100 * 1.0 * 90 * 24 * 100)
    assert row["served_chip_hours"] == pytest.approx(100 * 90 * 24)


@pytest.mark.slow
def test_replay_of_two_years_on_the_sample_fleet(sample_workspace: IngestedSample) -> None:
    result = replay_workspace(
        sample_workspace.workspace,
        ReplaySettings(quarters=8),
        truth_path=SAMPLE / "truth" / "demand_daily.parquet",
    )
    comparison = result.comparison
    assert comparison["policy"].to_list() == list(POLICIES)
    by_policy = {row["policy"]: row for row in comparison.iter_rows(named=True)}
    plan, rule = by_policy["plan"], by_policy["rule"]
    foresight = by_policy["perfect foresight"]
    # The targets, as the README reports them: under 2% unmet, at least 15% cheaper
    # than the rule at equal or lower unmet demand, within 10% of perfect foresight.
    assert plan["unmet_share"] < 0.02
    assert plan["unmet_chip_hours"] <= rule["unmet_chip_hours"]
    assert plan["cost_cents"] <= 0.85 * rule["cost_cents"]
    assert plan["cost_cents"] <= 1.10 * foresight["cost_cents"]
    assert foresight["cost_cents"] < plan["cost_cents"]
    assert comparison_markdown(comparison).count("\n") == 5
    # The first decision has 11 months of history, too little for MinT's backtest errors.
    assert any("2024-10-01 (wls_struct)" in note for note in result.notes), result.notes


def test_each_decision_forecasts_with_the_reconciliation_asked_for(
    sample_workspace: IngestedSample, monkeypatch
) -> None:
    import workbench.replay as replay_module

    class StopHereError(Exception):
        pass

    seen: list[str] = []

    def capture(usage, events, catalog, settings, **kwargs):
        seen.append(settings.reconcile)
        raise StopHereError

    monkeypatch.setattr(replay_module, "forecast_fleet", capture)
    for settings in (ReplaySettings(), ReplaySettings(reconcile="none")):
        with pytest.raises(StopHereError):
            replay_module.replay_workspace(sample_workspace.workspace, settings)
    assert seen == ["mint_shrink", "none"]  # the forecast's own default unless told
    # A decision whose forecast fell back (too little backtest history) is recorded as such.
    monkeypatch.setattr(
        replay_module,
        "forecast_fleet",
        lambda *args, **kwargs: SimpleNamespace(
            reconciled_with="wls_struct",
            scenarios=pl.DataFrame(),
            planning=pl.DataFrame(),
            history=pl.DataFrame({"level": ["pool", "team"]}),
        ),
    )
    fallbacks: list[tuple[date, str]] = []
    for settings in (ReplaySettings(), ReplaySettings(reconcile="wls_struct")):
        replay_module._forecast_scenarios(
            pl.DataFrame(), None, pl.DataFrame(), settings, date(2024, 10, 1), fallbacks
        )
    assert fallbacks == [(date(2024, 10, 1), "wls_struct")]  # asked for wls_struct: no fallback
    with pytest.raises(WorkbenchError, match="unknown reconciliation 'mint'") as caught:
        ReplaySettings(reconcile="mint")
    assert "mint_shrink" in str(caught.value.fix)


def test_the_planner_knows_events_a_notice_period_ahead(monkeypatch) -> None:
    import workbench.replay as replay_module

    seen: list[list[str]] = []

    class StopHereError(Exception):
        pass

    def capture(usage, events, catalog, settings, **kwargs):
        seen.append(sorted(events["event_id"].to_list()))
        raise StopHereError

    monkeypatch.setattr(replay_module, "forecast_fleet", capture)
    day = date(2026, 1, 1)
    events = pl.DataFrame(
        {
            "event_id": ["past", "soon", "later"],
            "start": [
                day - timedelta(days=30),
                day + timedelta(days=60),
                day + timedelta(days=120),
            ],
        }
    )
    for notice, expected in (
        (0, ["past"]),
        (91, ["past", "soon"]),
        (182, ["later", "past", "soon"]),
    ):
        with pytest.raises(StopHereError):
            replay_module._forecast_scenarios(
                pl.DataFrame(),
                events,
                pl.DataFrame(),
                ReplaySettings(event_notice_days=notice),
                day,
                [],
            )
        assert seen[-1] == expected


def test_each_decision_prices_shortfalls_with_each_pools_own_share(
    sample_workspace: IngestedSample, monkeypatch
) -> None:
    import workbench.replay as replay_module

    seen: list[tuple[float | None, ...]] = []

    class StopHereError(Exception):
        pass

    def capture(inputs, limits):
        seen.append(tuple(p.shortfall_hours_share for p in inputs.pools))
        raise StopHereError

    monkeypatch.setattr(replay_module, "_forecast_scenarios", lambda *args: None)
    monkeypatch.setattr(replay_module, "_with_forecast", lambda base, forecast: base)
    monkeypatch.setattr(replay_module, "solve_plan", capture)
    for per_pool in (True, False):
        with pytest.raises(StopHereError):
            replay_module.replay_workspace(
                sample_workspace.workspace,
                ReplaySettings(quarters=8, shortfall_share_per_pool=per_pool),
            )
    measured, fleet_wide = seen
    assert all(s is not None and 0 < s <= 1 for s in measured)
    assert len(set(measured)) > 1  # pools differ
    assert all(s is None for s in fleet_wide)


def test_the_plan_decides_later_commitments_as_recourse_unless_told_not_to(
    sample_workspace: IngestedSample, monkeypatch
) -> None:
    import workbench.replay as replay_module

    seen: list[bool] = []

    class StopHereError(Exception):
        pass

    def capture(inputs, limits):
        seen.append(limits.commitment_recourse)
        raise StopHereError

    monkeypatch.setattr(replay_module, "_forecast_scenarios", lambda *args: None)
    monkeypatch.setattr(replay_module, "_with_forecast", lambda base, forecast: base)
    monkeypatch.setattr(replay_module, "solve_plan", capture)
    for settings in (ReplaySettings(), ReplaySettings(commitment_recourse=False)):
        with pytest.raises(StopHereError):
            replay_module.replay_workspace(sample_workspace.workspace, settings)
    assert seen == [True, False]


def test_the_track_record_scales_a_pool_by_its_misses_shrunk_toward_the_fleets() -> None:
    # One past decision scored four quarters over. Pool 0's medians were twice the realized
    # peaks (log ratio -ln 2 each quarter), pool 1's exact (0). The fleet's mean log ratio is
    # -ln2 / 2; a pool's own mean counts for its 4 quarters, the fleet's for 4 more:
    # pool 0: (4 x -ln2 + 4 x -ln2/2) / 8 = -0.75 ln2 -> 2 ** -0.75; pool 1: 2 ** -0.25.
    medians = np.array([[[200.0] * 4, [100.0] * 4]])
    realized = np.array([[100.0] * 4, [100.0] * 4])
    assert track_record_scale(medians, realized) == pytest.approx([2**-0.75, 2**-0.25])
    # A pool without a scored quarter (no forecast then: NaN; no demand yet: 0) takes the
    # fleet's factor; with nothing scored at all every factor is one.
    medians = np.array([[[200.0] * 4, [np.nan] * 4]])
    realized = np.array([[100.0] * 4, [0.0] * 4])
    assert track_record_scale(medians, realized) == pytest.approx([2**-1.0, 2**-1.0])
    assert track_record_scale(np.full((1, 2, 4), np.nan), realized).tolist() == [1.0, 1.0]
    assert track_record_scale(np.zeros((0, 2, 0)), np.zeros((2, 0))).tolist() == [1.0, 1.0]


def test_the_plan_scales_its_scenarios_by_its_own_track_record_unless_told_not_to(
    sample_workspace: IngestedSample, monkeypatch
) -> None:
    import workbench.replay as replay_module
    from workbench.planning_inputs import quarterly_peaks

    class StopHereError(Exception):
        pass

    solve = replay_module.solve_plan
    replayed: list[PoolSpec] = []  # the plan's pools, and its first decision's quarters
    first_quarters: list[str] = []

    def run(settings: ReplaySettings) -> list[np.ndarray]:
        plans: list[np.ndarray] = []

        def capture(inputs, limits):
            if inputs.n_scenarios == 2:  # the plan's, not perfect foresight's
                plans.append(inputs.demand)
                replayed[:] = inputs.pools
                first_quarters[:] = first_quarters or inputs.quarters
                if len(plans) == 2:
                    raise StopHereError
            return solve(inputs, limits)

        def forecast(base, _):
            return replace(base, demand=np.full((*base.demand.shape[:2], 2), 1000.0))

        monkeypatch.setattr(replay_module, "_forecast_scenarios", lambda *args: None)
        monkeypatch.setattr(replay_module, "_with_forecast", forecast)
        monkeypatch.setattr(replay_module, "solve_plan", capture)
        with pytest.raises(StopHereError):
            replay_module.replay_workspace(sample_workspace.workspace, settings)
        monkeypatch.undo()
        return plans

    first, second = run(ReplaySettings(quarters=8))
    assert (first == 1000.0).all()  # nothing is over yet at the first decision
    # At the second: the first quarter is over, scored by the first decision's medians
    # (1000, before any scaling) against its observed peak (used + queued, not the truth).
    usage = sample_workspace.workspace.read_table("usage_daily")
    observed = usage.group_by("accelerator", "region", pl.col("date").alias("ds")).agg(
        ((pl.col("chip_hours_used") + pl.col("chip_hours_queued").fill_null(0.0)).sum() / 24).alias(
            "y"
        )
    )
    peaks = quarterly_peaks(observed).filter(pl.col("quarter") == first_quarters[0])
    by_pool = {(a, r): v for a, r, v in peaks.select(_POOL_COLUMNS).iter_rows()}
    pools = [(p.accelerator, p.region) for p in replayed]
    realized = np.array([[by_pool[p]] for p in pools])  # each had demand in that quarter
    expected = 1000.0 * track_record_scale(np.full((1, len(pools), 1), 1000.0), realized)
    assert second[:, 0, 0] == pytest.approx(expected)
    assert (second == second[:, :1, :1]).all()  # one factor per pool, every quarter
    assert all((plan == 1000.0).all() for plan in run(ReplaySettings(track_record=False)))


_POOL_COLUMNS = ("accelerator", "region", "peak_chips")
