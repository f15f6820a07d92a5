"""Shared fixtures: the committed sample fleet, its SKU catalog, and workspaces built from it.

Everything expensive (generating the sample fleet, ingesting its 140k job records) happens
once per session; tests that change a workspace get their own copy or a fresh one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from workbench.catalog import SkuCatalog, load_sku_catalog
from workbench.ingest import IngestReport, ingest
from workbench.sample_fleet import generate_sample_fleet
from workbench.store import Workspace

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data_samples"
SAMPLE_CATALOG = SAMPLE / "catalog" / "sku_catalog.toml"
SAMPLE_PRICE_BOOK = SAMPLE / "catalog" / "price_book.toml"
SAMPLE_JOBS = SAMPLE / "jobs" / "jobs.csv.gz"

JOB_HEADER = "job_id,submit_time,start_time,end_time,chips,accelerator,region,team,workload"

# Ingest order of the sample fleet: the catalog first, since every other kind resolves
# accelerators through it.
SAMPLE_INGESTS: tuple[tuple[str, Path], ...] = (
    ("catalog", SAMPLE_CATALOG),
    ("price-book", SAMPLE_PRICE_BOOK),
    ("inventory", SAMPLE / "inventory" / "inventory.csv"),
    ("allocations", SAMPLE / "allocations" / "allocations.csv"),
    ("orders", SAMPLE / "orders" / "orders.csv"),
    ("events", SAMPLE / "events" / "events.csv"),
    ("jobs", SAMPLE_JOBS),
)


@dataclass(frozen=True)
class IngestedSample:
    """A workspace holding the whole sample fleet, and the report of each ingest."""

    workspace: Workspace
    reports: dict[str, IngestReport]


@dataclass(frozen=True)
class GeneratedFleet:
    """A sample fleet generated during the session, and the generator's summary."""

    path: Path
    summary: dict[str, Any]


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The committed sample fleet (read only: never write into it)."""
    return SAMPLE


@pytest.fixture(scope="session")
def catalog() -> SkuCatalog:
    """The sample fleet's SKU catalog."""
    return load_sku_catalog(SAMPLE_CATALOG)


@pytest.fixture(scope="session")
def generated_fleet(tmp_path_factory: pytest.TempPathFactory) -> GeneratedFleet:
    """The small fleet with seed 7, generated once for the session (it takes seconds)."""
    out = tmp_path_factory.mktemp("generated") / "fleet"
    summary = generate_sample_fleet(out, scale="small", seed=7)
    return GeneratedFleet(path=out, summary=summary)


@pytest.fixture(scope="session")
def sample_workspace(tmp_path_factory: pytest.TempPathFactory) -> IngestedSample:
    """A workspace with every sample export ingested, once per session. Do not change it:
    copy it with ``workspace_copy`` first."""
    workspace = Workspace(tmp_path_factory.mktemp("sample") / "workspace").init()
    reports = {kind: ingest(workspace, kind, [path]) for kind, path in SAMPLE_INGESTS}
    return IngestedSample(workspace=workspace, reports=reports)


@pytest.fixture
def workspace_copy(sample_workspace: IngestedSample, tmp_path: Path) -> Workspace:
    """A private copy of the ingested sample workspace, free to change."""
    target = tmp_path / "workspace-copy"
    shutil.copytree(sample_workspace.workspace.root, target)
    return Workspace(target)


@pytest.fixture
def empty_workspace(tmp_path: Path) -> Workspace:
    """A freshly initialized, empty workspace."""
    return Workspace(tmp_path / "workspace").init()


@pytest.fixture
def catalog_workspace(empty_workspace: Workspace) -> Workspace:
    """A fresh workspace with only the sample SKU catalog ingested."""
    ingest(empty_workspace, "catalog", [SAMPLE_CATALOG])
    return empty_workspace


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[..., Path]:
    """Write text lines to a file under a private folder and return its path."""

    def write(name: str, lines: list[str], *, header: str | None = None) -> Path:
        path = tmp_path / "inputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        body = ([header] if header is not None else []) + lines
        path.write_text("\n".join(body) + "\n", encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_jobs(write_file: Callable[..., Path]) -> Callable[..., Path]:
    """Write scheduler job records (the data lines) under the standard header."""

    def write(lines: list[str], name: str = "jobs.csv") -> Path:
        return write_file(name, lines, header=JOB_HEADER)

    return write
