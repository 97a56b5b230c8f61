"""What ``collection.json`` and the segment files hold: the records, their strict parsing, and the
one check that a query or a document fits a collection (same model, same variant).

Parsing is strict because a manifest is the only way into a collection's files: valid JSON of the
wrong shape (``[1]``, a missing or an unknown key, a string where a number belongs, a segment name
that is not one) is a CollectionError naming the collection, never a TypeError deep inside.
Line-based segment files are split on ``\\n`` only: ``json.dumps`` escapes ``\\n`` inside strings but
writes U+2028, U+2029, U+0085 and friends raw, and ``str.splitlines()`` would split on those.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import asdict, dataclass, field

from engine.chunking import Chunk
from engine.errors import CollectionError, InputError, ModelMismatchError, VariantMismatchError
from engine.page_records import Page
from engine.textcheck import clip

FORMAT = 1
SEGMENT_STEM = re.compile(r"^[0-9a-f]{16}-g[0-9]+\Z")
# a document's id: the SHA-256 of its bytes, whose first 16 characters name its segment files (so never "../")
DOC_ID = re.compile(r"^[0-9a-f]{64}\Z")
# the derived index files a manifest may name (engine.derived_indexes writes them under indexes/)
INDEX_NAMES = {"keyword": re.compile(r"^keyword-g[0-9]+\Z"), "ann": re.compile(r"^ann-g[0-9]+\.usearch\Z")}


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


# JSON types of the fields (bool is refused where a number belongs); a field missing here is not type-checked
_TYPES = {"name": str, "model": str, "variant": str, "dim": int, "created_at": str, "generation": int,
          "chunking": dict, "documents": list, "format": int, "uid": str,
          "search": dict, "indexes": dict, "store": dict, "doc_id": str, "pages": int, "chunks": int,
          "ocr_engine": str, "ocr_pages": int, "size_bytes": int, "ingested_at": str, "segment": str, "notes": list}


# a page's fields as JSON has them (numbers may be ints where floats belong)
_PAGE_TYPES = {"number": int, "text": str, "source": str, "ocr_used": bool, "degraded": bool, "width": (int, float),
               "height": (int, float), "quality": (int, float), "seconds": (int, float), "notes": list,
               "running_kept": list}


def _checked_fields(cls, data: object, what: str, types: dict = _TYPES) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"{what} is a JSON {type(data).__name__}, not an object")
    known = {f.name: f for f in dataclasses.fields(cls)}
    required = {n for n, f in known.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    if unknown := sorted(set(data) - set(known)):
        raise ValueError(f"{what} has unknown key(s) {', '.join(map(repr, unknown))}")
    if missing := sorted(required - set(data)):
        raise ValueError(f"{what} lacks the key(s) {', '.join(map(repr, missing))}")
    for key, value in data.items():
        wanted = types.get(key)
        numeric = wanted is not bool and isinstance(value, bool)  # JSON true is no number
        if wanted is not None and (not isinstance(value, wanted) or numeric):
            name = wanted.__name__ if isinstance(wanted, type) else "number"
            raise ValueError(f"{what}: {key!r} should be a JSON {name}, not {type(value).__name__}")
    for key in ("notes", "running_kept"):
        if not all(isinstance(n, str) for n in data.get(key, ())):
            raise ValueError(f"{what}: {key!r} should be a list of strings")
    return data


def check_doc_id(doc_id: object) -> None:
    """ValueError unless ``doc_id`` is a document id (``DOC_ID``): the store names files by it."""
    if not isinstance(doc_id, str) or not DOC_ID.match(doc_id):
        raise ValueError(f"{clip(doc_id, 80)} is not a document id (the SHA-256 of the file: 64 hex digits, "
                         "lower case)")


def record_from_dict(data: object, what: str) -> DocumentRecord:
    """A DocumentRecord from parsed JSON, every field checked; ValueError naming ``what`` otherwise."""
    data = _checked_fields(DocumentRecord, data, what)
    try:
        check_doc_id(data["doc_id"])
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    return DocumentRecord(**{**data, "notes": tuple(data.get("notes", ()))})


def page_from_dict(data: object, what: str) -> Page:
    """A Page from parsed JSON, every field checked (a page number of 1 or more); ValueError otherwise."""
    data = _checked_fields(Page, data, what, _PAGE_TYPES)
    if data["number"] < 1:
        raise ValueError(f"{what}: its number is {data['number']}; pages count from 1")
    return Page.from_dict(data)


def info_from_json(data: object, collection: str) -> CollectionInfo:
    """The CollectionInfo of a parsed manifest; any shape problem is a CollectionError naming the collection."""
    try:
        data = _checked_fields(CollectionInfo, data, "the manifest")
        documents = []
        for number, raw in enumerate(data.get("documents", ()), 1):
            record = record_from_dict(raw, f"document {number}")
            if not SEGMENT_STEM.match(record.segment):
                raise ValueError(f"document {number} names the segment {clip(record.segment, 80)}, which is not a segment name")
            documents.append(record)
        for kind, name in data.get("indexes", {}).items():
            if kind in INDEX_NAMES and not (isinstance(name, str) and INDEX_NAMES[kind].match(name)):
                raise ValueError(f"its {kind} index is {clip(name, 80)}, which is not an index name")
        if data.get("format", FORMAT) > FORMAT:
            raise ValueError(f"it is format {data['format']}, written by a newer version (this one reads {FORMAT})")
        return CollectionInfo(**{**data, "documents": tuple(documents)})
    except ValueError as exc:
        raise CollectionError(
            f"The manifest of collection {collection!r} is unreadable: {exc}.",
            f"python -m engine check-collection {collection} shows what is wrong; restore collection.json from a "
            "backup, or delete the collection and ingest its documents again",
        ) from None


def info_to_json(info: CollectionInfo) -> bytes:
    return json.dumps(asdict(info), indent=1, ensure_ascii=False).encode("utf-8")


def chunks_to_jsonl(chunks: list[Chunk] | tuple[Chunk, ...]) -> bytes:
    lines = [json.dumps({"index": c.index, "page": c.page, "start": c.start, "end": c.end, "text": c.text,
                         "heading_path": list(c.heading_path), "tokens": c.tokens}, ensure_ascii=False)
             for c in chunks]
    return ("".join(line + "\n" for line in lines)).encode("utf-8")


def chunks_from_jsonl(raw: bytes) -> list[dict]:
    """One JSON object per ``\\n``-terminated line (never ``splitlines()``: see the module docstring)."""
    return [json.loads(line) for line in raw.decode("utf-8").split("\n") if line]


def pages_to_json(pages) -> bytes:
    return json.dumps([asdict(p) for p in pages], ensure_ascii=False).encode("utf-8")


def pages_from_json(raw: bytes) -> list[Page]:
    return [Page.from_dict(p) for p in json.loads(raw.decode("utf-8"))]


def encoded_segment(record: DocumentRecord, chunks, pages) -> tuple[bytes, bytes]:
    """The chunk and page files of a document, or an InputError if any text of it is not valid Unicode.

    A lone surrogate (``"a\\ud800b"``, e.g. from a file name in a foreign encoding or broken extraction)
    has no UTF-8 form; it is refused here, before anything is written, rather than half-way through."""
    parts = {"the document's name or notes": lambda: json.dumps(asdict(record), ensure_ascii=False),
             "a chunk text or heading": lambda: chunks_to_jsonl(list(chunks)),
             "a page text": lambda: pages_to_json(pages)}
    encoded = {}
    for what, encode in parts.items():
        try:
            value = encode()
            encoded[what] = value if isinstance(value, bytes) else value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = ascii(exc.object[exc.start:exc.end])
            name = record.name.encode("utf-8", "backslashreplace").decode("utf-8")
            raise InputError(f"{name} cannot be stored: {what} holds a lone surrogate ({bad}), which is not valid "
                             "Unicode and has no UTF-8 form.",
                             "re-save or rename the file so that its text and name are valid Unicode") from None
    return encoded["a chunk text or heading"], encoded["a page text"]


def require_same_model(info: CollectionInfo, collection: str, model: str | None, variant: str | None = None) -> None:
    """The one check that vectors of ``model``/``variant`` belong in (or may query) the collection."""
    if model is not None and model != info.model:
        raise ModelMismatchError(
            f"Collection {collection!r} was built with {info.model!r}; vectors of {model!r} cannot be stored in it "
            "or compared with it.",
            f"use the collection's model {info.model} (leave the model out), or pick a new collection name",
            param="model",
        )
    if variant is not None and variant != info.variant:
        raise VariantMismatchError(
            f"Collection {collection!r} holds {info.variant} vectors of {info.model}; {variant} vectors cannot be "
            "mixed into it.",
            f"leave the variant out to use the collection's {info.variant}, or pick a new collection name",
            param="variant",
        )
