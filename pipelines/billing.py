"""FOCUS billing exports -> ``billing``.

Reads a FinOps FOCUS export (columns of FOCUS 1.0 to 1.3; CSV, gzip-compressed CSV or
Parquet) into the canonical ``billing`` table, exactly :data:`workbench.schema.BILLING`'s
columns in order. What a result of :func:`ingest_focus_billing` guarantees:

* Nothing is lost: every data row is loaded, quarantined (file, 1-based line, field, reason
  and the raw record as read) or dropped as a duplicate, and the dollars reconcile to the
  cent: ``TableIngest.totals`` holds BilledCost and EffectiveCost in and out.
* Billing rows are money: a row loads whenever its period, costs, currency and charge
  category are sound, even when no team or accelerator can be found for it (non-accelerator
  services, untagged resources): those stay null, and their dollars are reported.
* The text ``null`` (any case) and empty cells are missing values. FOCUS columns a file lacks
  (``CommitmentDiscountStatus`` before FOCUS 1.1, say) are null; other columns are ignored,
  except that they count in the row hash and may name the accelerator (below).
* ``row_hash`` is the SHA-256 of the row's canonical content: every column by name, with
  missing values as null, costs and quantities as numbers and charge periods as UTC
  instants. The same export read from CSV or from Parquet gets the same hashes, and a row
  whose content repeats an earlier row's is a duplicate: dropped and counted.
* ``accelerator`` is a SKU catalog id: the first of these that is a catalog id or alias
  (the same name normalization as everywhere): ``SkuId``; ``ResourceId``; the last
  ``/``-segment of ``ResourceId``; the tags in :data:`ACCELERATOR_TAG_KEYS`; custom columns
  (FOCUS ``x_`` prefix) whose name mentions an accelerator, GPU or TPU.
* ``team`` is the value of the tag ``tag_key`` in the ``Tags`` JSON object (null when the
  tag, the object or valid JSON is missing).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.readers import PROBLEM_COLUMN, read_delimited, split_broken_rows
from pipelines.result import TableIngest
from workbench.errors import WorkbenchError
from workbench.schema import (
    BILLING,
    MAX_BILLING_ROW_USD,
    QUARANTINE_SCHEMA,
    AcceleratorResolver,
    normalized_alias_expr,
    parse_timestamps,
    validate_billing,
)

__all__ = [
    "ACCELERATOR_TAG_KEYS",
    "FOCUS_COLUMNS",
    "FOCUS_REQUIRED_COLUMNS",
    "WASTE_SCHEMA",
    "commitment_waste",
    "ingest_focus_billing",
]

_DERIVED_COLUMNS = ("row_hash", "accelerator", "team", "source")
FOCUS_COLUMNS: tuple[str, ...] = tuple(
    c for c in BILLING.schema.names() if c not in _DERIVED_COLUMNS
)
"""The FOCUS columns the ``billing`` table keeps."""
FOCUS_REQUIRED_COLUMNS: tuple[str, ...] = tuple(
    c for c in BILLING.required if c not in _DERIVED_COLUMNS
)
"""Columns a file must have; any other FOCUS column may be absent (it is then null)."""
ACCELERATOR_TAG_KEYS: tuple[str, ...] = (
    "accelerator",
    "accelerator_type",
    "gpu_type",
    "cloud.google.com/gke-accelerator",
    "cloud.google.com/gke-tpu-accelerator",
)
"""Tag keys whose value may name the accelerator, tried in order after SkuId and ResourceId."""
_ACCELERATOR_COLUMN_WORDS = ("accelerator", "gpu", "tpu")

WASTE_SCHEMA = pl.Schema(
    [
        ("month", pl.Date()),
        ("accelerator", pl.String()),
        ("team", pl.String()),
        ("CommitmentDiscountId", pl.String()),
        ("unused_usd", pl.Float64()),
    ]
)
"""Columns of :func:`commitment_waste`: ``month`` is the first UTC day of the month."""

_LINE = "line"
_PARQUET_SUFFIXES = (".parquet", ".pq")
_PARQUET_MAGIC = b"PAR1"
_MICRO_USD = 1_000_000
_CENT = Decimal("0.01")
_FOCUS_FIX = (
    "export the bill in FOCUS 1.0 or later (CSV, CSV.gz or Parquet) with the columns "
    + ", ".join(FOCUS_REQUIRED_COLUMNS)
)


def ingest_focus_billing(
    path: Path, *, resolver: AcceleratorResolver, source: str, tag_key: str = "team"
) -> TableIngest:
    """Read one FOCUS billing export into ``billing`` rows, quarantine and reconciliation.

    Raises :class:`WorkbenchError` (file, line, column and a fix) when the file as a whole
    cannot be used: missing, unreadable, or without a required column.
    """
    raw, blank_lines = _read_focus(path)
    file_columns = [c for c in raw.columns if c not in (_LINE, PROBLEM_COLUMN)]
    records = raw.select(_LINE, pl.struct(file_columns).struct.json_encode().alias("record"))
    cleaned = raw.with_columns(_missing_as_null(c).alias(c) for c in file_columns)
    cleaned = cleaned.with_columns(
        pl.lit(None, dtype=pl.String).alias(c) for c in FOCUS_COLUMNS if c not in file_columns
    )
    hashed_columns = sorted({*file_columns, *FOCUS_COLUMNS})
    cleaned = cleaned.with_columns(_row_hashes(cleaned, hashed_columns))

    # An exact copy of an earlier row is the same charge exported twice: drop it, count it.
    first = cleaned["row_hash"].is_first_distinct()
    duplicates = int((~first).sum())
    rows = cleaned.filter(first)
    rows = rows.with_columns(
        _resolve_accelerators(rows, file_columns, resolver).alias("accelerator"),
        _tag_value(tag_key).alias("team"),
    )

    sound, broken = split_broken_rows(rows, table=BILLING.name, source=source)
    validated = validate_billing(sound, source=source)
    quarantine = (
        pl.concat([validated.quarantine, broken])
        .drop("record")
        .join(records, on=_LINE, how="left")
        .select(QUARANTINE_SCHEMA.names())
        .sort(_LINE)
    )
    good = validated.good.select(BILLING.schema.names())
    totals = _money_totals(rows, good, quarantine[_LINE])
    return TableIngest(
        table=BILLING.name,
        source=source,
        good=good,
        quarantine=quarantine,
        rows_read=raw.height,
        duplicates_dropped=duplicates,
        blank_lines=blank_lines,
        totals=totals,
    )


def commitment_waste(billing: pl.DataFrame) -> pl.DataFrame:
    """Unused commitment dollars per month, accelerator, team and commitment.

    Sums ``EffectiveCost`` of the rows whose ``CommitmentDiscountStatus`` is ``Unused``
    (the part of a commitment nobody drew on), by the UTC month of ``ChargePeriodStart``.
    Null accelerator or team are groups of their own, so no dollar is left out. Returns
    :data:`WASTE_SCHEMA` columns, sorted by month, accelerator, team and commitment.
    """
    needed = [
        "ChargePeriodStart",
        "EffectiveCost",
        "CommitmentDiscountStatus",
        "CommitmentDiscountId",
        "accelerator",
        "team",
    ]
    missing = [c for c in needed if c not in billing.columns]
    if missing:
        raise WorkbenchError(
            f"billing frame lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
            field=missing[0],
            fix="pass the billing table produced by ingest_focus_billing",
        )
    keys = list(WASTE_SCHEMA.names()[:-1])
    waste = (
        billing.lazy()
        .filter(pl.col("CommitmentDiscountStatus").str.to_lowercase() == "unused")
        .with_columns(pl.col("ChargePeriodStart").dt.truncate("1mo").dt.date().alias("month"))
        .group_by(keys)
        .agg(pl.col("EffectiveCost").sum().alias("unused_usd"))
        .sort(keys, nulls_last=True)
        .collect()
    )
    return waste.cast(dict(WASTE_SCHEMA))  # type: ignore[arg-type]


# Reading: every cell as text, with its line, whatever the format.


def _read_focus(path: Path) -> tuple[pl.DataFrame, int]:
    """All cells as text plus ``line`` and ``__problem``, and the count of blank lines."""
    if not path.exists():
        raise WorkbenchError("file not found", file=path, fix="check the path and try again")
    if path.is_dir():
        raise WorkbenchError("is a folder, not a file", file=path, fix="name a file inside it")
    if _is_parquet(path):
        return _read_parquet(path), 0
    try:
        table = read_delimited(path, required=FOCUS_REQUIRED_COLUMNS)
    except WorkbenchError as exc:
        if exc.field in FOCUS_REQUIRED_COLUMNS:
            fix = _FOCUS_FIX
        else:
            fix = exc.fix or "check the file is a readable FOCUS export (CSV, CSV.gz or Parquet)"
        raise WorkbenchError(
            exc.message, file=exc.file, line=exc.line, field=exc.field, fix=fix
        ) from None
    return table.frame, table.blank_lines


def _is_parquet(path: Path) -> bool:
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(len(_PARQUET_MAGIC)) == _PARQUET_MAGIC
    except OSError as exc:
        raise WorkbenchError(f"cannot read file: {exc}", file=path) from None


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        typed = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WorkbenchError(
            f"cannot read Parquet file: {first_line}",
            file=path,
            fix="re-export the bill, or check the file is complete Parquet",
        ) from None
    missing = [c for c in FOCUS_REQUIRED_COLUMNS if c not in typed.columns]
    if missing:
        raise WorkbenchError(
            f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(found: {', '.join(typed.columns)})",
            file=path,
            line=1,
            field=missing[0],
            fix=_FOCUS_FIX,
        )
    text = pl.DataFrame(
        [_as_text(typed.get_column(name)) for name in typed.columns],
        schema={name: pl.String for name in typed.columns},
    )
    # A Parquet file has no lines; the 1-based row number plays their part.
    return text.with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(_LINE),
        pl.lit(None, dtype=pl.String).alias(PROBLEM_COLUMN),
    )


def _as_text(column: pl.Series) -> pl.Series:
    """A typed Parquet column as the text a CSV export of it would hold."""
    dtype = column.dtype
    if isinstance(dtype, pl.Datetime):
        # FOCUS times are UTC; a naive timestamp is read as UTC.
        utc = (
            column.dt.convert_time_zone("UTC")
            if dtype.time_zone
            else column.dt.replace_time_zone("UTC")
        )
        return utc.dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ")
    if isinstance(dtype, pl.Struct):
        return column.struct.json_encode()
    if isinstance(dtype, pl.List | pl.Array):
        return pl.Series(column.name, [_nested_json(v) for v in column.to_list()], pl.String)
    return column.cast(pl.String, strict=False)


def _nested_json(value: Any) -> str | None:
    if value is None:
        return None
    # Arrow writes a map (how some exports store Tags) as a list of key/value structs.
    if isinstance(value, list) and all(
        isinstance(item, dict) and set(item) == {"key", "value"} for item in value
    ):
        value = {item["key"]: item["value"] for item in value}
    return json.dumps(value, default=str)


# Cleaning, hashing and mapping.


def _missing_as_null(column: str) -> pl.Expr:
    text = pl.col(column).str.strip_chars()
    return pl.when((text != "") & (text.str.to_lowercase() != "null")).then(text)


def _canonical(frame: pl.DataFrame, column: str) -> pl.Series:
    """The value of a cleaned text column as it enters the row hash."""
    text = frame.get_column(column)
    dtype = BILLING.schema.get(column)
    if dtype is not None and dtype.is_float():
        number = text.cast(pl.Float64, strict=False)
        canonical = pl.select(
            pl.when(number.is_finite()).then(number.cast(pl.String)).otherwise(text)
        ).to_series()
        return canonical.alias(column)
    if isinstance(dtype, pl.Datetime):
        instant = parse_timestamps(text).dt.epoch("us").cast(pl.String)
        return instant.fill_null(text).alias(column)
    return text


def _row_hashes(frame: pl.DataFrame, columns: Sequence[str]) -> pl.Series:
    canonical = pl.DataFrame([_canonical(frame, c) for c in columns])
    content = canonical.select(pl.struct(list(columns)).struct.json_encode()).to_series()
    return pl.Series(
        "row_hash",
        [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in content.to_list()],
        dtype=pl.String,
    )


def _json_path(key: str) -> str:
    escaped = key.replace("\\", "\\\\").replace("'", "\\'")
    return f"$['{escaped}']"


def _tag_value(key: str) -> pl.Expr:
    """The tag ``key`` of the Tags JSON object as text; null unless a plain value."""
    value = pl.col("Tags").str.json_path_match(_json_path(key)).str.strip_chars()
    plain = (value != "") & ~value.str.starts_with("{") & ~value.str.starts_with("[")
    return pl.when(plain).then(value)


def _accelerator_candidates(file_columns: Sequence[str]) -> list[pl.Expr]:
    candidates = [
        pl.col("SkuId"),
        pl.col("ResourceId"),
        pl.col("ResourceId").str.split("/").list.last(),
    ]
    candidates += [pl.col("Tags").str.json_path_match(_json_path(k)) for k in ACCELERATOR_TAG_KEYS]
    candidates += [
        pl.col(c)
        for c in file_columns
        if c.lower().startswith("x_") and any(w in c.lower() for w in _ACCELERATOR_COLUMN_WORDS)
    ]
    return candidates


def _resolve_accelerators(
    frame: pl.DataFrame, file_columns: Sequence[str], resolver: AcceleratorResolver
) -> pl.Series:
    """The first candidate of each row that names a catalog accelerator, else null."""
    alias_map = dict(resolver.alias_map())
    resolved = [
        normalized_alias_expr(candidate).replace_strict(
            alias_map, default=None, return_dtype=pl.String
        )
        for candidate in _accelerator_candidates(file_columns)
    ]
    return frame.select(pl.coalesce(resolved).alias("accelerator")).to_series()


# Reconciliation.


def _micro_usd(column: str) -> pl.Expr:
    """A cost as whole micro-dollars (exact sums), null when it does not parse."""
    number = pl.col(column).cast(pl.Float64, strict=False)
    # Beyond the bound validation quarantines at, a "cost" is no amount (and would overflow).
    plausible = number.is_finite() & (number.abs() <= MAX_BILLING_ROW_USD)
    return pl.when(plausible).then((number * _MICRO_USD).round(0).cast(pl.Int128))


def _micro_total(micro_usd: pl.Series) -> int:
    # Int128 sums are exact; nulls (costs that do not parse) add nothing.
    return int(micro_usd.sum())


def _to_cents(micro_usd: int) -> float:
    return float((Decimal(micro_usd) / _MICRO_USD).quantize(_CENT, rounding=ROUND_HALF_UP))


def _money_totals(
    rows: pl.DataFrame, good: pl.DataFrame, quarantined_lines: pl.Series
) -> dict[str, float]:
    """USD in (rows left after de-duplication) and out (loaded + quarantined), to the cent.

    Sums are taken in whole micro-dollars, so in and out agree exactly before rounding.
    """
    costs = {"BilledCost": "billed_cost_usd", "EffectiveCost": "effective_cost_usd"}
    money = rows.select(_LINE, *[_micro_usd(c).alias(c) for c in costs])
    quarantined = money.filter(pl.col(_LINE).is_in(quarantined_lines.implode()))
    loaded = good.select(
        *[(pl.col(c) * _MICRO_USD).round(0).cast(pl.Int128).alias(c) for c in costs],
        "accelerator",
        "team",
    )
    totals: dict[str, float] = {}
    for column, name in costs.items():
        money_loaded = _micro_total(loaded[column])
        money_quarantined = _micro_total(quarantined[column])
        totals[f"{name}_in"] = _to_cents(_micro_total(money[column]))
        totals[f"{name}_out"] = _to_cents(money_loaded + money_quarantined)
        totals[f"{name}_loaded"] = _to_cents(money_loaded)
        totals[f"{name}_quarantined"] = _to_cents(money_quarantined)
    # Loaded dollars nobody is attributed to: finance needs to see them, not lose them.
    for column in ("team", "accelerator"):
        unattributed = _micro_total(loaded.filter(pl.col(column).is_null())["EffectiveCost"])
        totals[f"effective_cost_usd_without_{column}"] = _to_cents(unattributed)
    return totals
