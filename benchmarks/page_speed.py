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
``benchmarks/out/page_speed.json``.

    python -m benchmarks.page_speed                         # builds a demo workspace first
    python -m benchmarks.page_speed --workspace workspace   # the one `make demo` made
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="workspace with runs (default: build one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workspace = args.workspace or _demo_workspace(Path(folder))
        with serve_app(workspace, deadline_s=120) as base, chromium() as browser:
            rows = []
            for path, title in PAGES:
                first = _timed_open(browser, f"{base}{path}", title)
                rows.append({"page": title, "url": path, "first_s": first})
                print(f"  {title}: first {first:.2f} s", flush=True)
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.goto(f"{base}{PAGES[-1][0]}")
            _rendered(tab, PAGES[-1][1])
            for row in rows:
                row["cached_s"] = _navigate(tab, str(row["page"]))
                print(f"  {row['page']}: cached {row['cached_s']:.2f} s", flush=True)
            tab.close()
            interaction = _interaction(browser, base)
    load = os.getloadavg()[0]
    print(f"\nPage load on the sample fleet ({os.cpu_count()} cores, load {load:.1f}):\n")
    print("| page | first load | cached load (target < 2 s) |")
    print("|---|---:|---:|")
    for row in rows:
        name = f"{row['page']} (`/{row['url']}`)"
        print(f"| {name} | {row['first_s']:.2f} s | {row['cached_s']:.2f} s |")
    print(f"| interaction: sidebar accelerator on Usage | | {interaction:.2f} s |")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps({"pages": rows, "interaction_s": interaction, "load": load}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
