"""The ``workbench forecast`` and ``workbench backtest`` commands (registered in the CLI).

Without ``--series`` they forecast the workspace's fleet (every node of fleet ->
accelerator -> pool -> team) and write a run; with ``--series FILE`` they forecast any
long-format file (``series_id, ds, y``) at its own frequency and write the forecasts to
``--out``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from workbench.cli_defaults import DEFAULT_CANDIDATES
from workbench.errors import WorkbenchError
from workbench.executors import SCHEDULER_ENV, DaskExecutor, Executor, make_executor

if TYPE_CHECKING:
    import polars as pl

    from workbench.forecasting import ForecastSettings
    from workbench.store import Workspace

# polars, the models and the forecasting engine are imported where they are used, so that
# registering these commands (every ``workbench`` start-up) loads none of them.

__all__ = ["backtest_command", "forecast_command", "run_fleet_forecast"]

_DEFAULT_MODELS = ",".join(DEFAULT_CANDIDATES)
_DEFAULT_WORKSPACE = Path(os.environ.get("WORKBENCH_WORKSPACE", "workspace"))
_WorkspaceOption = Annotated[
    Path,
    typer.Option("--workspace", "-w", help="Workspace folder.", envvar="WORKBENCH_WORKSPACE"),
]
_HorizonOption = Annotated[
    int,
    typer.Option(help="Steps to forecast (days for the fleet; the file's step with --series)."),
]
_ModelsOption = Annotated[
    str,
    typer.Option(
        help="Candidate models, comma-separated (automatic selection among them per series)."
    ),
]
_WindowsOption = Annotated[int, typer.Option(help="Backtest windows (rolling origins).")]
_StepOption = Annotated[
    int | None,
    typer.Option(help="Steps between backtest cutoffs [default: the horizon]."),
]
_WorkersOption = Annotated[int | None, typer.Option(help="Worker processes [default: all cores].")]
_SchedulerOption = Annotated[
    str | None,
    typer.Option(
        help="Run the batches of series on this Dask scheduler (tcp://HOST:8786) instead of "
        "local processes; one batch per cluster thread.",
        envvar=SCHEDULER_ENV,
    ),
]
_SeriesOption = Annotated[
    Path | None,
    typer.Option(
        help="Forecast this long-format CSV/Parquet file (series_id, ds, y) instead of the fleet."
    ),
]
_FreqOption = Annotated[
    str | None,
    typer.Option(
        help="Frequency of --series: hourly, daily, weekly, monthly, quarterly or 1h/1d/..."
    ),
]
_OutOption = Annotated[
    Path | None,
    typer.Option(help="Output file for --series (.csv or .parquet) [default: beside the input]."),
]


@contextmanager
def _executor(workers: int | None, scheduler: str | None) -> Iterator[Executor]:
    """The executor of a command, its Dask client closed when the command ends."""
    executor = make_executor(workers, scheduler)
    try:
        yield executor
    finally:
        if isinstance(executor, DaskExecutor):
            executor.close()


def _console() -> Any:
    from workbench.cli import console

    return console


def _models(text: str) -> tuple[str, ...]:
    from models.base import registered

    names = tuple(m.strip() for m in text.split(",") if m.strip())
    known = registered()
    unknown = [m for m in names if m not in known]
    if unknown or not names:
        raise WorkbenchError(
            f"unknown model(s) {', '.join(unknown) or '(none given)'}",
            field="--models",
            fix=f"choose from {', '.join(known)}",
        )
    return names


def _read_series(path: Path) -> pl.DataFrame:
    import polars as pl

    if not path.exists():
        raise WorkbenchError("file not found", file=path, fix="check the path given to --series")
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(path, try_parse_dates=True, infer_schema_length=10_000)
    except Exception as exc:
        raise WorkbenchError(
            f"cannot read the file: {exc}".splitlines()[0],
            file=path,
            fix="give a CSV or Parquet file with columns series_id, ds, y",
        ) from exc
    missing = [c for c in ("series_id", "ds", "y") if c not in frame.columns]
    if missing:
        raise WorkbenchError(
            f"missing column(s) {', '.join(missing)}; the file has {', '.join(frame.columns)}",
            file=path,
            field=missing[0],
            fix="rename the columns to series_id, ds (date or datetime) and y (number)",
        )
    frame = frame.with_columns(pl.col("series_id").cast(pl.String))
    if frame.schema["ds"] == pl.String:
        try:
            frame = frame.with_columns(pl.col("ds").str.to_datetime(strict=True))
        except Exception as exc:
            raise WorkbenchError(
                "column ds is not a date or datetime",
                file=path,
                field="ds",
                fix="write ds as ISO dates (2026-10-31) or timestamps (2026-10-31T13:00:00)",
            ) from exc
        if (frame["ds"].dt.time() == pl.time(0)).all():
            frame = frame.with_columns(pl.col("ds").dt.date())
    return frame


def _write(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".parquet":
        frame.write_parquet(tmp)
    else:
        frame.write_csv(tmp)
    tmp.replace(path)


def _progress(unit: str = "series") -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} " + unit),
        TimeElapsedColumn(),
        console=_console(),
        transient=True,
    )


def _settings(
    horizon: int,
    models: str,
    windows: int,
    step: int | None,
    reconcile: str,
    target: str,
    events: bool,
    seed: int,
    workers: int | None,
) -> ForecastSettings:
    from workbench.forecasting import ForecastSettings

    try:
        return ForecastSettings(
            horizon=horizon,
            models=_models(models),
            windows=windows,
            step=step,
            reconcile=reconcile,
            target=target,
            events=events,
            seed=seed,
            workers=workers,
        )
    except ValueError as exc:
        raise WorkbenchError(str(exc), fix="see workbench forecast --help") from exc


def _selection_table(selection: pl.DataFrame, title: str) -> Table:
    import polars as pl

    table = Table(title=title)
    for column in ("model", "series", "share", "median backtest MASE"):
        table.add_column(column, justify="left" if column == "model" else "right")
    summary = (
        selection.group_by("model")
        .agg(pl.len().alias("series"), pl.col("backtest_mase").median().alias("mase"))
        .sort("series", descending=True)
    )
    total = max(selection.height, 1)
    for row in summary.iter_rows(named=True):
        mase = "-" if row["mase"] is None else f"{row['mase']:.3f}"
        table.add_row(row["model"], f"{row['series']:,}", f"{row['series'] / total:.0%}", mase)
    return table


def _run_series_file(
    series: Path,
    out: Path | None,
    freq: str | None,
    settings: ForecastSettings,
    scheduler: str | None = None,
) -> None:
    from models.quantiles import quantile_column
    from workbench.forecasting import run_series_engine

    console = _console()
    frame = _read_series(series)
    n_series = frame["series_id"].n_unique()
    with _executor(settings.workers, scheduler) as executor, _progress() as progress:
        task = progress.add_task("forecasting", total=n_series)
        result = run_series_engine(
            frame,
            settings,
            freq=freq,
            executor=executor,
            on_progress=lambda n: progress.advance(task, n),
        )
    target = out or series.with_name(f"{series.stem}.forecast{series.suffix or '.csv'}")
    columns = ["series_id", "ds", "h", "model", "mean", *map(quantile_column, settings.quantiles)]
    _write(result.forecast.select(columns), target)
    console.print(_selection_table(result.selection, f"Chosen models, {n_series:,} series"))
    if result.fallbacks.height:
        console.print(f"{result.fallbacks.height:,} fallback(s); first: {result.fallbacks.row(0)}")
    console.print(f"Wrote {result.forecast.height:,} forecast rows to {target}")


def forecast_command(
    workspace: _WorkspaceOption = _DEFAULT_WORKSPACE,
    horizon: _HorizonOption = 182,
    models: _ModelsOption = _DEFAULT_MODELS,
    windows: _WindowsOption = 3,
    step: Annotated[
        int | None,
        typer.Option(
            help="Steps between backtest cutoffs [default: 91 days for the fleet, the "
            "horizon for --series]."
        ),
    ] = None,
    reconcile: Annotated[
        str, typer.Option(help="none, bottom_up, top_down, mint_shrink, wls_var, wls_struct.")
    ] = "mint_shrink",
    target: Annotated[
        str, typer.Option(help="demand (used + queued) or usage (used only).")
    ] = "demand",
    events: Annotated[
        bool, typer.Option(help="Remove past one-off events; add future events.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed for sampling and models.")] = 0,
    workers: _WorkersOption = None,
    scheduler: _SchedulerOption = None,
    series: _SeriesOption = None,
    freq: _FreqOption = None,
    out: _OutOption = None,
) -> None:
    """Forecast demand per accelerator, pool and team with calibrated quantiles.

    Each series gets the model with the best rolling-origin backtest (MASE) among the
    candidates and an ensemble of them; quantiles are calibrated on the backtest errors.
    Writes a run with the forecast, backtest scores, chosen models, fallbacks, quarterly
    peak-week distributions per pool and timings.
    """
    from workbench.store import Workspace

    if step is None and series is None:
        step = 91  # quarterly cutoffs: a half-year horizon is scored on two seasons' windows
    settings = _settings(horizon, models, windows, step, reconcile, target, events, seed, workers)
    if series is not None:
        _run_series_file(series, out, freq, settings, scheduler)
        return
    run_fleet_forecast(Workspace(workspace).require(), settings, scheduler=scheduler)


def run_fleet_forecast(
    ws: Workspace, settings: ForecastSettings, *, quiet: bool = False, scheduler: str | None = None
) -> str:
    """Forecast the workspace's fleet, write a ``forecast`` run, print a summary; return its id."""
    from workbench.forecasting import forecast_fleet

    console = _console()
    for table in ("usage_daily", "sku_catalog"):
        if not ws.has_table(table):
            raise WorkbenchError(
                f"the workspace has no {table} table",
                file=ws.root,
                fix="ingest the catalog and job records first (workbench demo does it all)",
            )
    usage = ws.read_table("usage_daily")
    events_table = ws.read_table("events") if ws.has_table("events") else None
    node_count = _count_nodes(usage)
    with (
        _executor(settings.workers, scheduler) as executor,
        ws.new_run("forecast", config=settings.as_dict(), seed=settings.seed) as run,
        _progress() as bar,
    ):
        task = bar.add_task("forecasting", total=node_count)

        def stage(name: str) -> None:
            bar.update(task, description=name)

        def advance(n: int) -> None:
            bar.advance(task, n)

        result = forecast_fleet(
            usage,
            events_table,
            ws.read_table("sku_catalog"),
            settings,
            executor=executor,
            on_progress=advance,
            on_stage=stage,
        )
        for name, frame in result.outputs().items():
            run.write(name, frame)
        run.manifest["timings"].update(result.timings)
        run.manifest["notes"] = list(result.notes)
        run_id = run.run_id
    if not quiet:
        console.print(_selection_table(result.selection, "Chosen models per series"))
        _print_peaks(result.planning)
        for note in result.notes:
            console.print(f"note: {note}")
    console.print(
        f"Forecast run {run_id}: {result.forecast['series_id'].n_unique():,} series, "
        f"{settings.horizon} days, {result.fallbacks.height:,} fallback(s)."
    )
    return run_id


def _count_nodes(usage: pl.DataFrame) -> int:
    teams = usage.select("accelerator", "region", "team").unique()
    pools = teams.select("accelerator", "region").unique().height
    return 1 + teams["accelerator"].n_unique() + pools + teams.height


def _print_peaks(planning: pl.DataFrame) -> None:
    import polars as pl

    if planning.is_empty():
        return
    pools = planning.filter(pl.col("level") == "pool").sort("accelerator", "region", "quarter")
    table = Table(title="Peak weekly demand per pool and quarter (chips)")
    for column in ("pool", "quarter", "p50", "p90", "p95"):
        table.add_column(column, justify="left" if column in ("pool", "quarter") else "right")
    for row in pools.iter_rows(named=True):
        table.add_row(
            f"{row['accelerator']} {row['region']}",
            row["quarter"],
            f"{row['peak_p50']:,.0f}",
            f"{row['peak_p90']:,.0f}",
            f"{row['peak_p95']:,.0f}",
        )
    _console().print(table)


def backtest_command(
    workspace: _WorkspaceOption = _DEFAULT_WORKSPACE,
    horizon: _HorizonOption = 91,
    models: _ModelsOption = _DEFAULT_MODELS,
    windows: _WindowsOption = 3,
    step: _StepOption = None,
    target: Annotated[
        str, typer.Option(help="demand (used + queued) or usage (used only).")
    ] = "demand",
    seed: Annotated[int, typer.Option(help="Seed for models.")] = 0,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes, one batch of series each [default: 1]."),
    ] = None,
    scheduler: _SchedulerOption = None,
    series: _SeriesOption = None,
    freq: _FreqOption = None,
    out: _OutOption = None,
) -> None:
    """Score candidate models by rolling-origin backtest, per model and horizon bucket.

    Prints MASE, RMSSE, sMAPE, WAPE, scaled pinball loss, 80/90% interval coverage and
    bias; writes a run with every backtest forecast (or the metrics to --out with --series).
    """
    import polars as pl

    from models.backtest import backtest_panel, training_scale_frame
    from models.frequency import Frequency
    from models.metrics import evaluate, horizon_buckets, seasonal_scale
    from models.panel import Panel
    from workbench.forecasting import demand_series, remove_past_events
    from workbench.store import Workspace

    console = _console()
    names = _models(models)
    if series is not None:
        frame = _read_series(series)
        from models.frames import infer_frequency

        freq = freq or sorted(set(infer_frequency(frame).values()))[0]
    else:
        ws = Workspace(workspace).require()
        bottom = demand_series(ws.read_table("usage_daily"), target=target)
        if ws.has_table("events"):
            bottom, _ = remove_past_events(
                bottom,
                ws.read_table("events"),
                bottom["ds"].max(),  # type: ignore[arg-type]
            )
        frame = bottom.select(
            pl.concat_str("accelerator", "region", "team", separator="/").alias("series_id"),
            "ds",
            "y",
        )
        freq = "1d"
    frequency = Frequency.parse(freq)
    panel = Panel.from_frame(frame.select("series_id", "ds", "y"), frequency)
    if scheduler is None and not os.environ.get(SCHEDULER_ENV) and (workers or 1) <= 1:
        with _progress("fits") as bar:
            task = bar.add_task(f"backtesting {len(names)} model(s)", total=windows * len(names))
            forecasts, training = backtest_panel(
                panel,
                names,
                horizon,
                windows=windows,
                step=step,
                seed=seed,
                on_fit_done=lambda name: bar.advance(task),
            )
    else:
        from workbench.fanout import backtest_batches

        with _executor(workers, scheduler) as executor, _progress() as bar:
            task = bar.add_task(f"backtesting {len(names)} model(s)", total=panel.n_series)
            forecasts, training = backtest_batches(
                panel,
                names,
                horizon,
                windows=windows,
                step=step,
                seed=seed,
                executor=executor,
                on_batch_done=lambda n: bar.advance(task, n),
            )
    season = frequency.season_length
    scored = horizon_buckets(
        forecasts, edges=tuple(sorted({min(7, horizon), min(30, horizon), horizon}))
    )
    metrics = evaluate(
        scored,
        mae_scale=training_scale_frame(training, season),
        mse_scale=seasonal_scale(training, season, kind="mse", keys=("cutoff",)),
        metrics=("mase", "rmsse", "smape", "wape", "scaled_pinball", "coverage", "bias"),
        by=("model", "horizon_bucket"),
        coverages=(0.8, 0.9),
    )
    table = Table(title=f"Backtest: {panel.n_series:,} series, {windows} windows of {horizon}")
    shown = [
        "model",
        "horizon_bucket",
        "mase",
        "rmsse",
        "smape",
        "wape",
        "scaled_pinball_mean",
        "coverage_80",
        "coverage_90",
        "relative_bias",
    ]
    for column in shown:
        table.add_column(column.replace("_", " "), justify="left" if column == "model" else "right")
    for row in metrics.sort("model", "horizon_bucket").iter_rows(named=True):
        table.add_row(*[_cell(row.get(c)) for c in shown])
    console.print(table)
    target_path = out
    if series is None:
        ws = Workspace(workspace)
        config = {"horizon": horizon, "models": list(names), "windows": windows, "step": step}
        with ws.new_run("backtest", config=config, seed=seed) as run:
            run.write("backtest", forecasts)
            run.write("metrics", metrics)
            run_id = run.run_id
        console.print(f"Run {run_id}: {forecasts.height:,} backtest rows.")
    if target_path is not None:
        _write(metrics, target_path)
        console.print(f"Wrote metrics to {target_path}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return str(value)
