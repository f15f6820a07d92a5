"""The ``workbench`` command line.

Every command takes ``--workspace`` (default ``./workspace`` or ``$WORKBENCH_WORKSPACE``).
Problems print as one line naming the file, line and field, without a traceback unless
``--debug`` is given.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from workbench.cli_costs import costs_command, tco_command
from workbench.cli_defaults import INGEST_KINDS
from workbench.cli_forecast import backtest_command, forecast_command
from workbench.cli_plan import plan_command, replay_command
from workbench.cli_reclaim import reclaim_command
from workbench.cli_report import report_app
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.store import Workspace

# Start-up (``workbench --help``, or any command) imports only typer, rich and these light
# modules: polars, the workspace store, ingest and every engine behind the commands are
# imported inside the commands that use them (tests/test_cli_startup.py checks it).

__all__ = ["app", "main"]

DEFAULT_WORKSPACE = Path(os.environ.get("WORKBENCH_WORKSPACE", "workspace"))
REPO_ROOT = Path(__file__).resolve().parent.parent

app = typer.Typer(
    name="workbench",
    help=(
        "Fleet Workbench: usage, forecasts, procurement and costs for ML accelerator fleets.\n\n"
        "Start with [bold]workbench demo[/bold] (ingests the bundled sample fleet and opens the "
        "app), or step by step: [bold]workbench init[/bold], [bold]workbench ingest catalog "
        "FILE[/bold], [bold]workbench ingest jobs FILE[/bold], [bold]workbench app[/bold]."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
runs_app = typer.Typer(
    help="List and inspect runs (ingests, forecasts, plans).", no_args_is_help=True
)
quarantine_app = typer.Typer(
    help="Rows that failed validation, with their reasons.", no_args_is_help=True
)
app.add_typer(runs_app, name="runs")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(report_app, name="report")
app.command("costs")(costs_command)
app.command("tco")(tco_command)
app.command("forecast")(forecast_command)
app.command("backtest")(backtest_command)
app.command("plan")(plan_command)
app.command("replay")(replay_command)
app.command("reclaim")(reclaim_command)

# Piped output gets a wide console so tables are not squeezed to 80 columns.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)

WorkspaceOption = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder.",
        envvar="WORKBENCH_WORKSPACE",
        show_default=True,
    ),
]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Handle options shared by every command."""
    del debug  # read by main() before parsing, so errors during parsing obey it too


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


@app.command("sample-fleet")
def sample_fleet(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write the fleet's files into.")
    ] = Path("data_samples"),
    scale: Annotated[
        str, typer.Option(help="small (committed, ~140k jobs), medium, or large (~10M jobs).")
    ] = "small",
    seed: Annotated[
        int, typer.Option(help="Random seed: the same seed gives identical files.")
    ] = 7,
) -> None:
    """Generate a realistic sample fleet and its raw exports (with planted defects and truth)."""
    from workbench.sample_fleet import generate_sample_fleet

    if scale not in ("small", "medium", "large"):
        raise WorkbenchError(
            f"unknown scale '{scale}'", field="--scale", fix="use small, medium or large"
        )
    with _progress() as progress:
        progress.add_task(f"generating the {scale} sample fleet (seed {seed})", total=None)
        summary = generate_sample_fleet(out, scale=scale, seed=seed)
    console.print(
        f"Wrote the {scale} sample fleet to {out}: {summary['accelerators']} accelerators, "
        f"{summary['pools']} pools, {summary['teams']} teams, {summary['series']} series, "
        f"{summary['jobs']:,} jobs, {summary['job_chip_hours']:,.0f} chip-hours."
    )


@app.command()
def init(workspace: WorkspaceOption = DEFAULT_WORKSPACE) -> None:
    """Create an empty workspace folder (safe to run again)."""
    from workbench.store import Workspace

    Workspace(workspace).init()
    console.print(f"Workspace ready at {workspace}")


@app.command(
    help="Ingest raw files of one KIND into the workspace.\n\nKINDS:\n\n"
    + "\n\n".join(f"  {k}: {v}" for k, v in INGEST_KINDS.items())
)
def ingest(
    kind: Annotated[str, typer.Argument(help="What the files are (see KINDS).")],
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Files to ingest. jobs: also folders (hive date=... partitions), glob "
            "patterns and fsspec URLs (file://, memory://, s3://...), read as parts of one export."
        ),
    ],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    strict: Annotated[
        bool, typer.Option(help="Fail (and write nothing) if any row is quarantined.")
    ] = False,
    column_map: Annotated[
        str | None,
        typer.Option(
            "--map",
            help="jobs: column map for another scheduler's layout, a TOML file or a preset "
            "(generic, slurm-sacct, k8s-pods).",
        ),
    ] = None,
    export_time: Annotated[
        str | None,
        typer.Option(help="jobs: when the export was taken (ISO 8601); running jobs are cut here."),
    ] = None,
    grain: Annotated[
        str, typer.Option(help="jobs: 'day' -> usage_daily, 'hour' -> usage_hourly.")
    ] = "day",
    tag_key: Annotated[str, typer.Option(help="billing: the tag that names the team.")] = "team",
    region: Annotated[
        str | None,
        typer.Option(help="metrics and mapped jobs: the region, where the file carries none."),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="jobs: read and split the files on this Dask scheduler (tcp://HOST:8786).",
            envvar="WORKBENCH_DASK_SCHEDULER",
        ),
    ] = None,
) -> None:
    import polars as pl

    from workbench.ingest import IngestOptions
    from workbench.ingest import ingest as run_ingest
    from workbench.store import Workspace

    partitioned = kind == "jobs" and (
        scheduler is not None
        or any(
            "://" in given or any(c in given for c in "*?[") or Path(given).is_dir()
            for given in paths
        )
    )
    for path in [] if partitioned else [Path(given) for given in paths]:
        if not path.is_file():
            problem = "is a folder, not a file" if path.is_dir() else "file not found"
            raise WorkbenchError(problem, file=path, fix="check the path and try again")
    if grain not in ("day", "hour"):
        raise WorkbenchError(f"unknown grain '{grain}'", field="--grain", fix="use day or hour")
    options = IngestOptions(
        column_map=column_map,
        export_time=_parse_instant(export_time, "--export-time") if export_time else None,
        grain=grain,  # type: ignore[arg-type]
        tag_key=tag_key,
        region=region,
    )
    ws = Workspace(workspace)
    if not ws.exists():
        ws.init()
    with _progress() as progress:
        task = progress.add_task(f"ingesting {kind}", total=len(paths) + 1)

        def step(message: str) -> None:
            progress.update(
                task, description=message, advance=0 if message.startswith("reading") else 1
            )
            if message.startswith("reading"):
                progress.advance(task)

        if partitioned:
            from workbench.distributed_ingest import ingest_partitioned
            from workbench.executors import DaskExecutor

            executor = DaskExecutor(scheduler) if scheduler else None
            try:
                report = ingest_partitioned(
                    ws, paths, executor=executor, options=options, strict=strict, progress=step
                )
            finally:
                if executor is not None:
                    executor.close()
        else:
            files = [Path(given) for given in paths]
            report = run_ingest(ws, kind, files, strict=strict, progress=step, options=options)
    _print_reconciliation(report.files)
    quarantine = report.quarantine
    if quarantine.height:
        console.print(
            f"[yellow]{quarantine.height:,} row(s) quarantined[/yellow]; first of each reason:"
        )
        # One example per kind of problem: the reason with its values blanked out.
        shown = quarantine.with_columns(
            (
                pl.col("field").fill_null("")
                + pl.col("reason")
                .str.replace_all(r"'[^']*'", "'…'")
                .str.replace_all(r"\d[\d:T+.Z-]*", "#")
            ).alias("__kind")
        ).unique("__kind", keep="first", maintain_order=True)
        for row in shown.head(12).iter_rows(named=True):
            file = row["source"].split(":", 1)[-1]
            console.print(f"  {file}, line {row['line']}, field '{row['field']}': {row['reason']}")
        console.print("  (all of them: workbench quarantine show)")
    if report.run_id:
        console.print(f"Run {report.run_id} committed.")
    else:
        console.print("Nothing changed: every file was already ingested with the same bytes.")


def _parse_instant(text: str, option: str) -> datetime:
    """An ISO 8601 instant; without an offset it is UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise WorkbenchError(
            f"'{text}' is not an ISO 8601 time", field=option, fix="write e.g. 2026-11-01T00:00:00Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _one_line_reconciliation(file: Any) -> str:
    """``read = loaded + quarantined + duplicates; chip-hours in = out``, checked."""
    if file.skipped:
        return "unchanged since the last ingest"
    rec = file.reconciliation
    text = (
        f"{rec['rows_read']:,} read = {rec['rows_loaded']:,} loaded + "
        f"{rec['rows_quarantined']:,} quarantined + {rec['duplicates_dropped']:,} duplicates"
    )
    if rec.get("rows_excluded"):
        text += f" + {rec['rows_excluded']:,} excluded by the map"
    totals = _totals_text(rec)
    if totals:
        text += f"; {totals}"
    return text + ("" if rec.get("balanced") else "  [red]NOT BALANCED[/red]")


def _totals_text(rec: dict[str, Any]) -> str:
    """``name: in -> out`` for every quantity a connector reconciles (chip-hours, USD, ...)."""
    parts = []
    for key, value_in in rec.items():
        if not key.endswith("_in") or not isinstance(value_in, int | float):
            continue
        name = key[:-3]
        value_out = rec.get(f"{name}_out")
        if isinstance(value_out, int | float):
            label = name.replace("_", " ")
            parts.append(f"{label}: {value_in:,.2f} in, {value_out:,.2f} out")
    return "; ".join(parts)


def _print_reconciliation(files: list[Any]) -> None:
    table = Table(title="Reconciliation", title_justify="left")
    for column in (
        "file",
        "rows read",
        "loaded",
        "quarantined",
        "duplicates",
        "excluded",
        "in = out",
        "balanced",
    ):
        table.add_column(column, justify="left" if column in ("file", "in = out") else "right")
    for report in files:
        rec = report.reconciliation
        if report.skipped:
            table.add_row(report.path.name, "unchanged", "", "", "", "", "", "")
            continue
        table.add_row(
            report.path.name,
            _fmt(rec.get("rows_read", "")),
            _fmt(rec.get("rows_loaded", "")),
            _fmt(rec.get("rows_quarantined", "")),
            _fmt(rec.get("duplicates_dropped", "")),
            _fmt(rec.get("rows_excluded", 0)),
            _totals_text(rec),
            _fmt(rec.get("balanced", "")),
        )
    console.print(table)


@runs_app.command("list")
def runs_list(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    kind: Annotated[
        str | None, typer.Option(help="Only runs of this kind (ingest, forecast, ...).")
    ] = None,
) -> None:
    """List committed runs, oldest first."""
    from workbench.store import Workspace

    ws = Workspace(workspace).require()
    runs = ws.runs(kind)
    if not runs:
        console.print("No runs yet.")
        return
    table = Table(title=f"Runs in {workspace}", title_justify="left")
    for column in ("run id", "kind", "started (UTC)", "seconds", "what"):
        table.add_column(column)
    for run in runs:
        config = run.manifest.get("config", {})
        what = (
            config.get("kind", "") + " " + ", ".join(Path(p).name for p in config.get("paths", []))
        )
        table.add_row(
            run.run_id,
            run.kind,
            run.started_at[:19].replace("T", " "),
            f"{run.manifest.get('timings', {}).get('total', 0):,.2f}",
            what.strip(),
        )
    console.print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="Run id, or a unique prefix of it.")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Show a run's manifest: config, inputs and their hashes, versions, timings, row counts."""
    from workbench.store import Workspace

    run = Workspace(workspace).require().run(run_id)
    console.print_json(json.dumps(run.manifest, default=str))
    console.print(f"Outputs: {', '.join(run.outputs()) or 'none'}  (folder: {run.path})")


@quarantine_app.command("show")
def quarantine_show(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
) -> None:
    """List quarantined rows: file, line, field, value and reason."""
    from workbench.store import Workspace

    frame = Workspace(workspace).require().read_table("quarantine")
    if frame.height == 0:
        console.print("No quarantined rows.")
        return
    table = Table(title=f"{frame.height:,} quarantined row(s)", title_justify="left")
    for column in ("file", "line", "field", "value", "reason"):
        table.add_column(column)
    for row in frame.head(limit).iter_rows(named=True):
        table.add_row(
            Path(row["source"].split(":", 1)[-1]).name,
            f"{row['line']:,}",
            row["field"] or "",
            row["value"] or "",
            row["reason"],
        )
    console.print(table)


@app.command()
def sql(
    query: Annotated[
        str,
        typer.Argument(
            help="SQL over the workspace tables, e.g. 'select * from usage_daily limit 5'."
        ),
    ],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Run SQL (DuckDB) over the workspace's tables and latest run outputs."""
    import polars as pl

    from workbench.store import Workspace

    frame = Workspace(workspace).require().sql(query)
    with pl.Config(tbl_rows=50, tbl_cols=20, fmt_str_lengths=60, thousands_separator=True):
        console.print(str(frame))


def _streamlit_command(workspace: Path, port: int, address: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO_ROOT / "app.py"),
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
        "--",
        "--workspace",
        str(workspace.resolve()),
    ]


@app.command("app")
def app_command(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    address: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")
    ] = "127.0.0.1",
) -> None:
    """Start the planner's app (Streamlit) on the workspace."""
    from workbench.store import Workspace

    Workspace(workspace).require()
    console.print(f"Fleet Workbench app: http://{address}:{port}  (Ctrl+C to stop)")
    env = {**os.environ, "WORKBENCH_WORKSPACE": str(workspace.resolve())}
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(_streamlit_command(workspace, port, address), check=False, env=env)


@app.command()
def demo(
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    data: Annotated[Path, typer.Option(help="Sample fleet folder to ingest.")] = REPO_ROOT
    / "data_samples",
    serve: Annotated[bool, typer.Option(help="Start the app when done.")] = True,
    forecast: Annotated[
        bool, typer.Option(help="After ingesting: forecast, then plan, reclaim and costs.")
    ] = True,
    port: Annotated[int, typer.Option(help="Port for the app.")] = 8501,
) -> None:
    """The main job on the bundled sample fleet: ingest, forecast, plan, reclaim, costs, app."""
    from workbench.ingest import ingest as run_ingest
    from workbench.store import Workspace

    ws = Workspace(workspace).init()
    if not (data / "catalog" / "sku_catalog.toml").exists():
        raise WorkbenchError(
            "no sample fleet here",
            file=data,
            fix="run 'workbench sample-fleet --out DIR' and pass --data DIR",
        )
    jobs = data / "jobs" / "jobs.csv.gz"
    if not jobs.exists():
        jobs = data / "jobs" / "jobs.csv"
    steps = [
        ("catalog", data / "catalog" / "sku_catalog.toml"),
        ("price-book", data / "catalog" / "price_book.toml"),
        ("inventory", data / "inventory" / "inventory.csv"),
        ("allocations", data / "allocations" / "allocations.csv"),
        ("orders", data / "orders" / "orders.csv"),
        ("events", data / "events" / "events.csv"),
        ("jobs", jobs),
        ("billing", data / "billing" / "focus_billing.csv"),
        ("metrics", data / "metrics" / "utilization.csv"),
        ("metrics", data / "metrics" / "dcgm_gpu_util.json"),
    ]
    with _progress() as progress:
        task = progress.add_task("ingesting the sample fleet", total=len(steps))
        for kind, path in steps:
            progress.update(task, description=f"ingesting {kind}: {path.name}")
            report = run_ingest(ws, kind, [path])
            progress.advance(task)
            for file in report.files:
                progress.console.print(
                    f"  {kind:<12} {path.name:<22} {_one_line_reconciliation(file)}"
                )
    usage = ws.read_table("usage_daily")
    console.print(
        f"Workspace {workspace}: {usage.height:,} usage rows, "
        f"{usage['chip_hours_used'].sum():,.0f} chip-hours used, "
        f"{usage['chip_hours_queued'].sum():,.0f} chip-hours queued."
    )
    if forecast:
        from workbench.cli_forecast import run_fleet_forecast
        from workbench.forecasting import ForecastSettings

        run_fleet_forecast(ws, ForecastSettings(), quiet=True)
        _demo_plan_reclaim_costs(ws)
    if serve:
        app_command(workspace=workspace, port=port, address="127.0.0.1")


def _demo_plan_reclaim_costs(ws: Workspace) -> None:
    """After the demo's forecast: the plan, reclaim and costs runs every app page reads.

    The same library paths as ``workbench plan``, ``workbench reclaim`` and ``workbench
    costs --month all --by month,team,accelerator`` with their defaults, quietly, with
    progress and one summary line each.
    """
    from workbench.cli_costs import run_costs
    from workbench.cli_plan import run_plan
    from workbench.cli_reclaim import run_reclaim
    from workbench.money import format_usd
    from workbench.planning_inputs import InputSettings
    from workbench.procurement import PlanLimits
    from workbench.reclaim import ReclaimSettings
    from workbench.showback import ShowbackPolicy

    with _progress() as progress:
        task = progress.add_task("planning procurement", total=3)
        plan = run_plan(ws, PlanLimits(), InputSettings())
        progress.advance(task)
        progress.update(task, description="reclaim recommendations")
        reclaimed = run_reclaim(ws, ReclaimSettings())
        progress.advance(task)
        progress.update(task, description="costs (showback) of every month")
        costs = run_costs(ws, ["month", "team", "accelerator"], "all", ShowbackPolicy())
        progress.advance(task)
    summary = plan.result.summary()
    console.print(
        f"Plan run {plan.run_id}: buy {summary['buy_chips']:,} chips, expected cost "
        f"{format_usd(summary['expected_cost_cents'])} over "
        f"{plan.result.rows['quarter'].n_unique()} quarters."
    )
    table = reclaimed.result.table
    console.print(
        f"Reclaim run {reclaimed.run_id}: {int(table['reclaimable_chips'].sum()):,} chips "
        f"reclaimable, {format_usd(int(table['annual_savings_usd'].sum() * 100))} a year."
    )
    months = costs.result.months
    console.print(
        f"Costs run {costs.run_id}: {months[0]:%Y-%m} to {months[-1]:%Y-%m}, "
        f"{format_usd(int(costs.check['pool_cost_cents'].sum()))} in all"
        + (", reconciled to the cent." if bool(costs.check["balanced"].all()) else ".")
    )


def main() -> None:
    """Entry point: run the CLI, turning errors into one readable line."""
    debug = "--debug" in sys.argv
    try:
        # Standalone mode: typer itself handles --help, usage errors and exit codes.
        app()
    except WorkbenchError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc.one_line()}", err=True)
        sys.exit(2)
    except Exception as exc:
        if debug:
            raise
        first_line = (str(exc).strip().splitlines() or [""])[0]
        typer.echo(
            f"internal error: {type(exc).__name__}: {first_line}"
            " (rerun with --debug for the traceback)",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
