"""Fuzzing every parser with hostile input (hypothesis).

Each connector gets files built from random, often broken, pieces: bytes that are not
UTF-8, huge and non-finite numbers, empty files, wrong types, dates far in the past and
future, unbalanced quotes, nested JSON where a number belongs. The invariants:

* no uncaught exception: a connector either returns or raises one readable
  :class:`~workbench.errors.WorkbenchError` (a problem with the whole file);
* every data row is loaded, quarantined with a reason, excluded on purpose or a counted
  duplicate, and the quantity reconciliation (chip-hours, USD) balances;
* loaded numbers are finite.

Profiles: by default each test runs ``WORKBENCH_FUZZ_EXAMPLES`` examples (20), quick enough
for every test run. The long profile runs 10,000 per connector::

    WORKBENCH_FUZZ_EXAMPLES=10000 pytest tests/test_fuzz_parsers.py

or ``pytest -m fuzz_long tests/test_fuzz_parsers.py``, which runs that in a subprocess (a
whole-suite run leaves it out: the ``fuzz_long`` marker is deselected by default).
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipelines.billing import ingest_focus_billing
from pipelines.column_map import load_column_map
from pipelines.jobs import ingest_job_records
from pipelines.metrics import ingest_prometheus_json, ingest_utilization_csv
from workbench.catalog import SkuCatalog, load_price_book, load_sku_catalog
from workbench.errors import WorkbenchError
from workbench.ingest import ingest
from workbench.store import Workspace
from workbench.uploads import UploadSettings, ingest_upload, safe_upload_name, save_upload

ROOT = Path(__file__).resolve().parent.parent
CATALOG_TOML = ROOT / "data_samples" / "catalog" / "sku_catalog.toml"
EXAMPLES = int(os.environ.get("WORKBENCH_FUZZ_EXAMPLES", "20"))
LONG_EXAMPLES = 10_000

# Shrinking a failure can take minutes on these inputs: off unless asked for, so a failing
# run stays short (the failing example is printed either way).
SHRINK = os.environ.get("WORKBENCH_FUZZ_SHRINK") == "1"
# The quick profile of every test run draws the same examples each time (a run passes or
# fails for the code, not the dice); a profile asked for by example count explores afresh.
EXPLORE = "WORKBENCH_FUZZ_EXAMPLES" in os.environ
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not EXPLORE,
    phases=[p for p in Phase if SHRINK or p not in (Phase.shrink, Phase.explain)],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)

# -- building blocks ----------------------------------------------------------------------

ACCELERATORS = ["h100", "NVIDIA L4", "tpu-v5e", "a100-80gb", "MI300X", "tpu-v5p", "gpu"]
REGIONS = ["us-central1", "europe-west4", "", "mars-north1"]

# Text without line breaks: a record is one physical line (see pipelines.readers).
one_line_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"),
    max_size=20,
)
huge_int = st.integers(min_value=-(10**40), max_value=10**40)
number_text = st.one_of(
    st.integers(-5, 64).map(str),
    huge_int.map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e308", "1e999", "-0", "0x10"]),
    st.sampled_from(["", " ", "eight", "8 chips", "1,5", "٣"]),
)


@st.composite
def iso_times(draw: st.DrawFn) -> str:
    """An instant as text, in many shapes, far past and future included."""
    moment = draw(st.datetimes())  # years 1 to 9999
    shape = draw(st.integers(0, 5))
    if shape == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if shape == 1:
        return moment.isoformat()
    if shape == 2:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if shape == 3:
        return str(draw(huge_int))  # a Unix time, maybe absurd
    if shape == 4:
        return draw(st.sampled_from(["", "Unknown", "None", "NaN", "2026-02-30T00:00:00Z"]))
    return draw(one_line_text)


recent_times = st.integers(1_767_225_600, 1_767_225_600 + 5 * 86_400).map(
    lambda s: (
        f"2026-01-{1 + (s - 1_767_225_600) // 86_400:02d}T"
        f"{(s % 86_400) // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}Z"
    )
)
timestamp_text = st.one_of(recent_times, recent_times, iso_times())


def csv_cell(text: str, *, delimiter: str = ",", quote: bool = False) -> str:
    """A cell as a spreadsheet would write it, or (``quote``) always quoted."""
    if quote or any(c in text for c in (delimiter, '"')):
        return '"' + text.replace('"', '""') + '"'
    return text


@st.composite
def damaged(draw: Callable[[st.SearchStrategy[Any]], Any], lines: list[str]) -> bytes:
    """Encode lines as a file, then maybe break it: bad bytes, BOM, CRLF, blank lines,
    an unclosed quote, a ragged line, a missing final newline."""
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    body = list(lines)
    if body and draw(st.booleans()):
        at = draw(st.integers(0, len(body) - 1))
        body.insert(at, draw(st.sampled_from(["", "   ", "\t"])))
    if len(body) > 1 and draw(st.booleans()):
        at = draw(st.integers(1, len(body) - 1))
        body[at] = draw(
            st.sampled_from(['"unclosed', body[at] + ",extra,fields", body[at][:3], "{}"])
        )
    data = newline.join(body).encode("utf-8")
    if draw(st.booleans()):
        data += newline.encode()
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    if data and draw(st.booleans()):
        # Bytes that are not UTF-8 (never a line break, which would change the line count).
        junk = draw(st.binary(min_size=1, max_size=4).filter(lambda b: b"\n" not in b))
        at = draw(st.integers(0, len(data)))
        data = data[:at] + junk + data[at:]
    return data


@contextmanager
def scratch_file(data: bytes, name: str) -> Iterator[Path]:
    """Write ``data`` to a file named ``name`` in a fresh folder, removed afterwards."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        yield path


def expect_clean(call: Callable[[], Any]) -> Any:
    """Run a connector: its result, or None if it raised a WorkbenchError."""
    try:
        return call()
    except WorkbenchError as error:
        assert error.one_line(), "an error must say what is wrong"
        return None


def assert_quarantine_has_reasons(quarantine: pl.DataFrame) -> None:
    assert quarantine["reason"].null_count() == 0
    assert (quarantine["reason"].str.len_chars() > 0).all()


def assert_finite(frame: pl.DataFrame) -> None:
    for name, dtype in frame.schema.items():
        if dtype.is_float():
            values = frame[name].drop_nulls()
            assert values.is_finite().all(), f"{name} holds a non-finite value"


@functools.cache
def sample_catalog() -> SkuCatalog:
    """The sample SKU catalog (a function, not a fixture: hypothesis prints fixtures)."""
    return load_sku_catalog(CATALOG_TOML)


# -- job records: CSV and JSON Lines ------------------------------------------------------

JOB_COLUMNS = [
    "job_id",
    "submit_time",
    "start_time",
    "end_time",
    "chips",
    "accelerator",
    "region",
    "team",
    "workload",
]
job_record = st.fixed_dictionaries(
    {
        "job_id": st.one_of(st.integers(0, 5).map(lambda i: f"j{i}"), one_line_text),
        "submit_time": timestamp_text,
        "start_time": timestamp_text,
        "end_time": timestamp_text,
        "chips": number_text,
        "accelerator": st.one_of(st.sampled_from(ACCELERATORS), one_line_text),
        "region": st.one_of(st.sampled_from(REGIONS), one_line_text),
        "team": st.one_of(st.sampled_from(["vision", "maps", ""]), one_line_text),
        "workload": st.sampled_from(["training", "serving", "batch", "", "TRAINING", "x"]),
    }
)


def check_job_ingest(path: Path, resolver: SkuCatalog, **kwargs: Any) -> Any:
    result = expect_clean(lambda: ingest_job_records(path, resolver=resolver, **kwargs))
    if result is None:
        return None
    assert result.balanced, result.reconciliation()
    assert_quarantine_has_reasons(result.quarantine)
    assert_finite(result.usage_daily)
    assert (result.usage_daily["chip_hours_used"] >= 0).all()
    return result


@fuzz
@given(
    records=st.lists(job_record, max_size=12),
    quoted=st.booleans(),
    data=st.data(),
)
def test_job_records_csv(records, quoted, data):
    lines = [",".join(JOB_COLUMNS)] + [
        ",".join(csv_cell(r[c], quote=quoted) for c in JOB_COLUMNS) for r in records
    ]
    payload = data.draw(damaged(lines))
    with scratch_file(payload, "jobs.csv") as path:
        result = check_job_ingest(path, sample_catalog())
        if result is not None:
            # Every physical line after the header is a row or a counted blank line.
            text_lines = payload.split(b"\n")
            physical = len(text_lines) - (1 if text_lines[-1] == b"" else 0)
            # Blank lines before the header count as blank lines too.
            assert result.rows_read + result.blank_lines == physical - 1


json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    huge_int,
    st.floats(allow_nan=False, allow_infinity=False),
    one_line_text,
    number_text,
    timestamp_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(one_line_text, inner, max_size=3),
    max_leaves=6,
)


@fuzz
@given(
    records=st.lists(
        st.one_of(
            job_record.map(json.dumps),
            st.dictionaries(st.sampled_from(JOB_COLUMNS), json_value).map(json.dumps),
            st.sampled_from(["[1, 2]", "5", "null", "{", '{"job_id": NaN}', "not json"]),
        ),
        max_size=10,
    ),
    data=st.data(),
)
def test_job_records_jsonl(records, data):
    payload = data.draw(damaged(records))
    with scratch_file(payload, "jobs.jsonl") as path:
        check_job_ingest(path, sample_catalog())


# -- sacct lines through the slurm-sacct preset ---------------------------------------------

SACCT_COLUMNS = [
    "JobID",
    "JobName",
    "Account",
    "Partition",
    "QOS",
    "Submit",
    "Start",
    "End",
    "State",
    "AllocTRES",
    "Cluster",
]
tres = st.one_of(
    st.builds(
        lambda kind, count: f"billing=8,cpu=32,gres/gpu:{kind}={count},mem=200G,node=1",
        st.sampled_from(["h100", "a100", "l4", "weird"]),
        number_text,
    ),
    st.builds(lambda count: f"cpu=4,gres/gpu={count}", number_text),
    st.sampled_from(["", "cpu=4,mem=1G", "gres/gpu", "gres/gpu:h100=", "None"]),
    one_line_text,
)
sacct_record = st.fixed_dictionaries(
    {
        "JobID": st.one_of(
            st.integers(1, 9).map(str),
            st.sampled_from(["7.batch", "7.extern", "7.0", "8_3", "9_[1-5]"]),
            one_line_text,
        ),
        "JobName": one_line_text,
        "Account": st.sampled_from(["vision", "maps", "", "x y"]),
        "Partition": st.sampled_from(["gpu", "debug"]),
        "QOS": st.sampled_from(["normal", "high", "", "prod"]),
        "Submit": timestamp_text.map(lambda t: t.rstrip("Z")),
        "Start": st.one_of(timestamp_text.map(lambda t: t.rstrip("Z")), st.just("Unknown")),
        "End": st.one_of(timestamp_text.map(lambda t: t.rstrip("Z")), st.just("Unknown")),
        "State": st.sampled_from(["COMPLETED", "RUNNING", "PENDING", "CANCELLED by 0", "FAILED"]),
        "AllocTRES": tres,
        "Cluster": st.sampled_from(["c1", ""]),
    }
)


@pytest.fixture(scope="module")
def sacct_map():
    return load_column_map("slurm-sacct", overrides={"region": "us-central1"})


@fuzz
@given(
    records=st.lists(sacct_record, max_size=12),
    export=st.sampled_from([None, "2026-01-09T00:00:00+00:00"]),
    data=st.data(),
)
def test_sacct_lines(sacct_map, records, export, data):
    from datetime import datetime

    lines = ["|".join(SACCT_COLUMNS)] + [
        "|".join(r[c].replace("|", "/") for c in SACCT_COLUMNS) for r in records
    ]
    payload = data.draw(damaged(lines))
    export_time = datetime.fromisoformat(export) if export else None
    with scratch_file(payload, "sacct.txt") as path:
        check_job_ingest(path, sample_catalog(), column_map=sacct_map, export_time=export_time)


# -- Prometheus JSON and utilization CSV ----------------------------------------------------

sample_value = st.one_of(
    number_text,
    st.floats(allow_nan=False, allow_infinity=False),
    huge_int,
    st.none(),
    st.sampled_from(["+Inf", "-Inf", "NaN"]),
)
sample_time = st.one_of(
    st.integers(1_767_225_600, 1_767_225_600 + 3 * 86_400).map(lambda t: t - t % 300),
    huge_int,
    st.floats(allow_nan=True, allow_infinity=True),
    one_line_text,
    st.none(),
)
prom_series = st.fixed_dictionaries(
    {
        "metric": st.dictionaries(
            st.sampled_from(["__name__", "modelName", "region", "cluster", "team", "namespace"]),
            st.one_of(
                st.sampled_from(["DCGM_FI_DEV_GPU_UTIL", "NVIDIA H100 80GB HBM3", "us-central1"]),
                json_value,
            ),
        ),
        "values": st.lists(
            st.one_of(st.tuples(sample_time, sample_value).map(list), json_value), max_size=8
        ),
    }
)
prom_document = st.one_of(
    st.lists(prom_series, max_size=4).map(
        lambda result: {"status": "success", "data": {"resultType": "matrix", "result": result}}
    ),
    st.lists(prom_series, max_size=3).map(lambda result: {"data": {"result": result}}),
    json_value,
)


@fuzz
@given(document=prom_document, raw_tail=st.sampled_from([b"", b"\xff", b"}", b" \n"]))
def test_prometheus_json(document, raw_tail):
    payload = json.dumps(document).encode() + raw_tail
    with scratch_file(payload, "util.json") as path:
        result = expect_clean(
            lambda: ingest_prometheus_json(path, resolver=sample_catalog(), source="fuzz")
        )
        if result is not None:
            assert result.balanced, result.reconciliation()
            assert_quarantine_has_reasons(result.quarantine)
            assert_finite(result.good)


UTIL_COLUMNS = ["timestamp", "accelerator", "region", "metric", "value", "chips"]


@fuzz
@given(
    records=st.lists(
        st.tuples(
            timestamp_text,
            st.sampled_from(ACCELERATORS),
            st.sampled_from(REGIONS),
            st.sampled_from(["DCGM_FI_DEV_GPU_UTIL", "tpu_duty_cycle", "x"]),
            number_text,
            number_text,
        ),
        max_size=10,
    ),
    data=st.data(),
)
def test_utilization_csv(records, data):
    lines = [",".join(UTIL_COLUMNS)] + [",".join(csv_cell(v) for v in r) for r in records]
    payload = data.draw(damaged(lines))
    with scratch_file(payload, "util.csv") as path:
        result = expect_clean(
            lambda: ingest_utilization_csv(path, resolver=sample_catalog(), source="fuzz")
        )
        if result is not None:
            assert result.balanced, result.reconciliation()
            assert_quarantine_has_reasons(result.quarantine)
            assert_finite(result.good)


# -- FOCUS billing rows ----------------------------------------------------------------------

FOCUS_HEADER = [
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "BillingCurrency",
    "ServiceName",
    "SkuId",
    "ResourceId",
    "RegionId",
    "PricingQuantity",
    "PricingUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ChargeCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountStatus",
    "Tags",
]
money_text = st.one_of(
    st.decimals(min_value=-1000, max_value=100_000, places=2).map(str), number_text
)
focus_row = st.fixed_dictionaries(
    {
        "ChargePeriodStart": timestamp_text,
        "ChargePeriodEnd": timestamp_text,
        "BilledCost": money_text,
        "EffectiveCost": money_text,
        "ListCost": money_text,
        "BillingCurrency": st.sampled_from(["USD", "EUR", "", "usd"]),
        "ServiceName": st.sampled_from(["Compute Engine", ""]),
        "SkuId": st.one_of(st.sampled_from(ACCELERATORS), one_line_text),
        "ResourceId": one_line_text,
        "RegionId": st.sampled_from(REGIONS),
        "PricingQuantity": number_text,
        "PricingUnit": st.sampled_from(["Hours", ""]),
        "ConsumedQuantity": number_text,
        "ConsumedUnit": st.sampled_from(["Hours", ""]),
        "ChargeCategory": st.sampled_from(["Usage", "Purchase", "Tax", "Credit", "", "x"]),
        "CommitmentDiscountId": st.sampled_from(["null", "", "cud-1"]),
        "CommitmentDiscountStatus": st.sampled_from(["null", "Used", "Unused", "x"]),
        "Tags": st.one_of(
            st.dictionaries(st.sampled_from(["team", "app"]), json_value).map(json.dumps),
            one_line_text,
        ),
    }
)


@fuzz
@given(rows=st.lists(focus_row, max_size=10), drop=st.sampled_from([None, *FOCUS_HEADER]))
def test_focus_billing_csv(rows, drop):
    columns = [c for c in FOCUS_HEADER if c != drop]
    lines = [",".join(columns)] + [",".join(csv_cell(r[c]) for c in columns) for r in rows]
    with scratch_file(("\n".join(lines) + "\n").encode(), "focus.csv") as path:
        result = expect_clean(
            lambda: ingest_focus_billing(path, resolver=sample_catalog(), source="fuzz")
        )
        if result is not None:
            assert result.balanced, result.reconciliation()
            assert_quarantine_has_reasons(result.quarantine)
            assert_finite(result.good)


@fuzz
@given(payload=st.binary(max_size=300))
def test_focus_billing_any_bytes(payload):
    with scratch_file(payload, "focus.csv") as path:
        result = expect_clean(
            lambda: ingest_focus_billing(path, resolver=sample_catalog(), source="fuzz")
        )
        if result is not None:
            assert result.balanced


# -- TOML: column maps, price books, SKU catalogs -------------------------------------------

toml_scalar = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    one_line_text,
    st.sampled_from(["h100", "UTC", "iso", "csv", "|", "(\\d+)", "job_id", "a +* b", "(("]),
)


def toml_value(value: Any) -> str:
    """Render a value as TOML (strings, numbers, booleans, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_table(name: str | None, items: dict[str, Any], *, array: bool = False) -> str:
    head = "" if name is None else (f"[[{name}]]\n" if array else f"[{name}]\n")
    return head + "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in items.items())


toml_leaf = st.one_of(
    toml_scalar,
    st.lists(toml_scalar, max_size=3),
    st.dictionaries(
        st.sampled_from(["column", "value", "regex", "values", "default"]), toml_scalar
    ),
)
MAP_COLUMNS = [*JOB_COLUMNS, "bogus"]


@st.composite
def column_map_toml(draw: st.DrawFn) -> bytes:
    parts = [
        toml_table(
            None,
            draw(
                st.dictionaries(
                    st.sampled_from(["name", "extends", "missing_values", "strange"]), toml_leaf
                )
            ),
        ),
        toml_table(
            "file",
            draw(
                st.dictionaries(
                    st.sampled_from(["format", "delimiter", "has_header", "timezone", "x"]),
                    toml_scalar,
                )
            ),
        ),
        toml_table("columns", draw(st.dictionaries(st.sampled_from(MAP_COLUMNS), toml_leaf))),
        toml_table(
            "timestamps",
            draw(st.dictionaries(st.sampled_from(["unit", "origin", "format"]), toml_scalar)),
        ),
    ]
    text = "".join(draw(st.permutations(parts)))
    if draw(st.integers(0, 4)) == 0:
        text = draw(st.text(max_size=80)) + text  # often breaks the syntax
    return text.encode("utf-8", errors="surrogatepass")


@fuzz
@given(payload=st.one_of(column_map_toml(), st.binary(max_size=200)))
def test_column_map_toml(payload):
    with scratch_file(payload, "map.toml") as path:
        expect_clean(lambda: load_column_map(path))


PRICE_KEYS = [
    "accelerator",
    "region",
    "capex_usd",
    "depreciation_years",
    "lead_time_weeks",
    "on_demand_usd_per_hour",
    "commit_1y_usd_per_hour",
    "commit_3y_usd_per_hour",
    "spot_usd_per_hour",
    "min_order_chips",
    "network_storage_capex_share",
    "maintenance_capex_share_per_year",
    "source",
    "as_of",
]
REGION_KEYS = ["usd_per_kwh", "pue", "facility_usd_per_kw_month", "cloud_price_factor"]
price_number = st.one_of(
    st.floats(min_value=0.01, max_value=50_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**63 - 1),
    toml_scalar,
)


@st.composite
def price_book_toml(draw: st.DrawFn) -> bytes:
    text = toml_table(None, {"source": "fuzz", "as_of": "2026-09-30"})
    text = text.replace('"as_of" = "2026-09-30"', "as_of = 2026-09-30")
    for region in draw(st.lists(st.sampled_from([*REGIONS[:2], "x y"]), max_size=2, unique=True)):
        values = {k: draw(price_number) for k in REGION_KEYS if draw(st.booleans())}
        text += toml_table(f"region.{json.dumps(region)}", values)
    for _ in range(draw(st.integers(0, 3))):
        entry: dict[str, Any] = {"accelerator": draw(st.sampled_from(ACCELERATORS))}
        for key in PRICE_KEYS[2:]:
            if draw(st.integers(0, 3)):
                entry[key] = draw(price_number)
        text += toml_table("price", entry, array=True)
    return text.encode()


def assert_price_book_sane(book: pl.DataFrame) -> None:
    assert_finite(book)
    for name, dtype in book.schema.items():
        if dtype.is_numeric():
            assert (book[name].drop_nulls() >= 0).all(), f"{name} is negative"


@fuzz
@given(payload=price_book_toml())
def test_price_book_toml(payload):
    with scratch_file(payload, "price_book.toml") as path:
        book = expect_clean(lambda: load_price_book(path, sample_catalog()))
        if book is not None:
            assert_price_book_sane(book)


SKU_KEYS = [
    "id",
    "vendor",
    "family",
    "generation",
    "aliases",
    "memory_gb",
    "power_w",
    "perf_index",
    "host_cores_per_chip",
    "storage_tb_per_chip",
    "network_gbps_per_chip",
]


@fuzz
@given(
    entries=st.lists(
        st.dictionaries(st.sampled_from(SKU_KEYS), st.one_of(price_number, toml_leaf)),
        max_size=3,
    )
)
def test_sku_catalog_toml(entries):
    payload = "".join(toml_table("accelerator", e, array=True) for e in entries).encode()
    with scratch_file(payload, "sku_catalog.toml") as path:
        catalog = expect_clean(lambda: load_sku_catalog(path))
        if catalog is not None:
            assert_finite(catalog.table)


# -- uploads ---------------------------------------------------------------------------------

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@fuzz
@given(name=st.text(max_size=300))
def test_upload_names_never_leave_the_uploads_folder(tmp_path, name):
    safe = safe_upload_name(name)
    assert SAFE_NAME.match(safe), safe
    assert ".." not in safe
    assert len(safe) <= 120
    uploads = tmp_path / "uploads"
    assert (uploads / safe).resolve().parent == uploads.resolve()


@pytest.fixture(scope="module")
def catalog_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = Workspace(tmp_path_factory.mktemp("fuzz") / "template").init()
    ingest(workspace, "catalog", [CATALOG_TOML])
    return workspace.root


@fuzz
@given(
    name=st.one_of(st.text(max_size=40), st.sampled_from(["../../x.csv", "jobs.csv", ".env"])),
    kind=st.sampled_from(["jobs", "billing", "metrics", "inventory", "orders", "events"]),
    records=st.lists(job_record, max_size=6),
    data=st.data(),
)
def test_uploads_ingest_or_refuse_cleanly(catalog_template, name, kind, records, data):
    lines = [",".join(JOB_COLUMNS)] + [
        ",".join(csv_cell(r[c]) for c in JOB_COLUMNS) for r in records
    ]
    payload = data.draw(st.one_of(damaged(lines), st.binary(max_size=200)))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "ws"
        shutil.copytree(catalog_template, root)
        workspace = Workspace(root)
        report = expect_clean(
            lambda: ingest_upload(
                workspace, name, io.BytesIO(payload), len(payload), UploadSettings(kind=kind)
            )
        )
        uploaded = list((root / "uploads").glob("*")) if (root / "uploads").exists() else []
        assert all(p.parent == root / "uploads" for p in uploaded)
        assert not [p for p in uploaded if p.name.startswith(".staging-")]
        if report is not None:
            for item in report.files:
                rec = item.reconciliation
                assert rec["balanced"], rec
                assert_quarantine_has_reasons(item.quarantine)
            # The workspace tables agree with the run: what was loaded is what is stored.
            assert Workspace(root).runs("ingest")[-1].run_id == report.run_id


def test_upload_over_the_limit_is_refused_before_writing(empty_workspace):
    with pytest.raises(WorkbenchError, match="over the limit of 1 MB"):
        save_upload(empty_workspace, "big.csv", io.BytesIO(b"x" * 10), 2_000_000, 1.0)
    assert not (empty_workspace.root / "uploads").exists()
    with pytest.raises(WorkbenchError, match="empty"):
        save_upload(empty_workspace, "empty.csv", io.BytesIO(b""), 0, 1.0)


# -- the long profile ------------------------------------------------------------------------


@pytest.mark.fuzz_long
def test_long_fuzz_profile():
    """Every fuzz test above with 10,000 examples each, in a fresh process.

    Hours on two shared cores: deselected from every run unless asked for by its marker
    (``pytest -m fuzz_long tests/test_fuzz_parsers.py``).
    """
    env = {**os.environ, "WORKBENCH_FUZZ_EXAMPLES": str(LONG_EXAMPLES)}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "not slow and not fuzz_long",
            "-p",
            "no:cacheprovider",
            __file__,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]


# -- bugs the fuzzing found, pinned ----------------------------------------------------------


def test_jsonl_with_a_key_of_mixed_types_is_quarantined_not_a_crash(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b'{"job_id": true}\n{"job_id": "j1"}\n{\n')
    result = check_job_ingest(path, sample_catalog())
    assert result is not None
    assert result.rows_read == 3
    assert result.rows_quarantined == 3


def test_jsonl_integer_beyond_any_integer_type(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"chips": {"a": 99999999999999999999999999999999999999999}}\nnot json\n')
    result = check_job_ingest(path, sample_catalog())
    assert result is not None
    assert result.rows_quarantined == 2


def test_jsonl_line_of_bad_bytes_without_text_columns(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b"\xa6w\xc2\t\r\n{\n")
    result = check_job_ingest(path, sample_catalog())
    assert result is not None
    assert result.rows_read == 2


def test_jsonl_nested_value_where_a_number_belongs(tmp_path):
    path = tmp_path / "jobs.jsonl"
    record = {c: "x" for c in JOB_COLUMNS} | {"chips": [{"a": "b"}]}
    path.write_text(json.dumps(record) + "\n")
    result = check_job_ingest(path, sample_catalog())
    assert result is not None
    assert result.rows_quarantined == 1


def test_header_with_a_lone_carriage_return_is_one_clear_error(tmp_path):
    path = tmp_path / "focus.csv"
    path.write_bytes(b"Charge\rPeriodStart,x\n1,2\n")
    with pytest.raises(WorkbenchError, match="header line is not readable CSV"):
        ingest_focus_billing(path, resolver=sample_catalog(), source="t")


def test_absurd_billing_amount_is_quarantined_and_totals_balance(tmp_path):
    path = tmp_path / "focus.csv"
    row = {c: "" for c in FOCUS_HEADER} | {
        "ChargePeriodStart": "2026-01-01T00:00:00Z",
        "ChargePeriodEnd": "2026-01-02T00:00:00Z",
        "BilledCost": "-2.6e175",
        "EffectiveCost": "5",
        "BillingCurrency": "USD",
        "ChargeCategory": "Usage",
    }
    path.write_text(",".join(FOCUS_HEADER) + "\n" + ",".join(row[c] for c in FOCUS_HEADER) + "\n")
    result = ingest_focus_billing(path, resolver=sample_catalog(), source="t")
    assert result.rows_quarantined == 1
    assert "beyond any one charge" in result.quarantine["reason"][0]
    assert result.balanced


def test_price_book_with_text_for_a_number_is_one_clear_error(tmp_path):
    path = tmp_path / "price_book.toml"
    path.write_text(
        '[region.us-central1]\ncloud_price_factor = "high"\n'
        '[[price]]\naccelerator = "h100"\non_demand_usd_per_hour = 3.0\n'
    )
    with pytest.raises(WorkbenchError, match="not a finite number"):
        load_price_book(path, sample_catalog())
    path.write_text('region = {x = 1}\n[[price]]\naccelerator = "h100"\n')
    with pytest.raises(WorkbenchError, match="not a table"):
        load_price_book(path, sample_catalog())


def test_a_job_holding_more_chips_than_any_job_can_is_quarantined(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text(
        "job_id,submit_time,start_time,end_time,chips,accelerator,region,team,workload\n"
        "j1,2026-01-01T00:00:00Z,2026-01-01T01:00:00Z,2026-01-02T05:56:43Z,1e308,"
        "NVIDIA L4,us-central1,search,training\n"
        "j2,2026-01-01T00:00:00Z,2026-01-01T01:00:00Z,2026-01-01T03:00:00Z,8,"
        "NVIDIA L4,us-central1,search,training\n"
    )
    result = check_job_ingest(path, sample_catalog())
    assert result is not None
    assert result.rows_loaded == 1 and result.rows_quarantined == 1
    assert "chips must be at most 1,000,000" in result.quarantine["reason"][0]
    assert result.chip_hours_out == pytest.approx(16.0)


def test_unix_seconds_beyond_the_calendar_are_quarantined_not_a_panic(tmp_path):
    # Found by the 10,000-example profile: 9e12 seconds is year ~285,000; formatting it as
    # ISO text panicked inside polars. Now it stays text and fails as not a timestamp.
    path = tmp_path / "util.csv"
    path.write_text(
        "timestamp,accelerator,region,metric,value\n"
        "9000000000000,NVIDIA L4,us-central1,duty_cycle,0.5\n"
        "1767225600,NVIDIA L4,us-central1,duty_cycle,0.5\n"
        "1767229200,NVIDIA L4,us-central1,duty_cycle,0.5\n"
    )
    result = expect_clean(
        lambda: ingest_utilization_csv(path, resolver=sample_catalog(), source="fuzz")
    )
    assert result is not None and result.balanced
    assert result.quarantine.height == 1
    assert result.quarantine["value"][0] == "9000000000000"
    assert "timestamp" in result.quarantine["reason"][0]


def test_jsonl_text_with_a_lone_surrogate_escape_is_quarantined_not_a_crash(tmp_path):
    # Found by the 10,000-example profile: "\ud921" alone is valid JSON escaping but no
    # UTF-8 text; in a block read line by line (here because of the broken "{" line),
    # building the frame of such a line raised UnicodeEncodeError.
    good = (
        '{"job_id": "j2", "submit_time": "2026-01-01T00:00:00Z", '
        '"start_time": "2026-01-01T01:00:00Z", "end_time": "2026-01-01T03:00:00Z", '
        '"chips": "8", "accelerator": "NVIDIA L4", "region": "us-central1", '
        '"team": "search", "workload": "training"}'
    )
    lone = good.replace('"j2"', '"j1"').replace('"search"', '"s\\ud921?"')
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join([lone, "{", good]) + "\n")
    result = check_job_ingest(path, sample_catalog())
    assert result is not None
    assert result.rows_loaded == 1
    reasons = dict(zip(result.quarantine["line"], result.quarantine["reason"], strict=True))
    assert "lone surrogate" in reasons[1]
    assert result.rows_read == (
        result.rows_loaded + result.rows_quarantined + result.duplicates_dropped
    )
    assert result.chip_hours_out == pytest.approx(16.0)
