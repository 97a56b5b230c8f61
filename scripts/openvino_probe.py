"""Probe (not part of the engine): the engine's ONNX files through ONNX Runtime, the OpenVINO runtime (f32) and,
with --nncf, an NNCF static-int8 model calibrated on 300 other SciFact abstracts; 256 abstracts, batch 32, in one
process, rounds interleaved, best of 3. Runs in the peers' environment (openvino, nncf, tokenizers):

    .venv-peers/bin/python scripts/openvino_probe.py [MODEL_DIR] [--nncf]

Result on the AVX2-only 2-core EPYC (docs/benchmarks.md): OpenVINO f32 about ORT's speed; NNCF int8 slower.
"""
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
import openvino as ov
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = [a for a in sys.argv[1:] if not a.startswith("--")]
DATA = os.environ.get("STUDIO_DATA_DIR", os.path.join(ROOT, "data"))
MODEL = args[0] if args else os.path.join(DATA, "models", "all-minilm-l6-v2")
SHARED = os.environ.get("STUDIO_SHARED_DATA", os.path.join(os.path.dirname(ROOT), "shared", "data"))
with open(os.path.join(SHARED, "scifact", "corpus.jsonl"), encoding="utf-8") as handle:
    corpus = [json.loads(line) for line in handle.read().split("\n") if line.strip()]
texts = [(d.get("title", "") + " " + d["text"]).strip() for d in corpus[:256]]
calib = [(d.get("title", "") + " " + d["text"]).strip() for d in corpus[1000:1300]]
tok = Tokenizer.from_file(f"{MODEL}/tokenizer.json")
tok.enable_truncation(256)
tok.enable_padding()

def batches(ts, n=32):
    order = sorted(range(len(ts)), key=lambda i: -len(ts[i]))
    for s in range(0, len(ts), n):
        idx = order[s:s + n]
        enc = tok.encode_batch([ts[i] for i in idx])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        yield idx, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

def pool(h, mask):
    m = mask[..., None].astype(np.float32)
    v = (h * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    return v / np.linalg.norm(v, axis=1, keepdims=True)

def run_all(fn, ts):
    out = np.zeros((len(ts), 384), np.float32)
    for idx, feed in batches(ts):
        out[idx] = pool(fn(feed), feed["attention_mask"])
    return out

so = ort.SessionOptions()
so.intra_op_num_threads = 2
so.inter_op_num_threads = 1
backends = {}


def ort_fn(session):
    names = {i.name for i in session.get_inputs()}
    return lambda feed: session.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in names})[0]


for name, f in (("ort fp32", "model.onnx"), ("ort optimized", "model_optimized.onnx"), ("ort int8", "model_int8.onnx")):
    s = ort.InferenceSession(f"{MODEL}/{f}", so, providers=["CPUExecutionProvider"])
    names = {i.name for i in s.get_inputs()}
    backends[name] = ort_fn(s)

core = ov.Core()
cfg = {"INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
ovm = core.read_model(f"{MODEL}/model.onnx")
out_name = [o.get_any_name() for o in ovm.outputs]
compiled = core.compile_model(ovm, "CPU", cfg)
req = compiled.create_infer_request()
def ov_fn(req, compiled):
    names = {i.get_any_name() for i in compiled.inputs}
    def f(feed):
        r = req.infer({k: v for k, v in feed.items() if k in names})
        return r[compiled.output("last_hidden_state")]
    return f
backends["openvino f32"] = ov_fn(req, compiled)

if "--nncf" in sys.argv:
    import nncf
    def transform(t):
        enc = tok.encode_batch([t])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    t0 = time.perf_counter()
    q = nncf.quantize(core.read_model(f"{MODEL}/model.onnx"), nncf.Dataset(calib, transform),
                      model_type=nncf.ModelType.TRANSFORMER, subset_size=300)
    print("nncf quantize s", round(time.perf_counter() - t0, 1), flush=True)
    cq = core.compile_model(q, "CPU", cfg)
    backends["openvino nncf int8"] = ov_fn(cq.create_infer_request(), cq)

ref = run_all(backends["ort fp32"], texts)
best = {k: 1e9 for k in backends}
vecs = {}
for k, fn in backends.items():
    vecs[k] = run_all(fn, texts[:64])  # warm-up
for _ in range(3):
    for k, fn in backends.items():
        t = time.perf_counter()
        vecs[k] = run_all(fn, texts)
        best[k] = min(best[k], time.perf_counter() - t)
for k in backends:
    cos = (vecs[k] * ref).sum(1)
    print(f"{k:22s} {len(texts)/best[k]:6.1f} texts/s  min cos vs ort fp32 {cos.min():.6f}", flush=True)
