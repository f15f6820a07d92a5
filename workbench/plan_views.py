"""Views of a committed procurement plan: totals, the pool table, capex and power use.

Pure functions over a ``plan`` run's ``plan`` table (one row per pool and quarter, see
:class:`workbench.procurement.PlanResult`) and the workspace's ``price_book`` and
``sku_catalog``. Invariants:

* Totals are sums of the plan's rows, so a slice's totals add up to the whole plan's.
* Capex is spent in the quarter a purchase is ordered (``buy_chips`` x the pool's
  ``capex_usd``), as the plan's capex budget counts it.
* Power in service is every chip installed, on order or landed from the plan's purchases,
  x ``power_w`` x PUE (MW at the facility), as the plan's power limit counts it (committed
  cloud chips draw no power of ours).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

__all__ = [
    "PlanTotals",
    "capex_by_quarter",
    "plan_table",
    "plan_totals",
    "power_by_region",
]

_POOL = ["accelerator", "region"]


@dataclass(frozen=True)
class PlanTotals:
    """Totals of a plan (or a slice of it) over its quarters."""

    cost_usd: float
    """Expected cost: installed base, new purchases, commitments, burst and unmet penalty."""
    buy_chips: int
    commit_chips: float
    """New 1- and 3-year commitments (chips), counted once in the quarter they start."""
    burst_chip_quarters: float
    """Mean on-demand burst chips, summed over quarters."""
    max_shortfall_probability: float
    quarters: int
    pools: int
    binding_rows: int
    """Rows whose binding limit is a budget or power limit (not cost or lead time)."""


def plan_totals(rows: pl.DataFrame) -> PlanTotals:
    """Totals of the plan rows given (see :class:`PlanTotals`)."""
    if rows.height == 0:
        return PlanTotals(0.0, 0, 0.0, 0.0, 0.0, 0, 0, 0)
    limited = pl.col("binding").str.contains("budget|power|capex")
    sums = rows.select(
        (pl.col("cost_cents").sum() / 100).alias("cost"),
        pl.col("buy_chips").sum().alias("buy"),
        (pl.col("commit_1y_chips") + pl.col("commit_3y_chips")).sum().alias("commit"),
        pl.col("burst_mean").sum().alias("burst"),
        pl.col("shortfall_probability").max().alias("short"),
        pl.col("quarter").n_unique().alias("quarters"),
        pl.struct(_POOL).n_unique().alias("pools"),
        limited.sum().alias("binding"),
    ).row(0, named=True)
    return PlanTotals(
        cost_usd=float(sums["cost"]),
        buy_chips=int(sums["buy"]),
        commit_chips=float(sums["commit"]),
        burst_chip_quarters=float(sums["burst"]),
        max_shortfall_probability=float(sums["short"]),
        quarters=int(sums["quarters"]),
        pools=int(sums["pools"]),
        binding_rows=int(sums["binding"]),
    )


def plan_table(rows: pl.DataFrame) -> pl.DataFrame:
    """The plan per pool and quarter as people read it: chips, USD, shares, the reason.

    Columns: ``accelerator, region, quarter`` (``*`` marks an extrapolated quarter),
    ``demand_p50, demand_p95, installed, on_order, buy_chips, lands_in, commit_chips``
    (new), ``committed_chips`` (active), ``burst_mean, cost_usd, utilization,
    shortfall_probability, binding, rationale``.
    """
    return rows.sort(*_POOL, "quarter").select(
        *_POOL,
        pl.when(pl.col("extrapolated"))
        .then(pl.col("quarter") + "*")
        .otherwise(pl.col("quarter"))
        .alias("quarter"),
        "demand_p50",
        "demand_p95",
        "installed",
        "on_order",
        "buy_chips",
        "lands_in",
        (pl.col("commit_1y_chips") + pl.col("commit_3y_chips")).alias("commit_chips"),
        "committed_chips",
        "burst_mean",
        (pl.col("cost_cents") / 100).alias("cost_usd"),
        "utilization",
        "shortfall_probability",
        "binding",
        "rationale",
    )


def capex_by_quarter(rows: pl.DataFrame, price_book: pl.DataFrame) -> pl.DataFrame:
    """Capex of the plan's purchases per quarter of order: ``quarter, buy_chips, capex_usd``.

    Every quarter of the plan has a row (zero where nothing is bought).
    """
    prices = price_book.select(*_POOL, "capex_usd")
    spent = (
        rows.join(prices, on=_POOL, how="left")
        .group_by("quarter")
        .agg(
            pl.col("buy_chips").sum(),
            (pl.col("buy_chips") * pl.col("capex_usd").fill_null(0.0)).sum().alias("capex_usd"),
        )
    )
    return spent.sort("quarter")


def power_by_region(
    rows: pl.DataFrame, price_book: pl.DataFrame, sku_catalog: pl.DataFrame
) -> pl.DataFrame:
    """Power in service per region and quarter: ``region, quarter, chips, power_mw``."""
    watts = sku_catalog.select("accelerator", "power_w")
    pue = price_book.select(*_POOL, "pue")
    chips = pl.col("installed") + pl.col("on_order") + pl.col("landed_chips")
    return (
        rows.join(watts, on="accelerator", how="left")
        .join(pue, on=_POOL, how="left")
        .group_by("region", "quarter")
        .agg(
            chips.sum().alias("chips"),
            (chips * pl.col("power_w") * pl.col("pue") / 1e6).sum().alias("power_mw"),
        )
        .sort("region", "quarter")
    )
