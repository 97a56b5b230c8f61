"""The OpenAI-compatible API over real HTTP: the official ``openai`` client gets the engine's own
vectors (float and base64 paths), models are listed, errors come in OpenAI's shape, /health,
/ready and /metrics answer."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest
from server_harness import metric_samples, sample, serve, wait_ready

from engine.server import create_app
from engine.server.config import ApiSettings
from engine.settings import load_settings
from engine.studio import Studio

MODEL = "all-minilm-l6-v2"
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "ONNX Runtime executes the exported graph.",
    "Ein Satz auf Deutsch, mit Umlauten: äöü.",
    "数据 🙂 emoji and CJK in one line",
    "word " * 300,  # longer than max_seq_length: truncated the same way in-process and over HTTP
]


@pytest.fixture(scope="module")
def studio(default_model):
    return Studio(load_settings(data_dir=default_model.parent.parent))


@pytest.fixture(scope="module")
def reference(studio):
    """The engine called in-process: what every HTTP answer must equal."""
    return studio.embedder(MODEL)


@pytest.fixture(scope="module")
def expected(reference):
    return reference.embed(TEXTS)


@pytest.fixture(scope="module")
def server(default_model):
    app = create_app(Studio(load_settings(data_dir=default_model.parent.parent)), ApiSettings())
    with serve(app) as base:
        wait_ready(base)
        yield base, app


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key="unused", max_retries=0)


def test_openai_client_default_path_is_base64_and_equals_the_engine(client, expected):
    response = client.embeddings.create(model=MODEL, input=TEXTS)  # the client asks for base64 and decodes it
    got = np.array([item.embedding for item in response.data], dtype=np.float32)
    assert [item.index for item in response.data] == list(range(len(TEXTS)))
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    assert response.model == MODEL


def test_openai_client_float_path_equals_the_engine(client, expected):
    response = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    got = np.array([item.embedding for item in response.data], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_explicit_base64_is_little_endian_float32(server, reference):
    import base64

    body = httpx.post(f"{server[0]}/v1/embeddings", json={"model": MODEL, "input": TEXTS[:2],
                                                          "encoding_format": "base64"}).json()
    got = np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in body["data"]])
    np.testing.assert_allclose(got, reference.embed(TEXTS[:2]), atol=1e-6, rtol=0)


def test_single_string_usage_and_default_model(server, reference):
    body = httpx.post(f"{server[0]}/v1/embeddings", json={"input": "hello world"}).json()
    assert body["object"] == "list" and body["model"] == MODEL and len(body["data"]) == 1
    np.testing.assert_allclose(body["data"][0]["embedding"], reference.embed(["hello world"])[0], atol=1e-6)
    tokens = len(reference.tokenizer.encode(["hello world"])[0].ids)  # [CLS] hello world [SEP]
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens} and tokens == 4


def test_usage_counts_the_models_tokens_after_truncation(client, reference):
    response = client.embeddings.create(model=MODEL, input=TEXTS)
    expected = sum(len(e.ids) for e in reference.tokenizer.encode(TEXTS))
    assert response.usage.prompt_tokens == response.usage.total_tokens == expected
    assert expected < sum(len(t.split()) for t in TEXTS) + 2 * len(TEXTS)  # the long text was truncated to 256


def test_dimensions_truncate_and_renormalise(client, reference):
    response = client.embeddings.create(model=MODEL, input=TEXTS[:3], dimensions=128)
    got = np.array([item.embedding for item in response.data], dtype=np.float32)
    assert got.shape == (3, 128)
    np.testing.assert_allclose(got, reference.embed(TEXTS[:3], dimensions=128), atol=1e-6, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_variant_suffix_selects_a_variant(server, studio):
    body = httpx.post(f"{server[0]}/v1/embeddings", json={"model": f"{MODEL}:int8", "input": TEXTS[:2]},
                      timeout=120).json()  # loads the int8 session inside the request
    got = np.array([item["embedding"] for item in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, studio.embedder(MODEL, "int8").embed(TEXTS[:2]), atol=1e-6, rtol=0)
    assert body["model"] == f"{MODEL}:int8"


def test_models_list_and_retrieve(client, default_model):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids == [MODEL]  # only converted models are listed
    card = client.models.retrieve(MODEL)
    assert card.id == MODEL and card.owned_by == "onnx-embedding-studio" and card.created > 0
    assert card.model_extra["dimensions"] == 384 and card.model_extra["default"] is True
    assert client.models.retrieve(f"{MODEL}:int8").id == MODEL
    # a variant the model lacks answered its card; a hub id's slash was "no route": both are the model 404 now
    for missing in (f"{MODEL}:nope", "sentence-transformers/all-MiniLM-L6-v2"):
        with pytest.raises(openai.NotFoundError) as info:
            client.models.retrieve(missing)
        assert info.value.body["code"] == "model_not_found", info.value.body
    # longer than max_seq_length: cut to its first 256 tokens by default (as sentence-transformers does), a 400 with
    # text-embeddings-inference's "truncate": false; usage counts the tokens embedded
    long = client.embeddings.create(model=MODEL, input=["word " * 300, "short"])
    assert long.usage.prompt_tokens == 256 + 3
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input=["short", "word " * 300], extra_body={"truncate": False})
    assert "input[1] is longer than the model's 256 tokens" in info.value.body["message"]
    assert len(client.embeddings.create(model=MODEL, input="short", extra_body={"truncate": False}).data) == 1
    with pytest.raises(openai.BadRequestError) as info:  # "" was the default model, silently
        client.embeddings.create(model="", input="x")
    assert info.value.body["param"] == "model"


def test_unknown_model_is_a_404_in_openai_shape(client, server):
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert info.value.status_code == 404
    error = info.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model" and error["type"] == "invalid_request_error"
    assert "text-embedding-3-small" in error["message"]
    raw = httpx.post(f"{server[0]}/v1/embeddings", json={"model": "nope", "input": "x"})
    assert set(raw.json()["error"]) >= {"message", "type", "param", "code"}


def test_model_in_registry_but_not_converted_is_409(server):
    response = httpx.post(f"{server[0]}/v1/embeddings", json={"model": "all-mpnet-base-v2", "input": "x"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "model_not_converted"
    assert "python -m engine convert all-mpnet-base-v2" in response.json()["error"]["hint"]


def test_token_arrays_and_bad_fields_are_400(client, server):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input=[[101, 7592, 102]])
    assert "token ids" in info.value.body["message"]
    cases = [
        ({"model": MODEL, "input": "x", "dimensions": 1000}, "dimensions"),
        ({"model": MODEL, "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": MODEL, "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": MODEL}, "input"),
        ({"model": MODEL, "input": "x", "prompt_name": "nope"}, "prompt_name"),
        ({"model": f"{MODEL}:nope", "input": "x"}, "model"),
    ]
    for body, param in cases:
        response = httpx.post(f"{server[0]}/v1/embeddings", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["param"] == param, (body, response.text)
    broken = httpx.post(f"{server[0]}/v1/embeddings", content=b'{"input": ', headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
    deep = httpx.post(f"{server[0]}/v1/embeddings", content=b'{"input": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                      headers={"content-type": "application/json"})  # json.loads' RecursionError was a 500
    assert deep.status_code == 400 and deep.json()["error"]["code"] == "invalid_request", deep.text
    assert "nested too deeply" in deep.json()["error"]["message"], deep.text  # it said "not valid JSON"
    for content in (b"", b"[1, 2]", b'"text"'):  # no body, and JSON that is not an object
        response = httpx.post(f"{server[0]}/v1/embeddings", content=content, headers={"content-type": "application/json"})
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request", response.text


def test_openapi_documents_the_embeddings_body(server):
    """The route reads its body itself (for speed); the schema still shows what to send."""
    schema = httpx.get(f"{server[0]}/openapi.json").json()
    body = schema["paths"]["/v1/embeddings"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["input"] and {"input", "model", "dimensions", "prompt_name"} <= set(body["properties"])


def test_fastapi_telemetry_is_on_only_where_opentelemetry_is_configured():
    from engine.server.app import NO_TELEMETRY, fastapi_telemetry

    assert fastapi_telemetry({"PATH": "/bin"}) == NO_TELEMETRY
    assert fastapi_telemetry({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}) is None


def test_unknown_route_and_method(server):
    assert httpx.get(f"{server[0]}/v2/nothing").json()["error"]["code"] == "not_found"
    assert httpx.get(f"{server[0]}/v1/embeddings").status_code == 405


def test_unexpected_errors_never_reach_the_client_as_tracebacks(default_model):
    app = create_app(Studio(load_settings(data_dir=default_model.parent.parent)), ApiSettings())

    @app.get("/boom")
    async def boom():  # stands for any bug in a route
        raise RuntimeError("internal detail /secret/path")

    with serve(app) as base:
        response = httpx.get(f"{base}/boom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret" not in response.text and "Traceback" not in response.text and "RuntimeError" not in response.text


def test_health_ready_and_metrics(server, client):
    base, _ = server
    assert httpx.get(f"{base}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{base}/ready").json()
    assert httpx.head(f"{base}/health").status_code == 200 and httpx.head(f"{base}/ready").status_code == 200  # was 405
    # the default variant is auto: on a CPU host, ONNX Runtime or OpenVINO, whichever the probe found faster
    assert ready["status"] == "ready" and ready["model"] == MODEL and ready["provider"] in ("cpu", "openvino")
    client.embeddings.create(model=MODEL, input=["metrics please"])
    httpx.post(f"{base}/v1/embeddings", json={"model": "nope", "input": "x"})
    response = httpx.get(f"{base}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = metric_samples(response.text)
    assert sample(samples, "studio_http_requests_total", route="/v1/embeddings", method="POST", status="200") >= 1
    assert sample(samples, "studio_http_requests_total", route="/v1/embeddings", status="404") >= 1
    assert sample(samples, "studio_http_request_duration_seconds_count", route="/v1/embeddings") >= 2
    assert sample(samples, "studio_embedding_batch_size_count", model=MODEL) >= 1
    # queues are keyed by the provider that really runs (auto resolved once, in Studio.embedder)
    # ... and by the variant that runs: the registry's default is "auto", resolved by a probe on this machine
    variant, provider = ready["variant"], ready["provider"]
    assert variant in ("fp32", "optimized", "fp16", "int8")
    assert ("studio_embedding_queue_depth", (("model", MODEL), ("provider", provider), ("variant", variant))) in samples
    assert sample(samples, "studio_provider_info", model=MODEL, variant=variant, requested="auto", active=provider) == 1
    assert sample(samples, "studio_ready") == 1
    assert sample(samples, "process_resident_memory_bytes") > 0
