"""The ``workbench report`` commands: ``quarterly`` (HTML + PDF) and ``finance`` (workbook).

Each writes a run of kind ``report`` (config ``report: quarterly`` or ``finance``) holding the
documents and the tables behind them, with the input runs and table hashes in its manifest;
``--out DIR`` copies the documents there too.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.store import Workspace

# The workspace store and the report builders (polars) are imported where they are used, so
# that registering these commands (every ``workbench`` start-up) loads none of them.

__all__ = ["finance_command", "quarterly_command", "report_app", "write_quarterly"]

_DEFAULT_WORKSPACE = Path(os.environ.get("WORKBENCH_WORKSPACE", "workspace"))
_WorkspaceOption = Annotated[
    Path,
    typer.Option("--workspace", "-w", help="Workspace folder.", envvar="WORKBENCH_WORKSPACE"),
]

report_app = typer.Typer(
    help="Documents for procurement and finance: the quarterly report and cost workbooks.",
    no_args_is_help=True,
)


def _console() -> Any:
    from workbench.cli import console

    return console


def write_quarterly(
    ws: Workspace,
    quarter: str,
    *,
    plan_run: str | None = None,
    pdf: bool = True,
) -> tuple[str, dict[str, float]]:
    """Build, render and commit the quarterly report; return its run id and step timings."""
    from workbench.report_quarterly import build_quarterly
    from workbench.report_render import (
        build_figures,
        print_pdf,
        render_html,
        static_images,
        template_sha256,
    )

    timings: dict[str, float] = {}
    began = time.perf_counter()
    report = build_quarterly(ws, quarter, plan_run=plan_run, template_sha256=template_sha256())
    timings["build"] = time.perf_counter() - began
    began = time.perf_counter()
    figures = build_figures(report)
    html = render_html(report, figures=figures)
    timings["html"] = time.perf_counter() - began
    config = {**report.config, "manifest_sha256": report.manifest_sha256, "pdf": pdf}
    with ws.writer_lock(), ws.new_run("report", config=config) as run:
        for name in ("price_book", "sku_catalog", "events", "usage_daily", "inventory"):
            if ws.has_table(name):
                run.add_input(ws.table_path(name))
        for name, frame in report.tables().items():
            run.write(name, frame)
        (run.staging / "report.html").write_text(html, encoding="utf-8")
        if pdf:
            began = time.perf_counter()
            images = static_images(figures)
            timings["static_charts"] = time.perf_counter() - began
            began = time.perf_counter()
            printable = run.staging / "report-print.html"
            printable.write_text(
                render_html(report, variant="print", figures=figures, images=images),
                encoding="utf-8",
            )
            print_pdf(printable, run.staging / "report.pdf")
            timings["pdf"] = time.perf_counter() - began
        run.manifest["timings"].update({k: round(v, 4) for k, v in timings.items()})
        run.manifest["summary"] = report.summary
        run_id = run.run_id
    return run_id, timings


@report_app.command("quarterly")
def quarterly_command(
    quarter: Annotated[str, typer.Option(help="The quarter to report on, e.g. 2027Q1.")],
    plan_run: Annotated[
        str | None, typer.Option(help="Plan run to report on [default: the latest].")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Also copy the HTML and PDF into DIR."),
    ] = None,
    pdf: Annotated[bool, typer.Option(help="Also print the PDF (headless Chromium).")] = True,
    workspace: _WorkspaceOption = _DEFAULT_WORKSPACE,
) -> None:
    """The quarterly procurement report: one HTML file (offline, interactive) and its PDF.

    Executive summary, demand outlook with fan charts and events, the plan per pool and
    quarter, budget and power against limits, reclaim, assumptions, forecast accountability
    and what changed since the previous report. Writes a ``report`` run.
    """
    from workbench.report_quarterly import parse_quarter
    from workbench.store import Workspace

    console = _console()
    quarter = parse_quarter(quarter)
    ws = Workspace(workspace).require()
    run_id, timings = write_quarterly(ws, quarter, plan_run=plan_run, pdf=pdf)
    run = ws.run(run_id)
    documents = [run.path / "report.html"] + ([run.path / "report.pdf"] if pdf else [])
    for line in run.manifest.get("summary", []):
        console.print(f"  {line}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        copies = []
        for document in documents:
            target = out / f"quarterly-{quarter}{document.suffix}"
            shutil.copyfile(document, target)
            copies.append(target)
        documents = copies
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
    console.print(f"Report run {run_id} committed ({steps}).")
    for document in documents:
        console.print(f"Wrote {document}")


@report_app.command("finance")
def finance_command(
    month: Annotated[str | None, typer.Option(help="One month, YYYY-MM.")] = None,
    months: Annotated[
        str | None, typer.Option(help="A range of months, FIRST:LAST (e.g. 2026-08:2026-10).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Also copy the workbook, CSV and Parquet into DIR."),
    ] = None,
    workspace: _WorkspaceOption = _DEFAULT_WORKSPACE,
) -> None:
    """Cost breakdowns for finance: an Excel workbook plus the same tables as CSV and Parquet.

    Sheets: summary, by team, by accelerator and region, idle and commitment waste, unit
    costs, TCO components and a reconciliation to the cost engine's totals, to the cent.
    Writes a ``report`` run.
    """
    from workbench.money import format_usd
    from workbench.report_finance import (
        build_finance,
        input_tables,
        parse_month_span,
        write_tables,
        write_workbook,
    )
    from workbench.store import Workspace

    console = _console()
    selected = parse_month_span(month, months)
    ws = Workspace(workspace).require()
    report = build_finance(ws, selected)
    period = (
        f"{selected[0]:%Y-%m}"
        if len(selected) == 1
        else f"{selected[0]:%Y-%m}_{selected[-1]:%Y-%m}"
    )
    name = f"finance-{period}.xlsx"
    config = {"report": "finance", "months": [f"{m:%Y-%m}" for m in selected]}
    with ws.writer_lock(), ws.new_run("report", config=config) as run:
        for table in input_tables():
            if ws.has_table(table):
                run.add_input(ws.table_path(table))
        for sheet, frame in report.tables.items():
            run.write(sheet, frame)
            frame.write_csv(run.staging / f"{sheet}.csv")
        write_workbook(report, run.staging / name)
        run.manifest["pool_cost_cents"] = report.pool_cost_cents
        run.manifest["balanced"] = report.balanced
        run_id = run.run_id
    folder = ws.run(run_id).path
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / name, out / name)
        write_tables(report, out)
        folder = out
    console.print(
        f"Finance {period}: pool cost {format_usd(report.pool_cost_cents)} "
        f"({'balanced to the cent' if report.balanced else 'NOT BALANCED'}); "
        f"report run {run_id} committed."
    )
    console.print(f"Wrote {folder / name} and {len(report.tables)} tables as CSV and Parquet.")
    if not report.balanced:
        raise WorkbenchError(
            "the finance tables do not reconcile with the cost engine",
            field="reconciliation",
            fix="report this with the run folder; it is a bug",
        )
