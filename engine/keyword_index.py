"""Keyword retrieval: BM25 (bm25s) over chunk texts, with a Snowball stemmer and stop words chosen by
the collection's language, persisted next to the collection's segments.

Rows are positions in the collection's chunk order (documents in manifest order, chunks in segment
order), the same rows the dense side uses, so the two rankings can be fused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import CollectionError, InputError

log = logging.getLogger(__name__)

# language code -> (Snowball stemmer, bm25s stop-word list); "none" keeps every word unstemmed.
LANGUAGES: dict[str, tuple[str | None, str | None]] = {
    "en": ("english", "en"), "de": ("german", "de"), "fr": ("french", "fr"), "es": ("spanish", "es"),
    "it": ("italian", "it"), "pt": ("portuguese", "pt"), "nl": ("dutch", "nl"), "sv": ("swedish", "sv"),
    "no": ("norwegian", "no"), "da": ("danish", "da"), "ru": ("russian", "ru"), "tr": ("turkish", "tr"),
    "fi": ("finnish", None), "none": (None, None),
}


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise InputError(f"{language!r} is not a supported keyword-search language.",
                         f"use one of {', '.join(sorted(LANGUAGES))}", param="language")
    return language


@dataclass(frozen=True)
class Analyzer:
    """Text -> BM25 terms: lower-case word tokens, stop words removed, stemmed."""

    language: str = "en"

    def terms(self, texts: Sequence[str]) -> list[list[str]]:
        bm25s = _bm25s()

        stemmer_name, stopwords = LANGUAGES[check_language(self.language)]
        return bm25s.tokenize(list(texts), stopwords=stopwords or [], stemmer=_stemmer(stemmer_name),
                              return_ids=False, show_progress=False)


def _bm25s():
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # its import sets DEBUG: a line per index build
    return bm25s


def _stemmer(name: str | None):
    if name is None:
        return None
    import Stemmer

    return Stemmer.Stemmer(name).stemWords


class KeywordIndex:
    """A BM25 index over ``size`` chunk texts; ``scores`` gives one score per row (0 = no term matched)."""

    def __init__(self, retriever, language: str, size: int, indexed: bool | None = None) -> None:
        self._retriever = retriever
        self.language = language
        self.size = size
        # False when no row has a single term (only stop words, punctuation or symbols): bm25s cannot
        # index an empty vocabulary, and every score is 0 anyway
        self.indexed = bool(size) if indexed is None else indexed

    @classmethod
    def build(cls, texts: Sequence[str], language: str = "en") -> KeywordIndex:
        bm25s = _bm25s()

        retriever = bm25s.BM25()
        terms = Analyzer(language).terms(texts)
        indexed = any(any(row) for row in terms)
        if indexed:
            retriever.index(terms, show_progress=False)
        return cls(retriever, language, len(texts), indexed)

    def scores(self, query: str) -> np.ndarray:
        terms = [t for t in Analyzer(self.language).terms([query])[0] if t]
        if not terms or not self.indexed:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(terms), dtype=np.float32)

    def top(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` rows with a positive score (restricted to ``allowed`` rows when given), best first."""
        scores = self.scores(query)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        return top_k(scores, k, floor=0.0)

    # -- persistence --------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write into ``folder`` via a temporary sibling folder and one rename (a crash leaves no half index)."""
        folder = Path(folder)
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.indexed:
            self._retriever.save(str(tmp), show_progress=False)
        (tmp / "keyword.json").write_text(json.dumps({"language": self.language, "size": self.size, "indexed": self.indexed}))
        for file in tmp.iterdir():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        shutil.rmtree(folder, ignore_errors=True)  # left by a commit that never reached its manifest
        os.replace(tmp, folder)

    @classmethod
    def load(cls, folder: Path) -> KeywordIndex:
        bm25s = _bm25s()

        try:
            meta = json.loads((Path(folder) / "keyword.json").read_text())
            indexed = bool(meta.get("indexed", meta["size"]))
            retriever = bm25s.BM25.load(str(folder), mmap=True, show_progress=False) if indexed else bm25s.BM25()
        except FileNotFoundError:
            raise  # retired by a writer meanwhile: the collection retries with a newer manifest
        except (OSError, ValueError, KeyError) as exc:
            raise CollectionError(f"The keyword index {Path(folder).name} is unreadable: {exc}",
                                  "rebuild it: python -m engine reindex --collection NAME") from None
        return cls(retriever, meta["language"], int(meta["size"]), indexed)


def top_k(scores: np.ndarray, k: int, floor: float = -np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the ``k`` highest scores above ``floor``, best first (ties: lower row first)."""
    eligible = np.flatnonzero(scores > floor)
    if eligible.size == 0 or k < 1:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    values = scores[eligible]
    if eligible.size > k:
        keep = np.argpartition(-values, k - 1)[:k]
        eligible, values = eligible[keep], values[keep]
    order = np.lexsort((eligible, -values))
    return eligible[order], values[order].astype(np.float32)
