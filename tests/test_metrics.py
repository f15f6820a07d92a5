"""Utilization metrics -> utilization_daily: hand-computed chip-hours, units, quarantine of
every bad-sample kind, the CSV form, the committed sample files, and how the daily table
fills usage and measures efficiency."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.metrics import (
    EFFICIENCY_SCHEMA,
    METRIC_SAMPLES,
    SERIES_LINE_BASE,
    fill_usage_from_metrics,
    ingest_prometheus_json,
    ingest_utilization_csv,
    metric_unit,
    utilization_efficiency,
)
from pipelines.result import TableIngest
from workbench.errors import WorkbenchError
from workbench.schema import (
    USAGE_DAILY,
    UTILIZATION_DAILY,
    validate_usage_daily,
    validate_utilization_daily,
)

SOURCE = "metrics:test"
H100 = "NVIDIA H100 80GB HBM3"
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
DAY1 = date(2026, 10, 30)
DAY2 = date(2026, 10, 31)
MIDNIGHT = int(datetime(2026, 10, 31, tzinfo=UTC).timestamp())  # start of DAY2


def at(hhmm: str, day: date = DAY1) -> int:
    """Unix seconds of a UTC wall time."""
    hours, minutes = (int(part) for part in hhmm.split(":"))
    moment = datetime(day.year, day.month, day.day, hours, minutes, tzinfo=UTC)
    return int(moment.timestamp())


def series(labels: dict[str, str], values: list[Any], metric: str | None = GPU_UTIL) -> dict:
    metric_labels = dict(labels)
    if metric is not None:
        metric_labels["__name__"] = metric
    return {"metric": metric_labels, "values": values}


def gpu(n: int, **extra: str) -> dict[str, str]:
    labels = {"gpu": str(n), "UUID": f"GPU-{n:04d}", "modelName": H100, "region": "us-central1"}
    return labels | extra


@pytest.fixture
def write_prometheus(tmp_path: Path) -> Callable[..., Path]:
    def write(result: list[dict], name: str = "range.json", **document: Any) -> Path:
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        body.update(document)
        path = tmp_path / name
        path.write_text(json.dumps(body, indent=1), encoding="utf-8")
        return path

    return write


def daily(result: TableIngest) -> pl.DataFrame:
    return result.extra_tables["utilization_daily"]


def rows_by_key(frame: pl.DataFrame) -> dict[tuple, tuple[float, float, int]]:
    return {
        (r["date"], r["accelerator"], r["region"], r["team"], r["metric"]): (
            r["chip_hours_observed"],
            r["chip_hours_busy"],
            r["samples"],
        )
        for r in frame.iter_rows(named=True)
    }


def assert_reconciled(result: TableIngest) -> None:
    assert result.balanced, result.reconciliation()
    assert result.rows_read == (
        result.rows_loaded + result.rows_quarantined + result.duplicates_dropped
    )
    assert result.totals["samples_in"] == result.rows_loaded == result.totals["samples_out"]
    assert daily(result).schema == UTILIZATION_DAILY.schema
    assert result.good.schema == METRIC_SAMPLES


# -- Prometheus JSON: chip-hours by hand ------------------------------------------------------


def test_two_gpus_give_hand_computed_chip_hours_per_day_across_midnight(catalog, write_prometheus):
    # GPU 0: 15-minute steps from 23:15 to 00:45, attributed to namespace 'search'.
    gpu0 = [
        [at("23:15"), "40"],
        [at("23:30"), "80"],
        [at("23:45"), "100"],
        [at("00:00", DAY2), "0"],
        [at("00:15", DAY2), "20"],
        [at("00:30", DAY2), "60"],
        [at("00:45", DAY2), "100"],
    ]
    # GPU 1: 30-minute steps, named by another alias, region from the 'cluster' label.
    gpu1 = [[at(t), "50"] for t in ("22:00", "22:30", "23:00", "23:30")]
    path = write_prometheus(
        [
            series(gpu(0, namespace="search"), gpu0),
            series({"gpu": "1", "modelName": "H100 SXM", "cluster": "us-central1"}, gpu1),
        ]
    )
    result = ingest_prometheus_json(path, resolver=catalog, source=SOURCE)

    assert result.table == "utilization_daily"
    assert result.rows_read == 11
    assert result.rows_loaded == 11
    assert result.rows_quarantined == 0
    assert_reconciled(result)
    got = rows_by_key(daily(result))
    assert set(got) == {
        (DAY1, "h100-80gb", "us-central1", "search", GPU_UTIL),
        (DAY1, "h100-80gb", "us-central1", None, GPU_UTIL),
        (DAY2, "h100-80gb", "us-central1", "search", GPU_UTIL),
    }
    # Day 1, GPU 0: 3 samples x 0.25 h; busy 0.25 x (0.4 + 0.8 + 1.0).
    assert got[(DAY1, "h100-80gb", "us-central1", "search", GPU_UTIL)] == pytest.approx(
        (0.75, 0.55, 3)
    )
    # Day 2, GPU 0: 4 samples x 0.25 h, the last one with the same step; busy 0.25 x 1.8.
    assert got[(DAY2, "h100-80gb", "us-central1", "search", GPU_UTIL)] == pytest.approx(
        (1.0, 0.45, 4)
    )
    # GPU 1 has no team: a pool-wide row, 4 x 0.5 h at 50 %.
    assert got[(DAY1, "h100-80gb", "us-central1", None, GPU_UTIL)] == pytest.approx((2.0, 1.0, 4))
    assert result.totals["chip_hours_observed_in"] == pytest.approx(3.75)
    assert result.totals["chip_hours_busy_in"] == pytest.approx(2.0)
    assert result.good["step_hours"].to_list() == [0.25] * 7 + [0.5] * 4


def test_a_step_that_crosses_midnight_is_split_between_the_days(catalog, write_prometheus):
    # Hourly samples at :30: the 23:30 sample stands for 23:30-00:30.
    path = write_prometheus([series(gpu(0), [[at("22:30"), "50"], [at("23:30"), "50"]])])
    got = rows_by_key(daily(ingest_prometheus_json(path, resolver=catalog, source=SOURCE)))
    assert got[(DAY1, "h100-80gb", "us-central1", None, GPU_UTIL)] == pytest.approx((1.5, 0.75, 2))
    # The spill-over half hour is observed on day 2, but the sample is counted where it began.
    assert got[(DAY2, "h100-80gb", "us-central1", None, GPU_UTIL)] == pytest.approx((0.5, 0.25, 0))


def test_a_missed_scrape_leaves_a_gap_instead_of_stretching_a_sample(catalog, write_prometheus):
    stamps = [at("10:00"), at("10:05"), at("10:10"), at("10:20")]  # 10:15 is missing
    path = write_prometheus([series(gpu(0), [[t, "100"] for t in stamps])])
    result = ingest_prometheus_json(path, resolver=catalog, source=SOURCE)
    assert result.good["step_hours"].to_list() == pytest.approx([5 / 60] * 4)
    assert daily(result)["chip_hours_observed"].to_list() == pytest.approx([20 / 60])


def test_a_series_with_one_sample_takes_the_step_of_the_file(catalog, write_prometheus):
    path = write_prometheus(
        [
            series(gpu(0), [[at("10:00"), "10"], [at("10:10"), "10"]]),
            series(gpu(1), [[at("10:00"), "90"]]),
        ]
    )
    result = ingest_prometheus_json(path, resolver=catalog, source=SOURCE)
    assert result.rows_quarantined == 0
    assert result.good["step_hours"].to_list() == pytest.approx([1 / 6] * 3)


def test_a_lone_sample_in_a_file_is_quarantined_since_its_step_is_unknown(
    catalog, write_prometheus
):
    path = write_prometheus([series(gpu(0), [[at("10:00"), "10"]])])
    result = ingest_prometheus_json(path, resolver=catalog, source=SOURCE)
    assert result.rows_loaded == 0
    assert result.quarantine["line"].to_list() == [SERIES_LINE_BASE + 1]
    assert "step" in result.quarantine["reason"][0]
    assert daily(result).height == 0
    assert_reconciled(result)


def test_an_oracle_loop_agrees_with_the_vectorised_roll_up(catalog, write_prometheus):
    """Random steps (some not dividing a day), offsets, gaps and values, against a plain loop."""
    rng = np.random.default_rng(11)
    result_series = []
    expected: dict[tuple[date, str | None], list[float]] = {}
    start_of_day1 = at("00:00")
    for n in range(6):
        step = int(rng.choice([60, 300, 420, 3600, 5400]))
        offset = int(rng.integers(0, 86_400))
        count = int(rng.integers(3, 60))
        kept = sorted(rng.choice(count + 5, size=count, replace=False))  # a few gaps
        stamps = [start_of_day1 + offset + int(k) * step for k in kept]
        values = [float(v) for v in rng.integers(0, 101, size=count)]
        team = None if n % 2 else f"team-{n}"
        labels = gpu(n) | ({"team": team} if team else {})
        result_series.append(
            series(labels, [[t, str(v)] for t, v in zip(stamps, values, strict=True)])
        )
        gaps = Counter(b - a for a, b in itertools.pairwise(stamps))
        mode = min(gaps, key=lambda g: (-gaps[g], g))
        for t, v in zip(stamps, values, strict=True):
            begin, end = t, t + mode
            first = True
            while begin < end:
                day = datetime.fromtimestamp(begin, UTC).date()
                midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
                cut = min(end, midnight + 86_400)
                hours = (cut - begin) / 3600
                cell = expected.setdefault((day, team), [0.0, 0.0, 0])
                cell[0] += hours
                cell[1] += hours * v / 100
                cell[2] += 1 if first else 0
                first, begin = False, cut
    path = write_prometheus(result_series)
    result = ingest_prometheus_json(path, resolver=catalog, source=SOURCE)
    assert_reconciled(result)
    got = {
        (r["date"], r["team"]): [r["chip_hours_observed"], r["chip_hours_busy"], r["samples"]]
        for r in daily(result).iter_rows(named=True)
    }
    assert set(got) == set(expected)
    for key, (observed, busy, samples) in expected.items():
        assert got[key] == pytest.approx([observed, busy, samples]), key


# -- units -----------------------------------------------------------------------------------


def test_percent_and_fraction_metrics_give_the_same_busy_chip_hours(catalog, write_prometheus):
    stamps = [at("08:00"), at("09:00"), at("10:00")]
    path = write_prometheus(
        [
            series(gpu(0), [[t, "75"] for t in stamps], metric=GPU_UTIL),
            series(gpu(0), [[t, "0.75"] for t in stamps], metric=ENGINE_ACTIVE),
        ]
    )
    result = ingest_prometheus_json(path, resolver=catalog, source=SOURCE)
    got = rows_by_key(daily(result))
    percent = got[(DAY1, "h100-80gb", "us-central1", None, GPU_UTIL)]
    fraction = got[(DAY1, "h100-80gb", "us-central1", None, ENGINE_ACTIVE)]
    assert percent == pytest.approx((3.0, 2.25, 3))
    assert fraction == pytest.approx(percent)
    assert set(result.good["utilization"].to_list()) == {0.75}


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        (GPU_UTIL, "percent"),
        (ENGINE_ACTIVE, "fraction"),
        ("DCGM_FI_PROF_SM_ACTIVE", "fraction"),
        ("tpu_duty_cycle_percent", "percent"),
        ("node_gpu_busy_ratio", "fraction"),
        ("DCGM_FI_DEV_FB_USED", None),
    ],
)
def test_metric_units(name, unit):
    assert metric_unit(name) == unit


def test_the_metric_argument_names_series_without_a_name_label(catalog, write_prometheus):
    # Queries with functions (avg_over_time(...)) drop __name__.
    path = write_prometheus([series(gpu(0), [[at("08:00"), "0.5"], [at("09:00"), "0.5"]], None)])
    without = ingest_prometheus_json(path, resolver=catalog, source=SOURCE)
    assert without.rows_loaded == 0
    assert set(without.quarantine["field"]) == {"metric"}
    named = ingest_prometheus_json(path, resolver=catalog, source=SOURCE, metric=ENGINE_ACTIVE)
    assert daily(named)["chip_hours_busy"].to_list() == pytest.approx([1.0])


# -- quarantine ------------------------------------------------------------------------------

GOOD: list[list[Any]] = [[at("12:00"), "50"], [at("12:05"), "50"], [at("12:10"), "50"]]


def _bad_value(value: Any) -> Callable[[], list[dict]]:
    return lambda: [series(gpu(0), [*GOOD, [at("12:15"), value]])]


BAD_SAMPLES: dict[str, tuple[Callable[[], list[dict]], str, str, list[int]]] = {
    "nan": (_bad_value("NaN"), "value", "not a finite number", [1_000_004]),
    "infinite": (_bad_value("+Inf"), "value", "not a finite number", [1_000_004]),
    "negative": (_bad_value("-3"), "value", "zero or more", [1_000_004]),
    "above_100_percent": (_bad_value("100.5"), "value", "exceeds 100", [1_000_004]),
    "above_1_fraction": (
        lambda: [
            series(gpu(0), [*[[t, "0.5"] for t, _ in GOOD], [at("12:15"), "1.2"]], ENGINE_ACTIVE)
        ],
        "value",
        "exceeds 1",
        [1_000_004],
    ),
    "not_a_number": (_bad_value("busy"), "value", "not a finite number", [1_000_004]),
    "unknown_accelerator": (
        lambda: [
            series(gpu(0), GOOD),
            series({"gpu": "1", "modelName": "Tesla V100", "region": "us-central1"}, GOOD),
        ],
        "accelerator",
        "unknown accelerator 'Tesla V100'",
        [2_000_001, 2_000_002, 2_000_003],
    ),
    "unparseable_time": (
        lambda: [series(gpu(0), [*GOOD, ["yesterday", "50"]])],
        "timestamp",
        "'yesterday' is not a timestamp",
        [1_000_004],
    ),
    "missing_time": (
        lambda: [series(gpu(0), [*GOOD, [None, "50"]])],
        "timestamp",
        "timestamp is missing",
        [1_000_004],
    ),
    "not_a_pair": (
        lambda: [series(gpu(0), [*GOOD, [at("12:15")]])],
        "timestamp",
        "not a [timestamp, value] pair",
        [1_000_004],
    ),
    "no_region_label": (
        lambda: [series(gpu(0), GOOD), series({"gpu": "1", "modelName": H100}, GOOD)],
        "region",
        "no 'region' or 'cluster' label",
        [2_000_001, 2_000_002, 2_000_003],
    ),
    "no_model_label": (
        lambda: [series(gpu(0), GOOD), series({"gpu": "1", "region": "us-central1"}, GOOD)],
        "accelerator",
        "no 'modelName' label",
        [2_000_001, 2_000_002, 2_000_003],
    ),
    "unknown_metric": (
        lambda: [series(gpu(0), GOOD), series(gpu(1), GOOD, metric="DCGM_FI_DEV_FB_USED")],
        "metric",
        "unknown metric 'DCGM_FI_DEV_FB_USED'",
        [2_000_001, 2_000_002, 2_000_003],
    ),
    "conflicting_value": (
        lambda: [series(gpu(0), [*GOOD, [at("12:10"), "70"]])],
        "timestamp",
        "same time with another value",
        [1_000_004],
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_SAMPLES))
def test_each_kind_of_bad_sample_is_quarantined_with_its_locator(catalog, write_prometheus, kind):
    make, field, reason, lines = BAD_SAMPLES[kind]
    path = write_prometheus(make())
    result = ingest_prometheus_json(path, resolver=catalog, source=SOURCE)
    quarantine = result.quarantine
    assert quarantine["line"].to_list() == lines
    assert set(quarantine["field"]) == {field}
    assert all(reason in text for text in quarantine["reason"]), quarantine["reason"][0]
    assert set(quarantine["table"]) == {"utilization_daily"}
    assert set(quarantine["source"]) == {SOURCE}
    # The record names the series by its labels, so the sample can be found and fixed.
    record = json.loads(quarantine["record"][0])
    assert json.loads(record["labels"])["gpu"] in {"0", "1"}
    assert record["series"] == str(lines[0] // SERIES_LINE_BASE)
    # The good samples still load, with the step the good ones show (5 minutes).
    assert result.rows_loaded == 3
    assert daily(result)["chip_hours_observed"].sum() == pytest.approx(0.25)
    assert daily(result)["chip_hours_busy"].sum() == pytest.approx(0.125)
    assert_reconciled(result)


def test_exact_duplicate_samples_are_dropped_and_counted(catalog, write_prometheus):
    doubled = [*GOOD, GOOD[1], [float(GOOD[2][0]), "50"]]  # 1793...0 and 1793...0.0 alike
    path = write_prometheus([series(gpu(0), doubled), series(gpu(0), GOOD)])
    result = ingest_prometheus_json(path, resolver=catalog, source=SOURCE)
    assert result.rows_read == 8
    assert result.duplicates_dropped == 5
    assert result.rows_loaded == 3
    assert daily(result)["chip_hours_observed"].to_list() == pytest.approx([0.25])
    assert_reconciled(result)


def test_labels_can_be_mapped_and_arguments_override_them(catalog, write_prometheus):
    labels = {"gpu_model": "Tesla V100", "zone": "europe-west4", "k8s_ns": "ranking"}
    path = write_prometheus([series(labels, GOOD)])
    mapped = ingest_prometheus_json(
        path,
        resolver=catalog,
        source=SOURCE,
        label_map={"accelerator": "gpu_model", "region": "zone", "team": "k8s_ns"},
    )
    assert set(mapped.quarantine["reason"].str.contains("unknown accelerator 'Tesla V100'")) == {
        True
    }
    overridden = ingest_prometheus_json(
        path,
        resolver=catalog,
        source=SOURCE,
        accelerator="H100 SXM",
        region="us-east4",
        label_map={"team": "k8s_ns"},
    )
    row = daily(overridden).row(0, named=True)
    assert (row["accelerator"], row["region"], row["team"]) == ("h100-80gb", "us-east4", "ranking")


def test_bad_arguments_fail_with_one_readable_message(catalog, write_prometheus):
    path = write_prometheus([series(gpu(0), GOOD)])
    with pytest.raises(WorkbenchError, match="unknown accelerator 'Tesla V100'") as error:
        ingest_prometheus_json(path, resolver=catalog, source=SOURCE, accelerator="Tesla V100")
    assert error.value.field == "accelerator"
    with pytest.raises(WorkbenchError, match="label_map names 'hostname'"):
        ingest_prometheus_json(
            path, resolver=catalog, source=SOURCE, label_map={"hostname": "Hostname"}
        )


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ('{"status": "success", "data": ', None, "not valid JSON"),
        ('{"status": "error", "error": "query timed out"}', "status", "query timed out"),
        (
            '{"status": "success", "data": {"resultType": "vector", "result": []}}',
            "data.resultType",
            "not 'matrix'",
        ),
        (
            '{"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}}]}}',
            "data.result[0]",
            "'values' list",
        ),
        ("[1, 2]", None, "not a Prometheus API response"),
    ],
)
def test_a_file_that_is_not_a_range_query_fails_naming_file_and_field(
    catalog, tmp_path, text, field, message
):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(WorkbenchError, match=message) as error:
        ingest_prometheus_json(path, resolver=catalog, source=SOURCE)
    assert error.value.file == str(path)
    assert error.value.field == field
    with pytest.raises(WorkbenchError, match="file not found"):
        ingest_prometheus_json(tmp_path / "missing.json", resolver=catalog, source=SOURCE)


# -- CSV -----------------------------------------------------------------------------------


def test_the_csv_form_weighs_each_value_by_its_chips(catalog, write_file):
    path = write_file(
        "utilization.csv",
        [
            "2026-10-30T22:00:00Z,h100-80gb,us-central1,DCGM_FI_DEV_GPU_UTIL,50,8,search",
            "2026-10-30T23:00:00Z,H100 SXM,us-central1,DCGM_FI_DEV_GPU_UTIL,25,8,search",
            "2026-10-31T00:00:00+02:00,h100-80gb,us-central1,DCGM_FI_DEV_GPU_UTIL,100,4,search",
            "",
            "2026-10-30T23:00:00Z,H100 SXM,us-central1,DCGM_FI_DEV_GPU_UTIL,25,8,search",
            f"{MIDNIGHT},tpu-v5e,us-central1,tpu_duty_cycle_percent,40,16,",
            f"{MIDNIGHT + 3600},tpu-v5e,us-central1,tpu_duty_cycle_percent,60,16,",
            "2026-10-31T02:00:00Z,tpu-v5e,us-central1,tpu_duty_cycle_percent,101,16,",
            "2026-10-31T03:00:00Z,tpu-v5e,us-central1,tpu_duty_cycle_percent,50,,",
            "2026-10-31T04:00:00Z,tpu-v5e,us-central1,tpu_duty_cycle_percent,50,16,x,extra",
            "2026-10-31T05:00:00Z,tpu-v4,us-central1,tpu_duty_cycle_percent,50,16,",
        ],
        header="timestamp,accelerator,region,metric,value,chips,team",
    )
    result = ingest_utilization_csv(path, resolver=catalog, source=SOURCE)
    assert result.rows_read == 10
    assert result.blank_lines == 1
    assert result.duplicates_dropped == 1
    assert result.rows_loaded == 5
    reasons = dict(zip(result.quarantine["line"], result.quarantine["reason"], strict=True))
    assert set(reasons) == {9, 10, 11, 12}
    assert "exceeds 100" in reasons[9]
    assert "chips is missing" in reasons[10]
    assert "expected 7 fields" in reasons[11]
    assert "unknown accelerator 'tpu-v4'" in reasons[12]
    assert_reconciled(result)
    got = rows_by_key(daily(result))
    # Day 1: 8 chips x 1 h at 50 % and 25 %; the +02:00 row is 22:00Z on day 1 too.
    assert got[(DAY1, "h100-80gb", "us-central1", "search", GPU_UTIL)] == pytest.approx(
        (20.0, 4 + 2 + 4, 3)
    )
    # The TPU rows give Unix seconds (00:00 and 01:00 on day 2): 16 chips x 1 h each.
    tpu = got[(DAY2, "tpu-v5e", "us-central1", None, "tpu_duty_cycle_percent")]
    assert tpu == pytest.approx((32.0, 16.0, 2))


def test_without_a_chips_column_each_value_is_one_chip(catalog, write_file):
    path = write_file(
        "utilization.csv",
        [
            "2026-10-30T10:00:00Z,h100-80gb,us-central1,DCGM_FI_DEV_GPU_UTIL,50",
            "2026-10-30T10:30:00Z,h100-80gb,us-central1,DCGM_FI_DEV_GPU_UTIL,100",
        ],
        header="timestamp,accelerator,region,metric,value",
    )
    result = ingest_utilization_csv(path, resolver=catalog, source=SOURCE)
    assert rows_by_key(daily(result)) == {
        (DAY1, "h100-80gb", "us-central1", None, GPU_UTIL): pytest.approx((1.0, 0.75, 2))
    }


def test_the_daily_table_passes_the_canonical_validator(catalog, sample_dir):
    result = ingest_utilization_csv(
        sample_dir / "metrics" / "utilization.csv", resolver=catalog, source=SOURCE
    )
    table = daily(result)
    as_text = table.drop("source").with_columns(pl.all().cast(pl.String))
    validated = validate_utilization_daily(as_text, source=SOURCE, resolver=catalog)
    assert validated.quarantine.height == 0
    assert_frame_equal(validated.good, table)


# -- the committed sample --------------------------------------------------------------------


def test_the_sample_csv_loads_whole_and_observes_the_healthy_chips(catalog, sample_dir):
    result = ingest_utilization_csv(
        sample_dir / "metrics" / "utilization.csv", resolver=catalog, source=SOURCE
    )
    assert result.rows_quarantined == 0
    assert result.duplicates_dropped == 0
    assert result.rows_loaded == result.rows_read > 0
    assert_reconciled(result)
    table = daily(result)
    capacity = pl.read_parquet(sample_dir / "truth" / "capacity_daily.parquet")
    joined = table.join(capacity, on=["date", "accelerator", "region"], how="left")
    assert joined["healthy_chips"].null_count() == 0
    assert (joined["chip_hours_observed"] == joined["healthy_chips"] * 24.0).all()
    assert (table["samples"] == 24).all()
    busy_share = table["chip_hours_busy"] / table["chip_hours_observed"]
    assert busy_share.is_between(0.0, 1.0, closed="none").all()


def test_the_sample_prometheus_file_loads_whole_and_matches_the_pool(catalog, sample_dir):
    path = sample_dir / "metrics" / "dcgm_gpu_util.json"
    result = ingest_prometheus_json(path, resolver=catalog, source=SOURCE)
    assert result.rows_quarantined == 0
    assert result.duplicates_dropped == 0
    assert result.rows_read == 16 * 2 * 288
    assert_reconciled(result)
    assert result.good["series"].n_unique() == 16
    assert result.good["step_hours"].unique().to_list() == [pytest.approx(5 / 60)]
    table = daily(result)
    assert table["date"].to_list() == [DAY1, DAY2]
    assert set(table["accelerator"]) == {"h100-80gb"}
    assert set(table["region"]) == {"us-central1"}
    assert table["chip_hours_observed"].to_list() == pytest.approx([16 * 24.0] * 2)
    pool = daily(
        ingest_utilization_csv(
            sample_dir / "metrics" / "utilization.csv", resolver=catalog, source=SOURCE
        )
    ).filter(
        (pl.col("accelerator") == "h100-80gb")
        & (pl.col("region") == "us-central1")
        & pl.col("date").is_in([DAY1, DAY2])
    )
    sampled = (table["chip_hours_busy"] / table["chip_hours_observed"]).to_numpy()
    whole = (pool["chip_hours_busy"] / pool["chip_hours_observed"]).to_numpy()
    assert np.abs(sampled - whole).max() < 0.1, (sampled, whole)
    # Written one series per line with sorted keys: diff-friendly and byte-stable.
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 18
    body = json.loads(lines[1].rstrip(","))
    assert lines[1].rstrip(",") == json.dumps(body, sort_keys=True, separators=(",", ":"))


# -- fill_usage_from_metrics ------------------------------------------------------------------


def usage_frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=USAGE_DAILY.schema, orient="row")


def utilization_frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=UTILIZATION_DAILY.schema, orient="row")


JOBS = "jobs:/exports/jobs.csv"
CSV = "metrics:/exports/utilization.csv"
PROM = "metrics:/exports/dcgm.json"


@pytest.fixture
def job_usage() -> pl.DataFrame:
    return usage_frame(
        [
            (DAY1, "h100-80gb", "us-central1", "search", "training", 60.0, None, 5.0, 4.0, JOBS),
            (DAY1, "h100-80gb", "us-central1", "ads", "serving", 40.0, 48.0, 0.0, 2.0, JOBS),
        ]
    )


@pytest.fixture
def utilization() -> pl.DataFrame:
    return utilization_frame(
        [
            # The pool-day with jobs: must not get rows.
            (DAY1, "h100-80gb", "us-central1", None, GPU_UTIL, 240.0, 72.0, 240, CSV),
            # Day 2 has no jobs: a team row and a pool-wide row.
            (DAY2, "h100-80gb", "us-central1", "search", GPU_UTIL, 48.0, 30.0, 48, CSV),
            (DAY2, "h100-80gb", "us-central1", None, GPU_UTIL, 192.0, 60.0, 192, CSV),
            # A narrower view of the same pool-day (16 GPUs sampled): not added on top.
            (DAY2, "h100-80gb", "us-central1", None, GPU_UTIL, 24.0, 12.0, 288, PROM),
            # Another pool with metrics only, through a fraction metric.
            (DAY1, "tpu-v5e", "us-east4", None, ENGINE_ACTIVE, 96.0, 24.0, 96, PROM),
        ]
    )


def test_fill_adds_rows_only_for_pool_days_without_jobs(job_usage, utilization):
    filled = fill_usage_from_metrics(job_usage, utilization)
    assert filled.schema == USAGE_DAILY.schema
    # Job rows come back untouched, first and in order.
    assert_frame_equal(filled.head(job_usage.height), job_usage)
    added = filled.slice(job_usage.height)
    assert added.select("date", "accelerator", "region", "team").rows() == [
        (DAY1, "tpu-v5e", "us-east4", "unknown"),
        (DAY2, "h100-80gb", "us-central1", "search"),
        (DAY2, "h100-80gb", "us-central1", "unknown"),
    ]
    assert added["workload"].to_list() == ["unknown"] * 3
    assert added["chip_hours_used"].to_list() == pytest.approx([24.0, 30.0, 60.0])
    assert added["chip_hours_queued"].to_list() == [0.0] * 3
    assert added["chip_hours_allocated"].null_count() == 3
    assert added["peak_chips"].to_list() == pytest.approx([4.0, 2.0, 8.0])
    assert added["source"].to_list() == [PROM, CSV, CSV]
    # No pool-day with job rows got a metric row.
    job_days = set(job_usage.select("date", "accelerator", "region").rows())
    assert not job_days & set(added.select("date", "accelerator", "region").rows())


def test_filled_rows_are_valid_usage_and_filling_twice_adds_nothing(
    catalog, job_usage, utilization
):
    filled = fill_usage_from_metrics(job_usage, utilization)
    as_text = filled.drop("source").with_columns(pl.all().cast(pl.String))
    validated = validate_usage_daily(as_text, source=SOURCE, resolver=catalog)
    assert validated.quarantine.height == 0, validated.quarantine["reason"].to_list()
    assert_frame_equal(fill_usage_from_metrics(filled, utilization), filled)


def test_fill_with_no_utilization_returns_usage_unchanged(job_usage):
    empty = UTILIZATION_DAILY.empty()
    assert_frame_equal(fill_usage_from_metrics(job_usage, empty), job_usage)
    with pytest.raises(WorkbenchError, match="missing column"):
        fill_usage_from_metrics(job_usage.drop("peak_chips"), empty)


# -- utilization_efficiency --------------------------------------------------------------------


def test_efficiency_on_a_tiny_hand_made_case(job_usage, utilization):
    usage = fill_usage_from_metrics(job_usage, utilization)  # the filled rows are not jobs
    allocations = pl.DataFrame(
        {
            "date": [DAY1, DAY1, DAY2],
            "accelerator": ["h100-80gb"] * 3,
            "region": ["us-central1"] * 3,
            "team": ["search", "ads", "search"],
            "chip_hours_allocated": [120.0, 80.0, 96.0],
        }
    )
    table = utilization_efficiency(usage, utilization, allocations)
    assert table.schema == EFFICIENCY_SCHEMA
    rows = {(r["date"], r["accelerator"]): r for r in table.iter_rows(named=True)}
    assert set(rows) == {(DAY1, "h100-80gb"), (DAY2, "h100-80gb"), (DAY1, "tpu-v5e")}
    day1 = rows[(DAY1, "h100-80gb")]
    assert day1["chip_hours_used"] == pytest.approx(100.0)
    assert day1["chip_hours_busy"] == pytest.approx(72.0)
    assert day1["busy_per_used"] == pytest.approx(0.72)
    assert day1["busy_per_observed"] == pytest.approx(0.3)
    assert day1["chip_hours_allocated"] == pytest.approx(200.0)
    assert day1["busy_per_allocated"] == pytest.approx(0.36)
    day2 = rows[(DAY2, "h100-80gb")]
    # Only metrics on day 2 (the widest view, the CSV): no job used a chip-hour.
    assert day2["chip_hours_used"] == 0.0
    assert day2["busy_per_used"] is None
    assert day2["chip_hours_busy"] == pytest.approx(90.0)
    assert day2["busy_per_observed"] == pytest.approx(90.0 / 240.0)
    assert day2["busy_per_allocated"] == pytest.approx(90.0 / 96.0)
    assert rows[(DAY1, "tpu-v5e")]["chip_hours_allocated"] is None

    without = utilization_efficiency(usage, utilization)
    assert without.schema == EFFICIENCY_SCHEMA
    assert without["chip_hours_allocated"].null_count() == without.height
    assert without["busy_per_used"].to_list() == table["busy_per_used"].to_list()


def test_efficiency_of_an_ingested_pool_uses_jobs_and_metrics(catalog, write_prometheus):
    stamps = [MIDNIGHT - 7200 + k * 1800 for k in range(4)]  # 22:00-24:00 on day 1
    path = write_prometheus([series(gpu(n), [[t, "50"] for t in stamps]) for n in range(4)])
    metrics = daily(ingest_prometheus_json(path, resolver=catalog, source=PROM))
    jobs = usage_frame(
        [(DAY1, "h100-80gb", "us-central1", "search", "training", 10.0, None, 0.0, 4.0, JOBS)]
    )
    row = utilization_efficiency(jobs, metrics).row(0, named=True)
    assert row["chip_hours_observed"] == pytest.approx(8.0)
    assert row["chip_hours_busy"] == pytest.approx(4.0)
    assert row["busy_per_used"] == pytest.approx(0.4)
