"""Bad input at the HTTP boundary, over real HTTP: lone surrogates and loose types are 400s naming the field,
the JSON routes keep the JSON body limit while uploads get theirs (enforced while reading, also for a chunked
body), a multi-file ingest answers per file, the collection name is checked first, stored names are base
names, and error messages never echo unbounded input."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from conftest import shared_data
from server_harness import serve, wait_ready

from engine.httpauth import authorized, bearer_token, error_body, mask_url, mask_urls, token_matches
from engine.server import create_app
from engine.server.config import ApiSettings
from engine.server.routes.documents import upload_name
from engine.settings import load_settings
from engine.studio import Studio

UPLOAD_MB = 2


@pytest.fixture(scope="module")
def server(default_model, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("http-robust")
    (data_dir / "models").mkdir()
    (data_dir / "models" / default_model.name).symlink_to(default_model)
    studio = Studio(load_settings(data_dir=data_dir, max_upload_mb=UPLOAD_MB))
    with serve(create_app(studio, ApiSettings(max_body_mb=1))) as base:
        wait_ready(base)
        yield base


def _error(answer: httpx.Response) -> dict:
    return answer.json()["error"]


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "a\ud800b"}, "input"),
    ({"input": ["fine", "x\udfffy"]}, "input"),
    ({"input": "a", "dimensions": True}, "dimensions"),
    ({"input": "a", "dimensions": "12"}, "dimensions"),
    ({"input": "a", "dimensions": 12.0}, "dimensions"),
])
def test_embeddings_refuse_lone_surrogates_and_loose_types(server, body, param):
    # json.dumps escapes a lone surrogate as \ud800: exactly what a client library sends
    answer = httpx.post(f"{server}/v1/embeddings", content=json.dumps(body), headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert _error(answer)["param"] == param


def _ingest(server: str, name: str, files: list[tuple[str, bytes]], **form) -> httpx.Response:
    return httpx.post(f"{server}/v1/collections/{name}/documents", timeout=300, data=form,
                      files=[("files", (filename, data, "application/pdf")) for filename, data in files])


def test_multi_file_ingest_answers_per_file_and_stores_base_names(server):
    good = shared_data("pdfs", "table_small.pdf").read_bytes()
    too_big = b"%PDF-1.4\n" + b"0" * (UPLOAD_MB * 1024 * 1024)
    answer = _ingest(server, "robust", [("/abs/path/evil2.pdf", good), ("empty.pdf", b""), ("big.pdf", too_big)])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["ingested"], body["failed"]) == (1, 2)
    first, empty, big = body["results"]
    assert first["ok"] and first["file"] == "evil2.pdf"
    assert not empty["ok"] and empty["file"] == "empty.pdf" and "empty" in empty["error"]["message"]
    assert not big["ok"] and big["error"]["error"] == "document_limit"
    names = [d["name"] for d in httpx.get(f"{server}/v1/collections/robust").json()["documents"]]
    assert names == ["evil2.pdf"]
    deleted = httpx.delete(f"{server}/v1/collections/robust/documents/evil2.pdf")
    assert deleted.status_code == 200 and deleted.json()["deleted"] == "evil2.pdf"


def test_the_collection_name_is_checked_before_any_file(server):
    answer = _ingest(server, ".x", [("a.pdf", b"")])
    assert answer.status_code == 400 and "not a valid collection name" in _error(answer)["message"]


def test_upload_names_are_base_names():
    assert upload_name("/abs/path/evil2.pdf") == "evil2.pdf"
    assert upload_name("C:\\Users\\me\\report.pdf") == "report.pdf"
    assert upload_name("../../etc/passwd") == "passwd"
    assert upload_name("..") == "upload.pdf" and upload_name(None) == "upload.pdf"


def test_search_is_strict_and_names_the_query(server):
    _ingest(server, "strict", [("table.pdf", shared_data("pdfs", "table_small.pdf").read_bytes())])
    url = f"{server}/v1/collections/strict/search"
    assert httpx.post(url, json={"query": "table", "k": 2}, timeout=60).status_code == 200  # the first search loads
    for body, param in [({"query": "x", "k": True}, "k"), ({"query": "x", "k": "3"}, "k"),
                        ({"query": "x" * 10_001}, "query"), ({"query": ""}, "query"), ({"query": 5}, "query")]:
        answer = httpx.post(url, json=body)
        assert answer.status_code == 400 and _error(answer)["param"] == param, (body, answer.text)


def test_json_routes_keep_the_json_limit_and_never_echo_unbounded_input(server, caplog):
    # its own collection (re-ingesting the same file is a no-op): it must not depend on the test before it
    _ingest(server, "strict", [("table.pdf", shared_data("pdfs", "table_small.pdf").read_bytes())])
    url = f"{server}/v1/collections/strict/search"
    # over the 1 MB JSON limit, though far under the upload limit that the documents route gets
    huge = {"query": "x", "documents": ["d" * 500] * 2500}
    answer = httpx.post(url, json=huge)
    assert answer.status_code == 413 and _error(answer)["code"] == "payload_too_large"
    # under the limit, all unknown: the error says so without sending the 0.5 MB list back
    with caplog.at_level(logging.INFO):
        answer = httpx.post(url, json={"query": "x", "documents": ["d" * 500] * 1000})
    assert answer.status_code == 400 and len(answer.content) < 5000, len(answer.content)
    assert all(len(record.getMessage()) < 2000 for record in caplog.records)


def test_an_upload_over_the_limit_is_refused_while_it_streams(server):
    """No Content-Length (chunked): the body is counted as it arrives and the request ends with a 413."""
    sent = 0

    def chunks():
        nonlocal sent
        boundary = b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"z.pdf\"\r\n\r\n"
        yield boundary
        for _ in range(64):  # 64 MB on offer; the server must stop long before
            sent += 1
            yield b"\0" * (1024 * 1024)
        yield b"\r\n--b--\r\n"

    try:
        answer = httpx.post(f"{server}/v1/collections/stream/documents", content=chunks(), timeout=60,
                            headers={"content-type": "multipart/form-data; boundary=b"})
    except httpx.HTTPError:  # the server may close the connection while the client is still sending
        answer = None
    if answer is not None:
        assert answer.status_code == 413, answer.text
    assert sent < 64


# --- shared auth and error helpers ----------------------------------------------------------------------
def test_bearer_helper_is_constant_time_and_strict():
    assert bearer_token(b"Bearer abc") == b"abc" and bearer_token("bearer  abc ") == b"abc"
    assert bearer_token("Basic abc") is None and bearer_token("Bearer ") is None and bearer_token(None) is None
    assert token_matches(b"abc", b"abc") and not token_matches(b"abd", b"abc") and not token_matches(None, b"")
    assert authorized(None, None) and authorized("Bearer t", "t") and not authorized("Bearer t2", "t")
    assert not authorized(None, "t") and not authorized("t", "t")
    assert error_body(401, "no", "invalid_api_key") == {
        "error": {"message": "no", "type": "authentication_error", "param": None, "code": "invalid_api_key"}}


@pytest.mark.parametrize(("url", "shown"), [
    ("http://user:pa55@host:8000/v1", "http://user:***@host:8000/v1"),
    ("https://:token@gpu.local/", "https://:***@gpu.local/"),
    ("http://user@host/", "http://user@host/"),
    ("http://host:8000", "http://host:8000"),
    ("http://u:p@[::1]:9/x?q=1", "http://u:***@[::1]:9/x?q=1"),
])
def test_credentials_in_urls_are_masked(url, shown):
    assert mask_url(url) == shown
    assert mask_urls(f"cannot reach {url} (refused)") == f"cannot reach {shown} (refused)"


def test_the_vlm_server_checks_its_key_with_the_shared_helper():
    pytest.importorskip("PIL")
    from fastapi.testclient import TestClient

    from engine.ocr.vlm_server import create_app as vlm_app

    client = TestClient(vlm_app(runner=None, served_name="m", model_id="m", api_key="k3y"), raise_server_exceptions=False)
    assert client.get("/health").status_code == 200
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "bearer k3y"}).status_code != 401
