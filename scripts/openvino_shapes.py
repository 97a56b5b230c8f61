"""Probe (not part of the engine): what new input shapes cost OpenVINO's dynamic latency form, and what rounding
widths up to a step buys, on batches of 1-7 real SciFact queries in a shuffled order (what an HTTP server meets).
ms per call, best of ``--rounds`` passes after a warm-up pass, the batches fed straight to the latency form (the
session's own rounding bypassed, so each case chooses its widths):

    fixed        one batch of one query, repeated (a single shape)
    own widths   each batch at its longest query's width
    step 8       widths rounded up to a multiple of 8 (what OpenVINOSession.run does, WIDTH_STEP)
    step 16      rounded up to 16

    .venv/bin/python scripts/openvino_shapes.py [--variant optimized] [--cache 64] [--calls 400] [--rounds 2]

``--cache`` sets both kernel caches (STUDIO_OPENVINO_CACHE_CAPACITY) for this process. The result is in
docs/benchmarks.md ("Shapes: widths bucketed to multiples of 8").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODEL = "all-minilm-l6-v2"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="optimized")
    parser.add_argument("--cache", type=int, default=None, help="entries per kernel cache (default: the engine's)")
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.cache is not None:  # read when engine.openvino_session is imported, and by oneDNN once
        os.environ["STUDIO_OPENVINO_CACHE_CAPACITY"] = str(args.cache)

    from engine.measure.bench import jsonl_texts
    from engine.openvino_session import _pad_tokens, bucket_width, cache_capacity
    from engine.settings import get_settings
    from engine.studio import Studio

    embedder = Studio().embedder(MODEL, args.variant, "openvino")
    session = embedder.session().session
    name = embedder._output_name(session)
    queries = jsonl_texts(get_settings().shared_data / "scifact" / "queries.jsonl", 300)
    rng = np.random.default_rng(args.seed)
    batches = [list(rng.choice(queries, size=int(rng.integers(1, 8)), replace=False)) for _ in range(args.calls)]
    feeds = [embedder._feed(session, embedder.tokenizer.batch(texts)) for texts in batches]

    def at_step(step: int) -> list[dict[str, np.ndarray]]:
        return [_pad_tokens(feed, bucket_width(feed["input_ids"].shape[1], step)) for feed in feeds]

    single = embedder._feed(session, embedder.tokenizer.batch(batches[0][:1]))
    cases = {"fixed": [single] * args.calls, "own widths": feeds, "step 8": at_step(8), "step 16": at_step(16)}

    def run(case: list[dict[str, np.ndarray]]) -> float:
        began = time.perf_counter()
        for feed in case:
            rows, width = feed["input_ids"].shape
            session._run_parts(session._latency, [name], feed, [(0, rows)], width)
        return (time.perf_counter() - began) / len(case) * 1000

    print(f"{args.variant} on openvino, kernel caches {cache_capacity()} entries, {args.calls} batches of 1-7 queries")
    for label, case in cases.items():
        run(case)  # warm-up: every shape of the case built once
        best = min(run(case) for _ in range(max(1, args.rounds)))
        shapes = len({feed["input_ids"].shape for feed in case})
        print(f"{label:>11}: {best:6.2f} ms per call, {shapes} shapes")
    return 0


if __name__ == "__main__":
    from engine.errors import StudioError

    try:
        sys.exit(main())
    except StudioError as exc:
        sys.exit(f"error: {exc}")
