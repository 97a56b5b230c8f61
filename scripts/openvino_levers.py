"""Probe (not part of the engine): where the time of the fp32 tier goes on the ``openvino`` provider, and
what two graph-level levers change, on the 256 SciFact abstracts in the bench's 32-text slices and plan.
Texts/s, best of ``--rounds`` interleaved rounds, each lever against its own baseline in the same rounds:

    embed          Embedder.embed: tokenize, plan, infer, pool, normalize
    session.run    the same planned batches straight into OpenVINOSession.run (no tokenizer, no pooling; full-length
                   batches on the static form)
    dynamic-only   the same, every bulk batch on the dynamic throughput form (as before the static form)
    raw            the raw compiled model on OpenVINO's throughput streams, outputs not read
    pooled-graph   mean pooling compiled into the graph (output [B, dim]), host normalizes
    sdpa           every MatMul-Softmax-MatMul attention replaced by OpenVINO's ScaledDotProductAttention op

and, with ``--profile``, OpenVINO's per-node time (PERF_COUNT) by node and kernel type.

    .venv/bin/python scripts/openvino_levers.py [--variant optimized] [--rounds 4] [--profile]

The result is in docs/benchmarks.md ("Static shapes: what moved the fp32 tier").
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import pooling, providers  # noqa: E402
from engine.embedder import CALL_COST_TOKENS, plan_batches  # noqa: E402
from engine.errors import StudioError  # noqa: E402
from engine.measure.bench import _compare, jsonl_texts  # noqa: E402
from engine.openvino_session import BULK_ROWS  # noqa: E402
from engine.settings import load_settings  # noqa: E402
from engine.studio import Studio  # noqa: E402

log = logging.getLogger("openvino_levers")
MODEL = "all-minilm-l6-v2"


def with_pooling(model, ops):
    """``model`` with mean pooling over the attention mask as its only output."""
    hidden = model.get_results()[0].input_value(0)
    mask = next(p for p in model.get_parameters() if p.get_friendly_name() == "attention_mask")
    weights = ops.convert(ops.unsqueeze(mask, ops.constant(np.int64(-1))), "f32")
    total = ops.reduce_sum(ops.multiply(hidden, weights), ops.constant(np.int64(1)), False)
    count = ops.maximum(ops.reduce_sum(weights, ops.constant(np.int64(1)), False), ops.constant(np.float32(1e-9)))
    import openvino as ov

    return ov.Model([ops.result(ops.divide(total, count))], model.get_parameters(), "pooled")


def with_sdpa(model, ops) -> int:
    """Replace Softmax(Q @ K^T + mask) @ V by ScaledDotProductAttention in place (Q and K come pre-scaled)."""
    replaced = 0
    for softmax in [op for op in model.get_ordered_ops() if op.get_type_name() == "Softmax"]:
        add = softmax.input_value(0).get_node()
        if add.get_type_name() != "Add":
            continue
        scores, mask = add.input_value(0), add.input_value(1)
        if scores.get_node().get_type_name() != "MatMul":
            scores, mask = mask, scores
        query, key_t = scores.get_node().input_value(0), scores.get_node().input_value(1)
        (consumer,) = [t.get_node() for t in softmax.output(0).get_target_inputs()]
        key = ops.transpose(key_t, ops.constant(np.array([0, 1, 3, 2], np.int64)))
        attention = ops.scaled_dot_product_attention(query, key, consumer.input_value(1), mask,
                                                     ops.constant(np.float32(1.0)), causal=False)
        consumer.output(0).replace(attention.output(0))
        replaced += 1
    model.validate_nodes_and_infer_types()
    return replaced


class Streams:
    """A compiled model run like OpenVINOSession's bulk form: rows split over the throughput streams."""

    def __init__(self, core, model, threads: int) -> None:
        self.compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                          "PERFORMANCE_HINT": "THROUGHPUT"})
        streams = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.requests = [self.compiled.create_infer_request() for _ in range(streams)]

    def run(self, feed: dict[str, np.ndarray], read: bool) -> np.ndarray | None:
        rows = len(next(iter(feed.values())))
        bounds = np.linspace(0, rows, min(len(self.requests), rows) + 1).astype(int)
        used = self.requests[:len(bounds) - 1]
        for request, start, stop in zip(used, bounds[:-1], bounds[1:]):
            request.start_async({k: v[start:stop] for k, v in feed.items()})
        for request in used:
            request.wait()
        return np.concatenate([r.get_output_tensor(0).data for r in used]) if read else None


def profile(core, path: Path, rows: int = 16, length: int = 256) -> None:
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY",
                                                     "PERF_COUNT": True})
    request = compiled.create_infer_request()
    rng = np.random.default_rng(0)
    feed = {}
    for port in compiled.inputs:
        name = port.get_any_name()
        feed[name] = (rng.integers(1000, 20000, (rows, length)) if name == "input_ids"
                      else np.ones((rows, length), np.int64) if name == "attention_mask"
                      else np.zeros((rows, length), np.int64))
    for _ in range(3):
        request.infer(feed)
    by_kind: collections.Counter = collections.Counter()
    for _ in range(3):
        request.infer(feed)
        for node in request.profiling_info:
            by_kind[(node.node_type, node.exec_type)] += node.real_time.total_seconds() / 3
    total = sum(by_kind.values())
    log.info("OpenVINO per-node time, batch %d x %d, one thread: %.1f ms in all", rows, length, total * 1000)
    for (kind, kernel), seconds in by_kind.most_common(10):
        log.info("  %-16s %-26s %7.2f ms %5.1f %%", kind, kernel, seconds * 1000, 100 * seconds / total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/openvino_levers.py")
    parser.add_argument("--variant", default="optimized")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--corpus", type=Path, default=None, help="a BEIR corpus.jsonl (default: shared SciFact)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import openvino as ov
    import openvino.opset13 as ops

    settings = load_settings()
    corpus = args.corpus or settings.shared_data / "scifact" / "corpus.jsonl"
    if not corpus.is_file():
        log.error("error: no corpus at %s (give a BEIR corpus.jsonl with --corpus, or set STUDIO_SHARED_DATA)", corpus)
        return 2
    texts = jsonl_texts(corpus, 256)
    embedder = Studio(settings).embedder(MODEL, args.variant, "openvino").with_batching(32, 32 * 256)
    session = embedder.session().session
    path = embedder.spec.folder / embedder.manifest.variants[embedder.variant].file
    threads = settings.intra_op_threads or providers.cpu_count()
    slices = [texts[i:i + 32] for i in range(0, len(texts), 32)]
    feeds, masks = [], []
    for part in slices:
        encoded = embedder.tokenizer.encode(part)
        for rows in plan_batches([len(e.ids) for e in encoded], 32, 32 * 256, CALL_COST_TOKENS["openvino"],
                                 session.row_cost):
            batch = embedder.tokenizer.pad([encoded[i] for i in rows])
            feeds.append(embedder._feed(session, batch))
            masks.append(batch.attention_mask)
    core = ov.Core()
    plain = Streams(core, core.read_model(str(path)), threads)
    pooled = Streams(core, with_pooling(core.read_model(str(path)), ops), threads)
    sdpa_model = core.read_model(str(path))
    replaced = with_sdpa(sdpa_model, ops)
    sdpa = Streams(core, sdpa_model, threads) if replaced else None  # the optimized graph's attention is fused
    name = embedder._output_name(session)

    def dynamic_only(feed):
        rows, width = feed["input_ids"].shape
        if session._bulk is None or rows < BULK_ROWS:
            return session.run([name], feed)
        # the engine's own dynamic path for bulk batches, on the feed it completes (a packed graph's extra inputs)
        return session._run_balanced([name], session._complete(feed), width)

    def pooled_vectors():
        return [pooling.l2_normalize(pooled.run(feed, True)) for feed in feeds]

    cases = {
        "embed": lambda: [embedder.embed(part) for part in slices],
        "session.run": lambda: [session.run([name], feed) for feed in feeds],
        "dynamic-only": lambda: [dynamic_only(feed) for feed in feeds],
        "raw": lambda: [plain.run(feed, False) for feed in feeds],
        "pooled-graph": pooled_vectors,
    }
    if sdpa is not None:
        cases["sdpa"] = lambda: [sdpa.run(feed, False) for feed in feeds]

    def host_pooled(streams: Streams) -> np.ndarray:
        return np.concatenate([pooling.pool(streams.run(f, True), m, ("mean",)) for f, m in zip(feeds, masks)])

    host = host_pooled(plain)
    log.info("%s on openvino, %d planned calls; attention blocks replaced by SDPA: %d", path.name, len(feeds), replaced)
    log.info("min cosine against host pooling: pooled-graph %.7f", _compare(np.concatenate(pooled_vectors()), host)[1])
    if sdpa is not None:
        log.info("min cosine against host pooling: sdpa %.7f", _compare(host_pooled(sdpa), host)[1])
    rates: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(args.rounds):
        for case, run in cases.items():
            began = time.perf_counter()
            run()
            rates[case].append(len(texts) / (time.perf_counter() - began))
    for case, values in rates.items():
        log.info("%-13s best %6.1f texts/s  (rounds: %s)", case, max(values), " ".join(f"{v:.0f}" for v in values))
    if args.profile:
        profile(core, path)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StudioError as exc:  # a bad provider, variant or setting: the message, not a traceback
        log.error("error: %s", exc)
        sys.exit(2)
