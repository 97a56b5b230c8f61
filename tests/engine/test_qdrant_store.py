"""Collections backed by Qdrant, run against qdrant-client's embedded local mode (the same client code
that talks to a server): the Collection interface in every mode, deletes, crash safety, export/import
across stores, the store chosen per collection or by settings, and the API key kept out of logs."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from engine import storage
from engine.chunking import Chunk
from engine.collection import Collection, DocumentRecord, NewDocument
from engine.collection_format import encoded_segment
from engine.errors import InputError, ModelMismatchError
from engine.page_records import Page
from engine.qdrant_store import QdrantCollection, QdrantConnection, sparse_document, sparse_query, term_id
from engine.settings import load_settings
from engine.stores import open_collection
from engine.transfer import export_collection, import_collection

pytest.importorskip("qdrant_client")
DIM = 16


def _new(doc: int, texts: list[str], vectors: np.ndarray) -> NewDocument:
    page = Page(1, "\n".join(texts), "text")
    chunks, cursor = [], 0
    for i, text in enumerate(texts):
        start = page.text.index(text, cursor)
        cursor = start + len(text)
        chunks.append(Chunk(i, 1, start, cursor, text, ("H",), 7))
    record = DocumentRecord(f"{doc}" * 64, f"doc{doc}.pdf", 1, len(texts), "text", 0, 1, "2026-01-01T00:00:00Z", "")
    return NewDocument(record, vectors, chunks, [page], b"%PDF-1.4")


def _texts(doc: int) -> list[str]:
    texts = [f"routine inspection {i} of the cooling loop in plant {doc}" for i in range(30)]
    texts[11] = f"gasket ZK{doc}931 must be replaced every spring"
    return texts


@pytest.fixture()
def qdrant(tmp_path):
    c = QdrantCollection(tmp_path / "collections", "q", QdrantConnection(path=str(tmp_path / "qdrant")))
    c.create("m", "fp32", DIM, {}, search={"mode": "hybrid"})
    rng = np.random.default_rng(0)
    vectors = [rng.normal(size=(30, DIM)).astype(np.float32) for _ in range(2)]
    c.add_documents([_new(d, _texts(d), vectors[d]) for d in range(2)], "m")
    return c, vectors


def test_an_unsupported_language_is_refused_before_qdrant_holds_anything(tmp_path):
    """The embedded store refused it at create; Qdrant's own create made the collection first, and every later
    commit failed on its keyword analyzer."""
    connection = QdrantConnection(path=str(tmp_path / "qdrant"))
    c = QdrantCollection(tmp_path / "collections", "lang", connection)
    with pytest.raises(InputError, match="'xx' is not a supported keyword-search language"):
        c.create("m", "fp32", DIM, {}, search={"language": "xx"})
    assert not c.exists and not (tmp_path / "collections" / "lang").exists()
    assert not [n for n in (x.name for x in c.client.get_collections().collections) if n.startswith("studio_lang_")]


def test_sparse_vectors_are_bm25_term_weights():
    ids, values = sparse_document(["pump", "pump", "valv"])
    assert ids == sorted({term_id("pump"), term_id("valv")})
    weight = dict(zip(ids, values))
    assert weight[term_id("pump")] > weight[term_id("valv")] > 0
    assert sparse_query(["pump", "pump"]) == ([term_id("pump")], [1.0])


def test_search_modes_filters_and_pages(qdrant):
    c, vectors = qdrant
    info = c.info()
    assert info.store["kind"] == "qdrant" and info.chunk_count == 60 and info.indexes == {}
    dense = c.search(vectors[1][4], k=3, mode="dense")
    assert (dense[0].document, dense[0].chunk_index) == ("doc1.pdf", 4) and dense[0].score == pytest.approx(1, abs=1e-5)
    assert dense[0].retrievers.keys() == {"dense"} and dense[0].text == _texts(1)[4]
    keyword = c.search(query_text="ZK1931 gasket", k=3, mode="keyword")
    assert (keyword[0].document, keyword[0].chunk_index) == ("doc1.pdf", 11)
    hybrid = c.search(vectors[0][2], query_text="ZK0931", k=5)  # the collection's default: hybrid (Qdrant RRF)
    assert {(h.document, h.chunk_index) for h in hybrid[:2]} == {("doc0.pdf", 2), ("doc0.pdf", 11)}
    assert all(h.retrievers and set(h.retrievers) <= {"dense", "keyword"} for h in hybrid)
    exact = c.search(vectors[1][4], k=3, exact=True)
    assert [h.chunk_index for h in exact] == [h.chunk_index for h in dense]
    only = c.search(vectors[1][4], k=5, documents=["doc0.pdf"], mode="dense")
    assert {h.document for h in only} == {"doc0.pdf"}
    assert c.pages_of("1" * 64)[0].text.startswith("routine inspection 0")
    assert c.original_of("1" * 64).read_bytes() == b"%PDF-1.4"  # files stay where the embedded store keeps them
    with pytest.raises(ModelMismatchError):
        c.search(np.ones(DIM + 2), mode="dense")
    with pytest.raises(InputError):
        c.search(vectors[0][0], mode="keyword")


def test_delete_replace_and_uncommitted_points_are_invisible(qdrant):
    c, vectors = qdrant
    c.delete_document("doc0.pdf")
    assert all(h.document == "doc1.pdf" for h in c.search(vectors[0][3], k=20, mode="dense"))
    # points written for a segment no manifest names (an ingest killed before its commit) never show
    ghost = _new(7, ["ghost text about QX-777 gaskets"], np.ones((1, DIM), dtype=np.float32))
    files = storage.Transaction()
    c._write_segment(99, ghost, encoded_segment(ghost.record, ghost.chunks, ghost.pages), files)
    files.roll_back()  # its local files go; its points stay in Qdrant, unnamed by any manifest
    assert all(h.document != "doc7.pdf" for h in c.search(query_text="QX-777 ghost", k=10, mode="keyword"))
    assert all(h.document != "doc7.pdf" for h in c.search(np.ones(DIM), k=10, mode="dense"))
    c.add_documents([_new(1, _texts(1)[:5], vectors[1][:5])], "m")  # replaced by a 5-chunk version
    assert c.info().chunk_count == 5 and len(c.search(np.ones(DIM), k=50, mode="dense")) == 5
    c.drop()
    assert not c.exists


def test_export_from_qdrant_import_into_embedded_and_back(tmp_path, qdrant):
    c, vectors = qdrant
    file = export_collection(c, tmp_path / "q.parquet").file
    embedded = Collection(tmp_path / "collections", "e")
    import_collection(embedded, file, {"m": DIM})
    back = QdrantCollection(tmp_path / "collections", "q2", QdrantConnection(path=str(tmp_path / "qdrant")))
    import_collection(back, file, {"m": DIM})
    for q in (vectors[0][5], vectors[1][20]):
        want = [(h.document, h.chunk_index) for h in c.search(q, k=5, mode="dense")]
        assert [(h.document, h.chunk_index) for h in embedded.search(q, k=5, mode="dense")] == want
        assert [(h.document, h.chunk_index) for h in back.search(q, k=5, mode="dense")] == want
    assert [h.text for h in back.search(query_text="ZK0931", k=1, mode="keyword")] == [_texts(0)[11]]


def test_store_is_chosen_per_collection_or_by_settings_and_the_key_is_never_logged(tmp_path, caplog):
    secret = "s3cr3t-qdrant-key"
    settings = load_settings(data_dir=tmp_path, vector_store="qdrant", qdrant_path=tmp_path / "qdrant",
                             qdrant_api_key=secret)
    new = open_collection(settings, "fresh")
    assert isinstance(new, QdrantCollection) and secret not in repr(new.connection)
    embedded = open_collection(settings, "plain", store="embedded")
    assert type(embedded) is Collection
    embedded.create("m", "fp32", DIM, {})
    assert type(open_collection(settings, "plain")) is Collection  # the manifest decides for an existing one
    with caplog.at_level(logging.DEBUG):
        new.create("m", "fp32", DIM, {})
        new.add_documents([_new(3, _texts(3), np.eye(30, DIM, dtype=np.float32) + 0.01)], "m")
        new.search(query_text="gasket", mode="keyword")
    assert secret not in caplog.text and secret not in (tmp_path / "collections" / "fresh" / "collection.json").read_text()
    assert isinstance(open_collection(load_settings(data_dir=tmp_path, qdrant_path=tmp_path / "qdrant"), "fresh"),
                      QdrantCollection)


@pytest.mark.parametrize("store", ["embedded", "qdrant"])
def test_a_corpus_of_many_documents_is_evaluated_through_either_store(tmp_path, store):
    """``eval --store``: a BEIR corpus split into several document records (the SciFact run has six) loads in one
    commit and every query is answered by the store's own search; a query equal to a corpus vector finds it."""
    from engine.measure.evaluation import Dataset, corpus_collection, evaluate_collection

    rng = np.random.default_rng(4)
    doc_vectors = rng.normal(size=(25, DIM)).astype(np.float32)
    doc_vectors /= np.linalg.norm(doc_vectors, axis=1, keepdims=True)
    words = ["pump", "valve", "gasket", "turbine", "boiler"]
    dataset = Dataset("tiny", [f"d{i}" for i in range(25)], [f"{words[i % 5]} report {i}" for i in range(25)],
                      ["q1", "q2"], ["pump report", "turbine report"], {"q1": {"d5": 1}, "q2": {"d8": 1}})
    if store == "qdrant":
        collection = QdrantCollection(tmp_path / "c", "eval", QdrantConnection(path=str(tmp_path / "qdrant")))
    else:
        collection = Collection(tmp_path / "c", "eval")
    collection.create("m", "fp32", DIM, {}, search={"mode": "dense"})
    ids = corpus_collection(collection, dataset, doc_vectors, "m", per_document=10)
    assert len(collection.info().documents) == 3 and len(ids) == 25
    labels = {"model": "m", "variant": "fp32", "provider": "cpu"}
    dense = evaluate_collection(dataset, collection, ids, doc_vectors[[5, 8]], "dense", labels)
    assert dense.ndcg_at_10 == pytest.approx(1.0)
    hybrid = evaluate_collection(dataset, collection, ids, doc_vectors[[5, 8]], "hybrid", labels)
    assert hybrid.recall_at_100 == pytest.approx(1.0) and hybrid.ndcg_at_10 > 0.5


def test_a_manifest_naming_another_collections_qdrant_collection_touches_neither(tmp_path, qdrant):
    """collection.json names the Qdrant collection its points are in; one that named another's (copied from the
    wrong backup) had ``drop`` delete the other's points and leave its own behind."""
    import json

    c, vectors = qdrant
    other = QdrantCollection(c.root, "other", c.connection)
    other.create("m", "fp32", DIM, {}, search={"mode": "dense"})
    path = other.path / "collection.json"
    data = json.loads(path.read_text())
    data["store"]["collection"] = c.info().store["collection"]
    path.write_text(json.dumps(data))
    from engine.errors import CollectionError

    with pytest.raises(CollectionError, match="names the Qdrant collection .* not its own"):
        other.drop()
    with pytest.raises(CollectionError, match="not its own"):
        other.add_documents([_new(5, _texts(5), vectors[0])], "m")
    assert len(c.search(vectors[1][11], k=3, mode="dense")) == 3  # q's points are all there
    assert c.info().chunk_count == 60
