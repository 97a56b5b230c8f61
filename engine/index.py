"""A collection: chunk vectors plus metadata, persisted under ``<data dir>/collections/<name>``.

Layout: ``collection.json`` (the manifest: model, documents, and which segment files hold them) and
one segment per document under ``segments/`` (``<doc>-<generation>.npy`` vectors and ``.jsonl``
chunk metadata). A write creates new segment files, then atomically replaces collection.json
(write to a temporary file, fsync, rename): a killed ingest leaves the previous collection readable
and unchanged. Files of the generation before the current one are kept (a reader may still hold
the old manifest) and older ones are removed. Writers take an exclusive lock file.

Search is exact cosine top-k over all vectors (held in memory per generation), optionally
restricted to some documents.
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

from engine.chunking import Chunk
from engine.errors import CollectionError, CollectionNotFoundError, InputError, ModelMismatchError
from engine.pages import Page

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

    def to_dict(self) -> dict:
        return {**asdict(self), "heading_path": list(self.heading_path)}


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
        self._cache: tuple[tuple[str, int], np.ndarray, list[dict], list[str]] | None = None
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

    def _matrix(self, info: CollectionInfo) -> tuple[np.ndarray, list[dict], list[str]]:
        with self._cache_lock:
            if self._cache is not None and self._cache[0] == (info.uid, info.generation):
                return self._cache[1], self._cache[2], self._cache[3]
            parts, chunks, owners = [], [], []
            for record in info.documents:
                vectors, metadata = self._load_segment(record.segment)
                parts.append(vectors)
                chunks.extend(metadata)
                owners.extend([record.doc_id] * len(metadata))
            matrix = np.concatenate(parts) if parts else np.zeros((0, info.dim), dtype=np.float32)
            self._cache = ((info.uid, info.generation), matrix, chunks, owners)
            return matrix, chunks, owners

    def search(self, query_vector: np.ndarray, k: int = 5, documents: Sequence[str] | None = None,
               model: str | None = None) -> list[SearchHit]:
        info = self.info()
        if model is not None and model != info.model:
            raise ModelMismatchError(
                f"Collection {self.name!r} was built with {info.model!r}; a query embedded with {model!r} "
                "cannot be compared with it.",
                f"search with --model {info.model}, or re-ingest into a new collection",
            )
        if k < 1:
            raise InputError("k must be at least 1.")
        matrix, chunks, owners = self._matrix(info)
        if matrix.shape[0] == 0:
            return []
        query = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != matrix.shape[1]:
            raise ModelMismatchError(f"The query has {query.shape[0]} dimensions, the collection {matrix.shape[1]}.")
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        scores = matrix @ query
        names = {d.doc_id: d.name for d in info.documents}
        if documents:
            wanted = {d.doc_id for d in info.documents if d.doc_id in documents or d.name in documents}
            if not wanted:
                raise InputError(f"None of {list(documents)} is in collection {self.name!r}.")
            scores = np.where(np.isin(np.array(owners), list(wanted)), scores, -np.inf)
        k = min(k, int(np.isfinite(scores).sum()))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [
            SearchHit(float(scores[i]), names[owners[i]], owners[i], chunks[i]["page"], chunks[i]["start"],
                      chunks[i]["end"], chunks[i]["text"], tuple(chunks[i]["heading_path"]), chunks[i]["index"])
            for i in top if np.isfinite(scores[i])
        ]

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
        _write_atomic(self.path / MANIFEST, json.dumps(asdict(info), indent=1, ensure_ascii=False).encode("utf-8"))
        self._collect_garbage(info)
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

    def create(self, model: str, variant: str, dim: int, chunking: dict) -> CollectionInfo:
        with self._locked():
            if self.exists:
                return self.info()
            info = CollectionInfo(self.name, model, variant, dim, _now(), chunking=chunking, uid=uuid.uuid4().hex)
            return self._commit(info)

    def add_document(self, record: DocumentRecord, vectors: np.ndarray, chunks: Sequence[Chunk], model: str,
                     pages: Sequence[Page] = (), original: bytes | None = None, suffix: str = ".pdf") -> DocumentRecord:
        """Store one document's chunks, vectors, page texts and original file; replaces an earlier copy."""
        if vectors.shape[0] != len(chunks):
            raise CollectionError(f"{len(chunks)} chunks but {vectors.shape[0]} vectors for {record.name}.")
        with self._locked():
            info = self.info()
            if model != info.model:
                raise ModelMismatchError(
                    f"Collection {self.name!r} holds {info.model!r} vectors; {record.name} was embedded with {model!r}.",
                    "ingest into a collection made with the same model",
                )
            if vectors.shape[1] != info.dim:
                raise ModelMismatchError(f"Vectors have {vectors.shape[1]} dimensions; the collection {info.dim}.")
            stem = f"{record.doc_id[:16]}-g{info.generation + 1}"
            (self.path / "segments").mkdir(exist_ok=True)
            vectors_file, chunks_file = self._segment_files(stem)
            normalized = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            with open(vectors_file, "wb") as handle:
                np.save(handle, normalized.astype(np.float32))
                handle.flush()
                os.fsync(handle.fileno())
            lines = [json.dumps({"index": c.index, "page": c.page, "start": c.start, "end": c.end, "text": c.text,
                                 "heading_path": list(c.heading_path), "tokens": c.tokens}, ensure_ascii=False)
                     for c in chunks]
            _write_atomic(chunks_file, ("\n".join(lines) + "\n").encode("utf-8"))
            _write_atomic(self._pages_file(stem), json.dumps([asdict(p) for p in pages], ensure_ascii=False).encode("utf-8"))
            if original is not None:
                (self.path / "files").mkdir(exist_ok=True)
                _write_atomic(self.path / "files" / f"{record.doc_id}{suffix.lower()}", original)
            record = replace(record, segment=stem, chunks=len(chunks))
            documents = tuple(d for d in info.documents if d.doc_id != record.doc_id) + (record,)
            self._commit(replace(info, documents=documents))
            return record

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
