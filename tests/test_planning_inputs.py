"""Plan inputs from a workspace: inventory, open orders with their slip, prices, scenarios."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from tests.conftest import IngestedSample
from workbench.planning_inputs import (
    InputSettings,
    delivery_slip_days,
    next_quarters,
    pool_shortfall_hours_shares,
    quarter_of,
    shortfall_hours_share,
    workspace_plan_inputs,
)
from workbench.tco import owned_cost

POOL = ("h100-80gb", "us-central1")


def _forecast_run() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    quarters = {"2026Q4": 8, "2027Q1": 13, "2027Q2": 4}
    scenarios = pl.DataFrame(
        [
            {
                "accelerator": POOL[0],
                "region": POOL[1],
                "quarter": q,
                "scenario": s,
                "peak_chips": 1000.0 + 100 * k + 10 * s,
            }
            for k, q in enumerate(quarters)
            for s in range(3)
        ]
    )
    planning = pl.DataFrame(
        {"level": "pool", "quarter": list(quarters), "weeks": list(quarters.values())}
    )
    # Two years of demand growing 10% a quarter (compounded daily).
    days = [date(2024, 10, 1) + timedelta(days=i) for i in range(761)]
    y = [500.0 * 1.1 ** (i / 91.3125) for i in range(761)]
    history = pl.DataFrame({"accelerator": POOL[0], "region": POOL[1], "ds": days, "y": y})
    return scenarios, planning, history


def test_inputs_from_the_sample_workspace(sample_workspace: IngestedSample) -> None:
    ws = sample_workspace.workspace
    orders = ws.read_table("orders")
    inventory = ws.read_table("inventory")
    scenarios, planning, history = _forecast_run()
    inputs = workspace_plan_inputs(
        scenarios,
        planning,
        history,
        inventory,
        orders,
        ws.read_table("price_book"),
        ws.read_table("sku_catalog"),
        InputSettings(horizon_quarters=6),
    )
    assert inputs.quarters == next_quarters("2026Q4", 6)
    # 2027Q2 has 4 whole weeks: not used; it and later quarters are extrapolated by growth.
    assert inputs.extrapolated == (False, False, True, True, True, True)
    demand = inputs.demand[0]
    assert demand[1].tolist() == [1100.0, 1110.0, 1120.0]
    assert demand[2] / demand[1] == pytest.approx(np.full(3, 1.1), rel=0.02)
    # Installed: the pool's latest snapshot.
    latest = inventory.filter(pl.col("accelerator") == POOL[0], pl.col("region") == POOL[1]).sort(
        "date"
    )[-1]
    assert inputs.installed[0, 0] == latest["installed_chips"][0]
    assert inputs.healthy_ratio[0] == pytest.approx(
        latest["healthy_chips"][0] / latest["installed_chips"][0]
    )
    # Open orders land on expected day + the pool's (or the fleet's) median slip.
    fleet_slip, pool_slip = delivery_slip_days(orders)
    slip = pool_slip.get(POOL, fleet_slip)
    expected = np.zeros(6)
    for quantity, expected_on in (
        orders.filter(
            pl.col("status") == "open",
            pl.col("accelerator") == POOL[0],
            pl.col("region") == POOL[1],
        )
        .select("quantity", "expected_on")
        .iter_rows()
    ):
        lands = expected_on + timedelta(days=round(slip))
        first = next(
            k
            for k, q in enumerate(inputs.quarters)
            if date(int(q[:4]), 3 * (int(q[-1]) - 1) + 1, 1) >= max(lands, date(2026, 10, 1))
        )
        expected[first:] += quantity
    assert inputs.on_order[0].tolist() == expected.tolist()
    assert expected[-1] > 0
    # Prices through workbench.tco.
    tco = owned_cost(ws.read_table("price_book"), ws.read_table("sku_catalog"), pools=[POOL])
    assert inputs.pools[0].owned_usd_per_chip_hour == pytest.approx(
        tco["owned_usd_per_chip_hour"][0]
    )
    assert inputs.pools[0].lot_chips == 32
    assert inputs.pools[0].lead_quarters == 2


def test_quarters() -> None:
    assert quarter_of(date(2026, 11, 1)) == "2026Q4"
    assert next_quarters("2026Q3", 4) == ("2026Q3", "2026Q4", "2027Q1", "2027Q2")


def _quarter_of_days(values: list[float]) -> pl.DataFrame:
    start = date(2026, 1, 1)
    return pl.DataFrame(
        {
            "accelerator": "h100",
            "region": "r1",
            "ds": [start + timedelta(days=k) for k in range(len(values))],
            "y": values,
        }
    )


def test_a_flat_quarter_is_short_all_quarter_long() -> None:
    assert shortfall_hours_share(_quarter_of_days([100.0] * 90)) == pytest.approx(1.0)


def test_a_steady_ramp_is_short_only_at_its_end() -> None:
    # Demand rising linearly 0 -> 91 over the quarter: a capacity d below the peak weekly mean
    # is short on the last ~d days by d/2 on average, about d^2/2 chip-days of d x 91.
    share = shortfall_hours_share(_quarter_of_days([float(k) for k in range(91)]))
    assert 0.1 < share < 0.35


def test_no_whole_quarter_gives_the_default() -> None:
    assert shortfall_hours_share(_quarter_of_days([5.0] * 30), default=0.7) == 0.7


def test_each_pool_has_its_own_shortfall_share_shrunk_toward_the_fleets() -> None:
    # A flat (serving-like) pool is short all quarter long at its peak; a pool whose peak is
    # a two-week campaign is short only during it. Four whole quarters each.
    start = date(2025, 1, 1)
    flat = [100.0] * 91
    campaign = [100.0] * 77 + [200.0] * 14
    frames = []
    for name, values in (("flat", flat), ("campaign", campaign)):
        days = []
        for q in range(4):
            first = date(2025 + (q * 3) // 12, (q * 3) % 12 + 1, 1)
            days += [(first + timedelta(days=k), v) for k, v in enumerate(values)]
        frames.append(
            pl.DataFrame(
                {
                    "accelerator": name,
                    "region": "r1",
                    "ds": [d for d, _ in days],
                    "y": [v for _, v in days],
                }
            )
        )
    daily = pl.concat(frames)
    assert daily["ds"].min() == start
    fleet = shortfall_hours_share(daily)
    own = pool_shortfall_hours_shares(daily, prior_quarters=0.0)
    assert own[("flat", "r1")] == pytest.approx(1.0)
    assert own[("campaign", "r1")] < 0.25
    assert own[("campaign", "r1")] < fleet < own[("flat", "r1")]
    # With a prior of four quarters, four quarters of a pool's own weigh half.
    shrunk = pool_shortfall_hours_shares(daily, prior_quarters=4.0)
    for key in own:
        assert shrunk[key] == pytest.approx((own[key] + fleet) / 2)
    assert pool_shortfall_hours_shares(daily.head(30)) == {}
