"""Ingest through the Mistral OCR client against a local server speaking its protocol: a rejected
key, rate limiting, a server that is down or too slow — the collection stays exactly as it was,
and a 429 followed by success ingests normally."""

from __future__ import annotations

import socket

import pytest
from conftest import shared_data
from servers.base import Action
from servers.fake_mistral import FakeMistral

from engine.errors import OCRAuthError, OCRServiceError
from engine.pipeline import IngestOptions, collection, ingest, search

KEY = "sk-test-pipeline-0123456789"
DOC = ("pdfs", "table_small.pdf")
MISTRAL = IngestOptions(ocr="mistral", force=True)


def _snapshot(studio, name) -> dict:
    path = studio.settings.collections_dir / name
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture()
def mistral(monkeypatch):
    with FakeMistral(api_key=KEY) as server:
        monkeypatch.setenv("MISTRAL_API_KEY", KEY)
        monkeypatch.setenv("STUDIO_MISTRAL_URL", server.url)
        monkeypatch.setenv("STUDIO_MISTRAL_BACKOFF_S", "0.01")
        monkeypatch.setenv("STUDIO_MISTRAL_TIMEOUT_S", "1")
        yield server


@pytest.fixture()
def base(studio):
    name = "remote-ocr"
    ingest(studio, name, shared_data("pdfs", "encrypted_rc4_dmca_18p.pdf"))
    return name


def test_rate_limited_then_ingested(studio, base, mistral):
    mistral.queue(Action(429, {"message": "Requests rate limit exceeded"}, {"Retry-After": "1"}))
    result = ingest(studio, base, shared_data(*DOC), options=MISTRAL)
    assert result.ok and result.ocr_pages == 1 and len(mistral.requests_to("/v1/ocr")) == 2
    record = collection(studio, base).info().document("table_small.pdf")
    assert record.ocr_engine == "mistral"
    pages = collection(studio, base).pages_of(record.doc_id)
    assert pages[0].source == "mistral" and pages[0].ocr_used
    assert search(studio, base, "boiling point", k=1).hits[0].document == "table_small.pdf"


@pytest.mark.parametrize("case", ["rejected key", "server down", "timeout", "server error"])
def test_failures_leave_the_collection_unchanged(studio, base, mistral, monkeypatch, case):
    before = _snapshot(studio, base)
    expected = OCRServiceError
    if case == "rejected key":
        monkeypatch.setenv("MISTRAL_API_KEY", "sk-wrong-key-000000")
        expected = OCRAuthError
    elif case == "server down":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            monkeypatch.setenv("STUDIO_MISTRAL_URL", f"http://127.0.0.1:{s.getsockname()[1]}")
    elif case == "timeout":
        mistral.queue(Action(200, delay=3.0))
    else:
        mistral.queue(*[Action(503, "overloaded")] * 6)
    with pytest.raises(expected) as info:
        ingest(studio, base, shared_data(*DOC), options=MISTRAL)
    assert info.value.message and "sk-" not in info.value.message + info.value.hint
    assert _snapshot(studio, base) == before
