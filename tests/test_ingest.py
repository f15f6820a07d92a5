"""Ingest: planted defects end where truth/defects.csv says, nothing is lost (reconciliation),
the day split conserves chip-hours and matches the ground truth, and re-ingesting is safe."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.jobs import ingest_job_records, jobs_to_usage_daily
from pipelines.readers import PROBLEM_COLUMN, read_delimited
from workbench.errors import WorkbenchError
from workbench.ingest import ingest
from workbench.schema import JOB_RECORDS, QUARANTINE_SCHEMA, TABLES
from workbench.store import Workspace

SERIES_KEYS = ["accelerator", "region", "team", "workload"]
USAGE_KEYS = ["date", *SERIES_KEYS]

# Reason each planted defect must carry (the generator's defect kinds).
DEFECT_REASONS = {
    "end_before_start": r"^end_time \S+ is before start_time \S+",
    "negative_chips": r"^chips must be positive, got -",
    "non_numeric_chips": r"^chips '.+' is not a finite number",
    "missing_team": r"^team is missing",
    "unknown_accelerator": r"^unknown accelerator '.+': add it to the SKU catalog",
    "impossible_timestamp": r"^start_time '.+' is not a timestamp",
}


def job_line(
    job_id: str,
    start: str,
    end: str,
    chips: object = 8,
    *,
    submit: str | None = None,
    accelerator: str = "l4-24gb",
    region: str = "us-central1",
    team: str = "maps",
    workload: str = "batch",
) -> str:
    """One job record as a CSV line (submitted when it started unless ``submit`` says)."""
    fields = [job_id, submit or start, start, end, str(chips), accelerator, region, team, workload]
    return ",".join(fields)


def table_digest(workspace: Workspace, name: str) -> str:
    return hashlib.sha256(workspace.table_path(name).read_bytes()).hexdigest()


def staging_leftovers(workspace: Workspace) -> list[Path]:
    return [*workspace.runs_dir.glob(".staging-*"), *workspace.tables_dir.glob(".staging-*")]


# -- the sample fleet -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def defects(sample_dir: Path) -> pl.DataFrame:
    return pl.read_csv(sample_dir / "truth" / "defects.csv")


@pytest.fixture(scope="module")
def jobs_quarantine(sample_workspace) -> pl.DataFrame:
    quarantine = sample_workspace.workspace.read_table("quarantine")
    return quarantine.filter(pl.col("source").str.ends_with("jobs.csv.gz"))


@pytest.fixture(scope="module")
def jobs_reconciliation(sample_workspace) -> dict:
    report = sample_workspace.reports["jobs"]
    assert report.run_id is not None
    (file,) = report.files
    return file.reconciliation


def test_every_planted_quarantine_defect_is_quarantined_with_its_field_and_reason(
    defects, jobs_quarantine
):
    expected = defects.filter(pl.col("expected") == "quarantined")
    assert expected.height > 0
    assert set(expected["kind"]) == set(DEFECT_REASONS)
    found = {row["line"]: row for row in jobs_quarantine.iter_rows(named=True)}
    for defect in expected.iter_rows(named=True):
        row = found.get(defect["line"])
        assert row is not None, f"line {defect['line']} ({defect['kind']}) was not quarantined"
        assert row["field"] == defect["field"], defect
        assert defect["field"] in row["reason"] or defect["kind"] == "unknown_accelerator"
        assert pl.Series([row["reason"]]).str.contains(DEFECT_REASONS[defect["kind"]]).item(), (
            defect["kind"],
            row["reason"],
        )
        assert row["table"] == "job_records"
        assert json.loads(row["record"])["job_id"].endswith(tuple(f"-r{i}" for i in range(1, 7)))
    assert jobs_quarantine.height == expected.height, "only the planted defects are quarantined"
    assert jobs_quarantine.schema == QUARANTINE_SCHEMA


def test_planted_duplicates_are_dropped_and_blank_lines_skipped(defects, jobs_reconciliation):
    kinds = dict(defects.group_by("expected").len().iter_rows())
    assert jobs_reconciliation["duplicates_dropped"] == kinds["duplicate"]
    assert jobs_reconciliation["blank_lines"] == kinds["skipped"]


def test_planted_duplicate_and_blank_lines_are_neither_loaded_nor_quarantined(
    defects, jobs_quarantine, sample_dir
):
    raw = read_delimited(sample_dir / "jobs" / "jobs.csv.gz", required=("job_id",))
    lines = set(raw.frame["line"])
    blank = defects.filter(pl.col("expected") == "skipped")["line"].to_list()
    assert not lines & set(blank), "blank lines are not rows"
    duplicate = defects.filter(pl.col("expected") == "duplicate")["line"].to_list()
    assert lines >= set(duplicate)
    assert not set(jobs_quarantine["line"]) & set(duplicate)
    # Each duplicate line repeats an earlier line exactly.
    data = raw.frame.drop("line", PROBLEM_COLUMN)
    first_seen = raw.frame.filter(data.select(pl.struct(pl.all()).is_first_distinct()).to_series())
    assert set(duplicate) == lines - set(first_seen["line"])


def test_the_jobs_ingest_reconciles_rows_and_chip_hours(jobs_reconciliation, sample_dir):
    rec = jobs_reconciliation
    summary = json.loads((sample_dir / "truth" / "summary.json").read_text())
    accounted = rec["rows_loaded"] + rec["rows_quarantined"] + rec["duplicates_dropped"]
    assert rec["rows_read"] == accounted
    assert rec["rows_loaded"] == summary["jobs"], "every clean job loads"
    assert rec["chip_hours_in"] == pytest.approx(rec["chip_hours_out"], rel=1e-9)
    assert rec["chip_hours_out"] == pytest.approx(summary["job_chip_hours"], abs=0.01)
    assert rec["queued_chip_hours_in"] == pytest.approx(rec["queued_chip_hours_out"], rel=1e-9)
    assert rec["queued_chip_hours_out"] == pytest.approx(summary["queued_chip_hours"], abs=0.01)
    assert rec["balanced"] is True


def test_the_run_records_the_reconciliation_and_the_quarantine(sample_workspace):
    workspace = sample_workspace.workspace
    report = sample_workspace.reports["jobs"]
    run = workspace.run(report.run_id)
    (entry,) = run.manifest["files"]
    assert entry["rows_read"] == report.files[0].reconciliation["rows_read"]
    assert entry["sha256"] == hashlib.sha256(report.files[0].path.read_bytes()).hexdigest()
    # the file is hashed once (in a thread beside the reading, for a new file) and that hash
    # is the one the run's inputs record too
    (recorded,) = run.manifest["inputs"]
    assert recorded["sha256"] == entry["sha256"]
    assert recorded["bytes"] == report.files[0].path.stat().st_size
    saved = json.loads((run.path / "reconciliation.json").read_text())
    assert saved["files"][0]["rows_loaded"] == report.files[0].reconciliation["rows_loaded"]
    assert run.read("quarantine").height == report.quarantine.height
    stored_rows = workspace.read_table("usage_daily").height
    assert run.manifest["row_counts"]["table:usage_daily"] == stored_rows


def test_usage_daily_matches_the_ground_truth_for_every_series_day(sample_workspace, sample_dir):
    usage = sample_workspace.workspace.read_table("usage_daily")
    assert usage.schema == TABLES["usage_daily"].schema
    assert usage.select(pl.struct(USAGE_KEYS).is_unique().all()).item()
    # Idle allocations (reserved, nothing ran) are rows of their own, not job usage.
    usage = usage.filter(~pl.col("source").str.starts_with("allocations:"))
    truth = pl.read_parquet(sample_dir / "truth" / "demand_daily.parquet").filter("in_history")
    assert usage.join(truth, on=USAGE_KEYS, how="anti").height == 0, "rows the truth lacks"
    joined = truth.join(usage, on=USAGE_KEYS, how="left").with_columns(
        pl.col("chip_hours_used").fill_null(0.0),
        pl.col("chip_hours_queued").fill_null(0.0),
    )
    tolerance = 1e-6 * pl.col("used_chip_hours").abs() + 1e-9
    off = joined.filter((pl.col("chip_hours_used") - pl.col("used_chip_hours")).abs() > tolerance)
    assert off.height == 0, off.head()
    queued_off = joined.filter(
        (pl.col("chip_hours_queued") > 0) != (pl.col("queued_chip_hours") > 0)
    )
    assert queued_off.height == 0, queued_off.head()
    assert joined.filter(pl.col("queued_chip_hours") > 0).height > 0
    queued_tolerance = 1e-6 * pl.col("queued_chip_hours").abs() + 1e-9
    assert joined.filter(
        (pl.col("chip_hours_queued") - pl.col("queued_chip_hours")).abs() > queued_tolerance
    ).is_empty()


def test_peak_chips_bound_the_daily_usage(sample_workspace):
    usage = sample_workspace.workspace.read_table("usage_daily")
    assert (usage["chip_hours_used"] <= usage["peak_chips"] * 24 + 1e-6).all()
    assert (usage["peak_chips"] >= 0).all()


def test_the_other_sample_exports_load_every_row(sample_workspace, sample_dir):
    workspace = sample_workspace.workspace
    for kind, table in [
        ("inventory", "inventory"),
        ("allocations", "allocations"),
        ("orders", "orders"),
        ("events", "events"),
    ]:
        report = sample_workspace.reports[kind]
        (file,) = report.files
        expected_rows = pl.read_csv(file.path, infer_schema=False).height
        assert file.reconciliation["rows_read"] == expected_rows
        assert file.reconciliation["rows_loaded"] == expected_rows, file.quarantine
        assert file.reconciliation["balanced"] is True
        stored = workspace.read_table(table)
        assert stored.height == expected_rows
        assert stored.schema == TABLES[table].schema
        assert stored["source"].str.ends_with(file.path.name).all()
    book = workspace.read_table("price_book")
    assert book.height == len(set(book["accelerator"])) * len(set(book["region"]))


def test_reingesting_the_same_sample_file_changes_nothing(workspace_copy, sample_dir):
    runs_before = [r.run_id for r in workspace_copy.runs()]
    digests = {name: table_digest(workspace_copy, name) for name in workspace_copy.table_names()}
    report = ingest(workspace_copy, "jobs", [sample_dir / "jobs" / "jobs.csv.gz"])
    assert report.run_id is None
    assert [f.skipped for f in report.files] == [True]
    assert [r.run_id for r in workspace_copy.runs()] == runs_before
    assert {n: table_digest(workspace_copy, n) for n in workspace_copy.table_names()} == digests


# -- hand-written files with known answers ---------------------------------------------------


def usage_rows(workspace: Workspace) -> dict[tuple, tuple[float, float, float]]:
    """(date, accelerator, region, team, workload) -> (used, queued, peak)."""
    usage = workspace.read_table("usage_daily")
    return {
        tuple(row[k] for k in USAGE_KEYS): (
            row["chip_hours_used"],
            row["chip_hours_queued"],
            row["peak_chips"],
        )
        for row in usage.iter_rows(named=True)
    }


def test_a_job_spanning_three_days_is_split_into_exact_hours(catalog_workspace, write_jobs):
    path = write_jobs(
        [
            "j1,2026-01-01T18:00:00Z,2026-01-01T18:00:00Z,2026-01-03T06:00:00Z,8,h100-80gb,us-central1,vision,training",
        ]
    )
    ingest(catalog_workspace, "jobs", [path])
    key = ("h100-80gb", "us-central1", "vision", "training")
    assert usage_rows(catalog_workspace) == {
        (date(2026, 1, 1), *key): (48.0, 0.0, 8.0),
        (date(2026, 1, 2), *key): (192.0, 0.0, 8.0),
        (date(2026, 1, 3), *key): (48.0, 0.0, 8.0),
    }


def test_back_to_back_jobs_do_not_double_the_peak(catalog_workspace, write_jobs):
    path = write_jobs(
        [
            "a,2026-01-01T01:00:00Z,2026-01-01T01:00:00Z,2026-01-01T05:00:00Z,8,l4-24gb,us-central1,maps,batch",
            "b,2026-01-01T05:00:00Z,2026-01-01T05:00:00Z,2026-01-01T09:00:00Z,8,l4-24gb,us-central1,maps,batch",
            "c,2026-01-01T10:00:00Z,2026-01-01T10:00:00Z,2026-01-01T12:00:00Z,2,l4-24gb,us-central1,maps,batch",
            "d,2026-01-01T11:00:00Z,2026-01-01T11:00:00Z,2026-01-01T11:30:00Z,4,l4-24gb,us-central1,maps,batch",
        ]
    )
    ingest(catalog_workspace, "jobs", [path])
    used, queued, peak = usage_rows(catalog_workspace)[
        (date(2026, 1, 1), "l4-24gb", "us-central1", "maps", "batch")
    ]
    assert used == 8 * 4 + 8 * 4 + 2 * 2 + 4 * 0.5
    assert queued == 0.0
    assert peak == 8.0


def test_overlapping_jobs_add_up_in_the_peak(catalog_workspace, write_jobs):
    path = write_jobs(
        [
            "a,2026-01-01T01:00:00Z,2026-01-01T01:00:00Z,2026-01-01T05:00:00Z,8,l4-24gb,us-central1,maps,batch",
            "b,2026-01-01T04:59:00Z,2026-01-01T04:59:00Z,2026-01-01T09:00:00Z,4,l4,us-central1,maps,batch",
        ]
    )
    ingest(catalog_workspace, "jobs", [path])
    (row,) = usage_rows(catalog_workspace).values()
    assert row[2] == 12.0


def test_timestamp_offsets_are_converted_to_utc_before_the_day_split(catalog_workspace, write_jobs):
    path = write_jobs(
        [
            # 08:00-11:00 in Tokyo is 23:00-02:00 UTC across midnight.
            job_line(
                "t",
                "2026-01-01T08:00:00+09:00",
                "2026-01-01T11:00:00+09:00",
                4,
                accelerator="tpu-v6e",
                region="asia-northeast1",
                team="speech",
                workload="training",
            ),
            # 20:00-23:00 in Iowa is 02:00-05:00 UTC the next day.
            job_line(
                "u",
                "2026-01-01T20:00:00-06:00",
                "2026-01-01T23:00:00-06:00",
                4,
                accelerator="TPU v6e",
                team="speech",
                workload="training",
            ),
        ]
    )
    ingest(catalog_workspace, "jobs", [path])
    rows = usage_rows(catalog_workspace)
    tokyo = ("tpu-v6e", "asia-northeast1", "speech", "training")
    iowa = ("tpu-v6e", "us-central1", "speech", "training")
    assert rows == {
        (date(2025, 12, 31), *tokyo): (4.0, 0.0, 4.0),
        (date(2026, 1, 1), *tokyo): (8.0, 0.0, 4.0),
        (date(2026, 1, 2), *iowa): (12.0, 0.0, 4.0),
    }


def test_waiting_time_becomes_queued_chip_hours_on_the_days_it_waited(
    catalog_workspace, write_jobs
):
    path = write_jobs(
        [
            "q,2026-01-01T22:00:00Z,2026-01-02T02:00:00Z,2026-01-02T03:00:00Z,4,tpu-v5e,us-central1,maps,",
        ]
    )
    report = ingest(catalog_workspace, "jobs", [path])
    key = ("tpu-v5e", "us-central1", "maps", "unknown")
    assert usage_rows(catalog_workspace) == {
        (date(2026, 1, 1), *key): (0.0, 8.0, 0.0),
        (date(2026, 1, 2), *key): (4.0, 8.0, 4.0),
    }
    assert report.files[0].reconciliation["queued_chip_hours_in"] == 16.0


def test_reingesting_an_unchanged_file_adds_no_run_and_keeps_the_table(
    catalog_workspace, write_jobs
):
    path = write_jobs(
        [
            "a,2026-01-01T01:00:00Z,2026-01-01T01:00:00Z,2026-01-01T05:00:00Z,8,l4-24gb,us-central1,maps,batch",
            "bad,2026-01-01T01:00:00Z,2026-01-01T01:00:00Z,2026-01-01T05:00:00Z,-8,l4-24gb,us-central1,maps,batch",
        ]
    )
    first = ingest(catalog_workspace, "jobs", [path])
    assert first.run_id is not None
    runs = [r.run_id for r in catalog_workspace.runs()]
    digests = {n: table_digest(catalog_workspace, n) for n in ("usage_daily", "quarantine")}
    again = ingest(catalog_workspace, "jobs", [path])
    assert again.run_id is None
    assert again.files[0].skipped
    assert [r.run_id for r in catalog_workspace.runs()] == runs
    assert {n: table_digest(catalog_workspace, n) for n in digests} == digests


def test_a_changed_file_at_the_same_path_replaces_its_rows(catalog_workspace, write_jobs):
    def line(job_id: str, chips: object) -> str:
        return job_line(job_id, "2026-01-01T01:00:00Z", "2026-01-01T05:00:00Z", chips)

    # Another cluster's export: another pool, so the late-data rule does not touch it.
    other = write_jobs(
        [job_line("o", "2026-01-01T01:00:00Z", "2026-01-01T05:00:00Z", 1, region="europe-west4")],
        name="other.csv",
    )
    ingest(catalog_workspace, "jobs", [other])
    path = write_jobs([line("a", 8), line("bad", "x")])
    ingest(catalog_workspace, "jobs", [path])
    assert catalog_workspace.read_table("quarantine").height == 1
    write_jobs([line("a", 2), line("b", 3)])
    report = ingest(catalog_workspace, "jobs", [path])
    assert report.run_id is not None
    usage = catalog_workspace.read_table("usage_daily")
    by_source = dict(usage.group_by("source").agg(pl.col("chip_hours_used").sum()).iter_rows())
    assert sorted(by_source.values()) == [4.0, 20.0], "the other file's rows stay; no double count"
    assert usage["chip_hours_used"].sum() == 4.0 + 20.0
    assert catalog_workspace.read_table("quarantine").height == 0, "old rejects are replaced too"
    assert len(catalog_workspace.runs("ingest")) == 4


def test_a_newer_overlapping_export_replaces_the_overlapping_days_once(
    catalog_workspace, write_jobs
):
    def day(job_id: str, date: str, chips: int) -> str:
        return job_line(job_id, f"{date}T00:00:00Z", f"{date}T10:00:00Z", chips)

    older = write_jobs(
        [day("a1", "2026-01-01", 1), day("a2", "2026-01-02", 1), day("a3", "2026-01-03", 1)],
        name="monday.csv",
    )
    ingest(catalog_workspace, "jobs", [older])
    newer = write_jobs(
        [day("b2", "2026-01-02", 2), day("b3", "2026-01-03", 2), day("b4", "2026-01-04", 2)],
        name="tuesday.csv",
    )
    report = ingest(catalog_workspace, "jobs", [newer])
    assert report.files[0].reconciliation["rows_replaced_older"] == 2
    usage = catalog_workspace.read_table("usage_daily").sort("date")
    assert usage["chip_hours_used"].to_list() == [10.0, 20.0, 20.0, 20.0]
    assert usage["source"].str.ends_with("monday.csv").to_list() == [True, False, False, False]
    # Ingesting the older export again restates its days: late data means the last ingested.
    older.write_text(older.read_text() + "\n")
    ingest(catalog_workspace, "jobs", [older])
    again = catalog_workspace.read_table("usage_daily").sort("date")
    assert again["chip_hours_used"].sum() == 10.0 * 3 + 20.0


def test_strict_ingest_with_bad_rows_writes_nothing(catalog_workspace, write_jobs):
    path = write_jobs(
        [
            "a,2026-01-01T01:00:00Z,2026-01-01T01:00:00Z,2026-01-01T05:00:00Z,8,l4-24gb,us-central1,maps,batch",
            job_line("b", "2026-01-01T01:00:00Z", "2026-01-01T05:00:00Z", accelerator="AMD MI300X"),
        ]
    )
    runs = [r.run_id for r in catalog_workspace.runs()]
    tables = catalog_workspace.table_names()
    with pytest.raises(WorkbenchError) as caught:
        ingest(catalog_workspace, "jobs", [path], strict=True)
    assert caught.value.file == str(path.resolve())
    assert caught.value.line == 3
    assert caught.value.field == "accelerator"
    assert "nothing was written" in (caught.value.fix or "")
    assert [r.run_id for r in catalog_workspace.runs()] == runs
    assert catalog_workspace.table_names() == tables
    assert not staging_leftovers(catalog_workspace)
    # The same file without --strict loads the good row.
    assert ingest(catalog_workspace, "jobs", [path]).run_id is not None
    assert catalog_workspace.read_table("usage_daily").height == 1


def test_ragged_job_rows_are_quarantined_while_good_neighbours_load(catalog_workspace, write_jobs):
    def good(job_id: str) -> str:
        return job_line(job_id, "2026-01-01T01:00:00Z", "2026-01-01T05:00:00Z")

    path = write_jobs(
        [
            good("a"),
            good("long") + ",surplus",
            "short,2026-01-01T01:00:00Z,2026-01-01T01:00:00Z",
            good("b"),
        ]
    )
    report = ingest(catalog_workspace, "jobs", [path])
    quarantine = report.quarantine.sort("line")
    assert quarantine["line"].to_list() == [3, 4]
    assert "expected 9 fields, found 10" in quarantine["reason"][0]
    assert "expected 9 fields, found 3" in quarantine["reason"][1]
    rec = report.files[0].reconciliation
    assert (rec["rows_read"], rec["rows_loaded"], rec["rows_quarantined"]) == (4, 2, 2)
    assert catalog_workspace.read_table("usage_daily")["chip_hours_used"].sum() == 64.0


def test_ragged_rows_of_other_exports_are_quarantined_too(catalog_workspace, write_file):
    path = write_file(
        "inventory.csv",
        [
            "2026-01-05,tpu-v5e,us-central1,512,500",
            "2026-01-05,tpu-v5e,us-east4,512",
            "2026-01-05,NVIDIA L4,us-central1,64,64",
        ],
        header="date,accelerator,region,installed_chips,healthy_chips",
    )
    report = ingest(catalog_workspace, "inventory", [path])
    (row,) = report.quarantine.iter_rows(named=True)
    assert (row["line"], row["field"]) == (3, "line")
    assert row["reason"] == "expected 5 fields, found 4"
    inventory = catalog_workspace.read_table("inventory")
    assert inventory["accelerator"].to_list() == ["tpu-v5e", "l4-24gb"]


def test_blank_lines_and_exact_duplicates_are_counted_not_loaded(catalog_workspace, write_file):
    path = write_file(
        "inventory.csv",
        [
            "2026-01-05,tpu-v5e,us-central1,512,500",
            "",
            "2026-01-05,tpu-v5e,us-central1,512,500",
            "2026-01-05,tpu-v5e,europe-west4,512,9999",
            "   ",
        ],
        header="date,accelerator,region,installed_chips,healthy_chips",
    )
    report = ingest(catalog_workspace, "inventory", [path])
    rec = report.files[0].reconciliation
    assert rec["blank_lines"] == 2
    assert (
        rec["rows_read"],
        rec["rows_loaded"],
        rec["rows_quarantined"],
        rec["duplicates_dropped"],
    ) == (3, 1, 1, 1)
    assert rec["balanced"] is True
    assert report.quarantine["line"].to_list() == [5]
    assert report.quarantine["field"].to_list() == ["healthy_chips"]


def test_a_line_that_is_not_utf8_is_quarantined(catalog_workspace, write_jobs):
    path = write_jobs(
        [
            "a,2026-01-01T01:00:00Z,2026-01-01T01:00:00Z,2026-01-01T05:00:00Z,8,l4-24gb,us-central1,maps,batch",
        ]
    )
    with path.open("ab") as handle:
        handle.write(
            b"b,2026-01-01T01:00:00Z,2026-01-01T01:00:00Z,2026-01-01T05:00:00Z,8,l4,"
            b"us-central1,caf\xe9,batch\n"
        )
    report = ingest(catalog_workspace, "jobs", [path])
    (row,) = report.quarantine.iter_rows(named=True)
    assert row["line"] == 3
    assert "not valid UTF-8" in row["reason"]


@pytest.mark.parametrize(
    ("kind", "header", "missing"),
    [
        ("jobs", "job_id,submit_time,start_time,end_time,chips,accelerator,region", "team"),
        ("inventory", "date,accelerator,region,installed_chips", "healthy_chips"),
        ("orders", "order_id,accelerator,region,quantity,ordered_on,status", "expected_on"),
    ],
)
def test_a_missing_required_column_names_the_file_line_one_and_the_column(
    catalog_workspace, write_file, kind, header, missing
):
    path = write_file(f"{kind}.csv", ["x"], header=header)
    runs = len(catalog_workspace.runs())
    with pytest.raises(WorkbenchError) as caught:
        ingest(catalog_workspace, kind, [path])
    assert caught.value.file == str(path)
    assert caught.value.line == 1
    assert caught.value.field == missing
    assert missing in caught.value.message
    assert len(catalog_workspace.runs()) == runs


def test_an_empty_file_is_a_readable_error(catalog_workspace, write_file):
    path = write_file("jobs.csv", [""])
    with pytest.raises(WorkbenchError) as caught:
        ingest(catalog_workspace, "jobs", [path])
    assert (caught.value.file, caught.value.line) == (str(path), 1)
    assert "empty" in caught.value.message


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [("jobs", "missing.csv", "file not found"), ("hardware", "x.csv", "unknown kind")],
)
def test_bad_arguments_are_readable_errors(catalog_workspace, tmp_path, kind, name, message):
    with pytest.raises(WorkbenchError, match=message):
        ingest(catalog_workspace, kind, [tmp_path / name])


def test_a_folder_given_as_file_is_refused(catalog_workspace, tmp_path):
    with pytest.raises(WorkbenchError) as caught:
        ingest(catalog_workspace, "jobs", [tmp_path])
    assert caught.value.file == str(tmp_path)


def test_jobs_before_a_catalog_ask_for_the_catalog(empty_workspace, write_jobs):
    path = write_jobs([])
    with pytest.raises(WorkbenchError) as caught:
        ingest(empty_workspace, "jobs", [path])
    assert "ingest catalog" in (caught.value.fix or "")
    assert empty_workspace.runs() == []


# -- the day split as a property ----------------------------------------------------------------

BASE = datetime(2026, 1, 1, tzinfo=UTC)
DAY = 86_400

instants = st.one_of(st.integers(0, 4 * DAY), st.sampled_from([0, DAY, 2 * DAY, 3 * DAY]))
spans = st.one_of(st.integers(0, 3 * DAY), st.sampled_from([0, 1, DAY, 2 * DAY]))
job_sets = st.lists(
    st.tuples(
        st.sampled_from(["vision", "maps"]),
        instants,
        spans,
        st.integers(0, DAY),
        st.sampled_from([0.5, 1.0, 2.0, 8.0, 64.0]),
    ),
    min_size=1,
    max_size=12,
)


def job_frame(jobs: list[tuple[str, int, int, int, float]]) -> pl.DataFrame:
    rows = [
        {
            "job_id": f"j{i}",
            "submit_time": BASE + timedelta(seconds=start - wait),
            "start_time": BASE + timedelta(seconds=start),
            "end_time": BASE + timedelta(seconds=start + span),
            "chips": chips,
            "accelerator": "h100-80gb",
            "region": "us-central1",
            "team": team,
            "workload": "training",
        }
        for i, (team, start, span, wait, chips) in enumerate(jobs)
    ]
    return pl.DataFrame(rows, schema=JOB_RECORDS.schema)


def oracle(jobs: list[tuple[str, int, int, int, float]]) -> dict[tuple[str, int], tuple]:
    """(team, day) -> (used, queued, peak), by plain loops over seconds since BASE."""
    used: dict[tuple[str, int], float] = defaultdict(float)
    queued: dict[tuple[str, int], float] = defaultdict(float)
    segments: dict[tuple[str, int], list[tuple[int, int, float]]] = defaultdict(list)
    for team, start, span, wait, chips in jobs:
        for first, last, totals, keep in (
            (start, start + span, used, True),
            (start - wait, start, queued, False),
        ):
            for day in range(first // DAY - 1, last // DAY + 1):
                low, high = max(first, day * DAY), min(last, (day + 1) * DAY)
                if high > low:
                    totals[(team, day)] += chips * (high - low) / 3600
                    if keep:
                        segments[(team, day)].append((low, high, chips))
    result = {}
    for key in set(used) | set(queued):
        parts = segments.get(key, [])
        peak = max((sum(c for s, e, c in parts if s <= t < e) for t, _, _ in parts), default=0.0)
        result[key] = (used.get(key, 0.0), queued.get(key, 0.0), peak)
    return result


@settings(max_examples=60, deadline=None)
@given(job_sets)
def test_the_day_split_conserves_chip_hours_and_bounds_the_peak(jobs):
    frame = job_frame(jobs)
    usage = jobs_to_usage_daily(frame, "test")
    assert usage.schema == TABLES["usage_daily"].schema
    total_in = sum(chips * span / 3600 for _, _, span, _, chips in jobs)
    queued_in = sum(chips * wait / 3600 for _, _, _, wait, chips in jobs)
    assert usage["chip_hours_used"].sum() == pytest.approx(total_in, rel=1e-9, abs=1e-9)
    assert usage["chip_hours_queued"].sum() == pytest.approx(queued_in, rel=1e-9, abs=1e-9)
    for row in usage.iter_rows(named=True):
        day_start = datetime(row["date"].year, row["date"].month, row["date"].day, tzinfo=UTC)
        day_end = day_start + timedelta(days=1)
        overlapping = frame.filter(
            (pl.col("team") == row["team"])
            & (pl.col("start_time") < day_end)
            & (pl.col("end_time") > day_start)
        )
        assert row["peak_chips"] <= float(overlapping["chips"].sum()) + 1e-9
        assert row["peak_chips"] >= row["chip_hours_used"] / 24 - 1e-9
    expected = oracle(jobs)
    found = {
        (row["team"], (row["date"] - BASE.date()).days): (
            row["chip_hours_used"],
            row["chip_hours_queued"],
            row["peak_chips"],
        )
        for row in usage.iter_rows(named=True)
    }
    assert found.keys() == expected.keys()
    for key, (used, queued, peak) in expected.items():
        assert found[key] == pytest.approx((used, queued, peak), rel=1e-9, abs=1e-9), key


def test_ingest_job_records_reconciles_a_small_file(catalog, write_jobs):
    path = write_jobs(
        [
            "a,2026-01-01T01:00:00Z,2026-01-01T02:00:00Z,2026-01-02T05:00:00Z,8,l4-24gb,us-central1,maps,batch",
            "a,2026-01-01T01:00:00Z,2026-01-01T02:00:00Z,2026-01-02T05:00:00Z,8,l4-24gb,us-central1,maps,batch",
            "",
            "c,2026-01-01T01:00:00Z,2026-01-01T02:00:00Z,2026-01-02T05:00:00Z,8,l4-24gb,us-central1,,batch",
        ]
    )
    result = ingest_job_records(path, resolver=catalog)
    assert (
        result.rows_read,
        result.rows_loaded,
        result.rows_quarantined,
        result.duplicates_dropped,
        result.blank_lines,
    ) == (3, 1, 1, 1, 1)
    assert result.chip_hours_in == result.chip_hours_out == 8 * 27
    assert result.queued_chip_hours_in == result.queued_chip_hours_out == 8 * 1
    assert result.balanced
    assert result.quarantine["line"].to_list() == [5]


def test_duplicates_of_quarantined_and_broken_rows_are_counted_once(catalog_workspace, write_jobs):
    good = job_line("g", "2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z", 8)
    bad = job_line("b", "2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z", "eight")
    broken = "j-short,2026-01-01T01:00:00Z"
    path = write_jobs([good, bad, broken, bad, broken, good])
    report = ingest(catalog_workspace, "jobs", [path])
    rec = report.files[0].reconciliation
    assert (rec["rows_read"], rec["rows_loaded"], rec["rows_quarantined"]) == (6, 1, 2)
    assert rec["duplicates_dropped"] == 3
    assert sorted(report.quarantine["line"].to_list()) == [3, 4]
