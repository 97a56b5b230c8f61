"""Check: every PDF of a folder ingested on OpenVINO with packing on, then each document's stored vectors against
the same chunk texts embedded unpacked (``STUDIO_OPENVINO_PACK_TOKENS=0``) and on ONNX Runtime fp32; prints how
many embedding calls were packed per file and the lowest cosine per document (docs/benchmarks.md, "Packing short
texts"). The collection it fills is dropped at the end.

    .venv/bin/python scripts/packing_pdfs.py [--pdfs ../shared/data/pdfs] [--variant fp32]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODEL = "all-minilm-l6-v2"
COLLECTION = "packing_pdfs_check"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdfs", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/pdfs")
    parser.add_argument("--variant", default="fp32")
    args = parser.parse_args(argv)
    files = sorted(args.pdfs.glob("*.pdf")) if args.pdfs.is_dir() else []
    if not files:
        parser.error(f"--pdfs: no PDF files in {args.pdfs}")

    from engine import packing
    from engine.errors import StudioError
    from engine.pipeline import IngestOptions, collection, ingest
    from engine.sessions import SessionCache
    from engine.studio import Studio

    packed = {"calls": 0, "texts": 0}
    pack = packing.pack

    def counted(items, *rest, **options):
        packed["calls"] += 1
        packed["texts"] += len(items)
        return pack(items, *rest, **options)

    packing.pack = counted  # the embedder calls it through the module: every packed call is counted
    studio = Studio()
    target = collection(studio, COLLECTION)
    if target.exists:
        target.drop()
    options = IngestOptions(model=MODEL, variant=args.variant, provider="openvino")
    documents = []
    for path in files:
        calls, texts, began = packed["calls"], packed["texts"], time.perf_counter()
        try:
            result = ingest(studio, COLLECTION, path, options=options)
        except StudioError as exc:
            print(f"{path.name:40s} message: {exc}")
            continue
        documents.append((path.name, result.doc_id))
        print(f"{path.name:40s} {result.chunks:5d} chunks, {packed['calls'] - calls} packed calls "
              f"({packed['texts'] - texts} texts), {time.perf_counter() - began:.1f} s")
    os.environ["STUDIO_OPENVINO_PACK_TOKENS"] = "0"
    unpacked = Studio().embedder(MODEL, args.variant, "openvino")
    unpacked.sessions = SessionCache()  # a session of its own, made unpacked
    onnxruntime = Studio().embedder(MODEL, args.variant, "cpu")
    target = collection(studio, COLLECTION)
    lowest = [1.0, 1.0]
    try:
        for name, doc_id in documents:
            vectors, chunks = target.chunks_of(doc_id)
            texts = [chunk["text"] for chunk in chunks]
            if not texts:
                continue
            cosines = [float((vectors * other.embed(texts)).sum(axis=1).min()) for other in (unpacked, onnxruntime)]
            lowest = [min(a, b) for a, b in zip(lowest, cosines)]
            print(f"{name:40s} min cosine vs unpacked {cosines[0]:.6f}, vs ONNX Runtime {cosines[1]:.6f}")
    finally:
        target.drop()
    print(f"all: {packed['calls']} packed calls ({packed['texts']} texts); min cosine vs unpacked {lowest[0]:.6f}, "
          f"vs ONNX Runtime {lowest[1]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
