"""Reference ingest in vectorised pandas + numpy: job records -> ``usage_daily``.

A second, independent implementation of ``pipelines.jobs`` written the way a skilled pandas
user would write it for speed, used by ``benchmarks/ingest_large.py`` to check our pipeline's
result and to time it against. Same rules as the pipeline:

* columns ``job_id, submit_time, start_time, end_time, chips, accelerator, region, team,
  workload`` (``workload`` optional), read as text; rows with the wrong number of fields are
  rejected, blank lines skipped;
* exact duplicate rows are dropped (the first copy is kept);
* a row is rejected (not counted) when ``job_id``, ``region``, ``team`` or ``accelerator`` is
  missing, a timestamp does not parse with ``TIMESTAMP_FORMAT`` (``Z`` or ``+HH:MM``, turned
  into UTC), ``chips`` is not a finite number above zero, ``start < submit``, ``end < start``,
  the accelerator is no id or alias of the catalog (``normalize_alias``), or the workload is
  not one of ``WORKLOADS`` (a missing workload is ``unknown``); text is trimmed first;
* ``[start, end)`` and ``[submit, start)`` are split at UTC midnights; per (date, accelerator,
  region, team, workload): chip-hours run, chip-hours waited, and the peak of running chips
  from a sweep over segment starts and ends (ends first at equal instants). Rows exist for the
  days with any run or wait segment.

How it stays fast without row loops: the CSV is read by pandas' pyarrow engine (all text,
both cores); low-cardinality text columns are cleaned once per distinct value
(``pd.factorize``) instead of once per row; timestamps are parsed with ``pd.to_datetime`` and
an explicit format, the submit time only where it differs from the start time; exact
duplicates are found by hashing the parsed row and comparing only colliding rows in full;
job-days come from ``np.repeat``; sums are ``np.bincount`` over a dense (series, day) key; the
peak sorts one packed ``int64`` key per event with ``np.sort`` (SIMD) and takes a cumulative
sum.

Timestamps outside that contract (no offset, fractional seconds, a space for ``T``) are
rejected here; the pipeline is more lenient with them. The sample files never use them.

    python benchmarks/reference_pandas.py JOBS --catalog sku_catalog.toml --out result.parquet
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import polars as pl

__all__ = ["TIMESTAMP_FORMAT", "WORKLOADS", "usage_daily_pandas"]

JOB_COLUMNS = (
    "job_id",
    "submit_time",
    "start_time",
    "end_time",
    "chips",
    "accelerator",
    "region",
    "team",
    "workload",
)
WORKLOADS = ("training", "serving", "research", "batch", "unknown")
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
_OFFSET_BITS = 37  # microseconds into a day, 0..DAY_US inclusive (< 2**37)
_ALIAS_SEPARATORS = re.compile(r"[\s_/]+")

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def normalize_alias(name: str) -> str:
    """Lower case, trimmed, runs of spaces, underscores and slashes -> '-'."""
    return _ALIAS_SEPARATORS.sub("-", name.strip().lower())


def read_jobs(path: Path) -> pd.DataFrame:
    """The job file as text columns (CSV, CSV.gz or Parquet), trimmed header names."""
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(
            path,
            engine="pyarrow",
            dtype="str",
            keep_default_na=False,  # 'NA', 'null', 'n/a' are text, as in the pipeline
            on_bad_lines="skip",  # a row with the wrong number of fields is rejected
        )
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    missing = [c for c in JOB_COLUMNS[:-1] if c not in frame.columns]
    if missing:
        raise SystemExit(f"{path}: missing column(s) {', '.join(missing)}")
    if "workload" not in frame.columns:
        frame["workload"] = ""
    return frame


def _present(values: pd.Series) -> Bools:
    """Not null and not blank after trimming."""
    text = values.str.strip()
    return (text.notna() & (text != "")).to_numpy(dtype=bool)


def _recode(
    values: pd.Series, clean: Callable[[str], str | None]
) -> tuple[Ints, npt.NDArray[np.object_]]:
    """Clean each distinct value once (a null as ''): per-row codes into the labels, -1 if
    ``clean`` rejects the value."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    cleaned = [clean(str(u)) for u in uniques] + [clean("")]  # last slot: code -1 (null)
    kept = [i for i, c in enumerate(cleaned) if c is not None]
    labels, label_codes = np.unique(
        np.array([cleaned[i] for i in kept], dtype=object), return_inverse=True
    )
    lookup = np.full(len(cleaned), -1, dtype=np.int64)
    lookup[kept] = label_codes
    return lookup[codes], labels


def _chip_values(values: pd.Series) -> tuple[Ints, Floats]:
    """Codes of the distinct chip strings and each one's number (NaN if not a number > 0)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    numbers = pd.to_numeric(pd.Series(uniques, dtype="str").str.strip(), errors="coerce")
    parsed = numbers.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    parsed[~np.isfinite(parsed) | (parsed <= 0)] = np.nan
    return codes.astype(np.int64), np.append(parsed, np.nan)  # code -1 (null) -> NaN


def _instants(values: pd.Series) -> tuple[Ints, Bools]:
    """UTC microseconds since the epoch, and whether the value parsed."""
    parsed = pd.to_datetime(
        values.str.strip(), format=TIMESTAMP_FORMAT, utc=True, errors="coerce"
    ).dt.as_unit("us")
    ok = parsed.notna().to_numpy(dtype=bool)
    return parsed.to_numpy(dtype="datetime64[us]").view(np.int64), ok


def _row_hash(columns: list[Ints]) -> npt.NDArray[np.uint64]:
    hashed = np.zeros(columns[0].size, dtype=np.uint64)
    for column in columns:
        hashed = hashed * np.uint64(0x9E3779B97F4A7C15) + column.view(np.uint64)
        hashed ^= hashed >> np.uint64(29)
    return hashed


def _split_at_midnights(begin: Ints, end: Ints) -> tuple[Ints, Ints, Ints, Ints]:
    """Split ``[begin, end)`` at UTC midnights; empty intervals vanish.

    Returns, per segment, the interval's index, its day (days since the epoch) and the
    segment's start and end (microseconds).
    """
    owner = np.flatnonzero(end > begin)
    first = begin[owner] // DAY_US
    count = (end[owner] - 1) // DAY_US - first + 1
    segment_owner = np.repeat(owner, count)
    ends = np.cumsum(count)
    within = np.arange(ends[-1] if ends.size else 0) - np.repeat(ends - count, count)
    day = np.repeat(first, count) + within
    lo = np.maximum(begin[segment_owner], day * DAY_US)
    hi = np.minimum(end[segment_owner], (day + 1) * DAY_US)
    return segment_owner, day, lo, hi


def _peak(group: Ints, day: Ints, lo: Ints, hi: Ints, chip_code: Ints, chips: Floats) -> Floats:
    """Max running chips per group: a sweep over segment starts (+) and ends (-), ends first.

    Each event is packed into one int64 (group | microsecond in the day | start flag | chip
    code) and the keys are sorted with ``np.sort`` (SIMD; ``argsort`` is several times
    slower). A group's deltas sum to zero, so with whole chips the global cumulative sum is
    each group's own running total; fractional chips subtract the running total at the
    group's start. When the fields do not fit in 63 bits it falls back to ``np.lexsort``.
    """
    n = lo.size
    n_groups = int(group.max()) + 1
    usable = np.nan_to_num(chips[:-1], nan=0.0)  # chips per code (NaN: never a good row)
    whole = bool(np.all(usable == np.round(usable)))
    code_bits = max(1, (usable.size - 1).bit_length())
    if n_groups.bit_length() + _OFFSET_BITS + 1 + code_bits <= 63:
        shift = code_bits + 1
        base = group << _OFFSET_BITS
        base -= day * DAY_US
        key = np.empty(2 * n, dtype=np.int64)
        ends, starts = key[:n], key[n:]
        np.add(base, hi, out=ends)
        ends <<= shift
        ends |= chip_code
        np.add(base, lo, out=starts)
        starts <<= shift
        starts |= chip_code | (1 << code_bits)
        del base
        key.sort()
        table = np.zeros(2 << code_bits, dtype=np.float64)
        table[: usable.size] = -usable
        table[1 << code_bits : (1 << code_bits) + usable.size] = usable
        delta = (table.astype(np.int64) if whole else table)[key & ((2 << code_bits) - 1)]
        key >>= shift + _OFFSET_BITS
        sorted_group = key
    else:
        day_start = day * DAY_US
        at = np.concatenate([hi - day_start, lo - day_start])
        is_start = np.repeat(np.array([False, True]), n)
        groups = np.concatenate([group, group])
        order = np.lexsort((is_start, at, groups))
        magnitude = np.concatenate([usable[chip_code], usable[chip_code]])[order]
        delta = np.where(is_start[order], magnitude, -magnitude)
        if whole:
            delta = delta.astype(np.int64)
        sorted_group = groups[order]
    running = np.cumsum(delta)
    first = np.flatnonzero(sorted_group[1:] != sorted_group[:-1]) + 1
    first = np.concatenate(([0], first))
    if not whole:
        before = np.concatenate(([0.0], running))[first]
        running -= np.repeat(before, np.diff(np.append(first, running.size)))
    peak = np.zeros(n_groups, dtype=np.float64)
    peak[sorted_group[first]] = np.maximum.reduceat(running, first)
    return peak


def usage_daily_pandas(jobs_path: Path | str, alias_map: Mapping[str, str]) -> pl.DataFrame:
    """``usage_daily`` (keys, chip_hours_used, chip_hours_queued, peak_chips) of a job file."""
    raw = read_jobs(Path(jobs_path))
    raw_columns = list(raw.columns)

    accelerator, accelerator_labels = _recode(
        raw["accelerator"], lambda v: alias_map.get(normalize_alias(v))
    )
    region, region_labels = _recode(raw["region"], lambda v: v.strip() or None)
    team, team_labels = _recode(raw["team"], lambda v: v.strip() or None)

    def clean_workload(value: str) -> str | None:
        text = value.strip().lower() or "unknown"
        return text if text in WORKLOADS else None

    workload, workload_labels = _recode(raw["workload"], clean_workload)
    chip_code, chip_number = _chip_values(raw["chips"])
    chips = chip_number[chip_code]
    start, start_ok = _instants(raw["start_time"])
    # Most jobs start the moment they are submitted: parse only the submit times that differ.
    waited = (raw["submit_time"] != raw["start_time"]).to_numpy(dtype=bool, na_value=True)
    submit, submit_ok = start.copy(), start_ok.copy()
    submit[waited], submit_ok[waited] = _instants(raw["submit_time"][waited])
    end, end_ok = _instants(raw["end_time"])

    good = (
        _present(raw["job_id"])
        & submit_ok
        & start_ok
        & end_ok
        & ~np.isnan(chips)
        & (start >= submit)
        & (end >= start)
        & (accelerator >= 0)
        & (region >= 0)
        & (team >= 0)
        & (workload >= 0)
    )
    # An exact duplicate row is the same job twice. Identical rows parse identically, so
    # rows whose parsed fields collide are the only candidates; compare those in full.
    rows = np.flatnonzero(good)
    hashed = _row_hash([submit, start, end, chip_code, accelerator, region, team, workload])[good]
    ordered = np.sort(hashed)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    position = np.minimum(np.searchsorted(repeated, hashed), max(repeated.size - 1, 0))
    candidates = rows[repeated[position] == hashed] if repeated.size else rows[:0]
    if candidates.size:
        repeats = raw.iloc[candidates][raw_columns].duplicated(keep="first").to_numpy()
        good[candidates[repeats]] = False
    rows = np.flatnonzero(good)

    n_workloads = workload_labels.size
    series = (
        (accelerator[rows] * region_labels.size + region[rows]) * team_labels.size + team[rows]
    ) * n_workloads + workload[rows]
    used_series = np.flatnonzero(np.bincount(series))  # number the series densely
    series_code = np.zeros(used_series[-1] + 1 if used_series.size else 0, dtype=np.int64)
    series_code[used_series] = np.arange(used_series.size)
    series_code, series_values = series_code[series], used_series
    run_owner, run_day, run_lo, run_hi = _split_at_midnights(start[rows], end[rows])
    wait_owner, wait_day, wait_lo, wait_hi = _split_at_midnights(submit[rows], start[rows])
    if run_day.size + wait_day.size == 0:
        return _empty()
    first_day = int(min(run_day.min(initial=2**62), wait_day.min(initial=2**62)))
    last_day = int(max(run_day.max(initial=-(2**62)), wait_day.max(initial=-(2**62))))
    n_days = last_day - first_day + 1
    run_group = series_code[run_owner].astype(np.int64) * n_days + (run_day - first_day)
    wait_group = series_code[wait_owner].astype(np.int64) * n_days + (wait_day - first_day)
    groups = np.concatenate([run_group, wait_group])
    if series_values.size * n_days > 2**26:  # a sparse key space: number the groups densely
        dense, group_values = pd.factorize(groups)
        run_group, wait_group = dense[: run_group.size], dense[run_group.size :]
        n_groups = group_values.size
    else:
        group_values = np.arange(series_values.size * n_days, dtype=np.int64)
        n_groups = group_values.size
    job_chips = chips[rows]
    used = np.bincount(
        run_group, weights=job_chips[run_owner] * ((run_hi - run_lo) / HOUR_US), minlength=n_groups
    )
    queued = np.bincount(
        wait_group,
        weights=job_chips[wait_owner] * ((wait_hi - wait_lo) / HOUR_US),
        minlength=n_groups,
    )
    peak = np.zeros(n_groups, dtype=np.float64)
    if run_group.size:
        peak = _peak(run_group, run_day, run_lo, run_hi, chip_code[rows][run_owner], chip_number)
        peak = np.pad(peak, (0, n_groups - peak.size))
    seen = np.bincount(run_group, minlength=n_groups) + np.bincount(wait_group, minlength=n_groups)
    present = np.flatnonzero(seen > 0)
    key = np.asarray(group_values)[present]
    series_of = np.asarray(series_values)[key // n_days]
    day_of = key % n_days + first_day
    workload_of = series_of % n_workloads
    team_of = (series_of // n_workloads) % team_labels.size
    region_of = (series_of // n_workloads // team_labels.size) % region_labels.size
    accelerator_of = series_of // n_workloads // team_labels.size // region_labels.size
    result = pl.DataFrame(
        {
            "date": pl.Series(day_of, dtype=pl.Int32).cast(pl.Date),
            "accelerator": accelerator_labels[accelerator_of].astype(str),
            "region": region_labels[region_of].astype(str),
            "team": team_labels[team_of].astype(str),
            "workload": workload_labels[workload_of].astype(str),
            "chip_hours_used": used[present],
            "chip_hours_queued": queued[present],
            "peak_chips": peak[present],
        }
    )
    return result.sort("date", "accelerator", "region", "team", "workload")


def _empty() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "date": pl.Date,
            "accelerator": pl.String,
            "region": pl.String,
            "team": pl.String,
            "workload": pl.String,
            "chip_hours_used": pl.Float64,
            "chip_hours_queued": pl.Float64,
            "peak_chips": pl.Float64,
        }
    )


def load_alias_map(catalog: Path) -> dict[str, str]:
    """Normalized alias -> canonical id, from the project's SKU catalog TOML."""
    from workbench.catalog import load_sku_catalog

    return dict(load_sku_catalog(catalog).alias_map())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("jobs", type=Path, help="job records: .csv, .csv.gz or .parquet")
    parser.add_argument("--catalog", type=Path, required=True, help="sku_catalog.toml")
    parser.add_argument("--out", type=Path, required=True, help="result Parquet file")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    result = usage_daily_pandas(args.jobs, load_alias_map(args.catalog))
    result.write_parquet(args.out)
    print(f"{result.height:,} usage_daily rows in {time.perf_counter() - began:.2f} s")


if __name__ == "__main__":
    main()
