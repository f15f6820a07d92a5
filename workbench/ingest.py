"""Ingest raw exports into the workspace's canonical tables, as runs.

Every ingest is a run (``runs/<id>/`` with a manifest, the reconciliation and the
quarantined rows) and replaces, atomically and under the writer lock, the rows that earlier
ingests of the same file put in the table: re-ingesting a file is idempotent, and a file
whose bytes did not change since it was last ingested is skipped outright.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.jobs import ingest_job_records
from pipelines.readers import PROBLEM_COLUMN, read_delimited, split_broken_rows
from workbench.catalog import SkuCatalog, load_price_book, load_sku_catalog
from workbench.errors import WorkbenchError
from workbench.schema import (
    QUARANTINE_SCHEMA,
    TABLES,
    AcceleratorResolver,
    Validated,
    validate_allocations,
    validate_events,
    validate_inventory,
    validate_orders,
)
from workbench.store import Workspace, file_sha256

__all__ = ["INGEST_KINDS", "FileReport", "IngestReport", "ingest", "load_catalog"]

Progress = Callable[[str], None]
_Validator = Callable[..., Validated]

_CSV_KINDS: dict[str, tuple[str, _Validator]] = {
    "inventory": ("inventory", validate_inventory),
    "allocations": ("allocations", validate_allocations),
    "orders": ("orders", validate_orders),
    "events": ("events", validate_events),
}
INGEST_KINDS: dict[str, str] = {
    "catalog": "SKU catalog TOML -> sku_catalog",
    "price-book": "price book TOML -> price_book",
    "jobs": "scheduler job records CSV (.csv, .csv.gz) -> usage_daily",
    "inventory": "inventory snapshots CSV -> inventory",
    "allocations": "team reservations and quotas CSV -> allocations",
    "orders": "hardware orders CSV -> orders",
    "events": "known future events CSV -> events",
}


@dataclass(frozen=True)
class FileReport:
    """What happened to one input file."""

    path: Path
    table: str
    skipped: bool
    reconciliation: dict[str, Any]
    quarantine: pl.DataFrame


@dataclass(frozen=True)
class IngestReport:
    """The outcome of one ``ingest`` call.

    Holds the run id (None when nothing changed) and one report per file.
    """

    kind: str
    run_id: str | None
    files: list[FileReport] = field(default_factory=list)

    @property
    def quarantine(self) -> pl.DataFrame:
        """All rows quarantined by this ingest."""
        frames = [f.quarantine for f in self.files]
        return pl.concat(frames) if frames else pl.DataFrame(schema=QUARANTINE_SCHEMA)


def load_catalog(workspace: Workspace) -> SkuCatalog:
    """The workspace's SKU catalog, or a readable error saying how to load one."""
    if not workspace.has_table("sku_catalog"):
        raise WorkbenchError(
            "the workspace has no SKU catalog yet",
            file=workspace.root,
            field="sku_catalog",
            fix="run 'workbench ingest catalog PATH/sku_catalog.toml' first",
        )
    return SkuCatalog.from_frame(workspace.read_table("sku_catalog"))


def _source(kind: str, path: Path) -> str:
    return f"{kind}:{path.resolve()}"


def _already_ingested(workspace: Workspace, source: str, digest: str) -> bool:
    for run in reversed(workspace.runs("ingest")):
        for item in run.manifest.get("files", []):
            if item.get("source") == source:
                return bool(item.get("sha256") == digest)
    return False


def _replace_source(existing: pl.DataFrame, new: pl.DataFrame, source: str) -> pl.DataFrame:
    kept = existing.filter(pl.col("source") != source) if existing.height else existing
    return pl.concat([kept, new.select(existing.columns)], how="vertical")


def _read_csv_table(
    path: Path, table: str, validator: _Validator, source: str, resolver: AcceleratorResolver
) -> tuple[Validated, dict[str, Any]]:
    spec = TABLES[table]
    required = [c for c in spec.required if c != "source"]
    optional = [c for c in spec.schema.names() if c not in required and c != "source"]
    raw = read_delimited(path, required=required, optional=optional)
    frame = raw.frame
    data_columns = [c for c in frame.columns if c not in ("line", PROBLEM_COLUMN)]
    first = frame.select(pl.struct(data_columns).is_first_distinct()).to_series()
    frame = frame.filter(first)
    sound, broken = split_broken_rows(frame, table=table, source=source)
    validated = validator(sound, source=source, resolver=resolver)
    if broken.height:
        validated = Validated(
            good=validated.good,
            quarantine=pl.concat([validated.quarantine, broken]).sort("line"),
        )
    reconciliation: dict[str, Any] = {
        "source": source,
        "rows_read": raw.rows_read,
        "rows_loaded": validated.good.height,
        "rows_quarantined": validated.quarantine.height,
        "duplicates_dropped": int((~first).sum()),
        "blank_lines": raw.blank_lines,
    }
    reconciliation["balanced"] = reconciliation["rows_read"] == (
        reconciliation["rows_loaded"]
        + reconciliation["rows_quarantined"]
        + reconciliation["duplicates_dropped"]
    )
    return validated, reconciliation


def ingest(
    workspace: Workspace,
    kind: str,
    paths: Sequence[Path],
    *,
    strict: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest files of one kind into the workspace and record the run.

    With ``strict``, any quarantined row fails the ingest and nothing is written.
    """
    if kind not in INGEST_KINDS:
        raise WorkbenchError(
            f"unknown kind '{kind}'", field="kind", fix=f"use one of {', '.join(INGEST_KINDS)}"
        )
    if not paths:
        raise WorkbenchError("no files given", field="PATH", fix="name one or more files")
    workspace.require()
    say = progress or (lambda _message: None)
    for path in paths:
        if not path.exists():
            raise WorkbenchError("file not found", file=path, fix="check the path and try again")
        if path.is_dir():
            raise WorkbenchError("is a folder, not a file", file=path, fix="name a file inside it")

    began = time.perf_counter()
    with workspace.writer_lock():
        digests = {path: file_sha256(path) for path in paths}
        todo = [p for p in paths if not _already_ingested(workspace, _source(kind, p), digests[p])]
        skipped = [
            FileReport(
                p,
                kind,
                True,
                {"source": _source(kind, p), "unchanged": True},
                pl.DataFrame(schema=QUARANTINE_SCHEMA),
            )
            for p in paths
            if p not in todo
        ]
        if not todo:
            return IngestReport(kind=kind, run_id=None, files=skipped)

        reports: list[FileReport] = []
        tables: dict[str, pl.DataFrame] = {}
        if kind == "catalog":
            if len(todo) != 1:
                raise WorkbenchError("ingest one SKU catalog at a time", field="PATH")
            say(f"reading {todo[0].name}")
            catalog = load_sku_catalog(todo[0])
            tables["sku_catalog"] = catalog.table.with_columns(
                pl.lit(_source(kind, todo[0])).alias("source")
            )
            reports.append(
                FileReport(
                    todo[0],
                    "sku_catalog",
                    False,
                    _whole_file_reconciliation(kind, todo[0], catalog.table.height),
                    pl.DataFrame(schema=QUARANTINE_SCHEMA),
                )
            )
        elif kind == "price-book":
            catalog = load_catalog(workspace)
            if len(todo) != 1:
                raise WorkbenchError("ingest one price book at a time", field="PATH")
            say(f"reading {todo[0].name}")
            book = load_price_book(todo[0], catalog)
            tables["price_book"] = book
            reports.append(
                FileReport(
                    todo[0],
                    "price_book",
                    False,
                    _whole_file_reconciliation(kind, todo[0], book.height),
                    pl.DataFrame(schema=QUARANTINE_SCHEMA),
                )
            )
        elif kind == "jobs":
            catalog = load_catalog(workspace)
            usage = workspace.read_table("usage_daily")
            for path in todo:
                say(f"reading and splitting {path.name}")
                result = ingest_job_records(path, resolver=catalog, source=_source(kind, path))
                usage = _replace_source(usage, result.usage_daily, result.source)
                reports.append(
                    FileReport(
                        path, "usage_daily", False, result.reconciliation(), result.quarantine
                    )
                )
            tables["usage_daily"] = usage.sort("date", "accelerator", "region", "team", "workload")
        else:
            catalog = load_catalog(workspace)
            table, validator = _CSV_KINDS[kind]
            current = workspace.read_table(table)
            for path in todo:
                say(f"reading {path.name}")
                source = _source(kind, path)
                validated, reconciliation = _read_csv_table(path, table, validator, source, catalog)
                current = _replace_source(current, validated.good, source)
                reports.append(FileReport(path, table, False, reconciliation, validated.quarantine))
            tables[table] = current

        quarantined = pl.concat([r.quarantine for r in reports])
        if strict and quarantined.height:
            first = quarantined.row(0, named=True)
            raise WorkbenchError(
                f"{quarantined.height:,} row(s) failed validation (--strict); "
                f"first: {first['reason']}",
                file=first["source"].split(":", 1)[-1],
                line=first["line"],
                field=first["field"],
                fix="fix the rows a non-strict ingest lists, or drop --strict; nothing was written",
            )
        say("committing")
        with workspace.new_run(
            "ingest", config={"kind": kind, "paths": [str(p) for p in paths], "strict": strict}
        ) as run:
            run.manifest["timings"]["read_validate_transform"] = round(
                time.perf_counter() - began, 4
            )
            for path in todo:
                run.add_input(path)
            run.manifest["files"] = [
                {
                    "source": r.reconciliation["source"],
                    "sha256": digests[r.path],
                    "table": r.table,
                    **{k: v for k, v in r.reconciliation.items() if k != "source"},
                }
                for r in reports
            ]
            run.write("quarantine", quarantined)
            run.write_json("reconciliation", {"files": [r.reconciliation for r in reports]})
            for name, frame in tables.items():
                run.manifest["row_counts"][f"table:{name}"] = frame.height
            sources = [r.reconciliation["source"] for r in reports]
            all_quarantine = workspace.read_table("quarantine")
            all_quarantine = pl.concat(
                [all_quarantine.filter(~pl.col("source").is_in(sources)), quarantined]
            )
            for name, frame in tables.items():
                workspace.write_table(name, frame)
            workspace.write_table("quarantine", all_quarantine)
            run_id = run.run_id
        return IngestReport(kind=kind, run_id=run_id, files=skipped + reports)


def _whole_file_reconciliation(kind: str, path: Path, rows: int) -> dict[str, Any]:
    return {
        "source": _source(kind, path),
        "rows_read": rows,
        "rows_loaded": rows,
        "rows_quarantined": 0,
        "duplicates_dropped": 0,
        "balanced": True,
    }
