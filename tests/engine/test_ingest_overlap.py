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


def test_pages_read_faster_than_embedded_wait_for_the_final_pass_and_prepare_runs_in_the_ingesting_thread():
    """A producer faster than the embedding (born-digital text on a CPU): after the first window, whose pace
    shows it, nothing more is embedded during extraction; ``prepare`` (the session compile) ran in the ingesting
    thread."""
    events: list[tuple[str, str]] = []

    def fast_pages():
        for page in _pages(600):
            events.append(("page", threading.current_thread().name))
            time.sleep(0.001)
            yield page

    calls: list[int] = []

    def embed(texts):
        calls.append(len(texts))
        time.sleep(0.2)  # 20 ms a page: 20 times the producer's pace (a page late by that much would resume it)
        return np.stack([_vector(t) for t in texts])

    def chunk_texts(pages):
        return [p.text for p in pages]

    result = extract_overlapped(fast_pages(), chunk_texts, embed, lambda page, count: None, window=10,
                                prepare=lambda: events.append(("prepare", threading.current_thread().name)))
    assert [name for kind, name in events if kind == "prepare"] == [threading.current_thread().name]
    assert {name for kind, name in events if kind == "page"} == {"ingest-extract"}
    assert [p.number for p in result.pages] == list(range(1, 601))
    assert calls == [10]  # the first window only: its pace said embedding is the long part
    final_texts = chunk_texts(strip_running_lines(result.pages))
    np.testing.assert_array_equal(result.vectors(final_texts, embed), np.stack([_vector(t) for t in final_texts]))
    assert calls == [10, len(set(final_texts)) - 10]  # the final pass: the rest, in one call


def test_a_prepare_failure_reaches_the_caller_and_the_producer_stops():
    def prepare():
        raise RuntimeError("the provider could not load the model")

    with pytest.raises(RuntimeError, match="could not load"):
        extract_overlapped(iter(_pages(500)), lambda pages: [p.text for p in pages],
                           lambda texts: np.zeros((len(texts), 4), np.float32), lambda page, count: None,
                           window=2, prepare=prepare)
    assert not [t for t in threading.enumerate() if t.name == "ingest-extract"]
