"""Helpers behind the Streamlit pages, kept free of streamlit so they are unit-tested and the engine
stays importable without it: highlighted HTML for hits and chunk boundaries (always escaped), chunk
statistics, benchmark rows and exports, model-table rows, safe deletion of a converted model folder,
ingestion progress, and page images for the viewer.

Character offsets everywhere are Python ``str`` indices into a page's text, the same unit the
chunker and the index store.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputError, ModelNotFoundError

log = logging.getLogger(__name__)
_LINE_BREAK = re.compile(r"(?<!\n)\n(?!\n)")

# Alternating chunk backgrounds, and the colour of text two chunks share (the overlap).
CHUNK_COLOURS = ("#dbeafe", "#dcfce7")
OVERLAP_COLOUR = "#fcd34d"
HIT_COLOUR = "#fde047"
_TEXT_BOX = ("white-space:pre-wrap;word-wrap:break-word;font-family:ui-sans-serif,system-ui,sans-serif;"
             "font-size:0.92rem;line-height:1.55;max-height:{height};overflow-y:auto;padding:0.6rem 0.8rem;"
             "border:1px solid rgba(128,128,128,0.35);border-radius:0.4rem;color:inherit")


# --- the one engine object per process ------------------------------------------------------------
def create_studio():
    """Build the process's Studio and configure logging from its settings.

    The pages never call this directly: they call it through ``st.cache_resource``. Streamlit keys a
    cached function by its module, qualified name and source text, and every page wraps this very
    function, so all pages and all browser sessions share one entry: one Studio, one registry, one
    ONNX Runtime session cache per process.
    """
    from engine import log as studio_log
    from engine.studio import Studio

    studio = Studio()
    studio_log.configure(studio.settings.log_level, studio.settings.log_json)
    log.info("studio ready: data in %s", studio.settings.data_dir)
    return studio


# --- highlighting ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    start: int
    end: int
    covers: tuple[int, ...]  # indices (into the spans given) of the spans covering this segment


def segments(length: int, spans: Sequence[tuple[int, int]]) -> list[Segment]:
    """Cut [0, length) at every span boundary; each piece knows which spans cover it.

    Spans are clamped to the text; empty or inverted spans cover nothing.
    """
    clamped = [(max(0, min(s, length)), max(0, min(e, length))) for s, e in spans]
    cuts = sorted({0, length, *(p for s, e in clamped if e > s for p in (s, e))})
    pieces = []
    for start, end in zip(cuts, cuts[1:]):
        if end > start:
            covers = tuple(i for i, (s, e) in enumerate(clamped) if s <= start and end <= e and e > s)
            pieces.append(Segment(start, end, covers))
    return pieces


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def reflow(text: str) -> str:
    """PDF line breaks inside a paragraph become spaces; paragraph breaks stay. Same length, so every
    character offset still points at the same character."""
    return _LINE_BREAK.sub(" ", text)


def _box(body: str, height: str) -> str:
    return f'<div class="studio-text" style="{_TEXT_BOX.format(height=height)}">{body}</div>'


def hit_window(text: str, start: int, end: int, context: int | None = 400) -> tuple[int, int]:
    """The part of a page to show around a hit: ``context`` characters either side, widened to word
    boundaries; ``None`` shows the whole page."""
    start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
    if context is None:
        return 0, len(text)
    left = max(0, start - context)
    right = min(len(text), end + context)
    while left > 0 and not text[left - 1].isspace() and start - left < context + 40:
        left -= 1
    while right < len(text) and not text[right].isspace() and right - end < context + 40:
        right += 1
    return left, right


def highlight_hit(text: str, start: int, end: int, context: int | None = 400, height: str = "22rem") -> str:
    """HTML of a page's text (or a window of it) with the hit span marked; everything is escaped."""
    text = reflow(text)
    start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
    left, right = hit_window(text, start, end, context)
    body = (
        ("… " if left > 0 else "")
        + _escape(text[left:start])
        + f'<mark class="studio-hit" style="background:{HIT_COLOUR};color:#111;padding:0 1px">'
        + _escape(text[start:end])
        + "</mark>"
        + _escape(text[end:right])
        + (" …" if right < len(text) else "")
    )
    return _box(body, height)


def chunk_boundaries_html(text: str, chunks: Sequence[tuple[int, int, int]], height: str = "48rem") -> str:
    """A page's text with its chunks shaded in alternating colours, the text two chunks share
    (overlap) in a third colour, and a ``#n`` marker where chunk n starts. ``chunks``: (start, end, index)."""
    text = reflow(text)
    spans = [(s, e) for s, e, _ in chunks]
    labels = [i for _, _, i in chunks]
    starts: dict[int, list[int]] = {}
    for position, (s, _e) in enumerate(spans):
        starts.setdefault(max(0, min(s, len(text))), []).append(position)
    parts = []
    for piece in segments(len(text), spans):
        for position in starts.pop(piece.start, []):
            parts.append(f'<sup class="studio-chunk-start" style="font-size:0.7rem;font-weight:600;color:#1d4ed8;'
                         f'margin-right:2px">#{labels[position]}</sup>')
        chunk_text = _escape(text[piece.start:piece.end])
        if not piece.covers:
            parts.append(f'<span style="color:#888">{chunk_text}</span>')
        elif len(piece.covers) > 1:
            names = ", ".join(f"#{labels[c]}" for c in piece.covers)
            parts.append(f'<span class="studio-overlap" title="overlap: chunks {names}" style="background:{OVERLAP_COLOUR};'
                         f'color:#111;text-decoration:underline dotted">{chunk_text}</span>')
        else:
            colour = CHUNK_COLOURS[piece.covers[0] % len(CHUNK_COLOURS)]
            parts.append(f'<span class="studio-chunk" title="chunk #{labels[piece.covers[0]]}" '
                         f'style="background:{colour};color:#111">{chunk_text}</span>')
    return _box("".join(parts), height)


# --- chunks ------------------------------------------------------------------------------------------
def _get(chunk: object, name: str):
    return chunk[name] if isinstance(chunk, Mapping) else getattr(chunk, name)


def chunk_overlaps(chunks: Sequence[object]) -> list[int]:
    """Characters each chunk shares with the previous chunk of the same page (0 for the first)."""
    result = []
    previous = None
    for chunk in chunks:
        if previous is not None and _get(previous, "page") == _get(chunk, "page"):
            result.append(max(0, min(_get(previous, "end"), _get(chunk, "end")) - _get(chunk, "start")))
        else:
            result.append(0)
        previous = chunk
    return result


@dataclass(frozen=True)
class ChunkStats:
    count: int
    pages: int  # pages that have at least one chunk
    mean_tokens: float
    min_tokens: int
    max_tokens: int
    overlapping: int  # chunks that repeat text of the previous one
    mean_overlap_chars: float  # over the overlapping chunks


def chunk_stats(chunks: Sequence[object]) -> ChunkStats:
    if not chunks:
        return ChunkStats(0, 0, 0.0, 0, 0, 0, 0.0)
    tokens = [int(_get(c, "tokens")) for c in chunks]
    shared = [o for o in chunk_overlaps(chunks) if o > 0]
    return ChunkStats(
        count=len(chunks),
        pages=len({_get(c, "page") for c in chunks}),
        mean_tokens=float(np.mean(tokens)),
        min_tokens=min(tokens),
        max_tokens=max(tokens),
        overlapping=len(shared),
        mean_overlap_chars=float(np.mean(shared)) if shared else 0.0,
    )


def chunk_rows(chunks: Sequence[object]) -> list[dict]:
    """One table row per chunk, with the overlap it shares with the previous chunk."""
    return [
        {"chunk": _get(c, "index"), "page": _get(c, "page"), "start": _get(c, "start"), "end": _get(c, "end"),
         "tokens": _get(c, "tokens"), "overlap chars": overlap,
         "heading": " > ".join(_get(c, "heading_path")), "text": preview(_get(c, "text"))}
        for c, overlap in zip(chunks, chunk_overlaps(chunks))
    ]


def preview(text: str, width: int = 120) -> str:
    """``text`` on one line, cut to ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def live_hits(hits: Sequence[object], doc_ids: Iterable[str]) -> tuple[list, int]:
    """The hits of a saved search whose documents are still in the collection, and how many were dropped (deleted
    since the search ran)."""
    present = set(doc_ids)
    kept = [h for h in hits if _get(h, "doc_id") in present]
    return kept, len(hits) - len(kept)


def telling_page(chunks: Sequence[object], fallback: int, min_overlap: int = 20) -> int:
    """The page to open the chunk view on: the first where two chunks share at least ``min_overlap``
    characters (the overlap is visible there), else the first page with a chunk, else ``fallback``."""
    for chunk, overlap in zip(chunks, chunk_overlaps(chunks)):
        if overlap >= min_overlap:
            return _get(chunk, "page")
    return _get(chunks[0], "page") if chunks else fallback


def histogram(values: Sequence[float], bins: int = 20) -> list[dict]:
    """Counts of ``values`` in equal-width bins: [{start, end, count}], for a bar chart."""
    if not len(values):
        return []
    array = np.asarray(values, dtype=float)
    if array.min() == array.max():  # numpy's own range would be ±0.5 in 20 bins: a hairline bar
        return [{"start": float(array[0]) - 0.5, "end": float(array[0]) + 0.5, "count": len(array)}]
    counts, edges = np.histogram(array, bins=bins)
    return [{"start": float(edges[i]), "end": float(edges[i + 1]), "count": int(counts[i])} for i in range(len(counts))]


# --- ingestion progress ---------------------------------------------------------------------------------
# Share of one file's work each stage ends at: extraction is page by page, embedding batch by batch.
_STAGE_SPAN = {"open": (0.0, 0.02), "page": (0.02, 0.55), "chunk": (0.55, 0.6), "embed": (0.6, 0.95),
               "store": (0.95, 0.98), "done": (1.0, 1.0), "skipped": (1.0, 1.0), "error": (1.0, 1.0)}


def ingest_fraction(event) -> float:
    """How far one file's ingestion is (0..1) after a ``ProgressEvent``."""
    low, high = _STAGE_SPAN.get(event.stage, (0.0, 0.0))
    if event.total > 0:
        return low + (high - low) * min(1.0, max(0.0, event.done / event.total))
    return high if event.stage in ("chunk", "store", "done", "skipped", "error") else low


def describe_event(event) -> str:
    if event.stage == "page" and event.total:
        return f"{event.file}: page {event.done}/{event.total} — {event.message}"
    return f"{event.file}: {event.message or event.stage}"


# --- models ----------------------------------------------------------------------------------------------
def _parity(info) -> str:
    if info is None or info.parity is None:
        return "—"
    return f"min cos {info.parity.min_cosine:.6f}, max |Δ| {info.parity.max_abs_diff:.1e}"


def model_rows(specs: Iterable) -> list[dict]:
    """The registry as table rows: what it is, and how close each converted variant is to sentence-transformers."""
    rows = []
    for spec in specs:
        manifest = spec.manifest
        variants = manifest.variants if manifest else {}
        rows.append({
            "model": spec.name,
            "converted": manifest is not None,
            "dim": manifest.dim if manifest else spec.dim,
            "pooling": "+".join(manifest.pooling_modes if manifest else spec.pooling),
            "max tokens": manifest.max_seq_length if manifest else spec.max_seq_length,
            "normalize": manifest.normalize if manifest else spec.normalize,
            "variants": ", ".join(variants) if manifest else ", ".join(spec.variants) + " (not converted)",
            "fp32 parity": _parity(variants.get("fp32")) if manifest else "—",
            "int8 parity": _parity(variants.get("int8")) if manifest else "—",
            "size": format_bytes(sum(v.size_bytes for v in variants.values())) if manifest else "—",
            "hugging face id": spec.hf_id,
            "description": spec.description,
        })
    return rows


def variant_rows(manifest) -> list[dict]:
    """One row per variant on ONNX Runtime's CPU provider, then one per other runtime its parity was measured on
    at conversion (``optimized @ openvino-bf16``)."""
    def row(label: str, info, parity, runs_on: str, note: str) -> dict:
        return {"variant": label, "runs on": runs_on, "file": info.file, "size": format_bytes(info.size_bytes),
                "min cosine": parity.min_cosine if parity else None,
                "mean cosine": parity.mean_cosine if parity else None,
                "max |diff|": parity.max_abs_diff if parity else None,
                "texts": parity.texts if parity else None,
                "reference": parity.reference if parity else "", "note": note}

    rows = [row(name, info, info.parity, "onnxruntime cpu", info.note) for name, info in manifest.variants.items()]
    for name, info in manifest.variants.items():
        rows += [row(f"{name} @ {runtime}", info, parity, runtime.replace("-", " "), "")
                 for runtime, parity in info.provider_parity.items()]
    return rows


def openvino_parity_missing(manifest) -> bool:
    """OpenVINO is installed here but the manifest has no parity measured on it (converted before it was)."""
    from engine import openvino_session

    return openvino_session.is_installed() and not any(v.provider_parity for v in manifest.variants.values())


def delete_model_folder(models_dir: Path, name: str) -> Path:
    """Remove the converted model ``<models_dir>/<name>`` and return the path removed.

    Refuses anything that is not a converted model folder directly inside ``models_dir`` (names
    with path parts, folders without a manifest). A symlinked model folder loses only its link,
    never the target. The folder is first renamed out of the registry's sight, so a crash midway
    leaves no half-deleted model that still looks converted. Call ``studio.forget(name)`` afterwards.
    """
    from engine.manifest import MANIFEST_FILE
    from engine.registry import NAME_PATTERN

    if not NAME_PATTERN.match(name or "") or name in (".", ".."):
        raise InputError(f"{name!r} is not a model name.", "model names are lower-case letters, digits, '.', '_', '-'")
    root = Path(models_dir)
    folder = root / name
    if not (folder / MANIFEST_FILE).is_file():
        raise ModelNotFoundError(f"There is no converted model {name!r} in {root}.", "refresh the page: it may be gone already")
    if folder.is_symlink():
        folder.unlink()
        log.info("removed the link to model %s", name)
        return folder
    if folder.resolve().parent != root.resolve():
        raise InputError(f"{folder} is not inside the models folder.", "remove it by hand")
    doomed = root / f".deleting-{name}-{os.getpid()}"
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    log.info("deleted model folder %s", folder)
    return folder


def collections_using(collections: Iterable, model: str) -> list[str]:
    """Names of the collections whose vectors were made with ``model``."""
    return [c.name for c in collections if c.model == model]


# --- benchmarks ------------------------------------------------------------------------------------------
def bench_label(result) -> str:
    """A short unique name for one benchmark row, e.g. 'onnxruntime int8 · cpu · batch 32'."""
    if result.backend == "torch":
        return f"torch {result.variant} · {result.provider} · batch {result.batch_size}"
    if result.backend == "openai-http":
        return f"http {result.provider} · batch {result.batch_size}"
    return f"onnxruntime {result.variant} · {result.provider} · batch {result.batch_size}"


def parity_label(result, reference: str = "") -> str:
    if result.error:
        return "error"
    if result.min_cosine is None:
        return "reference" if result.backend == "torch" else "—"
    return f"cos ≥ {result.min_cosine:.5f}, |Δ| ≤ {result.max_abs_diff:.1e}"


def bench_rows(report) -> list[dict]:
    """Flat rows for the charts and the table, one per benchmark result, in report order."""
    return [
        {"label": bench_label(r), "backend": r.backend, "model": r.model, "variant": r.variant, "provider": r.provider,
         "batch": r.batch_size, "texts/s": round(r.texts_per_second, 2), "p50 ms": round(r.latency_ms_p50, 2),
         "p90 ms": round(r.latency_ms_p90, 2), "p99 ms": round(r.latency_ms_p99, 2),
         "speed-up": round(r.speedup_vs_baseline, 3) if r.speedup_vs_baseline is not None else None,
         "min cosine": r.min_cosine, "max |diff|": r.max_abs_diff, "parity": parity_label(r),
         "cold start s": round(r.cold_start_seconds, 3), "error": r.error or ""}
        for r in report.results
    ]


def workload_text(workload: Mapping[str, object]) -> str:
    """What a report ran on, from what it recorded: a side-by-side report keeps no mean length (it would read
    "0 characters"), but its batch and rounds."""
    text = f"workload {workload.get('name') or '?'}: {workload.get('texts', '?')} texts"
    if workload.get("mean_chars") is not None:
        text += f", {float(workload['mean_chars']):.0f} characters on average"
    if workload.get("batch_size"):
        text += f", batch {workload['batch_size']}"
    if workload.get("rounds"):
        text += f", best of {workload['rounds']} rounds"
    return text


def report_csv(report) -> str:
    from engine.measure.bench import CSV_FIELDS

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for row in report.results:
        writer.writerow(asdict(row))
    return buffer.getvalue()


def report_json(report) -> str:
    return json.dumps(report.to_dict(), indent=2)


def parse_batch_sizes(text: str) -> list[int]:
    """'1, 8,32' -> [1, 8, 32]; anything else is an InputError a user can read."""
    sizes = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= 4096:
            raise InputError(f"Batch size {part!r} is not a whole number between 1 and 4096.", "write e.g. 1,8,32")
        sizes.append(int(part))
    if not sizes:
        raise InputError("Give at least one batch size.", "write e.g. 1,8,32")
    return list(dict.fromkeys(sizes))


# --- formatting and small choices --------------------------------------------------------------------------
def format_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def format_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 1000 else f"{seconds:.2f} s"


def latency_text(seconds: Mapping[str, float]) -> str:
    """'23.4 ms (embed 22.1 ms, search 0.9 ms)' from SearchResult.seconds."""
    parts = [f"{key} {format_ms(seconds[key])}" for key in ("embed", "search") if key in seconds]
    return format_ms(seconds.get("total", 0.0)) + (f" ({', '.join(parts)})" if parts else "")


def provider_choices(statuses: Iterable) -> list[str]:
    """'auto' then every provider this onnxruntime build really has."""
    return ["auto", *[s.name for s in statuses if s.available]]


def ocr_label(availability) -> str:
    if availability.available:
        return availability.engine
    return f"{availability.engine} (unavailable)"


# --- page images --------------------------------------------------------------------------------------------
def page_png(path: Path, number: int, dpi: int = 110, password: str | None = None, highlight: str | None = None,
             name: str | None = None) -> bytes:
    """One page of a stored document as PNG (capped by the studio's render limits), ``highlight`` marked. ``name``: the
    document's, for messages (the stored copy is named by its digest)."""
    from engine.documents import open_document

    with open_document(Path(path), name=name, password=password) as document:
        return document.render(number, dpi=dpi, highlight=highlight).png


def thumbnail_pngs(path: Path, numbers: Sequence[int], width_px: int = 160,
                   password: str | None = None, name: str | None = None) -> list[tuple[int, bytes]]:
    from engine.documents import open_document

    with open_document(Path(path), name=name, password=password) as document:
        return [(n, document.thumbnail(n, width_px).png) for n in numbers if 1 <= n <= document.page_count]
