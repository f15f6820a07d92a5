"""Finance exports on the billed sample fleet: the workbook (sheets, formats, frozen headers,
widths), CSV and Parquet, and totals that reconcile to the cost engine's to the cent."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
import pytest
from openpyxl import load_workbook

from tests.test_cli_costs import billed_workspace  # noqa: F401  (a fixture, used by name)
from workbench.errors import WorkbenchError
from workbench.report_finance import (
    SHEETS,
    build_finance,
    parse_month_span,
    write_tables,
    write_workbook,
)
from workbench.showback import IDLE, ShowbackPolicy, breakdown, reconcile, showback

MONTHS = [date(2026, 8, 1), date(2026, 9, 1), date(2026, 10, 1)]


@pytest.fixture(scope="module")
def finance(billed_workspace):  # noqa: F811
    return build_finance(billed_workspace, MONTHS)


@pytest.fixture(scope="module")
def engine(billed_workspace):  # noqa: F811
    ws = billed_workspace
    return showback(
        ws.read_table("usage_daily"),
        ws.read_table("inventory"),
        ws.read_table("billing"),
        ws.read_table("price_book"),
        ws.read_table("sku_catalog"),
        MONTHS,
        ShowbackPolicy(),
    )


def cents(value) -> int:
    return int((Decimal(str(value)) * 100).to_integral_value())


def test_tables_reconcile_to_the_engine_to_the_cent(finance, engine):
    check = reconcile(engine)
    assert finance.pool_cost_cents == int(check["pool_cost_cents"].sum())
    assert finance.balanced
    # The README's October figure, from the engine, equals the sheets' totals.
    october = finance.tables["summary"].filter(pl.col("month") == "2026-10").row(0, named=True)
    assert october["pool_cost_usd"] == Decimal("15349245.10")
    assert october["idle_usd"] == Decimal("1633802.71")
    for sheet in ("by_team", "by_accelerator_region"):
        per_month = finance.tables[sheet].group_by("month").agg(pl.col("total_usd").sum())
        for month, total in per_month.iter_rows():
            expected = check.filter(pl.col("month").dt.strftime("%Y-%m") == month)
            assert cents(total) == expected["pool_cost_cents"].item(), (sheet, month)
    total_row = finance.tables["summary"].filter(pl.col("month") == "total").row(0, named=True)
    assert cents(total_row["pool_cost_usd"]) == finance.pool_cost_cents
    assert (
        cents(total_row["owned_usd"])
        + cents(total_row["cloud_usage_usd"])
        + cents(total_row["commitment_waste_usd"])
        == finance.pool_cost_cents
    )
    reconciliation = finance.tables["reconciliation"]
    assert reconciliation["balanced"].all()
    assert (reconciliation["difference_usd"] == 0).all()
    # Idle and waste: the (idle) lines and the unused commitments, per pool.
    waste = finance.tables["idle_and_waste"]
    idle = breakdown(engine, ["team"]).filter(pl.col("team") == IDLE)["total_usd"].item()
    assert waste["idle_usd"].sum() == idle
    assert (
        waste["commitment_waste_usd"].sum() == breakdown(engine, [])["commitment_waste_usd"].item()
    )


def test_workbook_has_every_sheet_with_formats_frozen_headers_and_widths(finance, tmp_path):
    path = write_workbook(finance, tmp_path / "finance.xlsx")
    book = load_workbook(path)
    assert book.sheetnames == list(SHEETS)
    for name in SHEETS:
        sheet = book[name]
        frame = finance.tables[name]
        assert [c.value for c in sheet[1]] == frame.columns
        assert all(c.font.bold for c in sheet[1])
        assert sheet.freeze_panes == "B2"
        assert sheet.max_row == frame.height + 1
        assert all(
            (sheet.column_dimensions[chr(65 + i)].width or 0) >= 10
            for i in range(min(len(frame.columns), 26))
        )
    summary = book["summary"]
    header = [c.value for c in summary[1]]
    pool_cost = header.index("pool_cost_usd") + 1
    utilization = header.index("utilization") + 1
    assert summary.cell(2, pool_cost).number_format == '"$"#,##0.00'
    assert summary.cell(2, utilization).number_format == "0.0%"
    # The workbook's totals equal the engine's, to the cent.
    total_row = [summary.cell(r, 1).value for r in range(2, summary.max_row + 1)].index("total")
    assert cents(summary.cell(total_row + 2, pool_cost).value) == finance.pool_cost_cents
    by_team = book["by_team"]
    column = [c.value for c in by_team[1]].index("total_usd") + 1
    values = [by_team.cell(r, column).value for r in range(2, by_team.max_row + 1)]
    assert sum(cents(v) for v in values) == finance.pool_cost_cents
    reconciliation = book["reconciliation"]
    flags = [c.value for c in reconciliation[1]].index("balanced") + 1
    assert all(reconciliation.cell(r, flags).value for r in range(2, reconciliation.max_row + 1))


def test_csv_and_parquet_hold_the_same_tables(finance, tmp_path):
    written = write_tables(finance, tmp_path)
    assert len(written) == 2 * len(SHEETS)
    for name in SHEETS:
        assert pl.read_parquet(tmp_path / f"{name}.parquet").equals(finance.tables[name])
        assert pl.read_csv(tmp_path / f"{name}.csv").height == finance.tables[name].height
    by_team = pl.read_csv(tmp_path / "by_team.csv")
    assert round(by_team["total_usd"].sum() * 100) == finance.pool_cost_cents


def test_month_spans_parse_and_refuse_readably():
    assert parse_month_span("2026-10", None) == [date(2026, 10, 1)]
    assert parse_month_span(None, "2026-08:2026-10") == MONTHS
    assert parse_month_span(None, "2026-08..2026-10") == MONTHS
    with pytest.raises(WorkbenchError, match="give one of --month or --months"):
        parse_month_span("2026-10", "2026-08:2026-10")
    with pytest.raises(WorkbenchError, match="'2026-13' is not a month"):
        parse_month_span("2026-13", None)
    with pytest.raises(WorkbenchError, match="ends before it starts"):
        parse_month_span(None, "2026-10:2026-08")


def test_a_month_without_usage_names_the_months_there_are(billed_workspace):  # noqa: F811
    with pytest.raises(WorkbenchError, match=r"no usage in 2027-01 .*2023-11 to 2026-10"):
        build_finance(billed_workspace, [date(2027, 1, 1)])
