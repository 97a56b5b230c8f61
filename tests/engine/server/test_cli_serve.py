"""``python -m engine serve`` as a user runs it: a subprocess on a free port, stopped with Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest

ROOT = __import__("conftest").ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(data_dir, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_API_") and k != "API_TOKEN"}
    return {**env, "STUDIO_DATA_DIR": str(data_dir), **extra}


def _start(args, env):
    return subprocess.Popen([sys.executable, "-m", "engine", "serve", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(process) -> tuple[int, str, str]:
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def _ready_or_fail(base, process, headers=None):
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited {process.returncode}: {process.communicate()[1][-2000:]}")
        try:
            if httpx.get(f"{base}/ready", headers=headers).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail("server not ready in 120 s")


def test_serve_subcommand_with_token_and_flags(default_model):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    token = "cli-token-8c1e"
    process = _start(["--port", str(port), "--model", "all-minilm-l6-v2", "--variant", "int8", "--provider", "cpu"],
                     _env(default_model.parent.parent, API_TOKEN=token))
    try:
        headers = {"Authorization": f"Bearer {token}"}
        _ready_or_fail(base, process, headers)
        assert httpx.get(f"{base}/health").status_code == 200
        ready = httpx.get(f"{base}/ready", headers=headers).json()
        assert ready["variant"] == "int8" and ready["provider"] == "cpu"
        response = httpx.post(f"{base}/v1/embeddings", json={"input": ["via the CLI"]}, headers=headers)
        assert response.status_code == 200 and len(response.json()["data"][0]["embedding"]) == 384
        assert httpx.post(f"{base}/v1/embeddings", json={"input": ["x"]}).status_code == 401
    finally:
        code, out, err = _stop(process)
    assert code == 0, err
    assert "Traceback" not in err and token not in err and token not in out
    assert "server stopped" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "no-such-model"], "Unknown model 'no-such-model'"),
    (["--model", "all-minilm-l6-v2", "--variant", "fp16", "--workers", "0"], "argument --workers: 0 is out of range"),
])
def test_serve_refuses_bad_flags_without_a_traceback(default_model, args, message):
    result = subprocess.run([sys.executable, "-m", "engine", "serve", "--port", str(_free_port()), *args], cwd=ROOT,
                            env=_env(default_model.parent.parent), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_serve_on_a_busy_port_says_so_before_anything_loads(default_model):
    """uvicorn's bare '[Errno 98] address already in use' (exit 3), after the model check, was all a user saw."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "engine", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=ROOT, env=_env(default_model.parent.parent), capture_output=True, text=True,
                                timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"Port {port} on 127.0.0.1 is already in use" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr and "Errno" not in result.stderr


def test_serve_help_lists_the_flags():
    result = subprocess.run([sys.executable, "-m", "engine", "serve", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    for flag in ("--host", "--port", "--model", "--variant", "--provider", "--workers"):
        assert flag in result.stdout


def test_loadtest_script_reports_every_level(default_model, tmp_path):
    """A tiny run of ``python -m engine.measure.loadtest``: the figures the issue asks for are there."""
    import json

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(f"short sentence number {i} about embeddings" for i in range(16)) + "\n")
    report_file = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "engine.measure.loadtest", "--texts", str(texts), "--count", "16", "--concurrency", "1,4",
         "--single-count", "4", "--rounds", "2", "--json", str(report_file)],
        cwd=ROOT, env=_env(default_model.parent.parent), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(report_file.read_text())
    assert [level["concurrency"] for level in report["levels"]] == [1, 4]
    # `auto` may resolve to OpenVINO, whose bf16 (on AVX512_BF16 / AMX CPUs) rounds a text by the batch it shares (the
    # server's batches, packed rows and part widths are not the in-process ones): 4e-4 seen on a Zen 4 EPYC
    tolerance = 1e-5 if report["server"]["provider"] != "openvino" else 5e-3
    for level in report["levels"]:
        assert level["requests"] == 16 and level["texts_per_second"] > 0 and level["p99_ms"] >= level["p50_ms"] > 0
        assert level["max_abs_diff"] < tolerance and level["mean_batch_size"] >= 1
        assert level["server_cpu_ms_per_request"] > 0 and level["client_cpu_ms_per_request"] > 0
        assert level["engine_same_batches_per_second"] > 0
        # the model ran for part of the wall time, never more than all of it (one inference thread)
        assert level["inference_ms_per_batch"] > 0 and 0 < level["model_busy"] <= 1
    assert report["levels"][0]["mean_batch_size"] == 1.0  # one client: nothing to batch with
    assert report["server"]["rss_peak_mb"] >= report["server"]["rss_idle_mb"] > 0
    assert report["engine"]["batch_texts_per_second"] > 0 and report["engine"]["batched_texts_per_second"] > 0
    assert report["engine"]["batch"] == 32  # engine bench's batch: the in-process rate the HTTP target is set against
    assert "texts/s" in result.stdout and "at batch 32" in result.stdout and "vs b32" in result.stdout
    assert "texts/s" in result.stdout and "peak" in result.stdout
    assert report["client"] == "asyncio" and report["rounds"] == 2


def _read(data: bytes) -> tuple[int, bytes]:
    import asyncio

    from engine.measure.loadtest import read_response

    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        first = await read_response(reader)
        return first, await reader.read()  # what is left belongs to the next response on the connection

    return asyncio.run(go())


def test_load_client_reads_content_length_and_chunked_responses_and_leaves_the_next_one():
    """The load generator's HTTP/1.1 reader: a sized body, a chunked one (with a trailer), keep-alive order."""
    after = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    sized = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\": [1]}\n"
    assert _read(sized + after) == ((200, b'{"a": [1]}\n'), after)
    chunked = (b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4\r\nbusy\r\n6;ext=1\r\n, wait\r\n0\r\nX-Trailer: 1\r\n\r\n")
    assert _read(chunked + after) == ((503, b"busy, wait"), after)
    with pytest.raises(ValueError, match="neither Content-Length nor chunked"):
        _read(b"HTTP/1.0 200 OK\r\n\r\nbody until close")


@pytest.mark.parametrize("args, message", [
    (["--rounds", "0"], "--rounds: expected a whole number >= 1"),
    (["--concurrency", "8,many"], "--concurrency: expected a whole number >= 1, got 'many'"),
    (["--texts", "/no/such/file.txt"], "is not a file"),
])
def test_loadtest_refuses_bad_arguments_with_a_message(args, message):
    result = subprocess.run([sys.executable, "-m", "engine.measure.loadtest", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_load_client_builds_a_keep_alive_post():
    from engine.measure.loadtest import http_request

    request = http_request("127.0.0.1", 8000, "/v1/embeddings", b'{"input": "x"}', {"Authorization": "Bearer t"})
    head, body = request.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/embeddings HTTP/1.1" and b"Host: 127.0.0.1:8000" in lines
    assert b"Content-Length: 14" in lines and b"Authorization: Bearer t" in lines and body == b'{"input": "x"}'
