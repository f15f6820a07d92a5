"""Benchmark: job-record ingest of a large fleet, ours vs a DuckDB and a pandas reference.

The claim it checks: ``workbench ingest jobs`` turns the raw job file (10M records for the
``large`` sample) into ``usage_daily`` at least as fast as a strong DuckDB SQL program
(``benchmarks/reference_duckdb.py``) and at least 3x faster than a strong vectorised pandas
program (``benchmarks/reference_pandas.py``), with the same result, end to end from the raw
file, for the CSV export and for a Parquet copy of it.

Steps:

1. generate the sample fleet into the cache folder unless it is there already
   (``workbench sample-fleet --scale SCALE --seed 7``; ``--limit N`` then cuts the first N data
   lines of its job file, defects included);
2. write a Parquet copy of the job file: the same columns, all text, blank lines left out
   (polars ``sink_parquet``, streaming);
3. for each input (CSV, Parquet) run three measured processes: ours (``workbench ingest jobs``
   into a fresh workspace that already holds the SKU catalog; the setup is not timed), the
   DuckDB reference and the pandas reference. Wall time and whole-process peak RSS (``wait4``)
   are measured per process, as in ``benchmarks/run.py``;
4. compare the three results (same keys; chip-hours within 1e-6 relative; peak chips equal),
   print a Markdown table and write ``benchmarks/out/ingest_large.json``.

    python benchmarks/ingest_large.py                      # large fleet (10M jobs)
    python benchmarks/ingest_large.py --scale medium       # 3.2M jobs
    python benchmarks/ingest_large.py --scale medium --limit 200000 --tools duckdb,pandas

A step that fails (for instance our first-form reader, which reads CSV only and holds every
field as a Python string) is reported as failed, with the end of its error output, and the
others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
DEFAULT_CACHE = OUT / "cache"
SEED = 7
TOOLS = ("ours", "duckdb", "pandas")
INPUTS = ("csv", "parquet")
KEYS = ["date", "accelerator", "region", "team", "workload"]
SUMS = ["chip_hours_used", "chip_hours_queued"]
VALUES = [*SUMS, "peak_chips"]
RELATIVE_TOLERANCE = 1e-6
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


@dataclass
class Run:
    """One measured process."""

    input: str
    tool: str
    command: list[str]
    ok: bool = False
    seconds: float | None = None
    peak_rss_mb: float | None = None
    seconds_all: list[float] = field(default_factory=list)
    error: str | None = None
    result: str | None = None
    rows: int | None = None
    equal: bool | None = None


def _workbench() -> str:
    return str(Path(sys.executable).parent / "workbench")


def _measure(command: list[str], log: Path, timeout: float | None) -> tuple[float, float, int, str]:
    """Run ``command``; return wall seconds, peak RSS (MB), exit code and the log's tail.

    The child's ``ru_maxrss`` is at least this harness's own high-water RSS (Linux carries the
    parent's over the fork and exec), so a figure at or below the harness's is a floor, not
    the child's peak: the run says so.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    own_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with log.open("wb") as sink:
        began = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
        watchdog = threading.Timer(timeout, process.kill) if timeout else None
        if watchdog:
            watchdog.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            if watchdog:
                watchdog.cancel()
        seconds = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4 already
    tail = log.read_text(errors="replace").strip().splitlines()[-12:]
    peak_mb = usage.ru_maxrss / 1024
    if peak_mb <= own_mb * 1.01:
        print(f"(peak {peak_mb:,.0f} MB is this harness's own: the child's is at most that)")
    return seconds, peak_mb, process.returncode, "\n".join(tail)


def _setup(command: list[str], log: Path) -> None:
    seconds, _, code, tail = _measure(command, log, None)
    if code != 0:
        raise RuntimeError(f"setup step failed after {seconds:.1f} s: {' '.join(command)}\n{tail}")


def _generate(scale: str, cache: Path) -> Path:
    """The sample fleet folder, generated into the cache if missing."""
    fleet = cache / f"{scale}-seed{SEED}"
    if (fleet / "jobs" / "jobs.csv").exists() and (fleet / "catalog").exists():
        return fleet
    partial = cache / f"{scale}-seed{SEED}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    print(f"generating the {scale} sample fleet into {fleet} ...", flush=True)
    command = [_workbench(), "sample-fleet", "--scale", scale, "--seed", str(SEED)]
    _setup([*command, "--out", str(partial)], cache / f"generate-{scale}.log")
    shutil.rmtree(fleet, ignore_errors=True)
    partial.rename(fleet)
    return fleet


def _head(source: Path, lines: int) -> Path:
    """The header and the first ``lines`` data lines of a job file (cached beside it)."""
    target = source.with_name(f"{source.stem}-head{lines}.csv")
    if target.exists():
        return target
    partial = target.with_suffix(".partial")
    with source.open("rb") as reader, partial.open("wb") as writer:
        writer.write(reader.readline())
        for _, line in zip(range(lines), reader, strict=False):
            writer.write(line)
    partial.rename(target)
    return target


def _parquet_copy(source: Path) -> Path:
    """A Parquet copy of a CSV job file: same columns, all text, blank lines left out."""
    target = source.with_suffix(".parquet")
    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    partial = target.with_suffix(".parquet.partial")
    print(f"writing the Parquet copy {target} ...", flush=True)
    (
        pl.scan_csv(source, infer_schema=False, quote_char='"')
        # a blank line is no record (polars reads it as a row of nulls)
        .filter(~pl.all_horizontal(pl.all().is_null() | (pl.all().str.strip_chars() == "")))
        .sink_parquet(partial)
    )
    partial.rename(target)
    return target


def _warm(path: Path) -> None:
    """Read a file once so every tool starts with it in the page cache."""
    with path.open("rb") as handle:
        while handle.read(1 << 24):
            pass


def _load(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path).select(
        pl.col("date").cast(pl.Date), *KEYS[1:], *[pl.col(v).cast(pl.Float64) for v in VALUES]
    )


def compare(left: pl.DataFrame, right: pl.DataFrame) -> dict[str, Any]:
    """Whether two usage_daily results are equal: keys, chip-hours (1e-6 relative), peak."""
    report: dict[str, Any] = {"rows": [left.height, right.height]}
    duplicated = [int(f.select(KEYS).is_duplicated().sum()) for f in (left, right)]
    joined = left.with_columns(pl.lit(True).alias("__left")).join(
        right.with_columns(pl.lit(True).alias("__right")),
        on=KEYS,
        how="full",
        coalesce=True,
        suffix="_b",
        nulls_equal=True,
    )
    report["duplicate_keys"] = duplicated
    report["only_left"] = joined.filter(pl.col("__right").is_null()).height
    report["only_right"] = joined.filter(pl.col("__left").is_null()).height
    both = joined.filter(pl.col("__left") & pl.col("__right"))
    worst: dict[str, float] = {}
    bad: dict[str, int] = {}
    for column in VALUES:
        a, b = pl.col(column), pl.col(f"{column}_b")
        if column in SUMS:
            scale = pl.max_horizontal(a.abs(), b.abs())
            relative = pl.when(scale > 0).then((a - b).abs() / scale).otherwise(0.0)
            worst[column] = float(both.select(relative.max()).item() or 0.0)
            bad[column] = both.filter(relative > RELATIVE_TOLERANCE).height
        else:
            worst[column] = float(both.select((a - b).abs().max()).item() or 0.0)
            bad[column] = both.filter(a != b).height
    report["max_difference"] = worst
    report["rows_differing"] = bad
    report["equal"] = (
        not any(duplicated)
        and report["only_left"] == 0
        and report["only_right"] == 0
        and not any(bad.values())
    )
    return report


def _command(tool: str, jobs: Path, catalog: Path, workspace: Path, result: Path) -> list[str]:
    if tool == "ours":
        return [_workbench(), "ingest", "jobs", str(jobs), "--workspace", str(workspace)]
    script = ROOT / "benchmarks" / f"reference_{tool}.py"
    return [sys.executable, str(script), str(jobs), "--catalog", str(catalog), "--out", str(result)]


def _run(
    run: Run,
    jobs: Path,
    catalog: Path,
    scratch: Path,
    repeat: int,
    timeout: float | None,
) -> None:
    rss: list[float] = []
    for attempt in range(repeat):
        tag = f"{run.input}-{run.tool}"
        workspace = scratch / f"ws-{tag}"
        result = scratch / f"{tag}.parquet"
        log = scratch / f"{tag}.log"
        result.unlink(missing_ok=True)
        if run.tool == "ours":  # a fresh workspace each time: an unchanged file is skipped
            shutil.rmtree(workspace, ignore_errors=True)
            _setup([_workbench(), "init", "--workspace", str(workspace)], log)
            _setup(
                [_workbench(), "ingest", "catalog", str(catalog), "--workspace", str(workspace)],
                log,
            )
            result = workspace / "tables" / "usage_daily.parquet"
        run.command = _command(run.tool, jobs, catalog, workspace, result)
        print(f"  {tag} ({attempt + 1}/{repeat}) ...", end=" ", flush=True)
        seconds, peak_mb, code, tail = _measure(run.command, log, timeout)
        if code != 0 or not result.exists():
            run.ok = False
            reason = "killed (timeout or out of memory)" if code < 0 else f"exit code {code}"
            run.error = f"{reason} after {seconds:.1f} s\n{tail}"
            print(f"failed: {reason}", flush=True)
            return
        print(f"{seconds:.1f} s, {peak_mb:,.0f} MB", flush=True)
        run.seconds_all.append(round(seconds, 2))
        rss.append(peak_mb)
        run.ok = True
        run.result = str(result)
    run.seconds = round(statistics.median(run.seconds_all), 2)
    run.peak_rss_mb = round(max(rss), 1)


def _ratio(numerator: Run | None, denominator: Run | None) -> float | None:
    if numerator and denominator and numerator.seconds and denominator.seconds:
        return round(numerator.seconds / denominator.seconds, 2)
    return None


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("polars", "duckdb", "pandas", "numpy", "pyarrow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "missing"
    return versions


def _commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", choices=["large", "medium"], default="large")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="sample fleet cache")
    parser.add_argument("--limit", type=int, default=None, help="first N data lines only")
    parser.add_argument(
        "--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}"
    )
    parser.add_argument(
        "--inputs", default=",".join(INPUTS), help=f"comma-separated subset of {','.join(INPUTS)}"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per step (median reported)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before a step dies")
    parser.add_argument("--out", type=Path, default=OUT / "ingest_large.json")
    args = parser.parse_args(argv)
    tools = [t for t in TOOLS if t in args.tools.split(",")]
    inputs = [i for i in INPUTS if i in args.inputs.split(",")]

    cache = args.cache.resolve()
    fleet = _generate(args.scale, cache)
    catalog = fleet / "catalog" / "sku_catalog.toml"
    csv_path = fleet / "jobs" / "jobs.csv"
    if args.limit is not None:
        csv_path = _head(csv_path, args.limit)
    files = {"csv": csv_path}
    if "parquet" in inputs:
        files["parquet"] = _parquet_copy(csv_path)
    jobs = json.loads((fleet / "truth" / "summary.json").read_text()).get("jobs")
    label = (
        f"{args.scale} fleet, first {args.limit:,} data lines of its job file"
        if args.limit is not None
        else f"{args.scale} fleet ({jobs:,} jobs)"
    )
    scratch = cache / "runs" / (f"{args.scale}" + (f"-head{args.limit}" if args.limit else ""))
    scratch.mkdir(parents=True, exist_ok=True)

    runs: list[Run] = []
    comparisons: dict[str, Any] = {}
    for kind in inputs:
        path = files[kind]
        print(f"{kind}: {path} ({path.stat().st_size / 2**20:,.0f} MB)", flush=True)
        _warm(path)
        done: dict[str, Run] = {}
        for tool in tools:
            run = Run(input=kind, tool=tool, command=[])
            _run(run, path, catalog, scratch, args.repeat, args.timeout)
            runs.append(run)
            done[tool] = run
        frames = {t: _load(Path(r.result)) for t, r in done.items() if r.ok and r.result}
        for tool, frame in frames.items():
            done[tool].rows = frame.height
        pairs: dict[str, Any] = {}
        names = list(frames)
        for i, left in enumerate(names):
            for right in names[i + 1 :]:
                pairs[f"{left}~{right}"] = compare(frames[left], frames[right])
        for tool, run in done.items():
            if not run.ok:
                continue
            mine = [p["equal"] for key, p in pairs.items() if tool in key.split("~")]
            run.equal = all(mine) if mine else None
        comparisons[kind] = pairs
        # keep the results side by side for a later look
        for tool, run in done.items():
            if run.ok and run.result and tool == "ours":
                kept = scratch / f"{kind}-ours.parquet"
                shutil.copyfile(run.result, kept)
                run.result = str(kept)
    if "csv" in comparisons and "parquet" in comparisons:
        csv_runs = {r.tool: r for r in runs if r.input == "csv" and r.ok}
        parquet_runs = {r.tool: r for r in runs if r.input == "parquet" and r.ok}
        common = [t for t in tools if t in csv_runs and t in parquet_runs]
        if common:
            tool = common[0]
            comparisons["csv~parquet"] = {
                tool: compare(
                    _load(Path(csv_runs[tool].result or "")),
                    _load(Path(parquet_runs[tool].result or "")),
                )
            }

    def find(kind: str, tool: str) -> Run | None:
        return next((r for r in runs if r.input == kind and r.tool == tool and r.ok), None)

    verdicts: dict[str, dict[str, Any]] = {}
    for kind in inputs:
        ours, duck, pandas = find(kind, "ours"), find(kind, "duckdb"), find(kind, "pandas")
        ours_vs_duckdb = _ratio(ours, duck)
        pandas_vs_ours = _ratio(pandas, ours)
        equal_runs = [r.equal for r in runs if r.input == kind and r.ok]
        verdicts[kind] = {
            "ours_over_duckdb": ours_vs_duckdb,
            "pandas_over_ours": pandas_vs_ours,
            "at_least_as_fast_as_duckdb": None if ours_vs_duckdb is None else ours_vs_duckdb <= 1,
            "3x_faster_than_pandas": None if pandas_vs_ours is None else pandas_vs_ours >= 3,
            "results_equal": all(e is not False for e in equal_runs) if equal_runs else None,
        }

    print()
    print(f"Job-record ingest, {label}, {os.cpu_count()} cores")
    print()
    print("| input | tool | seconds | peak MB | ours/duckdb | pandas/ours | equal |")
    print("|---|---|---:|---:|---:|---:|---|")
    for run in runs:
        verdict = verdicts[run.input]
        ratios = ("", "")
        if run.tool == "ours":
            ratios = (_fmt(verdict["ours_over_duckdb"]), _fmt(verdict["pandas_over_ours"]))
        equal = {True: "yes", False: "NO", None: "n/a"}[run.equal]
        seconds = _fmt(run.seconds) if run.ok else "failed"
        print(
            f"| {run.input} | {run.tool} | {seconds} | {_fmt(run.peak_rss_mb, ',.0f')} "
            f"| {ratios[0]} | {ratios[1]} | {equal} |"
        )
    print()
    for run in runs:
        if not run.ok:
            print(f"{run.input}/{run.tool} failed: {run.error}\n")
    for kind, pairs in comparisons.items():
        for pair, report in pairs.items():
            if not report["equal"]:
                print(f"{kind} {pair} differ: {json.dumps(report)}")
    for kind, verdict in verdicts.items():
        print(
            f"{kind}: ours/duckdb {_fmt(verdict['ours_over_duckdb']) or 'n/a'} (target <= 1), "
            f"pandas/ours {_fmt(verdict['pandas_over_ours']) or 'n/a'} (target >= 3), "
            f"results equal: {verdict['results_equal']}"
        )

    payload = {
        "benchmark": "ingest_large",
        "scale": args.scale,
        "limit": args.limit,
        "jobs": jobs,
        "files": {
            k: {"path": str(p), "mb": round(p.stat().st_size / 2**20, 1)} for k, p in files.items()
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), **_versions()},
        "commit": _commit(),
        "repeat": args.repeat,
        "runs": [asdict(r) for r in runs],
        "comparisons": comparisons,
        "verdicts": verdicts,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0 if all(v["results_equal"] is not False for v in verdicts.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
