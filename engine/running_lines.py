"""Remove running headers and footers (the same line at the top or bottom of most pages, page
numbers included) before chunking: they carry no content and otherwise become chunks of their own
that crowd search results. Pure: pages in, pages out.

A line (its digits and roman numerals made '#') runs when it stands once in the first or last ``ZONE``
lines of at least ``min_pages`` pages and of at least ``min_share`` of the pages from its first to its
last page, counted over every page or over one side of a book's spreads (verso and recto heads differ:
"6 FREE CULTURE" on even pages, the chapter's "“PROPERTY” 47" on odd ones; in
book_free_culture_352p.pdf no head was on half of all pages, so none was found). A line found several
times in one page's zone is content there (rotated_table_4pages.pdf: "cell[0][0]", "cell[0][1]", ...
all read "cell[#][#]", and every page lost its first and last table cells). The first page a running
line stands on keeps it, so a line that only looked like one (the same form field on every page)
stays searchable once; that page's ``running_kept`` names it, and the chunker reads it as text, never as
a heading."""

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
_DIGITS = re.compile(r"\d+")
_LINE = re.compile(r"[^\n]*\n|[^\n]+$")


def normalise(line: str) -> str:
    """Digits and roman numerals become '#', so 'Page 3 of 10' matches 'Page 4 of 10'."""
    words = [("#" if _ROMAN.match(w) else _DIGITS.sub("#", w)) for w in line.split()]
    return " ".join(words).lower()


@functools.lru_cache(maxsize=ZONE_CACHE)
def _zone_lines(text: str) -> tuple[tuple[int, int, str], ...]:
    """(start, end, normalised) of the first and last ZONE non-empty lines. Cached by text: an ingest strips the
    pages read so far at every window (engine.ingest_overlap), and normalising each page again made that quadratic
    (2.0 s of the 352-page book's ingest on a 2-core Zen 4 EPYC)."""
    lines, position = [], 0
    for raw in _LINE.findall(text):  # lines end at \n only, as in every file the studio writes
        stripped = raw.strip()
        if stripped:
            lines.append((position, position + len(raw.rstrip("\r\n")), stripped))
        position += len(raw)
    if len(lines) > 2 * ZONE:
        lines = lines[:ZONE] + lines[-ZONE:]  # only these are normalised: 6 lines of a page's ~33
    return tuple((start, end, normalise(stripped)) for start, end, stripped in lines)


def _zone_keys(text: str) -> set[str]:
    """The keys that stand once in the page's zones (a key found twice there is the page's content)."""
    counts = Counter(key for _, _, key in _zone_lines(text))
    return {key for key, count in counts.items() if count == 1 and len(key) <= MAX_CHARS}


def _runs(at: Sequence[int], min_share: float, min_pages: int) -> bool:
    """Whether pages ``at`` (indexes, ascending) hold a running line: ``min_pages`` of them and ``min_share`` of the
    pages from the first to the last, counting every page, or each side of the spreads (every other page)."""
    for step in (1, 2):
        for side in range(step):
            pages = [index for index in at if index % step == side]
            span = (pages[-1] - pages[0]) // step + 1 if pages else 0
            if len(pages) >= min_pages and len(pages) >= min_share * span:
                return True
    return False


def _running(pages: Sequence[Page], min_share: float, min_pages: int) -> dict[str, int]:
    """Each running line's key and the index of the first page it stands on."""
    if len(pages) < min_pages:
        return {}
    found: dict[str, list[int]] = {}
    for index, page in enumerate(pages):
        for key in _zone_keys(page.text):
            found.setdefault(key, []).append(index)
    return {key: at[0] for key, at in found.items() if _runs(at, min_share, min_pages)}


def running_lines(pages: Sequence[Page], min_share: float = 0.5, min_pages: int = 3) -> set[str]:
    return set(_running(pages, min_share, min_pages))


def _without(text: str, spans: Sequence[tuple[int, int]]) -> str:
    parts, last = [], 0
    for start, end in spans:
        parts.append(text[last:start])
        last = end
    parts.append(text[last:])
    return "".join(parts).strip("\n")


def strip_running_lines(pages: Sequence[Page]) -> list[Page]:
    """The pages without their running lines. The first page each stands on keeps it and names it in its
    ``running_kept``, so the chunker does not take a running head for the heading of what follows; a page
    that says nothing but running lines keeps them all, as its content, and names them too."""
    repeated = _running(pages, 0.5, 3)
    if not repeated:
        return list(pages)
    cleaned = []
    for index, page in enumerate(pages):
        keys = _zone_keys(page.text)
        running = [(s, e, repeated[key]) for s, e, key in _zone_lines(page.text) if key in keys and key in repeated]
        if not running:
            cleaned.append(page)
            continue
        alone = not _without(page.text, [(s, e) for s, e, _ in running]).strip()  # all the page says: its content
        kept = tuple(page.text[s:e].strip() for s, e, first in running if first == index or alone)
        if kept:
            page = replace(page, running_kept=tuple(dict.fromkeys(page.running_kept + kept)))
        cuts = [] if alone else [(s, e) for s, e, first in running if first < index]
        if cuts:
            page = replace(page, text=_without(page.text, cuts),
                           notes=page.notes + (f"removed {len(cuts)} running header/footer line(s)",))
        cleaned.append(page)
    return cleaned
