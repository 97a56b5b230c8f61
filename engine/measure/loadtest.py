"""Throughput of the HTTP API against the engine called in-process, on the same texts, in one run.

    python -m engine.measure.loadtest [--texts scifact|queries|FILE] [--count 512] [--concurrency 1,8,64]

1. embeds the texts in-process (one call with all of them, then one text per call): the reference
   vectors and the engine's own rate;
2. starts ``python -m engine serve`` as a subprocess on a free 127.0.0.1 port and waits for /ready;
3. for each concurrency C, C client threads (keep-alive connections) send ``--per-request`` texts
   per request until all texts are done: embeddings/s, p50/p99 request latency, the server's mean
   batch size (from /metrics), and the largest difference from the in-process vectors;
4. reports the server's peak resident memory (VmHWM) and the machine's load average.

The client runs on the same machine as the server and takes CPU from it; the figures are what a
client next to the server sees.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LevelResult:
    concurrency: int
    texts: int
    requests: int
    seconds: float
    texts_per_second: float
    p50_ms: float
    p99_ms: float
    mean_batch_size: float
    max_abs_diff: float


def load_texts(source: str, count: int) -> list[str]:
    """SciFact abstracts (``scifact``), SciFact claims (``queries``: short sentences), or a file
    with one text per line."""
    if source in ("scifact", "queries"):
        name = "corpus.jsonl" if source == "scifact" else "queries.jsonl"
        from engine.settings import get_settings

        path = get_settings().shared_data / "scifact" / name
        texts = []
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                text = json.loads(line)["text"].strip()
                if text:
                    texts.append(text)
                if len(texts) == count:
                    break
        return texts
    lines = [line.strip() for line in Path(source).read_text(encoding="utf-8").split("\n") if line.strip()]  # \n only
    return lines[:count]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (peak resident set) of a process in bytes, from /proc (Linux)."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values


def batch_stats(metrics_text: str) -> tuple[float, float]:
    """(sum, count) of the server's batch-size histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    total = count = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "studio_embedding_batch_size":
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    total += sample.value
                elif sample.name.endswith("_count"):
                    count += sample.value
    return total, count


def decode(item: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")


def run_level(base: str, model: str, texts: list[str], concurrency: int, per_request: int,
              headers: dict[str, str]) -> tuple[float, list[float], dict[int, bytes]]:
    """``concurrency`` client threads, one keep-alive connection each (http.client: a fraction of
    httpx's CPU per request, which matters when client and server share two cores). Returns the
    wall time, each request's latency and the raw response bodies by first text index."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    chunks = [(start, texts[start:start + per_request]) for start in range(0, len(texts), per_request)]
    cursor = iter(chunks)
    lock = threading.Lock()
    latencies: list[float] = []
    bodies: dict[int, bytes] = {}
    failures: list[str] = []

    def client() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=600)
        try:
            while True:
                with lock:
                    item = next(cursor, None)
                if item is None:
                    return
                start, chunk = item
                payload = json.dumps({"input": chunk, "model": model, "encoding_format": "base64"})
                began = time.perf_counter()
                connection.request("POST", "/v1/embeddings", payload,
                                   {"Content-Type": "application/json", **headers})
                response = connection.getresponse()
                body = response.read()
                latencies.append(time.perf_counter() - began)
                if response.status != 200:
                    failures.append(f"HTTP {response.status}: {body[:200]!r}")
                bodies[start] = body
        finally:
            connection.close()

    threads = [threading.Thread(target=client, name=f"client-{i}") for i in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, first: {failures[0]}")
    return seconds, latencies, bodies


def max_difference(bodies: dict[int, bytes], reference: np.ndarray) -> float:
    worst = 0.0
    for start, body in bodies.items():
        got = np.stack([decode(item) for item in json.loads(body)["data"]])
        worst = max(worst, float(np.abs(got - reference[start:start + len(got)]).max()))
    return worst


def wait_ready(base: str, process: subprocess.Popen | None, headers: dict[str, str], timeout: float = 180) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode} before it was ready")
        try:
            response = httpx.get(f"{base}/ready", headers=headers, timeout=5)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"the server was not ready within {timeout:.0f}s")


def in_process(args: argparse.Namespace, texts: list[str]) -> tuple[np.ndarray, dict]:
    from engine.settings import load_settings
    from engine.studio import Studio

    studio = Studio(load_settings(data_dir=args.data_dir))
    embedder = studio.embedder(args.model, args.variant, args.provider)
    embedder.embed(texts[:8])  # session load and warm-up are not part of the rate
    began = time.perf_counter()
    reference = embedder.embed(texts)
    all_at_once = time.perf_counter() - began
    single = min(len(texts), args.single_count)
    began = time.perf_counter()
    for text in texts[:single]:
        embedder.embed([text])
    one_by_one = time.perf_counter() - began
    tokens = [len(e.ids) for e in embedder.tokenizer.encode(texts)]
    info = embedder.info()
    return reference, {
        "model": info["model"], "variant": info["variant"], "provider": info["provider"],
        "batch_texts_per_second": round(len(texts) / all_at_once, 1),
        "single_texts_per_second": round(single / one_by_one, 1),
        "mean_tokens": round(float(np.mean(tokens)), 1),
        "max_tokens": int(max(tokens)),
    }


def start_server(args: argparse.Namespace, base: str, model: str, variant: str, provider: str) -> subprocess.Popen:
    """The server on the configuration the in-process engine ran (``auto`` resolved there: the same variant
    and provider, so the two rates compare the same arithmetic)."""
    port = base.rsplit(":", 1)[1]
    command = [sys.executable, "-m", "engine", "serve", "--port", port, "--no-access-log", "--model", model,
               "--variant", variant, "--provider", provider]
    if args.data_dir:
        command += ["--data-dir", str(args.data_dir)]
    log_file = tempfile.NamedTemporaryFile("w+", prefix="loadtest-server-", suffix=".log", delete=False)
    print(f"server log: {log_file.name}", file=sys.stderr)
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log_file)


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def measure_level(base: str, model: str, texts: list[str], reference: np.ndarray, concurrency: int, per_request: int,
                  headers: dict[str, str]) -> LevelResult:
    import httpx

    before = batch_stats(httpx.get(f"{base}/metrics", headers=headers).text)
    seconds, latencies, bodies = run_level(base, model, texts, concurrency, per_request, headers)
    after = batch_stats(httpx.get(f"{base}/metrics", headers=headers).text)
    worst = max_difference(bodies, reference)
    batches = after[1] - before[1]
    return LevelResult(
        concurrency=concurrency, texts=len(texts), requests=len(latencies), seconds=round(seconds, 3),
        texts_per_second=round(len(texts) / seconds, 1), p50_ms=round(percentile(latencies, 50) * 1000, 1),
        p99_ms=round(percentile(latencies, 99) * 1000, 1),
        mean_batch_size=round((after[0] - before[0]) / batches, 1) if batches else 0.0,
        max_abs_diff=worst,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.measure.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", default="scifact", help="scifact (abstracts), queries (short claims) or a file")
    parser.add_argument("--count", type=int, default=512, help="texts per concurrency level")
    parser.add_argument("--concurrency", default="1,8,64", help="comma list of concurrent clients")
    parser.add_argument("--per-request", type=int, default=1, help="texts per HTTP request")
    parser.add_argument("--single-count", type=int, default=128, help="texts for the in-process one-by-one rate")
    parser.add_argument("--model", default=None)
    parser.add_argument("--variant", default=None)
    parser.add_argument("--provider", default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--url", default=None, help="measure a server that is already running (no memory figures "
                        "unless --server-pid names its process)")
    parser.add_argument("--server-pid", type=int, default=None, help="with --url: the server's process id, for RSS")
    args = parser.parse_args(argv)

    texts = load_texts(args.texts, args.count)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    load_before = os.getloadavg()
    reference, engine_figures = in_process(args, texts)
    model = args.model or engine_figures["model"]

    token = os.environ.get("API_TOKEN") or os.environ.get("STUDIO_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    server = None
    if args.url:
        base, pid = args.url.rstrip("/"), args.server_pid
    else:
        base = f"http://127.0.0.1:{free_port()}"
        server = start_server(args, base, model, engine_figures["variant"], engine_figures["provider"])
        pid = server.pid
    try:
        ready = wait_ready(base, server, headers)
        rss_idle = proc_status(pid).get("VmRSS", 0) if pid else 0
        results = [measure_level(base, model, texts, reference, c, args.per_request, headers) for c in levels]
        memory = proc_status(pid) if pid else {}
    finally:
        if server is not None:
            stop_server(server)
    load_after = os.getloadavg()

    report = {
        "texts": args.texts, "count": len(texts), "per_request": args.per_request,
        "cpus": len(os.sched_getaffinity(0)), "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "engine": engine_figures, "server": {"provider": ready.get("provider"), "variant": ready.get("variant"),
                                             "rss_idle_mb": round(rss_idle / 2**20, 1),
                                             "rss_peak_mb": round(memory.get("VmHWM", 0) / 2**20, 1)},
        "levels": [asdict(r) for r in results],
    }
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def render(report: dict) -> str:
    engine = report["engine"]
    lines = [
        f"texts: {report['count']} from {report['texts']} (mean {engine['mean_tokens']} tokens, max {engine['max_tokens']}), "
        f"{report['per_request']} per request; model {engine['model']}/{engine['variant']} on {engine['provider']}",
        f"machine: {report['cpus']} CPUs, load average before {report['load_average_before']} "
        f"after {report['load_average_after']}",
        f"in-process engine: {engine['batch_texts_per_second']} texts/s (one call, all texts), "
        f"{engine['single_texts_per_second']} texts/s (one text per call)",
        "",
        f"{'clients':>7}  {'texts/s':>8}  {'vs engine':>9}  {'p50 ms':>8}  {'p99 ms':>8}  {'batch':>6}  {'max|diff|':>9}",
    ]
    for level in report["levels"]:
        ratio = level["texts_per_second"] / engine["batch_texts_per_second"]
        lines.append(f"{level['concurrency']:>7}  {level['texts_per_second']:>8.1f}  {ratio:>8.2f}x  {level['p50_ms']:>8.1f}  "
                     f"{level['p99_ms']:>8.1f}  {level['mean_batch_size']:>6.1f}  {level['max_abs_diff']:>9.1e}")
    server = report["server"]
    lines.append(f"\nserver: {server['variant']} on {server['provider']}, RSS idle {server['rss_idle_mb']} MB, "
                 f"peak {server['rss_peak_mb']} MB")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
