"""Throughput of the HTTP API against the engine called in-process, on the same texts, in one run.

    python -m engine.measure.loadtest [--texts scifact|queries|FILE] [--count 512] [--concurrency 1,8,64]

1. embeds the texts in-process: the reference vectors, then the engine's own rates (best of ``--rounds``
   after a warm-up call): ``--batch`` texts per call, in the order given, as ``engine bench`` runs it (the
   in-process rate the HTTP target is set against), all texts in one call (the ceiling: sorted by length,
   least padding), and one text per call;
2. starts ``python -m engine serve`` as a subprocess on a free 127.0.0.1 port and waits for /ready,
   then sends every text once at the highest concurrency (the warm-up: the server meets the shapes
   the in-process engine met in its warm-up call);
3. for each concurrency C, C closed-loop clients (keep-alive connections) send ``--per-request``
   texts per request until all texts are done, ``--rounds`` times: the best round's embeddings/s,
   p50/p99 request latency, the server's mean batch size and inference time per call and the share of the
   wall time its model ran (from /metrics), the CPU time the server and the clients spent per request, and
   the largest difference from the in-process vectors;
4. reports the server's peak resident memory (VmHWM) and the machine's load average;
5. with the server stopped, embeds the texts in-process in consecutive batches of each level's mean
   batch size: the rate batching as requests arrive allows before any HTTP cost ("same batches").

The clients run on the same machine as the server and take CPU from it. ``--client asyncio`` (the
default) is one event loop speaking HTTP/1.1 over raw sockets with the requests built before the
clock starts, as load generators such as wrk do (~0.05 ms of CPU per request);
``--client threads`` is a thread per client with ``http.client`` (0.15-0.2 ms measured), what a plain
Python caller costs. Either way every response is decoded and checked against the in-process vectors.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
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
    server_cpu_ms_per_request: float | None = None  # None: the server's process is not known (--url alone)
    client_cpu_ms_per_request: float = 0.0
    # the engine in-process on the same texts cut into batches of the server's mean batch size: what batching as
    # requests arrive allows before any HTTP cost
    engine_same_batches_per_second: float | None = None
    # the server's inference calls (its own histogram): mean wall ms per call, and the share of the level's wall
    # time the model was running (model seconds per wall second: over 1 with several inference threads); the rest is
    # HTTP, the event loop, queueing and the clients
    inference_ms_per_batch: float = 0.0
    model_busy: float = 0.0


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


def process_cpu_seconds(pid: int | None) -> float | None:
    """CPU time of a process so far (Linux /proc), None where it cannot be read: the scheduler's nanosecond
    counts of its threads (``task/*/schedstat``), else user + system time in clock ticks (``stat``: 10 ms steps,
    which a short level on a fast machine can round to nothing)."""
    if pid is None:
        return None
    try:
        return sum(int((task / "schedstat").read_text().split()[0])
                   for task in Path(f"/proc/{pid}/task").iterdir()) / 1e9
    except (OSError, IndexError, ValueError):
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


def histogram_stats(metrics_text: str, name: str = "studio_embedding_batch_size") -> tuple[float, float]:
    """(sum, count) of one of the server's histograms, over all its queues."""
    from prometheus_client.parser import text_string_to_metric_families

    total = count = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name == name:
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    total += sample.value
                elif sample.name.endswith("_count"):
                    count += sample.value
    return total, count


def decode(item: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")


def _chunks(texts: list[str], per_request: int) -> list[tuple[int, list[str]]]:
    return [(start, texts[start:start + per_request]) for start in range(0, len(texts), per_request)]


def _payload(model: str, chunk: list[str]) -> bytes:
    return json.dumps({"input": chunk, "model": model, "encoding_format": "base64"}).encode()


def run_level(base: str, model: str, texts: list[str], concurrency: int, per_request: int,
              headers: dict[str, str], client: str = "asyncio") -> tuple[float, list[float], dict[int, bytes]]:
    """``concurrency`` closed-loop clients, one keep-alive connection each, until every text has been
    sent once. Returns the wall time, each request's latency and the raw response bodies by first text index."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    level = _asyncio_level if client == "asyncio" else _threads_level
    return level(host, int(port), model, _chunks(texts, per_request), concurrency, headers)


def _threads_level(host: str, port: int, model: str, chunks: list[tuple[int, list[str]]], concurrency: int,
                   headers: dict[str, str]) -> tuple[float, list[float], dict[int, bytes]]:
    """A thread per client, ``http.client`` (a fraction of httpx's CPU per request)."""
    cursor = iter(chunks)
    lock = threading.Lock()
    latencies: list[float] = []
    bodies: dict[int, bytes] = {}
    failures: list[str] = []

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=600)
        try:
            while True:
                with lock:
                    item = next(cursor, None)
                if item is None:
                    return
                start, chunk = item
                payload = _payload(model, chunk)
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


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.IGNORECASE)


def http_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """A whole HTTP/1.1 POST request (keep-alive is HTTP/1.1's default)."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response (a Content-Length or a chunked body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = _CONTENT_LENGTH.search(head)
    if length is not None:
        return status, await reader.readexactly(int(length.group(1)))
    if _CHUNKED.search(head) is None:
        raise ValueError(f"a response with neither Content-Length nor chunked encoding: {head[:200]!r}")
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the empty line
                pass
            return status, b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _asyncio_level(host: str, port: int, model: str, chunks: list[tuple[int, list[str]]], concurrency: int,
                   headers: dict[str, str]) -> tuple[float, list[float], dict[int, bytes]]:
    """One event loop, a coroutine per client on its own connection; the requests are built before the clock."""
    requests = [(start, http_request(host, port, "/v1/embeddings", _payload(model, chunk), headers))
                for start, chunk in chunks]
    latencies: list[float] = []
    bodies: dict[int, bytes] = {}
    failures: list[str] = []

    async def client(cursor) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for start, request in cursor:
                began = time.perf_counter()
                writer.write(request)
                status, body = await read_response(reader)
                latencies.append(time.perf_counter() - began)
                if status != 200:
                    failures.append(f"HTTP {status}: {body[:200]!r}")
                bodies[start] = body
        finally:
            writer.close()

    async def level() -> float:
        cursor = iter(requests)  # shared: each client takes the next request when its last one is answered
        began = time.perf_counter()
        await asyncio.gather(*(client(cursor) for _ in range(concurrency)))
        return time.perf_counter() - began

    try:
        import uvloop

        seconds = uvloop.run(level())
    except ImportError:
        seconds = asyncio.run(level())
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


def in_process_batched(embedder, texts: list[str], size: int, rounds: int) -> float:
    """Texts/s of the engine called on consecutive slices of ``size`` texts, in the order the clients send them."""
    size = max(1, size)
    best = float("inf")
    for _ in range(max(1, rounds)):
        began = time.perf_counter()
        for start in range(0, len(texts), size):
            embedder.embed(texts[start:start + size])
        best = min(best, time.perf_counter() - began)
    return round(len(texts) / best, 1)


def in_process(args: argparse.Namespace, texts: list[str]) -> tuple[np.ndarray, dict, object]:
    from engine.measure.bench import with_bench_batching
    from engine.settings import load_settings
    from engine.studio import Studio

    studio = Studio(load_settings(data_dir=args.data_dir))
    embedder = studio.embedder(args.model, args.variant, args.provider)
    reference = embedder.embed(texts)  # warm-up: session load and first-seen shapes are not part of the rate
    batched = with_bench_batching(embedder, args.batch)
    batched.embed(texts[:args.batch])
    at_batch = in_process_batched(batched, texts, args.batch, args.rounds)
    all_at_once = in_process_batched(embedder, texts, len(texts), args.rounds)
    single = min(len(texts), args.single_count)
    began = time.perf_counter()
    for text in texts[:single]:
        embedder.embed([text])
    one_by_one = time.perf_counter() - began
    tokens = [len(e.ids) for e in embedder.tokenizer.encode(texts)]
    info = embedder.info()
    return reference, embedder, {
        "model": info["model"], "variant": info["variant"], "provider": info["provider"],
        "batch": args.batch,
        "batched_texts_per_second": at_batch,
        "batch_texts_per_second": all_at_once,
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
                  headers: dict[str, str], client: str = "asyncio", server_pid: int | None = None) -> LevelResult:
    """One pass over the texts at ``concurrency``: rates, latencies, batch size, CPU per request, parity."""
    import httpx

    inference = "studio_embedding_inference_seconds"
    metrics = httpx.get(f"{base}/metrics", headers=headers).text
    before, model_before = histogram_stats(metrics), histogram_stats(metrics, inference)
    server_before, client_before = process_cpu_seconds(server_pid), own_cpu_seconds()
    seconds, latencies, bodies = run_level(base, model, texts, concurrency, per_request, headers, client)
    server_after, client_after = process_cpu_seconds(server_pid), own_cpu_seconds()
    metrics = httpx.get(f"{base}/metrics", headers=headers).text
    after, model_after = histogram_stats(metrics), histogram_stats(metrics, inference)
    model_seconds = model_after[0] - model_before[0]
    worst = max_difference(bodies, reference)
    batches = after[1] - before[1]
    requests = max(1, len(latencies))
    server_cpu = (None if server_before is None or server_after is None
                  else round((server_after - server_before) / requests * 1000, 3))
    return LevelResult(
        concurrency=concurrency, texts=len(texts), requests=len(latencies), seconds=round(seconds, 3),
        texts_per_second=round(len(texts) / seconds, 1), p50_ms=round(percentile(latencies, 50) * 1000, 1),
        p99_ms=round(percentile(latencies, 99) * 1000, 1),
        mean_batch_size=round((after[0] - before[0]) / batches, 1) if batches else 0.0,
        max_abs_diff=worst, server_cpu_ms_per_request=server_cpu,
        client_cpu_ms_per_request=round((client_after - client_before) / requests * 1000, 3),
        inference_ms_per_batch=round(model_seconds / batches * 1000, 2) if batches else 0.0,
        model_busy=round(model_seconds / seconds, 3) if seconds > 0 else 0.0,
    )


def best_of(rounds: int, measure) -> LevelResult:
    """The fastest of ``rounds`` passes (the benchmark's rule: the machine is shared and noisy)."""
    return max((measure() for _ in range(max(1, rounds))), key=lambda result: result.texts_per_second)


def positive(value: str) -> int:
    """An argparse type: a whole number >= 1."""
    if not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return int(value)


def concurrency_list(value: str) -> list[int]:
    """An argparse type: a comma list of client counts, e.g. ``1,8,64``."""
    levels = [positive(item) for item in value.split(",") if item.strip()]
    if not levels:
        raise argparse.ArgumentTypeError("expected a comma list of client counts, e.g. 1,8,64")
    return levels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.measure.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", default="scifact", help="scifact (abstracts), queries (short claims) or a file")
    parser.add_argument("--count", type=positive, default=512, help="texts per concurrency level")
    parser.add_argument("--concurrency", type=concurrency_list, default="1,8,64",
                        help="comma list of concurrent clients")
    parser.add_argument("--per-request", type=positive, default=1, help="texts per HTTP request")
    parser.add_argument("--batch", type=positive, default=32,
                        help="texts per in-process call for the reference rate (engine bench's batch)")
    parser.add_argument("--single-count", type=positive, default=128, help="texts for the in-process one-by-one rate")
    parser.add_argument("--rounds", type=positive, default=3, help="passes per level (and in-process); the best is reported")
    parser.add_argument("--client", choices=("asyncio", "threads"), default="asyncio",
                        help="asyncio: one event loop on raw sockets (a load generator's CPU); threads: http.client")
    parser.add_argument("--model", default=None)
    parser.add_argument("--variant", default=None)
    parser.add_argument("--provider", default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--url", default=None, help="measure a server that is already running (no memory figures "
                        "unless --server-pid names its process)")
    parser.add_argument("--server-pid", type=int, default=None, help="with --url: the server's process id, for RSS")
    args = parser.parse_args(argv)

    if args.texts not in ("scifact", "queries") and not Path(args.texts).is_file():
        parser.error(f"--texts: {args.texts} is not a file (or scifact / queries)")
    texts = load_texts(args.texts, args.count)
    if not texts:
        parser.error(f"--texts: {args.texts} holds no text")
    levels = args.concurrency
    load_before = os.getloadavg()
    reference, embedder, engine_figures = in_process(args, texts)
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
        run_level(base, model, texts, max(levels), args.per_request, headers, args.client)  # warm-up, not measured
        results = [best_of(args.rounds, lambda c=c: measure_level(base, model, texts, reference, c, args.per_request,
                                                                   headers, args.client, pid))
                   for c in levels]
        memory = proc_status(pid) if pid else {}
    finally:
        if server is not None:
            stop_server(server)
    # the batch size is in texts (the server's histogram counts texts); no batches seen: one request's texts
    results = [replace(r, engine_same_batches_per_second=in_process_batched(
        embedder, texts, round(r.mean_batch_size) or args.per_request, args.rounds)) for r in results]
    load_after = os.getloadavg()

    report = {
        "texts": args.texts, "count": len(texts), "per_request": args.per_request, "rounds": args.rounds,
        "client": args.client,
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


def _vs_same(level: dict) -> str:
    """The level's rate against the engine in-process on batches of the same size (what HTTP itself costs)."""
    same = level.get("engine_same_batches_per_second")
    return f"{level['texts_per_second'] / same:.2f}x of {same:.0f}" if same else "-"


def render(report: dict) -> str:
    engine = report["engine"]
    batch = engine.get("batch", 32)
    batched = engine.get("batched_texts_per_second") or engine["batch_texts_per_second"]
    lines = [
        f"texts: {report['count']} from {report['texts']} (mean {engine['mean_tokens']} tokens, max {engine['max_tokens']}), "
        f"{report['per_request']} per request; model {engine['model']}/{engine['variant']} on {engine['provider']}",
        f"machine: {report['cpus']} CPUs, load average before {report['load_average_before']} "
        f"after {report['load_average_after']}",
        f"in-process engine (best of rounds): {batched} texts/s at batch {batch} (engine bench's way), "
        f"{engine['batch_texts_per_second']} texts/s in one call with all texts (the ceiling), "
        f"{engine['single_texts_per_second']} texts/s one text per call",
        "",
        f"clients: {report['client']}, best of {report['rounds']} rounds per level; CPU ms per request of the server "
        "and of the clients; model ms: the server's mean inference call, busy: model seconds per wall second "
        "(over 100 % with several inference threads); "
        "same batches: against the engine in-process on batches of the server's mean size",
        "",
        f"{'clients':>7}  {'texts/s':>8}  {f'vs b{batch}':>7}  {'vs 1 call':>9}  {'p50 ms':>8}  {'p99 ms':>8}  {'batch':>6}"
        f"  {'max|diff|':>9}  {'server CPU':>10}  {'client CPU':>10}  {'model ms':>8}  {'busy':>5}  {'same batches':>12}",
    ]
    for level in report["levels"]:
        rate = level["texts_per_second"]
        server_cpu = level.get("server_cpu_ms_per_request")
        lines.append(f"{level['concurrency']:>7}  {rate:>8.1f}  {rate / batched:>6.2f}x  "
                     f"{rate / engine['batch_texts_per_second']:>8.2f}x  {level['p50_ms']:>8.1f}  "
                     f"{level['p99_ms']:>8.1f}  {level['mean_batch_size']:>6.1f}  {level['max_abs_diff']:>9.1e}"
                     f"  {'-' if server_cpu is None else f'{server_cpu:.2f}':>10}  "
                     f"{level.get('client_cpu_ms_per_request', 0.0):>10.2f}  "
                     f"{level.get('inference_ms_per_batch', 0.0):>8.2f}  {level.get('model_busy', 0.0):>5.0%}  "
                     f"{_vs_same(level):>12}")
    server = report["server"]
    lines.append(f"\nserver: {server['variant']} on {server['provider']}, RSS idle {server['rss_idle_mb']} MB, "
                 f"peak {server['rss_peak_mb']} MB")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
