"""The ``workbench reclaim`` command (registered in :mod:`workbench.cli`).

Reads the workspace's usage, allocations, events, price book and the latest forecast run,
prints the reclaim recommendations ranked by annual savings, and writes them as a
``reclaim`` run; the numbers come from :mod:`workbench.reclaim`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.reclaim import Reclaim, ReclaimSettings
    from workbench.store import RunInfo, Workspace

# polars and the reclaim and cost modules are imported where they are used, so that
# registering this command (every ``workbench`` start-up) loads none of them.

__all__ = ["ReclaimRun", "reclaim_command", "run_reclaim"]

_DEFAULT_WORKSPACE = Path(os.environ.get("WORKBENCH_WORKSPACE", "workspace"))
_WorkspaceOption = Annotated[
    Path,
    typer.Option("--workspace", "-w", help="Workspace folder.", envvar="WORKBENCH_WORKSPACE"),
]


def _console() -> Any:
    # The CLI's console (wide when piped); imported here because workbench.cli imports us.
    from workbench.cli import console

    return console


def _parse_pool(text: str) -> tuple[str, str]:
    accelerator, _, region = text.partition("/")
    if not accelerator.strip() or not region.strip():
        raise WorkbenchError(
            f"'{text}' is not a pool",
            field="--pool",
            fix="write ACCELERATOR/REGION, e.g. h100-80gb/us-central1",
        )
    return accelerator.strip(), region.strip()


def _latest_forecast(ws: Workspace, run_id: str | None) -> RunInfo | None:
    if run_id is not None:
        run = ws.run(run_id)
        if run.kind != "forecast":
            raise WorkbenchError(
                f"run {run.run_id} is a {run.kind} run, not a forecast",
                field="--forecast-run",
                fix="pick a forecast run from 'workbench runs list'",
            )
        return run
    runs = [r for r in ws.runs("forecast") if (r.path / "forecast.parquet").exists()]
    return runs[-1] if runs else None


def _chips(value: Any) -> str:
    return "" if value is None else f"{value:,.0f}"


def _risk(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "<=1%" if value <= 0.01 + 1e-9 else f"{value:.0%}"


def _money(value: Any) -> str:
    from workbench.money import format_usd

    return format_usd(int(value * 100))


def _print(
    console: Any, result: Reclaim, settings: ReclaimSettings, source: str, *, every_row: bool
) -> None:
    import polars as pl

    from workbench.cli_costs import _table

    table = result.table
    shown = table if every_row else table.filter((pl.col("reclaimable_chips") > 0) | pl.col("idle"))
    labels = [
        "#",
        "team",
        "pool",
        "allocated",
        "used p50",
        "used p95",
        "forecast\np90",
        "event\nchips",
        "recom-\nmended",
        "reclaim-\nable",
        "savings\n$/year",
        "risk",
        "idle",
    ]
    rows = [
        [
            str(row["rank"]),
            row["team"],
            row["pool"],
            _chips(row["allocated_chips"]),
            _chips(row["used_p50_chips"]),
            _chips(row["used_p95_chips"]),
            _chips(row["forecast_p90_chips"])
            + ("" if row["forecast_source"] == "forecast" else "*"),
            _chips(row["event_chips"]) if row["event_chips"] else "",
            _chips(row["recommended_chips"]),
            _chips(row["reclaimable_chips"]),
            _money(row["annual_savings_usd"]),
            _risk(row["risk"]),
            f"{row['unused_days']}d" if row["idle"] else "",
        ]
        for row in shown.iter_rows(named=True)
    ]
    total_savings = table["annual_savings_usd"].sum() if table.height else 0
    total = [
        "",
        f"all {table.height}",
        "",
        _chips(table["allocated_chips"].sum()),
        "",
        "",
        "",
        "",
        _chips(table["recommended_chips"].sum()),
        _chips(table["reclaimable_chips"].sum()),
        _money(total_savings),
        "",
        str(table["idle"].sum()) if table.height else "0",
    ]
    title = (
        f"Reclaim as of {result.as_of}: used = daily peak chips {result.lookback_start} to "
        f"{result.as_of}; forecast and risk over {result.window_start} to {result.window_end}"
    )
    console.print(_table(title, labels, rows, 3, total))
    if shown.height < table.height:
        console.print(
            f"{table.height - shown.height} more team-pool(s) have nothing to reclaim "
            "(recommended >= allocated) and are not idle; the total row and the run hold "
            "every row (--all prints them)."
        )
    console.print(
        f"recommended = max(used p95, forecast p90, used p50 + event chips) x "
        f"{1 + settings.headroom:g}, rounded up to {settings.granularity} chips; reclaimable = "
        "allocated - recommended; savings = reclaimable x 8,760 h x owned $/chip-hour "
        f"(workbench tco); risk = max over days of P(demand > recommended); idle: nothing "
        f"run for {settings.idle_days}+ days. Forecast: {source}."
    )
    if (table["forecast_source"] != "forecast").any():
        console.print("* forecast p90 is the fallback used p95 x recent growth (no team forecast).")
    for note in result.notes:
        console.print(f"note: {note}")


def _write_run(
    ws: Workspace,
    result: Reclaim,
    settings: ReclaimSettings,
    forecast_run: RunInfo | None,
    filters: dict[str, str | None],
) -> str:
    config = {
        "lookback_days": settings.lookback_days,
        "headroom": settings.headroom,
        "granularity": settings.granularity,
        "horizon_days": settings.horizon_days,
        "idle_days": settings.idle_days,
        "event_probability": settings.event_probability,
        "growth_cap": settings.growth_cap,
        "as_of": str(result.as_of),
        "window": [str(result.window_start), str(result.window_end)],
        "forecast_run": forecast_run.run_id if forecast_run else None,
        "used_measure": "daily peak_chips summed over workloads",
        **filters,
    }
    with ws.writer_lock(), ws.new_run("reclaim", config=config) as run:
        for name in ("usage_daily", "allocations", "events", "price_book", "sku_catalog"):
            if ws.has_table(name):
                run.add_input(ws.table_path(name))
        if forecast_run is not None:
            run.add_input(forecast_run.path / "forecast.parquet")
        run.write("reclaim", result.table)
        run.manifest["notes"] = list(result.notes)
        return run.run_id


@dataclass(frozen=True)
class ReclaimRun:
    """A committed ``reclaim`` run: its id, the recommendations and the forecast run used."""

    run_id: str
    result: Reclaim
    forecast: RunInfo | None


def run_reclaim(
    ws: Workspace,
    settings: ReclaimSettings,
    *,
    team: str | None = None,
    pool: str | None = None,
    forecast_run: str | None = None,
) -> ReclaimRun:
    """Reclaim recommendations committed as a ``reclaim`` run, printing nothing.

    The same path as ``workbench reclaim``: usage, allocations (of ``team`` and ``pool``
    if given), events, owned costs and the latest forecast run (or ``forecast_run``).
    """
    import polars as pl

    from workbench.reclaim import reclaim
    from workbench.tco import owned_cost

    for name in ("usage_daily", "allocations", "price_book", "sku_catalog"):
        if not ws.has_table(name):
            raise WorkbenchError(
                f"the workspace has no {name} table",
                file=ws.root,
                fix="ingest it first (workbench demo ingests the sample fleet)",
            )
    usage = ws.read_table("usage_daily")
    allocations = ws.read_table("allocations")
    if team is not None:
        known = sorted(allocations["team"].unique().to_list())
        if team not in known:
            raise WorkbenchError(
                f"no allocation for team '{team}'",
                field="--team",
                fix=f"use one of {', '.join(known)}",
            )
        allocations = allocations.filter(pl.col("team") == team)
    if pool is not None:
        accelerator, region = _parse_pool(pool)
        allocations = allocations.filter(
            (pl.col("accelerator") == accelerator) & (pl.col("region") == region)
        )
        if allocations.height == 0:
            raise WorkbenchError(
                f"no allocation in pool '{pool}'" + (f" for team '{team}'" if team else ""),
                field="--pool",
                fix="see 'workbench sql \"select distinct accelerator, region from allocations\"'",
            )
    run = _latest_forecast(ws, forecast_run)
    forecast = run.read("forecast") if run is not None else None
    pools = allocations.select("accelerator", "region").unique().rows()
    rates = owned_cost(ws.read_table("price_book"), ws.read_table("sku_catalog"), pools=pools)
    events = ws.read_table("events") if ws.has_table("events") else None
    result = reclaim(usage, allocations, rates, settings, forecast=forecast, events=events)
    run_id = _write_run(ws, result, settings, run, {"team": team, "pool": pool})
    return ReclaimRun(run_id=run_id, result=result, forecast=run)


def reclaim_command(
    lookback: Annotated[int, typer.Option(help="Days of usage the used p50/p95 cover.")] = 90,
    headroom: Annotated[
        float, typer.Option(help="Fraction added on top of the need before rounding.")
    ] = 0.1,
    granularity: Annotated[
        int, typer.Option(help="Round recommendations up to a multiple of this many chips.")
    ] = 8,
    team: Annotated[str | None, typer.Option(help="Only this team.")] = None,
    pool: Annotated[str | None, typer.Option(help="Only this pool, ACCELERATOR/REGION.")] = None,
    forecast_run: Annotated[
        str | None,
        typer.Option("--forecast-run", help="Forecast run id (default: the latest)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Also write the table to FILE (.csv or .parquet)."),
    ] = None,
    every_row: Annotated[
        bool,
        typer.Option(
            "--all", help="Print every team-pool, not only those with chips to reclaim or idle."
        ),
    ] = False,
    workspace: _WorkspaceOption = _DEFAULT_WORKSPACE,
) -> None:
    """Allocated chips teams do not need: recommended allocation, savings and risk."""
    from workbench.reclaim import ReclaimSettings
    from workbench.store import Workspace

    console = _console()
    settings = ReclaimSettings(lookback_days=lookback, headroom=headroom, granularity=granularity)
    ws = Workspace(workspace).require()
    made = run_reclaim(ws, settings, team=team, pool=pool, forecast_run=forecast_run)
    result, run, run_id = made.result, made.forecast, made.run_id
    source = (
        f"run {run.run_id}, team level" if run is not None else "none (used p95 x recent growth)"
    )
    _print(console, result, settings, source, every_row=every_row or bool(team or pool))
    console.print(f"Run {run_id} committed: reclaim ({result.table.height} rows).")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".parquet":
            result.table.write_parquet(out)
        else:
            result.table.write_csv(out)
        console.print(f"Wrote {out}.")
