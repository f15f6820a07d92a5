"""The app on a loopback port and Debian's chromium, for browser tests and the page benchmark.

``serve_app`` starts ``workbench app`` on a free port in its own process group, waits on
``/_stcore/health`` and stops the group afterwards; ``chromium`` launches the system
browser through Playwright (nothing downloaded).
"""

from __future__ import annotations

import contextlib
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], deadline_s: float = 90.0) -> None:
    """Poll the server's health endpoint until it answers 200 (or the process ends)."""
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


@contextlib.contextmanager
def serve_app(workspace: Path, *, deadline_s: float = 90.0) -> Iterator[str]:
    """``workbench app`` on ``workspace``; yields its base URL (ending in ``/``)."""
    port = free_port()
    command = [sys.executable, "-m", "workbench.cli", "app", "--workspace", str(workspace)]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        },
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", process, deadline_s)
        yield f"http://127.0.0.1:{port}/"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright; yields the launched browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
