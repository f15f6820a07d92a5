"""``workbench report quarterly`` and ``workbench report finance`` through the CLI: the
documents (HTML, PDF with page numbers and run ids on every page, workbook), the report runs,
and one-line errors that say what to run."""

from __future__ import annotations

import re
import shutil

import polars as pl
import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from tests.test_cli import invoke, one_line_error, run_workbench
from tests.test_cli_costs import billed_workspace  # noqa: F401  (a fixture, used by name)
from tests.test_report_quarterly import ReportPage, planned_workspace  # noqa: F401
from workbench import cli
from workbench.report_finance import SHEETS
from workbench.store import Workspace


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(cli.console, "width", 220)


def test_quarterly_writes_html_and_pdf_and_a_report_run(planned_workspace, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    args = ["report", "quarterly", "--quarter", "2027Q1", "-w", str(planned_workspace.root)]
    result = invoke(*args, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "Buy " in result.output and "Expected cost of 2027Q1" in result.output
    (run,) = [r for r in planned_workspace.runs("report") if r.manifest["config"]["pdf"]]
    config = run.manifest["config"]
    assert config["report"] == "quarterly" and config["quarter"] == "2027Q1"
    assert config["plan_run"] == planned_workspace.runs("plan")[-1].run_id
    assert config["inputs"]["forecast"] == config["forecast_run"]
    assert {"plan", "reclaim", "accountability", "demand_outlook"} <= set(run.outputs())
    assert {"static_charts", "pdf"} <= set(run.manifest["timings"])
    html = (out / "quarterly-2027Q1.html").read_text()
    assert html == (run.path / "report.html").read_text()
    page = ReportPage(html)
    assert "summary" in page.sections and "accountability" in page.sections
    assert config["manifest_sha256"] in page.text

    reader = PdfReader(out / "quarterly-2027Q1.pdf")
    pages = len(reader.pages)
    assert pages > 1
    texts = [p.extract_text() for p in reader.pages]
    assert "Quarterly procurement report 2027Q1" in texts[0]
    assert "Executive summary" in texts[0]
    for number, text in enumerate(texts, start=1):
        flat = " ".join(text.split())
        assert f"Page {number} of {pages}" in flat, number
        assert config["plan_run"] in flat.replace(" ", "").replace("-\n", ""), number
        assert config["manifest_sha256"][:16] in flat.replace(" ", ""), number
        # The footer is monospace: no ligature glyph ("ff", "fi") in its ids and hash.
        footer = flat[: flat.index("SHA-256") + 90]
        assert not re.search("[\ufb00-\ufb06]", footer), number
    everything = " ".join(texts)
    assert "Forecast accountability" in everything
    assert "What changed since the previous report" in everything
    plan = run.read("plan")
    assert f"{int(plan['buy_chips'].sum()):,}" in everything


def test_unknown_quarter_is_a_one_line_error(billed_workspace):  # noqa: F811
    line = one_line_error(
        run_workbench(
            "report", "quarterly", "--quarter", "2027Q5", "-w", str(billed_workspace.root)
        )
    )
    assert "field '--quarter': '2027Q5' is not a quarter (fix: write YYYYQn" in line


def test_without_a_plan_run_the_error_says_what_to_run(billed_workspace):  # noqa: F811
    line = one_line_error(
        run_workbench(
            "report", "quarterly", "--quarter", "2027Q1", "-w", str(billed_workspace.root)
        )
    )
    assert "no plan run" in line
    assert "workbench plan --forecast-horizon 182" in line
    assert billed_workspace.runs("report") == []


def test_a_quarter_the_plan_does_not_cover_names_the_ones_it_does(planned_workspace):  # noqa: F811
    line = one_line_error(
        run_workbench(
            "report", "quarterly", "--quarter", "2031Q1", "-w", str(planned_workspace.root)
        )
    )
    assert re.search(r"covers 2026Q4 to 2028Q3, not 2031Q1", line), line
    assert "workbench plan" in line


def test_finance_writes_workbook_csv_and_parquet_that_reconcile(billed_workspace, tmp_path):  # noqa: F811
    target = tmp_path / "workspace"
    shutil.copytree(billed_workspace.root, target)
    out = tmp_path / "exports"
    result = invoke("report", "finance", "--month", "2026-10", "-w", str(target), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "pool cost $15,349,245.10 (balanced to the cent)" in result.output
    book = load_workbook(out / "finance-2026-10.xlsx")
    assert book.sheetnames == list(SHEETS)
    for sheet in SHEETS:
        assert (out / f"{sheet}.csv").exists() and (out / f"{sheet}.parquet").exists()
    (run,) = Workspace(target).runs("report")
    assert run.manifest["config"] == {"report": "finance", "months": ["2026-10"]}
    assert run.manifest["pool_cost_cents"] == 1_534_924_510 and run.manifest["balanced"]
    assert len(run.manifest["inputs"]) == 5
    assert (run.path / "finance-2026-10.xlsx").exists()
    summary = pl.read_parquet(out / "summary.parquet")
    assert summary.equals(run.read("summary"))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--month", "October"), "field '--month': 'October' is not a month"),
        (("--months", "2026-10:2026-08"), "ends before it starts"),
        ((), "give one of --month or --months"),
    ],
)
def test_finance_option_errors_are_one_line(billed_workspace, args, words):  # noqa: F811
    line = one_line_error(
        run_workbench("report", "finance", *args, "-w", str(billed_workspace.root))
    )
    assert words in line
