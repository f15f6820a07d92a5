"""Latent demand, capacity and censoring of the sample fleet.

Demand is simulated per series (team x accelerator x region x workload) as concurrent chips
per day: growth that roughly doubles yearly, weekly cycles (research and batch dip at
weekends, serving does not), year-end dips, step launches, multi-week training campaigns,
migrations from older to newer generations and new SKUs with weeks of history. Capacity
follows orders that planners place a lead time ahead on imperfect forecasts, some delivered
late; when a pool's demand exceeds its healthy chips, every series in it runs at the pool's
ratio and the rest waits in the queue (censoring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

from workbench.sample_fleet.fleet import (
    HISTORY_END,
    HISTORY_START,
    MIGRATIONS,
    POOLS,
    SKUS,
    TEAMS,
    Pool,
    Sku,
)

__all__ = ["FUTURE_DAYS", "Fleet", "Scale", "SeriesSpec", "simulate_fleet"]

FUTURE_DAYS = 365
"""Days of ground truth simulated past the end of history, to score forecasts against."""

_WORKLOAD_BASE_CHIPS = {"training": 110.0, "serving": 56.0, "research": 28.0, "batch": 36.0}
_WEEKEND_FACTOR = {"training": 0.93, "serving": 1.0, "research": 0.55, "batch": 0.62}
_HOLIDAY_FACTOR = {"training": 0.8, "serving": 0.97, "research": 0.5, "batch": 0.65}
_NOISE_SIGMA = {"training": 0.07, "serving": 0.03, "research": 0.11, "batch": 0.09}


@dataclass(frozen=True)
class Scale:
    """How big a sample fleet to make."""

    name: str
    team_copies: int
    demand_multiplier: float
    job_chips_factor: float
    """Job sizes are multiplied by this: fewer, bigger jobs for the same demand."""
    job_hours_factor: float
    """Job durations are multiplied by this: fewer, longer jobs."""
    metric_days: int
    compress_jobs: bool = False
    """Write ``jobs.csv.gz`` (deterministic gzip) instead of ``jobs.csv``."""

    @staticmethod
    def named(name: str) -> Scale:
        """Return the preset scale ``small``, ``medium`` or ``large``."""
        presets = {
            "small": Scale("small", 1, 1.0, 6.0, 4.0, 14, compress_jobs=True),
            "medium": Scale("medium", 2, 1.0, 1.0, 1.0, 28),
            "large": Scale("large", 3, 1.0, 1.0, 0.45, 28),
        }
        if name not in presets:
            raise ValueError(f"unknown scale '{name}': use small, medium or large")
        return presets[name]


@dataclass
class SeriesSpec:
    """One demand series and the figures its simulation drew."""

    team: str
    workload: str
    accelerator: str
    region: str
    start_index: int
    base_chips: float
    growth_per_year: float
    job_chips: int
    job_hours: float


@dataclass
class Fleet:
    """Everything the simulation decided: series, daily demand, capacity, orders, events."""

    days: np.ndarray
    """datetime64[D] days of history and simulated future."""
    history_days: int
    series: list[SeriesSpec]
    demand_chips: np.ndarray
    """(series, day) latent unconstrained concurrent chips."""
    pool_of_series: np.ndarray
    pools: list[Pool]
    installed: np.ndarray
    """(pool, day) installed chips."""
    healthy: np.ndarray
    """(pool, day) healthy chips (installed less failed and drained)."""
    run_ratio: np.ndarray
    """(pool, day) share of demand that runs: 1 unless the pool is full."""
    orders: list[dict[str, object]] = field(default_factory=list)
    events: list[dict[str, object]] = field(default_factory=list)

    @property
    def used_chips(self) -> np.ndarray:
        """(series, day) concurrent chips that ran: demand times the pool's run ratio."""
        return self.demand_chips * self.run_ratio[self.pool_of_series]


def _sku(sku_id: str) -> Sku:
    return next(s for s in SKUS if s.id == sku_id)


def _day_index(day: date) -> int:
    return (day - HISTORY_START).days


def _ramp(days: int, start: date, end: date) -> np.ndarray:
    t = np.arange(days)
    a, b = _day_index(start), _day_index(end)
    return np.clip((t - a) / max(b - a, 1), 0.0, 1.0)


def _lot(quantity: float, lot: int) -> int:
    return int(math.ceil(max(quantity, 0.0) / lot) * lot)


def simulate_fleet(scale: Scale, seed: int, *, tight_order_bias: float = 0.82) -> Fleet:
    """Simulate the sample fleet's latent demand, capacity, orders and events.

    ``tight_order_bias`` scales the orders of the two chronically under-ordered pools
    (H100 us-east4, TPU v6e us-central1): lower values leave them full more often, for
    studies of censored demand.
    """
    rng = np.random.default_rng(seed)
    n_history = (HISTORY_END - HISTORY_START).days + 1
    n_days = n_history + FUTURE_DAYS
    days = np.arange(np.datetime64(HISTORY_START), np.datetime64(HISTORY_START) + n_days)
    weekday = (days.astype("datetime64[D]").view("int64") - 4) % 7  # 0 = Monday
    month = days.astype("datetime64[M]").astype(int) % 12 + 1
    day_of_month = (days - days.astype("datetime64[M]")).astype(int) + 1
    holiday = ((month == 12) & (day_of_month >= 22)) | ((month == 1) & (day_of_month <= 2))
    years = np.arange(n_days) / 365.25
    pools = list(POOLS)
    pool_index = {(p.accelerator, p.region): i for i, p in enumerate(pools)}

    series: list[SeriesSpec] = []
    for copy in range(scale.team_copies):
        for team in TEAMS:
            name = team.name if copy == 0 else f"{team.name}-{copy + 1}"
            for workload, accelerators in team.workloads:
                for accelerator in accelerators:
                    regions = [p for p in pools if p.accelerator == accelerator]
                    count = 1 + int(rng.random() < 0.35)
                    chosen = rng.choice(len(regions), size=min(count, len(regions)), replace=False)
                    for i in sorted(chosen.tolist()):
                        series.append(_new_series(name, workload, regions[i], scale, rng))

    demand = np.zeros((len(series), n_days))
    events: list[dict[str, object]] = []
    for s, spec in enumerate(series):
        demand[s] = _series_demand(spec, days, weekday, holiday, years, rng, events)

    _apply_migrations(series, demand, pools, days, scale, rng, events)
    _add_future_events(series, demand, days, n_history, rng, events)

    pool_of_series = np.array([pool_index[(s.accelerator, s.region)] for s in series])
    installed, healthy, orders = _capacity(
        pools, pool_of_series, demand, n_history, rng, tight_order_bias
    )
    pool_demand = np.zeros((len(pools), n_days))
    np.add.at(pool_demand, pool_of_series, demand)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(pool_demand > healthy, healthy / np.maximum(pool_demand, 1e-9), 1.0)
    return Fleet(
        days=days,
        history_days=n_history,
        series=series,
        demand_chips=demand,
        pool_of_series=pool_of_series,
        pools=pools,
        installed=installed,
        healthy=healthy,
        run_ratio=ratio,
        orders=orders,
        events=events,
    )


def _new_series(
    team: str, workload: str, pool: Pool, scale: Scale, rng: np.random.Generator
) -> SeriesSpec:
    sku = _sku(pool.accelerator)
    base = _WORKLOAD_BASE_CHIPS[workload] * float(rng.lognormal(0.0, 0.45))
    base *= scale.demand_multiplier / math.sqrt(sku.perf_index)
    sizes = sku.job_chips
    if workload == "training":
        chips = sizes[-1] if rng.random() < 0.5 else sizes[-2]
        hours = 60.0
    elif workload == "serving":
        chips = sizes[1]
        hours = 120.0
    elif workload == "research":
        chips = sizes[0]
        hours = 16.0
    else:
        chips = sizes[1]
        hours = 8.0
    delay = 0
    if pool.opened > HISTORY_START:
        # Series on a new pool start within its first weeks, yet always with three weeks of
        # history left: a pool that opens just before the end (B200) must not start empty.
        room = max(min(_day_index(HISTORY_END) - _day_index(pool.opened) - 20, 60), 0)
        delay = int(rng.integers(0, 60)) * room // 60
    return SeriesSpec(
        team=team,
        workload=workload,
        accelerator=pool.accelerator,
        region=pool.region,
        start_index=_day_index(pool.opened) + delay,
        base_chips=base,
        growth_per_year=float(rng.normal(math.log(2.0), 0.18)),
        job_chips=max(1, round(chips * scale.job_chips_factor)),
        job_hours=hours * scale.job_hours_factor,
    )


def _series_demand(
    spec: SeriesSpec,
    days: np.ndarray,
    weekday: np.ndarray,
    holiday: np.ndarray,
    years: np.ndarray,
    rng: np.random.Generator,
    events: list[dict[str, object]],
) -> np.ndarray:
    n_days = len(days)
    start = spec.start_index
    level = spec.base_chips * np.exp(spec.growth_per_year * (years - years[start]))
    if start > 0:
        # A new SKU or pool ramps up over its first weeks instead of starting at full level.
        level = level * np.clip((np.arange(n_days) - start + 1) / 42.0, 0.0, 1.0)
    weekly = np.where(weekday >= 5, _WEEKEND_FACTOR[spec.workload], 1.0)
    if spec.workload == "serving":
        weekly = 1.0 + 0.02 * np.sin(2 * np.pi * weekday / 7)
    seasonal = weekly * np.where(holiday, _HOLIDAY_FACTOR[spec.workload], 1.0)
    steps = np.ones(n_days)
    extra = np.zeros(n_days)
    history_end = _day_index(HISTORY_END)
    if spec.workload == "serving":
        for _ in range(int(rng.integers(1, 3))):
            at = int(rng.integers(max(start + 30, 30), history_end - 20))
            multiplier = float(rng.uniform(1.25, 1.7))
            before = float(level[at] * steps[at])
            steps[at:] *= multiplier
            events.append(
                _event("launch", spec, days[at], None, before * (multiplier - 1), 1.0, True)
            )
    if spec.workload == "training":
        per_year = 2.2
        total_years = (history_end - start) / 365.25
        for _ in range(int(rng.poisson(per_year * max(total_years, 0.0)))):
            at = int(rng.integers(start, history_end - 10))
            length = int(rng.integers(21, 57))
            size = float(level[at] * rng.uniform(0.6, 1.4))
            extra[at : at + length] += size
            end_index = min(at + length - 1, n_days - 1)
            events.append(
                _event("training_campaign", spec, days[at], days[end_index], size, 1.0, True)
            )
    noise = np.zeros(n_days)
    sigma = _NOISE_SIGMA[spec.workload]
    shocks = rng.normal(0.0, sigma, n_days)
    for t in range(1, n_days):
        noise[t] = 0.7 * noise[t - 1] + shocks[t]
    demand = (level * steps * seasonal + extra * weekly) * np.exp(noise - sigma**2)
    demand[:start] = 0.0
    return np.maximum(demand, 0.0)


def _event(
    kind: str,
    spec: SeriesSpec,
    start: np.datetime64,
    end: np.datetime64 | None,
    chips: float,
    probability: float,
    happens: bool,
    name: str | None = None,
) -> dict[str, object]:
    label = {
        "launch": f"{spec.team} launch on {spec.accelerator}",
        "training_campaign": f"{spec.team} training campaign",
        "migration": f"{spec.team} migrates to {spec.accelerator}",
    }.get(kind, kind)
    return {
        "name": name or label,
        "kind": kind,
        "start": start.astype("datetime64[D]").item(),
        "end": None if end is None else end.astype("datetime64[D]").item(),
        "accelerator": spec.accelerator,
        "region": spec.region,
        "team": spec.team,
        "chips": round(chips, 1),
        "probability": probability,
        "happens": happens,
    }


def _apply_migrations(
    series: list[SeriesSpec],
    demand: np.ndarray,
    pools: list[Pool],
    days: np.ndarray,
    scale: Scale,
    rng: np.random.Generator,
    events: list[dict[str, object]],
) -> None:
    n_days = demand.shape[1]
    for migration in MIGRATIONS:
        ramp = _ramp(n_days, migration.start, migration.end)
        src_perf = _sku(migration.source).perf_index
        dst_perf = _sku(migration.target).perf_index
        for s, spec in enumerate(list(series)):
            if spec.accelerator != migration.source:
                continue
            moved = demand[s] * migration.share * ramp
            demand[s] -= moved
            target_pools = [p for p in pools if p.accelerator == migration.target]
            same_region = [p for p in target_pools if p.region == spec.region]
            pool = same_region[0] if same_region else target_pools[0]
            match = [
                i
                for i, other in enumerate(series)
                if (other.team, other.workload, other.accelerator, other.region)
                == (spec.team, spec.workload, pool.accelerator, pool.region)
            ]
            if match:
                t = match[0]
            else:
                new = _new_series(spec.team, spec.workload, pool, scale, rng)
                new.start_index = min(_day_index(migration.start), _day_index(pool.opened))
                new.start_index = max(new.start_index, _day_index(pool.opened))
                series.append(new)
                demand.resize((demand.shape[0] + 1, n_days), refcheck=False)
                t = len(series) - 1
            open_index = series[t].start_index
            moved_chips = moved * src_perf / dst_perf
            moved_chips[:open_index] = 0.0
            demand[t] += moved_chips
            events.append(
                _event(
                    "migration",
                    series[t],
                    days[_day_index(migration.start)],
                    days[_day_index(migration.end)],
                    float(moved_chips[_day_index(migration.end)]),
                    1.0,
                    True,
                    name=f"{spec.team} migrates {migration.source} -> {migration.target}",
                )
            )


def _add_future_events(
    series: list[SeriesSpec],
    demand: np.ndarray,
    days: np.ndarray,
    n_history: int,
    rng: np.random.Generator,
    events: list[dict[str, object]],
) -> None:
    """Known future events: planned launches and campaigns, each with a probability."""
    n_days = demand.shape[1]
    candidates = [i for i, s in enumerate(series) if s.workload in ("training", "serving")]
    picks = rng.choice(len(candidates), size=min(8, len(candidates)), replace=False)
    for pick in sorted(picks.tolist()):
        s = candidates[pick]
        spec = series[s]
        at = n_history + int(rng.integers(20, 250))
        probability = float(rng.choice([0.5, 0.7, 0.8, 0.9, 1.0]))
        happens = bool(rng.random() < probability)
        size = float(np.mean(demand[s, n_history - 28 : n_history]) * rng.uniform(0.3, 0.9))
        if spec.workload == "training":
            length = int(rng.integers(21, 57))
            end = min(at + length - 1, n_days - 1)
            if happens:
                demand[s, at : end + 1] += size
            events.append(
                _event("training_campaign", spec, days[at], days[end], size, probability, happens)
            )
        else:
            if happens:
                demand[s, at:] += size
            events.append(_event("launch", spec, days[at], None, size, probability, happens))
    # A generation migration everyone knows is coming: H100 training moves to B200.
    b200 = [i for i, s in enumerate(series) if s.accelerator == "b200-180gb"]
    if b200:
        s = b200[0]
        at = n_history + 31
        ramp = np.clip((np.arange(n_days) - at) / 120.0, 0.0, 1.0)
        size = float(np.mean(demand[s, n_history - 14 : n_history]) * 3.0 + 64)
        demand[s] += size * ramp
        events.append(
            _event(
                "migration",
                series[s],
                days[at],
                days[min(at + 120, n_days - 1)],
                size,
                0.9,
                True,
                name="llm-pretraining moves H100 training to B200",
            )
        )


def _capacity(
    pools: list[Pool],
    pool_of_series: np.ndarray,
    demand: np.ndarray,
    n_history: int,
    rng: np.random.Generator,
    tight_order_bias: float = 0.82,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, object]]]:
    n_pools, n_days = len(pools), demand.shape[1]
    pool_demand = np.zeros((n_pools, n_days))
    np.add.at(pool_demand, pool_of_series, demand)
    installed = np.zeros((n_pools, n_days))
    orders: list[dict[str, object]] = []
    quarter_starts = [_day_index(date(y, m, 1)) for y in range(2023, 2028) for m in (1, 4, 7, 10)]
    history_end_index = n_history - 1
    # Two pools are chronically under-ordered: planners there forecast low.
    tight = {
        i
        for i, p in enumerate(pools)
        if (p.accelerator, p.region) in {("h100-80gb", "us-east4"), ("tpu-v6e", "us-central1")}
    }
    for p, pool in enumerate(pools):
        sku = _sku(pool.accelerator)
        lead = int(sku.lead_time_weeks * 7)
        open_index = _day_index(pool.opened)
        deliveries = np.zeros(n_days + 400)
        first = pool_demand[p, open_index : open_index + lead + 100].max(initial=0.0)
        deliveries[open_index] += _lot(first * 1.1, sku.min_order_chips)
        on_books = deliveries.sum()
        for q_index in quarter_starts:
            order_day = q_index - lead
            if order_day < open_index or order_day > history_end_index:
                continue
            target_day = q_index
            window = pool_demand[p, target_day : target_day + 91]
            if window.size == 0:
                continue
            bias = tight_order_bias if p in tight else 1.0
            forecast = window.max() * float(rng.lognormal(0.0, 0.12)) * bias
            quantity = _lot(forecast * 1.1 - on_books, sku.min_order_chips)
            if quantity <= 0:
                continue
            roll = rng.random()
            slip = (
                int(rng.integers(0, 8))
                if roll < 0.65
                else (int(rng.integers(14, 43)) if roll < 0.9 else int(rng.integers(49, 85)))
            )
            cancelled = rng.random() < 0.04
            ordered_on = max(order_day, 0)
            expected = ordered_on + lead
            arrives = expected + slip
            if cancelled:
                status = "cancelled"
            elif arrives <= history_end_index:
                status = "delivered"
                deliveries[arrives] += quantity
                on_books += quantity
            else:
                status = "open"
                deliveries[arrives] += quantity
                on_books += quantity
            orders.append(
                {
                    "accelerator": pool.accelerator,
                    "region": pool.region,
                    "quantity": quantity,
                    "ordered_on": (HISTORY_START + timedelta(days=ordered_on)),
                    "expected_on": (HISTORY_START + timedelta(days=expected)),
                    "delivered_on": (HISTORY_START + timedelta(days=arrives))
                    if status == "delivered"
                    else None,
                    "status": status,
                }
            )
        installed[p] = np.cumsum(deliveries[:n_days])
    weeks = np.arange(n_days) // 7
    failure = rng.beta(2.0, 90.0, size=(n_pools, int(weeks.max()) + 1))
    healthy = np.floor(installed * (1.0 - failure[:, weeks]))
    orders.sort(key=lambda o: (str(o["ordered_on"]), str(o["accelerator"]), str(o["region"])))
    for number, order in enumerate(orders, start=1):
        order["order_id"] = f"PO-{order['ordered_on'].year}-{number:04d}"  # type: ignore[attr-defined]
    return installed, healthy, orders


def series_frame(fleet: Fleet) -> pl.DataFrame:
    """One row per series with its keys and drawn figures, for the truth folder."""
    return pl.DataFrame(
        {
            "accelerator": [s.accelerator for s in fleet.series],
            "region": [s.region for s in fleet.series],
            "team": [s.team for s in fleet.series],
            "workload": [s.workload for s in fleet.series],
            "first_day": [HISTORY_START + timedelta(days=s.start_index) for s in fleet.series],
            "growth_per_year": [round(s.growth_per_year, 4) for s in fleet.series],
            "job_chips": [s.job_chips for s in fleet.series],
        }
    )
