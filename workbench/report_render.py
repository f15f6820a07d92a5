"""Render a :class:`~workbench.report_quarterly.QuarterlyReport` as HTML and PDF.

One Jinja2 template (``templates/quarterly.html.j2``, autoescaped) gives two variants:

* ``interactive``: one self-contained HTML file, plotly.js inlined once, every chart a live
  plotly figure; it opens offline.
* ``print``: the same page with each chart a static SVG image (all rendered in one kaleido
  browser session), A4 pages with the run ids, the manifest hash and "Page n of m" in the
  margin of every page. Headless Chromium prints it to PDF (:func:`print_pdf`).

Invariants: the same report gives byte-identical HTML (chart ids are fixed, tables are
sorted), so two renders differ only in ``generated_at``; text from the data is escaped.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import polars as pl
from markupsafe import Markup

from workbench.errors import WorkbenchError
from workbench.money import format_usd
from workbench.palette import accelerator_colors, rgba, with_accelerator
from workbench.report_quarterly import QuarterlyReport

__all__ = [
    "TEMPLATE_NAME",
    "build_figures",
    "chromium_path",
    "print_pdf",
    "render_html",
    "static_images",
    "template_sha256",
]

TEMPLATE_NAME = "quarterly.html.j2"
_COLORS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
_CHART_WIDTH, _CHART_HEIGHT = 960, 360


def _template_text() -> str:
    return (resources.files("workbench") / "templates" / TEMPLATE_NAME).read_text("utf-8")


def template_sha256() -> str:
    """SHA-256 of the report template: part of every report's manifest hash."""
    return hashlib.sha256(_template_text().encode()).hexdigest()


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------
def _layout(figure: go.Figure, title: str, y_title: str) -> go.Figure:
    figure.update_layout(
        title={"text": title, "font": {"size": 14}},
        template="plotly_white",
        width=_CHART_WIDTH,
        height=_CHART_HEIGHT,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
        yaxis_title=y_title,
        legend={"orientation": "h", "y": -0.15},
        font={"family": "DejaVu Sans, Arial, sans-serif", "size": 11},
    )
    return figure


def _fan_figure(
    fan: pl.DataFrame, events: pl.DataFrame, accelerator: str, color: str | None
) -> go.Figure:
    # The forecast wears the accelerator's colour, as in the app (history and events step
    # aside to blue when they would wear the same).
    colors = with_accelerator(
        {"forecast": _COLORS[0], "history": "#000000", "event": _COLORS[3]}, "forecast", color
    )
    rows = fan.filter(pl.col("accelerator") == accelerator)
    past = rows.filter(pl.col("actual").is_not_null())
    ahead = rows.filter(pl.col("p50").is_not_null())
    figure = go.Figure()
    days = ahead["ds"].to_list()
    for low, high, alpha, name in (("p05", "p95", 0.15, "90% band"), ("p25", "p75", 0.3, "50%")):
        figure.add_trace(
            go.Scatter(
                x=days + days[::-1],
                y=ahead[high].to_list() + ahead[low].to_list()[::-1],
                fill="toself",
                fillcolor=rgba(colors["forecast"], alpha),
                line={"width": 0},
                name=name,
                hoverinfo="skip",
            )
        )
    figure.add_trace(
        go.Scatter(
            x=past["ds"].to_list(),
            y=past["actual"].to_list(),
            name="history",
            line={"color": colors["history"], "width": 1},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=days, y=ahead["p50"].to_list(), name="median", line={"color": colors["forecast"]}
        )
    )
    for event in events.filter(pl.col("accelerator") == accelerator).iter_rows(named=True):
        figure.add_vline(
            x=event["start"], line={"dash": "dot", "color": colors["event"], "width": 1}
        )
        figure.add_annotation(
            x=event["start"],
            y=1.0,
            yref="paper",
            text=str(event["event_id"]),
            showarrow=False,
            font={"size": 9, "color": colors["event"]},
            yanchor="bottom",
        )
    return _layout(figure, f"{accelerator}: daily demand", "chips")


def _budget_figure(budget: pl.DataFrame) -> go.Figure:
    figure = go.Figure(
        go.Bar(
            x=budget["quarter"].to_list(),
            y=budget["capex_usd"].to_list(),
            name="capex of purchases",
            marker_color=_COLORS[0],
        )
    )
    if budget["budget_usd"].drop_nulls().len():
        figure.add_trace(
            go.Scatter(
                x=budget["quarter"].to_list(),
                y=budget["budget_usd"].to_list(),
                name="budget",
                mode="lines+markers",
                line={"color": _COLORS[3], "dash": "dash"},
            )
        )
    return _layout(figure, "Capex per quarter of order", "USD")


def _power_figure(power: pl.DataFrame) -> go.Figure:
    figure = go.Figure()
    for index, (region, rows) in enumerate(power.group_by("region", maintain_order=True)):
        color = _COLORS[index % len(_COLORS)]
        figure.add_trace(
            go.Scatter(
                x=rows["quarter"].to_list(),
                y=rows["power_mw"].to_list(),
                name=str(region[0]),
                line={"color": color},
            )
        )
        if rows["limit_mw"].drop_nulls().len():
            figure.add_trace(
                go.Scatter(
                    x=rows["quarter"].to_list(),
                    y=rows["limit_mw"].to_list(),
                    name=f"{region[0]} limit",
                    line={"color": color, "dash": "dash"},
                )
            )
    return _layout(figure, "Power of owned chips in service per region", "MW")


def _reclaim_figure(reclaim: pl.DataFrame) -> go.Figure:
    top = reclaim.head(12).reverse()
    labels = [f"{r['team']} · {r['accelerator']} {r['region']}" for r in top.iter_rows(named=True)]
    figure = go.Figure(
        go.Bar(
            x=[float(v) for v in top["annual_savings_usd"].to_list()],
            y=labels,
            orientation="h",
            marker_color=_COLORS[2],
            name="savings a year",
        )
    )
    figure = _layout(figure, "Reclaim: savings a year, largest first", "")
    figure.update_layout(margin={"l": 300}, xaxis_title="USD a year")
    return figure


def _accountability_figure(table: pl.DataFrame) -> go.Figure:
    accelerators = table["accelerator"].to_list()
    forecast = table["forecast_mean_chips"].to_numpy()
    figure = go.Figure(
        [
            go.Bar(
                x=accelerators,
                y=forecast.tolist(),
                name="forecast (5-95%)",
                marker_color=_COLORS[0],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (table["forecast_p95_chips"].to_numpy() - forecast).tolist(),
                    "arrayminus": (forecast - table["forecast_p05_chips"].to_numpy()).tolist(),
                },
            ),
            go.Bar(
                x=accelerators,
                y=table["actual_mean_chips"].to_list(),
                name="actual",
                marker_color=_COLORS[1],
            ),
        ]
    )
    quarter = table["quarter"][0] if table.height else ""
    return _layout(figure, f"{quarter}: average daily demand, forecast vs actual", "chips")


def build_figures(report: QuarterlyReport) -> dict[str, go.Figure]:
    """Every chart of the report by its id, in document order."""
    accelerators = _accelerators(report)
    colors = accelerator_colors([*report.fleet_accelerators, *accelerators])
    figures = {
        f"fan-{accelerator}": _fan_figure(
            report.fan, report.events, accelerator, colors[accelerator]
        )
        for accelerator in accelerators
    }
    figures["budget"] = _budget_figure(report.budget)
    figures["power"] = _power_figure(report.power)
    if report.reclaim.height:
        figures["reclaim"] = _reclaim_figure(report.reclaim)
    if report.accountability.height:
        figures["accountability"] = _accountability_figure(report.accountability)
    return figures


def _accelerators(report: QuarterlyReport) -> list[str]:
    return sorted(set(report.demand["accelerator"].to_list()))


# --------------------------------------------------------------------------------------
# Static images (print variant)
# --------------------------------------------------------------------------------------
def chromium_path() -> str:
    """The Chromium to print and render with: ``chromium`` (Debian) or Chrome on the PATH."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise WorkbenchError(
        "no Chromium found on the PATH",
        field="chromium",
        fix="install it (Debian/Ubuntu: 'apt-get install chromium')",
    )


def static_images(figures: Mapping[str, go.Figure]) -> dict[str, bytes]:
    """SVG of every figure, rendered in one kaleido browser session (a start costs seconds)."""
    import kaleido

    names = list(figures)

    async def render() -> list[bytes]:
        async with kaleido.Kaleido(n=1) as session:
            images: list[bytes] = []
            for name in names:
                image = await session.calc_fig(
                    figures[name],
                    opts={"format": "svg", "width": _CHART_WIDTH, "height": _CHART_HEIGHT},
                )
                images.append(bytes(image))
            return images

    try:
        rendered = asyncio.run(render())
    except Exception as exc:
        raise WorkbenchError(
            f"kaleido could not render the charts: {type(exc).__name__}: {exc}",
            field="kaleido",
            fix="check that Chromium starts headless ('chromium --headless --version'), "
            "or set BROWSER_PATH to a Chrome/Chromium binary",
        ) from exc
    return dict(zip(names, rendered, strict=True))


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------
def _chips(value: Any) -> str:
    return "" if value is None else f"{float(value):,.0f}"


def _signed(value: Any) -> str:
    return "" if value is None else f"{float(value):+,.0f}"


def _pct(value: Any) -> str:
    return "" if value is None else f"{float(value):.0%}"


def _signed_pct(value: Any) -> str:
    return "" if value is None else f"{float(value):+.1%}"


def _usd(value: Any) -> str:
    return "" if value is None else format_usd(round(float(value) * 100))


def _usd_cents(value: Any) -> str:
    return "" if value is None else format_usd(int(value))


def _rate(value: Any) -> str:
    return "" if value is None else f"${float(value):,.3f}"


def _mw(value: Any) -> str:
    return "" if value is None else f"{float(value):,.2f}"


def _amount(value: Any, unit: str) -> str:
    return _usd(value) if unit == "USD" else f"{_mw(value)} MW"


def _css_string(value: str) -> str:
    """Text safe inside a double-quoted CSS string (the page footer)."""
    return "".join(ch if ch.isalnum() or ch in " -_.:·,()/" else f"\\{ord(ch):x} " for ch in value)


_FILTERS: dict[str, Callable[..., str]] = {
    "chips": _chips,
    "signed": _signed,
    "pct": _pct,
    "signed_pct": _signed_pct,
    "usd": _usd,
    "usd_cents": _usd_cents,
    "rate": _rate,
    "mw": _mw,
    "amount": _amount,
    "css_string": _css_string,
}
"""Number formats of the report; tests format the run's tables with the same functions."""


def footer_text(report: QuarterlyReport) -> str:
    """Run ids and the manifest hash, printed at the foot of every page."""
    runs = " · ".join(f"{name} {run_id}" for name, run_id in report.inputs.items() if run_id)
    return f"Quarterly report {report.quarter} · {runs} · manifest SHA-256 {report.manifest_sha256}"


def _environment() -> Any:
    from jinja2 import Environment

    environment = Environment(autoescape=True, keep_trailing_newline=True)
    environment.filters.update(_FILTERS)
    return environment


def _chart_markup(
    figures: Mapping[str, go.Figure], variant: str, images: Mapping[str, bytes] | None
) -> dict[str, Markup]:
    charts: dict[str, Markup] = {}
    for name, figure in figures.items():
        if variant == "print":
            if images is None or name not in images:
                raise ValueError(f"the print variant needs the static image of chart '{name}'")
            encoded = base64.b64encode(images[name]).decode("ascii")
            charts[name] = Markup('<img alt="{}" src="data:image/svg+xml;base64,{}">').format(
                name, encoded
            )
        else:
            # plotly writes the figure as JSON inside a <script>, with "</" escaped.
            charts[name] = Markup(
                figure.to_html(
                    full_html=False,
                    include_plotlyjs=False,
                    div_id=f"chart-{name}",
                    config={"displaylogo": False, "responsive": True},
                )
            )
    return charts


def render_html(
    report: QuarterlyReport,
    *,
    variant: str = "interactive",
    figures: Mapping[str, go.Figure] | None = None,
    images: Mapping[str, bytes] | None = None,
) -> str:
    """The report as one HTML document: ``interactive`` or ``print`` (needs ``images``)."""
    if variant not in ("interactive", "print"):
        raise ValueError(f"unknown variant '{variant}': use interactive or print")
    figures = figures if figures is not None else build_figures(report)
    plotly_js = ""
    if variant == "interactive":
        from plotly.offline import get_plotlyjs

        plotly_js = get_plotlyjs()
    template = _environment().from_string(_template_text())
    plan_rows = report.plan.to_dicts()
    power_by = [
        (str(region[0]), rows.sort("quarter").to_dicts())
        for region, rows in report.power.group_by("region", maintain_order=True)
    ]
    reclaim_rows = report.reclaim.to_dicts() if report.reclaim.height else []
    return str(
        template.render(
            report=report,
            variant=variant,
            plotly_js=Markup(plotly_js),
            charts=_chart_markup(figures, variant, images),
            accelerators=_accelerators(report),
            demand_by={
                str(key[0]): rows.sort("quarter").to_dicts()
                for key, rows in report.demand.group_by("accelerator")
            },
            events_by={
                str(key[0]): rows.to_dicts() for key, rows in report.events.group_by("accelerator")
            },
            plan_rows=plan_rows,
            decision_rows=report.plan.filter(
                (pl.col("quarter") == report.quarter)
                & (
                    (pl.col("buy_chips") > 0)
                    | (pl.col("commit_1y_chips") + pl.col("commit_3y_chips") >= 0.5)
                    | (pl.col("burst_mean") >= 0.5)
                    | (pl.col("shortfall_probability") > 0)
                )
            ).to_dicts(),
            plan_total={
                "buy_chips": int(report.plan["buy_chips"].sum()),
                "cost_cents": int(report.plan["cost_cents"].sum()),
            },
            budget_rows=report.budget.to_dicts(),
            quarters=sorted(set(report.power["quarter"].to_list())),
            power_by=power_by,
            limit_rows=report.limits.to_dicts(),
            reclaim_rows=reclaim_rows,
            reclaim_total={
                "chips": float(report.reclaim["reclaimable_chips"].sum()) if reclaim_rows else 0,
                "savings": report.reclaim["annual_savings_usd"].sum() if reclaim_rows else 0,
            },
            accountability_rows=report.accountability.to_dicts()
            if report.accountability.height
            else [],
            changes_demand=report.changes_demand.to_dicts(),
            changes_plan=report.changes_plan.to_dicts(),
            changes_prices=report.changes_prices.to_dicts(),
            footer_text=footer_text(report),
        )
    )


# --------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------
def print_pdf(html_path: Path, pdf_path: Path, *, timeout_s: float = 120.0) -> None:
    """Print an HTML file to PDF with headless Chromium (its own fresh profile)."""
    with tempfile.TemporaryDirectory(prefix="workbench-chromium-") as profile:
        command = [
            chromium_path(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-extensions",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri(),
        ]
        # Its own process group, so a timeout ends Chromium's helper processes too.
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise WorkbenchError(
                f"Chromium did not print the PDF within {timeout_s:.0f} s",
                file=html_path,
                fix="try again on a less loaded machine, or open the HTML and print it",
            ) from exc
    if process.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        raise WorkbenchError(
            f"Chromium could not print the PDF: {last}",
            file=html_path,
            fix="check that 'chromium --headless --no-sandbox --print-to-pdf' works here",
        )
