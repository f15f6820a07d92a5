"""Data page: what the workspace holds, where it came from, what was rejected, and an upload.

Sources and freshness (tables, rows, the last ingest of each), the reconciliation of every
ingested file, quarantined rows with their reasons, and an upload that ingests a raw
export exactly as ``workbench ingest KIND FILE`` does (:mod:`workbench.uploads`).
"""

from __future__ import annotations

import math

import polars as pl
import streamlit as st

from pipelines.column_map import available_presets
from workbench.data_views import ingest_files, quarantine_reasons, table_summary
from workbench.errors import WorkbenchError
from workbench.ingest import INGEST_KINDS, IngestOptions, IngestReport
from workbench.store import Workspace
from workbench.ui.cache import cached_table, table_version, workspace_root
from workbench.ui.shell import current_filter
from workbench.uploads import (
    UPLOAD_LIMIT_ENV,
    UPLOAD_ROW_LIMIT_ENV,
    UploadSettings,
    ingest_upload,
    upload_limit_mb,
    upload_row_limit,
)

__all__ = ["render"]

_KEY = "data_"
_NO_MAP = "(none: the standard job-record columns)"
_UPLOAD_TYPES = ["csv", "gz", "zst", "json", "jsonl", "parquet", "toml"]


def _download(frame: pl.DataFrame, name: str, key: str) -> None:
    st.download_button(
        "Download CSV", frame.write_csv(), file_name=name, mime="text/csv", key=f"{_KEY}{key}"
    )


def _sources(workspace: Workspace) -> None:
    tables = table_summary(workspace)
    runs = workspace.runs("ingest")
    quarantined = tables.filter(pl.col("table") == "quarantine")["rows"].sum()
    metrics = st.columns(4)
    metrics[0].metric("Tables", f"{tables.height:,}")
    metrics[1].metric("Ingest runs", f"{len(runs):,}")
    metrics[2].metric(
        "Last ingest", runs[-1].started_at[:16].replace("T", " ") + " UTC" if runs else "never"
    )
    metrics[3].metric("Quarantined rows", f"{quarantined:,}")
    st.dataframe(
        tables,
        column_config={
            "rows": st.column_config.NumberColumn(format="%,d"),
            "updated_at": st.column_config.TextColumn("updated (UTC)"),
            "ingested_at": st.column_config.TextColumn("ingested (UTC)"),
        },
        hide_index=True,
        key=f"{_KEY}tables",
    )
    st.caption(
        "Each table is replaced whole and atomically by an ingest; `workbench runs list` "
        'lists the runs and `workbench sql "select ..."` queries any table.'
    )


def _reconciliation(workspace: Workspace) -> None:
    files = ingest_files(workspace.runs("ingest"))
    kinds = ["All", *sorted(files["kind"].unique().to_list())]
    kind = st.selectbox("Kind", kinds, key=f"{_KEY}kind_filter")
    if kind != "All":
        files = files.filter(pl.col("kind") == kind)
    unbalanced = files.filter(~pl.col("balanced").fill_null(True))
    if unbalanced.height:
        st.error(f"{unbalanced.height} file(s) do not reconcile: {', '.join(unbalanced['file'])}")
    st.dataframe(
        files.drop("path"),
        column_config={
            name: st.column_config.NumberColumn(name.replace("_", " "), format="%,d")
            for name in (
                "rows_read",
                "rows_loaded",
                "rows_quarantined",
                "duplicates_dropped",
                "rows_excluded",
            )
        },
        hide_index=True,
        key=f"{_KEY}files",
    )
    st.caption(
        "Per file: rows read = loaded + quarantined + duplicates (+ excluded by a column "
        "map), and every quantity in = out (chip-hours, USD)."
    )
    _download(files, "ingest_reconciliation.csv", "files_download")


def _quarantine(root: str, version: float) -> None:
    quarantine = cached_table(root, "quarantine", version)
    if quarantine.height == 0:
        st.success("No quarantined rows: every row of every file passed validation.")
        return
    st.dataframe(quarantine_reasons(quarantine), hide_index=True, key=f"{_KEY}reasons")
    files = sorted(quarantine["source"].unique().to_list())
    source = st.selectbox(
        "File", files, format_func=lambda s: s.split(":", 1)[-1], key=f"{_KEY}quarantine_file"
    )
    rows = quarantine.filter(pl.col("source") == source)
    st.dataframe(
        rows.select("line", "field", "value", "reason", "record"),
        hide_index=True,
        key=f"{_KEY}quarantine_rows",
    )
    st.caption(
        f"{rows.height:,} row(s) of this file; fix them in the file and ingest it again "
        "(`workbench quarantine show` lists them too)."
    )
    _download(rows, "quarantine.csv", "quarantine_download")


def _report(report: IngestReport) -> None:
    if report.run_id is None:
        st.info("Nothing changed: this file was already ingested with the same bytes.")
        return
    for file in report.files:
        rec = file.reconciliation
        line = (
            f"{file.path.name}: {rec.get('rows_read', 0):,} read = "
            f"{rec.get('rows_loaded', 0):,} loaded + {rec.get('rows_quarantined', 0):,} "
            f"quarantined + {rec.get('duplicates_dropped', 0):,} duplicates"
        )
        if rec.get("balanced", True):
            st.success(f"Ingested into {file.table} (run {report.run_id}). {line}.")
        else:
            st.error(f"{line}: NOT BALANCED; report this with the run {report.run_id}.")
    quarantine = report.quarantine
    if quarantine.height:
        st.warning(
            f"{quarantine.height:,} row(s) quarantined, with their reasons below; the good "
            "rows were loaded."
        )
        st.dataframe(
            quarantine.select("line", "field", "value", "reason"),
            hide_index=True,
            key=f"{_KEY}upload_quarantine",
        )


def _upload(root_text: str) -> None:
    try:
        limit = upload_limit_mb()
        row_limit = upload_row_limit()
    except WorkbenchError as exc:
        st.error(exc.one_line())
        return
    kinds = list(INGEST_KINDS)
    kind = str(
        st.selectbox(
            "Kind",
            kinds,
            index=kinds.index("jobs"),
            format_func=lambda k: f"{k}: {INGEST_KINDS[k]}",
            key=f"{_KEY}upload_kind",
        )
    )
    upload = st.file_uploader(
        f"Raw export (up to {limit:,.0f} MB and {row_limit:,} records)",
        type=_UPLOAD_TYPES,
        max_upload_size=max(1, math.ceil(limit)),
        key=f"{_KEY}upload_file",
        help=f"The limits are set by {UPLOAD_LIMIT_ENV} and {UPLOAD_ROW_LIMIT_ENV}. "
        "Larger files: `workbench ingest`.",
    )
    preset: str | None = None
    map_file = None
    region: str | None = None
    if kind == "jobs":
        columns = st.columns(3)
        chosen = columns[0].selectbox(
            "Column map preset", [_NO_MAP, *available_presets()], key=f"{_KEY}upload_preset"
        )
        preset = None if chosen == _NO_MAP else str(chosen)
        map_file = columns[1].file_uploader(
            "or a column map (TOML)", type=["toml"], key=f"{_KEY}upload_map"
        )
        region = (
            columns[2]
            .text_input("Region (if the file has none)", key=f"{_KEY}upload_region")
            .strip()
            or None
        )
    strict = st.checkbox(
        "Strict: refuse the file if any row fails validation", key=f"{_KEY}upload_strict"
    )
    if not st.button("Ingest", type="primary", disabled=upload is None, key=f"{_KEY}ingest"):
        return
    if upload is None:
        return
    if preset and map_file is not None:
        st.error("Choose a preset or upload a column map, not both.")
        return
    settings = UploadSettings(
        kind=kind, strict=strict, options=IngestOptions(column_map=preset, region=region)
    )
    workspace = Workspace(root_text)
    try:
        with st.status(f"Ingesting {upload.name} as {kind}...", expanded=False) as status:
            if not workspace.exists():
                workspace.init()
            report = ingest_upload(
                workspace,
                upload.name,
                upload,
                upload.size,
                settings,
                max_mb=limit,
                column_map=(map_file.name, map_file, map_file.size) if map_file else None,
            )
            status.update(label=f"Ingested {upload.name}", state="complete")
    except WorkbenchError as exc:
        st.error(exc.one_line())
        return
    except Exception as exc:  # a bug must still not show a traceback to a planner
        first = (str(exc).strip().splitlines() or [""])[0]
        st.error(
            f"internal error: {type(exc).__name__}: {first} (run `workbench ingest` for details)"
        )
        return
    _report(report)


def render() -> None:
    """Draw the data page."""
    root = workspace_root()
    root_text = str(root)
    st.title("Data")
    fleet = current_filter()
    workspace = Workspace(root)
    empty = not workspace.exists() or not workspace.table_names()
    if empty:
        st.info(
            f"The workspace `{root}` holds no data yet. Run `workbench demo` to load the "
            "sample fleet, or upload a first export below (a SKU catalog first: "
            "`workbench ingest catalog FILE`, since every other kind names accelerators)."
        )
    else:
        st.caption(
            "The whole workspace: sources are not sliced by the sidebar's filter"
            + (f" ({fleet.describe()})." if fleet.describe() != "the whole fleet" else ".")
        )
        tabs = st.tabs(["Sources", "Reconciliation", "Quarantine", "Upload"])
        with tabs[0]:
            _sources(workspace)
        with tabs[1]:
            _reconciliation(workspace)
        with tabs[2]:
            _quarantine(root_text, table_version(root, "quarantine"))
        with tabs[3]:
            _upload(root_text)
        return
    st.subheader("Upload")
    _upload(root_text)
