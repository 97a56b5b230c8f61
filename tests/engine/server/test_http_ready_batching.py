"""/ready before and after the default model can be loaded, and 200 concurrent requests answered
correctly in shared batches."""

from __future__ import annotations

import asyncio
import base64
import os
import time

import httpx
import numpy as np
import pytest
from server_harness import metric_samples, sample, serve, wait_ready

from engine.server import create_app
from engine.server.config import ApiSettings
from engine.settings import load_settings
from engine.studio import Studio

MODEL = "all-minilm-l6-v2"


def test_ready_is_503_until_the_model_is_there_then_200(default_model, tmp_path):
    """A server may start before a converter has written the model (the compose converter
    profile): /ready says why it is not ready, and turns 200 once the folder appears."""
    (tmp_path / "models").mkdir()
    studio = Studio(load_settings(data_dir=tmp_path))
    with serve(create_app(studio, ApiSettings(warmup_retry_s=0.1))) as base:
        assert httpx.get(f"{base}/health").status_code == 200
        response = httpx.get(f"{base}/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] in ("starting", "unavailable") and body["model"] == MODEL
        deadline = time.monotonic() + 30
        while body["status"] != "unavailable" and time.monotonic() < deadline:  # until the first attempt has failed
            time.sleep(0.05)
            body = httpx.get(f"{base}/ready").json()
        assert body["status"] == "unavailable", body  # the reason is shown
        assert body["code"] == "model_not_converted" and "convert" in body["hint"]
        early = httpx.post(f"{base}/v1/embeddings", json={"input": "x"})  # the server's model, not the request, is wrong
        assert early.status_code == 503 and early.json()["error"]["param"] is None, early.text
        assert "not ready" in early.json()["error"]["message"] and early.headers["retry-after"] == "1"
        named = httpx.post(f"{base}/v1/embeddings", json={"input": "x", "model": MODEL})
        assert named.status_code == 409 and named.json()["error"]["param"] == "model", named.text
        metrics = metric_samples(httpx.get(f"{base}/metrics").text)
        assert sample(metrics, "studio_ready") == 0

        os.symlink(default_model, tmp_path / "models" / MODEL)  # the converter finished
        ready = wait_ready(base, timeout=30)
        assert ready["model"] == MODEL and ready["provider"] in ("cpu", "openvino") and ready["fallback"] is None
        assert sample(metric_samples(httpx.get(f"{base}/metrics").text), "studio_ready") == 1
        assert httpx.post(f"{base}/v1/embeddings", json={"input": "x"}).status_code == 200


def _texts(count: int) -> list[str]:
    subjects = ["The cell", "A protein", "Vitamin D", "The enzyme", "This cohort", "Our model"]
    verbs = ["regulates", "inhibits", "does not affect", "strongly increases", "predicts"]
    objects = ["tumour growth", "insulin resistance in adults", "the immune response to infection", "mortality",
               "gene expression in the liver of mice fed a high-fat diet for twelve weeks"]
    return [f"{subjects[i % 6]} {verbs[i % 5]} {objects[i % 5 if i % 2 else (i // 2) % 5]} (case {i})."
            for i in range(count)]


@pytest.fixture(scope="module")
def batching_server(default_model):
    # small batches, so that big requests are split over several batches and batches mix requests; fp32 on
    # ONNX Runtime, where another batch composition moves a vector by float rounding only (bf16 moves it ~1e-4)
    api = ApiSettings(max_batch_items=16, max_wait_ms=5, variant="fp32", provider="cpu")
    studio = Studio(load_settings(data_dir=default_model.parent.parent))
    with serve(create_app(studio, api)) as base:
        ready = wait_ready(base)
        assert (ready["variant"], ready["provider"]) == ("fp32", "cpu")
        yield base, studio


def test_200_concurrent_requests_are_answered_correctly_and_batched(batching_server):
    base, studio = batching_server
    rng = np.random.default_rng(7)
    sizes = rng.choice([1, 1, 1, 1, 1, 1, 2, 3, 17], size=200)  # mostly single texts, a few bigger than a batch
    pool = _texts(120)
    requests = [[pool[int(j)] for j in rng.integers(0, len(pool), size=int(n))] for n in sizes]
    reference = dict(zip(pool, studio.embedder(MODEL, "fp32", "cpu").embed(pool)))

    async def run() -> list[tuple[list[str], httpx.Response]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:
            async def one(index: int, texts: list[str]):
                fmt = "base64" if index % 2 else "float"
                return texts, await client.post("/v1/embeddings", json={"model": MODEL, "input": texts,
                                                                        "encoding_format": fmt})
            return await asyncio.gather(*(one(i, texts) for i, texts in enumerate(requests)))

    before = metric_samples(httpx.get(f"{base}/metrics").text)
    answers = asyncio.run(run())
    worst = 0.0
    for texts, response in answers:
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert [item["index"] for item in data] == list(range(len(texts)))
        got = np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
                        if isinstance(item["embedding"], str) else np.asarray(item["embedding"], dtype=np.float32)
                        for item in data])
        expected = np.stack([reference[t] for t in texts])
        worst = max(worst, float(np.abs(got - expected).max()))
    # batch composition changes padding, which moves float32 results by rounding noise only
    assert worst < 1e-5, worst

    after = metric_samples(httpx.get(f"{base}/metrics").text)
    labels = {"model": MODEL, "variant": "fp32", "provider": "cpu"}  # queues are keyed by the provider that runs

    def delta(name, **extra):
        return sample(after, name, **labels, **extra) - sample(before, name, **labels, **extra)

    batches = delta("studio_embedding_batch_size_count")
    texts = delta("studio_embedding_batch_size_sum")
    assert texts == sum(sizes)
    assert batches < len(requests)  # fewer inference calls than requests...
    assert batches - delta("studio_embedding_batch_size_bucket", le="1.0") > 0  # ...some with more than one text
    assert delta("studio_embedding_batch_requests_count") - delta("studio_embedding_batch_requests_bucket", le="1.0") > 0
    assert delta("studio_embedding_batch_size_bucket", le="16.0") == batches  # never over max_batch_items
    assert sample(after, "studio_embedding_queue_depth", **labels) == 0
    assert sample(after, "studio_http_requests_total", route="/v1/embeddings", status="200") >= 200


def test_requests_abandoned_by_their_clients_do_not_block_the_queue(batching_server):
    base, studio = batching_server
    texts = _texts(40)

    async def run():
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            abandoned = [asyncio.create_task(client.post("/v1/embeddings", json={"input": texts})) for _ in range(3)]
            await asyncio.sleep(0.05)
            for task in abandoned:
                task.cancel()  # the client closes the connection mid-request
            await asyncio.gather(*abandoned, return_exceptions=True)
            return await client.post("/v1/embeddings", json={"input": texts[:3]})

    response = asyncio.run(run())
    assert response.status_code == 200
    got = np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, studio.embedder(MODEL, "fp32", "cpu").embed(texts[:3]), atol=1e-5)
    for _ in range(100):  # what the abandoned requests left in the queue drains
        depth = sample(metric_samples(httpx.get(f"{base}/metrics").text), "studio_embedding_queue_depth", model=MODEL)
        if depth == 0:
            break
        asyncio.run(asyncio.sleep(0.1))
    assert depth == 0
