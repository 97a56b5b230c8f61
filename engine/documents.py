"""Documents: PDF (bytes or path) and PNG/JPEG images -> pages, one page at a time, with PyMuPDF.

A ``Document`` gives, per page, the text layer in reading order with a quality verdict (is OCR
needed?), and a rendered image for the OCR engines. Nothing is rendered or extracted before it is
asked for, and never more than one page at a time, so a 2,000-page file costs what one page costs.

Reading order comes from engine/layout.py (pure geometry: rows, column gutters, vertical CJK);
lines are mapped to the page as displayed (``rotation_matrix``) first. The verdict on each text
layer comes from engine/text_quality.py.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import stat
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import pymupdf

from engine.errors import (
    CorruptDocumentError,
    DocumentLimitError,
    EmptyDocumentError,
    EncryptedDocumentError,
    InputError,
)
from engine.layout import Block, Line, order_blocks
from engine.page_records import Page, PageImage
from engine.text_quality import TextQuality, assess_text_layer

log = logging.getLogger(__name__)

pymupdf.TOOLS.mupdf_display_errors(False)  # MuPDF's repair chatter goes to our log, not to stderr
pymupdf.TOOLS.mupdf_display_warnings(False)

# Pixels a rendered page may have: a letter page at 300 dpi is 8.4 Mpx; an A1 poster at 200 dpi would be 31 Mpx.
DEFAULT_MAX_PIXELS = 16_000_000
IMAGE_PIXEL_FACTOR = 16  # an image file is decoded whole before it is scaled to max_pixels: up to 16 x that
# Ligatures are expanded ("ﬁ" -> "fi") and image blocks are not collected: neither helps search.
_TEXT_FLAGS = (
    (pymupdf.TEXTFLAGS_DICT | pymupdf.TEXT_MEDIABOX_CLIP) & ~pymupdf.TEXT_PRESERVE_IMAGES & ~pymupdf.TEXT_PRESERVE_LIGATURES
)

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


# --- text extraction ---------------------------------------------------------------------------------
def _page_blocks(page: pymupdf.Page) -> list[Block]:
    matrix = page.rotation_matrix  # get_text() speaks unrotated coordinates; readers see the rotated page
    upright = tuple(matrix) == (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)  # most pages: boxes and directions as they are
    blocks: list[Block] = []
    for raw in page.get_text("dict", flags=_TEXT_FLAGS)["blocks"]:
        if raw.get("type") != 0:
            continue
        block = Block()
        for raw_line in raw["lines"]:
            text = "".join(span["text"] for span in raw_line["spans"]).rstrip()
            if not text.strip():
                continue
            x0, y0, x1, y1 = raw_line["bbox"]
            if upright and x0 <= x1 and y0 <= y1:  # what Rect * identity gives, without its 3 objects a line
                box = (x0, y0, x1, y1)
                dir_x, dir_y = raw_line["dir"]
            else:
                rect = pymupdf.Rect(x0, y0, x1, y1) * matrix
                box = (rect.x0, rect.y0, rect.x1, rect.y1)
                dx, dy = raw_line["dir"]
                dir_x = dx * matrix.a + dy * matrix.c
                dir_y = dx * matrix.b + dy * matrix.d
            chars = sum(len(span["text"].strip()) for span in raw_line["spans"])
            invisible = sum(len(span["text"].strip()) for span in raw_line["spans"] if span.get("alpha", 255) == 0)
            vertical = raw_line.get("wmode", 0) == 1 or (abs(dir_y) > abs(dir_x) and dir_y > 0)
            block.lines.append(Line(box, text, vertical, chars, invisible))
        if block.lines:
            blocks.append(block)
    return blocks

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
            # measured only where the verdict needs them (assess_text_layer asks for drawings only where it found
            # no text and no image, and measures the coverage once)
            quality = assess_text_layer(text, page_area=abs(page.rect), image_coverage=lambda: _image_coverage(page),
                                        invisible_ratio=invisible / chars if chars else 0.0,
                                        has_drawings=lambda: bool(not chars and page.get_cdrawings()), is_image=self.is_image)
        except MUPDF_ERRORS as exc:
            raise CorruptDocumentError(f"The text of page {number} of {self.name} cannot be read: {exc}",
                                       "the file is damaged; OCR of the rendered page may still work") from None
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
        # the pixel cap holds even where it means under 18 dpi (a 60000 pt square page made 225 Mpx at 18 dpi)
        return max(1, int(min(wanted, pixel_cap)))

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


def _say_if_waiting(path: Path, what: str) -> None:
    """A line on the log before a read that waits on a person or a process: a FIFO opens only once something writes
    to it, and a terminal reads until Ctrl-D. Both waited without a word."""
    try:
        if path == Path("/dev/stdin"):
            if sys.stdin is not None and sys.stdin.isatty():
                log.warning("reading the %s from the terminal: end it with Ctrl-D (Ctrl-C stops)", what)
        elif stat.S_ISFIFO(os.stat(path).st_mode):
            log.warning("%s is a named pipe: waiting for a program to write the %s to it (Ctrl-C stops)", path, what)
    except (OSError, ValueError):  # no such file, a closed stdin: the open that follows says so
        pass


def read_limited(source: Path | str, max_bytes: int | None, what: str = "file") -> bytes:
    """The bytes of a file, a pipe, a device or a socket, refused with a DocumentLimitError as soon as
    more than ``max_bytes`` arrive: at most ``max_bytes + 1`` bytes are ever read, whatever ``stat`` says
    (a pipe's size is 0, /dev/zero never ends). A regular file over the limit is refused unread; the
    bytes of anything else are spooled to a temporary file while they arrive, so refusing a pipe costs
    one read buffer of memory, not the limit."""
    path = Path(source)
    _say_if_waiting(path, what)
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
    sha256: str | None = None,
) -> Document:
    """Open a PDF or a PNG/JPEG image (a one-page document). Every failure is a DocumentError naming the file.

    ``sha256``: the digest of the bytes when the caller computed it already (an ingest hashes once)."""
    limits = limits or Limits.from_settings()
    data, name = read_source(source, name, limits)
    kind = detect_kind(data[:1024], name)
    if kind != "pdf":
        _check_image_size(data, name, kind, limits)
    try:
        doc = pymupdf.open(stream=data, filetype=kind)
    except MUPDF_ERRORS as exc:  # FileDataError, EmptyFileError and MuPDF's own errors
        log.debug("pymupdf.open failed for %s: %s", name, exc)
        raise CorruptDocumentError(f"{name} is damaged and cannot be opened as a {kind.upper()}.",
                                   "try re-saving it from the program that made it") from None
    try:
        return _checked(doc, data, name, kind, password, limits, sha256)
    except BaseException:
        doc.close()
        raise


def _check_image_size(data: bytes, name: str, kind: str, limits: Limits) -> None:
    """A DocumentLimitError for an image of more than ``IMAGE_PIXEL_FACTOR`` x the render limit, read from its header
    (a 1.6 MB grey PNG of 40000 x 40000 took 1.9 GB as MuPDF opened it). Pillow's image class reads the header and
    decodes nothing; it is built directly, since ``Image.open`` would apply Pillow's own limit (179 Mpx) instead."""
    from PIL import JpegImagePlugin, PngImagePlugin

    image_class = {"png": PngImagePlugin.PngImageFile, "jpeg": JpegImagePlugin.JpegImageFile}[kind]
    try:
        with image_class(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 - an unreadable header: MuPDF's own open names the damage
        return
    limit = IMAGE_PIXEL_FACTOR * limits.max_pixels
    if width * height > limit:
        raise DocumentLimitError(f"{name} is an image of {width} x {height} pixels ({width * height / 1e6:.0f} Mpx); "
                                 f"the limit is {limit / 1e6:.0f} Mpx.",
                                 f"scale the image down (it is rendered at up to {limits.max_pixels / 1e6:.0f} Mpx "
                                 "for OCR anyway)")


def _checked(doc: pymupdf.Document, data: bytes, name: str, kind: str, password: str | None, limits: Limits,
             sha256: str | None = None) -> Document:
    decrypted = False
    if doc.needs_pass:
        if not password:
            raise EncryptedDocumentError(f"{name} is encrypted: password required.",
                                         "give the document's password (--password, or the password field)",
                                         param="password")
        if not doc.authenticate(password):
            raise EncryptedDocumentError(f"{name} is encrypted and the password given is wrong.",
                                         "check the password; it is case-sensitive", param="password")
        decrypted = True
    try:
        pages = doc.page_count
    except MUPDF_ERRORS:  # a page tree that claims 10**9 pages: "Invalid number of pages"
        raise CorruptDocumentError(f"{name} is damaged: its page tree does not give a readable page count.",
                                   "try re-saving it from the program that made it (or print it to a new PDF)") from None
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
    info = DocumentInfo(name=name, sha256=sha256 or hashlib.sha256(data).hexdigest(), size_bytes=len(data), page_count=pages,
                        kind=kind, encrypted=decrypted or bool(encryption))
    return Document(doc, data, info, limits, decrypted)

