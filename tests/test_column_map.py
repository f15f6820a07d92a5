"""Column maps: presets, TOML loading and its errors, and applying a map to raw rows.

Inputs are read with polars directly (as the job reader will hand them over: strings, and
nested Struct/List columns for JSON Lines) with a ``line`` column added here.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import string
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.column_map import (
    CANONICAL_COLUMNS,
    EXCLUDED_SCHEMA,
    MAPPED_SCHEMA,
    ColumnMap,
    ColumnMapResult,
    Expression,
    FieldRule,
    apply_column_map,
    available_presets,
    load_column_map,
    parse_source_path,
)
from workbench.catalog import SkuCatalog, load_sku_catalog
from workbench.errors import WorkbenchError
from workbench.schema import JOB_RECORDS, Validated, validate_job_records

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "column_map"
SAMPLE_JOBS = ROOT / "data_samples" / "jobs" / "jobs.csv.gz"
SAMPLE_CATALOG = ROOT / "data_samples" / "catalog" / "sku_catalog.toml"
PRESETS = ROOT / "pipelines" / "presets"

SACCT_HEADER = "JobID|JobName|Account|Partition|QOS|Submit|Start|End|State|AllocTRES|Cluster"
EXPORT_UTC = datetime(2026, 1, 5, 19, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalog() -> SkuCatalog:
    return load_sku_catalog(SAMPLE_CATALOG)


def read_sacct(path: Path | str | bytes) -> pl.DataFrame:
    source = io.BytesIO(path) if isinstance(path, bytes) else path
    frame = pl.read_csv(source, separator="|", infer_schema=False)
    return frame.with_row_index("line", offset=2).with_columns(pl.col("line").cast(pl.Int64))


def read_pods(path: Path) -> pl.DataFrame:
    frame = pl.read_ndjson(path, infer_schema_length=None)
    return frame.with_row_index("line", offset=1).with_columns(pl.col("line").cast(pl.Int64))


def strings(rows: list[dict[str, str | None]]) -> pl.DataFrame:
    """A raw frame of string columns with 1-based data lines after a header (line 2 on)."""
    columns = list(rows[0])
    frame = pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String), orient="row")
    return frame.with_row_index("line", offset=2).with_columns(pl.col("line").cast(pl.Int64))


def write_map(tmp_path: Path, text: str, name: str = "site.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def by_id(result: ColumnMapResult) -> dict[str, dict[str, object]]:
    return {row["job_id"]: row for row in result.mapped.iter_rows(named=True)}


def validated(result: ColumnMapResult, catalog: SkuCatalog) -> Validated:
    sound = result.mapped.filter(pl.col("__problem").is_null()).drop("__problem", "running")
    return validate_job_records(sound, source="test", resolver=catalog)


# A map for flat CSV exports used by several tests: everything named, region a constant.
FLAT_MAP = """
[columns]
job_id = "id"
submit_time = "submitted"
start_time = "started"
end_time = "ended"
chips = "gpus"
accelerator = "gpu_type"
region = { value = "us-central1" }
team = "owner"
workload = { column = "kind", optional = true }
"""


def flat_row(**overrides: str | None) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "id": "j1",
        "submitted": "2026-01-05T10:00:00Z",
        "started": "2026-01-05T10:05:00Z",
        "ended": "2026-01-05T11:05:00Z",
        "gpus": "8",
        "gpu_type": "h100",
        "owner": "llm",
        "kind": "training",
    }
    row.update(overrides)
    return row


# ----------------------------------------------------------------------------- presets


def test_presets_ship_as_toml_files_in_the_package() -> None:
    assert available_presets() == ("generic", "k8s-pods", "slurm-sacct")
    assert sorted(p.name for p in PRESETS.glob("*.toml")) == [
        "generic.toml",
        "k8s-pods.toml",
        "slurm-sacct.toml",
    ]


def test_generic_preset_is_the_sample_layout() -> None:
    cmap = load_column_map("generic")
    assert cmap.name == "generic"
    assert cmap.source_columns == tuple(c for c in CANONICAL_COLUMNS if c != "workload")
    assert cmap.optional_columns == ("workload",)
    assert cmap.format_for("jobs.csv.gz") == "csv"
    assert cmap.format_for("jobs.JSONL") == "jsonl"
    assert cmap.format_for(Path("x/jobs.parquet")) == "parquet"
    for unclear in ("jobs.xlsx", "pods.json", "jobs.tsv", "jobs"):
        with pytest.raises(WorkbenchError) as caught:
            cmap.format_for(unclear)
        assert caught.value.field == "file.format"


def test_generic_map_gives_the_same_validated_jobs_as_the_raw_sample(
    catalog: SkuCatalog,
) -> None:
    with gzip.open(SAMPLE_JOBS, "rt", encoding="utf-8") as handle:
        head = "".join(handle.readline() for _ in range(4001))
    raw = pl.read_csv(io.StringIO(head), infer_schema=False, truncate_ragged_lines=True)
    raw = raw.with_row_index("line", offset=2).with_columns(pl.col("line").cast(pl.Int64))
    assert raw.height > 3900

    result = apply_column_map(raw, load_column_map("generic"))
    assert result.excluded.height == 0
    assert result.mapped["line"].to_list() == raw["line"].to_list()
    # Every timestamp that parsed is normalized to UTC with a Z.
    assert (
        result.mapped.filter(
            pl.col("submit_time").str.contains(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        ).height
        == raw.filter(pl.col("submit_time").str.contains(r"^\d{4}-\d\d-\d\dT")).height
    )

    direct = validate_job_records(raw, source="test", resolver=catalog)
    via_map = validated(result, catalog)
    assert via_map.good.equals(direct.good)
    assert via_map.quarantine.select("line", "field", "reason").equals(
        direct.quarantine.select("line", "field", "reason")
    )


def test_presets_that_need_a_region_say_how_to_set_it() -> None:
    for preset in ("slurm-sacct", "k8s-pods"):
        with pytest.raises(WorkbenchError) as caught:
            load_column_map(preset)
        error = caught.value
        assert error.field == "columns.region"
        assert error.file is not None and error.file.endswith(f"{preset}.toml")
        assert error.fix is not None
        assert f'extends = "{preset}"' in error.fix
        assert 'region = { value = "us-central1" }' in error.fix


def test_overrides_set_a_presets_open_column_without_a_map_file() -> None:
    cmap = load_column_map("k8s-pods", overrides={"region": " europe-west4 "})
    assert cmap.rule("region").value == "europe-west4"
    assert cmap.name == "k8s-pods"
    raw = read_pods(DATA / "pods.jsonl")
    result = apply_column_map(raw, cmap, export_time=EXPORT_UTC)
    assert set(result.mapped["region"]) == {"europe-west4"}
    for bad in ({"regoin": "x"}, {"region": ""}):
        with pytest.raises(WorkbenchError) as caught:
            load_column_map("slurm-sacct", overrides=bad)
        assert caught.value.field == next(iter(bad))


def test_a_map_built_in_code_with_an_unset_column_cannot_be_applied() -> None:
    cmap = ColumnMap(name="half", columns={"region": FieldRule(must_override="your region")})
    with pytest.raises(WorkbenchError) as caught:
        apply_column_map(strings([flat_row()]), cmap)
    assert caught.value.field == "columns.region"


# -------------------------------------------------------------------------------- slurm


@pytest.fixture(scope="module")
def sacct_result() -> ColumnMapResult:
    raw = read_sacct(DATA / "sacct_chicago.txt")
    return apply_column_map(raw, load_column_map(DATA / "slurm_chicago.toml"))


def test_slurm_map_extends_the_preset() -> None:
    cmap = load_column_map(DATA / "slurm_chicago.toml")
    assert cmap.name == "slurm_chicago"
    assert cmap.delimiter == "|"
    assert cmap.format_for("anything.txt") == "csv"
    assert cmap.timezone == "America/Chicago"
    # A naive export time in the file is the map's local time.
    assert cmap.export_time == EXPORT_UTC
    assert cmap.rule("region").value == "us-central1"
    assert cmap.rule("team").columns == ("Account",)
    # ReqTRES is read when the export has it; the documented --format does not.
    assert set(cmap.source_columns) == {
        "JobID",
        "Submit",
        "Start",
        "End",
        "AllocTRES",
        "Account",
        "QOS",
    }
    assert cmap.optional_columns == ("ReqTRES",)


def test_slurm_job_steps_and_cpu_only_jobs_are_excluded_with_a_reason(
    sacct_result: ColumnMapResult,
) -> None:
    excluded = sacct_result.excluded
    assert excluded.schema == EXCLUDED_SCHEMA
    assert excluded["line"].to_list() == [3, 4, 5, 9]
    assert excluded["reason"].str.starts_with("job step").to_list() == [True, True, True, False]
    assert excluded["reason"][3] == "no GPU allocated (a CPU-only job)"
    records = [json.loads(r) for r in excluded["record"]]
    assert [r["JobID"] for r in records] == ["1001.batch", "1001.extern", "1001.0", "1005"]
    assert sacct_result.rows_in == 10


def test_slurm_local_times_become_utc_and_tres_gives_chips_and_accelerator(
    sacct_result: ColumnMapResult,
) -> None:
    mapped = sacct_result.mapped
    assert mapped.schema == MAPPED_SCHEMA
    job = by_id(sacct_result)["1001"]
    assert job == {
        "job_id": "1001",
        "submit_time": "2026-01-05T15:00:00Z",  # 09:00 in Chicago (UTC-6 in January)
        "start_time": "2026-01-05T15:10:00Z",
        "end_time": "2026-01-05T18:10:00Z",
        "chips": "8",
        "accelerator": "h100",
        "region": "us-central1",
        "team": "llm-research",
        "workload": "training",
        "running": False,
        "line": 2,
        "__problem": None,
    }
    a100 = by_id(sacct_result)["1006_3"]
    assert (a100["chips"], a100["accelerator"]) == ("1", "a100")


def test_slurm_running_job_is_cut_at_the_export_time(sacct_result: ColumnMapResult) -> None:
    job = by_id(sacct_result)["1002"]
    assert job["end_time"] == "2026-01-05T19:00:00Z"
    assert job["running"] is True
    assert job["start_time"] == "2026-01-05T16:00:05Z"
    assert (job["chips"], job["accelerator"], job["workload"]) == ("4", "a100", "serving")


def test_slurm_pending_job_waits_until_the_export(sacct_result: ColumnMapResult) -> None:
    job = by_id(sacct_result)["1003"]
    assert job["submit_time"] == "2026-01-05T17:00:00Z"
    assert job["start_time"] == job["end_time"] == "2026-01-05T19:00:00Z"
    assert job["running"] is True
    assert job["workload"] == "batch"
    # No AllocTRES yet, and no ReqTRES column in this export: chips are missing, not zero.
    assert job["chips"] is None


def test_slurm_job_cancelled_before_starting_queued_until_its_end(
    sacct_result: ColumnMapResult,
) -> None:
    job = by_id(sacct_result)["1007"]
    assert job["start_time"] == job["end_time"] == "2026-01-05T12:30:00Z"
    assert job["running"] is False


def test_slurm_value_map_default_covers_an_unlisted_qos(sacct_result: ColumnMapResult) -> None:
    assert by_id(sacct_result)["1006_3"]["workload"] == "unknown"


def test_slurm_garbage_tres_is_passed_on_and_quarantined_quoting_it(
    sacct_result: ColumnMapResult, catalog: SkuCatalog
) -> None:
    assert by_id(sacct_result)["1004"]["chips"] == "cpu=16,gres/gpu:h100=eight"
    checked = validated(sacct_result, catalog)
    assert sorted(checked.good["job_id"].to_list()) == ["1001", "1002", "1006_3"]
    assert set(checked.good["accelerator"]) == {"h100-80gb", "a100-80gb"}
    reasons = dict(zip(checked.quarantine["line"], checked.quarantine["reason"], strict=True))
    assert "chips 'cpu=16,gres/gpu:h100=eight' is not a finite number" in reasons[8]
    assert "chips is missing" in reasons[7]  # the pending job without ReqTRES
    assert checked.rows_in + sacct_result.excluded.height == 10


def test_slurm_pending_job_takes_its_gpus_from_reqtres() -> None:
    text = (
        "JobID|Account|QOS|Submit|Start|End|AllocTRES|ReqTRES\n"
        "2001|research|low|2026-01-05T11:00:00|Unknown|Unknown||"
        "billing=8,cpu=8,gres/gpu:a100=2,gres/gpu=2,node=1\n"
        "2002|research|low|2026-01-05T11:00:00|None|Unknown||billing=8,cpu=8,mem=8G,node=1\n"
    )
    result = apply_column_map(
        read_sacct(text.encode()),
        load_column_map(DATA / "slurm_chicago.toml"),
    )
    job = by_id(result)["2001"]
    assert (job["chips"], job["accelerator"], job["running"]) == ("2", "a100", True)
    assert result.excluded["reason"].to_list() == ["no GPU requested (a CPU-only job)"]


def test_slurm_typed_gres_without_a_total_and_dst_changes(tmp_path: Path) -> None:
    text = (
        f"{SACCT_HEADER}\n"
        # Only the typed entry: its count is used.
        "3001|a|t|gpu|normal|2026-11-01T01:30:00|2026-11-01T01:30:00|2026-11-01T03:00:00|"
        "COMPLETED|cpu=8,gres/gpu:nvidia_h100_80gb_hbm3=2|c\n"
        # 02:30 on 8 March 2026 does not exist in Chicago (clocks jump 02:00 -> 03:00).
        "3002|b|t|gpu|normal|2026-03-08T02:30:00|2026-03-08T03:10:00|2026-03-08T04:00:00|"
        "COMPLETED|gres/gpu=1,gres/gpu:a100=1|c\n"
    )
    result = apply_column_map(
        read_sacct(text.encode()), load_column_map(DATA / "slurm_chicago.toml")
    )
    ambiguous = by_id(result)["3001"]
    # 01:30 happens twice on 1 November; the earlier one is CDT (UTC-5).
    assert ambiguous["submit_time"] == "2026-11-01T06:30:00Z"
    assert ambiguous["end_time"] == "2026-11-01T09:00:00Z"
    assert (ambiguous["chips"], ambiguous["accelerator"]) == ("2", "nvidia_h100_80gb_hbm3")
    gap = by_id(result)["3002"]
    assert gap["submit_time"] == "2026-03-08T02:30:00 (not a valid time in America/Chicago)"
    assert gap["start_time"] == "2026-03-08T08:10:00Z"  # CDT from 03:00
    assert (gap["chips"], gap["accelerator"]) == ("1", "a100")


# ---------------------------------------------------------------------------- k8s pods


@pytest.fixture(scope="module")
def pods_result() -> ColumnMapResult:
    raw = read_pods(DATA / "pods.jsonl")
    export = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    return apply_column_map(raw, load_column_map(DATA / "k8s_us.toml"), export_time=export)


def test_k8s_map_reads_nested_paths() -> None:
    cmap = load_column_map(DATA / "k8s_us.toml")
    assert cmap.format_for("pods.txt") == "jsonl"
    assert cmap.source_columns == ("metadata", "status")
    assert cmap.optional_columns == ("spec",)


def test_k8s_finished_pod_with_a_fractional_gpu(pods_result: ColumnMapResult) -> None:
    pod = by_id(pods_result)["pod-uid-1"]
    assert pod == {
        "job_id": "pod-uid-1",
        "submit_time": "2026-01-05T08:00:00Z",
        "start_time": "2026-01-05T08:00:30Z",
        "end_time": "2026-01-05T10:00:30Z",
        "chips": "0.25",
        "accelerator": "h100-80gb",
        "region": "us-central1",
        "team": "llm-research",
        "workload": "training",
        "running": False,
        "line": 1,
        "__problem": None,
    }


def test_k8s_running_pod_is_cut_and_team_falls_back_to_the_namespace(
    pods_result: ColumnMapResult,
) -> None:
    pod = by_id(pods_result)["pod-uid-2"]
    assert pod["end_time"] == "2026-01-05T12:00:00Z"
    assert pod["running"] is True
    assert pod["team"] == "ml-serving"
    assert (pod["chips"], pod["accelerator"]) == ("2", "a100")  # limits only; "nvidia-tesla-"


def test_k8s_pending_tpu_pod_and_deleted_pod(pods_result: ColumnMapResult) -> None:
    pending = by_id(pods_result)["pod-uid-3"]
    assert pending["start_time"] == pending["end_time"] == "2026-01-05T12:00:00Z"
    assert (pending["chips"], pending["accelerator"]) == ("4", "tpu-v5-lite-podslice")
    deleted = by_id(pods_result)["pod-uid-5"]
    assert deleted["end_time"] == "2026-01-05T11:30:00Z"
    assert deleted["running"] is False


def test_k8s_cpu_pod_excluded_and_bad_share_quarantined(
    pods_result: ColumnMapResult, catalog: SkuCatalog
) -> None:
    assert pods_result.excluded["line"].to_list() == [4]
    assert "CPU-only pod" in pods_result.excluded["reason"][0]
    assert json.loads(pods_result.excluded["record"][0])["metadata"]["name"] == "web-1"
    assert by_id(pods_result)["pod-uid-5"]["chips"] == "1 * quarter"
    checked = validated(pods_result, catalog)
    assert sorted(checked.good["job_id"]) == ["pod-uid-1", "pod-uid-2", "pod-uid-3"]
    assert sorted(checked.good["accelerator"]) == ["a100-80gb", "h100-80gb", "tpu-v5e"]
    assert checked.quarantine["reason"].to_list() == ["chips '1 * quarter' is not a finite number"]


def test_paths_with_quoted_keys_and_list_indexes_into_json_lines(tmp_path: Path) -> None:
    lines = [
        {
            "meta": {"id": "a", "labels": {"team.name": "vision", "x/y": "7"}},
            "jobs": [{"t": 1767607200}, {"t": 0}],
        },
        {"meta": {"id": "b", "labels": {}}, "jobs": []},
    ]
    source = tmp_path / "x.jsonl"
    source.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    raw = read_pods(source)
    path = write_map(
        tmp_path,
        """
[columns]
job_id = "meta.id"
team = 'meta.labels."team.name"'
chips = { expr = 'meta.labels."x/y" * 2' }
submit_time = { column = "jobs[0].t", unit = "epoch_s" }
start_time = { column = "jobs[0].t", unit = "epoch_s" }
end_time = { column = "jobs[0].t", unit = "epoch_s" }
accelerator = { value = "h100" }
region = { value = "r" }
workload = { column = "meta.labels.workload", optional = true }
""",
    )
    result = apply_column_map(raw, load_column_map(path), export_time=EXPORT_UTC)
    rows = by_id(result)
    assert rows["a"]["team"] == "vision"
    assert rows["a"]["chips"] == "14"
    assert rows["a"]["submit_time"] == "2026-01-05T10:00:00Z"
    assert rows["a"]["workload"] is None
    # An out-of-range index and an absent key are missing values, not errors.
    assert (rows["b"]["team"], rows["b"]["chips"], rows["b"]["submit_time"]) == (None, None, None)
    assert rows["b"]["running"] is True


def test_the_documented_example_map_loads(tmp_path: Path) -> None:
    import pipelines.column_map as module

    # The first literal block of the module docstring is the example map.
    block = (module.__doc__ or "").split("::\n\n", 1)[1]
    lines = block.split("\n\nRules of one column")[0]
    text = "\n".join(line[4:] for line in lines.splitlines())
    cmap = load_column_map(write_map(tmp_path, text))
    assert cmap.name == "my-cluster"
    assert cmap.delimiter == "|"
    assert cmap.rule("chips").expr is not None
    assert cmap.rule("workload").values["high"] == "serving"
    assert cmap.rule("start_time").origin == datetime(2026, 1, 1, 6, 0, tzinfo=UTC)
    assert len(cmap.exclude) == 4  # the preset's three and this one


def test_path_syntax() -> None:
    assert parse_source_path('spec.containers[0].resources.requests."nvidia.com/gpu"') == (
        "spec",
        "containers",
        0,
        "resources",
        "requests",
        "nvidia.com/gpu",
    )
    assert parse_source_path('"job.id"') == ("job.id",)
    assert parse_source_path("Alloc TRES") == ("Alloc TRES",)
    for bad in ("a.", "", 'a."b', "a[x]", "a..b"):
        with pytest.raises(ValueError):
            parse_source_path(bad)


def test_a_path_into_a_list_without_an_index_is_a_map_error(tmp_path: Path) -> None:
    raw = read_pods(DATA / "pods.jsonl")
    path = write_map(
        tmp_path,
        """
extends = "k8s-pods"
[columns]
region = { value = "r" }
chips = "spec.containers.resources"
""",
    )
    with pytest.raises(WorkbenchError) as caught:
        apply_column_map(raw, load_column_map(path), export_time=EXPORT_UTC)
    assert caught.value.field == "chips"
    assert caught.value.fix is not None and "spec.containers[0]" in caught.value.fix


# ------------------------------------------------------------------ units and expressions


def test_epoch_seconds_milliseconds_and_seconds_since_an_origin(tmp_path: Path) -> None:
    path = write_map(
        tmp_path,
        """
[file]
timezone = "Asia/Tokyo"

[timestamps]
unit = "epoch_s"

[columns]
job_id = "id"
submit_time = "sub"
start_time = { column = "st", unit = "epoch_ms" }
end_time = { column = "en", unit = "seconds_since", origin = 2026-01-05T09:00:00 }
chips = "g"
accelerator = { value = "h100" }
region = { value = "asia-northeast1" }
team = { value = "t" }
workload = { value = "batch" }
""",
    )
    raw = strings(
        [
            {"id": "a", "sub": "1767607200", "st": "1767607200500", "en": "3600", "g": "1"},
            {"id": "b", "sub": "1767607200.25", "st": "1767607201000", "en": "90.5", "g": "1"},
        ]
    )
    rows = by_id(apply_column_map(raw, load_column_map(path)))
    assert rows["a"]["submit_time"] == "2026-01-05T10:00:00Z"
    assert rows["a"]["start_time"] == "2026-01-05T10:00:00.500Z"
    # The naive origin is 09:00 in Tokyo, 00:00 UTC.
    assert rows["a"]["end_time"] == "2026-01-05T01:00:00Z"
    assert rows["b"]["submit_time"] == "2026-01-05T10:00:00.250Z"
    assert rows["b"]["end_time"] == "2026-01-05T00:01:30.500Z"


def test_global_seconds_since_origin_with_an_offset(tmp_path: Path) -> None:
    path = write_map(
        tmp_path,
        FLAT_MAP
        + """
[timestamps]
unit = "seconds_since"
origin = "2026-01-05T00:00:00+02:00"
""",
    )
    raw = strings([flat_row(submitted="0", started="60", ended="7260")])
    job = by_id(apply_column_map(raw, load_column_map(path)))["j1"]
    assert (job["submit_time"], job["start_time"], job["end_time"]) == (
        "2026-01-04T22:00:00Z",
        "2026-01-04T22:01:00Z",
        "2026-01-05T00:01:00Z",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("2 - 3 - 4", -5.0),
        ("24 / 4 / 2", 3.0),
        ("-a + b", 2.0),
        ("-(a + b)", -6.0),
        ("a * -b", -8.0),
        ("a * (b - 1) / .5", 12.0),
        ("1e1 * a", 20.0),
        ('"a" + b', 6.0),
    ],
)
def test_expression_follows_arithmetic_precedence(text: str, expected: float) -> None:
    expression = Expression.parse(text)
    frame = pl.DataFrame({"a": [2.0], "b": [4.0]})
    numbers = {name: pl.col(name.strip('"')) for name in expression.operands}
    assert frame.select(expression.evaluate(numbers)).item() == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["gpus * * share", "gpus *", "(gpus * share", "gpus)", "gpus % 2", "2 gpus", "", "()"]
)
def test_expression_parser_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError):
        Expression.parse(text)


def test_chips_expression_over_columns_with_inputs_and_defaults(tmp_path: Path) -> None:
    path = write_map(
        tmp_path,
        FLAT_MAP.replace(
            'chips = "gpus"',
            'chips = { expr = "(gpus + spare) * share", inputs = { share = { column = "frac", '
            'default = "1" }, spare = { column = "extra", regex = "^\\\\+(\\\\d+)$" } } }',
        ),
    )
    raw = strings(
        [
            flat_row(id="a", gpus="4", frac="0.5") | {"extra": "+2"},
            flat_row(id="b", gpus="4", frac=None) | {"extra": "+0"},
            flat_row(id="c", gpus="4", frac="half") | {"extra": "+0"},
            flat_row(id="d", gpus="4", frac="0") | {"extra": "+0"},
            flat_row(id="e", gpus=None, frac=None) | {"extra": None},
            flat_row(id="f", gpus="1", frac="0.5") | {"extra": "plenty"},
        ]
    )
    rows = by_id(apply_column_map(raw, load_column_map(path)))
    assert rows["a"]["chips"] == "3"
    assert rows["b"]["chips"] == "4"  # share defaults to 1
    assert rows["c"]["chips"] == "(4 + 0) * half"  # raw values, for the quarantine reason
    assert rows["d"]["chips"] == "0"  # a number: the validator rejects it as not positive
    assert rows["e"]["chips"] is None  # nothing there at all: missing
    assert rows["f"]["chips"] == "(1 + plenty) * 0.5"  # the regex missed: raw text


def test_division_by_zero_passes_the_expression_on(tmp_path: Path) -> None:
    path = write_map(tmp_path, FLAT_MAP.replace('chips = "gpus"', 'chips = { expr = "gpus / n" }'))
    raw = strings([flat_row() | {"n": "0"}])
    assert by_id(apply_column_map(raw, load_column_map(path)))["j1"]["chips"] == "8 / 0"


def test_value_map_with_and_without_a_default(tmp_path: Path) -> None:
    path = write_map(
        tmp_path,
        FLAT_MAP.replace(
            'workload = { column = "kind", optional = true }',
            'workload = { column = "kind", values = { High = "serving", normal = "training" }, '
            'default = "unknown" }\n'
            'team = { column = "owner", values = { "ml-1" = "llm" } }',
        ).replace('team = "owner"\n', ""),
    )
    raw = strings(
        [
            flat_row(id="a", kind=" HIGH ", owner="ml-1"),
            flat_row(id="b", kind="normal", owner="vision"),
            flat_row(id="c", kind="scavenger", owner=""),
            flat_row(id="d", kind=None, owner="ML-1"),
        ]
    )
    rows = by_id(apply_column_map(raw, load_column_map(path)))
    assert [rows[k]["workload"] for k in "abcd"] == ["serving", "training", "unknown", "unknown"]
    # Without a default an unlisted value passes through, and a missing one stays missing.
    assert [rows[k]["team"] for k in "abcd"] == ["llm", "vision", None, "llm"]


def test_regex_extraction_and_constants(tmp_path: Path) -> None:
    path = write_map(
        tmp_path,
        FLAT_MAP.replace(
            'accelerator = "gpu_type"',
            "accelerator = { column = \"node\", regex = ['^gpu-([a-z0-9]+)-', '^(tpu-v\\w+)$'] }",
        ),
    )
    raw = strings(
        [
            flat_row(id="a") | {"node": "gpu-h100-node-17"},
            flat_row(id="b") | {"node": "tpu-v5e"},
            flat_row(id="c") | {"node": "cpu-node-3"},
        ]
    )
    rows = by_id(apply_column_map(raw, load_column_map(path)))
    assert [rows[k]["accelerator"] for k in "abc"] == ["h100", "tpu-v5e", "cpu-node-3"]
    assert {rows[k]["region"] for k in "abc"} == {"us-central1"}


def test_exclude_rule_conditions(tmp_path: Path) -> None:
    path = write_map(
        tmp_path,
        FLAT_MAP
        + """
[[exclude]]
column = "owner"
equals = ["test", "ci"]
reason = "test traffic"

[[exclude]]
column = "kind"
missing = true
reason = "no kind"

[[exclude]]
column = "id"
regex = '^tmp-'
not_contains = "keep"
reason = "scratch job"
""",
    )
    raw = strings(
        [
            flat_row(id="a", owner="ci"),
            flat_row(id="b", kind=""),
            flat_row(id="tmp-1"),
            flat_row(id="tmp-keep"),
            flat_row(id="e"),
        ]
    )
    result = apply_column_map(raw, load_column_map(path))
    assert result.excluded["reason"].to_list() == ["test traffic", "no kind", "scratch job"]
    assert result.mapped["job_id"].to_list() == ["tmp-keep", "e"]
    assert result.rows_in == raw.height


def test_broken_rows_are_never_excluded_and_problem_passes_through() -> None:
    raw = read_sacct(DATA / "sacct_chicago.txt").with_columns(
        pl.when(pl.col("JobID") == "1001.batch")
        .then(pl.lit("expected 11 fields, found 12"))
        .otherwise(None)
        .alias("__problem")
    )
    result = apply_column_map(raw, load_column_map(DATA / "slurm_chicago.toml"))
    broken = result.mapped.filter(pl.col("__problem").is_not_null())
    assert broken["line"].to_list() == [3]
    assert broken["__problem"].to_list() == ["expected 11 fields, found 12"]
    assert result.excluded["line"].to_list() == [4, 5, 9]


# --------------------------------------------------------------- fill-ins and export time


def test_export_time_argument_wins_and_naive_means_the_map_timezone() -> None:
    raw = read_sacct(DATA / "sacct_chicago.txt")
    cmap = load_column_map(DATA / "slurm_chicago.toml")
    result = apply_column_map(raw, cmap, export_time=datetime(2026, 1, 5, 14, 30))
    assert by_id(result)["1002"]["end_time"] == "2026-01-05T20:30:00Z"


def test_running_jobs_without_an_export_time_are_a_clear_error(tmp_path: Path) -> None:
    raw = strings([flat_row(), flat_row(id="j2", ended=""), flat_row(id="j3", ended=None)])
    with pytest.raises(WorkbenchError) as caught:
        apply_column_map(raw, load_column_map(write_map(tmp_path, FLAT_MAP)))
    error = caught.value
    assert error.field == "file.export_time"
    assert "2 job(s) have no end time" in error.message
    assert "lines 3, 4" in error.message
    assert error.fix is not None and "--export-time" in error.fix


def test_missing_source_column_is_a_file_error_naming_it(tmp_path: Path) -> None:
    raw = strings([flat_row()]).drop("owner")
    with pytest.raises(WorkbenchError) as caught:
        apply_column_map(raw, load_column_map(write_map(tmp_path, FLAT_MAP)))
    assert caught.value.field == "team"
    assert "source column 'owner'" in caught.value.message
    # An optional column may be absent.
    result = apply_column_map(
        strings([flat_row()]).drop("kind"), load_column_map(write_map(tmp_path, FLAT_MAP))
    )
    assert result.mapped["workload"].to_list() == [None]


def test_an_exclude_rule_on_an_absent_column_is_named(tmp_path: Path) -> None:
    path = write_map(
        tmp_path, FLAT_MAP + '\n[[exclude]]\ncolumn = "State"\nequals = "X"\nreason = "r"\n'
    )
    with pytest.raises(WorkbenchError) as caught:
        apply_column_map(strings([flat_row()]), load_column_map(path))
    assert caught.value.field == "exclude[1]"
    assert "'State'" in caught.value.message


def test_line_numbers_are_added_when_absent() -> None:
    raw = read_sacct(DATA / "sacct_chicago.txt").drop("line")
    result = apply_column_map(
        raw, load_column_map(DATA / "slurm_chicago.toml"), export_time=EXPORT_UTC
    )
    assert result.mapped["line"].to_list() == [2, 6, 7, 8, 10, 11]


# ------------------------------------------------------------ raw text is never lost


def test_unconvertible_values_pass_through_as_raw_text(tmp_path: Path, catalog: SkuCatalog) -> None:
    path = write_map(
        tmp_path,
        FLAT_MAP.replace('submit_time = "submitted"', 'submit_time = { column = "submitted" }')
        + '\n[file]\ntimezone = "Europe/Berlin"\n',
    )
    raw = strings(
        [
            flat_row(id="a", gpus="eight"),
            flat_row(id="b", submitted="yesterday"),
            flat_row(id="c", ended="2026-02-30T10:00:00Z"),
            flat_row(id="d", started="2026-03-29T02:30:00"),  # not a time in Berlin
            flat_row(id="e", gpus=" 2.50 ", gpu_type="h100 "),
            flat_row(id="f", gpus="-4"),
        ]
    )
    result = apply_column_map(raw, load_column_map(path))
    rows = by_id(result)
    assert rows["a"]["chips"] == "eight"
    assert rows["b"]["submit_time"] == "yesterday"
    assert rows["c"]["end_time"] == "2026-02-30T10:00:00Z"
    assert rows["d"]["start_time"] == "2026-03-29T02:30:00 (not a valid time in Europe/Berlin)"
    assert (rows["e"]["chips"], rows["e"]["accelerator"]) == ("2.5", "h100")
    assert rows["f"]["chips"] == "-4"

    checked = validated(result, catalog)
    assert checked.good["job_id"].to_list() == ["e"]
    reasons = dict(zip(checked.quarantine["line"], checked.quarantine["reason"], strict=True))
    assert "chips 'eight' is not a finite number" in reasons[2]
    assert "submit_time 'yesterday' is not a timestamp" in reasons[3]
    assert "end_time '2026-02-30T10:00:00Z' is not a timestamp" in reasons[4]
    assert "'2026-03-29T02:30:00 (not a valid time in Europe/Berlin)'" in reasons[5]
    assert "chips must be positive, got -4" in reasons[7]


def test_unconvertible_epoch_values_pass_through(tmp_path: Path) -> None:
    path = write_map(tmp_path, FLAT_MAP + '\n[timestamps]\nunit = "epoch_ms"\n')
    raw = strings(
        [
            flat_row(submitted="abc", started="1e400", ended="2026-01-05T10:00:00Z", gpus="1"),
        ]
    )
    job = by_id(apply_column_map(raw, load_column_map(path)))["j1"]
    assert job["submit_time"] == "abc"
    assert job["start_time"] == "1e400"
    # ISO text where milliseconds were promised is not read as a UTC time behind the map's back.
    assert job["end_time"] == "2026-01-05T10:00:00Z (expected milliseconds since 1970-01-01 UTC)"


@settings(max_examples=60, deadline=None)
@given(
    chips=st.text(alphabet=string.printable, max_size=12),
    submitted=st.text(alphabet=string.digits + "-:TZ+. x", max_size=25),
)
def test_no_non_blank_value_becomes_null(chips: str, submitted: str) -> None:
    cmap = ColumnMap(
        name="flat",
        columns={
            "job_id": FieldRule(columns=("id",)),
            "submit_time": FieldRule(columns=("submitted",)),
            "start_time": FieldRule(columns=("started",)),
            "end_time": FieldRule(columns=("ended",)),
            "chips": FieldRule(columns=("gpus",)),
            "accelerator": FieldRule(columns=("gpu_type",)),
            "region": FieldRule(value="r"),
            "team": FieldRule(columns=("owner",)),
            "workload": FieldRule(columns=("kind",)),
        },
    )
    result = apply_column_map(strings([flat_row(gpus=chips, submitted=submitted)]), cmap)
    row = result.mapped.row(0, named=True)
    assert (row["chips"] is None) == (chips.strip() == "")
    assert (row["submit_time"] is None) == (submitted.strip() == "")
    if row["chips"] is not None:
        number = pl.Series([chips.strip()]).cast(pl.Float64, strict=False).item()
        if number is not None and math.isfinite(number):
            assert float(row["chips"]) == pytest.approx(number)
        else:
            assert row["chips"] == chips.strip()


# ------------------------------------------------------------------------- load errors


def test_unknown_preset_names_the_presets() -> None:
    with pytest.raises(WorkbenchError) as caught:
        load_column_map("slurm")
    error = caught.value
    assert "unknown column map preset 'slurm'" in error.message
    assert error.file == "slurm"
    assert error.field == "map"
    assert error.fix is not None and "generic, k8s-pods, slurm-sacct" in error.fix


def test_missing_map_file(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError) as caught:
        load_column_map(tmp_path / "nope.toml")
    assert caught.value.file == str(tmp_path / "nope.toml")
    assert "not found" in caught.value.message
    assert caught.value.fix is not None


def test_bad_toml_names_the_line_and_key(tmp_path: Path) -> None:
    path = write_map(tmp_path, '[columns]\njob_id = "JobID"\nteam = Account\n')
    with pytest.raises(WorkbenchError) as caught:
        load_column_map(path)
    error = caught.value
    assert error.file == str(path)
    assert error.line == 3
    assert error.field == "team"
    assert error.message.startswith("not valid TOML")
    assert error.fix is not None


@pytest.mark.parametrize(
    ("text", "field", "line", "hint"),
    [
        ('[columns]\njob_id = "a"\nteem = "Account"\n', "columns.teem", 3, "did you mean 'team'"),
        ('name = "x"\n[file]\ntimezon = "UTC"\n', "file.timezon", 3, "did you mean 'timezone'"),
        ('[columns]\nteam = { colum = "x" }\n', "columns.team.colum", 2, "did you mean 'column'"),
        ('extend = "slurm-sacct"\n', "extend", 1, "did you mean 'extends'"),
        (
            '[[exclude]]\ncolumn = "a"\nreason = "r"\nequals = "x"\n\n[[exclude]]\ncolumn = "b"\n'
            'reason = "r"\ncontain = "."\n',
            "exclude[2].contain",
            9,
            "did you mean 'contains'",
        ),
    ],
)
def test_unknown_key_names_file_key_line_and_a_suggestion(
    tmp_path: Path, text: str, field: str, line: int, hint: str
) -> None:
    path = write_map(tmp_path, text)
    with pytest.raises(WorkbenchError) as caught:
        load_column_map(path)
    error = caught.value
    assert error.file == str(path)
    assert error.field == field
    assert error.line == line
    assert error.fix is not None and hint in error.fix


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (
            '[columns]\nchips = { expr = "gpus * * share" }\n',
            "columns.chips.expr",
            "bad expression",
        ),
        ('[columns]\nchips = { expr = "gpus % 2" }\n', "columns.chips.expr", "unexpected '%'"),
        ('[columns]\nchips = { expr = "(gpus" }\n', "columns.chips.expr", "not closed"),
        ('[columns]\nteam = { expr = "a + b" }\n', "columns.team.expr", "not allowed"),
        (
            '[columns]\nchips = { expr = "a", inputs = { b = "x" } }\n',
            "columns.chips.inputs.b",
            "not used",
        ),
        (
            '[columns]\nsubmit_time = { column = "s", unit = "epoch" }\n',
            "columns.submit_time.unit",
            "unknown timestamp unit 'epoch'",
        ),
        ('[timestamps]\nunit = "epoch_us"\n', "timestamps.unit", "unknown timestamp unit"),
        ('[columns]\nteam = { column = "t", unit = "iso" }\n', "columns.team.unit", "not allowed"),
        ('[timestamps]\nunit = "seconds_since"\n', "timestamps.unit", "no origin"),
        (
            '[columns]\nend_time = { column = "e", unit = "seconds_since" }\n',
            "columns.end_time.unit",
            "no origin",
        ),
        ('[file]\ntimezone = "Mars/Olympus"\n', "file.timezone", "unknown timezone"),
        ('[file]\nformat = "xlsx"\n', "file.format", "unknown format"),
        ('[file]\ndelimiter = "||"\n', "file.delimiter", "one character"),
        ('[file]\nexport_time = "soon"\n', "file.export_time", "date and time"),
        (
            '[columns]\naccelerator = { column = "x", regex = "gpu:(" }\n',
            "columns.accelerator.regex",
            "bad regular expression",
        ),
        ('[columns]\nteam = { column = "a", value = "b" }\n', "columns.team", "exactly one"),
        ('[columns]\nteam = { default = "b" }\n', "columns.team", "exactly one"),
        ('[columns]\nteams = "Account"\n', "columns.teams", "unknown column 'teams'"),
        ('[columns]\nteam = "a..b"\n', "columns.team", "bad source path"),
        ("[columns]\nteam = 7\n", "columns.team", "expected a table"),
        (
            '[columns]\nworkload = { column = "q", values = { a = true } }\n',
            "columns.workload.values.a",
            "expected a string",
        ),
        ('[[exclude]]\ncolumn = "JobID"\ncontains = "."\n', "exclude[1].reason", "needs 'reason'"),
        ('[[exclude]]\ncolumn = "JobID"\nreason = "r"\n', "exclude[1]", "needs a condition"),
        ('extends = "slrum-sacct"\n', "extends", "unknown column map preset 'slrum-sacct'"),
        ("[file]\nhas_header = false\n", "file.has_header", "needs column_names"),
        ('[file]\ncolumn_names = ["a", "b"]\n', "file.column_names", "without a header"),
        ('[file]\ncolumn_names = ["a", "a"]\n', "file.column_names", "appears twice"),
        (
            '[file]\ntimezone = "Europe/Berlin"\nexport_time = 2026-03-29T02:30:00\n',
            "file.export_time",
            "not a time in Europe/Berlin",
        ),
    ],
)
def test_bad_settings_name_file_key_and_fix(
    tmp_path: Path, text: str, field: str, message: str
) -> None:
    path = write_map(tmp_path, text)
    with pytest.raises(WorkbenchError) as caught:
        load_column_map(path)
    error = caught.value
    assert error.file == str(path)
    assert error.field == field
    assert message in error.message
    assert error.fix


def test_a_file_without_a_header_names_its_columns(tmp_path: Path) -> None:
    path = write_map(
        tmp_path,
        '[file]\nformat = "csv"\nhas_header = false\ncolumn_names = ["id", "t0"]\n'
        '[columns]\njob_id = "id"\n',
    )
    cmap = load_column_map(path)
    assert (cmap.has_header, cmap.column_names, cmap.format_for("x.dat")) == (
        False,
        ("id", "t0"),
        "csv",
    )


def test_key_lines_skip_comments(tmp_path: Path) -> None:
    path = write_map(
        tmp_path, '# chips = { expr = "old" }\n[columns]\n# chips = 1\nchips = { expr = "a +" }\n'
    )
    with pytest.raises(WorkbenchError) as caught:
        load_column_map(path)
    assert caught.value.line == 4


def test_bad_expression_error_points_at_its_line(tmp_path: Path) -> None:
    path = write_map(
        tmp_path, 'name = "x"\n\n[columns]\njob_id = "a"\nchips = { expr = "gpus * * share" }\n'
    )
    with pytest.raises(WorkbenchError) as caught:
        load_column_map(path)
    assert caught.value.line == 5
    assert "column 8" in caught.value.message
    assert caught.value.one_line().startswith(f"{path}, line 5, field 'columns.chips.expr'")


def test_extends_without_the_required_override_names_the_users_file(tmp_path: Path) -> None:
    path = write_map(tmp_path, 'extends = "slurm-sacct"\n[file]\ntimezone = "Europe/Paris"\n')
    with pytest.raises(WorkbenchError) as caught:
        load_column_map(path)
    assert caught.value.file == str(path)
    assert caught.value.field == "columns.region"
    assert caught.value.fix is not None and "under [columns] of this file" in caught.value.fix


def test_extends_a_file_relative_to_the_map_and_loops_are_caught(tmp_path: Path) -> None:
    (tmp_path / "maps").mkdir()
    write_map(
        tmp_path / "maps",
        'extends = "slurm-sacct"\n[columns]\nregion = { value = "eu" }\n',
        "base.toml",
    )
    child = write_map(
        tmp_path,
        'extends = "maps/base.toml"\nname = "child"\n[columns]\nteam = "Partition"\n'
        '[[exclude]]\ncolumn = "State"\nequals = "PENDING"\nreason = "not yet"\n',
    )
    cmap = load_column_map(child)
    assert (cmap.name, cmap.rule("region").value, cmap.rule("team").columns) == (
        "child",
        "eu",
        ("Partition",),
    )
    assert cmap.delimiter == "|"
    assert [rule.reason for rule in cmap.exclude][-1] == "not yet"
    assert len(cmap.exclude) == 4
    assert "State" in cmap.source_columns

    write_map(tmp_path, 'extends = "b.toml"\n', "a.toml")
    write_map(tmp_path, 'extends = "a.toml"\n', "b.toml")
    with pytest.raises(WorkbenchError) as caught:
        load_column_map(tmp_path / "a.toml")
    assert caught.value.field == "extends"
    assert "loop" in (caught.value.fix or "")


def test_canonical_columns_match_the_job_record_schema() -> None:
    assert tuple(JOB_RECORDS.schema.names()) == CANONICAL_COLUMNS
    assert MAPPED_SCHEMA.names()[: len(CANONICAL_COLUMNS)] == list(CANONICAL_COLUMNS)
