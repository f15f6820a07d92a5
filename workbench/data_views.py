"""What the workspace holds and where it came from: tables, ingests, reconciliations.

Pure readers over a :class:`workbench.store.Workspace` for the app's Data page. Every
figure comes from the tables' files and the ingest runs' manifests (which record each
file's reconciliation), so the page shows exactly what ``workbench ingest`` printed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from workbench.store import RunInfo, Workspace

__all__ = ["ingest_files", "quarantine_reasons", "table_summary"]

_RECONCILIATION_SCHEMA: dict[str, Any] = {
    "run_id": pl.String,
    "started_at": pl.String,
    "kind": pl.String,
    "file": pl.String,
    "path": pl.String,
    "table": pl.String,
    "rows_read": pl.Int64,
    "rows_loaded": pl.Int64,
    "rows_quarantined": pl.Int64,
    "duplicates_dropped": pl.Int64,
    "rows_excluded": pl.Int64,
    "balanced": pl.Boolean,
    "totals": pl.String,
}


def _source_path(source: str) -> str:
    """``jobs:/path/file.csv`` -> ``/path/file.csv``."""
    return source.split(":", 1)[-1]


def _totals(item: dict[str, Any]) -> str:
    """``chip hours: 1,234.00 in, 1,234.00 out; ...`` for every reconciled quantity."""
    parts = []
    for key, value_in in item.items():
        if not key.endswith("_in") or not isinstance(value_in, int | float):
            continue
        value_out = item.get(f"{key[:-3]}_out")
        if isinstance(value_out, int | float):
            parts.append(f"{key[:-3].replace('_', ' ')}: {value_in:,.2f} in, {value_out:,.2f} out")
    return "; ".join(parts)


def ingest_files(runs: list[RunInfo]) -> pl.DataFrame:
    """One row per file of every ingest run, newest first, with its reconciliation.

    ``rows_read = rows_loaded + rows_quarantined + duplicates_dropped (+ rows_excluded)``
    holds where ``balanced`` is true; ``totals`` lists the quantities (chip-hours, USD) in
    and out.
    """
    records = []
    for run in runs:
        kind = str(run.manifest.get("config", {}).get("kind", ""))
        for item in run.manifest.get("files", []):
            path = _source_path(str(item.get("source", "")))
            records.append(
                {
                    "run_id": run.run_id,
                    "started_at": run.started_at[:19].replace("T", " "),
                    "kind": kind,
                    "file": Path(path).name,
                    "path": path,
                    "table": item.get("table"),
                    "rows_read": item.get("rows_read"),
                    "rows_loaded": item.get("rows_loaded"),
                    "rows_quarantined": item.get("rows_quarantined"),
                    "duplicates_dropped": item.get("duplicates_dropped"),
                    "rows_excluded": item.get("rows_excluded", 0),
                    "balanced": item.get("balanced"),
                    "totals": _totals(item),
                }
            )
    frame = pl.DataFrame(records, schema=_RECONCILIATION_SCHEMA)
    return frame.sort("started_at", "run_id", descending=True, maintain_order=True)


def table_summary(workspace: Workspace) -> pl.DataFrame:
    """One row per table in the workspace: rows, when it was last written, by which ingest.

    Columns: ``table, rows, updated_at`` (UTC, from the file), ``last_ingest`` (the newest
    ingest run that wrote it), ``ingest_kind, ingested_at, last_file``; the ingest columns
    are null for tables no ingest wrote (none in a workspace built by the CLI).
    """
    latest: dict[str, tuple[RunInfo, str]] = {}
    for ingest_run in workspace.runs("ingest"):
        written = [
            key.removeprefix("table:")
            for key in ingest_run.manifest.get("row_counts", {})
            if key.startswith("table:")
        ]
        files = ingest_run.manifest.get("files", [])
        last_file = Path(_source_path(str(files[-1].get("source", "")))).name if files else ""
        for table in [*written, "quarantine"]:
            latest[table] = (ingest_run, last_file)
    records = []
    for name in workspace.table_names():
        path = workspace.table_path(name)
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
        updated = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        run: RunInfo | None
        run, last_file = latest.get(name, (None, ""))
        records.append(
            {
                "table": name,
                "rows": int(rows),
                "updated_at": updated.strftime("%Y-%m-%d %H:%M:%S"),
                "last_ingest": run.run_id if run else None,
                "ingest_kind": run.manifest.get("config", {}).get("kind") if run else None,
                "ingested_at": run.started_at[:19].replace("T", " ") if run else None,
                "last_file": last_file,
            }
        )
    schema = {
        "table": pl.String,
        "rows": pl.Int64,
        "updated_at": pl.String,
        "last_ingest": pl.String,
        "ingest_kind": pl.String,
        "ingested_at": pl.String,
        "last_file": pl.String,
    }
    return pl.DataFrame(records, schema=schema)


def quarantine_reasons(quarantine: pl.DataFrame) -> pl.DataFrame:
    """Quarantined rows per file, field and kind of reason, most first, with an example.

    A reason's kind is its text with quoted values and numbers blanked, as ``workbench
    ingest`` groups them. Columns: ``file, table, field, reason_kind, rows, example_line,
    example_reason``.
    """
    if quarantine.height == 0:
        return pl.DataFrame(
            schema={
                "file": pl.String,
                "table": pl.String,
                "field": pl.String,
                "reason_kind": pl.String,
                "rows": pl.UInt32,
                "example_line": pl.Int64,
                "example_reason": pl.String,
            }
        )
    kinds = quarantine.with_columns(
        pl.col("source").str.split(":").list.slice(1).list.join(":").alias("__path"),
        pl.col("reason")
        .str.replace_all(r"'[^']*'", "'…'")
        .str.replace_all(r"\d[\d:T+.Z-]*", "#")
        .alias("reason_kind"),
    ).with_columns(pl.col("__path").str.split("/").list.last().alias("file"))
    return (
        kinds.group_by("file", "table", "field", "reason_kind", maintain_order=True)
        .agg(
            pl.len().alias("rows"),
            pl.col("line").first().alias("example_line"),
            pl.col("reason").first().alias("example_reason"),
        )
        .sort("rows", descending=True, maintain_order=True)
    )
