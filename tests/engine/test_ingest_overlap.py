"""Extraction overlapped with embedding: every page comes through in order, the final vectors are
the ones a plain embedding gives, most of them computed while the pages were being read, and an
extraction error reaches the ingesting thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.ingest_overlap import extract_overlapped
from engine.page_records import Page
from engine.running_lines import strip_running_lines


def _pages(count: int) -> list[Page]:
    return [Page(n, f"Running Head\n\nBody of page {n} with some words.\n\n{n}", "text") for n in range(1, count + 1)]


def _vector(text: str) -> np.ndarray:
    return np.array([len(text), sum(map(ord, text)) % 997, text.count(" ")], dtype=np.float32)


def test_pages_in_order_and_vectors_equal_to_a_plain_embedding():
    threads: set[str] = set()
    calls: list[int] = []

    def slow_pages():
        for page in _pages(50):
            threads.add(threading.current_thread().name)
            time.sleep(0.002)
            yield page

    def embed(texts):
        calls.append(len(texts))
        return np.stack([_vector(t) for t in texts])

    def chunk_texts(pages):
        return [p.text for p in pages]

    seen = []
    result = extract_overlapped(slow_pages(), chunk_texts, embed, lambda page, count: seen.append(count), window=10)
    assert [p.number for p in result.pages] == list(range(1, 51)) and seen == list(range(1, 51))
    assert threads == {"ingest-extract"}  # the pages were read in the producer thread
    final_texts = chunk_texts(strip_running_lines(result.pages))
    before = sum(calls)
    vectors = result.vectors(final_texts, embed)
    np.testing.assert_array_equal(vectors, np.stack([_vector(t) for t in final_texts]))
    assert sum(calls) - before < len(final_texts) // 2  # most were embedded during extraction


def test_an_extraction_error_reaches_the_caller_and_the_producer_stops():
    def broken_pages():
        yield from _pages(3)
        raise ValueError("page 4 is corrupt")

    with pytest.raises(ValueError, match="page 4"):
        extract_overlapped(broken_pages(), lambda pages: [p.text for p in pages],
                           lambda texts: np.zeros((len(texts), 4), np.float32), lambda page, count: None, window=2)
    assert not [t for t in threading.enumerate() if t.name == "ingest-extract"]
