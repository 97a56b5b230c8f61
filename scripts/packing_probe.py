"""Probe: sequence packing of short texts (``engine.packing``) against padded batches, ms per call, best of
``--rounds`` passes after a warm-up (docs/benchmarks.md, "Packing short texts"):

    openvino   the engine as shipped, unpacked (STUDIO_OPENVINO_PACK_TOKENS=0) / packed at each capacity (the
               engine's own rule: a batch of texts that each fit a row, where packing saves a row)
    cpu        ONNX Runtime, which the engine runs unpacked / every batch packed at each capacity through a copy of
               the ONNX file that takes ``position_ids`` and ``packed_segment_ids`` (``packed_graph`` below; the mask
               is computed in the graph from the segment ids), cut back out and pooled by the embedder's pooling

on 150 batches of 8 shuffled SciFact queries (what an HTTP server at 8 clients gets), 40 batches of 32 shuffled
queries and 8 batches of 32 abstracts; and the min cosine between packed and unpacked vectors. ONNX Runtime's rows
take files that keep transformers' BERT export pattern (fp32, int8).

    .venv/bin/python scripts/packing_probe.py [--variant fp32] [--capacities 64,128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from openvino_small_batches import best_ms  # noqa: E402 - the probes' timing: warm-up, then best of rounds

MODEL = "all-minilm-l6-v2"


def packed_graph(source: Path, target: Path) -> bool:
    """``source`` with position ids and segment ids as inputs; False where the graph has not transformers' pattern
    (positions gathered from a constant range, the mask unsqueezed twice to (batch, 1, 1, tokens))."""
    import onnx
    from onnx import TensorProto, helper

    from engine import packing

    model = onnx.load(str(source))
    graph = model.graph
    inputs = {item.name: item for item in graph.input}
    gathers = [n for n in graph.node if n.op_type == "Gather" and n.input[0].endswith("position_embeddings.weight")]
    first = [n for n in graph.node if n.op_type == "Unsqueeze" and n.input[0] == "attention_mask"]
    second = [n for n in graph.node if n.op_type == "Unsqueeze" and first and n.input[0] == first[0].output[0]]
    if "attention_mask" not in inputs or len(gathers) != 1 or len(first) != 1 or len(second) != 1:
        return False
    if "position_ids" not in inputs:
        graph.input.append(helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "tokens"]))
        gathers[0].input[1] = "position_ids"
    graph.input.append(helper.make_tensor_value_info(packing.SEGMENTS, TensorProto.INT64, ["batch", "tokens"]))
    mask_type = inputs["attention_mask"].type.tensor_type.elem_type
    graph.initializer.extend([helper.make_tensor("packed_axis_1", TensorProto.INT64, [1], [1]),
                              helper.make_tensor("packed_axis_2", TensorProto.INT64, [1], [2])])
    nodes = [helper.make_node("Unsqueeze", [packing.SEGMENTS, "packed_axis_2"], ["packed_rows"]),
             helper.make_node("Unsqueeze", [packing.SEGMENTS, "packed_axis_1"], ["packed_columns"]),
             helper.make_node("Equal", ["packed_rows", "packed_columns"], ["packed_same"]),
             helper.make_node("Cast", ["packed_same"], ["packed_pairs"], to=mask_type),
             helper.make_node("Unsqueeze", ["packed_pairs", "packed_axis_1"], ["packed_mask"])]  # (b, 1, t, t)
    old = second[0].output[0]  # (batch, 1, 1, tokens): every consumer broadcasts it, so (batch, 1, tokens, tokens) fits
    for node in graph.node:
        node.input[:] = ["packed_mask" if name == old else name for name in node.input]
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return True


def _ort_packed(embedder, target: Path, capacity: int):
    """embed_encoded's counterpart on ONNX Runtime with every batch packed at ``capacity`` through ``target``."""
    import onnxruntime as ort

    from engine import packing

    session = ort.InferenceSession(str(target), embedder.session().key.options.build(),
                                   providers=["CPUExecutionProvider"])
    name = embedder._output_name(session)

    def run(encoded) -> np.ndarray:
        packed = packing.pack(encoded, capacity, embedder.tokenizer.pad_id)
        (output,) = session.run([name], packed.feed)
        return embedder._postprocess(*packing.unpack(output, packed), 0)

    return run


def _openvino(variant: str, pack_tokens: int):
    """The engine's embed_encoded on OpenVINO, with a session of its own made with ``pack_tokens``."""
    from engine.sessions import SessionCache
    from engine.studio import Studio

    os.environ["STUDIO_OPENVINO_PACK_TOKENS"] = str(pack_tokens)
    embedder = Studio().embedder(MODEL, variant, "openvino")
    embedder.sessions = SessionCache()
    embedder.session()
    return embedder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="fp32")
    parser.add_argument("--capacities", default="64,128")
    parser.add_argument("--providers", default="cpu,openvino")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        capacities = [int(item) for item in args.capacities.split(",")]
    except ValueError:
        parser.error(f"--capacities takes token counts like 64,128, not {args.capacities!r}")
    if not capacities or min(capacities) < 1:
        parser.error("--capacities takes token counts of at least 1")
    unknown = set(args.providers.split(",")) - {"cpu", "openvino"}
    if unknown:
        parser.error(f"--providers takes cpu and/or openvino, not {', '.join(sorted(unknown))}")

    from engine.measure.bench import jsonl_texts
    from engine.settings import get_settings
    from engine.studio import Studio

    scifact = get_settings().shared_data / "scifact"
    queries = jsonl_texts(scifact / "queries.jsonl", 300)
    abstracts = jsonl_texts(scifact / "corpus.jsonl", 256)
    rng = np.random.default_rng(args.seed)
    folder = tempfile.TemporaryDirectory()
    for provider in args.providers.split(","):
        if provider == "openvino":
            unpacked = _openvino(args.variant, 0)
            runs = [_openvino(args.variant, capacity).embed_encoded for capacity in capacities]
        else:
            unpacked = Studio().embedder(MODEL, args.variant, provider)
            source = unpacked.spec.folder / unpacked.manifest.variants[args.variant].file
            target = Path(folder.name) / f"packed_{args.variant}.onnx"
            if not target.exists() and not packed_graph(source, target):
                sys.exit(f"error: {source.name} does not have the graph pattern this probe packs (try --variant fp32)")
            runs = [_ort_packed(unpacked, target, capacity) for capacity in capacities]
        precision = getattr(unpacked.session().session, "precision", "f32")
        print(f"{args.variant} on {provider} ({precision}), ms per call, unpacked / packed at "
              f"{', '.join(map(str, capacities))} tokens")
        cases = {"8 queries": (queries, 8, 150), "32 queries": (queries, 32, 40), "32 abstracts": (abstracts, 32, 8)}
        for label, (texts, size, count) in cases.items():
            batches = [unpacked.tokenizer.encode(list(rng.choice(texts, size=size, replace=False)))
                       for _ in range(count)]
            timings = [best_ms(run, batches, args.rounds) for run in [unpacked.embed_encoded, *runs]]
            lowest = min(float((unpacked.embed_encoded(encoded) * run(encoded)).sum(axis=1).min())
                         for run in runs for encoded in batches[:4])
            print(f"  {label:>12}: " + " / ".join(f"{t:7.2f}" for t in timings)
                  + f"   (min cosine packed vs unpacked {lowest:.7f})")
    return 0


if __name__ == "__main__":
    from engine.errors import StudioError

    try:
        sys.exit(main())
    except StudioError as exc:
        sys.exit(f"error: {exc}")
