"""The server's pure parts: input parsing, the error table, batch forming, auth, settings."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest

from engine import errors as E
from engine.errors import PayloadTooLargeError, RequestError, ServiceBusyError
from engine.server.auth import bearer_token, token_matches
from engine.server.batching import Job, take_batch
from engine.server.config import ApiSettings, load_api_settings
from engine.server.errors import STATUS_BY_ERROR, error_body, status_for
from engine.server.routes.embeddings import encode_vectors, parse_input, parse_model_id


# --- input ------------------------------------------------------------------------------------------
def test_parse_input_accepts_a_string_or_a_list_of_strings():
    assert parse_input("one", 10, 100) == ["one"]
    assert parse_input(["a", "b c", " "], 10, 100) == ["a", "b c", " "]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "empty string"),
        ([], "input is empty"),
        (["ok", ""], "input[1] is an empty string"),
        ([1, 2, 3], "token ids"),
        ([[1, 2], [3]], "token ids"),
        (["ok", 5], "input[1] is not a string"),
        ({"text": "x"}, "string or a list of strings"),
        (None, "string or a list of strings"),
        (["a"] * 11, "at most 10 per request"),
        (["x" * 101], "at most 100"),
    ],
)
def test_parse_input_refuses_with_a_clear_message(value, fragment):
    with pytest.raises(RequestError) as info:
        parse_input(value, 10, 100)
    assert fragment in info.value.message
    assert info.value.param == "input"
    assert status_for(info.value) == 400


def test_token_id_refusal_says_how_to_send_text():
    with pytest.raises(RequestError) as info:
        parse_input([101, 2023, 102], 10, 100)
    assert "check_embedding_ctx_length=False" in info.value.hint


def test_limits_are_inclusive():
    assert len(parse_input(["x" * 100] * 10, 10, 100)) == 10


def test_parse_model_id():
    assert parse_model_id("all-minilm-l6-v2") == ("all-minilm-l6-v2", None)
    assert parse_model_id("all-minilm-l6-v2:int8") == ("all-minilm-l6-v2", "int8")


def test_base64_is_little_endian_float32_as_the_openai_client_decodes_it():
    vectors = np.random.default_rng(0).standard_normal((3, 7)).astype(np.float32)
    encoded = encode_vectors(vectors, "base64")
    decoded = np.stack([np.frombuffer(base64.b64decode(s), dtype="float32") for s in encoded])
    assert np.array_equal(decoded, vectors)
    assert all(isinstance(s, str) for s in encoded)
    floats = encode_vectors(vectors, "float")
    assert np.array_equal(np.asarray(floats, dtype=np.float32), vectors)


def test_float_vectors_are_json_that_reads_back_as_the_same_float32_values():
    """The rows go to orjson as float32: the shortest decimals that round-trip in float32, for any finite value
    (subnormals, extremes, negative zero), and nothing that is not a number."""
    import orjson
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from engine.server.routes.embeddings import _json

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=40))
    def check(values):
        vectors = np.array([values, values[::-1]], dtype=np.float32)
        body = _json({"data": encode_vectors(vectors, "float")}).body
        decoded = np.array(json.loads(body)["data"], dtype=np.float32)
        assert np.array_equal(decoded, vectors) and np.array_equal(np.signbit(decoded), np.signbit(vectors))
        assert orjson.loads(body) == json.loads(body)

    check()


# --- the error table --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "status"),
    [
        (E.ModelNotFoundError, 404),
        (E.InputError, 400),
        (E.ProviderError, 503),
        (E.ModelNotConvertedError, 409),
        (E.DocumentError, 422),
        (E.CorruptDocumentError, 422),
        (E.EncryptedDocumentError, 422),
        (E.DocumentLimitError, 413),
        (E.OCRUnavailableError, 503),
        (E.OCRAuthError, 502),
        (E.OCRRateLimitError, 429),
        (E.OCRServiceError, 502),
        (E.CollectionNotFoundError, 404),
        (E.ModelMismatchError, 409),
        (E.RemoteCodeRefusedError, 403),
        (E.HubOfflineError, 503),
        (E.InferenceError, 500),
        (E.ModelFileError, 500),
        (E.StudioError, 500),
        (PayloadTooLargeError, 413),
        (ServiceBusyError, 503),
    ],
)
def test_status_table(error, status):
    assert status_for(error("message")) == status


def test_every_error_class_has_a_status_through_its_parents():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for cls in subclasses(E.StudioError):
        assert 400 <= status_for(cls("m")) <= 599, cls
    assert set(STATUS_BY_ERROR) <= {E.StudioError, *subclasses(E.StudioError)}


def test_error_body_has_openai_shape():
    body = error_body(404, "Unknown model 'x'.", "model_not_found", "model", "pick another")
    assert body == {"error": {"message": "Unknown model 'x'.", "type": "invalid_request_error", "param": "model",
                              "code": "model_not_found", "hint": "pick another"}}
    assert error_body(503, "busy", "server_busy")["error"]["type"] == "server_error"
    assert error_body(401, "no", "invalid_api_key")["error"]["type"] == "authentication_error"


# --- batch forming ----------------------------------------------------------------------------------
def _job(loop, lengths, enqueued=0.0):
    return Job(embedder=None, prompt="", texts=[f"t{i}" for i in range(len(lengths))], lengths=lengths,
               future=loop.create_future(), enqueued=enqueued, remaining=len(lengths))


@pytest.fixture()
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _spans(slices):
    return [(s.job, s.start, s.stop) for s in slices]


def test_take_batch_is_fifo_and_fills_up_to_the_item_budget(loop):
    from collections import deque

    a, b, c = _job(loop, [5] * 3), _job(loop, [5] * 4), _job(loop, [5] * 2)
    pending = deque([a, b, c])
    assert _spans(take_batch(pending, max_items=5, max_tokens=1000)) == [(a, 0, 3), (b, 0, 2)]
    assert list(pending) == [b, c]
    assert _spans(take_batch(pending, max_items=5, max_tokens=1000)) == [(b, 2, 4), (c, 0, 2)]
    assert not pending


def test_take_batch_respects_the_token_budget_but_always_takes_one(loop):
    from collections import deque

    big, small = _job(loop, [300, 300]), _job(loop, [10])
    pending = deque([big, small])
    assert _spans(take_batch(pending, max_items=100, max_tokens=256)) == [(big, 0, 1)]  # over budget alone: still runs
    assert _spans(take_batch(pending, max_items=100, max_tokens=400)) == [(big, 1, 2), (small, 0, 1)]


def test_take_batch_skips_requests_whose_caller_left(loop):
    from collections import deque

    gone, kept = _job(loop, [5, 5]), _job(loop, [5])
    gone.future.cancel()
    pending = deque([gone, kept])
    assert _spans(take_batch(pending, max_items=10, max_tokens=100)) == [(kept, 0, 1)]


# --- auth -------------------------------------------------------------------------------------------
def test_bearer_token_parsing():
    def scope(value):
        return {"headers": [(b"authorization", value)]}

    assert bearer_token(scope(b"Bearer abc")) == b"abc"
    assert bearer_token(scope(b"bearer   abc ")) == b"abc"
    assert bearer_token(scope(b"Basic abc")) is None
    assert bearer_token(scope(b"Bearer ")) is None
    assert bearer_token({"headers": []}) is None


def test_token_matches():
    assert token_matches(b"secret", b"secret")
    assert not token_matches(b"secreT", b"secret")
    assert not token_matches(b"", b"secret")
    assert not token_matches(None, b"secret")


# --- settings ---------------------------------------------------------------------------------------
def test_settings_read_api_token_and_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("API_TOKEN", "from-env")
    monkeypatch.setenv("STUDIO_API_MAX_ITEMS", "7")
    settings = ApiSettings()
    assert settings.token.get_secret_value() == "from-env" and settings.max_items == 7
    assert "from-env" not in repr(settings)
    monkeypatch.setenv("API_TOKEN", "  ")
    assert ApiSettings().token is None and not ApiSettings().auth_enabled


def test_invalid_settings_are_a_config_error(monkeypatch):
    monkeypatch.setenv("STUDIO_API_MAX_WAIT_MS", "-1")
    with pytest.raises(E.ConfigError) as info:
        load_api_settings()
    assert "STUDIO_API_MAX_WAIT_MS" in info.value.message


def test_the_upload_limit_covers_the_routes_that_take_a_file_and_no_json_route():
    """An import took the 16 MB JSON body limit: ~6,000 chunks (a 1,457-chunk export is 3.7 MB)."""
    from engine.server.limits import BodyLimitMiddleware
    from engine.server.routes.documents import UPLOAD_PATHS

    limits = BodyLimitMiddleware(None, max_bytes=1, upload_bytes=2, upload_paths=UPLOAD_PATHS)
    for path in ("/v1/collections/c/import", "/v1/collections/c/documents", "/v1/ocr", "/ocr"):
        assert limits.limit_for(path) == 2, path
    for path in ("/v1/collections/c/search", "/v1/embeddings", "/v1/collections/c/import/x", "/v1/collections/c"):
        assert limits.limit_for(path) == 1, path
