"""The benchmark references compute what our job pipeline computes.

``benchmarks/reference_duckdb.py`` and ``benchmarks/reference_pandas.py`` are the yardsticks
of ``benchmarks/ingest_large.py``: a speed claim against them only means something if they
produce our ``usage_daily``. These tests hold both to ``pipelines.jobs`` on a hand-written
file with every rule in it (aliases, offsets, duplicates, each reject, multi-day jobs,
back-to-back jobs, waits across midnight, zero-length jobs) and on the committed sample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from benchmarks.ingest_large import KEYS, VALUES, compare
from benchmarks.reference_duckdb import usage_daily_duckdb
from benchmarks.reference_pandas import usage_daily_pandas
from pipelines.jobs import ingest_job_records
from workbench.catalog import SkuCatalog, load_sku_catalog

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CATALOG = ROOT / "data_samples" / "catalog" / "sku_catalog.toml"
SAMPLE_JOBS = ROOT / "data_samples" / "jobs" / "jobs.csv.gz"

Reference = Callable[[Path, Mapping[str, str]], pl.DataFrame]
REFERENCES: dict[str, Reference] = {
    "duckdb": usage_daily_duckdb,
    "pandas": usage_daily_pandas,
}

A = "tpu-v5p,us-east4,team-a,training"  # series A, in canonical form
REJECTED_DAY = "2025-01-10"

# One line per case; the comment says what the line is for. Series:
#   A tpu-v5p/us-east4/team-a/training       overlaps, back to back, alias, offset, duplicate
#   B h100-80gb/europe-west4/"ads, emea"/serving   a 3.5-day job that waited 2 h
#   C a100-80gb/us-central1/team-c/unknown   waits across midnight, zero-length jobs
#   D h200-141gb/us-east4/team-d/...         workload case and padding
#   E l4-24gb/asia-northeast1/team-e/batch   two rows that differ only in padding
#   F tpu-v5p/us-east4/team-f/batch          tabs and no-break spaces
HAND_WRITTEN = f"""\
job_id,submit_time,start_time,end_time,chips,accelerator,region,team,workload
a1,2025-01-01T10:00:00Z,2025-01-01T10:00:00Z,2025-01-01T12:00:00Z,8,{A}
a2,2025-01-01T12:00:00Z,2025-01-01T12:00:00Z,2025-01-01T14:00:00Z,8,TPU v5p,us-east4,team-a,training
a3,2025-01-01T20:00:00+09:00,2025-01-01T20:00:00+09:00,2025-01-01T22:00:00+09:00, 4 ,{A}
a1,2025-01-01T10:00:00Z,2025-01-01T10:00:00Z,2025-01-01T12:00:00Z,8,{A}
b1,2025-01-01T18:00:00Z,2025-01-01T20:00:00Z,2025-01-04T06:00:00Z,2,NVIDIA/H100  80GB_HBM3,\
europe-west4,"ads, emea",serving

c1,2025-01-01T22:00:00Z,2025-01-02T03:00:00Z,2025-01-02T05:00:00Z,1,a100-80gb,us-central1,team-c,
c2,2025-01-05T10:00:00Z,2025-01-05T11:00:00Z,2025-01-05T11:00:00Z,3,a100,us-central1,team-c,
c3,2025-01-06T10:00:00Z,2025-01-06T10:00:00Z,2025-01-06T10:00:00Z,3,a100,us-central1,team-c,
c4,2025-01-07T20:00:00Z,2025-01-07T20:00:00Z,2025-01-08T00:00:00Z,1,a100,us-central1,team-c,
c5,2025-01-07T21:00:00-05:00,2025-01-07T21:00:00-05:00,2025-01-08T01:00:00-05:00,0.5,\
A100 80GB,us-central1,team-c,
d1,2025-01-09T00:00:00Z,2025-01-09T00:00:00Z,2025-01-09T01:00:00Z,1,h200,us-east4,team-d,Training
d2,2025-01-09T00:00:00Z,2025-01-09T00:00:00Z,2025-01-09T01:00:00Z,1,h200,us-east4,team-d, serving
e1,2025-01-03T00:00:00Z,2025-01-03T00:00:00Z,2025-01-03T01:00:00Z,5,l4,asia-northeast1,team-e,batch
e1,2025-01-03T00:00:00Z,2025-01-03T00:00:00Z,2025-01-03T01:00:00Z,5,l4,asia-northeast1, team-e,batch
f1,2025-01-11T00:00:00Z,2025-01-11T00:00:00Z, 2025-01-11T02:00:00Z\t,2,\tTPU\u00a0v5p ,us-east4,\
team-f\u00a0,\tBatch
r01,2025-01-10T10:00:00Z,2025-02-30T10:00:00Z,2025-01-10T12:00:00Z,8,{A}
r02,2025-01-10T10:00:00Z,yesterday,2025-01-10T12:00:00Z,8,{A}
r03,2025-01-10T10:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,eight,{A}
r04,2025-01-10T10:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,0,{A}
r05,2025-01-10T10:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,-8,{A}
r06,2025-01-10T10:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,,{A}
r07,2025-01-10T10:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,inf,{A}
r08,2025-01-10T10:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,8 gpus,{A}
r09,2025-01-10T11:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,8,{A}
r10,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,2025-01-10T11:00:00Z,8,{A}
r11,2025-01-10T10:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,8,tpu-v5p,us-east4,,training
r12,2025-01-10T10:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,8,tpu-v5p,   ,team-a,training
r13,2025-01-10T10:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,8,,us-east4,team-a,training
r14,2025-01-10T10:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,8,AMD MI300X,us-east4,team-a,\
training
r15,2025-01-10T10:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,8,tpu-v5p,us-east4,team-a,\
inference
,2025-01-10T10:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,8,{A}
r17,2025-01-10T10:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,8,{A},extra
r18,2025-01-10T10:00:00Z,2025-01-10T10:00:00Z,2025-01-10T12:00:00Z,8,tpu-v5p,us-east4,team-a
"""


def _expected(frame: pl.DataFrame, day: str, series: str) -> dict[str, float] | None:
    accelerator, region, team, workload = series.split("/")
    rows = frame.filter(
        (pl.col("date") == date.fromisoformat(day))
        & (pl.col("accelerator") == accelerator)
        & (pl.col("region") == region)
        & (pl.col("team") == team)
        & (pl.col("workload") == workload)
    )
    return rows.select(VALUES).to_dicts()[0] if rows.height else None


# (day, series) -> used, queued, peak, worked out by hand from HAND_WRITTEN.
HAND_EXPECTED: dict[tuple[str, str], tuple[float, float, float] | None] = {
    # a1 [10,12) 8 + a2 [12,14) 8 + a3 [11,13) 4 (Tokyo time); a1's copy dropped
    ("2025-01-01", "tpu-v5p/us-east4/team-a/training"): (40.0, 0.0, 12.0),
    ("2025-01-01", "h100-80gb/europe-west4/ads, emea/serving"): (8.0, 4.0, 2.0),
    ("2025-01-02", "h100-80gb/europe-west4/ads, emea/serving"): (48.0, 0.0, 2.0),
    ("2025-01-04", "h100-80gb/europe-west4/ads, emea/serving"): (12.0, 0.0, 2.0),
    # c1 waits 22:00-03:00 across midnight, runs 03:00-05:00
    ("2025-01-01", "a100-80gb/us-central1/team-c/unknown"): (0.0, 2.0, 0.0),
    ("2025-01-02", "a100-80gb/us-central1/team-c/unknown"): (2.0, 3.0, 1.0),
    # c2 ran for no time after waiting an hour; c3 neither waited nor ran
    ("2025-01-05", "a100-80gb/us-central1/team-c/unknown"): (0.0, 3.0, 0.0),
    ("2025-01-06", "a100-80gb/us-central1/team-c/unknown"): None,
    # c4 ends at midnight (nothing on the 8th); c5 runs 02:00-06:00 UTC with half a chip
    ("2025-01-07", "a100-80gb/us-central1/team-c/unknown"): (4.0, 0.0, 1.0),
    ("2025-01-08", "a100-80gb/us-central1/team-c/unknown"): (2.0, 0.0, 0.5),
    ("2025-01-09", "h200-141gb/us-east4/team-d/training"): (1.0, 0.0, 1.0),
    ("2025-01-09", "h200-141gb/us-east4/team-d/serving"): (1.0, 0.0, 1.0),
    # the two e1 rows differ in padding only: not exact duplicates, both count
    ("2025-01-03", "l4-24gb/asia-northeast1/team-e/batch"): (10.0, 0.0, 10.0),
    # blanks around and inside names: tabs, no-break spaces, a padded timestamp
    ("2025-01-11", "tpu-v5p/us-east4/team-f/batch"): (4.0, 0.0, 2.0),
    (REJECTED_DAY, "tpu-v5p/us-east4/team-a/training"): None,
}


@pytest.fixture(scope="module")
def catalog() -> SkuCatalog:
    return load_sku_catalog(SAMPLE_CATALOG)


@pytest.fixture(scope="module")
def alias_map(catalog: SkuCatalog) -> dict[str, str]:
    return dict(catalog.alias_map())


@pytest.fixture(scope="module")
def hand_written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jobs") / "jobs.csv"
    path.write_text(HAND_WRITTEN)
    return path


@pytest.fixture(scope="module")
def hand_written_parquet(hand_written: Path) -> Path:
    """The hand-written rows as Parquet text columns (the rows a CSV reader would split)."""
    lines = hand_written.read_text().splitlines()
    width = lines[0].count(",")
    kept = [line for line in lines if line and not line.startswith(("r17", "r18"))]
    assert all(line.count(",") >= width for line in kept)
    source = hand_written.with_name("well_formed.csv")
    source.write_text("\n".join(kept) + "\n")
    target = hand_written.with_suffix(".parquet")
    pl.read_csv(source, infer_schema=False).write_parquet(target)
    return target


def _ours(path: Path, catalog: SkuCatalog) -> pl.DataFrame:
    return ingest_job_records(path, resolver=catalog).usage_daily.select(KEYS + VALUES)


def _assert_same(name: str, ours: pl.DataFrame, theirs: pl.DataFrame) -> None:
    report = compare(ours, theirs)
    if not report["equal"]:
        joined = ours.join(theirs, on=KEYS, how="full", coalesce=True, suffix=f"_{name}")
        differing = joined.filter(
            pl.any_horizontal(
                [
                    pl.col(v).is_null()
                    | pl.col(f"{v}_{name}").is_null()
                    | ((pl.col(v) - pl.col(f"{v}_{name}")).abs() > 1e-6 * pl.col(v).abs())
                    for v in VALUES
                ]
            )
        )
        pytest.fail(f"{name} differs from pipelines.jobs: {report}\n{differing}")


def test_hand_written_rows_match_the_worked_example(
    hand_written: Path, catalog: SkuCatalog
) -> None:
    ours = _ours(hand_written, catalog)
    for (day, series), expected in HAND_EXPECTED.items():
        got = _expected(ours, day, series)
        if expected is None:
            assert got is None, (day, series, got)
        else:
            assert got is not None, (day, series)
            assert (got["chip_hours_used"], got["chip_hours_queued"], got["peak_chips"]) == (
                pytest.approx(expected[0]),
                pytest.approx(expected[1]),
                expected[2],
            ), (day, series)
    assert ours.filter(pl.col("date") == date.fromisoformat(REJECTED_DAY)).height == 0


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_matches_pipeline_on_hand_written_file(
    name: str, hand_written: Path, catalog: SkuCatalog, alias_map: dict[str, str]
) -> None:
    theirs = REFERENCES[name](hand_written, alias_map)
    assert theirs.columns == KEYS + VALUES
    _assert_same(name, _ours(hand_written, catalog), theirs)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_matches_pipeline_on_parquet(
    name: str, hand_written_parquet: Path, catalog: SkuCatalog, alias_map: dict[str, str]
) -> None:
    theirs = REFERENCES[name](hand_written_parquet, alias_map)
    _assert_same(name, _ours(hand_written_parquet, catalog), theirs)


@pytest.fixture(scope="module")
def sample_usage(catalog: SkuCatalog) -> pl.DataFrame:
    return _ours(SAMPLE_JOBS, catalog)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_matches_pipeline_on_committed_sample(
    name: str, sample_usage: pl.DataFrame, alias_map: dict[str, str]
) -> None:
    theirs = REFERENCES[name](SAMPLE_JOBS, alias_map)  # gzip: both read it directly
    assert theirs.height == sample_usage.height > 60_000
    _assert_same(name, sample_usage, theirs)


def test_compare_flags_a_changed_value_and_a_missing_row(hand_written: Path) -> None:
    frame = usage_daily_pandas(hand_written, {"tpu-v5p": "tpu-v5p", "a100": "a100-80gb"})
    assert compare(frame, frame)["equal"]
    nudged = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.col("chip_hours_used") * (1 + 1e-5))
        .otherwise(pl.col("chip_hours_used"))
    )
    report = compare(frame, nudged)
    assert not report["equal"]
    assert report["rows_differing"]["chip_hours_used"] == 1
    assert compare(frame, frame.slice(1))["only_left"] == 1
