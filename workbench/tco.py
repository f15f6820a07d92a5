"""Total cost of ownership: what one accelerator chip-hour costs, owned or rented.

Pure functions over the ``price_book`` and ``sku_catalog`` tables. Invariants:

* The owned cost of a chip-hour is the sum of named components (:data:`COMPONENTS`), each
  in USD per *installed* chip-hour, so every dollar says where it comes from:

  - ``capex_depreciation`` = capex / (depreciation_years x hours per year), straight line;
  - ``power`` = power_w / 1000 x PUE x usd_per_kwh (the chip at typical load, every hour,
    plus the facility overhead PUE measures);
  - ``facility`` = power_w / 1000 x facility_usd_per_kw_month x 12 / hours per year
    (space, cooling and power delivery, priced per kW of IT load);
  - ``network_storage`` = capex x network_storage_capex_share, depreciated like the chip;
  - ``maintenance`` = capex x maintenance_capex_share_per_year / hours per year.

* The cost per *used* chip-hour divides by utilization: idle hours cost the same as busy
  ones. Break-even utilization against a cloud price is the utilization at which both cost
  the same per used chip-hour (owned per installed chip-hour / cloud price); above it owning
  is cheaper, and a break-even above 1 means owning never pays at that price. Commitments
  are taken as sized to the hours used, so their price is a price per used chip-hour too.
* Every price a computation needs is checked first: a missing or negative figure raises
  :class:`WorkbenchError` naming the accelerator, the region and the field.
* Scaling every price by k scales every cost by k (all components are linear in prices).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from workbench.errors import WorkbenchError

__all__ = [
    "CLOUD_PRICES",
    "COMPONENTS",
    "OWNED_FIELDS",
    "SensitivityRanges",
    "TcoAssumptions",
    "break_even_utilization",
    "check_prices",
    "owned_cost",
    "sensitivity",
    "tco_table",
]

COMPONENTS: tuple[str, ...] = (
    "capex_depreciation",
    "power",
    "facility",
    "network_storage",
    "maintenance",
)
"""Owned cost components, in USD per installed chip-hour (columns ``<name>_usd_per_chip_hour``)."""

OWNED_FIELDS: tuple[str, ...] = (
    "capex_usd",
    "depreciation_years",
    "usd_per_kwh",
    "pue",
    "facility_usd_per_kw_month",
    "network_storage_capex_share",
    "maintenance_capex_share_per_year",
)
"""Price book fields the owned cost needs."""

CLOUD_PRICES: dict[str, str] = {
    "on_demand": "on_demand_usd_per_hour",
    "commit_1y": "commit_1y_usd_per_hour",
    "commit_3y": "commit_3y_usd_per_hour",
}
"""Cloud price tiers owned capacity is compared with, and their price book fields."""

HOURS_PER_YEAR = 8760.0
_POOL = ("accelerator", "region")


@dataclass(frozen=True)
class TcoAssumptions:
    """How the owned cost is turned into a cost per used chip-hour."""

    utilization: float = 0.6
    """Used chip-hours / installed chip-hours, in (0, 1]."""
    hours_per_year: float = HOURS_PER_YEAR
    """Hours a year of depreciation and maintenance are spread over."""

    def __post_init__(self) -> None:
        if not 0 < self.utilization <= 1:
            raise WorkbenchError(
                f"utilization must be in (0, 1], got {self.utilization}",
                field="utilization",
                fix="pass a fraction such as 0.6",
            )
        if self.hours_per_year <= 0:
            raise WorkbenchError(
                f"hours_per_year must be positive, got {self.hours_per_year}",
                field="hours_per_year",
            )


@dataclass(frozen=True)
class SensitivityRanges:
    """Low and high values of each driver for the sensitivity (tornado) analysis.

    Factors multiply the price book's own figure; the others are absolute values.
    """

    depreciation_years: tuple[float, float] = (4.0, 7.0)
    usd_per_kwh_factor: tuple[float, float] = (0.5, 1.5)
    pue: tuple[float, float] = (1.1, 1.5)
    utilization: tuple[float, float] = (0.4, 0.9)
    capex_factor: tuple[float, float] = (0.8, 1.2)


def _component_exprs(hours_per_year: float) -> dict[str, pl.Expr]:
    """USD per installed chip-hour of each component, from price book and catalog columns."""
    life_hours = pl.col("depreciation_years") * hours_per_year
    kilowatts = pl.col("power_w") / 1000.0
    return {
        "capex_depreciation": pl.col("capex_usd") / life_hours,
        "power": kilowatts * pl.col("pue") * pl.col("usd_per_kwh"),
        "facility": kilowatts * pl.col("facility_usd_per_kw_month") * 12.0 / hours_per_year,
        "network_storage": pl.col("capex_usd") * pl.col("network_storage_capex_share") / life_hours,
        "maintenance": pl.col("capex_usd")
        * pl.col("maintenance_capex_share_per_year")
        / hours_per_year,
    }


def _component_column(name: str) -> str:
    return f"{name}_usd_per_chip_hour"


def check_prices(
    prices: pl.DataFrame,
    fields: Sequence[str],
    pools: Iterable[tuple[str, str]] | None = None,
) -> None:
    """Raise :class:`WorkbenchError` unless every pool has every field, non-negative.

    ``prices`` is the price book joined with the catalog's ``power_w``; ``pools`` are the
    (accelerator, region) pairs that need a price (default: every row). The message names
    the accelerator, the region and the field, and says where to add it.
    """
    book_file = "price_book"  # its rows keep a source text, not the file's path
    known = {(a, r) for a, r in prices.select(_POOL).iter_rows()}
    needed = known if pools is None else set(pools)
    for accelerator, region in sorted(needed):
        if (accelerator, region) not in known:
            raise WorkbenchError(
                f"no price for accelerator '{accelerator}' in region '{region}'",
                file=book_file,
                field=fields[0] if fields else "accelerator",
                fix=f"add a [[price]] for '{accelerator}' and a [region.{region}] table to "
                "price_book.toml, then run 'workbench ingest price-book FILE'",
            )
    wanted = prices.join(
        pl.DataFrame(sorted(needed), schema=list(_POOL), orient="row"), on=list(_POOL), how="semi"
    )
    for field in fields:
        if field not in wanted.columns:
            raise WorkbenchError(f"price book has no column '{field}'", file=book_file, field=field)
        missing = wanted.filter(pl.col(field).is_null())
        if missing.height:
            accelerator, region = missing.select(_POOL).sort(_POOL).row(0)
            where = "sku_catalog.toml" if field == "power_w" else "price_book.toml"
            raise WorkbenchError(
                f"no {field} for accelerator '{accelerator}' in region '{region}'",
                file=book_file,
                field=field,
                fix=f"add {field} for '{accelerator}' to {where} and ingest it again",
            )
        floor, rule = _LOWER_BOUNDS.get(field, (0.0, "negative"))
        bad = wanted.filter(
            (pl.col(field) <= floor) if rule == "not positive" else (pl.col(field) < floor)
        )
        if bad.height:
            accelerator, region, value = bad.select(*_POOL, field).sort(_POOL).row(0)
            raise WorkbenchError(
                f"{field} is {rule} ({value}) for accelerator '{accelerator}' in region '{region}'",
                file=book_file,
                field=field,
                fix="correct the figure in price_book.toml and ingest it again",
            )


_LOWER_BOUNDS: dict[str, tuple[float, str]] = {
    "depreciation_years": (0.0, "not positive"),
    "pue": (1.0, "below 1"),
}


def _prices_with_power(price_book: pl.DataFrame, sku_catalog: pl.DataFrame) -> pl.DataFrame:
    """Price book rows with the chip's ``power_w`` from the catalog."""
    if price_book.height == 0:
        raise WorkbenchError(
            "the workspace has no price book",
            field="price_book",
            fix="run 'workbench ingest price-book price_book.toml'",
        )
    power = sku_catalog.select("accelerator", "power_w")
    return price_book.join(power, on="accelerator", how="left")


def owned_cost(
    price_book: pl.DataFrame,
    sku_catalog: pl.DataFrame,
    *,
    pools: Iterable[tuple[str, str]] | None = None,
    hours_per_year: float = HOURS_PER_YEAR,
) -> pl.DataFrame:
    """Owned cost per installed chip-hour of each pool, component by component.

    Returns ``accelerator, region, power_w``, one ``<component>_usd_per_chip_hour`` column
    per :data:`COMPONENTS` and their sum ``owned_usd_per_chip_hour``, for ``pools`` (default:
    every price book row). Raises :class:`WorkbenchError` when a pool lacks a price.
    """
    prices = _prices_with_power(price_book, sku_catalog)
    pool_list = None if pools is None else sorted(set(pools))
    check_prices(prices, (*OWNED_FIELDS, "power_w"), pool_list)
    if pool_list is not None:
        prices = prices.join(
            pl.DataFrame(pool_list, schema=list(_POOL), orient="row"), on=list(_POOL), how="semi"
        )
    return _with_components(prices, hours_per_year).select(
        *_POOL,
        "power_w",
        *[_component_column(c) for c in COMPONENTS],
        "owned_usd_per_chip_hour",
    )


def _with_components(prices: pl.DataFrame, hours_per_year: float) -> pl.DataFrame:
    exprs = _component_exprs(hours_per_year)
    return prices.with_columns(
        expr.alias(_component_column(name)) for name, expr in exprs.items()
    ).with_columns(
        pl.sum_horizontal(_component_column(c) for c in COMPONENTS).alias("owned_usd_per_chip_hour")
    )


def break_even_utilization(owned: pl.Expr, cloud_price: pl.Expr) -> pl.Expr:
    """Utilization above which owning costs less per used chip-hour than ``cloud_price``.

    Null when the cloud price is zero or missing (nothing to break even against).
    """
    return pl.when(cloud_price > 0).then(owned / cloud_price)


def tco_table(
    price_book: pl.DataFrame,
    sku_catalog: pl.DataFrame,
    assumptions: TcoAssumptions | None = None,
    *,
    accelerator: str | None = None,
    region: str | None = None,
) -> pl.DataFrame:
    """The per-pool cost table: owned cost components, cloud prices and break-evens.

    Columns: ``accelerator, region, power_w``, the component columns,
    ``owned_usd_per_chip_hour``, ``utilization``, ``owned_usd_per_used_chip_hour``, each
    cloud price, ``break_even_<tier>`` per :data:`CLOUD_PRICES` tier, ``source, as_of``.
    Raises :class:`WorkbenchError` naming the accelerator, region and field of a missing or
    negative price, or when the filter selects nothing.
    """
    assumptions = assumptions or TcoAssumptions()
    prices = _prices_with_power(price_book, sku_catalog)
    if accelerator is not None:
        prices = prices.filter(pl.col("accelerator") == accelerator)
    if region is not None:
        prices = prices.filter(pl.col("region") == region)
    if prices.height == 0:
        raise WorkbenchError(
            "no price book entry matches "
            + " and ".join(
                f"{name} '{value}'"
                for name, value in (("accelerator", accelerator), ("region", region))
                if value is not None
            ),
            field="accelerator" if accelerator is not None else "region",
            fix="see 'workbench sql \"select accelerator, region from price_book\"'",
        )
    check_prices(prices, (*OWNED_FIELDS, "power_w", *CLOUD_PRICES.values()))
    table = _with_components(prices, assumptions.hours_per_year).with_columns(
        pl.lit(assumptions.utilization).alias("utilization"),
        (pl.col("owned_usd_per_chip_hour") / assumptions.utilization).alias(
            "owned_usd_per_used_chip_hour"
        ),
    )
    table = table.with_columns(
        break_even_utilization(pl.col("owned_usd_per_chip_hour"), pl.col(field)).alias(
            f"break_even_{tier}"
        )
        for tier, field in CLOUD_PRICES.items()
    )
    return table.select(
        *_POOL,
        "power_w",
        *[_component_column(c) for c in COMPONENTS],
        "owned_usd_per_chip_hour",
        "utilization",
        "owned_usd_per_used_chip_hour",
        *CLOUD_PRICES.values(),
        *[f"break_even_{tier}" for tier in CLOUD_PRICES],
        "source",
        "as_of",
    ).sort(_POOL)


def sensitivity(
    price_book: pl.DataFrame,
    sku_catalog: pl.DataFrame,
    assumptions: TcoAssumptions | None = None,
    ranges: SensitivityRanges | None = None,
    *,
    accelerator: str | None = None,
    region: str | None = None,
) -> pl.DataFrame:
    """How each driver moves the owned cost per used chip-hour: the data of a tornado chart.

    For each pool and driver (capex, depreciation life, power price, PUE, utilization), the
    cost per used chip-hour with that one driver at its low and at its high value and every
    other input at its base. Columns: ``accelerator, region, driver, base_value, low_value,
    high_value, base_usd_per_used_chip_hour, low_usd_per_used_chip_hour,
    high_usd_per_used_chip_hour, swing_usd`` (high minus low cost, in absolute value);
    sorted by pool, then largest swing first.
    """
    assumptions = assumptions or TcoAssumptions()
    ranges = ranges or SensitivityRanges()
    base = tco_table(
        price_book, sku_catalog, assumptions, accelerator=accelerator, region=region
    ).select(*_POOL)
    prices = _prices_with_power(price_book, sku_catalog).join(base, on=list(_POOL), how="semi")
    prices = prices.with_columns(pl.lit(assumptions.utilization).alias("utilization"))
    drivers: dict[str, tuple[str, pl.Expr, pl.Expr]] = {
        "capex": (
            "capex_usd",
            pl.col("capex_usd") * ranges.capex_factor[0],
            pl.col("capex_usd") * ranges.capex_factor[1],
        ),
        "depreciation life": (
            "depreciation_years",
            pl.lit(ranges.depreciation_years[0]),
            pl.lit(ranges.depreciation_years[1]),
        ),
        "power price": (
            "usd_per_kwh",
            pl.col("usd_per_kwh") * ranges.usd_per_kwh_factor[0],
            pl.col("usd_per_kwh") * ranges.usd_per_kwh_factor[1],
        ),
        "PUE": ("pue", pl.lit(ranges.pue[0]), pl.lit(ranges.pue[1])),
        "utilization": (
            "utilization",
            pl.lit(ranges.utilization[0]),
            pl.lit(ranges.utilization[1]),
        ),
    }
    per_used = pl.col("owned_usd_per_chip_hour") / pl.col("utilization")
    base_cost = _with_components(prices, assumptions.hours_per_year).select(
        *_POOL, per_used.alias("base_usd_per_used_chip_hour")
    )
    frames = []
    for driver, (column, low, high) in drivers.items():
        ends = []
        for end, value in (("low", low), ("high", high)):
            varied = _with_components(
                prices.with_columns(value.cast(pl.Float64).alias(column)),
                assumptions.hours_per_year,
            )
            ends.append(
                varied.select(
                    *_POOL,
                    pl.col(column).alias(f"{end}_value"),
                    per_used.alias(f"{end}_usd_per_used_chip_hour"),
                )
            )
        frames.append(
            prices.select(*_POOL, pl.col(column).cast(pl.Float64).alias("base_value"))
            .with_columns(pl.lit(driver).alias("driver"))
            .join(ends[0], on=list(_POOL))
            .join(ends[1], on=list(_POOL))
        )
    return (
        pl.concat(frames)
        .join(base_cost, on=list(_POOL))
        .with_columns(
            (pl.col("high_usd_per_used_chip_hour") - pl.col("low_usd_per_used_chip_hour"))
            .abs()
            .alias("swing_usd")
        )
        .select(
            *_POOL,
            "driver",
            "base_value",
            "low_value",
            "high_value",
            "base_usd_per_used_chip_hour",
            "low_usd_per_used_chip_hour",
            "high_usd_per_used_chip_hour",
            "swing_usd",
        )
        .sort([*_POOL, "swing_usd"], descending=[False, False, True])
    )
