"""Probe (not part of the engine): what a batch of 8 one-query requests costs OpenVINO, the batch an HTTP server at
8 closed-loop clients gets, and two levers for it measured and left (docs/benchmarks.md, "Batches of 8 on
OpenVINO"). ms per call, best of ``--rounds`` passes after a warm-up, 300 batches of 8 shuffled SciFact queries:

    parts N      each batch's rows, longest first, cut into N runs at their own widths (balanced_parts, what
                 OpenVINOSession does for bulk batches with N = 2), on the throughput form's streams
    weights      the model's MatMul/Attention weights stored as int8 with a per-column scale (ONNX
                 DequantizeLinear in front of each): half the bytes each call streams, against the file as it is
                 (batches of 1, 8 and 32 queries, 32 abstracts; and the cosine between the two)

    .venv/bin/python scripts/openvino_small_batches.py [--variant optimized] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODEL = "all-minilm-l6-v2"


def best_ms(call, case: list, rounds: int) -> float:
    for item in case[:20]:
        call(item)
    best = float("inf")
    for _ in range(max(1, rounds)):
        began = time.perf_counter()
        for item in case:
            call(item)
        best = min(best, (time.perf_counter() - began) / len(case) * 1000)
    return best


def int8_weights(source: Path, target: Path) -> int:
    """``source`` with every 2-D weight of a MatMul or Attention node stored as int8 (symmetric, one scale per
    output column) behind a DequantizeLinear; returns how many weights were stored so."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    initializers = {item.name: item for item in model.graph.initializer}
    replaced: dict[str, str] = {}
    added, dequantize = [], []
    for node in model.graph.node:
        name = node.input[1] if node.op_type in ("MatMul", "Attention") and len(node.input) > 1 else None
        if name not in initializers or len(initializers[name].dims) != 2:
            continue
        if name not in replaced:
            weight = numpy_helper.to_array(initializers[name]).astype(np.float32)
            scale = np.abs(weight).max(axis=0) / 127.0
            scale[scale == 0] = 1.0
            quantized = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
            added += [numpy_helper.from_array(quantized, f"{name}_q"),
                      numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale")]
            dequantize.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale"], [f"{name}_dq"],
                                               axis=1))
            replaced[name] = f"{name}_dq"
        node.input[1] = replaced[name]
    kept = [item for item in model.graph.initializer if item.name not in replaced]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + added)
    nodes = dequantize + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(target))
    return len(replaced)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="optimized")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    from engine.measure.bench import jsonl_texts
    from engine.openvino_session import OpenVINOSession, balanced_parts, bucket_width, token_extents
    from engine.settings import get_settings
    from engine.studio import Studio

    embedder = Studio().embedder(MODEL, args.variant, "openvino")
    session = embedder.session().session
    name = embedder._output_name(session)
    scifact = get_settings().shared_data / "scifact"
    queries = jsonl_texts(scifact / "queries.jsonl", 300)
    abstracts = jsonl_texts(scifact / "corpus.jsonl", 256)
    rng = np.random.default_rng(args.seed)

    def feeds(texts: list[str], rows: int, count: int) -> list[dict[str, np.ndarray]]:
        return [embedder._feed(session, embedder.tokenizer.batch(list(rng.choice(texts, size=rows, replace=False))))
                for _ in range(count)]

    eights = feeds(queries, 8, 300)
    print(f"{args.variant} on openvino ({session.precision}), 300 batches of 8 shuffled SciFact queries")
    prepared = []
    for feed in eights:
        extents = token_extents(feed)
        order = np.argsort(-extents, kind="stable")
        prepared.append(({key: value[order] for key, value in feed.items()},
                         [bucket_width(int(extent)) for extent in extents[order]]))
    for count in (1, 2, 3, 4, 8):
        form = session._bulk if count > 1 else session._latency
        cases = [(feed, widths, balanced_parts(widths, count)) for feed, widths in prepared]
        padded = sum(sum((stop - start) * widths[start] for start, stop in parts) for _, widths, parts in cases)
        real = sum(int(feed["attention_mask"].sum()) for feed, _, _ in cases)

        def run(case, form=form) -> None:
            feed, widths, parts = case
            session._run_parts(form, [name], feed, parts, feed["input_ids"].shape[1], [widths[a] for a, _ in parts])

        print(f"  parts {count}: {best_ms(run, cases, args.rounds):6.2f} ms per call, padded / real tokens "
              f"{padded / real:.2f}")

    with tempfile.TemporaryDirectory() as folder:
        source = embedder.spec.folder / embedder.manifest.variants[args.variant].file
        target = Path(folder) / "int8_weights.onnx"
        stored = int8_weights(source, target)
        threads = int(session._config["INFERENCE_NUM_THREADS"])  # the engine's session's own
        other = OpenVINOSession(target, threads, static_width=session.static_width)
        print(f"int8 weights ({stored} weights stored as int8), ms per call, the file as it is / int8 weights:")
        cases = {"1 query": feeds(queries, 1, 200), "8 queries": eights[:200], "32 queries": feeds(queries, 32, 50),
                 "32 abstracts": feeds(abstracts, 32, 8)}
        lowest = 1.0
        for label, case in cases.items():
            before = best_ms(lambda feed: session.run([name], feed), case, args.rounds)
            after = best_ms(lambda feed: other.run([name], feed), case, args.rounds)
            print(f"  {label:>12}: {before:7.2f} / {after:7.2f}")
            for feed in case[:4]:
                mask = feed["attention_mask"]
                a = embedder._postprocess(session.run([name], feed)[0], mask, 0)
                b = embedder._postprocess(other.run([name], feed)[0], mask, 0)
                lowest = min(lowest, float((a * b).sum(axis=1).min()))
        print(f"  min cosine, int8 weights against the file as it is: {lowest:.6f}")
    return 0


if __name__ == "__main__":
    from engine.errors import StudioError

    try:
        sys.exit(main())
    except StudioError as exc:
        sys.exit(f"error: {exc}")
