"""The app in a real browser: `workbench app` serves it on its port and a person can use it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.ingest import ingest
from workbench.store import Workspace

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data_samples"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], deadline_s: float = 90.0) -> None:
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise AssertionError(f"the app exited early with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)  # polling a server's health endpoint, not waiting on the UI
    raise AssertionError(f"{url} did not answer within {deadline_s:.0f} s")


@pytest.fixture(scope="module")
def served_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workspace = Workspace(tmp_path_factory.mktemp("browser") / "workspace").init()
    ingest(workspace, "catalog", [SAMPLE / "catalog" / "sku_catalog.toml"])
    ingest(workspace, "allocations", [SAMPLE / "allocations" / "allocations.csv"])
    ingest(workspace, "jobs", [SAMPLE / "jobs" / "jobs.csv.gz"])
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "workbench.cli",
        "app",
        "--workspace",
        str(workspace.root),
        "--port",
        str(port),
    ]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", process)
        yield f"http://127.0.0.1:{port}/"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


def test_app_answers_and_a_selection_changes_the_numbers(served_app):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{served_app}usage")  # the fleet overview is the default page
            used = page.locator('[data-testid="stMetric"]').filter(has_text="Used").first
            expect(used).to_contain_text("M chip-h", timeout=60_000)
            # The history and the weekly rhythm.
            expect(page.locator(".js-plotly-plot")).to_have_count(2, timeout=60_000)
            before = used.inner_text()
            page.locator('[data-testid="stSelectbox"]').filter(has_text="Accelerator").click()
            page.get_by_role("option", name="tpu-v5p").click()
            expect(used).not_to_have_text(before, timeout=60_000)
            expect(page.get_by_text("Used / allocated")).to_be_visible()
            assert not page.locator('[data-testid="stException"]').count()
        finally:
            browser.close()
