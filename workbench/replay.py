"""Decision replay: following the plan against perfect foresight and the usual rule.

For each of the last ``quarters`` quarters of history, at the quarter's first day, three
policies decide with what they could know then, and the quarter's real demand is played
against what each one holds. Invariants:

* Every policy starts from the same fleet: the inventory snapshot on or before the first
  decision day, plus the real orders placed before it (landing on their real delivery
  day). Real orders placed during the replay are left out: the policies decide instead.
* **plan**: a fleet forecast (fast models) from usage up to the day before and the events
  known by then (those starting within ``event_notice_days``), its demand scenarios, then
  :func:`workbench.procurement.solve_plan` over ``plan_quarters``, later commitments as
  recourse (``commitment_recourse``); only the first quarter's decisions are carried out
  (purchases land after their lead time, commitments run their term), and the next
  quarter plans again (a rolling horizon). With ``track_record``, each pool's scenarios are
  first scaled by how far the scenario medians of the plan's past decisions missed the
  observed peaks of the quarters already over (:func:`track_record_scale`).
* **perfect foresight**: the same optimization, given the real peak weekly demand of the
  coming quarters as its one scenario.
* **rule**: "last four quarters' peak, plus growth, plus 20 percent": at each decision, buy
  lots so that owned healthy chips when a purchase lands reach the highest peak weekly
  demand of the last four quarters x (1 + last year's growth of that peak x the quarters
  ahead / 4) x 1.2; no commitments.
* Scoring is daily: supply = owned healthy chips + commitments; a shortfall is burst on
  demand up to the pool's burst cap (paid per chip-hour used), the rest is unmet. Cost =
  owned chips (every TCO component, per installed chip-hour) + commitments + burst.
  Demand is the generator's true unconstrained demand when given (observed used + queued
  is censored by the real fleet's capacity), else used + queued.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.forecasting import ForecastSettings, forecast_fleet
from workbench.planning_inputs import (
    InputSettings,
    next_quarters,
    pool_shortfall_hours_shares,
    pool_specs,
    quarter_of,
    quarter_start,
    quarterly_peaks,
    scenario_demand,
    shortfall_hours_share,
)
from workbench.procurement import PlanInputs, PlanLimits, PoolSpec, solve_plan
from workbench.store import Workspace

__all__ = [
    "POLICIES",
    "ReplayResult",
    "ReplaySettings",
    "comparison_markdown",
    "replay",
    "replay_workspace",
    "track_record_scale",
]

POLICIES: tuple[str, ...] = ("plan", "perfect foresight", "rule")
_POOL = ("accelerator", "region")


@dataclass(frozen=True)
class ReplaySettings:
    """What the replay does."""

    quarters: int = 8
    plan_quarters: int = 4
    """Quarters each decision plans over (the longest lead time plus one)."""
    models: tuple[str, ...] = ("seasonal_naive", "naive2", "theta", "ets")
    windows: int = 2
    reconcile: str = "mint_shrink"
    """How each decision's forecast is reconciled: the forecast's own default (MinT), so the
    replay judges the forecast a planner gets. A decision whose history is too short for a
    backtest window falls back to structural weights. ``none`` plans each pool on its own
    forecast (before: $173.7M against $166.4M on the sample fleet, see the README)."""
    sample_paths: int = 200
    service_level: float = 0.95
    rule_buffer: float = 0.2
    burst_cap_share: float = 0.25
    burst_hours_share: float | None = None
    """Share of a quarter's hours a shortfall at the peak lasts, as the optimizer prices burst
    and unmet chips (plan and foresight); ``None``: measured at each decision from the
    demand seen so far."""
    shortfall_share_per_pool: bool = True
    """Measure the share per pool (shrunk toward the fleet's) instead of one for the fleet:
    a training pool's peak is a campaign of a few weeks, a serving pool runs near its peak
    all quarter. Only when the share is measured (``burst_hours_share`` is ``None``)."""
    commitment_recourse: bool = True
    """Plan with later commitments as recourse (:attr:`PlanLimits.commitment_recourse`): only
    the first quarter's decisions are carried out, the next quarter decides again."""
    track_record: bool = True
    """Scale each pool's scenarios by the plan's own track record in that pool (how far past
    decisions' scenario medians missed the observed peaks, shrunk toward the fleet's): a
    forecast that keeps missing a pool the same way is corrected by what the planner saw."""
    seed: int = 0
    workers: int | None = 1
    event_notice_days: int = 91
    """How long before it starts an event (a launch, a campaign) is known to the planner:
    launches are on the roadmap a quarter ahead; 0 hides every event not yet started."""

    def __post_init__(self) -> None:
        from workbench.hierarchy import METHODS

        if self.reconcile not in ("none", *METHODS):
            raise WorkbenchError(
                f"unknown reconciliation '{self.reconcile}'",
                field="reconcile",
                fix=f"use none or {', '.join(METHODS)}",
            )

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly settings."""
        return asdict(self)


@dataclass(frozen=True)
class ReplayResult:
    """The comparison (one row per policy) and every policy's quarters."""

    comparison: pl.DataFrame
    per_quarter: pl.DataFrame
    scored_on: str
    notes: tuple[str, ...]


@dataclass
class _Fleet:
    """One policy's fleet over the replay: owned chips and commitments per pool and quarter."""

    owned: np.ndarray
    commit_chips: np.ndarray
    commit_usd_per_hour: np.ndarray  # committed chips x their price, per quarter


def _daily_demand(frame: pl.DataFrame, chip_hours: pl.Expr) -> pl.DataFrame:
    return frame.group_by(*_POOL, pl.col("date").alias("ds")).agg(
        (chip_hours.sum() / 24.0).alias("y")
    )


def replay(
    usage_daily: pl.DataFrame,
    inventory: pl.DataFrame,
    orders: pl.DataFrame | None,
    price_book: pl.DataFrame,
    sku_catalog: pl.DataFrame,
    events: pl.DataFrame | None,
    settings: ReplaySettings | None = None,
    *,
    truth_demand: pl.DataFrame | None = None,
    on_progress: Any = None,
) -> ReplayResult:
    """Replay the last quarters of history with the three :data:`POLICIES`."""
    settings = settings or ReplaySettings()
    notes: list[str] = []
    observed = _daily_demand(
        usage_daily, pl.col("chip_hours_used") + pl.col("chip_hours_queued").fill_null(0.0)
    )
    last_day: date = usage_daily["date"].max()  # type: ignore[assignment]
    if truth_demand is not None:
        real = _daily_demand(truth_demand, pl.col("demand_chip_hours"))
        scored_on = "true unconstrained demand (generator truth)"
    else:
        real = observed
        scored_on = "observed used + queued (censored by the real fleet's capacity)"
    # Decision days: the starts of the last whole quarters of history.
    end_quarter = quarter_of(last_day + timedelta(days=1))
    first_q = next_quarters(end_quarter, 1)[0]
    year, q = int(first_q[:4]), int(first_q[-1]) - 1 - settings.quarters
    first = f"{year + q // 4}Q{q % 4 + 1}"
    decision_quarters = next_quarters(first, settings.quarters)
    horizon_q = settings.quarters + settings.plan_quarters
    all_quarters = next_quarters(first, horizon_q)
    start = quarter_start(first)
    pools = sorted(
        {
            (str(a), str(r))
            for a, r in observed.filter(pl.col("ds") < start, pl.col("y") > 0)
            .select(_POOL)
            .unique()
            .iter_rows()
        }
        & {(str(a), str(r)) for a, r in price_book.select(_POOL).iter_rows()}
    )
    if not pools:
        raise WorkbenchError(
            "no pool has both history before the replay and a price",
            fix="replay fewer quarters (--quarters) or ingest a price book",
        )
    index = {p: i for i, p in enumerate(pools)}
    n_p = len(pools)
    snapshot = inventory.filter(pl.col("date") <= start)
    latest = snapshot.filter(pl.col("date") == pl.col("date").max().over(_POOL))
    installed0 = np.zeros(n_p)
    healthy = np.ones(n_p)
    for acc, reg, inst, heal in latest.select(
        *_POOL, "installed_chips", "healthy_chips"
    ).iter_rows():
        if (acc, reg) in index and inst:
            installed0[index[(acc, reg)]] = inst
            healthy[index[(acc, reg)]] = heal / inst
    specs = pool_specs(
        pools,
        price_book,
        sku_catalog,
        {p: installed0[i] * healthy[i] for p, i in index.items()},
        settings.burst_cap_share,
    )
    pipeline = np.zeros((n_p, horizon_q))
    if orders is not None and orders.height:
        for acc, reg, qty, ordered, expected, delivered in orders.select(
            *_POOL, "quantity", "ordered_on", "expected_on", "delivered_on"
        ).iter_rows():
            if (acc, reg) not in index or ordered >= start:
                continue
            lands = delivered or expected
            if lands <= start:
                continue  # already in the snapshot
            k = next((i for i, qq in enumerate(all_quarters) if quarter_start(qq) >= lands), None)
            if k is not None:
                pipeline[index[(acc, reg)], k:] += qty
    peaks_real = _peaks_matrix(real, pools, all_quarters)
    fleets = {
        name: _Fleet(
            owned=np.repeat(installed0[:, None], horizon_q, axis=1) + pipeline,
            commit_chips=np.zeros((n_p, horizon_q)),
            commit_usd_per_hour=np.zeros((n_p, horizon_q)),
        )
        for name in POLICIES
    }
    timings: dict[str, float] = {"forecast": 0.0, "solve": 0.0}
    limits = PlanLimits(
        service_level=settings.service_level, commitment_recourse=settings.commitment_recourse
    )
    # The plan's track record: each decision's scenario medians (decision, pool, quarter),
    # against the observed peaks (used + queued: what the planner sees, not the truth).
    medians = np.full((settings.quarters, n_p, horizon_q), np.nan)
    peaks_seen = _peaks_matrix(observed, pools, all_quarters)
    scale = np.ones(n_p)
    fallbacks: list[tuple[date, str]] = []  # decisions reconciled otherwise than asked, how
    for k, quarter in enumerate(decision_quarters):
        day = quarter_start(quarter)
        window = all_quarters[k : k + settings.plan_quarters]
        began = time.perf_counter()
        scenarios = _forecast_scenarios(
            usage_daily.filter(pl.col("date") < day),
            events,
            sku_catalog,
            settings,
            day,
            fallbacks,
        )
        timings["forecast"] += time.perf_counter() - began
        began = time.perf_counter()
        share = settings.burst_hours_share
        decision_specs = specs
        if share is None:
            seen = observed.filter(pl.col("ds") < day)
            share = shortfall_hours_share(seen)
            if settings.shortfall_share_per_pool:
                shares = pool_shortfall_hours_shares(seen)
                decision_specs = tuple(
                    replace(spec, shortfall_hours_share=shares.get(pool))
                    for spec, pool in zip(specs, pools, strict=True)
                )
        limits = replace(limits, burst_hours_share=share)
        for name in ("plan", "perfect foresight"):
            fleet = fleets[name]
            base = _inputs_for(decision_specs, fleet, healthy, k, window)
            if name == "plan":
                inputs = _with_forecast(base, scenarios)
                medians[k, :, k : k + settings.plan_quarters] = np.median(inputs.demand, axis=2)
                if settings.track_record:
                    # Only the quarters over by now: k quarters, scored by decisions before k.
                    scale = track_record_scale(medians[:k, :, :k], peaks_seen[:, :k])
                    inputs = replace(inputs, demand=inputs.demand * scale[:, None, None])
            else:
                truth_window = peaks_real[:, k : k + settings.plan_quarters]
                inputs = replace(base, demand=truth_window[:, :, None])
            result = solve_plan(inputs, limits)
            _carry_out(
                fleet,
                specs,
                result.buy_lots[:, 0],
                result.commit_1y[:, 0],
                result.commit_3y[:, 0],
                k,
            )
        timings["solve"] += time.perf_counter() - began
        _rule(
            fleets["rule"],
            specs,
            healthy,
            observed.filter(pl.col("ds") < day),
            pools,
            k,
            all_quarters,
            settings,
        )
        if on_progress is not None:
            on_progress(quarter)
    rows = []
    for name, fleet in fleets.items():
        rows.extend(_score(name, fleet, specs, healthy, real, pools, decision_quarters))
    per_quarter = pl.DataFrame(rows)
    comparison = _compare(per_quarter)
    notes.append(
        f"{len(pools)} pools with history before {start}; pools that appear later are left out"
    )
    if settings.track_record:
        notes.append(
            "track record: the last decision scaled pool scenarios by "
            + ", ".join(f"{a} {r} {x:.2f}" for (a, r), x in zip(pools, scale, strict=True))
        )
    if fallbacks:
        notes.append(
            f"reconciliation: {settings.reconcile} at {len(decision_quarters) - len(fallbacks)} "
            f"of {len(decision_quarters)} decisions; too little backtest history for it at "
            + ", ".join(f"{day} ({used})" for day, used in fallbacks)
        )
    notes.append(f"forecasting took {timings['forecast']:.0f} s, solving {timings['solve']:.0f} s")
    return ReplayResult(
        comparison=comparison, per_quarter=per_quarter, scored_on=scored_on, notes=tuple(notes)
    )


def track_record_scale(
    medians: np.ndarray, realized: np.ndarray, prior_quarters: float = 4.0
) -> np.ndarray:
    """Per pool, the factor by which past scenario medians missed the realized peaks.

    ``medians`` is (past decisions, pools, quarters over) and ``realized`` (pools, quarters
    over); NaN or non-positive values are not scored (no forecast then, or no demand yet).
    Each scored pair gives ``log(realized / median)``; a pool's mean of them counts for as
    many quarters as it has scored, the fleet's mean for ``prior_quarters`` more (a pool
    scored once is not trusted alone), and the factor is ``exp`` of that weighted mean.
    Without any scored pair every factor is 1.
    """
    n_p = realized.shape[0]
    ok = np.isfinite(medians) & (medians > 0) & (realized[None] > 0)
    if not ok.any():
        return np.ones(n_p)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(realized[None] / medians)
    fleet = float(ratio[ok].mean())
    out = np.empty(n_p)
    for p in range(n_p):
        scored = ok[:, p]
        quarters = float(scored.any(axis=0).sum())
        pool = float(ratio[:, p][scored].mean()) if quarters else 0.0
        out[p] = math.exp((quarters * pool + prior_quarters * fleet) / (quarters + prior_quarters))
    return out


def _peaks_matrix(
    daily: pl.DataFrame, pools: Sequence[tuple[str, str]], quarters: Sequence[str]
) -> np.ndarray:
    """Peak weekly demand per pool and quarter; past the data, the last known quarter's."""
    peaks = quarterly_peaks(daily)
    out = np.full((len(pools), len(quarters)), np.nan)
    index = {p: i for i, p in enumerate(pools)}
    for acc, reg, quarter, peak in peaks.select(*_POOL, "quarter", "peak_chips").iter_rows():
        if (acc, reg) in index and quarter in quarters:
            out[index[(acc, reg)], quarters.index(quarter)] = peak
    for t in range(1, len(quarters)):
        out[:, t] = np.where(np.isnan(out[:, t]), out[:, t - 1], out[:, t])
    return np.nan_to_num(out, nan=0.0)


def _forecast_scenarios(
    usage: pl.DataFrame,
    events: pl.DataFrame | None,
    catalog: pl.DataFrame,
    settings: ReplaySettings,
    day: date,
    fallbacks: list[tuple[date, str]],
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The pools' peak scenarios, planning quantiles and history of a decision's forecast.

    A decision whose forecast was reconciled otherwise than asked (too little backtest
    history for MinT) is added to ``fallbacks`` with the method used.
    """
    from workbench.executors import default_executor

    forecast_settings = ForecastSettings(
        horizon=91 * settings.plan_quarters + 7,
        models=settings.models,
        windows=settings.windows,
        step=91,
        reconcile=settings.reconcile,
        sample_paths=settings.sample_paths,
        seed=settings.seed,
        workers=settings.workers,
    )
    known_events = None
    if events is not None and events.height:
        # Launches and campaigns are planned ahead: an event is known this long before it.
        known_events = events.filter(
            pl.col("start") < day + timedelta(days=settings.event_notice_days)
        )
    result = forecast_fleet(
        usage,
        known_events,
        catalog,
        forecast_settings,
        executor=default_executor(settings.workers),
    )
    if result.reconciled_with != settings.reconcile:
        fallbacks.append((day, result.reconciled_with))
    history = result.history.filter(pl.col("level") == "pool")
    return result.scenarios, result.planning, history


def _inputs_for(
    specs: Sequence[PoolSpec],
    fleet: _Fleet,
    healthy: np.ndarray,
    k: int,
    window: Sequence[str],
) -> PlanInputs:
    n_t = len(window)
    return PlanInputs(
        quarters=tuple(window),
        pools=tuple(specs),
        installed=fleet.owned[:, k : k + n_t].copy(),
        on_order=np.zeros((len(specs), n_t)),
        healthy_ratio=healthy,
        demand=np.zeros((len(specs), n_t, 1)),
        committed=fleet.commit_chips[:, k : k + n_t].copy(),
    )


def _with_forecast(
    base: PlanInputs, forecast: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]
) -> PlanInputs:
    """``base`` with the forecast's demand scenarios on its pools and quarters (0 if none)."""
    scenarios, planning, history = forecast
    found = scenario_demand(
        scenarios, planning, history, InputSettings(horizon_quarters=len(base.quarters))
    )
    demand = np.zeros((len(base.pools), len(base.quarters), found.demand.shape[2]))
    order = {key: i for i, key in enumerate(found.pools)}
    offset = base.quarters.index(found.quarters[0]) if found.quarters[0] in base.quarters else 0
    span = len(base.quarters) - offset
    for i, pool in enumerate(base.pools):
        j = order.get((pool.accelerator, pool.region))
        if j is not None:
            demand[i, offset:] = found.demand[j, :span]
    flags = tuple(
        bool(found.extrapolated[t - offset]) if t >= offset else False
        for t in range(len(base.quarters))
    )
    return replace(base, demand=demand, extrapolated=flags)


def _carry_out(
    fleet: _Fleet,
    specs: Sequence[PoolSpec],
    lots: np.ndarray,
    commit_1y: np.ndarray,
    commit_3y: np.ndarray,
    k: int,
) -> None:
    """Carry out the first quarter's decisions: purchases land later, commitments run."""
    n_q = fleet.owned.shape[1]
    for p, spec in enumerate(specs):
        land = k + spec.lead_quarters
        if lots[p] > 0 and land < n_q:
            fleet.owned[p, land:] += lots[p] * spec.lot_chips
        for chips, term, price in (
            (commit_1y[p], 4, spec.commit_1y_usd_per_hour or 0.0),
            (commit_3y[p], 12, spec.commit_3y_usd_per_hour or 0.0),
        ):
            if chips > 1e-6:
                fleet.commit_chips[p, k : k + term] += chips
                fleet.commit_usd_per_hour[p, k : k + term] += chips * price


def _rule(
    fleet: _Fleet,
    specs: Sequence[PoolSpec],
    healthy: np.ndarray,
    observed: pl.DataFrame,
    pools: Sequence[tuple[str, str]],
    k: int,
    quarters: Sequence[str],
    settings: ReplaySettings,
) -> None:
    """Last four quarters' peak, plus growth, plus a buffer; bought in lots, no cloud."""
    peaks = quarterly_peaks(observed).filter(pl.col("weeks") >= 12)
    n_q = fleet.owned.shape[1]
    for p, key in enumerate(pools):
        values = (
            peaks.filter(pl.col("accelerator") == key[0], pl.col("region") == key[1])
            .sort("q_start")["peak_chips"]
            .to_numpy()
        )
        if values.size == 0:
            continue
        last4 = float(values[-4:].max())
        before = values[-8:-4]
        growth = last4 / float(before.max()) - 1 if before.size and before.max() > 0 else 0.0
        spec = specs[p]
        land = k + spec.lead_quarters
        if land >= n_q:
            continue
        target = (
            last4
            * (1 + max(growth, 0.0) * (spec.lead_quarters + 1) / 4)
            * (1 + settings.rule_buffer)
        )
        have = fleet.owned[p, land] * healthy[p]
        if target > have:
            lots = math.ceil((target - have) / healthy[p] / spec.lot_chips)
            fleet.owned[p, land:] += lots * spec.lot_chips
    del quarters


def _score(
    name: str,
    fleet: _Fleet,
    specs: Sequence[PoolSpec],
    healthy: np.ndarray,
    real: pl.DataFrame,
    pools: Sequence[tuple[str, str]],
    quarters: Sequence[str],
) -> list[dict[str, Any]]:
    rows = []
    for k, quarter in enumerate(quarters):
        first = quarter_start(quarter)
        last = quarter_start(next_quarters(quarter, 2)[1])
        days = (last - first).days
        daily = real.filter(pl.col("ds") >= first, pl.col("ds") < last)
        for p, key in enumerate(pools):
            spec = specs[p]
            values = daily.filter(pl.col("accelerator") == key[0], pl.col("region") == key[1])[
                "y"
            ].to_numpy()
            demand = np.zeros(days)
            demand[: values.size] = values  # missing days have no demand
            supply = fleet.owned[p, k] * healthy[p] + fleet.commit_chips[p, k]
            short = np.maximum(demand - supply, 0.0)
            burst = np.minimum(short, spec.burst_cap_chips)
            unmet = short - burst
            hours = days * 24.0
            owned_usd = fleet.owned[p, k] * spec.owned_usd_per_chip_hour * hours
            commit_usd = fleet.commit_usd_per_hour[p, k] * hours
            burst_usd = float(burst.sum()) * 24.0 * spec.on_demand_usd_per_hour
            served = float(np.minimum(demand, supply).sum()) * 24.0
            rows.append(
                {
                    "policy": name,
                    "quarter": quarter,
                    "accelerator": key[0],
                    "region": key[1],
                    "owned_chips": float(fleet.owned[p, k]),
                    "committed_chips": float(fleet.commit_chips[p, k]),
                    "demand_chip_hours": float(demand.sum()) * 24.0,
                    "unmet_chip_hours": float(unmet.sum()) * 24.0,
                    "burst_chip_hours": float(burst.sum()) * 24.0,
                    "capacity_chip_hours": supply * hours,
                    "served_chip_hours": served,
                    "owned_cost_cents": round(owned_usd * 100),
                    "commit_cost_cents": round(commit_usd * 100),
                    "burst_cost_cents": round(burst_usd * 100),
                }
            )
    return rows


def _compare(per_quarter: pl.DataFrame) -> pl.DataFrame:
    totals = (
        per_quarter.group_by("policy", maintain_order=True)
        .agg(
            pl.col("owned_cost_cents").sum(),
            pl.col("commit_cost_cents").sum(),
            pl.col("burst_cost_cents").sum(),
            pl.col("demand_chip_hours").sum(),
            pl.col("unmet_chip_hours").sum(),
            pl.col("served_chip_hours").sum(),
            pl.col("capacity_chip_hours").sum(),
        )
        .with_columns(
            (
                pl.col("owned_cost_cents")
                + pl.col("commit_cost_cents")
                + pl.col("burst_cost_cents")
            ).alias("cost_cents"),
            (pl.col("unmet_chip_hours") / pl.col("demand_chip_hours")).alias("unmet_share"),
            (pl.col("served_chip_hours") / pl.col("capacity_chip_hours")).alias("utilization"),
        )
    )
    perfect = totals.filter(pl.col("policy") == "perfect foresight")["cost_cents"][0]
    rule = totals.filter(pl.col("policy") == "rule")["cost_cents"][0]
    return totals.with_columns(
        (pl.col("cost_cents") / perfect - 1).alias("vs_perfect"),
        (pl.col("cost_cents") / rule - 1).alias("vs_rule"),
    ).select(
        "policy",
        "cost_cents",
        "owned_cost_cents",
        "commit_cost_cents",
        "burst_cost_cents",
        "demand_chip_hours",
        "unmet_chip_hours",
        "unmet_share",
        "utilization",
        "vs_perfect",
        "vs_rule",
    )


def comparison_markdown(comparison: pl.DataFrame) -> str:
    """The comparison as a Markdown table (USD, chip-hours with commas, percentages)."""
    from workbench.money import format_usd

    lines = [
        "| policy | cost | owned | commitments | burst | unmet chip-hours | unmet share "
        "| utilization | vs perfect foresight | vs rule |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in comparison.iter_rows(named=True):
        lines.append(
            f"| {row['policy']} | {format_usd(row['cost_cents'])} | "
            f"{format_usd(row['owned_cost_cents'])} | {format_usd(row['commit_cost_cents'])} | "
            f"{format_usd(row['burst_cost_cents'])} | {row['unmet_chip_hours']:,.0f} | "
            f"{row['unmet_share']:.2%} | {row['utilization']:.1%} | {row['vs_perfect']:+.1%} | "
            f"{row['vs_rule']:+.1%} |"
        )
    return "\n".join(lines) + "\n"


def replay_workspace(
    ws: Workspace, settings: ReplaySettings, *, truth_path: Path | None = None
) -> ReplayResult:
    """Replay a workspace's history; score on ``truth_path`` (true demand) when given."""
    truth = None
    if truth_path is not None:
        if not truth_path.exists():
            raise WorkbenchError("file not found", file=truth_path, fix="check --truth")
        truth = pl.read_parquet(truth_path)
    return replay(
        ws.read_table("usage_daily"),
        ws.read_table("inventory"),
        ws.read_table("orders") if ws.has_table("orders") else None,
        ws.read_table("price_book"),
        ws.read_table("sku_catalog"),
        ws.read_table("events") if ws.has_table("events") else None,
        settings,
        truth_demand=truth,
    )
