"""Assemble a procurement program's inputs from a workspace, and list lifecycle candidates.

Invariants:

* Pools are the forecast run's pools (accelerator x region with demand scenarios); every pool
  needs a price book entry (missing prices raise :class:`WorkbenchError` via
  :mod:`workbench.tco`).
* Installed capacity is each pool's latest inventory snapshot, with its healthy ratio; open
  orders land on their expected day plus the median slip of past deliveries (the pool's own
  if it has three or more, else the fleet's), and count from the first quarter that starts
  on or after that day, like new purchases.
* Demand is the forecast run's joint scenarios of each quarter's peak weekly demand. A
  forecast quarter with fewer than ``min_weeks`` whole weeks is not used (its peak would be
  understated); quarters past the forecast are each scenario's last forecast quarter grown
  by the pool's recent quarter-over-quarter growth (geometric mean over the last year of
  history, clipped to ``growth_bounds``), and flagged ``extrapolated``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError
from workbench.procurement import PlanInputs, PoolSpec
from workbench.tco import COMPONENTS, owned_cost

__all__ = [
    "InputSettings",
    "ScenarioDemand",
    "delivery_slip_days",
    "lifecycle_candidates",
    "next_quarters",
    "pool_shortfall_hours_shares",
    "pool_specs",
    "quarter_of",
    "quarter_start",
    "quarterly_peaks",
    "scenario_demand",
    "shortfall_hours_share",
    "workspace_plan_inputs",
]

_POOL = ("accelerator", "region")


@dataclass(frozen=True)
class InputSettings:
    """How the workspace's tables become plan inputs."""

    horizon_quarters: int = 8
    min_weeks: int = 6
    growth_bounds: tuple[float, float] = (0.8, 1.5)
    burst_cap_share: float = 0.25
    """On-demand burst available per pool, as a share of its healthy installed chips."""


def quarter_of(day: date) -> str:
    """``2027Q1`` for a day."""
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


def quarter_start(quarter: str) -> date:
    """First day of ``2027Q1``."""
    year, q = int(quarter[:4]), int(quarter[-1])
    return date(year, 3 * (q - 1) + 1, 1)


def next_quarters(first: str, count: int) -> tuple[str, ...]:
    """``count`` consecutive quarters from ``first``."""
    year, q = int(first[:4]), int(first[-1]) - 1
    return tuple(f"{year + (q + k) // 4}Q{(q + k) % 4 + 1}" for k in range(count))


def _first_serving_quarter(day: date, quarters: Sequence[str]) -> int:
    """Index of the first quarter starting on or after ``day`` (0 if already in service)."""
    for k, quarter in enumerate(quarters):
        if quarter_start(quarter) >= day:
            return k
    return len(quarters)


def delivery_slip_days(orders: pl.DataFrame) -> tuple[float, dict[tuple[str, str], float]]:
    """Median slip (delivered_on - expected_on, days) of the fleet and of each pool (>= 3)."""
    done = orders.filter(pl.col("delivered_on").is_not_null()).with_columns(
        (pl.col("delivered_on") - pl.col("expected_on")).dt.total_days().alias("slip")
    )
    if done.is_empty():
        return 0.0, {}
    fleet = float(done["slip"].median())  # type: ignore[arg-type]
    per_pool = (
        done.group_by(_POOL)
        .agg(pl.col("slip").median().alias("slip"), pl.len().alias("n"))
        .filter(pl.col("n") >= 3)
    )
    return fleet, {(a, r): float(s) for a, r, s, _ in per_pool.iter_rows()}


def pool_specs(
    pools: Sequence[tuple[str, str]],
    price_book: pl.DataFrame,
    sku_catalog: pl.DataFrame,
    healthy_now: dict[tuple[str, str], float],
    burst_cap_share: float,
) -> tuple[PoolSpec, ...]:
    """Supply options and prices of each pool, owned cost from :func:`workbench.tco.owned_cost`."""
    owned = owned_cost(price_book, sku_catalog, pools=pools)
    book = price_book.join(owned, on=list(_POOL)).join(
        sku_catalog.drop("power_w", strict=False), on="accelerator", how="left"
    )
    by_pool = {(r["accelerator"], r["region"]): r for r in book.iter_rows(named=True)}
    specs = []
    for key in pools:
        row = by_pool[key]
        lot = int(row.get("min_order_chips") or 1)
        specs.append(
            PoolSpec(
                accelerator=key[0],
                region=key[1],
                family=str(row.get("family") or key[0]),
                perf_index=float(row.get("perf_index") or 1.0),
                power_w=float(row["power_w"]),
                pue=float(row["pue"]),
                lot_chips=lot,
                lead_time_weeks=float(row.get("lead_time_weeks") or 13),
                capex_usd=float(row["capex_usd"]),
                owned_usd_per_chip_hour=float(row["owned_usd_per_chip_hour"]),
                on_demand_usd_per_hour=float(row.get("on_demand_usd_per_hour") or 0.0),
                commit_1y_usd_per_hour=row.get("commit_1y_usd_per_hour"),
                commit_3y_usd_per_hour=row.get("commit_3y_usd_per_hour"),
                burst_cap_chips=max(burst_cap_share * healthy_now.get(key, 0.0), float(lot)),
                owned_components={c: float(row[f"{c}_usd_per_chip_hour"]) for c in COMPONENTS},
                host_cores_per_chip=float(row.get("host_cores_per_chip") or 0.0),
                storage_tb_per_chip=float(row.get("storage_tb_per_chip") or 0.0),
                network_gbps_per_chip=float(row.get("network_gbps_per_chip") or 0.0),
            )
        )
    return tuple(specs)


def quarterly_peaks(daily: pl.DataFrame, *, value: str = "y") -> pl.DataFrame:
    """Peak weekly demand per pool and quarter of a daily frame ``accelerator, region, ds, y``.

    Weeks are 7-day means from each quarter's first day (whole weeks only).
    """
    return (
        daily.with_columns(
            pl.col("ds").dt.truncate("1q").alias("q_start"),
        )
        .with_columns(
            ((pl.col("ds") - pl.col("q_start")).dt.total_days() // 7).alias("week"),
        )
        .group_by(*_POOL, "q_start", "week")
        .agg(pl.col(value).mean().alias("weekly"), pl.len().alias("days"))
        .filter(pl.col("days") == 7)
        .group_by(*_POOL, "q_start")
        .agg(pl.col("weekly").max().alias("peak_chips"), pl.len().alias("weeks"))
        .with_columns(
            pl.col("q_start").map_elements(quarter_of, return_dtype=pl.String).alias("quarter")
        )
        .sort(*_POOL, "q_start")
    )


def _shortfall_ratios(daily: pl.DataFrame, depths: Sequence[float], min_weeks: int) -> pl.DataFrame:
    """``accelerator, region, ratio``: one row per pool, whole quarter and depth."""
    peaks = quarterly_peaks(daily).filter(pl.col("weeks") >= min_weeks)
    schema = {"accelerator": pl.String, "region": pl.String, "ratio": pl.Float64}
    if peaks.is_empty():
        return pl.DataFrame(schema=schema)
    days = daily.with_columns(pl.col("ds").dt.truncate("1q").alias("q_start")).join(
        peaks.select(*_POOL, "q_start", "peak_chips"), on=[*_POOL, "q_start"]
    )
    parts = []
    for depth in depths:
        short = (
            days.with_columns((pl.col("peak_chips") * (1.0 - depth)).alias("capacity"))
            .group_by(*_POOL, "q_start")
            .agg(
                (pl.col("y") - pl.col("capacity")).clip(lower_bound=0.0).sum().alias("short"),
                ((pl.col("peak_chips") - pl.col("capacity")) * pl.len()).first().alias("whole"),
            )
            .filter(pl.col("whole") > 0)
        )
        parts.append(
            short.select(
                pl.col("accelerator").cast(pl.String),
                pl.col("region").cast(pl.String),
                (pl.col("short") / pl.col("whole")).alias("ratio"),
            )
        )
    return pl.concat(parts)


def shortfall_hours_share(
    daily: pl.DataFrame,
    *,
    depths: Sequence[float] = (0.05, 0.1, 0.15, 0.2),
    min_weeks: int = 12,
    default: float = 1.0,
) -> float:
    """Share of a quarter's hours that a shortfall at the quarter's peak lasts, from history.

    The plan sizes capacity against each quarter's peak weekly demand, but a pool a few
    percent short of its peak is short only on the days demand runs that high. For each pool
    and whole quarter of ``daily`` (``accelerator, region, ds, y``) and capacity
    ``(1 - depth) x peak`` for each of ``depths``, the share is ``sum(max(y - capacity, 0))
    / ((peak - capacity) x days)``; the mean over all of them comes back (``default`` when
    no quarter has ``min_weeks`` whole weeks). Burst and unmet chips at the peak are priced
    for this share of the quarter.
    """
    values = _shortfall_ratios(daily, depths, min_weeks)["ratio"].to_numpy()
    return float(np.clip(values.mean(), 0.0, 1.0)) if values.size else default


def pool_shortfall_hours_shares(
    daily: pl.DataFrame,
    *,
    depths: Sequence[float] = (0.05, 0.1, 0.15, 0.2),
    min_weeks: int = 12,
    prior_quarters: float = 4.0,
) -> dict[tuple[str, str], float]:
    """:func:`shortfall_hours_share` of each pool, shrunk toward the fleet's.

    Pools differ: a training pool's peak is a campaign of a few weeks, a serving pool runs
    near its peak all quarter. A pool with ``n`` whole quarters gets ``(n x its own mean +
    prior_quarters x the fleet's) / (n + prior_quarters)``, so a young pool's share stays
    near the fleet's. Pools without a whole quarter are left out (they take the fleet's).
    """
    ratios = _shortfall_ratios(daily, depths, min_weeks)
    if ratios.is_empty():
        return {}
    fleet = float(np.clip(ratios["ratio"].mean(), 0.0, 1.0))  # type: ignore[arg-type]
    per_pool = ratios.group_by(*_POOL).agg(
        pl.col("ratio").mean().alias("mean"), (pl.len() / len(depths)).alias("quarters")
    )
    return {
        (str(a), str(r)): float(
            np.clip((n * mean + prior_quarters * fleet) / (n + prior_quarters), 0.0, 1.0)
        )
        for a, r, mean, n in per_pool.select(*_POOL, "mean", "quarters").iter_rows()
    }


def _growth(history: pl.DataFrame, bounds: tuple[float, float]) -> dict[tuple[str, str], float]:
    """Quarter-over-quarter growth of each pool's peak demand over the last year."""
    peaks = quarterly_peaks(history).filter(pl.col("weeks") >= 12)
    out: dict[tuple[str, str], float] = {}
    for (acc, reg), part in peaks.group_by(_POOL):
        values = part.sort("q_start")["peak_chips"].tail(5).to_numpy()
        values = values[values > 0]
        if values.size >= 2:
            rate = (values[-1] / values[0]) ** (1 / (values.size - 1))
            out[(str(acc), str(reg))] = float(np.clip(rate, *bounds))
    return out


@dataclass(frozen=True)
class ScenarioDemand:
    """Demand scenarios on a plan's quarters: (pools, quarters, scenarios), in chips."""

    quarters: tuple[str, ...]
    pools: tuple[tuple[str, str], ...]
    demand: np.ndarray
    extrapolated: tuple[bool, ...]


def scenario_demand(
    scenarios: pl.DataFrame,
    planning: pl.DataFrame,
    history: pl.DataFrame,
    settings: InputSettings | None = None,
) -> ScenarioDemand:
    """A forecast run's peak-week scenarios on ``horizon_quarters`` quarters (see module doc)."""
    settings = settings or InputSettings()
    if scenarios.is_empty():
        raise WorkbenchError(
            "the forecast run has no demand scenarios",
            field="scenarios",
            fix="run 'workbench forecast' (version with scenarios) first",
        )
    weeks = (
        planning.filter(pl.col("level") == "pool")
        .group_by("quarter")
        .agg(pl.col("weeks").max())
        .sort("quarter")
    )
    usable = weeks.filter(pl.col("weeks") >= settings.min_weeks)["quarter"].to_list()
    if not usable:
        raise WorkbenchError(
            f"no forecast quarter has {settings.min_weeks} whole weeks",
            field="--forecast-horizon",
            fix="forecast with a longer horizon (182 days or more)",
        )
    first = min(weeks["quarter"].to_list())
    quarters = next_quarters(first, settings.horizon_quarters)
    pools = sorted({(str(a), str(r)) for a, r in scenarios.select(_POOL).unique().iter_rows()})
    n_p, n_t = len(pools), len(quarters)
    n_s = int(scenarios["scenario"].max()) + 1  # type: ignore[arg-type]
    pool_index = {p: i for i, p in enumerate(pools)}
    demand = np.full((n_p, n_t, n_s), np.nan)
    wide = scenarios.filter(pl.col("quarter").is_in(usable))
    for acc, reg, quarter, scenario, peak in wide.select(
        *_POOL, "quarter", "scenario", "peak_chips"
    ).iter_rows():
        if quarter in quarters:
            demand[pool_index[(acc, reg)], quarters.index(quarter), scenario] = peak
    # Partial quarters before the first usable one take its values (demand does not fall
    # away because a quarter is only half forecast).
    first_usable = quarters.index(usable[0]) if usable[0] in quarters else 0
    for t in range(first_usable):
        demand[:, t] = np.where(np.isnan(demand[:, t]), demand[:, first_usable], demand[:, t])
    growth = _growth(history, settings.growth_bounds)
    extrapolated = []
    last_known = -1
    for t in range(n_t):
        known = not np.isnan(demand[:, t]).all()
        if known and quarters[t] in usable:
            last_known = t
        extrapolated.append(not known)
    for t in range(last_known + 1, n_t):
        for p, key in enumerate(pools):
            demand[p, t] = demand[p, last_known] * growth.get(key, 1.0) ** (t - last_known)
    return ScenarioDemand(
        quarters=quarters,
        pools=tuple(pools),
        demand=np.nan_to_num(demand, nan=0.0),
        extrapolated=tuple(extrapolated),
    )


def workspace_plan_inputs(
    scenarios: pl.DataFrame,
    planning: pl.DataFrame,
    history: pl.DataFrame,
    inventory: pl.DataFrame,
    orders: pl.DataFrame | None,
    price_book: pl.DataFrame,
    sku_catalog: pl.DataFrame,
    settings: InputSettings | None = None,
) -> PlanInputs:
    """The plan inputs of a forecast run's scenarios and the workspace's tables.

    ``scenarios`` and ``planning`` are a forecast run's outputs (pool rows); ``history``
    its daily pool history (``accelerator, region, ds, y``) for the growth of extrapolated
    quarters.
    """
    settings = settings or InputSettings()
    found = scenario_demand(scenarios, planning, history, settings)
    quarters, pools, demand = found.quarters, list(found.pools), found.demand
    extrapolated = found.extrapolated
    n_p, n_t = len(pools), len(quarters)
    pool_index = {p: i for i, p in enumerate(pools)}
    start = quarter_start(quarters[0])
    # The latest snapshot of each pool, even if taken after the plan's first day: the plan
    # starts in the current quarter and the newest count is the best one.
    latest = inventory.filter(pl.col("date") == pl.col("date").max().over(_POOL))
    installed_now = {
        (a, r): float(i) for a, r, i in latest.select(*_POOL, "installed_chips").iter_rows()
    }
    healthy_now = {
        (a, r): float(h) for a, r, h in latest.select(*_POOL, "healthy_chips").iter_rows()
    }
    installed = np.array([[installed_now.get(p, 0.0)] * n_t for p in pools])
    healthy_ratio = np.array(
        [healthy_now.get(p, 0.0) / installed_now[p] if installed_now.get(p) else 1.0 for p in pools]
    )
    on_order = np.zeros((n_p, n_t))
    if orders is not None and orders.height:
        fleet_slip, pool_slip = delivery_slip_days(orders)
        for acc, reg, qty, expected in (
            orders.filter(pl.col("status") == "open")
            .select(*_POOL, "quantity", "expected_on")
            .iter_rows()
        ):
            key = (acc, reg)
            if key not in pool_index:
                continue
            lands = expected + timedelta(days=round(pool_slip.get(key, fleet_slip)))
            k = _first_serving_quarter(max(lands, start), quarters)
            on_order[pool_index[key], k:] += float(qty)
    specs = pool_specs(pools, price_book, sku_catalog, healthy_now, settings.burst_cap_share)
    return PlanInputs(
        quarters=quarters,
        pools=specs,
        installed=installed,
        on_order=on_order,
        healthy_ratio=healthy_ratio,
        demand=demand,
        extrapolated=tuple(extrapolated),
    )


def lifecycle_candidates(
    pools: Sequence[PoolSpec],
    inventory: pl.DataFrame,
    *,
    cost_threshold: float = 0.25,
    failure_rise: float = 0.01,
) -> pl.DataFrame:
    """Old-generation pools to refresh or decommission, with the saving and capacity to replace.

    A pool is a *refresh* candidate when its owned cost per unit of performance (TCO per
    chip-hour / perf_index) exceeds the cheapest pool of the same family and region by more
    than ``cost_threshold``; the replacement is the perf-equivalent chips of that pool, and
    the saving a year is the difference in cost at equal performance. It is a
    *decommission* candidate when its failure rate (1 - healthy / installed) rose by more
    than ``failure_rise`` over the last year of inventory snapshots.
    """
    latest_day = inventory["date"].max()
    latest = inventory.filter(pl.col("date") == latest_day)
    year_ago_day = latest_day - timedelta(days=365)  # type: ignore[operator]
    earlier = inventory.filter(pl.col("date") <= year_ago_day)
    earlier = earlier.filter(pl.col("date") == pl.col("date").max())
    failure_now = {
        (a, r): 1 - h / i if i else 0.0
        for a, r, i, h in latest.select(*_POOL, "installed_chips", "healthy_chips").iter_rows()
    }
    failure_then = {
        (a, r): 1 - h / i if i else 0.0
        for a, r, i, h in earlier.select(*_POOL, "installed_chips", "healthy_chips").iter_rows()
    }
    installed = {
        (a, r): float(i) for a, r, i in latest.select(*_POOL, "installed_chips").iter_rows()
    }
    records = []
    for pool in pools:
        key = (pool.accelerator, pool.region)
        chips = installed.get(key, 0.0)
        if chips <= 0:
            continue
        per_perf = pool.owned_usd_per_chip_hour / pool.perf_index
        peers = [
            p
            for p in pools
            if p.family == pool.family
            and p.region == pool.region
            and p.perf_index > pool.perf_index
        ]
        reasons = []
        best = min(peers, key=lambda p: p.owned_usd_per_chip_hour / p.perf_index, default=None)
        saving = 0.0
        replace_chips = 0.0
        if best is not None:
            best_per_perf = best.owned_usd_per_chip_hour / best.perf_index
            if per_perf > best_per_perf * (1 + cost_threshold):
                reasons.append(
                    f"refresh: ${per_perf:.3f} per perf-hour vs ${best_per_perf:.3f} on "
                    f"{best.accelerator} ({per_perf / best_per_perf - 1:.0%} dearer)"
                )
                replace_chips = _ceil_chips(chips * pool.perf_index / best.perf_index)
                saving = chips * pool.perf_index * (per_perf - best_per_perf) * 8760
        rise = failure_now.get(key, 0.0) - failure_then.get(key, failure_now.get(key, 0.0))
        if rise > failure_rise:
            reasons.append(
                f"decommission: failure rate {failure_now[key]:.1%}, up {rise:.1%} in a year"
            )
        if reasons:
            records.append(
                {
                    "accelerator": pool.accelerator,
                    "region": pool.region,
                    "installed": chips,
                    "usd_per_perf_hour": per_perf,
                    "replace_with": best.accelerator
                    if best is not None and replace_chips
                    else None,
                    "replacement_chips": replace_chips,
                    "saving_cents_per_year": round(saving * 100),
                    "failure_rate": failure_now.get(key, 0.0),
                    "reason": "; ".join(reasons),
                }
            )
    schema = {
        "accelerator": pl.String,
        "region": pl.String,
        "installed": pl.Float64,
        "usd_per_perf_hour": pl.Float64,
        "replace_with": pl.String,
        "replacement_chips": pl.Float64,
        "saving_cents_per_year": pl.Int64,
        "failure_rate": pl.Float64,
        "reason": pl.String,
    }
    return pl.DataFrame(records, schema=schema)


def _ceil_chips(value: float) -> float:
    """Whole chips, rounded up."""
    return float(np.ceil(value - 1e-9))
