"""The converter API's interactive documentation (/docs, /redoc, /openapi.json) needs the bearer token when
one is set, like every other route but /health; without a token it stays open."""

from __future__ import annotations

from fastapi.testclient import TestClient

from converter.server import ConverterSettings, create_app
from engine.settings import load_settings

DOCS = ("/docs", "/redoc", "/openapi.json")


def test_docs_need_the_token_when_one_is_set(data_dir):
    app = create_app(ConverterSettings(api_token="s3cret-token"), load_settings(data_dir=data_dir))
    with TestClient(app) as client:
        for path in DOCS:
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert refused.json()["error"]["type"] == "authentication_error"
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
            allowed = client.get(path, headers={"Authorization": "Bearer s3cret-token"})
            assert allowed.status_code == 200, path
        schema = client.get("/openapi.json", headers={"Authorization": "Bearer s3cret-token"}).json()
        assert "/v1/jobs" in schema["paths"] and "/docs" not in schema["paths"]
        assert client.get("/health").status_code == 200


def test_docs_are_open_without_a_token(data_dir):
    app = create_app(ConverterSettings(api_token=None), load_settings(data_dir=data_dir))
    with TestClient(app) as client:
        assert all(client.get(path).status_code == 200 for path in DOCS)
