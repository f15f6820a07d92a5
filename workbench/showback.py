"""Showback: what each pool cost in a month, and which team consumed it, to the cent.

Pure functions over ``usage_daily``, ``inventory``, ``billing``, ``price_book`` and
``sku_catalog``. Invariants of a :class:`Showback`:

* The owned cost of a pool-month is its owned cost per installed chip-hour (TCO, see
  :mod:`workbench.tco`) times its installed chip-hours (the latest inventory snapshot on or
  before each day, times 24), rounded once to the cent. Its cloud cost is the ``billing``
  EffectiveCost of the month (by the UTC month of ``ChargePeriodStart``, for the pool named
  by the row's accelerator and ``RegionId``); unused commitments are commitment waste.
* Each team pays for max(allocated, used) chip-hours, per team, pool and day (the OpenCost
  rule): its used chip-hours plus the allocated chip-hours it left unused ("reserved").
  What nobody used or reserved is idle, on its own line (team ``(idle)``) or, with
  ``idle="shared"``, shared among the pool's teams in proportion to their use.
* When the reservations do not fit in what usage left free (allocations oversubscribe the
  pool), used chip-hours are still charged in full and the reservations are scaled down to
  fill the pool exactly (``reserved_scale`` < 1, with a note); the pool then has no idle.
* Money is whole cents, split by the largest-remainder method, so for every month the sum
  over teams plus idle equals the pool cost, and the cloud part equals the billing's
  EffectiveCost, exactly; any breakdown is a sum of the same cells, so drilling down or
  rolling up never changes a total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

import polars as pl

from workbench.cli_defaults import DIMENSIONS
from workbench.errors import WorkbenchError
from workbench.money import apportion, cents_of, cents_to_usd, micro_usd_expr, micro_usd_to_cents
from workbench.tco import COMPONENTS, owned_cost

__all__ = [
    "DIMENSIONS",
    "IDLE",
    "UNMAPPED",
    "UNTAGGED",
    "Showback",
    "ShowbackPolicy",
    "breakdown",
    "month_range",
    "reconcile",
    "showback",
]

IDLE = "(idle)"
"""Team (and workload) of the idle line: capacity no team used or reserved."""
UNTAGGED = "(untagged)"
"""Team of cloud spend whose billing rows name no team."""
UNMAPPED = "(unmapped)"
"""Accelerator or region of cloud spend whose billing rows name none."""
CLOUD_WORKLOAD = "unknown"
"""Bills carry no workload: cloud spend is reported under workload ``unknown``."""

_POOL = ["accelerator", "region"]
_CELL = ["month", "team", "accelerator", "region", "workload"]
_COMPONENT_CENTS = [f"{c}_cents" for c in COMPONENTS]
_MONEY_CENTS = [
    "owned_cents",
    *_COMPONENT_CENTS,
    "idle_share_cents",
    "cloud_cents",
    "commitment_waste_cents",
    "total_cents",
]
_HOURS = ["chip_hours_used", "chip_hours_allocated", "chip_hours_charged"]
_HOURS_TOLERANCE = 1e-3
"""Chip-hours below this (a few chip-seconds) are float noise, not capacity or use."""


@dataclass(frozen=True)
class ShowbackPolicy:
    """How pool costs are allocated to teams."""

    idle: Literal["separate", "shared"] = "separate"
    """``separate``: idle cost on its own line; ``shared``: spread over teams by use."""
    basis: Literal["max", "used"] = "max"
    """``max``: teams pay for max(allocated, used) chip-hours; ``used``: for used only."""

    def __post_init__(self) -> None:
        if self.idle not in ("separate", "shared"):
            raise WorkbenchError(
                f"unknown idle policy '{self.idle}'", field="--idle", fix="use separate or shared"
            )
        if self.basis not in ("max", "used"):
            raise WorkbenchError(
                f"unknown allocation basis '{self.basis}'", field="--basis", fix="use max or used"
            )


@dataclass(frozen=True)
class Showback:
    """Costs of the selected months at their finest grain, and the pools they came from.

    ``cells``: one row per month, team, accelerator, region and workload, with chip-hours
    and money in whole cents (``*_cents``, Int64). ``pools``: one row per pool-month with
    its capacity, rate, cost and a note when charges had to be scaled. ``billing_cents``:
    the billing's EffectiveCost per month, rounded once to the cent, for reconciliation.
    """

    months: tuple[date, ...]
    policy: ShowbackPolicy
    cells: pl.DataFrame
    pools: pl.DataFrame
    billing_cents: dict[date, int]


def month_range(first: date, last: date) -> list[date]:
    """First days of the months from ``first``'s month to ``last``'s, inclusive."""
    months = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append(date(year, month, 1))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _month_end(month: date) -> date:
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return date.fromordinal(following.toordinal() - 1)


def showback(
    usage: pl.DataFrame,
    inventory: pl.DataFrame,
    billing: pl.DataFrame,
    price_book: pl.DataFrame,
    sku_catalog: pl.DataFrame,
    months: Sequence[date],
    policy: ShowbackPolicy | None = None,
) -> Showback:
    """Cost of every pool in ``months`` (first days), allocated to teams and workloads.

    Raises :class:`WorkbenchError` naming the accelerator, region and field when a pool
    with chips installed or used in those months has no owned price (or a negative one).
    """
    policy = policy or ShowbackPolicy()
    months = tuple(sorted(set(months)))
    if not months:
        raise WorkbenchError("no month selected", field="--month", fix="pass e.g. 2026-10")
    first, last = months[0], _month_end(months[-1])
    month_list = pl.Series("month", months, dtype=pl.Date).implode()

    capacity = _installed_chip_hours(inventory, first, last).filter(
        pl.col("month").is_in(month_list)
    )
    charges = _team_charges(usage, first, last, policy).filter(pl.col("month").is_in(month_list))
    in_use = sorted(
        {
            *capacity.filter(pl.col("installed_chip_hours") > 0).select(_POOL).iter_rows(),
            *charges.filter(pl.col("chip_hours_used") > 0).select(_POOL).iter_rows(),
        }
    )
    rates = (
        owned_cost(price_book, sku_catalog, pools=in_use)
        if in_use
        else pl.DataFrame(
            schema={
                "accelerator": pl.String,
                "region": pl.String,
                **{f"{c}_usd_per_chip_hour": pl.Float64 for c in COMPONENTS},
                "owned_usd_per_chip_hour": pl.Float64,
            }
        )
    )
    owned_cells, pools = _owned(capacity, charges, rates, policy)
    cloud_cells, billing_cents = _cloud(billing, months)
    cells = _combine(owned_cells, cloud_cells)
    pools = _pools_with_cloud(pools, cells)
    return Showback(
        months=months, policy=policy, cells=cells, pools=pools, billing_cents=billing_cents
    )


def _installed_chip_hours(inventory: pl.DataFrame, first: date, last: date) -> pl.DataFrame:
    """Installed chip-hours per pool and month: each day holds the latest snapshot's chips."""
    schema = {
        "month": pl.Date,
        "accelerator": pl.String,
        "region": pl.String,
        "installed_chip_hours": pl.Float64,
    }
    snapshots = inventory.filter(pl.col("date") <= last).select(
        "date", *_POOL, pl.col("installed_chips").cast(pl.Float64)
    )
    if snapshots.height == 0:
        return pl.DataFrame(schema=schema)
    days = pl.DataFrame({"date": pl.date_range(first, last, interval="1d", eager=True)})
    calendar = days.join(snapshots.select(_POOL).unique(), how="cross").sort("date")
    # Both sides are sorted by date, hence within each pool: polars cannot check that itself
    # when 'by' is given, and would warn.
    daily = calendar.join_asof(
        snapshots.sort("date"), on="date", by=_POOL, strategy="backward", check_sortedness=False
    ).with_columns(pl.col("installed_chips").fill_null(0.0))
    return (
        daily.group_by(pl.col("date").dt.truncate("1mo").alias("month"), *_POOL)
        .agg((pl.col("installed_chips") * 24.0).sum().alias("installed_chip_hours"))
        .select(schema.keys())
        .cast(schema)  # type: ignore[arg-type]
    )


def _team_charges(
    usage: pl.DataFrame, first: date, last: date, policy: ShowbackPolicy
) -> pl.DataFrame:
    """Used, allocated and reserved-but-unused chip-hours per month, pool, team, workload.

    Reserved is max(allocated - used, 0) per team, pool and day, shared over the team's
    workloads in proportion to the allocation each left unused.
    """
    team_day = ["date", *_POOL, "team"]
    rows = usage.filter(pl.col("date").is_between(first, last)).with_columns(
        pl.col("chip_hours_allocated").fill_null(0.0),
    )
    slack = (pl.col("chip_hours_allocated") - pl.col("chip_hours_used")).clip(lower_bound=0.0)
    team_slack = (pl.col("chip_hours_allocated").sum() - pl.col("chip_hours_used").sum()).clip(
        lower_bound=0.0
    )
    reserved = (
        pl.when(slack.sum().over(team_day) > 0)
        .then(team_slack.over(team_day) * slack / slack.sum().over(team_day))
        .otherwise(0.0)
    )
    if policy.basis == "used":
        reserved = pl.lit(0.0)
    return (
        rows.with_columns(reserved.alias("chip_hours_reserved"))
        .group_by(pl.col("date").dt.truncate("1mo").alias("month"), *_POOL, "team", "workload")
        .agg(
            pl.col("chip_hours_used").sum(),
            pl.col("chip_hours_allocated").sum(),
            pl.col("chip_hours_reserved").sum(),
        )
        .sort(_CELL)
    )


def _owned(
    capacity: pl.DataFrame, charges: pl.DataFrame, rates: pl.DataFrame, policy: ShowbackPolicy
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Owned cost per cell (teams and idle) and per pool-month."""
    pools = (
        pl.concat(
            [
                capacity.select("month", *_POOL),
                charges.select("month", *_POOL),
            ]
        )
        .unique()
        .join(capacity, on=["month", *_POOL], how="left")
        .join(
            charges.group_by("month", *_POOL).agg(
                pl.col("chip_hours_used").sum(), pl.col("chip_hours_reserved").sum()
            ),
            on=["month", *_POOL],
            how="left",
        )
        .join(rates, on=_POOL, how="left")
        .with_columns(
            pl.col("installed_chip_hours", "chip_hours_used", "chip_hours_reserved").fill_null(0.0)
        )
        .sort("month", *_POOL)
    )
    cell_rows: list[dict[str, object]] = []
    pool_rows: list[dict[str, object]] = []
    groups = charges.partition_by(["month", *_POOL], as_dict=True, maintain_order=True)
    component_columns = [f"{c}_usd_per_chip_hour" for c in COMPONENTS]
    for pool in pools.iter_rows(named=True):
        key = (pool["month"], pool["accelerator"], pool["region"])
        members = groups.get(key)
        members_rows = members.to_dicts() if members is not None else []
        installed = float(pool["installed_chip_hours"])
        used = float(pool["chip_hours_used"])
        reserved = float(pool["chip_hours_reserved"])
        rate = float(pool["owned_usd_per_chip_hour"] or 0.0)
        note = ""
        if used > installed:
            used_scale = installed / used if used else 0.0
            reserved_scale = 0.0
            note = (
                "no installed chips: usage carries no owned cost"
                if installed == 0
                else f"usage exceeds installed chip-hours: used charged at {used_scale:.1%}"
            )
        else:
            used_scale = 1.0
            free = installed - used
            reserved_scale = min(1.0, free / reserved) if reserved > 0 else 1.0
            if reserved_scale < 1.0:
                note = (
                    f"allocations oversubscribe the pool: unused reservations charged at "
                    f"{reserved_scale:.1%} so teams pay exactly the pool cost"
                )
        charged = [
            r["chip_hours_used"] * used_scale + r["chip_hours_reserved"] * reserved_scale
            for r in members_rows
        ]
        idle_hours = installed - sum(charged)
        if idle_hours < _HOURS_TOLERANCE:  # float noise of the scaling, not idle capacity
            idle_hours = 0.0
        owned_cents = cents_of(rate * installed)
        weights = [*charged, idle_hours]
        shares = apportion(owned_cents, weights) if any(weights) else [0] * len(weights)
        component_weights = [float(pool[c] or 0.0) for c in component_columns]
        idle_cents = shares[-1]
        idle_shared = [0] * len(members_rows)
        if policy.idle == "shared" and idle_cents and used >= _HOURS_TOLERANCE:
            idle_shared = apportion(idle_cents, [r["chip_hours_used"] for r in members_rows])
            idle_cents = 0
        for row, hours, cents, shared in zip(
            members_rows, charged, shares[:-1], idle_shared, strict=True
        ):
            cell_rows.append(
                {
                    "month": row["month"],
                    "team": row["team"],
                    "accelerator": row["accelerator"],
                    "region": row["region"],
                    "workload": row["workload"],
                    "chip_hours_used": row["chip_hours_used"],
                    "chip_hours_allocated": row["chip_hours_allocated"],
                    "chip_hours_charged": hours,
                    "owned_cents": cents,
                    "idle_share_cents": shared,
                    **_components(cents, component_weights),
                }
            )
        if idle_cents or (idle_hours > 0 and policy.idle == "separate"):
            cell_rows.append(
                {
                    "month": pool["month"],
                    "team": IDLE,
                    "accelerator": pool["accelerator"],
                    "region": pool["region"],
                    "workload": IDLE,
                    "chip_hours_used": 0.0,
                    "chip_hours_allocated": 0.0,
                    "chip_hours_charged": idle_hours,
                    "owned_cents": idle_cents,
                    "idle_share_cents": 0,
                    **_components(idle_cents, component_weights),
                }
            )
        pool_rows.append(
            {
                "month": pool["month"],
                "accelerator": pool["accelerator"],
                "region": pool["region"],
                "owned_usd_per_chip_hour": rate,
                "installed_chip_hours": installed,
                "chip_hours_used": used,
                "chip_hours_reserved": reserved,
                "used_scale": used_scale,
                "reserved_scale": reserved_scale,
                "chip_hours_idle": idle_hours,
                "owned_cents": owned_cents,
                "note": note,
            }
        )
    cells = pl.DataFrame(cell_rows, schema=_OWNED_CELL_SCHEMA)
    return cells, pl.DataFrame(pool_rows, schema=_POOL_SCHEMA)


def _components(cents: int, weights: list[float]) -> dict[str, int]:
    """Split a cell's owned cents over the TCO components in proportion to their rates."""
    parts = apportion(cents, weights) if any(weights) else [0] * len(weights)
    if not any(weights) and cents:
        parts[0] = cents
    return dict(zip(_COMPONENT_CENTS, parts, strict=True))


_OWNED_CELL_SCHEMA = pl.Schema(
    {
        "month": pl.Date,
        "team": pl.String,
        "accelerator": pl.String,
        "region": pl.String,
        "workload": pl.String,
        "chip_hours_used": pl.Float64,
        "chip_hours_allocated": pl.Float64,
        "chip_hours_charged": pl.Float64,
        "owned_cents": pl.Int64,
        "idle_share_cents": pl.Int64,
        **dict.fromkeys(_COMPONENT_CENTS, pl.Int64),
    }
)
_POOL_SCHEMA = pl.Schema(
    {
        "month": pl.Date,
        "accelerator": pl.String,
        "region": pl.String,
        "owned_usd_per_chip_hour": pl.Float64,
        "installed_chip_hours": pl.Float64,
        "chip_hours_used": pl.Float64,
        "chip_hours_reserved": pl.Float64,
        "used_scale": pl.Float64,
        "reserved_scale": pl.Float64,
        "chip_hours_idle": pl.Float64,
        "owned_cents": pl.Int64,
        "note": pl.String,
    }
)


def _cloud(billing: pl.DataFrame, months: Sequence[date]) -> tuple[pl.DataFrame, dict[date, int]]:
    """Cloud spend per cell in cents, and each month's billing EffectiveCost in cents.

    Amounts are summed in micro-dollars (exact), then each month is rounded to cents once
    and split back over its cells so they add up to it exactly.
    """
    rows = (
        billing.lazy()
        .with_columns(
            pl.col("ChargePeriodStart").dt.truncate("1mo").dt.date().alias("month"),
            micro_usd_expr("EffectiveCost").alias("micro_usd"),
            (pl.col("CommitmentDiscountStatus").str.to_lowercase() == "unused")
            .fill_null(False)
            .alias("waste"),
        )
        .filter(pl.col("month").is_in(pl.Series(list(months), dtype=pl.Date).implode()))
        .with_columns(
            pl.col("team").fill_null(UNTAGGED),
            pl.col("accelerator").fill_null(UNMAPPED),
            pl.col("RegionId").fill_null(UNMAPPED).alias("region"),
        )
        .group_by("month", "team", "accelerator", "region", "waste")
        .agg(pl.col("micro_usd").sum())
        .sort("month", "team", "accelerator", "region", "waste")
        .collect()
    )
    billing_cents: dict[date, int] = {}
    parts: list[int] = []
    for (month,), group in rows.partition_by("month", as_dict=True, maintain_order=True).items():
        micro = group["micro_usd"].to_list()
        cents = micro_usd_to_cents(micro)
        billing_cents[month] = sum(cents)
        parts.extend(cents)
    for month in months:
        billing_cents.setdefault(month, 0)
    cells = (
        rows.with_columns(pl.Series("cents", parts, dtype=pl.Int64))
        .group_by("month", "team", "accelerator", "region")
        .agg(
            pl.col("cents").filter(~pl.col("waste")).sum().alias("cloud_cents"),
            pl.col("cents").filter(pl.col("waste")).sum().alias("commitment_waste_cents"),
        )
        .with_columns(pl.lit(CLOUD_WORKLOAD).alias("workload"))
    )
    return cells, billing_cents


def _combine(owned: pl.DataFrame, cloud: pl.DataFrame) -> pl.DataFrame:
    """Owned and cloud cells on one grid; money in Int64 cents, total last."""
    cloud = cloud.select(
        *_CELL,
        pl.col("cloud_cents").cast(pl.Int64),
        pl.col("commitment_waste_cents").cast(pl.Int64),
    )
    merged = owned.join(cloud, on=_CELL, how="full", coalesce=True)
    zero_hours = [pl.col(c).fill_null(0.0) for c in _HOURS]
    zero_money = [pl.col(c).fill_null(0).cast(pl.Int64) for c in _MONEY_CENTS if c != "total_cents"]
    merged = merged.with_columns(*zero_hours, *zero_money)
    total = (
        pl.col("owned_cents")
        + pl.col("idle_share_cents")
        + pl.col("cloud_cents")
        + pl.col("commitment_waste_cents")
    )
    return (
        merged.with_columns(total.alias("total_cents"))
        .select(*_CELL, *_HOURS, *_MONEY_CENTS)
        .sort(_CELL)
    )


def _pools_with_cloud(pools: pl.DataFrame, cells: pl.DataFrame) -> pl.DataFrame:
    cloud = cells.group_by("month", *_POOL).agg(
        pl.col("cloud_cents").sum(), pl.col("commitment_waste_cents").sum()
    )
    merged = pools.join(cloud, on=["month", *_POOL], how="full", coalesce=True)
    return (
        merged.with_columns(
            pl.col("owned_cents", "cloud_cents", "commitment_waste_cents").fill_null(0),
            # A cloud-only pool: nothing installed, used or scaled.
            pl.col(
                "owned_usd_per_chip_hour",
                "installed_chip_hours",
                "chip_hours_used",
                "chip_hours_reserved",
                "chip_hours_idle",
            ).fill_null(0.0),
            pl.col("used_scale", "reserved_scale").fill_null(1.0),
            pl.col("note").fill_null(""),
        )
        .with_columns(
            (
                pl.col("owned_cents") + pl.col("cloud_cents") + pl.col("commitment_waste_cents")
            ).alias("pool_cost_cents")
        )
        .sort("month", *_POOL)
    )


def breakdown(result: Showback, by: Sequence[str]) -> pl.DataFrame:
    """Costs grouped by ``by`` (any of :data:`DIMENSIONS`), in USD with cents.

    Every row sums the same cells, so any two breakdowns agree on every shared total.
    Columns: the keys; ``chip_hours_used, chip_hours_allocated, chip_hours_charged``;
    ``owned_usd`` and its TCO components (``<component>_usd``), ``idle_share_usd``,
    ``cloud_usd``, ``commitment_waste_usd``, ``total_usd`` (Decimal, 2 places);
    ``unit_cost_usd_per_used_chip_hour`` (total / used) and ``efficiency`` (used /
    allocated), null where the divisor is zero. Idle, untagged and unmapped lines sort last.
    """
    keys = list(dict.fromkeys(by))
    unknown = [k for k in keys if k not in DIMENSIONS]
    if unknown:
        raise WorkbenchError(
            f"cannot break costs down by '{unknown[0]}'",
            field="--by",
            fix=f"use some of {', '.join(DIMENSIONS)}",
        )
    grouped = (
        result.cells.group_by(keys).agg(pl.col(*_HOURS, *_MONEY_CENTS).sum())
        if keys
        else result.cells.select(pl.col(*_HOURS, *_MONEY_CENTS).sum())
    )
    special = pl.lit(False)
    for key in keys:
        if key != "month":
            special = special | pl.col(key).str.starts_with("(")
    usd = [cents_to_usd(c).alias(c.removesuffix("_cents") + "_usd") for c in _MONEY_CENTS]
    return (
        grouped.with_columns(special.alias("__special"))
        .sort(["__special", *keys])
        .select(
            *keys,
            *_HOURS,
            *usd,
            pl.when(pl.col("chip_hours_used") > 0)
            .then(pl.col("total_cents") / 100.0 / pl.col("chip_hours_used"))
            .alias("unit_cost_usd_per_used_chip_hour"),
            pl.when(pl.col("chip_hours_allocated") > 0)
            .then(pl.col("chip_hours_used") / pl.col("chip_hours_allocated"))
            .alias("efficiency"),
        )
    )


def reconcile(result: Showback) -> pl.DataFrame:
    """One reconciliation line per month, in cents, with ``balanced`` true when it holds.

    ``pool_cost_cents`` = owned (every pool's rate x installed chip-hours, rounded per
    pool-month) + cloud (the billing's EffectiveCost of the month, rounded once). It must
    equal ``teams_cents + idle_cents`` (the cells), and the cells' cloud part
    (``cloud_cents + commitment_waste_cents``) must equal ``billing_cents``.
    """
    owned = result.pools.group_by("month").agg(pl.col("owned_cents").sum().alias("pool_owned"))
    is_idle = pl.col("team") == IDLE
    cells = result.cells.group_by("month").agg(
        pl.col("total_cents").filter(~is_idle).sum().alias("teams_cents"),
        pl.col("total_cents").filter(is_idle).sum().alias("idle_cents"),
        pl.col("owned_cents").sum().alias("owned_cents"),
        pl.col("idle_share_cents").sum().alias("idle_shared_cents"),
        pl.col("cloud_cents").sum().alias("cloud_cents"),
        pl.col("commitment_waste_cents").sum().alias("commitment_waste_cents"),
    )
    frame = (
        pl.DataFrame(
            {
                "month": list(result.months),
                "billing_cents": [result.billing_cents.get(m, 0) for m in result.months],
            },
            schema={"month": pl.Date, "billing_cents": pl.Int64},
        )
        .join(owned, on="month", how="left")
        .join(cells, on="month", how="left")
        .with_columns(pl.exclude("month").fill_null(0).cast(pl.Int64))
    )
    return frame.select(
        "month",
        (pl.col("pool_owned") + pl.col("billing_cents")).alias("pool_cost_cents"),
        pl.col("pool_owned").alias("owned_cents"),
        "billing_cents",
        "teams_cents",
        "idle_cents",
        "idle_shared_cents",
        "cloud_cents",
        "commitment_waste_cents",
        (
            (
                pl.col("teams_cents") + pl.col("idle_cents")
                == pl.col("pool_owned") + pl.col("billing_cents")
            )
            & (pl.col("cloud_cents") + pl.col("commitment_waste_cents") == pl.col("billing_cents"))
            & (pl.col("owned_cents") + pl.col("idle_shared_cents") == pl.col("pool_owned"))
        ).alias("balanced"),
    ).sort("month")
