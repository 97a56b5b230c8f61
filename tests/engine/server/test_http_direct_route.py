"""``POST /v1/embeddings`` is dispatched directly (engine/server/direct.py), past FastAPI's router: every
answer, errors included, must be the one the router gave. Two real servers on 127.0.0.1, one with the
direct dispatch and one without it, get the same requests and must answer alike."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi.exceptions import RequestValidationError
from server_harness import serve, wait_ready
from starlette.exceptions import HTTPException

from engine.errors import ModelNotFoundError, RequestError, ServiceBusyError, StudioError
from engine.server import create_app
from engine.server.config import ApiSettings
from engine.server.direct import DirectRoutes, handler_for, route_path
from engine.settings import load_settings
from engine.studio import Studio

TOKEN = "direct-route-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODEL = "all-minilm-l6-v2"
MAX_BODY_BYTES = 4096
# headers an error's meaning rides on
COMPARED_HEADERS = ("content-type", "retry-after", "connection", "www-authenticate", "allow")


def _app(studio: Studio, direct: bool):
    api = ApiSettings(token=TOKEN, max_items=4, max_chars=200, max_body_mb=MAX_BODY_BYTES / 2**20)
    app = create_app(studio, api)
    assert any(m.cls is DirectRoutes for m in app.user_middleware)
    if not direct:  # the stack is built on the first request: without the middleware every request meets the router
        app.user_middleware = [m for m in app.user_middleware if m.cls is not DirectRoutes]
    return app


@pytest.fixture(scope="module")
def servers(default_model):
    studio = Studio(load_settings(data_dir=default_model.parent.parent))
    with serve(_app(studio, direct=True)) as direct, serve(_app(studio, direct=False)) as routed:
        wait_ready(direct, headers=AUTH)
        wait_ready(routed, headers=AUTH)
        yield direct, routed


def _chunked(size: int):
    yield b'{"input": "'
    for _ in range(size // 512 + 2):
        yield b"a" * 512
    yield b'"}'


REQUESTS = {
    "one text": dict(json={"model": MODEL, "input": "a claim about a protein"}),
    "a list, base64": dict(json={"model": MODEL, "input": ["one", "two"], "encoding_format": "base64"}),
    "no model named": dict(json={"input": "the default model"}),
    "name:variant": dict(json={"model": f"{MODEL}:int8", "input": "a quantized one"}),
    "dimensions": dict(json={"model": MODEL, "input": "short", "dimensions": 64}),
    "prompt": dict(json={"model": MODEL, "input": "short", "prompt_name": "nope"}),
    "not JSON": dict(content=b"{not json", headers={"content-type": "application/json"}),
    "JSON but no object": dict(content=b"[1, 2]", headers={"content-type": "application/json"}),
    "no input": dict(json={"model": MODEL}),
    "empty input": dict(json={"model": MODEL, "input": []}),
    "token ids": dict(json={"model": MODEL, "input": [[101, 2023, 102]]}),
    "too many texts": dict(json={"model": MODEL, "input": ["x"] * 5}),
    "a text too long": dict(json={"model": MODEL, "input": "x" * 201}),
    "a lone surrogate": dict(content=b'{"input": "bad \\ud800 text"}', headers={"content-type": "application/json"}),
    "unknown model": dict(json={"model": "no-such-model", "input": "x"}),
    "unknown variant": dict(json={"model": f"{MODEL}:nope", "input": "x"}),
    "dimensions 0": dict(json={"model": MODEL, "input": "x", "dimensions": 0}),
    "dimensions too many": dict(json={"model": MODEL, "input": "x", "dimensions": 100000}),
    "dimensions as a string": dict(json={"model": MODEL, "input": "x", "dimensions": "12"}),
    "bad encoding_format": dict(json={"model": MODEL, "input": "x", "encoding_format": "int8"}),
    "body declared too large": dict(content=b"x" * (MAX_BODY_BYTES + 1), headers={"content-type": "application/json"}),
    # a generator is spent after one request: each request makes its own
    "body chunked too large": dict(content=_chunked, headers={"content-type": "application/json"}),
}


def _answer(base: str, headers: dict, request: dict) -> tuple[int, object, dict]:
    request = dict(request)
    if callable(request.get("content")):
        request["content"] = request["content"](MAX_BODY_BYTES)
    response = httpx.post(f"{base}/v1/embeddings", headers={**headers, **request.pop("headers", {})}, timeout=60,
                          **request)
    kept = {name: response.headers.get(name) for name in COMPARED_HEADERS}
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return response.status_code, body, kept


@pytest.mark.parametrize("name", list(REQUESTS))
def test_the_direct_route_answers_as_the_router_does(servers, name):
    direct, routed = servers
    got = _answer(direct, AUTH, REQUESTS[name])
    assert got == _answer(routed, AUTH, REQUESTS[name])
    if name in ("one text", "a list, base64", "no model named", "name:variant", "dimensions"):
        assert got[0] == 200, got
    else:  # every other one is a clear error in OpenAI's shape, never a traceback
        assert got[0] >= 400 and set(got[1]["error"]) >= {"message", "type", "code"}, got


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_auth_still_comes_first(servers, headers):
    direct, routed = servers
    got = _answer(direct, headers, REQUESTS["one text"])
    assert got == _answer(routed, headers, REQUESTS["one text"]) and got[0] == 401


def test_other_methods_and_paths_still_meet_the_router(servers):
    direct, routed = servers
    for method, path in (("GET", "/v1/embeddings"), ("POST", "/v1/embeddings/"), ("POST", "/v1/embedding")):
        answers = [httpx.request(method, f"{base}{path}", headers=AUTH, json={"input": "x"}, follow_redirects=False)
                   for base in (direct, routed)]
        assert answers[0].status_code == answers[1].status_code != 200
        assert answers[0].content == answers[1].content


def test_a_bug_in_the_endpoint_is_a_generic_500(servers, monkeypatch):
    from engine.server.routes import embeddings

    def broken(*args, **kwargs):
        raise RuntimeError("internal detail /secret/path")

    monkeypatch.setattr(embeddings, "parse_input", broken)
    direct, _ = servers
    response = httpx.post(f"{direct}/v1/embeddings", headers=AUTH, json={"input": "x"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error" and "secret" not in response.text


def test_a_full_queue_is_a_503_through_the_direct_route(default_model):
    """ServiceBusyError raised inside the endpoint: the studio error handler's 503 and Retry-After."""
    studio = Studio(load_settings(data_dir=default_model.parent.parent))
    with serve(create_app(studio, ApiSettings(max_queue_items=1, max_wait_ms=3000))) as base:
        wait_ready(base)

        async def run():
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                first = asyncio.create_task(client.post("/v1/embeddings", json={"input": "one"}))
                await asyncio.sleep(0.5)  # its text waits the 3 s
                second = await client.post("/v1/embeddings", json={"input": "two"})
                return [await first, second]

        answers = asyncio.run(run())
    assert sorted(r.status_code for r in answers) == [200, 503]
    refused = next(r for r in answers if r.status_code == 503)
    assert refused.headers["retry-after"] == "1" and refused.json()["error"]["code"] == "server_busy"


# --- the pieces ---------------------------------------------------------------------------------------
def test_handler_lookup_follows_starlettes_order():
    handlers = {HTTPException: "http", 404: "not found", RequestValidationError: "validation",
                StudioError: "studio", ServiceBusyError: "busy", Exception: "catch-all", 500: "catch-all 500"}
    assert handler_for(handlers, HTTPException(404)) == "not found"  # by status code first
    assert handler_for(handlers, HTTPException(413)) == "http"
    assert handler_for(handlers, HTTPException(500)) == "http"  # the 500 handler belongs to the outer middleware
    assert handler_for(handlers, RequestValidationError([])) == "validation"
    assert handler_for(handlers, ModelNotFoundError("x")) == "studio"  # along the class hierarchy
    assert handler_for(handlers, ServiceBusyError("busy")) == "busy"  # the most specific entry wins
    assert handler_for(handlers, RuntimeError("bug")) is None  # left to the server-error middleware
    assert handler_for({RequestError: "request"}, ServiceBusyError("busy")) is None


def test_route_path_drops_the_root_path():
    assert route_path({"path": "/v1/embeddings"}) == "/v1/embeddings"
    assert route_path({"path": "/api/v1/embeddings", "root_path": "/api"}) == "/v1/embeddings"
    assert route_path({"path": "/v1/embeddings", "root_path": "/api"}) == "/v1/embeddings"


def test_only_the_listed_method_and_path_skip_the_inner_app():
    from starlette.responses import PlainTextResponse

    reached: list[tuple[str, str]] = []

    async def inner(scope, receive, send):
        reached.append((scope["method"], scope["path"]))
        await PlainTextResponse("inner")(scope, receive, send)

    async def endpoint(request):
        return PlainTextResponse("direct " + (await request.body()).decode())

    app = DirectRoutes(inner, {("POST", "/x"): endpoint}, handlers={})

    async def call(method: str, path: str) -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return (await client.request(method, path, content=b"body")).text

    assert asyncio.run(call("POST", "/x")) == "direct body"
    assert asyncio.run(call("GET", "/x")) == "inner" and asyncio.run(call("POST", "/y")) == "inner"
    assert reached == [("GET", "/x"), ("POST", "/y")]
