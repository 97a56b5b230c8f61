#!/usr/bin/env python
"""The PyTorch baseline of the benchmarks: sentence-transformers (torch fp32, or fp16 on CUDA) on the
same texts, in its own process (torch never loads into the engine).

    python converter/baseline.py SOURCE --texts texts.json --batch-sizes 1,32 --out vectors.npy [--device cpu]

SOURCE is what the model was converted from (hub id in the HF cache, local folder, pypi:<package>).
Prints one JSON object: per batch size the seconds, texts/s and per-batch latencies.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="baseline.py")
    parser.add_argument("source")
    parser.add_argument("--texts", required=True, type=Path, help="JSON list of strings")
    parser.add_argument("--batch-sizes", default="32")
    parser.add_argument("--out", type=Path, help="save the vectors of the first batch size (.npy)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--threads", type=int)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    import sentence_transformers
    import torch

    from converter.convert import resolve_source
    from engine.errors import StudioError

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        folder, _ = resolve_source(args.source, trust_remote_code=False)
    except StudioError as exc:
        print(json.dumps({"error": exc.message}))
        return 2
    texts = json.loads(args.texts.read_text(encoding="utf-8"))
    started = time.perf_counter()
    model = sentence_transformers.SentenceTransformer(str(folder), device=args.device)
    if args.dtype != "float32":
        model = model.to(getattr(torch, args.dtype))
    load_seconds = time.perf_counter() - started
    runs = []
    for index, batch_size in enumerate(int(b) for b in args.batch_sizes.split(",")):
        with torch.inference_mode():
            for _ in range(args.warmup):
                model.encode(texts[:batch_size], batch_size=batch_size)
            latencies = []
            vectors = []
            begin = time.perf_counter()
            for first in range(0, len(texts), batch_size):
                t0 = time.perf_counter()
                vectors.append(model.encode(texts[first:first + batch_size], batch_size=batch_size,
                                            convert_to_numpy=True))
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                latencies.append(time.perf_counter() - t0)
            seconds = time.perf_counter() - begin
        if index == 0 and args.out:
            np.save(args.out, np.concatenate(vectors).astype(np.float32))
        runs.append({"batch_size": batch_size, "seconds": seconds, "texts_per_second": len(texts) / seconds,
                     "latencies": latencies})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__,
                      "device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads(),
                      "load_seconds": load_seconds, "peak_rss_mb": peak_mb, "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
