"""CLI: ingest, search, collections, delete, eval."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli import _studio, _table, command
from engine.cli import args as cliargs
from engine.errors import InputError
from engine.manifest import VARIANT_CHOICES


def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path, help="PDF, PNG or JPEG files")
    p.add_argument("--collection", required=True, help="collection name (created on first ingest)")
    p.add_argument("--ocr", default="auto", help="auto, text, tesseract, rapidocr, mistral, deepseek-ocr, hunyuan-ocr")
    p.add_argument("--password", help="password of encrypted PDFs")
    p.add_argument("--model", help="embedding model of a NEW collection (default: the registry default)")
    p.add_argument("--variant", choices=VARIANT_CHOICES, help="variant of a new collection")
    p.add_argument("--provider", help="execution provider (default: STUDIO_PROVIDER or auto)")
    p.add_argument("--chunk-size", type=cliargs.int_range(8), default=128, help="tokens per chunk (default 128)")
    p.add_argument("--chunk-overlap", type=cliargs.non_negative_int, default=None,
                   help="tokens of overlap, smaller than --chunk-size (default 16, or less for a smaller chunk size)")
    p.add_argument("--headings", action="store_true", help="prepend the heading path to each chunk for embedding")
    p.add_argument("--force", action="store_true", help="re-ingest files already in the collection")
    p.add_argument("--language", type=cliargs.search_language,
                   help="keyword-search language of a NEW collection: en, de, fr, ... or none "
                        "(default: STUDIO_SEARCH_LANGUAGE or en)")
    p.add_argument("--store", choices=["embedded", "qdrant"],
                   help="where a NEW collection keeps its vectors (default: STUDIO_VECTOR_STORE or embedded)")


@command("ingest", "ingest PDFs into a collection (text layer / OCR -> chunks -> vectors)", _ingest_args)
def cmd_ingest(args: argparse.Namespace) -> tuple[object, str]:
    from engine.chunking import DEFAULT_OVERLAP
    from engine.pipeline import IngestOptions, ProgressEvent, check_options, ingest_many

    if args.chunk_overlap is not None and args.chunk_overlap >= args.chunk_size:
        raise InputError(f"--chunk-overlap {args.chunk_overlap} must be smaller than --chunk-size {args.chunk_size}.",
                         "overlap is the tokens two neighbouring chunks share, e.g. --chunk-size 128 --chunk-overlap 16")
    overlap = min(DEFAULT_OVERLAP, args.chunk_size - 1) if args.chunk_overlap is None else args.chunk_overlap
    studio = _studio(args)
    options = IngestOptions(ocr=args.ocr, password=args.password, model=args.model, variant=args.variant,
                            provider=args.provider, chunk_size=args.chunk_size, chunk_overlap=overlap,
                            headings_in_embedding=args.headings, force=args.force, language=args.language,
                            store=args.store)
    check_options(options, studio.settings)  # a wrong --ocr is an argument error, not a failure of every file

    def progress(event: ProgressEvent) -> None:
        if args.json:
            return
        if event.stage in ("page", "embed") and event.total:
            width = 24
            filled = int(width * event.done / event.total)
            bar = "#" * filled + "-" * (width - filled)
            print(f"\r{event.file[:32]:32s} {event.stage:5s} [{bar}] {event.done}/{event.total}", end="",
                  file=sys.stderr, flush=True)
        elif event.stage in ("done", "skipped", "error"):
            print(f"\r{event.file[:32]:32s} {event.stage}: {event.message}".ljust(80), file=sys.stderr, flush=True)

    results = ingest_many(studio, args.collection, args.files, options, progress)
    failed = [r for r in results if not r.ok]
    args.exit_status = 1 if failed else 0
    lines = []
    for r in results:
        if r.ok:
            what = "already ingested" if r.skipped else f"{r.pages} pages, {r.chunks} chunks, {r.ocr_pages} OCR'd"
            timing = ", ".join(f"{k} {v:.2f}s" for k, v in r.seconds.items())
            lines.append(f"ok      {r.file}: {what} ({timing})")
        else:
            hint = f" ({r.error['hint']})" if r.error.get("hint") else ""
            lines.append(f"FAILED  {r.file}: {r.error['message']}{hint}")
    lines.append(f"{len(results) - len(failed)} of {len(results)} files ingested into {args.collection!r}")
    return [r.to_dict() for r in results], "\n".join(lines)


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", help="what to look for")
    p.add_argument("--collection", required=True)
    p.add_argument("--k", type=cliargs.positive_int, default=5, help="number of hits (default 5)")
    p.add_argument("--document", action="append", help="only search this document (name or id); repeatable")
    p.add_argument("--model", help="must be the collection's model (checked)")
    p.add_argument("--provider")
    p.add_argument("--mode", choices=["dense", "keyword", "hybrid"],
                   help="dense (embeddings), keyword (BM25) or hybrid (both, fused); default: the collection's")
    p.add_argument("--exact", action="store_true", help="exact dense search even where the collection has an ANN index")


@command("search", "search a collection: dense (cosine), keyword (BM25) or hybrid", _search_args)
def cmd_search(args: argparse.Namespace) -> tuple[object, str]:
    from engine.pipeline import search
    from engine.textcheck import check_encodable

    # bytes that are not UTF-8 in argv arrive as lone surrogates (PEP 383): a clear error, not a tokenizer crash
    check_encodable(args.query, "The query")
    result = search(_studio(args), args.collection, args.query, k=args.k, documents=args.document,
                    model=args.model, provider=args.provider, mode=args.mode, exact=args.exact or None)
    lines = [f"{len(result.hits)} hits in {result.seconds['total'] * 1000:.0f} ms, {result.mode} "
             f"({result.model} on {result.provider})"]
    for rank, hit in enumerate(result.hits, 1):
        snippet = " ".join(hit.text.split())[:160]
        found = "+".join(hit.retrievers)
        lines.append(f"{rank:2d}. {hit.score:.3f} {found:13s} {hit.document} p.{hit.page} [{hit.start}:{hit.end}]  {snippet}")
    return [hit.to_dict() for hit in result.hits], "\n".join(lines)


@command("collections", "list collections and their documents (broken ones are marked)", lambda p: None)
def cmd_collections(args: argparse.Namespace) -> tuple[object, str]:
    from engine.collection import scan_collections

    infos, broken = scan_collections(_studio(args).settings.collections_dir)
    rows = [[i.name, i.model, i.variant, str(len(i.documents)), str(i.chunk_count), i.created_at] for i in infos]
    data = [{"name": i.name, "model": i.model, "variant": i.variant, "dim": i.dim, "chunks": i.chunk_count,
             "documents": [d.__dict__ for d in i.documents]} for i in infos]
    data += [{"name": b.name, "broken": True, "error": b.error.to_dict(), "documents": []} for b in broken]
    text = _table(rows, ["collection", "model", "variant", "documents", "chunks", "created"]) if rows else "no collections"
    if broken:
        text = "\n".join([text if rows else "no readable collections",
                          *(f"BROKEN  {b.name}: {b.error.message}" + (f" ({b.error.hint})" if b.error.hint else "")
                            for b in broken)])
    return data, text


def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the collection to check")


@command("check-collection", "read every file of a collection; report missing or unreadable segments (exit 1 if any)",
         _check_args)
def cmd_check_collection(args: argparse.Namespace) -> tuple[object, str]:
    report = _studio(args).collection(args.name).check()
    args.exit_status = 0 if report.ok else 1
    if report.ok:
        extra = f"; {report.leftovers} unreferenced file(s) a later write removes" if report.leftovers else ""
        return report.to_dict(), f"{report.name}: ok, {report.documents} documents, {report.chunks} chunks readable{extra}"
    lines = [f"{report.name}: BROKEN"] + [f"  - {p}" for p in report.problems]
    if report.hint:
        lines.append(f"what to do: {report.hint}")
    return report.to_dict(), "\n".join(lines)


def _delete_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", required=True)
    # one or the other: "delete --collection C doc.pdf --all" is refused rather than guessed
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("document", nargs="?",
                       help="document name, or its doc_id (or the first 8+ characters of it) where two share a name")
    which.add_argument("--all", action="store_true", help="delete the whole collection")


@command("delete", "delete a document from a collection, or the whole collection", _delete_args)
def cmd_delete(args: argparse.Namespace) -> tuple[object, str]:
    target = _studio(args).collection(args.collection)
    if args.all:
        target.drop()
        return {"deleted": args.collection}, f"deleted collection {args.collection!r}"
    if not args.document:
        raise InputError("Name a document to delete, or pass --all for the whole collection.",
                         "python -m engine collections --json lists each collection's documents")
    record = target.delete_document(args.document)
    return ({"deleted": record.name, "doc_id": record.doc_id},
            f"deleted {record.name} (doc_id {record.doc_id}) from {args.collection!r}")


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, type=cliargs.input_folder, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels")
    p.add_argument("--model", help="model (default: the registry default)")
    p.add_argument("--variant", choices=VARIANT_CHOICES)
    p.add_argument("--provider")
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=cliargs.positive_int)
    p.add_argument("--mode", choices=["dense", "keyword", "hybrid", "all"], default="dense",
                   help="dense (embeddings, default), keyword (BM25), hybrid (reciprocal-rank fusion) or all three")
    p.add_argument("--dense-weight", type=cliargs.unit_float, default=None,
                   help="hybrid and all: the dense share of the fusion, 0..1 (default STUDIO_HYBRID_DENSE_WEIGHT, 0.5)")
    p.add_argument("--store", choices=["embedded", "qdrant"],
                   help="answer every query through a temporary collection of this store (default: in memory)")
    p.add_argument("--vectors-cache", type=cliargs.folder_to_create,
                   help="folder to keep the corpus/query vectors in between runs (created if missing)")


@command("eval", "retrieval quality on a BEIR dataset (nDCG@10, Recall@100)", _eval_args)
def cmd_eval(args: argparse.Namespace) -> tuple[object, str]:
    import json
    import time
    from dataclasses import replace

    from engine.measure.evaluation import evaluate, load_beir

    if args.dense_weight is not None and args.mode not in ("hybrid", "all"):
        raise InputError(f"--dense-weight only weighs the hybrid fusion; --mode {args.mode} does not use it.",
                         "add --mode hybrid (or all), or leave --dense-weight out")
    if args.vectors_cache is not None:
        try:
            args.vectors_cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"Cannot create the --vectors-cache folder {args.vectors_cache}: {exc.strerror or exc}.",
                             "give a folder path that can be created") from None
    studio = _studio(args)
    dataset = load_beir(args.dataset, args.split)
    dense_weight = studio.settings.hybrid_dense_weight if args.dense_weight is None else args.dense_weight
    modes = ["dense", "keyword", "hybrid"] if args.mode == "all" else [args.mode]
    docs = queries = None
    embed_seconds = (0.0, 0.0)  # corpus, queries: evaluate() gets vectors made here, so it cannot time them
    if modes == ["keyword"]:
        labels = {"model": "bm25", "variant": "", "provider": "none"}
    else:
        embedder = studio.embedder(args.model, args.variant, args.provider).with_batching(args.batch_size)
        embedder.session()
        labels = {"model": embedder.spec.name, "variant": embedder.variant,
                  "provider": embedder.session().active_provider}
        # the provider is part of the key: the same variant on OpenVINO (bf16) gives other vectors
        stem = f"{dataset.name}-{labels['model']}-{labels['variant']}-{labels['provider']}"
        started = time.perf_counter()
        docs = _cached(args.vectors_cache, f"{stem}-corpus",
                       lambda: embedder.embed_documents(dataset.doc_texts), len(dataset.doc_texts))
        corpus_done = time.perf_counter()
        queries = _cached(args.vectors_cache, f"{stem}-queries",
                          lambda: embedder.embed_queries(dataset.query_texts), len(dataset.query_texts))
        embed_seconds = (corpus_done - started, time.perf_counter() - corpus_done)
    if args.store:
        results = _eval_store(studio, args.store, dataset, docs, queries, modes, labels)
    else:
        results = [evaluate(dataset, lambda _: docs, lambda _: queries, labels, mode=m, dense_weight=dense_weight)
                   for m in modes]
    # what the user waited for: the embedding (0 where the vectors came from --vectors-cache) plus the ranking
    results = [replace(r, seconds_corpus=round(r.seconds_corpus + embed_seconds[0], 2),
                       seconds_queries=round(r.seconds_queries + embed_seconds[1], 2)) for r in results]
    report_dir = studio.settings.reports_dir / "eval"
    report_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data = [{**r.to_dict(), "store": args.store or "memory"} for r in results]
    (report_dir / f"{dataset.name}-{labels['model']}-{labels['variant']}-{args.mode}-{stamp}.json").write_text(
        json.dumps(data if len(data) > 1 else data[0], indent=2))
    lines = [f"{dataset.name}: {results[0].queries} queries, {results[0].documents} documents, "
             f"{labels['model']}/{labels['variant']} on {labels['provider']}, store {args.store or 'memory'}"]
    lines += [f"{r.mode:8s} nDCG@10 {r.ndcg_at_10:.5f}   Recall@100 {r.recall_at_100:.5f}   "
              f"(corpus {r.seconds_corpus:.1f}s, queries {r.seconds_queries:.1f}s)" for r in results]
    return (data if len(data) > 1 else data[0]), "\n".join(lines)


def _cached(folder: Path | None, stem: str, compute, rows: int):
    import numpy as np

    path = folder / f"{stem}.npy" if folder else None
    if path is not None and path.is_file():
        vectors = np.load(path)
        if vectors.shape[0] == rows:
            return vectors
    vectors = compute()
    if path is not None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return vectors


def _eval_store(studio, store: str, dataset, docs, queries, modes: list[str], labels: dict) -> list:
    """Every query through a temporary collection of ``store`` (Qdrant: STUDIO_QDRANT_URL, else local mode)."""
    import tempfile

    import numpy as np

    from engine.collection import Collection
    from engine.measure.evaluation import corpus_collection, evaluate_collection

    with tempfile.TemporaryDirectory(prefix="studio-eval-") as folder:
        dim = docs.shape[1] if docs is not None else 1
        vectors = docs if docs is not None else np.ones((len(dataset.doc_ids), 1), dtype=np.float32)
        search = studio.settings.search_defaults() | {"mode": modes[0]}
        if store == "qdrant":
            from engine.qdrant_store import QdrantCollection, QdrantConnection

            settings = studio.settings
            key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
            connection = QdrantConnection(settings.qdrant_url, None if settings.qdrant_url else f"{folder}/qdrant", key)
            collection = QdrantCollection(Path(folder), "eval", connection)
        else:
            collection = Collection(Path(folder), "eval")
        collection.create(labels["model"], labels["variant"], dim, {}, search=search)
        try:
            ids = corpus_collection(collection, dataset, vectors, labels["model"])
            return [evaluate_collection(dataset, collection, ids, queries, m, labels) for m in modes]
        finally:
            collection.drop()


def _chunk_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path, help="PDFs with a text layer")
    p.add_argument("--settings", type=cliargs.chunk_settings, default="96:16,128:16,200:30",
                   help="comma list of SIZE:OVERLAP[:h] (h = heading path prepended), default 96:16,128:16,200:30")
    p.add_argument("--per-page", type=cliargs.positive_int, default=1, help="sentences sampled per page (default 1)")


@command("chunk-eval", "which chunk size/overlap finds the right page for sentences from your PDFs", _chunk_eval_args)
def cmd_chunk_eval(args: argparse.Namespace) -> tuple[object, str]:
    from engine.measure.chunk_eval import evaluate_chunking

    results = evaluate_chunking(_studio(args), args.files, args.settings, per_page=args.per_page)
    rows = [[str(r.size), str(r.overlap), "yes" if r.headings else "no", str(r.chunks), str(r.queries),
             f"{r.top1_page_accuracy:.3f}"] for r in results]
    return [r.__dict__ for r in results], _table(rows, ["size", "overlap", "headings", "chunks", "queries", "top-1 page"])
