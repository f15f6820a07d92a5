"""The ``workbench plan`` and ``workbench replay`` commands (registered in the CLI).

``plan`` turns the latest forecast run's demand scenarios, the inventory, open orders and
the price book into a procurement plan per pool and quarter (see
:mod:`workbench.procurement`) and writes a ``plan`` run. ``replay`` replays the last
quarters of history with the plan, perfect foresight and the spreadsheet rule (see
:mod:`workbench.replay`) and writes a ``replay`` run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    import polars as pl

    from workbench.planning_inputs import InputSettings
    from workbench.procurement import PlanLimits, PlanResult
    from workbench.store import RunInfo, Workspace

# polars, the solver (scipy) and the planning inputs are imported where they are used, so
# that registering these commands (every ``workbench`` start-up) loads none of them.

__all__ = ["FAST_MODELS", "PlanRun", "parse_power", "plan_command", "replay_command", "run_plan"]

FAST_MODELS: tuple[str, ...] = ("seasonal_naive", "naive2", "theta", "ets")
"""Models of the forecasts that plan and replay make themselves (seconds, not minutes)."""

_DEFAULT_WORKSPACE = Path(os.environ.get("WORKBENCH_WORKSPACE", "workspace"))
_WorkspaceOption = Annotated[
    Path,
    typer.Option("--workspace", "-w", help="Workspace folder.", envvar="WORKBENCH_WORKSPACE"),
]


def _console() -> Any:
    from workbench.cli import console

    return console


def parse_power(text: str) -> dict[str, float]:
    """``us-central1=40,us-east4=25`` as MW per region."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        region, _, value = part.partition("=")
        try:
            out[region.strip()] = float(value)
        except ValueError as exc:
            raise WorkbenchError(
                f"cannot read '{part}' as region=MW",
                field="--power-mw",
                fix="write e.g. --power-mw us-central1=40,us-east4=25",
            ) from exc
    return out


def _chips(value: float) -> str:
    return f"{value:,.0f}"


def _plan_table(rows: pl.DataFrame) -> Table:
    from workbench.money import format_usd

    table = Table(
        title="Procurement plan per pool and quarter (chips; cost in USD; * extrapolated)"
    )
    columns = (
        "pool",
        "quarter",
        "demand p50",
        "demand p95",
        "installed",
        "on order",
        "buy",
        "commit",
        "burst",
        "cost",
        "util",
        "short risk",
        "binding",
    )
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("pool", "quarter", "binding") else "right"
        )
    for row in rows.iter_rows(named=True):
        quarter = row["quarter"] + ("*" if row["extrapolated"] else "")
        table.add_row(
            f"{row['accelerator']} {row['region']}",
            quarter,
            _chips(row["demand_p50"]),
            _chips(row["demand_p95"]),
            _chips(row["installed"]),
            _chips(row["on_order"]),
            _chips(row["buy_chips"]),
            _chips(row["committed_chips"]),
            _chips(row["burst_mean"]),
            format_usd(row["cost_cents"]),
            f"{row['utilization']:.0%}",
            f"{row['shortfall_probability']:.0%}",
            row["binding"],
        )
    return table


def _print_plan(result: PlanResult, lifecycle: pl.DataFrame) -> None:
    import polars as pl

    from workbench.money import format_usd

    console = _console()
    rows = result.rows
    console.print(_plan_table(rows))
    decisions = rows.filter(
        (pl.col("buy_chips") > 0)
        | (pl.col("commit_1y_chips") + pl.col("commit_3y_chips") > 0.5)
        | (pl.col("shortfall_probability") > 0)
    )
    if decisions.height:
        console.print("Why:")
        for row in decisions.head(40).iter_rows(named=True):
            console.print(
                f"  {row['accelerator']} {row['region']} {row['quarter']}: {row['rationale']}"
            )
        if decisions.height > 40:
            console.print(f"  ... and {decisions.height - 40:,} more rows in the run's plan table")
    binding = result.limits.filter(pl.col("binding")) if result.limits.height else result.limits
    for row in binding.iter_rows(named=True):
        unit = row["unit"]
        short = row["short_by"] or 0.0
        amount = format_usd(round(short * 100)) if unit == "USD" else f"{short:,.2f} MW"
        limit = (
            format_usd(round(row["limit_value"] * 100))
            if unit == "USD"
            else f"{row['limit_value']:,.2f} MW"
        )
        console.print(
            f"binding: {row['limit']} {row['where']} {row['quarter']}: limit {limit}, "
            f"the unconstrained plan needs {amount} more"
        )
    if result.attached.height:
        table = Table(
            title="Attached resources for new purchases, per region and quarter they land"
        )
        for column in (
            "region",
            "quarter",
            "chips",
            "host cores",
            "storage TB",
            "network Gbps",
            "MW",
        ):
            table.add_column(column, justify="left" if column in ("region", "quarter") else "right")
        for row in result.attached.iter_rows(named=True):
            table.add_row(
                row["region"],
                row["quarter"],
                _chips(row["new_chips"]),
                _chips(row["host_cores"]),
                f"{row['storage_tb']:,.1f}",
                _chips(row["network_gbps"]),
                f"{row['power_mw']:,.2f}",
            )
        console.print(table)
    if lifecycle.height:
        table = Table(title="Lifecycle: refresh and decommission candidates")
        for column in ("pool", "installed", "replace with", "chips", "saving / year", "reason"):
            table.add_column(
                column, justify="left" if column in ("pool", "replace with", "reason") else "right"
            )
        for row in lifecycle.iter_rows(named=True):
            table.add_row(
                f"{row['accelerator']} {row['region']}",
                _chips(row["installed"]),
                row["replace_with"] or "-",
                _chips(row["replacement_chips"]),
                format_usd(row["saving_cents_per_year"]),
                row["reason"],
            )
        console.print(table)
    totals = rows.select(
        pl.col("cost_cents").sum(),
        pl.col("new_owned_cost_cents").sum(),
        pl.col("commit_cost_cents").sum(),
        pl.col("burst_cost_cents").sum(),
        pl.col("buy_chips").sum(),
    ).row(0)
    console.print(
        f"Expected cost over {rows['quarter'].n_unique()} quarters: {format_usd(totals[0])} "
        f"(new owned {format_usd(totals[1])}, commitments {format_usd(totals[2])}, burst "
        f"{format_usd(totals[3])}, installed base the rest); buy {totals[4]:,} chips. "
        f"Solved by HiGHS ({result.method}) in {result.solve_seconds:.2f} s"
        + (f" ({result.solver_note})." if result.solver_note else ".")
    )


def _forecast_run(ws: Workspace, run_id: str | None, forecast_horizon: int | None) -> Any:
    if forecast_horizon is not None:
        from workbench.cli_forecast import run_fleet_forecast
        from workbench.forecasting import ForecastSettings

        settings = ForecastSettings(
            horizon=forecast_horizon, models=FAST_MODELS, sample_paths=200, workers=1
        )
        run_id = run_fleet_forecast(ws, settings, quiet=True)
    if run_id is not None:
        return ws.run(run_id)
    runs = [r for r in ws.runs("forecast") if "scenarios" in r.outputs()]
    if not runs:
        raise WorkbenchError(
            "the workspace has no forecast run with demand scenarios",
            file=ws.root,
            fix="run 'workbench forecast' first, or pass --forecast-horizon 182 to make one",
        )
    return runs[-1]


@dataclass(frozen=True)
class PlanRun:
    """A committed ``plan`` run: its id, the solved plan, lifecycle candidates, the forecast."""

    run_id: str
    result: PlanResult
    lifecycle: pl.DataFrame
    forecast: RunInfo


def run_plan(
    ws: Workspace,
    limits: PlanLimits,
    settings: InputSettings,
    *,
    forecast_run: str | None = None,
    forecast_horizon: int | None = None,
    measure_shortfall_hours: bool = True,
) -> PlanRun:
    """Solve the procurement plan from a forecast run and commit it as a ``plan`` run.

    The same path as ``workbench plan``, printing nothing: the latest forecast run with
    demand scenarios (or ``forecast_run``, or a new fast forecast of ``forecast_horizon``
    days), the workspace's inventory, orders, price book and catalog. With
    ``measure_shortfall_hours`` the share of a quarter a shortfall at the peak lasts is
    measured from the pools' history instead of ``limits.burst_hours_share``.
    """
    import polars as pl

    from workbench.planning_inputs import (
        lifecycle_candidates,
        pool_shortfall_hours_shares,
        shortfall_hours_share,
        workspace_plan_inputs,
    )
    from workbench.procurement import solve_plan

    for table in ("inventory", "price_book", "sku_catalog"):
        if not ws.has_table(table):
            raise WorkbenchError(
                f"the workspace has no {table} table",
                file=ws.root,
                fix=f"ingest it first (workbench ingest {table.replace('_', '-')} FILE)",
            )
    run = _forecast_run(ws, forecast_run, forecast_horizon)
    scenarios = run.read("scenarios")
    planning = run.read("planning")
    history = run.read("history").filter(pl.col("level") == "pool")
    if measure_shortfall_hours:
        limits = replace(limits, burst_hours_share=shortfall_hours_share(history))
    inventory = ws.read_table("inventory")
    inputs = workspace_plan_inputs(
        scenarios,
        planning,
        history,
        inventory,
        ws.read_table("orders") if ws.has_table("orders") else None,
        ws.read_table("price_book"),
        ws.read_table("sku_catalog"),
        settings,
    )
    if measure_shortfall_hours:
        # Each pool's own share (shrunk toward the fleet's), as the replay measures it.
        shares = pool_shortfall_hours_shares(history)
        inputs = replace(
            inputs,
            pools=tuple(
                replace(p, shortfall_hours_share=shares.get((p.accelerator, p.region)))
                for p in inputs.pools
            ),
        )
    result = solve_plan(inputs, limits)
    lifecycle = lifecycle_candidates(inputs.pools, inventory)
    config = {
        "forecast_run": run.run_id,
        "horizon_quarters": settings.horizon_quarters,
        "capex_budget_usd": limits.capex_budget_usd,
        "power_mw": dict(limits.power_mw),
        "service_level": limits.service_level,
        "fungible": limits.fungible,
        "method": limits.method,
        "commitment_recourse": limits.commitment_recourse,
        "burst_cap_share": settings.burst_cap_share,
        "burst_hours_share": limits.burst_hours_share,
        "burst_hours_share_per_pool": {
            p.key: p.shortfall_hours_share
            for p in inputs.pools
            if p.shortfall_hours_share is not None
        },
        "extrapolated_quarters": [
            q for q, x in zip(inputs.quarters, inputs.extrapolated, strict=True) if x
        ],
    }
    with ws.new_run("plan", config=config) as writer:
        writer.write("plan", result.rows)
        writer.write("limits", result.limits)
        writer.write("attached", result.attached)
        writer.write("lifecycle", lifecycle)
        writer.manifest["timings"]["solve"] = round(result.solve_seconds, 4)
        writer.manifest["summary"] = result.summary()
        run_id = writer.run_id
    return PlanRun(run_id=run_id, result=result, lifecycle=lifecycle, forecast=run)


def plan_command(
    workspace: _WorkspaceOption = _DEFAULT_WORKSPACE,
    horizon: Annotated[int, typer.Option(help="Quarters to plan.")] = 8,
    forecast_run: Annotated[
        str | None, typer.Option(help="Forecast run to plan from [default: the latest].")
    ] = None,
    forecast_horizon: Annotated[
        int | None,
        typer.Option(help="Make a new forecast (fast models) of this many days first."),
    ] = None,
    capex_budget: Annotated[
        float | None, typer.Option(help="Capex budget per quarter of order, USD.")
    ] = None,
    power_mw: Annotated[
        str, typer.Option(help="Power budget per region, MW: us-central1=40,us-east4=25.")
    ] = "",
    service_level: Annotated[
        float, typer.Option(help="Share of scenarios to serve in full (sets the unmet penalty).")
    ] = 0.95,
    fungible: Annotated[
        bool, typer.Option(help="Meet demand in perf units with any SKU of the family and region.")
    ] = False,
    method: Annotated[str, typer.Option(help="milp (integer lots) or lp_round.")] = "milp",
    time_limit: Annotated[
        float, typer.Option(help="Seconds the MILP may run before taking its best plan.")
    ] = 20.0,
    burst_cap_share: Annotated[
        float, typer.Option(help="On-demand burst available, share of installed chips.")
    ] = 0.25,
    burst_hours_share: Annotated[
        float | None,
        typer.Option(
            help="Share of a quarter a shortfall at the peak lasts (burst and unmet are priced "
            "for it) [default: measured from the pools' history]."
        ),
    ] = None,
    recourse: Annotated[
        bool,
        typer.Option(
            help="Commitments after the first quarter wait for demand (per bundle of "
            "scenarios): only the first quarter's decisions are final; slower on big fleets."
        ),
    ] = False,
) -> None:
    """Recommend what to buy, commit or rent per pool and quarter, with cost, risk and reason.

    Solves a two-stage stochastic program over the forecast's demand scenarios (HiGHS):
    owned purchases in lots after their lead time, 1- and 3-year commitments, on-demand
    burst, under a capex budget and power per region. Writes a ``plan`` run.
    """
    from workbench.planning_inputs import InputSettings
    from workbench.procurement import PlanLimits
    from workbench.store import Workspace

    ws = Workspace(workspace).require()
    limits = PlanLimits(
        capex_budget_usd=capex_budget,
        power_mw=parse_power(power_mw),
        service_level=service_level,
        fungible=fungible,
        method=method,
        burst_hours_share=burst_hours_share if burst_hours_share is not None else 1.0,
        time_limit_s=time_limit,
        commitment_recourse=recourse,
    )
    settings = InputSettings(horizon_quarters=horizon, burst_cap_share=burst_cap_share)
    plan = run_plan(
        ws,
        limits,
        settings,
        forecast_run=forecast_run,
        forecast_horizon=forecast_horizon,
        measure_shortfall_hours=burst_hours_share is None,
    )
    result, lifecycle, run_id, run = plan.result, plan.lifecycle, plan.run_id, plan.forecast
    _print_plan(result, lifecycle)
    _console().print(f"Plan run {run_id} (from forecast run {run.run_id}).")


def replay_command(
    workspace: _WorkspaceOption = _DEFAULT_WORKSPACE,
    quarters: Annotated[int, typer.Option(help="Past quarters to replay.")] = 8,
    out: Annotated[
        Path | None, typer.Option(help="Also write the comparison table here (.csv or .md).")
    ] = None,
    sample_paths: Annotated[int, typer.Option(help="Forecast sample paths per decision.")] = 200,
    truth: Annotated[
        Path | None,
        typer.Option(help="Unconstrained demand (generator truth) to score with, if known."),
    ] = None,
    burst_hours_share: Annotated[
        float | None,
        typer.Option(
            help="Share of a quarter a shortfall at the peak lasts, as planning prices it "
            "[default: measured at each decision from the demand seen so far]."
        ),
    ] = None,
    event_notice_days: Annotated[
        int,
        typer.Option(
            help="Days before its start an event (launch, campaign) is known to the planner."
        ),
    ] = 91,
    recourse: Annotated[
        bool,
        typer.Option(
            help="The plan's commitments after the first quarter wait for demand (see plan)."
        ),
    ] = True,
    track_record: Annotated[
        bool,
        typer.Option(
            help="Scale each pool's scenarios by how far the plan's past scenario medians "
            "missed the observed peaks there (shrunk toward the fleet's)."
        ),
    ] = True,
    reconcile: Annotated[
        str,
        typer.Option(
            help="How each decision's forecast is reconciled, as in forecast: none, "
            "bottom_up, top_down, mint_shrink, wls_var, wls_struct."
        ),
    ] = "mint_shrink",
) -> None:
    """Replay past quarters: the plan vs perfect foresight vs the last-four-quarters rule.

    At each past quarter start: forecast with data up to that day (fast models), plan, let
    purchases arrive after their lead time, play the real demand; record cost, unmet
    chip-hours and utilization. Writes a ``replay`` run with the comparison table.
    """
    from workbench.replay import ReplaySettings, comparison_markdown, replay_workspace
    from workbench.store import Workspace

    ws = Workspace(workspace).require()
    settings = ReplaySettings(
        quarters=quarters,
        sample_paths=sample_paths,
        burst_hours_share=burst_hours_share,
        event_notice_days=event_notice_days,
        commitment_recourse=recourse,
        track_record=track_record,
        reconcile=reconcile,
    )
    result = replay_workspace(ws, settings, truth_path=truth)
    table = Table(title=f"Decision replay, {quarters} quarters ({result.scored_on})")
    for column in result.comparison.columns:
        table.add_column(
            column.replace("_", " "), justify="left" if column == "policy" else "right"
        )
    for row in result.comparison.iter_rows(named=True):
        table.add_row(*[_cell(name, value) for name, value in row.items()])
    with ws.new_run("replay", config=settings.as_dict()) as writer:
        writer.write("comparison", result.comparison)
        writer.write("quarters", result.per_quarter)
        writer.manifest["notes"] = list(result.notes)
        run_id = writer.run_id
    console = _console()
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".md":
            out.write_text(comparison_markdown(result.comparison))
        else:
            result.comparison.write_csv(out)
        console.print(f"Wrote the comparison to {out}")
    console.print(f"Replay run {run_id}.")


def _cell(name: str, value: Any) -> str:
    from workbench.money import format_usd

    if name.endswith("_cents"):
        return format_usd(int(value))
    if name in ("unmet_share", "utilization"):
        return f"{value:.2%}"
    if name.startswith("vs_"):
        return f"{value:+.1%}"
    if isinstance(value, float):
        return f"{value:,.0f}"
    return str(value)
