"""Reference ingest in DuckDB SQL: job records -> ``usage_daily``.

A second, independent implementation of ``pipelines.jobs`` written the way a skilled DuckDB
user would write it, used by ``benchmarks/ingest_large.py`` to check our pipeline's result
and to time it against. The rules are those of ``benchmarks/reference_pandas.py`` (and of
the pipeline): text columns, rows with the wrong number of fields and blank lines skipped,
exact duplicate rows dropped, rejected rows not counted, ``[start, end)`` and
``[submit, start)`` split at UTC midnights, the peak from a sweep with ends before starts.

The program: ``read_csv`` (explicit dialect, every column ``VARCHAR``, no sniffing) or
``read_parquet``; ``SELECT DISTINCT`` for exact duplicates; ``try_strptime`` with an explicit
format (``Z`` or an offset) and ``epoch_us`` for UTC instants; the catalog's alias map joined
as a small table; the valid jobs materialised once as a temporary table and their series
numbered, so the heavy work groups and sorts one ``BIGINT`` (series, day) key; then
``unnest(generate_series(first_day, last_day))`` per job-day for the run and wait segments,
``GROUP BY`` for the sums, and for the peak the net change of running chips per instant
followed by a running ``sum() OVER (PARTITION BY series-day ORDER BY instant)``. DuckDB runs
it on all cores.

Timestamps outside that contract (no offset, fractional seconds, a space for ``T``) are
rejected here; the pipeline is more lenient with them. The sample files never use them.

    python benchmarks/reference_duckdb.py JOBS --catalog sku_catalog.toml --out result.parquet
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import os
import time
from collections.abc import Mapping
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

__all__ = ["usage_daily_duckdb"]

REQUIRED_COLUMNS = (
    "job_id",
    "submit_time",
    "start_time",
    "end_time",
    "chips",
    "accelerator",
    "region",
    "team",
)
WORKLOADS = ("training", "serving", "research", "batch", "unknown")
DAY_US = 86_400_000_000

# Characters trimmed from text: Unicode White_Space, as Python's str.strip and polars'
# strip_chars see it.
_BLANKS = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + ("\u2028\u2029\u202f\u205f\u3000")
)
_BLANKS_SQL = " || ".join(f"chr({ord(c)})" for c in _BLANKS)
# normalize_alias's separators, [\s_/]+ with a Unicode \s (RE2's \s is ASCII only)
_SEPARATORS = r"'[\s\x{0B}\x{85}\p{Z}_/]+'"

# stripped: the text without surrounding blanks (trim() only when there is something to trim:
# it is slow on every row). clean_text: stripped, and empty -> NULL. utc_us: a timestamp with
# 'Z' or an offset -> microseconds since the epoch (UTC), NULL if it does not parse.
# day_of: the UTC day (since 1970-01-01) of an instant in microseconds, rounding down.
_MACROS = f"""
CREATE OR REPLACE TEMP MACRO blanks() AS {_BLANKS_SQL};
CREATE OR REPLACE TEMP MACRO stripped(t) AS
    CASE WHEN contains(blanks(), left(t, 1)) OR contains(blanks(), right(t, 1))
         THEN trim(t, blanks()) ELSE t END;
CREATE OR REPLACE TEMP MACRO clean_text(t) AS nullif(stripped(t), '');
CREATE OR REPLACE TEMP MACRO utc_us(t) AS
    CASE WHEN contains(t, 'Z') THEN epoch_us(try_strptime(t, '%Y-%m-%dT%H:%M:%SZ'))
         ELSE epoch_us(try_strptime(t, '%Y-%m-%dT%H:%M:%S%z')) END;
CREATE OR REPLACE TEMP MACRO day_of(us) AS
    (us - ((us % {DAY_US}) + {DAY_US}) % {DAY_US}) // {DAY_US};
"""


def _header(path: Path) -> tuple[list[str], int]:
    """Trimmed header names of a CSV and the blank lines before the header."""
    with (
        gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as raw,
        io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="") as text,
    ):
        reader = csv.reader(text)
        for skipped, record in enumerate(reader):
            if record and any(field.strip() for field in record):
                return [name.strip().lstrip("\ufeff") for name in record], skipped
    raise SystemExit(f"{path}: no header line")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _source(path: Path) -> tuple[str, list[str]]:
    """A ``FROM`` item reading the job file as text, and its column names."""
    if path.suffix == ".parquet":
        return f"read_parquet({_literal(str(path))})", []  # names: DESCRIBE
    names, skipped = _header(path)
    columns = ", ".join(f"{_literal(name)}: 'VARCHAR'" for name in names)
    relation = (
        f"read_csv({_literal(str(path))}, header = true, skip = {skipped}, delim = ',', "
        f"quote = '\"', escape = '\"', columns = {{{columns}}}, auto_detect = false, "
        "strict_mode = true, ignore_errors = true, parallel = true)"
    )
    return relation, names


def usage_daily_duckdb(
    jobs_path: Path | str, alias_map: Mapping[str, str], *, threads: int | None = None
) -> pl.DataFrame:
    """``usage_daily`` (keys, chip_hours_used, chip_hours_queued, peak_chips) of a job file."""
    path = Path(jobs_path)
    relation, names = _source(path)
    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {threads or os.cpu_count() or 1}")
        con.execute("SET preserve_insertion_order = false")
        con.execute(_MACROS)
        if not names:
            names = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise SystemExit(f"{path}: missing column(s) {', '.join(missing)}")
        workload = "workload" if "workload" in names else "NULL::VARCHAR"
        aliases = pa.table(
            {"alias": list(alias_map.keys()), "accelerator": list(alias_map.values())}
        )
        con.register("alias_map", aliases)
        workloads = ", ".join(_literal(w) for w in WORKLOADS)
        con.execute(
            f"""
            CREATE TEMP TABLE jobs AS
            WITH raw AS (
                SELECT DISTINCT * FROM {relation}  -- an exact duplicate is the same job twice
            ),
            parsed AS MATERIALIZED (  -- materialised: the filter below must not re-parse
                SELECT
                    clean_text(raw.job_id) AS job_id,
                    coalesce(exact.accelerator, alias.accelerator) AS accelerator,
                    clean_text(raw.region) AS region,
                    clean_text(raw.team) AS team,
                    coalesce(lower(clean_text({workload})), 'unknown') AS workload,
                    CASE WHEN NOT contains(raw.chips, '_')  -- DuckDB reads '1_000' as 1000
                         THEN TRY_CAST(stripped(raw.chips) AS DOUBLE) END AS chips,
                    utc_us(stripped(raw.start_time)) AS start_us,
                    -- most jobs start when submitted: parse the submit time only if it differs
                    CASE WHEN raw.submit_time = raw.start_time THEN start_us
                         ELSE utc_us(stripped(raw.submit_time)) END AS submit_us,
                    utc_us(stripped(raw.end_time)) AS end_us
                FROM raw
                -- most rows name the canonical id: normalise only the other names
                LEFT JOIN alias_map AS exact ON exact.alias = raw.accelerator
                LEFT JOIN alias_map AS alias ON alias.alias = CASE WHEN exact.alias IS NULL THEN
                    regexp_replace(lower(stripped(raw.accelerator)), {_SEPARATORS}, '-', 'g') END
            )
            SELECT accelerator, region, team, workload, chips, submit_us, start_us, end_us
            FROM parsed
            WHERE job_id IS NOT NULL AND accelerator IS NOT NULL
              AND region IS NOT NULL AND team IS NOT NULL AND workload IN ({workloads})
              AND isfinite(chips) AND chips > 0
              AND submit_us IS NOT NULL AND start_us IS NOT NULL AND end_us IS NOT NULL
              AND start_us >= submit_us AND end_us >= start_us
            """
        )
        # One small integer per series, so the heavy grouping and sorting use one BIGINT key
        # (series << 32 | day + 2**31) instead of four strings and a day.
        con.execute(
            """
            CREATE TEMP TABLE series AS
            SELECT row_number() OVER () AS series, *
            FROM (SELECT DISTINCT accelerator, region, team, workload FROM jobs)
            """
        )
        result = con.sql(
            f"""
            WITH keyed AS (
                SELECT series.series, chips, submit_us, start_us, end_us
                FROM jobs JOIN series USING (accelerator, region, team, workload)
            ),
            run AS MATERIALIZED (
                SELECT (series << 32) + (day + 2147483648) AS g, chips,
                       greatest(start_us, day * {DAY_US}) AS lo,
                       least(end_us, (day + 1) * {DAY_US}) AS hi
                FROM (
                    SELECT series, chips, start_us, end_us,
                           unnest(generate_series(day_of(start_us), day_of(end_us - 1))) AS day
                    FROM keyed WHERE end_us > start_us
                )
            ),
            wait AS (
                SELECT (series << 32) + (day + 2147483648) AS g, chips,
                       greatest(submit_us, day * {DAY_US}) AS lo,
                       least(start_us, (day + 1) * {DAY_US}) AS hi
                FROM (
                    SELECT series, chips, submit_us, start_us,
                           unnest(generate_series(day_of(submit_us), day_of(start_us - 1))) AS day
                    FROM keyed WHERE start_us > submit_us
                )
            ),
            used AS (
                SELECT g, sum(chips * ((hi - lo) / 3600000000.0)) AS chip_hours_used
                FROM run GROUP BY g
            ),
            queued AS (
                SELECT g, sum(chips * ((hi - lo) / 3600000000.0)) AS chip_hours_queued
                FROM wait GROUP BY g
            ),
            instants AS (
                -- the net change of running chips at each instant of a series-day: summing
                -- the ends and starts of one instant is the sweep with ends before starts,
                -- and it leaves the window a quarter of the rows
                SELECT g, instant, sum(delta) AS delta
                FROM (
                    SELECT g, lo AS instant, chips AS delta FROM run
                    UNION ALL
                    SELECT g, hi AS instant, -chips AS delta FROM run
                )
                GROUP BY g, instant
            ),
            peak AS (
                SELECT g, max(running) AS peak_chips
                FROM (
                    SELECT g, sum(delta) OVER (
                        PARTITION BY g ORDER BY instant
                        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                    ) AS running
                    FROM instants
                )
                GROUP BY g
            ),
            daily AS (
                SELECT g,
                       coalesce(chip_hours_used, 0.0) AS chip_hours_used,
                       coalesce(chip_hours_queued, 0.0) AS chip_hours_queued,
                       coalesce(peak_chips, 0.0) AS peak_chips
                FROM used FULL JOIN queued USING (g) LEFT JOIN peak USING (g)
            )
            SELECT DATE '1970-01-01' + ((g & 4294967295) - 2147483648)::INTEGER AS date,
                   accelerator, region, team, workload,
                   chip_hours_used, chip_hours_queued, peak_chips
            FROM daily JOIN series ON series.series = g >> 32
            ORDER BY date, accelerator, region, team, workload
            """
        ).pl()
    finally:
        con.close()
    return result


def load_alias_map(catalog: Path) -> dict[str, str]:
    """Normalized alias -> canonical id, from the project's SKU catalog TOML."""
    from workbench.catalog import load_sku_catalog

    return dict(load_sku_catalog(catalog).alias_map())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("jobs", type=Path, help="job records: .csv, .csv.gz or .parquet")
    parser.add_argument("--catalog", type=Path, required=True, help="sku_catalog.toml")
    parser.add_argument("--out", type=Path, required=True, help="result Parquet file")
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    result = usage_daily_duckdb(args.jobs, load_alias_map(args.catalog), threads=args.threads)
    result.write_parquet(args.out)
    print(f"{result.height:,} usage_daily rows in {time.perf_counter() - began:.2f} s")


if __name__ == "__main__":
    main()
