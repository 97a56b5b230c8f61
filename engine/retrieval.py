"""One generation of a collection as the searcher sees it: every segment's vectors memory-mapped
(``np.load(mmap_mode="r")``: the page cache is shared, nothing is copied per process), chunk metadata
read lazily by line offset, the keyword index and the ANN index of that generation.

Dense search is exact (one mat-vec per segment) below the collection's ANN threshold, for document
filters and when asked; above it the HNSW index proposes ``k * rescore`` candidates that are then
re-scored exactly against the float32 vectors.
"""

from __future__ import annotations

import json
import logging
import mmap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.ann_index import AnnIndex, AnnOptions
from engine.errors import CollectionError
from engine.keyword_index import KeywordIndex, top_k

log = logging.getLogger(__name__)
INDEXES = "indexes"
CHECK_HINT = "python -m engine check-collection NAME says what to do"


@dataclass(frozen=True)
class SearchConfig:
    """Per-collection search settings, stored in collection.json under ``search`` (old collections: defaults)."""

    mode: str = "dense"
    language: str = "en"
    dense_weight: float = 0.5
    ann: AnnOptions = AnnOptions()

    @classmethod
    def from_dict(cls, data: dict | None) -> SearchConfig:
        data = data or {}
        return cls(mode=data.get("mode", "dense"), language=data.get("language", "en"),
                   dense_weight=float(data.get("dense_weight", 0.5)), ann=AnnOptions.from_dict(data.get("ann", {})))

    def to_dict(self) -> dict:
        return {"mode": self.mode, "language": self.language, "dense_weight": self.dense_weight,
                "ann": dict(self.ann.__dict__)}


class Segment:
    """One document's vectors (memory-mapped) and chunk lines (memory-mapped, decoded on demand)."""

    def __init__(self, doc_id: str, name: str, stem: str, vectors_file: Path, chunks_file: Path) -> None:
        self.doc_id, self.name, self.stem = doc_id, name, stem
        try:
            self.vectors = np.load(vectors_file, mmap_mode="r")
            with open(chunks_file, "rb") as handle:
                size = handle.seek(0, 2)
                self._lines = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        except FileNotFoundError:
            raise  # retired by a writer meanwhile: the collection re-reads its manifest and retries
        except (OSError, ValueError) as exc:
            raise CollectionError(f"A segment of the collection is unreadable ({stem}): {exc}", CHECK_HINT) from None
        ends = np.flatnonzero(np.frombuffer(self._lines, dtype=np.uint8) == 10) if size else np.zeros(0, np.int64)
        self._starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64) if len(ends) else ends
        self._ends = ends
        if len(ends) != self.vectors.shape[0]:
            raise CollectionError(f"Segment {stem} has {self.vectors.shape[0]} vectors but {len(ends)} chunk lines.", CHECK_HINT)

    def __len__(self) -> int:
        return len(self._ends)

    def chunk(self, row: int) -> dict:
        return json.loads(self._lines[int(self._starts[row]):int(self._ends[row])])

    def texts(self) -> list[str]:
        return [self.chunk(i)["text"] for i in range(len(self))]


class View:
    def __init__(self, root: Path, info, segment_files) -> None:
        self.info = info
        self.config = SearchConfig.from_dict(getattr(info, "search", None))
        self.segments = [Segment(d.doc_id, d.name, d.segment, *segment_files(d.segment)) for d in info.documents]
        sizes = [len(s) for s in self.segments]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.size = int(self.starts[-1])
        self.root = Path(root)
        self._keyword: KeywordIndex | None = None
        self._ann: AnnIndex | None = None
        self._ann_checked = False
        self._key_rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- rows ---------------------------------------------------------------------------------------
    def locate(self, row: int) -> tuple[Segment, int]:
        index = int(np.searchsorted(self.starts, row, side="right")) - 1
        return self.segments[index], int(row - self.starts[index])

    def allowed_rows(self, doc_ids: set[str]) -> np.ndarray:
        mask = np.zeros(self.size, dtype=bool)
        for i, segment in enumerate(self.segments):
            if segment.doc_id in doc_ids:
                mask[self.starts[i]:self.starts[i + 1]] = True
        return mask

    def vectors_of(self, rows: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(seg.vectors[offset]) for seg, offset in map(self.locate, rows)]) \
            if len(rows) else np.zeros((0, self.info.dim), dtype=np.float32)

    # -- dense --------------------------------------------------------------------------------------
    def dense_exact(self, query: np.ndarray, k: int, doc_ids: set[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full(self.size, -np.inf, dtype=np.float32)
        for i, segment in enumerate(self.segments):
            if doc_ids is None or segment.doc_id in doc_ids:
                scores[self.starts[i]:self.starts[i + 1]] = segment.vectors @ query
        return top_k(scores, k)

    def open_stored_indexes(self) -> None:
        """Open the keyword and ANN index files this generation names, now: a file a writer retired meanwhile
        then raises FileNotFoundError while the caller can still retry with a newer manifest."""
        indexes = getattr(self.info, "indexes", None) or {}
        if indexes.get("keyword"):
            self.keyword()
        if indexes.get("ann"):
            self.ann()

    def ann(self) -> AnnIndex | None:
        if not self._ann_checked:
            name = (getattr(self.info, "indexes", None) or {}).get("ann")
            self._ann = AnnIndex.load(self.root / INDEXES / name) if name else None
            self._ann_checked = True
        return self._ann

    def _rows_of_keys(self, keys: np.ndarray) -> np.ndarray:
        if self._key_rows is None:
            blocks = self.ann().keymap.blocks
            firsts = np.array([blocks[s.stem][0] for s in self.segments], dtype=np.int64)
            order = np.argsort(firsts)
            self._key_rows = (firsts[order], self.starts[:-1][order], np.array([len(s) for s in self.segments])[order])
        firsts, row_starts, counts = self._key_rows
        keys = keys.astype(np.int64)
        which = np.searchsorted(firsts, keys, side="right") - 1
        offsets = keys - firsts[which]
        if (offsets >= counts[which]).any() or (which < 0).any():
            raise CollectionError("The ANN index does not match the collection's segments.",
                                  "rebuild it: python -m engine reindex --collection NAME")
        return row_starts[which] + offsets

    def uses_ann(self, exact: bool | None, doc_ids: set[str] | None) -> bool:
        return (not exact and doc_ids is None and self.size >= self.config.ann.threshold and self.ann() is not None)

    def dense(self, query: np.ndarray, k: int, doc_ids: set[str] | None = None, exact: bool | None = None,
              ef: int | None = None, rescore: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        candidates = k * max(1, rescore or self.config.ann.rescore)
        # as many candidates as vectors: exact search is the same work, and exact (an HNSW graph built by several
        # threads differs from build to build, and need not reach every node)
        if not self.uses_ann(exact, doc_ids) or candidates >= self.size:
            return self.dense_exact(query, k, doc_ids)
        keys, _ = self.ann().search(query, candidates, ef)
        rows = self._rows_of_keys(keys)
        exact_scores = self.vectors_of(rows) @ query  # re-score quantized candidates in float32
        order = np.lexsort((rows, -exact_scores))[:k]
        return rows[order], exact_scores[order].astype(np.float32)

    # -- keyword ------------------------------------------------------------------------------------
    def keyword(self) -> KeywordIndex:
        if self._keyword is None:
            name = (getattr(self.info, "indexes", None) or {}).get("keyword")
            if name:
                self._keyword = KeywordIndex.load(self.root / INDEXES / name)
            else:  # a collection made before keyword search: index it in memory for this generation
                log.info("building an in-memory keyword index for %s (%d chunks)", self.info.name, self.size)
                self._keyword = KeywordIndex.build(self.all_texts(), self.config.language)
        return self._keyword

    def keyword_top(self, text: str, k: int, doc_ids: set[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        allowed = self.allowed_rows(doc_ids) if doc_ids is not None else None
        return self.keyword().top(text, k, allowed)

    def all_texts(self) -> list[str]:
        return [text for segment in self.segments for text in segment.texts()]

