"""The quarterly procurement report's content: every table it shows, from committed runs.

:func:`build_quarterly` reads a ``plan`` run (and the ``forecast`` run it was planned from,
the latest ``reclaim`` run, the workspace's price book, events and usage) and returns a
:class:`QuarterlyReport`: plain tables and sentences, no markup. Rendering (HTML, PDF) is
:mod:`workbench.report_render`'s job.

Invariants:

* Building reads and never writes: the same runs and tables give the same report, except
  ``generated_at``.
* Every figure comes from a table of the report (:meth:`QuarterlyReport.tables`), which the
  ``report`` run stores; ``inputs`` names every run read and ``manifest_sha256`` hashes the
  inputs' manifests, the tables' bytes and the template, so a printed figure can be traced.
* The previous report is the latest committed quarterly report built from *another* plan
  run: rendering the same plan again changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from workbench.errors import WorkbenchError
from workbench.forecasting import HOURS_PER_DAY, ForecastSettings, run_series_engine
from workbench.money import format_usd
from workbench.planning_inputs import next_quarters, quarter_of, quarter_start
from workbench.store import RunInfo, Workspace, file_sha256
from workbench.tco import owned_cost

__all__ = [
    "ACCOUNTABILITY_MODELS",
    "QuarterlyReport",
    "build_quarterly",
    "parse_quarter",
    "previous_report",
    "quarter_end",
]

ACCOUNTABILITY_MODELS: tuple[str, ...] = ("seasonal_naive", "naive2", "theta", "ets")
"""Models of a forecast made on the fly at a past cutoff (the plan's fast models)."""

_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
_REPORT_KIND = "report"
_SHORT_RISK = 0.05
_HISTORY_DAYS = 365


def parse_quarter(text: str) -> str:
    """``2027Q1`` (also accepts ``2027q1`` and ``2027-Q1``) or a readable error."""
    cleaned = text.strip().upper().replace("-", "")
    if not _QUARTER.match(cleaned):
        raise WorkbenchError(
            f"'{text}' is not a quarter", field="--quarter", fix="write YYYYQn, e.g. 2027Q1"
        )
    return cleaned


def quarter_end(quarter: str) -> date:
    """Last day of ``quarter``."""
    (following,) = next_quarters(quarter, 2)[1:]
    return quarter_start(following) - timedelta(days=1)


def _previous_quarter(quarter: str) -> str:
    return quarter_of(quarter_start(quarter) - timedelta(days=1))


@dataclass(frozen=True)
class QuarterlyReport:
    """Everything the quarterly report shows; see the module docstring."""

    quarter: str
    generated_at: str
    inputs: dict[str, str | None]
    """Run ids read: plan, forecast, reclaim, accountability forecast, previous report."""
    manifest_sha256: str
    summary: list[str]
    """The executive summary, one plain sentence per line."""
    facts: dict[str, Any]
    """Headline numbers behind the summary (cents, chips, shares)."""
    assumptions: list[tuple[str, str]]
    demand: pl.DataFrame
    """Per accelerator and quarter: peak weekly demand p50/p95 (chips)."""
    fan: pl.DataFrame
    """Per accelerator and day: history ``y`` or forecast quantiles (chips)."""
    events: pl.DataFrame
    """Per accelerator: the future events the forecast applied."""
    plan: pl.DataFrame
    budget: pl.DataFrame
    """Per quarter of order: capex of the purchases, the budget and whether it binds."""
    power: pl.DataFrame
    """Per region and quarter: MW of owned chips in service, the limit and its use."""
    limits: pl.DataFrame
    """The plan's limits that bind, with how far they fall short."""
    reclaim: pl.DataFrame
    accountability: pl.DataFrame
    accountability_note: str
    changes_demand: pl.DataFrame
    changes_plan: pl.DataFrame
    changes_prices: pl.DataFrame
    changes_note: str
    prices: pl.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    fleet_accelerators: tuple[str, ...] = ()
    """Every accelerator of the workspace (catalog and usage): chart colours follow them."""

    def tables(self) -> dict[str, pl.DataFrame]:
        """The report's tables by name, as the ``report`` run stores them."""
        return {
            "demand_outlook": self.demand,
            "events": self.events,
            "plan": self.plan,
            "budget": self.budget,
            "power": self.power,
            "limits": self.limits,
            "reclaim": self.reclaim,
            "accountability": self.accountability,
            "changes_demand": self.changes_demand,
            "changes_plan": self.changes_plan,
            "changes_prices": self.changes_prices,
            "prices": self.prices,
        }


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------
def _plan_run(ws: Workspace, plan_run: str | None) -> RunInfo:
    if plan_run is not None:
        run = ws.run(plan_run)
        if run.kind != "plan":
            raise WorkbenchError(
                f"run {run.run_id} is a {run.kind} run, not a plan run",
                field="--plan-run",
                fix="pick one from 'workbench runs list --kind plan'",
            )
        return run
    runs = ws.runs("plan")
    if not runs:
        raise WorkbenchError(
            "the workspace has no plan run to report on",
            file=ws.root,
            fix="run 'workbench plan --forecast-horizon 182' first (then 'workbench reclaim' "
            "for the reclaim section)",
        )
    return runs[-1]


def previous_report(ws: Workspace, plan_run_id: str) -> RunInfo | None:
    """The latest quarterly report built from another plan run, if any."""
    earlier = [
        run
        for run in ws.runs(_REPORT_KIND)
        if run.manifest.get("config", {}).get("report") == "quarterly"
        and run.manifest.get("config", {}).get("plan_run") != plan_run_id
    ]
    return earlier[-1] if earlier else None


def _manifest_digest(run: RunInfo) -> str:
    return file_sha256(run.path / "manifest.json")


def _table_digest(ws: Workspace, name: str) -> str | None:
    return file_sha256(ws.table_path(name)) if ws.has_table(name) else None


# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------
def _demand_outlook(planning: pl.DataFrame) -> pl.DataFrame:
    return (
        planning.filter(pl.col("level") == "accelerator")
        .select(
            "accelerator",
            "quarter",
            "weeks",
            pl.col("peak_p50").alias("peak_p50_chips"),
            pl.col("peak_p95").alias("peak_p95_chips"),
        )
        .sort("accelerator", "quarter")
    )


def _fan(forecast_run: RunInfo) -> pl.DataFrame:
    forecast = forecast_run.read("forecast").filter(pl.col("level") == "accelerator")
    history = forecast_run.read("history").filter(pl.col("level") == "accelerator")
    first_day = forecast["ds"].min()
    assert isinstance(first_day, date)
    since = first_day - timedelta(days=_HISTORY_DAYS)
    past = history.filter(pl.col("ds") >= since).select(
        "accelerator", "ds", pl.col("y").alias("actual")
    )
    ahead = forecast.select("accelerator", "ds", "p05", "p25", "p50", "p75", "p95", "mean")
    return pl.concat([past, ahead], how="diagonal").sort("accelerator", "ds")


def _events(forecast_run: RunInfo, events: pl.DataFrame) -> pl.DataFrame:
    applied = forecast_run.read("events_applied").filter(
        pl.col("series_id").str.starts_with("accelerator=")
    )
    frame = applied.with_columns(
        pl.col("series_id").str.strip_prefix("accelerator=").alias("accelerator")
    ).join(events.drop("accelerator"), on="event_id", how="left")
    return frame.select(
        "accelerator",
        "event_id",
        "name",
        "kind",
        "start",
        "end",
        "region",
        "team",
        "chips",
        "probability",
        "expected_chip_days",
    ).sort("accelerator", "start", "event_id")


def _budget(plan: pl.DataFrame, book: pl.DataFrame, config: Mapping[str, Any]) -> pl.DataFrame:
    capex = book.select("accelerator", "region", "capex_usd")
    spend = (
        plan.join(capex, on=["accelerator", "region"], how="left")
        .group_by("quarter")
        .agg(
            (pl.col("buy_chips") * pl.col("capex_usd").fill_null(0.0)).sum().alias("capex_usd"),
            pl.col("buy_chips").sum().alias("buy_chips"),
        )
        .sort("quarter")
    )
    budget = config.get("capex_budget_usd")
    return spend.with_columns(
        pl.lit(budget, dtype=pl.Float64).alias("budget_usd"),
        (pl.col("capex_usd") / budget if budget else pl.lit(None, dtype=pl.Float64)).alias(
            "budget_used"
        ),
    )


def _power(
    plan: pl.DataFrame, book: pl.DataFrame, catalog: pl.DataFrame, config: Mapping[str, Any]
) -> pl.DataFrame:
    watts = book.select("accelerator", "region", "pue").join(
        catalog.select("accelerator", "power_w"), on="accelerator", how="left"
    )
    limits: dict[str, float] = dict(config.get("power_mw") or {})
    frame = (
        plan.join(watts, on=["accelerator", "region"], how="left")
        .group_by("region", "quarter")
        .agg(
            (
                (pl.col("installed") + pl.col("on_order") + pl.col("landed_chips"))
                * pl.col("power_w").fill_null(0.0)
                * pl.col("pue").fill_null(1.0)
                / 1e6
            )
            .sum()
            .alias("power_mw")
        )
        .sort("region", "quarter")
    )
    return frame.with_columns(
        pl.col("region")
        .replace_strict(limits, default=None, return_dtype=pl.Float64)
        .alias("limit_mw")
    ).with_columns((pl.col("power_mw") / pl.col("limit_mw")).alias("limit_used"))


def _binding_limits(plan_run: RunInfo) -> pl.DataFrame:
    limits = plan_run.read("limits")
    return limits.filter(pl.col("binding")) if limits.height else limits


def _reclaim(ws: Workspace) -> tuple[pl.DataFrame, RunInfo | None]:
    runs = ws.runs("reclaim")
    if not runs:
        return pl.DataFrame(), None
    run = runs[-1]
    table = run.read("reclaim").filter(pl.col("reclaimable_chips") > 0)
    return (
        table.select(
            "rank",
            "team",
            "accelerator",
            "region",
            "allocated_chips",
            "used_p95_chips",
            "recommended_chips",
            "reclaimable_chips",
            "annual_savings_usd",
            "risk",
        ).sort("rank"),
        run,
    )


def _prices(book: pl.DataFrame, catalog: pl.DataFrame) -> pl.DataFrame:
    owned = owned_cost(book, catalog).select("accelerator", "region", "owned_usd_per_chip_hour")
    return (
        book.select("accelerator", "region", "on_demand_usd_per_hour", "capex_usd", "as_of")
        .join(owned, on=["accelerator", "region"], how="left")
        .sort("accelerator", "region")
    )


# --------------------------------------------------------------------------------------
# Forecast accountability
# --------------------------------------------------------------------------------------
def _daily_demand_by_accelerator(usage: pl.DataFrame) -> pl.DataFrame:
    value = pl.col("chip_hours_used") + pl.col("chip_hours_queued").fill_null(0.0)
    # Rounded to a micro-chip: a parallel float sum differs in its last bits from run to
    # run, enough to flip a model choice made on information criteria.
    return usage.group_by("accelerator", pl.col("date").alias("ds")).agg(
        (value.sum() / HOURS_PER_DAY).round(6).alias("y")
    )


def _accountability_quarter(quarter: str, usage: pl.DataFrame) -> str | None:
    """The latest quarter before ``quarter`` whose every day has usage data."""
    if usage.height == 0:
        return None
    first, last = usage["date"].min(), usage["date"].max()
    assert isinstance(first, date) and isinstance(last, date)
    candidate = _previous_quarter(quarter)
    while quarter_start(candidate) > first:
        if quarter_end(candidate) <= last:
            return candidate
        candidate = _previous_quarter(candidate)
    return None


def _stored_forecast(ws: Workspace, start: date, end: date) -> tuple[pl.DataFrame, RunInfo] | None:
    """Accelerator forecasts of the latest forecast run made before ``start`` covering ``end``."""
    for run in reversed(ws.runs("forecast")):
        if "forecast" not in run.outputs():
            continue
        rows = run.read("forecast").filter(pl.col("level") == "accelerator")
        if rows.height == 0:
            continue
        first, last = rows["ds"].min(), rows["ds"].max()
        assert isinstance(first, date) and isinstance(last, date)
        if first <= start and last >= end:
            return rows.filter(pl.col("ds").is_between(start, end)), run
    return None


def _forecast_at_cutoff(usage: pl.DataFrame, start: date, end: date, seed: int) -> pl.DataFrame:
    """Accelerator forecasts made now from the usage before ``start`` (fast models)."""
    daily = _daily_demand_by_accelerator(usage.filter(pl.col("date") < start))
    cutoff = start - timedelta(days=1)
    spans = daily.group_by("accelerator").agg(pl.col("ds").min().alias("first"))
    # Young series (under two backtest windows of history) cannot be scored fairly.
    old_enough = spans.filter(pl.col("first") <= cutoff - timedelta(days=2 * 91 + 28))
    grid = old_enough.with_columns(
        pl.date_ranges(pl.col("first"), pl.lit(cutoff), "1d").alias("ds")
    ).explode("ds")
    frame = (
        grid.join(daily, on=["accelerator", "ds"], how="left")
        .select(
            pl.concat_str(pl.lit("accelerator="), pl.col("accelerator")).alias("series_id"),
            "ds",
            pl.col("y").fill_null(0.0),
        )
        .sort("series_id", "ds")
    )
    settings = ForecastSettings(
        horizon=(end - cutoff).days,
        models=ACCOUNTABILITY_MODELS,
        windows=2,
        step=91,
        reconcile="none",
        seed=seed,
        workers=1,
        sample_paths=100,
    )
    result = run_series_engine(frame, settings, freq="1d")
    return result.forecast.with_columns(
        pl.col("series_id").str.strip_prefix("accelerator=").alias("accelerator"),
        pl.col("ds").cast(pl.Date),
    ).filter(pl.col("ds").is_between(start, end))


def _accountability(
    ws: Workspace, quarter: str, usage: pl.DataFrame
) -> tuple[pl.DataFrame, str, str | None, dict[str, Any]]:
    target = _accountability_quarter(quarter, usage)
    if target is None:
        empty = pl.DataFrame(schema={"accelerator": pl.String})
        return empty, "No quarter before this one has complete usage to score.", None, {}
    start, end = quarter_start(target), quarter_end(target)
    days = (end - start).days + 1
    stored = _stored_forecast(ws, start, end)
    if stored is not None:
        rows, run = stored
        source_run: str | None = run.run_id
        how = f"forecast run {run.run_id} (cutoff before {start:%Y-%m-%d})"
        settings: dict[str, Any] = {"source": "run", "run": run.run_id}
    else:
        rows = _forecast_at_cutoff(usage, start, end, seed=0)
        source_run = None
        how = (
            f"a forecast made for this report from the usage up to {start - timedelta(days=1)} "
            f"with the fast models ({', '.join(ACCOUNTABILITY_MODELS)}; no stored forecast run "
            "has that cutoff)"
        )
        settings = {
            "source": "made at cutoff",
            "cutoff": f"{start - timedelta(days=1)}",
            "models": list(ACCOUNTABILITY_MODELS),
            "seed": 0,
        }
    forecast = rows.group_by("accelerator").agg(
        (pl.col("mean").sum() / days).alias("forecast_mean_chips"),
        (pl.col("p05").sum() / days).alias("forecast_p05_chips"),
        (pl.col("p95").sum() / days).alias("forecast_p95_chips"),
    )
    actual = (
        _daily_demand_by_accelerator(usage.filter(pl.col("date").is_between(start, end)))
        .group_by("accelerator")
        .agg((pl.col("y").sum() / days).alias("actual_mean_chips"))
    )
    table = (
        forecast.join(actual, on="accelerator", how="left")
        .with_columns(pl.col("actual_mean_chips").fill_null(0.0))
        .with_columns(
            (pl.col("forecast_mean_chips") - pl.col("actual_mean_chips")).alias("error_chips"),
        )
        .with_columns(
            pl.when(pl.col("actual_mean_chips") > 0)
            .then(pl.col("error_chips") / pl.col("actual_mean_chips"))
            .alias("error_share"),
            pl.col("actual_mean_chips")
            .is_between(pl.col("forecast_p05_chips"), pl.col("forecast_p95_chips"))
            .alias("within_p05_p95"),
        )
        .with_columns(pl.lit(target).alias("quarter"))
        .sort("accelerator")
    )
    total_actual = float(table["actual_mean_chips"].sum())
    wape = float(table["error_chips"].abs().sum()) / total_actual if total_actual else 0.0
    note = (
        f"{target} (the latest quarter with complete usage), average daily demand (used + "
        f"queued chips) forecast by {how}, against what happened. Fleet-wide weighted absolute "
        f"error {wape:.1%}; actual within the forecast's 5-95% range for "
        f"{int(table['within_p05_p95'].sum())} of {table.height} accelerators."
    )
    settings.update({"quarter": target, "wape": wape})
    return table, note, source_run, settings


# --------------------------------------------------------------------------------------
# What changed
# --------------------------------------------------------------------------------------
def _first_common_quarter(quarter: str, now: pl.DataFrame, before: pl.DataFrame) -> str | None:
    common = sorted(set(now["quarter"].to_list()) & set(before["quarter"].to_list()))
    if not common:
        return None
    return quarter if quarter in common else common[0]


def _event_ids(events: pl.DataFrame, accelerator: str) -> set[str]:
    if events.height == 0:
        return set()
    return set(events.filter(pl.col("accelerator") == accelerator)["event_id"].to_list())


def _changes(
    quarter: str,
    previous: RunInfo | None,
    demand: pl.DataFrame,
    events: pl.DataFrame,
    plan: pl.DataFrame,
    prices: pl.DataFrame,
    config: Mapping[str, Any],
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, str]:
    empty = pl.DataFrame()
    if previous is None:
        return empty, empty, empty, "First report: there is no earlier report to compare with."
    before_config = previous.manifest.get("config", {})
    old_demand = previous.read("demand_outlook")
    old_events = previous.read("events")
    old_plan = previous.read("plan")
    old_prices = previous.read("prices")
    compared = _first_common_quarter(quarter, demand, old_demand)
    note = (
        f"Against report run {previous.run_id} ({before_config.get('quarter')}, plan run "
        f"{before_config.get('plan_run')}, data through {before_config.get('history_end')})."
    )
    # Demand: peak weekly demand of the compared quarter, per accelerator.
    demand_rows: list[dict[str, Any]] = []
    if compared is not None:
        now_q = demand.filter(pl.col("quarter") == compared)
        old_q = old_demand.filter(pl.col("quarter") == compared)
        joined = now_q.join(old_q, on="accelerator", how="full", suffix="_before", coalesce=True)
        for row in joined.sort("accelerator").iter_rows(named=True):
            accelerator = row["accelerator"]
            now_p50 = row.get("peak_p50_chips") or 0.0
            old_p50 = row.get("peak_p50_chips_before") or 0.0
            causes = []
            if before_config.get("history_end") != config.get("history_end"):
                causes.append(
                    f"data through {config.get('history_end')} (was "
                    f"{before_config.get('history_end')})"
                )
            added = _event_ids(events, accelerator) - _event_ids(old_events, accelerator)
            dropped = _event_ids(old_events, accelerator) - _event_ids(events, accelerator)
            if added:
                causes.append("events added: " + ", ".join(sorted(added)))
            if dropped:
                causes.append("events gone: " + ", ".join(sorted(dropped)))
            if before_config.get("forecast_run") != config.get("forecast_run"):
                causes.append("new forecast run")
            demand_rows.append(
                {
                    "accelerator": accelerator,
                    "quarter": compared,
                    "peak_p50_before": old_p50,
                    "peak_p50_now": now_p50,
                    "change_chips": now_p50 - old_p50,
                    "cause": "; ".join(causes) or "unchanged inputs",
                }
            )
    changes_demand = pl.DataFrame(
        demand_rows,
        schema={
            "accelerator": pl.String,
            "quarter": pl.String,
            "peak_p50_before": pl.Float64,
            "peak_p50_now": pl.Float64,
            "change_chips": pl.Float64,
            "cause": pl.String,
        },
    )
    # Plan: buys and cost over the quarters both plans cover, per pool.
    common = sorted(set(plan["quarter"].to_list()) & set(old_plan["quarter"].to_list()))
    keys = ["accelerator", "region"]

    def totals(frame: pl.DataFrame) -> pl.DataFrame:
        return (
            frame.filter(pl.col("quarter").is_in(common))
            .group_by(keys)
            .agg(
                pl.col("buy_chips").sum(),
                pl.col("cost_cents").sum(),
                pl.col("demand_p95").max(),
            )
        )

    price_now = prices.select(*keys, "owned_usd_per_chip_hour", "on_demand_usd_per_hour")
    price_old = old_prices.select(*keys, "owned_usd_per_chip_hour", "on_demand_usd_per_hour")
    price_join = price_now.join(price_old, on=keys, how="full", suffix="_before", coalesce=True)
    plan_join = totals(plan).join(
        totals(old_plan), on=keys, how="full", suffix="_before", coalesce=True
    )
    settings_changed = [
        name
        for name in ("service_level", "capex_budget_usd", "power_mw", "fungible", "method")
        if before_config.get("plan_config", {}).get(name) != config.get("plan_config", {}).get(name)
    ]
    plan_rows: list[dict[str, Any]] = []
    price_by_pool = {(r["accelerator"], r["region"]): r for r in price_join.iter_rows(named=True)}
    for row in plan_join.sort(keys).iter_rows(named=True):
        pool = (row["accelerator"], row["region"])
        causes = []
        p95_now, p95_old = row.get("demand_p95") or 0.0, row.get("demand_p95_before") or 0.0
        if abs(p95_now - p95_old) >= 0.5:
            causes.append(f"peak demand p95 {p95_now - p95_old:+,.0f} chips")
        price = price_by_pool.get(pool, {})
        if (price.get("owned_usd_per_chip_hour") or 0.0) != (
            price.get("owned_usd_per_chip_hour_before") or 0.0
        ):
            causes.append("owned cost changed")
        if settings_changed:
            causes.append("plan settings changed: " + ", ".join(settings_changed))
        buy_now, buy_old = row.get("buy_chips") or 0, row.get("buy_chips_before") or 0
        cost_now, cost_old = row.get("cost_cents") or 0, row.get("cost_cents_before") or 0
        if buy_now == buy_old and cost_now == cost_old:
            continue
        plan_rows.append(
            {
                "accelerator": pool[0],
                "region": pool[1],
                "buy_chips_before": int(buy_old),
                "buy_chips_now": int(buy_now),
                "cost_cents_before": int(cost_old),
                "cost_cents_now": int(cost_now),
                "cause": "; ".join(causes) or "solver tie-break (same inputs)",
            }
        )
    changes_plan = pl.DataFrame(
        plan_rows,
        schema={
            "accelerator": pl.String,
            "region": pl.String,
            "buy_chips_before": pl.Int64,
            "buy_chips_now": pl.Int64,
            "cost_cents_before": pl.Int64,
            "cost_cents_now": pl.Int64,
            "cause": pl.String,
        },
    )
    as_of_before = before_config.get("price_book_as_of")
    price_rows: list[dict[str, Any]] = []
    for row in price_join.sort(keys).iter_rows(named=True):
        owned_now = row.get("owned_usd_per_chip_hour")
        owned_old = row.get("owned_usd_per_chip_hour_before")
        od_now = row.get("on_demand_usd_per_hour")
        od_old = row.get("on_demand_usd_per_hour_before")
        if owned_now == owned_old and od_now == od_old:
            continue
        price_rows.append(
            {
                "accelerator": row["accelerator"],
                "region": row["region"],
                "owned_before": owned_old,
                "owned_now": owned_now,
                "on_demand_before": od_old,
                "on_demand_now": od_now,
                "cause": f"price book as of {config.get('price_book_as_of')} (was {as_of_before})",
            }
        )
    changes_prices = pl.DataFrame(
        price_rows,
        schema={
            "accelerator": pl.String,
            "region": pl.String,
            "owned_before": pl.Float64,
            "owned_now": pl.Float64,
            "on_demand_before": pl.Float64,
            "on_demand_now": pl.Float64,
            "cause": pl.String,
        },
    )
    return changes_demand, changes_plan, changes_prices, note


# --------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------
def _summary(
    quarter: str,
    plan: pl.DataFrame,
    budget: pl.DataFrame,
    reclaim: pl.DataFrame,
    accountability: pl.DataFrame,
) -> tuple[list[str], dict[str, Any]]:
    rows = plan.filter(pl.col("quarter") == quarter)
    buy = int(rows["buy_chips"].sum())
    buy_pools = rows.filter(pl.col("buy_chips") > 0)
    capex_row = budget.filter(pl.col("quarter") == quarter)
    capex = float(capex_row["capex_usd"].sum()) if capex_row.height else 0.0
    commit_1y = float(rows["commit_1y_chips"].sum())
    commit_3y = float(rows["commit_3y_chips"].sum())
    burst = float(rows["burst_mean"].sum())
    burst_max = float(rows["burst_max"].sum())
    cost_quarter = int(rows["cost_cents"].sum())
    cost_total = int(plan["cost_cents"].sum())
    quarters = plan["quarter"].n_unique()
    short = rows.filter(pl.col("shortfall_probability") > _SHORT_RISK).sort(
        "shortfall_probability", descending=True
    )
    unmet = float(rows["unmet_mean"].sum())
    facts: dict[str, Any] = {
        "buy_chips": buy,
        "buy_pools": buy_pools.height,
        "capex_usd": capex,
        "commit_1y_chips": commit_1y,
        "commit_3y_chips": commit_3y,
        "burst_mean_chips": burst,
        "cost_quarter_cents": cost_quarter,
        "cost_horizon_cents": cost_total,
        "horizon_quarters": quarters,
        "pools_at_risk": short.height,
        "unmet_mean_chips": unmet,
    }
    lines = [
        f"Buy {buy:,} chips in {quarter} across {buy_pools.height} pools "
        f"(capex {format_usd(round(capex * 100))}).",
        f"Commit {commit_1y + commit_3y:,.0f} chips to cloud (1-year {commit_1y:,.0f}, "
        f"3-year {commit_3y:,.0f}); rent {burst:,.0f} chips on demand on average "
        f"(up to {burst_max:,.0f} in the worst scenarios).",
        f"Expected cost of {quarter}: {format_usd(cost_quarter)}; over the "
        f"{quarters} quarters planned: {format_usd(cost_total)}.",
    ]
    if short.height:
        worst = short.row(0, named=True)
        lines.append(
            f"Risk that remains: {short.height} pools are short in more than "
            f"{_SHORT_RISK:.0%} of scenarios in {quarter} ({unmet:,.0f} chips expected unmet "
            f"in all); the worst is {worst['accelerator']} {worst['region']} at "
            f"{worst['shortfall_probability']:.0%} (binding: {worst['binding']})."
        )
    else:
        lines.append(
            f"Risk that remains: no pool is short in more than {_SHORT_RISK:.0%} of scenarios "
            f"in {quarter} ({unmet:,.0f} chips expected unmet in all)."
        )
    if reclaim.height:
        chips = float(reclaim["reclaimable_chips"].sum())
        savings = reclaim["annual_savings_usd"].sum()
        facts.update({"reclaimable_chips": chips, "reclaim_savings_usd": savings})
        lines.append(
            f"Reclaim {chips:,.0f} allocated chips teams do not need: "
            f"{format_usd(round(float(savings) * 100))} a year."
        )
    if accountability.height:
        actual = float(accountability["actual_mean_chips"].sum())
        error = float(accountability["error_chips"].abs().sum())
        if actual > 0:
            facts["accountability_wape"] = error / actual
            lines.append(
                f"Last scored quarter ({accountability['quarter'][0]}): the forecast was off by "
                f"{error / actual:.1%} of demand (weighted absolute error)."
            )
    return lines, facts


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------
def _digest(payload: Mapping[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def build_quarterly(
    ws: Workspace,
    quarter: str,
    *,
    plan_run: str | None = None,
    template_sha256: str = "",
    generated_at: datetime | None = None,
) -> QuarterlyReport:
    """The quarterly report of ``quarter`` from a plan run (default: the latest).

    Raises :class:`WorkbenchError` when there is no plan run, or the plan does not cover the
    quarter, naming the command to run.
    """
    quarter = parse_quarter(quarter)
    ws.require()
    plan_info = _plan_run(ws, plan_run)
    plan = plan_info.read("plan").sort("accelerator", "region", "quarter")
    covered = sorted(set(plan["quarter"].to_list()))
    if quarter not in covered:
        raise WorkbenchError(
            f"plan run {plan_info.run_id} covers {covered[0]} to {covered[-1]}, not {quarter}",
            field="--quarter",
            fix=f"pick a quarter from {covered[0]} to {covered[-1]}, or run 'workbench plan' "
            "for a plan that covers it",
        )
    plan_config = dict(plan_info.manifest.get("config", {}))
    forecast_info = ws.run(str(plan_config["forecast_run"]))
    book = ws.read_table("price_book")
    catalog = ws.read_table("sku_catalog")
    usage = ws.read_table("usage_daily")
    last_day = usage["date"].max() if usage.height else None
    history_end = last_day if isinstance(last_day, date) else None

    demand = _demand_outlook(forecast_info.read("planning"))
    fan = _fan(forecast_info)
    events = _events(forecast_info, ws.read_table("events"))
    budget = _budget(plan, book, plan_config)
    power = _power(plan, book, catalog, plan_config)
    reclaim, reclaim_info = _reclaim(ws)
    prices = _prices(book, catalog)
    accountability, accountability_note, accountability_run, accountability_settings = (
        _accountability(ws, quarter, usage)
    )
    as_of = sorted({f"{d}" for d in book["as_of"].to_list()}) if book.height else []
    sources = sorted(set(book["source"].to_list())) if book.height else []
    config: dict[str, Any] = {
        "report": "quarterly",
        "quarter": quarter,
        "plan_run": plan_info.run_id,
        "forecast_run": forecast_info.run_id,
        "reclaim_run": reclaim_info.run_id if reclaim_info else None,
        "history_end": f"{history_end}" if history_end else None,
        "price_book_as_of": ", ".join(as_of),
        "plan_config": plan_config,
        "accountability": accountability_settings,
    }
    previous = previous_report(ws, plan_info.run_id)
    changes_demand, changes_plan, changes_prices, changes_note = _changes(
        quarter, previous, demand, events, plan, prices, config
    )
    summary, facts = _summary(quarter, plan, budget, reclaim, accountability)
    service_level = float(plan_config.get("service_level", 0.95))
    assumptions = [
        ("Price book", f"as of {', '.join(as_of) or 'n/a'}: {'; '.join(sources) or 'n/a'}"),
        ("Price book table SHA-256", _table_digest(ws, "price_book") or "n/a"),
        ("Service level", f"{service_level:.0%} of scenarios served in full"),
        (
            "Unmet-demand penalty",
            f"each pool's cheapest here-and-now price / (1 - {service_level:g}), at least "
            "1.5x its on-demand price, per chip-hour",
        ),
        (
            "Burst",
            f"on demand up to {float(plan_config.get('burst_cap_share', 0.25)):.0%} of the "
            f"pool's healthy chips, priced for "
            f"{float(plan_config.get('burst_hours_share', 1.0)):.0%} of the quarter's hours",
        ),
        (
            "Limits",
            "capex budget "
            + (
                format_usd(round(float(plan_config["capex_budget_usd"]) * 100)) + " per quarter"
                if plan_config.get("capex_budget_usd")
                else "none"
            )
            + "; power "
            + (
                ", ".join(f"{k} {v:g} MW" for k, v in sorted(plan_config["power_mw"].items()))
                if plan_config.get("power_mw")
                else "none"
            ),
        ),
        (
            "Forecast",
            f"run {forecast_info.run_id}: models "
            f"{', '.join(forecast_info.manifest.get('config', {}).get('models', []))}, "
            f"{forecast_info.manifest.get('config', {}).get('horizon')} days, data through "
            f"{history_end}; quarters beyond it extrapolated: "
            f"{', '.join(plan_config.get('extrapolated_quarters', [])) or 'none'}",
        ),
        ("Solver", f"HiGHS {plan_config.get('method', 'milp')}"),
    ]
    inputs: dict[str, str | None] = {
        "plan": plan_info.run_id,
        "forecast": forecast_info.run_id,
        "reclaim": reclaim_info.run_id if reclaim_info else None,
        "accountability forecast": accountability_run,
        "previous report": previous.run_id if previous else None,
    }
    digest_payload = {
        "config": config,
        "manifests": {
            name: _manifest_digest(ws.run(run_id))
            for name, run_id in sorted(inputs.items())
            if run_id
        },
        "tables": {
            name: _table_digest(ws, name)
            for name in ("price_book", "sku_catalog", "events", "usage_daily", "inventory")
        },
        "template": template_sha256,
    }
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return QuarterlyReport(
        quarter=quarter,
        generated_at=generated,
        inputs=inputs,
        manifest_sha256=_digest(digest_payload),
        summary=summary,
        facts=facts,
        assumptions=assumptions,
        demand=demand,
        fan=fan,
        events=events,
        plan=plan,
        budget=budget,
        power=power,
        limits=_binding_limits(plan_info),
        reclaim=reclaim,
        accountability=accountability,
        accountability_note=accountability_note,
        changes_demand=changes_demand,
        changes_plan=changes_plan,
        changes_prices=changes_prices,
        changes_note=changes_note,
        prices=prices,
        config={**config, "inputs": inputs},
        fleet_accelerators=tuple(
            sorted(
                {str(a) for a in catalog["accelerator"].drop_nulls().to_list()}
                | {str(a) for a in usage["accelerator"].drop_nulls().unique().to_list()}
            )
        ),
    )
