"""Ingesting many or huge job-record files: partitions, globs and fsspec URLs, in parallel.

:func:`expand_inputs` turns what a user names into the files to read: a file, a folder
(searched recursively, so hive-style ``date=2026-10-01/`` partitions are found), or a glob
(``jobs/date=2026-10-*/*.parquet``), as local paths or fsspec URLs (``file://``,
``memory://``; ``s3://``, ``gs://``, ``abfs://`` once the matching fsspec package is
installed). Files come sorted by name, so partitions are ingested in date order.

:func:`ingest_partitioned` ingests them through :func:`workbench.ingest.ingest` with an
executor: each file is read in bounded memory (streamed in blocks) and split into
``usage_daily`` rows on a worker (local processes, or a Dask cluster's workers), and the
per-file results are combined in file order on the caller's side exactly as a serial
ingest combines them, so the tables and every file's reconciliation are the same.

The files of one call are *parts of one export* (``IngestOptions.parts_of``): a job crossing
midnight at a ``date=`` boundary puts chip-hours on the next partition's first day, so parts
add up instead of replacing each other's overlapping days as successive exports do. Their
rows are combined per key (:func:`combine_parts`) under one ``source`` named by the inputs;
each part keeps its own reconciliation (rows and chip-hours in = out, per file). A part's
``peak_chips`` counts only its own jobs, so the combined daily peak is the sum of the
parts' peaks: exact when parts hold different pools or teams, an upper bound when jobs of
one series run concurrently from different parts (as summing peaks over workloads is).

Files that are not on a local disk are first copied into the workspace's ``staging/``
folder (streamed, keeping the partition path in the name), since the workspace records each
input's SHA-256 and re-ingesting unchanged bytes must change nothing. On a multi-host
cluster the staged files (and local inputs) must be on storage every worker mounts.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from workbench.errors import WorkbenchError
from workbench.executors import Executor
from workbench.ingest import IngestOptions, IngestReport, Progress, ingest
from workbench.store import Workspace

__all__ = [
    "DATA_SUFFIXES",
    "combine_parts",
    "expand_inputs",
    "ingest_partitioned",
    "local_copies",
]

#: Names of job-record files a folder search picks up (others, e.g. ``_SUCCESS``, are not).
DATA_SUFFIXES = (
    ".csv",
    ".csv.gz",
    ".csv.zst",
    ".tsv",
    ".txt",
    ".parquet",
    ".pq",
    ".jsonl",
    ".jsonl.gz",
    ".ndjson",
)
_GLOB_CHARS = ("*", "?", "[")


def _is_data_file(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(("_", ".")) and base.lower().endswith(DATA_SUFFIXES)


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Every file named by ``inputs`` (files, folders, globs; paths or URLs), sorted.

    Local files come back as plain paths, others as URLs with their protocol. Raises a
    :class:`WorkbenchError` naming an input that matches no file.
    """
    from fsspec.core import url_to_fs

    found: list[str] = []
    for given in inputs:
        try:
            fs, path = url_to_fs(given)
        except (ImportError, ValueError) as exc:
            raise WorkbenchError(
                f"cannot open {given}: {exc}",
                file=given,
                fix="install the fsspec package for this protocol (e.g. s3fs, gcsfs, adlfs)",
            ) from None
        if any(char in path for char in _GLOB_CHARS):
            names = [n for n in fs.glob(path) if not fs.isdir(n)]
        elif fs.isdir(path):
            names = [n for n in fs.find(path) if _is_data_file(n)]
        elif fs.exists(path):
            names = [path]
        else:
            names = []
        if not names:
            raise WorkbenchError(
                "no file matches", file=given, fix="check the path, folder or glob pattern"
            )
        local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
        found.extend(names if local else [fs.unstrip_protocol(n) for n in names])
    return sorted(dict.fromkeys(found))


def combine_parts(parts: Sequence[pl.DataFrame], keys: Sequence[str], source: str) -> pl.DataFrame:
    """One usage row per key from the parts' rows: quantities summed, ``source`` set."""
    frame = pl.concat(parts, how="vertical")
    values = [c for c in frame.columns if c not in (*keys, "source")]
    return (
        frame.group_by(keys)
        .agg(pl.col(values).sum())
        .with_columns(pl.lit(source).alias("source"))
        .select(frame.columns)
        .sort(keys)
    )


def local_copies(urls: Sequence[str], staging: Path) -> list[Path]:
    """Local paths of ``urls``: local files as they are, others copied under ``staging``.

    A copy keeps the URL's path (partition folders included) below a folder named by a hash
    of the URL's location, so two files of the same name never collide and copying the same
    URL again overwrites its earlier copy.
    """
    import fsspec
    from fsspec.core import url_to_fs

    paths: list[Path] = []
    for url in urls:
        fs, path = url_to_fs(url)
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        if "file" in protocols:
            paths.append(Path(path))
            continue
        parent, _, name = path.rpartition("/")
        target = (
            staging
            / hashlib.sha256(f"{protocols[0]}://{parent}".encode()).hexdigest()[:16]
            / parent.strip("/").replace("/", "__")
            / name
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        with fsspec.open(url, "rb") as source, target.open("wb") as out:
            shutil.copyfileobj(source, out, length=8 << 20)
        paths.append(target)
    return paths


def ingest_partitioned(
    workspace: Workspace,
    inputs: Sequence[str],
    *,
    executor: Executor | None = None,
    options: IngestOptions | None = None,
    strict: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest the job-record files ``inputs`` name, in parallel on ``executor``.

    Without an executor the files are read one after another in this process. The result
    equals :func:`workbench.ingest.ingest` of the same files in the same (sorted) order.
    """
    from dataclasses import replace

    workspace.require()
    urls = expand_inputs(inputs)
    paths = local_copies(urls, workspace.root / "staging")
    export = ",".join(inputs)
    return ingest(
        workspace,
        "jobs",
        paths,
        strict=strict,
        progress=progress,
        options=replace(options or IngestOptions(), parts_of=export),
        executor=executor,
    )
