"""CLI: bench-search (exact vs HNSW), reindex, export/import of collections (parquet)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from engine.cli import _studio, _table, command
from engine.cli import args as cliargs


def _bench_search_args(p: argparse.ArgumentParser) -> None:
    p.epilog = ("It builds synthetic collections bench-<size> in its own folder, <data dir>/bench-search/collections, "
                "never among yours (<data dir>/collections, which it does not touch), and removes them when it "
                "ends, failed or not, unless --keep.")
    p.add_argument("--sizes", type=cliargs.int_list(10), default=[10_000, 100_000],
                   help="comma list of collection sizes, each at least 10 (recall is @10; default 10000,100000)")
    p.add_argument("--dim", type=cliargs.int_range(1, 65_536), default=384, help="vector dimension (default 384)")
    p.add_argument("--ef", type=cliargs.int_list(8, 4096), default=[64, 128],
                   help="comma list of HNSW search breadths, 8-4096 as STUDIO_ANN_EF (default 64,128)")
    p.add_argument("--queries", type=cliargs.positive_int, default=500, help="ANN queries per size (default 500)")
    p.add_argument("--exact-queries", type=cliargs.positive_int, default=100,
                   help="exact queries per size (default 100)")
    p.add_argument("--dtype", default="f16", choices=["f32", "f16", "i8"], help="vector storage inside the index")
    p.add_argument("--rss", action="store_true", help="start the API on the last size's collection and report its memory")
    p.add_argument("--compare-faiss", type=cliargs.int_range(10), metavar="N",
                   help="also compare usearch and faiss HNSW on N vectors (at least 10; needs faiss)")
    p.add_argument("--rescore", type=cliargs.int_list(1, 1000), default=None,
                   help="comma list of HNSW candidates per hit re-ranked exactly (default: the collection's)")
    p.add_argument("--keep", action="store_true",
                   help="keep the bench-<size> collections (in <data dir>/bench-search/collections)")
    p.add_argument("--reuse", action="store_true",
                   help="search a kept bench-<size> collection of the same size, dimension and --dtype "
                        "instead of building it again")


@command("bench-search", "exact vs ANN search latency, recall@10, build time and API memory", _bench_search_args)
def cmd_bench_search(args: argparse.Namespace) -> tuple[object, str]:
    import importlib.util

    from engine.errors import InputError
    from engine.measure import search as measure
    from engine.settings import load_settings

    if args.compare_faiss and importlib.util.find_spec("faiss") is None:  # before anything is built
        raise InputError("--compare-faiss needs faiss, which is not installed.", "pip install faiss-cpu")
    data_dir = load_settings(data_dir=args.data_dir).data_dir
    root = measure.bench_collections_dir(data_dir)
    rows, collections, attempted = [], [], []
    data: dict = {"collections_dir": str(root)}
    try:
        for size in args.sizes:
            attempted.append(size)
            size_rows, collection = measure.bench_size(data_dir, size, args.dim, args.ef, args.queries,
                                                       args.exact_queries, args.dtype,
                                                       rescores=args.rescore or (None,), reuse=args.reuse)
            rows += size_rows
            collections.append(collection)
        data["rows"] = [asdict(r) for r in rows]
        if args.rss and collections:
            queries = measure.clustered_unit_vectors(50, args.dim, clusters=1024, seed=99)
            data["api_rss"] = {"collection": collections[-1].name,
                               **measure.api_rss(data_dir, collections[-1].name, queries)}
        if args.compare_faiss:
            data["faiss_vs_usearch"] = measure.compare_faiss(args.compare_faiss, args.dim, args.ef,
                                                             min(args.queries, 300))
    finally:  # also on an error or Ctrl-C: no half-built benchmark collection stays behind
        if not args.keep:
            for size in attempted:
                measure.drop_bench_collection(data_dir, size, quiet=True)
    text = _table([[str(r.size), r.mode, f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}", f"{r.recall_at_10:.4f}", str(r.queries),
                    f"{r.build_seconds:.1f}" if r.build_seconds else "-",
                    f"{r.vectors_per_second:.0f}" if r.vectors_per_second else "-"] for r in rows],
                  ["size", "mode", "p50 ms", "p99 ms", "recall@10", "queries", "build s", "vectors/s"])
    if "api_rss" in data:
        text += f"\nAPI memory with {data['api_rss']['collection']}: {data['api_rss']}"
    for row in data.get("faiss_vs_usearch", []):
        text += f"\n{row}"
    if args.keep:
        text += f"\nkept {', '.join(c.name for c in collections)} in {root}"
    return data, text


def _reindex_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", required=True)


@command("reindex", "rebuild a collection's keyword and ANN indexes (a new generation, same documents)", _reindex_args)
def cmd_reindex(args: argparse.Namespace) -> tuple[object, str]:
    from engine.pipeline import collection

    info = collection(_studio(args), args.collection).reindex()
    return {"collection": info.name, "generation": info.generation, "indexes": info.indexes}, (
        f"reindexed {info.name!r}: generation {info.generation}, {info.indexes}")


def _transfer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", required=True)
    p.add_argument("file", type=Path, help="the .parquet file")
    p.add_argument("--store", choices=["embedded", "qdrant"], help="import: the store of a NEW collection")


@command("export", "write a collection to a parquet file (one row per chunk, with its vector)", _transfer_args)
def cmd_export(args: argparse.Namespace) -> tuple[object, str]:
    from engine.pipeline import collection
    from engine.transfer import export_collection

    result = export_collection(collection(_studio(args), args.collection), args.file)
    return result.to_dict(), (f"exported {result.collection!r}: {result.documents} documents, "
                              f"{result.chunks} chunks -> {result.file}")


@command("import", "load a parquet export into a collection (validated first; all or nothing)", _transfer_args)
def cmd_import(args: argparse.Namespace) -> tuple[object, str]:
    from engine.pipeline import collection
    from engine.transfer import import_collection, known_models

    studio = _studio(args)
    result = import_collection(collection(studio, args.collection, args.store), args.file, known_models(studio))
    return result.to_dict(), (f"imported {result.file}: {result.documents} documents, {result.chunks} chunks "
                              f"into {result.collection!r}")


