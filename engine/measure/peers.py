"""Side by side: this engine's configurations against the peer libraries, on the same texts, in one
run. Every backend (each peer and each of our configurations) runs in its own process; rounds are
interleaved (round 1 of every backend, then round 2, ...) so that a noisy machine slows all of them
alike, and each row keeps its best round. Parity is measured against sentence-transformers torch
fp32 (``st-torch``) on the same texts, or against our fp32 on the CPU when that peer is not run.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputError, StudioError
from engine.measure import peer_env as peer_lib
from engine.measure.bench import BenchReport, BenchResult, _compare, _percentiles, environment, jsonl_texts
from engine.settings import REPO_ROOT
from engine.studio import Studio

log = logging.getLogger(__name__)
Progress = Callable[[str, float], None]
SCIFACT = Path(__import__("os").environ.get("STUDIO_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")) / "scifact"
WORKLOADS = {"scifact-queries": ("queries.jsonl", 300), "scifact-abstracts": ("corpus.jsonl", 256)}
DEFAULT_CONFIGS = ("fp32:cpu", "optimized:cpu", "int8:cpu", "fp32:openvino", "optimized:openvino", "int8-static:openvino")


@dataclass(frozen=True)
class OurConfig:
    variant: str
    provider: str

    @property
    def name(self) -> str:
        return f"ours {self.variant}" + ("" if self.provider in ("cpu", "auto") else f" · {self.provider}")

    @classmethod
    def parse(cls, text: str) -> OurConfig:
        variant, _, provider = text.strip().partition(":")
        if not variant:
            raise InputError(f"Configuration {text!r} is not VARIANT[:PROVIDER].", "e.g. int8:cpu")
        return cls(variant, provider or "cpu")


def workload(name: str, folder: Path = SCIFACT) -> list[str]:
    """300 SciFact queries or 256 SciFact abstracts (title + text), in file order."""
    if name not in WORKLOADS:
        raise InputError(f"Unknown workload {name!r}.", f"use one of: {', '.join(WORKLOADS)}")
    file, count = WORKLOADS[name]
    path = folder / file
    if not path.is_file():
        raise InputError(f"The SciFact file {path} is missing.", "set STUDIO_SHARED_DATA to the folder holding scifact/")
    return jsonl_texts(path, count)


@dataclass
class _Backend:
    name: str
    variant: str
    process: peer_lib.PeerProcess | None
    error: str | None = None
    load_error: str | None = None
    best: peer_lib.PeerRun | None = None
    vectors: np.ndarray | None = None


def _start(studio: Studio, model: str, names: Sequence[str], configs: Sequence[OurConfig], work: Path,
           threads: int) -> list[_Backend]:
    backends: list[_Backend] = []
    onnx_file = None
    if "fastembed" in names:
        spec = studio.registry.require_converted(model)
        onnx_file = spec.folder / spec.manifest.variants["fp32"].file
    python = peer_lib.ensure_env() if names else None
    for name in names:
        command = peer_lib.peer_command(name, work, onnx_file, threads, python)
        backends.append(_Backend(name, name.removeprefix("st-"), peer_lib.PeerProcess(name, command, threads)))
    # our workers read the models of this studio's data folder (``--data-dir``), not the environment's default
    ours_env = {"STUDIO_DATA_DIR": str(studio.settings.data_dir)}
    for config in configs:
        command = peer_lib.ours_command(model, config.variant, config.provider)
        backends.append(_Backend(config.name, config.variant,
                                 peer_lib.PeerProcess(config.name, command, threads, env=ours_env)))
    for backend in backends:  # one at a time: loading in parallel on a small machine only thrashes
        try:
            backend.process.load()
        except StudioError as exc:
            backend.load_error = exc.message
            log.warning("%s", exc.message)
    return backends


def _row(backend: _Backend, model: str, workload_name: str, batch_size: int, texts: int, tokens: int,
         reference: np.ndarray | None, baseline: float | None) -> BenchResult:
    info = backend.process.info if backend.process else {}
    provider = str(info.get("provider", "cpu"))
    if backend.error or backend.best is None:
        return BenchResult(backend.name, model, backend.variant, provider, batch_size, texts, 0, 0, 0, 0, 0, 0, 0,
                           error=backend.error or "no run", workload=workload_name)
    run = backend.best
    p50, p90, p99 = _percentiles(run.latencies)
    diff, cosine = _compare(backend.vectors, reference) if backend.vectors is not None else (None, None)
    speed = texts / run.seconds
    note = ", ".join(f"{k} {v}" for k, v in info.items() if k in ("library", "quantization", "truncation_tokens",
                                                                 "openvino_precision", "fallback") and v)
    return BenchResult(backend.name, model, backend.variant, provider, batch_size, texts, run.seconds, speed,
                       tokens / run.seconds, p50, p90, p99, backend.process.load_seconds, diff, cosine,
                       speed / baseline if baseline else None, run.peak_rss_mb, workload=workload_name, note=note)


def run_side_by_side(studio: Studio, model: str, peer_names: Sequence[str], configs: Sequence[OurConfig],
                     workloads: Sequence[str], batch_size: int = 32, rounds: int = 3,
                     progress: Progress | None = None, threads: int | None = None) -> BenchReport:
    from engine.providers import cpu_count

    unknown = [p for p in peer_names if p not in peer_lib.PEERS]
    if unknown:
        raise InputError(f"Unknown peer(s): {', '.join(unknown)}.", f"use any of: {', '.join(peer_lib.PEERS)}")
    report_progress = progress or (lambda step, fraction: log.info("[%3.0f%%] %s", fraction * 100, step))
    threads = threads or cpu_count()
    texts_by_workload = {name: workload(name) for name in workloads}
    tokenizer = studio.embedder(model, "fp32", "cpu").tokenizer
    results: list[BenchResult] = []
    work = peer_lib.venv_dir() / "work"
    report_progress("starting the backends (the peers' environment is created on first use)", 0.0)
    backends = _start(studio, model, peer_names, configs, work, threads)
    try:
        steps = max(1, len(workloads) * (rounds + 1) * len(backends))
        step = 0
        with tempfile.TemporaryDirectory() as tmp:
            for workload_name, texts in texts_by_workload.items():
                texts_file = Path(tmp) / f"{workload_name}.json"
                texts_file.write_text(json.dumps(texts), encoding="utf-8")
                tokens = sum(len(e.ids) for e in tokenizer.encode(texts))
                for backend in backends:
                    backend.best, backend.vectors, backend.error = None, None, backend.load_error
                for round_index in range(rounds + 1):  # round 0: warm-up with these shapes, and the vectors
                    order = backends[round_index % len(backends):] + backends[:round_index % len(backends)]
                    for backend in order:
                        step += 1
                        if backend.error:
                            continue
                        report_progress(f"{workload_name}: {backend.name}, round {round_index}/{rounds}", step / steps)
                        out = Path(tmp) / f"{abs(hash(backend.name))}.npy" if round_index == 0 else None
                        try:
                            run = backend.process.run(texts_file, batch_size, out)
                        except StudioError as exc:
                            backend.error = exc.message
                            continue
                        if out is not None:
                            backend.vectors = np.load(out)
                        elif backend.best is None or run.seconds < backend.best.seconds:
                            backend.best = run
                reference_backend = next((b for b in backends if b.name == "st-torch" and b.vectors is not None),
                                         next((b for b in backends if b.name == "ours fp32" and b.vectors is not None),
                                              None))
                reference = reference_backend.vectors if reference_backend else None
                baseline = next((len(texts) / b.best.seconds for b in backends if b.name == "st-torch" and b.best), None)
                results += [_row(b, model, workload_name, batch_size, len(texts), tokens, reference, baseline)
                            for b in backends]
    finally:
        for backend in backends:
            if backend.process is not None:
                backend.process.close()
    report_progress("done", 1.0)
    reference_label = ("sentence-transformers torch fp32 (st-torch)" if "st-torch" in peer_names
                       else "this engine, fp32 on the CPU")
    return BenchReport(
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        environment={**environment(), "threads": threads, "cpu_flags": cpu_flags()},
        workload={"name": ",".join(workloads), "texts": sum(len(t) for t in texts_by_workload.values()),
                  "batch_size": batch_size, "rounds": rounds, "mode": "side-by-side, interleaved rounds, best round"},
        reference=reference_label,
        results=results,
    )


def cpu_flags() -> list[str]:
    """The CPU features that decide the fast paths (AVX-512, VNNI, BF16, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return [f for f in wanted if f in flags]


def markdown(report: BenchReport) -> str:
    """The report as Markdown tables, one per workload (what docs/benchmarks.md quotes)."""
    env = report.environment
    lines = [f"Measured {report.created_at} on {env.get('cpu', '?')} ({env.get('cpu_threads', '?')} threads; "
             f"flags: {', '.join(env.get('cpu_flags', [])) or 'n/a'}), ONNX Runtime {env.get('onnxruntime', '?')}, "
             f"batch {report.workload.get('batch_size')}, best of {report.workload.get('rounds')} interleaved rounds; "
             f"parity against {report.reference}.", ""]
    for name in dict.fromkeys(r.workload for r in report.results):
        rows = [r for r in report.results if r.workload == name]
        lines += [f"### {name}", "",
                  "| backend | texts/s | tokens/s | p50 ms | p99 ms | RSS MB | max abs diff | min cosine | x st-torch |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if r.error:
                lines.append(f"| {r.backend} | error: {r.error[:80]} | | | | | | | |")
                continue
            diff = f"{r.max_abs_diff:.1e}" if r.max_abs_diff is not None else "-"
            cosine = f"{r.min_cosine:.6f}" if r.min_cosine is not None else "-"
            speedup = f"{r.speedup_vs_baseline:.2f}" if r.speedup_vs_baseline else "-"
            lines.append(f"| {r.backend} | {r.texts_per_second:.1f} | {r.tokens_per_second:.0f} | {r.latency_ms_p50:.1f} "
                         f"| {r.latency_ms_p99:.1f} | {r.peak_rss_mb or 0:.0f} | {diff} | {cosine} | {speedup} |")
        lines.append("")
    return "\n".join(lines)
