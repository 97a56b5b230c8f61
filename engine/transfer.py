"""Collections out and in: one parquet file, one row per chunk.

Columns: ``vector`` (fixed-size list of float32, the collection's dimension), ``text``, ``document``
(file name), ``doc_id``, ``page`` (1-based), ``start``/``end`` (offsets into the page text),
``heading_path``, ``chunk_index``, ``tokens``; on the first row of each document ``document_record``
and ``document_pages`` (JSON: its record and page texts, so offsets, the Chunks page and highlighting
work after an import). The schema metadata ``studio`` holds the model, variant, dimension, chunking and
search settings. Stored original files (page images) are not exported.

An import validates the whole file (model and dimension against the target, every row's vector,
offsets and fields, every document record and page as strictly as a manifest; a doc_id is a SHA-256
digest, since it names the segment files) before anything is written, then stores all documents in one commit, which
builds the keyword and ANN indexes: all or nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine import storage
from engine.chunking import Chunk
from engine.collection import Collection, NewDocument
from engine.collection_format import page_from_dict, record_from_dict
from engine.errors import InputError, ModelMismatchError, VariantMismatchError
from engine.keyword_index import LANGUAGES
from engine.manifest import VARIANTS
from engine.retrieval import SearchConfig
from engine.textcheck import clip

log = logging.getLogger(__name__)
FORMAT = 1
MIN_DECODED_BYTES = 256 << 20  # what any export may decode to, however small the file
DECODED_RATIO = 20  # and up to this many times the file's size
BATCH_ROWS = 64  # rows decoded at a time while the total is checked
MAX_HEADING_DEPTH = 16  # titles in one chunk's heading path (the chunker's levels stop at 6)
MAX_HEADING_CHARS = 1000  # characters in one title (the chunker's stop at 100)
PY_OBJECT_BYTES = 56  # a list value read into Python: its object and the list's pointer to it
# the hint of a file that fails the checks of what an export writes
EXPORTS = "GET /v1/collections/NAME/export, python -m engine export --collection NAME FILE.parquet"
DAMAGED = f"the file is not as the studio's export wrote it: export the collection again ({EXPORTS})"
COLUMNS = ("vector", "text", "document", "doc_id", "page", "start", "end", "heading_path", "chunk_index", "tokens",
           "document_record", "document_pages")


def _schema(dim: int, meta: dict):
    import pyarrow as pa

    return pa.schema([
        ("vector", pa.list_(pa.float32(), dim)), ("text", pa.string()), ("document", pa.string()),
        ("doc_id", pa.string()), ("page", pa.int32()), ("start", pa.int32()), ("end", pa.int32()),
        ("heading_path", pa.list_(pa.string())), ("chunk_index", pa.int32()), ("tokens", pa.int32()),
        ("document_record", pa.string()), ("document_pages", pa.string()),
    ], metadata={"studio": json.dumps(meta)})


@dataclass(frozen=True)
class TransferResult:
    collection: str
    file: str
    documents: int
    chunks: int

    def to_dict(self) -> dict:
        return asdict(self)


def export_collection(collection: Collection, path: Path) -> TransferResult:
    """Write every chunk of the collection (documents in collection order) to ``path`` (parquet): through a
    temporary file renamed at the end, so a failed export leaves nothing; a folder as ``path`` is an InputError."""
    path = check_export_path(path)
    info = collection.info()
    meta = {"format": FORMAT, "model": info.model, "variant": info.variant, "dim": info.dim,
            "chunking": info.chunking, "search": info.search, "collection": info.name}
    schema = _schema(info.dim, meta)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    chunks_total = 0
    try:
        with storage.converted(f"Exporting collection {info.name!r}", path.parent):
            path.parent.mkdir(parents=True, exist_ok=True)
            chunks_total = _write_export(collection, info, schema, tmp)
            tmp.replace(path)
    finally:
        with contextlib.suppress(OSError):  # a failed export leaves neither a partial file nor its temporary
            tmp.unlink()
    log.info("exported %s: %d documents, %d chunks -> %s", info.name, len(info.documents), chunks_total, path)
    return TransferResult(info.name, str(path), len(info.documents), chunks_total)


def check_export_path(path: Path) -> Path:
    """The file an export writes: not a folder, not a path ending in a separator (InputError, before any work)."""
    text = str(path)
    path = Path(path)
    if not path.name or text.endswith(("/", "\\")) or path.is_dir():
        raise InputError(f"{text} is a folder; export writes one parquet file.",
                         f"give a file name, e.g. {path / 'collection.parquet'}")
    if path.parent.exists() and not path.parent.is_dir():
        raise InputError(f"{path.parent} is a file, not a folder.", "give a path inside a folder")
    return path


def _write_export(collection: Collection, info, schema, tmp: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunks_total = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        for record in info.documents:
            vectors, chunks = collection.chunks_of(record.doc_id)
            pages = [asdict(p) for p in collection.pages_of(record.doc_id)]
            n = len(chunks)
            columns = {
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(vectors, np.float32).reshape(-1)),
                                                            info.dim),
                "text": [c["text"] for c in chunks], "document": [record.name] * n, "doc_id": [record.doc_id] * n,
                "page": [c["page"] for c in chunks], "start": [c["start"] for c in chunks],
                "end": [c["end"] for c in chunks], "heading_path": [list(c["heading_path"]) for c in chunks],
                "chunk_index": [c["index"] for c in chunks], "tokens": [c.get("tokens", 0) for c in chunks],
                "document_record": [json.dumps(asdict(record))] + [None] * (n - 1),
                "document_pages": [json.dumps(pages, ensure_ascii=False)] + [None] * (n - 1),
            }
            writer.write_table(pa.table(columns, schema=schema))
            chunks_total += n
    return chunks_total


def decoded_limit(file_bytes: int) -> int:
    """The most an export of ``file_bytes`` may hold once decoded: an export decodes to about its own size (0.3-1.1x
    measured), and a 14 KB file of one dictionary-coded 20 KB text in 200,000 rows decoded to 3.3 GB."""
    return max(MIN_DECODED_BYTES, DECODED_RATIO * file_bytes)


def _decoded_bytes(column) -> int:
    """What a column takes as Python values: a dictionary-coded one (a file written from Arrow reads back so) as
    every row's value, not its codes; a list column as its values, each a Python object of its own."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        values = column.flatten()
        return column.nbytes + _decoded_bytes(values) + PY_OBJECT_BYTES * len(values)
    dictionary = column.dictionary if pa.types.is_dictionary(column.type) else None
    if dictionary is None or not len(column) or not (pa.types.is_string(dictionary.type)
                                                     or pa.types.is_binary(dictionary.type)):
        return column.nbytes
    return int(pc.sum(pc.take(pc.binary_length(dictionary), column.indices)).as_py() or 0) + column.nbytes


def _group_batch_rows(meta, group_index: int, limit: int, name: str) -> int:
    """Rows of one row group to decode at a time so that a batch stays under a quarter of ``limit``, from what the
    file declares. A text value is no longer than its column chunk decoded, and Arrow decodes a dictionary-coded
    column (one 20 MB text for a million rows, a million copies of one title in a list) in full before any count
    could see it. A chunk's heading path holds at most MAX_HEADING_DEPTH titles. InputError if one row could
    exceed that quarter."""
    group = meta.row_group(group_index)
    per_row = 0
    for c in range(meta.num_columns):
        column = group.column(c)
        if meta.schema.column(c).physical_type != "BYTE_ARRAY":
            continue  # fixed-size values: what a batch decodes to is counted after it is read
        if column.path_in_schema.split(".")[0] == "heading_path":
            if column.num_values > MAX_HEADING_DEPTH * max(1, group.num_rows):
                raise InputError(f"{name} declares more than {MAX_HEADING_DEPTH} heading titles a chunk; an "
                                 "export holds a chunk's heading path.", DAMAGED)
            values = MAX_HEADING_DEPTH
        else:
            values = -(-column.num_values // max(1, group.num_rows))
        per_row += values * (column.total_uncompressed_size + PY_OBJECT_BYTES)
    if per_row > limit // 4:
        raise InputError(f"{name} holds rows that could decode to {per_row >> 20} MB each; an export's rows are a "
                         "chunk each.", DAMAGED)
    return max(1, min(BATCH_ROWS, limit // 4 // max(1, per_row)))


def _too_large(path: Path, limit: int, size: int) -> InputError:
    return InputError(f"{Path(path).name} would take more than {limit >> 20} MB to read, {limit // max(1, size)} "
                      "times its size; an export decodes to about its own size.", DAMAGED)


def _read_bounded(path: Path):
    """The export's table, decoded a few rows at a time and refused (InputError) once more than ``decoded_limit``
    would be held: before the first row, on the sizes the file declares; then on what each batch decodes to."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path)
    size = Path(path).stat().st_size
    limit = decoded_limit(size)
    meta = handle.metadata
    declared = sum(meta.row_group(g).column(c).total_uncompressed_size
                   for g in range(meta.num_row_groups) for c in range(meta.num_columns))
    if declared > limit:
        raise _too_large(path, limit, size)
    batches, held = [], 0
    for g in range(meta.num_row_groups):
        rows = _group_batch_rows(meta, g, limit, Path(path).name)
        for batch in handle.iter_batches(batch_size=rows, row_groups=[g]):
            held += sum(map(_decoded_bytes, batch.columns))
            if held > limit:
                raise _too_large(path, limit, size)
            batches.append(batch)
    return pa.Table.from_batches(batches, schema=handle.schema_arrow)


def read_export(path: Path):
    """The parquet table and its ``studio`` metadata; InputError if it is not a studio export."""
    import pyarrow as pa

    if Path(path).is_dir():  # pyarrow would read it as a dataset and complain about some file inside
        raise InputError(f"{path} is a folder; import reads one parquet file.",
                         f"give one parquet file that an export wrote ({EXPORTS})")
    try:
        table = _read_bounded(path)
    except FileNotFoundError:
        raise InputError(f"{path} does not exist.", f"check the path; an export writes such a file ({EXPORTS})") from None
    except (pa.ArrowException, OSError) as exc:  # pyarrow's text quotes the whole path: the file's name will do
        raise InputError(f"{Path(path).name} is not a readable parquet file: "
                         f"{str(exc).replace(str(path), Path(path).name)}",
                         f"give the parquet file that an export wrote ({EXPORTS})") from None
    raw = (table.schema.metadata or {}).get(b"studio")
    missing = [c for c in COLUMNS if c not in table.column_names]
    if raw is None or missing:
        raise InputError(f"{Path(path).name} is not a collection export"
                         + (f" (missing columns: {', '.join(missing)})." if missing else " (no studio metadata)."),
                         f"export one with {EXPORTS}")
    try:
        meta = json.loads(raw)
        int(meta["dim"]), str(meta["model"])
        version = meta.get("format", FORMAT)
    except (ValueError, KeyError, TypeError, RecursionError, AttributeError):
        raise InputError(f"The studio metadata of {Path(path).name} is unreadable.", DAMAGED) from None
    if version != FORMAT:  # a later studio's layout: read as this one, its rows would be misread or half read
        raise InputError(f"{Path(path).name} is an export of format {clip(version, 40)}; this studio reads format "
                         f"{FORMAT}.", "export the collection again with this version of the studio, or import it "
                         "with the version that wrote it")
    return table, meta


def export_settings(meta: dict, name: str) -> tuple[str, dict, dict | None]:
    """(variant, chunking, search) of an export's metadata, each checked: "variant": ["x"] made a collection that
    no search could use, and a chunking or search of the wrong shape was a TypeError deep in the import."""
    variant, chunking, search = meta.get("variant", "fp32"), meta.get("chunking") or {}, meta.get("search") or None
    if variant not in VARIANTS:
        raise InputError(f"{name} says its vectors are variant {str(variant)[:40]!r}, which is none of "
                         f"{', '.join(VARIANTS)}.", DAMAGED)
    if not isinstance(chunking, dict) or not all(isinstance(v, (int, float, str, bool)) for v in chunking.values()):
        raise InputError(f"The chunking settings of {name} are not an object of numbers.", DAMAGED)
    try:
        if search is not None and not isinstance(search, dict):
            raise TypeError("not an object")
        config = SearchConfig.from_dict(search)
        if config.mode not in ("dense", "keyword", "hybrid") or not isinstance(config.language, str):
            raise ValueError(f"mode {str(config.mode)[:40]!r}, language {str(config.language)[:40]!r}")
    except (TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"The search settings of {name} are unreadable ({exc}).", DAMAGED) from None
    return variant, chunking, search


def validate_rows(table, meta: dict) -> list[NewDocument]:
    """Every row checked; the documents to store, in file order. Raises InputError naming the first bad row."""
    import pyarrow as pa

    dim = int(meta["dim"])
    column = table.column("vector").combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        if column.type.list_size != dim:
            raise ModelMismatchError(f"The vectors have {column.type.list_size} dimensions; the export says {dim}.", DAMAGED)
        if column.null_count:
            raise InputError(f"{column.null_count} rows have no vector.", DAMAGED)
        vectors = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
    else:
        vectors = _ragged_vectors(column.to_pylist(), dim)
    rows = {name: table.column(name).to_pylist() for name in COLUMNS if name != "vector"}
    norms = np.linalg.norm(vectors, axis=1)
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1) | (norms == 0))
    if bad.size:
        raise InputError(f"Row {int(bad[0])}: the vector is not finite or all zeros.", DAMAGED)
    documents, current = [], None
    for i in range(table.num_rows):
        doc_id = rows["doc_id"][i]
        if current is None or doc_id != current["doc_id"]:
            if current is not None:
                documents.append(_document(current, vectors))
            if any(d.record.doc_id == doc_id for d in documents):
                raise InputError(f"Row {i}: the chunks of document {doc_id!r} are not contiguous.", DAMAGED)
            current = _start_document(rows, i)
        current["rows"].append(i)
        _check_row(rows, i, current)
    if current is not None:
        documents.append(_document(current, vectors))
    return documents


def _ragged_vectors(values: list, dim: int) -> np.ndarray:
    for i, v in enumerate(values):
        if v is None or len(v) != dim:
            raise ModelMismatchError(f"Row {i}: the vector has {0 if v is None else len(v)} values, not {dim}.", DAMAGED)
    return np.asarray(values, dtype=np.float32).reshape(-1, dim)


def _start_document(rows: dict, i: int) -> dict:
    """The record and pages of the document whose first row is ``i``, every field checked as a manifest's are:
    the doc_id names the segment files, so one like "../x" must never reach the store."""
    try:
        record = record_from_dict(json.loads(rows["document_record"][i]), "its document_record")
        pages = json.loads(rows["document_pages"][i])
        if not isinstance(pages, list):
            raise ValueError(f"its document_pages is a JSON {type(pages).__name__}, not a list")
        pages = [page_from_dict(p, f"page {n}") for n, p in enumerate(pages, 1)]
    except (TypeError, ValueError, RecursionError) as exc:
        raise InputError(f"Row {i}: the first row of a document needs a valid document_record and document_pages "
                         f"({exc}).", DAMAGED) from None
    numbers = [p.number for p in pages]
    if len(set(numbers)) != len(numbers):
        twice = next(n for n in numbers if numbers.count(n) > 1)
        raise InputError(f"Row {i}: document_pages holds page {twice} twice.", DAMAGED)
    if record.doc_id != rows["doc_id"][i] or record.name != rows["document"][i]:
        raise InputError(f"Row {i}: document_record does not match the row's doc_id/document.", DAMAGED)
    return {"doc_id": record.doc_id, "record": record, "pages": pages, "rows": [], "chunks": [],
            "page_lengths": {p.number: len(p.text) for p in pages}}


def _check_row(rows: dict, i: int, current: dict) -> None:
    text, page, start, end = rows["text"][i], rows["page"][i], rows["start"][i], rows["end"][i]
    heading, index, tokens = rows["heading_path"][i], rows["chunk_index"][i], rows["tokens"][i]
    if rows["document"][i] != current["record"].name:
        raise InputError(f"Row {i}: the document name changes within document {current['doc_id']!r}.", DAMAGED)
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"Row {i}: the chunk text is empty.", DAMAGED)
    if not isinstance(page, int) or page not in current["page_lengths"]:
        raise InputError(f"Row {i}: page {page!r} is not a page of {current['record'].name}.", DAMAGED)
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= current["page_lengths"][page]):
        raise InputError(f"Row {i}: offsets {start!r}:{end!r} do not lie within page {page}.", DAMAGED)
    if heading is not None and (len(heading) > MAX_HEADING_DEPTH or not all(
            isinstance(t, str) and len(t) <= MAX_HEADING_CHARS for t in heading)):
        raise InputError(f"Row {i}: the heading path is not a list of at most {MAX_HEADING_DEPTH} titles of at most "
                         f"{MAX_HEADING_CHARS} characters.", DAMAGED)
    if index != len(current["chunks"]):
        raise InputError(f"Row {i}: chunk_index {index!r}, expected {len(current['chunks'])}.", DAMAGED)
    current["chunks"].append(Chunk(index, page, start, end, text, tuple(heading or ()),
                                   int(tokens) if isinstance(tokens, int) else 0))


def _document(current: dict, vectors: np.ndarray) -> NewDocument:
    record = current["record"]
    if record.chunks != len(current["chunks"]):
        raise InputError(f"{record.name}: the record says {record.chunks} chunks, the file has {len(current['chunks'])}.",
                         DAMAGED)
    return NewDocument(record, vectors[current["rows"]], current["chunks"], current["pages"], None)


def import_collection(collection: Collection, path: Path, known_models: dict[str, int] | None = None) -> TransferResult:
    """Import ``path`` into ``collection`` (created with the export's model and settings if it does not
    exist). ``known_models``: registry name -> dimension, to reject an export of an unknown model."""
    table, meta = read_export(path)
    model, dim = str(meta["model"]), int(meta["dim"])
    variant, chunking, search = export_settings(meta, Path(path).name)
    if not collection.exists:
        language = SearchConfig.from_dict(search).language
        if language not in LANGUAGES:
            raise InputError(f"{Path(path).name} asks for the keyword-search language {language!r}, which is not "
                             "supported.", f"the collections support {', '.join(sorted(LANGUAGES))}")
    if known_models is not None and model not in known_models:
        raise ModelMismatchError(f"{Path(path).name} was embedded with {model!r}, which is not in the registry.",
                                 "add the model to models.yaml (and convert it) before importing")
    if known_models is not None and known_models[model] and known_models[model] != dim:
        raise ModelMismatchError(f"{model!r} has {known_models[model]} dimensions; the export has {dim}.",
                                 f"the export was made with another model named {model!r}: import it into a studio "
                                 "that has that model")
    if collection.exists:
        info = collection.info()
        if info.model != model or info.dim != dim:
            raise ModelMismatchError(f"Collection {collection.name!r} holds {info.model!r} ({info.dim} dimensions); "
                                     f"the export {model!r} ({dim}).", "import into a new collection")
        if info.variant != variant:  # vectors of two variants differ slightly: a mixed collection ranks unevenly
            raise VariantMismatchError(f"Collection {collection.name!r} holds {info.variant} vectors of {info.model}; "
                                       f"the export's are {variant}.", "import into a new collection")
    documents = validate_rows(table, meta)
    if not collection.exists:
        collection.create(model, variant, dim, dict(chunking), search=search)
    if documents:
        collection.add_documents(documents, model)
    chunks = sum(len(d.chunks) for d in documents)
    log.info("imported %s into %s: %d documents, %d chunks", Path(path).name, collection.name, len(documents), chunks)
    return TransferResult(collection.name, str(path), len(documents), chunks)


def known_models(studio) -> dict[str, int]:
    """Registry name -> dimension (0 where the registry does not say)."""
    return {spec.name: int(spec.manifest.dim if spec.manifest else spec.dim) for spec in studio.registry.list()}
