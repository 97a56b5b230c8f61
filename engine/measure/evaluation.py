"""Retrieval evaluation on a BEIR-format dataset (corpus.jsonl, queries.jsonl, qrels tsv), following
the BEIR/MTEB conventions: document text = ``(title + " " + text).strip()``, exact cosine search over
the whole corpus (mode dense), BM25 over the same texts (keyword: the collections' analyzer, English
stemmer and stop words) or their reciprocal-rank fusion (hybrid, as collections fuse), nDCG@10 and
Recall@100 averaged over the queries that have judgements (trec_eval's
definitions: linear gain, log2 discount; ideal DCG from the judged relevances)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.textcheck import check_encodable

log = logging.getLogger(__name__)
Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Dataset:
    name: str
    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: Qrels


_DAMAGED = "each line must be one JSON object with a string '_id' and 'text' (and 'title'); download the dataset again"
MAX_DATASET_BYTES = 4 << 30  # a corpus.jsonl linked to /dev/zero was read until memory ran out


def _read_text(path: Path, damaged: str = _DAMAGED) -> str:
    """A dataset file's text, or an InputError that names it (missing, a folder, a device or FIFO, unreadable, over
    ``MAX_DATASET_BYTES``, not UTF-8)."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{path} is a folder, not a file.", "point --dataset at a BEIR folder")
        if not stat.S_ISREG(info.st_mode):  # /dev/zero was read until memory ran out; a FIFO waits forever
            raise InputError(f"{path} is not a regular file.", "point --dataset at a BEIR folder of files")
        if info.st_size > MAX_DATASET_BYTES:
            raise InputError(f"{path} is over {MAX_DATASET_BYTES >> 30} GB.", "is it the dataset's file?")
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path} does not exist.",
                         "point --dataset at a BEIR folder: corpus.jsonl, queries.jsonl and qrels/") from None
    except OSError as exc:
        raise InputError(f"{path} cannot be read: {exc.strerror or exc}.", "check the file's permissions") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (byte {exc.start}).", damaged) from None


def _record(path: Path, number: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        raise InputError(f"{path}:{number} is not valid JSON.", _DAMAGED) from None
    if not isinstance(record, dict) or not isinstance(record.get("_id"), (str, int)) or isinstance(record["_id"], bool):
        raise InputError(f"{path}:{number} is not a JSON object with an '_id'.", _DAMAGED)
    for key in ("text", "title"):
        value = record.get(key, "")
        if value is None:
            record[key] = value = ""
        if not isinstance(value, str):
            raise InputError(f"{path}:{number}: '{key}' is a JSON {type(value).__name__}, not a string.", _DAMAGED)
        check_encodable(value, f"{path}:{number}: '{key}'")  # a lone surrogate (\ud800) the tokenizer cannot take
    return record


def _jsonl(path: Path, required: str = "") -> list[dict]:
    """One JSON object per ``\n``-terminated line: split on ``\n`` only, since str.splitlines() also splits
    on U+2028, U+2029, U+0085, \v, \f and \x1c-\x1e, which JSON strings may hold raw. Each has an ``_id`` and
    string ``text``/``title`` (missing: ""); ``required``: a field a record must have (a query's text)."""
    records = []
    for number, line in enumerate(_read_text(path).split("\n"), 1):
        if line.strip():
            record = _record(path, number, line)
            if required and required not in record:
                raise InputError(f"{path}:{number} has no '{required}'.", _DAMAGED)
            records.append(record)
    return records


def load_beir(folder: Path, split: str = "test") -> Dataset:
    folder = Path(folder)
    qrels_file = next((p for p in (folder / f"qrels-{split}.tsv", folder / "qrels" / f"{split}.tsv") if p.is_file()), None)
    if qrels_file is None:
        raise InputError(f"{folder} has no qrels-{split}.tsv or qrels/{split}.tsv.", "point --dataset at a BEIR folder")
    qrels: Qrels = {}
    text = _read_text(qrels_file, "each line: query-id, corpus-id, score (tab-separated), in UTF-8")
    for number, row in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter="\t"), 1):
        if len(row) < 3 or row[0] == "query-id":
            continue
        try:
            score = int(float(row[2]))  # "1" or "1.0"
        except (ValueError, OverflowError):
            raise InputError(f"{qrels_file}:{number}: the score {row[2][:40]!r} is not a number.",
                             "each line: query-id, corpus-id, score (tab-separated)") from None
        qrels.setdefault(row[0].strip(), {})[row[1].strip()] = score
    if not qrels:
        raise InputError(f"{qrels_file} judges no query.", "each line: query-id, corpus-id, score (tab-separated)")
    queries = _jsonl(folder / "queries.jsonl", required="text")
    known = {str(q.get("_id")) for q in queries}
    missing = [q for q in qrels if q not in known]
    if len(missing) == len(qrels):  # nothing to evaluate: an nDCG of 0.0 over 0 queries would look like a result
        raise InputError(f"None of the {len(qrels)} queries that {qrels_file.name} judges (e.g. {missing[0]!r}) is in "
                         f"{folder / 'queries.jsonl'}.",
                         "queries.jsonl and the qrels must come from the same dataset (and --split)")
    if missing:
        log.warning("%d of the %d queries that %s judges are not in queries.jsonl (e.g. %r); they are left out",
                    len(missing), len(qrels), qrels_file.name, missing[0])
    corpus = _jsonl(folder / "corpus.jsonl")
    if not corpus:  # an nDCG of 0.0 over no documents would look like a result
        raise InputError(f"{folder / 'corpus.jsonl'} holds no document.", _DAMAGED)
    queries = [q for q in queries if str(q.get("_id")) in qrels]
    return Dataset(
        name=folder.name,
        doc_ids=[str(d["_id"]) for d in corpus],
        doc_texts=[(d.get("title", "") + " " + d.get("text", "")).strip() for d in corpus],
        query_ids=[str(q["_id"]) for q in queries],
        query_texts=[q["text"] for q in queries],
        qrels=qrels,
    )


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sorted((r for r in relevant.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(rank + 2) for rank, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 100) -> float:
    wanted = {doc for doc, r in relevant.items() if r > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def rank(query_vectors: np.ndarray, doc_vectors: np.ndarray, doc_ids: Sequence[str], k: int) -> list[list[str]]:
    """Top-k document ids per query by cosine similarity (ties broken by corpus order)."""
    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    scores = unit(query_vectors) @ unit(doc_vectors).T
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    ordered = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable"), axis=1)
    return [[doc_ids[i] for i in row] for row in ordered]


def keyword_rank(dataset: Dataset, k: int, language: str = "en") -> list[list[str]]:
    """Top-k document ids per query by BM25 (only documents that share a term with the query)."""
    from engine.keyword_index import KeywordIndex

    index = KeywordIndex.build(dataset.doc_texts, language)
    return [[dataset.doc_ids[i] for i in index.top(query, k)[0]] for query in dataset.query_texts]


def fuse_ranked(dense: Sequence[str], keyword: Sequence[str], k: int, dense_weight: float = 0.5) -> list[str]:
    """Reciprocal-rank fusion of two id rankings, exactly as a collection's hybrid search fuses them."""
    from engine.fusion import dense_weights, reciprocal_rank_fusion

    ids = list(dict.fromkeys([*dense, *keyword]))
    row = {doc: i for i, doc in enumerate(ids)}
    rankings = {"dense": ([row[d] for d in dense], [0.0] * len(dense)),
                "keyword": ([row[d] for d in keyword], [0.0] * len(keyword))}
    return [ids[f.row] for f in reciprocal_rank_fusion(rankings, dense_weights(dense_weight))[:k]]


@dataclass(frozen=True)
class EvalResult:
    dataset: str
    model: str
    variant: str
    provider: str
    queries: int
    documents: int
    ndcg_at_10: float
    recall_at_100: float
    seconds_corpus: float
    seconds_queries: float
    mode: str = "dense"

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {**data, "ndcg@10": self.ndcg_at_10, "recall@100": self.recall_at_100}


def evaluate(dataset: Dataset, embed_documents: Callable[[list[str]], np.ndarray] | None,
             embed_queries: Callable[[list[str]], np.ndarray] | None, labels: dict[str, str],
             mode: str = "dense", dense_weight: float = 0.5) -> EvalResult:
    """``mode`` dense, keyword (the embedders are not called and may be None) or hybrid; candidates of
    each retriever before fusion: 100, as in a collection's hybrid search."""
    from engine.fusion import CANDIDATES, check_mode

    check_mode(mode)
    started = time.perf_counter()
    dense = keyword = None
    if mode != "keyword":
        doc_vectors = embed_documents(dataset.doc_texts)
    embedded = time.perf_counter()
    if mode != "keyword":
        dense = rank(embed_queries(dataset.query_texts), doc_vectors, dataset.doc_ids, max(100, CANDIDATES))
    if mode != "dense":
        keyword = keyword_rank(dataset, max(100, CANDIDATES))
    done = time.perf_counter()
    if mode == "hybrid":
        ranked = [fuse_ranked(d, w, 100, dense_weight) for d, w in zip(dense, keyword)]
    else:
        ranked = dense if mode == "dense" else keyword
    ndcg = [ndcg_at_k(r, dataset.qrels[q], 10) for q, r in zip(dataset.query_ids, ranked)]
    recall = [recall_at_k(r, dataset.qrels[q], 100) for q, r in zip(dataset.query_ids, ranked)]
    return EvalResult(
        dataset=dataset.name, model=labels.get("model", ""), variant=labels.get("variant", ""),
        provider=labels.get("provider", ""), queries=len(dataset.query_ids), documents=len(dataset.doc_ids),
        ndcg_at_10=float(np.mean(ndcg)) if ndcg else 0.0, recall_at_100=float(np.mean(recall)) if recall else 0.0,
        seconds_corpus=round(embedded - started, 2), seconds_queries=round(done - embedded, 2), mode=mode,
    )


def corpus_collection(collection, dataset: Dataset, doc_vectors: np.ndarray, model: str, per_document: int = 1000):
    """Load the corpus into a (new, empty) collection of any store: one chunk and page per corpus text,
    1000 per document record; returns the corpus id of each (document name, chunk index)."""
    from engine.chunking import Chunk
    from engine.collection import DocumentRecord, NewDocument
    from engine.page_records import Page

    documents, ids = [], {}
    for number, start in enumerate(range(0, len(dataset.doc_ids), per_document)):
        texts = dataset.doc_texts[start:start + per_document]
        name = f"{dataset.name}-{number:04d}"
        pages = [Page(i + 1, text or " ", "text") for i, text in enumerate(texts)]
        chunks = [Chunk(i, i + 1, 0, len(text), text or " ", (), 0) for i, text in enumerate(texts)]
        doc_id = hashlib.sha256(name.encode()).hexdigest()  # distinct segment stems (the first 16 characters)
        record = DocumentRecord(doc_id, name, len(texts), len(texts), "text", 0, 0, "", "")
        documents.append(NewDocument(record, doc_vectors[start:start + per_document], chunks, pages))
        ids.update({(name, i): dataset.doc_ids[start + i] for i in range(len(texts))})
    collection.add_documents(documents, model)
    return ids


def evaluate_collection(dataset: Dataset, collection, ids: dict, query_vectors: np.ndarray | None, mode: str,
                        labels: dict[str, str]) -> EvalResult:
    """The same metrics, every query answered by ``collection.search`` (the store's own retrieval path)."""
    started = time.perf_counter()
    ranked = []
    for i, text in enumerate(dataset.query_texts):
        vector = None if query_vectors is None or mode == "keyword" else query_vectors[i]
        hits = collection.search(vector, k=100, query_text=text if mode != "dense" else None, mode=mode)
        ranked.append([ids[(h.document, h.chunk_index)] for h in hits])
    done = time.perf_counter()
    ndcg = [ndcg_at_k(r, dataset.qrels[q], 10) for q, r in zip(dataset.query_ids, ranked)]
    recall = [recall_at_k(r, dataset.qrels[q], 100) for q, r in zip(dataset.query_ids, ranked)]
    return EvalResult(
        dataset=dataset.name, model=labels.get("model", ""), variant=labels.get("variant", ""),
        provider=labels.get("provider", ""), queries=len(dataset.query_ids), documents=len(dataset.doc_ids),
        ndcg_at_10=float(np.mean(ndcg)), recall_at_100=float(np.mean(recall)), seconds_corpus=0.0,
        seconds_queries=round(done - started, 2), mode=mode,
    )
