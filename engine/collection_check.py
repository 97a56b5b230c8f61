"""``python -m engine check-collection NAME``: read every file a collection's manifest names and say
what is missing or unreadable, and what the user can do about it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from engine.collection import READ_ATTEMPTS, Collection, _SegmentGone
from engine.collection_format import CollectionInfo, DocumentRecord, pages_from_json
from engine.errors import CollectionNotFoundError, StudioError
from engine.keyword_index import LANGUAGES
from engine.retrieval import SearchConfig


@dataclass(frozen=True)
class CheckReport:
    """Problems found in a collection and what to do about them."""

    name: str
    ok: bool
    documents: int = 0
    chunks: int = 0
    problems: tuple[str, ...] = ()
    hint: str = ""
    leftovers: int = 0  # temporary or no longer referenced files that a later write removes

    def to_dict(self) -> dict:
        return {**asdict(self), "problems": list(self.problems)}


def check_collection(col: Collection) -> CheckReport:
    """A missing collection is a CollectionNotFoundError; every other problem goes into the report."""
    try:
        info = col.info()
    except CollectionNotFoundError:
        raise
    except StudioError as exc:
        return CheckReport(col.name, False, problems=(exc.message,), hint=exc.hint)
    for _ in range(READ_ATTEMPTS):
        damaged = [(record, problem) for record in info.documents if (problem := _check_document(col, info, record))]
        newer = col.info()
        if not damaged or (newer.uid, newer.generation) == (info.uid, info.generation):
            break
        info = newer  # a writer changed the collection meanwhile: check its new state
    problems = [f"{record.name} (doc_id {record.doc_id}): {problem}" for record, problem in damaged]
    hints = []
    if damaged:
        # every search reads all segments and every commit rebuilds the indexes from them: both refuse the
        # collection while one is damaged, so the fix is to delete those documents (by doc_id: names may repeat)
        deletes = "; ".join(f"python -m engine delete --collection {col.name} {record.doc_id}" for record, _ in damaged)
        hints.append(f"search and ingest refuse this collection until the damaged documents are deleted: {deletes}; "
                     "then the other documents are searchable again, and the deleted ones can be ingested again")
    language = SearchConfig.from_dict(info.search).language
    if language not in LANGUAGES:
        problems.append(f"its keyword-search language {language!r} is not supported, so every ingest and keyword "
                        "search fails")
        hints.append(f"delete it (python -m engine delete --collection {col.name} --all) and ingest again with "
                     f"--language one of {', '.join(sorted(LANGUAGES))}" if not info.documents else
                     f"set collection.json's search.language to one of {', '.join(sorted(LANGUAGES))}, then "
                     f"python -m engine reindex --collection {col.name}")
    return CheckReport(col.name, not problems, len(info.documents), info.chunk_count, tuple(problems),
                       "; and ".join(hints), len(_unnamed_files(col, info)))


def _unnamed_files(col: Collection, info: CollectionInfo) -> list[Path]:
    named = {d.segment for d in info.documents}
    segments = col.path / "segments"
    return [f for f in (segments.iterdir() if segments.is_dir() else ()) if f.name.split(".", 1)[0] not in named]


def _check_document(col: Collection, info: CollectionInfo, record: DocumentRecord) -> str:
    try:
        vectors, chunks = col._load_segment(record.segment)
        pages = pages_from_json(col._read_file(col._pages_file(record.segment), record.segment))
    except _SegmentGone:
        return f"a file of its segment {record.segment} is missing"
    except StudioError as exc:
        return exc.message
    except (ValueError, TypeError) as exc:
        return f"its page texts are unreadable ({exc})"
    if vectors.shape != (record.chunks, info.dim):
        return f"{vectors.shape[0]}x{vectors.shape[1]} vectors, the manifest says {record.chunks}x{info.dim}"
    if any(c.get("page", 0) > len(pages) for c in chunks):
        return f"chunks point past its {len(pages)} page(s)"
    return ""
