"""Pages recognised in parallel (Tesseract, RapidOCR): the same text and the same page order and
progress as one worker, on scans made here from a born-digital PDF of the corpus; the pages really
overlap in time when two cores are usable."""

from __future__ import annotations

import time

import pymupdf
import pytest
from conftest import shared_data

from engine.documents import Limits, open_document
from engine.measure.ocr import make_scan
from engine.measure.ocr_throughput import clean_pages
from engine.ocr import get_backend
from engine.ocr.base import usable_cores
from engine.page_extraction import extract_pages, worker_count

DPI = 150


@pytest.fixture(scope="module")
def report_pdf():
    return shared_data("pdfs", "report_nist_sp800-223.pdf")


@pytest.fixture(scope="module")
def scan(report_pdf) -> tuple[bytes, list[int]]:
    numbers, _ = clean_pages(report_pdf, 4)
    return make_scan(report_pdf, numbers, DPI), numbers


def available(engine: str):
    status = get_backend(engine).availability()
    if not status.available:
        pytest.skip(f"{engine} is not available here: {status.reason}")


def run(pdf: bytes, engine: str, workers: int, dpi: int = DPI) -> tuple[list, list[tuple[str, float]], float]:
    steps: list[tuple[str, float]] = []
    started = time.perf_counter()
    with open_document(pdf, name="scan.pdf", limits=Limits(render_dpi=dpi)) as document:
        pages = list(extract_pages(document, engine=engine, workers=workers, progress=lambda s, f: steps.append((s, f))))
    return pages, steps, time.perf_counter() - started


def test_worker_count(monkeypatch):
    tesseract, mistral = get_backend("tesseract"), get_backend("mistral")
    assert worker_count(mistral, 8) == 1  # a remote engine is not parallelised here
    assert worker_count(tesseract, 1) == 1 and worker_count(tesseract, 8, 3) == 3 and worker_count(tesseract, 2, 8) == 2
    assert worker_count(tesseract, 64) == usable_cores()
    monkeypatch.setenv("STUDIO_OCR_WORKERS", "5")
    assert worker_count(tesseract, 64) == 5


def test_tesseract_pages_in_parallel_keep_text_order_and_progress(scan):
    available("tesseract")
    pdf, numbers = scan
    one, one_steps, _ = run(pdf, "tesseract", 1)
    two, two_steps, wall = run(pdf, "tesseract", 2)
    assert [p.number for p in two] == [p.number for p in one] == list(range(1, len(numbers) + 1))
    assert [p.text for p in two] == [p.text for p in one] and all(len(p.text) > 200 for p in two)
    assert [p.source for p in two] == ["tesseract"] * len(numbers) and all(p.ocr_used for p in two)
    assert two_steps == one_steps  # the same progress, page by page, in order
    assert [f for _, f in two_steps] == [(i + 1) / len(numbers) for i in range(len(numbers))]
    if usable_cores() >= 2:  # per-page times (render + OCR) add up to more than the wall clock: pages overlapped
        assert sum(p.seconds for p in two) > 1.25 * wall


def test_auto_keeps_text_pages_and_ocr_pages_in_order(report_pdf, scan):
    """Text-layer pages and scanned pages interleaved: `auto` OCRs only the scans, in parallel, in order."""
    available("tesseract")
    pdf, numbers = scan
    mixed = pymupdf.open()
    with pymupdf.open(report_pdf) as text, pymupdf.open(stream=pdf) as scanned:
        for index, number in enumerate(numbers[:3]):
            mixed.insert_pdf(text, from_page=number - 1, to_page=number - 1)
            mixed.insert_pdf(scanned, from_page=index, to_page=index)
    data = mixed.tobytes()
    mixed.close()
    sequential, _, _ = run(data, "auto", 1)
    parallel, steps, _ = run(data, "auto", 2)
    assert [p.source for p in parallel] == ["text", "tesseract"] * 3
    assert [p.number for p in parallel] == list(range(1, 7)) and [s for s, _ in steps][1] == "page 2 (tesseract, OCR)"
    assert [p.text for p in parallel] == [p.text for p in sequential]


def test_rapidocr_pages_in_parallel_give_the_same_text(report_pdf):
    available("rapidocr")
    numbers, _ = clean_pages(report_pdf, 2)
    pdf = make_scan(report_pdf, numbers, 100)  # small pages: RapidOCR is slow on a loaded 2-core machine
    one, _, _ = run(pdf, "rapidocr", 1, 100)
    two, _, _ = run(pdf, "rapidocr", 2, 100)
    assert [p.number for p in two] == [1, 2] and [p.text for p in two] == [p.text for p in one]
    assert all(p.source == "rapidocr" and p.text for p in two)
