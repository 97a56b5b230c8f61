"""How well do chunk settings find the right page? Sentences sampled from each page's own text are
used as queries; the score is the share whose top hit is on that page (and document). Used to pick
the chunking defaults and by users tuning size/overlap for their documents."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import EmptyDocumentError
from engine.pipeline import IngestOptions, collection, ingest, search
from engine.studio import Studio

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class PageQuery:
    document: str
    page: int
    text: str


@dataclass(frozen=True)
class ChunkEvalResult:
    size: int
    overlap: int
    headings: bool
    queries: int
    top1_page_accuracy: float
    chunks: int


def sample_queries(studio: Studio, files: Sequence[Path], seed: int = 7, per_page: int = 1) -> list[PageQuery]:
    """One (or ``per_page``) sentence of 60-250 characters from every page that has one."""
    from engine.documents import Limits, open_document

    rng = random.Random(seed)
    queries = []
    for path in files:
        with open_document(Path(path), limits=Limits.from_settings(studio.settings)) as document:
            for number in document.page_numbers():
                text = " ".join(document.text_layer(number).text.split())
                sentences = [s for s in _SENTENCE.split(text) if 60 < len(s) < 250]
                for sentence in rng.sample(sentences, min(per_page, len(sentences))):
                    queries.append(PageQuery(Path(path).name, number, sentence))
    return queries


def evaluate_chunking(studio: Studio, files: Sequence[Path], settings: Sequence[tuple[int, int, bool]],
                      queries: Sequence[PageQuery] | None = None, per_page: int = 1) -> list[ChunkEvalResult]:
    queries = list(queries) if queries is not None else sample_queries(studio, files, per_page=per_page)
    results = []
    for size, overlap, headings in settings:
        name = f"chunk-eval-{uuid.uuid4().hex[:12]}"
        options = IngestOptions(ocr="text", chunk_size=size, chunk_overlap=overlap, headings_in_embedding=headings)
        try:
            for path in files:
                try:
                    ingest(studio, name, Path(path), options=options)
                except EmptyDocumentError as exc:  # its hint said to choose an OCR engine, which chunk-eval has not
                    raise EmptyDocumentError(exc.message, "chunk-eval reads text layers only: leave scanned PDFs "
                                             "out (or give PDFs with a text layer)") from None
            hits = [search(studio, name, q.text, k=1).hits for q in queries]
            correct = sum(1 for q, h in zip(queries, hits) if h and h[0].page == q.page and h[0].document == q.document)
            chunks = collection(studio, name).info().chunk_count
        finally:
            target = collection(studio, name)
            if target.exists:
                target.drop()
        results.append(ChunkEvalResult(size, overlap, headings, len(queries),
                                       correct / len(queries) if queries else 0.0, chunks))
    return results
