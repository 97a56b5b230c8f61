"""Chunking: property tests with the default model's real tokenizer, plus headings and scripts."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.chunking import ChunkingOptions, _paragraphs, chunk_pages, heading_level, model_text
from engine.errors import InputError
from engine.page_records import Page
from engine.tokenize import TextTokenizer

MAX_SEQ = 256


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from tiny_models import gt_model_dir

    folder = tmp_path_factory.mktemp("tok")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(gt_model_dir() / name, folder / name)
    return TextTokenizer.from_folder(folder, MAX_SEQ)


WORDS = st.sampled_from(["retrieval", "embedding", "the", "of", "vector", "model", "ONNX", "runtime", "chunk", "page",
                         "semantic", "search", "Größe", "naïve", "3.14", "data", "quantisation", "a", "is", "GPU",
                         "........................", ". . . . . .", "________", "-----", "…"])
SENTENCE = st.lists(WORDS, min_size=1, max_size=40).map(lambda w: " ".join(w).capitalize() + ".")
PARAGRAPH = st.lists(SENTENCE, min_size=1, max_size=8).map(" ".join)
HEADING = st.sampled_from(["# Introduction", "## Methods", "2.1 Results", "APPENDIX A NOTES", "### Deep dive"])
BLOCK = st.one_of(PARAGRAPH, PARAGRAPH, PARAGRAPH, HEADING)
PAGE_TEXT = st.lists(BLOCK, min_size=1, max_size=12).map("\n\n".join)


def _in_giant_word(text: str, position: int, tok, size: int) -> bool:
    """Whether ``position`` falls inside a word that alone holds more than ``size`` tokens: the one place a cut
    between tokens is the contract (``_split_long``: "one giant word ... cut between tokens")."""
    start, end = position, position
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return tok.count_tokens(text[start:end]) > size


def _check(pages, chunks, tok, options):
    by_page = {p.number: p for p in pages}
    for chunk in chunks:
        text = by_page[chunk.page].text
        assert chunk.text == text[chunk.start:chunk.end] and chunk.text.strip()
        assert chunk.start == 0 or text[chunk.start - 1].isspace() or _in_giant_word(text, chunk.start, tok, options.size), \
            "chunk starts mid-word"
        assert chunk.end == len(text) or text[chunk.end].isspace() or _in_giant_word(text, chunk.end, tok, options.size), \
            "chunk ends mid-word"
        assert chunk.tokens == tok.count_tokens(model_text(chunk.text)) <= options.size  # what the model sees
        embedded = tok.count_tokens(chunk.embedding_text(options.headings_in_embedding)) + tok.special_tokens_count
        assert embedded <= MAX_SEQ, "chunk over the model's limit"
    for page in pages:
        covered = [False] * len(page.text)
        for chunk in (c for c in chunks if c.page == page.number):
            covered[chunk.start:chunk.end] = [True] * (chunk.end - chunk.start)
        missing = [i for i, ch in enumerate(page.text) if not ch.isspace() and not covered[i]]
        assert not missing, f"characters not in any chunk: {page.text[missing[0]:missing[0] + 30]!r}"
        mine = [c for c in chunks if c.page == page.number]
        for a, b in zip(mine, mine[1:]):
            assert b.start > a.start and b.end > a.end
            if b.start < a.end:
                assert tok.count_tokens(model_text(page.text[b.start:a.end])) <= options.overlap


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(PAGE_TEXT, min_size=1, max_size=3), st.integers(16, 200), st.integers(0, 40))
# a long sentence is cut into pieces, some inside a word (a dot leader counts 24 tokens, 1 in model_text): evening
# out the remainder cut between two such pieces, and an overlap began with the second
@example(texts=["Retrieval retrieval retrieval retrieval retrieval retrieval retrieval retrieval embedding embedding "
                "embedding retrieval embedding ........................ retrieval. Embedding. Retrieval."], size=16, overlap=0)
@example(texts=["Retrieval retrieval retrieval retrieval retrieval retrieval retrieval retrieval retrieval retrieval "
                "retrieval embedding embedding embedding ........................ embedding embedding. Retrieval."],
         size=16, overlap=1)
# a dot leader of 24 tokens (1 in model_text) inside a sentence longer than the size: cut between its tokens
@example(texts=["Retrieval retrieval retrieval retrieval retrieval retrieval retrieval retrieval retrieval retrieval "
                "________ retrieval retrieval retrieval embedding embedding embedding gpu ........................ "
                "retrieval retrieval."], size=16, overlap=0)
def test_chunk_properties(tok, texts, size, overlap):
    overlap = min(overlap, size - 1)
    options = ChunkingOptions(size=size, overlap=overlap, max_tokens=MAX_SEQ - 2)
    pages = [Page(i + 1, text, "text") for i, text in enumerate(texts)]
    chunks = chunk_pages(pages, tok.count_tokens, tok.token_offsets, options)
    _check(pages, chunks, tok, options)
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_headings_build_a_path_that_crosses_pages(tok):
    pages = [Page(1, "# Guide\n\nIntro text here.\n\n## Install\n\nRun the setup script.", "text"),
             Page(2, "It creates a virtual environment.\n\n# Reference\n\nAll the flags.", "text")]
    chunks = chunk_pages(pages, tok.count_tokens, tok.token_offsets, ChunkingOptions(size=50, overlap=0))
    paths = [(c.page, c.heading_path) for c in chunks]
    assert (1, ("Guide", "Install")) in paths
    assert (2, ("Guide", "Install")) in paths  # page 2 continues the Install section
    assert (2, ("Reference",)) in paths
    install = next(c for c in chunks if c.heading_path == ("Guide", "Install"))
    assert install.embedding_text() == "Guide > Install\n" + install.text
    assert install.embedding_text(with_headings=False) == install.text


def test_long_sentences_and_unspaced_scripts_are_cut_within_the_limit(tok):
    cjk = "数据被存储在内存中检索速度很快" * 40  # no spaces, no sentence ends
    run_on = " ".join(["word"] * 700)  # one 700-token sentence
    pages = [Page(1, cjk, "text"), Page(2, run_on, "text")]
    options = ChunkingOptions(size=64, overlap=8, max_tokens=254)
    chunks = chunk_pages(pages, tok.count_tokens, tok.token_offsets, options)
    assert all(c.tokens <= 64 for c in chunks)
    assert "".join(c.text for c in chunks if c.page == 1) == cjk
    assert all(not c.text.startswith("ord") for c in chunks if c.page == 2)


def test_empty_pages_give_no_chunks(tok):
    assert chunk_pages([Page(1, "", "text"), Page(2, "  \n\n ", "text")], tok.count_tokens, tok.token_offsets) == []


@pytest.mark.parametrize("size, overlap, max_tokens", [(4, 0, None), (100, 100, None), (100, -1, None), (300, 10, 254)])
def test_invalid_options(size, overlap, max_tokens):
    with pytest.raises(InputError):
        ChunkingOptions(size=size, overlap=overlap, max_tokens=max_tokens).validate()


@pytest.mark.parametrize("line, expected", [
    ("# Title", (1, "Title")), ("### Deep", (3, "Deep")), ("2.1 Results and discussion", (2, "2.1 Results and discussion")),
    ("INTRODUCTION", (1, "INTRODUCTION")), ("Chapter 3 The end", (1, "Chapter 3 The end")),
    ("This is a normal sentence.", None), ("A", None), ("3.14 is pi, as everyone knows, isn't it?", None),
    # book_free_culture_352p.pdf's chapters, and words that only start like a chapter's
    ("CHAPTER SIX: Founders", (1, "CHAPTER SIX: Founders")), ("Chapter 3", (1, "Chapter 3")),
    ("Appendix A. Synoptic Report Template", (1, "Appendix A. Synoptic Report Template")),
    ("part fourteen", (1, "part fourteen")), ("Part of the plan", None), ("Sections of the act", None),
    ("A. There are some who use sharing networks as substitutes for pur-", None),  # a line that a word breaks
    # lines of the shared PDFs that headed chunks they were no title of
    ("A. There are some who are using sharing networks as substitutes", None),  # a list item's sentence
    ("334 INDEX", None), ("THE   SIEGE   OP  VICKSBURG. 53", None),  # page number and running head
    ("<//2??.B<AAC0/;#3%4%56#", None),  # a font without a Unicode map: four capitals among symbols
    ("2 Related Work", (1, "2 Related Work")), ("TOP 10 TIPS", (1, "TOP 10 TIPS")),
    ("4.5. Achieving Security While Maintaining HPC Performance",
     (2, "4.5. Achieving Security While Maintaining HPC Performance")),
])
def test_heading_detection(line, expected):
    assert heading_level(line) == expected


@pytest.mark.parametrize("line, following, expected", [
    ("HPCMP", "Purushotham Bangalore", None),  # an affiliation in report_nist_sp800-223.pdf's author list
    ("T-POS", "Katrina", None),  # a node of paper_naacl06_2col.pdf's figure 3
    ("INTRODUCTION", "The Digital Millennium Copyright Act (DMCA) was signed into law", (1, "INTRODUCTION")),
    ("CONTENTS", "PREFACE\nxiii\nINTRODUCTION\n1", (1, "CONTENTS")),
    ("THE PENGUIN PRESS", "NEW YORK", (1, "THE PENGUIN PRESS")),  # a heading after a heading: a subtitle
    ("1. Background", "Ki-67", (1, "1. Background")),  # only the weakest kind, capitals alone, looks ahead
])
def test_a_capitals_line_before_a_short_label_is_a_label_too(line, following, expected):
    assert heading_level(line, following) == expected


_ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_ANY_TEXT,
                 st.sampled_from(["HPCMP", "334 INDEX", "CONTENTS", "1. Background", "# Title", "CHAPTER SIX: Founders"])),
       st.one_of(st.none(), _ANY_TEXT, st.sampled_from(["Katrina", "NEW YORK", "The act was signed into law."])))
def test_what_follows_a_line_can_only_take_its_heading_away(line, following):
    """Over arbitrary Unicode: the look-ahead never makes a heading, never changes one's level or title, and the
    title is the line itself (a markdown heading's text)."""
    alone, before = heading_level(line), heading_level(line, following)
    assert before in (alone, None)
    if alone is not None:
        assert alone[1] == line.strip() or line.strip().startswith("#")


@pytest.mark.parametrize("text, seen", [
    ("2.1.13. User Software ................................. 8", "2.1.13. User Software … 8"),
    ("Introduction . . . . . . . 1", "Introduction … 1"), ("Name ________ Date ____", "Name … Date …"),
    ("x...y, 3.14 and $1,000.00 -- fine", "x...y, 3.14 and $1,000.00 -- fine"), ("====\nTitle", "…\nTitle"),
])
def test_leaders_reach_the_model_as_one_character(text, seen):
    assert model_text(text) == seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.one_of(st.characters(blacklist_categories=("Cs",)), st.sampled_from("._-·…= ")), max_size=60))
def test_the_model_text_never_costs_more_tokens_and_changes_only_runs(tok, text):
    """Over arbitrary Unicode (heavy in filler characters): collapsing is never longer, in characters or tokens, and
    a text without a run of four of one filler character is left as it is."""
    seen = model_text(text)
    assert len(seen) <= len(text) and tok.count_tokens(seen) <= tok.count_tokens(text)
    if not any(c * 4 in text.replace(" ", "") for c in "._-·…‥⋯=*~"):
        assert seen == text


def test_a_contents_page_of_dot_leaders_is_a_few_chunks_of_its_entries(tok):
    """report_nist_sp800-223.pdf's contents page: each leader dot was a token, so the page made 27 chunks, most of
    them dots (14 % of the report's tokens went to leaders)."""
    entries = [f"2.1.{n}. Components of Zone {n} {'.' * 90} {n + 2}" for n in range(1, 27)]
    page = Page(1, "Table of Contents\n\n" + "\n\n".join(entries), "text")
    options = ChunkingOptions(max_tokens=MAX_SEQ - 2)
    chunks = chunk_pages([page], tok.count_tokens, tok.token_offsets, options)
    assert len(chunks) <= 3 and all("Zone 26" in c.text for c in chunks[-1:])
    assert all(tok.count_tokens(c.text) > c.tokens for c in chunks)  # the dots are there, and not counted
    _check([page], chunks, tok, options)


@pytest.mark.parametrize("name, junk", [
    ("report_nist_sp800-223.pdf", {"HPCMP"}),
    ("paper_naacl06_2col.pdf", {"T-POS", "SUFFIX"}),
    ("paper_tracemonkey_2col.pdf", {"<//2??.B<AAC0/;#3%4%56#"}),
    ("scan_vicksburg_ocr_layer.pdf", {"THE   SIEGE   OP  VICKSBURG. 53"}),
])
def test_no_label_running_head_or_garbage_of_a_real_pdf_heads_its_chunks(tok, name, junk):
    """Each of these lines headed 15-51 chunks of its PDF (by the ALL-CAPS rule); the numbered sections of the NIST
    report still head theirs."""
    from conftest import shared_data

    from engine.documents import Limits, open_document, read_source
    from engine.page_extraction import extract_pages
    from engine.running_lines import strip_running_lines
    from engine.settings import Settings

    settings = Settings()
    limits = Limits.from_settings(settings)
    data, label = read_source(shared_data("pdfs", name), None, limits)
    with open_document(data, name=label, password=None, limits=limits, sha256="x") as document:
        pages = strip_running_lines(list(extract_pages(document, engine="text", settings=settings)))
    chunks = chunk_pages(pages, tok.count_tokens, tok.token_offsets, ChunkingOptions(max_tokens=MAX_SEQ - 2))
    titles = {title for chunk in chunks for title in chunk.heading_path}
    assert any(line.strip() in page.text for page in pages for line in junk)  # the lines are there, as text
    assert not titles & junk
    if name.startswith("report_nist"):
        assert {"1. Introduction", "3.2.1. Access Zone Threats", "5. Conclusions"} <= titles


def test_a_running_lines_first_copy_is_text_not_a_heading(tok):
    """The first page a running head stands on keeps it (engine.running_lines), named in ``running_kept``: it stays
    in the chunks' text and does not replace the chapter's heading."""
    body = "Copyright is a kind of property. It can be owned and sold."
    pages = [Page(1, f"# Property\n\n{body}\n\nFREE CULTURE\n\n{body}", "text", running_kept=("FREE CULTURE",)),
             Page(2, body, "text")]
    chunks = chunk_pages(pages, tok.count_tokens, tok.token_offsets, ChunkingOptions(size=200, overlap=0))
    assert [c.heading_path for c in chunks] == [("Property",), ("Property",)]
    assert "FREE CULTURE" in chunks[0].text
    unnamed = [Page(1, pages[0].text, "text"), pages[1]]
    chunks = chunk_pages(unnamed, tok.count_tokens, tok.token_offsets, ChunkingOptions(size=200, overlap=0))
    assert chunks[-1].heading_path == ("FREE CULTURE",)  # what it was before


_UNICODE_LINE = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), min_size=1, max_size=30)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(_UNICODE_LINE, HEADING, st.sampled_from(["CHAPTER SIX: Founders", "“PROPERTY” 87"])),
                         min_size=1, max_size=6), min_size=1, max_size=3))
def test_lines_named_as_running_are_never_headings(tok, paragraphs):
    """Over arbitrary Unicode: a page whose every paragraph is named in ``running_kept`` gives chunks with no heading
    path at all, and every character of every page is still in a chunk, within the size limits."""
    options = ChunkingOptions(size=64, overlap=8, max_tokens=MAX_SEQ - 2)
    named, plain = [], []
    for number, lines in enumerate(paragraphs, 1):
        text = "\n\n".join(lines)
        keep = tuple(text[s:e].strip() for s, e in _paragraphs(text))
        named.append(Page(number, text, "text", running_kept=keep))
        plain.append(Page(number, text, "text"))
    chunks = chunk_pages(named, tok.count_tokens, tok.token_offsets, options)
    assert all(c.heading_path == () for c in chunks)
    _check(named, chunks, tok, options)
    assert any(c.heading_path for c in chunk_pages(plain, tok.count_tokens, tok.token_offsets, options)) or not any(
        heading_level(line) for lines in paragraphs for line in lines)  # unnamed, the headings among them head chunks


def test_a_short_remainder_is_evened_out_with_the_chunk_before_it(tok):
    """Greedy packing left the last sentence of a page alone (60 + 60 + 12 tokens); the last two chunks now share
    the page's end, with the same count of chunks and every size and overlap rule kept."""
    sentence = "Semantic search finds the passage that answers a question about pumps."
    per = tok.count_tokens(sentence)
    text = " ".join([sentence] * (2 * (64 // per) + 1))
    options = ChunkingOptions(size=64, overlap=0, max_tokens=MAX_SEQ - 2)
    page = Page(1, text, "text")
    chunks = chunk_pages([page], tok.count_tokens, tok.token_offsets, options)
    _check([page], chunks, tok, options)
    assert len(chunks) == 3 and min(c.tokens for c in chunks) >= 64 // 4
    assert chunks[-1].end == len(text)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.integers(1, 30), min_size=2, max_size=30), st.integers(16, 96), st.integers(0, 24))
@example(words=[1, 1, 1, 1, 5, 2], size=16, overlap=6)  # found by a fresh-clone run: 14 + 9 (3 new) -> 8 + 15 (9 new)
def test_balancing_keeps_the_chunk_count_and_never_leaves_a_smaller_tail(tok, words, size, overlap):
    """Any run of sentences: as many chunks as greedy packing makes (a greedy pass that stops before balancing), the
    same outer bounds, and the smaller of the last two sides (the chunk before, the new text of the last) never
    smaller than greedy's."""
    from engine import chunking

    overlap = min(overlap, size - 1)
    text = " ".join(" ".join(["pump"] * n) + "." for n in words)
    options = ChunkingOptions(size=size, overlap=overlap, max_tokens=MAX_SEQ - 2)
    page = Page(1, text, "text")
    balanced = chunk_pages([page], tok.count_tokens, tok.token_offsets, options)
    original = chunking._balanced
    try:
        chunking._balanced = lambda before, first, last, size, overlap: [first, last]
        greedy = chunk_pages([page], tok.count_tokens, tok.token_offsets, options)
    finally:
        chunking._balanced = original
    _check([page], balanced, tok, options)
    assert len(balanced) == len(greedy)
    if len(greedy) >= 2:
        assert balanced[-1].end == greedy[-1].end and balanced[-2].start == greedy[-2].start

        def smaller_side(chunks):
            return min(chunks[-2].tokens, tok.count_tokens(model_text(text[chunks[-2].end:chunks[-1].end])))

        assert smaller_side(balanced) >= smaller_side(greedy)


def test_the_books_pages_no_longer_end_in_a_fragment(tok):
    """book_free_culture_352p.pdf: 39 of its pages ended in a chunk of under 32 tokens ("Search engines are a measure
    of a network's intimacy. Google\\n\\n48"), a page tail that greedy packing left alone; 2 do now (a footnote, and
    a page whose last sentence is longer than what the chunk before could give)."""
    from conftest import shared_data

    from engine.documents import Limits, open_document, read_source
    from engine.page_extraction import extract_pages
    from engine.running_lines import strip_running_lines
    from engine.settings import Settings

    settings = Settings()
    limits = Limits.from_settings(settings)
    data, label = read_source(shared_data("pdfs", "book_free_culture_352p.pdf"), None, limits)
    with open_document(data, name=label, password=None, limits=limits, sha256="x") as document:
        pages = strip_running_lines(list(extract_pages(document, engine="text", settings=settings)))
    chunks = chunk_pages(pages, tok.count_tokens, tok.token_offsets, ChunkingOptions(max_tokens=MAX_SEQ - 2))
    by_page: dict[int, list] = {}
    for chunk in chunks:
        by_page.setdefault(chunk.page, []).append(chunk)
    tails = [c[-1] for c in by_page.values() if len(c) > 1 and c[-1].tokens < 32]
    assert len(tails) <= 3, [(c.page, c.text[:60]) for c in tails]
    assert not any(c.text.startswith("Search engines are a measure") for c in tails)


def test_balancing_never_leaves_a_title_alone_in_a_chunk(tok):
    """A title, a long paragraph, then a short one: evening out the last two chunks could cut right after the title
    (a chunk of the title alone, 8 tokens, beat the 3-token remainder); the title stays with text."""
    title = "## " + " ".join(["Methods"] * 6)
    long = " ".join(["pump"] * 37) + "."
    text = f"{title}\n\n{long} Valves too."
    assert (tok.count_tokens(title), tok.count_tokens(long), tok.count_tokens("Valves too.")) == (8, 38, 3)
    options = ChunkingOptions(size=48, overlap=0, max_tokens=MAX_SEQ - 2)
    page = Page(1, text, "text")
    chunks = chunk_pages([page], tok.count_tokens, tok.token_offsets, options)
    _check([page], chunks, tok, options)
    assert all(c.text.strip() != title for c in chunks)
    assert chunks[0].text.startswith(title) and long.split()[0] in chunks[0].text


def test_a_piece_cut_inside_a_word_never_starts_an_overlap_or_an_evened_out_chunk():
    """Pieces of one long sentence may be cut inside a word (``glued``): greedy packing rejoins them where they fit,
    and neither evening out the remainder nor an overlap may then start on such a piece."""
    from engine.chunking import _balanced, _carried, _Unit

    words = [_Unit(0, 5, 3), _Unit(6, 11, 3), _Unit(12, 20, 4), _Unit(20, 26, 2, glued=True)]
    assert _carried(words, overlap=2) == []  # the last piece alone would fit, but it begins inside a word
    assert _carried(words, overlap=6) == [words[2], words[3]]  # with the piece before it, it begins on a word
    # evening out a remainder: 6 | 5+1+1 would be the most even, but the 5 begins inside a word, so 6+5 | 1+1
    a, b, c, tail = _Unit(0, 10, 6), _Unit(10, 18, 5, glued=True), _Unit(19, 21, 1), _Unit(22, 24, 1)
    assert _balanced([], [a, b, c], [tail], size=12, overlap=0) == [[a, b], [c, tail]]
