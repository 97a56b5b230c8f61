"""Bearer auth (on and off) and every request limit, over real HTTP."""

from __future__ import annotations

import logging

import httpx
import numpy as np
import openai
import pytest
from server_harness import serve, wait_ready

from engine.server import create_app
from engine.server.config import ApiSettings
from engine.settings import load_settings
from engine.studio import Studio

MODEL = "all-minilm-l6-v2"
TOKEN = "tok-3f9a1c7e5b2d4a6c8e0f"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_ITEMS, MAX_CHARS, MAX_BODY_BYTES = 4, 120, 4096


@pytest.fixture(scope="module")
def studio(default_model):
    return Studio(load_settings(data_dir=default_model.parent.parent))


@pytest.fixture(scope="module")
def guarded(studio):
    """A server with a token and small limits."""
    api = ApiSettings(token=TOKEN, max_items=MAX_ITEMS, max_chars=MAX_CHARS, max_body_mb=MAX_BODY_BYTES / 2**20)
    with serve(create_app(studio, api)) as base:
        wait_ready(base, headers=AUTH)
        yield base


# --- auth -------------------------------------------------------------------------------------------
def test_health_needs_no_token(guarded):
    assert httpx.get(f"{guarded}/health").status_code == 200


@pytest.mark.parametrize("path", ["/ready", "/metrics", "/v1/models", "/v1/models/all-minilm-l6-v2", "/docs"])
def test_every_other_route_needs_the_token(guarded, path):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": TOKEN}):
        response = httpx.get(f"{guarded}{path}", headers=headers)
        assert response.status_code == 401, (path, headers)
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error["code"] == "invalid_api_key" and error["type"] == "authentication_error"
        assert TOKEN not in response.text
    assert httpx.get(f"{guarded}{path}", headers=AUTH).status_code == 200


def test_unauthenticated_post_is_refused_before_its_body_is_read(guarded):
    response = httpx.post(f"{guarded}/v1/embeddings", content=b"x" * (MAX_BODY_BYTES * 4),
                          headers={"content-type": "application/json"})
    assert response.status_code == 401


def test_openai_client_with_and_without_the_right_key(guarded, studio):
    good = openai.OpenAI(base_url=f"{guarded}/v1", api_key=TOKEN, max_retries=0)
    response = good.embeddings.create(model=MODEL, input=["auth works"])
    np.testing.assert_allclose(response.data[0].embedding, studio.embedder(MODEL).embed(["auth works"])[0], atol=1e-6)
    bad = openai.OpenAI(base_url=f"{guarded}/v1", api_key="not-the-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model=MODEL, input=["x"])


def test_the_token_is_never_logged(guarded, caplog):
    caplog.set_level(logging.DEBUG)
    httpx.post(f"{guarded}/v1/embeddings", json={"input": "x"}, headers={"Authorization": f"Bearer {TOKEN}x"})
    httpx.post(f"{guarded}/v1/embeddings", json={"input": "x"}, headers=AUTH)
    httpx.get(f"{guarded}/ready", headers={"Authorization": f"Bearer {TOKEN[:-1]}"})
    assert any("bearer token" in r.getMessage() for r in caplog.records)  # the refusals were logged...
    assert TOKEN[:12] not in caplog.text  # ...without the token, right or wrong


def test_without_a_token_auth_is_off(studio):
    with serve(create_app(studio, ApiSettings(token=None))) as base:
        assert httpx.get(f"{base}/v1/models").status_code == 200
        assert httpx.get(f"{base}/v1/models", headers={"Authorization": "Bearer anything"}).status_code == 200


# --- limits -----------------------------------------------------------------------------------------
def _post(base, **kwargs):
    return httpx.post(f"{base}/v1/embeddings", headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs)


def test_items_per_request(guarded):
    assert _post(guarded, json={"input": ["a"] * MAX_ITEMS}).status_code == 200
    response = _post(guarded, json={"input": ["a"] * (MAX_ITEMS + 1)})
    assert response.status_code == 400
    assert f"at most {MAX_ITEMS} per request" in response.json()["error"]["message"]


def test_characters_per_item(guarded):
    assert _post(guarded, json={"input": ["c" * MAX_CHARS]}).status_code == 200
    response = _post(guarded, json={"input": ["ok", "c" * (MAX_CHARS + 1)]})
    assert response.status_code == 400
    assert "input[1]" in response.json()["error"]["message"]


@pytest.mark.parametrize("empty", ["", [], [""], ["a", ""]])
def test_empty_input(guarded, empty):
    response = _post(guarded, json={"input": empty})
    assert response.status_code == 400 and response.json()["error"]["param"] == "input"


def test_body_size_with_content_length(guarded):
    body = b'{"input": "' + b"a" * MAX_BODY_BYTES + b'"}'
    response = _post(guarded, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_body_size_when_chunked(guarded):
    def chunks():  # no Content-Length: the server has to count
        yield b'{"input": "'
        for _ in range(MAX_BODY_BYTES // 512 + 2):
            yield b"a" * 512
        yield b'"}'

    response = _post(guarded, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_a_body_just_under_the_limit_is_parsed(guarded):
    body = b'{"input": ["' + b'", "'.join([b"z" * 100] * MAX_ITEMS) + b'"]}'
    assert len(body) < MAX_BODY_BYTES
    assert _post(guarded, content=body, headers={"content-type": "application/json"}).status_code == 200


def test_a_full_queue_answers_503_with_retry_after(studio):
    """Texts waiting beyond STUDIO_API_MAX_QUEUE_ITEMS are refused at once instead of piling up."""
    import asyncio

    api = ApiSettings(max_queue_items=3, max_wait_ms=3000, max_batch_items=100)  # a lone request waits 3 s
    with serve(create_app(studio, api)) as base:
        wait_ready(base)

        async def run():
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                first = asyncio.create_task(client.post("/v1/embeddings", json={"input": ["one", "two"]}))
                await asyncio.sleep(0.5)  # the first request's two texts are waiting now
                second = await client.post("/v1/embeddings", json={"input": ["three", "four"]})
                return [await first, second]

        answers = asyncio.run(run())
    # normally the second is refused; on a very busy machine the two may reach the queue the other way round
    assert sorted(r.status_code for r in answers) == [200, 503]
    refused = next(r for r in answers if r.status_code == 503)
    assert refused.headers["retry-after"] == "1" and refused.json()["error"]["code"] == "server_busy"
