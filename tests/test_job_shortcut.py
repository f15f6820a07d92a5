"""The plain-rows shortcut of job validation gives exactly the full validation's answer.

`validate_job_records` types plainly good rows directly and sends only the rest through the
full, reason-writing validation. These tests hold the two paths to the same good rows (in
the same order) and the same quarantine, on hand-written odd rows and on random ones.
"""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipelines.jobs import JOB_OPTIONAL_COLUMNS, JOB_REQUIRED_COLUMNS, ingest_job_records
from workbench.catalog import SkuCatalog
from workbench.schema import validate_job_records
from workbench.timestamps import parse_iso_timestamps

SOURCE = "jobs.csv"
COLUMNS = (*JOB_REQUIRED_COLUMNS, *JOB_OPTIONAL_COLUMNS)


def both_ways(raw: pl.DataFrame, catalog: SkuCatalog) -> None:
    quick = validate_job_records(raw, source=SOURCE, resolver=catalog)
    full = validate_job_records(raw, source=SOURCE, resolver=catalog, shortcut=False)
    assert_frame_equal(quick.good, full.good)
    assert_frame_equal(quick.quarantine.sort("line"), full.quarantine.sort("line"))


def frame(rows: list[tuple[str | None, ...]], *, lines: bool = True) -> pl.DataFrame:
    data = pl.DataFrame(rows, schema={c: pl.String for c in COLUMNS}, orient="row")
    if lines:
        data = data.with_columns(pl.int_range(2, data.height + 2, dtype=pl.Int64).alias("line"))
    return data


PLAIN = (
    "j1",
    "2026-01-01T00:30:00Z",
    "2026-01-01T01:00:00Z",
    "2026-01-01T05:00:00Z",
    "8",
    "h100-80gb",
    "us-central1",
    "vision",
    "training",
)


def odd(**changes: str | None) -> tuple[str | None, ...]:
    row: dict[str, str | None] = dict(zip(COLUMNS, PLAIN, strict=True))
    row.update(changes)
    return tuple(row[c] for c in COLUMNS)


ODD_ROWS = [
    odd(),
    odd(workload="Training"),  # capitals: good, folded, by the full path
    odd(team=" vision "),  # trimmed by the full path
    odd(region=""),  # missing
    odd(team=None),
    odd(job_id=None),  # missing (the job id is the key)
    odd(workload=None),  # unknown
    odd(workload="gaming"),
    odd(chips="0"),
    odd(chips="nan"),
    odd(chips="1e9"),
    odd(chips=" 4 "),
    odd(accelerator="H100 80GB"),  # an alias, resolved
    odd(accelerator="tpu-v9"),
    odd(submit_time="2026-01-01T10:00:00+09:00"),  # an offset
    odd(end_time="2026-01-01T00:00:00Z"),  # ends before it starts
    odd(start_time="2026-02-30T00:00:00Z"),
    odd(submit_time=" 2026-01-01T00:30:00Z"),
    odd(end_time="yesterday"),
]


def test_odd_rows_get_the_same_answer_both_ways(catalog):
    raw = frame(ODD_ROWS)
    both_ways(raw, catalog)
    quick = validate_job_records(raw, source=SOURCE, resolver=catalog)
    # plain rows and rows only the full path accepts come back in the input's order
    assert quick.good["workload"].to_list()[:4] == ["training", "training", "training", "unknown"]
    assert quick.good["chips"].to_list()[4] == 4.0
    assert quick.quarantine.height == 11


def test_without_a_line_column_quarantined_lines_are_counted_from_the_whole_frame(catalog):
    raw = frame([odd(), odd(), odd(chips="-1")], lines=False)
    both_ways(raw, catalog)
    quick = validate_job_records(raw, source=SOURCE, resolver=catalog)
    assert quick.quarantine["line"].to_list() == [4]


def test_a_frame_of_typed_columns_takes_the_full_path(catalog):
    raw = frame([odd()]).with_columns(pl.col("chips").cast(pl.Float64))
    both_ways(raw, catalog)


texts = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "x", "Training", "serving", "batch ", "h100", "A100-40GB"]),
    st.text(max_size=6),
)
times = st.one_of(
    st.sampled_from(
        [
            "2026-01-01T00:00:00Z",
            "2026-01-01T06:00:00Z",
            "2026-01-02T00:00:00+09:00",
            "2026-01-01T03:00:00",
            "2026-01-01 04:00:00Z",
            "2025-12-31T23:59:59.5Z",
            "2026-13-01T00:00:00Z",
            " 2026-01-01T01:00:00Z",
        ]
    ),
    texts,
)
chips = st.one_of(st.sampled_from(["1", "8", "0.5", "0", "-2", "inf", "2e6", " 3"]), texts)
fields = {
    "job_id": texts,
    "submit_time": times,
    "start_time": times,
    "end_time": times,
    "chips": chips,
    "accelerator": st.one_of(
        st.sampled_from(["h100-80gb", "tpu-v5p", "A100 40GB", " l4-24gb"]), texts
    ),
    "region": st.one_of(st.sampled_from(["us-central1", " europe-west4"]), texts),
    "team": st.one_of(st.sampled_from(["vision", "maps"]), texts),
    "workload": st.one_of(st.sampled_from(["training", "serving", "unknown"]), texts),
}
rows = st.lists(st.tuples(*(fields[c] for c in COLUMNS)), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(rows, st.integers(min_value=0, max_value=20))
def test_random_rows_get_the_same_answer_both_ways(catalog, random_rows, plain_rows):
    raw = frame([*([PLAIN] * plain_rows), *random_rows])
    both_ways(raw, catalog)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                ["2026-01-05T10:00:00Z", "2024-02-29T23:59:59Z", "2025-02-29T00:00:00Z"]
            ),
            st.datetimes().map(lambda d: f"{d:%Y-%m-%dT%H:%M:%S}Z"),
            st.text(max_size=22).map(lambda t: t + "Z"),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_values_ending_in_z_parse_the_same_by_polars_and_by_the_byte_decoder(values):
    # Mostly 'Z': polars' parser goes first. Padded with as many offsets: the byte decoder.
    by_polars = parse_iso_timestamps(pl.Series(values))
    padding = ["2026-01-01T00:00:00+01:00"] * (len(values) + 1)
    by_decoder = parse_iso_timestamps(pl.Series([*values, *padding]))[: len(values)]
    assert by_polars.to_list() == by_decoder.to_list()
    assert by_polars.n_chunks() == 1


def job_file(path, odd_every: int, rows: int = 400):
    """A job CSV where every ``odd_every``-th row needs the full validation."""
    lines = [",".join(COLUMNS)]
    for i in range(rows):
        workload = "Training" if i % odd_every == 0 else "training"  # good, by the full path
        chips = "-1" if i % (2 * odd_every) == 0 else "8"  # quarantined, by the full path
        lines.append(
            f"j{i},2026-01-01T00:00:00Z,2026-01-01T01:00:00Z,2026-01-01T03:00:00Z,{chips},"
            f"h100-80gb,us-central1,vision,{workload}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("odd_every", [200, 2], ids=["few odd rows wait", "many judged at once"])
def test_odd_rows_are_judged_whether_they_wait_or_not(tmp_path, catalog, odd_every):
    # Under 2% of a block's rows wait for the accumulating thread; more are judged at once.
    result = ingest_job_records(job_file(tmp_path / "jobs.csv", odd_every), resolver=catalog)
    bad = 400 // (2 * odd_every)
    assert result.rows_quarantined == bad
    assert result.quarantine["line"].to_list() == [2 + 2 * odd_every * k for k in range(bad)]
    assert set(result.quarantine["reason"]) == {"chips must be positive, got -1.0"}
    assert result.rows_loaded == 400 - bad
    assert result.chip_hours_out == pytest.approx(16.0 * (400 - bad))
    assert result.usage_daily["workload"].unique().to_list() == ["training"]
