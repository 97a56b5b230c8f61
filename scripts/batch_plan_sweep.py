"""Probe (not part of the engine): how the batch plan's call cost (``engine.embedder.CALL_COST_TOKENS``) moves
throughput, per runtime. Texts/s, best of ``--rounds`` interleaved rounds, for each call cost:

    randN        the 300 SciFact queries in a fixed random order, N per call (what a server's batches look like)
    queries      all 300 queries in one call, batch 32 (the in-process path)
    abstracts    256 SciFact abstracts in one call, batch 32

    .venv/bin/python scripts/batch_plan_sweep.py [--provider openvino] [--variant optimized] [--rounds 4]
                                                 [--costs 128,256,512,fill]

The result behind the shipped call costs is in docs/benchmarks.md ("Batch plan").
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import embedder as embedder_module  # noqa: E402
from engine.errors import StudioError  # noqa: E402
from engine.measure.loadtest import load_texts  # noqa: E402
from engine.studio import Studio  # noqa: E402

log = logging.getLogger("batch_plan_sweep")
COSTS = (0, 16, 32, 64, 128, 256, 512, embedder_module.FILL_BATCHES)


def rates(embedder, queries, abstracts, order, provider: str, cost: int) -> dict[str, float]:
    embedder_module.CALL_COST_TOKENS[provider] = cost
    server = embedder.with_batching(128, 16384)
    out = {}
    for size in (8, 27, 64):
        began = time.perf_counter()
        for start in range(0, len(order), size):
            server.embed_encoded([queries[i] for i in order[start:start + size]])
        out[f"rand{size}"] = len(order) / (time.perf_counter() - began)
    batch32 = embedder.with_batching(32, 16384)
    for name, encoded in (("queries", queries), ("abstracts", abstracts)):
        began = time.perf_counter()
        batch32.embed_encoded(encoded)
        out[name] = len(encoded) / (time.perf_counter() - began)
    return out


def call_costs(text: str) -> tuple[int, ...]:
    """An argparse type: whole numbers of tokens, or ``fill`` (never split a batch)."""
    try:
        return tuple(embedder_module.FILL_BATCHES if part.strip() == "fill" else int(part)
                     for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"call costs are whole numbers or 'fill', got {text!r}") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", default="openvino")
    parser.add_argument("--variant", default="optimized")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--costs", type=call_costs, default=COSTS, help="call costs to try, e.g. 128,256,fill")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    embedder = Studio().embedder(None, args.variant, args.provider)
    provider = embedder.session().active_provider
    queries = embedder.tokenizer.encode(load_texts("queries", 512))
    abstracts = embedder.tokenizer.encode(load_texts("scifact", 256))
    order = list(range(len(queries)))
    random.Random(0).shuffle(order)
    embedder.embed_encoded(queries[:40])  # warm-up
    shipped = embedder_module.CALL_COST_TOKENS.get(provider)
    best: dict[int, dict[str, float]] = {cost: {} for cost in args.costs}
    try:
        for _ in range(args.rounds):
            for cost in args.costs:
                for key, value in rates(embedder, queries, abstracts, order, provider, cost).items():
                    best[cost][key] = max(best[cost].get(key, 0.0), value)
    finally:
        if shipped is not None:
            embedder_module.CALL_COST_TOKENS[provider] = shipped
    log.info("%s/%s on %s (shipped call cost %s), texts/s, best of %d", embedder.spec.name, args.variant, provider,
             shipped, args.rounds)
    for cost in args.costs:
        label = "fill" if cost == embedder_module.FILL_BATCHES else str(cost)
        log.info("%6s  %s", label, "  ".join(f"{k} {v:7.1f}" for k, v in best[cost].items()))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StudioError as exc:  # a bad provider, variant or setting: the message, not a traceback
        log.error("error: %s", exc)
        sys.exit(2)
