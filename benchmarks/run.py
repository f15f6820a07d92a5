"""Benchmarks of the foundation: sample-fleet generation and job-record ingest.

Each measurement runs in its own process so wall time and peak memory (max RSS, from
``wait4``) are those of that step alone. Results print as a Markdown table (for the README's
performance table) and are saved to ``benchmarks/out/results.json``.

    python benchmarks/run.py            # small and medium fleets
    python benchmarks/run.py --large    # also the large fleet (10M jobs; several minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"


def _measure(command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall seconds and peak RSS of ``command``.

    The child's ``ru_maxrss`` is at least this small harness's own high-water RSS (Linux
    carries the parent's over the fork and exec): a floor far below every step measured.
    """
    began = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        error = process.stderr.read().decode() if process.stderr else ""
        raise SystemExit(f"benchmark step failed: {' '.join(command)}\n{error}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def _jobs_file(folder: Path) -> Path:
    gz = folder / "jobs" / "jobs.csv.gz"
    return gz if gz.exists() else folder / "jobs" / "jobs.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="include the large fleet (10M jobs)")
    args = parser.parse_args()
    scales = ["small", "medium"] + (["large"] if args.large else [])
    workbench = str(Path(sys.executable).parent / "workbench")
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="workbench-bench-") as scratch:
        for scale in scales:
            fleet = Path(scratch) / scale
            generated = _measure(
                [workbench, "sample-fleet", "--scale", scale, "--seed", "7", "--out", str(fleet)]
            )
            summary = json.loads((fleet / "truth" / "summary.json").read_text())
            jobs = _jobs_file(fleet)
            result: dict[str, object] = {
                "scale": scale,
                "jobs": summary["jobs"],
                "jobs_file_mb": round(jobs.stat().st_size / 2**20, 1),
                "generate": generated,
            }
            # The first-form reader holds every field as a Python string: 10M jobs would
            # need ~18 GB. The large fleet waits for the streaming reader (ingestion issue).
            if scale != "large":
                workspace = Path(scratch) / f"ws-{scale}"
                catalog = str(fleet / "catalog" / "sku_catalog.toml")
                _measure([workbench, "init", "--workspace", str(workspace)])
                _measure([workbench, "ingest", "catalog", catalog, "--workspace", str(workspace)])
                ingested = _measure(
                    [workbench, "ingest", "jobs", str(jobs), "--workspace", str(workspace)]
                )
                result["ingest_jobs"] = ingested
                result["ingest_jobs_per_second"] = round(summary["jobs"] / ingested["seconds"])
            results.append(result)
    OUT.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
    }
    (OUT / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    print("| fleet | jobs | jobs file | generate (s / peak MB) | ingest (s / peak MB) | jobs/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        g = r["generate"]
        i = r.get("ingest_jobs")
        ingest = f"{i['seconds']} / {i['peak_rss_mb']:,.0f}" if i else "not yet"  # type: ignore[index]
        rate = f"{r['ingest_jobs_per_second']:,}" if i else "n/a"
        print(
            f"| {r['scale']} | {r['jobs']:,} | {r['jobs_file_mb']} MB | {g['seconds']} / "  # type: ignore[index]
            f"{g['peak_rss_mb']:,.0f} | {ingest} | {rate} |"  # type: ignore[index]
        )


if __name__ == "__main__":
    main()
