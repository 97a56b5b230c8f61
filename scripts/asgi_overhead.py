"""The app's own time per short ``POST /v1/embeddings``, with the model's call taken out, with and without the
direct dispatch of that route (engine/server/direct.py), in one process, alternating.

    .venv/bin/python scripts/asgi_overhead.py [--data-dir DIR] [--requests 5000] [--rounds 3]

The batcher answers at once with a fixed vector, so what is timed is the ASGI stack and the route's own work
(parse, validate, tokenize, answer); no sockets, no HTTP parsing. The app is called as uvicorn calls it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import uvloop

from engine.server.app import create_app
from engine.server.config import ApiSettings
from engine.server.direct import DirectRoutes
from engine.settings import load_settings
from engine.studio import Studio

MODEL = "all-minilm-l6-v2"
TEXT = "claim 12 about a protein that binds DNA"


def build(studio: Studio, direct: bool):
    app = create_app(studio, ApiSettings())
    if not direct:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not DirectRoutes]
    embedder = studio.embedder(MODEL, "fp32", "cpu")
    vector = embedder.embed([TEXT])

    async def answer_at_once(embedder, encoded, lengths, prompt, prompt_length=0):
        return np.repeat(vector, len(encoded), axis=0)

    state = app.state.server
    state.batcher.embed = answer_at_once
    state.recent_embedder = lambda name, variant: embedder
    return app


async def per_request_us(app, body: bytes, requests: int) -> float:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/embeddings", "raw_path": b"/v1/embeddings", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    statuses = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    began = time.perf_counter()
    for _ in range(requests):
        await app(dict(scope), receive, send)
    elapsed = time.perf_counter() - began
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses: {sorted(set(statuses))}")
    return elapsed / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="where the default model is converted (default: STUDIO_DATA_DIR)")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    studio = Studio(load_settings(data_dir=args.data_dir) if args.data_dir else load_settings())
    apps = {"direct": build(studio, True), "router": build(studio, False)}
    body = json.dumps({"input": TEXT, "model": MODEL, "encoding_format": "base64"}).encode()

    async def run():
        for app in apps.values():  # warm-up: the middleware stack is built on the first call
            await per_request_us(app, body, 500)
        for round_ in range(1, args.rounds + 1):
            times = {name: await per_request_us(app, body, args.requests) for name, app in apps.items()}
            print(f"round {round_}: " + ", ".join(f"{name} {us:.1f} us/request" for name, us in times.items()))

    uvloop.run(run())


if __name__ == "__main__":
    main()
