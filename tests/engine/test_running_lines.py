import functools
import re

from conftest import shared_data
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.page_records import Page
from engine.running_lines import normalise, running_lines, strip_running_lines

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


def _pages(n):
    body = lambda i: "\n".join(f"{WORDS[(i + j) % 8]} line {j} talks about {WORDS[(i * j) % 8]}." for j in range(8))  # noqa: E731
    return [Page(i + 1, f"ACME Annual Report 2024\n{body(i)}\nPage {i + 1} of {n}", "text") for i in range(n)]


def test_page_numbers_and_headers_are_found_and_removed():
    pages = _pages(6)
    assert normalise("Page 3 of 10") == normalise("Page 4 of 10") == "page # of #"
    assert normalise("xiv") == "#"
    assert running_lines(pages) == {"acme annual report #", "page # of #"}
    cleaned = strip_running_lines(pages)
    assert cleaned[2].text == "\n".join(pages[2].text.splitlines()[1:-1])
    assert "running header/footer" in cleaned[2].notes[-1]
    # the first copies stay searchable, named as running lines so the chunker never takes them for headings
    assert cleaned[0].text == pages[0].text and cleaned[0].running_kept == ("ACME Annual Report 2024", "Page 1 of 6")
    assert all(p.running_kept == () for p in cleaned[1:])
    assert strip_running_lines(cleaned) == cleaned  # stripping again changes nothing


def test_short_documents_and_unique_lines_are_left_alone():
    assert strip_running_lines(_pages(2)) == _pages(2)
    pages = [Page(i + 1, f"Unique title {chr(65 + i)}\n{WORDS[i]} opens the page.\nIt ends with {WORDS[i + 1]}.", "text")
             for i in range(5)]
    assert strip_running_lines(pages) == pages


def test_a_page_whose_only_lines_repeat_keeps_them():
    """arabic_habibi_rotated.pdf: four pages with the same one line; stripping it left nothing to index."""
    pages = [Page(i + 1, "\u062d\u064e\u0628\u064a\u0628\u064a habibi", "text") for i in range(4)]
    cleaned = strip_running_lines(pages)
    assert [p.text for p in cleaned] == [p.text for p in pages] and not any(p.notes for p in cleaned)
    assert all(p.running_kept == (pages[0].text,) for p in cleaned)  # named: text, never a heading
    mixed = [Page(i + 1, f"Running head\nbody {WORDS[i]} text", "text") for i in range(4)] + [Page(5, "Running head", "text")]
    cleaned = strip_running_lines(mixed)
    assert cleaned[0].text == mixed[0].text  # the first page a running line stands on keeps it
    assert cleaned[0].running_kept == ("Running head",)
    assert [p.text for p in cleaned[1:4]] == [f"body {WORDS[i]} text" for i in range(1, 4)]
    assert cleaned[4].text == mixed[4].text and cleaned[4].running_kept == ("Running head",)


def test_only_newlines_end_lines():
    """U+2028 inside a line does not make a header of half of it."""
    pages = [Page(i + 1, f"Head\u2028{WORDS[i]}\nbody {WORDS[i + 1]}", "text") for i in range(4)]
    assert strip_running_lines(pages) == pages


def test_lines_that_only_read_alike_once_digits_are_hidden_are_content():
    """rotated_table_4pages.pdf: the same grid of cell[i][j] on four pages; every cell reads "cell[#][#]", and the
    first and last three cells of every page were removed as running lines."""
    grid = "\n".join(f"cell[{i}][{j}]" for i in range(8) for j in range(5))
    pages = [Page(n + 1, grid, "text") for n in range(4)]
    assert running_lines(pages) == set()
    assert strip_running_lines(pages) == pages


def test_a_books_verso_and_recto_heads_are_found_though_neither_is_on_half_the_pages():
    """Even pages carry the book's title, odd pages their chapter's; chapter openers carry none. No head stands on
    half of all pages, yet each runs on its side of the spreads, within its chapter."""
    chapters = ["INTRODUCTION", "PIRACY", "PROPERTY", "PUZZLES"]
    pages = []
    for number in range(1, 81):
        chapter = chapters[(number - 1) // 20]
        body = f"{WORDS[number % 8]} text of page {number} on {WORDS[(number * 3) % 8]}.\nMore {WORDS[(number + 5) % 8]}."
        opener = (number - 1) % 20 == 0
        head = "" if opener else (f"{number} FREE CULTURE\n" if number % 2 == 0 else f"{chapter} {number}\n")
        pages.append(Page(number, head + body, "text"))
    found = running_lines(pages)
    assert found == {"# free culture"} | {f"{c.lower()} #" for c in chapters}
    cleaned = strip_running_lines(pages)
    first: dict[str, int] = {}
    for page, kept in zip(pages, cleaned):
        head = normalise(page.text.splitlines()[0])
        body = "\n".join(page.text.splitlines()[-2:])
        if head in found and first.setdefault(head, page.number) != page.number:
            assert kept.text == body, page.number  # the head goes
        else:
            assert kept.text == page.text, page.number  # a chapter opener, or the first page a head stands on


@functools.cache
def _book_pages() -> list[Page]:
    from engine.documents import Limits, open_document, read_source
    from engine.page_extraction import extract_pages
    from engine.settings import Settings

    settings = Settings()
    path = shared_data("pdfs", "book_free_culture_352p.pdf")
    data, label = read_source(path, None, Limits.from_settings(settings))
    with open_document(data, name=label, password=None, limits=Limits.from_settings(settings), sha256="x") as document:
        return list(extract_pages(document, engine="text", settings=settings))


def test_the_real_book_loses_its_running_heads_and_keeps_its_text():
    """book_free_culture_352p.pdf: its heads alternate ("6 FREE CULTURE" / "INTRODUCTION 7") and a URL footer
    stands on 166 of 352 pages, so none was found before; now every one is, and only those lines go."""
    pages = _book_pages()
    found = running_lines(pages)
    assert {"# free culture", "<http://free-culture.org/get-it>", "introduction #", "“property” #"} <= found
    assert len(found) <= 20  # the heads, the URL and the chapter ornaments, not body lines
    cleaned = strip_running_lines(pages)
    removed = sum(len(a.text.splitlines()) - len(b.text.splitlines()) for a, b in zip(pages, cleaned))
    heads = sum(1 for p in pages for line in p.text.splitlines()
                if re.fullmatch(r"\d+ FREE CULTURE|<http://free-culture.org/get-it>", line.strip()))
    assert heads > 250 and removed >= heads - 2
    body = [line for p in pages[20:40] for line in p.text.splitlines() if len(line) > 60 and re.search("[a-z]{3}", line)]
    kept = {line for p in cleaned[20:40] for line in p.text.splitlines()}
    assert body and all(line in kept for line in body)  # no line of body text went


def test_the_real_books_chapters_head_its_chunks_and_its_running_heads_do_not():
    """book_free_culture_352p.pdf: each running head's first copy ("“PROPERTY” 87") stayed as text and read as an
    ALL-CAPS heading, so it headed 326 chunks, while "CHAPTER SIX: Founders" (mixed case) was no heading at all."""
    from tiny_models import gt_model_dir

    from engine.chunking import ChunkingOptions, chunk_pages
    from engine.tokenize import TextTokenizer

    pages = _book_pages()
    found = running_lines(pages)
    tok = TextTokenizer.from_folder(gt_model_dir(), 256)
    chunks = chunk_pages(strip_running_lines(pages), tok.count_tokens, tok.token_offsets, ChunkingOptions(max_tokens=254))
    titles = {title for chunk in chunks for title in chunk.heading_path}
    assert not {title for title in titles if normalise(title) in found}
    assert {"CHAPTER ONE: Creators", "CHAPTER SIX: Founders", "CHAPTER TEN: “Property”", "INTRODUCTION"} <= titles
    # the index's even-page heads ("338 INDEX") stand mid-page in its two columns, out of the stripper's reach; a
    # page number over a title is no section number, so "INDEX" heads the whole index (it had 8 of its 91 chunks)
    assert not any(title.split()[0].isdigit() and int(title.split()[0]) > 99 for title in titles)
    assert sum(chunk.heading_path == ("INDEX",) for chunk in chunks) > 80
    heads = {"“PROPERTY” 87", "“PIRACY” 19", "INTRODUCTION 3"}
    assert all(any(head in chunk.text for chunk in chunks) for head in heads)  # still searchable, once


_lines = st.lists(st.text(st.characters(blacklist_characters="\n"), max_size=12), min_size=0, max_size=9)


@settings(max_examples=200, deadline=None)
@given(st.lists(_lines, min_size=0, max_size=7), st.lists(st.sampled_from(["Head 1", "x", "", "7", "iv"]), max_size=7))
def test_stripping_only_takes_whole_running_lines_and_keeps_their_first_copy(bodies, heads):
    """Over arbitrary Unicode: each page comes back as its own lines, some whole lines left out; every line left out
    is a running line's; the first page a running line stands on keeps it; pages, numbers and sources stay."""
    from engine.running_lines import _running, _zone_keys, _zone_lines

    pages = [Page(n + 1, "\n".join(([heads[n]] if n < len(heads) else []) + lines), "text") for n, lines in enumerate(bodies)]
    cleaned = strip_running_lines(pages)
    repeated = _running(pages, 0.5, 3)
    assert len(cleaned) == len(pages)
    for index, (page, kept) in enumerate(zip(pages, cleaned)):
        assert (kept.number, kept.source) == (page.number, page.source)
        lines = [line.strip() for line in page.text.split("\n") if line.strip()]
        keys = _zone_keys(page.text)
        running = [(page.text[s:e].strip(), key) for s, e, key in _zone_lines(page.text) if key in keys and key in repeated]
        alone = len(running) == len(lines)  # nothing but running lines: the page's content, kept whole
        if alone:
            assert kept.text == page.text
        firsts = [line for line, key in running if repeated[key] == index or alone]
        assert kept.running_kept == tuple(dict.fromkeys(firsts))  # named: the running lines it keeps
        if kept.text == page.text:
            continue
        before = [line for line in page.text.split("\n") if line.strip()]
        after = [line for line in kept.text.split("\n") if line.strip()]
        rest = iter(before)
        assert all(any(line == other for other in rest) for line in after)  # a subsequence of the page's lines
        gone = list(before)
        for line in after:
            gone.remove(line)
        assert gone and all(normalise(line.strip()) in repeated for line in gone)
        assert all(repeated[normalise(line.strip())] < index for line in gone)
        assert all(normalise(line.strip()) in _zone_keys(page.text) for line in gone)
