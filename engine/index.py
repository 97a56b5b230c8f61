"""A collection: chunk vectors plus metadata, persisted under ``<data dir>/collections/<name>``.

Layout: ``collection.json`` (the manifest: model, documents, and which segment files hold them) and
one segment per document under ``segments/`` (``<doc>-<generation>.npy`` vectors and ``.jsonl``
chunk metadata). A write creates new segment files, then atomically replaces collection.json
(write to a temporary file, fsync, rename): a killed ingest leaves the previous collection readable
and unchanged. Files of the generation before the current one are kept (a reader may still hold
the old manifest) and older ones are removed. Writers take an exclusive lock file.

Search (engine/retrieval.py) reads each generation's segments memory-mapped; its mode is dense (exact
cosine, or the HNSW index above the collection's ANN threshold), keyword (BM25) or hybrid (their
reciprocal-rank fusion). The keyword and ANN indexes are derived from the segments in the commit path
(engine/derived_indexes.py) and named by the manifest like the segments are.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from engine import derived_indexes
from engine.chunking import Chunk
from engine.errors import CollectionError, CollectionNotFoundError, InputError, ModelMismatchError
from engine.fusion import CANDIDATES, dense_weights, reciprocal_rank_fusion, resolve_mode
from engine.pages import Page
from engine.retrieval import SearchConfig, View

log = logging.getLogger(__name__)
MANIFEST = "collection.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FORMAT = 1


@dataclass(frozen=True)
class DocumentRecord:
    doc_id: str  # sha256 of the file bytes
    name: str  # file name as uploaded
    pages: int
    chunks: int
    ocr_engine: str  # what was asked for ("auto", "text", ...)
    ocr_pages: int  # pages that went through OCR
    size_bytes: int
    ingested_at: str
    segment: str  # file stem under segments/
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    model: str
    variant: str
    dim: int
    created_at: str
    generation: int = 0
    chunking: dict = field(default_factory=dict)
    documents: tuple[DocumentRecord, ...] = ()
    format: int = FORMAT
    uid: str = ""  # new for every creation: a dropped and re-made collection never matches an old cache
    search: dict = field(default_factory=dict)  # retrieval.SearchConfig: default mode, language, ANN options
    indexes: dict = field(default_factory=dict)  # derived index files of this generation (keyword, ann)
    store: dict = field(default_factory=dict)  # where the chunks live: {} embedded, {"kind": "qdrant", ...}

    @property
    def chunk_count(self) -> int:
        return sum(d.chunks for d in self.documents)

    def document(self, doc_id_or_name: str) -> DocumentRecord | None:
        return next((d for d in self.documents if doc_id_or_name in (d.doc_id, d.name)), None)


@dataclass(frozen=True)
class SearchHit:
    score: float
    document: str  # file name
    doc_id: str
    page: int  # 1-based
    start: int  # character offsets into that page's text
    end: int
    text: str
    heading_path: tuple[str, ...]
    chunk_index: int
    retrievers: dict[str, float] = field(default_factory=dict)  # which retriever(s) found it, with their scores

    def to_dict(self) -> dict:
        return {**asdict(self), "heading_path": list(self.heading_path)}


@dataclass(frozen=True)
class NewDocument:
    """One document to store: its record, vectors (one per chunk), chunks, page texts and original file."""

    record: DocumentRecord
    vectors: np.ndarray
    chunks: Sequence[Chunk]
    pages: Sequence[Page] = ()
    original: bytes | None = None
    suffix: str = ".pdf"


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 rows of length 1; rows already of unit length are kept bit for bit (an import stores exactly
    what was exported)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    scale = np.where(np.abs(norms - 1.0) <= 1e-6, 1.0, 1.0 / np.maximum(norms, 1e-12)).astype(np.float32)
    return vectors * scale


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _info_from_json(data: dict) -> CollectionInfo:
    documents = tuple(DocumentRecord(**{**d, "notes": tuple(d.get("notes", ()))}) for d in data.get("documents", ()))
    return CollectionInfo(**{**data, "documents": documents})


class Collection:
    """One persisted collection. Cheap to construct; reads the manifest on demand."""

    def __init__(self, root: Path, name: str) -> None:
        if not NAME.match(name or ""):
            raise InputError(f"{name!r} is not a valid collection name.", "use letters, digits, '.', '_', '-' (max 64)")
        self.name = name
        self.path = Path(root) / name
        self._cache: tuple[tuple[str, int], View] | None = None
        self._cache_lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return (self.path / MANIFEST).is_file()

    def info(self) -> CollectionInfo:
        try:
            data = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CollectionNotFoundError(
                f"There is no collection named {self.name!r}.",
                "ingest a PDF into it first: python -m engine ingest FILE --collection NAME",
            ) from None
        except ValueError as exc:
            raise CollectionError(f"The manifest of collection {self.name!r} is unreadable: {exc}") from None
        return _info_from_json(data)

    def _segment_files(self, stem: str) -> tuple[Path, Path]:
        return self.path / "segments" / f"{stem}.npy", self.path / "segments" / f"{stem}.jsonl"

    def _pages_file(self, stem: str) -> Path:
        return self.path / "segments" / f"{stem}.pages.json"

    def pages_of(self, doc_id: str) -> list[Page]:
        """The page texts every chunk offset of the document refers to."""
        record = self._record(doc_id)
        try:
            data = json.loads(self._pages_file(record.segment).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CollectionError(f"The pages of {record.name} are unreadable: {exc}") from None
        return [Page(**{**p, "notes": tuple(p.get("notes", ()))}) for p in data]

    def original_of(self, doc_id: str) -> Path | None:
        """The stored copy of the ingested file (for page images), if any."""
        record = self._record(doc_id)
        matches = sorted((self.path / "files").glob(f"{record.doc_id}.*")) if (self.path / "files").is_dir() else []
        return matches[0] if matches else None

    def _record(self, doc_id: str) -> DocumentRecord:
        record = self.info().document(doc_id)
        if record is None:
            raise CollectionError(f"Collection {self.name!r} has no document {doc_id!r}.")
        return record

    def chunks_of(self, doc_id: str) -> tuple[np.ndarray, list[dict]]:
        return self._load_segment(self._record(doc_id).segment)

    def _load_segment(self, stem: str) -> tuple[np.ndarray, list[dict]]:
        vectors_file, chunks_file = self._segment_files(stem)
        try:
            vectors = np.load(vectors_file)
            chunks = [json.loads(line) for line in chunks_file.read_text(encoding="utf-8").splitlines() if line]
        except (OSError, ValueError) as exc:
            raise CollectionError(f"A segment of collection {self.name!r} is unreadable ({stem}): {exc}") from None
        return vectors, chunks

    def _view(self, info: CollectionInfo) -> View:
        with self._cache_lock:
            if self._cache is None or self._cache[0] != (info.uid, info.generation):
                self._cache = ((info.uid, info.generation), View(self.path, info, self._segment_files))
            return self._cache[1]

    def search(self, query_vector: np.ndarray | None = None, k: int = 5, documents: Sequence[str] | None = None,
               model: str | None = None, *, query_text: str | None = None, mode: str | None = None,
               exact: bool | None = None, ef: int | None = None, dense_weight: float | None = None) -> list[SearchHit]:
        """Top-k chunks for a query vector (dense), a query text (keyword) or both (hybrid).

        ``mode`` defaults to the collection's; ``exact`` forces exact dense search; ``ef`` is the HNSW
        search breadth; ``dense_weight`` the dense share of the hybrid fusion (default: the collection's)."""
        info = self.info()
        if model is not None and model != info.model:
            raise ModelMismatchError(
                f"Collection {self.name!r} was built with {info.model!r}; a query embedded with {model!r} "
                "cannot be compared with it.",
                f"search with --model {info.model}, or re-ingest into a new collection",
            )
        if k < 1:
            raise InputError("k must be at least 1.")
        view = self._view(info)
        mode = resolve_mode(mode, view.config.mode, query_text is not None, query_vector is not None)
        if view.size == 0:
            return []
        wanted = None
        if documents:
            wanted = {d.doc_id for d in info.documents if d.doc_id in documents or d.name in documents}
            if not wanted:
                raise InputError(f"None of {list(documents)} is in collection {self.name!r}.")
        depth = k if mode != "hybrid" else max(k, CANDIDATES)
        rankings = {}
        if mode in ("dense", "hybrid"):
            query = np.asarray(query_vector, dtype=np.float32).reshape(-1)
            if query.shape[0] != info.dim:
                raise ModelMismatchError(f"The query has {query.shape[0]} dimensions, the collection {info.dim}.")
            query = query / max(float(np.linalg.norm(query)), 1e-12)
            rankings["dense"] = view.dense(query, depth, wanted, exact, ef)
        if mode in ("keyword", "hybrid"):
            rankings["keyword"] = view.keyword_top(query_text, depth, wanted)
        weights = dense_weights(view.config.dense_weight if dense_weight is None else dense_weight)
        fused = reciprocal_rank_fusion(rankings, weights)[:k]
        hits = []
        for item in fused:
            segment, offset = view.locate(item.row)
            chunk = segment.chunk(offset)
            score = item.score if mode == "hybrid" else item.sources[0][1]
            hits.append(SearchHit(float(score), segment.name, segment.doc_id, chunk["page"], chunk["start"],
                                  chunk["end"], chunk["text"], tuple(chunk["heading_path"]), chunk["index"],
                                  dict(item.sources)))
        return hits

    # -- writing ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _commit(self, info: CollectionInfo) -> CollectionInfo:
        info = replace(info, generation=info.generation + 1)
        info = replace(info, indexes=derived_indexes.build(self.path, info, self._segment_files))
        _write_atomic(self.path / MANIFEST, json.dumps(asdict(info), indent=1, ensure_ascii=False).encode("utf-8"))
        self._collect_garbage(info)
        derived_indexes.collect_garbage(self.path, info)
        return info

    def _collect_garbage(self, info: CollectionInfo) -> None:
        """Remove segment files no manifest refers to, keeping those of the previous generation."""
        keep = {d.segment for d in info.documents}
        segments = self.path / "segments"
        for file in segments.glob("*") if segments.is_dir() else ():
            stem = file.name.split(".", 1)[0]
            generation = int(stem.rsplit("-g", 1)[1]) if "-g" in stem and stem.rsplit("-g", 1)[1].isdigit() else 0
            if stem not in keep and generation < info.generation - 1:
                file.unlink(missing_ok=True)

    def create(self, model: str, variant: str, dim: int, chunking: dict, search: dict | None = None) -> CollectionInfo:
        """``search``: the collection's retrieval.SearchConfig as a dict (default mode, language, ANN options)."""
        with self._locked():
            if self.exists:
                return self.info()
            info = CollectionInfo(self.name, model, variant, dim, _now(), chunking=chunking, uid=uuid.uuid4().hex,
                                  search=SearchConfig.from_dict(search).to_dict())
            return self._commit(info)

    def add_document(self, record: DocumentRecord, vectors: np.ndarray, chunks: Sequence[Chunk], model: str,
                     pages: Sequence[Page] = (), original: bytes | None = None, suffix: str = ".pdf") -> DocumentRecord:
        """Store one document's chunks, vectors, page texts and original file; replaces an earlier copy."""
        return self.add_documents([NewDocument(record, vectors, chunks, pages, original, suffix)], model)[0]

    def add_documents(self, documents: Sequence[NewDocument], model: str) -> list[DocumentRecord]:
        """Store several documents in ONE commit (all or nothing: an import, a bulk load)."""
        if len({new.record.doc_id for new in documents}) != len(documents):
            raise CollectionError("The same document appears twice in one batch.")
        for new in documents:
            if new.vectors.shape[0] != len(new.chunks):
                raise CollectionError(f"{len(new.chunks)} chunks but {new.vectors.shape[0]} vectors for {new.record.name}.")
        with self._locked():
            info = self.info()
            if model != info.model:
                names = ", ".join(new.record.name for new in documents[:3])
                raise ModelMismatchError(
                    f"Collection {self.name!r} holds {info.model!r} vectors; {names} was embedded with {model!r}.",
                    "ingest into a collection made with the same model",
                )
            for new in documents:
                if new.vectors.ndim != 2 or new.vectors.shape[1] != info.dim:
                    raise ModelMismatchError(f"Vectors have {new.vectors.shape[-1]} dimensions; the collection {info.dim}.")
            (self.path / "segments").mkdir(exist_ok=True)
            records = [self._write_segment(info.generation + 1, new) for new in documents]
            replaced = {r.doc_id for r in records}
            kept = tuple(d for d in info.documents if d.doc_id not in replaced)
            self._commit(replace(info, documents=kept + tuple(records)))
            return records

    def _write_segment(self, generation: int, new: NewDocument) -> DocumentRecord:
        record, vectors, chunks = new.record, new.vectors, new.chunks
        stem = f"{record.doc_id[:16]}-g{generation}"
        vectors_file, chunks_file = self._segment_files(stem)
        with open(vectors_file, "wb") as handle:
            np.save(handle, unit_rows(vectors))
            handle.flush()
            os.fsync(handle.fileno())
        lines = [json.dumps({"index": c.index, "page": c.page, "start": c.start, "end": c.end, "text": c.text,
                             "heading_path": list(c.heading_path), "tokens": c.tokens}, ensure_ascii=False)
                 for c in chunks]
        _write_atomic(chunks_file, ("\n".join(lines) + "\n").encode("utf-8"))
        _write_atomic(self._pages_file(stem), json.dumps([asdict(p) for p in new.pages], ensure_ascii=False).encode("utf-8"))
        if new.original is not None:
            (self.path / "files").mkdir(exist_ok=True)
            _write_atomic(self.path / "files" / f"{record.doc_id}{new.suffix.lower()}", new.original)
        return replace(record, segment=stem, chunks=len(chunks))

    def reindex(self) -> CollectionInfo:
        """Rebuild the keyword and ANN indexes from the segments (a new generation with the same documents)."""
        with self._locked():
            info = self.info()
            return self._commit(replace(info, indexes={}))

    def delete_document(self, doc_id_or_name: str) -> DocumentRecord:
        with self._locked():
            info = self.info()
            record = info.document(doc_id_or_name)
            if record is None:
                raise CollectionError(f"Collection {self.name!r} has no document {doc_id_or_name!r}.")
            self._commit(replace(info, documents=tuple(d for d in info.documents if d.doc_id != record.doc_id)))
            for file in (self.path / "files").glob(f"{record.doc_id}.*") if (self.path / "files").is_dir() else ():
                file.unlink(missing_ok=True)
            return record

    def drop(self) -> None:
        with self._locked():
            if not self.exists:
                raise CollectionNotFoundError(f"There is no collection named {self.name!r}.")
        shutil.rmtree(self.path)


def list_collections(root: Path) -> list[CollectionInfo]:
    found = []
    for folder in sorted(Path(root).iterdir()) if Path(root).is_dir() else ():
        if (folder / MANIFEST).is_file():
            try:
                found.append(Collection(root, folder.name).info())
            except CollectionError as exc:
                log.warning("skipping collection %s: %s", folder.name, exc.message)
    return found
