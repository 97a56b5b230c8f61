"""The search hit marked on the page image."""

import io

import numpy as np
import pymupdf
from conftest import shared_data
from PIL import Image

from engine.documents import open_document


def test_hit_text_is_found_and_marked_on_the_page_image():
    path = shared_data("pdfs", "encrypted_rc4_dmca_18p.pdf")
    with pymupdf.open(path) as raw:
        lines = [ln for ln in raw[6].get_text().splitlines() if len(ln.strip()) > 30][3:6]
    hit = "\n".join(lines)
    with open_document(path) as document:
        rects = document.find_text(7, hit)
        assert len(rects) >= 3 and all(x1 > x0 and y1 > y0 for x0, y0, x1, y1 in rects)
        plain = np.asarray(Image.open(io.BytesIO(document.render(7, dpi=72).png)).convert("RGB"), dtype=int)
        marked = np.asarray(Image.open(io.BytesIO(document.render(7, dpi=72, highlight=hit).png)).convert("RGB"), dtype=int)
        again = np.asarray(Image.open(io.BytesIO(document.render(7, dpi=72).png)).convert("RGB"), dtype=int)
    changed = np.abs(marked - plain).sum(axis=2) > 30
    x0, y0, x1, y1 = rects[0]
    assert changed[int(y0):int(y1), int(x0):int(x1)].mean() > 0.3  # the hit's first line is tinted
    assert changed.mean() < 0.2  # and not the whole page
    assert np.array_equal(plain, again)  # the marks do not stay on the page
    with open_document(path) as document:
        assert document.find_text(7, "no such sentence anywhere in this document") == []
