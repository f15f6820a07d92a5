"""Write the sample fleet as the raw exports a capacity team receives, defects included.

Every planted defect is listed in ``truth/defects.csv`` with its file, line, kind, the outcome
a correct ingest must reach (loaded, quarantined, duplicate, skipped) and the field at fault,
so tests can check each one.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workbench.sample_fleet.demand import Fleet, Scale, series_frame
from workbench.sample_fleet.fleet import HISTORY_END, HISTORY_START, REGIONS, SKUS
from workbench.sample_fleet.jobs import JobSet
from workbench.schema import JOB_RECORDS

__all__ = ["JOB_COLUMNS", "write_exports"]

JOB_COLUMNS = tuple(JOB_RECORDS.schema.names())
_CHUNK = 250_000


def _iso(seconds: pl.Expr, offset_seconds: pl.Expr, suffix: pl.Expr) -> pl.Expr:
    local = pl.from_epoch(seconds + offset_seconds, time_unit="s")
    return local.dt.strftime("%Y-%m-%dT%H:%M:%S") + suffix


def _offset_seconds(offset: str) -> int:
    sign = -1 if offset.startswith("-") else 1
    hours, minutes = offset[1:].split(":")
    return sign * (int(hours) * 3600 + int(minutes) * 60)


def _job_lines(
    fleet: Fleet, jobs: JobSet, rng: np.random.Generator
) -> tuple[pl.DataFrame, int, int]:
    """Render clean jobs as CSV lines; some use SKU aliases or local-time offsets."""
    series = fleet.series
    accel = np.array([s.accelerator for s in series])
    region = np.array([s.region for s in series])
    team = np.array([s.team for s in series])
    workload = np.array([s.workload for s in series])
    region_offset = {r.id: r.utc_offset for r in REGIONS}
    frame = pl.DataFrame(
        {
            "series": jobs.series,
            "submit": jobs.submit,
            "start": jobs.start,
            "end": jobs.end,
            "chips": jobs.chips,
        }
    ).with_row_index("n", offset=1)
    frame = frame.with_columns(
        pl.Series("accelerator", accel[jobs.series]),
        pl.Series("region", region[jobs.series]),
        pl.Series("team", team[jobs.series]),
        pl.Series("workload", workload[jobs.series]),
    )
    # Two clusters export local time with an offset: Tokyo always, Amsterdam during 2025.
    year_2025 = (pl.col("start") >= 1735689600) & (pl.col("start") < 1767225600)
    local = (pl.col("region") == "asia-northeast1") | (
        (pl.col("region") == "europe-west4") & year_2025
    )
    offset_text = pl.col("region").replace_strict(region_offset, default="+00:00")
    offset_secs = pl.col("region").replace_strict(
        {k: _offset_seconds(v) for k, v in region_offset.items()}, default=0
    )
    frame = frame.with_columns(
        pl.when(local).then(offset_secs).otherwise(0).alias("__off"),
        pl.when(local).then(offset_text).otherwise(pl.lit("Z")).alias("__suffix"),
    )
    # About 3 in 100 rows name the SKU by an alias, as mixed exports do.
    alias_pick = rng.random(frame.height)
    alias_index = rng.integers(0, 4, frame.height)
    aliases = {s.id: list(s.aliases) for s in SKUS}
    alias_column = [
        aliases[a][i % len(aliases[a])] if p < 0.03 else a
        for a, p, i in zip(frame["accelerator"].to_list(), alias_pick, alias_index, strict=True)
    ]
    frame = frame.with_columns(pl.Series("accelerator_text", alias_column))
    lines = frame.select(
        pl.format("j{}", pl.col("n").cast(pl.String).str.zfill(8)).alias("job_id"),
        _iso(pl.col("submit"), pl.col("__off"), pl.col("__suffix")).alias("submit_time"),
        _iso(pl.col("start"), pl.col("__off"), pl.col("__suffix")).alias("start_time"),
        _iso(pl.col("end"), pl.col("__off"), pl.col("__suffix")).alias("end_time"),
        pl.col("chips").cast(pl.String),
        pl.col("accelerator_text").alias("accelerator"),
        "region",
        "team",
        "workload",
    )
    alias_rows = int(np.sum(alias_pick < 0.03))
    offset_rows = int(frame.select(local.sum()).item())
    return lines, alias_rows, offset_rows


def _csv_line(fields: Sequence[str]) -> str:
    return ",".join(f'"{f}"' if ("," in f or '"' in f) else f for f in fields)


class _GzipText(io.StringIO):
    """Text collected in memory and written as gzip on close.

    The gzip header gets mtime 0 and no file name, so the bytes are identical run to run.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path

    def close(self) -> None:
        if not self.closed:
            self._path.write_bytes(gzip.compress(self.getvalue().encode("utf-8"), mtime=0))
        super().close()


def _open_text(path: Path, compress: bool) -> io.TextIOBase:
    if compress:
        return _GzipText(path)
    return path.open("w", encoding="utf-8", newline="\n")


def _write_jobs(
    out: Path, fleet: Fleet, jobs: JobSet, rng: np.random.Generator, compress: bool
) -> list[dict[str, Any]]:
    lines_frame, alias_rows, offset_rows = _job_lines(fleet, jobs, rng)
    clean = lines_frame.select(pl.concat_str(list(JOB_COLUMNS), separator=",").alias("line"))[
        "line"
    ]
    n = clean.len()
    per_kind = max(6, n // 5000)
    insertions: list[tuple[int, int, str, dict[str, Any]]] = []
    sequence = 0

    def add(position: int, text: str, kind: str, expected: str, field: str | None) -> None:
        nonlocal sequence
        sequence += 1
        insertions.append(
            (position, sequence, text, {"kind": kind, "expected": expected, "field": field})
        )

    picks = rng.choice(n, size=per_kind * 8, replace=False)
    base_rows = lines_frame[np.sort(picks).tolist()]
    variants = [
        ("end_before_start", "quarantined", "end_time"),
        ("negative_chips", "quarantined", "chips"),
        ("non_numeric_chips", "quarantined", "chips"),
        ("missing_team", "quarantined", "team"),
        ("unknown_accelerator", "quarantined", "accelerator"),
        ("impossible_timestamp", "quarantined", "start_time"),
    ]
    words = ["eight", "n/a", "?", "8 gpus"]
    for k, row in enumerate(base_rows.iter_rows(named=True)):
        position = int(np.sort(picks)[k]) + 1
        kind_index = k // per_kind
        if kind_index < len(variants):
            kind, expected, field = variants[kind_index]
            bad = dict(row)
            bad["job_id"] = f"{row['job_id']}-r{kind_index + 1}"
            if kind == "end_before_start":
                bad["end_time"], bad["start_time"] = row["start_time"], row["end_time"]
                bad["submit_time"] = (
                    row["submit_time"] if row["submit_time"] <= row["end_time"] else row["end_time"]
                )
                if row["start_time"] == row["end_time"]:
                    continue
            elif kind == "negative_chips":
                bad["chips"] = f"-{row['chips']}"
            elif kind == "non_numeric_chips":
                bad["chips"] = words[k % len(words)]
            elif kind == "missing_team":
                bad["team"] = ""
            elif kind == "unknown_accelerator":
                bad["accelerator"] = "AMD MI300X"
            elif kind == "impossible_timestamp":
                bad["start_time"] = "2025-02-30T10:00:00Z"
            add(position, _csv_line([bad[c] for c in JOB_COLUMNS]), kind, expected, field)
        elif kind_index == len(variants):
            add(
                position,
                _csv_line([row[c] for c in JOB_COLUMNS]),
                "duplicate_row",
                "duplicate",
                None,
            )
        else:
            add(position, "", "blank_line", "skipped", None)
    insertions.sort(key=lambda item: (item[0], item[1]))

    name = "jobs/jobs.csv.gz" if compress else "jobs/jobs.csv"
    path = out / name
    path.parent.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    line_number = 1
    cursor = 0
    with _open_text(path, compress) as handle:
        handle.write(",".join(JOB_COLUMNS) + "\n")

        def write_clean(until: int) -> None:
            nonlocal cursor, line_number
            while cursor < until:
                stop = min(until, cursor + _CHUNK)
                chunk = clean.slice(cursor, stop - cursor).to_list()
                handle.write("\n".join(chunk) + "\n")
                line_number += len(chunk)
                cursor = stop

        for position, _, text, meta in insertions:
            write_clean(position)
            handle.write(text + "\n")
            line_number += 1
            records.append({"file": name, "line": line_number, **meta})
        write_clean(n)
    records.append(
        {
            "file": name,
            "line": None,
            "kind": f"alias_accelerator x{alias_rows}",
            "expected": "loaded",
            "field": "accelerator",
        }
    )
    records.append(
        {
            "file": name,
            "line": None,
            "kind": f"local_time_offset x{offset_rows}",
            "expected": "loaded",
            "field": "start_time",
        }
    )
    return records


def _day(index: int) -> date:
    return HISTORY_START + timedelta(days=index)


def _write_csv(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path, line_terminator="\n", float_precision=2)


def _inventory(fleet: Fleet) -> pl.DataFrame:
    rows = []
    for p, pool in enumerate(fleet.pools):
        for t in range(0, fleet.history_days):
            day = _day(t)
            if day.weekday() != 0 or fleet.installed[p, t] <= 0:
                continue
            rows.append(
                (
                    day,
                    pool.accelerator,
                    pool.region,
                    int(fleet.installed[p, t]),
                    int(fleet.healthy[p, t]),
                )
            )
    return pl.DataFrame(
        rows,
        schema=["date", "accelerator", "region", "installed_chips", "healthy_chips"],
        orient="row",
    ).sort("date", "accelerator", "region")


def _allocations(fleet: Fleet, rng: np.random.Generator) -> pl.DataFrame:
    keys = sorted({(s.team, s.accelerator, s.region) for s in fleet.series})
    factor = {k: float(rng.uniform(1.0, 1.8)) for k in keys}
    kind_of: dict[tuple[str, str, str], set[str]] = {}
    for s in fleet.series:
        kind_of.setdefault((s.team, s.accelerator, s.region), set()).add(s.workload)
    quarters = [date(y, m, 1) for y in range(2023, 2027) for m in (1, 4, 7, 10)]
    quarters = [q for q in quarters if date(2023, 10, 1) <= q <= date(2026, 10, 1)]
    rows = []
    for team, accelerator, region in keys:
        members = [
            i
            for i, s in enumerate(fleet.series)
            if (s.team, s.accelerator, s.region) == (team, accelerator, region)
        ]
        total = fleet.demand_chips[members].sum(axis=0)
        for q in quarters:
            q_end = date(q.year + (q.month == 10), (q.month + 2) % 12 + 1, 1) - timedelta(days=1)
            a = max((q - HISTORY_START).days, 0)
            b = min((q_end - HISTORY_START).days + 1, fleet.history_days)
            window = total[a:b]
            if window.size == 0 or window.max() < 1.0:
                continue
            active = window[window > 0]
            chips = math.ceil(float(np.quantile(active, 0.9)) * factor[(team, accelerator, region)])
            kind = (
                "reservation"
                if kind_of[(team, accelerator, region)] & {"training", "serving"}
                else "quota"
            )
            rows.append(
                (team, accelerator, region, max(q, HISTORY_START), q_end, float(chips), kind)
            )
    return pl.DataFrame(
        rows,
        schema=["team", "accelerator", "region", "valid_from", "valid_to", "chips", "kind"],
        orient="row",
    )


def _metrics(fleet: Fleet, scale: Scale, rng: np.random.Generator) -> pl.DataFrame:
    """Hourly utilization per pool, averaged over the pool's healthy chips (``chips``)."""
    rows = []
    used = fleet.used_chips
    first = fleet.history_days - scale.metric_days
    for p, pool in enumerate(fleet.pools):
        members = fleet.pool_of_series == p
        efficiency = float(rng.uniform(0.55, 0.9))
        vendor = next(s.vendor for s in SKUS if s.id == pool.accelerator)
        metric = "DCGM_FI_DEV_GPU_UTIL" if vendor == "NVIDIA" else "tpu_duty_cycle_percent"
        for t in range(first, fleet.history_days):
            healthy = fleet.healthy[p, t]
            if healthy <= 0:
                continue
            busy = used[members, t].sum() / healthy
            hours = np.arange(24)
            ripple = 1.0 + 0.08 * np.sin(2 * np.pi * (hours - 9) / 24)
            values = np.clip(100 * busy * efficiency * ripple + rng.normal(0, 2.0, 24), 0, 100)
            stamp = np.datetime64(_day(t)).astype("datetime64[s]")
            for h in range(24):
                rows.append(
                    (
                        str(stamp + np.timedelta64(h, "h")) + "Z",
                        pool.accelerator,
                        pool.region,
                        metric,
                        round(float(values[h]), 1),
                        int(healthy),
                    )
                )
    return pl.DataFrame(
        rows,
        schema=["timestamp", "accelerator", "region", "metric", "value", "chips"],
        orient="row",
    )


_DCGM_POOL = ("h100-80gb", "us-central1")
_DCGM_MODEL = "NVIDIA H100 80GB HBM3"
_DCGM_NODES = 2
_DCGM_GPUS_PER_NODE = 8
_DCGM_DAYS = 2
_DCGM_STEP_SECONDS = 300
_DCGM_MEAN_HOLD_STEPS = 72
"""A job holds a GPU for six hours on average (72 five-minute steps)."""


def _dcgm_json(fleet: Fleet, metrics: pl.DataFrame, rng: np.random.Generator) -> str:
    """A Prometheus range-query response of ``DCGM_FI_DEV_GPU_UTIL`` for 16 GPUs of one pool.

    Two nodes of eight H100s in us-central1, the last two days of history at five-minute
    steps, as ``GET /api/v1/query_range`` returns them (one series per GPU, no pod labels:
    the pool-wide view). Each GPU is held by a job or idle (0 %), flipping like a two-state
    Markov chain that holds it the pool's share of healthy chips in use that day; a held GPU
    runs at the hour's pool value in ``utilization.csv`` divided by that share, so the 16
    GPUs average about what the pool CSV says. Written one series per line, keys sorted,
    values as integer-percent strings, so the bytes are the same for a seed.
    """
    accelerator, region = _DCGM_POOL
    pool = next(
        i for i, p in enumerate(fleet.pools) if (p.accelerator, p.region) == (accelerator, region)
    )
    members = fleet.pool_of_series == pool
    hours = _DCGM_DAYS * 24
    hourly = metrics.filter(
        (pl.col("accelerator") == accelerator) & (pl.col("region") == region)
    ).tail(hours)
    first_day = fleet.history_days - _DCGM_DAYS
    if hourly.height != hours or not hourly["timestamp"][0].startswith(str(_day(first_day))):
        raise ValueError(f"{accelerator} in {region} has no metrics for the last {hours} hours")
    share = np.array(
        [
            fleet.used_chips[members, t].sum() / fleet.healthy[pool, t]
            for t in range(first_day, fleet.history_days)
        ]
    ).clip(0.05, 1.0)
    steps_per_hour = 3600 // _DCGM_STEP_SECONDS
    steps = hours * steps_per_hour
    step_share = np.repeat(share, 24 * steps_per_hour)
    held_value = np.repeat(hourly["value"].to_numpy(), steps_per_hour) / step_share
    release = 1.0 / _DCGM_MEAN_HOLD_STEPS
    # Chosen so that a GPU is held the day's share of the time (the chain's stationary state).
    grab = np.minimum(1.0, release * step_share / np.maximum(1.0 - step_share, 1e-9))
    start = int(np.datetime64(_day(first_day)).astype("datetime64[s]").astype(np.int64))
    result: list[dict[str, Any]] = []
    for node in range(_DCGM_NODES):
        hostname = f"gke-uc1-train-h100-{node + 1:03d}"
        for gpu in range(_DCGM_GPUS_PER_NODE):
            uuid_hex = rng.bytes(16).hex()
            held = rng.random() < step_share[0]
            flips = rng.random(steps)
            noise = rng.normal(0.0, 4.0, steps)
            values: list[list[Any]] = []
            for k in range(steps):
                if k:
                    held = flips[k] >= release if held else flips[k] < grab[k]
                percent = int(np.clip(round(held_value[k] + noise[k]), 0, 100)) if held else 0
                values.append([start + k * _DCGM_STEP_SECONDS, str(percent)])
            labels = {
                "DCGM_FI_DRIVER_VERSION": "550.90.07",
                "Hostname": hostname,
                "UUID": (
                    f"GPU-{uuid_hex[:8]}-{uuid_hex[8:12]}-{uuid_hex[12:16]}-"
                    f"{uuid_hex[16:20]}-{uuid_hex[20:]}"
                ),
                "__name__": "DCGM_FI_DEV_GPU_UTIL",
                "cluster": "gke-uc1-train",
                "device": f"nvidia{gpu}",
                "gpu": str(gpu),
                "instance": f"10.128.{node}.{10 + gpu}:9400",
                "job": "dcgm-exporter",
                "modelName": _DCGM_MODEL,
                "pci_bus_id": f"00000000:{0x18 + 0x10 * gpu:02X}:00.0",
                "region": region,
            }
            result.append({"metric": labels, "values": values})
    series = ",\n".join(json.dumps(s, sort_keys=True, separators=(",", ":")) for s in result)
    return '{"data":{"result":[\n' + series + '\n],"resultType":"matrix"},"status":"success"}\n'


def _billing(fleet: Fleet, rng: np.random.Generator) -> pl.DataFrame:
    price = {s.id: s for s in SKUS}
    factor = {r.id: r.cloud_price_factor for r in REGIONS}
    used = fleet.used_chips
    unmet = fleet.demand_chips - used
    rows: list[dict[str, Any]] = []
    resource = 0
    for p, pool in enumerate(fleet.pools):
        members = np.flatnonzero(fleet.pool_of_series == p)
        sku = price[pool.accelerator]
        service = "Cloud TPU" if sku.vendor == "Google" else "Compute Engine"
        for t in range(fleet.history_days):
            if fleet.run_ratio[p, t] >= 1.0:
                continue
            # A quarter of the unmet demand bursts to the cloud on demand.
            hours = round(0.25 * float(unmet[members, t].sum()) * 24.0, 1)
            if hours < 1.0:
                continue
            team = fleet.series[members[int(np.argmax(unmet[members, t]))]].team
            rate = round(sku.on_demand_usd_per_hour * factor[pool.region], 4)
            cost = round(hours * rate, 2)
            resource += 1
            rows.append(
                {
                    "day": t,
                    "BilledCost": cost,
                    "EffectiveCost": cost,
                    "ListCost": cost,
                    "ServiceName": service,
                    "SkuId": sku.aliases[0],
                    "ResourceId": (
                        f"projects/fleet-burst/zones/{pool.region}-a/instances/burst-{resource:05d}"
                    ),
                    "RegionId": pool.region,
                    "PricingQuantity": hours,
                    "ConsumedQuantity": hours,
                    "ChargeCategory": "Usage",
                    "CommitmentDiscountId": None,
                    "CommitmentDiscountStatus": None,
                    "Tags": json.dumps({"team": team}),
                }
            )
    # A cloud TPU v6e commitment for search-ranking, renewed larger after a year.
    sku = price["tpu-v6e"]
    for start, end, chips, cud in (
        (date(2025, 7, 1), date(2026, 6, 30), 96, "cud-v6e-2025"),
        (date(2026, 7, 1), date(2027, 6, 30), 128, "cud-v6e-2026"),
    ):
        rate = sku.commit_1y_usd_per_hour
        for t in range(
            (start - HISTORY_START).days, min((end - HISTORY_START).days + 1, fleet.history_days)
        ):
            day = _day(t)
            committed = chips * 24.0
            use = round(committed * float(np.clip(rng.normal(0.82, 0.1), 0.3, 1.0)), 1)
            common = {
                "day": t,
                "ListCost": None,
                "ServiceName": "Cloud TPU",
                "SkuId": "TPU v6e",
                "ResourceId": f"projects/search-ranking/zones/us-central1-b/tpu/{cud}",
                "RegionId": "us-central1",
                "ChargeCategory": "Usage",
                "CommitmentDiscountId": cud,
                "Tags": json.dumps({"team": "search-ranking"}),
            }
            rows.append(
                common
                | {
                    "BilledCost": 0.0,
                    "EffectiveCost": round(use * rate, 2),
                    "ListCost": round(use * sku.on_demand_usd_per_hour, 2),
                    "PricingQuantity": use,
                    "ConsumedQuantity": use,
                    "CommitmentDiscountStatus": "Used",
                }
            )
            rows.append(
                common
                | {
                    "BilledCost": 0.0,
                    "EffectiveCost": round((committed - use) * rate, 2),
                    "PricingQuantity": round(committed - use, 1),
                    "ConsumedQuantity": None,
                    "CommitmentDiscountStatus": "Unused",
                }
            )
            if day.day == 1:
                month_days = ((day.replace(day=28) + timedelta(days=4)).replace(day=1) - day).days
                rows.append(
                    common
                    | {
                        "BilledCost": round(chips * 24.0 * month_days * rate, 2),
                        "EffectiveCost": 0.0,
                        "ChargeCategory": "Purchase",
                        "PricingQuantity": chips * 24.0 * month_days,
                        "ConsumedQuantity": None,
                        "CommitmentDiscountStatus": None,
                        "month_days": month_days,
                    }
                )
    frame = pl.DataFrame(rows, infer_schema_length=None).sort("day", "ResourceId", "ChargeCategory")
    period_start = pl.lit(HISTORY_START).cast(pl.Datetime("us")) + pl.duration(days=pl.col("day"))
    length = pl.when(pl.col("ChargeCategory") == "Purchase").then(pl.col("month_days")).otherwise(1)
    out = frame.select(
        period_start.dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("ChargePeriodStart"),
        (period_start + pl.duration(days=length))
        .dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        .alias("ChargePeriodEnd"),
        "BilledCost",
        "EffectiveCost",
        "ListCost",
        pl.lit("USD").alias("BillingCurrency"),
        "ServiceName",
        "SkuId",
        "ResourceId",
        "RegionId",
        "PricingQuantity",
        pl.lit("Hours").alias("PricingUnit"),
        "ConsumedQuantity",
        pl.when(pl.col("ConsumedQuantity").is_not_null())
        .then(pl.lit("Hours"))
        .alias("ConsumedUnit"),
        "ChargeCategory",
        "CommitmentDiscountId",
        "CommitmentDiscountStatus",
        "Tags",
    )
    # FOCUS exports write missing values as the string 'null'.
    return out.with_columns(pl.col(c).cast(pl.String).fill_null("null") for c in out.columns)


def _sku_toml() -> str:
    lines = [
        "# SKU catalog of the sample fleet: one [[accelerator]] table per SKU.",
        "# power_w: board power at typical load (vendor datasheets); perf_index: relative",
        "# throughput per chip for fungible planning, A100 80GB = 1.0 (dense BF16 peak ratio).",
        "",
    ]
    for s in SKUS:
        aliases = ", ".join(json.dumps(a) for a in s.aliases)
        lines += [
            "[[accelerator]]",
            f'id = "{s.id}"',
            f'vendor = "{s.vendor}"',
            f'family = "{s.family}"',
            f'generation = "{s.generation}"',
            f"aliases = [{aliases}]",
            f"memory_gb = {s.memory_gb:g}",
            f"power_w = {s.power_w:g}",
            f"perf_index = {s.perf_index:g}",
            f"host_cores_per_chip = {s.host_cores_per_chip:g}",
            f"storage_tb_per_chip = {s.storage_tb_per_chip:g}",
            f"network_gbps_per_chip = {s.network_gbps_per_chip:g}",
            "",
        ]
    return "\n".join(lines)


_PRICES_AS_OF = "2026-09-30"


def _price_toml() -> str:
    # Every figure's comment says what it is, where it comes from and when: a finance analyst
    # editing one figure knows what to check it against.
    lines = [
        "# Price book of the sample fleet. Edit freely: every figure carries its source and date.",
        "# Site figures per region; cloud_price_factor scales list cloud prices for the region.",
        "# An entry's `source` and `as_of` are stored with every row it produces; after an edit,",
        "# run `workbench ingest price-book` and `workbench tco` to see the new costs.",
        'source = "sample fleet defaults"',
        f"as_of = {_PRICES_AS_OF}",
        "",
    ]
    for r in REGIONS:
        lines += [
            f"[region.{r.id}]",
            f"usd_per_kwh = {r.usd_per_kwh:g}  # USD/kWh, industrial tariff of the site's grid "
            "(EIA Electric Power Monthly / Eurostat / METI averages), 2025",
            f"pue = {r.pue:g}  # site PUE, within 1.1 (hyperscaler fleet reports, 2024) to 1.5 "
            "(Uptime Institute global survey average, 2024)",
            f"facility_usd_per_kw_month = {r.facility_usd_per_kw_month:g}"
            "  # USD per kW of IT load per month, wholesale colocation rate "
            "(CBRE data center market reports), 2025",
            f"cloud_price_factor = {r.cloud_price_factor:g}  # regional list-price level against "
            f"us-central1 (provider price lists), {_PRICES_AS_OF}",
            "",
        ]
    for s in SKUS:
        estimate = " (internal estimate: TPU chips are not sold)" if s.vendor == "Google" else ""
        cloud = "Cloud TPU" if s.vendor == "Google" else "GCP/AWS"
        lines += [
            "[[price]]",
            f'accelerator = "{s.id}"',
            f"capex_usd = {s.capex_usd:g}  # USD per chip incl. server share, "
            f"vendor and OEM quotes{estimate}, {_PRICES_AS_OF}",
            "depreciation_years = 6  # straight-line; servers 5-6 years in public 10-K filings "
            "(Alphabet, Microsoft 6; Meta 5.5; Amazon 5), FY2025",
            f"lead_time_weeks = {s.lead_time_weeks:g}  # order to service, vendor and OEM quotes, "
            f"{_PRICES_AS_OF}",
            "network_storage_capex_share = 0.15  # fabric, NICs and storage as a share of capex, "
            f"sample fleet's bill of materials, {_PRICES_AS_OF}",
            "maintenance_capex_share_per_year = 0.04  # support contracts and spares a year as a "
            f"share of capex, OEM support quotes, {_PRICES_AS_OF}",
            f"on_demand_usd_per_hour = {s.on_demand_usd_per_hour:g}  # USD per chip-hour, "
            f"{cloud} on-demand list price, us-central1, Sep 2026",
            f"commit_1y_usd_per_hour = {s.commit_1y_usd_per_hour:g}  # USD per chip-hour, "
            f"{cloud} 1-year commitment list price, us-central1, Sep 2026",
            f"commit_3y_usd_per_hour = {s.commit_3y_usd_per_hour:g}  # USD per chip-hour, "
            f"{cloud} 3-year commitment list price, us-central1, Sep 2026",
            f"spot_usd_per_hour = {s.spot_usd_per_hour:g}  # USD per chip-hour, {cloud} "
            "spot/preemptible price, us-central1, Sep 2026 (moves daily)",
            f"min_order_chips = {s.min_order_chips}  # smallest purchase lot in chips, vendor "
            f"terms, {_PRICES_AS_OF}",
            f'source = "{s.price_source}; capex from vendor and OEM quotes{estimate}"',
            f"as_of = {_PRICES_AS_OF}",
            "",
        ]
    return "\n".join(lines)


def _events(fleet: Fleet) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = sorted(
        fleet.events,
        key=lambda e: (str(e["start"]), str(e["accelerator"]), str(e["team"]), str(e["name"])),
    )
    truth = pl.DataFrame(
        [{"event_id": f"EV-{i:04d}", **e} for i, e in enumerate(rows, start=1)],
        schema_overrides={"end": pl.Date, "start": pl.Date},
    )
    # One past launch in five was never announced: exports only know the others.
    unannounced = (
        (pl.col("kind") == "launch")
        & (pl.col("start") <= HISTORY_END)
        & (pl.int_range(pl.len()) % 5 == 0)
    )
    known = truth.filter(~unannounced).drop("happens")
    return known, truth


def write_exports(
    out: Path, fleet: Fleet, jobs: JobSet, scale: Scale, seed: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Write every raw export and the truth folder under ``out``; return a summary."""
    defects = _write_jobs(out, fleet, jobs, rng, scale.compress_jobs)
    _write_csv(_inventory(fleet), out / "inventory" / "inventory.csv")
    _write_csv(_allocations(fleet, rng), out / "allocations" / "allocations.csv")
    orders = pl.DataFrame(
        fleet.orders,
        schema={
            "order_id": pl.String,
            "accelerator": pl.String,
            "region": pl.String,
            "quantity": pl.Int64,
            "ordered_on": pl.Date,
            "expected_on": pl.Date,
            "delivered_on": pl.Date,
            "status": pl.String,
        },
    )
    _write_csv(orders, out / "orders" / "orders.csv")
    known, truth_events = _events(fleet)
    _write_csv(known, out / "events" / "events.csv")
    metrics = _metrics(fleet, scale, rng)
    _write_csv(metrics, out / "metrics" / "utilization.csv")
    # Its own stream, so adding the file left every other export's bytes as they were.
    (out / "metrics" / "dcgm_gpu_util.json").write_text(
        _dcgm_json(fleet, metrics, np.random.default_rng([seed, 3])), encoding="utf-8"
    )
    _write_csv(_billing(fleet, rng), out / "billing" / "focus_billing.csv")
    (out / "catalog").mkdir(parents=True, exist_ok=True)
    (out / "catalog" / "sku_catalog.toml").write_text(_sku_toml(), encoding="utf-8")
    (out / "catalog" / "price_book.toml").write_text(_price_toml(), encoding="utf-8")

    truth = out / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    _write_csv(truth_events, truth / "events.csv")
    _write_csv(
        pl.DataFrame(
            defects,
            schema={
                "file": pl.String,
                "line": pl.Int64,
                "kind": pl.String,
                "expected": pl.String,
                "field": pl.String,
            },
        ),
        truth / "defects.csv",
    )
    _write_csv(series_frame(fleet), truth / "series.csv")
    n_series, n_days = fleet.demand_chips.shape
    keys = series_frame(fleet)
    demand = pl.DataFrame(
        {
            "series": np.repeat(np.arange(n_series), n_days),
            "date": np.tile(fleet.days.astype("datetime64[D]"), n_series),
            "demand_chip_hours": (fleet.demand_chips * 24.0).ravel(),
            "pool_full": (fleet.run_ratio[fleet.pool_of_series] < 1.0).ravel(),
        }
    )
    history = fleet.history_days
    used = np.full((n_series, n_days), np.nan)
    queued = np.full((n_series, n_days), np.nan)
    used[:, :history] = jobs.used_chip_hours
    queued[:, :history] = jobs.queued_chip_hours
    demand = demand.with_columns(
        pl.Series("used_chip_hours", used.ravel()).fill_nan(None),
        pl.Series("queued_chip_hours", queued.ravel()).fill_nan(None),
        (pl.col("date") <= HISTORY_END).alias("in_history"),
    )
    demand = (
        demand.join(
            keys.with_row_index("series").with_columns(pl.col("series").cast(pl.Int64)),
            on="series",
            how="left",
        )
        .filter(pl.col("date") >= pl.col("first_day"))
        .select(
            "date",
            "accelerator",
            "region",
            "team",
            "workload",
            "demand_chip_hours",
            "used_chip_hours",
            "queued_chip_hours",
            "pool_full",
            "in_history",
        )
        .sort("accelerator", "region", "team", "workload", "date")
    )
    demand.write_parquet(truth / "demand_daily.parquet", compression="zstd", statistics=False)
    capacity = pl.DataFrame(
        {
            "date": np.tile(fleet.days.astype("datetime64[D]"), len(fleet.pools)),
            "accelerator": np.repeat([p.accelerator for p in fleet.pools], n_days),
            "region": np.repeat([p.region for p in fleet.pools], n_days),
            "installed_chips": fleet.installed.ravel().astype(np.int64),
            "healthy_chips": fleet.healthy.ravel().astype(np.int64),
            "run_ratio": fleet.run_ratio.ravel(),
        }
    ).filter(pl.col("installed_chips") > 0)
    capacity.write_parquet(truth / "capacity_daily.parquet", compression="zstd", statistics=False)
    summary = {
        "scale": scale.name,
        "seed": seed,
        "history": [HISTORY_START.isoformat(), HISTORY_END.isoformat()],
        "accelerators": len(SKUS),
        "regions": len(REGIONS),
        "pools": len(fleet.pools),
        "teams": len({s.team for s in fleet.series}),
        "series": n_series,
        "jobs": int(jobs.series.size),
        "job_chip_hours": round(float(jobs.used_chip_hours.sum()), 3),
        "queued_chip_hours": round(float(jobs.queued_chip_hours.sum()), 3),
        "pool_days_full": int((fleet.run_ratio[:, :history] < 1.0).sum()),
        "orders": orders.height,
        "late_orders": int(
            orders.filter(pl.col("delivered_on") > pl.col("expected_on") + timedelta(days=7)).height
        ),
        "events": known.height,
        "defects": pl.DataFrame(defects)
        .group_by("kind", "expected")
        .len()
        .sort("kind")
        .select(pl.format("{} ({})", "kind", "expected"), "len")
        .rows(),
    }
    (truth / "summary.json").write_text(
        json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8"
    )
    return summary
