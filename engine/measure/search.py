"""``python -m engine bench-search``: exact vs HNSW search through a real collection of synthetic
clustered unit vectors: p50/p99 latency of ``Collection.search`` (hits decoded, as the API answers),
recall@10 against exact search, index build time and throughput, and the RSS of an API process
(``python -m engine serve``) with the collection loaded and searched.

The benchmark keeps its collections in its own data folder, ``<data dir>/bench-search`` (collections in
``collections/`` there), never among the user's (``<data dir>/collections``): a user's collection named
``bench-<size>`` is never read, replaced or dropped."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.chunking import Chunk
from engine.collection import Collection, DocumentRecord, NewDocument
from engine.errors import StudioError

log = logging.getLogger(__name__)
CHUNKS_PER_DOCUMENT = 10_000
BENCH_FOLDER = "bench-search"


def bench_data_dir(data_dir: Path) -> Path:
    """The benchmark's own data folder inside the studio's: ``<data dir>/bench-search``."""
    return Path(data_dir) / BENCH_FOLDER


def bench_collections_dir(data_dir: Path) -> Path:
    """Where the benchmark's ``bench-<size>`` collections live: ``<data dir>/bench-search/collections``
    (the API that ``--rss`` starts reads its collections from here, with ``bench_data_dir`` as its data dir)."""
    return bench_data_dir(data_dir) / "collections"


def bench_collection(data_dir: Path, size: int) -> Collection:
    return Collection(bench_collections_dir(data_dir), f"bench-{size}")


def drop_bench_collection(data_dir: Path, size: int, quiet: bool = False) -> None:
    """Remove the benchmark's ``bench-<size>`` (complete or half-built); the user's collections are elsewhere.
    ``quiet``: log what cannot be removed instead of raising (in a ``finally``, so as not to hide the error
    that ended the run)."""
    collection = bench_collection(data_dir, size)
    try:
        if collection.exists:
            collection.drop()
        elif collection.path.exists():  # a run killed between making the folder and its first manifest
            shutil.rmtree(collection.path)
    except (StudioError, OSError) as exc:
        if not quiet:
            raise
        log.warning("bench-search: could not remove %s: %s", collection.path, exc)


def clustered_unit_vectors(n: int, dim: int, clusters: int, seed: int, spread: float = 1.0) -> np.ndarray:
    """Points around ``clusters`` random centres (cosine to their centre ~ 1/sqrt(1 + spread^2)), unit length."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        noise = rng.normal(size=(stop - start, dim)).astype(np.float32) * (spread / np.sqrt(dim))
        out[start:stop] = centres[rng.integers(0, clusters, stop - start)] + noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row ids of the exact top-k per query (batched, for ground truth)."""
    best = np.zeros((len(queries), 0), dtype=np.int64)
    best_scores = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, len(vectors), 200_000):
        scores = queries @ vectors[start:start + 200_000].T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        best = np.concatenate([best, top + start], axis=1)
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best, best_scores = np.take_along_axis(best, keep, axis=1), np.take_along_axis(best_scores, keep, axis=1)
    return best


def recall_at(found: Sequence[Sequence[int]], truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


@dataclass(frozen=True)
class BenchRow:
    size: int
    mode: str  # exact, ann ef=..
    p50_ms: float
    p99_ms: float
    recall_at_10: float
    queries: int
    build_seconds: float | None = None
    vectors_per_second: float | None = None


def build_collection(data_dir: Path, vectors: np.ndarray, dtype: str, ef: int) -> tuple[Collection, dict]:
    """The benchmark's ``bench-<n>`` of ``n = len(vectors)`` chunks in documents of 10k, committed at once (ANN
    always built), in the benchmark's own folder (``bench_collections_dir``); an earlier one there is replaced."""
    drop_bench_collection(data_dir, len(vectors))
    collection = bench_collection(data_dir, len(vectors))
    collection.create("all-minilm-l6-v2", "fp32", vectors.shape[1], {},
                      search={"mode": "dense", "ann": {"threshold": 1, "dtype": dtype, "expansion_search": ef}})
    documents = []
    for number, start in enumerate(range(0, len(vectors), CHUNKS_PER_DOCUMENT)):
        part = vectors[start:start + CHUNKS_PER_DOCUMENT]
        chunks = [Chunk(i, 1, 0, 1, f"synthetic chunk {start + i}", (), 1) for i in range(len(part))]
        doc_id = hashlib.sha256(f"synthetic-{number}".encode()).hexdigest()  # distinct 16-char segment stems
        record = DocumentRecord(doc_id, f"synthetic-{number:04d}.pdf", 1, len(part), "text", 0, 0, "", "")
        documents.append(NewDocument(record, part, chunks))
    started = time.perf_counter()
    collection.add_documents(documents, "all-minilm-l6-v2")
    seconds = collection.info().indexes.get("seconds", {})
    return collection, {"commit_seconds": round(time.perf_counter() - started, 2), **seconds}


def _rows(collection: Collection, hits) -> list[int]:
    starts = {}
    offset = 0
    for record in collection.info().documents:
        starts[record.doc_id] = offset
        offset += record.chunks
    return [starts[h.doc_id] + h.chunk_index for h in hits]


def time_searches(search: Callable[[np.ndarray], list], queries: np.ndarray) -> tuple[list[float], list]:
    seconds, results = [], []
    for query in queries:
        started = time.perf_counter()
        results.append(search(query))
        seconds.append(time.perf_counter() - started)
    return seconds, results


def _reusable(collection: Collection, size: int, dim: int, dtype: str) -> bool:
    if not collection.exists:
        return False
    info = collection.info()
    return (info.chunk_count == size and info.dim == dim
            and (info.search or {}).get("ann", {}).get("dtype") == dtype)


def bench_size(data_dir: Path, size: int, dim: int, ef_values: Sequence[int], queries_n: int, exact_n: int,
               dtype: str, seed: int = 0, rescores: Sequence[int | None] = (None,),
               reuse: bool = False) -> tuple[list[BenchRow], Collection]:
    """Build (or, with ``reuse``, search a kept) ``bench-<size>`` in the benchmark's own folder under
    ``data_dir`` and time ``exact_n`` exact and ``queries_n`` HNSW searches per breadth."""
    if size < 1 or dim < 1 or queries_n < 1 or exact_n < 1 or not ef_values or min(ef_values) < 1:
        raise ValueError("size, dim, queries, exact queries and every ef must be at least 1")
    vectors = clustered_unit_vectors(size, dim, clusters=1024, seed=seed)
    queries = clustered_unit_vectors(max(queries_n, exact_n), dim, clusters=1024, seed=seed + 1)
    truth = exact_top(vectors, queries, 10)
    kept = bench_collection(data_dir, size)
    if reuse and _reusable(kept, size, dim, dtype):
        collection, built = kept, kept.info().indexes.get("seconds", {})  # the same seeded vectors
    else:
        collection, built = build_collection(data_dir, vectors, dtype, max(ef_values))
    del vectors
    rows = []
    exact_seconds, exact_hits = time_searches(lambda q: collection.search(q, k=10, exact=True), queries[:exact_n])
    rows.append(BenchRow(size, "exact", **percentiles(exact_seconds),
                         recall_at_10=recall_at([_rows(collection, h) for h in exact_hits], truth, 10), queries=exact_n))
    queries = queries[:queries_n]
    collection.search(queries[0], k=10)  # open the memory-mapped index before timing
    for ef, rescore in ((ef, rescore) for ef in ef_values for rescore in rescores):
        seconds, hits = time_searches(lambda q, ef=ef, r=rescore: collection.search(q, k=10, ef=ef, rescore=r), queries)
        label = f"ann ef={ef}" + (f" rescore={rescore}" if rescore else "")
        rows.append(BenchRow(size, label, **percentiles(seconds),
                             recall_at_10=recall_at([_rows(collection, h) for h in hits], truth, 10),
                             queries=len(queries), build_seconds=built.get("ann"),
                             vectors_per_second=round(size / built["ann"], 1) if built.get("ann") else None))
    log.info("bench-search %d: %s", size, built)
    return rows, collection


def _link_models(data_dir: Path) -> None:
    """``<bench data dir>/models`` -> the studio's models, so the API started on the benchmark's folder warms
    up the same default model as it would on the user's (its memory then counts the model, as it always did)."""
    models = (Path(data_dir) / "models").resolve()
    link = bench_data_dir(data_dir) / "models"
    if not models.is_dir() or link.exists() and not link.is_symlink():
        return
    try:
        if link.is_symlink():
            if link.resolve() == models:
                return
            link.unlink()
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(models, target_is_directory=True)
    except OSError as exc:  # no symlinks here: the API runs without the model (its memory then lacks it)
        log.warning("bench-search: could not link %s to %s (%s); the API will have no model", link, models, exc)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _last_line(stream) -> str:
    """What the stopped API said: its last ``error:`` line (else its last line)."""
    stream.seek(0)
    lines = [line.strip() for line in stream.read().decode(errors="replace").splitlines() if line.strip()]
    errors = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
    return (errors or lines or [""])[-1][:300]


def api_rss(data_dir: Path, collection: str, queries: np.ndarray, port: int | None = None) -> dict:
    """Start ``python -m engine serve`` on loopback (a free port unless ``port``) with the benchmark's own data
    folder under ``data_dir`` (never the user's collections), search the collection by vector (ANN and exact),
    read its memory."""
    import httpx

    _link_models(data_dir)
    port = port or _free_port()
    env = {**os.environ, "STUDIO_DATA_DIR": str(bench_data_dir(data_dir))}
    token = os.environ.get("API_TOKEN") or os.environ.get("STUDIO_API_TOKEN")
    headers = {"Authorization": f"Bearer {token.strip()}"} if token and token.strip() else {}
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                   env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            for _ in range(300):
                if process.poll() is not None:
                    raise StudioError(f"The API for --rss stopped at start (exit status {process.returncode}): "
                                      f"{_last_line(stderr) or 'no message'}",
                                      "python -m engine serve with the same environment shows why")
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            else:
                raise StudioError(f"The API for --rss did not answer on {base} within 150 s.",
                                  "python -m engine serve with the same environment shows why")
            before = _memory(process.pid)
            for exact in (False, True):
                for query in queries[: 50 if not exact else 5]:
                    try:
                        answer = httpx.post(f"{base}/v1/collections/{collection}/search", headers=headers,
                                            json={"vector": query.tolist(), "k": 10, "exact": exact}, timeout=120)
                        answer.raise_for_status()
                    except httpx.HTTPError as exc:
                        raise StudioError(f"The API for --rss failed a search of {collection}: {exc}",
                                          "python -m engine serve with the same environment logs why") from None
                if not exact:
                    after_ann = _memory(process.pid)
            return {"idle": before, "after_ann_searches": after_ann, "after_exact_searches": _memory(process.pid)}
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _memory(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key + "_mb"] = round(int(value.split()[0]) / 1024, 1)
    return fields


def compare_faiss(size: int, dim: int, ef_values: Sequence[int], queries_n: int, seed: int = 0) -> list[dict]:
    """usearch vs faiss HNSW (M=16, efConstruction=128, float32, inner product) on the same vectors."""
    import faiss

    from engine.ann_index import _usearch_index

    Index = _usearch_index()

    vectors = clustered_unit_vectors(size, dim, clusters=1024, seed=seed)
    queries = clustered_unit_vectors(queries_n, dim, clusters=1024, seed=seed + 1)
    truth = exact_top(vectors, queries, 10)
    out = []
    started = time.perf_counter()
    usearch_index = Index(ndim=dim, metric="ip", dtype="f32", connectivity=16, expansion_add=128)
    usearch_index.add(np.arange(size, dtype=np.uint64), vectors)
    usearch_build = time.perf_counter() - started
    started = time.perf_counter()
    faiss_index = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
    faiss_index.hnsw.efConstruction = 128
    faiss_index.add(vectors)
    faiss_build = time.perf_counter() - started
    for ef in ef_values:
        usearch_index.expansion_search = ef
        faiss_index.hnsw.efSearch = ef
        seconds, found = time_searches(lambda q: usearch_index.search(q, 10, threads=1).keys, queries)
        out.append({"library": "usearch", "size": size, "ef": ef, **percentiles(seconds),
                    "recall_at_10": recall_at([list(f) for f in found], truth, 10), "build_seconds": round(usearch_build, 2)})
        seconds, found = time_searches(lambda q: faiss_index.search(q[None, :], 10)[1][0], queries)
        out.append({"library": "faiss", "size": size, "ef": ef, **percentiles(seconds),
                    "recall_at_10": recall_at([list(f) for f in found], truth, 10), "build_seconds": round(faiss_build, 2)})
    return out
