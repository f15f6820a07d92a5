"""Ingest raw exports into the workspace's canonical tables, as runs.

Every ingest is a run (``runs/<id>/`` with a manifest, the reconciliation and the
quarantined rows) and replaces, atomically and under the writer lock, the rows that earlier
ingests of the same file put in the table: re-ingesting a file is idempotent, and a file
whose bytes did not change since it was last ingested is skipped outright.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from pipelines.jobs import JobIngest, ingest_job_records
from pipelines.readers import PROBLEM_COLUMN, file_format, read_delimited, split_broken_rows
from workbench.allocation import attach_allocations
from workbench.catalog import SkuCatalog, load_price_book, load_sku_catalog
from workbench.cli_defaults import INGEST_KINDS
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

if TYPE_CHECKING:
    from pipelines.column_map import ColumnMap
    from workbench.executors import Executor

__all__ = [
    "INGEST_KINDS",
    "FileReport",
    "IngestOptions",
    "IngestReport",
    "ingest",
    "load_catalog",
]

Progress = Callable[[str], None]
_Validator = Callable[..., Validated]

_CSV_KINDS: dict[str, tuple[str, _Validator]] = {
    "inventory": ("inventory", validate_inventory),
    "allocations": ("allocations", validate_allocations),
    "orders": ("orders", validate_orders),
    "events": ("events", validate_events),
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


def _last_ingested(workspace: Workspace) -> dict[str, tuple[str, str]]:
    """Source -> (sha256, settings) of its latest ingest, from the run manifests."""
    latest: dict[str, tuple[str, str]] = {}
    for run in workspace.runs("ingest"):
        for item in run.manifest.get("files", []):
            latest[str(item.get("source"))] = (str(item.get("sha256")), item.get("settings", ""))
    return latest


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


@dataclass(frozen=True)
class IngestOptions:
    """Settings of one ingest beyond the kind and files."""

    column_map: str | None = None
    """Column map for job records: a preset name or a TOML path (``--map``)."""
    export_time: datetime | None = None
    """When the export was taken: jobs still running are cut here (``--export-time``)."""
    grain: Literal["day", "hour"] = "day"
    """Job records to ``usage_daily`` or, for ``hour``, to ``usage_hourly``."""
    tag_key: str = "team"
    """Billing tag that names the team."""
    region: str | None = None
    """Region for metric series that carry none, and for a job column map that sets none."""
    parts_of: str | None = None
    """Job files are parts of one export named so (partitions of a folder or glob): their
    usage adds up instead of later files replacing earlier ones' overlapping days, and all
    parts are read again when any changed (see :mod:`workbench.distributed_ingest`)."""


class _FileHashes:
    """The SHA-256 of each file; those of files never ingested before hashed in a thread.

    A file ingested before is hashed at once (if unchanged it is skipped, not read); a new
    one is read anyway, so its hash (for the run's manifest) runs beside the reading instead
    of before it: seconds for a large export. Use as a context manager.
    """

    def __init__(self, paths: Sequence[Path], *, hash_now: Callable[[Path], bool]) -> None:
        later = [p for p in paths if not hash_now(p)]
        self._ready = {p: file_sha256(p) for p in paths if hash_now(p)}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
        self._pending = {p: self._pool.submit(file_sha256, p) for p in later}

    def __getitem__(self, path: Path) -> str:
        if path not in self._ready:
            self._ready[path] = self._pending.pop(path).result()
        return self._ready[path]

    def __enter__(self) -> _FileHashes:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def ingest(
    workspace: Workspace,
    kind: str,
    paths: Sequence[Path],
    *,
    strict: bool = False,
    progress: Progress | None = None,
    options: IngestOptions | None = None,
    executor: Executor | None = None,
) -> IngestReport:
    """Ingest files of one kind into the workspace and record the run.

    With ``strict``, any quarantined row fails the ingest and nothing is written.
    ``executor`` reads and splits job-record files in parallel (local processes or a Dask
    cluster, see :mod:`workbench.distributed_ingest`); their usage is combined in the order
    of ``paths`` either way, so the tables and reconciliations equal a serial ingest's.
    """
    options = options or IngestOptions()
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
    column_map = None
    if kind == "jobs" and options.column_map:
        from pipelines.column_map import load_column_map

        overrides = {"region": options.region} if options.region else None
        column_map = load_column_map(options.column_map, overrides=overrides)

    began = time.perf_counter()
    with workspace.writer_lock(), contextlib.ExitStack() as closing:
        settings = _settings_key(kind, options)
        latest = _last_ingested(workspace)
        digests = closing.enter_context(
            _FileHashes(paths, hash_now=lambda p: _source(kind, p) in latest)
        )
        todo = [
            p
            for p in paths
            if _source(kind, p) not in latest  # new: read it (its hash is still running)
            or latest[_source(kind, p)] != (digests[p], settings)
        ]
        if todo and options.parts_of:
            todo = list(paths)  # the parts make one export: a changed part re-reads them all
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
        extra_outputs: dict[str, pl.DataFrame] = {}
        if kind == "catalog":
            if len(todo) != 1:
                raise WorkbenchError("ingest one SKU catalog at a time", field="PATH")
            say(f"reading {todo[0].name}")
            catalog = load_sku_catalog(todo[0])
            tables["sku_catalog"] = catalog.table.with_columns(
                pl.lit(_source(kind, todo[0])).alias("source")
            )
            reports.append(_whole_file(kind, todo[0], "sku_catalog", catalog.table.height))
        elif kind == "price-book":
            catalog = load_catalog(workspace)
            if len(todo) != 1:
                raise WorkbenchError("ingest one price book at a time", field="PATH")
            say(f"reading {todo[0].name}")
            book = load_price_book(todo[0], catalog)
            tables["price_book"] = book
            reports.append(_whole_file(kind, todo[0], "price_book", book.height))
        elif kind == "jobs":
            catalog = load_catalog(workspace)
            table = "usage_hourly" if options.grain == "hour" else "usage_daily"
            usage = workspace.read_table(table)
            excluded: list[pl.DataFrame] = []
            read_file = partial(
                _read_job_file,
                resolver=catalog,
                column_map=column_map,
                export_time=options.export_time,
                grain=options.grain,
            )
            parts: list[pl.DataFrame] = []
            for path, result in _in_order(todo, read_file, executor, say):
                if options.parts_of:
                    parts.append(result.usage_daily)
                    replaced = 0
                else:
                    usage, replaced = _replace_overlap(usage, result.usage_daily, result.source)
                reconciliation = {**result.reconciliation(), "rows_replaced_older": replaced}
                reports.append(FileReport(path, table, False, reconciliation, result.quarantine))
                if result.excluded.height:
                    excluded.append(result.excluded)
            if options.parts_of:
                from workbench.distributed_ingest import combine_parts

                export = f"jobs:{options.parts_of}"
                combined = combine_parts(parts, USAGE_KEYS[table], export)
                usage = usage.filter(~pl.col("source").is_in([_source(kind, p) for p in todo]))
                usage, replaced = _replace_overlap(usage, combined, export)
                reports[-1].reconciliation["rows_replaced_older"] = replaced
            if table == "usage_daily":
                usage = _refill_from_metrics(workspace, usage)
                usage = attach_allocations(usage, workspace.read_table("allocations"))
            tables[table] = usage.sort(USAGE_KEYS[table])
            if excluded:
                extra_outputs["excluded"] = pl.concat(excluded)
        elif kind == "billing":
            from pipelines.billing import ingest_focus_billing

            catalog = load_catalog(workspace)
            current = workspace.read_table("billing")
            for path in todo:
                say(f"reading {path.name}")
                billed = ingest_focus_billing(
                    path, resolver=catalog, source=_source(kind, path), tag_key=options.tag_key
                )
                current = _replace_source(current, billed.good, billed.source)
                reports.append(
                    FileReport(path, "billing", False, billed.reconciliation(), billed.quarantine)
                )
            tables["billing"] = current
        elif kind == "metrics":
            tables.update(_ingest_metrics(workspace, todo, options, reports, say))
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
            if table == "allocations" and workspace.has_table("usage_daily"):
                tables["usage_daily"] = attach_allocations(
                    workspace.read_table("usage_daily"), current
                )

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
        config: dict[str, Any] = {
            "kind": kind,
            "paths": [str(p) for p in paths],
            "strict": strict,
            "settings": settings,
        }
        with workspace.new_run("ingest", config=config) as run:
            run.manifest["timings"]["read_validate_transform"] = round(
                time.perf_counter() - began, 4
            )
            for path in todo:
                run.add_input(path, sha256=digests[path])  # hashed once, above
            run.manifest["files"] = [
                {
                    "source": r.reconciliation["source"],
                    "sha256": digests[r.path],
                    "settings": settings,
                    "table": r.table,
                    **{k: v for k, v in r.reconciliation.items() if k not in ("source", "table")},
                }
                for r in reports
            ]
            run.write("quarantine", quarantined)
            for name, frame in extra_outputs.items():
                run.write(name, frame)
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


def _read_job_file(
    path: Path,
    *,
    resolver: SkuCatalog,
    column_map: ColumnMap | None,
    export_time: datetime | None,
    grain: Literal["day", "hour"],
) -> tuple[Path, JobIngest]:
    """Read and split one job-record file (runs in a worker when an executor is given)."""
    result = ingest_job_records(
        path,
        resolver=resolver,
        source=_source("jobs", path),
        column_map=column_map,
        export_time=export_time,
        grain=grain,
    )
    return path, result


def _in_order(
    paths: Sequence[Path],
    read_file: Callable[[Path], tuple[Path, JobIngest]],
    executor: Executor | None,
    say: Progress,
) -> Iterator[tuple[Path, JobIngest]]:
    """Per-file results in the order of ``paths``, each as soon as its predecessors are in."""
    results: Iterable[tuple[Path, JobIngest]]
    if executor is None:

        def serially() -> Iterator[tuple[Path, JobIngest]]:
            for path in paths:
                say(f"reading and splitting {path.name}")
                yield read_file(path)

        results = serially()
    else:
        say(f"reading and splitting {len(paths)} file(s) on {executor.workers} worker(s)")
        results = executor.map_unordered(read_file, paths)
    position = {path: i for i, path in enumerate(paths)}
    waiting: dict[int, tuple[Path, JobIngest]] = {}
    next_index = 0
    for path, result in results:
        waiting[position[path]] = (path, result)
        while next_index in waiting:
            yield waiting.pop(next_index)
            next_index += 1


USAGE_KEYS: dict[str, list[str]] = {
    "usage_daily": ["date", "accelerator", "region", "team", "workload"],
    "usage_hourly": ["hour", "accelerator", "region", "team", "workload"],
}


def _settings_key(kind: str, options: IngestOptions) -> str:
    """What besides the bytes shapes the result: a file ingested with other settings is new."""
    if kind == "jobs":
        export = options.export_time.isoformat() if options.export_time else ""
        parts = f";parts_of={options.parts_of}" if options.parts_of else ""
        return f"map={options.column_map or ''};export={export};grain={options.grain}{parts}"
    if kind == "billing":
        return f"tag_key={options.tag_key}"
    if kind == "metrics":
        return f"region={options.region or ''}"
    return ""


def _replace_overlap(
    usage: pl.DataFrame, new: pl.DataFrame, source: str
) -> tuple[pl.DataFrame, int]:
    """Put a file's usage rows in the table; late data wins where exports overlap.

    Rows of the same file are replaced. Rows of other job files for the same pools
    (accelerator, region) inside the new file's period range are replaced too: a newer
    export that covers days an older one covered restates them, and counting both would
    double the usage. Returns the table and how many older rows were replaced.
    """
    time_column = "hour" if "hour" in usage.columns else "date"
    if new.height == 0:
        return usage.filter(pl.col("source") != source), 0
    first, last = new[time_column].min(), new[time_column].max()
    pools = new.select("accelerator", "region").unique()
    older_jobs = (
        pl.col("source").str.starts_with("jobs:")
        & (pl.col("source") != source)
        & pl.col(time_column).is_between(first, last)
    )
    overlapped = usage.filter(older_jobs).join(pools, on=["accelerator", "region"], how="semi")
    kept = usage.filter(pl.col("source") != source)
    if overlapped.height:
        kept = kept.join(
            overlapped.select(
                *USAGE_KEYS["usage_hourly" if time_column == "hour" else "usage_daily"], "source"
            ),
            on=[*USAGE_KEYS["usage_hourly" if time_column == "hour" else "usage_daily"], "source"],
            how="anti",
        )
    return pl.concat([kept, new.select(usage.columns)], how="vertical"), overlapped.height


def _ingest_metrics(
    workspace: Workspace,
    todo: Sequence[Path],
    options: IngestOptions,
    reports: list[FileReport],
    say: Progress,
) -> dict[str, pl.DataFrame]:
    from pipelines.metrics import (
        fill_usage_from_metrics,
        ingest_prometheus_json,
        ingest_utilization_csv,
    )

    catalog = load_catalog(workspace)
    current = workspace.read_table("utilization_daily")
    for path in todo:
        say(f"reading {path.name}")
        source = _source("metrics", path)
        if file_format(path) == "jsonl" or path.suffix.lower() == ".json":
            result = ingest_prometheus_json(
                path, resolver=catalog, source=source, region=options.region
            )
        else:
            result = ingest_utilization_csv(path, resolver=catalog, source=source)
        # result.good holds the loaded samples; the daily roll-up is the table to store.
        daily = result.extra_tables["utilization_daily"]
        current = _replace_source(current, daily, source)
        reports.append(
            FileReport(path, "utilization_daily", False, result.reconciliation(), result.quarantine)
        )
    out = {"utilization_daily": current}
    if workspace.has_table("usage_daily"):
        usage = workspace.read_table("usage_daily")
        usage = usage.filter(~pl.col("source").str.starts_with("metrics:"))
        out["usage_daily"] = fill_usage_from_metrics(usage, current)
    return out


def _refill_from_metrics(workspace: Workspace, usage: pl.DataFrame) -> pl.DataFrame:
    """Metric-derived usage fills only pool-days without job records: redo it after jobs."""
    if not workspace.has_table("utilization_daily"):
        return usage
    from pipelines.metrics import fill_usage_from_metrics

    jobs_only = usage.filter(~pl.col("source").str.starts_with("metrics:"))
    return fill_usage_from_metrics(jobs_only, workspace.read_table("utilization_daily"))


def _whole_file(kind: str, path: Path, table: str, rows: int) -> FileReport:
    return FileReport(
        path,
        table,
        False,
        _whole_file_reconciliation(kind, path, rows),
        pl.DataFrame(schema=QUARANTINE_SCHEMA),
    )


def _whole_file_reconciliation(kind: str, path: Path, rows: int) -> dict[str, Any]:
    return {
        "source": _source(kind, path),
        "rows_read": rows,
        "rows_loaded": rows,
        "rows_quarantined": 0,
        "duplicates_dropped": 0,
        "balanced": True,
    }
