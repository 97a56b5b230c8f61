"""docker/healthcheck.py, the images' HEALTHCHECK (no curl in slim images): exit 0 only on a 200,
the bearer token sent on routes other than /health, nothing sent anywhere but 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"


@pytest.fixture()
def server():
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response({"/health": 200, "/ready": 503}.get(self.path, 200 if self.path == "/secure" else 404))
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def probe(url: str | None, **env: str) -> int:
    environment = {k: v for k, v in os.environ.items() if k not in ("API_TOKEN", "STUDIO_HEALTHCHECK_URL")}
    args = [sys.executable, str(SCRIPT)] + ([url] if url else [])
    return subprocess.run(args, env={**environment, **env}, capture_output=True, timeout=30).returncode


def test_exit_status_follows_the_answer(server):
    base, seen = server
    assert probe(f"{base}/health") == 0
    assert probe(f"{base}/ready") == 1  # 503: not ready
    assert probe(f"{base}/missing") == 1
    assert probe(None, STUDIO_HEALTHCHECK_URL=f"{base}/health") == 0
    assert probe("http://127.0.0.1:9/health", STUDIO_HEALTHCHECK_TIMEOUT="1") == 1  # nothing listens


def test_the_token_goes_to_protected_routes_only(server):
    base, seen = server
    assert probe(f"{base}/secure", API_TOKEN="s3cret") == 0
    assert probe(f"{base}/health", API_TOKEN="s3cret") == 0
    assert seen == [("/secure", "Bearer s3cret"), ("/health", None)]
