"""Showback: pool costs allocated to teams to the cent, with hand-computed expectations,
commitment waste from a FOCUS file, and properties on random usage (hypothesis)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.billing import ingest_focus_billing
from workbench.errors import WorkbenchError
from workbench.money import apportion, format_usd, micro_usd_to_cents
from workbench.schema import BILLING, INVENTORY, PRICE_BOOK, USAGE_DAILY
from workbench.showback import (
    IDLE,
    UNTAGGED,
    ShowbackPolicy,
    breakdown,
    month_range,
    reconcile,
    showback,
)

OCTOBER = date(2026, 10, 1)
DAY = date(2026, 10, 1)
POOL = ("h100-80gb", "us-central1")
# One kW per chip at PUE 1 and $1/kWh, nothing else: exactly $1.00 per installed chip-hour.
CATALOG = pl.DataFrame({"accelerator": ["h100-80gb", "l4-24gb"], "power_w": [1000.0, 72.0]})
ONE_DOLLAR = {
    "capex_usd": 0.0,
    "depreciation_years": 5.0,
    "lead_time_weeks": 26.0,
    "usd_per_kwh": 1.0,
    "pue": 1.0,
    "facility_usd_per_kw_month": 0.0,
    "network_storage_capex_share": 0.0,
    "maintenance_capex_share_per_year": 0.0,
    "on_demand_usd_per_hour": 7.0,
    "commit_1y_usd_per_hour": 4.0,
    "commit_3y_usd_per_hour": 3.0,
    "spot_usd_per_hour": 2.0,
    "min_order_chips": 8,
    "source": "test",
    "as_of": date(2026, 9, 30),
}
PRICE_FIELDS = ("capex_usd", "usd_per_kwh", "facility_usd_per_kw_month")


def price_book(pools=(POOL,), **overrides) -> pl.DataFrame:
    rows = [{"accelerator": a, "region": r, **ONE_DOLLAR, **overrides} for a, r in pools]
    return pl.DataFrame(rows, schema=PRICE_BOOK.schema)


def usage(rows) -> pl.DataFrame:
    """rows: (day, accelerator, region, team, workload, used, allocated)."""
    return pl.DataFrame(
        [
            {
                "date": day,
                "accelerator": accelerator,
                "region": region,
                "team": team,
                "workload": workload,
                "chip_hours_used": used,
                "chip_hours_allocated": allocated,
                "chip_hours_queued": 0.0,
                "peak_chips": used / 24,
                "source": "test",
            }
            for day, accelerator, region, team, workload, used, allocated in rows
        ],
        schema=USAGE_DAILY.schema,
    )


def inventory(rows) -> pl.DataFrame:
    """rows: (day, accelerator, region, installed chips)."""
    return pl.DataFrame(
        [
            {
                "date": day,
                "accelerator": accelerator,
                "region": region,
                "installed_chips": chips,
                "healthy_chips": chips,
                "source": "test",
            }
            for day, accelerator, region, chips in rows
        ],
        schema=INVENTORY.schema,
    )


def run(usage_frame, inventory_frame, billing=None, book=None, policy=None, months=(OCTOBER,)):
    return showback(
        usage_frame,
        inventory_frame,
        BILLING.empty() if billing is None else billing,
        price_book() if book is None else book,
        CATALOG,
        list(months),
        policy,
    )


def by_team(result) -> dict[str, int]:
    cents = result.cells.group_by("team").agg(pl.col("total_cents").sum())
    return dict(cents.iter_rows())


# -- money -------------------------------------------------------------------------------------


def test_apportion_splits_cents_exactly_by_largest_remainder():
    assert apportion(2400, [60, 96]) == [923, 1477]
    assert apportion(100, [1, 1, 1]) == [34, 33, 33]
    assert apportion(0, [0, 0]) == [0, 0]
    assert sum(apportion(1_000_003, [0.1, 0.2, 0.3, 0.4])) == 1_000_003
    with pytest.raises(ValueError, match="zero weights"):
        apportion(5, [0, 0])


def test_micro_dollars_round_to_cents_keeping_the_total():
    # Three thirds of a dollar: each 33.3333 cents, the total exactly 100 cents.
    assert micro_usd_to_cents([333_333, 333_333, 333_334]) == [33, 33, 34]
    assert sum(micro_usd_to_cents([5_000] * 7)) == 4  # 3.5 cents rounds half up to 4
    assert micro_usd_to_cents([-1_250_000, 2_500_000]) == [-125, 250]


def test_format_usd_has_commas_and_cents():
    assert format_usd(123_456_789) == "$1,234,567.89"
    assert format_usd(-5) == "-$0.05"


def test_month_range_spans_years():
    assert month_range(date(2025, 11, 20), date(2026, 2, 1)) == [
        date(2025, 11, 1),
        date(2025, 12, 1),
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]


# -- hand-computed pools ---------------------------------------------------------------------

# Ten chips for one day: 240 chip-hours at $1.00, a $240.00 pool. Team a holds 120 chip-hours
# and uses 60 (40 training, 20 serving); team b holds 48 and uses 96.
TWO_TEAMS = [
    (DAY, *POOL, "a", "training", 40.0, 80.0),
    (DAY, *POOL, "a", "serving", 20.0, 40.0),
    (DAY, *POOL, "b", "training", 96.0, 48.0),
]
TEN_CHIPS = [(DAY, *POOL, 10)]
ONE_DAY = [OCTOBER]


def one_day_inventory():
    # The pool exists only on the first: later days of the month have no chips installed.
    return inventory([*TEN_CHIPS, (date(2026, 10, 2), *POOL, 0)])


def test_two_teams_pay_for_max_of_allocated_and_used_and_idle_is_the_rest():
    result = run(usage(TWO_TEAMS), one_day_inventory())
    assert by_team(result) == {"a": 12_000, "b": 9_600, IDLE: 2_400}
    cells = {(r["team"], r["workload"]): r for r in result.cells.iter_rows(named=True)}
    # a's unused 60 chip-hours are shared by the workloads that left them unused (40 and 20).
    assert cells[("a", "training")]["chip_hours_charged"] == pytest.approx(80.0)
    assert cells[("a", "serving")]["chip_hours_charged"] == pytest.approx(40.0)
    assert cells[("a", "training")]["owned_cents"] == 8_000
    assert cells[(IDLE, IDLE)]["chip_hours_charged"] == pytest.approx(24.0)
    (line,) = reconcile(result).iter_rows(named=True)
    assert line["pool_cost_cents"] == 24_000
    assert line["teams_cents"] + line["idle_cents"] == 24_000
    assert line["balanced"]
    teams = breakdown(result, ["team"])
    assert teams["team"].to_list() == ["a", "b", IDLE]
    row_a = teams.row(0, named=True)
    assert str(row_a["total_usd"]) == "120.00"
    assert row_a["efficiency"] == pytest.approx(0.5)
    assert row_a["unit_cost_usd_per_used_chip_hour"] == pytest.approx(2.0)


def test_shared_idle_follows_use_and_still_adds_up():
    result = run(usage(TWO_TEAMS), one_day_inventory(), policy=ShowbackPolicy(idle="shared"))
    # $24.00 idle split 60:96 -> 923.08 and 1476.92 cents; the spare cent goes to b.
    assert by_team(result) == {"a": 12_923, "b": 11_077}
    shares = dict(result.cells.group_by("team").agg(pl.col("idle_share_cents").sum()).iter_rows())
    assert shares == {"a": 923, "b": 1_477}
    assert reconcile(result)["balanced"].all()


def test_paying_for_use_only_leaves_reservations_idle():
    result = run(usage(TWO_TEAMS), one_day_inventory(), policy=ShowbackPolicy(basis="used"))
    assert by_team(result) == {"a": 6_000, "b": 9_600, IDLE: 8_400}


def test_an_oversubscribed_pool_charges_use_in_full_and_scales_reservations():
    rows = [(DAY, *POOL, "a", "training", 60.0, 200.0), (DAY, *POOL, "b", "training", 96.0, 100.0)]
    result = run(usage(rows), one_day_inventory())
    # Free after use: 240 - 156 = 84 chip-hours for 140 + 4 reserved: each scaled by 84/144.
    # a: 60 + 81.667 = 141.667 chip-hours -> $141.67; b: 96 + 2.333 -> $98.33; no idle.
    assert by_team(result) == {"a": 14_167, "b": 9_833}
    pool = result.pools.row(0, named=True)
    assert pool["reserved_scale"] == pytest.approx(84 / 144)
    assert "oversubscribe" in pool["note"]
    assert reconcile(result)["balanced"].all()


def test_usage_beyond_installed_chips_is_scaled_to_the_pool_cost():
    rows = [(DAY, *POOL, "a", "training", 300.0, None), (DAY, *POOL, "b", "batch", 100.0, None)]
    result = run(usage(rows), one_day_inventory())
    assert by_team(result) == {"a": 18_000, "b": 6_000}
    assert "exceeds installed" in result.pools["note"][0]


def test_installed_chips_hold_from_each_snapshot_until_the_next():
    snapshots = inventory([(date(2026, 9, 28), *POOL, 10), (date(2026, 10, 16), *POOL, 20)])
    result = run(usage([]), snapshots)
    # 15 days at 10 chips and 16 days at 20: 3,600 + 7,680 chip-hours.
    assert result.pools["installed_chip_hours"][0] == pytest.approx(11_280.0)
    assert by_team(result) == {IDLE: 1_128_000}


def test_owned_cost_splits_into_its_tco_components():
    book = price_book(capex_usd=43_800.0, facility_usd_per_kw_month=730.0)
    result = run(usage(TWO_TEAMS), one_day_inventory(), book=book)
    # $1.00 power + $1.00 capex (43,800 / (5 x 8,760)) + $1.00 facility per chip-hour.
    cells = result.cells
    assert cells["owned_cents"].sum() == 72_000
    parts = ["capex_depreciation_cents", "power_cents", "facility_cents"]
    assert [cells[p].sum() for p in parts] == [24_000, 24_000, 24_000]
    components = [
        c
        for c in cells.columns
        if c.endswith("_cents")
        and c
        not in (
            "owned_cents",
            "idle_share_cents",
            "cloud_cents",
            "commitment_waste_cents",
            "total_cents",
        )
    ]
    assert (cells.select(pl.sum_horizontal(components)).to_series() == cells["owned_cents"]).all()


def test_a_pool_in_use_without_a_price_names_accelerator_region_and_field():
    rows = [*TWO_TEAMS, (DAY, "l4-24gb", "europe-west4", "c", "serving", 5.0, None)]
    with pytest.raises(WorkbenchError) as raised:
        run(usage(rows), one_day_inventory())
    message = raised.value.one_line()
    assert "accelerator 'l4-24gb'" in message
    assert "region 'europe-west4'" in message
    assert "field 'capex_usd'" in message


def test_a_negative_price_stops_the_breakdown():
    with pytest.raises(WorkbenchError, match=r"field 'usd_per_kwh'.*negative"):
        run(usage(TWO_TEAMS), one_day_inventory(), book=price_book(usd_per_kwh=-0.1))


def test_a_bad_policy_is_refused():
    with pytest.raises(WorkbenchError, match="separate or shared"):
        ShowbackPolicy(idle="everyone")  # type: ignore[arg-type]


# -- FOCUS billing ----------------------------------------------------------------------------

FOCUS_HEADER = (
    "ChargePeriodStart,ChargePeriodEnd,BilledCost,EffectiveCost,ListCost,BillingCurrency,"
    "ServiceName,SkuId,ResourceId,RegionId,PricingQuantity,PricingUnit,ConsumedQuantity,"
    "ConsumedUnit,ChargeCategory,CommitmentDiscountId,CommitmentDiscountStatus,Tags"
)
FOCUS_ROWS = [
    # On-demand burst for vision.
    "2026-10-03T00:00:00Z,2026-10-04T00:00:00Z,10.00,10.00,10.00,USD,Compute Engine,NVIDIA L4,"
    'vm-1,europe-west4,14,Hours,14,Hours,Usage,null,null,"{""team"": ""vision""}"',
    # A commitment of 100 chip-hours at $1: 80 used, 20 unused, bought upfront.
    "2026-10-01T00:00:00Z,2026-10-02T00:00:00Z,0,80.00,null,USD,Cloud TPU,H100,cud-1,"
    'us-central1,80,Hours,80,Hours,Usage,cud-1,Used,"{""team"": ""search""}"',
    "2026-10-01T00:00:00Z,2026-10-02T00:00:00Z,0,20.00,null,USD,Cloud TPU,H100,cud-1,"
    'us-central1,20,Hours,null,null,Usage,cud-1,Unused,"{""team"": ""search""}"',
    "2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,100.00,0,null,USD,Cloud TPU,H100,cud-1,"
    "us-central1,100,Hours,null,null,Purchase,cud-1,null,{}",
    # Untagged spend, in fractions of a cent.
    "2026-10-05T00:00:00Z,2026-10-06T00:00:00Z,0.3333,0.3333,null,USD,Compute Engine,H100,"
    "vm-2,us-central1,1,Hours,1,Hours,Usage,null,null,null",
    "2026-10-06T00:00:00Z,2026-10-07T00:00:00Z,0.3333,0.3333,null,USD,Compute Engine,H100,"
    "vm-3,us-central1,1,Hours,1,Hours,Usage,null,null,null",
    # September: outside the month.
    "2026-09-30T00:00:00Z,2026-10-01T00:00:00Z,9.00,9.00,9.00,USD,Compute Engine,NVIDIA L4,"
    'vm-4,europe-west4,12,Hours,12,Hours,Usage,null,null,"{""team"": ""vision""}"',
]


@pytest.fixture
def focus_billing(tmp_path: Path, catalog) -> pl.DataFrame:
    path = tmp_path / "focus.csv"
    path.write_text("\n".join([FOCUS_HEADER, *FOCUS_ROWS]) + "\n")
    billed = ingest_focus_billing(path, resolver=catalog, source=f"billing:{path}")
    assert billed.quarantine.height == 0
    return billed.good


def test_an_unused_commitment_is_commitment_waste_and_the_cloud_part_is_the_bill(focus_billing):
    result = run(usage(TWO_TEAMS), one_day_inventory(), billing=focus_billing)
    cloud = result.cells.group_by("team").agg(
        pl.col("cloud_cents").sum(), pl.col("commitment_waste_cents").sum()
    )
    assert dict(cloud.select("team", "commitment_waste_cents").iter_rows())["search"] == 2_000
    assert dict(cloud.select("team", "cloud_cents").iter_rows()) == {
        "a": 0,
        "b": 0,
        IDLE: 0,
        "search": 8_000,
        "vision": 1_000,
        UNTAGGED: 67,  # 0.6666 dollars: one rounding, at the end
    }
    (line,) = reconcile(result).iter_rows(named=True)
    # October's EffectiveCost: 10 + 80 + 20 + 0 + 0.3333 + 0.3333 = 110.6666 -> $110.67.
    assert line["billing_cents"] == 11_067
    assert line["cloud_cents"] + line["commitment_waste_cents"] == 11_067
    assert line["pool_cost_cents"] == 24_000 + 11_067
    assert line["balanced"]
    # A cloud-only pool (L4 in europe-west4) needs no owned price.
    vision = breakdown(result, ["team", "accelerator", "region"]).filter(pl.col("team") == "vision")
    assert vision.select("accelerator", "region").row(0) == ("l4-24gb", "europe-west4")
    assert str(vision["total_usd"][0]) == "10.00"


def test_breakdowns_drill_down_and_roll_up_to_the_same_totals(focus_billing):
    result = run(usage(TWO_TEAMS), one_day_inventory(), billing=focus_billing)
    fine = breakdown(result, ["month", "team", "accelerator", "region", "workload"])
    for keys in (["team"], ["accelerator"], ["region", "workload"], ["month"], []):
        coarse = breakdown(result, keys)
        assert coarse["total_usd"].sum() == fine["total_usd"].sum()
        if keys:
            rolled = fine.group_by(keys).agg(pl.col("total_usd").sum())
            joined = coarse.join(rolled, on=keys, suffix="_rolled")
            assert (joined["total_usd"] == joined["total_usd_rolled"]).all()
    with pytest.raises(WorkbenchError, match="cannot break costs down by 'colour'"):
        breakdown(result, ["colour"])


# -- properties ---------------------------------------------------------------------------------

POOLS = [("h100-80gb", "us-central1"), ("l4-24gb", "us-central1")]
TEAMS = ["a", "b", "c"]
usage_rows = st.lists(
    st.tuples(
        st.integers(0, 3),  # day of October
        st.sampled_from(POOLS),
        st.sampled_from(TEAMS),
        st.sampled_from(["training", "serving"]),
        st.floats(0, 400),  # used
        st.one_of(st.none(), st.floats(0, 400)),  # allocated
    ),
    max_size=20,
)
chips = st.tuples(st.integers(0, 12), st.integers(0, 12))
bill_rows = st.lists(
    st.tuples(
        st.integers(0, 40),  # day from September 20
        st.sampled_from(["NVIDIA H100 80GB HBM3", "NVIDIA L4", "storage"]),
        st.sampled_from(["a", "b", None]),
        st.decimals(0, 5000, places=4),
        st.sampled_from(["Used", "Unused", None]),
    ),
    max_size=12,
)


def _random_inputs(rows, installed, bills, k=1.0):
    used_rows = [
        (date(2026, 10, 1 + day), *pool, team, workload, used, allocated)
        for day, pool, team, workload, used, allocated in rows
    ]
    unique = {r[:5]: r for r in used_rows}  # one row per key
    snapshots = inventory(
        [(date(2026, 9, 28), *pool, count) for pool, count in zip(POOLS, installed, strict=True)]
    )
    skus = {"NVIDIA H100 80GB HBM3": "h100-80gb", "NVIDIA L4": "l4-24gb"}
    rows_of_bill = [
        {
            "row_hash": f"h{index}",
            "ChargePeriodStart": datetime(2026, 9, 20, tzinfo=UTC) + timedelta(days=day),
            "ChargePeriodEnd": datetime(2026, 9, 21, tzinfo=UTC) + timedelta(days=day),
            "BilledCost": float(cost) * k,
            "EffectiveCost": float(cost) * k,
            "BillingCurrency": "USD",
            "SkuId": sku,
            "RegionId": "us-central1",
            "ChargeCategory": "Usage",
            "CommitmentDiscountStatus": status,
            "accelerator": skus.get(sku),
            "team": team,
            "source": "test",
        }
        for index, (day, sku, team, cost, status) in enumerate(bills)
    ]
    billing = pl.DataFrame(rows_of_bill, schema=BILLING.schema) if bills else None
    return usage(list(unique.values())), snapshots, billing


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(usage_rows, chips, bill_rows, st.sampled_from(["separate", "shared"]))
def test_reconciliation_holds_and_costs_are_non_negative(rows, installed, bills, idle):
    usage_frame, snapshots, billing = _random_inputs(rows, installed, bills)
    book = price_book(POOLS, capex_usd=30_000.0, facility_usd_per_kw_month=150.0)
    result = run(
        usage_frame,
        snapshots,
        billing=billing,
        book=book,
        policy=ShowbackPolicy(idle=idle),
        months=[date(2026, 9, 1), OCTOBER],
    )
    check = reconcile(result)
    assert check["balanced"].all(), check
    money = [c for c in result.cells.columns if c.endswith("_cents")]
    assert (result.cells.select(pl.min_horizontal(money)).to_series() >= 0).all()
    # The cloud part is the bill's EffectiveCost of the two months, to the cent.
    expected = sum(round(float(cost) * 100, 6) for day, _, _, cost, _ in bills if day <= 40)
    assert check["billing_cents"].sum() == pytest.approx(expected, abs=len(check))
    # Nobody pays for more chip-hours than the pools have.
    for pool in result.pools.iter_rows(named=True):
        charged = result.cells.filter(
            (pl.col("accelerator") == pool["accelerator"])
            & (pl.col("region") == pool["region"])
            & (pl.col("month") == pool["month"])
        )["chip_hours_charged"].sum()
        assert charged <= pool["installed_chip_hours"] + 1e-6 or pool["installed_chip_hours"] == 0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(usage_rows, chips, bill_rows, st.sampled_from([2.0, 3.0, 0.5, 10.0]))
def test_scaling_every_price_by_k_scales_every_cost_by_k(rows, installed, bills, k):
    usage_frame, snapshots, billing = _random_inputs(rows, installed, bills)
    _, _, scaled_billing = _random_inputs(rows, installed, bills, k)
    figures = {"capex_usd": 30_000.0, "facility_usd_per_kw_month": 150.0, "usd_per_kwh": 0.08}
    base = run(usage_frame, snapshots, billing=billing, book=price_book(POOLS, **figures))
    scaled = run(
        usage_frame,
        snapshots,
        billing=scaled_billing,
        book=price_book(POOLS, **{name: value * k for name, value in figures.items()}),
    )
    keys = ["month", "team", "accelerator", "region", "workload"]
    joined = base.cells.join(scaled.cells, on=keys, how="full", coalesce=True, suffix="_k")
    assert joined.height == base.cells.height
    for column in ("owned_cents", "cloud_cents", "commitment_waste_cents", "total_cents"):
        # Each cell is within a cent and a half of its exact share, before and after scaling.
        drift = (joined[f"{column}_k"] - joined[column] * k).abs()
        assert (drift <= 2 * (k + 1)).all(), (column, joined)
