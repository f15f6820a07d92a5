"""The ``workbench costs`` and ``workbench tco`` commands (registered in :mod:`workbench.cli`).

``costs`` allocates each pool's monthly cost to teams (showback) and writes the breakdown
as a run; ``tco`` prints what a chip-hour costs owned, component by component, against the
cloud prices. Both read the workspace's tables and print readable tables; the numbers come
from :mod:`workbench.showback` and :mod:`workbench.tco`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from workbench.cli_defaults import DIMENSIONS
from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    import polars as pl

    from workbench.showback import Showback, ShowbackPolicy
    from workbench.store import Workspace
    from workbench.tco import TcoAssumptions

# polars and the cost modules are imported where they are used, so that registering these
# commands (every ``workbench`` start-up) loads none of them.

__all__ = ["CostsRun", "costs_command", "parse_months", "run_costs", "tco_command"]

_DEFAULT_WORKSPACE = Path(os.environ.get("WORKBENCH_WORKSPACE", "workspace"))
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_WorkspaceOption = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder.",
        envvar="WORKBENCH_WORKSPACE",
        show_default=True,
    ),
]


def _console() -> Any:
    # The CLI's console (wide when piped); imported here because workbench.cli imports us.
    from workbench.cli import console

    return console


def _parse_month(text: str) -> date:
    match = _MONTH.match(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise WorkbenchError(
            f"'{text}' is not a month", field="--month", fix="write YYYY-MM, e.g. 2026-10"
        )
    return date(int(match.group(1)), int(match.group(2)), 1)


def parse_months(text: str | None, usage: pl.DataFrame) -> list[date]:
    """First days of the months ``--month`` selects.

    ``YYYY-MM``, ``FIRST..LAST``, a comma-separated list, ``all`` (every month with usage),
    or ``None``: the latest month with usage.
    """
    import polars as pl

    from workbench.showback import month_range

    dates = usage["date"].drop_nulls() if usage.height else pl.Series([], dtype=pl.Date)
    if text is None or text.strip().lower() == "all":
        if dates.len() == 0:
            raise WorkbenchError(
                "the workspace has no usage",
                field="usage_daily",
                fix="ingest job records first: 'workbench ingest jobs FILE'",
            )
        first, last = dates.min(), dates.max()
        assert isinstance(first, date) and isinstance(last, date)
        if text is None:
            return [date(last.year, last.month, 1)]
        return month_range(first, last)
    if ".." in text:
        start, end = (_parse_month(part) for part in text.split("..", 1))
        if end < start:
            raise WorkbenchError(
                f"month range '{text}' ends before it starts",
                field="--month",
                fix="write FIRST..LAST, e.g. 2026-08..2026-10",
            )
        return month_range(start, end)
    return [_parse_month(part) for part in text.split(",")]


def _money(value: Decimal | None) -> str:
    from workbench.money import format_usd

    if value is None:
        return ""
    return format_usd(int(value * 100))


def _hours(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _rate(value: float | None) -> str:
    return "" if value is None else f"${value:,.3f}"


def costs_command(
    by: Annotated[
        str,
        typer.Option(help=f"Break costs down by these, comma-separated: {', '.join(DIMENSIONS)}."),
    ] = "team,accelerator",
    month: Annotated[
        str | None,
        typer.Option(
            help="YYYY-MM, a range FIRST..LAST, a comma-separated list, or 'all' "
            "(default: the latest month with usage)."
        ),
    ] = None,
    idle: Annotated[
        str,
        typer.Option(help="Idle capacity: 'separate' (its own line) or 'shared' (by use)."),
    ] = "separate",
    basis: Annotated[
        str,
        typer.Option(help="Teams pay for 'max' (max of allocated and used) or 'used' chip-hours."),
    ] = "max",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Also write costs.csv and costs.parquet into DIR."),
    ] = None,
    workspace: _WorkspaceOption = _DEFAULT_WORKSPACE,
) -> None:
    """Monthly cost of each pool allocated to teams (showback), reconciled to the cent."""
    from workbench.showback import ShowbackPolicy
    from workbench.store import Workspace

    console = _console()
    ws = Workspace(workspace).require()
    keys = [k.strip() for k in by.split(",") if k.strip()]
    policy = ShowbackPolicy(idle=idle, basis=basis)  # type: ignore[arg-type]
    costs = run_costs(ws, keys, month, policy)
    table, result, check = costs.table, costs.result, costs.check
    _print_costs(console, table, keys, result)
    _print_reconciliation(console, check)
    _print_notes(console, result)
    run_id = costs.run_id
    console.print(f"Run {run_id} committed: costs.csv, costs.parquet, cost_cells, cost_pools.")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        table.write_csv(out / "costs.csv")
        table.write_parquet(out / "costs.parquet")
        console.print(f"Wrote {out / 'costs.csv'} and {out / 'costs.parquet'}.")
    if not check["balanced"].all():
        raise WorkbenchError(
            "the breakdown does not reconcile",
            field="costs",
            fix="report this with the run folder; it is a bug",
        )


@dataclass(frozen=True)
class CostsRun:
    """A committed ``costs`` run: its id, the breakdown, the showback and its reconciliation."""

    run_id: str
    table: pl.DataFrame
    result: Showback
    check: pl.DataFrame


def run_costs(
    ws: Workspace, keys: list[str], month: str | None, policy: ShowbackPolicy
) -> CostsRun:
    """Commit a ``costs`` run for the months ``month`` selects, printing nothing.

    ``month`` is read by :func:`parse_months`; the showback is broken down by ``keys`` and
    reconciled, exactly as ``workbench costs`` does.
    """
    from workbench.showback import breakdown, reconcile, showback

    usage = ws.read_table("usage_daily")
    months = parse_months(month, usage)
    result = showback(
        usage,
        ws.read_table("inventory"),
        ws.read_table("billing"),
        ws.read_table("price_book"),
        ws.read_table("sku_catalog"),
        months,
        policy,
    )
    table = breakdown(result, keys)
    check = reconcile(result)
    run_id = _write_costs_run(ws, table, result, check, keys, month)
    return CostsRun(run_id=run_id, table=table, result=result, check=check)


def _title(result: Showback, keys: list[str]) -> str:
    months = result.months
    period = (
        f"{months[0]:%Y-%m}" if len(months) == 1 else f"{months[0]:%Y-%m} to {months[-1]:%Y-%m}"
    )
    basis = "max(allocated, used)" if result.policy.basis == "max" else "used"
    idle = "its own line" if result.policy.idle == "separate" else "shared by use"
    grouping = ", ".join(keys) if keys else "total"
    return f"Costs {period} by {grouping} (teams pay for {basis} chip-hours; idle: {idle})"


def _table(
    title: str,
    labels: list[str],
    rows: list[list[str]],
    names: int,
    total: list[str] | None = None,
) -> Table:
    """A light table whose figures are never cut: a wide one folds the names instead.

    The first ``names`` columns are names (left, folded when short of room); the others are
    figures (right-aligned, at least as wide as their widest value).
    """
    view = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    every = [*rows, *([total] if total else [])]
    for index, label in enumerate(labels):
        if index < names:
            view.add_column(label, overflow="fold")
        else:
            widest = max((len(r[index]) for r in every), default=0)
            view.add_column(label, justify="right", no_wrap=True, min_width=widest)
    for cells in rows:
        view.add_row(*cells)
    if total:
        view.add_section()
        view.add_row(*total, style="bold")
    return view


def _print_costs(console: Any, table: pl.DataFrame, keys: list[str], result: Showback) -> None:
    from workbench.showback import breakdown

    shared = result.policy.idle == "shared"
    columns: list[tuple[str, str, Callable[[Any], str]]] = [
        ("used\nchip-h", "chip_hours_used", _hours),
        ("allocated\nchip-h", "chip_hours_allocated", _hours),
        ("charged\nchip-h", "chip_hours_charged", _hours),
        ("used /\nalloc.", "efficiency", _percent),
        ("owned", "owned_usd", _money),
        *([("idle\nshare", "idle_share_usd", _money)] if shared else []),
        ("cloud", "cloud_usd", _money),
        ("commit.\nwaste", "commitment_waste_usd", _money),
        ("total", "total_usd", _money),
        ("$ / used\nchip-h", "unit_cost_usd_per_used_chip_hour", _rate),
    ]
    rows = [
        [f"{row[k]:%Y-%m}" if isinstance(row[k], date) else str(row[k]) for k in keys]
        + [fmt(row[name]) for _, name, fmt in columns]
        for row in table.iter_rows(named=True)
    ]
    total = breakdown(result, []).row(0, named=True)
    total_row = (["all"] + [""] * (len(keys) - 1) if keys else []) + [
        fmt(total[name]) for _, name, fmt in columns
    ]
    labels = [*keys, *(label for label, _, _ in columns)]
    view = _table(_title(result, keys), labels, rows, len(keys), total_row)
    console.print(view)


def _print_reconciliation(console: Any, check: pl.DataFrame) -> None:
    from workbench.money import format_usd

    for row in check.iter_rows(named=True):
        cloud = row["cloud_cents"] + row["commitment_waste_cents"]
        mark = "[green]balanced[/green]" if row["balanced"] else "[red]NOT BALANCED[/red]"
        console.print(
            f"Reconciliation {row['month']:%Y-%m} ({mark}):\n"
            f"  teams {format_usd(row['teams_cents'])} + idle {format_usd(row['idle_cents'])} "
            f"= {format_usd(row['teams_cents'] + row['idle_cents'])} = pool cost "
            f"{format_usd(row['pool_cost_cents'])} (owned {format_usd(row['owned_cents'])} + "
            f"cloud {format_usd(row['billing_cents'])})\n"
            f"  cloud part {format_usd(cloud)} (usage {format_usd(row['cloud_cents'])} + "
            f"commitment waste {format_usd(row['commitment_waste_cents'])}) = billing "
            f"EffectiveCost {format_usd(row['billing_cents'])}"
        )


def _print_notes(console: Any, result: Showback) -> None:
    import polars as pl

    from workbench.showback import IDLE

    pools = result.pools
    scaled = pools.filter(pl.col("reserved_scale") < 1.0)
    if scaled.height:
        low, high = scaled["reserved_scale"].min(), scaled["reserved_scale"].max()
        assert isinstance(low, float) and isinstance(high, float)
        console.print(
            f"Note: in {scaled.height} of {pools.height} pool-months allocations exceed what "
            f"usage left free; used chip-hours are charged in full and unused allocations at "
            f"{low:.0%} to {high:.0%} of their chip-hours, so teams pay exactly the pool cost "
            "and idle is zero there (per pool: cost_pools in the run)."
        )
    over = pools.filter(pl.col("used_scale") < 1.0)
    for row in over.iter_rows(named=True):
        console.print(
            f"Note: {row['month']:%Y-%m} {row['accelerator']}/{row['region']}: {row['note']}."
        )
    if result.policy.idle == "shared":
        kept = result.cells.filter((pl.col("team") == IDLE) & (pl.col("total_cents") != 0))
        if kept.height:
            console.print(
                f"Note: {kept.height} pool-month(s) had no usage to share idle cost by; "
                "it stays on the (idle) line."
            )


def _write_costs_run(
    ws: Workspace,
    table: pl.DataFrame,
    result: Showback,
    check: pl.DataFrame,
    keys: list[str],
    month: str | None,
) -> str:
    import polars as pl

    config = {
        "by": keys,
        "month": month,
        "months": [f"{m:%Y-%m}" for m in result.months],
        "idle": result.policy.idle,
        "basis": result.policy.basis,
    }
    cells = result.cells.with_columns(
        (pl.col(c).cast(pl.Decimal(38, 2)) / 100).alias(c.removesuffix("_cents") + "_usd")
        for c in result.cells.columns
        if c.endswith("_cents")
    ).drop([c for c in result.cells.columns if c.endswith("_cents")])
    with ws.writer_lock(), ws.new_run("costs", config=config) as run:
        for name in ("usage_daily", "inventory", "billing", "price_book", "sku_catalog"):
            if ws.has_table(name):
                run.add_input(ws.table_path(name))
        run.write("costs", table)
        table.write_csv(run.staging / "costs.csv")
        run.write("cost_cells", cells)
        run.write("cost_pools", result.pools)
        run.write_json(
            "reconciliation",
            {"months": [{**row, "month": f"{row['month']:%Y-%m}"} for row in check.to_dicts()]},
        )
        return run.run_id


def tco_command(
    accelerator: Annotated[
        str | None, typer.Option(help="Only this accelerator (an id or any alias).")
    ] = None,
    region: Annotated[str | None, typer.Option(help="Only this region.")] = None,
    utilization: Annotated[
        float, typer.Option(help="Used / installed chip-hours for the cost per used chip-hour.")
    ] = 0.6,
    show_sensitivity: Annotated[
        bool,
        typer.Option(
            "--sensitivity", help="Also show how each driver moves the cost (tornado data)."
        ),
    ] = False,
    workspace: _WorkspaceOption = _DEFAULT_WORKSPACE,
) -> None:
    """Owned cost per chip-hour by component, against cloud prices, with break-evens."""
    from workbench.store import Workspace
    from workbench.tco import TcoAssumptions, tco_table

    console = _console()
    ws = Workspace(workspace).require()
    catalog = ws.read_table("sku_catalog")
    accelerator_id = _resolve_accelerator(ws, accelerator) if accelerator else None
    assumptions = TcoAssumptions(utilization=utilization)
    book = ws.read_table("price_book")
    table = tco_table(book, catalog, assumptions, accelerator=accelerator_id, region=region)
    columns: list[tuple[str, str, Callable[[Any], str]]] = [
        ("accelerator", "accelerator", str),
        ("region", "region", str),
        ("W", "power_w", lambda v: f"{v:,.0f}"),
        ("capex", "capex_depreciation_usd_per_chip_hour", _rate),
        ("power", "power_usd_per_chip_hour", _rate),
        ("facility", "facility_usd_per_chip_hour", _rate),
        ("network\nstorage", "network_storage_usd_per_chip_hour", _rate),
        ("mainte-\nnance", "maintenance_usd_per_chip_hour", _rate),
        ("owned", "owned_usd_per_chip_hour", _rate),
        ("per used\nchip-h", "owned_usd_per_used_chip_hour", _rate),
        ("cloud\non-demand", "on_demand_usd_per_hour", _rate),
        ("cloud\n1y", "commit_1y_usd_per_hour", _rate),
        ("cloud\n3y", "commit_3y_usd_per_hour", _rate),
        ("break-even\non-demand", "break_even_on_demand", _break_even),
        ("break-even\n1y", "break_even_commit_1y", _break_even),
        ("break-even\n3y", "break_even_commit_3y", _break_even),
    ]
    rows = [[fmt(row[name]) for _, name, fmt in columns] for row in table.iter_rows(named=True)]
    title = (
        "Cost per chip-hour, owned (by component, per installed chip-hour) vs cloud, USD; "
        f"per used chip-hour at {utilization:.0%} utilization"
    )
    console.print(_table(title, [label for label, _, _ in columns], rows, 2))
    console.print(
        "owned = capex / (life x 8,760 h) + W / 1000 x PUE x $/kWh"
        " + W / 1000 x facility $/kW-month x 12 / 8,760 h"
        " + network & storage share x capex / (life x 8,760 h)"
        " + maintenance share x capex / 8,760 h;\n"
        f"per used chip-h = owned / {utilization:g}; break-even: the utilization above which "
        "owning costs less per used chip-hour than that cloud price (commitments sized to the "
        "hours used); 'never' if above 100%."
    )
    for (source, as_of), _ in table.group_by(["source", "as_of"], maintain_order=True):
        console.print(f"Prices as of {as_of}: {source}")
    if show_sensitivity:
        _print_sensitivity(console, book, catalog, assumptions, accelerator_id, region)


def _figure(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _break_even(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "never" if value > 1 else f"{value:.1%}"


def _resolve_accelerator(ws: Workspace, name: str) -> str:
    from workbench.ingest import load_catalog

    catalog = load_catalog(ws)
    resolved = catalog.resolve(name)
    if resolved is None:
        raise WorkbenchError(
            f"unknown accelerator '{name}'",
            field="--accelerator",
            fix=f"use one of {', '.join(catalog.ids())}",
        )
    return resolved


def _print_sensitivity(
    console: Any,
    book: pl.DataFrame,
    catalog: pl.DataFrame,
    assumptions: TcoAssumptions,
    accelerator: str | None,
    region: str | None,
) -> None:
    from workbench.tco import SensitivityRanges, sensitivity

    frame = sensitivity(
        book, catalog, assumptions, SensitivityRanges(), accelerator=accelerator, region=region
    )
    labels = ["accelerator", "region", "driver", "low", "base", "high"]
    labels += ["cost at low", "base cost", "cost at high", "swing"]
    rows = [
        [
            row["accelerator"],
            row["region"],
            row["driver"],
            _figure(row["low_value"]),
            _figure(row["base_value"]),
            _figure(row["high_value"]),
            _rate(row["low_usd_per_used_chip_hour"]),
            _rate(row["base_usd_per_used_chip_hour"]),
            _rate(row["high_usd_per_used_chip_hour"]),
            _rate(row["swing_usd"]),
        ]
        for row in frame.iter_rows(named=True)
    ]
    title = "Sensitivity of the owned cost per used chip-hour, one driver at a time (tornado)"
    view = _table(title, labels, rows, 3)
    console.print(view)
