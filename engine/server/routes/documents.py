"""``POST /v1/ocr`` (a PDF or image -> page texts with the engine of choice) and the collection
routes: list, inspect, ingest uploaded PDFs, search (text or vector), export/import (parquet), delete.
Uploads may be as large as the engine's own limit (STUDIO_MAX_UPLOAD_MB), checked while each file is read; the
work runs in a worker thread so the event loop keeps answering embeddings requests meanwhile.

An ingest of several files answers 200 with one result per file, like the CLI: a file that cannot be
ingested (empty, too large, not a PDF) is reported in ``results`` with its reason and the others are
still ingested; ``failed`` counts them. Only a request that is wrong as a whole (an invalid collection
name, an unknown option or form field, an overlap not below the chunk size) is a 4xx. The ingest form takes
what the CLI's ``ingest`` does: ocr, password, model, variant, chunk_size, chunk_overlap, headings, force, and
for a new collection language and store. Stored document names are the upload's base name."""

from __future__ import annotations

import shutil
import time
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from engine.chunking import DEFAULT_OVERLAP, DEFAULT_SIZE
from engine.errors import EmptyDocumentError, RequestError, StudioError
from engine.server.state import ServerState, get_state
from engine.textcheck import check_encodable

router = APIRouter(tags=["documents"])
# the routes that take a file: the only ones allowed STUDIO_MAX_UPLOAD_MB instead of the JSON body limit (an import
# had the latter: ~6,000 chunks filled its 16 MB; a 1,457-chunk export is 3.7 MB)
UPLOAD_PATHS = r"/(v1/)?ocr|/v1/collections/[^/]+/(documents|import)"
UPLOAD_CHUNK = 1024 * 1024
MAX_FILENAME_CHARS = 255


def _ocr(studio, data: bytes, name: str, engine: str, pages: str | None, password: str | None) -> dict:
    from engine.documents import Limits, open_document
    from engine.page_extraction import extract_pages, parse_page_spec

    started = time.perf_counter()
    with open_document(data, name=name, password=password, limits=Limits.from_settings(studio.settings)) as document:
        selected = parse_page_spec(pages, document.info.page_count)
        extracted = [
            {"number": p.number, "source": p.source, "ocr_used": p.ocr_used, "degraded": p.degraded,
             "seconds": round(p.seconds, 3), "notes": list(p.notes), "text": p.text}
            for p in extract_pages(document, engine=engine, pages=selected)
        ]
        info = document.info
    return {"document": info.name, "sha256": info.sha256, "page_count": info.page_count, "engine": engine,
            "pages": extracted, "seconds": round(time.perf_counter() - started, 3)}


def upload_name(filename: str | None, fallback: str = "upload.pdf") -> str:
    """The base name of an upload's file name: a client may send ``/abs/path/evil2.pdf`` or
    ``C:\\docs\\a.pdf``; the collection stores ``evil2.pdf`` / ``a.pdf``, so delete-by-name works."""
    name = (filename or "").replace("\x00", "").strip()
    name = PureWindowsPath(PurePosixPath(name).name).name.strip()
    if name in ("", ".", ".."):
        return fallback
    return name[:MAX_FILENAME_CHARS]


async def read_upload(upload: UploadFile, max_bytes: int) -> tuple[str, bytes]:
    """The upload's base name and bytes, read in chunks and refused (DocumentLimitError) as soon as more
    than ``max_bytes`` arrive; an empty file is an EmptyDocumentError naming it."""
    from engine.documents import size_limit_error

    name = upload_name(upload.filename)
    parts, total = [], 0
    while True:
        part = await upload.read(min(UPLOAD_CHUNK, max_bytes + 1 - total))
        if not part:
            break
        total += len(part)
        if total > max_bytes:
            raise size_limit_error(name, max_bytes)
        parts.append(part)
    if not total:
        raise EmptyDocumentError(f"{name} is empty (0 bytes).", "the upload was cut off; send the file again")
    return name, b"".join(parts)


INGEST_FIELDS = ("files", "ocr", "password", "model", "variant", "chunk_size", "chunk_overlap", "headings", "force",
                 "language", "store")


def check_form_fields(sent: object, known: tuple[str, ...] = INGEST_FIELDS) -> None:
    """A form field the route does not take is a 400 naming it (``chunk_sise`` was ignored, the ingest ran with
    the default), before any file is read."""
    unknown = sorted(set(sent) - set(known))
    if unknown:
        raise RequestError(f"Unknown form field {unknown[0]!r}.", unknown[0], f"the fields are: {', '.join(known)}")


@router.post("/v1/ocr")
@router.post("/ocr", include_in_schema=False)
async def ocr(request: Request, file: UploadFile = File(...), engine: str = Form("auto"), pages: str | None = Form(None),
              password: str | None = Form(None), state: ServerState = Depends(get_state)) -> dict:
    check_form_fields((await request.form()).keys(), ("file", "engine", "pages", "password"))
    name, data = await read_upload(file, state.studio.settings.max_upload_bytes)
    return await run_in_threadpool(_ocr, state.studio, data, name, engine, pages, password)


def _collection_info(info) -> dict:
    return {"name": info.name, "model": info.model, "variant": info.variant, "dim": info.dim,
            "created_at": info.created_at, "chunks": info.chunk_count,
            "language": info.search.get("language"), "store": info.store.get("kind", "embedded"),
            "documents": [{"doc_id": d.doc_id, "name": d.name, "pages": d.pages, "chunks": d.chunks,
                           "ocr_engine": d.ocr_engine, "ocr_pages": d.ocr_pages, "ingested_at": d.ingested_at}
                          for d in info.documents]}


@router.get("/v1/collections")
async def list_all(state: ServerState = Depends(get_state)) -> dict:
    """Every collection; one that cannot be read is listed with ``broken: true`` and its error."""
    from engine.collection import scan_collections

    infos, broken = await run_in_threadpool(scan_collections, state.studio.settings.collections_dir)
    return {"object": "list", "data": [_collection_info(i) for i in infos]
            + [{"name": b.name, "broken": True, "error": b.error.to_dict(), "documents": []} for b in broken]}


@router.get("/v1/collections/{name}")
async def get_one(name: str, state: ServerState = Depends(get_state)) -> dict:
    return _collection_info(await run_in_threadpool(lambda: state.studio.collection(name).info()))


@router.post("/v1/collections/{name}/documents")
async def ingest_documents(request: Request, name: str, files: list[UploadFile] = File(...), ocr: str = Form("auto"),
                          password: str | None = Form(None), model: str | None = Form(None),
                          variant: str | None = Form(None, description="variant of a new collection"),
                          chunk_size: int = Form(DEFAULT_SIZE, ge=8, le=8192),
                          chunk_overlap: int = Form(DEFAULT_OVERLAP, ge=0, le=8191),
                          headings: bool = Form(False, description="prepend each chunk's heading path for embedding"),
                          force: bool = Form(False),
                          language: str | None = Form(None, description="keyword-search language of a new collection"),
                          store: Literal["embedded", "qdrant"] | None = Form(None, description="store of a new collection"),
                          state: ServerState = Depends(get_state)) -> dict:
    from engine.pipeline import IngestOptions, IngestResult, collection, ingest_many

    check_form_fields((await request.form()).keys())
    if chunk_overlap >= chunk_size:
        raise RequestError(f"chunk_overlap {chunk_overlap} must be smaller than chunk_size {chunk_size}.",
                           "chunk_overlap", "lower chunk_overlap or raise chunk_size")
    collection(state.studio, name)  # the name first: '.x' is a 400 before any file is read
    limit = state.studio.settings.max_upload_bytes
    uploads, refused = [], {}
    for position, upload in enumerate(files):
        try:
            uploads.append(await read_upload(upload, limit))
        except StudioError as exc:  # empty or too large: reported in its place, the other files go on
            refused[position] = IngestResult(upload_name(upload.filename), False, error=exc.to_dict())
    options = IngestOptions(ocr=ocr, password=password, model=model, variant=variant, chunk_size=chunk_size,
                            chunk_overlap=chunk_overlap, headings_in_embedding=headings, force=force,
                            provider=state.provider, language=language, store=store)
    ingested = iter(await run_in_threadpool(ingest_many, state.studio, name, uploads, options) if uploads else [])
    results = [refused[i] if i in refused else next(ingested) for i in range(len(files))]
    return {"collection": name, "ingested": sum(r.ok for r in results), "failed": sum(not r.ok for r in results),
            "results": [r.to_dict() for r in results]}


class SearchBody(BaseModel):
    """A query text, or a query vector (``vector``, of the collection's dimension) for dense search."""

    # strict: true is not 1 and "12" is not 12 at the HTTP boundary; a field it does not know ("top_k", "q") is an
    # error naming it, where it was ignored: "top_k": 1 gave 5 hits, "q" read as an empty query
    model_config = ConfigDict(strict=True, extra="forbid")

    query: str | None = Field(None, min_length=1, max_length=10_000)
    vector: list[float] | None = Field(None, min_length=1, max_length=65_536)
    k: int = Field(5, ge=1, le=1000)
    documents: list[Annotated[str, Field(max_length=512)]] | None = Field(
        None, max_length=1000, description="document names or ids to search in")
    mode: Literal["dense", "keyword", "hybrid"] | None = None  # default: the collection's
    exact: bool = False  # exact dense search even where the collection has an ANN index


@router.post("/v1/collections/{name}/search")
async def search_collection(name: str, body: SearchBody, state: ServerState = Depends(get_state)) -> dict:
    from engine.pipeline import search

    if body.vector is None and not (body.query or "").strip():
        raise RequestError("The query is empty.", "query", "send a non-empty 'query' or a 'vector'")
    if body.query is not None:
        check_encodable(body.query, "query", param="query")
    result = await run_in_threadpool(lambda: search(state.studio, name, body.query, body.k, body.documents,
                                                    provider=state.provider, mode=body.mode, vector=body.vector,
                                                    exact=body.exact or None))
    return {"collection": name, "model": result.model, "provider": result.provider, "mode": result.mode,
            "seconds": {k: round(v, 4) for k, v in result.seconds.items()},
            "hits": [hit.to_dict() for hit in result.hits]}


@router.get("/v1/collections/{name}/export")
async def export_parquet(name: str, state: ServerState = Depends(get_state)) -> FileResponse:
    """The collection as a parquet file (engine/transfer.py), streamed from a temporary file."""
    import tempfile

    from engine.pipeline import collection
    from engine.transfer import export_collection

    folder = Path(tempfile.mkdtemp(prefix="studio-export-"))
    target = folder / f"{name}.parquet"
    try:
        await run_in_threadpool(export_collection, collection(state.studio, name), target)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(target, media_type="application/vnd.apache.parquet", filename=target.name,
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))


@router.post("/v1/collections/{name}/import")
async def import_parquet(request: Request, name: str, file: UploadFile = File(...),
                         state: ServerState = Depends(get_state)) -> dict:
    """Load an export into the collection (created if new): validated whole, stored in one commit. Its one field is
    ``file``: another is a 400 naming it, as on the other upload routes (it was ignored)."""
    import tempfile

    from engine.pipeline import collection
    from engine.transfer import import_collection, known_models

    check_form_fields((await request.form()).keys(), ("file",))
    _, data = await read_upload(file, state.studio.settings.max_upload_bytes)
    label = upload_name(file.filename, "upload.parquet")
    with tempfile.TemporaryDirectory(prefix="studio-import-") as folder:  # named as uploaded: errors name the file
        path = Path(folder) / label
        path.write_bytes(data)
        result = await run_in_threadpool(import_collection, collection(state.studio, name), path,
                                         known_models(state.studio))
    return result.to_dict() | {"file": label}


@router.delete("/v1/collections/{name}/documents/{document}")
async def delete_document(name: str, document: str, state: ServerState = Depends(get_state)) -> dict:
    record = await run_in_threadpool(lambda: state.studio.collection(name).delete_document(document))
    return {"deleted": record.name, "doc_id": record.doc_id}


@router.delete("/v1/collections/{name}")
async def drop(name: str, state: ServerState = Depends(get_state)) -> dict:
    await run_in_threadpool(lambda: state.studio.collection(name).drop())
    return {"deleted": name}
