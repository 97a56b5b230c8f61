"""Pages per second of a local OCR engine with 1 and more workers, and the CER of each run.

    python -m engine.measure.ocr_throughput [PDF] [--pages 8] [--dpi 170] [--engine tesseract] [--workers 1,2] [--repeats 1]

A born-digital PDF's first clean text-layer pages are rendered in grey at ``dpi`` into an image-only
PDF (engine.measure.ocr.make_scan: the "scan"); that scan goes through engine.page_extraction with each
worker count, back to back (repeated ``--repeats`` times, interleaved, so a load change on a shared
machine hits every setting), and each run's text is scored against the original text layer.
Pages per second = pages / wall-clock seconds of the whole document, rendering included.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.documents import Limits, open_document
from engine.measure.ocr import MIN_REFERENCE_CHARS, make_scan, pick_pages, score_page, summarize
from engine.ocr.base import usable_cores
from engine.settings import get_settings

log = logging.getLogger(__name__)

SHARED_DATA = get_settings().shared_data  # STUDIO_SHARED_DATA, default ../shared/data
DEFAULT_PDF = SHARED_DATA / "pdfs" / "report_nist_sp800-223.pdf"


@dataclass(frozen=True)
class Run:
    engine: str
    workers: int
    repeat: int
    pages: int
    wall_s: float
    pages_per_s: float
    cer_micro: float | None
    texts_sha: str  # identical output across worker counts: the order and the text are kept


def clean_pages(pdf: Path, count: int) -> tuple[list[int], list[str]]:
    """``count`` pages spread over the document whose text layer is clean ("ok", >= 100 characters), and
    their texts (spread as ocr-bench picks them: a cover and a table of contents are not typical pages)."""
    texts: dict[int, str] = {}
    with open_document(pdf, limits=Limits(max_pages=100_000)) as document:
        for number in document.page_numbers():
            layer = document.inspect(number)
            if not layer.quality.needs_ocr and len(layer.page.text.strip()) >= MIN_REFERENCE_CHARS:
                texts[number] = layer.page.text
    numbers = pick_pages(sorted(texts), count)
    return numbers, [texts[n] for n in numbers]


def measure(scan: bytes, references: Sequence[str], engine: str, workers: int, dpi: int, repeat: int = 0) -> Run:
    import hashlib

    from engine.page_extraction import extract_pages

    started = time.perf_counter()
    with open_document(scan, name="scan.pdf", limits=Limits(render_dpi=dpi)) as document:
        pages = list(extract_pages(document, engine=engine, workers=workers))
    wall = time.perf_counter() - started
    scores = [score_page("scan", p.number, engine, ref, p.text, p.seconds) for p, ref in zip(pages, references)]
    overall = summarize(scores)[0]
    digest = hashlib.sha256("\f".join(p.text for p in pages).encode()).hexdigest()[:12]
    return Run(engine, workers, repeat, len(pages), round(wall, 2), round(len(pages) / wall, 4), overall.cer_micro, digest)


def run(pdf: Path, pages: int, dpi: int, engine: str, worker_counts: Sequence[int], repeats: int) -> dict:
    numbers, references = clean_pages(pdf, pages)
    scan = make_scan(pdf, numbers, dpi)
    runs = [measure(scan, references, engine, workers, dpi, repeat)
            for repeat in range(repeats) for workers in worker_counts]
    best = {w: max(r.pages_per_s for r in runs if r.workers == w) for w in worker_counts}
    base = best[worker_counts[0]]
    return {
        "pdf": pdf.name, "pages": numbers, "dpi": dpi, "engine": engine, "usable_cores": usable_cores(),
        "runs": [asdict(r) for r in runs],
        "speedup_best": {str(w): round(best[w] / base, 3) for w in worker_counts},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.measure.ocr_throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("pdf", nargs="?", type=Path, default=DEFAULT_PDF, help="a born-digital PDF")
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--dpi", type=int, default=170)
    parser.add_argument("--engine", default="tesseract")
    parser.add_argument("--workers", default="1,2", help="comma list, run in this order")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    report = run(args.pdf, args.pages, args.dpi, args.engine, [int(w) for w in args.workers.split(",")], args.repeats)
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
