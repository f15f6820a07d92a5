"""Ingest a file a person uploaded (in the app) as if it were named on the command line.

Invariants:

* An upload's name never leaves the workspace's ``uploads/`` folder: it is reduced to a
  plain file name (no folders, no ``..``, no leading dot, only letters, digits, ``.``,
  ``-`` and ``_``), keeping its extensions so the reader still knows the format.
* Bytes are written to a temporary file in ``uploads/`` first and renamed to their name
  only once whole; a reader never sees half an upload.
* The kept file is what canonical rows name as their ``source``, so every number stays
  traceable to it, and uploading the same bytes under the same name again changes nothing
  (the ingest skips it, as ``workbench ingest`` does for an unchanged file).
* An upload over the size limit is refused before anything is written; one over the row
  limit (records counted in the staged file, decompressed when compressed, so a small
  compressed file cannot hide millions of rows) is refused before it is kept.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pyarrow.parquet as pq

from pipelines.readers import file_format, open_binary
from workbench.errors import WorkbenchError
from workbench.ingest import INGEST_KINDS, IngestOptions, IngestReport, ingest
from workbench.store import Workspace

__all__ = [
    "DEFAULT_UPLOAD_LIMIT_MB",
    "DEFAULT_UPLOAD_ROW_LIMIT",
    "UPLOAD_LIMIT_ENV",
    "UPLOAD_ROW_LIMIT_ENV",
    "UploadSettings",
    "count_records",
    "ingest_upload",
    "safe_download_name",
    "safe_upload_name",
    "save_upload",
    "upload_limit_mb",
    "upload_row_limit",
]

UPLOAD_LIMIT_ENV = "WORKBENCH_UPLOAD_MAX_MB"
DEFAULT_UPLOAD_LIMIT_MB = 200.0
UPLOAD_ROW_LIMIT_ENV = "WORKBENCH_UPLOAD_MAX_ROWS"
DEFAULT_UPLOAD_ROW_LIMIT = 5_000_000
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 120


def upload_limit_mb() -> float:
    """The upload size limit in MB: ``$WORKBENCH_UPLOAD_MAX_MB``, else 200."""
    text = os.environ.get(UPLOAD_LIMIT_ENV, "").strip()
    if not text:
        return DEFAULT_UPLOAD_LIMIT_MB
    try:
        value = float(text)
    except ValueError:
        raise WorkbenchError(
            f"'{text}' is not a number of MB",
            field=UPLOAD_LIMIT_ENV,
            fix="set it to a size in MB, e.g. 200",
        ) from None
    if value <= 0:
        raise WorkbenchError(
            f"the upload limit must be positive, got {text}", field=UPLOAD_LIMIT_ENV
        )
    return value


def upload_row_limit() -> int:
    """The most records an upload may hold: ``$WORKBENCH_UPLOAD_MAX_ROWS``, else 5,000,000."""
    text = os.environ.get(UPLOAD_ROW_LIMIT_ENV, "").strip().replace(",", "").replace("_", "")
    if not text:
        return DEFAULT_UPLOAD_ROW_LIMIT
    if not text.isdigit() or int(text) <= 0:
        raise WorkbenchError(
            f"'{text}' is not a positive whole number of rows",
            field=UPLOAD_ROW_LIMIT_ENV,
            fix="set it to a number of rows, e.g. 5000000",
        )
    return int(text)


def count_records(path: Path) -> int | None:
    """Records in a table file: Parquet rows, or lines of text other than a CSV header.

    Compressed text (``.gz``, ``.zst``) is counted decompressed, a stream at a time. TOML
    files (catalogs, price books, column maps) are not tables of records: ``None``.
    """
    name = path.name.lower()
    if name.endswith(".toml"):
        return None
    kind = file_format(path)
    if kind == "parquet":
        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except Exception:  # not Parquet after all: the ingest says so, with the file
            return None
    lines = 0
    last = b"\n"
    try:
        with open_binary(path) as stream:
            while chunk := stream.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
    except Exception:  # broken compression: the ingest refuses it, naming the file
        return None
    lines += last != b"\n"  # a last line without its newline
    return max(0, lines - 1) if kind == "csv" else lines


def safe_upload_name(name: str) -> str:
    r"""A plain, safe file name for an uploaded file's name (see the module invariants).

    ``../../etc/x.csv`` -> ``x.csv``; ``C:\data\jobs 1.csv`` -> ``jobs_1.csv``;
    ``.env`` -> ``upload.env``; a name with nothing usable -> ``upload``.
    """
    base = re.split(r"[/\\]", name)[-1]
    cleaned = re.sub(r"\.{2,}", ".", _UNSAFE.sub("_", base)).lstrip("_-")
    if cleaned.startswith("."):
        cleaned = "upload" + cleaned
    cleaned = cleaned.rstrip("._-")
    if len(cleaned) > _MAX_NAME:
        stem, dot, suffix = cleaned.rpartition(".")
        cleaned = (stem[: _MAX_NAME - len(suffix) - 1] + dot + suffix) if dot else cleaned[:120]
    return cleaned or "upload"


def safe_download_name(name: str) -> str:
    """A plain file name for a download built from data (a team, a series id, a scenario).

    Like :func:`safe_upload_name`, but folder separators are kept as ``_`` rather than
    cutting the name at them: ``reclaim_a/b_history.csv`` -> ``reclaim_a_b_history.csv``.
    """
    return safe_upload_name(re.sub(r"[/\\]", "_", name))


@dataclass(frozen=True)
class UploadSettings:
    """How an upload is ingested: the kind, and the ingest options of ``workbench ingest``."""

    kind: str
    strict: bool = False
    options: IngestOptions = field(default_factory=IngestOptions)


def save_upload(
    workspace: Workspace,
    name: str,
    data: BinaryIO,
    size: int,
    max_mb: float,
    max_rows: int | None = None,
) -> Path:
    """Write an upload to ``uploads/<safe name>`` through a temporary file; return the path.

    Raises :class:`WorkbenchError` if ``size`` (bytes) is over ``max_mb`` or the file is
    empty (before writing), or if it holds more than ``max_rows`` records (default
    :func:`upload_row_limit`; counted in the temporary file, which is then removed).
    """
    safe = safe_upload_name(name)
    if size > max_mb * 1e6:
        raise WorkbenchError(
            f"the upload is {size / 1e6:,.1f} MB, over the limit of {max_mb:,.0f} MB",
            file=safe,
            fix=f"split the export into smaller files, or raise {UPLOAD_LIMIT_ENV}; "
            "or ingest it from the command line: workbench ingest KIND FILE",
        )
    if size == 0:
        raise WorkbenchError("the upload is empty", file=safe, fix="choose the exported file")
    folder = workspace.require().root / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    row_limit = upload_row_limit() if max_rows is None else max_rows
    # the staged file keeps the name's extensions, so it is counted as the format it is
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".staging-", suffix=f"-{safe}")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            while chunk := data.read(1 << 20):
                handle.write(chunk)
        rows = count_records(Path(temporary))
        if rows is not None and rows > row_limit:
            raise WorkbenchError(
                f"the upload holds {rows:,} records, over the limit of {row_limit:,}",
                file=safe,
                fix=f"split the export into smaller files, or raise {UPLOAD_ROW_LIMIT_ENV}; "
                "or ingest it from the command line: workbench ingest KIND FILE",
            )
        final = folder / safe
        os.replace(temporary, final)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return final


def ingest_upload(
    workspace: Workspace,
    name: str,
    data: BinaryIO,
    size: int,
    settings: UploadSettings,
    *,
    max_mb: float | None = None,
    column_map: tuple[str, BinaryIO, int] | None = None,
) -> IngestReport:
    """Save an upload and ingest it, exactly as ``workbench ingest KIND FILE`` would.

    ``column_map`` is an uploaded column map TOML as ``(name, data, size)``, saved beside
    the upload and used as ``--map`` (a preset goes in ``settings.options`` instead).
    Raises :class:`WorkbenchError` for an unknown kind, an oversized or empty upload, a
    column map for a kind other than jobs, and anything the ingest itself refuses.
    """
    if settings.kind not in INGEST_KINDS:
        raise WorkbenchError(
            f"unknown kind '{settings.kind}'",
            field="kind",
            fix=f"use one of {', '.join(INGEST_KINDS)}",
        )
    limit = upload_limit_mb() if max_mb is None else max_mb
    options = settings.options
    if column_map is not None:
        if settings.kind != "jobs":
            raise WorkbenchError(
                "a column map applies to job records only",
                field="column map",
                fix="choose the kind 'jobs', or remove the column map",
            )
        map_name, map_data, map_size = column_map
        if not safe_upload_name(map_name).endswith(".toml"):
            raise WorkbenchError(
                "a column map is a .toml file",
                file=safe_upload_name(map_name),
                fix="upload the map's TOML file, or choose a preset",
            )
        map_path = save_upload(workspace, map_name, map_data, map_size, limit)
        options = IngestOptions(
            column_map=str(map_path),
            export_time=options.export_time,
            grain=options.grain,
            tag_key=options.tag_key,
            region=options.region,
        )
    path = save_upload(workspace, name, data, size, limit)
    return ingest(workspace, settings.kind, [path], strict=settings.strict, options=options)
