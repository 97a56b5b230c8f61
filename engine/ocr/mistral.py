"""Mistral OCR API (``mistralai`` SDK, POST /v1/ocr).

A PDF goes up whole as a base64 data URI with the pages that need OCR (``pages``, 0-based);
a document over the API's limits (~50 MB, ~1000 pages: settings, so tests can use small ones) is
split into sub-PDFs holding only the wanted pages, and the page numbers are stitched back.
The page markdown is the page text (image links dropped: the images are not kept).

Retries: the SDK retries nothing by default, so we retry 429 and 5xx ourselves, honouring
``Retry-After`` (seconds or an HTTP date), with bounded attempts and a bounded total time.
The key comes from ``MISTRAL_API_KEY`` and is never logged: the SDK's debug logger (which prints
request headers when ``MISTRAL_DEBUG`` is set) is replaced by a silent one.
"""

from __future__ import annotations

import base64
import importlib.util
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import (
    CorruptDocumentError,
    DocumentLimitError,
    EncryptedDocumentError,
    InputError,
    OCRAuthError,
    OCRRateLimitError,
    OCRServiceError,
    OCRUnavailableError,
)
from engine.httpauth import mask_url
from engine.log import redact
from engine.ocr import register
from engine.ocr.base import Availability, OCRBackend, OCRText, PageImage
from engine.settings import build

log = logging.getLogger(__name__)
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class MistralSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIO_MISTRAL_", extra="ignore", frozen=True, populate_by_name=True)

    api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("MISTRAL_API_KEY"))
    url: str = "https://api.mistral.ai"  # STUDIO_MISTRAL_URL: the SDK's server_url
    model: str = "mistral-ocr-latest"
    timeout_s: float = Field(300.0, gt=0)  # one request (the SDK's default)
    max_attempts: int = Field(5, ge=1)  # per request, the first try included
    max_retry_s: float = Field(180.0, ge=0)  # total time one request may spend, waits included
    backoff_s: float = Field(1.0, ge=0)  # first wait without Retry-After; doubles each time
    max_backoff_s: float = Field(30.0, ge=0)
    max_bytes: int = Field(50_000_000, ge=1)  # PDF bytes per request (~50 MB)
    max_pages: int = Field(1000, ge=1)  # pages per request document (~1000)


def load_mistral_settings(**overrides: Any) -> MistralSettings:
    return build(MistralSettings, "Mistral OCR settings", **overrides)


# --- pure helpers ---------------------------------------------------------------------------------
def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header as seconds to wait: delta-seconds or an HTTP date (RFC 9110)."""
    if not value or not value.strip():
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, settings: MistralSettings, retry_after: float | None) -> float:
    """Seconds to wait before try ``attempt + 1``: the server's Retry-After, else exponential with jitter."""
    if retry_after is not None:
        return retry_after
    delay = min(settings.max_backoff_s, settings.backoff_s * 2 ** (attempt - 1))
    return delay * random.uniform(0.8, 1.0)


_IMAGE_LINK = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_BLANK_RUNS = re.compile(r"\n{3,}")


def markdown_to_text(markdown: str) -> str:
    """The page text we chunk: Mistral's markdown, minus links to images we do not keep."""
    return _BLANK_RUNS.sub("\n\n", _IMAGE_LINK.sub("", markdown)).strip()


@dataclass(frozen=True)
class Batch:
    pages: tuple[int, ...]  # 1-based page numbers of the original document
    whole_document: bool  # send the original PDF with a pages list, or a sub-PDF of exactly these pages


def plan_batches(page_count: int, size_bytes: int, pages: list[int], settings: MistralSettings) -> list[Batch]:
    """The whole PDF (with a ``pages`` list) when it is within the limits; otherwise groups of at
    most max_pages pages, each sent as a sub-PDF of just those pages (halved later if still too big)."""
    if size_bytes <= settings.max_bytes and page_count <= settings.max_pages:
        return [Batch(tuple(pages), True)]
    step = settings.max_pages
    return [Batch(tuple(pages[i : i + step]), False) for i in range(0, len(pages), step)]


def page_numbers_for(indices: list[int], batch: Batch) -> list[int]:
    """Map the response's 0-based page indices back to the original 1-based page numbers.

    A sub-PDF's pages are numbered from 0. For the whole document with a ``pages`` list the API
    answers with the document's own indices; if they do not fit, read them as positions in the list.
    """
    if batch.whole_document and all(i + 1 in batch.pages for i in indices):
        return [i + 1 for i in indices]
    if all(0 <= i < len(batch.pages) for i in indices):
        return [batch.pages[i] for i in indices]
    raise OCRServiceError(f"Mistral OCR answered with pages {indices} for a request of {len(batch.pages)} page(s)",
                          "this looks like an API change: report it")


# --- the back-end ---------------------------------------------------------------------------------
@register
class MistralOCR(OCRBackend):
    name: ClassVar[str] = "mistral"
    local: ClassVar[bool] = False

    def __init__(self, settings: MistralSettings | None = None, sleep: Callable[[float], None] = time.sleep,
                 **overrides: Any) -> None:
        """``overrides``: settings fields by name (``model="mistral-ocr-2512"``, ``max_pages=100``)."""
        unknown = set(overrides) - set(MistralSettings.model_fields)
        if unknown:
            raise TypeError(f"unknown Mistral OCR option(s): {', '.join(sorted(unknown))}")
        self.settings = settings or load_mistral_settings(**overrides)
        self._sleep = sleep
        self._client = None

    def availability(self) -> Availability:
        if importlib.util.find_spec("mistralai") is None or importlib.util.find_spec("mistralai.client") is None:
            return Availability(self.name, False, "the mistralai SDK (v2+) is not installed", "pip install 'mistralai>=2'")
        if self.settings.api_key is None or not self.settings.api_key.get_secret_value().strip():
            return Availability(self.name, False, "no Mistral API key (MISTRAL_API_KEY is not set)",
                                "create a key at https://console.mistral.ai and export MISTRAL_API_KEY=...")
        return Availability(self.name, True)

    # interface
    def recognize(self, image: PageImage) -> OCRText:
        if len(image.png) > self.settings.max_bytes:
            raise DocumentLimitError(f"Page {image.number}'s image is {len(image.png) / 1e6:.1f} MB, over Mistral's "
                                     f"{self.settings.max_bytes / 1e6:.0f} MB limit", "render it at a lower DPI")
        document = {"type": "image_url", "image_url": "data:image/png;base64," + base64.b64encode(image.png).decode("ascii")}
        started = time.perf_counter()
        response = self._process(document, None)
        seconds = time.perf_counter() - started
        if not response.pages:
            return OCRText("", seconds, degraded=True, notes=("Mistral OCR returned no page for this image",))
        return self._page_text(response.pages[0], seconds)

    def recognize_pdf(self, pdf: bytes, pages: list[int]) -> dict[int, OCRText]:
        """OCR the given 1-based pages of a PDF; returns {page number: text} for every page asked."""
        wanted = sorted(set(pages))
        if not wanted:
            return {}
        page_count = _page_count(pdf)
        if wanted[0] < 1 or wanted[-1] > page_count:
            raise InputError(f"Pages {wanted[0]}-{wanted[-1]} asked of a {page_count}-page PDF", "page numbers start at 1")
        results: dict[int, OCRText] = {}
        batches = plan_batches(page_count, len(pdf), wanted, self.settings)
        log.info("mistral: OCR of %d of %d page(s) in %d batch(es)", len(wanted), page_count, len(batches))
        for batch in batches:
            if batch.whole_document and len(batch.pages) < page_count:
                # OCR of 2 scanned pages should not upload a 40 MB report: send the pages alone when smaller
                part = next(_sub_documents(pdf, batch.pages, len(pdf) - 1, split=False), None)
                if part is not None:
                    results.update(self._run_batch(part[1], Batch(batch.pages, False)))
                    continue
            if batch.whole_document:
                results.update(self._run_batch(pdf, batch))
            else:
                for part, data in _sub_documents(pdf, batch.pages, self.settings.max_bytes):
                    results.update(self._run_batch(data, Batch(part, False)))
        for number in wanted:
            if number not in results:
                results[number] = OCRText("", 0.0, degraded=True, notes=("Mistral OCR returned nothing for this page",))
        return results

    def close(self) -> None:
        if self._client is not None:
            self._client.__exit__(None, None, None)  # closes the SDK's HTTP connections
            self._client = None

    # requests
    def _run_batch(self, pdf: bytes, batch: Batch) -> dict[int, OCRText]:
        data_uri = "data:application/pdf;base64," + base64.b64encode(pdf).decode("ascii")
        document = {"type": "document_url", "document_url": data_uri}
        started = time.perf_counter()
        response = self._process(document, [p - 1 for p in batch.pages] if batch.whole_document else None)
        seconds = (time.perf_counter() - started) / max(1, len(response.pages))
        numbers = page_numbers_for([page.index for page in response.pages], batch)
        return {number: self._page_text(page, seconds) for number, page in zip(numbers, response.pages)}

    @staticmethod
    def _page_text(page: Any, seconds: float) -> OCRText:
        confidence = None
        scores = getattr(page, "confidence_scores", None)
        if scores is not None and getattr(scores, "average_page_confidence_score", None) is not None:
            confidence = float(scores.average_page_confidence_score)
        return OCRText(markdown_to_text(page.markdown or ""), seconds, confidence=confidence)

    def _sdk(self):
        if self._client is None:
            availability = self.availability()
            if not availability.available:
                raise OCRUnavailableError(f"Mistral OCR is not available: {availability.reason}", availability.hint)
            from mistralai.client import Mistral
            from mistralai.client.utils.logger import NoOpLogger

            self._client = Mistral(api_key=self.settings.api_key.get_secret_value(), server_url=self.settings.url.rstrip("/"),
                                   timeout_ms=int(self.settings.timeout_s * 1000), debug_logger=NoOpLogger())
        return self._client

    def _process(self, document: dict, pages: list[int] | None):
        """One OCR call with our retry policy; every failure leaves as a StudioError."""
        from mistralai.client import errors

        client, s = self._sdk(), self.settings
        options: dict[str, Any] = {"include_image_base64": False, "include_blocks": False}
        if pages is not None:
            options["pages"] = pages
        started = time.monotonic()
        for attempt in range(1, s.max_attempts + 1):
            try:
                return client.ocr.process(model=s.model, document=document, **options)
            except errors.ResponseValidationError:
                raise OCRServiceError("Mistral OCR sent an answer this SDK version cannot read",
                                      "upgrade the mistralai package") from None
            except errors.MistralError as exc:
                status = exc.status_code
                if status not in RETRYABLE_STATUSES:
                    raise self._http_error(exc) from None
                delay = backoff_delay(attempt, s, retry_after_seconds(exc.headers.get("retry-after")))
                elapsed = time.monotonic() - started
                if attempt == s.max_attempts or elapsed + delay > s.max_retry_s:
                    raise self._gave_up(exc, attempt, elapsed, delay) from None
                log.warning("mistral: HTTP %d, retry %d/%d in %.1f s", status, attempt, s.max_attempts - 1, delay)
                self._sleep(delay)
            except Exception as exc:  # transport failures come from the SDK's own httpx (httpx2)
                raise self._transport_error(exc) from None
        raise AssertionError("unreachable")

    # error translation
    def _detail(self, exc: Any) -> str:
        body = str(getattr(exc, "body", "") or "").strip()
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        if key:
            body = body.replace(key, "***")
        return redact(re.sub(r"\s+", " ", body))[:300]

    def _http_error(self, exc: Any) -> Exception:
        status, detail = exc.status_code, self._detail(exc)
        if status in (401, 403):
            return OCRAuthError(f"Mistral rejected the API key (HTTP {status})",
                                "check MISTRAL_API_KEY: it may be wrong, revoked, or lack OCR access")
        if status == 413:
            return DocumentLimitError("Mistral OCR refused the document as too large (HTTP 413)",
                                      "lower STUDIO_MISTRAL_MAX_BYTES or STUDIO_MISTRAL_MAX_PAGES so documents are split")
        if status == 422:
            return OCRServiceError(f"Mistral OCR rejected the request (HTTP 422): {detail}",
                                   f"check STUDIO_MISTRAL_MODEL ({self.settings.model}) and the document")
        return OCRServiceError(f"Mistral OCR failed (HTTP {status}): {detail}", "see the message; retrying will not help")

    def _gave_up(self, exc: Any, attempts: int, elapsed: float, next_delay: float) -> Exception:
        status = exc.status_code
        why = f"after {attempts} attempt(s) over {elapsed:.0f} s"
        if attempts < self.settings.max_attempts:
            why += f" (the next wait, {next_delay:.0f} s, would pass the {self.settings.max_retry_s:.0f} s budget)"
        if status == 429:
            return OCRRateLimitError(f"Mistral OCR is rate limiting this key (HTTP 429) {why}",
                                     "wait and retry, lower the request rate, or use Mistral's batch API for large jobs")
        return OCRServiceError(f"Mistral OCR is failing (HTTP {status}) {why}: {self._detail(exc)}",
                               "the service may be down: see https://status.mistral.ai and retry later")

    def _transport_error(self, exc: Exception) -> Exception:
        name, url = type(exc).__name__, self.settings.url
        if "Timeout" in name:
            return OCRServiceError(f"Mistral OCR did not answer within {self.settings.timeout_s:g} s",
                                   "raise STUDIO_MISTRAL_TIMEOUT_S, or OCR fewer pages at a time")
        if "Connect" in name or "Network" in name or "NoResponse" in name:
            return OCRServiceError(f"Cannot reach Mistral OCR at {mask_url(url)} ({name})",
                                   "check the network and STUDIO_MISTRAL_URL")
        return OCRServiceError(f"Mistral OCR request failed ({name}): {redact(str(exc))[:200]}",
                               "retry; report it if it persists")


# --- PDF handling -----------------------------------------------------------------------------------
def _open_pdf(pdf: bytes):
    import pymupdf

    try:
        document = pymupdf.open(stream=pdf, filetype="pdf")
    except Exception:  # pymupdf raises its own FileDataError, RuntimeError, ... for broken files
        raise CorruptDocumentError("The PDF cannot be opened", "the file is damaged or not a PDF") from None
    if document.needs_pass:
        document.close()
        raise EncryptedDocumentError("The PDF is password-protected", "open it with its password first (decrypted bytes)")
    return document


def _page_count(pdf: bytes) -> int:
    with _open_pdf(pdf) as document:
        return document.page_count


def _sub_documents(pdf: bytes, pages: tuple[int, ...], max_bytes: int, split: bool = True):
    """Yield (pages, PDF bytes) holding only those pages, halving groups until each is under max_bytes
    (``split=False``: yield nothing when the group is over it).

    ``select`` keeps shared resources (fonts) once: copying page by page with ``insert_pdf`` made a
    100-page part of the 352-page test book 6.7 MB instead of 0.7 MB, and took 2.9 s instead of 0.06 s.
    """
    pending = [pages]
    while pending:
        group = pending.pop(0)
        with _open_pdf(pdf) as part:
            part.select([number - 1 for number in group])
            data = part.tobytes(garbage=4, deflate=True, use_objstms=1)
        if len(data) <= max_bytes:
            yield group, data
        elif not split:
            return
        elif len(group) == 1:
            raise DocumentLimitError(f"Page {group[0]} alone is {len(data) / 1e6:.1f} MB, over the "
                                     f"{max_bytes / 1e6:.0f} MB Mistral limit", "use a local OCR engine for this document")
        else:
            half = len(group) // 2
            pending[:0] = [group[:half], group[half:]]
