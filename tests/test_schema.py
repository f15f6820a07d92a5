"""The canonical tables' contracts: schemas with units, row rules that quarantine instead of
raising, alias resolution, and the SKU catalog and price book loaders."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from workbench.catalog import SkuCatalog, load_price_book, load_sku_catalog
from workbench.errors import WorkbenchError
from workbench.schema import (
    JOB_RECORDS,
    PRICE_BOOK,
    QUARANTINE_SCHEMA,
    TABLES,
    WORKLOADS,
    Validated,
    normalize_alias,
    validate_allocations,
    validate_billing,
    validate_events,
    validate_inventory,
    validate_job_records,
    validate_orders,
    validate_price_book,
    validate_sku_catalog,
    validate_usage_daily,
    validate_usage_hourly,
    validate_utilization_daily,
)

SOURCE = "test:rows.csv"


def raw_frame(rows: list[dict[str, str | None]]) -> pl.DataFrame:
    """Rows as a file reader gives them: every column a string, plus 1-based file lines."""
    columns = list(dict.fromkeys(c for row in rows for c in row))
    frame = pl.DataFrame(
        {c: [row.get(c) for row in rows] for c in columns},
        schema={c: pl.String for c in columns},
    )
    return frame.with_columns(pl.Series("line", range(2, len(rows) + 2), dtype=pl.Int64))


def only_reject(validated: Validated) -> dict[str, Any]:
    """The single quarantined row of a one-row validation."""
    assert validated.good.height == 0, validated.good
    assert validated.quarantine.height == 1, validated.quarantine
    assert validated.quarantine.schema == QUARANTINE_SCHEMA
    return validated.quarantine.row(0, named=True)


# -- table specs ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_has_an_explicit_schema_with_a_unit_for_every_column(name):
    spec = TABLES[name]
    assert spec.name == name
    assert isinstance(spec.schema, pl.Schema)
    assert len(spec.schema) > 0
    for column, dtype in spec.schema.items():
        assert dtype != pl.Null, f"{name}.{column} has no real type"
        assert spec.units.get(column, "").strip(), f"{name}.{column} has no unit"
    assert set(spec.units) == set(spec.schema.names())
    assert set(spec.key) <= set(spec.schema.names())
    assert set(spec.required) <= set(spec.schema.names())
    assert set(spec.key) <= set(spec.required), "a key column may never be null"
    assert spec.empty().schema == spec.schema
    assert spec.empty().height == 0


@pytest.mark.parametrize("name", sorted(set(TABLES) - {"job_records"}))
def test_every_stored_table_keeps_the_source_of_each_row(name):
    assert TABLES[name].schema["source"] == pl.String


def test_quantities_carry_chip_and_usd_units():
    usage = TABLES["usage_daily"].units
    assert "chip-hours" in usage["chip_hours_used"]
    assert "chips" in usage["peak_chips"]
    assert "USD" in TABLES["price_book"].units["capex_usd"]
    assert "UTC" in TABLES["job_records"].units["start_time"]
    assert TABLES["job_records"].schema["start_time"] == pl.Datetime("us", "UTC")


def test_quarantine_schema_names_file_line_field_value_reason_and_record():
    assert QUARANTINE_SCHEMA.names() == [
        "table",
        "source",
        "line",
        "field",
        "value",
        "reason",
        "record",
    ]
    assert QUARANTINE_SCHEMA["line"] == pl.Int64


# -- job records: each rule with a hand-written row ---------------------------------------


def job(**overrides: str | None) -> dict[str, str | None]:
    """A valid job record as strings, with some fields replaced."""
    row: dict[str, str | None] = {
        "job_id": "j1",
        "submit_time": "2026-01-01T00:30:00Z",
        "start_time": "2026-01-01T01:00:00Z",
        "end_time": "2026-01-01T05:00:00Z",
        "chips": "8",
        "accelerator": "h100-80gb",
        "region": "us-central1",
        "team": "vision",
        "workload": "training",
    }
    row.update(overrides)
    return row


def test_a_valid_job_loads_with_the_canonical_types(catalog):
    validated = validate_job_records(raw_frame([job()]), source=SOURCE, resolver=catalog)
    assert validated.quarantine.height == 0
    assert validated.quarantine.schema == QUARANTINE_SCHEMA
    assert validated.good.schema == JOB_RECORDS.schema
    row = validated.good.row(0, named=True)
    assert row["chips"] == 8.0
    assert row["start_time"] == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert validated.rows_in == 1


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        pytest.param(
            {"chips": "eight"},
            "chips",
            r"^chips 'eight' is not a finite number$",
            id="non-numeric-chips",
        ),
        pytest.param(
            {"chips": "8 gpus"},
            "chips",
            r"chips '8 gpus' is not a finite number",
            id="chips-with-unit",
        ),
        pytest.param(
            {"chips": "inf"}, "chips", r"chips 'inf' is not a finite number", id="infinite-chips"
        ),
        pytest.param(
            {"chips": "-8"}, "chips", r"^chips must be positive, got -8", id="negative-chips"
        ),
        pytest.param({"chips": "0"}, "chips", r"^chips must be positive, got 0", id="zero-chips"),
        pytest.param(
            {"end_time": "2026-01-01T00:45:00Z"},
            "end_time",
            r"^end_time 2026-01-01T00:45:00Z is before start_time 2026-01-01T01:00:00Z$",
            id="end-before-start",
        ),
        pytest.param(
            {"submit_time": "2026-01-01T02:00:00Z"},
            "start_time",
            r"^start_time 2026-01-01T01:00:00Z is before submit_time 2026-01-01T02:00",
            id="start-before-submit",
        ),
        pytest.param({"team": ""}, "team", r"^team is missing$", id="empty-team"),
        pytest.param({"team": "   "}, "team", r"^team is missing$", id="blank-team"),
        pytest.param({"team": None}, "team", r"^team is missing$", id="null-team"),
        pytest.param(
            {"accelerator": "AMD MI300X"},
            "accelerator",
            r"^unknown accelerator 'AMD MI300X': add it to the SKU catalog",
            id="unknown-accelerator",
        ),
        pytest.param(
            {"accelerator": ""},
            "accelerator",
            r"^accelerator is missing$",
            id="missing-accelerator",
        ),
        pytest.param(
            {"workload": "traning"},
            "workload",
            r"^workload 'traning' is not one of training, serving, research, batch",
            id="bad-workload",
        ),
        pytest.param(
            {"start_time": "2025-02-30T10:00:00Z"},
            "start_time",
            r"^start_time '2025-02-30T10:00:00Z' is not a timestamp \(ISO 8601",
            id="impossible-date",
        ),
        pytest.param(
            {"end_time": "tomorrow"},
            "end_time",
            r"^end_time 'tomorrow' is not a timestamp",
            id="words-for-a-time",
        ),
        pytest.param(
            {"submit_time": "01/01/2026 00:30"},
            "submit_time",
            r"^submit_time '01/01/2026 00:30' is not a timestamp",
            id="us-date-format",
        ),
    ],
)
def test_each_job_rule_quarantines_the_row_with_a_specific_reason(
    catalog, overrides, field, reason
):
    rejected = only_reject(
        validate_job_records(raw_frame([job(**overrides)]), source=SOURCE, resolver=catalog)
    )
    assert rejected["field"] == field
    assert re.search(reason, rejected["reason"]), rejected["reason"]
    assert rejected["table"] == "job_records"
    assert rejected["source"] == SOURCE
    assert rejected["line"] == 2


def test_a_rejected_row_keeps_its_value_and_raw_record_so_it_can_be_fixed(catalog):
    rows = [job(job_id="ok"), job(job_id="bad", chips="eight")]
    validated = validate_job_records(raw_frame(rows), source=SOURCE, resolver=catalog)
    assert validated.good["job_id"].to_list() == ["ok"]
    assert validated.quarantine.height == 1
    rejected = validated.quarantine.row(0, named=True)
    assert rejected["line"] == 3
    assert rejected["value"] == "eight"
    assert json.loads(rejected["record"]) == job(job_id="bad", chips="eight")


def test_a_row_with_several_problems_lists_every_reason(catalog):
    rejected = only_reject(
        validate_job_records(
            raw_frame([job(chips="-1", team="", workload="gaming")]),
            source=SOURCE,
            resolver=catalog,
        )
    )
    reasons = rejected["reason"].split("; ")
    assert "team is missing" in reasons
    assert any(r.startswith("chips must be positive") for r in reasons)
    assert any(r.startswith("workload 'gaming' is not one of") for r in reasons)
    assert rejected["field"] in {"team", "chips", "workload"}


def test_a_missing_or_empty_workload_becomes_unknown_and_case_is_folded(catalog):
    rows = [
        job(job_id="a", workload=""),
        job(job_id="b", workload=None),
        job(job_id="c", workload="SERVING"),
        job(job_id="d", workload=" Batch "),
    ]
    validated = validate_job_records(raw_frame(rows), source=SOURCE, resolver=catalog)
    assert validated.quarantine.height == 0, validated.quarantine["reason"].to_list()
    assert validated.good["workload"].to_list() == ["unknown", "unknown", "serving", "batch"]
    assert set(validated.good["workload"]) <= set(WORKLOADS)


def test_text_fields_are_trimmed(catalog):
    validated = validate_job_records(
        raw_frame([job(team="  vision ", region=" us-central1")]), source=SOURCE, resolver=catalog
    )
    row = validated.good.row(0, named=True)
    assert (row["team"], row["region"]) == ("vision", "us-central1")


def test_a_job_without_a_workload_column_loads_as_unknown(catalog):
    row = job()
    del row["workload"]
    validated = validate_job_records(raw_frame([row]), source=SOURCE, resolver=catalog)
    assert validated.good["workload"].to_list() == ["unknown"]
    assert validated.good.schema == JOB_RECORDS.schema


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2026-01-01T08:00:00+09:00", datetime(2025, 12, 31, 23, 0, tzinfo=UTC)),
        ("2026-01-01T08:00:00+0900", datetime(2025, 12, 31, 23, 0, tzinfo=UTC)),
        ("2025-06-30T20:30:00-06:00", datetime(2025, 7, 1, 2, 30, tzinfo=UTC)),
        ("2026-01-01T08:00:00Z", datetime(2026, 1, 1, 8, 0, tzinfo=UTC)),
        ("2026-01-01T08:00:00", datetime(2026, 1, 1, 8, 0, tzinfo=UTC)),
        ("2026-01-01 08:00:00", datetime(2026, 1, 1, 8, 0, tzinfo=UTC)),
        ("2026-01-01T08:00Z", datetime(2026, 1, 1, 8, 0, tzinfo=UTC)),
        ("2026-01-01T08:00:00.250Z", datetime(2026, 1, 1, 8, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_timestamps_with_offsets_are_converted_to_utc(catalog, text, instant):
    row = job(submit_time=text, start_time=text, end_time="2026-01-02T00:00:00Z")
    validated = validate_job_records(raw_frame([row]), source=SOURCE, resolver=catalog)
    assert validated.quarantine.height == 0, validated.quarantine["reason"].to_list()
    assert validated.good["start_time"].item() == instant


# -- aliases ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-80gb"),
        ("nvidia h100 80gb hbm3", "h100-80gb"),
        ("  NVIDIA H100-SXM5-80GB ", "h100-80gb"),
        ("H100_SXM", "h100-80gb"),
        ("h100-80gb", "h100-80gb"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("Trillium", "tpu-v6e"),
        ("tpu-v5-lite-podslice", "tpu-v5e"),
        ("TPU v5e", "tpu-v5e"),
        ("NVIDIA L4", "l4-24gb"),
    ],
)
def test_aliases_resolve_to_canonical_ids_in_the_catalog_and_in_validation(
    catalog, name, canonical
):
    assert catalog.resolve(name) == canonical
    validated = validate_job_records(
        raw_frame([job(accelerator=name)]), source=SOURCE, resolver=catalog
    )
    assert validated.good["accelerator"].to_list() == [canonical]


@pytest.mark.parametrize("name", ["AMD MI300X", "H100 PCIe", "", "tpu"])
def test_unknown_names_do_not_resolve(catalog, name):
    assert catalog.resolve(name) is None


def test_alias_normalization_ignores_case_spaces_underscores_and_slashes():
    assert normalize_alias("  NVIDIA  H100_SXM/80GB ") == "nvidia-h100-sxm-80gb"


def test_every_catalog_id_resolves_to_itself(catalog):
    assert catalog.ids() == sorted(catalog.table["accelerator"].to_list())
    for accelerator in catalog.ids():
        assert catalog.resolve(accelerator) == accelerator
        assert catalog.row(accelerator)["accelerator"] == accelerator


def test_asking_the_catalog_for_an_unknown_row_names_the_known_ids(catalog):
    with pytest.raises(WorkbenchError) as caught:
        catalog.row("mi300x")
    assert caught.value.field == "accelerator"
    assert "h100-80gb" in (caught.value.fix or "")


# -- the other tables' rules ------------------------------------------------------------

USAGE: dict[str, str | None] = {
    "date": "2026-01-05",
    "accelerator": "h100-80gb",
    "region": "us-central1",
    "team": "vision",
    "workload": "Training",
    "chip_hours_used": "96",
    "chip_hours_allocated": "192",
    "chip_hours_queued": "0",
    "peak_chips": "8",
}
USAGE_HOUR: dict[str, str | None] = {
    "hour": "2026-01-05T13:00:00Z",
    "accelerator": "NVIDIA H100 80GB HBM3",
    "region": "us-central1",
    "team": "vision",
    "workload": "serving",
    "chip_hours_used": "6",
    "chip_hours_queued": "0.5",
    "peak_chips": "8",
}
UTILIZATION: dict[str, str | None] = {
    "date": "2026-01-05",
    "accelerator": "h100-80gb",
    "region": "us-central1",
    "team": None,
    "metric": "DCGM_FI_DEV_GPU_UTIL",
    "chip_hours_observed": "192",
    "chip_hours_busy": "120.5",
    "samples": "2880",
}
INVENTORY: dict[str, str | None] = {
    "date": "2026-01-05",
    "accelerator": "tpu-v5e",
    "region": "us-central1",
    "installed_chips": "512",
    "healthy_chips": "500",
}
ALLOCATION: dict[str, str | None] = {
    "team": "vision",
    "accelerator": "a100-80gb",
    "region": "us-east4",
    "valid_from": "2026-01-01",
    "valid_to": "2026-03-31",
    "chips": "64",
    "kind": "Reservation",
}
ORDER: dict[str, str | None] = {
    "order_id": "PO-1",
    "accelerator": "NVIDIA B200",
    "region": "us-central1",
    "quantity": "64",
    "ordered_on": "2026-01-05",
    "expected_on": "2026-09-14",
    "delivered_on": "",
    "status": "open",
}
EVENT: dict[str, str | None] = {
    "event_id": "EV-1",
    "name": "assistant launch",
    "kind": "launch",
    "start": "2027-02-01",
    "end": "",
    "accelerator": "h200",
    "region": "",
    "team": "assistant",
    "chips": "128",
    "probability": "0.7",
}
BILLING: dict[str, str | None] = {
    "row_hash": "abc",
    "ChargePeriodStart": "2026-01-01T00:00:00Z",
    "ChargePeriodEnd": "2026-01-02T00:00:00Z",
    "BilledCost": "12.5",
    "EffectiveCost": "12.5",
    "ListCost": "12.5",
    "BillingCurrency": "USD",
    "ServiceName": "Compute Engine",
    "SkuId": "NVIDIA H100 80GB HBM3",
    "ResourceId": "r1",
    "RegionId": "us-central1",
    "PricingQuantity": "2",
    "PricingUnit": "Hours",
    "ConsumedQuantity": "2",
    "ConsumedUnit": "Hours",
    "ChargeCategory": "Usage",
    "CommitmentDiscountId": "",
    "CommitmentDiscountStatus": "",
    "Tags": '{"team": "vision"}',
    "accelerator": "h100-80gb",
    "team": "vision",
}
PRICE: dict[str, str | None] = {
    "accelerator": "h100-80gb",
    "region": "us-central1",
    "capex_usd": "33000",
    "depreciation_years": "6",
    "lead_time_weeks": "26",
    "usd_per_kwh": "0.07",
    "pue": "1.1",
    "facility_usd_per_kw_month": "140",
    "network_storage_capex_share": "0.15",
    "maintenance_capex_share_per_year": "0.04",
    "on_demand_usd_per_hour": "6.98",
    "commit_1y_usd_per_hour": "4.4",
    "commit_3y_usd_per_hour": "3.14",
    "spot_usd_per_hour": "2.25",
    "min_order_chips": "32",
    "as_of": "2026-09-30",
}
SKU: dict[str, str | None] = {
    "accelerator": "x-100",
    "vendor": "Acme",
    "family": "gpu-training",
    "generation": "one",
    "memory_gb": "80",
    "power_w": "700",
    "perf_index": "2",
    "host_cores_per_chip": "8",
    "storage_tb_per_chip": "1",
    "network_gbps_per_chip": "100",
}


def _usage(raw: pl.DataFrame, catalog: SkuCatalog) -> Validated:
    return validate_usage_daily(raw, source=SOURCE, resolver=catalog)


def _usage_hourly(raw: pl.DataFrame, catalog: SkuCatalog) -> Validated:
    return validate_usage_hourly(raw, source=SOURCE, resolver=catalog)


def _utilization(raw: pl.DataFrame, catalog: SkuCatalog) -> Validated:
    return validate_utilization_daily(raw, source=SOURCE, resolver=catalog)


def _inventory(raw: pl.DataFrame, catalog: SkuCatalog) -> Validated:
    return validate_inventory(raw, source=SOURCE, resolver=catalog)


def _allocations(raw: pl.DataFrame, catalog: SkuCatalog) -> Validated:
    return validate_allocations(raw, source=SOURCE, resolver=catalog)


def _orders(raw: pl.DataFrame, catalog: SkuCatalog) -> Validated:
    return validate_orders(raw, source=SOURCE, resolver=catalog)


def _events(raw: pl.DataFrame, catalog: SkuCatalog) -> Validated:
    return validate_events(raw, source=SOURCE, resolver=catalog)


def _billing(raw: pl.DataFrame, catalog: SkuCatalog) -> Validated:
    return validate_billing(raw, source=SOURCE, resolver=catalog)


def _price_book(raw: pl.DataFrame, catalog: SkuCatalog) -> Validated:
    return validate_price_book(raw, source=SOURCE, resolver=catalog)


def _sku_catalog(raw: pl.DataFrame, catalog: SkuCatalog) -> Validated:
    del catalog
    return validate_sku_catalog(raw, source=SOURCE)


def _job_records(raw: pl.DataFrame, catalog: SkuCatalog) -> Validated:
    return validate_job_records(raw, source=SOURCE, resolver=catalog)


Validator = Callable[[pl.DataFrame, SkuCatalog], Validated]
VALIDATORS: dict[str, tuple[Validator, dict[str, str | None]]] = {
    "usage_daily": (_usage, USAGE),
    "usage_hourly": (_usage_hourly, USAGE_HOUR),
    "utilization_daily": (_utilization, UTILIZATION),
    "inventory": (_inventory, INVENTORY),
    "allocations": (_allocations, ALLOCATION),
    "orders": (_orders, ORDER),
    "events": (_events, EVENT),
    "billing": (_billing, BILLING),
    "price_book": (_price_book, PRICE),
    "sku_catalog": (_sku_catalog, SKU),
    "job_records": (_job_records, job()),
}


def test_every_table_has_a_validator_under_test():
    assert set(VALIDATORS) == set(TABLES)


@pytest.mark.parametrize("name", sorted(VALIDATORS))
def test_a_valid_row_of_every_table_loads_with_exactly_the_table_schema(catalog, name):
    validator, row = VALIDATORS[name]
    validated = validator(raw_frame([row]), catalog)
    assert validated.quarantine.height == 0, validated.quarantine["reason"].to_list()
    assert validated.good.height == 1
    assert validated.good.schema == TABLES[name].schema
    if "source" in TABLES[name].schema:
        assert validated.good["source"].to_list() == [SOURCE]


@pytest.mark.parametrize("name", sorted(VALIDATORS))
def test_every_validator_quarantines_garbage_instead_of_raising(catalog, name):
    validator, row = VALIDATORS[name]
    garbage = raw_frame([dict.fromkeys(row, "???"), dict.fromkeys(row, "-1")])
    validated = validator(garbage, catalog)
    assert validated.good.height == 0
    assert validated.good.schema == TABLES[name].schema
    assert validated.quarantine.schema == QUARANTINE_SCHEMA
    assert validated.quarantine["line"].to_list() == [2, 3]
    assert (validated.quarantine["reason"].str.len_chars() > 0).all()
    assert validated.quarantine["field"].is_in(TABLES[name].schema.names()).all()


@pytest.mark.parametrize("name", sorted(VALIDATORS))
def test_an_empty_frame_validates_to_empty_outputs(catalog, name):
    validator, row = VALIDATORS[name]
    validated = validator(raw_frame([row]).clear(), catalog)
    assert validated.good.height == 0
    assert validated.good.schema == TABLES[name].schema
    assert validated.quarantine.height == 0
    assert validated.quarantine.schema == QUARANTINE_SCHEMA


@pytest.mark.parametrize(
    ("name", "overrides", "field", "reason"),
    [
        (
            "usage_daily",
            {"chip_hours_used": "-1"},
            "chip_hours_used",
            r"^chip_hours_used must be zero or more, got -1",
        ),
        (
            "usage_daily",
            {"chip_hours_used": "500"},
            "chip_hours_used",
            r"^chip_hours_used 500.* exceeds 24 h x peak_chips 8",
        ),
        ("usage_daily", {"workload": "gaming"}, "workload", r"^workload 'gaming' is not one of"),
        ("usage_daily", {"date": "2026-13-01"}, "date", r"^date '2026-13-01' is not a date"),
        (
            "inventory",
            {"healthy_chips": "600"},
            "healthy_chips",
            r"^healthy_chips 600 exceeds installed_chips 512$",
        ),
        (
            "inventory",
            {"installed_chips": "-5", "healthy_chips": "0"},
            "installed_chips",
            r"^installed_chips must be zero or more, got -5",
        ),
        (
            "inventory",
            {"installed_chips": "512.5"},
            "installed_chips",
            r"^installed_chips '512.5' is not a whole number",
        ),
        (
            "inventory",
            {"installed_chips": "many"},
            "installed_chips",
            r"^installed_chips 'many' is not a whole number",
        ),
        ("inventory", {"date": "2025-02-30"}, "date", r"^date '2025-02-30' is not a date"),
        ("inventory", {"date": "05/01/2026"}, "date", r"^date '05/01/2026' is not a date"),
        ("inventory", {"accelerator": "Gaudi 3"}, "accelerator", r"^unknown accelerator 'Gaudi 3'"),
        ("allocations", {"kind": "loan"}, "kind", r"^kind 'loan' is not one of reservation, quota"),
        (
            "allocations",
            {"valid_to": "2025-12-31"},
            "valid_to",
            r"^valid_to 2025-12-31 is before valid_from 2026-01-01$",
        ),
        ("allocations", {"chips": "0"}, "chips", r"^chips must be positive"),
        ("allocations", {"team": ""}, "team", r"^team is missing$"),
        (
            "orders",
            {"status": "shipped"},
            "status",
            r"^status 'shipped' is not one of open, delivered, cancelled",
        ),
        (
            "orders",
            {"expected_on": "2025-12-01"},
            "expected_on",
            r"^expected_on 2025-12-01 is before ordered_on 2026-01-05$",
        ),
        (
            "orders",
            {"status": "delivered"},
            "delivered_on",
            r"^status is delivered but delivered_on is missing$",
        ),
        ("orders", {"quantity": "0"}, "quantity", r"^quantity must be positive"),
        (
            "events",
            {"probability": "1.5"},
            "probability",
            r"^probability must be between 0 and 1, got 1.5$",
        ),
        (
            "events",
            {"probability": "-0.1"},
            "probability",
            r"^probability must be between 0 and 1, got -0.1$",
        ),
        (
            "events",
            {"probability": "70%"},
            "probability",
            r"^probability '70%' is not a finite number",
        ),
        ("events", {"end": "2027-01-01"}, "end", r"^end 2027-01-01 is before start 2027-02-01$"),
        (
            "billing",
            {"BillingCurrency": "EUR"},
            "BillingCurrency",
            r"^BillingCurrency 'EUR' is not USD: convert before ingesting$",
        ),
        (
            "billing",
            {"ChargePeriodEnd": "2026-01-01T00:00:00Z"},
            "ChargePeriodEnd",
            r"^ChargePeriodEnd is not after ChargePeriodStart$",
        ),
        (
            "billing",
            {"ChargeCategory": "Refund"},
            "ChargeCategory",
            r"^ChargeCategory 'Refund' is not one of Usage, Purchase",
        ),
        ("billing", {"BilledCost": ""}, "BilledCost", r"^BilledCost is missing$"),
        ("billing", {"BilledCost": "$12"}, "BilledCost", r"^BilledCost '\$12' is not a finite"),
        ("price_book", {"pue": "0.9"}, "pue", r"^pue must be at least 1.0, got 0.9$"),
        (
            "price_book",
            {"network_storage_capex_share": "15"},
            "network_storage_capex_share",
            r"^network_storage_capex_share must be a fraction in \[0, 1\], got 15",
        ),
        ("price_book", {"capex_usd": "0"}, "capex_usd", r"^capex_usd must be positive"),
        (
            "price_book",
            {"on_demand_usd_per_hour": "-1"},
            "on_demand_usd_per_hour",
            r"^on_demand_usd_per_hour must be zero or more",
        ),
        ("price_book", {"as_of": "last year"}, "as_of", r"^as_of 'last year' is not a date"),
        ("sku_catalog", {"power_w": "0"}, "power_w", r"^power_w must be positive, got 0"),
        (
            "sku_catalog",
            {"perf_index": "fast"},
            "perf_index",
            r"^perf_index 'fast' is not a finite number",
        ),
        ("sku_catalog", {"vendor": ""}, "vendor", r"^vendor is missing$"),
    ],
)
def test_each_table_rule_quarantines_with_a_specific_reason(
    catalog, name, overrides, field, reason
):
    validator, row = VALIDATORS[name]
    rejected = only_reject(validator(raw_frame([{**row, **overrides}]), catalog))
    assert rejected["field"] == field
    assert re.search(reason, rejected["reason"]), rejected["reason"]
    assert rejected["table"] == name


def test_other_tables_resolve_aliases_and_fold_categories(catalog):
    order = _orders(raw_frame([ORDER]), catalog).good.row(0, named=True)
    assert order["accelerator"] == "b200-180gb"
    assert order["delivered_on"] is None
    allocation = _allocations(raw_frame([ALLOCATION]), catalog).good.row(0, named=True)
    assert allocation["kind"] == "reservation"
    assert allocation["valid_to"] == date(2026, 3, 31)
    event = _events(raw_frame([EVENT]), catalog).good.row(0, named=True)
    assert event["accelerator"] == "h200-141gb"
    assert (event["end"], event["region"]) == (None, None), "empty text means missing"
    usage = _usage(raw_frame([USAGE]), catalog).good.row(0, named=True)
    assert usage["workload"] == "training"


def test_sku_ids_are_normalized_like_aliases():
    validated = validate_sku_catalog(raw_frame([{**SKU, "accelerator": "X 100"}]), source=SOURCE)
    assert validated.good["accelerator"].to_list() == ["x-100"]


# -- catalog and price book files -----------------------------------------------------------


def sku_entry(sku_id: str, aliases: list[str], **figures: Any) -> str:
    values = {
        "vendor": "Acme",
        "family": "gpu-training",
        "generation": "one",
        "memory_gb": 80,
        "power_w": 700,
        "perf_index": 2.0,
    } | figures
    lines = ["[[accelerator]]", f'id = "{sku_id}"', f"aliases = {json.dumps(aliases)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write_toml(tmp_path: Path, text: str, name: str = "sku_catalog.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_sample_catalog_knows_gpus_and_tpus(catalog):
    assert len(catalog.ids()) >= 8
    vendors = set(catalog.table["vendor"])
    assert {"NVIDIA", "Google"} <= vendors
    assert catalog.table.schema == TABLES["sku_catalog"].schema
    assert (catalog.table["power_w"] > 0).all()


def test_a_small_catalog_loads_with_its_aliases(tmp_path):
    path = write_toml(
        tmp_path,
        sku_entry("x-100", ["Acme X100", "x100"]) + sku_entry("y-200", ["Acme Y200"], power_w=900),
    )
    loaded = load_sku_catalog(path)
    assert loaded.ids() == ["x-100", "y-200"]
    assert loaded.resolve("ACME X100") == "x-100"
    assert loaded.row("y-200")["power_w"] == 900.0


def test_a_duplicate_sku_id_names_the_file_and_the_id_field(tmp_path):
    path = write_toml(tmp_path, sku_entry("x-100", []) + sku_entry("X-100", ["other"]))
    with pytest.raises(WorkbenchError) as caught:
        load_sku_catalog(path)
    assert caught.value.file == str(path)
    assert caught.value.field == "id"
    assert "x-100" in caught.value.message
    assert str(path) in str(caught.value)


def test_an_alias_claimed_by_two_skus_names_both(tmp_path):
    text = sku_entry("x-100", ["Acme Fast"]) + sku_entry("y-200", ["acme fast"])
    path = write_toml(tmp_path, text)
    with pytest.raises(WorkbenchError) as caught:
        load_sku_catalog(path)
    assert caught.value.file == str(path)
    assert caught.value.field == "aliases"
    assert "x-100" in caught.value.message
    assert "y-200" in caught.value.message


def test_an_alias_equal_to_another_skus_id_is_refused(tmp_path):
    path = write_toml(tmp_path, sku_entry("x-100", []) + sku_entry("y-200", ["X 100"]))
    with pytest.raises(WorkbenchError) as caught:
        load_sku_catalog(path)
    assert caught.value.field == "aliases"


def test_bad_toml_names_the_file_and_the_line(tmp_path):
    text = sku_entry("x-100", []) + '\n[[accelerator]]\nid = "y-200"\npower_w = = 3\n'
    bad_line = text.splitlines().index("power_w = = 3") + 1
    path = write_toml(tmp_path, text)
    with pytest.raises(WorkbenchError) as caught:
        load_sku_catalog(path)
    assert caught.value.file == str(path)
    assert caught.value.line == bad_line
    assert f"line {bad_line}" in caught.value.one_line()
    assert "not valid TOML" in caught.value.message
    assert "\n" not in caught.value.one_line()


def test_a_bad_sku_figure_names_the_file_and_the_field(tmp_path):
    path = write_toml(tmp_path, sku_entry("x-100", []) + sku_entry("y-200", [], power_w=-5))
    with pytest.raises(WorkbenchError) as caught:
        load_sku_catalog(path)
    assert caught.value.file == str(path)
    assert caught.value.field == "power_w"
    assert "entry 2" in caught.value.message
    assert "power_w must be positive" in caught.value.message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('title = "no skus"\n', "accelerator"),
        ('[[accelerator]]\nvendor = "Acme"\n', "id"),
        ('[[accelerator]]\nid = "x"\naliases = "x1"\nvendor = "Acme"\n', "aliases"),
    ],
)
def test_catalog_structure_problems_name_the_field(tmp_path, text, field):
    path = write_toml(tmp_path, text)
    with pytest.raises(WorkbenchError) as caught:
        load_sku_catalog(path)
    assert (caught.value.file, caught.value.field) == (str(path), field)


def test_a_missing_catalog_file_is_a_readable_error(tmp_path):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(WorkbenchError) as caught:
        load_sku_catalog(path)
    assert caught.value.file == str(path)
    assert "not found" in caught.value.message


def price_book_text(prices: str, *, pue: float = 1.1) -> str:
    return (
        'source = "test"\nas_of = 2026-09-30\n\n'
        f"[region.r1]\nusd_per_kwh = 0.1\npue = {pue}\nfacility_usd_per_kw_month = 100\n"
        "cloud_price_factor = 1.0\n\n"
        "[region.r2]\nusd_per_kwh = 0.2\npue = 1.3\nfacility_usd_per_kw_month = 200\n"
        "cloud_price_factor = 1.5\n\n" + prices
    )


PRICE_ENTRY = """[[price]]
accelerator = "{accelerator}"
capex_usd = 30000
depreciation_years = 6
lead_time_weeks = 26
network_storage_capex_share = 0.15
maintenance_capex_share_per_year = 0.04
on_demand_usd_per_hour = 10.0
commit_1y_usd_per_hour = 6.0
commit_3y_usd_per_hour = 4.0
spot_usd_per_hour = 3.0
min_order_chips = 8
"""


@pytest.fixture
def small_catalog(tmp_path) -> SkuCatalog:
    return load_sku_catalog(write_toml(tmp_path, sku_entry("x-100", ["Acme X100"])))


def test_a_price_book_expands_to_every_accelerator_and_region(tmp_path, small_catalog):
    prices = PRICE_ENTRY.format(accelerator="Acme X100") + (
        '\n[[price]]\naccelerator = "x-100"\nregion = "r2"\ncapex_usd = 40000\n'
        "depreciation_years = 5\nlead_time_weeks = 30\non_demand_usd_per_hour = 11.0\n"
    )
    path = write_toml(tmp_path, price_book_text(prices), "price_book.toml")
    book = load_price_book(path, small_catalog)
    assert book.schema == PRICE_BOOK.schema
    rows = {row["region"]: row for row in book.iter_rows(named=True)}
    assert set(rows) == {"r1", "r2"}
    assert rows["r1"]["accelerator"] == "x-100"
    assert rows["r1"]["pue"] == 1.1
    assert rows["r2"]["usd_per_kwh"] == 0.2, "site figures come from the region"
    assert rows["r1"]["on_demand_usd_per_hour"] == 10.0
    assert rows["r2"]["capex_usd"] == 40000.0, "a region entry overrides the generic one"
    assert rows["r2"]["on_demand_usd_per_hour"] == 11.0
    assert rows["r1"]["as_of"] == date(2026, 9, 30)


def test_the_sample_price_book_covers_every_pool_region(catalog, sample_dir):
    book = load_price_book(sample_dir / "catalog" / "price_book.toml", catalog)
    assert book.schema == PRICE_BOOK.schema
    assert set(book["accelerator"]) == set(catalog.ids())
    assert book.select(pl.struct("accelerator", "region").is_unique().all()).item()
    assert (book["pue"] >= 1.0).all()
    assert book["source"].null_count() == 0


def test_a_price_for_an_unknown_accelerator_names_file_and_field(tmp_path, small_catalog):
    path = write_toml(
        tmp_path, price_book_text(PRICE_ENTRY.format(accelerator="Gaudi 3")), "price_book.toml"
    )
    with pytest.raises(WorkbenchError) as caught:
        load_price_book(path, small_catalog)
    assert caught.value.file == str(path)
    assert caught.value.field == "accelerator"
    assert "Gaudi 3" in caught.value.message
    assert "x-100" in (caught.value.fix or "")


def test_a_price_for_a_region_without_site_figures_names_the_region(tmp_path, small_catalog):
    prices = PRICE_ENTRY.format(accelerator="x-100") + 'region = "mars-1"\n'
    path = write_toml(tmp_path, price_book_text(prices), "price_book.toml")
    with pytest.raises(WorkbenchError) as caught:
        load_price_book(path, small_catalog)
    assert (caught.value.file, caught.value.field) == (str(path), "region")
    assert "mars-1" in caught.value.message


def test_a_site_pue_below_one_is_refused_with_the_field(tmp_path, small_catalog):
    path = write_toml(
        tmp_path,
        price_book_text(PRICE_ENTRY.format(accelerator="x-100"), pue=0.95),
        "price_book.toml",
    )
    with pytest.raises(WorkbenchError) as caught:
        load_price_book(path, small_catalog)
    assert (caught.value.file, caught.value.field) == (str(path), "pue")
    assert "at least 1.0" in caught.value.message
