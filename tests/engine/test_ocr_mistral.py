"""The Mistral OCR back-end over real HTTP against tests/servers/fake_mistral.py on 127.0.0.1:
the real mistralai SDK, our retry policy, splitting over the limits, and the error translation."""

from __future__ import annotations

import base64
import io
import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import numpy as np
import pymupdf
import pytest
from conftest import shared_data
from PIL import Image
from servers.base import Action
from servers.fake_mistral import FakeMistral

from engine.errors import (
    DocumentLimitError,
    EncryptedDocumentError,
    OCRAuthError,
    OCRRateLimitError,
    OCRServiceError,
    OCRUnavailableError,
)
from engine.ocr import BACKENDS
from engine.ocr.base import PageImage
from engine.ocr.mistral import (
    Batch,
    MistralOCR,
    load_mistral_settings,
    markdown_to_text,
    page_numbers_for,
    plan_batches,
    retry_after_seconds,
)

KEY = "sk-test-0123456789abcdef"


@pytest.fixture()
def fake():
    with FakeMistral(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    for name in ("STUDIO_MISTRAL_URL", "STUDIO_MISTRAL_MAX_PAGES", "STUDIO_MISTRAL_MAX_BYTES", "MISTRAL_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)


def backend(fake: FakeMistral, sleep=time.sleep, **overrides) -> MistralOCR:
    """The back-end as a user configures it (environment + settings), pointed at the fake, with short backoffs."""
    return MistralOCR(sleep=sleep, **({"url": fake.url, "backoff_s": 0.01, "max_backoff_s": 0.05} | overrides))


def make_pdf(pages: int, noise_px: int = 0) -> bytes:
    """A PDF whose page N says 'marker N'; noise_px adds an incompressible image to grow each page."""
    rng = np.random.default_rng(0)
    with pymupdf.open() as pdf:
        for number in range(1, pages + 1):
            page = pdf.new_page()
            page.insert_text((72, 72), f"marker {number} of the generated document")
            if noise_px:
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (noise_px, noise_px, 3), dtype=np.uint8)).save(buffer, format="PNG")
                page.insert_image(pymupdf.Rect(72, 100, 300, 328), stream=buffer.getvalue())
        return pdf.tobytes()


def text_layer(pdf: bytes, number: int) -> str:
    with pymupdf.open(stream=pdf, filetype="pdf") as document:
        return document[number - 1].get_text().strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- pure pieces ------------------------------------------------------------------------------------
def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("1") == 1.0
    assert retry_after_seconds(" 2.5 ") == 2.5
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == pytest.approx(7.0)
    assert retry_after_seconds("Thu, 01 Jan 2026 11:59:00 GMT", now) == 0.0  # in the past: go now
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None and retry_after_seconds("") is None


def test_batches_and_page_mapping():
    settings = load_mistral_settings(max_pages=10, max_bytes=1000)
    assert plan_batches(8, 900, [2, 5], settings) == [Batch((2, 5), True)]
    assert plan_batches(25, 900, list(range(1, 26)), settings) == [
        Batch(tuple(range(1, 11)), False), Batch(tuple(range(11, 21)), False), Batch(tuple(range(21, 26)), False)]
    assert plan_batches(3, 5000, [1, 3], settings) == [Batch((1, 3), False)]
    assert page_numbers_for([1, 4], Batch((2, 5), True)) == [2, 5]  # the document's own indices
    assert page_numbers_for([0, 1], Batch((3, 4), True)) == [3, 4]  # positions in the pages list
    assert page_numbers_for([0, 1], Batch((7, 9), False)) == [7, 9]  # a sub-PDF counts from 0
    with pytest.raises(OCRServiceError):
        page_numbers_for([5], Batch((1, 2), False))


def test_markdown_keeps_text_and_tables_and_drops_image_links():
    markdown = "# Title\n\n![img-0.jpeg](img-0.jpeg)\n\n\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert markdown_to_text(markdown) == "# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |"


def test_registered_as_a_remote_backend():
    assert BACKENDS["mistral"] is MistralOCR and MistralOCR.local is False


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="colour"):
        MistralOCR(colour="blue")


# --- availability and the key ---------------------------------------------------------------------------
def test_missing_key_is_unavailable_and_sends_nothing(fake, monkeypatch):
    monkeypatch.delenv("MISTRAL_API_KEY")
    ocr = backend(fake)
    availability = ocr.availability()
    assert not availability.available
    assert "MISTRAL_API_KEY" in availability.reason and "MISTRAL_API_KEY" in availability.hint
    with pytest.raises(OCRUnavailableError) as caught:
        ocr.recognize_pdf(make_pdf(1), [1])
    assert "MISTRAL_API_KEY" in caught.value.hint
    assert fake.requests == []


def test_key_present_is_available_without_a_request(fake):
    assert backend(fake).availability().available
    assert fake.requests == []


def test_rejected_key(fake, monkeypatch, caplog):
    monkeypatch.setenv("MISTRAL_API_KEY", "sk-wrong-key-987654321")
    monkeypatch.setenv("MISTRAL_DEBUG", "1")  # the SDK would log request headers with it: we silence its logger
    caplog.set_level(logging.DEBUG)
    with pytest.raises(OCRAuthError) as caught:
        backend(fake).recognize_pdf(make_pdf(1), [1])
    assert "401" in caught.value.message and "MISTRAL_API_KEY" in caught.value.hint
    assert len(fake.requests) == 1  # no retry on 401
    assert fake.requests[0].headers["authorization"] == "Bearer sk-wrong-key-987654321"
    assert "sk-wrong-key" not in str(caught.value) and "sk-wrong-key" not in caplog.text


# --- success ---------------------------------------------------------------------------------------------
def test_all_pages_of_a_real_pdf_go_up_as_the_whole_document(fake):
    pdf = shared_data("pdfs", "report_nist_sp800-223.pdf").read_bytes()  # 34 pages
    results = backend(fake).recognize_pdf(pdf, [34, *range(1, 35), 2])
    assert sorted(results) == list(range(1, 35))
    for number in results:
        assert results[number].text == text_layer(pdf, number)  # right page, image link dropped
        assert not results[number].degraded and results[number].seconds > 0
    (request,) = fake.requests
    body = request.json()
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert body["model"] == "mistral-ocr-latest" and body["pages"] == list(range(34))
    assert body["document"]["type"] == "document_url"
    assert body["document"]["document_url"].startswith("data:application/pdf;base64,")
    assert fake.documents() == [pdf]  # the whole PDF went up once, unchanged
    assert body["include_image_base64"] is False


def test_some_pages_of_a_real_pdf_go_up_alone_when_that_is_smaller(fake):
    pdf = shared_data("pdfs", "paper_mdpi_ki67_images.pdf").read_bytes()  # 12 pages, 2.4 MB of photos
    results = backend(fake).recognize_pdf(pdf, [2, 12])
    assert {n: r.text for n, r in results.items()} == {2: text_layer(pdf, 2), 12: text_layer(pdf, 12)}
    (document,) = fake.documents()
    assert len(document) < len(pdf) / 4 and pymupdf.open(stream=document, filetype="pdf").page_count == 2
    assert "pages" not in fake.requests[0].json()


def test_one_page_image(fake):
    buffer = io.BytesIO()
    Image.new("RGB", (120, 80), "white").save(buffer, format="PNG")
    result = backend(fake).recognize(PageImage(number=3, png=buffer.getvalue(), width_px=120, height_px=80, dpi=200))
    assert result.text == "# Scanned page\n\nAn image of 120x80 pixels."
    document = fake.requests[0].json()["document"]
    assert document["type"] == "image_url"
    assert base64.b64decode(document["image_url"].split(",", 1)[1]) == buffer.getvalue()


def test_no_pages_asked_sends_nothing(fake):
    assert backend(fake).recognize_pdf(make_pdf(2), []) == {}
    assert fake.requests == []


# --- retries ---------------------------------------------------------------------------------------------
def test_429_with_retry_after_then_success(fake):
    fake.queue(Action(429, {"message": "Requests rate limit exceeded"}, {"Retry-After": "1"}))
    started = time.monotonic()
    results = backend(fake, backoff_s=30).recognize_pdf(make_pdf(2), [1, 2])
    assert 1.0 <= time.monotonic() - started < 5  # waited what the server asked, not the 30 s backoff
    assert results[2].text == "marker 2 of the generated document"
    assert len(fake.requests) == 2


def test_retry_after_as_an_http_date(fake):
    waits: list[float] = []
    # a minute ahead (nothing sleeps: the waits are recorded): the date's whole seconds and a slow machine's
    # seconds between writing it and reading it stay far inside the bounds
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    fake.queue(Action(429, {"message": "slow down"}, {"Retry-After": when}))
    backend(fake, sleep=waits.append).recognize_pdf(make_pdf(1), [1])
    assert len(waits) == 1 and 50.0 < waits[0] <= 60.0


def test_500_then_success(fake):
    fake.queue(Action(500, "Internal Server Error"))
    results = backend(fake).recognize_pdf(make_pdf(1), [1])
    assert results[1].text == "marker 1 of the generated document"
    assert len(fake.requests) == 2


def test_persistent_503_is_a_clear_error_after_bounded_attempts(fake):
    fake.queue(*[Action(503, {"message": "Service unavailable"})] * 10)
    with pytest.raises(OCRServiceError) as caught:
        backend(fake, max_attempts=3).recognize_pdf(make_pdf(1), [1])
    assert "503" in caught.value.message and "3 attempt" in caught.value.message
    assert "status.mistral.ai" in caught.value.hint
    assert len(fake.requests) == 3


def test_rate_limit_that_outlasts_the_time_budget(fake):
    fake.queue(Action(429, {"message": "Requests rate limit exceeded"}, {"Retry-After": "120"}))
    started = time.monotonic()
    with pytest.raises(OCRRateLimitError) as caught:
        backend(fake, max_retry_s=5).recognize_pdf(make_pdf(1), [1])
    assert time.monotonic() - started < 3  # did not sit out a wait it could not afford
    assert "429" in caught.value.message and "budget" in caught.value.message and "batch" in caught.value.hint
    assert len(fake.requests) == 1


def test_rate_limit_after_all_attempts(fake):
    fake.queue(*[Action(429, {"message": "Requests rate limit exceeded"}, {"Retry-After": "0"})] * 5)
    with pytest.raises(OCRRateLimitError, match="after 2 attempt"):
        backend(fake, max_attempts=2).recognize_pdf(make_pdf(1), [1])


def test_422_names_the_problem(fake):
    problem = {"loc": ["body", "model"], "msg": "Invalid model: mistral-ocr-9", "type": "value_error"}
    fake.queue(Action(422, {"detail": [problem]}))
    with pytest.raises(OCRServiceError, match="Invalid model"):
        backend(fake).recognize_pdf(make_pdf(1), [1])
    assert len(fake.requests) == 1


# --- transport failures -------------------------------------------------------------------------------------
def test_slow_response_trips_the_timeout(fake):
    fake.queue(Action(200, delay=3.0))
    started = time.monotonic()
    with pytest.raises(OCRServiceError) as caught:
        backend(fake, timeout_s=0.5).recognize_pdf(make_pdf(1), [1])
    assert time.monotonic() - started < 2.5
    assert "did not answer within 0.5 s" in caught.value.message and "STUDIO_MISTRAL_TIMEOUT_S" in caught.value.hint


def test_server_down(fake):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(OCRServiceError) as caught:
        backend(fake, url=url).recognize_pdf(make_pdf(1), [1])
    assert "Cannot reach Mistral OCR" in caught.value.message and url in caught.value.message
    assert "STUDIO_MISTRAL_URL" in caught.value.hint


# --- limits -------------------------------------------------------------------------------------------------
def test_split_by_the_page_limit_and_stitched_back():
    pdf = make_pdf(25)
    with FakeMistral(api_key=KEY, max_pages=10) as fake:
        results = backend(fake, max_pages=10).recognize_pdf(pdf, list(range(1, 26)))
        documents = fake.documents()
    assert [pymupdf.open(stream=d, filetype="pdf").page_count for d in documents] == [10, 10, 5]
    assert sorted(results) == list(range(1, 26))
    assert all(results[n].text == f"marker {n} of the generated document" for n in results)


def test_split_by_the_size_limit_only_sends_the_pages_asked():
    pdf = make_pdf(6, noise_px=120)  # ~45 kB of noise per page
    assert len(pdf) > 200_000
    wanted = [1, 2, 3, 5, 6]
    with FakeMistral(api_key=KEY, max_bytes=100_000) as fake:
        results = backend(fake, max_bytes=100_000).recognize_pdf(pdf, wanted)
        documents = fake.documents()
    assert len(documents) >= 3 and all(len(d) <= 100_000 for d in documents)
    assert sum(pymupdf.open(stream=d, filetype="pdf").page_count for d in documents) == len(wanted)
    assert sorted(results) == wanted
    assert all(results[n].text == f"marker {n} of the generated document" for n in wanted)


def test_a_single_page_over_the_size_limit(fake):
    with pytest.raises(DocumentLimitError, match="Page 1 alone"):
        backend(fake, max_bytes=20_000).recognize_pdf(make_pdf(1, noise_px=120), [1])
    assert fake.requests == []


def test_encrypted_pdf_needs_its_password_first(fake):
    pdf = shared_data("pdfs", "encrypted_user_pw_rc4.pdf").read_bytes()
    with pytest.raises(EncryptedDocumentError):
        backend(fake).recognize_pdf(pdf, [1])
    assert fake.requests == []
