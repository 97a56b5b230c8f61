"""engine.documents on the real corpus (../shared/data/pdfs): bad input, text layer, reading order, quality, rendering."""

from __future__ import annotations

import hashlib
import re

import pymupdf
import pytest
from conftest import shared_data

from engine.documents import Limits, detect_kind, open_document
from engine.errors import (
    CorruptDocumentError,
    DocumentLimitError,
    EmptyDocumentError,
    EncryptedDocumentError,
    InputError,
)
from engine.layout import column_order, find_gutter, layout_text, rows_order, vertical_order
from engine.text_quality import assess_text_layer, bad_char_ratio

LIMITS = Limits()  # the defaults, independent of the environment


def pdf(name: str):
    return shared_data("pdfs", name)


def open_pdf(name: str, **kwargs):
    kwargs.setdefault("limits", LIMITS)
    return open_document(pdf(name), **kwargs)


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# --- bad input ------------------------------------------------------------------------------------------
def test_zero_byte_file_is_an_empty_document(tmp_path):
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    with pytest.raises(EmptyDocumentError, match=r"empty\.pdf is empty \(0 bytes\)"):
        open_document(empty, limits=LIMITS)
    with pytest.raises(EmptyDocumentError):
        open_document(b"", name="upload.pdf", limits=LIMITS)


def test_a_renamed_non_pdf_is_rejected_by_name():
    with pytest.raises(CorruptDocumentError, match="not_a_pdf_oops.pdf is not a PDF") as caught:
        open_pdf("not_a_pdf_oops.pdf")
    assert caught.value.hint


def test_broken_xref_with_no_recoverable_page_is_corrupt_not_empty():
    with pytest.raises(CorruptDocumentError, match="damaged"):
        open_pdf("broken_xref_unreadable.pdf")


def test_zero_pages_is_an_empty_document():
    with pytest.raises(EmptyDocumentError, match="has no pages"):
        open_pdf("zero_pages.pdf")


@pytest.mark.parametrize(("name", "password", "expected"), [
    ("encrypted_user_pw_rc4.pdf", "openpassword", "Lorem ipsum dolor sit amet"),
    ("encrypted_user_pw_aes256.pdf", "usersecret", "Hello World"),
])
def test_user_password_encryption(name, password, expected):
    with pytest.raises(EncryptedDocumentError, match="password required"):
        open_pdf(name)
    with pytest.raises(EncryptedDocumentError, match="password given is wrong"):
        open_pdf(name, password="not-the-password")
    with open_pdf(name, password=password) as doc:
        assert doc.info.encrypted
        assert expected in doc.text_layer(1).text
        # engines that read PDFs (Mistral) get a copy that opens without the password
        decrypted = pymupdf.open(stream=doc.pdf_bytes(), filetype="pdf")
        assert not decrypted.needs_pass
        assert expected in decrypted[0].get_text()


def test_owner_only_encryption_opens_without_a_password():
    with open_pdf("encrypted_owner_only_aes256.pdf") as doc:
        assert doc.info.encrypted
        assert doc.text_layer(1).text.startswith("pdf encryption test")


def test_page_and_size_limits():
    with pytest.raises(DocumentLimitError, match="34 pages; the limit is 10"):
        open_pdf("report_nist_sp800-223.pdf", limits=Limits(max_pages=10))
    with pytest.raises(DocumentLimitError, match="MB; the limit is"):
        open_pdf("report_nist_sp800-223.pdf", limits=Limits(max_bytes=100_000))
    data = pdf("report_nist_sp800-223.pdf").read_bytes()
    with pytest.raises(DocumentLimitError):
        open_document(data, name="upload.pdf", limits=Limits(max_bytes=100_000))


def test_limits_default_to_the_settings():
    from engine.settings import load_settings

    limits = Limits.from_settings(load_settings(max_upload_mb=3, max_pages=7, render_dpi=150))
    assert (limits.max_bytes, limits.max_pages, limits.render_dpi) == (3 * 1024 * 1024, 7, 150)


def test_corrupt_zlib_stream_still_yields_text():
    with open_pdf("corrupt_zlib_stream.pdf") as doc:
        text = doc.text_layer(1).text
    assert "Beautiful is better than ugly." in text
    # the page is /Rotate 90: lines still come top to bottom as a reader sees them
    assert text.index("Beautiful is better than ugly.") < text.index("Explicit is better than implicit.")


def test_missing_page_and_missing_file():
    with open_pdf("table_small.pdf") as doc:
        with pytest.raises(InputError, match="has no page 2"):
            doc.text_layer(2)
    with pytest.raises(InputError, match="does not exist"):
        open_document(pdf("table_small.pdf").parent / "no-such-file.pdf", limits=LIMITS)


def test_info_hash_and_kind():
    path = pdf("report_nist_sp800-223.pdf")
    with open_document(path, limits=LIMITS) as doc:
        assert doc.info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert (doc.info.kind, doc.info.page_count, doc.info.encrypted) == ("pdf", 34, False)
        assert doc.info.name == "report_nist_sp800-223.pdf"


# --- text layer and reading order ----------------------------------------------------------------------------
def test_known_phrase_on_its_page_of_the_nist_report():
    with open_pdf("report_nist_sp800-223.pdf") as doc:
        page = doc.text_layer(10)
        quality = doc.quality(10)
        assert "The HPC system is complex and evolving, and a common lexicon" in squash(page.text)
        assert "The HPC system is complex and evolving" not in doc.text_layer(9).text
    assert (page.number, page.source, page.ocr_used, page.degraded) == (10, "text", False, False)
    assert (page.width, page.height) == (612.0, 792.0)
    assert quality.reason == "ok" and not quality.needs_ocr and page.quality == 1.0


def test_two_column_paper_reads_the_left_column_before_the_right():
    with open_pdf("paper_naacl06_2col.pdf") as doc:
        page = doc.text_layer(1)
    text = squash(page.text)
    title = text.index("Preemptive Information Extraction using Unrestricted Relation Discovery")
    abstract = text.index("We are trying to extend the boundary of Information Extraction")
    left_bottom = text.index("you need to repeat the whole process")  # last lines of the left column
    right_top = text.index("cles and adjust its patterns, either manually or semi")  # first line of the right one
    right_bottom = text.index("Unrestricted Relation Discovery is a technique to")
    assert title < abstract < left_bottom < right_top < right_bottom
    assert any("two-column" in note for note in page.notes)


def test_two_column_paper_tracemonkey():
    with open_pdf("paper_tracemonkey_2col.pdf") as doc:
        text = squash(doc.text_layer(1).text)
    left = text.index("Dynamic languages such as JavaScript are more difficult to com- pile")
    left_end = text.index("JavaScript, for example, is the de facto standard for client-side web programming")
    right = text.index("and is used for the application logic of browser-based productivity")
    assert left < left_end < right


def test_rotated_pages_read_in_the_same_order_as_displayed():
    expected = [f"cell[{i}][{j}]" for i in range(8) for j in range(5)]
    with open_pdf("rotated_table_4pages.pdf") as doc:
        for number in doc.page_numbers():
            page = doc.text_layer(number)
            assert re.findall(r"cell\[\d\]\[\d\]", page.text) == expected, f"page {number}"
        assert any("rotated 90" in note for note in doc.text_layer(2).notes)


def test_vertical_japanese_is_read_in_columns_from_the_right():
    with open_pdf("cjk_japanese_haru_to_shura.pdf") as doc:
        text = doc.text_layer(1).text
    assert "わたくしといふ現象は" in text
    assert text.index("序") < text.index("わたくしといふ現象は") < text.index("假定された有機交流電燈の")


# --- quality verdicts -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "reason", "needs_ocr"), [
    ("blank_page.pdf", "empty", False),
    ("scan_grumman_bulletin_notext.pdf", "image_only", True),
    ("scan_jbig2_rotated.pdf", "image_only", True),
    ("garbled_type3_no_tounicode.pdf", "garbled", True),
    ("garbled_cid_no_tounicode.pdf", "garbled", True),
    ("scan_vicksburg_ocr_layer.pdf", "ocr_layer", False),
    ("table_small.pdf", "ok", False),
])
def test_text_quality_verdicts(name, reason, needs_ocr):
    with open_pdf(name) as doc:
        quality = doc.quality(1)
        page = doc.text_layer(1)
    assert (quality.reason, quality.needs_ocr) == (reason, needs_ocr)
    assert 0.0 <= page.quality <= 1.0
    if reason in ("garbled", "image_only", "empty"):
        assert page.quality < 0.5
    if reason == "garbled":
        assert page.degraded and quality.bad_ratio >= 0.05
    if reason != "ok":
        assert quality.note and quality.note in page.notes


def test_book_cover_is_an_image_page_and_the_next_page_is_text():
    with open_pdf("book_free_culture_352p.pdf") as doc:
        assert doc.quality(1).reason == "image_only"
        assert doc.quality(2).reason == "ok"


def test_assess_text_layer_rules():
    clean = "A perfectly ordinary sentence of text. " * 40
    assert assess_text_layer(clean, page_area=612 * 792, image_coverage=0.0).reason == "ok"
    sparse = assess_text_layer("Page 7", page_area=612 * 792, image_coverage=0.95)
    assert (sparse.reason, sparse.needs_ocr) == ("sparse_over_image", True) and sparse.score < 0.5
    assert assess_text_layer("", page_area=1.0, image_coverage=0.0, has_drawings=True).reason == "image_only"
    assert assess_text_layer("", page_area=1.0, image_coverage=0.0).needs_ocr is False
    garbled = assess_text_layer("\x00\x01\x02\x03abc", page_area=1.0, image_coverage=0.0)
    assert garbled.reason == "garbled" and garbled.score == 0.0
    assert bad_char_ratio("ab\x03\n\t") == (3, pytest.approx(1 / 3))


# --- rendering ----------------------------------------------------------------------------------------------------
def test_render_caps_dpi_and_returns_png():
    with open_pdf("table_small.pdf", limits=Limits(render_dpi=100)) as doc:
        image = doc.render(1, dpi=600)
        thumb = doc.thumbnail(1, 120)
    assert image.dpi == 100 and image.png.startswith(b"\x89PNG")
    assert (image.width_px, image.height_px) == (round(612 * 100 / 72), round(792 * 100 / 72))
    assert thumb.width_px == 120 and thumb.number == 1


def test_huge_page_is_capped_by_pixel_count():
    limits = Limits(render_dpi=200, max_pixels=4_000_000)
    with open_pdf("poster_a1_large_page.pdf", limits=limits) as doc:
        image = doc.render(1)
    assert image.dpi < 200
    assert image.width_px * image.height_px <= limits.max_pixels


def test_png_and_jpeg_are_one_page_documents():
    with open_pdf("table_small.pdf", limits=Limits(render_dpi=120)) as doc:
        png = doc.render(1).png
    jpeg = pymupdf.Pixmap(png).tobytes("jpg")
    for data, kind in ((png, "png"), (jpeg, "jpeg")):
        with open_document(data, name=f"scan.{kind}", limits=LIMITS) as image_doc:
            assert (image_doc.info.kind, image_doc.page_count) == (kind, 1)
            quality = image_doc.quality(1)
            assert (quality.reason, quality.needs_ocr) == ("image", True)
            rendered = image_doc.render(1)
            assert (rendered.width_px, rendered.height_px) == (1020, 1320)  # its own pixels, not resampled
            assert image_doc.pdf_bytes().startswith(b"%PDF")
    with pytest.raises(CorruptDocumentError, match="not a readable PNG"):
        open_document(png[: len(png) // 2], name="cut.png", limits=LIMITS)


# --- pure layout helpers ----------------------------------------------------------------------------------------------
def test_detect_kind():
    assert detect_kind(b"%PDF-1.7\n", "a.pdf") == "pdf"
    assert detect_kind(b"garbage\n%PDF-1.4", "a.pdf") == "pdf"
    assert detect_kind(b"\x89PNG\r\n\x1a\n....", "a.png") == "png"
    assert detect_kind(b"\xff\xd8\xff\xe0", "a.jpg") == "jpeg"
    with pytest.raises(CorruptDocumentError, match="x.pdf is not a PDF"):
        detect_kind(b"<html>", "x.pdf")


def test_rows_order_reads_rows_left_to_right():
    boxes = [(300, 100, 400, 112), (100, 101, 200, 113), (100, 130, 200, 142), (300, 129, 400, 141)]
    assert rows_order(boxes) == [1, 0, 2, 3]


def test_column_order_with_a_full_width_title_and_footer():
    title = (60, 40, 550, 60)
    left = [(60, 100 + 14 * i, 290, 112 + 14 * i) for i in range(6)]
    right = [(320, 100 + 14 * i, 550, 112 + 14 * i) for i in range(6)]
    footer = (60, 700, 550, 712)
    boxes = [*right, footer, *left, title]  # content-stream order is not reading order
    gutter = find_gutter(boxes, [40] * len(boxes), 612)
    assert gutter is not None and 290 <= gutter <= 320
    order = column_order(boxes, gutter)
    assert [boxes[i] for i in order] == [title, *left, *right, footer]


def test_no_gutter_for_a_table_or_a_single_column():
    cells = [(60 + 100 * j, 100 + 20 * i, 120 + 100 * j, 112 + 20 * i) for i in range(5) for j in range(5)]
    assert find_gutter(cells, [5] * len(cells), 612) is None
    prose = [(60, 100 + 14 * i, 550, 112 + 14 * i) for i in range(20)]
    assert find_gutter(prose, [80] * len(prose), 612) is None


def test_vertical_order_reads_tiers_top_down_and_columns_right_to_left():
    boxes = [(100, 50, 110, 200), (120, 50, 130, 200), (100, 300, 110, 400), (120, 300, 130, 400)]
    assert vertical_order(boxes) == [1, 0, 3, 2]


def test_layout_text_joins_pieces_rows_and_paragraphs():
    boxes = [(10, 10, 50, 20), (55, 10, 90, 20), (10, 24, 80, 34), (10, 60, 80, 70)]
    assert layout_text(boxes, ["Hello", "world", "next line", "new paragraph"], 600) == (
        "Hello world\nnext line\n\nnew paragraph")


def _grey_png(width: int, height: int) -> bytes:
    """A blank greyscale PNG of any size in little memory (its rows compressed as they are made)."""
    import struct
    import zlib

    squeeze = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


@pytest.mark.parametrize("size", [(20000, 20000), (40000, 40000)])
def test_an_image_too_large_to_decode_is_refused_from_its_header(size):
    """A 1.6 MB PNG of 40000 x 40000 grey pixels took 1.9 GB as MuPDF decoded it whole on opening."""
    with pytest.raises(DocumentLimitError, match=rf"{size[0]} x {size[1]} pixels .*the limit is 256 Mpx"):
        open_document(_grey_png(*size), name="bomb.png")
    with open_document(_grey_png(2000, 1500), name="fine.png") as document:
        assert document.info.page_count == 1


def test_a_page_tree_claiming_a_billion_pages_is_a_damaged_document():
    pdf = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
           b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1000000000 >> endobj\n"
           b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
    with pytest.raises(CorruptDocumentError, match="page count"):  # was MuPDF's RuntimeError, a traceback
        open_document(pdf, name="count.pdf")


def test_the_pixel_cap_holds_for_a_page_the_size_of_a_field():
    """A 60000 pt square page was rendered at the 18 dpi floor: 15000 x 15000 pixels, 14 times the cap."""
    doc = pymupdf.open()
    doc.new_page(width=60000, height=60000)
    with open_document(doc.tobytes(), name="field.pdf") as document:
        image = document.render(1)
        assert image.width_px * image.height_px <= Limits().max_pixels


def test_the_gutter_search_sums_crossings_as_box_by_box_did():
    """find_gutter summed the boxes crossing each candidate x one by one: 32,000 scattered words on one page took 32 s
    (a server thread held for it). The sweep must give the very same sums, for any boxes, edges included."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from engine.layout import _crossing_weights

    edge = st.one_of(st.integers(0, 50), st.floats(0, 50, allow_nan=False))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(edge, edge, st.integers(0, 9)), max_size=40), st.lists(edge, max_size=10))
    def check(spans, probes):
        boxes = [(a, 0.0, b, 1.0) for a, b, _ in spans]
        weights = [w for _, _, w in spans]
        crossing = _crossing_weights(boxes, weights)
        for x in [*probes, *(a for a, _, _ in spans), *(b for _, b, _ in spans)]:
            assert crossing(x) == sum(w for box, w in zip(boxes, weights) if box[0] < x < box[2])

    check()


def test_a_named_pipe_says_it_waits_for_its_writer(tmp_path, caplog):
    """A FIFO opens only once something writes to it: embed --in / ingest of one waited without a word."""
    import logging
    import os
    import threading

    from engine.documents import read_limited

    fifo = tmp_path / "texts.fifo"
    os.mkfifo(fifo)
    writer = threading.Timer(0.3, lambda: fifo.write_bytes(b"hello\nworld\n"))
    writer.start()
    with caplog.at_level(logging.WARNING, logger="engine.documents"):
        assert read_limited(fifo, 1 << 20, what="input file") == b"hello\nworld\n"
    writer.join()
    assert any("named pipe: waiting for a program to write the input file" in r.getMessage() for r in caplog.records)
