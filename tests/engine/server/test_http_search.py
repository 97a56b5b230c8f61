"""The search route by vector, by mode and exact; export and import over real HTTP."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from server_harness import serve, wait_ready

from engine.chunking import Chunk
from engine.collection import Collection, DocumentRecord
from engine.page_records import Page
from engine.server import create_app
from engine.server.config import ApiSettings
from engine.settings import load_settings
from engine.studio import Studio

DIM = 384  # the default model's: a text query is embedded by the server
TEXTS = [f"maintenance note {i} on pumps and valves" for i in range(60)]
TEXTS[42] = "replace the gasket of part QX-7731 every spring"


@pytest.fixture(scope="module")
def server(default_model, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("http-search")
    (data_dir / "models").mkdir()
    (data_dir / "models" / default_model.name).symlink_to(default_model)
    studio = Studio(load_settings(data_dir=data_dir))
    vectors = np.random.default_rng(0).normal(size=(60, DIM)).astype(np.float32)
    page = Page(1, "\n".join(TEXTS), "text")
    chunks, cursor = [], 0
    for i, text in enumerate(TEXTS):
        start = page.text.index(text, cursor)
        cursor = start + len(text)
        chunks.append(Chunk(i, 1, start, cursor, text, (), 9))
    notes = Collection(studio.settings.collections_dir, "notes")
    notes.create(default_model.name, "fp32", DIM, {}, search={"mode": "hybrid", "ann": {"threshold": 30}})
    record = DocumentRecord("a" * 64, "notes.pdf", 1, 60, "text", 0, 10, "2026-01-01T00:00:00Z", "")
    notes.add_document(record, vectors, chunks, default_model.name, pages=[page])
    with serve(create_app(studio, ApiSettings())) as base:
        wait_ready(base)
        yield base, vectors


def _search(base, name="notes", **body):
    return httpx.post(f"{base}/v1/collections/{name}/search", json=body, timeout=120)


def test_search_by_vector_checks_the_dimension(server):
    base, vectors = server
    answer = _search(base, vector=vectors[7].tolist(), k=3)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["mode"] == "dense" and body["provider"] == "none"  # nothing embedded
    assert body["hits"][0]["chunk_index"] == 7 and body["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    exact = _search(base, vector=vectors[7].tolist(), k=3, exact=True).json()
    assert [h["chunk_index"] for h in exact["hits"]] == [h["chunk_index"] for h in body["hits"]]
    wrong = _search(base, vector=[0.1] * (DIM - 1), k=3)  # the request's vector is wrong, not the collection: a 400
    assert wrong.status_code == 400 and "dimensions" in wrong.json()["error"]["message"]
    for answer, param in ((wrong, "vector"), (_search(base, vector=[0.0] * DIM), "vector"),
                          (_search(base, vector=vectors[0].tolist(), query="both"), "vector"),
                          (_search(base, vector=vectors[0].tolist(), mode="keyword"), "mode"),
                          (_search(base, query="valves", documents=["nope.pdf"]), "documents")):
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, answer.text
    assert _search(base, vector=["x"] * DIM).status_code in (400, 422)


def test_keyword_and_hybrid_modes(server):
    base, _ = server
    keyword = _search(base, query="QX-7731 gasket", mode="keyword", k=3).json()
    assert keyword["mode"] == "keyword" and keyword["hits"][0]["chunk_index"] == 42
    assert keyword["hits"][0]["retrievers"].keys() == {"keyword"}
    hybrid = _search(base, query="QX-7731 gasket", k=5).json()  # the collection's default mode
    assert hybrid["mode"] == "hybrid" and hybrid["hits"][0]["chunk_index"] == 42
    assert all(set(h["retrievers"]) <= {"dense", "keyword"} for h in hybrid["hits"])
    assert _search(base, query="x", mode="fuzzy").status_code in (400, 422)


def test_export_then_import_gives_the_same_answers(server):
    base, vectors = server
    exported = httpx.get(f"{base}/v1/collections/notes/export", timeout=120)
    assert exported.status_code == 200 and exported.content[:4] == b"PAR1"
    files = {"file": ("notes.parquet", exported.content, "application/vnd.apache.parquet")}
    imported = httpx.post(f"{base}/v1/collections/notes-copy/import", files=files, timeout=300)
    assert imported.status_code == 200, imported.text
    assert imported.json()["chunks"] == 60
    for body in ({"vector": vectors[3].tolist(), "k": 5}, {"query": "QX-7731 spring", "k": 5, "mode": "keyword"},
                 {"vector": vectors[9].tolist(), "k": 5, "exact": True}):
        assert _search(base, "notes-copy", **body).json()["hits"] == _search(base, **body).json()["hits"]
    junk = httpx.post(f"{base}/v1/collections/junk/import", files={"file": ("x.parquet", b"nope", "x")}, timeout=60)
    message = junk.json()["error"]["message"]
    assert junk.status_code == 400 and message.startswith("x.parquet is not a readable parquet file")
    assert "/tmp" not in message and "studio-import" not in message  # the upload's name, not the server's path
    stray = httpx.post(f"{base}/v1/collections/stray/import", files=files, data={"force": "true"}, timeout=60)
    assert stray.status_code == 400 and stray.json()["error"]["param"] == "force", stray.text  # it was ignored
    assert httpx.get(f"{base}/v1/collections/stray").status_code == 404
    for extra, field in (({"top_k": 1}, "top_k"), ({"q": "spring"}, "q")):  # ignored before: 5 hits, "empty query"
        refused = _search(base, **{"query": "spring", **extra} if field == "top_k" else extra)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == field, refused.text
    assert httpx.get(f"{base}/v1/collections/junk").status_code == 404
