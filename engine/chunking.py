"""Token-aware chunking of page texts (pure: text and a token counter in, chunks out).

Splits at headings, then paragraphs, then sentences, and only inside an over-long sentence at word
boundaries (or token boundaries for scripts written without spaces). Every chunk knows its page,
its character span in that page's text and the heading path above it; the heading path can be
prepended for embedding while the raw span is what is shown. Sizes are counted with the embedding
model's own tokenizer, so no chunk exceeds what the model reads.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from engine.errors import InputError
from engine.page_records import Page

CountTokens = Callable[[str], int]
CountMany = Callable[[list[str]], list[int]]
TokenSpans = Callable[[str], list[tuple[int, int]]]

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+|(?<=[。！？])")
_MARKDOWN_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_NUMBERED_HEADING = re.compile(r"^(?:(?:\d+(?:\.\d+){0,3}\.?)|(?:[A-Z]\.)|(?:[IVXLC]+\.))\s+\S.{0,80}$")
_NUMBER_WORD = (r"(?:\d+(?:\.\d+){0,3}|[ivxlc]+|[a-z]|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
                r"(?:thir|four|fif|six|seven|eigh|nine)teen|(?:twenty|thirty|forty|fifty)(?:-\w+)?)")
# "Chapter 3", "CHAPTER SIX: Founders", "Part II. Piracy" (book_free_culture_352p.pdf's chapters are in mixed case)
# a run of four or more of one filler character: a table of contents' dot leaders (". . . ." too), a form's blanks
# ("________"), rules ("----", "===="). Each character is a token of its own: the NIST report's contents page was
# 27 chunks of dots (14 % of the report's tokens, 23 % of the IRS 1040's), so the model sees one "…" for a run
_LEADER = re.compile(r"([._\-·…‥⋯=*~])(?:[ \t]?\1){3,}")
_KEYWORD_HEADING = re.compile(rf"^(?:chapter|section|part|appendix)\s+{_NUMBER_WORD}[:.]?(?:\s+\S.{{0,80}})?$",
                              re.IGNORECASE)


# The defaults of every entry point (CLI, HTTP, app). `python -m engine chunk-eval` on 4 PDFs (204 sentences,
# top-1 page): 64/8 0.868, 128/16 0.775, 200/30 0.686; the heading prefix cost 0.03-0.05 everywhere.
# 128 balances precision and context (and matches MiniLM's training length).
DEFAULT_SIZE = 128
DEFAULT_OVERLAP = 16


@dataclass(frozen=True)
class ChunkingOptions:
    size: int = DEFAULT_SIZE  # target tokens per chunk (without special tokens or the heading prefix)
    overlap: int = DEFAULT_OVERLAP  # tokens repeated from the end of the previous chunk
    max_tokens: int | None = None  # the model's limit for one text (max_seq_length minus special tokens)
    headings_in_embedding: bool = False

    def validate(self) -> None:
        if self.size < 8:
            raise InputError(f"Chunk size must be at least 8 tokens (got {self.size}).",
                             f"use --chunk-size 8 or more (default {DEFAULT_SIZE})")
        if not 0 <= self.overlap < self.size:
            raise InputError(f"Overlap must be between 0 and the chunk size minus one (got {self.overlap}).",
                             f"use --chunk-overlap from 0 to {self.size - 1}")
        if self.max_tokens is not None and self.size > self.max_tokens:
            raise InputError(
                f"Chunk size {self.size} is over the model's limit of {self.max_tokens} tokens.",
                f"use --chunk-size {self.max_tokens} or less",
            )


@dataclass(frozen=True)
class Chunk:
    index: int  # position in the document
    page: int  # 1-based page the span is in
    start: int  # character offsets into that page's text
    end: int
    text: str  # page.text[start:end], what is shown
    heading_path: tuple[str, ...]
    tokens: int  # tokens the model sees of ``text`` (``model_text``: leaders collapsed; without special tokens)

    def embedding_text(self, with_headings: bool = True) -> str:
        """What the model embeds: the heading path on its own line, then the chunk, its leaders collapsed."""
        if with_headings and self.heading_path:
            return " > ".join(self.heading_path) + "\n" + model_text(self.text)
        return model_text(self.text)


def model_text(text: str) -> str:
    """``text`` as the model gets it: each run of filler characters (``_LEADER``) as one "…". The chunk's own text,
    shown and highlighted, keeps them: its offsets are the page's."""
    return _LEADER.sub("…", text)


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    tokens: int
    heading: bool = False
    glued: bool = False  # a piece of a long sentence that starts mid-word: no chunk may start with it


def _each(count_tokens: CountTokens, texts: list[str]) -> list[int]:
    return [count_tokens(t) for t in texts]


def _counting_model_text(count_tokens: CountTokens) -> CountTokens:
    return lambda text: count_tokens(model_text(text))


def heading_level(line: str, following: str | None = None) -> tuple[int, str] | None:
    """(level, title) when a paragraph is a heading: markdown '#', "Chapter N", or a short numbered or ALL-CAPS
    line. ``following``: the next paragraph with letters on the page, if any; an ALL-CAPS line before a label of
    three words or fewer is a label too (an author's affiliation, a figure's node), not a title over what follows."""
    line = line.strip()
    if not line or "\n" in line or len(line) > 100:
        return None
    match = _MARKDOWN_HEADING.match(line)
    if match:
        return len(match.group(1)), match.group(2).strip()
    if line[-1] in ".,;!?-" or ", " in line:  # sentences, lists and hyphenated line ends, not titles
        return None
    words = line.split()
    if len(words) > 12:
        return None
    if _KEYWORD_HEADING.match(line):
        return 1, line
    if _NUMBERED_HEADING.match(line):
        if _page_number_or_sentence(words):
            return None
        number = re.match(r"^(\d+(?:\.\d+)*)", line)
        return (number.group(1).count(".") + 1 if number else 1), line
    if _caps_title(line, words) and not (following is not None and _label(following)):
        return 1, line
    return None


def _page_number_or_sentence(words: list[str]) -> bool:
    """A numbered line that is no section title: a page number over a running head ("334 INDEX": no section runs
    past 99), or a list item that is a sentence (more than 8 words after its number, most of them lower case)."""
    if words[0].isdigit() and int(words[0]) > 99:
        return True
    rest = words[1:]
    return len(rest) > 8 and sum(w[0].islower() for w in rest) * 3 > len(rest) * 2


def _caps_title(line: str, words: list[str]) -> bool:
    """Up to 8 words of capitals, mostly letters (extraction garbage such as "<//2??.B<AAC0/;#3%4%56#" has four),
    without a page number at either end ("THE SIEGE OF VICKSBURG. 53": a running head the OCR layer varies)."""
    letters = [c for c in line if c.isalpha()]
    if len(letters) < 4 or not all(c.isupper() for c in letters) or len(words) > 8:
        return False
    if len(letters) * 5 < len(line.replace(" ", "")) * 3:  # under 60 % letters
        return False
    return not (len(words) > 1 and (words[0].isdigit() or words[-1].isdigit()))


def _label(paragraph: str) -> bool:
    words = paragraph.split()
    return len(words) <= 3 and heading_level(paragraph) is None


def _next_lettered(paragraphs: list[str]) -> list[str | None]:
    """For each paragraph, the next one after it that holds a letter (None for the last): one pass from the end."""
    following: list[str | None] = [None] * len(paragraphs)
    ahead = None
    for number in range(len(paragraphs) - 1, -1, -1):
        following[number] = ahead
        if any(c.isalpha() for c in paragraphs[number]):
            ahead = paragraphs[number]
    return following


def _paragraphs(text: str) -> list[tuple[int, int]]:
    spans, position = [], 0
    for match in _PARAGRAPH_BREAK.finditer(text):
        spans.append((position, match.start()))
        position = match.end()
    spans.append((position, len(text)))
    return [(s, e) for s, e in (_trim(text, s, e) for s, e in spans) if e > s]


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans, position = [], start
    for match in _SENTENCE_END.finditer(text, start, end):
        if match.end() > position:
            spans.append(_trim(text, position, match.end()))
            position = match.end()
    spans.append(_trim(text, position, end))
    return [(s, e) for s, e in spans if e > s]


def _split_long(text: str, start: int, end: int, limit: int, spans: TokenSpans) -> list[tuple[int, int]]:
    """Cut a span that alone exceeds ``limit`` tokens, at word boundaries where the window has one
    (scripts written without spaces, or one giant word, are cut between tokens)."""
    piece = text[start:end]
    offsets = spans(piece)

    def word_boundary_after(i: int) -> bool:
        return offsets[i][1] < offsets[i + 1][0]  # whitespace (or skipped characters) between two tokens

    pieces, first = [], 0
    while first < len(offsets):
        last = min(first + limit, len(offsets)) - 1
        if last + 1 < len(offsets):
            cut = last
            while cut > first and not word_boundary_after(cut):
                cut -= 1
            if cut > first:
                last = cut
        pieces.append(_trim(text, start + offsets[first][0], start + offsets[last][1]))
        first = last + 1
    return [(s, e) for s, e in pieces if e > s]


def _units(text: str, sentences: list[tuple[int, int]], counts: Iterator[int], count: CountTokens, spans: TokenSpans,
           limit: int) -> list[_Unit]:
    """The units of a paragraph's ``sentences``, whose token counts ``counts`` gives in order."""
    units = []
    for s, e in sentences:
        tokens = next(counts)
        if tokens <= limit:
            units.append(_Unit(s, e, tokens))
        else:
            units.extend(_Unit(a, b, count(text[a:b]), glued=a > s and not text[a - 1].isspace())
                         for a, b in _split_long(text, s, e, limit, spans))
    return units


def _carried(group: Sequence[_Unit], overlap: int) -> list[_Unit]:
    """The units at the end of ``group`` that the next group repeats: at most ``overlap`` tokens, never all of it."""
    carried: list[_Unit] = []
    tokens = 0
    for previous in reversed(group):
        if tokens + previous.tokens > overlap or len(carried) + 1 >= len(group):
            break
        carried.insert(0, previous)
        tokens += previous.tokens
    while carried and carried[0].glued:  # the overlap starts on a word, not inside one
        carried.pop(0)
    return carried


def _pack(units: Sequence[_Unit], size: int, overlap: int) -> list[list[_Unit]]:
    """Greedy packing of consecutive units into groups of <= size tokens, with token overlap; a short remainder
    is then balanced with the group before it (``_balanced``)."""
    groups: list[list[_Unit]] = []
    current: list[_Unit] = []
    total = 0
    for unit in units:
        if current and total + unit.tokens > size:
            groups.append(current)
            carried = _carried(current, overlap)
            if _tokens(carried) + unit.tokens > size:
                carried = []
            current, total = carried, _tokens(carried)
        current.append(unit)
        total += unit.tokens
    if current:
        groups.append(current)
    if len(groups) >= 2:
        groups[-2:] = _balanced(groups[-3] if len(groups) >= 3 else [], groups[-2], groups[-1], size, overlap)
    return groups


def _tokens(units: Sequence[_Unit]) -> int:
    return sum(u.tokens for u in units)


def _balanced(before: list[_Unit], first: list[_Unit], last: list[_Unit], size: int,
              overlap: int) -> list[list[_Unit]]:
    """The last two groups, a remainder of under a quarter of ``size`` new tokens (a page's or a section's tail:
    "Google\n\n48", half a sentence) evened out with the group before it: the same units, cut where the smaller
    side holds the most. Both stay within ``size`` and the overlap rule holds; the first still starts where it did
    and ends past ``before`` (it keeps a unit it does not repeat), and is never a section's titles alone."""
    fresh = [u for u in last if u not in first]
    if _tokens(fresh) * 4 >= size:
        return [first, last]
    units = first + fresh
    repeated = sum(1 for u in first if u in before)
    titles = next((i for i, u in enumerate(units) if not u.heading), len(units))  # a section's titles come first
    best, best_small = [first, last], _tokens(fresh)
    for cut in range(max(repeated, titles) + 1, len(units)):  # the first keeps text of its own, not titles alone
        if units[cut].glued:  # a cut inside a word that greedy packing did not have to make
            continue
        head, rest = units[:cut], units[cut:]
        carried = _carried(head, overlap)
        if _tokens(carried) + _tokens(rest) > size:
            carried = []
        small = min(_tokens(head), _tokens(rest))
        if small > best_small and _tokens(head) <= size and _tokens(carried + rest) <= size:
            best, best_small = [head, carried + rest], small
    return best


_Span = tuple[int, int, int, str, tuple[str, ...]]  # a chunk before its tokens are counted: page, start, end, text, path


def _emit(page: Page, section: list[_Unit], headings: list[tuple[int, str]], options: ChunkingOptions,
          count_tokens: CountTokens, chunks: list[_Span]) -> None:
    """Pack one section's units into chunks, leaving room for the heading path when it is embedded."""
    path = tuple(title for _, title in headings)
    budget = options.size
    if options.headings_in_embedding and path and options.max_tokens:
        budget = max(8, min(budget, options.max_tokens - count_tokens(" > ".join(path)) - 1))
    for group in _pack(section, budget, min(options.overlap, budget - 1)):
        start, end = group[0].start, group[-1].end
        chunks.append((page.number, start, end, page.text[start:end], path))


# A paragraph as the packing reads it: (start, end, (level, title) of a heading or None, its sentences (text only)).
_Planned = tuple[int, int, "tuple[int, str] | None", "list[tuple[int, int]] | None"]


def _plan(page: Page) -> tuple[list[_Planned], list[str]]:
    """A page's paragraphs, headings told from text and the text split into sentences, with the texts whose tokens
    the packing needs (each sentence, each heading), in the order it reads them."""
    planned: list[_Planned] = []
    texts: list[str] = []
    spans = _paragraphs(page.text)
    following = _next_lettered([page.text[s:e] for s, e in spans])
    for number, (start, end) in enumerate(spans):
        paragraph = page.text[start:end]
        heading = None if paragraph.strip() in page.running_kept else heading_level(paragraph, following[number])
        if heading is None:
            sentences = _sentences(page.text, start, end)
            texts.extend(page.text[s:e] for s, e in sentences)
            planned.append((start, end, None, sentences))
        else:
            texts.append(paragraph)
            planned.append((start, end, heading, None))
    return planned, texts


def chunk_pages(
    pages: Iterable[Page],
    count_tokens: CountTokens,
    token_spans: TokenSpans,
    options: ChunkingOptions = ChunkingOptions(),
    count_many: CountMany | None = None,
) -> list[Chunk]:
    """Chunks of all pages, in order; the heading path carries over page breaks. Sizes count the tokens the model
    sees (``model_text``). ``count_many(texts)``: ``count_tokens`` of each text, in one call (the tokenizer's batch:
    without character offsets, on every core); the texts of all pages are counted at once, the sentences and
    headings first and then the chunks."""
    options.validate()
    if count_many is None:
        count_many = functools.partial(_each, count_tokens)
    count_tokens = _counting_model_text(count_tokens)
    planned = [(page, *_plan(page)) for page in pages]
    counts = iter(count_many([model_text(t) for _, _, texts in planned for t in texts]))
    spans: list[_Span] = []
    headings: list[tuple[int, str]] = []
    for page, paragraphs, _ in planned:
        section: list[_Unit] = []
        for start, end, heading, sentences in paragraphs:
            if heading is None:
                section.extend(_units(page.text, sentences, counts, count_tokens, token_spans, options.size))
                continue
            if not all(u.heading for u in section):  # a title with no text of its own joins the next section
                _emit(page, section, headings, options, count_tokens, spans)
                section = []
            section.append(_Unit(start, end, next(counts), heading=True))
            level, title = heading
            while headings and headings[-1][0] >= level:
                headings.pop()
            headings.append((level, title))
        _emit(page, section, headings, options, count_tokens, spans)
    tokens = count_many([model_text(text) for _, _, _, text, _ in spans])
    return [Chunk(index, number, start, end, text, path, count)
            for index, ((number, start, end, text, path), count) in enumerate(zip(spans, tokens))]
