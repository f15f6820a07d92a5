"""Time to a fully rendered page for every page of the app (``make bench-app``).

Serves ``workbench app`` on a loopback port over a workspace with the sample fleet and its
runs (forecast, plan, reclaim, costs: what ``workbench demo`` makes), then drives Debian's
chromium through Playwright (nothing downloaded). For each page it measures, from
navigation to a page whose script has finished (``stApp`` reports ``notRunning``), whose
title is shown and whose plotly charts are drawn:

* **first** load: a new browser tab opened on the page's URL, on a server whose caches hold
  nothing for the page (the browser loads Streamlit's scripts too);
* **cached** load: the page reached again from the sidebar's navigation in an open tab, as a
  planner moves between pages (results cached by run id and inputs; the target is under 2
  seconds);

and one interaction: the sidebar's accelerator filter changed on the usage page, until the
page has rerun and the "Used" figure changed. Prints a Markdown table and writes
``benchmarks/out/page_speed.json``. On a busy machine one sample says little: ``--repeat N``
goes round the pages' navigation N times and reports each page's median cached load (every
sample is in the JSON); ``--pages`` measures some pages only.

    python -m benchmarks.page_speed                         # builds a demo workspace first
    python -m benchmarks.page_speed --workspace workspace   # the one `make demo` made
    python -m benchmarks.page_speed --workspace workspace --pages usage,forecast,plan --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.browser import ROOT, chromium, serve_app

OUT = ROOT / "benchmarks" / "out" / "page_speed.json"
PAGES: tuple[tuple[str, str], ...] = (
    ("overview", "Fleet overview"),
    ("usage", "Usage"),
    ("forecast", "Forecast explorer"),
    ("scenarios", "Scenarios"),
    ("plan", "Procurement plan"),
    ("reclaim", "Reclaim"),
    ("costs", "Costs"),
    ("data", "Data"),
    ("runs", "Runs"),
)
TIMEOUT_MS = 180_000


def _demo_workspace(folder: Path) -> Path:
    workspace = folder / "workspace"
    print(f"building a demo workspace in {workspace} (ingest, forecast, plan, reclaim, costs)")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "demo",
            "--workspace",
            str(workspace),
            "--no-serve",
        ],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    )
    return workspace


def _rendered(page: Any, title: str) -> None:
    """Wait until the script run is over, the title is shown and every chart is drawn."""
    from playwright.sync_api import expect

    app = page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')
    expect(app).to_have_count(1, timeout=TIMEOUT_MS)
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
                 .every(chart => chart.querySelector('.main-svg'))""",
        timeout=TIMEOUT_MS,
    )
    if page.get_by_test_id("stException").count():
        raise SystemExit(f"the {title} page raised an exception")


def _timed_open(browser: Any, url: str, title: str) -> float:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    began = time.perf_counter()
    page.goto(url)
    _rendered(page, title)
    seconds = time.perf_counter() - began
    page.close()
    return seconds


def _navigate(page: Any, title: str) -> float:
    """Click the page's entry in the sidebar navigation; seconds until it is rendered."""
    from playwright.sync_api import expect

    began = time.perf_counter()
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    _rendered(page, title)
    return time.perf_counter() - began


def _interaction(browser: Any, base: str) -> float:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}usage")
    _rendered(page, "Usage")
    used = page.get_by_test_id("stMetric").filter(has_text="Used").first
    before = used.inner_text()
    began = time.perf_counter()
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").filter(
        has_text="Accelerator"
    ).click()
    page.get_by_role("option").nth(1).click()
    expect(used).not_to_have_text(before, timeout=TIMEOUT_MS)
    _rendered(page, "Usage")
    seconds = time.perf_counter() - began
    page.close()
    return seconds


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="workspace with runs (default: build one)")
    parser.add_argument(
        "--pages",
        help="comma-separated URL paths to measure (default: all): "
        + ",".join(path for path, _ in PAGES),
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="cached loads per page; the median is reported"
    )
    args = parser.parse_args()
    known = dict(PAGES)
    chosen = args.pages.split(",") if args.pages else list(known)
    unknown = [path for path in chosen if path not in known]
    if unknown:
        parser.error(f"unknown page(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    args.pages = [(path, known[path]) for path in chosen]
    return args


def main() -> None:
    args = _arguments()
    pages: list[tuple[str, str]] = args.pages
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as folder:
        workspace = args.workspace or _demo_workspace(Path(folder))
        with serve_app(workspace, deadline_s=120) as base, chromium() as browser:
            rows: list[dict[str, Any]] = []
            for path, title in pages:
                first = _timed_open(browser, f"{base}{path}", title)
                rows.append({"page": title, "url": path, "first_s": first, "cached_samples_s": []})
                print(f"  {title}: first {first:.2f} s", flush=True)
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            # Start on a page not measured (or the last one), so the first click loads a page.
            others = [page for page in PAGES if page not in pages] or [pages[-1]]
            start_path, start_title = others[-1]
            tab.goto(f"{base}{start_path}")
            _rendered(tab, start_title)
            for round_index in range(args.repeat):
                loads.append(os.getloadavg()[0])
                for row in rows:
                    seconds = _navigate(tab, str(row["page"]))
                    row["cached_samples_s"].append(seconds)
                    print(f"  {row['page']}: cached {seconds:.2f} s", flush=True)
                if len(rows) == 1 and round_index + 1 < args.repeat:
                    _navigate(tab, start_title)  # away, so the next click loads the page again
            tab.close()
            interaction = _interaction(browser, base)
    loads.append(os.getloadavg()[0])
    for row in rows:
        row["cached_s"] = statistics.median(row["cached_samples_s"])
    load = statistics.median(loads)
    samples = f", median of {args.repeat} cached loads" if args.repeat > 1 else ""
    print(
        f"\nPage load on the sample fleet ({os.cpu_count()} cores, 1-minute load "
        f"{min(loads):.1f}-{max(loads):.1f}, median {load:.1f}{samples}):\n"
    )
    print("| page | first load | cached load (target < 2 s) |")
    print("|---|---:|---:|")
    for row in rows:
        name = f"{row['page']} (`/{row['url']}`)"
        print(f"| {name} | {row['first_s']:.2f} s | {row['cached_s']:.2f} s |")
    print(f"| interaction: sidebar accelerator on Usage | | {interaction:.2f} s |")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {"pages": rows, "interaction_s": interaction, "load": load, "loads": loads},
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
