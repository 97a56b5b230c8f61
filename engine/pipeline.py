"""PDF -> pages (text layer / OCR) -> chunks -> vectors -> a persisted collection -> search.

Every step reports progress through one callback; a file that cannot be ingested is reported with a
user-facing reason and leaves the collection exactly as it was (nothing is written until the
document's vectors exist, and then in one atomic commit).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.chunking import DEFAULT_OVERLAP, DEFAULT_SIZE, Chunk, ChunkingOptions, chunk_pages
from engine.collection import Collection, DocumentRecord, SearchHit, _now
from engine.collection_format import CollectionInfo, require_same_model
from engine.errors import (
    CollectionNotFoundError,
    ConfigError,
    EmptyDocumentError,
    InputError,
    StorageError,
    StudioError,
)
from engine.ingest_overlap import extract_overlapped
from engine.page_records import Page
from engine.running_lines import strip_running_lines
from engine.studio import Studio

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressEvent:
    stage: str  # open, page, chunk, embed, store, done, skipped, error
    file: str
    done: int = 0
    total: int = 0
    message: str = ""


EventProgress = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class IngestOptions:
    ocr: str = "auto"
    password: str | None = None
    model: str | None = None  # only for a new collection; an existing one keeps its model
    variant: str | None = None
    provider: str | None = None
    chunk_size: int = DEFAULT_SIZE  # measured: see engine/chunking.py
    chunk_overlap: int = DEFAULT_OVERLAP
    headings_in_embedding: bool = False
    force: bool = False  # re-ingest a file that is already in the collection
    language: str | None = None  # keyword-search language of a NEW collection (default STUDIO_SEARCH_LANGUAGE)
    store: str | None = None  # embedded or qdrant, for a NEW collection (default STUDIO_VECTOR_STORE)


@dataclass(frozen=True)
class IngestResult:
    file: str
    ok: bool
    doc_id: str = ""
    pages: int = 0
    chunks: int = 0
    ocr_pages: int = 0
    skipped: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    error: dict[str, str] | None = None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _quiet(_: ProgressEvent) -> None:
    pass


def collection(studio: Studio, name: str, store: str | None = None) -> Collection:
    """The Studio's Collection object for ``name`` (kept for callers of the older module function);
    ``store``: embedded or qdrant for a NEW collection (default STUDIO_VECTOR_STORE)."""
    return studio.collection(name, store)


def check_overlap(options: IngestOptions) -> None:
    """An overlap not below the chunk size asked for is the caller's mistake: it was lowered without a word."""
    if not 0 <= options.chunk_overlap < options.chunk_size:
        raise InputError(f"The overlap ({options.chunk_overlap} tokens) must be smaller than the chunk size "
                         f"({options.chunk_size} tokens).",
                         "the overlap is what two neighbouring chunks share, e.g. a size of 128 with an overlap of 16",
                         param="chunk_overlap")


def chunking_options(embedder, options: IngestOptions) -> ChunkingOptions:
    """The chunking an ingest runs: the size asked for, lowered to what the model reads (the overlap with it)."""
    check_overlap(options)
    limit = embedder.tokenizer.max_seq_length - embedder.tokenizer.special_tokens_count
    prompt = embedder.prompt_for("document")
    if prompt:
        limit -= embedder.tokenizer.count_tokens(prompt)
    size, overlap = min(options.chunk_size, limit), options.chunk_overlap
    if size < options.chunk_size:  # the model reads no more: a longer chunk would be cut, its end never embedded
        overlap = overlap * size // options.chunk_size  # the same share of the chunk (1024/300 was 254/253)
        log.warning("chunk size %d is over what %s reads in one text (%d tokens): chunks of %d tokens with an overlap "
                    "of %d (the same share as %d of %d)", options.chunk_size, embedder.spec.name, limit, size, overlap,
                    options.chunk_overlap, options.chunk_size)
    return ChunkingOptions(size=size, overlap=overlap, max_tokens=limit,
                           headings_in_embedding=options.headings_in_embedding)


def chunk_document(embedder, pages: Sequence[Page], options: ChunkingOptions) -> list[Chunk]:
    tokenizer = embedder.tokenizer
    return chunk_pages(pages, tokenizer.count_tokens, tokenizer.token_offsets, options, tokenizer.count_tokens_many)


def check_options(options: IngestOptions, settings) -> None:
    """Options that hold for every file, checked before any file is read: an overlap not below the chunk size, an
    unknown OCR engine or keyword-search language is the caller's mistake (InputError), not a failure of each file,
    and nothing is created for it."""
    from engine.keyword_index import check_language
    from engine.ocr import load_backends
    from engine.page_extraction import AUTO, TEXT

    check_overlap(options)
    engines = [AUTO, TEXT, *sorted(load_backends())]
    if options.ocr not in engines:
        raise InputError(f"Unknown OCR engine {options.ocr!r}.", f"choose one of: {', '.join(engines)}", param="ocr")
    if options.language is not None:
        check_language(options.language)


def _new_collection_search(settings, options: IngestOptions) -> dict:
    """The search settings of a collection this ingest creates; a STUDIO_SEARCH_LANGUAGE no index supports is
    refused before the file is read (ConfigError: the setting, not the request, is wrong)."""
    from engine.keyword_index import LANGUAGES

    search = settings.search_defaults(options.language)
    if search["language"] not in LANGUAGES:
        raise ConfigError(f"STUDIO_SEARCH_LANGUAGE={search['language']!r} is not a supported keyword-search language.",
                          f"set it to one of {', '.join(sorted(LANGUAGES))}, or pass a language for the new collection")
    return search


def _open_or_create(studio: Studio, name: str, options: IngestOptions) -> tuple[Collection, CollectionInfo | None, object]:
    """The collection, its manifest (None while it does not exist yet) and the embedder that fits it."""
    target = studio.collection(name, options.store)
    try:
        info = target.info()
    except CollectionNotFoundError:
        return target, None, studio.embedder(options.model, options.variant, options.provider)
    require_same_model(info, name, options.model or None, options.variant or None)
    return target, info, studio.embedder(info.model, info.variant, options.provider)


def _displayable(name: str) -> str:
    """A file name as valid Unicode: bytes that were not UTF-8 (surrogate escapes) become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def ingest(studio: Studio, collection_name: str, source: Path | bytes, name: str | None = None,
           options: IngestOptions = IngestOptions(), progress: EventProgress = _quiet) -> IngestResult:
    """Ingest one file; a StudioError is raised for the caller to report (nothing is stored then)."""
    from engine.documents import Limits, open_document, read_source
    from engine.page_extraction import extract_pages

    started = time.perf_counter()
    settings = studio.settings
    check_options(options, settings)
    limits = Limits.from_settings(settings)
    data, label = read_source(source, name, limits)
    label = _displayable(label)
    target, info, embedder = _open_or_create(studio, collection_name, options)
    search_settings = _new_collection_search(settings, options) if info is None else None
    progress(ProgressEvent("open", label, message="opening"))
    doc_id = hashlib.sha256(data).hexdigest()
    if info is not None and not options.force:
        existing = info.document(doc_id)
        if existing is not None:
            progress(ProgressEvent("skipped", label, message="already in the collection"))
            return IngestResult(label, True, doc_id, existing.pages, existing.chunks, existing.ocr_pages, skipped=True,
                                seconds={"total": round(time.perf_counter() - started, 3)})
    if info is not None:  # a damaged collection is refused before the file is read and embedded
        target.require_intact(info, replacing=doc_id)
    chunking = chunking_options(embedder, options)

    def chunk_texts(some: list[Page]) -> list[str]:
        return [c.embedding_text(chunking.headings_in_embedding) for c in chunk_document(embedder, some, chunking)]

    with open_document(data, name=label, password=options.password, limits=limits, sha256=doc_id) as document:
        total_pages = document.info.page_count

        def on_page(page: Page, count: int) -> None:
            progress(ProgressEvent("page", label, count, total_pages,
                                   f"page {page.number}: {page.source}{' (OCR)' if page.ocr_used else ''}"))

        # the session is compiled and the chunks of the pages already read are embedded while the next pages are read
        overlapped = extract_overlapped(extract_pages(document, engine=options.ocr, settings=settings), chunk_texts,
                                        embedder.embed_documents, on_page, prepare=embedder.session)
        kind = document.info.kind
    pages = strip_running_lines(overlapped.pages)
    extracted = time.perf_counter()
    chunks = chunk_document(embedder, pages, chunking)
    chunked = time.perf_counter()
    if not chunks:
        raise EmptyDocumentError(f"{label} has no text to index (blank pages, or images without OCR).",
                                 "choose an OCR engine for scanned documents" if options.ocr == "text" else
                                 f"the pages look blank: no text layer, and nothing the {options.ocr} engine could read")
    progress(ProgressEvent("chunk", label, len(chunks), len(chunks), f"{len(chunks)} chunks"))

    def batch_progress(done: int, total: int) -> None:
        progress(ProgressEvent("embed", label, done, total, f"embedded {done}/{total} chunks"))

    vectors = overlapped.vectors([c.embedding_text(chunking.headings_in_embedding) for c in chunks],
                                 lambda texts: embedder.embed_documents(texts, progress=batch_progress))
    embedded = time.perf_counter()
    if info is None:  # a collection made meanwhile by another writer is checked by add_document, under its lock
        target.create(embedder.spec.name, embedder.variant, embedder.dim,
                      {"size": chunking.size, "overlap": chunking.overlap, "headings": chunking.headings_in_embedding},
                      search=search_settings)
    record = DocumentRecord(
        doc_id=doc_id, name=label, pages=len(pages), chunks=len(chunks), ocr_engine=options.ocr,
        ocr_pages=sum(p.ocr_used for p in pages), size_bytes=len(data), ingested_at=_now(), segment="",
        notes=tuple(sorted({n for p in pages for n in p.notes}))[:20],
    )
    progress(ProgressEvent("store", label, message="storing"))
    suffix = ".pdf" if kind == "pdf" else f".{kind}"
    record = target.add_document(record, vectors, chunks, embedder.spec.name, pages=pages, original=data, suffix=suffix,
                                 variant=embedder.variant)
    stored = time.perf_counter()
    seconds = {"extract": extracted - started, "chunk": chunked - extracted, "embed": embedded - chunked,
               "store": stored - embedded, "total": stored - started,
               "embed_during_extract": overlapped.embed_seconds}
    progress(ProgressEvent("done", label, len(pages), len(pages), f"{len(chunks)} chunks from {len(pages)} pages"))
    log.info("ingested %s into %s: %d pages, %d chunks in %.2fs", label, collection_name, len(pages), len(chunks),
             seconds["total"])
    return IngestResult(label, True, doc_id, len(pages), len(chunks), record.ocr_pages,
                        seconds={k: round(v, 3) for k, v in seconds.items()})


def _unconverted(exc: OSError, name: str) -> StudioError:
    """Collections convert their own OSErrors; one from elsewhere is most likely reading the source file."""
    return StorageError(f"{name} could not be read: {exc.strerror or type(exc).__name__}.",
                        "check that the file exists and that this user may read it")


def ingest_many(studio: Studio, collection_name: str, sources: Sequence[Path | tuple[str, bytes]],
                options: IngestOptions = IngestOptions(), progress: EventProgress = _quiet) -> list[IngestResult]:
    """Ingest several files; one that fails is reported with its reason and the others go on. What is wrong for
    every file raises before any file is read: the options (check_options), a model or variant that is not the
    existing collection's, or one that cannot run (unknown, not converted), a store that is not configured."""
    check_options(options, studio.settings)
    _, info, _ = _open_or_create(studio, collection_name, options)
    if info is None:
        _new_collection_search(studio.settings, options)
    results = []
    for source in sources:
        name, data = (source if isinstance(source, tuple) else (Path(source).name, Path(source)))
        try:
            results.append(ingest(studio, collection_name, data, name, options, progress))
        except (StudioError, OSError) as exc:  # an OSError not converted where it arose still names the file
            error = exc if isinstance(exc, StudioError) else _unconverted(exc, name)
            log.warning("could not ingest %s: %s", name, error.message)
            progress(ProgressEvent("error", name, message=error.message))
            results.append(IngestResult(name, False, error=error.to_dict()))
        except Exception as exc:  # noqa: BLE001 - a bug on one file: the files stored before and after still count
            log.exception("ingesting %s failed", name)
            progress(ProgressEvent("error", name, message="failed"))
            results.append(IngestResult(name, False, error=internal_error(name, exc)))
    return results


def internal_error(name: str, exc: Exception) -> dict[str, str]:
    """The result's error for a file that failed on a bug (details in the log, not in the answer)."""
    return {"error": "internal_error", "message": f"{name} could not be ingested ({type(exc).__name__}).",
            "hint": "the details are in the log; please report it"}


def rechunk(studio: Studio, collection_name: str, doc_id: str, options: IngestOptions,
            progress: EventProgress = _quiet) -> IngestResult:
    """Re-chunk a stored document with new size/overlap and replace its chunks (no re-extraction)."""
    started = time.perf_counter()
    target = studio.collection(collection_name)
    info = target.info()
    record = info.document(doc_id)
    if record is None:
        raise InputError(f"Collection {collection_name!r} has no document {doc_id!r}.",
                         f"the collection's listing shows its documents and their doc_ids (GET /v1/collections/"
                         f"{collection_name}, python -m engine collections --json)")
    embedder = studio.embedder(info.model, info.variant, options.provider)
    pages = target.pages_of(record.doc_id)
    chunking = chunking_options(embedder, options)
    chunks = chunk_document(embedder, pages, chunking)
    vectors = embedder.embed_documents([c.embedding_text(chunking.headings_in_embedding) for c in chunks],
                                       progress=lambda d, t: progress(ProgressEvent("embed", record.name, d, t)))
    original = target.original_of(record.doc_id)
    target.add_document(replace(record, ingested_at=_now()), vectors, chunks, info.model, pages=pages,
                        original=original.read_bytes() if original else None,
                        suffix=original.suffix if original else ".pdf", variant=info.variant)
    return IngestResult(record.name, True, record.doc_id, len(pages), len(chunks), record.ocr_pages,
                        seconds={"total": round(time.perf_counter() - started, 3)})


@dataclass(frozen=True)
class SearchResult:
    hits: list[SearchHit]
    seconds: dict[str, float]
    model: str
    provider: str  # "none" when nothing was embedded (keyword mode, or a query vector)
    mode: str = "dense"


def search(studio: Studio, collection_name: str, query: str | None, k: int = 5, documents: Sequence[str] | None = None,
           model: str | None = None, provider: str | None = None, *, mode: str | None = None,
           vector: Sequence[float] | None = None, exact: bool | None = None) -> SearchResult:
    """Search by query text (embedded with the collection's model unless the mode is keyword) or by a
    ready query ``vector`` (checked against the collection's dimension; dense only)."""
    from engine.fusion import resolve_mode
    from engine.retrieval import SearchConfig

    if vector is None and (not query or not query.strip()):
        raise InputError("The query is empty.", "type a question or some keywords to search for", param="query")
    if vector is not None and query:
        raise InputError("Give either a query text or a query vector, not both.",
                         "drop the vector to search by text, or the query to search by the vector", param="vector")
    target = studio.collection(collection_name)
    info = target.info()  # the one read of collection.json for this query
    require_same_model(info, collection_name, model)
    mode = resolve_mode(mode, SearchConfig.from_dict(info.search).mode, vector is None, True)
    started = time.perf_counter()
    provider_used = "none"
    if vector is not None:
        query_vector = _checked_vector(vector, info.dim)
    elif mode == "keyword":
        query_vector = None
    else:
        embedder = studio.embedder(info.model, info.variant, provider)
        query_vector = embedder.embed_queries([query])[0]
        provider_used = embedder.session().active_provider
    embedded = time.perf_counter()
    hits = target.search(query_vector, k=k, documents=documents, query_text=query if vector is None else None,
                         mode=mode, exact=exact, info=info)
    done = time.perf_counter()
    return SearchResult(hits, {"embed": embedded - started, "search": done - embedded, "total": done - started},
                        info.model, provider_used, mode)


def _checked_vector(vector: Sequence[float], dim: int):
    import numpy as np

    try:
        array = np.asarray(vector, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise InputError("The query vector must be a list of numbers.",
                         "send it as a list of floats, one per dimension of the collection's model",
                         param="vector") from None
    if array.shape[0] != dim:  # the caller's vector, not the collection's model, is wrong: a 400 like the others
        raise InputError(f"The query vector has {array.shape[0]} dimensions; the collection has {dim}.",
                         "embed the query with the collection's model", param="vector")
    if not np.isfinite(array).all() or not np.any(array):
        raise InputError("The query vector must be finite and not all zeros.",
                         "embed the query with the collection's model", param="vector")
    return array
