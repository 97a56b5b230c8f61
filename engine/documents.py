"""Documents: PDF (bytes or path) and PNG/JPEG images -> pages, one page at a time, with PyMuPDF.

A ``Document`` gives, per page, the text layer in reading order with a quality verdict (is OCR
needed?), and a rendered image for the OCR engines. Nothing is rendered or extracted before it is
asked for, and never more than one page at a time, so a 2,000-page file costs what one page costs.

Reading order: MuPDF's blocks come in content-stream order, which is wrong for two-column papers
and for rotated pages. Lines are mapped to the page as displayed (``rotation_matrix``), a column
gutter is looked for, and blocks are read band by band: full-width blocks (title, abstract,
figures spanning both columns) cut the page into bands, and inside a band the left column is read
before the right one. Vertical CJK text is read column by column from the right.

Text quality: an empty page, an image-only scan, a garbled text layer (Type3/CID fonts without a
ToUnicode map give control characters or shifted codes) and a scan with an earlier OCR layer
(invisible text over an image) are told apart; ``TextQuality.needs_ocr`` says what ``auto`` does.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import stat
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf

from engine.errors import (
    CorruptDocumentError,
    DocumentLimitError,
    EmptyDocumentError,
    EncryptedDocumentError,
    InputError,
)
from engine.ocr.base import PageImage
from engine.pages import Page

log = logging.getLogger(__name__)

pymupdf.TOOLS.mupdf_display_errors(False)  # MuPDF's repair chatter goes to our log, not to stderr
pymupdf.TOOLS.mupdf_display_warnings(False)

# Pixels a rendered page may have: a letter page at 300 dpi is 8.4 Mpx; an A1 poster at 200 dpi would be 31 Mpx.
DEFAULT_MAX_PIXELS = 16_000_000
# Ligatures are expanded ("ﬁ" -> "fi") and image blocks are not collected: neither helps search.
_TEXT_FLAGS = (
    (pymupdf.TEXTFLAGS_DICT | pymupdf.TEXT_MEDIABOX_CLIP) & ~pymupdf.TEXT_PRESERVE_IMAGES & ~pymupdf.TEXT_PRESERVE_LIGATURES
)

# Text-quality thresholds (see assess_text_layer).
GARBLED_RATIO = 0.05  # share of non-whitespace characters that are control/private-use/unassigned
SPARSE_CHARS_PER_PT2 = 0.0002  # ~100 characters on a letter page; normal prose is 20-40x denser
SCAN_COVERAGE = 0.5  # images cover at least half of the page
NEEDS_OCR_BELOW = 0.5

# MuPDF raises its own exception classes (not all RuntimeErrors) besides PyMuPDF's.
MUPDF_ERRORS = (RuntimeError, ValueError, pymupdf.mupdf.FzErrorBase)

IMAGE_KINDS = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff"}


@dataclass(frozen=True)
class Limits:
    """What one document may cost. Defaults come from Settings (STUDIO_MAX_UPLOAD_MB, _MAX_PAGES, _RENDER_DPI)."""

    max_bytes: int = 200 * 1024 * 1024
    max_pages: int = 2000
    render_dpi: int = 200
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def from_settings(cls, settings=None) -> Limits:
        if settings is None:
            from engine.settings import get_settings

            settings = get_settings()
        return cls(max_bytes=settings.max_upload_bytes, max_pages=settings.max_pages, render_dpi=settings.render_dpi)


@dataclass(frozen=True)
class DocumentInfo:
    name: str
    sha256: str
    size_bytes: int
    page_count: int
    kind: str  # "pdf", "png" or "jpeg"
    encrypted: bool  # the file is encrypted (owner-only encryption included), whether or not it needed a password


@dataclass(frozen=True)
class TextQuality:
    """The verdict on one page's text layer: how usable it is, and whether OCR should replace it."""

    score: float  # 0..1; 1 = clean text, 0 = nothing usable
    needs_ocr: bool
    reason: str  # "ok", "empty", "image_only", "garbled", "sparse_over_image", "ocr_layer", "image"
    note: str  # the same in words, for Page.notes
    chars: int = 0  # non-whitespace characters in the text layer
    bad_ratio: float = 0.0  # share of them that are control/private-use/unassigned characters
    image_coverage: float = 0.0  # share of the page area covered by images
    invisible_ratio: float = 0.0  # share of characters drawn invisibly (render mode 3: an OCR layer)


@dataclass(frozen=True)
class TextLayer:
    page: Page
    quality: TextQuality


# --- pure helpers -----------------------------------------------------------------------------------
def detect_kind(head: bytes, name: str) -> str:
    """"pdf", "png" or "jpeg" from the first bytes; anything else is a CorruptDocumentError naming the file."""
    for kind, magic in IMAGE_KINDS.items():
        if head.startswith(magic):
            return kind
    if b"%PDF-" in head[:1024]:  # the PDF spec allows junk before the header; readers accept up to 1 KiB
        return "pdf"
    raise CorruptDocumentError(
        f"{name} is not a PDF, PNG or JPEG file (it does not start with a PDF, PNG or JPEG header).",
        "check that the file is really a PDF; a renamed Word or HTML file will not open",
    )


def bad_char_ratio(text: str) -> tuple[int, float]:
    """(non-whitespace characters, share of them that cannot be real text).

    Fonts without a ToUnicode map come out as control characters (Type3: ``\\x00\\x01\\x02``, CID:
    ``\\x03`` where spaces were), private-use or unassigned code points, or U+FFFD.
    """
    chars = bad = 0
    for ch in text:
        if ch.isspace():
            continue
        chars += 1
        if ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Co", "Cn", "Cs"):
            bad += 1
    return chars, (bad / chars if chars else 0.0)


def assess_text_layer(
    text: str,
    *,
    page_area: float,
    image_coverage: float,
    invisible_ratio: float = 0.0,
    has_drawings: bool = False,
    is_image: bool = False,
) -> TextQuality:
    """Decide from measured facts whether a page's text layer is usable or the page needs OCR."""
    chars, bad = bad_char_ratio(text)
    facts = {"chars": chars, "bad_ratio": round(bad, 4), "image_coverage": round(image_coverage, 3),
             "invisible_ratio": round(invisible_ratio, 3)}
    if is_image:
        return TextQuality(0.0, True, "image", "an image file: the text comes from OCR", **facts)
    if chars == 0:
        if image_coverage > 0.0 or has_drawings:
            return TextQuality(0.0, True, "image_only", "no text layer: the page is an image (a scan) or vector drawings",
                               **facts)
        return TextQuality(0.0, False, "empty", "blank page: no text, no images", **facts)
    score = max(0.0, 1.0 - bad * 10)  # 5 % bad characters halve the score; 10 % leave nothing
    if bad >= GARBLED_RATIO:
        return TextQuality(round(score, 3), True, "garbled",
                           f"garbled text layer: {bad:.0%} of the characters are control or unmapped codes "
                           "(fonts without a ToUnicode map)", **facts)
    sparse_limit = max(40.0, SPARSE_CHARS_PER_PT2 * page_area)
    if image_coverage >= SCAN_COVERAGE and chars < sparse_limit:
        score = round(min(score, 0.4 * chars / sparse_limit), 3)
        return TextQuality(score, True, "sparse_over_image",
                           f"only {chars} characters of text over a page-sized image: the image holds the text", **facts)
    if invisible_ratio >= 0.5 and image_coverage >= SCAN_COVERAGE:
        return TextQuality(round(score, 3), score < NEEDS_OCR_BELOW, "ocr_layer",
                           "the text layer is an earlier OCR (invisible text over a scanned image); kept as it is", **facts)
    return TextQuality(round(score, 3), score < NEEDS_OCR_BELOW, "ok", "", **facts)


Box = tuple[float, float, float, float]


def rows_order(boxes: Sequence[Box]) -> list[int]:
    """Indices of boxes top to bottom; boxes that share a row (vertical overlap) left to right."""
    order = sorted(range(len(boxes)), key=lambda i: ((boxes[i][1] + boxes[i][3]) / 2, boxes[i][0]))
    rows: list[list[int]] = []
    row_top = row_bottom = -math.inf
    for i in order:
        x0, y0, x1, y1 = boxes[i]
        centre = (y0 + y1) / 2
        if rows and row_top <= centre <= row_bottom:
            rows[-1].append(i)
            row_bottom = max(row_bottom, min(y1, row_bottom + (y1 - y0) / 2))
        else:
            rows.append([i])
            row_top, row_bottom = y0, y1
    return [i for row in rows for i in sorted(row, key=lambda j: boxes[j][0])]


def weighted_median(values: Sequence[tuple[float, float]]) -> float:
    """The value below which half of the total weight lies."""
    ordered = sorted(values)
    half = sum(w for _, w in ordered) / 2
    running = 0.0
    for value, weight in ordered:
        running += weight
        if running >= half:
            return value
    return ordered[-1][0] if ordered else 0.0


def find_gutter(boxes: Sequence[Box], weights: Sequence[int], page_width: float) -> float | None:
    """The x of a column gutter in the middle of the page, or None when the page is one column.

    A gutter is an x between 30 % and 70 % of the width that few lines cross, with substantial text
    (at least 20 % of the characters, 3+ lines, most characters in column-wide lines) on each side.
    Narrow boxes on both sides (table cells, form labels) do not make columns.
    """
    if len(boxes) < 6 or page_width <= 0:
        return None
    total = sum(weights) or 1
    best: tuple[float, float] | None = None  # (crossing weight, x)
    candidates = sorted({b[2] for b in boxes} | {b[0] for b in boxes})
    candidates = [x + 0.5 for x in candidates] + [x - 0.5 for x in candidates]
    for x in candidates:
        if not 0.3 * page_width <= x <= 0.7 * page_width:
            continue
        crossing = sum(w for b, w in zip(boxes, weights) if b[0] < x < b[2])
        closer_to_middle = best is not None and abs(x - page_width / 2) < abs(best[1] - page_width / 2)
        if best is None or crossing < best[0] or (crossing == best[0] and closer_to_middle):
            best = (crossing, x)
    if best is None or best[0] > 0.35 * total:
        return None
    x = best[1]
    left = [(b, w) for b, w in zip(boxes, weights) if b[2] <= x]
    right = [(b, w) for b, w in zip(boxes, weights) if b[0] >= x]
    for side in (left, right):
        if len(side) < 3 or sum(w for _, w in side) < 0.2 * total:
            return None
        if weighted_median([(b[2] - b[0], w) for b, w in side]) < 0.2 * page_width:
            return None  # most of the text sits in narrow boxes: table cells or form labels, not a column
    # The columns must sit side by side, not one above the other.
    overlap = min(max(b[3] for b, _ in left), max(b[3] for b, _ in right)) - max(
        min(b[1] for b, _ in left), min(b[1] for b, _ in right))
    if overlap <= 0:
        return None
    return x


def vertical_order(boxes: Sequence[Box]) -> list[int]:
    """Vertical writing: tiers top to bottom (boxes whose heights overlap), each tier right to left."""
    tiers: list[list[int]] = []
    tier_bottom = -math.inf
    for i in sorted(range(len(boxes)), key=lambda i: boxes[i][1]):
        if tiers and boxes[i][1] < tier_bottom:
            tiers[-1].append(i)
            tier_bottom = max(tier_bottom, boxes[i][3])
        else:
            tiers.append([i])
            tier_bottom = boxes[i][3]
    return [i for tier in tiers for i in sorted(tier, key=lambda j: (-boxes[j][2], boxes[j][1]))]


def column_order(boxes: Sequence[Box], gutter: float) -> list[int]:
    """Indices in reading order for a two-column page: bands cut by full-width boxes, left column first."""
    spanning = sorted((i for i, b in enumerate(boxes) if b[0] < gutter < b[2]), key=lambda i: boxes[i][1])
    sides = [i for i, b in enumerate(boxes) if not b[0] < gutter < b[2]]
    order: list[int] = []
    remaining = sides
    for cut in [*spanning, None]:
        limit = boxes[cut][1] if cut is not None else math.inf
        band = [i for i in remaining if (boxes[i][1] + boxes[i][3]) / 2 < limit]
        taken = set(band)
        remaining = [i for i in remaining if i not in taken]
        left = [i for i in band if boxes[i][2] <= gutter]
        right = [i for i in band if boxes[i][2] > gutter]
        order += [left[k] for k in rows_order([boxes[i] for i in left])]
        order += [right[k] for k in rows_order([boxes[i] for i in right])]
        if cut is not None:
            order.append(cut)
    return order


def layout_text(boxes: Sequence[Box], texts: Sequence[str], page_width: float) -> str:
    """Text of loose OCR segments (one box per detected text line piece) in reading order.

    Pieces on one row are joined with a space, rows with a newline, and a gap taller than a line
    starts a new paragraph; two-column pages are read column by column.
    """
    keep = [i for i, t in enumerate(texts) if t.strip()]
    boxes = [boxes[i] for i in keep]
    texts = [texts[i].strip() for i in keep]
    if not boxes:
        return ""
    gutter = find_gutter(boxes, [max(1, len(t)) for t in texts], page_width)
    order = column_order(boxes, gutter) if gutter is not None else rows_order(boxes)
    out: list[str] = []
    previous: Box | None = None
    for i in order:
        box = boxes[i]
        if previous is not None:
            height = min(box[3] - box[1], previous[3] - previous[1]) or 1.0
            overlap = min(box[3], previous[3]) - max(box[1], previous[1])
            if overlap >= 0.5 * height and box[0] >= previous[2] - height:
                out.append(" ")
            elif box[1] - previous[3] > 1.0 * height:
                out.append("\n\n")
            else:
                out.append("\n")
        out.append(texts[i])
        previous = box
    return "".join(out)


# --- text extraction ---------------------------------------------------------------------------------
@dataclass
class _Line:
    box: Box
    text: str
    vertical: bool
    chars: int
    invisible: int


@dataclass
class _Block:
    lines: list[_Line] = field(default_factory=list)

    @property
    def box(self) -> Box:
        return (min(ln.box[0] for ln in self.lines), min(ln.box[1] for ln in self.lines),
                max(ln.box[2] for ln in self.lines), max(ln.box[3] for ln in self.lines))

    @property
    def chars(self) -> int:
        return sum(ln.chars for ln in self.lines)

    @property
    def vertical(self) -> bool:
        return sum(ln.vertical for ln in self.lines) * 2 > len(self.lines)

    def text(self) -> str:
        if self.vertical:
            return _vertical_text(self.lines)
        return "\n".join(self.lines[i].text for i in rows_order([ln.box for ln in self.lines]))


def _vertical_text(lines: list[_Line]) -> str:
    """Vertical CJK (tategaki): columns right to left, characters top to bottom within a column."""
    columns: list[list[_Line]] = []
    for line in sorted(lines, key=lambda ln: (-(ln.box[0] + ln.box[2]) / 2, ln.box[1])):
        centre = (line.box[0] + line.box[2]) / 2
        if columns and columns[-1][0].box[0] <= centre <= columns[-1][0].box[2]:
            columns[-1].append(line)
        else:
            columns.append([line])
    return "\n".join("".join(ln.text for ln in sorted(col, key=lambda ln: ln.box[1])) for col in columns)


def _page_blocks(page: pymupdf.Page) -> list[_Block]:
    matrix = page.rotation_matrix  # get_text() speaks unrotated coordinates; readers see the rotated page
    blocks: list[_Block] = []
    for raw in page.get_text("dict", flags=_TEXT_FLAGS)["blocks"]:
        if raw.get("type") != 0:
            continue
        block = _Block()
        for raw_line in raw["lines"]:
            text = "".join(span["text"] for span in raw_line["spans"]).rstrip()
            if not text.strip():
                continue
            box = pymupdf.Rect(raw_line["bbox"]) * matrix
            dx, dy = raw_line["dir"]
            dir_x = dx * matrix.a + dy * matrix.c
            dir_y = dx * matrix.b + dy * matrix.d
            chars = sum(len(span["text"].strip()) for span in raw_line["spans"])
            invisible = sum(len(span["text"].strip()) for span in raw_line["spans"] if span.get("alpha", 255) == 0)
            vertical = raw_line.get("wmode", 0) == 1 or (abs(dir_y) > abs(dir_x) and dir_y > 0)
            block.lines.append(_Line((box.x0, box.y0, box.x1, box.y1), text, vertical, chars, invisible))
        if block.lines:
            blocks.append(block)
    return blocks


def _split_at_gutter(blocks: list[_Block], gutter: float) -> list[_Block]:
    """MuPDF sometimes groups lines of both columns in one block: split such blocks by side."""
    out: list[_Block] = []
    for block in blocks:
        sides = {("L" if ln.box[2] <= gutter else "R" if ln.box[0] >= gutter else "S") for ln in block.lines}
        if len(sides) == 1:
            out.append(block)
            continue
        for side in ("S", "L", "R"):
            part = [ln for ln in block.lines if ("L" if ln.box[2] <= gutter else "R" if ln.box[0] >= gutter else "S") == side]
            if part:
                out.append(_Block(part))
    return out


def order_blocks(blocks: list[_Block], page_width: float) -> tuple[list[_Block], bool]:
    """(blocks in reading order, whether the page was read as two columns)."""
    if not blocks:
        return [], False
    if sum(b.vertical for b in blocks) * 2 > len(blocks):
        return [blocks[i] for i in vertical_order([b.box for b in blocks])], False
    lines = [ln for b in blocks for ln in b.lines]
    gutter = find_gutter([ln.box for ln in lines], [max(1, ln.chars) for ln in lines], page_width)
    if gutter is None:
        return [blocks[i] for i in rows_order([b.box for b in blocks])], False
    blocks = _split_at_gutter(blocks, gutter)
    return [blocks[i] for i in column_order([b.box for b in blocks], gutter)], True


def page_text(page: pymupdf.Page) -> tuple[str, int, int, bool]:
    """(text in reading order, characters, invisible characters, two-column) of one page's text layer."""
    blocks = _page_blocks(page)
    ordered, columns = order_blocks(blocks, page.rect.width)
    text = "\n\n".join(b.text() for b in ordered)
    chars = sum(b.chars for b in blocks)
    invisible = sum(ln.invisible for b in blocks for ln in b.lines)
    return text, chars, invisible, columns


def _image_coverage(page: pymupdf.Page) -> float:
    """Share of the page under its largest image (image boxes, like text, are in unrotated coordinates)."""
    area = abs(page.rect) or 1.0
    page_box = pymupdf.Rect(page.rect * page.derotation_matrix).normalize()
    covered = 0.0
    for info in page.get_image_info():
        box = pymupdf.Rect(info["bbox"]) & page_box
        covered = max(covered, abs(box))  # the largest image; overlapping tiles of a scan rarely matter
    return min(1.0, covered / area)


# --- the document --------------------------------------------------------------------------------------
class Document:
    """An open PDF or image. Use as a context manager; pages are numbered from 1."""

    def __init__(self, doc: pymupdf.Document, data: bytes, info: DocumentInfo, limits: Limits,
                 decrypted: bool) -> None:
        self._doc = doc
        self._data = data
        self._decrypted = decrypted
        self.info = info
        self.limits = limits
        self._cache: OrderedDict[int, TextLayer] = OrderedDict()

    # context manager
    def __enter__(self) -> Document:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._cache.clear()
        self._doc.close()

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def page_count(self) -> int:
        return self.info.page_count

    @property
    def is_image(self) -> bool:
        return self.info.kind != "pdf"

    def page_numbers(self) -> range:
        return range(1, self.page_count + 1)

    def _page(self, number: int) -> pymupdf.Page:
        if not isinstance(number, int) or not 1 <= number <= self.page_count:
            raise InputError(f"{self.name} has no page {number} (it has {self.page_count}).",
                             f"choose pages between 1 and {self.page_count}")
        try:
            return self._doc.load_page(number - 1)
        except MUPDF_ERRORS as exc:
            raise CorruptDocumentError(f"Page {number} of {self.name} cannot be read: {exc}",
                                       "the file is damaged; try re-saving it from the program that made it") from None

    # text layer
    def inspect(self, number: int) -> TextLayer:
        """The page's text layer in reading order and the verdict on its quality."""
        if number in self._cache:
            self._cache.move_to_end(number)
            return self._cache[number]
        started = time.perf_counter()
        page = self._page(number)
        try:
            text, chars, invisible, columns = page_text(page) if not self.is_image else ("", 0, 0, False)
            coverage = _image_coverage(page)
            has_drawings = bool(not chars and not coverage and page.get_cdrawings())
        except MUPDF_ERRORS as exc:
            raise CorruptDocumentError(f"The text of page {number} of {self.name} cannot be read: {exc}",
                                       "the file is damaged; OCR of the rendered page may still work") from None
        quality = assess_text_layer(text, page_area=abs(page.rect), image_coverage=coverage,
                                    invisible_ratio=invisible / chars if chars else 0.0, has_drawings=has_drawings,
                                    is_image=self.is_image)
        notes = tuple(n for n in (quality.note, "two-column page: read column by column" if columns else "",
                                  f"page rotated {page.rotation}°" if page.rotation else "") if n)
        result = TextLayer(
            Page(number=number, text=text if quality.reason != "empty" else "", source="text", ocr_used=False,
                 degraded=quality.reason == "garbled", width=round(page.rect.width, 2), height=round(page.rect.height, 2),
                 quality=quality.score, seconds=round(time.perf_counter() - started, 4), notes=notes),
            quality,
        )
        self._cache[number] = result
        if len(self._cache) > 8:
            self._cache.popitem(last=False)
        return result

    def text_layer(self, number: int) -> Page:
        return self.inspect(number).page

    def quality(self, number: int) -> TextQuality:
        return self.inspect(number).quality

    # rendering
    def _dpi_for(self, page: pymupdf.Page, dpi: int | None) -> int:
        if self.is_image:
            native = self._native_dpi(page)
            wanted = native if dpi is None else min(dpi, native)
        else:
            wanted = min(dpi or self.limits.render_dpi, self.limits.render_dpi)
        inches = (page.rect.width / 72) * (page.rect.height / 72)
        pixel_cap = math.sqrt(self.limits.max_pixels / inches) if inches > 0 else wanted
        return max(18, int(min(wanted, pixel_cap)))

    @staticmethod
    def _native_dpi(page: pymupdf.Page) -> int:
        """An image file renders at its own pixel size, whatever resolution its header claims."""
        images = page.get_image_info()
        if not images or page.rect.width <= 0:
            return 72
        return max(18, round(images[0]["width"] / (page.rect.width / 72)))

    def find_text(self, number: int, text: str, max_lines: int = 60) -> list[tuple[float, float, float, float]]:
        """Where ``text`` (e.g. a search hit) sits on the page: rectangles in page points, found line by
        line so that a span running over several lines or columns is covered."""
        page = self._page(number)
        rects: list[tuple[float, float, float, float]] = []
        for line in [ln.strip() for ln in text.splitlines() if len(ln.strip()) >= 4][:max_lines]:
            try:
                found = page.search_for(line)
            except MUPDF_ERRORS:
                continue
            rects.extend((r.x0, r.y0, r.x1, r.y1) for r in found[:2])
        return rects

    def render(self, number: int, dpi: int | None = None, gray: bool = False,
               highlight: str | None = None) -> PageImage:
        """One page as PNG. DPI is capped by the limits (render_dpi, max_pixels); images keep their own pixels."""
        page = self._page(number)
        used = self._dpi_for(page, dpi)
        marks = []
        if highlight:  # temporary annotations on the in-memory page, removed after rendering
            marks = [page.add_highlight_annot(pymupdf.Rect(*r)) for r in self.find_text(number, highlight)]
        try:
            pix = page.get_pixmap(dpi=used, alpha=False, colorspace=pymupdf.csGRAY if gray else pymupdf.csRGB,
                                  annots=True)
            png = pix.tobytes("png")
        except (*MUPDF_ERRORS, MemoryError) as exc:
            raise CorruptDocumentError(f"Page {number} of {self.name} cannot be rendered: {exc}",
                                       "the file is damaged or the page is too complex to draw") from None
        finally:
            for mark in marks:
                page.delete_annot(mark)
        return PageImage(number=number, png=png, width_px=pix.width, height_px=pix.height, dpi=used)

    def thumbnail(self, number: int, width_px: int = 200) -> PageImage:
        page = self._page(number)
        if width_px < 8 or width_px > 4000:
            raise InputError(f"Thumbnail width {width_px} px is out of range.", "use 8 to 4000 pixels")
        zoom = width_px / page.rect.width
        try:
            pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False, colorspace=pymupdf.csRGB)
        except (*MUPDF_ERRORS, MemoryError) as exc:
            raise CorruptDocumentError(f"Page {number} of {self.name} cannot be rendered: {exc}",
                                       "the file is damaged or the page is too complex to draw") from None
        return PageImage(number=number, png=pix.tobytes("png"), width_px=pix.width, height_px=pix.height,
                         dpi=max(1, round(72 * zoom)))

    def pdf_bytes(self) -> bytes:
        """The document as PDF bytes for engines that read PDFs (Mistral): decrypted if it needed a password,
        an image wrapped in a one-page PDF."""
        if self.is_image:
            return self._doc.convert_to_pdf()
        if self._decrypted:
            return self._doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_NONE, garbage=1)
        return self._data


# --- opening ---------------------------------------------------------------------------------------------
READ_CHUNK = 1024 * 1024
SPOOL_IN_MEMORY = 8 * 1024 * 1024  # a pipe's bytes beyond this wait on disk until the limit is known to hold


def size_limit_error(name: str, limit: int, size: int | None = None) -> DocumentLimitError:
    megabytes = f"{limit / 1024 / 1024:.0f} MB"
    told = f"{name} is {size / 1024 / 1024:.1f} MB; the limit is {megabytes}." if size is not None else \
        f"{name} is larger than the limit of {megabytes} (refused after reading {megabytes})."
    return DocumentLimitError(told,
                              "split the file, or raise STUDIO_MAX_UPLOAD_MB")


def read_limited(source: Path | str, max_bytes: int | None, what: str = "file") -> bytes:
    """The bytes of a file, a pipe, a device or a socket, refused with a DocumentLimitError as soon as
    more than ``max_bytes`` arrive: at most ``max_bytes + 1`` bytes are ever read, whatever ``stat`` says
    (a pipe's size is 0, /dev/zero never ends). A regular file over the limit is refused unread; the
    bytes of anything else are spooled to a temporary file while they arrive, so refusing a pipe costs
    one read buffer of memory, not the limit."""
    path = Path(source)
    try:
        handle = open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise InputError(f"The {what} {path} does not exist.", "check the path") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a {what}.", "give a file") from None
    except PermissionError:
        raise InputError(f"The {what} {path} cannot be read (permission denied).", "check the file's permissions"
                         ) from None
    except OSError as exc:
        raise InputError(f"The {what} {path} cannot be opened: {exc.strerror or exc}.", "check the path") from None
    with handle:
        info = os.fstat(handle.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{path} is a folder, not a {what}.", "give a file")
        if max_bytes is None:
            return handle.read()
        if stat.S_ISREG(info.st_mode):
            if info.st_size > max_bytes:
                raise size_limit_error(path.name, max_bytes, info.st_size)
            data = _read_exactly(handle, info.st_size + 1)  # +1: a file that grew since stat() is still caught
            if len(data) > max_bytes:
                raise size_limit_error(path.name, max_bytes)
            return data
        return _read_stream(handle, max_bytes, path.name)


def _read_exactly(handle, size: int) -> bytes:
    """Up to ``size`` bytes of a regular file: one read (one buffer) unless the kernel returns less."""
    parts = []
    while size > 0:
        part = handle.read(size)
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts) if len(parts) != 1 else parts[0]


def _read_stream(handle, max_bytes: int, name: str) -> bytes:
    import tempfile

    total = 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        while True:
            part = handle.read(min(READ_CHUNK, max_bytes + 1 - total))
            if not part:
                break
            total += len(part)
            if total > max_bytes:
                log.info("refused %s: more than %d bytes arrived", name, max_bytes)
                raise size_limit_error(name, max_bytes)
            spool.write(part)
        spool.seek(0)
        return spool.read()


def read_source(source: bytes | bytearray | Path | str, name: str | None, limits: Limits) -> tuple[bytes, str]:
    """The bytes and display name of a document, with the size limit and the empty-file check."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        name = name or "document"
    else:
        path = Path(source)
        name = name or path.name
        data = read_limited(path, limits.max_bytes, what="document")
    if len(data) > limits.max_bytes:
        raise _too_big(name, len(data), limits)
    if not data:
        raise EmptyDocumentError(f"{name} is empty (0 bytes).", "the upload or copy was cut off; add the file again")
    return data, name


def _too_big(name: str, size: int, limits: Limits) -> DocumentLimitError:
    return DocumentLimitError(
        f"{name} is {size / 1024 / 1024:.1f} MB; the limit is {limits.max_bytes / 1024 / 1024:.0f} MB.",
        "split the file, or raise STUDIO_MAX_UPLOAD_MB",
    )


def open_document(
    source: bytes | Path | str,
    name: str | None = None,
    password: str | None = None,
    limits: Limits | None = None,
) -> Document:
    """Open a PDF or a PNG/JPEG image (a one-page document). Every failure is a DocumentError naming the file."""
    limits = limits or Limits.from_settings()
    data, name = read_source(source, name, limits)
    kind = detect_kind(data[:1024], name)
    try:
        doc = pymupdf.open(stream=data, filetype=kind)
    except MUPDF_ERRORS as exc:  # FileDataError, EmptyFileError and MuPDF's own errors
        log.debug("pymupdf.open failed for %s: %s", name, exc)
        raise CorruptDocumentError(f"{name} is damaged and cannot be opened as a {kind.upper()}.",
                                   "try re-saving it from the program that made it") from None
    try:
        return _checked(doc, data, name, kind, password, limits)
    except BaseException:
        doc.close()
        raise


def _checked(doc: pymupdf.Document, data: bytes, name: str, kind: str, password: str | None, limits: Limits) -> Document:
    decrypted = False
    if doc.needs_pass:
        if not password:
            raise EncryptedDocumentError(f"{name} is encrypted: password required.",
                                         "give the document's password (--password, or the password field)")
        if not doc.authenticate(password):
            raise EncryptedDocumentError(f"{name} is encrypted and the password given is wrong.",
                                         "check the password; it is case-sensitive")
        decrypted = True
    pages = doc.page_count
    if pages == 0:
        if doc.is_repaired:
            raise CorruptDocumentError(f"{name} is damaged: its page tree cannot be read, so no page was found.",
                                       "try re-saving it from the program that made it (or print it to a new PDF)")
        raise EmptyDocumentError(f"{name} has no pages.", "there is nothing to read in this file")
    if pages > limits.max_pages:
        raise DocumentLimitError(f"{name} has {pages} pages; the limit is {limits.max_pages}.",
                                 "split the file, or raise STUDIO_MAX_PAGES")
    if kind != "pdf":
        try:  # image files open lazily: decode now (a tiny render) so a broken image fails here, not in OCR
            doc.load_page(0).get_pixmap(matrix=pymupdf.Matrix(0.05, 0.05))
        except MUPDF_ERRORS:
            raise CorruptDocumentError(f"{name} is not a readable {kind.upper()} image.",
                                       "the image is damaged or truncated") from None
    if doc.is_repaired:
        log.info("%s was damaged; MuPDF repaired it on opening", name)
    encryption = (doc.metadata or {}).get("encryption") or ""
    info = DocumentInfo(name=name, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), page_count=pages,
                        kind=kind, encrypted=decrypted or bool(encryption))
    return Document(doc, data, info, limits, decrypted)

