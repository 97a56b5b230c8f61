"""A collection whose chunks and vectors live in Qdrant (qdrant-client), for when one machine is not enough.

Same interface as the embedded ``Collection`` (create, add_document(s), delete_document, search in
the three modes, chunks_of for export, drop). What stays where the embedded store keeps it: the manifest
(collection.json, with ``store = {"kind": "qdrant", "collection": ...}``), the page texts and the
original files under ``<data dir>/collections/<name>/``. Qdrant holds one point per chunk: a named
dense vector ``dense`` (cosine) and a sparse vector ``bm25`` (term -> BM25 term-frequency weight,
computed here with the collection's analyzer; Qdrant applies the IDF modifier over its own corpus),
plus the chunk's payload. Hybrid search is Qdrant's Query API: two prefetches fused by Qdrant's RRF
(``RrfQuery``: k=60 and the collection's dense weight, as the embedded store fuses; a bare
``FusionQuery(RRF)`` would use Qdrant's default k=2).

Consistency: points are written (keyed by segment) before the manifest that names their segment is
committed, and every search is filtered to the manifest's segments, so a crash or a concurrent reader
never sees a half-ingested document; points of segments no manifest names are deleted after a commit.

Connection: ``STUDIO_QDRANT_URL`` (+ ``STUDIO_QDRANT_API_KEY``, never logged) for a server or cluster,
or ``STUDIO_QDRANT_PATH`` for qdrant-client's embedded local mode (what the tests use).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine import storage
from engine.collection import MANIFEST, SUFFIX, Collection, CollectionInfo, NewDocument, SearchHit, _now
from engine.collection_format import info_to_json, require_same_model
from engine.errors import CollectionError, ConfigError, InputError, ModelMismatchError, StudioError
from engine.fusion import RRF_K, dense_weights, resolve_mode
from engine.keyword_index import Analyzer, check_language
from engine.retrieval import SearchConfig
from engine.textcheck import clip

log = logging.getLogger(__name__)
POINT_NAMESPACE = uuid.UUID("6f1c1a2e-3d4b-4f5a-9b8c-7d6e5f4a3b2c")
BM25_K1, BM25_B, AVG_TERMS = 1.2, 0.75, 64.0  # AVG_TERMS: typical terms per 128-token chunk after stop words


@dataclass(frozen=True)
class QdrantConnection:
    url: str | None = None
    path: str | None = None
    api_key: str | None = None

    def __repr__(self) -> str:  # the key never reaches a log line
        return f"QdrantConnection(url={self.url!r}, path={self.path!r}, api_key={'***' if self.api_key else None})"


_clients: dict[tuple[str | None, str | None], object] = {}
_clients_lock = threading.Lock()


@atexit.register
def _close_clients() -> None:
    """Close clients before the interpreter tears down (local mode's __del__ fails that late)."""
    with _clients_lock:
        for client in _clients.values():
            with contextlib.suppress(Exception):
                client.close()
        _clients.clear()


def client_for(connection: QdrantConnection):
    """One client per server/path and process (the embedded local mode allows one per folder)."""
    from qdrant_client import QdrantClient

    if not connection.url and not connection.path:
        raise ConfigError("No Qdrant is configured.", "set STUDIO_QDRANT_URL (or STUDIO_QDRANT_PATH for local mode)")
    key = (connection.url, connection.path)
    with _clients_lock:
        if key not in _clients:
            try:
                _clients[key] = (QdrantClient(url=connection.url, api_key=connection.api_key, timeout=60)
                                 if connection.url else QdrantClient(path=connection.path))
            except (RuntimeError, ValueError, OSError) as exc:
                raise ConfigError(f"Cannot open Qdrant at {connection.url or connection.path}: {exc}",
                                  "check STUDIO_QDRANT_URL and STUDIO_QDRANT_API_KEY (or STUDIO_QDRANT_PATH), "
                                  "and that Qdrant is running") from None
        return _clients[key]


def term_id(term: str) -> int:
    return zlib.crc32(term.encode("utf-8"))


def sparse_document(terms: Sequence[str]) -> tuple[list[int], list[float]]:
    """BM25's term-frequency part per term (the IDF comes from Qdrant's IDF modifier)."""
    counts = Counter(term_id(t) for t in terms if t)
    length = sum(counts.values())
    norm = BM25_K1 * (1 - BM25_B + BM25_B * length / AVG_TERMS)
    ids = sorted(counts)
    return ids, [counts[i] * (BM25_K1 + 1) / (counts[i] + norm) for i in ids]


def sparse_query(terms: Sequence[str]) -> tuple[list[int], list[float]]:
    ids = sorted({term_id(t) for t in terms if t})
    return ids, [1.0] * len(ids)


def point_id(segment: str, index: int) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{segment}:{index}"))


class QdrantCollection(Collection):
    """A Collection whose segments are Qdrant points; manifest, pages and files stay on local disk."""

    def __init__(self, root: Path, name: str, connection: QdrantConnection) -> None:
        super().__init__(root, name)
        self.connection = connection

    @property
    def client(self):
        return client_for(self.connection)

    def _qdrant_name(self, info: CollectionInfo | None = None) -> str:
        """The Qdrant collection this one keeps its points in: named by this collection's folder and uid at creation,
        so a manifest that names another's (a restore from the wrong backup, a hand edit) is refused: dropping it
        had deleted the other's points, and each commit cleared the other's stale-looking points."""
        info = info or self.info()
        name = f"studio_{self.name}_{info.uid[:12]}"
        stored = (info.store or {}).get("collection")
        if stored not in (None, name):
            raise CollectionError(
                f"The manifest of collection {self.name!r} names the Qdrant collection {clip(stored, 80)}, "
                f"not its own ({name!r}).",
                f"python -m engine check-collection {self.name} shows what is wrong; restore its collection.json from "
                "a backup of this collection (each collection keeps its own Qdrant collection)")
        return name

    def _call(self, what: str, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except StudioError:
            raise
        except Exception as exc:  # the client raises transport, HTTP and value errors alike
            raise CollectionError(f"Qdrant could not {what} for collection {self.name!r}: {type(exc).__name__}: "
                                  f"{str(exc)[:300]}", "check STUDIO_QDRANT_URL and that the server is up") from None

    # -- writing ------------------------------------------------------------------------------------
    def create(self, model: str, variant: str, dim: int, chunking: dict, search: dict | None = None) -> CollectionInfo:
        """The manifest's first generation already names the Qdrant collection, made before it is committed."""
        from qdrant_client import models

        config = SearchConfig.from_dict(search)
        check_language(config.language)  # as the embedded store: refused before Qdrant holds anything
        with self._locked():
            if self.exists:
                return self.info()
            uid = uuid.uuid4().hex
            name = f"studio_{self.name}_{uid[:12]}"
            if not self._call("check the collection", self.client.collection_exists, name):
                self._call("create the collection", self.client.create_collection, name,
                           vectors_config={"dense": models.VectorParams(size=dim, distance=models.Distance.COSINE)},
                           sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)})
                for field in ("segment", "doc_id"):
                    self._call("index the payload", self.client.create_payload_index, name, field,
                               models.PayloadSchemaType.KEYWORD)
            info = CollectionInfo(self.name, model, variant, dim, _now(), chunking=chunking, uid=uid,
                                  search=config.to_dict(), store={"kind": "qdrant", "collection": name})
            with storage.transaction(f"Creating collection {self.name!r}", self.root) as files:
                self.path.mkdir(exist_ok=True)
                return self._commit(None, info, files)

    def _write_segment(self, generation: int, new: NewDocument, encoded: tuple[bytes, bytes],
                       files: storage.Transaction):
        from qdrant_client import models

        info = self.info()
        record = new.record
        stem = f"{record.doc_id[:16]}-g{generation}"
        analyzer = Analyzer(SearchConfig.from_dict(info.search).language)
        terms = analyzer.terms([c.text for c in new.chunks]) if new.chunks else []
        vectors = np.asarray(new.vectors, dtype=np.float32)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        points = []
        for chunk, vector, chunk_terms in zip(new.chunks, vectors, terms):
            ids, values = sparse_document(chunk_terms)
            points.append(models.PointStruct(
                id=point_id(stem, chunk.index),
                vector={"dense": vector.tolist(), "bm25": models.SparseVector(indices=ids, values=values)},
                payload={"segment": stem, "doc_id": record.doc_id, "document": record.name, "index": chunk.index,
                         "page": chunk.page, "start": chunk.start, "end": chunk.end, "text": chunk.text,
                         "heading_path": list(chunk.heading_path), "tokens": chunk.tokens}))
        for start in range(0, len(points), 256):
            self._call("store points", self.client.upsert, self._qdrant_name(info), points[start:start + 256], wait=True)
        (self.path / "segments").mkdir(exist_ok=True)
        files.write(self._pages_file(stem), encoded[1])  # page texts stay where the embedded store keeps them
        if new.original is not None:
            suffix = new.suffix.lower() if SUFFIX.match(new.suffix.lower()) else ".bin"
            (self.path / "files").mkdir(exist_ok=True)
            files.write(self.path / "files" / f"{record.doc_id}{suffix}", new.original)
        return replace(record, segment=stem, chunks=len(new.chunks))

    def _commit(self, before: CollectionInfo | None, after: CollectionInfo, files: storage.Transaction) -> CollectionInfo:
        after = replace(after, generation=after.generation + 1, indexes={})
        files.commit(self.path / MANIFEST, info_to_json(after))  # from its rename on, the change stands
        try:
            self._collect_garbage(before, after)
            self._delete_stale_points(after)
        except Exception as exc:  # noqa: BLE001 - the change is stored; stale points go with the next commit
            log.warning("clean-up after a commit of %s failed: %s", self.name, exc)
        return after

    def _delete_stale_points(self, info: CollectionInfo) -> None:
        from qdrant_client import models

        keep = [d.segment for d in info.documents]
        stale = models.Filter(must_not=[models.FieldCondition(key="segment", match=models.MatchAny(any=keep))]) \
            if keep else models.Filter()
        self._call("delete old points", self.client.delete, self._qdrant_name(info),
                   points_selector=models.FilterSelector(filter=stale), wait=True)

    def require_intact(self, info: CollectionInfo, replacing: str = "") -> None:
        """Nothing to refuse ahead: a commit here reads no earlier segment (the points are in Qdrant)."""

    def reindex(self) -> CollectionInfo:
        return self.info()  # Qdrant maintains its own HNSW and sparse indexes

    def drop(self) -> None:
        if self.exists:
            self._call("drop the collection", self.client.delete_collection, self._qdrant_name())
        super().drop()

    # -- reading ------------------------------------------------------------------------------------
    def _segment_points(self, info: CollectionInfo, segment: str, with_vectors: bool) -> list:
        from qdrant_client import models

        points, offset = [], None
        selector = models.Filter(must=[models.FieldCondition(key="segment", match=models.MatchValue(value=segment))])
        while True:
            batch, offset = self._call("read points", self.client.scroll, self._qdrant_name(info),
                                       scroll_filter=selector, limit=1024, offset=offset, with_payload=True,
                                       with_vectors=["dense"] if with_vectors else False)
            points.extend(batch)
            if offset is None:
                return sorted(points, key=lambda p: p.payload["index"])

    def chunks_of(self, doc_id: str) -> tuple[np.ndarray, list[dict]]:
        info = self.info()
        record = self._record(info, doc_id)
        points = self._segment_points(info, record.segment, with_vectors=True)
        vectors = np.asarray([p.vector["dense"] for p in points], dtype=np.float32).reshape(-1, info.dim)
        keys = ("index", "page", "start", "end", "text", "heading_path", "tokens")
        return vectors, [{k: p.payload[k] for k in keys} for p in points]

    def search(self, query_vector: np.ndarray | None = None, k: int = 5, documents: Sequence[str] | None = None,
               model: str | None = None, *, query_text: str | None = None, mode: str | None = None,
               exact: bool | None = None, ef: int | None = None, dense_weight: float | None = None,
               info: CollectionInfo | None = None) -> list[SearchHit]:
        from qdrant_client import models

        info = info if info is not None else self.info()
        require_same_model(info, self.name, model)
        if k < 1:
            raise InputError("k must be at least 1.", "ask for 1 or more hits", param="k")
        config = SearchConfig.from_dict(info.search)
        mode = resolve_mode(mode, config.mode, query_text is not None, query_vector is not None)
        if not info.documents:
            return []
        segments = [d.segment for d in info.documents
                    if not documents or d.doc_id in documents or d.name in documents]
        if not segments:
            raise InputError(f"None of {list(documents)} is in collection {self.name!r}.",
                             "the filter takes document names or doc_ids, which the collection's listing shows "
                                 "(GET /v1/collections/NAME, python -m engine collections --json)", param="documents")
        where = models.Filter(must=[models.FieldCondition(key="segment", match=models.MatchAny(any=segments))])
        params = models.SearchParams(exact=bool(exact), hnsw_ef=ef or config.ann.expansion_search)
        dense = sparse = None
        if mode in ("dense", "hybrid"):
            dense = np.asarray(query_vector, dtype=np.float32).reshape(-1)
            if dense.shape[0] != info.dim:
                raise ModelMismatchError(f"The query has {dense.shape[0]} dimensions, the collection {info.dim}.",
                                         "embed the query with the collection's model")
            dense = (dense / max(float(np.linalg.norm(dense)), 1e-12)).tolist()
        if mode in ("keyword", "hybrid"):
            ids, values = sparse_query(Analyzer(config.language).terms([query_text])[0])
            if not ids and mode == "keyword":
                return []
            sparse = models.SparseVector(indices=ids, values=values)
        name = self._qdrant_name(info)
        if mode == "hybrid":
            depth = max(k, 100)
            prefetch = [models.Prefetch(query=dense, using="dense", filter=where, limit=depth, params=params)]
            if sparse.indices:
                prefetch.append(models.Prefetch(query=sparse, using="bm25", filter=where, limit=depth))
            weight = config.dense_weight if dense_weight is None else dense_weight
            dense_weights(weight)  # checked like the embedded store's
            fusion = models.RrfQuery(rrf=models.Rrf(k=RRF_K, weights=[weight, 1.0 - weight][:len(prefetch)]))
            answer = self._call("search", self.client.query_points, name, prefetch=prefetch, query=fusion, limit=k,
                                with_payload=True)
            found = {"dense": self._ranked(name, dense, "dense", where, depth, params),
                     "keyword": self._ranked(name, sparse, "bm25", where, depth, None) if sparse.indices else {}}
        else:
            using, query = ("dense", dense) if mode == "dense" else ("bm25", sparse)
            answer = self._call("search", self.client.query_points, name, query=query, using=using,
                                query_filter=where, limit=k, with_payload=True, search_params=params if mode == "dense" else None)
            found = {mode: {str(p.id): p.score for p in answer.points}}
        return [self._hit(p, found) for p in answer.points]

    def _ranked(self, name: str, query, using: str, where, depth: int, params) -> dict[str, float]:
        """Which points one retriever found (for each hit's ``retrievers``)."""
        answer = self._call("search", self.client.query_points, name, query=query, using=using,
                            query_filter=where, limit=depth, search_params=params, with_payload=False)
        return {str(p.id): p.score for p in answer.points}

    @staticmethod
    def _hit(point, found: dict[str, dict[str, float]]) -> SearchHit:
        p = point.payload
        retrievers = {name: float(scores[str(point.id)]) for name, scores in found.items() if str(point.id) in scores}
        return SearchHit(float(point.score), p["document"], p["doc_id"], p["page"], p["start"], p["end"], p["text"],
                         tuple(p["heading_path"]), p["index"], retrievers)
