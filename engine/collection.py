"""A collection: chunk vectors plus metadata, persisted under ``<data dir>/collections/<name>``.

Layout: ``collection.json`` (the manifest: model, variant, documents, and which segment files hold
them) and one segment per document under ``segments/`` (``<doc>-g<generation>.npy`` vectors,
``.jsonl`` chunk metadata, ``.pages.json`` page texts); formats in engine/collection_format.py.

Writers take an exclusive lock (``<collections>/.<name>.lock``, engine/locking.py), write new
files, then atomically replace collection.json: a killed or failing ingest leaves the previous
collection readable and unchanged, and a failing one leaves no partial file (engine/storage.py).
Readers never lock. A segment that a commit stops referencing is kept for ``RETAIN_SECONDS``
after that commit (a reader may still hold the previous manifest), and a reader that finds a
segment gone re-reads the manifest and tries again: searches never fail while other processes
delete and re-ingest. ``drop()`` renames the folder away under the lock, then removes it.

Search (engine/retrieval.py) reads each generation's segments memory-mapped; its mode is dense (exact
cosine, or the HNSW index above the collection's ANN threshold), keyword (BM25) or hybrid (their
reciprocal-rank fusion). The keyword and ANN indexes are derived from the segments in the commit path
(engine/derived_indexes.py), before the manifest that names them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from engine import derived_indexes, locking, storage
from engine.chunking import Chunk
from engine.collection_format import (
    FORMAT,
    CollectionInfo,
    DocumentRecord,
    check_doc_id,
    chunks_from_jsonl,
    encoded_segment,
    info_from_json,
    info_to_json,
    pages_from_json,
    require_same_model,
)
from engine.errors import (
    CollectionError,
    CollectionNotFoundError,
    DocumentNotFoundError,
    InputError,
    ModelMismatchError,
    ServiceBusyError,
    StudioError,
)
from engine.fusion import CANDIDATES, dense_weights, reciprocal_rank_fusion, resolve_mode
from engine.keyword_index import check_language
from engine.page_records import Page
from engine.retrieval import SearchConfig, View

if TYPE_CHECKING:
    from engine.collection_check import CheckReport

__all__ = ["FORMAT", "MANIFEST", "Collection", "CollectionInfo", "DocumentRecord", "NewDocument", "SearchHit",
           "list_collections", "scan_collections"]
log = logging.getLogger(__name__)
MANIFEST = "collection.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
SEGMENT_FILE = re.compile(r"^([0-9a-f]{16}-g[0-9]+)\.(npy|jsonl|pages\.json)\Z")
SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}\Z")
RETAIN_SECONDS = 120.0  # how long a segment outlives the last manifest that named it
READ_ATTEMPTS = 8
MIN_ID_PREFIX = 8  # characters of a doc_id that name a document (delete, where two documents share a file name)
T = TypeVar("T")


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


class _SegmentGone(CollectionError):
    """A segment file named by the manifest a reader holds is not there (a writer may have removed it)."""

    def __init__(self, stem: str) -> None:
        super().__init__(f"segment {stem} is missing")
        self.stem = stem


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


class Collection:
    """One persisted collection. Cheap to construct; reads the manifest on demand."""

    def __init__(self, root: Path, name: str) -> None:
        if not NAME.match(name or ""):
            raise InputError(f"{name!r} is not a valid collection name.", "use letters, digits, '.', '_', '-' (max 64)")
        self.name = name
        self.root = Path(root)
        self.path = self.root / name
        self._cache: tuple[tuple[str, int], View] | None = None
        self._cache_lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return (self.path / MANIFEST).is_file()

    def info(self) -> CollectionInfo:
        """The manifest as it is now (one read of collection.json)."""
        try:
            raw = (self.path / MANIFEST).read_bytes()
        except FileNotFoundError:
            raise CollectionNotFoundError(
                f"There is no collection named {self.name!r}.",
                "ingest a PDF into it first (POST /v1/collections/NAME/documents, python -m engine ingest FILE "
                "--collection NAME, or the Documents page)",
            ) from None
        except OSError as exc:
            raise storage.storage_error(exc, f"Reading collection {self.name!r}", self.path) from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise CollectionError(
                f"The manifest of collection {self.name!r} is unreadable: {exc}",
                "restore collection.json from a backup, or delete the collection and ingest its documents again",
            ) from None
        return info_from_json(data, self.name)

    def _segment_files(self, stem: str) -> tuple[Path, Path]:
        return self.path / "segments" / f"{stem}.npy", self.path / "segments" / f"{stem}.jsonl"

    def _pages_file(self, stem: str) -> Path:
        return self.path / "segments" / f"{stem}.pages.json"

    def _read_file(self, path: Path, stem: str) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise _SegmentGone(stem) from None
        except OSError as exc:
            raise storage.storage_error(exc, f"Reading collection {self.name!r}", self.path) from None

    def _reading(self, use: Callable[[CollectionInfo], T], info: CollectionInfo | None = None) -> T:
        """``use(info)``, again with a newer manifest if a segment it names vanished meanwhile."""
        info = info if info is not None else self.info()
        for _ in range(READ_ATTEMPTS):
            try:
                return use(info)
            except _SegmentGone as gone:
                newer = self.info()
                if (newer.uid, newer.generation) == (info.uid, info.generation):
                    raise self._damaged(gone.stem) from None
                log.debug("segment %s of %s vanished; reading generation %d", gone.stem, self.name, newer.generation)
                info = newer
        raise ServiceBusyError(f"Collection {self.name!r} changed {READ_ATTEMPTS} times while it was being read.",
                               "try again")

    def _damaged(self, stem: str, writing: bool = False) -> CollectionError:
        """A file the manifest names is gone: every search reads all segments, every commit rebuilds the indexes
        from them, so both refuse the collection until the damaged document is deleted."""
        return CollectionError(
            f"A segment of collection {self.name!r} is missing ({stem.split('.', 1)[0]}): it cannot be searched or changed until "
            f"the damaged document is deleted.{' Nothing was changed.' if writing else ''}",
            f"python -m engine check-collection {self.name} names the document and the delete command that makes "
            "the others searchable again; then ingest that document again (or, with its file at hand, ingest it "
            "again with --force: its new segment replaces the missing one)",
        )

    def require_intact(self, info: CollectionInfo, replacing: str = "") -> None:
        """Refuse, before an ingest reads and embeds anything, a collection whose commit would refuse it: one
        whose manifest names a segment that is gone (the commit rebuilds the indexes from every segment), other
        than that of the document ``replacing`` names (ingesting it again with --force repairs the collection).
        The commit checks again under the lock; this only spares the work."""
        for record in info.documents:
            if record.doc_id != replacing and not all(path.is_file() for path in self._segment_files(record.segment)):
                raise self._damaged(record.segment, writing=True)

    def pages_of(self, doc_id: str) -> list[Page]:
        """The page texts every chunk offset of the document refers to."""
        def load(info: CollectionInfo) -> list[Page]:
            record = self._record(info, doc_id)
            raw = self._read_file(self._pages_file(record.segment), record.segment)
            try:
                return pages_from_json(raw)
            except (ValueError, TypeError) as exc:
                raise CollectionError(f"The pages of {record.name} are unreadable: {exc}",
                                      f"python -m engine check-collection {self.name} says what to do") from None
        return self._reading(load)

    def original_of(self, doc_id: str) -> Path | None:
        """The stored copy of the ingested file (for page images), if any."""
        record = self._record(self.info(), doc_id)
        matches = sorted((self.path / "files").glob(f"{record.doc_id}.*")) if (self.path / "files").is_dir() else []
        return matches[0] if matches else None

    def _listing_hint(self) -> str:
        return (f"the collection's listing shows its documents and their doc_ids (GET /v1/collections/{self.name}, "
                "python -m engine collections --json)")

    def _record(self, info: CollectionInfo, doc_id: str) -> DocumentRecord:
        record = info.document(doc_id)
        if record is None:
            raise DocumentNotFoundError(f"Collection {self.name!r} has no document {doc_id!r}.",
                                        self._listing_hint())
        return record

    def chunks_of(self, doc_id: str) -> tuple[np.ndarray, list[dict]]:
        return self._reading(lambda info: self._load_segment(self._record(info, doc_id).segment))

    def _load_segment(self, stem: str) -> tuple[np.ndarray, list[dict]]:
        vectors_file, chunks_file = self._segment_files(stem)
        vectors_raw = self._read_file(vectors_file, stem)
        chunks_raw = self._read_file(chunks_file, stem)
        try:
            vectors = np.load(io.BytesIO(vectors_raw), allow_pickle=False)
            chunks = chunks_from_jsonl(chunks_raw)
            if vectors.ndim != 2 or vectors.shape[0] != len(chunks):
                raise ValueError(f"{vectors.shape} vectors for {len(chunks)} chunks")
        except (ValueError, EOFError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise CollectionError(f"A segment of collection {self.name!r} is unreadable ({stem}): {exc}",
                                  f"python -m engine check-collection {self.name} says what to do") from None
        return vectors, chunks

    def _view(self, info: CollectionInfo) -> View:
        """This generation's memory-mapped segments and indexes (opened once per generation and process)."""
        with self._cache_lock:
            if self._cache is None or self._cache[0] != (info.uid, info.generation):
                try:
                    view = View(self.path, info, self._segment_files)
                    view.open_stored_indexes()
                except FileNotFoundError as gone:  # a writer retired it: _reading retries with a newer manifest
                    raise _SegmentGone(Path(gone.filename or "?").name) from None
                self._cache = ((info.uid, info.generation), view)
            return self._cache[1]

    def search(self, query_vector: np.ndarray | None = None, k: int = 5, documents: Sequence[str] | None = None,
               model: str | None = None, *, query_text: str | None = None, mode: str | None = None,
               exact: bool | None = None, ef: int | None = None, dense_weight: float | None = None,
               info: CollectionInfo | None = None, rescore: int | None = None) -> list[SearchHit]:
        """Top-k chunks for a query vector (dense), a query text (keyword) or both (hybrid).

        ``mode`` defaults to the collection's; ``exact`` forces exact dense search; ``ef`` is the HNSW
        search breadth and ``rescore`` the HNSW candidates per hit re-ranked exactly (both default: the
        collection's); ``dense_weight`` the dense share of the hybrid fusion (default: the collection's);
        ``info`` is a manifest the caller just read (else one read here)."""
        info = info if info is not None else self.info()
        require_same_model(info, self.name, model)
        if k < 1:
            raise InputError("k must be at least 1.", "ask for 1 or more hits", param="k")
        info, view = self._reading(lambda current: (current, self._view(current)), info)
        mode = resolve_mode(mode, view.config.mode, query_text is not None, query_vector is not None)
        if view.size == 0:
            return []
        wanted = None
        if documents:
            wanted = {d.doc_id for d in info.documents if d.doc_id in documents or d.name in documents}
            if not wanted:
                raise InputError(f"None of {list(documents)} is in collection {self.name!r}.",
                                 "the filter takes document names or doc_ids, which the collection's listing shows "
                                 "(GET /v1/collections/NAME, python -m engine collections --json)", param="documents")
        depth = k if mode != "hybrid" else max(k, CANDIDATES)
        rankings = {}
        if mode in ("dense", "hybrid"):
            query = np.asarray(query_vector, dtype=np.float32).reshape(-1)
            if query.shape[0] != info.dim:
                raise ModelMismatchError(f"The query has {query.shape[0]} dimensions, the collection {info.dim}.",
                                         "embed the query with the collection's model")
            query = query / max(float(np.linalg.norm(query)), 1e-12)
            rankings["dense"] = view.dense(query, depth, wanted, exact, ef, rescore)
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
        with contextlib.ExitStack() as stack:
            with storage.converted(f"Writing to collection {self.name!r}", self.root):
                self.root.mkdir(parents=True, exist_ok=True)
                stack.enter_context(locking.exclusive(self.root / f".{self.name}.lock"))
            self._remove_leftovers()
            yield

    def _remove_leftovers(self) -> None:
        """Under the lock: what killed writers left (temporary files, a folder half removed by drop)."""
        storage.remove_stale_temporaries(self.path, self.path / "segments", self.path / "files")
        for doomed in self.root.glob(f".{self.name}.dropped-*"):
            shutil.rmtree(doomed, ignore_errors=True)

    def _commit(self, before: CollectionInfo | None, after: CollectionInfo, files: storage.Transaction) -> CollectionInfo:
        after = replace(after, generation=after.generation + 1)
        try:
            indexes = derived_indexes.build(self.path, after, self._segment_files)
        except FileNotFoundError as gone:  # an older document's segment: the commit is rolled back
            raise self._damaged(Path(gone.filename or "?").name.split(".", 1)[0], writing=True) from None
        after = replace(after, indexes=indexes)
        files.commit(self.path / MANIFEST, info_to_json(after))  # from its rename on, the change stands
        try:
            self._collect_garbage(before, after)
            derived_indexes.collect_garbage(self.path, after, RETAIN_SECONDS)
        except Exception as exc:  # noqa: BLE001 - the change is stored; old files wait for the next commit
            log.warning("clean-up after a commit of %s failed: %s", self.name, exc)
        return after

    def _collect_garbage(self, before: CollectionInfo | None, after: CollectionInfo) -> None:
        """Start the retention clock of the segments this commit stopped naming; remove those whose time is up.

        The clock is the files' mtime: set when a commit retires them, or the time a killed writer
        wrote them (never named by a manifest at all)."""
        keep = {d.segment for d in after.documents}
        retired = {d.segment for d in before.documents} - keep if before is not None else set()
        now = time.time()
        segments = self.path / "segments"
        for file in segments.iterdir() if segments.is_dir() else ():
            match = SEGMENT_FILE.match(file.name)
            if match is None or match.group(1) in keep:
                continue
            try:
                if match.group(1) in retired:
                    os.utime(file, (now, now))
                elif now - file.stat().st_mtime > RETAIN_SECONDS:
                    file.unlink()
            except OSError as exc:  # a later commit tries again
                log.debug("segment cleanup of %s: %s", file.name, exc)
        originals = self.path / "files"
        documents = {d.doc_id for d in after.documents}
        for file in originals.iterdir() if originals.is_dir() else ():  # copies a killed writer stored
            with contextlib.suppress(OSError):
                if file.name.split(".", 1)[0] not in documents and now - file.stat().st_mtime > RETAIN_SECONDS:
                    file.unlink()

    def create(self, model: str, variant: str, dim: int, chunking: dict, search: dict | None = None) -> CollectionInfo:
        """Make the collection; one that exists already is returned as it is (add_document checks the fit).
        ``search``: its retrieval.SearchConfig as a dict (default mode, language, ANN options)."""
        config = SearchConfig.from_dict(search)
        check_language(config.language)  # an unsupported one would refuse every later commit: refused before any file
        with self._locked():
            if self.exists:
                return self.info()
            info = CollectionInfo(self.name, model, variant, dim, _now(), chunking=chunking, uid=uuid.uuid4().hex,
                                  search=config.to_dict())
            with storage.transaction(f"Creating collection {self.name!r}", self.root) as files:
                self.path.mkdir(exist_ok=True)
                return self._commit(None, info, files)

    def add_document(self, record: DocumentRecord, vectors: np.ndarray, chunks: Sequence[Chunk], model: str,
                     pages: Sequence[Page] = (), original: bytes | None = None, suffix: str = ".pdf",
                     variant: str | None = None) -> DocumentRecord:
        """Store one document's chunks, vectors, page texts and original file; replaces an earlier copy.

        ``model`` (and ``variant`` when given) must be the collection's, checked under the lock."""
        return self.add_documents([NewDocument(record, vectors, chunks, pages, original, suffix)], model, variant)[0]

    def add_documents(self, documents: Sequence[NewDocument], model: str,
                      variant: str | None = None) -> list[DocumentRecord]:
        """Store several documents in ONE commit (all or nothing: an import, a bulk load)."""
        if len({new.record.doc_id[:16] for new in documents}) != len(documents):  # [:16]: the segment stem
            raise InputError("The same document appears twice in one batch.",
                                  "give each document its own doc_id (its first 16 characters name its segment)")
        encoded = []
        for new in documents:
            try:  # the first 16 characters name the segment's files: what a parser let through stops here
                check_doc_id(new.record.doc_id)
            except ValueError as exc:
                raise InputError(f"{new.record.name}: {exc}.", "a document's doc_id is the SHA-256 of its bytes, "
                                 "as python -m engine ingest computes it") from None
            if new.vectors.ndim != 2 or new.vectors.shape[0] != len(new.chunks):
                raise InputError(f"{len(new.chunks)} chunks but {new.vectors.shape[0]} vectors for {new.record.name}.",
                                 "embed every chunk once: one vector per chunk, in chunk order")
            encoded.append(encoded_segment(new.record, new.chunks, new.pages))
        with self._locked():
            info = self.info()
            require_same_model(info, self.name, model, variant)
            for new in documents:
                if new.vectors.shape[1] != info.dim:
                    raise ModelMismatchError(f"Vectors have {new.vectors.shape[1]} dimensions; the collection {info.dim}.",
                                             f"embed with the collection's model, {info.model}")
            what = documents[0].record.name if len(documents) == 1 else f"{len(documents)} documents"
            with storage.transaction(f"Storing {what} in collection {self.name!r}", self.path) as files:
                (self.path / "segments").mkdir(exist_ok=True)
                records = [self._write_segment(info.generation + 1, new, data, files)
                           for new, data in zip(documents, encoded)]
                replaced = {r.doc_id for r in records}
                kept = tuple(d for d in info.documents if d.doc_id not in replaced)
                self._commit(info, replace(info, documents=kept + tuple(records)), files)
            return records

    def _write_segment(self, generation: int, new: NewDocument, encoded: tuple[bytes, bytes],
                       files: storage.Transaction) -> DocumentRecord:
        record = new.record
        stem = f"{record.doc_id[:16]}-g{generation}"
        vectors_file, chunks_file = self._segment_files(stem)
        buffer = io.BytesIO()
        np.save(buffer, unit_rows(new.vectors), allow_pickle=False)
        files.write(vectors_file, buffer.getvalue())
        files.write(chunks_file, encoded[0])
        files.write(self._pages_file(stem), encoded[1])
        if new.original is not None:
            suffix = new.suffix.lower() if SUFFIX.match(new.suffix.lower()) else ".bin"
            (self.path / "files").mkdir(exist_ok=True)
            files.write(self.path / "files" / f"{record.doc_id}{suffix}", new.original)
        return replace(record, segment=stem, chunks=len(new.chunks))

    def reindex(self) -> CollectionInfo:
        """Rebuild the keyword and ANN indexes from the segments (a new generation with the same documents)."""
        with self._locked():
            info = self.info()
            with storage.transaction(f"Reindexing collection {self.name!r}", self.path) as files:
                return self._commit(info, replace(info, indexes={}), files)

    def resolve_document(self, info: CollectionInfo, key: str) -> DocumentRecord:
        """The one document ``key`` names: its doc_id, its file name, or a doc_id prefix of at least 8 characters.
        A name or prefix two documents share is an InputError listing their doc_ids, never a guess."""
        exact = [d for d in info.documents if d.doc_id == key]
        named = exact or [d for d in info.documents if d.name == key]
        if not named and len(key) >= MIN_ID_PREFIX:
            named = [d for d in info.documents if d.doc_id.startswith(key.lower())]
        if len(named) > 1:
            ids = ", ".join(f"{d.doc_id} ({d.name}, {d.pages} pages, ingested {d.ingested_at})" for d in named)
            raise InputError(f"{len(named)} documents of collection {self.name!r} match {key!r}: {ids}.",
                             f"name one by its doc_id (or its first {MIN_ID_PREFIX}+ characters), e.g. "
                             f"{named[0].doc_id[:12]} (DELETE /v1/collections/{self.name}/documents/"
                             f"{named[0].doc_id[:12]}, python -m engine delete --collection {self.name} "
                             f"{named[0].doc_id[:12]})")
        if not named:
            raise DocumentNotFoundError(f"Collection {self.name!r} has no document {key!r}.",
                                        self._listing_hint())
        return named[0]

    def delete_document(self, doc_id_or_name: str) -> DocumentRecord:
        """Delete the one document ``doc_id_or_name`` names (resolve_document); an ambiguous name deletes nothing."""
        with self._locked():
            info = self.info()
            record = self.resolve_document(info, doc_id_or_name)
            with storage.transaction(f"Deleting {record.name} from collection {self.name!r}", self.path) as files:
                self._commit(info, replace(info, documents=tuple(d for d in info.documents if d.doc_id != record.doc_id)),
                             files)
            for file in (self.path / "files").glob(f"{record.doc_id}.*") if (self.path / "files").is_dir() else ():
                with contextlib.suppress(OSError):
                    file.unlink()
            return record

    def drop(self) -> None:
        """Delete the whole collection, under the lock: an ingest waiting for it then finds no collection."""
        with self._locked():
            if not self.exists:
                raise CollectionNotFoundError(f"There is no collection named {self.name!r}.",
                                              "GET /v1/collections and python -m engine collections list them")
            with storage.converted(f"Deleting collection {self.name!r}", self.root):
                doomed = self.root / f".{self.name}.dropped-{uuid.uuid4().hex[:12]}"
                os.replace(self.path, doomed)  # readers see "no collection", never half a folder
                shutil.rmtree(doomed)
        with self._cache_lock:
            self._cache = None

    # -- checking -----------------------------------------------------------------------------------
    def check(self) -> CheckReport:
        """Read every file the manifest names; report what is missing or unreadable and what to do."""
        from engine.collection_check import check_collection

        return check_collection(self)


@dataclass(frozen=True)
class BrokenCollection:
    """A folder under collections/ that should be a collection but cannot be read."""

    name: str
    error: StudioError


def scan_collections(root: Path) -> tuple[list[CollectionInfo], list[BrokenCollection]]:
    """The readable collections, and the broken ones with their error (a listing never fails on one)."""
    found, broken = [], []
    root = Path(root)
    with storage.converted("Listing collections", root):
        folders = sorted(root.iterdir()) if root.is_dir() else []
    for folder in folders:
        if not NAME.match(folder.name) or not folder.is_dir():
            continue
        if not (folder / MANIFEST).is_file():
            if (folder / "segments").is_dir():
                broken.append(BrokenCollection(folder.name, CollectionError(
                    f"Collection {folder.name!r} has segments but no collection.json.",
                    "restore collection.json from a backup, or delete the folder and ingest again")))
            continue
        try:
            found.append(Collection(root, folder.name).info())
        except StudioError as exc:
            log.warning("collection %s is unreadable: %s", folder.name, exc.message)
            broken.append(BrokenCollection(folder.name, exc))
    return found, broken


def list_collections(root: Path) -> list[CollectionInfo]:
    """The readable collections (scan_collections also names the broken ones)."""
    return scan_collections(root)[0]
