"""Utilization metrics (Prometheus/DCGM, TPU duty cycle) -> ``utilization_daily``.

Two input forms feed the same canonical table:

* :func:`ingest_prometheus_json`: the JSON body of a Prometheus range query
  (``/api/v1/query_range``, ``resultType`` ``matrix``), one series per GPU, as DCGM exports
  them (labels ``gpu``, ``UUID``, ``Hostname``, ``modelName``, and ``namespace``/``pod`` when
  the GPU is attributed to a workload);
* :func:`ingest_utilization_csv`: ``timestamp, accelerator, region, metric, value`` plus the
  optional ``chips`` (devices the value averages over, default 1) and ``team``.

What a sample means. Every sample stands for one *step* of its series, starting at its
timestamp: ``[t, t + step)``. The step is inferred per series as its most common spacing
between distinct timestamps (ties: the shorter), so a missed scrape leaves a gap instead of
stretching its neighbour, and the last sample gets the same step as the others. A series with
a single sample takes the most common spacing of the whole file. Then, per sample::

    utilization          = value / 100 for percent metrics, value for fraction metrics
    chip_hours_observed  = chips x step hours
    chip_hours_busy      = chip_hours_observed x utilization

and ``utilization_daily`` sums them per UTC day, accelerator, region, team and metric. A
sample whose step crosses a UTC midnight is split at it, so each day gets exactly the hours
observed on it; the sample itself is counted (``samples``) on the day it starts.

Reconciliation. Rows are *samples*: ``rows_read`` counts every sample in the file (every
``[timestamp, value]`` pair, or every CSV data line), and each is loaded, quarantined with a
reason, or dropped as an exact duplicate. :class:`~pipelines.result.TableIngest` therefore
carries the loaded samples in ``good`` (schema :data:`METRIC_SAMPLES`, one row per sample
with its step and chip-hours, traceable to its line) and the canonical table in
``extra_tables["utilization_daily"]`` (exactly ``UTILIZATION_DAILY``). ``totals`` prove the
roll-up lost nothing: ``samples_in``/``samples_out`` and ``chip_hours_observed_in``/``_out``,
``chip_hours_busy_in``/``_out`` (per-sample sums against the daily table's sums).

Locating a JSON sample. A JSON response has no useful lines (it is often one line), so the
``line`` of a JSON sample is ``series_number * 1_000_000 + sample_number``, both 1-based in
file order: line ``3_000_042`` is the 42nd ``[timestamp, value]`` pair of the 3rd entry of
``data.result``. The quarantined ``record`` also carries the series' ``labels`` (as JSON) and
the raw ``unix_time``.

Duplicates. An exact repeat of a sample (same series labels, time and value; for CSV the same
line text) is dropped and counted. Two different values for one JSON series at one time are a
conflict: the first is kept and the later ones are quarantined, since counting both would
observe the same GPU twice.

Bad samples are quarantined, never dropped: a value that is not a finite number (``NaN``,
``+Inf``), negative, above 100 for a percent metric or above 1 for a fraction metric; an
unknown accelerator; a missing region; a time that does not parse; a metric whose unit is not
known (see :data:`METRIC_UNITS`). A file that cannot be read as a whole (not JSON, not a
successful range query) raises one :class:`~workbench.errors.WorkbenchError`.

:func:`fill_usage_from_metrics` and :func:`utilization_efficiency` then use the daily table
beside the job-derived ``usage_daily``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import polars as pl

from pipelines.readers import read_delimited, split_broken_rows
from pipelines.result import TableIngest
from workbench.errors import WorkbenchError
from workbench.schema import (
    QUARANTINE_SCHEMA,
    USAGE_DAILY,
    UTILIZATION_DAILY,
    AcceleratorResolver,
    Check,
    TableSpec,
    normalize_alias,
    validate,
)

__all__ = [
    "DEFAULT_LABELS",
    "EFFICIENCY_SCHEMA",
    "METRIC_SAMPLES",
    "METRIC_UNITS",
    "SERIES_LINE_BASE",
    "UTILIZATION_CSV_OPTIONAL",
    "UTILIZATION_CSV_REQUIRED",
    "fill_usage_from_metrics",
    "ingest_prometheus_json",
    "ingest_utilization_csv",
    "metric_unit",
    "utilization_efficiency",
]

TABLE = "utilization_daily"
UTC_DATETIME = pl.Datetime("us", "UTC")
_HOUR_US = 3_600_000_000

SERIES_LINE_BASE = 1_000_000
"""``line`` of a JSON sample = series number x this + sample number (both 1-based)."""

METRIC_UNITS: Mapping[str, str] = MappingProxyType(
    {
        "DCGM_FI_DEV_GPU_UTIL": "percent",
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "fraction",
        "DCGM_FI_PROF_SM_ACTIVE": "fraction",
        "tpu_duty_cycle_percent": "percent",
        "duty_cycle": "percent",
    }
)
"""Unit of each known metric. Other names: ``*_percent``/``*_pct`` are percent (0-100);
``DCGM_FI_PROF_*``, ``*_ratio`` and ``*_fraction`` are fractions (0-1); anything else is
quarantined, since busy chip-hours cannot be computed without the unit."""

DEFAULT_LABELS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "accelerator": ("modelName",),
        "region": ("region", "cluster"),
        # An explicit team label is a deliberate mapping; a namespace is only a proxy for it.
        "team": ("team", "namespace"),
        "metric": ("__name__",),
    }
)
"""Labels a Prometheus series is read from, first present wins; ``label_map`` overrides."""

UTILIZATION_CSV_REQUIRED = ("timestamp", "accelerator", "region", "metric", "value")
UTILIZATION_CSV_OPTIONAL = ("chips", "team")

METRIC_SAMPLES = pl.Schema(
    [
        ("line", pl.Int64()),
        ("series", pl.String()),
        ("timestamp", UTC_DATETIME),
        ("accelerator", pl.String()),
        ("region", pl.String()),
        ("team", pl.String()),
        ("metric", pl.String()),
        ("value", pl.Float64()),
        ("utilization", pl.Float64()),
        ("chips", pl.Float64()),
        ("step_hours", pl.Float64()),
        ("chip_hours_observed", pl.Float64()),
        ("chip_hours_busy", pl.Float64()),
        ("source", pl.String()),
    ]
)
"""Loaded samples (``TableIngest.good``): the line they came from (see the module notes for
JSON), the series they belong to (JSON: the number of the first ``data.result`` entry with
their label set; CSV: ``accelerator|region|team|metric``), the raw ``value``,
``utilization`` as a fraction, the inferred step and the chip-hours the sample stands for."""

EFFICIENCY_SCHEMA = pl.Schema(
    [
        ("date", pl.Date()),
        ("accelerator", pl.String()),
        ("region", pl.String()),
        ("chip_hours_used", pl.Float64()),
        ("chip_hours_observed", pl.Float64()),
        ("chip_hours_busy", pl.Float64()),
        ("busy_per_used", pl.Float64()),
        ("busy_per_observed", pl.Float64()),
        ("chip_hours_allocated", pl.Float64()),
        ("busy_per_allocated", pl.Float64()),
    ]
)
"""Output of :func:`utilization_efficiency`, one row per pool-day with metrics."""

# What validation sees: the sample's fields as text, and ``line``/``series`` to trace it.
_SAMPLE_INPUT = TableSpec(
    name=TABLE,  # quarantined samples were meant for utilization_daily
    schema=pl.Schema(
        [
            ("line", pl.Int64()),
            ("series", pl.String()),
            ("timestamp", UTC_DATETIME),
            ("accelerator", pl.String()),
            ("region", pl.String()),
            ("team", pl.String()),
            ("metric", pl.String()),
            ("value", pl.Float64()),
            ("chips", pl.Float64()),
            ("source", pl.String()),
        ]
    ),
    key=("line",),
    required=("timestamp", "accelerator", "region", "metric", "value", "chips"),
)
_POOL_DAY = ("date", "accelerator", "region")
_DAILY_KEYS = ("date", "accelerator", "region", "team", "metric")


# -- units ---------------------------------------------------------------------------------


def metric_unit(name: str) -> str | None:
    """Return ``"percent"`` or ``"fraction"`` for a metric name, or None if not known."""
    known = METRIC_UNITS.get(name)
    if known is not None:
        return known
    if name.endswith(("_percent", "_pct")):
        return "percent"
    if name.startswith("DCGM_FI_PROF_") or name.endswith(("_ratio", "_fraction")):
        return "fraction"
    return None


def _unit_expr() -> pl.Expr:
    metric = pl.col("metric")
    known = metric.replace_strict(dict(METRIC_UNITS), default=None, return_dtype=pl.String)
    return (
        pl.when(known.is_not_null())
        .then(known)
        .when(metric.str.ends_with("_percent") | metric.str.ends_with("_pct"))
        .then(pl.lit("percent"))
        .when(
            metric.str.starts_with("DCGM_FI_PROF_")
            | metric.str.ends_with("_ratio")
            | metric.str.ends_with("_fraction")
        )
        .then(pl.lit("fraction"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


def _sample_checks() -> list[Check]:
    unit = _unit_expr()
    return [
        Check(
            "metric",
            pl.col("metric").is_not_null() & unit.is_null(),
            pl.format(
                "unknown metric '{}': its unit is not known (use DCGM_FI_DEV_GPU_UTIL, "
                "DCGM_FI_PROF_GR_ENGINE_ACTIVE or a name ending in _percent or _ratio)",
                pl.col("metric"),
            ),
        ),
        Check(
            "value",
            pl.col("value") < 0,
            pl.format("value must be zero or more, got {}", pl.col("value")),
        ),
        Check(
            "value",
            (unit == "percent") & (pl.col("value") > 100),
            pl.format(
                "value {} exceeds 100: {} is a percent (0-100)", pl.col("value"), pl.col("metric")
            ),
        ),
        Check(
            "value",
            (unit == "fraction") & (pl.col("value") > 1),
            pl.format(
                "value {} exceeds 1: {} is a fraction (0-1)", pl.col("value"), pl.col("metric")
            ),
        ),
        Check(
            "chips",
            pl.col("chips") <= 0,
            pl.format("chips must be positive, got {}", pl.col("chips")),
        ),
    ]


_UNIX_SECONDS_BEFORE_10000 = 253_402_300_800


def _unix_to_iso(column: str) -> pl.Expr:
    """ISO text of a Unix-seconds string; other text passes through for validation."""
    text = pl.col(column).cast(pl.String).str.strip_chars()
    number = text.cast(pl.Float64, strict=False)
    # Only instants a calendar can show (before the year 10000); a larger number stays text
    # and is quarantined as not a timestamp (formatting it would overflow).
    seconds = pl.when(
        text.str.contains(r"^\d+(\.\d+)?$") & (number < _UNIX_SECONDS_BEFORE_10000)
    ).then(number)
    instant = pl.from_epoch(
        (seconds * 1_000_000).round().cast(pl.Int64, strict=False), time_unit="us"
    )
    return pl.coalesce(
        instant.dt.replace_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ"), text
    )


# -- samples -> utilization_daily ------------------------------------------------------------


def _mode_gap(spacing: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Most common gap (ties: the shortest) per ``by`` group."""
    return (
        spacing.group_by(*by, "gap")
        .len()
        .sort([*by, "len", "gap"], descending=[False] * len(by) + [True, False])
        .group_by(*by, maintain_order=True)
        .first()
        .select(*by, pl.col("gap").alias("step_us"))
    )


def _with_steps(samples: pl.DataFrame) -> pl.DataFrame:
    """Attach ``step_us`` to each sample (null when no spacing exists anywhere in the file)."""
    spacing = (
        samples.select("series", "timestamp")
        .unique()
        .sort("series", "timestamp")
        .with_columns(
            pl.col("timestamp").diff().over("series").dt.total_microseconds().alias("gap")
        )
        .drop_nulls("gap")
        .select("series", "gap")
    )
    per_series = _mode_gap(spacing, ["series"])
    whole_file = _mode_gap(spacing.with_columns(pl.lit(0).alias("__all")), ["__all"])
    file_step = whole_file["step_us"][0] if whole_file.height else None
    return samples.join(per_series, on="series", how="left").with_columns(
        pl.col("step_us").fill_null(pl.lit(file_step, dtype=pl.Int64))
    )


def _day_segments(samples: pl.LazyFrame) -> pl.LazyFrame:
    """Split each sample's ``[timestamp, timestamp + step)`` at UTC midnights."""
    end = pl.col("timestamp") + pl.duration(microseconds=pl.col("step_us"))
    day_start = pl.col("date").cast(UTC_DATETIME)
    return (
        samples.with_columns(end.alias("__end"))
        .with_columns(
            pl.date_ranges(
                pl.col("timestamp").dt.date(),
                (pl.col("__end") - pl.duration(microseconds=1)).dt.date(),
                interval="1d",
            ).alias("date")
        )
        .explode("date")
        .with_columns(
            (
                (
                    pl.min_horizontal(pl.col("__end"), day_start + pl.duration(days=1))
                    - pl.max_horizontal(pl.col("timestamp"), day_start)
                ).dt.total_microseconds()
                / _HOUR_US
            ).alias("__hours"),
            (pl.col("date") == pl.col("timestamp").dt.date()).alias("__starts_here"),
        )
    )


def _daily(samples: pl.DataFrame, source: str) -> pl.DataFrame:
    observed = pl.col("chips") * pl.col("__hours")
    daily = (
        _day_segments(samples.lazy())
        .group_by(*_DAILY_KEYS)
        .agg(
            observed.sum().alias("chip_hours_observed"),
            (observed * pl.col("utilization")).sum().alias("chip_hours_busy"),
            pl.col("__starts_here").sum().cast(pl.Int64).alias("samples"),
        )
        .with_columns(pl.lit(source).alias("source"))
        .select(UTILIZATION_DAILY.schema.names())
        .sort(*_DAILY_KEYS, nulls_last=False)
        .collect()
    )
    return daily.cast(dict(UTILIZATION_DAILY.schema))  # type: ignore[arg-type]


def _stepless_quarantine(rows: pl.DataFrame, source: str) -> pl.DataFrame:
    record = [c for c in _SAMPLE_INPUT.schema.names() if c not in ("line", "source")]
    return rows.select(
        pl.lit(TABLE).alias("table"),
        pl.lit(source).alias("source"),
        pl.col("line"),
        pl.lit("timestamp").alias("field"),
        pl.col("timestamp").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ").alias("value"),
        pl.lit(
            "the only sample of its series, and the file has no other series with two "
            "samples: the time it stands for (the step) cannot be inferred; export a range "
            "with at least two samples"
        ).alias("reason"),
        pl.struct([pl.col(c).cast(pl.String) for c in record]).struct.json_encode().alias("record"),
    ).cast(dict(QUARANTINE_SCHEMA))  # type: ignore[arg-type]


def _finish(
    *,
    raw: pl.DataFrame,
    source: str,
    rows_read: int,
    duplicates: int,
    blank_lines: int,
    broken: pl.DataFrame,
    checks: list[Check],
    resolver: AcceleratorResolver,
) -> TableIngest:
    """Validate raw sample text, infer steps, roll up per day, and reconcile."""
    validated = validate(raw, _SAMPLE_INPUT, source=source, checks=checks, resolver=resolver)
    good = validated.good.with_columns(
        pl.coalesce(
            "series",
            pl.concat_str(
                [pl.col(c).fill_null("") for c in ("accelerator", "region", "team", "metric")],
                separator="|",
            ),
        ).alias("series")
    )
    good = _with_steps(good)
    stepless = good.filter(pl.col("step_us").is_null())
    good = good.filter(pl.col("step_us").is_not_null())
    unit = _unit_expr()
    step_hours = pl.col("step_us") / _HOUR_US
    good = good.with_columns(
        pl.when(unit == "percent")
        .then(pl.col("value") / 100.0)
        .otherwise(pl.col("value"))
        .alias("utilization"),
        step_hours.alias("step_hours"),
        (pl.col("chips") * step_hours).alias("chip_hours_observed"),
    ).with_columns((pl.col("chip_hours_observed") * pl.col("utilization")).alias("chip_hours_busy"))
    daily = _daily(good, source)
    samples = good.sort("line").select(METRIC_SAMPLES.names()).cast(dict(METRIC_SAMPLES))  # type: ignore[arg-type]
    quarantine = pl.concat(
        [validated.quarantine, broken, _stepless_quarantine(stepless, source)]
    ).sort("line")
    totals = {
        "samples_in": float(samples.height),
        "samples_out": float(daily["samples"].sum()),
        "chip_hours_observed_in": float(samples["chip_hours_observed"].sum()),
        "chip_hours_observed_out": float(daily["chip_hours_observed"].sum()),
        "chip_hours_busy_in": float(samples["chip_hours_busy"].sum()),
        "chip_hours_busy_out": float(daily["chip_hours_busy"].sum()),
    }
    return TableIngest(
        table=TABLE,
        source=source,
        good=samples,
        quarantine=quarantine,
        rows_read=rows_read,
        duplicates_dropped=duplicates,
        blank_lines=blank_lines,
        totals=totals,
        extra_tables={TABLE: daily},
    )


# -- Prometheus range-query JSON ---------------------------------------------------------------


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise WorkbenchError("file not found", file=path, fix="check the path and try again")
    if path.is_dir():
        raise WorkbenchError("is a folder, not a file", file=path, fix="name a file inside it")
    try:
        with path.open("r", encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise WorkbenchError(
            f"not valid JSON: {exc.msg} at column {exc.colno}",
            file=path,
            line=exc.lineno,
            fix="save the raw body of the /api/v1/query_range response",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"cannot read file: {exc}", file=path) from None


def _range_result(document: Any, path: Path) -> list[Any]:
    """The ``data.result`` list of a successful matrix response, or a readable error."""
    fix = "export a range query: GET /api/v1/query_range?query=DCGM_FI_DEV_GPU_UTIL&start=..."
    if not isinstance(document, dict):
        raise WorkbenchError(
            "not a Prometheus API response (expected a JSON object)", file=path, fix=fix
        )
    status = document.get("status")
    if status != "success":
        detail = document.get("error") or f"status is {json.dumps(status)}"
        raise WorkbenchError(
            f"the query did not succeed: {detail}",
            file=path,
            field="status",
            fix="re-run the query until Prometheus answers status 'success'",
        )
    data = document.get("data")
    result_type = data.get("resultType") if isinstance(data, dict) else None
    if result_type != "matrix":
        raise WorkbenchError(
            f"resultType is {json.dumps(result_type)}, not 'matrix': "
            "only range queries carry the samples over time",
            file=path,
            field="data.resultType",
            fix=fix,
        )
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, list):
        raise WorkbenchError(
            "data.result is not a list of series", file=path, field="data.result", fix=fix
        )
    return result


def _label_names(label_map: Mapping[str, str] | None) -> dict[str, tuple[str, ...]]:
    names = dict(DEFAULT_LABELS)
    for target, label in (label_map or {}).items():
        if target not in DEFAULT_LABELS:
            raise WorkbenchError(
                f"label_map names '{target}', which is not a field read from labels",
                field="label_map",
                fix=f"map only {', '.join(DEFAULT_LABELS)} to label names",
            )
        names[target] = (label,)
    return names


def _first_label(labels: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = labels.get(name)
        if value is not None and str(value).strip():
            return str(value)
    return None


def _canonical_accelerator(name: str, resolver: AcceleratorResolver) -> str:
    aliases = resolver.alias_map()
    canonical = aliases.get(normalize_alias(name))
    if canonical is None:
        raise WorkbenchError(
            f"unknown accelerator '{name}'",
            field="accelerator",
            fix=f"use one of {', '.join(sorted(set(aliases.values())))} or add it to the catalog",
        )
    return canonical


def _json_raw_samples(
    result: list[Any],
    path: Path,
    *,
    names: Mapping[str, tuple[str, ...]],
    accelerator: str | None,
    region: str | None,
    metric: str | None,
) -> pl.DataFrame:
    """One row of text per ``[timestamp, value]`` pair, in file order.

    ``series`` is the number of the first entry of ``data.result`` with the sample's label
    set (repeated label sets are one series); ``labels`` holds the set itself, as JSON, for
    quarantined records.
    """
    per_sample: dict[str, list[Any]] = {
        "line": [],
        "series_number": [],
        "unix_time": [],
        "value": [],
        "__not_pair": [],
    }
    per_series: dict[str, list[Any]] = {
        key: [] for key in ("series_number", "series", "labels", *names)
    }
    first_of: dict[str, int] = {}
    for series_number, entry in enumerate(result, start=1):
        where = f"data.result[{series_number - 1}]"
        labels = entry.get("metric", {}) if isinstance(entry, dict) else None
        values = entry.get("values") if isinstance(entry, dict) else None
        if not isinstance(labels, dict) or not isinstance(values, list):
            raise WorkbenchError(
                f"series {series_number} is not an object with 'metric' labels and a 'values' list",
                file=path,
                field=where,
                fix="export the raw range-query response without editing it",
            )
        if len(values) >= SERIES_LINE_BASE:
            raise WorkbenchError(
                f"series {series_number} has {len(values):,} samples, more than one response "
                f"can hold ({SERIES_LINE_BASE - 1:,})",
                file=path,
                field=f"{where}.values",
                fix="split the query into shorter time ranges",
            )
        label_text = json.dumps(labels, sort_keys=True, separators=(",", ":"))
        per_series["series_number"].append(series_number)
        per_series["series"].append(str(first_of.setdefault(label_text, series_number)))
        per_series["labels"].append(label_text)
        per_series["accelerator"].append(accelerator or _first_label(labels, names["accelerator"]))
        per_series["region"].append(region or _first_label(labels, names["region"]))
        per_series["team"].append(_first_label(labels, names["team"]))
        per_series["metric"].append(metric or _first_label(labels, names["metric"]))

        count = len(values)
        base = series_number * SERIES_LINE_BASE
        per_sample["line"].extend(range(base + 1, base + count + 1))
        per_sample["series_number"].extend([series_number] * count)
        pairs = all(type(sample) is list and len(sample) == 2 for sample in values)
        if pairs and count:
            stamps, readings = zip(*values, strict=True)
            per_sample["unix_time"].extend(None if t is None else str(t) for t in stamps)
            per_sample["value"].extend(None if v is None else str(v) for v in readings)
            per_sample["__not_pair"].extend([False] * count)
            continue
        for sample in values:
            pair = isinstance(sample, list) and len(sample) == 2
            per_sample["unix_time"].append(
                str(sample[0]) if pair and sample[0] is not None else None
            )
            per_sample["value"].append(str(sample[1]) if pair and sample[1] is not None else None)
            per_sample["__not_pair"].append(not pair)
    samples = pl.DataFrame(
        per_sample,
        schema={
            "line": pl.Int64,
            "series_number": pl.Int64,
            "unix_time": pl.String,
            "value": pl.String,
            "__not_pair": pl.Boolean,
        },
    )
    series = pl.DataFrame(
        per_series,
        schema={"series_number": pl.Int64}
        | {k: pl.String for k in per_series if k != "series_number"},
    )
    return (
        samples.join(series, on="series_number", how="left", maintain_order="left")
        .drop("series_number")
        .with_columns(_unix_to_iso("unix_time").alias("timestamp"), pl.lit("1").alias("chips"))
    )


def _json_checks(names: Mapping[str, tuple[str, ...]]) -> list[Check]:
    checks = []
    for field in ("accelerator", "region"):
        labels = " or ".join(f"'{n}'" for n in names[field])
        checks.append(
            Check(
                field,
                pl.col(f"{field}__raw").is_null(),
                pl.lit(
                    f"the series has no {labels} label: pass {field}= for the file, or "
                    f"label_map={{'{field}': LABEL}}"
                ),
            )
        )
    checks.append(
        Check(
            "value",
            pl.col("__not_pair"),
            pl.lit("the sample is not a [timestamp, value] pair"),
        )
    )
    checks.append(
        Check(
            "timestamp",
            pl.col("__conflict"),
            pl.lit(
                "an earlier sample of this series has the same time with another value: "
                "one chip cannot be observed twice"
            ),
        )
    )
    return checks


def ingest_prometheus_json(
    path: Path,
    *,
    resolver: AcceleratorResolver,
    source: str,
    region: str | None = None,
    accelerator: str | None = None,
    label_map: Mapping[str, str] | None = None,
    metric: str | None = None,
) -> TableIngest:
    """Read a Prometheus range-query response of per-GPU utilization into samples and days.

    ``accelerator`` (an id or alias), ``region`` and ``metric`` apply to every series of the
    file, overriding its labels; without them they come from the labels in
    :data:`DEFAULT_LABELS` (``modelName``; ``region`` then ``cluster``; ``__name__``), or from
    the single label ``label_map`` names for the field (``{"region": "zone"}``). ``team``
    comes from the ``team`` or ``namespace`` label and is null (the whole pool) without one.
    Each series is one chip. See the module notes for the result's reconciliation.
    """
    names = _label_names(label_map)
    if accelerator is not None:
        accelerator = _canonical_accelerator(accelerator, resolver)
    result = _range_result(_read_json(path), path)
    raw = _json_raw_samples(
        result, path, names=names, accelerator=accelerator, region=region, metric=metric
    )
    rows_read = raw.height
    first = raw.select(pl.struct("series", "timestamp", "value").is_first_distinct()).to_series()
    raw = raw.filter(first)
    raw = raw.with_columns(
        (
            pl.col("timestamp").is_not_null()
            & ~pl.struct("series", "timestamp").is_first_distinct()
        ).alias("__conflict")
    )
    return _finish(
        raw=raw,
        source=source,
        rows_read=rows_read,
        duplicates=int((~first).sum()),
        blank_lines=0,
        broken=pl.DataFrame(schema=QUARANTINE_SCHEMA),
        checks=[*_sample_checks(), *_json_checks(names)],
        resolver=resolver,
    )


# -- CSV ------------------------------------------------------------------------------------


def ingest_utilization_csv(
    path: Path, *, resolver: AcceleratorResolver, source: str
) -> TableIngest:
    """Read a utilization CSV into samples and days.

    Columns: ``timestamp, accelerator, region, metric, value``, and optionally ``chips``
    (devices the value averages over) and ``team``. Without a ``chips`` column each value
    stands for one chip; with one, an empty cell is quarantined rather than guessed.
    Timestamps are ISO 8601 (``Z``, an offset, or none for UTC) or Unix seconds. A series is
    one accelerator, region, team and metric; rows at the same time in one series are
    separate device groups and add up.
    """
    table = read_delimited(path, required=UTILIZATION_CSV_REQUIRED, optional=())
    frame = table.frame
    if "chips" not in table.header:
        frame = frame.with_columns(pl.lit("1").alias("chips"))
    if "team" not in table.header:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("team"))
    first = frame.select(pl.struct(list(table.header)).is_first_distinct()).to_series()
    frame = frame.filter(first)
    sound, broken = split_broken_rows(frame, table=TABLE, source=source)
    sound = sound.with_columns(
        _unix_to_iso("timestamp").alias("timestamp"),
        pl.lit(None, dtype=pl.String).alias("series"),
    )
    return _finish(
        raw=sound,
        source=source,
        rows_read=table.rows_read,
        duplicates=int((~first).sum()),
        blank_lines=table.blank_lines,
        broken=broken,
        checks=_sample_checks(),
        resolver=resolver,
    )


# -- using the daily table ------------------------------------------------------------------


def _require_columns(frame: pl.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise WorkbenchError(
            f"{name} is missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
            field=missing[0],
            fix=f"pass a frame with the {name} columns",
        )


def _covering_view(utilization_daily: pl.DataFrame) -> pl.DataFrame:
    """Per pool-day, the rows of the one source and metric that observed the most.

    Two metrics (GPU_UTIL and GR_ENGINE_ACTIVE) or two exports (a pool-wide CSV and a sample
    of its GPUs) of one pool-day watch the same chips: adding them would count chips twice,
    so the widest view (most chip-hours observed; ties: source, then metric name) is used.
    """
    views = (
        utilization_daily.group_by(*_POOL_DAY, "source", "metric")
        .agg(pl.col("chip_hours_observed").sum().alias("__observed"))
        .sort(
            [*_POOL_DAY, "__observed", "source", "metric"],
            descending=[False, False, False, True, False, False],
        )
        .group_by(*_POOL_DAY, maintain_order=True)
        .first()
        .select(*_POOL_DAY, "source", "metric")
    )
    return utilization_daily.join(views, on=[*_POOL_DAY, "source", "metric"], how="semi")


def fill_usage_from_metrics(
    usage_daily: pl.DataFrame, utilization_daily: pl.DataFrame
) -> pl.DataFrame:
    """Return ``usage_daily`` plus usage for pool-days that only metrics saw.

    For each pool-day (date, accelerator, region) with utilization rows and no
    ``usage_daily`` row at all, one row per team of the metric (``unknown`` when it has none)
    is appended: workload ``unknown``, ``chip_hours_used`` = busy chip-hours,
    ``chip_hours_queued`` 0 (metrics cannot see waiting jobs), ``chip_hours_allocated`` null,
    ``peak_chips`` = chip-hours observed / 24 (the day's average observed chips: an upper
    bound on the busy chips and all a daily roll-up can say about concurrency) and the
    utilization row's ``source``. When several sources or metrics cover a pool-day, only the
    widest is used (see :func:`_covering_view`).

    Pool-days with job records win: the input rows come back unchanged, first and in their
    order, and none is added to their pool-days. Filling twice adds nothing more.
    """
    _require_columns(usage_daily, USAGE_DAILY.schema.names(), "usage_daily")
    _require_columns(utilization_daily, UTILIZATION_DAILY.schema.names(), "utilization_daily")
    with_jobs = usage_daily.select(*_POOL_DAY).unique()
    filled = (
        _covering_view(utilization_daily)
        .join(with_jobs, on=list(_POOL_DAY), how="anti")
        .with_columns(pl.col("team").fill_null("unknown"))
        .group_by(*_POOL_DAY, "team", "source")
        .agg(pl.col("chip_hours_busy").sum(), pl.col("chip_hours_observed").sum())
        .select(
            "date",
            "accelerator",
            "region",
            "team",
            pl.lit("unknown").alias("workload"),
            pl.col("chip_hours_busy").alias("chip_hours_used"),
            pl.lit(None, dtype=pl.Float64).alias("chip_hours_allocated"),
            pl.lit(0.0).alias("chip_hours_queued"),
            (pl.col("chip_hours_observed") / 24.0).alias("peak_chips"),
            "source",
        )
        .sort(*_POOL_DAY, "team")
    )
    schema = dict(USAGE_DAILY.schema)
    return pl.concat(
        [
            usage_daily.select(USAGE_DAILY.schema.names()).cast(schema),  # type: ignore[arg-type]
            filled.cast(schema),  # type: ignore[arg-type]
        ]
    )


def utilization_efficiency(
    usage_daily: pl.DataFrame,
    utilization_daily: pl.DataFrame,
    allocations_daily: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """How busy the chips were, per pool-day that has utilization metrics.

    * ``chip_hours_used``: chip-hours jobs held (``usage_daily``; rows whose ``source`` is a
      utilization source, i.e. filled by :func:`fill_usage_from_metrics`, are not jobs and
      are left out); 0 when no job ran;
    * ``chip_hours_observed``, ``chip_hours_busy``: the widest metric view of the pool-day;
    * ``busy_per_used``: of the chips jobs held, how busy they were (busy / used; above 1
      when metrics see work the scheduler did not record; null when nothing was used);
    * ``busy_per_observed``: mean utilization of the chips the metric watched, which is the
      figure to read when metrics cover only part of the pool;
    * ``chip_hours_allocated``, ``busy_per_allocated``: when ``allocations_daily`` (date,
      accelerator, region, ``chip_hours_allocated``, e.g. from
      ``workbench.usage.allocated_daily``) is given; null otherwise.

    Rows come sorted by date, accelerator and region, with :data:`EFFICIENCY_SCHEMA`.
    """
    _require_columns(usage_daily, [*_POOL_DAY, "chip_hours_used", "source"], "usage_daily")
    _require_columns(utilization_daily, UTILIZATION_DAILY.schema.names(), "utilization_daily")
    metric_sources = utilization_daily["source"].unique().to_list()
    used = (
        usage_daily.filter(~pl.col("source").is_in(metric_sources))
        .group_by(*_POOL_DAY)
        .agg(pl.col("chip_hours_used").sum())
    )
    busy = (
        _covering_view(utilization_daily)
        .group_by(*_POOL_DAY)
        .agg(pl.col("chip_hours_observed").sum(), pl.col("chip_hours_busy").sum())
    )
    frame = busy.join(used, on=list(_POOL_DAY), how="left").with_columns(
        pl.col("chip_hours_used").fill_null(0.0)
    )
    if allocations_daily is not None:
        _require_columns(
            allocations_daily, [*_POOL_DAY, "chip_hours_allocated"], "allocations_daily"
        )
        allocated = allocations_daily.group_by(*_POOL_DAY).agg(pl.col("chip_hours_allocated").sum())
        frame = frame.join(allocated, on=list(_POOL_DAY), how="left")
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("chip_hours_allocated"))

    def ratio(numerator: str, denominator: str) -> pl.Expr:
        return pl.when(pl.col(denominator) > 0).then(pl.col(numerator) / pl.col(denominator))

    return (
        frame.with_columns(
            ratio("chip_hours_busy", "chip_hours_used").alias("busy_per_used"),
            ratio("chip_hours_busy", "chip_hours_observed").alias("busy_per_observed"),
            ratio("chip_hours_busy", "chip_hours_allocated").alias("busy_per_allocated"),
        )
        .select(EFFICIENCY_SCHEMA.names())
        .cast(dict(EFFICIENCY_SCHEMA))  # type: ignore[arg-type]
        .sort(*_POOL_DAY)
    )
