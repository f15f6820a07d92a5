"""TCO: the owned cost of a chip-hour from its components, break-evens, sensitivity, and
the errors a finance analyst gets for a missing or negative price."""

from __future__ import annotations

import tomllib
from datetime import date

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.catalog import load_price_book
from workbench.errors import WorkbenchError
from workbench.schema import PRICE_BOOK
from workbench.tco import (
    COMPONENTS,
    SensitivityRanges,
    TcoAssumptions,
    owned_cost,
    sensitivity,
    tco_table,
)

H100 = {
    "accelerator": "h100-80gb",
    "region": "us-central1",
    "capex_usd": 33_000.0,
    "depreciation_years": 6.0,
    "lead_time_weeks": 26.0,
    "usd_per_kwh": 0.072,
    "pue": 1.1,
    "facility_usd_per_kw_month": 140.0,
    "network_storage_capex_share": 0.15,
    "maintenance_capex_share_per_year": 0.04,
    "on_demand_usd_per_hour": 6.98,
    "commit_1y_usd_per_hour": 4.40,
    "commit_3y_usd_per_hour": 3.14,
    "spot_usd_per_hour": 2.25,
    "min_order_chips": 32,
    "source": "test figures",
    "as_of": date(2026, 9, 30),
}
CATALOG = pl.DataFrame({"accelerator": ["h100-80gb", "l4-24gb"], "power_w": [700.0, 72.0]})
PRICES = (
    "capex_usd",
    "usd_per_kwh",
    "facility_usd_per_kw_month",
    *(f"{tier}_usd_per_hour" for tier in ("on_demand", "commit_1y", "commit_3y", "spot")),
)


def book(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=PRICE_BOOK.schema)


# Hand-computed, one component at a time, for one H100 chip-hour in us-central1.
CAPEX = 33_000 / (6 * 8760)  # 0.627854
POWER = 0.7 * 1.1 * 0.072  # 0.05544
FACILITY = 0.7 * 140 * 12 / 8760  # 0.134247
NETWORK = 33_000 * 0.15 / (6 * 8760)  # 0.094178
MAINTENANCE = 33_000 * 0.04 / 8760  # 0.150685
OWNED = CAPEX + POWER + FACILITY + NETWORK + MAINTENANCE  # 1.062404


def test_one_h100_chip_hour_is_the_sum_of_its_components():
    row = owned_cost(book(H100), CATALOG).row(0, named=True)
    expected = {
        "capex_depreciation": 0.627854,
        "power": 0.05544,
        "facility": 0.134247,
        "network_storage": 0.094178,
        "maintenance": 0.150685,
    }
    for component, value in expected.items():
        assert row[f"{component}_usd_per_chip_hour"] == pytest.approx(value, abs=1e-6)
    assert row["owned_usd_per_chip_hour"] == pytest.approx(1.062404, abs=1e-6)
    assert row["owned_usd_per_chip_hour"] == pytest.approx(
        sum(row[f"{c}_usd_per_chip_hour"] for c in COMPONENTS), rel=1e-12
    )


def test_cost_per_used_chip_hour_and_break_even_utilization():
    row = tco_table(book(H100), CATALOG, TcoAssumptions(utilization=0.5)).row(0, named=True)
    assert row["owned_usd_per_used_chip_hour"] == pytest.approx(OWNED / 0.5)
    # Owning at 1.0624/installed hour equals 6.98/used hour on demand at 15.22% utilization.
    assert row["break_even_on_demand"] == pytest.approx(OWNED / 6.98)
    assert row["break_even_on_demand"] == pytest.approx(0.152207, abs=1e-6)
    assert row["break_even_commit_1y"] == pytest.approx(OWNED / 4.40)
    assert row["break_even_commit_3y"] == pytest.approx(0.338345, abs=1e-6)
    # At the break-even utilization, owned per used chip-hour is the on-demand price.
    at_break_even = tco_table(
        book(H100), CATALOG, TcoAssumptions(utilization=row["break_even_on_demand"])
    ).row(0, named=True)
    assert at_break_even["owned_usd_per_used_chip_hour"] == pytest.approx(6.98)


def test_a_break_even_above_one_means_owning_never_pays_and_a_free_price_has_none():
    cheap_cloud = H100 | {"on_demand_usd_per_hour": 0.5, "commit_1y_usd_per_hour": 0.0}
    row = tco_table(book(cheap_cloud), CATALOG).row(0, named=True)
    assert row["break_even_on_demand"] > 1
    assert row["break_even_commit_1y"] is None


def test_utilization_outside_zero_to_one_is_refused():
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(WorkbenchError, match="utilization"):
            TcoAssumptions(utilization=bad)


def test_a_pool_without_a_price_names_accelerator_region_and_field():
    with pytest.raises(WorkbenchError) as raised:
        owned_cost(book(H100), CATALOG, pools=[("h100-80gb", "us-east1")])
    message = raised.value.one_line()
    assert "accelerator 'h100-80gb'" in message
    assert "region 'us-east1'" in message
    assert "field 'capex_usd'" in message
    assert "price_book.toml" in message


def test_a_missing_figure_names_its_field():
    with pytest.raises(WorkbenchError) as raised:
        tco_table(book(H100 | {"on_demand_usd_per_hour": None}), CATALOG)
    message = raised.value.one_line()
    assert "field 'on_demand_usd_per_hour'" in message
    assert "'h100-80gb'" in message
    assert "'us-central1'" in message
    # The owned cost alone does not need cloud prices.
    assert owned_cost(book(H100 | {"on_demand_usd_per_hour": None}), CATALOG).height == 1


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("usd_per_kwh", -0.1, "negative"),
        ("capex_usd", -1.0, "negative"),
        ("commit_3y_usd_per_hour", -3.0, "negative"),
        ("pue", 0.9, "below 1"),
        ("depreciation_years", 0.0, "not positive"),
    ],
)
def test_a_negative_price_stops_with_accelerator_region_and_field(field, value, words):
    with pytest.raises(WorkbenchError) as raised:
        tco_table(book(H100 | {field: value}), CATALOG)
    message = raised.value.one_line()
    assert f"field '{field}'" in message
    assert words in message
    assert "'h100-80gb'" in message and "'us-central1'" in message


def test_an_accelerator_missing_from_the_catalog_has_no_power():
    with pytest.raises(WorkbenchError, match="power_w"):
        owned_cost(book(H100 | {"accelerator": "b200-180gb"}), CATALOG)


def test_filters_that_select_nothing_say_so():
    with pytest.raises(WorkbenchError, match="no price book entry matches region 'mars-1'"):
        tco_table(book(H100), CATALOG, region="mars-1")


def test_sensitivity_moves_one_driver_at_a_time_around_the_base():
    ranges = SensitivityRanges(depreciation_years=(3.0, 6.0), utilization=(0.3, 0.6))
    frame = sensitivity(book(H100), CATALOG, TcoAssumptions(utilization=0.6), ranges)
    assert set(frame["driver"]) == {
        "capex",
        "depreciation life",
        "power price",
        "PUE",
        "utilization",
    }
    base = OWNED / 0.6
    assert frame["base_usd_per_used_chip_hour"].to_list() == pytest.approx([base] * 5)
    rows = {r["driver"]: r for r in frame.iter_rows(named=True)}
    # Utilization 0.3 doubles the cost per used chip-hour; 0.6 is the base.
    assert rows["utilization"]["low_usd_per_used_chip_hour"] == pytest.approx(2 * base)
    assert rows["utilization"]["high_usd_per_used_chip_hour"] == pytest.approx(base)
    # Three years instead of six doubles depreciation and the network share.
    three_years = (OWNED + CAPEX + NETWORK) / 0.6
    assert rows["depreciation life"]["low_usd_per_used_chip_hour"] == pytest.approx(three_years)
    assert rows["PUE"]["high_usd_per_used_chip_hour"] == pytest.approx(
        (OWNED + 0.7 * (1.5 - 1.1) * 0.072) / 0.6
    )
    assert frame["swing_usd"].to_list() == sorted(frame["swing_usd"].to_list(), reverse=True)


def test_the_sample_price_book_covers_every_pool_with_dated_sourced_figures(sample_dir, catalog):
    path = sample_dir / "catalog" / "price_book.toml"
    prices = load_price_book(path, catalog)
    table = tco_table(prices, catalog.table)
    assert table.height == len(catalog.ids()) * 4
    assert table["source"].null_count() == 0
    assert table["as_of"].null_count() == 0
    h100 = table.filter(
        (pl.col("accelerator") == "h100-80gb") & (pl.col("region") == "us-central1")
    ).row(0, named=True)
    assert h100["power_w"] == 700
    assert h100["owned_usd_per_chip_hour"] < h100["commit_3y_usd_per_hour"]
    document = tomllib.loads(path.read_text())
    for site in document["region"].values():
        assert 1.1 <= site["pue"] <= 1.5
    for entry in document["price"]:
        assert 5 <= entry["depreciation_years"] <= 6
    # Every figure line carries a comment with where it comes from.
    figures = [
        line
        for line in path.read_text().splitlines()
        if "=" in line and not line.startswith(("#", "[", "accelerator", "source", "as_of"))
    ]
    assert all("#" in line for line in figures), [line for line in figures if "#" not in line]


prices_strategy = st.fixed_dictionaries(
    {
        "capex_usd": st.floats(0, 100_000),
        "depreciation_years": st.floats(0.5, 10),
        "usd_per_kwh": st.floats(0, 1),
        "pue": st.floats(1, 3),
        "facility_usd_per_kw_month": st.floats(0, 500),
        "network_storage_capex_share": st.floats(0, 1),
        "maintenance_capex_share_per_year": st.floats(0, 1),
        "on_demand_usd_per_hour": st.floats(0.01, 50),
        "commit_1y_usd_per_hour": st.floats(0.01, 50),
        "commit_3y_usd_per_hour": st.floats(0.01, 50),
    }
)


@settings(max_examples=60, deadline=None)
@given(prices_strategy, st.floats(0.05, 1.0), st.floats(0.01, 100.0))
def test_costs_are_non_negative_and_scale_with_every_price(figures, utilization, k):
    base = tco_table(book(H100 | figures), CATALOG, TcoAssumptions(utilization=utilization))
    scaled_figures = H100 | figures | {name: (H100 | figures)[name] * k for name in PRICES}
    scaled = tco_table(book(scaled_figures), CATALOG, TcoAssumptions(utilization=utilization))
    money = [f"{c}_usd_per_chip_hour" for c in COMPONENTS]
    money += ["owned_usd_per_chip_hour", "owned_usd_per_used_chip_hour"]
    for column in money:
        value = base[column][0]
        assert value >= 0
        assert scaled[column][0] == pytest.approx(k * value, rel=1e-9, abs=1e-12)
    # Break-evens are ratios of prices: scaling every price leaves them where they were.
    for tier in ("on_demand", "commit_1y", "commit_3y"):
        assert scaled[f"break_even_{tier}"][0] == pytest.approx(
            base[f"break_even_{tier}"][0], rel=1e-9, abs=1e-12
        )
