"""FOCUS billing connector: hand-written exports in every shape the connector must take."""

from __future__ import annotations

import csv
import gzip
import json
from collections import defaultdict
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.billing import (
    FOCUS_COLUMNS,
    WASTE_SCHEMA,
    commitment_waste,
    ingest_focus_billing,
)
from pipelines.result import TableIngest
from workbench.catalog import SkuCatalog
from workbench.errors import WorkbenchError
from workbench.schema import BILLING, QUARANTINE_SCHEMA

BASE_ROW: dict[str, str] = {
    "ChargePeriodStart": "2025-07-01T00:00:00Z",
    "ChargePeriodEnd": "2025-07-02T00:00:00Z",
    "BilledCost": "10.00",
    "EffectiveCost": "8.00",
    "ListCost": "12.50",
    "BillingCurrency": "USD",
    "ServiceName": "Compute Engine",
    "SkuId": "NVIDIA H100 80GB HBM3",
    "ResourceId": "projects/p/zones/us-central1-a/instances/vm-1",
    "RegionId": "us-central1",
    "PricingQuantity": "8",
    "PricingUnit": "Hours",
    "ConsumedQuantity": "8",
    "ConsumedUnit": "Hours",
    "ChargeCategory": "Usage",
    "CommitmentDiscountId": "null",
    "CommitmentDiscountStatus": "null",
    "Tags": '{"team": "vision"}',
}


def row(resource: str = "vm-1", **changes: str) -> dict[str, str]:
    """One FOCUS row; rows with different ``resource`` are different charges."""
    return (
        BASE_ROW | {"ResourceId": f"projects/p/zones/us-central1-a/instances/{resource}"} | changes
    )


def write_focus(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> Path:
    """Write rows as a FOCUS CSV (gzip-compressed when the name ends in .gz)."""
    header = columns or list(BASE_ROW)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def ingest(path: Path, catalog: SkuCatalog, **options: str) -> TableIngest:
    result = ingest_focus_billing(path, resolver=catalog, source=f"billing:{path}", **options)
    assert result.good.schema == BILLING.schema
    assert result.quarantine.schema == QUARANTINE_SCHEMA
    assert result.balanced, result.reconciliation()
    return result


def test_focus_columns_are_the_billing_subset() -> None:
    assert list(FOCUS_COLUMNS) == list(BASE_ROW)


def test_null_text_and_empty_cells_are_missing(tmp_path: Path, catalog: SkuCatalog) -> None:
    path = write_focus(
        tmp_path / "bill.csv",
        [
            row(
                "vm-1",
                ListCost="NULL",
                ConsumedQuantity="",
                ConsumedUnit="Null",
                RegionId="  ",
                CommitmentDiscountId="null",
            )
        ],
    )
    result = ingest(path, catalog)
    assert result.rows_quarantined == 0
    loaded = result.good.row(0, named=True)
    for column in (
        "ListCost",
        "ConsumedQuantity",
        "ConsumedUnit",
        "RegionId",
        "CommitmentDiscountId",
        "CommitmentDiscountStatus",
    ):
        assert loaded[column] is None, column
    assert loaded["BilledCost"] == 10.0
    assert loaded["PricingQuantity"] == 8.0


def test_commitment_rows_used_unused_and_purchase_all_load(
    tmp_path: Path, catalog: SkuCatalog
) -> None:
    commitment = {"SkuId": "TPU v6e", "CommitmentDiscountId": "cud-v6e-2025"}
    rows = [
        row("tpu-a", **commitment, BilledCost="0", EffectiveCost="700.25",
            CommitmentDiscountStatus="Used"),
        row("tpu-a", **commitment, BilledCost="0", EffectiveCost="299.75", ListCost="null",
            CommitmentDiscountStatus="Unused"),
        row("tpu-a", **commitment, BilledCost="0", EffectiveCost="100.10", ListCost="null",
            CommitmentDiscountStatus="Unused", ChargePeriodStart="2025-07-02T00:00:00Z",
            ChargePeriodEnd="2025-07-03T00:00:00Z"),
        row("tpu-a", **commitment, BilledCost="0", EffectiveCost="50.00", ListCost="null",
            CommitmentDiscountStatus="Unused", ChargePeriodStart="2025-08-01T00:00:00Z",
            ChargePeriodEnd="2025-08-02T00:00:00Z"),
        row("tpu-a", **commitment, BilledCost="30000", EffectiveCost="0",
            ChargeCategory="Purchase", ChargePeriodEnd="2025-08-01T00:00:00Z"),
    ]  # fmt: skip
    result = ingest(write_focus(tmp_path / "bill.csv", rows), catalog)
    assert result.rows_loaded == 5
    good = result.good
    assert good["ChargeCategory"].to_list() == ["Usage"] * 4 + ["Purchase"]
    assert good["CommitmentDiscountStatus"].to_list() == [
        "Used", "Unused", "Unused", "Unused", None,
    ]  # fmt: skip
    assert good["accelerator"].unique().to_list() == ["tpu-v6e"]

    waste = commitment_waste(good)
    assert waste.schema == WASTE_SCHEMA
    assert waste.rows() == [
        (date(2025, 7, 1), "tpu-v6e", "vision", "cud-v6e-2025", pytest.approx(399.85)),
        (date(2025, 8, 1), "tpu-v6e", "vision", "cud-v6e-2025", pytest.approx(50.0)),
    ]


def test_commitment_waste_keeps_unattributed_dollars() -> None:
    billing = pl.DataFrame(
        {
            "ChargePeriodStart": ["2025-07-31T23:00:00Z", "2025-07-05T00:00:00Z"],
            "EffectiveCost": [5.0, 7.0],
            "CommitmentDiscountStatus": ["unused", "Unused"],
            "CommitmentDiscountId": ["c1", "c1"],
            "accelerator": [None, None],
            "team": [None, "vision"],
        }
    ).with_columns(pl.col("ChargePeriodStart").str.to_datetime(time_zone="UTC"))
    waste = commitment_waste(billing)
    assert waste["unused_usd"].sum() == 12.0
    assert waste["team"].to_list() == ["vision", None]


def test_commitment_waste_names_missing_columns() -> None:
    with pytest.raises(WorkbenchError) as info:
        commitment_waste(pl.DataFrame({"EffectiveCost": [1.0]}))
    assert info.value.field == "ChargePeriodStart"


def test_focus_1_0_file_without_commitment_status(tmp_path: Path, catalog: SkuCatalog) -> None:
    # FOCUS 1.0 has no CommitmentDiscountStatus; real exports also carry columns we ignore.
    columns = [c for c in BASE_ROW if c != "CommitmentDiscountStatus"]
    columns += ["SubAccountId", "x_InvoiceSection"]
    rows = [
        row("vm-1") | {"SubAccountId": "sa-1", "x_InvoiceSection": "ml"},
        row("vm-2", CommitmentDiscountId="cud-1") | {"SubAccountId": "sa-1"},
    ]
    result = ingest(write_focus(tmp_path / "focus10.csv", rows, columns), catalog)
    assert result.rows_loaded == 2
    assert result.good.columns == BILLING.schema.names()
    assert result.good["CommitmentDiscountStatus"].null_count() == 2
    assert result.good["CommitmentDiscountId"].to_list() == [None, "cud-1"]
    assert commitment_waste(result.good).height == 0


@pytest.mark.parametrize(
    ("tags", "team"),
    [
        ('{"team": "vision"}', "vision"),
        ('{"team": " speech ", "env": "prod"}', "speech"),
        ('{"team": 42}', "42"),
        ('{"env": "prod"}', None),
        ('{"team": ""}', None),
        ('{"team": null}', None),
        ('{"team": {"name": "vision"}}', None),
        ("null", None),
        ("NULL", None),
        ("", None),
        ("team=vision", None),
        ('["team", "vision"]', None),
    ],
)
def test_team_from_tags_and_rows_without_team_still_load(
    tmp_path: Path, catalog: SkuCatalog, tags: str, team: str | None
) -> None:
    result = ingest(write_focus(tmp_path / "bill.csv", [row(Tags=tags)]), catalog)
    assert result.rows_loaded == 1
    assert result.rows_quarantined == 0
    assert result.good["team"].to_list() == [team]
    expected_unattributed = 8.0 if team is None else 0.0
    assert result.totals["effective_cost_usd_without_team"] == expected_unattributed


def test_team_tag_key_is_configurable(tmp_path: Path, catalog: SkuCatalog) -> None:
    rows = [row(Tags='{"team": "vision", "cost-center": "cc-42"}')]
    result = ingest(write_focus(tmp_path / "bill.csv", rows), catalog, tag_key="cost-center")
    assert result.good["team"].to_list() == ["cc-42"]


def test_accelerator_from_sku_resource_tags_and_custom_columns(
    tmp_path: Path, catalog: SkuCatalog
) -> None:
    columns = [*BASE_ROW, "x_GpuType"]
    rows = [
        row("vm-1", SkuId="NVIDIA H100 80GB HBM3"),
        row("vm-2", SkuId="nvidia_h100 80gb hbm3"),
        row("vm-3", SkuId="tpu-v6e"),
        # SkuId wins over a contradicting ResourceId.
        row("h200", SkuId="NVIDIA L4"),
        # An opaque provider SKU: the resource, a tag or a custom column names it.
        row("a100", SkuId="9A3F-22C1-0B7E"),
        row("vm-6", SkuId="9A3F-22C1-0B7E", ResourceId="TPU v5p"),
        row("vm-7", SkuId="9A3F-22C1-0B7E", Tags='{"team": "x", "accelerator": "B200"}'),
        row(
            "vm-8",
            SkuId="9A3F-22C1-0B7E",
            Tags='{"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice"}',
        ),
        row("vm-9", SkuId="9A3F-22C1-0B7E") | {"x_GpuType": "NVIDIA H200 141GB HBM3e"},
        row("vm-10", SkuId="9A3F-22C1-0B7E") | {"x_GpuType": "RTX 9090"},
    ]
    result = ingest(write_focus(tmp_path / "bill.csv", rows, columns), catalog)
    assert result.good["accelerator"].to_list() == [
        "h100-80gb",
        "h100-80gb",
        "tpu-v6e",
        "l4-24gb",
        "a100-80gb",
        "tpu-v5p",
        "b200-180gb",
        "tpu-v5e",
        "h200-141gb",
        None,
    ]
    # The SkuId is kept as exported; only the mapped column is canonical.
    assert result.good["SkuId"][0] == "NVIDIA H100 80GB HBM3"


def test_non_accelerator_service_row_still_loads(tmp_path: Path, catalog: SkuCatalog) -> None:
    rows = [
        row("vm-1"),
        row(
            "bucket-1",
            ServiceName="Cloud Storage",
            SkuId="Standard Storage US Multi-region",
            ResourceId="projects/p/buckets/checkpoints",
            BilledCost="3.21",
            EffectiveCost="3.21",
            PricingUnit="GiB-Months",
            Tags="null",
        ),
    ]
    result = ingest(write_focus(tmp_path / "bill.csv", rows), catalog)
    assert result.rows_loaded == 2
    assert result.rows_quarantined == 0
    storage = result.good.filter(pl.col("ServiceName") == "Cloud Storage").row(0, named=True)
    assert storage["accelerator"] is None
    assert storage["team"] is None
    assert storage["EffectiveCost"] == 3.21
    assert result.totals["effective_cost_usd_without_accelerator"] == 3.21
    assert result.totals["effective_cost_usd_out"] == 11.21


def test_duplicate_rows_are_dropped_and_counted(tmp_path: Path, catalog: SkuCatalog) -> None:
    columns = [*BASE_ROW, "InvoiceId"]
    rows = [
        row("vm-1") | {"InvoiceId": "inv-1"},
        row("vm-1") | {"InvoiceId": "inv-1"},  # exported twice
        row("vm-1", ListCost="null") | {"InvoiceId": "inv-1"},
        # 'null' and an empty cell are the same missing value: a duplicate too.
        row("vm-1", ListCost="") | {"InvoiceId": "inv-1"},
        # Same FOCUS subset, different invoice: a different charge, kept.
        row("vm-1") | {"InvoiceId": "inv-2"},
    ]
    result = ingest(write_focus(tmp_path / "bill.csv", rows, columns), catalog)
    assert result.rows_read == 5
    assert result.duplicates_dropped == 2
    assert result.rows_loaded == 3
    assert result.good["row_hash"].n_unique() == 3
    assert result.totals["billed_cost_usd_in"] == 30.0
    assert all(len(h) == 64 for h in result.good["row_hash"])


def test_row_hash_is_stable_across_runs_column_order_and_formatting(
    tmp_path: Path, catalog: SkuCatalog
) -> None:
    rows = [row("vm-1"), row("vm-2")]
    first = ingest(write_focus(tmp_path / "a.csv", rows), catalog)
    again = ingest(write_focus(tmp_path / "a.csv", rows), catalog)
    reordered = ingest(write_focus(tmp_path / "b.csv", rows, list(reversed(BASE_ROW))), catalog)
    reformatted = ingest(
        write_focus(
            tmp_path / "c.csv",
            [
                r | {"BilledCost": "10", "ChargePeriodStart": "2025-07-01 00:00:00+00:00"}
                for r in rows
            ],
        ),
        catalog,
    )
    hashes = first.good["row_hash"].to_list()
    assert again.good["row_hash"].to_list() == hashes
    assert reordered.good["row_hash"].to_list() == hashes
    assert reformatted.good["row_hash"].to_list() == hashes
    changed = ingest(write_focus(tmp_path / "d.csv", [row("vm-1", BilledCost="10.01")]), catalog)
    assert changed.good["row_hash"][0] not in hashes


@pytest.mark.parametrize(
    ("field", "changes", "reason"),
    [
        ("BilledCost", {"BilledCost": "ten"}, "BilledCost 'ten' is not a finite number"),
        ("EffectiveCost", {"EffectiveCost": "1.2.3"}, "is not a finite number"),
        ("EffectiveCost", {"EffectiveCost": ""}, "EffectiveCost is missing"),
        ("BilledCost", {"BilledCost": "NULL"}, "BilledCost is missing"),
        ("ListCost", {"ListCost": "n/a"}, "ListCost 'n/a' is not a finite number"),
        ("ChargePeriodStart", {"ChargePeriodStart": "2025-07-32T00:00:00Z"}, "not a timestamp"),
        ("ChargePeriodEnd", {"ChargePeriodEnd": "null"}, "ChargePeriodEnd is missing"),
        (
            "ChargePeriodEnd",
            {"ChargePeriodEnd": "2025-07-01T00:00:00Z"},
            "ChargePeriodEnd is not after ChargePeriodStart",
        ),
        (
            "ChargePeriodEnd",
            {"ChargePeriodEnd": "2025-06-30T00:00:00Z"},
            "ChargePeriodEnd is not after ChargePeriodStart",
        ),
        ("BillingCurrency", {"BillingCurrency": "EUR"}, "BillingCurrency 'EUR' is not USD"),
        ("ChargeCategory", {"ChargeCategory": "Refund"}, "ChargeCategory 'Refund' is not one of"),
    ],
)
def test_bad_rows_are_quarantined_with_their_field(
    tmp_path: Path, catalog: SkuCatalog, field: str, changes: dict[str, str], reason: str
) -> None:
    path = write_focus(tmp_path / "bill.csv", [row("vm-1"), row("vm-2", **changes)])
    result = ingest(path, catalog)
    assert result.rows_loaded == 1
    assert result.rows_quarantined == 1
    bad = result.quarantine.row(0, named=True)
    assert bad["table"] == "billing"
    assert bad["source"] == f"billing:{path}"
    assert bad["line"] == 3
    assert bad["field"] == field
    assert reason in bad["reason"]
    record = json.loads(bad["record"])
    # The raw text as exported (a reader may hand an empty cell over as null).
    assert (record[field] or "") == changes[field]
    assert record["ResourceId"].endswith("vm-2")


def test_row_with_wrong_field_count_is_quarantined(tmp_path: Path, catalog: SkuCatalog) -> None:
    path = write_focus(tmp_path / "bill.csv", [row("vm-1"), row("vm-2")])
    with path.open("a", encoding="utf-8") as handle:
        handle.write("2025-07-01T00:00:00Z,2025-07-02T00:00:00Z,1.00\n")
    result = ingest(path, catalog)
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (3, 2, 1)
    bad = result.quarantine.row(0, named=True)
    assert (bad["line"], bad["field"]) == (4, "line")
    assert "expected 18 fields, found 3" in bad["reason"]
    assert json.loads(bad["record"])["BilledCost"] == "1.00"
    assert result.totals["billed_cost_usd_quarantined"] == 1.0


def test_reconciliation_to_the_cent(tmp_path: Path, catalog: SkuCatalog) -> None:
    rows = [
        row("a", BilledCost="0.10", EffectiveCost="0.10"),
        row("b", BilledCost="0.20", EffectiveCost="0.20"),
        row("c", BilledCost="0.30", EffectiveCost="0.25"),
        row("c", BilledCost="0.30", EffectiveCost="0.25"),  # duplicate: not counted in
        row("e", BilledCost="7.77", EffectiveCost="7.00", BillingCurrency="EUR"),
        row("f", BilledCost="12,50", EffectiveCost="3.33"),  # billed cost does not parse
        row("g", BilledCost="-0.05", EffectiveCost="-0.05", ChargeCategory="Credit"),
        # Half a cent twice is one cent: totals are rounded once, not per row.
        row("h", BilledCost="0.005", EffectiveCost="0.005"),
        row("i", BilledCost="0.005", EffectiveCost="0.005"),
    ]
    result = ingest(write_focus(tmp_path / "bill.csv", rows), catalog)
    assert result.reconciliation() == result.reconciliation() | {
        "rows_read": 9,
        "rows_loaded": 6,
        "rows_quarantined": 2,
        "duplicates_dropped": 1,
        "billed_cost_usd_in": 8.33,
        "billed_cost_usd_loaded": 0.56,
        "billed_cost_usd_quarantined": 7.77,
        "billed_cost_usd_out": 8.33,
        "effective_cost_usd_in": 10.84,
        "effective_cost_usd_loaded": 0.51,
        "effective_cost_usd_quarantined": 10.33,
        "effective_cost_usd_out": 10.84,
        "balanced": True,
    }


def test_parquet_input_equals_csv_input(tmp_path: Path, catalog: SkuCatalog) -> None:
    rows = [
        row("vm-1"),
        row("vm-2", SkuId="TPU v6e", CommitmentDiscountId="cud-1",
            CommitmentDiscountStatus="Unused", ListCost="null", Tags="null"),
        row("vm-3", ServiceName="Cloud Storage", SkuId="Standard Storage",
            BilledCost="0.123456", EffectiveCost="0.1", ChargePeriodEnd="2025-07-01T12:30:00Z"),
        row("vm-4", BilledCost="-5.5", ChargeCategory="Credit", ConsumedQuantity=""),
    ]  # fmt: skip
    csv_path = write_focus(tmp_path / "bill.csv", rows)
    # The same bill as a typed Parquet export: UTC timestamps, numbers, real nulls.
    typed = pl.read_csv(csv_path, null_values=["null", ""], try_parse_dates=True)
    assert typed.schema["ChargePeriodStart"] == pl.Datetime("us", "UTC")
    assert typed.schema["BilledCost"] == pl.Float64
    typed = typed.with_columns(pl.col("EffectiveCost").cast(pl.Decimal(18, 6)))
    parquet_path = tmp_path / "bill.parquet"
    typed.write_parquet(parquet_path)
    gz_path = write_focus(tmp_path / "bill.csv.gz", rows)

    from_csv = ingest(csv_path, catalog)
    for other in (ingest(parquet_path, catalog), ingest(gz_path, catalog)):
        assert_frame_equal(other.good.drop("source"), from_csv.good.drop("source"))
        assert other.totals == from_csv.totals
        assert other.rows_read == from_csv.rows_read == 4


def test_parquet_lines_are_row_numbers(tmp_path: Path, catalog: SkuCatalog) -> None:
    rows = [row("vm-1"), row("vm-2"), row("vm-3", BilledCost="ten")]
    text = pl.DataFrame(rows, schema=dict.fromkeys(BASE_ROW, pl.String))
    path = tmp_path / "bill.parquet"
    text.write_parquet(path)
    result = ingest(path, catalog)
    assert result.rows_loaded == 2
    bad = result.quarantine.row(0, named=True)
    assert (bad["line"], bad["field"]) == (3, "BilledCost")
    assert json.loads(bad["record"])["BilledCost"] == "ten"


def test_parquet_struct_tags_map_the_team(tmp_path: Path, catalog: SkuCatalog) -> None:
    frame = pl.DataFrame([row("vm-1")], schema=dict.fromkeys(BASE_ROW, pl.String)).with_columns(
        pl.struct(team=pl.lit("speech"), env=pl.lit("prod")).alias("Tags")
    )
    path = tmp_path / "bill.parquet"
    frame.write_parquet(path)
    result = ingest(path, catalog)
    assert result.good["team"].to_list() == ["speech"]
    assert json.loads(result.good["Tags"][0]) == {"team": "speech", "env": "prod"}


@pytest.mark.parametrize("missing", ["EffectiveCost", "ChargePeriodStart"])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_missing_required_column_fails_the_file(
    tmp_path: Path, catalog: SkuCatalog, missing: str, suffix: str
) -> None:
    columns = [c for c in BASE_ROW if c != missing]
    path = tmp_path / f"bill{suffix}"
    if suffix == ".csv":
        write_focus(path, [row()], columns)
    else:
        pl.DataFrame([row()], schema=dict.fromkeys(BASE_ROW, pl.String)).select(
            columns
        ).write_parquet(path)
    with pytest.raises(WorkbenchError) as info:
        ingest_focus_billing(path, resolver=catalog, source="billing:test")
    error = info.value
    assert (error.file, error.line, error.field) == (str(path), 1, missing)
    assert error.fix is not None and "FOCUS" in error.fix
    assert f"{path}, line 1, field '{missing}'" in str(error)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bill.csv.gz", b"this is not gzip", "cannot read file"),
        ("bill.parquet", b"PAR1 truncated", "cannot read Parquet file"),
        ("bill.csv", b"", "file is empty"),
    ],
)
def test_unreadable_file_fails_with_a_fix(
    tmp_path: Path, catalog: SkuCatalog, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WorkbenchError) as info:
        ingest_focus_billing(path, resolver=catalog, source="billing:test")
    assert message in info.value.message
    assert info.value.file == str(path)
    assert info.value.fix


def test_missing_file_fails(tmp_path: Path, catalog: SkuCatalog) -> None:
    with pytest.raises(WorkbenchError, match="file not found"):
        ingest_focus_billing(tmp_path / "nope.csv", resolver=catalog, source="billing:test")


def test_sample_export_loads_every_row(sample_dir: Path, catalog: SkuCatalog) -> None:
    path = sample_dir / "billing" / "focus_billing.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        exported = list(csv.DictReader(handle))
    result = ingest(path, catalog)
    assert result.rows_read == len(exported) > 1000
    assert result.rows_quarantined == 0
    assert result.duplicates_dropped == 0
    assert result.rows_loaded == len(exported)
    assert result.good["team"].null_count() == 0
    assert result.good["accelerator"].null_count() == 0
    assert set(result.good["accelerator"]) <= set(catalog.ids())
    assert result.good["row_hash"].is_unique().all()
    effective = sum(float(r["EffectiveCost"]) for r in exported)
    assert result.totals["effective_cost_usd_in"] == round(effective, 2)
    assert result.totals["effective_cost_usd_out"] == round(effective, 2)

    # Oracle: the Unused rows summed per month and commitment with plain Python.
    unused: dict[tuple[str, str], float] = defaultdict(float)
    for r in exported:
        if r["CommitmentDiscountStatus"] == "Unused":
            unused[(r["ChargePeriodStart"][:7], r["CommitmentDiscountId"])] += float(
                r["EffectiveCost"]
            )
    assert len(unused) > 0
    waste = commitment_waste(result.good)
    got = {
        (month.strftime("%Y-%m"), commitment): usd
        for month, _, _, commitment, usd in waste.iter_rows()
    }
    assert got.keys() == unused.keys()
    for key, usd in unused.items():
        assert got[key] == pytest.approx(usd, abs=1e-6), key
    assert waste["accelerator"].null_count() == 0
    assert waste["team"].null_count() == 0


def test_minimal_and_header_only_files(tmp_path: Path, catalog: SkuCatalog) -> None:
    header = "ChargePeriodStart,ChargePeriodEnd,BilledCost,EffectiveCost"
    minimal = tmp_path / "minimal.csv"
    minimal.write_text(f"{header}\n2025-01-01T00:00:00Z,2025-01-02T00:00:00Z,1.5,1.25\n")
    result = ingest(minimal, catalog)
    assert result.rows_loaded == 1
    loaded = result.good.row(0, named=True)
    assert (loaded["BilledCost"], loaded["EffectiveCost"]) == (1.5, 1.25)
    assert loaded["Tags"] is None and loaded["team"] is None and loaded["accelerator"] is None
    assert result.totals["effective_cost_usd_without_team"] == 1.25

    empty = tmp_path / "empty.csv"
    empty.write_text(f"{header}\n")
    nothing = ingest(empty, catalog)
    assert (nothing.rows_read, nothing.rows_loaded, nothing.totals["billed_cost_usd_in"]) == (
        0,
        0,
        0.0,
    )
    assert commitment_waste(nothing.good).schema == WASTE_SCHEMA
