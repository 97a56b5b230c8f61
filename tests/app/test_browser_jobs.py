"""In a real browser (Playwright + Debian's chromium), two things a user of a shared studio relies on:

- an ingest started on the Documents page goes on while the user opens another page (it is a background
  job of the process's Studio): Search shows it in the sidebar, and back on Documents it finishes;
- with ``STUDIO_APP_PASSWORD`` (or ``API_TOKEN``) set, the app asks for it before anything else, whatever
  page is asked for; a wrong password is refused after a delay; the right one is kept for the browser session.
"""

from __future__ import annotations

import os
import re
import time

from browser_support import browser_fixture, idle, needs_chromium, open_page, streamlit_app  # noqa: F401 (browser: a fixture)
from conftest import shared_data

BOOK = "report_nist_sp800-223.pdf"  # 34 pages
# loaded by the app's interpreter (PYTHONPATH): each ingest job waits until the test creates the gate file, so the
# job is still running when the user has gone to another page, on any machine (this file ingests in ~2-3 s here)
GATE_SITECUSTOMIZE = """
import os, time
import engine.jobs as jobs

_ingest_one = jobs._ingest_one


def _gated(*args, **kwargs):
    deadline = time.monotonic() + 600
    while not os.path.exists(os.environ["STUDIO_TEST_INGEST_GATE"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _ingest_one(*args, **kwargs)


jobs._ingest_one = _gated
"""
PASSWORD = "open-sesame-42"

pytestmark = needs_chromium


def _nav(page, title: str) -> None:
    """Switch page the way a user does, through the sidebar (same browser session, unlike a reload)."""
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()


def _no_traceback(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "Traceback (most recent call last)" not in page.content()


def test_an_ingest_goes_on_while_the_user_opens_another_page(default_model, browser, tmp_path):
    book = shared_data("pdfs", BOOK)
    hooks, gate = tmp_path / "hooks", tmp_path / "ingest-may-go-on"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(GATE_SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH", "")) if p)
    with streamlit_app(default_model, tmp_path / "data", PYTHONPATH=path, STUDIO_TEST_INGEST_GATE=str(gate)) as app:
        page = open_page(browser, f"{app.url}/Documents")
        page.get_by_text("Drop PDFs here").wait_for()
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(book))
        ingest = page.get_by_role("button", name=re.compile(r"Ingest 1 file"))
        ingest.wait_for()
        idle(page)
        ingest.click()
        page.get_by_text(re.compile(r"Ingesting 1 file into 'documents'")).wait_for(timeout=60_000)

        # the user goes to Search while the ingest runs: the sidebar says it is still going
        _nav(page, "Search")
        page.get_by_role("heading", name="Search").wait_for()
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text(re.compile(r"Ingesting into 'documents'")).wait_for(timeout=30_000)
        _no_traceback(page)
        gate.touch()  # the job may go on now

        # and comes back: the ingest finished (or finishes) and its result is shown
        _nav(page, "Documents")
        page.get_by_text(re.compile(rf"Ingested {re.escape(BOOK)}: 34 pages")).wait_for(timeout=600_000)
        _no_traceback(page)
        assert page.get_by_text("Collection 'documents'").count() == 1
        page.close()


def test_the_app_asks_for_its_password_before_anything_else(default_model, browser, tmp_path):
    with streamlit_app(default_model, tmp_path / "data", STUDIO_APP_PASSWORD=PASSWORD) as app:
        for path in ("", "/Documents", "/Search"):  # whatever URL is asked for, only the sign-in page answers
            page = open_page(browser, f"{app.url}{path}")
            page.get_by_role("button", name="Sign in").wait_for()
            idle(page)
            assert page.get_by_text("Drop PDFs here").count() == 0 and page.get_by_text("Your question").count() == 0
            assert page.locator('[data-testid="stSidebarNav"]').count() == 0
            page.close()

        page = open_page(browser, app.url)
        box = page.get_by_label("Password", exact=True)
        box.fill("wrong-password")
        started = time.monotonic()
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Wrong password.").wait_for()
        assert time.monotonic() - started >= 1.0  # a delay after a wrong attempt
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Really runs on").wait_for()  # the home page
        _nav(page, "Search")  # kept for this browser session: no second sign-in
        page.get_by_role("heading", name="Search").wait_for()
        assert page.get_by_role("button", name="Sign in").count() == 0
        _no_traceback(page)
        page.close()
        assert PASSWORD not in app.log_path.read_text()
