"""The quarterly report's content and HTML on the sample fleet: sections, numbers equal to
the runs' tables, escaping, reproducibility, accountability and what changed."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from html.parser import HTMLParser

import polars as pl
import pytest

from tests.test_cli import invoke
from tests.test_cli_costs import billed_workspace  # noqa: F401  (a fixture, used by name)
from workbench.report_quarterly import build_quarterly, parse_quarter, quarter_end
from workbench.report_render import (
    build_figures,
    footer_text,
    render_html,
    template_sha256,
)
from workbench.store import Workspace

SECTIONS = (
    "summary",
    "demand",
    "plan",
    "budget",
    "reclaim",
    "assumptions",
    "accountability",
    "changes",
)
SCRIPT_TEAM = "<script>alert(1)</script>"


class ReportPage(HTMLParser):
    """The parts of a report page the tests read: section ids, tables, text, script tags."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.scripts: list[str] = []
        self.text_parts: list[str] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_script = False
        self.feed(html)

    @property
    def text(self) -> str:
        return " ".join("".join(self.text_parts).split())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "section" and named.get("id"):
            self.sections.append(str(named["id"]))
        elif tag == "table":
            self._table = str(named.get("id") or f"table-{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
            return
        if self._cell is not None:
            self._cell.append(data)
        self.text_parts.append(data)


def usd(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}${whole:,}.{part:02d}"


@pytest.fixture(scope="module")
def planned_workspace(billed_workspace, tmp_path_factory) -> Workspace:  # noqa: F811
    """The billed sample workspace plus a plan (fast 182-day forecast) and a reclaim run."""
    target = tmp_path_factory.mktemp("report") / "workspace"
    shutil.copytree(billed_workspace.root, target)
    result = invoke("plan", "-w", str(target), "--forecast-horizon", "182")
    assert result.exit_code == 0, result.output
    result = invoke("reclaim", "-w", str(target))
    assert result.exit_code == 0, result.output
    return Workspace(target)


@pytest.fixture(scope="module")
def report_and_html(planned_workspace):
    report = build_quarterly(planned_workspace, "2027Q1", template_sha256=template_sha256())
    return report, render_html(report)


def test_the_page_has_every_section_and_inlines_plotly_once(report_and_html):
    report, html = report_and_html
    page = ReportPage(html)
    assert page.sections == list(SECTIONS)
    # plotly.js once (a few MB), then one small script per chart, and nothing fetched.
    big = [s for s in page.scripts if len(s) > 1_000_000]
    assert len(big) == 1
    charts = build_figures(report)
    assert html.count("Plotly.newPlot(") == len(charts)
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r'<(img|link)[^>]+(src|href)="https?:', html)
    assert footer_text(report) in page.text
    assert report.manifest_sha256 in page.text
    for accelerator in report.demand["accelerator"].unique().to_list():
        assert f'id="chart-fan-{accelerator}"' in html


def test_plan_table_numbers_equal_the_plan_run(planned_workspace, report_and_html):
    report, html = report_and_html
    plan_run = planned_workspace.runs("plan")[-1]
    assert report.inputs["plan"] == plan_run.run_id
    plan = plan_run.read("plan").sort("accelerator", "region", "quarter")
    rows = ReportPage(html).tables["plan-table"]
    header, body, total = rows[0], rows[1:-1], rows[-1]
    assert header[:3] == ["pool", "quarter", "demand p50"]
    assert len(body) == plan.height
    for cells, row in zip(body, plan.iter_rows(named=True), strict=True):
        assert cells[0] == f"{row['accelerator']} {row['region']}"
        assert cells[1] == row["quarter"] + ("*" if row["extrapolated"] else "")
        assert cells[3] == f"{row['demand_p95']:,.0f}"
        assert cells[6] == f"{row['buy_chips']:,}"
        assert cells[10] == usd(row["cost_cents"])
        assert cells[13] == row["binding"]
    assert total[10] == usd(int(plan["cost_cents"].sum()))
    # The summary's figures come from the same table.
    quarter = plan.filter(pl.col("quarter") == "2027Q1")
    summary = ReportPage(html).text
    assert f"Buy {int(quarter['buy_chips'].sum()):,} chips in 2027Q1" in summary
    assert f"Expected cost of 2027Q1: {usd(int(quarter['cost_cents'].sum()))}" in summary


def test_reclaim_and_budget_tables_equal_their_runs(planned_workspace, report_and_html):
    _, html = report_and_html
    page = ReportPage(html)
    reclaim = (
        planned_workspace.runs("reclaim")[-1]
        .read("reclaim")
        .filter(pl.col("reclaimable_chips") > 0)
        .sort("rank")
    )
    rows = page.tables["reclaim-table"][1:-1]
    assert [r[1] for r in rows] == reclaim["team"].to_list()
    assert [r[6] for r in rows] == [f"{v:,.0f}" for v in reclaim["reclaimable_chips"]]
    savings = sum(reclaim["annual_savings_usd"].to_list())
    assert page.tables["reclaim-table"][-1][7] == usd(round(float(savings) * 100))
    # Capex per quarter of order: chips bought x the price book's capex per chip.
    book = planned_workspace.read_table("price_book").select("accelerator", "region", "capex_usd")
    plan = planned_workspace.runs("plan")[-1].read("plan").join(book, on=["accelerator", "region"])
    capex = plan.group_by("quarter").agg((pl.col("buy_chips") * pl.col("capex_usd")).sum())
    by_quarter = {r[0]: r[2] for r in page.tables["budget-table"][1:]}
    for quarter, value in capex.iter_rows():
        assert by_quarter[quarter] == usd(round(value * 100))
    assert "No budget or power limit binds this plan." in page.text


def test_demand_outlook_and_events_come_from_the_forecast_run(planned_workspace, report_and_html):
    report, html = report_and_html
    forecast = planned_workspace.run(report.inputs["forecast"] or "")
    planning = forecast.read("planning").filter(pl.col("level") == "accelerator")
    page = ReportPage(html)
    demand_tables = [t for t in page.tables.values() if t and t[0][0] == "quarter"]
    assert len(demand_tables) == planning["accelerator"].n_unique()
    h100 = planning.filter(pl.col("accelerator") == "h100-80gb").sort("quarter")
    expected = [f"{v:,.0f}" for v in h100["peak_p50"]]
    assert ["peak p50", *expected] in demand_tables[
        sorted(planning["accelerator"].unique()).index("h100-80gb")
    ]
    applied = forecast.read("events_applied").filter(
        pl.col("series_id").str.starts_with("accelerator=")
    )
    for event_id in applied["event_id"].unique().to_list():
        assert event_id in page.text


def test_accountability_scores_the_last_complete_quarter(report_and_html, planned_workspace):
    report, html = report_and_html
    table = report.accountability
    # Usage ends 2026-10-31: 2026Q4 is incomplete, so 2026Q3 is scored.
    assert set(table["quarter"].to_list()) == {"2026Q3"}
    usage = planned_workspace.read_table("usage_daily").filter(
        pl.col("date").is_between(datetime(2026, 7, 1).date(), quarter_end("2026Q3"))
    )
    actual = usage.group_by("accelerator").agg(
        ((pl.col("chip_hours_used") + pl.col("chip_hours_queued")).sum() / 24 / 92).alias("a")
    )
    merged = table.join(actual, on="accelerator")
    assert merged.height == table.height > 0
    assert (merged["actual_mean_chips"] - merged["a"]).abs().max() < 1e-6
    assert (table["error_chips"] == table["forecast_mean_chips"] - table["actual_mean_chips"]).all()
    rows = ReportPage(html).tables["accountability-table"][1:]
    assert [r[0] for r in rows] == table["accelerator"].to_list()
    assert "made for this report from the usage up to 2026-06-30" in report.accountability_note


def test_same_runs_and_template_give_the_same_report(planned_workspace, report_and_html):
    report, html = report_and_html
    again = build_quarterly(
        planned_workspace,
        "2027Q1",
        template_sha256=template_sha256(),
        generated_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    second = render_html(again)
    assert again.manifest_sha256 == report.manifest_sha256
    assert second != html  # the timestamp differs ...
    stamp = re.compile(r'<span id="generated-at">[^<]*</span>')
    assert stamp.sub("", second) == stamp.sub("", html)  # ... and nothing else


def test_a_team_named_like_markup_is_text(planned_workspace, tmp_path):
    target = tmp_path / "workspace"
    shutil.copytree(planned_workspace.root, target)
    ws = Workspace(target)
    for table in ("allocations", "usage_daily"):
        frame = ws.read_table(table)
        ws.write_table(table, frame.with_columns(pl.col("team").replace("speech", SCRIPT_TEAM)))
    result = invoke("reclaim", "-w", str(target), "--all")
    assert result.exit_code == 0, result.output
    report = build_quarterly(ws, "2027Q1")
    assert SCRIPT_TEAM in report.reclaim["team"].to_list()
    html = render_html(report)
    assert SCRIPT_TEAM not in html  # never as markup ...
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    page = ReportPage(html)
    assert SCRIPT_TEAM in page.text  # ... but shown as text
    assert not any("alert(1)</script>" in s for s in page.scripts)


def test_the_next_report_says_what_changed_and_why(planned_workspace, tmp_path):
    target = tmp_path / "workspace"
    shutil.copytree(planned_workspace.root, target)
    ws = Workspace(target)
    first = build_quarterly(ws, "2027Q1")
    from workbench.cli_report import write_quarterly

    first_id, _ = write_quarterly(ws, "2027Q1", pdf=False)
    # The same plan again is a re-render, not a new report to compare with.
    assert build_quarterly(ws, "2027Q1").inputs["previous report"] is None
    assert first.changes_note.startswith("First report")
    # A new plan under a tight power limit in us-central1, and a price change.
    book = ws.read_table("price_book")
    ws.write_table(
        "price_book",
        book.with_columns(
            pl.when(pl.col("accelerator") == "l4-24gb")
            .then(pl.col("on_demand_usd_per_hour") * 1.1)
            .otherwise(pl.col("on_demand_usd_per_hour"))
            .alias("on_demand_usd_per_hour")
        ),
    )
    result = invoke(
        "plan", "-w", str(target), "--power-mw", "us-central1=5", "--method", "lp_round"
    )
    assert result.exit_code == 0, result.output
    second = build_quarterly(ws, "2027Q1")
    assert second.inputs["previous report"] == first_id
    assert second.changes_plan.height > 0
    assert second.changes_plan["cause"].str.contains("plan settings changed: power_mw").any()
    assert set(second.changes_prices["accelerator"].to_list()) == {"l4-24gb"}
    assert second.changes_demand["change_chips"].abs().max() == 0  # same forecast run
    page = ReportPage(render_html(second))
    assert "changes-plan" in page.tables and "changes-prices" in page.tables
    assert page.tables["limits-table"][1][0] == "power"


@pytest.mark.parametrize("text", ["2027Q1", "2027q1", " 2027-Q1 "])
def test_quarters_parse(text):
    assert parse_quarter(text) == "2027Q1"


def test_each_accelerator_fan_chart_wears_its_app_colour(planned_workspace, report_and_html):
    from workbench.palette import accelerator_colors, rgba

    report, _ = report_and_html
    fleet = set(planned_workspace.read_table("sku_catalog")["accelerator"].to_list())
    fleet |= set(planned_workspace.read_table("usage_daily")["accelerator"].to_list())
    assert set(report.fleet_accelerators) == fleet
    expected = accelerator_colors(fleet)  # as the app's pages colour them
    fans = {k.removeprefix("fan-"): f for k, f in build_figures(report).items() if "fan-" in k}
    assert fans
    for accelerator, figure in fans.items():
        traces = {trace.name: trace for trace in figure.data}
        assert traces["median"].line.color == expected[accelerator]
        assert traces["90% band"].fillcolor == rgba(expected[accelerator], 0.15)
        assert traces["history"].line.color != expected[accelerator]
