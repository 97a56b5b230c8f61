"""Remove running headers and footers (the same line at the top or bottom of most pages, page
numbers included) before chunking: they carry no content and otherwise become chunks of their own
that crowd search results. Pure: pages in, pages out."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from engine.page_records import Page

ZONE = 3  # lines examined at each end of a page
MAX_CHARS = 120  # running heads and folios are short; a long repeated line is content
ZONE_CACHE = 4096  # pages whose zone lines are kept (a long book's; the texts are held while cached)
_ROMAN = re.compile(r"^(?=[ivxlcdm]+$)m{0,3}(cm|cd|d?c{0,3})(xc|xl|l?x{0,3})(ix|iv|v?i{0,3})$", re.IGNORECASE)


def normalise(line: str) -> str:
    """Digits and roman numerals become '#', so 'Page 3 of 10' matches 'Page 4 of 10'."""
    words = [("#" if _ROMAN.match(w) else re.sub(r"\d+", "#", w)) for w in line.split()]
    return " ".join(words).lower()


@functools.lru_cache(maxsize=ZONE_CACHE)
def _zone_lines(text: str) -> tuple[tuple[int, int, str], ...]:
    """(start, end, normalised) of the first and last ZONE non-empty lines. Cached by text: an ingest strips the
    pages read so far at every window (engine.ingest_overlap), and normalising each page again made that quadratic
    (2.0 s of the 352-page book's ingest on a 2-core Zen 4 EPYC)."""
    lines, position = [], 0
    for raw in re.findall(r"[^\n]*\n|[^\n]+$", text):  # lines end at \n only, as in every file the studio writes
        stripped = raw.strip()
        if stripped:
            lines.append((position, position + len(raw.rstrip("\r\n")), normalise(stripped)))
        position += len(raw)
    if len(lines) <= 2 * ZONE:
        return tuple(lines)
    return tuple(lines[:ZONE] + lines[-ZONE:])


def running_lines(pages: Sequence[Page], min_share: float = 0.5, min_pages: int = 3) -> set[str]:
    if len(pages) < min_pages:
        return set()
    counts = Counter(key for page in pages for key in {n for _, _, n in _zone_lines(page.text)})
    threshold = max(min_pages, min_share * len(pages))
    return {key for key, count in counts.items() if count >= threshold and len(key) <= MAX_CHARS}


def strip_running_lines(pages: Sequence[Page]) -> list[Page]:
    repeated = running_lines(pages)
    if not repeated:
        return list(pages)
    cleaned = []
    for page in pages:
        cuts = [(s, e) for s, e, key in _zone_lines(page.text) if key in repeated]
        if not cuts:
            cleaned.append(page)
            continue
        text, last = [], 0
        for start, end in cuts:
            text.append(page.text[last:start])
            last = end
        text.append(page.text[last:])
        stripped = "".join(text).strip("\n")
        if not stripped.strip():  # the repeated line is all the page says: it is content, not a header
            cleaned.append(page)
            continue
        cleaned.append(replace(page, text=stripped,
                               notes=page.notes + (f"removed {len(cuts)} running header/footer line(s)",)))
    return cleaned
