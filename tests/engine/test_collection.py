"""Collections on disk: add, search, filter, delete, model checks, and crash safety."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from engine.chunking import Chunk
from engine.collection import Collection, DocumentRecord, list_collections
from engine.errors import CollectionError, CollectionNotFoundError, InputError, ModelMismatchError
from engine.page_records import Page

ROOT = __import__("conftest").ROOT
DIM = 8


def _doc(doc_id, name, n, seed):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    text = " ".join(f"sentence{i}." for i in range(n))
    pages = [Page(1, text, "text")]
    chunks, position = [], 0
    for i in range(n):
        word = f"sentence{i}."
        start = text.index(word, position)
        chunks.append(Chunk(i, 1, start, start + len(word), word, ("Head",), 3))
        position = start + len(word)
    record = DocumentRecord(doc_id, name, 1, n, "text", 0, 100, "2026-01-01T00:00:00Z", "")
    return record, vectors, chunks, pages


@pytest.fixture()
def col(tmp_path):
    c = Collection(tmp_path, "papers")
    c.create("model-a", "fp32", DIM, {"size": 200, "overlap": 30})
    return c


def _snapshot(c: Collection) -> dict:
    return {str(p.relative_to(c.path)): p.read_bytes() for p in sorted(c.path.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_add_search_filter_and_delete(col):
    rec_a, vec_a, chunks_a, pages_a = _doc("a" * 64, "a.pdf", 5, 1)
    rec_b, vec_b, chunks_b, pages_b = _doc("b" * 64, "b.pdf", 4, 2)
    col.add_document(rec_a, vec_a, chunks_a, "model-a", pages=pages_a, original=b"%PDF-a")
    col.add_document(rec_b, vec_b, chunks_b, "model-a", pages=pages_b, original=b"%PDF-b")
    info = col.info()
    assert [d.name for d in info.documents] == ["a.pdf", "b.pdf"] and info.chunk_count == 9 and info.generation == 3
    hit = col.search(vec_b[2], k=3)[0]
    assert (hit.document, hit.chunk_index, hit.page, hit.text) == ("b.pdf", 2, 1, "sentence2.")
    assert hit.score == pytest.approx(1.0, abs=1e-5) and hit.heading_path == ("Head",)
    only_a = col.search(vec_b[2], k=10, documents=["a.pdf"])
    assert len(only_a) == 5 and {h.document for h in only_a} == {"a.pdf"}
    assert [h.score for h in only_a] == sorted((h.score for h in only_a), reverse=True)
    assert col.pages_of("a.pdf")[0].text.startswith("sentence0.") and col.original_of("b" * 64).read_bytes() == b"%PDF-b"
    col.delete_document("a.pdf")
    assert [d.name for d in col.info().documents] == ["b.pdf"] and col.original_of("b" * 64) is not None
    assert all(h.document == "b.pdf" for h in col.search(vec_a[0], k=10))


def test_replacing_a_document_keeps_one_copy(col, monkeypatch):
    from engine import collection as index

    rec, vec, chunks, pages = _doc("c" * 64, "c.pdf", 3, 3)
    col.add_document(rec, vec, chunks, "model-a", pages=pages)
    col.add_document(rec, vec[:2], chunks[:2], "model-a", pages=pages)
    assert len(col.info().documents) == 1 and col.info().chunk_count == 2
    for _ in range(3):
        col.add_document(rec, vec, chunks, "model-a", pages=pages)
    segments = {p.name.split(".")[0] for p in (col.path / "segments").iterdir()}
    assert len(segments) == 5  # retired segments outlive their last manifest by RETAIN_SECONDS
    monkeypatch.setattr(index, "RETAIN_SECONDS", 0.0)
    for _ in range(2):
        col.add_document(rec, vec, chunks, "model-a", pages=pages)
    segments = {p.name.split(".")[0] for p in (col.path / "segments").iterdir()}
    assert len(segments) == 2  # the current one and the one the previous manifest names


def test_model_checks_and_bad_input(col, tmp_path):
    rec, vec, chunks, pages = _doc("d" * 64, "d.pdf", 2, 4)
    with pytest.raises(ModelMismatchError, match="model-a"):
        col.add_document(rec, vec, chunks, "model-b")
    col.add_document(rec, vec, chunks, "model-a", pages=pages)
    with pytest.raises(ModelMismatchError, match="built with 'model-a'"):
        col.search(vec[0], model="model-b")
    with pytest.raises(ModelMismatchError, match="dimensions"):
        col.search(np.ones(DIM + 1))
    with pytest.raises(InputError):
        col.search(vec[0], k=0)
    with pytest.raises(InputError, match="None of"):
        col.search(vec[0], documents=["zzz.pdf"])
    with pytest.raises(CollectionError, match="no document"):
        col.delete_document("zzz.pdf")
    with pytest.raises(CollectionNotFoundError, match="no collection named 'nope'"):
        Collection(tmp_path, "nope").info()
    for name in ("../escape", "papers\n", "a\n"):  # "$" matched before a final newline: "a\n" made a folder so named
        with pytest.raises(InputError, match="not a valid collection name"):
            Collection(tmp_path, name)
    assert [c.name for c in list_collections(tmp_path)] == ["papers"]


KILLER = """
import os, signal, sys, numpy as np
sys.path[:0] = [{root!r}, {root!r} + "/tests", {tests!r}]
from engine import collection as index
from test_collection import _doc
real_replace = os.replace
def replace_then_die(src, dst):
    if str(dst).endswith("collection.json"):
        os.kill(os.getpid(), signal.SIGKILL)  # the ingest dies just before its commit
    return real_replace(src, dst)
index.os.replace = replace_then_die
c = index.Collection({root_dir!r}, "papers")
rec, vec, chunks, pages = _doc("e" * 64, "e.pdf", 6, 9)
c.add_document(rec, vec, chunks, "model-a", pages=pages, original=b"%PDF-e")
"""


def test_a_killed_ingest_leaves_the_collection_unchanged(col):
    rec, vec, chunks, pages = _doc("a" * 64, "a.pdf", 5, 1)
    col.add_document(rec, vec, chunks, "model-a", pages=pages)
    before = _snapshot(col)
    hits_before = [h.to_dict() for h in col.search(vec[1], k=5)]
    code = KILLER.format(root=str(ROOT), tests=str(ROOT / "tests" / "engine"), root_dir=str(col.path.parent))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == -9, result.stderr
    after = Collection(col.path.parent, "papers")
    assert json.loads(before["collection.json"]) == json.loads((after.path / "collection.json").read_text())
    assert [h.to_dict() for h in after.search(vec[1], k=5)] == hits_before
    assert {k: v for k, v in _snapshot(after).items() if k in before} == before  # nothing that existed changed
    rec2, vec2, chunks2, pages2 = _doc("f" * 64, "f.pdf", 2, 5)  # the lock died with the process
    after.add_document(rec2, vec2, chunks2, "model-a", pages=pages2)
    assert [d.name for d in after.info().documents] == ["a.pdf", "f.pdf"]


def test_a_remade_collection_never_serves_old_vectors(tmp_path):
    first = Collection(tmp_path, "again")
    first.create("model-a", "fp32", DIM, {})
    rec, vec, chunks, pages = _doc("a" * 64, "a.pdf", 3, 1)
    first.add_document(rec, vec, chunks, "model-a", pages=pages)
    assert first.search(vec[0], k=1)[0].text == "sentence0."  # vectors now cached in memory
    first.drop()
    first.create("model-a", "fp32", DIM, {})  # same object, same generation numbers as before
    rec2, vec2, chunks2, pages2 = _doc("a" * 64, "a.pdf", 2, 7)
    first.add_document(rec2, vec2, chunks2, "model-a", pages=pages2)
    assert first.search(vec2[1], k=1)[0].score == pytest.approx(1.0, abs=1e-5)
    assert len(first.search(vec2[1], k=10)) == 2
