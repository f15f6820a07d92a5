"""Finance exports: the cost engine's showback as a workbook, CSV and Parquet.

:func:`build_finance` turns :func:`workbench.showback.showback` for some months into the
tables finance asks for (summary, by team, by accelerator and region, idle and commitment
waste, unit costs, TCO components, reconciliation); :func:`write_workbook` writes them as
one Excel workbook (number formats, frozen headers, column widths) and
:func:`write_tables` as CSV and Parquet files.

Invariants:

* Money columns are Decimal(38, 2) USD summed from the engine's whole cents, so every total
  equals the engine's to the cent; the ``reconciliation`` table checks, per month, that the
  by-team and by-pool sheets, teams + idle and owned + cloud all equal the pool cost, and
  that the cloud part equals the bill.
* Every table is sorted, so the same workspace gives the same files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl

from workbench.errors import WorkbenchError
from workbench.money import CENTS_PER_USD
from workbench.showback import IDLE, Showback, ShowbackPolicy, breakdown, month_range, reconcile
from workbench.showback import showback as run_showback
from workbench.store import Workspace
from workbench.tco import TcoAssumptions, tco_table

__all__ = [
    "SHEETS",
    "FinanceReport",
    "build_finance",
    "input_tables",
    "parse_month_span",
    "write_tables",
    "write_workbook",
]

SHEETS: tuple[str, ...] = (
    "summary",
    "by_team",
    "by_accelerator_region",
    "idle_and_waste",
    "unit_costs",
    "tco_components",
    "reconciliation",
)
"""Sheet (and file) names, in workbook order."""

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_INPUT_TABLES = ("usage_daily", "inventory", "billing", "price_book", "sku_catalog")


def _month(text: str, option: str) -> date:
    match = _MONTH.match(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise WorkbenchError(
            f"'{text}' is not a month", field=option, fix="write YYYY-MM, e.g. 2026-10"
        )
    return date(int(match.group(1)), int(match.group(2)), 1)


def parse_month_span(month: str | None, months: str | None) -> list[date]:
    """First days of ``--month YYYY-MM`` or ``--months FIRST:LAST`` (also ``FIRST..LAST``)."""
    if (month is None) == (months is None):
        raise WorkbenchError(
            "give one of --month or --months",
            field="--month",
            fix="e.g. --month 2026-10 or --months 2026-08:2026-10",
        )
    if month is not None:
        return [_month(month, "--month")]
    assert months is not None
    parts = re.split(r"\.\.|:", months, maxsplit=1)
    if len(parts) != 2:
        raise WorkbenchError(
            f"'{months}' is not a month range",
            field="--months",
            fix="write FIRST:LAST, e.g. 2026-08:2026-10",
        )
    first, last = (_month(p, "--months") for p in parts)
    if last < first:
        raise WorkbenchError(
            f"month range '{months}' ends before it starts",
            field="--months",
            fix="write FIRST:LAST, e.g. 2026-08:2026-10",
        )
    return month_range(first, last)


@dataclass(frozen=True)
class FinanceReport:
    """The finance tables of some months, by sheet name (see :data:`SHEETS`)."""

    months: tuple[date, ...]
    tables: dict[str, pl.DataFrame]
    pool_cost_cents: int
    """The cost engine's total (owned + billed) over the months, in cents."""
    balanced: bool


def _usd(cents: pl.Expr) -> pl.Expr:
    return cents.cast(pl.Decimal(38, 2)) / CENTS_PER_USD


def _month_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("month").dt.strftime("%Y-%m"))


def _summary(result: Showback, check: pl.DataFrame) -> pl.DataFrame:
    pools = result.pools.group_by("month").agg(
        pl.col("installed_chip_hours").sum(),
        pl.col("chip_hours_used").sum(),
        pl.col("chip_hours_idle").sum(),
    )
    allocated = result.cells.group_by("month").agg(pl.col("chip_hours_allocated").sum())
    rows = (
        check.join(pools, on="month", how="left")
        .join(allocated, on="month", how="left")
        .sort("month")
    )
    totals = rows.select(
        pl.lit(None, dtype=pl.Date).alias("month"),
        pl.exclude("month", "balanced").sum(),
        pl.col("balanced").all(),
    )
    both = pl.concat([rows.select(totals.columns), totals])
    return both.select(
        pl.col("month").dt.strftime("%Y-%m").fill_null("total").alias("month"),
        "installed_chip_hours",
        "chip_hours_used",
        "chip_hours_allocated",
        "chip_hours_idle",
        (pl.col("chip_hours_used") / pl.col("installed_chip_hours")).alias("utilization"),
        _usd(pl.col("owned_cents")).alias("owned_usd"),
        _usd(pl.col("cloud_cents")).alias("cloud_usage_usd"),
        _usd(pl.col("commitment_waste_cents")).alias("commitment_waste_usd"),
        _usd(pl.col("teams_cents")).alias("teams_usd"),
        _usd(pl.col("idle_cents")).alias("idle_usd"),
        _usd(pl.col("pool_cost_cents")).alias("pool_cost_usd"),
        (pl.col("pool_cost_cents") / CENTS_PER_USD / pl.col("chip_hours_used")).alias(
            "usd_per_used_chip_hour"
        ),
    )


def _idle_and_waste(result: Showback) -> pl.DataFrame:
    cells = result.cells.group_by("month", "accelerator", "region").agg(
        pl.col("total_cents").filter(pl.col("team") == IDLE).sum().alias("idle_cents"),
        pl.col("commitment_waste_cents").sum().alias("waste_cents"),
    )
    return _month_text(
        result.pools.select(
            "month", "accelerator", "region", "installed_chip_hours", "chip_hours_idle"
        )
        .join(cells, on=["month", "accelerator", "region"], how="full", coalesce=True)
        .with_columns(pl.col("idle_cents", "waste_cents").fill_null(0))
        .select(
            "month",
            "accelerator",
            "region",
            "installed_chip_hours",
            "chip_hours_idle",
            (pl.col("chip_hours_idle") / pl.col("installed_chip_hours")).alias("idle_share"),
            _usd(pl.col("idle_cents")).alias("idle_usd"),
            _usd(pl.col("waste_cents")).alias("commitment_waste_usd"),
            _usd(pl.col("idle_cents") + pl.col("waste_cents")).alias("total_waste_usd"),
        )
        .sort("month", "accelerator", "region")
    )


def _unit_costs(result: Showback) -> pl.DataFrame:
    table = breakdown(result, ["month", "team", "accelerator", "region"])
    rates = result.pools.select("month", "accelerator", "region", "owned_usd_per_chip_hour")
    return _month_text(
        table.join(rates, on=["month", "accelerator", "region"], how="left").select(
            "month",
            "team",
            "accelerator",
            "region",
            "chip_hours_used",
            "chip_hours_allocated",
            "efficiency",
            "total_usd",
            pl.col("unit_cost_usd_per_used_chip_hour").alias("usd_per_used_chip_hour"),
            pl.col("owned_usd_per_chip_hour").alias("owned_usd_per_installed_chip_hour"),
        )
    )


def _reconciliation(
    check: pl.DataFrame, by_team: pl.DataFrame, by_pool: pl.DataFrame
) -> pl.DataFrame:
    def sheet_cents(frame: pl.DataFrame, name: str) -> pl.DataFrame:
        return frame.group_by("month").agg(
            (pl.col("total_usd").sum() * CENTS_PER_USD).cast(pl.Int64).alias(name)
        )

    rows = (
        check.with_columns(pl.col("month").dt.strftime("%Y-%m"))
        .join(sheet_cents(by_team, "by_team_cents"), on="month", how="left")
        .join(sheet_cents(by_pool, "by_pool_cents"), on="month", how="left")
        .sort("month")
    )
    return rows.select(
        "month",
        _usd(pl.col("pool_cost_cents")).alias("engine_pool_cost_usd"),
        _usd(pl.col("owned_cents")).alias("owned_usd"),
        _usd(pl.col("billing_cents")).alias("billing_effective_cost_usd"),
        _usd(pl.col("cloud_cents") + pl.col("commitment_waste_cents")).alias("cloud_part_usd"),
        _usd(pl.col("teams_cents")).alias("teams_usd"),
        _usd(pl.col("idle_cents")).alias("idle_usd"),
        _usd(pl.col("by_team_cents")).alias("by_team_sheet_usd"),
        _usd(pl.col("by_pool_cents")).alias("by_accelerator_region_sheet_usd"),
        _usd(pl.col("by_team_cents") - pl.col("pool_cost_cents")).alias("difference_usd"),
        (
            pl.col("balanced")
            & (pl.col("by_team_cents") == pl.col("pool_cost_cents"))
            & (pl.col("by_pool_cents") == pl.col("pool_cost_cents"))
        ).alias("balanced"),
    )


def build_finance(
    ws: Workspace, months: Sequence[date], policy: ShowbackPolicy | None = None
) -> FinanceReport:
    """The finance tables of ``months`` (first days) from the workspace's cost engine."""
    usage = ws.read_table("usage_daily")
    if usage.height == 0:
        raise WorkbenchError(
            "the workspace has no usage to cost",
            file=ws.root,
            fix="ingest job records first: 'workbench ingest jobs FILE'",
        )
    last = usage["date"].max()
    first = usage["date"].min()
    assert isinstance(first, date) and isinstance(last, date)
    outside = [m for m in months if m > last or m < date(first.year, first.month, 1)]
    if outside:
        raise WorkbenchError(
            f"no usage in {outside[0]:%Y-%m}",
            field="--month",
            fix=f"pick months from {first:%Y-%m} to {last:%Y-%m}",
        )
    result = run_showback(
        usage,
        ws.read_table("inventory"),
        ws.read_table("billing"),
        ws.read_table("price_book"),
        ws.read_table("sku_catalog"),
        list(months),
        policy or ShowbackPolicy(),
    )
    check = reconcile(result)
    by_team = _month_text(breakdown(result, ["month", "team"]))
    by_pool = _month_text(breakdown(result, ["month", "accelerator", "region"]))
    tco = tco_table(ws.read_table("price_book"), ws.read_table("sku_catalog"), TcoAssumptions())
    tco_columns = [
        c
        for c in tco.columns
        if c in ("accelerator", "region", "power_w", "utilization", "source", "as_of")
        or c.endswith("_usd_per_chip_hour")
        or c.endswith("_usd_per_used_chip_hour")
        or c.endswith("_usd_per_hour")
        or c.startswith("break_even")
    ]
    reconciliation = _reconciliation(check, by_team, by_pool)
    tables = {
        "summary": _summary(result, check),
        "by_team": by_team,
        "by_accelerator_region": by_pool,
        "idle_and_waste": _idle_and_waste(result),
        "unit_costs": _unit_costs(result),
        "tco_components": tco.select(tco_columns).sort("accelerator", "region"),
        "reconciliation": reconciliation,
    }
    return FinanceReport(
        months=tuple(months),
        tables=tables,
        pool_cost_cents=int(check["pool_cost_cents"].sum()),
        balanced=bool(reconciliation["balanced"].all()),
    )


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------
_USD_FORMAT = '"$"#,##0.00'
_RATE_FORMAT = '"$"#,##0.000'
_SHARE_FORMAT = "0.0%"
_HOURS_FORMAT = "#,##0"


def _number_format(column: str, dtype: pl.DataType) -> str | None:
    if isinstance(dtype, pl.Decimal) or column.endswith("_usd"):
        return _USD_FORMAT
    if "usd_per" in column:
        return _RATE_FORMAT
    if column in ("utilization", "efficiency", "idle_share") or column.startswith("break_even"):
        return _SHARE_FORMAT
    if "chip_hours" in column or column == "power_w":
        return _HOURS_FORMAT
    return None


def _cell_value(value: object) -> object:
    if isinstance(value, Decimal):
        # openpyxl stores a Decimal's exact digits; Excel reads it as a number.
        return value
    if isinstance(value, date):
        return value.isoformat()
    return value


def write_workbook(report: FinanceReport, path: Path) -> Path:
    """One sheet per table: bold frozen header, number formats, fitted column widths."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    if workbook.active is not None:
        workbook.remove(workbook.active)
    header_font = Font(bold=True)
    header_fill = PatternFill("solid", fgColor="F3F5F7")
    for name in SHEETS:
        frame = report.tables[name]
        sheet = workbook.create_sheet(title=name)
        sheet.append(frame.columns)
        for cell in sheet[1]:
            cell.font = header_font
            cell.fill = header_fill
            cell.alignment = Alignment(wrap_text=True, vertical="top")
        for row in frame.iter_rows():
            sheet.append([_cell_value(v) for v in row])
            for cell in sheet[sheet.max_row]:
                # Text from the data ("=HYPERLINK(...)" as a team name) stays text, never
                # a formula Excel would run.
                if cell.data_type == "f":
                    cell.data_type = "s"
        formats = [_number_format(c, t) for c, t in frame.schema.items()]
        for index, (column, number_format) in enumerate(
            zip(frame.columns, formats, strict=True), start=1
        ):
            letter = get_column_letter(index)
            if number_format:
                for (cell,) in sheet.iter_rows(
                    min_row=2, max_row=frame.height + 1, min_col=index, max_col=index
                ):
                    cell.number_format = number_format
            widest = max(
                [len(column) * 0.8]
                + [len(_shown(v, number_format)) for v in frame[column].to_list()]
            )
            sheet.column_dimensions[letter].width = min(60.0, max(10.0, widest + 2))
        sheet.freeze_panes = "B2"
        if frame.height:
            sheet.auto_filter.ref = sheet.dimensions
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path


def _shown(value: object, number_format: str | None) -> str:
    """About what Excel shows for a value, to size its column."""
    if value is None:
        return ""
    if number_format in (_USD_FORMAT, _RATE_FORMAT) and isinstance(value, Decimal | float | int):
        return f"${float(value):,.3f}"
    if number_format == _HOURS_FORMAT and isinstance(value, float | int):
        return f"{float(value):,.0f}"
    return str(value)


def write_tables(report: FinanceReport, folder: Path) -> list[Path]:
    """Every table as ``<sheet>.csv`` and ``<sheet>.parquet`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in SHEETS:
        frame = report.tables[name]
        frame.write_csv(folder / f"{name}.csv")
        frame.write_parquet(folder / f"{name}.parquet")
        written += [folder / f"{name}.csv", folder / f"{name}.parquet"]
    return written


def input_tables() -> tuple[str, ...]:
    """Workspace tables the finance report reads (their hashes go in the run's manifest)."""
    return _INPUT_TABLES
