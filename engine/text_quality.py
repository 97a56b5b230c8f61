"""Text-layer quality: is a page's text usable, or does it need OCR? Pure: measured facts in, a verdict out.

An empty page, an image-only scan, a garbled text layer (Type3/CID fonts without a ToUnicode map give
control characters or shifted codes) and a scan with an earlier OCR layer (invisible text over an
image) are told apart; ``TextQuality.needs_ocr`` says what the ``auto`` OCR engine does.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

# Text-quality thresholds (see assess_text_layer).
GARBLED_RATIO = 0.05  # share of non-whitespace characters that are control/private-use/unassigned
SPARSE_CHARS_PER_PT2 = 0.0002  # ~100 characters on a letter page; normal prose is 20-40x denser
SCAN_COVERAGE = 0.5  # images cover at least half of the page
NEEDS_OCR_BELOW = 0.5


@dataclass(frozen=True)
class TextQuality:
    """The verdict on one page's text layer: how usable it is, and whether OCR should replace it."""

    score: float  # 0..1; 1 = clean text, 0 = nothing usable
    needs_ocr: bool
    reason: str  # "ok", "empty", "image_only", "garbled", "sparse_over_image", "ocr_layer", "image"
    note: str  # the same in words, for Page.notes
    chars: int = 0  # non-whitespace characters in the text layer
    bad_ratio: float = 0.0  # share of them that are control/private-use/unassigned characters
    image_coverage: float | None = 0.0  # share of the page area covered by images (None: not measured, no rule needed it)
    invisible_ratio: float = 0.0  # share of characters drawn invisibly (render mode 3: an OCR layer)


def bad_char_ratio(text: str) -> tuple[int, float]:
    """(non-whitespace characters, share of them that cannot be real text).

    Fonts without a ToUnicode map come out as control characters (Type3: ``\\x00\\x01\\x02``, CID:
    ``\\x03`` where spaces were), private-use or unassigned code points, or U+FFFD.
    """
    chars = bad = 0
    for ch, count in Counter(text).items():  # each distinct character once: a page has ~100 of its ~2,000
        if ch.isspace():
            continue
        chars += count
        if ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Co", "Cn", "Cs"):
            bad += count
    return chars, (bad / chars if chars else 0.0)


def assess_text_layer(
    text: str,
    *,
    page_area: float,
    image_coverage: float | Callable[[], float],
    invisible_ratio: float = 0.0,
    has_drawings: bool | Callable[[], bool] = False,
    is_image: bool = False,
) -> TextQuality:
    """Decide from measured facts whether a page's text layer is usable or the page needs OCR.

    ``image_coverage`` and ``has_drawings`` may be functions, called only where a rule needs them: a page of
    text is ``ok`` whatever its images, and measuring them (MuPDF reads the page a second time) was a fifth
    of the text layer's cost (book_free_culture_352p.pdf). The verdict's ``image_coverage`` is then None."""
    chars, bad = bad_char_ratio(text)
    measured: list[float] = []

    def coverage() -> float:
        if not measured:
            measured.append(image_coverage() if callable(image_coverage) else image_coverage)
        return measured[0]

    def facts() -> dict:
        return {"chars": chars, "bad_ratio": round(bad, 4),
                "image_coverage": round(measured[0], 3) if measured else None,
                "invisible_ratio": round(invisible_ratio, 3)}

    if is_image:
        coverage()
        return TextQuality(0.0, True, "image", "an image file: the text comes from OCR", **facts())
    if chars == 0:
        if coverage() > 0.0 or (has_drawings() if callable(has_drawings) else has_drawings):
            return TextQuality(0.0, True, "image_only", "no text layer: the page is an image (a scan) or vector drawings",
                               **facts())
        return TextQuality(0.0, False, "empty", "blank page: no text, no images", **facts())
    score = max(0.0, 1.0 - bad * 10)  # 5 % bad characters halve the score; 10 % leave nothing
    if bad >= GARBLED_RATIO:
        return TextQuality(round(score, 3), True, "garbled",
                           f"garbled text layer: {bad:.0%} of the characters are control or unmapped codes "
                           "(fonts without a ToUnicode map)", **facts())
    sparse_limit = max(40.0, SPARSE_CHARS_PER_PT2 * page_area)
    if chars < sparse_limit and coverage() >= SCAN_COVERAGE:
        score = round(min(score, 0.4 * chars / sparse_limit), 3)
        return TextQuality(score, True, "sparse_over_image",
                           f"only {chars} characters of text over a page-sized image: the image holds the text", **facts())
    if invisible_ratio >= 0.5 and coverage() >= SCAN_COVERAGE:
        return TextQuality(round(score, 3), score < NEEDS_OCR_BELOW, "ocr_layer",
                           "the text layer is an earlier OCR (invisible text over a scanned image); kept as it is", **facts())
    return TextQuality(round(score, 3), score < NEEDS_OCR_BELOW, "ok", "", **facts())
