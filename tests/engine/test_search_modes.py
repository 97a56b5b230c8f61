"""Keyword (BM25) and hybrid retrieval, query vectors and the ANN index of a collection: persisted with
each generation, exact below the threshold, HNSW above it, and the same answers either way."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.ann_index import KeyMap, plan_update
from engine.chunking import Chunk
from engine.collection import Collection, DocumentRecord
from engine.errors import InputError, ModelMismatchError
from engine.fusion import reciprocal_rank_fusion, resolve_mode
from engine.keyword_index import Analyzer, KeywordIndex
from engine.page_records import Page

DIM = 16


def _doc(doc_id: str, name: str, texts: list[str], vectors: np.ndarray):
    page_text = "\n".join(texts)
    chunks, position = [], 0
    for i, text in enumerate(texts):
        start = page_text.index(text, position)
        chunks.append(Chunk(i, 1, start, start + len(text), text, (), 5))
        position = start + len(text)
    record = DocumentRecord(doc_id, name, 1, len(texts), "text", 0, 10, "2026-01-01T00:00:00Z", "")
    return record, vectors.astype(np.float32), chunks, [Page(1, page_text, "text")]


def _add(c: Collection, doc_id: str, name: str, texts: list[str], vectors: np.ndarray) -> None:
    record, vectors, chunks, pages = _doc(doc_id, name, texts, vectors)
    c.add_document(record, vectors, chunks, "m", pages=pages)


def _unit(rng, n):
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _collection(tmp_path, threshold=1_000_000, mode="hybrid", language="en", name="c"):
    c = Collection(tmp_path, name)
    c.create("m", "fp32", DIM, {}, search={"mode": mode, "language": language, "ann": {"threshold": threshold}})
    return c


def test_analyzer_stems_and_drops_stop_words():
    assert Analyzer("en").terms(["The runners are running to the XJ-2000 pumps"]) == [
        ["runner", "run", "xj", "2000", "pump"]]
    assert Analyzer("none").terms(["The runners"]) == [["the", "runners"]]
    assert Analyzer("de").terms(["Die Häuser und das Haus"])[0] == ["haus", "haus"]
    with pytest.raises(InputError):
        Analyzer("xx").terms(["a"])


def test_keyword_index_ranks_rare_terms_and_survives_a_reload(tmp_path):
    texts = ["pumps and valves", "the valve XJ-2000 is rated for 40 bar", "running water in pipes", "a cat"]
    index = KeywordIndex.build(texts, "en")
    rows, scores = index.top("XJ-2000 rating", 3)
    assert rows[0] == 1 and scores[0] > 0
    assert list(index.top("run", 5)[0]) == [2]  # stemmed on both sides
    assert len(index.top("the and", 5)[0]) == 0  # only stop words: nothing matches
    assert len(index.top("valve", 5, allowed=np.array([False, True, True, True]))[0]) == 1
    index.save(tmp_path / "kw")
    again = KeywordIndex.load(tmp_path / "kw")
    assert np.allclose(again.scores("valve pumps"), index.scores("valve pumps"))
    empty = KeywordIndex.build([], "en")
    empty.save(tmp_path / "empty")
    assert KeywordIndex.load(tmp_path / "empty").top("x", 3)[0].size == 0


def test_reciprocal_rank_fusion_by_hand():
    fused = reciprocal_rank_fusion({"dense": ([7, 3], [0.9, 0.8]), "keyword": ([3, 5], [12.0, 4.0])}, k=60)
    assert [f.row for f in fused] == [3, 7, 5]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert dict(fused[0].sources) == {"dense": 0.8, "keyword": 12.0}
    weighted = reciprocal_rank_fusion({"dense": ([7], [1.0]), "keyword": ([5], [1.0])},
                                      {"dense": 0.2, "keyword": 0.8})
    assert [f.row for f in weighted] == [5, 7]


def test_mode_resolution():
    assert resolve_mode(None, "hybrid", True, True) == "hybrid"
    assert resolve_mode(None, "hybrid", False, True) == "dense"  # a vector alone is a dense query
    assert resolve_mode("keyword", "dense", True, False) == "keyword"
    for bad in (("hybrid", "dense", False, True), ("dense", "dense", True, False), ("fuzzy", "dense", True, True)):
        with pytest.raises(InputError):
            resolve_mode(*bad)


def test_collection_keyword_and_hybrid_search(tmp_path):
    rng = np.random.default_rng(0)
    c = _collection(tmp_path)
    texts = [f"general remark number {i} about maintenance" for i in range(30)]
    texts[17] = "replace gasket part QX-7731 every spring"
    vectors = _unit(rng, 30)
    _add(c, "a" * 64, "manual.pdf", texts, vectors)
    info = c.info()
    assert info.search["mode"] == "hybrid" and info.search["language"] == "en"
    assert (c.path / "indexes" / info.indexes["keyword"] / "keyword.json").is_file()
    keyword = c.search(query_text="QX-7731 gasket", mode="keyword", k=3)
    assert keyword[0].chunk_index == 17 and keyword[0].retrievers.keys() == {"keyword"}
    assert keyword[0].text == texts[17]
    # the dense query points at chunk 3; hybrid keeps both the semantic and the keyword match on top
    hybrid = c.search(vectors[3], query_text="QX-7731", k=5)
    assert {h.chunk_index for h in hybrid[:2]} == {3, 17}
    assert hybrid[0].retrievers.keys() <= {"dense", "keyword"} and all(h.retrievers for h in hybrid)
    dense = c.search(vectors[3], k=1, mode="dense")
    assert dense[0].chunk_index == 3 and dense[0].score == pytest.approx(1.0, abs=1e-5)
    assert c.search(vectors[3], k=1)[0].retrievers == {"dense": pytest.approx(1.0, abs=1e-5)}  # vector only: dense
    with pytest.raises(ModelMismatchError):
        c.search(np.ones(DIM + 1), k=1)
    with pytest.raises(InputError):
        c.search(vectors[0], mode="keyword")


def test_keyword_search_follows_documents_deletes_and_filters(tmp_path, monkeypatch):
    from engine import collection as collection_module

    monkeypatch.setattr(collection_module, "RETAIN_SECONDS", -1.0)  # retired index files go at the next commit
    rng = np.random.default_rng(1)
    c = _collection(tmp_path)
    _add(c, "a" * 64, "a.pdf", ["alpha turbine blade", "common words here"], _unit(rng, 2))
    _add(c, "b" * 64, "b.pdf", ["beta turbine housing", "other words"], _unit(rng, 2))
    assert {h.document for h in c.search(query_text="turbine", mode="keyword")} == {"a.pdf", "b.pdf"}
    assert [h.document for h in c.search(query_text="turbine", mode="keyword", documents=["b.pdf"])] == ["b.pdf"]
    c.delete_document("a.pdf")
    assert [h.document for h in c.search(query_text="turbine", mode="keyword")] == ["b.pdf"]
    names = sorted(p.name for p in (c.path / "indexes").iterdir())
    generation = c.info().generation
    assert f"keyword-g{generation}" in names and all(int(n.split("-g")[1]) >= generation - 1 for n in names)


def test_a_collection_from_before_keyword_search_still_answers_every_mode(tmp_path):
    rng = np.random.default_rng(2)
    c = _collection(tmp_path)
    vectors = _unit(rng, 3)
    _add(c, "a" * 64, "a.pdf", ["red valve", "blue pump", "green pipe"], vectors)
    manifest = json.loads((c.path / "collection.json").read_text())
    del manifest["search"], manifest["indexes"]  # what an older version wrote
    (c.path / "collection.json").write_text(json.dumps(manifest))
    old = Collection(tmp_path, "c")
    assert old.info().search == {} and old.search(vectors[1], k=1)[0].text == "blue pump"  # default mode: dense
    assert old.search(query_text="pumps", mode="keyword", k=1)[0].text == "blue pump"  # indexed in memory
    assert old.search(vectors[2], query_text="pipe", mode="hybrid", k=1)[0].text == "green pipe"


def test_key_map_updates_only_changed_segments():
    keymap, removed, added = plan_update(KeyMap(), [("a-g1", 3), ("b-g1", 2)])
    assert keymap.blocks == {"a-g1": (0, 3), "b-g1": (3, 2)} and removed == [] and len(added) == 2
    keymap, removed, added = plan_update(keymap, [("b-g1", 2), ("a-g2", 4)])
    assert removed == [(0, 3)] and added == [("a-g2", 5, 4)] and keymap.next_key == 9
    assert KeyMap.from_json(keymap.to_json()) == keymap


@pytest.mark.parametrize("dtype", ["f32", "f16", "i8"])
def test_ann_index_above_the_threshold_matches_exact_search(tmp_path, dtype):
    rng = np.random.default_rng(3)
    c = Collection(tmp_path, f"ann-{dtype}")
    c.create("m", "fp32", DIM, {}, search={"mode": "dense", "ann": {"threshold": 300, "dtype": dtype}})
    docs = [_unit(rng, 200) for _ in range(3)]
    for i, vectors in enumerate(docs):
        _add(c, f"{i}" * 64, f"{i}.pdf", [f"chunk {j} of {i}" for j in range(200)], vectors)
    info = c.info()
    assert info.indexes["ann"] == f"ann-g{info.generation}.usearch" and c.info().chunk_count == 600
    queries = _unit(rng, 40)
    overlap = []
    for q in queries:
        approx = [(h.document, h.chunk_index) for h in c.search(q, k=10)]
        exact = [(h.document, h.chunk_index) for h in c.search(q, k=10, exact=True)]
        overlap.append(len(set(approx) & set(exact)) / 10)
    assert np.mean(overlap) >= 0.97
    hit = c.search(docs[1][5], k=1)[0]  # the rescored score is the exact cosine
    assert (hit.document, hit.chunk_index) == ("1.pdf", 5) and hit.score == pytest.approx(1.0, abs=1e-5)
    c.delete_document("1.pdf")  # the index follows a delete: no key of the removed document comes back
    assert all(h.document != "1.pdf" for q in queries[:10] for h in c.search(q, k=20))
    assert c.search(docs[2][7], k=1)[0].chunk_index == 7
    c.delete_document("2.pdf")  # now below the threshold: exact search, no ANN index named
    assert "ann" not in c.info().indexes and c.search(docs[0][9], k=1)[0].chunk_index == 9


def test_more_rescored_candidates_never_lose_recall(tmp_path):
    """``rescore`` (HNSW candidates per hit, re-ranked exactly) is a query-time knob: with a breadth too small to
    find everything, asking for more candidates finds at least as many of the exact top 10."""
    rng = np.random.default_rng(5)
    c = Collection(tmp_path, "rescore")
    c.create("m", "fp32", DIM, {}, search={"mode": "dense", "ann": {"threshold": 100, "dtype": "i8",
                                                                     "expansion_search": 10}})
    _add(c, "e" * 64, "r.pdf", [f"chunk {j}" for j in range(1500)], _unit(rng, 1500))
    queries = _unit(rng, 30)

    def recall(rescore: int) -> float:
        found = []
        for q in queries:
            exact = {h.chunk_index for h in c.search(q, k=10, exact=True)}
            found.append(len(exact & {h.chunk_index for h in c.search(q, k=10, ef=10, rescore=rescore)}) / 10)
        return float(np.mean(found))

    low, high = recall(1), recall(20)
    assert high > low and high >= 0.9, (low, high)
