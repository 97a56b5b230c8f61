"""OCR quality benchmark: character error rate of the local engines on "scanned" copies of real PDFs.

Method (``python -m engine ocr-bench``):
1. From each PDF of the corpus, pick pages whose text layer engine.documents judges clean ("ok",
   at least 100 characters), spread over the document.
2. Render them at ``dpi`` (grey, like a scanner) and rebuild an image-only PDF with PyMuPDF: the
   "scan". Its reference text is the original page's text layer, in the same reading order.
3. Run each engine through the real pipeline (engine.page_extraction.extract_pages on the scanned PDF,
   rendered back at the same dpi, so the engine sees the scan's own pixels).
4. Score: CER = (substitutions + deletions + insertions) / reference characters, raw and
   normalised (NFKC, whitespace runs collapsed to one space, spaces next to CJK characters removed
   because CJK has no word spaces); WER on the normalised text; "missed characters" (reference
   characters absent from the output, in any order) to tell reading-order errors apart; micro
   (total edits / total characters) and macro (mean of pages). Per script
   (Latin, CJK, Cyrillic, ...), every reference character carries its script (punctuation and
   digits take the script of the letter before them) and each edit is charged to the script of
   the reference character it touches, so mixed pages count for each script they hold.
5. Pages per second = pages / the summed per-page time (render + OCR), per engine.

Tesseract gets the languages of each document's reference text (eng; chi_sim or jpn for CJK; rus
for Cyrillic) where installed; RapidOCR has one multilingual model. Writes JSON and Markdown
under <data_dir>/reports/ocr/.

Measured here (2 shared cores, 170 dpi, 16 documents, 24 pages, 2026-11-26): on Latin pages
Tesseract 5.3 had CER 8.7 % micro / 7.0 % macro and missed 1.8 % of the characters, RapidOCR 3.10
9.6 % / 9.2 % and 2.9 %, at 0.236 vs 0.048 pages/s (4.2 vs 20.8 s a page). On CJK (3 pages, two of
them vertical Japanese, which Tesseract's jpn model cannot read) RapidOCR missed 9 % of the
characters and Tesseract 81 %. Most of the remaining Latin CER is reading order on forms and a
poster whose abstract is drawn as outlines (not in the reference text layer), not misread glyphs.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pymupdf

from engine.documents import Limits, open_document
from engine.errors import ConfigError, InputError, StudioError
from engine.progress import StepProgress

log = logging.getLogger(__name__)

SCRIPTS = ("Latin", "CJK", "Cyrillic", "Greek", "Arabic", "Hebrew", "Thai", "Hangul", "Other")
MIN_REFERENCE_CHARS = 100
UNSPACED_SCRIPTS = ("CJK", "Thai")


# --- pure scoring ---------------------------------------------------------------------------------------
def _levenshtein():
    try:
        from rapidfuzz.distance import Levenshtein
    except ImportError:
        raise ConfigError("The OCR benchmark needs the rapidfuzz package.", "pip install rapidfuzz (jiwer brings it)") from None
    return Levenshtein


def script_of(ch: str) -> str | None:
    """The writing system of a letter; None for digits, punctuation, symbols and spaces."""
    if not ch.isalpha():
        return None
    code = ord(ch)
    if code < 0x0250 or 0x1E00 <= code <= 0x1EFF or 0xFF21 <= code <= 0xFF5A:
        return "Latin"
    if 0x0370 <= code <= 0x03FF or 0x1F00 <= code <= 0x1FFF:
        return "Greek"
    if 0x0400 <= code <= 0x052F:
        return "Cyrillic"
    if 0x0590 <= code <= 0x05FF:
        return "Hebrew"
    if 0x0600 <= code <= 0x06FF or 0x0750 <= code <= 0x077F or 0xFB50 <= code <= 0xFEFF:
        return "Arabic"
    if 0x0E00 <= code <= 0x0E7F:
        return "Thai"
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return "Hangul"
    if (0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF
            or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3FFFF or 0xFF66 <= code <= 0xFF9F):
        return "CJK"
    return "Other"


_CJK_CLASS = "[\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]"  # CJK punctuation, kana, ideographs, full-width
_CJK_SPACE = re.compile(f"(?<={_CJK_CLASS}) | (?={_CJK_CLASS})")


def normalize(text: str) -> str:
    """NFKC (ligatures, full-width forms), CRLF -> LF, whitespace runs -> one space, no spaces beside CJK."""
    text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n"))
    text = re.sub(r"\s+", " ", text).strip()
    return _CJK_SPACE.sub("", text)


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    return int(_levenshtein().distance(reference, hypothesis))


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate; can exceed 1 when the hypothesis adds a lot. An empty reference scores 0 or 1."""
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return edit_distance(reference, hypothesis) / len(reference)


def missed_characters(reference: str, hypothesis: str) -> int:
    """Reference characters (spaces aside) that the hypothesis lacks, in any order: blind to reading order."""
    wanted = Counter(reference.replace(" ", ""))
    return sum((wanted - Counter(hypothesis.replace(" ", ""))).values())


def reference_scripts(reference: str) -> list[str]:
    """The script of every character: letters their own, other characters that of the letter before (or after)."""
    own = [script_of(ch) for ch in reference]
    out: list[str] = []
    last: str | None = None
    for script in own:
        last = script or last
        out.append(last or "")
    following: str | None = None
    for i in range(len(out) - 1, -1, -1):  # leading digits/punctuation take the first letter's script
        following = own[i] or following
        if not out[i]:
            out[i] = following or "Other"
    return out


def script_edits(reference: str, hypothesis: str) -> dict[str, tuple[int, int]]:
    """{script: (edits charged to it, reference characters of it)}."""
    scripts = reference_scripts(reference)
    counts: dict[str, list[int]] = {}
    for script in scripts:
        counts.setdefault(script, [0, 0])[1] += 1
    if not reference:
        if hypothesis:
            counts["Other"] = [len(hypothesis), 0]
        return {k: (v[0], v[1]) for k, v in counts.items()}
    for op in _levenshtein().editops(reference, hypothesis):
        position = min(op.src_pos, len(reference) - 1)  # an insertion at the end belongs to the last character
        counts[scripts[position]][0] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


def dominant_script(text: str) -> str:
    tally: dict[str, int] = {}
    for ch in text:
        script = script_of(ch)
        if script:
            tally[script] = tally.get(script, 0) + 1
    return max(tally, key=lambda s: tally[s]) if tally else "Other"


@dataclass(frozen=True)
class PageScore:
    document: str
    page: int
    engine: str
    script: str  # dominant script of the reference
    reference_chars: int  # after normalisation
    edits: int  # normalised
    raw_reference_chars: int
    raw_edits: int
    words: int
    word_edits: int
    missed_chars: int  # order-free: reference characters absent from the hypothesis
    spaces: int  # spaces in the normalised reference (missed_chars ignores them)
    seconds: float
    scripts: dict[str, tuple[int, int]] = field(default_factory=dict)
    error: str = ""

    @property
    def cer(self) -> float:
        return self.edits / self.reference_chars if self.reference_chars else 0.0


def score_page(document: str, page: int, engine: str, reference: str, hypothesis: str, seconds: float) -> PageScore:
    ref, hyp = normalize(reference), normalize(hypothesis)
    script = dominant_script(ref)
    # Words are what spaces delimit: CJK and Thai write none, so their pages get no WER.
    ref_words, hyp_words = (ref.split(), hyp.split()) if script not in UNSPACED_SCRIPTS else ([], [])
    return PageScore(
        document=document, page=page, engine=engine, script=script,
        reference_chars=len(ref), edits=edit_distance(ref, hyp),
        raw_reference_chars=len(reference), raw_edits=edit_distance(reference, hypothesis),
        words=len(ref_words), word_edits=edit_distance(ref_words, hyp_words),
        missed_chars=missed_characters(ref, hyp), spaces=ref.count(" "),
        seconds=round(seconds, 3), scripts=script_edits(ref, hyp),
    )


@dataclass(frozen=True)
class Summary:
    engine: str
    script: str  # "all" or a script name
    pages: int
    reference_chars: int
    cer_micro: float | None
    cer_macro: float | None
    cer_raw_micro: float | None
    wer_micro: float | None
    missed_chars_micro: float | None  # order-free; far below CER means the errors are reading order
    pages_per_second: float | None
    failures: int


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def summarize(scores: Iterable[PageScore]) -> list[Summary]:
    """Per engine: every page ("all"), then each script. Script rows: micro CER from the edits charged
    to that script's characters on any page; macro CER, timing and WER over pages dominated by it."""
    scores = list(scores)
    rows: list[Summary] = []
    for engine in dict.fromkeys(s.engine for s in scores):
        mine = [s for s in scores if s.engine == engine]
        ok = [s for s in mine if not s.error]
        rows.append(_summary(engine, "all", ok, len(mine) - len(ok), sum(s.edits for s in ok),
                             sum(s.reference_chars for s in ok)))
        for script in SCRIPTS:
            chars = sum(s.scripts.get(script, (0, 0))[1] for s in ok)
            if not chars:
                continue
            dominated = [s for s in ok if s.script == script]
            failed = sum(1 for s in mine if s.error and s.script == script)
            rows.append(_summary(engine, script, dominated, failed, sum(s.scripts.get(script, (0, 0))[0] for s in ok), chars))
    return rows


def _summary(engine: str, script: str, pages: list[PageScore], failures: int, edits: int, chars: int) -> Summary:
    seconds = sum(s.seconds for s in pages)
    return Summary(
        engine=engine, script=script, pages=len(pages), reference_chars=chars,
        cer_micro=_ratio(edits, chars),
        cer_macro=round(sum(s.cer for s in pages) / len(pages), 4) if pages else None,
        cer_raw_micro=_ratio(sum(s.raw_edits for s in pages), sum(s.raw_reference_chars for s in pages)),
        wer_micro=_ratio(sum(s.word_edits for s in pages), sum(s.words for s in pages)),
        missed_chars_micro=_ratio(sum(s.missed_chars for s in pages), sum(s.reference_chars - s.spaces for s in pages)),
        pages_per_second=_ratio(len(pages), seconds),
        failures=failures,
    )


# --- making scans ------------------------------------------------------------------------------------------
def pick_pages(candidates: Sequence[int], count: int) -> list[int]:
    """``count`` pages spread evenly over the candidates (title pages are not representative)."""
    if count <= 0 or not candidates:
        return []
    if count >= len(candidates):
        return list(candidates)
    return sorted({candidates[int((i + 0.5) * len(candidates) / count)] for i in range(count)})


def make_scan(pdf: Path | bytes, pages: Sequence[int], dpi: int, password: str | None = None) -> bytes:
    """An image-only PDF of the given pages, rendered in grey at ``dpi``: the "scanned" copy."""
    out = pymupdf.open()
    with open_document(pdf, password=password, limits=Limits(render_dpi=dpi, max_pages=100_000)) as source:
        for number in pages:
            layer = source.text_layer(number)
            image = source.render(number, dpi, gray=True)
            target = out.new_page(width=layer.width, height=layer.height)
            target.insert_image(target.rect, stream=image.png)
    data = out.tobytes(garbage=3, deflate=True)
    out.close()
    return data


def tesseract_languages(reference: str, installed: set[str]) -> str:
    scripts = {script_of(ch) for ch in reference}
    wanted = []
    if "CJK" in scripts:
        kana = any(0x3040 <= ord(ch) <= 0x30FF for ch in reference)
        wanted.append("jpn" if kana else "chi_sim")
    wanted.append("eng")
    if "Cyrillic" in scripts:
        wanted.append("rus")
    usable = [code for code in wanted if code in installed]
    return "+".join(usable or ["eng"])


# --- the run ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchConfig:
    pdfs: Path
    engines: tuple[str, ...] = ("tesseract", "rapidocr")
    dpi: int = 170
    max_pages: int = 2  # per document
    files: tuple[str, ...] = ()  # file names to use (default: every PDF in the folder)


@dataclass(frozen=True)
class BenchSample:
    document: str
    pages: tuple[int, ...]
    references: tuple[str, ...]
    scan: bytes
    tesseract_languages: str


def collect_samples(config: BenchConfig, installed_languages: set[str], progress: StepProgress | None = None) -> tuple[
        list[BenchSample], list[dict]]:
    """Scans and references for every usable document; skipped files come back with the reason."""
    if not config.pdfs.is_dir():
        raise InputError(f"{config.pdfs} is not a folder of PDFs.", "pass --pdfs DIR")
    files = sorted(config.pdfs.glob("*.pdf"))
    if config.files:
        files = [f for f in files if f.name in set(config.files)]
    if not files:
        raise InputError(f"No PDF files to benchmark in {config.pdfs}.", "check --pdfs and the file names")
    samples: list[BenchSample] = []
    skipped: list[dict] = []
    for index, path in enumerate(files):
        if progress:
            progress(f"scanning {path.name}", index / len(files) * 0.05)
        try:
            with open_document(path, limits=Limits(max_pages=100_000, max_bytes=1 << 31)) as doc:
                good = [n for n in doc.page_numbers()
                        if doc.quality(n).reason == "ok" and len(normalize(doc.text_layer(n).text)) >= MIN_REFERENCE_CHARS]
                chosen = pick_pages(good, config.max_pages)
                references = tuple(doc.text_layer(n).text for n in chosen)
        except StudioError as exc:
            skipped.append({"document": path.name, "reason": exc.message})
            continue
        if not chosen:
            reason = f"no page with a clean text layer of {MIN_REFERENCE_CHARS}+ characters"
            skipped.append({"document": path.name, "reason": reason})
            continue
        samples.append(BenchSample(path.name, tuple(chosen), references, make_scan(path, chosen, config.dpi),
                                   tesseract_languages("".join(references), installed_languages)))
    return samples, skipped


def run_benchmark(config: BenchConfig, progress: StepProgress | None = None) -> dict:
    """Run every engine on every sample page; returns the report (see write_report)."""
    from engine.ocr import get_backend
    from engine.ocr.tesseract import TesseractBackend, parse_languages
    from engine.page_extraction import extract_pages

    engines: list[str] = []
    unavailable: dict[str, str] = {}
    for name in config.engines:
        status = get_backend(name).availability()
        if status.available:
            engines.append(name)
        else:
            unavailable[name] = f"{status.reason} ({status.hint})"
    if not engines:
        raise InputError("None of the OCR engines asked for is available: "
                         + "; ".join(f"{k}: {v}" for k, v in unavailable.items()), "install Tesseract or rapidocr")
    installed: set[str] = set()
    if "tesseract" in engines:
        tess = TesseractBackend()
        installed = parse_languages(tess._run(["--list-langs"], 15).stdout.decode(errors="replace"))
    samples, skipped = collect_samples(config, installed, progress)
    total = sum(len(s.pages) for s in samples) * len(engines) or 1
    scores: list[PageScore] = []
    done = 0
    for sample in samples:
        for engine in engines:
            options = {"tesseract": {"languages": sample.tesseract_languages}}
            with open_document(sample.scan, name=sample.document, limits=Limits(render_dpi=config.dpi)) as scan:
                for index, (number, reference) in enumerate(zip(sample.pages, sample.references), 1):
                    started = time.perf_counter()
                    try:
                        page = next(extract_pages(scan, engine=engine, pages=[index], backend_options=options))
                        scores.append(score_page(sample.document, number, engine, reference, page.text, page.seconds))
                    except StudioError as exc:
                        scores.append(PageScore(sample.document, number, engine, dominant_script(reference),
                                                0, 0, 0, 0, 0, 0, 0, 0, 0, time.perf_counter() - started, error=exc.message))
                    done += 1
                    if progress:
                        progress(f"{engine}: {sample.document} p{number}", 0.05 + 0.95 * done / total)
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "method": "scanned copies (grey, image-only PDF) of clean text-layer pages; CER against the text layer",
        "dpi": config.dpi,
        "max_pages_per_document": config.max_pages,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "engines": engines,
        "unavailable": unavailable,
        "engine_versions": _engine_versions(engines),
        "documents": [{"document": s.document, "pages": list(s.pages), "tesseract_languages": s.tesseract_languages}
                      for s in samples],
        "skipped": skipped,
        "summary": [asdict(row) for row in summarize(scores)],
        "pages": [{**asdict(s), "cer": round(s.cer, 4)} for s in scores],
    }


def _engine_versions(engines: Sequence[str]) -> dict[str, str]:
    versions: dict[str, str] = {}
    if "tesseract" in engines:
        from engine.ocr.tesseract import TesseractBackend, parse_version

        run = TesseractBackend()._run(["--version"], 15)
        version = parse_version(run.stdout.decode(errors="replace") + run.stderr.decode(errors="replace"))
        versions["tesseract"] = ".".join(map(str, version)) if version else "unknown"
    if "rapidocr" in engines:
        from importlib.metadata import version as package_version

        versions["rapidocr"] = f"{package_version('rapidocr')} (PP-OCRv6 small), onnxruntime {package_version('onnxruntime')}"
    return versions


def _cell(value: float | None, percent: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value * 100:.2f} %" if percent else f"{value:.3f}"


def markdown(report: dict) -> str:
    lines = [
        f"# OCR benchmark ({report['created']})",
        "",
        f"{report['method']}; {report['dpi']} dpi, up to {report['max_pages_per_document']} pages per document; "
        f"{report['machine']['cpus']} CPUs ({report['machine']['platform']}).",
        "Engines: " + ", ".join(f"{k} {v}" for k, v in report["engine_versions"].items()) + ".",
        "",
        "CER normalised = NFKC, whitespace collapsed, no spaces beside CJK; raw = no normalisation; "
        "missed = reference characters absent from the output in any order (blind to reading order). "
        "Micro = total edits / total characters; macro = mean of pages.",
        "",
        "| engine | script | pages | ref chars | CER micro | CER macro | CER raw | WER | missed chars | pages/s | failures |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["summary"]:
        lines.append(
            f"| {row['engine']} | {row['script']} | {row['pages']} | {row['reference_chars']} | {_cell(row['cer_micro'])} | "
            f"{_cell(row['cer_macro'])} | {_cell(row['cer_raw_micro'])} | {_cell(row['wer_micro'])} | "
            f"{_cell(row['missed_chars_micro'])} | {_cell(row['pages_per_second'], percent=False)} | {row['failures']} |"
        )
    lines += ["", "## Pages", "", "| document | page | engine | script | ref chars | CER | seconds | error |",
              "|---|---:|---|---|---:|---:|---:|---|"]
    for page in report["pages"]:
        lines.append(f"| {page['document']} | {page['page']} | {page['engine']} | {page['script']} | "
                     f"{page['reference_chars']} | {_cell(page['cer'])} | {page['seconds']:.2f} | {page['error']} |")
    if report["skipped"]:
        lines += ["", "## Skipped documents", ""] + [f"- {s['document']}: {s['reason']}" for s in report["skipped"]]
    if report["unavailable"]:
        lines += ["", "## Engines not available", ""] + [f"- {k}: {v}" for k, v in report["unavailable"].items()]
    return "\n".join(lines) + "\n"


def write_report(report: dict, reports_dir: Path) -> tuple[Path, Path]:
    """<reports_dir>/ocr/ocr-bench-<UTC time>.json and .md."""
    folder = reports_dir / "ocr"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = report["created"].replace(":", "").replace("-", "").replace("+0000", "Z")
    json_path = folder / f"ocr-bench-{stamp}.json"
    md_path = folder / f"ocr-bench-{stamp}.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    md_path.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path
