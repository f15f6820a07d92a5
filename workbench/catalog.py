"""The SKU catalog and the price book: TOML files a finance analyst can read and edit.

The catalog names every accelerator once (a canonical id such as ``h100-80gb``) with the
aliases exports use for it ("NVIDIA H100 80GB HBM3", "H100 SXM"). Every other table refers
to accelerators by canonical id; :meth:`SkuCatalog.resolve` maps any alias to it.

The price book holds per-region site figures (electricity, PUE, facility cost, cloud price
level) and per-accelerator figures (capex, life, lead time, cloud prices), each with a source
and date; :func:`load_price_book` expands them to one row per accelerator and region.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from workbench.errors import WorkbenchError
from workbench.schema import (
    PRICE_BOOK,
    SKU_CATALOG,
    Validated,
    normalize_alias,
    validate_price_book,
    validate_sku_catalog,
)

__all__ = ["SkuCatalog", "load_price_book", "load_sku_catalog", "read_toml"]


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, turning any problem into one readable :class:`WorkbenchError`."""
    if not path.exists():
        raise WorkbenchError(
            "file not found", file=path, fix="check the path, or run 'workbench sample-fleet'"
        )
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        message = str(getattr(exc, "msg", exc))
        line = getattr(exc, "lineno", None)
        # Before Python 3.14 the position is only in the text: "... (at line 3, column 5)".
        position = re.search(r" \(at line (\d+), column (\d+)\)$", message)
        if position:
            line = line or int(position.group(1))
            message = f"{message[: position.start()]} at column {position.group(2)}"
        raise WorkbenchError(
            f"not valid TOML: {message}",
            file=path,
            line=line,
            fix="correct the TOML syntax at that line",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"cannot read file: {exc}", file=path) from None


@dataclass(frozen=True)
class SkuCatalog:
    """The accelerators a fleet knows, with their aliases and physical figures."""

    table: pl.DataFrame

    def ids(self) -> list[str]:
        """Canonical accelerator ids, sorted."""
        return sorted(self.table["accelerator"].to_list())

    def alias_map(self) -> Mapping[str, str]:
        """Normalized alias -> canonical id; each id is its own alias."""
        mapping: dict[str, str] = {}
        for accelerator, aliases in self.table.select("accelerator", "aliases").iter_rows():
            mapping[normalize_alias(accelerator)] = accelerator
            for alias in aliases or []:
                mapping[normalize_alias(alias)] = accelerator
        return mapping

    def resolve(self, name: str) -> str | None:
        """Return the canonical id of ``name`` (an id or any alias), or None if unknown."""
        return self.alias_map().get(normalize_alias(name))

    def row(self, accelerator: str) -> dict[str, Any]:
        """Return the catalog row of a canonical id."""
        rows = self.table.filter(pl.col("accelerator") == accelerator).to_dicts()
        if not rows:
            raise WorkbenchError(
                f"unknown accelerator '{accelerator}'",
                field="accelerator",
                fix=f"use one of {', '.join(self.ids())}",
            )
        return rows[0]

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> SkuCatalog:
        """Build a catalog from a frame with the ``sku_catalog`` schema."""
        return cls(table=frame.select(SKU_CATALOG.schema.names()).cast(dict(SKU_CATALOG.schema)))  # type: ignore[arg-type]


def load_sku_catalog(path: Path) -> SkuCatalog:
    """Load ``sku_catalog.toml`` (a list of ``[[accelerator]]`` tables).

    Raises :class:`WorkbenchError` naming the file and the entry when an entry is invalid:
    a catalog with a bad SKU would silently misplace every row of that SKU, so unlike data
    rows it is not quarantined.
    """
    document = read_toml(path)
    entries = document.get("accelerator")
    if not isinstance(entries, list) or not entries:
        raise WorkbenchError(
            "no [[accelerator]] entries",
            file=path,
            field="accelerator",
            fix="add one [[accelerator]] table per SKU",
        )
    rows: list[dict[str, Any]] = []
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or "id" not in entry:
            raise WorkbenchError(
                f"accelerator entry {index} has no id",
                file=path,
                field="id",
                fix="give each [[accelerator]] an id such as 'h100-80gb'",
            )
        aliases = entry.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise WorkbenchError(
                f"accelerator '{entry['id']}': aliases must be a list of strings",
                file=path,
                field="aliases",
            )
        row = {name: entry.get(name) for name in SKU_CATALOG.schema.names() if name != "aliases"}
        row["accelerator"] = entry["id"]
        rows.append(
            {k: None if v is None else str(v) for k, v in row.items()} | {"aliases": aliases}
        )
    raw = pl.DataFrame(
        rows,
        schema={c: (pl.List(pl.String) if c == "aliases" else pl.String) for c in rows[0]},
    ).with_row_index("line", offset=1)
    raw = raw.with_columns(pl.col("line").cast(pl.Int64))
    validated = validate_sku_catalog(raw.drop("source"), source=f"sku_catalog:{path}")
    _raise_first(validated, path, "accelerator")
    table = validated.good
    duplicated = (
        table.filter(pl.col("accelerator").is_duplicated())["accelerator"].unique().to_list()
    )
    if duplicated:
        raise WorkbenchError(
            f"accelerator id listed twice: {', '.join(sorted(duplicated))}",
            file=path,
            field="id",
            fix="keep one entry per SKU",
        )
    catalog = SkuCatalog.from_frame(table)
    seen: dict[str, str] = {}
    for accelerator, aliases in table.select("accelerator", "aliases").iter_rows():
        for alias in [accelerator, *(aliases or [])]:
            key = normalize_alias(alias)
            if seen.setdefault(key, accelerator) != accelerator:
                raise WorkbenchError(
                    f"alias '{alias}' names both '{seen[key]}' and '{accelerator}'",
                    file=path,
                    field="aliases",
                    fix="give each alias to one SKU only",
                )
    return catalog


def _raise_first(validated: Validated, path: Path, entry_kind: str) -> None:
    if validated.quarantine.height:
        first = validated.quarantine.row(0, named=True)
        raise WorkbenchError(
            f"{entry_kind} entry {first['line']}: {first['reason']}",
            file=path,
            field=first["field"],
            fix="correct that figure",
        )


_SITE_FIELDS = ("usd_per_kwh", "pue", "facility_usd_per_kw_month")


def load_price_book(path: Path, catalog: SkuCatalog) -> pl.DataFrame:
    """Load ``price_book.toml`` and expand it to one row per accelerator and region.

    Layout: ``[region.<id>]`` tables hold site figures (``usd_per_kwh``, ``pue``,
    ``facility_usd_per_kw_month``) and ``cloud_price_factor`` (regional cloud price level,
    1.0 = list). ``[[price]]`` tables hold one accelerator's figures, optionally for one
    ``region`` only (overriding the all-region entry). Every figure keeps the ``source`` and
    ``as_of`` of the entry it came from.
    """
    document = read_toml(path)
    regions = document.get("region")
    prices = document.get("price")
    if not isinstance(regions, dict) or not regions:
        raise WorkbenchError(
            "no [region.<id>] tables",
            file=path,
            field="region",
            fix="add one [region.<id>] table per region",
        )
    if not isinstance(prices, list) or not prices:
        raise WorkbenchError(
            "no [[price]] entries",
            file=path,
            field="price",
            fix="add one [[price]] table per accelerator",
        )
    for region, site in regions.items():
        if not isinstance(site, dict):
            raise WorkbenchError(
                f"region '{region}' is not a table",
                file=path,
                field=f"region.{region}",
                fix=f"write its figures under a [region.{region}] table",
            )
    rows: list[dict[str, Any]] = []
    generic: dict[str, dict[str, Any]] = {}
    specific: dict[tuple[str, str], dict[str, Any]] = {}
    for index, entry in enumerate(prices, start=1):
        if not isinstance(entry, dict):
            raise WorkbenchError(
                f"price entry {index} is not a table",
                file=path,
                field="price",
                fix="write each entry as a [[price]] table",
            )
        name = str(entry.get("accelerator", ""))
        accelerator = catalog.resolve(name)
        if accelerator is None:
            raise WorkbenchError(
                f"price entry {index}: unknown accelerator '{name}'",
                file=path,
                field="accelerator",
                fix=f"use one of {', '.join(catalog.ids())}",
            )
        region = entry.get("region")
        if region is None:
            generic[accelerator] = entry
        elif region not in regions:
            raise WorkbenchError(
                f"price entry {index}: region '{region}' has no [region.{region}] table",
                file=path,
                field="region",
                fix="add the region's site figures",
            )
        else:
            specific[(accelerator, str(region))] = entry
    for accelerator in catalog.ids():
        for region, site in regions.items():
            entry = dict(generic.get(accelerator, {}))
            entry.update(specific.get((accelerator, region), {}))
            if not entry:
                continue
            factor = _number(
                site.get("cloud_price_factor", 1.0), path, f"region.{region}.cloud_price_factor"
            )
            row: dict[str, Any] = {"accelerator": accelerator, "region": region}
            for name in PRICE_BOOK.schema.names():
                if name in ("accelerator", "region", "source"):
                    continue
                value = entry.get(name, site.get(name) if name in _SITE_FIELDS else None)
                if name.endswith("_usd_per_hour") and value is not None and "region" not in entry:
                    value = round(_number(value, path, f"price.{name}") * factor, 4)
                row[name] = value
            row["source"] = entry.get("source", document.get("source"))
            row["as_of"] = entry.get("as_of", document.get("as_of"))
            rows.append({k: None if v is None else _to_text(v) for k, v in row.items()})
    raw = pl.DataFrame(rows, schema={c: pl.String for c in rows[0]}).with_row_index(
        "line", offset=1
    )
    source_column = raw["source"]
    validated = validate_price_book(
        raw.drop("source").with_columns(pl.col("line").cast(pl.Int64)),
        source=f"price_book:{path}",
        resolver=catalog,
    )
    _raise_first(validated, path, "price")
    # _raise_first guarantees every row passed, so the rows are still in input order.
    good = validated.good.with_columns(source_column.alias("source"))
    return good.select(PRICE_BOOK.schema.names())


def _number(value: Any, path: Path, key: str) -> float:
    """A finite number from TOML, or an error naming the key (true/false are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise WorkbenchError(
            f"{value!r} is not a finite number",
            file=path,
            field=key,
            fix="write a plain number, e.g. 1.05",
        )
    return float(value)


def _to_text(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
