"""What the browser tests share: the app started with ``streamlit run app.py`` on loopback over its own data
folder, Debian's headless chromium driven by Playwright, and the waits a page needs."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT

CHROMIUM = Path(os.environ.get("STUDIO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# the app's sign-in settings come only from what a test passes, never from the environment that runs the suite
SIGN_IN_VARIABLES = ("API_TOKEN", "STUDIO_API_TOKEN", "STUDIO_APP_PASSWORD")

playwright_api = pytest.importorskip("playwright.sync_api")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing: apt-get install -y chromium")


@dataclass(frozen=True)
class App:
    url: str
    pid: int
    data: Path
    log_path: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def streamlit_app(default_model: Path, data: Path, **env: str) -> Iterator[App]:
    """``streamlit run app.py`` on 127.0.0.1:<free port> over ``data`` (with a link to the converted default model),
    answering its health check; stopped on exit."""
    (data / "models").mkdir(parents=True, exist_ok=True)
    (data / "models" / default_model.name).symlink_to(default_model, target_is_directory=True)
    port = _free_port()
    environment = {**os.environ, "STUDIO_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **env}
    for name in SIGN_IN_VARIABLES:
        if name not in env:
            environment.pop(name, None)
    log_path = data / "streamlit.log"
    with open(log_path, "w+") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1", "--server.port",
             str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=ROOT, env=environment, stdout=log_file, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                        if response.read().strip() == b"ok":
                            break
                except OSError:
                    time.sleep(0.3)
                if process.poll() is not None or time.monotonic() > deadline:
                    log_file.seek(0)
                    pytest.fail(f"streamlit did not start: {log_file.read()[-2000:]}")
            yield App(url, process.pid, data, log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module", name="browser")
def browser_fixture():
    with playwright_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(90_000)
    page.goto(url)
    page.wait_for_selector('[data-testid="stApp"]')
    return page


def idle(page) -> None:
    """Wait until the script run is over (Streamlit shows its status widget while a script runs)."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
