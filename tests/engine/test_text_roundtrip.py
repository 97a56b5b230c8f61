"""Any Unicode text round-trips through chunk -> store -> load -> search exactly, proved with
hypothesis over arbitrary strings: every general category (surrogates aside: they cannot be UTF-8),
plus the characters str.splitlines() splits on (U+2028, U+2029, U+0085, \\v, \\f, \\x1c-\\x1e),
NUL, lone combining marks, right-to-left text and ZWJ sequences, weighted so they occur often.

Run with ``--hypothesis-show-statistics`` to see how many examples each property tried.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.chunking import Chunk, ChunkingOptions, chunk_pages
from engine.collection import Collection, DocumentRecord
from engine.errors import InputError
from engine.page_records import Page

DIM = 64
LINE_BREAKERS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # everything str.splitlines() splits on
SPECIAL = [*LINE_BREAKERS, "\x00", "\t", " ", "  ", "\u0301", "\u0308\u0301", "\u200d", "\u200f", "\u202e", "\ufeff",
           "שלום", "مرحبا", "👩\u200d💻", "👨\u200d👩\u200d👧", "🏳️\u200d🌈", "é", "\ufffd", "\U0010fffd", "한국어", ". ", "\n\n",
           "# Heading\n", "1. Intro\n"]
WORD = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)
PIECE = st.one_of(WORD, st.sampled_from(SPECIAL), st.sampled_from(["lorem", "ipsum", "dolor", "sit", "amet"]))
PAGE_TEXT = st.lists(PIECE, min_size=0, max_size=60).map("".join)


def _spans(text: str) -> list[tuple[int, int]]:
    """A stand-in tokenizer: every run of non-space characters is one token, each character of a long run too."""
    spans = []
    for match in re.finditer(r"\S+", text):
        if match.end() - match.start() > 6:
            spans += [(i, i + 1) for i in range(match.start(), match.end())]
        else:
            spans.append(match.span())
    return spans


def _count(text: str) -> int:
    return len(_spans(text))


def _store_and_reload(pages: list[Page], chunks: list[Chunk], name: str = "doc.pdf"):
    with tempfile.TemporaryDirectory() as root:
        col = Collection(Path(root), "texts")
        col.create("model-a", "fp32", DIM, {})
        vectors = np.random.default_rng(len(chunks)).normal(size=(len(chunks), DIM)).astype(np.float32)
        record = DocumentRecord("ab" * 32, name, len(pages), len(chunks), "text", 0, 1, "2026-01-01T00:00:00Z", "")
        col.add_document(record, vectors, chunks, "model-a", pages=pages, original=b"%PDF-1.4")
        fresh = Collection(Path(root), "texts")  # a new reader: nothing comes from the writer's memory
        loaded_pages = fresh.pages_of(record.doc_id)
        _, loaded_chunks = fresh.chunks_of(record.doc_id)
        hits = [fresh.search(vectors[i], k=1)[0] for i in range(len(chunks))]
        info = fresh.info()
    return loaded_pages, loaded_chunks, hits, info


def _assert_round_trip(pages: list[Page], chunks: list[Chunk]) -> None:
    loaded_pages, loaded_chunks, hits, _ = _store_and_reload(pages, chunks)
    assert [p.text for p in loaded_pages] == [p.text for p in pages]
    assert len(loaded_chunks) == len(chunks)
    for chunk, stored, hit in zip(chunks, loaded_chunks, hits):
        assert (stored["text"], stored["page"], stored["start"], stored["end"], tuple(stored["heading_path"])) == (
            chunk.text, chunk.page, chunk.start, chunk.end, chunk.heading_path)
        assert loaded_pages[chunk.page - 1].text[chunk.start:chunk.end] == chunk.text
        assert (hit.text, hit.start, hit.end, hit.page, hit.chunk_index) == (chunk.text, chunk.start, chunk.end,
                                                                            chunk.page, chunk.index)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(PAGE_TEXT, min_size=1, max_size=3))
def test_any_text_round_trips_through_chunk_store_load_search(texts):
    pages = [Page(i, text, "text") for i, text in enumerate(texts, 1)]
    chunks = chunk_pages(pages, _count, _spans, ChunkingOptions(size=8, overlap=2))
    for chunk in chunks:  # the chunker's own promise, on which every stored offset relies
        assert pages[chunk.page - 1].text[chunk.start:chunk.end] == chunk.text
    if chunks:
        _assert_round_trip(pages, chunks)


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(exclude_categories=("Cs",)), max_size=80),
       heading=st.text(st.characters(exclude_categories=("Cs",)), max_size=20))
def test_raw_chunks_and_headings_round_trip_unchanged(text, heading):
    """Without the chunker in the way: the whole page text as one chunk, with a heading path."""
    pages = [Page(1, text, "text", notes=(heading,))]
    chunks = [Chunk(0, 1, 0, len(text), text, (heading, text[:5]), 1)]
    loaded_pages, loaded_chunks, hits, _ = _store_and_reload(pages, chunks)
    assert loaded_pages == pages
    assert loaded_chunks[0]["text"] == text and loaded_chunks[0]["heading_path"] == [heading, text[:5]]
    assert hits[0].text == text and hits[0].heading_path == (heading, text[:5])


@pytest.mark.parametrize("separator", list(LINE_BREAKERS[2:]), ids=lambda c: f"U+{ord(c):04X}")
def test_the_characters_splitlines_splits_on_stay_inside_a_chunk(separator):
    """The issue's case: U+2029 in a paper's text made the whole collection unreadable."""
    text = f"first half{separator}second half"
    pages = [Page(1, text, "text")]
    _, loaded_chunks, hits, _ = _store_and_reload(pages, [Chunk(0, 1, 0, len(text), text, (), 4)])
    assert [c["text"] for c in loaded_chunks] == [text] and hits[0].text == text


def test_a_document_name_with_line_separators_round_trips():
    text = "body"
    _, _, _, info = _store_and_reload([Page(1, text, "text")], [Chunk(0, 1, 0, 4, text, (), 1)],
                                      name="odd\u2028name\u0085.pdf")
    assert info.documents[0].name == "odd\u2028name\u0085.pdf"


@pytest.mark.parametrize("where", ["chunk", "page", "heading", "name"])
def test_a_lone_surrogate_is_an_input_error_before_anything_is_written(tmp_path, where):
    """Lone surrogates cannot be encoded as UTF-8: the store refuses them with an InputError and writes nothing."""
    col = Collection(tmp_path, "texts")
    col.create("model-a", "fp32", DIM, {})
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    manifest = (col.path / "collection.json").read_bytes()
    bad = "a\ud800b"
    text = bad if where in ("chunk", "page") else "ab"
    pages = [Page(1, bad if where == "page" else "a b", "text")]
    chunks = [Chunk(0, 1, 0, len(text), text, (bad,) if where == "heading" else (), 1)]
    record = DocumentRecord("cd" * 32, bad + ".pdf" if where == "name" else "x.pdf", 1, 1, "text", 0, 1,
                            "2026-01-01T00:00:00Z", "")
    with pytest.raises(InputError, match="surrogate") as caught:
        col.add_document(record, np.ones((1, DIM), np.float32), chunks, "model-a", pages=pages, original=b"%PDF")
    assert "\\ud800" in caught.value.message and caught.value.hint
    json.dumps(caught.value.to_dict()).encode("utf-8")  # the error itself can be shown and sent
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (col.path / "collection.json").read_bytes() == manifest


def test_beir_jsonl_with_raw_line_separators_loads(tmp_path):
    """engine/measure/evaluation.py read BEIR JSONL with splitlines(): a raw U+2028 inside a text broke the line."""
    from engine.measure.evaluation import load_beir

    docs = [{"_id": "d1", "title": "T\u2028itle", "text": "one\u2029two\x85three\x0bfour"}, {"_id": "d2", "text": "plain"}]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), "utf-8")
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "a\u2028query"}, ensure_ascii=False) + "\n",
                                            "utf-8")
    (tmp_path / "qrels-test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n", "utf-8")
    dataset = load_beir(tmp_path)
    assert dataset.doc_ids == ["d1", "d2"] and dataset.doc_texts[0] == "T\u2028itle one\u2029two\x85three\x0bfour"
    assert dataset.query_texts == ["a\u2028query"]


def test_a_file_name_that_is_not_utf8_is_stored_with_a_replacement_character(studio, tmp_path):
    """A Latin-1 name on a POSIX disk reaches Python as a surrogate escape; it is stored, readable, as U+FFFD."""
    from conftest import shared_data

    from engine.pipeline import ingest, search

    path = tmp_path / os.fsdecode(b"caf\xe9.pdf")
    path.write_bytes(shared_data("pdfs", "table_small.pdf").read_bytes())
    result = ingest(studio, "names", path)
    assert result.ok and result.file == "caf\ufffd.pdf"
    assert search(studio, "names", "boiling point", k=1).hits[0].document == "caf\ufffd.pdf"
