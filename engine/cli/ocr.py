"""CLI: ``ocr`` (a PDF or image to page texts), ``ocr-engines`` (which engines run here), ``ocr-bench`` (CER benchmark)."""

from __future__ import annotations

import argparse
import sys

from engine.cli import _table, command
from engine.cli import args as cliargs


def _settings(args: argparse.Namespace):
    from engine.settings import load_settings

    return load_settings(data_dir=args.data_dir)


def _progress(args: argparse.Namespace):
    if args.json:
        return None

    def show(step: str, fraction: float) -> None:
        print(f"\r[{fraction * 100:3.0f}%] {step[:70]:<70}", end="", file=sys.stderr, flush=True)

    return show


# --- ocr -----------------------------------------------------------------------------------------------
def _ocr_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=cliargs.input_file, help="a PDF, PNG or JPEG file")
    p.add_argument("--engine", default="auto", help="auto (default), text, tesseract, rapidocr, or another engine")
    p.add_argument("--pages", help="pages to read, e.g. 1-3,5 (default: all)")
    p.add_argument("--password", help="password of an encrypted PDF")
    p.add_argument("--lang", help="Tesseract languages, e.g. eng+deu (default: STUDIO_OCR_LANGUAGES or eng)")


@command("ocr", "read a PDF or image into page texts (text layer, OCR, or auto)", _ocr_args)
def cmd_ocr(args: argparse.Namespace) -> tuple[object, str]:
    from engine.documents import Limits, open_document
    from engine.page_extraction import extract_pages, parse_page_spec

    settings = _settings(args)
    options = {"tesseract": {"languages": args.lang}} if args.lang else None
    progress = _progress(args)
    with open_document(args.file, password=args.password, limits=Limits.from_settings(settings)) as document:
        numbers = parse_page_spec(args.pages, document.page_count)
        pages = list(extract_pages(document, engine=args.engine, pages=numbers, progress=progress, backend_options=options))
        info = document.info
    if progress:
        print(file=sys.stderr)
    data = [{"number": p.number, "source": p.source, "ocr_used": p.ocr_used, "degraded": p.degraded,
             "seconds": p.seconds, "quality": p.quality, "notes": list(p.notes), "text": p.text} for p in pages]
    blocks = []
    for p in pages:
        flags = ", ".join(filter(None, ["OCR" if p.ocr_used else "", "degraded" if p.degraded else ""]))
        header = f"--- page {p.number}/{info.page_count} ({p.source}{', ' + flags if flags else ''}, {p.seconds:.2f} s) ---"
        notes = "".join(f"\n[{note}]" for note in p.notes)
        blocks.append(f"{header}{notes}\n{p.text}")
    return data, "\n\n".join(blocks)


# --- ocr-engines -------------------------------------------------------------------------------------------
@command("ocr-engines", "the OCR engines, whether each can run here, and how to fix it if not", lambda p: None)
def cmd_ocr_engines(args: argparse.Namespace) -> tuple[object, str]:
    from engine.ocr import list_engines

    rows = list_engines()
    data = [row.__dict__ for row in rows]
    text = _table([[r.engine, "yes" if r.available else "no", r.reason, r.hint] for r in rows],
                  ["engine", "available", "note", "hint"])
    return data, text


# --- ocr-bench ------------------------------------------------------------------------------------------------
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pdfs", type=cliargs.input_folder, default=None,
                   help="folder of PDFs (default: STUDIO_SHARED_DATA/pdfs, i.e. ../shared/data/pdfs)")
    p.add_argument("--engines", default="tesseract,rapidocr", help="comma list of OCR engines")
    p.add_argument("--dpi", type=cliargs.int_range(36, 600), default=170, help="resolution of the scanned copies (default 170)")
    p.add_argument("--max-pages", type=cliargs.positive_int, default=2, help="pages per document (default 2)")
    p.add_argument("--files", help="comma list of file names in --pdfs to use (default: all)")


@command("ocr-bench", "OCR accuracy (CER) and speed of local engines on scanned copies of real PDFs", _bench_args)
def cmd_ocr_bench(args: argparse.Namespace) -> tuple[object, str]:
    from engine.errors import InputError
    from engine.measure.ocr import BenchConfig, markdown, run_benchmark, write_report
    from engine.settings import load_settings

    if not 36 <= args.dpi <= 600:
        raise InputError(f"--dpi {args.dpi} is out of range.", "use 36 to 600 (scanners use 150-300)")
    if args.max_pages < 1:
        raise InputError("--max-pages must be at least 1.", "pages are taken per document")
    config = BenchConfig(
        pdfs=args.pdfs or load_settings(data_dir=args.data_dir).shared_data / "pdfs",
        engines=tuple(e.strip() for e in args.engines.split(",") if e.strip()),
        dpi=args.dpi,
        max_pages=args.max_pages,
        files=tuple(f.strip() for f in args.files.split(",")) if args.files else (),
    )
    progress = _progress(args)
    report = run_benchmark(config, progress)
    if progress:
        print(file=sys.stderr)
    json_path, md_path = write_report(report, _settings(args).reports_dir)
    report["report_files"] = {"json": str(json_path), "markdown": str(md_path)}
    table = markdown(report).split("\n## Pages")[0]
    return report, f"{table}\nreport: {json_path}\n        {md_path}"
