"""The streaming record reader: formats, compression, line numbers, broken rows."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import zstandard

from pipelines.jobs import ingest_job_records
from pipelines.readers import PROBLEM_COLUMN, RecordReader, file_format
from workbench.catalog import SkuCatalog
from workbench.errors import WorkbenchError

HEADER = "job_id,submit_time,start_time,end_time,chips,accelerator,region,team,workload"
ROWS = [
    "j1,2026-01-01T00:00:00Z,2026-01-01T01:00:00Z,2026-01-01T03:00:00Z,8,h100,us-central1,vision,training",
    "j2,2026-01-01T22:00:00Z,2026-01-01T22:00:00Z,2026-01-02T02:00:00Z,4,l4-24gb,us-central1,maps,batch",
]


def _csv(tmp_path: Path, lines: list[str], name: str = "jobs.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def test_format_comes_from_the_name_under_compression():
    assert file_format(Path("a.csv.gz")) == "csv"
    assert file_format(Path("a.jsonl.zst")) == "jsonl"
    assert file_format(Path("a.parquet")) == "parquet"
    assert file_format(Path("a.txt")) == "csv"


def test_small_blocks_keep_exact_line_numbers_across_block_edges(tmp_path):
    lines = [ROWS[i % 2].replace("j1", f"a{i}").replace("j2", f"b{i}") for i in range(50)]
    lines[10] = ""
    lines[20] = "   "
    path = _csv(tmp_path, lines)
    reader = RecordReader(path, required=["job_id"], block_bytes=300)
    frame = reader.read_all()
    assert reader.blank_lines == 2
    assert frame.height == 48
    # line 1 is the header: data line i sits on line i + 2
    expected = [i + 2 for i in range(50) if i not in (10, 20)]
    assert frame["line"].to_list() == expected
    assert frame["job_id"].to_list()[:3] == ["a0", "b1", "a2"]


def test_ragged_and_badly_quoted_lines_are_marked_not_fatal(tmp_path):
    path = _csv(tmp_path, [ROWS[0], "j3,only,three", ROWS[1] + ",extra", '"unclosed,x,y', ROWS[0]])
    frame = RecordReader(path, required=["job_id"]).read_all()
    problems = dict(zip(frame["line"], frame[PROBLEM_COLUMN], strict=True))
    assert problems[2] is None and problems[6] is None
    assert problems[3] == "expected 9 fields, found 3"
    assert problems[4] == "expected 9 fields, found 10"
    assert problems[5] is not None


def test_quoted_fields_may_hold_the_delimiter(tmp_path):
    path = _csv(tmp_path, [ROWS[0].replace("vision", '"vision, west"')])
    frame = RecordReader(path, required=["job_id"]).read_all()
    assert frame["team"].to_list() == ["vision, west"]
    assert frame[PROBLEM_COLUMN].to_list() == [None]


def test_bytes_that_are_not_utf8_mark_only_their_line(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_bytes((HEADER + "\n" + ROWS[0] + "\n").encode() + b"j9,\xff\xfe,,,,,,,\n")
    frame = RecordReader(path, required=["job_id"]).read_all()
    assert frame[PROBLEM_COLUMN].to_list() == [None, "line is not valid UTF-8"]


@pytest.mark.parametrize("compression", ["gz", "zst"])
def test_compressed_files_read_like_plain_ones(tmp_path, compression):
    plain = _csv(tmp_path, ROWS)
    data = plain.read_bytes()
    packed = tmp_path / f"jobs.csv.{compression}"
    if compression == "gz":
        packed.write_bytes(gzip.compress(data))
    else:
        packed.write_bytes(zstandard.ZstdCompressor().compress(data))
    assert (
        RecordReader(packed, required=["job_id"])
        .read_all()
        .equals(RecordReader(plain, required=["job_id"]).read_all())
    )


def test_json_lines_and_parquet_give_the_same_usage_as_csv(tmp_path, catalog: SkuCatalog):
    csv_path = _csv(tmp_path, ROWS)
    frame = pl.read_csv(csv_path, infer_schema=False)
    jsonl = tmp_path / "jobs.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in frame.to_dicts()) + "\n\n")
    parquet = tmp_path / "jobs.parquet"
    frame.with_columns(
        pl.col("chips").cast(pl.Int64),
        *(
            pl.col(c).str.to_datetime(time_zone="UTC")
            for c in ("submit_time", "start_time", "end_time")
        ),
    ).write_parquet(parquet)
    results = [
        ingest_job_records(p, resolver=catalog, source="s").usage_daily
        for p in (csv_path, jsonl, parquet)
    ]
    assert results[0].height == 3
    assert results[0].equals(results[1])
    assert results[0].equals(results[2])


def test_a_json_line_that_does_not_parse_is_quarantined_alone(tmp_path, catalog: SkuCatalog):
    good = json.dumps(dict(zip(HEADER.split(","), ROWS[0].split(","), strict=True)))
    path = tmp_path / "jobs.jsonl"
    path.write_text(f"{good}\n{{not json\n")
    result = ingest_job_records(path, resolver=catalog, source="s")
    assert result.rows_loaded == 1
    (row,) = result.quarantine.iter_rows(named=True)
    assert row["line"] == 2
    assert "not a JSON object" in row["reason"]


@pytest.mark.parametrize("mapped", [False, True], ids=["plain", "column-map"])
def test_broken_json_lines_keep_their_text_and_are_not_each_others_duplicates(
    tmp_path, catalog: SkuCatalog, mapped: bool
):
    # Two different broken lines used to become two identical empty records, and the second
    # was dropped as a duplicate of the first (and so listed nowhere).
    from pipelines.column_map import load_column_map

    good = json.dumps(dict(zip(HEADER.split(","), ROWS[0].split(","), strict=True)))
    path = tmp_path / "jobs.jsonl"
    path.write_text(f"{good}\n{{not json\n[1, 2]\n{{not json\n")
    column_map = load_column_map("generic") if mapped else None
    result = ingest_job_records(path, resolver=catalog, source="s", column_map=column_map)
    assert result.rows_read == 4
    assert result.rows_loaded == 1
    # the two different broken lines are both quarantined; the exact repeat of line 2 is
    # a duplicate, as any exact repeat is
    assert result.quarantine["line"].to_list() == [2, 3]
    assert result.quarantine["record"].to_list() == ["{not json", "[1, 2]"]
    assert result.duplicates_dropped == 1
    assert result.balanced


def test_hour_grain_splits_at_hours(tmp_path, catalog: SkuCatalog):
    path = _csv(tmp_path, [ROWS[1]])
    result = ingest_job_records(path, resolver=catalog, source="s", grain="hour")
    usage = result.usage_daily
    assert result.table == "usage_hourly"
    assert usage["hour"].to_list()[0] == datetime(2026, 1, 1, 22, tzinfo=UTC)
    assert usage.height == 4
    assert usage["chip_hours_used"].to_list() == [4.0, 4.0, 4.0, 4.0]
    assert usage["peak_chips"].to_list() == [4.0] * 4
    assert result.balanced


def test_a_missing_file_and_a_folder_are_readable_errors(tmp_path):
    with pytest.raises(WorkbenchError, match="file not found"):
        RecordReader(tmp_path / "nope.csv", required=["a"])
    with pytest.raises(WorkbenchError, match="folder"):
        RecordReader(tmp_path, required=["a"])


def test_a_short_and_a_long_line_that_balance_out_are_both_caught(tmp_path):
    # 2 + 16 fields: as many separators as two good lines, so only per-line counting tells.
    long_line = ROWS[0] + "," + ",".join(["x"] * 7)
    path = _csv(tmp_path, [ROWS[0], "j5,2026-01-01T00:00:00Z", long_line, ROWS[1]])
    frame = RecordReader(path, required=["job_id"]).read_all()
    problems = dict(zip(frame["line"], frame[PROBLEM_COLUMN], strict=True))
    assert problems == {
        2: None,
        3: "expected 9 fields, found 2",
        4: "expected 9 fields, found 16",
        5: None,
    }


def test_a_parquet_file_named_like_a_glob_is_read_as_that_one_file(tmp_path):
    pl.DataFrame({"a": ["x", "y"]}).write_parquet(tmp_path / "jobs[1]*.parquet")
    pl.DataFrame({"a": ["other"]}).write_parquet(tmp_path / "jobs1-other.parquet")
    frames = list(RecordReader(tmp_path / "jobs[1]*.parquet", required=("a",)))
    assert [row["a"] for frame in frames for row in frame.to_dicts()] == ["x", "y"]
    assert frames[0]["line"].to_list() == [1, 2]


def test_parquet_batches_keep_rows_in_order_with_their_row_numbers(tmp_path):
    values = [str(i) for i in range(250_001)]
    pl.DataFrame({"a": values}).write_parquet(tmp_path / "big.parquet", row_group_size=60_000)
    frames = list(RecordReader(tmp_path / "big.parquet", required=("a",)))
    assert len(frames) > 1
    whole = pl.concat(frames)
    assert whole["a"].to_list() == values
    assert whole["line"].to_list() == list(range(1, 250_002))
