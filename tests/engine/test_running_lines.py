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


def test_short_documents_and_unique_lines_are_left_alone():
    assert strip_running_lines(_pages(2)) == _pages(2)
    pages = [Page(i + 1, f"Unique title {chr(65 + i)}\n{WORDS[i]} opens the page.\nIt ends with {WORDS[i + 1]}.", "text")
             for i in range(5)]
    assert strip_running_lines(pages) == pages


def test_a_page_whose_only_lines_repeat_keeps_them():
    """arabic_habibi_rotated.pdf: four pages with the same one line; stripping it left nothing to index."""
    pages = [Page(i + 1, "\u062d\u064e\u0628\u064a\u0628\u064a habibi", "text") for i in range(4)]
    assert strip_running_lines(pages) == pages
    mixed = [Page(i + 1, f"Running head\nbody {WORDS[i]} text", "text") for i in range(4)] + [Page(5, "Running head", "text")]
    cleaned = strip_running_lines(mixed)
    assert [p.text for p in cleaned[:4]] == [f"body {WORDS[i]} text" for i in range(4)] and cleaned[4] == mixed[4]


def test_only_newlines_end_lines():
    """U+2028 inside a line does not make a header of half of it."""
    pages = [Page(i + 1, f"Head\u2028{WORDS[i]}\nbody {WORDS[i + 1]}", "text") for i in range(4)]
    assert strip_running_lines(pages) == pages
