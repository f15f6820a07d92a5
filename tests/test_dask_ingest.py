"""Partitioned job records (hive ``date=`` folders, globs, fsspec URLs) on a Dask cluster.

The parts of one export are read and split on two real ``dask worker`` processes and
combined; the tables and every reconciliation equal the serial ingest's, and the totals
equal those of ingesting the same records as one file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fsspec
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import SAMPLE_CATALOG, SAMPLE_JOBS
from tests.dask_cluster import Cluster, local_cluster
from workbench.distributed_ingest import expand_inputs, ingest_partitioned
from workbench.errors import WorkbenchError
from workbench.executors import DaskExecutor
from workbench.ingest import IngestReport, ingest
from workbench.store import Workspace

ROWS = 30_000
TOTALS = (
    "rows_read",
    "rows_loaded",
    "rows_quarantined",
    "duplicates_dropped",
    "chip_hours_in",
    "chip_hours_out",
    "queued_chip_hours_in",
    "queued_chip_hours_out",
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with local_cluster(2, tmp_path_factory.mktemp("dask-logs")) as running:
        yield running


@pytest.fixture(scope="module")
def records() -> pl.DataFrame:
    """The first sample job records, as written (text, defects included)."""
    return pl.read_csv(SAMPLE_JOBS, infer_schema=False, n_rows=ROWS)


@pytest.fixture(scope="module")
def partitioned(records: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hive-style ``date=YYYY-MM`` folders by the job's start month, CSV and Parquet."""
    root = tmp_path_factory.mktemp("jobs")
    month = pl.col("start_time").str.slice(0, 7).fill_null("unknown")
    for i, ((key,), part) in enumerate(
        records.with_columns(month.alias("__m")).group_by("__m", maintain_order=True)
    ):
        folder = root / f"date={key}"
        folder.mkdir()
        rows = part.drop("__m")
        if i % 2:
            rows.write_parquet(folder / "part-0.parquet")
        else:
            rows.write_csv(folder / "part-0.csv")
    (root / "_SUCCESS").write_text("")
    return root


def _workspace(path: Path) -> Workspace:
    workspace = Workspace(path).init()
    ingest(workspace, "catalog", [SAMPLE_CATALOG])
    return workspace


def _totals(report: IngestReport) -> dict[str, float]:
    return {
        key: round(sum(float(f.reconciliation[key]) for f in report.files), 6) for key in TOTALS
    }


def test_folders_and_globs_expand_to_the_partition_files(partitioned: Path) -> None:
    by_folder = expand_inputs([str(partitioned)])
    by_glob = expand_inputs([f"{partitioned}/date=*/part-*"])
    assert by_folder == by_glob
    assert len(by_folder) >= 3
    assert all("date=" in name for name in by_folder)  # _SUCCESS is not data
    with pytest.raises(WorkbenchError, match="no file matches"):
        expand_inputs([f"{partitioned}/date=1999-*/*.csv"])


def test_cluster_ingest_equals_local_and_one_file(
    cluster: Cluster, partitioned: Path, records: pl.DataFrame, tmp_path: Path
) -> None:
    whole = tmp_path / "jobs.csv"
    records.write_csv(whole)
    single = _workspace(tmp_path / "single")
    one_file = ingest(single, "jobs", [whole])
    local = _workspace(tmp_path / "local")
    local_report = ingest_partitioned(local, [str(partitioned)])
    remote = _workspace(tmp_path / "remote")
    with DaskExecutor(cluster.address) as executor:
        remote_report = ingest_partitioned(remote, [str(partitioned)], executor=executor)

    # The cluster's result is the serial one, table and reconciliation, file by file.
    assert_frame_equal(remote.read_table("usage_daily"), local.read_table("usage_daily"))
    assert [f.reconciliation for f in remote_report.files] == [
        f.reconciliation for f in local_report.files
    ]
    assert all(f.reconciliation["balanced"] for f in remote_report.files)
    # The parts add up to the records read as one file: nothing lost at the boundaries.
    assert _totals(remote_report) == _totals(one_file)
    usage, whole_usage = remote.read_table("usage_daily"), single.read_table("usage_daily")
    for column in ("chip_hours_used", "chip_hours_queued"):
        assert usage[column].sum() == pytest.approx(whole_usage[column].sum(), rel=1e-9)
    keys = ["date", "accelerator", "region", "team", "workload"]
    assert usage.select(keys).is_duplicated().sum() == 0
    assert usage.height == whole_usage.height
    # Ingesting the same parts again changes nothing.
    with DaskExecutor(cluster.address) as executor:
        again = ingest_partitioned(remote, [str(partitioned)], executor=executor)
    assert again.run_id is None


def test_memory_urls_ingest_like_local_files(partitioned: Path, tmp_path: Path) -> None:
    memory = fsspec.filesystem("memory")
    for path in sorted(partitioned.rglob("part-*")):
        memory.pipe(f"/fleet/{path.parent.name}/{path.name}", path.read_bytes())
    try:
        local = _workspace(tmp_path / "local")
        ingest_partitioned(local, [f"file://{partitioned}/date=*/*"])
        remote = _workspace(tmp_path / "memory")
        report = ingest_partitioned(remote, ["memory://fleet/date=*/*"])
    finally:
        memory.rm("/fleet", recursive=True)
    assert len(report.files) == len(expand_inputs([str(partitioned)]))
    assert_frame_equal(
        remote.read_table("usage_daily").drop("source"),
        local.read_table("usage_daily").drop("source"),
    )


def test_cli_ingests_a_partition_folder_on_the_cluster(
    cluster: Cluster, partitioned: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from workbench.cli import app

    local = _workspace(tmp_path / "local")
    ingest_partitioned(local, [str(partitioned)])
    remote = _workspace(tmp_path / "remote")
    result = CliRunner().invoke(
        app,
        ["ingest", "jobs", str(partitioned), "--workspace", str(remote.root)],
        env={"WORKBENCH_DASK_SCHEDULER": cluster.address},
    )
    assert result.exit_code == 0, result.output
    assert "committed" in result.output
    assert_frame_equal(remote.read_table("usage_daily"), local.read_table("usage_daily"))
