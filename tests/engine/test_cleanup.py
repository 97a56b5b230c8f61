from engine.cleanup import normalise, running_lines, strip_running_lines
from engine.pages import Page

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
