"""Canonical tables of Fleet Workbench: the data contracts every layer may import.

Invariants this module guarantees for a frame that passed ``validate_<table>``:

* it has exactly the columns of the table's schema, in order, with the declared dtypes;
* key and required columns are never null;
* accelerator ids are canonical ids of the SKU catalog (aliases already resolved);
* quantities carry the units named below and are never negative;
* every rejected input row is in the quarantine frame, once, with the file, line, field,
  offending value, a reason a person can act on, and the raw record, so nothing is lost.

Units: chips (one GPU, or one TPU chip; a TPU *core* is not a chip), chip-hours, USD, UTC.
Dates are UTC calendar days; quarters are calendar quarters (``2027Q1``).

This is a leaf module: it imports nothing from ``workbench``, ``pipelines`` or ``models``
except the error type and the SKU-alias resolver protocol.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from workbench.timestamps import parse_iso_timestamps

__all__ = [
    "ALLOCATION_KINDS",
    "MAX_BILLING_ROW_USD",
    "ORDER_STATUSES",
    "QUARANTINE_SCHEMA",
    "TABLES",
    "WORKLOADS",
    "AcceleratorResolver",
    "Check",
    "TableSpec",
    "Validated",
    "normalize_alias",
    "normalized_alias_expr",
    "parse_timestamps",
    "plainly_good_jobs",
    "validate",
    "validate_allocations",
    "validate_billing",
    "validate_events",
    "validate_inventory",
    "validate_job_records",
    "validate_orders",
    "validate_price_book",
    "validate_sku_catalog",
    "validate_usage_daily",
    "validate_usage_hourly",
    "validate_utilization_daily",
]

WORKLOADS: tuple[str, ...] = ("training", "serving", "research", "batch", "unknown")
ORDER_STATUSES: tuple[str, ...] = ("open", "delivered", "cancelled")
ALLOCATION_KINDS: tuple[str, ...] = ("reservation", "quota")
CHARGE_CATEGORIES: tuple[str, ...] = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")

UTC_DATETIME = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class TableSpec:
    """One canonical table: its columns, key, required columns and the units of each column."""

    name: str
    schema: pl.Schema
    key: tuple[str, ...]
    required: tuple[str, ...]
    units: Mapping[str, str] = field(default_factory=dict)
    doc: str = ""

    def empty(self) -> pl.DataFrame:
        """Return an empty frame with this table's schema."""
        return pl.DataFrame(schema=self.schema)


def _spec(
    name: str,
    columns: list[tuple[str, pl.DataType, str]],
    key: tuple[str, ...],
    required: tuple[str, ...],
    doc: str,
) -> TableSpec:
    return TableSpec(
        name=name,
        schema=pl.Schema([(c, t) for c, t, _ in columns]),
        key=key,
        required=tuple(dict.fromkeys(key + required)),
        units={c: u for c, _, u in columns},
        doc=doc,
    )


USAGE_DAILY = _spec(
    "usage_daily",
    [
        ("date", pl.Date(), "UTC calendar day"),
        ("accelerator", pl.String(), "SKU catalog id"),
        ("region", pl.String(), "region id"),
        ("team", pl.String(), "team name"),
        ("workload", pl.String(), "one of training, serving, research, batch, unknown"),
        ("chip_hours_used", pl.Float64(), "chip-hours run on the day"),
        ("chip_hours_allocated", pl.Float64(), "chip-hours reserved or granted to the team"),
        ("chip_hours_queued", pl.Float64(), "chip-hours waited between submit and start"),
        ("peak_chips", pl.Float64(), "largest number of chips running at once that day"),
        ("source", pl.String(), "connector and file the row came from"),
    ],
    key=("date", "accelerator", "region", "team", "workload"),
    required=("chip_hours_used", "chip_hours_queued", "peak_chips", "source"),
    doc="Daily usage per accelerator, region, team and workload. Demand is used + queued.",
)

INVENTORY = _spec(
    "inventory",
    [
        ("date", pl.Date(), "UTC day of the snapshot"),
        ("accelerator", pl.String(), "SKU catalog id"),
        ("region", pl.String(), "region id"),
        ("installed_chips", pl.Int64(), "chips installed"),
        ("healthy_chips", pl.Int64(), "installed chips in service (not failed or drained)"),
        ("source", pl.String(), "connector and file"),
    ],
    key=("date", "accelerator", "region"),
    required=("installed_chips", "healthy_chips"),
    doc="Installed and healthy chips per pool, as snapshots.",
)

ALLOCATIONS = _spec(
    "allocations",
    [
        ("team", pl.String(), "team name"),
        ("accelerator", pl.String(), "SKU catalog id"),
        ("region", pl.String(), "region id"),
        ("valid_from", pl.Date(), "first UTC day the allocation holds"),
        ("chips", pl.Float64(), "chips reserved or granted"),
        ("valid_to", pl.Date(), "last UTC day it holds (null: open-ended)"),
        ("kind", pl.String(), "reservation or quota"),
        ("source", pl.String(), "connector and file"),
    ],
    key=("team", "accelerator", "region", "valid_from"),
    required=("chips", "kind"),
    doc="Team reservations and quotas per pool.",
)

ORDERS = _spec(
    "orders",
    [
        ("order_id", pl.String(), "purchase order id"),
        ("accelerator", pl.String(), "SKU catalog id"),
        ("region", pl.String(), "region id"),
        ("quantity", pl.Int64(), "chips ordered"),
        ("ordered_on", pl.Date(), "UTC day the order was placed"),
        ("expected_on", pl.Date(), "UTC day delivery was promised"),
        ("delivered_on", pl.Date(), "UTC day chips entered service (null until delivered)"),
        ("status", pl.String(), "open, delivered or cancelled"),
        ("source", pl.String(), "connector and file"),
    ],
    key=("order_id",),
    required=("accelerator", "region", "quantity", "ordered_on", "expected_on", "status"),
    doc="Hardware orders, in flight and past (past ones give the delivery slip).",
)

EVENTS = _spec(
    "events",
    [
        ("event_id", pl.String(), "event id"),
        ("name", pl.String(), "what happens"),
        ("kind", pl.String(), "launch, training_campaign, migration, decommission, other"),
        ("start", pl.Date(), "first UTC day"),
        ("end", pl.Date(), "last UTC day (null: lasts)"),
        ("accelerator", pl.String(), "SKU catalog id"),
        ("region", pl.String(), "region id (null: all regions)"),
        ("team", pl.String(), "team (null: all teams)"),
        ("chips", pl.Float64(), "change in concurrent chips demanded (negative: a decrease)"),
        ("probability", pl.Float64(), "chance it happens, 0 to 1"),
        ("source", pl.String(), "connector and file"),
    ],
    key=("event_id",),
    required=("name", "start", "accelerator", "chips", "probability"),
    doc="Known events that move demand: launches, training campaigns, migrations.",
)

BILLING = _spec(
    "billing",
    [
        ("row_hash", pl.String(), "hash of the source row (key)"),
        ("ChargePeriodStart", UTC_DATETIME, "UTC"),
        ("ChargePeriodEnd", UTC_DATETIME, "UTC"),
        ("BilledCost", pl.Float64(), "USD invoiced"),
        ("EffectiveCost", pl.Float64(), "USD after discounts and amortized commitments"),
        ("ListCost", pl.Float64(), "USD at list price"),
        ("BillingCurrency", pl.String(), "ISO 4217; USD"),
        ("ServiceName", pl.String(), "cloud service"),
        ("SkuId", pl.String(), "provider SKU"),
        ("ResourceId", pl.String(), "provider resource"),
        ("RegionId", pl.String(), "provider region"),
        ("PricingQuantity", pl.Float64(), "quantity priced"),
        ("PricingUnit", pl.String(), "unit of PricingQuantity"),
        ("ConsumedQuantity", pl.Float64(), "quantity consumed"),
        ("ConsumedUnit", pl.String(), "unit of ConsumedQuantity"),
        ("ChargeCategory", pl.String(), "Usage, Purchase, Tax, Credit, Adjustment"),
        ("CommitmentDiscountId", pl.String(), "commitment the row draws on"),
        ("CommitmentDiscountStatus", pl.String(), "Used or Unused"),
        ("Tags", pl.String(), "JSON object of tags"),
        ("accelerator", pl.String(), "SKU catalog id mapped from SkuId"),
        ("team", pl.String(), "team mapped from Tags"),
        ("source", pl.String(), "connector and file"),
    ],
    key=("row_hash",),
    required=("ChargePeriodStart", "ChargePeriodEnd", "BilledCost", "EffectiveCost"),
    doc="Cloud bills in FOCUS columns (a subset), mapped to accelerator and team.",
)

SKU_CATALOG = _spec(
    "sku_catalog",
    [
        ("accelerator", pl.String(), "canonical id"),
        ("vendor", pl.String(), "maker"),
        ("family", pl.String(), "fungibility family: demand may move within a family"),
        ("generation", pl.String(), "architecture generation"),
        ("aliases", pl.List(pl.String()), "names seen in exports that mean this SKU"),
        ("memory_gb", pl.Float64(), "GB of accelerator memory per chip"),
        ("power_w", pl.Float64(), "W per chip at typical load, board only"),
        ("perf_index", pl.Float64(), "relative throughput per chip (A100 80GB = 1.0)"),
        ("host_cores_per_chip", pl.Float64(), "host CPU cores each chip needs"),
        ("storage_tb_per_chip", pl.Float64(), "TB of local storage per chip"),
        ("network_gbps_per_chip", pl.Float64(), "Gbit/s of network per chip"),
        ("source", pl.String(), "connector and file"),
    ],
    key=("accelerator",),
    required=("vendor", "family", "generation", "power_w", "perf_index"),
    doc="Accelerator SKUs and their physical figures.",
)

PRICE_BOOK = _spec(
    "price_book",
    [
        ("accelerator", pl.String(), "SKU catalog id"),
        ("region", pl.String(), "region id"),
        ("capex_usd", pl.Float64(), "USD per chip installed, server share included"),
        ("depreciation_years", pl.Float64(), "straight-line life, years"),
        ("lead_time_weeks", pl.Float64(), "weeks from order to service"),
        ("usd_per_kwh", pl.Float64(), "USD per kWh of electricity"),
        ("pue", pl.Float64(), "power usage effectiveness (>= 1)"),
        ("facility_usd_per_kw_month", pl.Float64(), "USD per kW of IT load per month"),
        ("network_storage_capex_share", pl.Float64(), "fraction of capex added for network"),
        ("maintenance_capex_share_per_year", pl.Float64(), "fraction of capex per year"),
        ("on_demand_usd_per_hour", pl.Float64(), "USD per chip-hour, cloud on-demand"),
        ("commit_1y_usd_per_hour", pl.Float64(), "USD per chip-hour, 1-year commitment"),
        ("commit_3y_usd_per_hour", pl.Float64(), "USD per chip-hour, 3-year commitment"),
        ("spot_usd_per_hour", pl.Float64(), "USD per chip-hour, spot/preemptible"),
        ("min_order_chips", pl.Int64(), "smallest purchase lot, chips"),
        ("source", pl.String(), "where the figures come from"),
        ("as_of", pl.Date(), "date the figures were true"),
    ],
    key=("accelerator", "region"),
    required=("capex_usd", "depreciation_years", "lead_time_weeks", "usd_per_kwh", "pue"),
    doc="Owned and cloud prices per pool, each with its source and date.",
)

JOB_RECORDS = _spec(
    "job_records",
    [
        ("job_id", pl.String(), "scheduler job id"),
        ("submit_time", UTC_DATETIME, "UTC instant the job was submitted"),
        ("start_time", UTC_DATETIME, "UTC instant it started running"),
        ("end_time", UTC_DATETIME, "UTC instant it ended"),
        ("chips", pl.Float64(), "chips held while running (fractions allowed for shares)"),
        ("accelerator", pl.String(), "SKU catalog id"),
        ("region", pl.String(), "region id"),
        ("team", pl.String(), "team name"),
        ("workload", pl.String(), "training, serving, research, batch or unknown"),
    ],
    key=("job_id",),
    required=("submit_time", "start_time", "end_time", "chips", "accelerator", "region", "team"),
    doc="Scheduler job records, the input of usage_daily (not stored as a table).",
)

USAGE_HOURLY = _spec(
    "usage_hourly",
    [
        ("hour", UTC_DATETIME, "start of the UTC hour"),
        ("accelerator", pl.String(), "SKU catalog id"),
        ("region", pl.String(), "region id"),
        ("team", pl.String(), "team name"),
        ("workload", pl.String(), "one of training, serving, research, batch, unknown"),
        ("chip_hours_used", pl.Float64(), "chip-hours run in the hour"),
        ("chip_hours_queued", pl.Float64(), "chip-hours waited in the hour"),
        ("peak_chips", pl.Float64(), "largest number of chips running at once in the hour"),
        ("source", pl.String(), "connector and file the row came from"),
    ],
    key=("hour", "accelerator", "region", "team", "workload"),
    required=("chip_hours_used", "chip_hours_queued", "peak_chips", "source"),
    doc="Hourly usage, for serving pools whose peak within the day matters (--grain hour).",
)

UTILIZATION_DAILY = _spec(
    "utilization_daily",
    [
        ("date", pl.Date(), "UTC calendar day"),
        ("accelerator", pl.String(), "SKU catalog id"),
        ("region", pl.String(), "region id"),
        ("team", pl.String(), "team, when the metric carries one (null: the whole pool)"),
        ("metric", pl.String(), "metric name, e.g. DCGM_FI_DEV_GPU_UTIL"),
        ("chip_hours_observed", pl.Float64(), "chip-hours the metric covered (chips x hours)"),
        ("chip_hours_busy", pl.Float64(), "chip-hours busy: observed x utilization"),
        ("samples", pl.Int64(), "metric samples aggregated"),
        ("source", pl.String(), "connector and file the row came from"),
    ],
    # team is null for pool-wide metrics, so it cannot be a key column; rows are unique on
    # (date, accelerator, region, team, metric) with null as its own value.
    key=("date", "accelerator", "region", "metric"),
    required=("chip_hours_observed", "chip_hours_busy", "samples", "source"),
    doc="Busy chip-hours from utilization metrics (Prometheus/DCGM), per pool and day.",
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        USAGE_DAILY,
        INVENTORY,
        ALLOCATIONS,
        ORDERS,
        EVENTS,
        BILLING,
        SKU_CATALOG,
        PRICE_BOOK,
        JOB_RECORDS,
        USAGE_HOURLY,
        UTILIZATION_DAILY,
    )
}

QUARANTINE_SCHEMA = pl.Schema(
    [
        ("table", pl.String()),
        ("source", pl.String()),
        ("line", pl.Int64()),
        ("field", pl.String()),
        ("value", pl.String()),
        ("reason", pl.String()),
        ("record", pl.String()),
    ]
)
"""Rejected rows: which table they were for, the file and 1-based line, the first field at
fault, its value, every reason joined by ``; ``, and the raw record so it can be fixed."""


class AcceleratorResolver(Protocol):
    """Anything that maps names seen in exports to canonical accelerator ids."""

    def alias_map(self) -> Mapping[str, str]:
        """Return normalized alias -> canonical id, ids included as their own aliases."""
        ...


_ALIAS_SEPARATORS = re.compile(r"[\s_/]+")


def normalize_alias(name: str) -> str:
    """Normalize an accelerator name for alias matching: lower case, '-' for separators."""
    return _ALIAS_SEPARATORS.sub("-", name.strip().lower())


def normalized_alias_expr(name: pl.Expr) -> pl.Expr:
    """:func:`normalize_alias` as an expression, for columns with many distinct names."""
    return (
        name.cast(pl.String).str.strip_chars().str.to_lowercase().str.replace_all(r"[\s_/]+", "-")
    )


@dataclass(frozen=True)
class Check:
    """A row rule: rows where ``fails`` is true are quarantined with ``reason``.

    ``fails`` and ``reason`` are polars expressions evaluated on the typed frame (with the
    raw string columns available as ``<column>__raw``). ``fails`` must be null-safe: a null
    counts as passing.
    """

    field: str
    fails: pl.Expr
    reason: pl.Expr


@dataclass(frozen=True)
class Validated:
    """The outcome of validating a frame: good rows and quarantined rows, nothing else."""

    good: pl.DataFrame
    quarantine: pl.DataFrame

    @property
    def rows_in(self) -> int:
        """Rows that went in: good plus quarantined."""
        return self.good.height + self.quarantine.height


def _cast_expr(column: str, dtype: pl.DataType) -> pl.Expr:
    """Cast a raw text column to a non-timestamp dtype (timestamps: parse_timestamps)."""
    raw = pl.col(column)
    if isinstance(dtype, pl.Date):
        return raw.cast(pl.String).str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
    if dtype == pl.String:
        text = raw.cast(pl.String).str.strip_chars()
        return pl.when(text == "").then(None).otherwise(text)
    if isinstance(dtype, pl.List):
        return raw
    if dtype.is_integer():
        as_float = raw.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
        return (
            pl.when(as_float.is_finite() & (as_float == as_float.round(0)))
            .then(as_float)
            .otherwise(None)
            .cast(dtype, strict=False)
        )
    if dtype.is_float():
        as_float = raw.cast(pl.String).str.strip_chars().cast(dtype, strict=False)
        return pl.when(as_float.is_finite()).then(as_float).otherwise(None)
    return raw.cast(dtype, strict=False)


_TYPE_WORDS: dict[str, str] = {
    "Date": "a date (YYYY-MM-DD)",
    "Datetime": "a timestamp (ISO 8601, e.g. 2026-01-31T13:00:00Z)",
    "Int64": "a whole number",
    "Float64": "a finite number",
}


def _type_word(dtype: pl.DataType) -> str:
    return _TYPE_WORDS.get(type(dtype).__name__, str(dtype))


def _record_expr(columns: Iterable[pl.Expr]) -> pl.Expr:
    """The raw input row as a JSON object, so a quarantined row can be fixed and re-fed."""
    return pl.struct(list(columns)).struct.json_encode()


_TIMESTAMP_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M%#z",
)
_NAIVE_TIMESTAMP_FORMATS = (
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
)


def parse_timestamps(text: pl.Series) -> pl.Series:
    """Parse ISO 8601 text to UTC instants (microseconds); what does not parse is null.

    An offset (``Z``, ``+09:00``) is honoured; text without one is UTC. The common form
    (``2026-01-05T13:22:10Z`` or with an offset) is parsed with one explicit format; the
    other forms are tried only on what is still unparsed.
    """
    return parse_iso_timestamps(text.cast(pl.String), _TIMESTAMP_FORMATS + _NAIVE_TIMESTAMP_FORMATS)


def _cast_series(raw: pl.Series, dtype: pl.DataType) -> pl.Series:
    """Cast one raw column to its table dtype; values that do not fit become null."""
    if raw.dtype == dtype and dtype != pl.String:
        return raw
    if isinstance(dtype, pl.Datetime):
        if isinstance(raw.dtype, pl.Datetime):
            value = raw if raw.dtype.time_zone else raw.dt.replace_time_zone("UTC")
            return value.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        return parse_timestamps(raw)
    return pl.DataFrame([raw]).select(_cast_expr(raw.name, dtype)).to_series()


def _json_text(values: pl.Series) -> pl.Series:
    """A nested column as JSON text, one value at a time (rare: only malformed input)."""
    return pl.Series(
        values.name,
        [None if v is None else json.dumps(v, default=str) for v in values.to_list()],
        dtype=pl.String,
    )


def _resolve_accelerators(names: pl.Series, resolver: AcceleratorResolver) -> pl.Series:
    """Map each distinct name once (there are few) to its canonical id, null if unknown."""
    alias_map = resolver.alias_map()
    mapping = {
        name: alias_map.get(normalize_alias(name)) for name in names.drop_nulls().unique().to_list()
    }
    return names.replace_strict(mapping, default=None, return_dtype=pl.String).alias(names.name)


_SAME_TEXT_TWINS = {"submit_time": "start_time"}
"""Columns whose text often equals another's: equal text gets the twin's parsed value."""


def validate(
    raw: pl.DataFrame,
    spec: TableSpec,
    *,
    source: str,
    checks: Iterable[Check] = (),
    resolver: AcceleratorResolver | None = None,
    line_column: str = "line",
    keep: str | None = None,
) -> Validated:
    """Validate a raw frame against a table spec, quarantining rather than raising.

    ``raw`` holds the input columns (usually all strings, as read from a file) and a
    ``line`` column with each row's 1-based line in ``source``. Missing optional columns are
    added as nulls; missing required columns must be caught by the caller (a file-level
    error). Each row is cast to the spec's dtypes; a value that does not parse, a missing
    required value, an unknown accelerator and every failed ``check`` quarantine the row with
    a specific reason. Good rows come back with exactly the spec's columns and ``source``
    (and ``keep``, a column of ``raw`` passed through, when given).
    """
    if line_column not in raw.columns:
        raw = raw.with_row_index(line_column, offset=2).with_columns(
            pl.col(line_column).cast(pl.Int64)
        )
    input_columns = [c for c in raw.columns if c != line_column and not c.startswith("__")]
    present = [c for c in spec.schema.names() if c in raw.columns and c != "source"]
    # A list or object where a plain value belongs (JSON input) is judged as its JSON text,
    # so it is quarantined as "not a number" (or kept as text) instead of failing the cast.
    nested = [c for c in present if raw.schema[c].is_nested() and not spec.schema[c].is_nested()]
    if nested:
        raw = raw.with_columns(_json_text(raw.get_column(c)) for c in nested)
    frame = raw.with_columns(
        [pl.col(c).alias(f"{c}__raw") for c in present]
        + [
            pl.lit(None, dtype=pl.String).alias(f"{c}__raw")
            for c in spec.schema.names()
            if c not in raw.columns and c != "source"
        ]
    )
    casts: dict[str, pl.Series] = {}
    names = [c for c in spec.schema.names() if c != "source"]
    for c in sorted(names, key=lambda name: name in _SAME_TEXT_TWINS):
        raw_values = frame.get_column(f"{c}__raw")
        twin = _SAME_TEXT_TWINS.get(c)
        if twin in casts and raw_values.dtype == pl.String:
            # Most jobs start when submitted: parse only the texts that differ from the twin.
            same = (raw_values == frame.get_column(f"{twin}__raw")).fill_null(False)
            if same.any():
                where = (~same).arg_true()
                reused = casts[twin].clone()
                if where.len():
                    reused = reused.scatter(
                        where, _cast_series(raw_values.gather(where), spec.schema[c])
                    )
                casts[c] = reused.alias(c)
                continue
        casts[c] = _cast_series(raw_values, spec.schema[c]).alias(c)
    frame = frame.with_columns(list(casts.values()))
    if resolver is not None and "accelerator" in spec.schema.names():
        frame = frame.with_columns(_resolve_accelerators(frame.get_column("accelerator"), resolver))

    failures: list[tuple[str, pl.Expr, pl.Expr]] = []
    for column in spec.schema.names():
        if column == "source":
            continue
        raw_col = pl.col(f"{column}__raw")
        if isinstance(spec.schema[column], pl.List):
            raw_text = pl.lit("list")
        else:
            raw_text = raw_col.cast(pl.String).str.strip_chars()
        raw_present = raw_col.is_not_null() & (raw_text != "")
        parsed = pl.col(column)
        if column == "accelerator" and resolver is not None:
            failures.append(
                (
                    column,
                    raw_present & parsed.is_null(),
                    pl.format(
                        "unknown accelerator '{}': add it to the SKU catalog or as an alias",
                        raw_text,
                    ),
                )
            )
        elif spec.schema[column] != pl.String and not isinstance(spec.schema[column], pl.List):
            failures.append(
                (
                    column,
                    raw_present & parsed.is_null(),
                    pl.format(
                        "{} '{}' is not {}",
                        pl.lit(column),
                        raw_text,
                        pl.lit(_type_word(spec.schema[column])),
                    ),
                )
            )
        if column in spec.required:
            failures.append(
                (column, raw_col.is_null() | (raw_text == ""), pl.lit(f"{column} is missing"))
            )
    for check in checks:
        failures.append((check.field, check.fails.fill_null(False), check.reason))

    fail_flags = [f.fill_null(False).alias(f"__fail{i}") for i, (_, f, _) in enumerate(failures)]
    frame = frame.with_columns(fail_flags)
    flag_names = [f"__fail{i}" for i in range(len(failures))]
    any_fail = pl.any_horizontal(flag_names) if flag_names else pl.lit(False)
    frame = frame.with_columns(any_fail.alias("__bad"))

    good = (
        frame.filter(~pl.col("__bad"))
        .with_columns(pl.lit(source).alias("source"))
        .select(
            [pl.col(c).cast(spec.schema[c]) for c in spec.schema.names()]
            + ([pl.col(keep)] if keep is not None else [])
        )
    )
    bad = frame.filter(pl.col("__bad"))
    if bad.height == 0:
        return Validated(good=good, quarantine=pl.DataFrame(schema=QUARANTINE_SCHEMA))

    reasons = [
        pl.when(pl.col(flag)).then(reason).otherwise(None)
        for flag, (_, _, reason) in zip(flag_names, failures, strict=True)
    ]
    first_field = pl.coalesce(
        [
            pl.when(pl.col(flag)).then(pl.lit(field_name)).otherwise(None)
            for flag, (field_name, _, _) in zip(flag_names, failures, strict=True)
        ]
    )
    first_value = pl.coalesce(
        [
            pl.when(pl.col(flag))
            .then(
                pl.col(f"{field_name}__raw").cast(pl.String)
                if f"{field_name}__raw" in frame.columns
                else pl.lit(None, dtype=pl.String)
            )
            .otherwise(None)
            for flag, (field_name, _, _) in zip(flag_names, failures, strict=True)
        ]
    )
    quarantine = bad.select(
        pl.lit(spec.name).alias("table"),
        pl.lit(source).alias("source"),
        pl.col(line_column).cast(pl.Int64).alias("line"),
        first_field.alias("field"),
        first_value.alias("value"),
        pl.concat_str(reasons, separator="; ", ignore_nulls=True).alias("reason"),
        _record_expr(
            [pl.col(f"{c}__raw").alias(c) if c in present else pl.col(c) for c in input_columns]
        ).alias("record"),
    )
    return Validated(good=good, quarantine=quarantine.cast(dict(QUARANTINE_SCHEMA)))  # type: ignore[arg-type]


def _one_of(column: str, allowed: tuple[str, ...], *, lower: bool = True) -> Check:
    value = pl.col(column).str.to_lowercase() if lower else pl.col(column)
    return Check(
        field=column,
        fails=pl.col(column).is_not_null() & ~value.is_in(list(allowed)),
        reason=pl.format(
            "{} '{}' is not one of {}", pl.lit(column), pl.col(column), pl.lit(", ".join(allowed))
        ),
    )


def _non_negative(column: str, *, strictly: bool = False) -> Check:
    bad = pl.col(column) <= 0 if strictly else pl.col(column) < 0
    word = "positive" if strictly else "zero or more"
    return Check(
        field=column,
        fails=bad,
        reason=pl.format("{} must be {}, got {}", pl.lit(column), pl.lit(word), pl.col(column)),
    )


#: No job holds more chips than this: the largest training runs hold ~100,000 accelerators.
MAX_CHIPS_PER_JOB = 1_000_000.0


def _at_most(column: str, limit: float, why: str) -> Check:
    return Check(
        field=column,
        fails=pl.col(column) > limit,
        reason=pl.format(
            "{} must be at most {} ({}), got {}",
            pl.lit(column),
            pl.lit(f"{limit:,.0f}"),
            pl.lit(why),
            pl.col(column),
        ),
    )


def _shown(column: str, *, timestamp: bool) -> pl.Expr:
    if timestamp:
        return pl.col(column).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return pl.col(column).cast(pl.String)


def _not_before(later: str, earlier: str, *, timestamps: bool = False) -> Check:
    return Check(
        field=later,
        fails=pl.col(later) < pl.col(earlier),
        reason=pl.format(
            "{} {} is before {} {}",
            pl.lit(later),
            _shown(later, timestamp=timestamps),
            pl.lit(earlier),
            _shown(earlier, timestamp=timestamps),
        ),
    )


def _finish(validated: Validated, transform: Callable[[pl.DataFrame], pl.DataFrame]) -> Validated:
    return Validated(good=transform(validated.good), quarantine=validated.quarantine)


def _lowercase(columns: Iterable[str]) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def apply(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns([pl.col(c).str.to_lowercase() for c in columns])

    return apply


def validate_job_records(
    raw: pl.DataFrame,
    *,
    source: str,
    resolver: AcceleratorResolver,
    extra_checks: Iterable[Check] = (),
    shortcut: bool = True,
) -> Validated:
    """Validate scheduler job records: times in order, chips positive, SKU known.

    A missing workload becomes ``unknown`` (it is optional in real exports); a workload
    outside the known set is quarantined so a typo does not create a new category.
    ``shortcut`` lets plainly good rows skip the full validation (same result, sooner; see
    :func:`plainly_good_jobs`); without it every row takes the full path.
    """
    checks = [
        _non_negative("chips", strictly=True),
        _at_most("chips", MAX_CHIPS_PER_JOB, "no job holds more; check the column's unit"),
        _not_before("start_time", "submit_time", timestamps=True),
        _not_before("end_time", "start_time", timestamps=True),
        _one_of("workload", WORKLOADS),
    ]
    extra = list(extra_checks)
    checks.extend(extra)
    if shortcut and not extra:
        plain = plainly_good_jobs(raw, resolver=resolver)
        if plain is not None:
            good, rest = plain
            if rest.height == 0:
                return Validated(
                    good=good.drop(_ROW), quarantine=pl.DataFrame(schema=QUARANTINE_SCHEMA)
                )
            judged = _validate_jobs_fully(rest, source, resolver, checks, keep=_ROW)
            merged = pl.concat([good, judged.good]).sort(_ROW).drop(_ROW)
            return Validated(good=merged, quarantine=judged.quarantine)
    return _validate_jobs_fully(raw, source, resolver, checks)


def _validate_jobs_fully(
    raw: pl.DataFrame,
    source: str,
    resolver: AcceleratorResolver,
    checks: list[Check],
    *,
    keep: str | None = None,
) -> Validated:
    validated = validate(
        raw, JOB_RECORDS, source=source, checks=checks, resolver=resolver, keep=keep
    )
    return _finish(
        validated,
        lambda f: f.with_columns(pl.col("workload").str.to_lowercase().fill_null("unknown")),
    )


_ROW = "__row"
_NOT_PLAIN_TEXT = r"^\s|\s$|^$"
"""Empty text or whitespace at either end: such a value goes to the full validation."""


def plainly_good_jobs(
    raw: pl.DataFrame, *, resolver: AcceleratorResolver
) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """The job records that pass every rule as written, typed; and the raw rest.

    The common case of a big export: text columns as read, nothing to strip, every value
    parsing and every check passing. Those rows are typed with the same parsers
    :func:`validate` uses and come back as good rows; a row with anything unusual (a value
    that needs stripping, a workload in capitals, a failed check) is left, raw, for the full
    validation, which judges it and writes its reasons. So the split changes how fast the
    answer comes, never the answer. Both frames carry ``__row``, the row's position in
    ``raw``, to merge them back in order. ``None`` when the columns are not all text.
    """
    names = [c for c in JOB_RECORDS.schema.names() if c != "source"]
    if raw.height == 0 or any(raw.schema.get(c) != pl.String for c in names):
        return None
    if "line" not in raw.columns:  # as validate() numbers them, before the rows are split
        raw = raw.with_row_index("line", offset=2).with_columns(pl.col("line").cast(pl.Int64))
    start = parse_timestamps(raw.get_column("start_time")).alias("start_time")
    submit_text = raw.get_column("submit_time")
    # Most jobs start when submitted: parse only the submit texts that differ.
    differ = (~(submit_text == raw.get_column("start_time")).fill_null(False)).arg_true()
    submit = start.clone()
    if differ.len():
        submit = submit.scatter(differ, parse_timestamps(submit_text.gather(differ)))
    typed = raw.select(
        pl.col("job_id"),
        pl.lit(submit.alias("submit_time")),
        pl.lit(start),
        pl.lit(parse_timestamps(raw.get_column("end_time")).alias("end_time")),
        pl.col("chips").cast(pl.Float64, strict=False),
        pl.lit(_resolve_accelerators(raw.get_column("accelerator"), resolver)),
        pl.col("region"),
        pl.col("team"),
        pl.col("workload"),
    ).with_row_index(_ROW)
    plain_text = [
        pl.col(c).str.contains(_NOT_PLAIN_TEXT).not_().fill_null(False)
        for c in ("job_id", "region", "team")
    ]
    ok = typed.select(
        pl.all_horizontal(
            pl.col("submit_time").is_not_null(),
            pl.col("start_time") >= pl.col("submit_time"),
            pl.col("end_time") >= pl.col("start_time"),
            pl.col("chips").is_finite(),
            pl.col("chips") > 0,
            pl.col("chips") <= MAX_CHIPS_PER_JOB,
            pl.col("accelerator").is_not_null(),
            *plain_text,
            pl.col("workload").is_null() | pl.col("workload").is_in(WORKLOADS),
        ).fill_null(False)
    ).to_series()
    good = typed.filter(ok).select(
        *names[:-1],
        pl.col("workload").fill_null("unknown"),
        _ROW,
    )
    rest = raw.with_row_index(_ROW).filter(~ok)
    return good.cast(dict(JOB_RECORDS.schema)), rest  # type: ignore[arg-type]


def validate_usage_daily(
    raw: pl.DataFrame, *, source: str, resolver: AcceleratorResolver
) -> Validated:
    """Validate usage_daily rows: non-negative chip-hours, a known workload and SKU."""
    checks = [
        _non_negative("chip_hours_used"),
        _non_negative("chip_hours_allocated"),
        _non_negative("chip_hours_queued"),
        _non_negative("peak_chips"),
        _one_of("workload", WORKLOADS),
        Check(
            "chip_hours_used",
            pl.col("chip_hours_used") > pl.col("peak_chips") * 24 + 1e-6,
            pl.format(
                "chip_hours_used {} exceeds 24 h x peak_chips {}",
                pl.col("chip_hours_used"),
                pl.col("peak_chips"),
            ),
        ),
    ]
    validated = validate(raw, USAGE_DAILY, source=source, checks=checks, resolver=resolver)
    return _finish(validated, _lowercase(["workload"]))


def validate_usage_hourly(
    raw: pl.DataFrame, *, source: str, resolver: AcceleratorResolver
) -> Validated:
    """Validate usage_hourly rows: non-negative chip-hours, at most one hour of each chip."""
    checks = [
        _non_negative("chip_hours_used"),
        _non_negative("chip_hours_queued"),
        _non_negative("peak_chips"),
        _one_of("workload", WORKLOADS),
        Check(
            "chip_hours_used",
            pl.col("chip_hours_used") > pl.col("peak_chips") + 1e-6,
            pl.format(
                "chip_hours_used {} exceeds 1 h x peak_chips {}",
                pl.col("chip_hours_used"),
                pl.col("peak_chips"),
            ),
        ),
    ]
    validated = validate(raw, USAGE_HOURLY, source=source, checks=checks, resolver=resolver)
    return _finish(validated, _lowercase(["workload"]))


def validate_utilization_daily(
    raw: pl.DataFrame, *, source: str, resolver: AcceleratorResolver
) -> Validated:
    """Validate utilization_daily rows: busy chip-hours between zero and observed."""
    checks = [
        _non_negative("chip_hours_observed"),
        _non_negative("chip_hours_busy"),
        _non_negative("samples"),
        Check(
            "chip_hours_busy",
            pl.col("chip_hours_busy") > pl.col("chip_hours_observed") * (1 + 1e-9),
            pl.format(
                "chip_hours_busy {} exceeds chip_hours_observed {}",
                pl.col("chip_hours_busy"),
                pl.col("chip_hours_observed"),
            ),
        ),
    ]
    return validate(raw, UTILIZATION_DAILY, source=source, checks=checks, resolver=resolver)


def validate_inventory(
    raw: pl.DataFrame, *, source: str, resolver: AcceleratorResolver
) -> Validated:
    """Validate inventory snapshots: healthy chips between zero and installed chips."""
    checks = [
        _non_negative("installed_chips"),
        _non_negative("healthy_chips"),
        Check(
            "healthy_chips",
            pl.col("healthy_chips") > pl.col("installed_chips"),
            pl.format(
                "healthy_chips {} exceeds installed_chips {}",
                pl.col("healthy_chips"),
                pl.col("installed_chips"),
            ),
        ),
    ]
    return validate(raw, INVENTORY, source=source, checks=checks, resolver=resolver)


def validate_allocations(
    raw: pl.DataFrame, *, source: str, resolver: AcceleratorResolver
) -> Validated:
    """Validate allocations: positive chips, a known kind, valid_to not before valid_from."""
    checks = [
        _non_negative("chips", strictly=True),
        _one_of("kind", ALLOCATION_KINDS),
        _not_before("valid_to", "valid_from"),
    ]
    validated = validate(raw, ALLOCATIONS, source=source, checks=checks, resolver=resolver)
    return _finish(validated, _lowercase(["kind"]))


def validate_orders(raw: pl.DataFrame, *, source: str, resolver: AcceleratorResolver) -> Validated:
    """Validate orders: positive quantity, a known status, promised after ordered."""
    checks = [
        _non_negative("quantity", strictly=True),
        _one_of("status", ORDER_STATUSES),
        _not_before("expected_on", "ordered_on"),
        _not_before("delivered_on", "ordered_on"),
        Check(
            "delivered_on",
            (pl.col("status").str.to_lowercase() == "delivered") & pl.col("delivered_on").is_null(),
            pl.lit("status is delivered but delivered_on is missing"),
        ),
    ]
    validated = validate(raw, ORDERS, source=source, checks=checks, resolver=resolver)
    return _finish(validated, _lowercase(["status"]))


def validate_events(raw: pl.DataFrame, *, source: str, resolver: AcceleratorResolver) -> Validated:
    """Validate events: probability in [0, 1], end not before start."""
    checks = [
        Check(
            "probability",
            (pl.col("probability") < 0) | (pl.col("probability") > 1),
            pl.format("probability must be between 0 and 1, got {}", pl.col("probability")),
        ),
        _not_before("end", "start"),
    ]
    return validate(raw, EVENTS, source=source, checks=checks, resolver=resolver)


MAX_BILLING_ROW_USD = 1e12
"""A billing row's cost beyond this (a trillion USD) is a broken export, not a charge."""


def validate_billing(
    raw: pl.DataFrame, *, source: str, resolver: AcceleratorResolver | None = None
) -> Validated:
    """Validate FOCUS billing rows: a period that ends after it starts, USD, known category.

    ``accelerator`` and ``team`` are filled by the billing connector (from SkuId and Tags);
    this function only checks them when present.
    """
    checks = [
        Check(
            "ChargePeriodEnd",
            pl.col("ChargePeriodEnd") <= pl.col("ChargePeriodStart"),
            pl.lit("ChargePeriodEnd is not after ChargePeriodStart"),
        ),
        Check(
            "BillingCurrency",
            pl.col("BillingCurrency").is_not_null() & (pl.col("BillingCurrency") != "USD"),
            pl.format(
                "BillingCurrency '{}' is not USD: convert before ingesting",
                pl.col("BillingCurrency"),
            ),
        ),
        _one_of("ChargeCategory", CHARGE_CATEGORIES, lower=False),
    ]
    checks += [
        Check(
            column,
            pl.col(column).abs() > MAX_BILLING_ROW_USD,
            pl.format(
                "{} {} is beyond any one charge (over 1e12 USD): check the export",
                pl.lit(column),
                pl.col(f"{column}__raw"),
            ),
        )
        for column in ("BilledCost", "EffectiveCost", "ListCost")
    ]
    return validate(raw, BILLING, source=source, checks=checks, resolver=resolver)


def validate_sku_catalog(raw: pl.DataFrame, *, source: str) -> Validated:
    """Validate SKU catalog rows: positive power and performance, non-negative attachments."""
    checks = [
        _non_negative("power_w", strictly=True),
        _non_negative("perf_index", strictly=True),
        _non_negative("memory_gb"),
        _non_negative("host_cores_per_chip"),
        _non_negative("storage_tb_per_chip"),
        _non_negative("network_gbps_per_chip"),
    ]
    validated = validate(raw, SKU_CATALOG, source=source, checks=checks)
    return _finish(
        validated, lambda f: f.with_columns(normalized_alias_expr(pl.col("accelerator")))
    )


def validate_price_book(
    raw: pl.DataFrame, *, source: str, resolver: AcceleratorResolver
) -> Validated:
    """Validate price book rows: positive prices and lives, PUE at least 1, shares in [0, 1]."""
    positive = ["capex_usd", "depreciation_years", "usd_per_kwh", "min_order_chips"]
    non_negative = [
        "lead_time_weeks",
        "facility_usd_per_kw_month",
        "on_demand_usd_per_hour",
        "commit_1y_usd_per_hour",
        "commit_3y_usd_per_hour",
        "spot_usd_per_hour",
    ]
    checks = [_non_negative(c, strictly=True) for c in positive]
    checks += [_non_negative(c) for c in non_negative]
    checks.append(
        Check(
            "pue", pl.col("pue") < 1, pl.format("pue must be at least 1.0, got {}", pl.col("pue"))
        )
    )
    for share in ("network_storage_capex_share", "maintenance_capex_share_per_year"):
        checks.append(
            Check(
                share,
                (pl.col(share) < 0) | (pl.col(share) > 1),
                pl.format("{} must be a fraction in [0, 1], got {}", pl.lit(share), pl.col(share)),
            )
        )
    return validate(raw, PRICE_BOOK, source=source, checks=checks, resolver=resolver)
