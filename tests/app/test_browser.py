"""End to end in a real browser: ``streamlit run app.py`` on loopback, driven by Playwright with Debian's
headless chromium. A real PDF is uploaded through the Documents page and searched on the Search page;
broken files give a readable error, never a traceback. Screenshots of every page land in
test-artifacts/screenshots/, and the figures measured on the way (upload-to-searchable time, search
latency shown in the page, peak memory of the Streamlit process) in test-artifacts/app-measurements.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from browser_support import browser_fixture, idle, needs_chromium, open_page, streamlit_app  # noqa: F401 (browser: a fixture)
from conftest import ROOT, shared_data

ARTIFACTS = ROOT / "test-artifacts"
SHOTS = ARTIFACTS / "screenshots"
# A sentence from page 9 of the 18-page DMCA summary (an RC4-encrypted PDF with an empty user password).
PDF = "encrypted_rc4_dmca_18p.pdf"
QUERY = ("Title II establishes a procedure by which a copyright owner can obtain a subpoena from a federal court "
         "ordering a service provider to disclose the identity of a subscriber")
QUERY_PAGE = 9

pytestmark = needs_chromium


def _proc_status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb(pid: int) -> float:
    return _proc_status_mb(pid, "VmHWM")


def _rss_mb(pid: int) -> float:
    return _proc_status_mb(pid, "VmRSS")


@pytest.fixture(scope="module")
def server(default_model, tmp_path_factory):
    """The app on 127.0.0.1:<free port>, over its own data folder holding a link to the converted default model."""
    with streamlit_app(default_model, tmp_path_factory.mktemp("browser-data")) as app:
        yield app


def _shot(page, name: str) -> None:
    """The whole page: Streamlit scrolls inside its own container, so the viewport is grown to fit it first."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    idle(page)
    height = page.evaluate("""() => Math.max(...['stMain', 'stAppViewContainer', 'stMainBlockContainer']
        .map(id => document.querySelector(`[data-testid="${id}"]`)).filter(Boolean).map(e => e.scrollHeight))""")
    page.set_viewport_size({"width": 1400, "height": min(max(1000, int(height) + 40), 9000)})
    page.wait_for_timeout(700)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})


def _no_traceback(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "Traceback (most recent call last)" not in page.content()


def test_upload_search_and_errors_in_a_real_browser(server, browser):
    good = shared_data("pdfs", PDF)
    not_pdf = shared_data("pdfs", "not_a_pdf_oops.pdf")
    corrupt = shared_data("pdfs", "broken_xref_unreadable.pdf")
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    figures: dict[str, object] = {"load_average_start": os.getloadavg()}

    # home: what really runs
    page = open_page(browser, server.url)
    page.get_by_text("Really runs on").wait_for()
    figures["rss_mb_model_loaded"] = round(_rss_mb(server.pid), 1)
    _no_traceback(page)
    _shot(page, "0_home")

    # models: the registry, and a clear offline message for the hub
    page.goto(f"{server.url}/Models")
    page.get_by_text("Registry", exact=True).wait_for()
    page.get_by_role("button", name="Search the hub").click()
    page.get_by_text("Offline.").wait_for()
    _no_traceback(page)
    _shot(page, "1_models")

    # documents: upload a real PDF, ingest, time until it is searchable
    page.goto(f"{server.url}/Documents")
    page.get_by_text("Drop PDFs here").wait_for()
    started = time.perf_counter()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(good))
    ingest = page.get_by_role("button", name=re.compile(r"Ingest 1 file"))
    ingest.wait_for()
    idle(page)
    ingest.click()
    page.get_by_text(re.compile(rf"Ingested {re.escape(PDF)}: 18 pages")).wait_for(timeout=300_000)
    figures["upload_to_searchable_seconds"] = round(time.perf_counter() - started, 2)
    figures["load_average_after_ingest"] = os.getloadavg()
    _no_traceback(page)
    page.locator('[data-testid="stImage"]').first.wait_for()
    _shot(page, "2_documents")

    # documents again, in a fresh session: a file that is not a PDF and a damaged one
    page.goto(f"{server.url}/Documents")
    page.get_by_text("Drop PDFs here").wait_for()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files([str(not_pdf), str(corrupt)])
    ingest = page.get_by_role("button", name=re.compile(r"Ingest 2 file"))
    ingest.wait_for()
    idle(page)
    ingest.click()
    errors = page.locator('[data-testid="stAlertContentError"]')
    errors.nth(1).wait_for(timeout=120_000)
    messages = [errors.nth(i).inner_text() for i in range(errors.count())]
    assert any("not_a_pdf_oops.pdf" in m and "is not a PDF" in m for m in messages), messages
    assert any("broken_xref_unreadable.pdf" in m and "damaged" in m for m in messages), messages
    assert all("What to do:" in m for m in messages), messages
    _no_traceback(page)
    _shot(page, "2_documents_errors")

    # search: the sentence's own page comes first, and the page shows the query latency
    page.goto(f"{server.url}/Search")
    box = page.get_by_label("Your question")
    box.wait_for()
    box.fill(QUERY)
    page.get_by_role("button", name="Search", exact=True).click()
    first = page.locator("h4", has_text=re.compile(r"^1\. ")).first
    first.wait_for()
    idle(page)  # the hits render one after another: read them once the script run is over
    heading = first.inner_text()
    assert re.search(rf"{re.escape(PDF)} — page {QUERY_PAGE}$", heading), heading
    latency = page.locator('[data-testid="stMetric"]', has_text="Query latency").locator('[data-testid="stMetricValue"]')
    figures["search_latency_shown"] = latency.inner_text()
    figures["peak_rss_mb_after_ingest_and_search"] = round(_peak_rss_mb(server.pid), 1)
    assert re.fullmatch(r"[\d.]+ (ms|s)", figures["search_latency_shown"])
    highlighted = page.locator("mark.studio-hit").first.inner_text()
    assert "subpoena" in highlighted or "Title II" in highlighted, highlighted
    page.locator('[data-testid="stImage"]').first.wait_for()
    _no_traceback(page)
    _shot(page, "4_search")

    # chunks: boundaries and overlap on the page text
    page.goto(f"{server.url}/Chunks")
    page.get_by_text("Boundaries on the page text").wait_for()
    page.locator("span.studio-chunk").first.wait_for()
    _no_traceback(page)
    _shot(page, "3_chunks")

    # benchmarks: a small run from the page, charts with parity
    page.goto(f"{server.url}/Benchmarks")
    page.get_by_label("Batch sizes").wait_for()
    page.get_by_label("Batch sizes").fill("8")
    page.get_by_label("Texts", exact=True).fill("16")
    page.get_by_role("button", name="Run benchmark").click()
    page.locator('[data-testid="stPlotlyChart"]').nth(1).wait_for(timeout=180_000)
    _no_traceback(page)
    _shot(page, "5_benchmarks")

    figures["peak_rss_mb_after_benchmark"] = round(_peak_rss_mb(server.pid), 1)
    figures["load_average_end"] = os.getloadavg()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "app-measurements.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
    page.close()
