"""Per-page text extraction: the text layer, an OCR engine, or ``auto`` (text where good, OCR where not).

``extract_pages`` yields one ``Page`` at a time, in page order, so a caller can show progress and
store pages as they come. Engines that run on the CPU outside the GIL (Tesseract's subprocess,
RapidOCR's ONNX Runtime: ``OCRBackend.parallel``) recognise several pages at once in a bounded pool
of worker threads, one per core the process may use (STUDIO_OCR_WORKERS overrides): this thread
renders the pages (PyMuPDF is not thread-safe) and hands them out, at most one rendered page per
worker is held, and pages are yielded (and progress reported) in order. ``auto`` OCRs only the pages whose text layer
``engine.documents`` judged unusable (image-only scans, garbled fonts, a few characters over a
page-sized image) with the first available engine of STUDIO_OCR_AUTO_ENGINES. Its default order,
tesseract then rapidocr, comes from the measurement in engine/measure/ocr.py (``python -m engine
ocr-bench``): on scanned copies of the corpus Tesseract was more accurate on Latin text (CER 8.7 %
vs 9.6 %, characters missed 1.8 % vs 2.9 %) and 4.9x faster on the 2-core CPU. RapidOCR reads CJK
far better (vertical Japanese above all): for CJK documents set STUDIO_OCR_AUTO_ENGINES=rapidocr,tesseract.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from engine.documents import Document, Limits, TextLayer, open_document
from engine.errors import InputError, OCRUnavailableError, StudioError
from engine.ocr import Availability, OCRBackend, OCRText, PageImage, get_backend, load_backends
from engine.ocr.base import usable_cores
from engine.page_records import Page
from engine.progress import StepProgress
from engine.settings import load_settings

log = logging.getLogger(__name__)

AUTO = "auto"
TEXT = "text"
BackendOptions = Mapping[str, Mapping[str, object]]


def auto_preference() -> list[str]:
    raw = load_settings().ocr_auto_engines
    return [name.strip() for name in raw.split(",") if name.strip() and name.strip() not in (AUTO, TEXT)]


def parse_page_spec(spec: str | None, page_count: int) -> list[int] | None:
    """'1-3,5,8-' -> [1, 2, 3, 5, 8, ..., page_count]; None or '' -> None (every page)."""
    if spec is None or not spec.strip():
        return None
    numbers: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d*)\s*(-?)\s*(\d*)", part)
        if not match or not (match.group(1) or match.group(3)):
            raise InputError(f"'{part}' is not a page or page range.", "write pages like 1-3,5,8- (pages count from 1)",
                             param="pages")
        first_text, dash, last_text = match.groups()
        first = int(first_text or 1)
        last = int(last_text or page_count) if dash else first
        if first > last:
            raise InputError(f"The page range '{part}' runs backwards.", "write the lower page first, e.g. 2-3",
                             param="pages")
        if first < 1 or last > page_count:
            raise InputError(f"Pages '{part}' are outside 1-{page_count}.",
                             f"pages count from 1, and the document has {page_count}", param="pages")
        numbers += [n for n in range(first, last + 1) if n not in numbers]
    return numbers


def _selected(document: Document, pages: Sequence[int] | None) -> list[int]:
    if pages is None:
        return list(document.page_numbers())
    for number in pages:
        if not isinstance(number, int) or not 1 <= number <= document.page_count:
            raise InputError(f"{document.name} has no page {number} (it has {document.page_count}).",
                             f"choose pages between 1 and {document.page_count}")
    return list(dict.fromkeys(pages))


def _overrides_pdf(backend: OCRBackend) -> bool:
    return type(backend).recognize_pdf is not OCRBackend.recognize_pdf


def _build(name: str, options: BackendOptions | None) -> OCRBackend:
    return get_backend(name, **dict((options or {}).get(name, {})))


def _require(backend: OCRBackend) -> None:
    status = backend.availability()
    if not status.available:
        raise OCRUnavailableError(f"The OCR engine '{backend.name}' is not available: {status.reason}.", status.hint)


def pick_auto_engine(options: BackendOptions | None = None) -> tuple[OCRBackend | None, list[Availability]]:
    """The first available engine of the auto order, and the verdicts on those that were tried."""
    load_backends()
    tried: list[Availability] = []
    for name in auto_preference():
        try:
            backend = _build(name, options)
            status = backend.availability()
        except StudioError as exc:
            tried.append(Availability(name, False, exc.message, exc.hint))
            continue
        if status.available:
            return backend, tried
        tried.append(status)
    return None, tried


def _no_ocr_error(document: Document, layer: TextLayer, tried: list[Availability]) -> OCRUnavailableError:
    why = "; ".join(f"{a.engine}: {a.reason}" for a in tried) or "STUDIO_OCR_AUTO_ENGINES names no engine"
    hints = " | ".join(dict.fromkeys(a.hint for a in tried if a.hint))
    return OCRUnavailableError(
        f"Page {layer.page.number} of {document.name} needs OCR ({layer.quality.note or layer.quality.reason}), "
        f"but no local OCR engine is available ({why}).",
        hints or "install Tesseract (apt-get install tesseract-ocr tesseract-ocr-eng) or pip install rapidocr onnxruntime",
    )


def ocr_page(document: Document, layer: TextLayer, backend: OCRBackend, result: OCRText | None = None) -> Page:
    """OCR one page (or take the result an engine already returned for it) into a Page."""
    if result is not None:
        return page_from_ocr(layer, backend, result, None, result.seconds)
    started = time.perf_counter()
    image = document.render(layer.page.number)
    result = backend.recognize(image)
    return page_from_ocr(layer, backend, result, image, time.perf_counter() - started)


def page_from_ocr(layer: TextLayer, backend: OCRBackend, result: OCRText, image: PageImage | None, spent: float) -> Page:
    notes = list(layer.page.notes)
    if image is not None:
        notes.append(f"rendered at {image.dpi} dpi ({image.width_px}x{image.height_px} px)")
    notes += result.notes
    text = result.text.strip()
    if not text and layer.quality.reason == "sparse_over_image" and layer.page.text:
        text = layer.page.text  # OCR found nothing; the few characters of the text layer are better than nothing
        notes.append("OCR found no text; kept the text layer")
    elif not text:
        notes.append(f"{backend.name} found no text on this page")
    if result.confidence is not None:
        notes.append(f"OCR confidence {result.confidence:.0%}")
    return Page(
        number=layer.page.number, text=text, source=backend.name, ocr_used=True, degraded=result.degraded,
        width=layer.page.width, height=layer.page.height, quality=layer.quality.score,
        seconds=round(layer.page.seconds + spent, 4),
        notes=tuple(dict.fromkeys(notes)),
    )


# --- pages in parallel ------------------------------------------------------------------------------
def worker_count(backend: OCRBackend, pages: int, requested: int | None = None) -> int:
    """How many pages ``backend`` recognises at once: 1 unless it is parallel, then ``requested``, else
    STUDIO_OCR_WORKERS, else the usable cores; never more than the pages that need it."""
    if not backend.parallel or pages < 2:
        return 1
    if requested:
        return max(1, min(requested, pages))
    configured = load_settings().ocr_workers
    return max(1, min(configured or usable_cores(), pages))


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """One long-lived pool per size, so per-thread engine state (RapidOCR's sessions) survives documents."""
    with _pools_lock:
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocr")
        return _pools[workers]


def _timed_recognize(backend: OCRBackend, image: PageImage) -> tuple[OCRText, float]:
    started = time.perf_counter()
    return backend.recognize(image), time.perf_counter() - started


# A step of the stream: a page that is already known (text layer, or a whole-PDF engine's result), or a
# layer whose page must be rendered and recognised.
Step = tuple[TextLayer, Page | None]


def ocr_in_order(document: Document, steps: Iterable[Step], backend: OCRBackend | None, workers: int) -> Iterator[Page]:
    """Pages in the order of ``steps``; the pages to recognise run ``workers`` at a time in a pool, rendered
    here just before they are handed out, so at most ``workers`` rendered pages wait at once."""
    if workers <= 1:
        for layer, page in steps:
            yield page if page is not None else ocr_page(document, layer, backend)
        return
    pending: deque[tuple[TextLayer, Page | None, Future | None, PageImage | None, float]] = deque()
    in_flight = 0
    iterator = iter(steps)
    exhausted = False
    try:
        while pending or not exhausted:
            # keep every worker busy, but never read far ahead of what was yielded (progress, memory)
            while not exhausted and in_flight < workers and len(pending) < 2 * workers:
                step = next(iterator, None)
                if step is None:
                    exhausted = True
                    break
                layer, page = step
                if page is not None:
                    pending.append((layer, page, None, None, 0.0))
                    continue
                started = time.perf_counter()
                image = document.render(layer.page.number)
                render_s = time.perf_counter() - started
                pending.append((layer, None, _pool(workers).submit(_timed_recognize, backend, image), image, render_s))
                in_flight += 1
            if not pending:
                break
            layer, page, future, image, render_s = pending.popleft()
            if future is not None:
                in_flight -= 1
                result, ocr_s = future.result()
                page = page_from_ocr(layer, backend, result, image, render_s + ocr_s)
            yield page
    finally:
        for item in pending:  # a failure or an abandoned generator: do not leave pages running
            if item[2] is not None:
                item[2].cancel()


def _text_only(layer: TextLayer) -> Page:
    page = layer.page
    if layer.quality.needs_ocr and layer.quality.reason in ("image_only", "image"):
        return replace(page, text="", notes=(*page.notes, "no text extracted: this page needs OCR "
                                                          "(use the auto engine or an OCR engine)"))
    if layer.quality.needs_ocr:
        return replace(page, degraded=True, notes=(*page.notes, "text layer kept as it is although OCR would do better here"))
    return page


def extract_pages(
    document: Document | bytes | Path | str,
    engine: str = AUTO,
    pages: Sequence[int] | None = None,
    progress: StepProgress | None = None,
    settings: object = None,
    backend_options: BackendOptions | None = None,
    workers: int | None = None,
) -> Iterator[Page]:
    """Pages of a document, one at a time, as ``engine`` reads them.

    ``engine``: ``text`` (text layer only; an image-only page yields empty text with a note),
    ``auto`` (text layer where good, the first available local OCR engine where not), or the name of
    an OCR engine (every page OCR'd). ``document``: an open Document, or a path/bytes opened here
    with limits from ``settings``. ``backend_options``: constructor options per engine name, e.g.
    ``{"tesseract": {"languages": "eng+deu"}}``. ``progress(step, fraction)`` is called after each page.
    ``workers``: pages recognised at once by a parallel engine (default: STUDIO_OCR_WORKERS or the cores).
    """
    if not isinstance(document, Document):
        with open_document(document, limits=Limits.from_settings(settings)) as opened:
            yield from extract_pages(opened, engine, pages, progress, settings, backend_options, workers)
        return
    numbers = _selected(document, pages)
    total = len(numbers) or 1

    def report(done: int, page: Page) -> None:
        if progress is not None:
            progress(f"page {page.number} ({page.source}{', OCR' if page.ocr_used else ''})", done / total)

    if engine == TEXT:
        for done, number in enumerate(numbers, 1):
            page = _text_only(document.inspect(number))
            report(done, page)
            yield page
        return

    if engine == AUTO:
        yield from _auto(document, numbers, backend_options, report, workers)
        return

    backend = _build(engine, backend_options)
    try:
        _require(backend)
        results: dict[int, OCRText] = {}
        if _overrides_pdf(backend):
            results = backend.recognize_pdf(document.pdf_bytes(), numbers) or {}
        count = worker_count(backend, len(numbers) - len(results), workers)
        backend.use_workers(count)

        def steps() -> Iterator[Step]:
            for number in numbers:
                layer = document.inspect(number)
                known = results.get(number)
                yield layer, (page_from_ocr(layer, backend, known, None, known.seconds) if known is not None else None)

        for done, page in enumerate(ocr_in_order(document, steps(), backend, count), 1):
            report(done, page)
            yield page
    finally:
        _close(backend)


def _close(backend: OCRBackend | None) -> None:
    """Back-ends that hold connections (the Mistral client) offer close(); local ones need nothing."""
    close = getattr(backend, "close", None)
    if callable(close):
        close()


def _auto(document: Document, numbers: list[int], options: BackendOptions | None,
          report: Callable[[int, Page], None], requested: int | None = None) -> Iterator[Page]:
    layers = {number: document.inspect(number) for number in numbers}
    wanted = [n for n in numbers if layers[n].quality.needs_ocr]
    backend: OCRBackend | None = None
    tried: list[Availability] = []
    results: dict[int, OCRText] = {}
    workers = 1
    try:
        if wanted:
            backend, tried = pick_auto_engine(options)
            if backend is not None and _overrides_pdf(backend):
                # Engines that read PDFs get every page that needs OCR in one request.
                results = backend.recognize_pdf(document.pdf_bytes(), wanted) or {}
            if backend is not None:
                workers = worker_count(backend, len(wanted) - len(results), requested)
                backend.use_workers(workers)

        def steps() -> Iterator[Step]:
            for number in numbers:
                layer = layers[number]
                if not layer.quality.needs_ocr:
                    yield layer, layer.page
                elif backend is None:
                    raise _no_ocr_error(document, layer, tried)
                elif number in results:
                    yield layer, page_from_ocr(layer, backend, results[number], None, results[number].seconds)
                else:
                    yield layer, None

        for done, page in enumerate(ocr_in_order(document, steps(), backend, workers), 1):
            report(done, page)
            yield page
    finally:
        _close(backend)


def list_engines() -> list[Availability]:
    """``auto`` first, then ``text`` (the text layer, no OCR: always there), then every OCR back-end (local
    ones first) with its availability. Each back-end reads its own STUDIO_* settings."""
    backends = load_backends()
    rows: list[Availability] = []
    for name in sorted(backends, key=lambda n: (not backends[n].local, n)):
        try:
            rows.append(backends[name]().availability())
        except StudioError as exc:
            rows.append(Availability(name, False, exc.message, exc.hint))
        except Exception as exc:  # a back-end that cannot even be built must not hide the others
            log.warning("OCR engine %s: availability check failed: %s", name, exc)
            rows.append(Availability(name, False, f"the availability check failed: {exc}", ""))
    by_name = {row.engine: row for row in rows}
    usable = [name for name in auto_preference() if by_name.get(name) and by_name[name].available]
    if usable:
        auto = Availability(AUTO, True, f"text layer where it is good, {usable[0]} where it is not")
    else:
        auto = Availability(AUTO, True, "text layer only: no OCR engine is available, so image-only pages will fail",
                            "install Tesseract (apt-get install tesseract-ocr tesseract-ocr-eng) or rapidocr")
    return [auto, Availability(TEXT, True, "the document's own text layer, no OCR"), *rows]
