"""The workspace: canonical tables as Parquet, one folder per run, SQL through DuckDB.

Layout of a workspace folder::

    workspace.json               marker and layout version
    tables/<table>.parquet       canonical tables (usage_daily, inventory, ...) and quarantine
    runs/<run_id>/manifest.json  one folder per run: config, input hashes, versions, seed,
    runs/<run_id>/...            timings, row counts, and the run's own outputs
    .lock                        serializes writers

Invariants:

* Writes are atomic. A table is written beside its final name and renamed over it; a run is
  built in ``runs/.staging-<id>/`` and renamed to ``runs/<id>/`` only once whole, manifest
  last. A reader (the app) therefore sees the old state or the new one, never half of one,
  and a crash leaves at most a staging folder that readers ignore and the next writer sweeps.
* Writers take an exclusive lock on ``.lock``; readers take none.
* SQL opens an in-memory DuckDB with one view per table and per run output, so no database
  file can be left locked or stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from workbench.errors import WorkbenchError
from workbench.schema import QUARANTINE_SCHEMA, TABLES

__all__ = ["RunInfo", "RunWriter", "Workspace", "file_sha256", "package_versions"]

LAYOUT_VERSION = 1
_STAGING_PREFIX = ".staging-"
_VERSIONED_PACKAGES = (
    "fleet-workbench",
    "polars",
    "pyarrow",
    "numpy",
    "duckdb",
    "statsmodels",
    "prophet",
    "scikit-learn",
    "streamlit",
    "plotly",
)


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages whose behaviour shapes a run's numbers."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class RunInfo:
    """A committed run: its id, folder and manifest."""

    run_id: str
    path: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        """What the run did: ingest, forecast, plan, ..."""
        return str(self.manifest.get("kind", ""))

    @property
    def started_at(self) -> str:
        """UTC start time, ISO 8601."""
        return str(self.manifest.get("started_at", ""))

    def read(self, name: str) -> pl.DataFrame:
        """Read one of the run's Parquet outputs by name (without extension)."""
        path = self.path / f"{name}.parquet"
        if not path.exists():
            raise WorkbenchError(
                f"run {self.run_id} has no output '{name}'",
                file=path,
                fix=f"outputs are: {', '.join(self.outputs()) or 'none'}",
            )
        return pl.read_parquet(path)

    def outputs(self) -> list[str]:
        """Names of the run's Parquet outputs."""
        return sorted(p.stem for p in self.path.glob("*.parquet"))


@dataclass
class RunWriter:
    """A run being built in its staging folder; see :meth:`Workspace.new_run`."""

    run_id: str
    staging: Path
    manifest: dict[str, Any]
    _timers: dict[str, float] = field(default_factory=dict)

    def write(self, name: str, frame: pl.DataFrame) -> Path:
        """Write an output table of the run as Parquet and count its rows."""
        path = self.staging / f"{name}.parquet"
        frame.write_parquet(path)
        self.manifest["row_counts"][name] = frame.height
        return path

    def write_json(self, name: str, payload: Mapping[str, Any]) -> Path:
        """Write a JSON document beside the run's tables."""
        path = self.staging / f"{name}.json"
        path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
        return path

    def add_input(self, path: Path, sha256: str | None = None) -> str:
        """Record an input file with its size and SHA-256; return the hash.

        ``sha256``: the file's hash when the caller already has it (a large file takes
        seconds to hash).
        """
        digest = sha256 or file_sha256(path)
        self.manifest["inputs"].append(
            {"path": str(path), "sha256": digest, "bytes": path.stat().st_size}
        )
        return digest

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Time a step of the run into the manifest's ``timings`` (seconds)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.manifest["timings"][step] = round(time.perf_counter() - began, 4)


class Workspace:
    """A workspace folder: canonical tables, runs and SQL over them."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # -- layout -----------------------------------------------------------------------
    @property
    def tables_dir(self) -> Path:
        """Folder of the canonical tables."""
        return self.root / "tables"

    @property
    def runs_dir(self) -> Path:
        """Folder of the runs."""
        return self.root / "runs"

    def exists(self) -> bool:
        """Whether the folder has been initialized as a workspace."""
        return (self.root / "workspace.json").exists()

    def init(self) -> Workspace:
        """Create the workspace layout (idempotent) and return self."""
        if self.root.exists() and not self.root.is_dir():
            raise WorkbenchError(
                "is a file, not a folder", file=self.root, fix="pick another --workspace path"
            )
        self.tables_dir.mkdir(parents=True, exist_ok=True)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        marker = self.root / "workspace.json"
        if not marker.exists():
            self._atomic_write_bytes(
                marker,
                json.dumps({"layout_version": LAYOUT_VERSION, "created_at": _utc_now()}).encode(),
            )
        return self

    def require(self) -> Workspace:
        """Return self if initialized, else raise a readable error."""
        if not self.exists():
            raise WorkbenchError(
                "not a workspace",
                file=self.root,
                fix="run 'workbench init' or pass --workspace with an initialized folder",
            )
        return self

    # -- locking ----------------------------------------------------------------------
    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Hold the workspace's exclusive writer lock (blocks until free)."""
        self.require()
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self._sweep_staging()
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _sweep_staging(self) -> None:
        """Remove leftovers of writers that crashed (only called under the lock)."""
        for folder in (self.runs_dir, self.tables_dir):
            for leftover in folder.glob(f"{_STAGING_PREFIX}*"):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)

    # -- tables -----------------------------------------------------------------------
    def table_path(self, name: str) -> Path:
        """Path of a canonical table's Parquet file."""
        return self.tables_dir / f"{name}.parquet"

    def has_table(self, name: str) -> bool:
        """Whether the table has been written."""
        return self.table_path(name).exists()

    def read_table(self, name: str) -> pl.DataFrame:
        """Read a table; a table never written comes back empty with its schema."""
        path = self.table_path(name)
        if path.exists():
            return pl.read_parquet(path)
        if name == "quarantine":
            return pl.DataFrame(schema=QUARANTINE_SCHEMA)
        if name in TABLES:
            return TABLES[name].empty()
        raise WorkbenchError(
            f"unknown table '{name}'",
            field="table",
            fix=f"use one of {', '.join(self.table_names())}",
        )

    def scan_table(self, name: str) -> pl.LazyFrame:
        """Scan a table lazily (empty with its schema if never written)."""
        path = self.table_path(name)
        if path.exists():
            return pl.scan_parquet(path)
        return self.read_table(name).lazy()

    def table_names(self) -> list[str]:
        """Tables present in the workspace (not the leftovers of a crashed write)."""
        return sorted(
            p.stem
            for p in self.tables_dir.glob("*.parquet")
            if not p.name.startswith(_STAGING_PREFIX)
        )

    def write_table(self, name: str, frame: pl.DataFrame) -> Path:
        """Replace a table atomically: write beside it, then rename over it.

        Callers that read-modify-write a table must hold :meth:`writer_lock`.
        """
        self.require()
        final = self.table_path(name)
        aside = self.tables_dir / f"{_STAGING_PREFIX}{name}-{uuid.uuid4().hex}.parquet"
        frame.write_parquet(aside)
        _fsync(aside)
        os.replace(aside, final)
        _fsync(self.tables_dir)
        return final

    # -- runs -------------------------------------------------------------------------
    @contextlib.contextmanager
    def new_run(
        self,
        kind: str,
        *,
        config: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> Iterator[RunWriter]:
        """Build a run in a staging folder and commit it whole, or not at all.

        Use as ``with workspace.new_run("ingest", config=...) as run: run.write(...)``.
        On normal exit the manifest is written and the folder renamed into ``runs/``; on an
        exception the staging folder is removed and the exception propagates.
        """
        self.require()
        started = datetime.now(UTC)
        run_id = f"{started:%Y%m%dT%H%M%S}-{kind}-{uuid.uuid4().hex[:6]}"
        staging = self.runs_dir / f"{_STAGING_PREFIX}{run_id}"
        staging.mkdir(parents=True)
        manifest: dict[str, Any] = {
            "run_id": run_id,
            "kind": kind,
            "started_at": started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "config": dict(config or {}),
            "seed": seed,
            "inputs": [],
            "versions": package_versions(),
            "timings": {},
            "row_counts": {},
        }
        writer = RunWriter(run_id=run_id, staging=staging, manifest=manifest)
        began = time.perf_counter()
        try:
            yield writer
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        manifest["finished_at"] = _utc_now()
        manifest["timings"]["total"] = round(time.perf_counter() - began, 4)
        writer.write_json("manifest", manifest)
        for written in staging.iterdir():
            _fsync(written)
        os.rename(staging, self.runs_dir / run_id)
        _fsync(self.runs_dir)

    def runs(self, kind: str | None = None) -> list[RunInfo]:
        """Committed runs, oldest first; staging folders are never listed."""
        if not self.runs_dir.exists():
            return []
        found: list[RunInfo] = []
        for folder in self.runs_dir.iterdir():
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            manifest_path = folder / "manifest.json"
            if not manifest_path.exists():
                continue
            manifest = json.loads(manifest_path.read_text())
            if kind is None or manifest.get("kind") == kind:
                found.append(RunInfo(folder.name, folder, manifest))
        return sorted(found, key=lambda r: (r.started_at, r.run_id))

    def run(self, run_id: str) -> RunInfo:
        """Return one committed run; a unique prefix of its id is enough."""
        matches = [r for r in self.runs() if r.run_id == run_id or r.run_id.startswith(run_id)]
        if len(matches) != 1:
            known = ", ".join(r.run_id for r in self.runs()[-5:]) or "none yet"
            problem = "no run" if not matches else f"{len(matches)} runs"
            raise WorkbenchError(
                f"{problem} matching '{run_id}'",
                field="run_id",
                fix=f"use 'workbench runs list' (latest: {known})",
            )
        return matches[0]

    # -- SQL --------------------------------------------------------------------------
    def sql(self, query: str) -> pl.DataFrame:
        """Run SQL over the workspace and return the result.

        Each table is a view of its name; ``run_<output>`` views show the outputs of the
        latest run that has them.
        """
        import duckdb

        connection = duckdb.connect(":memory:")
        try:
            # Views through the relation API: no file or table name is pasted into SQL text.
            for name in self.table_names():
                connection.read_parquet(str(self.table_path(name))).create_view(name)
            latest: dict[str, Path] = {}
            for run in self.runs():
                for output in run.outputs():
                    latest[output] = run.path / f"{output}.parquet"
            for output, output_path in latest.items():
                connection.read_parquet(str(output_path)).create_view(f"run_{output}")
            try:
                # A relation, not execute(): DuckDB 2 connections have no .pl(), and a
                # statement that returns no rows (CREATE, SET) gives no relation.
                relation = connection.sql(query)
                return pl.DataFrame() if relation is None else relation.pl()
            except duckdb.Error as exc:
                first_line = str(exc).splitlines()[0]
                raise WorkbenchError(
                    f"SQL failed: {first_line}",
                    field="query",
                    fix=f"tables are: {', '.join(self.table_names()) or 'none yet'}",
                ) from None
        finally:
            connection.close()

    # -- helpers ----------------------------------------------------------------------
    def _atomic_write_bytes(self, path: Path, payload: bytes) -> None:
        aside = path.with_name(f"{_STAGING_PREFIX}{path.name}-{uuid.uuid4().hex}")
        aside.write_bytes(payload)
        os.replace(aside, path)


def _fsync(path: Path) -> None:
    """Flush a file or folder to disk (a folder: so a rename in it survives a crash)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
