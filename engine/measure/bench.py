"""Benchmark harness: ONNX Runtime (providers x variants x batch sizes) next to the PyTorch
sentence-transformers baseline and any OpenAI-compatible embedding server (vLLM, this project's own
API), on the same texts in one run. Every row records the provider that really ran, throughput,
latency percentiles, cold start, and parity against the reference vectors.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from engine.errors import InputError, StudioError
from engine.httpauth import mask_url, mask_urls
from engine.settings import REPO_ROOT
from engine.studio import Studio

log = logging.getLogger(__name__)
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class BenchResult:
    backend: str  # onnxruntime, torch, openai-http
    model: str
    variant: str  # fp32/optimized/fp16/int8 for ONNX; float32/float16 for torch; server model for http
    provider: str  # what really ran: cpu, cuda, ... (torch: its device; http: the URL)
    batch_size: int
    texts: int
    seconds: float
    texts_per_second: float
    tokens_per_second: float
    latency_ms_p50: float
    latency_ms_p90: float
    latency_ms_p99: float
    cold_start_seconds: float
    max_abs_diff: float | None = None  # against the reference vectors
    min_cosine: float | None = None
    speedup_vs_baseline: float | None = None
    peak_rss_mb: float | None = None
    error: str | None = None
    workload: str = ""  # side-by-side reports hold several workloads
    note: str = ""  # what the backend reported about itself (library version, quantisation, truncation)


@dataclass(frozen=True)
class BenchReport:
    created_at: str
    environment: dict
    workload: dict
    reference: str
    results: list[BenchResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**asdict(self), "results": [asdict(r) for r in self.results]}


def environment() -> dict:
    import onnxruntime as ort

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from engine.providers import available, cpu_count

    return {"machine": platform.machine(), "cpu": cpu, "cpu_threads": cpu_count(), "python": platform.python_version(),
            "onnxruntime": ort.__version__, "providers": available(), "load_average": os.getloadavg()[0]}


def jsonl_texts(path: Path, count: int) -> list[str]:
    """The first ``count`` texts of a BEIR-style JSONL file: title and text of each record."""
    texts = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            texts.append((record.get("title", "") + " " + record.get("text", "")).strip())
            if len(texts) >= count:
                break
    return texts


def workload_texts(name: str, count: int) -> list[str]:
    """'sentences' (short, built in) or a path to a BEIR corpus.jsonl / a .txt file (one text per line)."""
    if name == "sentences":
        base = [
            "A man is playing a guitar on stage.", "The new model halves the latency of retrieval.",
            "Quantised weights make inference cheaper on CPUs.", "How do I reset my password?",
            "Scientists discovered a new species of frog in the rainforest.",
            "The committee will publish its report next week after the final review.",
        ]
        return [f"{base[i % len(base)]} ({i})" for i in range(count)]
    path = Path(name)
    if not path.is_file():
        raise InputError(f"Workload {name!r} is neither 'sentences' nor a file.", "give a corpus.jsonl or .txt path")
    if path.suffix == ".jsonl":
        return jsonl_texts(path, count)
    return [t.rstrip("\r") for t in path.read_text(encoding="utf-8").split("\n") if t.strip()][:count]  # \n only


def _percentiles(latencies: Sequence[float]) -> tuple[float, float, float]:
    values = np.array(latencies) * 1000
    return tuple(float(np.percentile(values, p)) for p in (50, 90, 99))  # type: ignore[return-value]


def _compare(ours: np.ndarray, reference: np.ndarray | None) -> tuple[float | None, float | None]:
    if reference is None or reference.shape != ours.shape:
        return None, None
    diff = float(np.abs(ours - reference).max())
    a = ours / np.maximum(np.linalg.norm(ours, axis=1, keepdims=True), 1e-12)
    b = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    return diff, float((a * b).sum(axis=1).min())


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def with_bench_batching(embedder, batch_size: int):
    """The embedder with exactly ``batch_size`` texts per call (the token budget raised to fit a full batch)."""
    return embedder.with_batching(batch_size, max(embedder.max_batch_tokens, batch_size * embedder.tokenizer.max_seq_length))


def timed_batches(embed, texts: list[str], batch_size: int) -> tuple[float, list[float], np.ndarray]:
    """Wall seconds, each call's latency and the vectors of embedding ``texts`` ``batch_size`` at a time."""
    latencies, parts = [], []
    begin = time.perf_counter()
    for first in range(0, len(texts), batch_size):
        t0 = time.perf_counter()
        parts.append(embed(texts[first:first + batch_size]))
        latencies.append(time.perf_counter() - t0)
    return time.perf_counter() - begin, latencies, np.concatenate(parts)


def run_onnx(studio: Studio, model: str, variant: str, provider: str, batch_size: int, texts: list[str],
             tokens: int) -> tuple[BenchResult, np.ndarray]:
    embedder = with_bench_batching(studio.embedder(model, variant, provider), batch_size)
    started = time.perf_counter()
    cached = embedder.session()
    cold = time.perf_counter() - started
    embedder.embed(texts[:batch_size])  # warm-up with the real shapes
    seconds, latencies, vectors = timed_batches(embedder.embed, texts, batch_size)
    p50, p90, p99 = _percentiles(latencies)
    result = BenchResult("onnxruntime", model, variant, cached.active_provider, batch_size, len(texts), seconds,
                         len(texts) / seconds, tokens / seconds, p50, p90, p99, cold, peak_rss_mb=_rss_mb())
    return result, vectors


def run_torch(studio: Studio, model: str, batch_sizes: Sequence[int], texts: list[str], tokens: int,
              device: str = "cpu") -> tuple[list[BenchResult], np.ndarray | None]:
    spec = studio.registry.require_converted(model)
    source = spec.manifest.source if spec.manifest else spec.conversion_source
    with tempfile.TemporaryDirectory() as tmp:
        texts_file, vectors_file = Path(tmp) / "texts.json", Path(tmp) / "vectors.npy"
        texts_file.write_text(json.dumps(texts), encoding="utf-8")
        command = [sys.executable, str(REPO_ROOT / "converter" / "baseline.py"), source, "--texts", str(texts_file),
                   "--batch-sizes", ",".join(map(str, batch_sizes)), "--out", str(vectors_file), "--device", device,
                   "--dtype", "float16" if device.startswith("cuda") else "float32"]
        from engine.providers import cpu_count

        command += ["--threads", str(cpu_count())]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
        if done.returncode != 0 or not done.stdout.strip():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            message = json.loads(done.stdout).get("error") if done.stdout.strip().startswith("{") else " | ".join(tail)
            raise StudioError(f"The sentence-transformers baseline failed: {message}",
                              "install converter/requirements.txt (torch, sentence-transformers)")
        data = json.loads(done.stdout.strip().splitlines()[-1])
        vectors = np.load(vectors_file) if vectors_file.is_file() else None
    log.info("torch baseline ran in %.1fs", time.perf_counter() - started)
    results = []
    for run in data["runs"]:
        p50, p90, p99 = _percentiles(run["latencies"])
        results.append(BenchResult("torch", model, data["dtype"], data["device"], run["batch_size"], len(texts),
                                   run["seconds"], run["texts_per_second"], tokens / run["seconds"], p50, p90, p99,
                                   data["load_seconds"], peak_rss_mb=data["peak_rss_mb"]))
    return results, vectors


def run_http(url: str, model: str, batch_size: int, texts: list[str], tokens: int,
             api_key: str | None = None) -> tuple[BenchResult, np.ndarray]:
    """An OpenAI-compatible /v1/embeddings server (vLLM, TEI, this project's API)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    endpoint = url.rstrip("/") + ("/embeddings" if url.rstrip("/").endswith("/v1") else "/v1/embeddings")
    latencies, parts = [], []
    with httpx.Client(timeout=300, headers=headers) as client:
        def call(batch: list[str]) -> np.ndarray:
            try:
                response = client.post(endpoint, json={"model": model, "input": batch})
            except httpx.HTTPError as exc:
                raise StudioError(f"The embedding server at {mask_url(url)} did not answer: "
                                  f"{mask_urls(str(exc))}") from None
            if response.status_code != 200:
                raise StudioError(f"The embedding server at {mask_url(url)} answered {response.status_code}: "
                                  f"{response.text[:200]}")
            data = sorted(response.json()["data"], key=lambda d: d["index"])
            return np.array([d["embedding"] for d in data], dtype=np.float32)

        started = time.perf_counter()
        call(texts[:batch_size])
        cold = time.perf_counter() - started
        begin = time.perf_counter()
        for first in range(0, len(texts), batch_size):
            t0 = time.perf_counter()
            parts.append(call(texts[first:first + batch_size]))
            latencies.append(time.perf_counter() - t0)
        seconds = time.perf_counter() - begin
    p50, p90, p99 = _percentiles(latencies)
    return (BenchResult("openai-http", model, model, mask_url(url), batch_size, len(texts), seconds, len(texts) / seconds,
                        tokens / seconds, p50, p90, p99, cold), np.concatenate(parts))


def _measured(run: Callable[[], tuple[BenchResult, np.ndarray]], failed: BenchResult, reference: np.ndarray | None,
              baseline_speed: dict[int, float]) -> BenchResult:
    """One row: the run's figures plus parity and speed-up, or the error in the row if it could not run."""
    try:
        row, vectors = run()
    except StudioError as exc:
        return BenchResult(**{**asdict(failed), "error": exc.message})
    diff, cosine = _compare(vectors, reference)
    speed = baseline_speed.get(row.batch_size)
    return BenchResult(**{**asdict(row), "max_abs_diff": diff, "min_cosine": cosine,
                          "speedup_vs_baseline": row.texts_per_second / speed if speed else None})


def run_benchmark(studio: Studio, models: Sequence[str], variants: Sequence[str], providers: Sequence[str],
                  batch_sizes: Sequence[int], texts: list[str], baseline: bool = True,
                  http_urls: Sequence[str] = (), http_model: str | None = None,
                  progress: Progress | None = None, workload: str = "") -> BenchReport:
    if not texts:
        raise InputError("The benchmark needs at least one text.", "use --texts 1 or more, or a --workload file that holds texts")
    report_progress = progress or (lambda step, fraction: log.info("[%3.0f%%] %s", fraction * 100, step))
    results: list[BenchResult] = []
    reference_label = "onnxruntime fp32 on cpu"
    plan = [(m, v, p, b) for m in models for v in variants for p in providers for b in batch_sizes]
    steps = len(plan) + (len(models) if baseline else 0) + len(http_urls) * len(batch_sizes)
    step = 0
    for model in models:
        embedder = studio.embedder(model, "fp32", "cpu")
        tokens = sum(len(e.ids) for e in embedder.tokenizer.encode(texts))
        reference: np.ndarray | None = None
        baseline_speed: dict[int, float] = {}
        if baseline:
            report_progress(f"{model}: sentence-transformers baseline", step / steps)
            try:
                torch_rows, reference = run_torch(studio, model, batch_sizes, texts, tokens)
                results.extend(torch_rows)
                baseline_speed = {r.batch_size: r.texts_per_second for r in torch_rows}
                reference_label = "sentence-transformers (torch fp32, cpu)"
            except StudioError as exc:
                log.warning("%s", exc.message)
                results.append(BenchResult("torch", model, "float32", "cpu", 0, len(texts), 0, 0, 0, 0, 0, 0, 0,
                                           error=exc.message))
            step += 1
        if reference is None:
            reference = embedder.embed(texts)
        for variant in variants:
            for provider in providers:
                for batch_size in batch_sizes:
                    report_progress(f"{model}/{variant} on {provider}, batch {batch_size}", step / steps)
                    step += 1
                    results.append(_measured(
                        partial(run_onnx, studio, model, variant, provider, batch_size, texts, tokens),
                        BenchResult("onnxruntime", model, variant, provider, batch_size, len(texts), 0, 0, 0, 0, 0, 0, 0),
                        reference, baseline_speed))
        for url in http_urls:
            for batch_size in batch_sizes:
                report_progress(f"{mask_url(url)}, batch {batch_size}", step / steps)
                step += 1
                results.append(_measured(
                    partial(run_http, url, http_model or model, batch_size, texts, tokens),
                    BenchResult("openai-http", model, http_model or model, mask_url(url), batch_size, len(texts),
                                0, 0, 0, 0, 0, 0, 0),
                    reference, baseline_speed))
    report_progress("done", 1.0)
    lengths = [len(t) for t in texts]
    return BenchReport(
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        environment=environment(),
        workload={"name": workload, "texts": len(texts), "mean_chars": float(np.mean(lengths)),
                  "tokens": tokens if models else 0},
        reference=reference_label,
        results=results,
    )


CSV_FIELDS = [f for f in BenchResult.__dataclass_fields__]


def save_report(report: BenchReport, folder: Path) -> tuple[Path, Path]:
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    stem = "bench-" + report.created_at.replace(":", "").replace("-", "").replace("T", "-").rstrip("Z")
    json_path, csv_path = folder / f"{stem}.json", folder / f"{stem}.csv"
    json_path.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in report.results:
            writer.writerow(asdict(row))
    return json_path, csv_path


def load_report(path: Path) -> BenchReport:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        results = [BenchResult(**row) for row in data.pop("results")]
        return BenchReport(**data, results=results)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InputError(f"{Path(path).name} is not a benchmark report: {exc}",
                         "delete it, or write a new one with python -m engine bench") from None


def list_reports(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("bench-*.json"), reverse=True) if Path(folder).is_dir() else []
