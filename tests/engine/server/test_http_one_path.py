"""The HTTP server tokenizes each request once and runs its own batch as one model batch (the
embedder's STUDIO_BATCH_SIZE does not split it again)."""

from __future__ import annotations

import httpx
import numpy as np
from server_harness import serve, wait_ready

from engine.embedder import Embedder
from engine.server import create_app
from engine.server.config import ApiSettings
from engine.settings import load_settings
from engine.studio import Studio
from engine.tokenize import TextTokenizer

MODEL = "all-minilm-l6-v2"


def test_the_server_tokenizes_once_and_runs_its_batch_as_one_model_batch(default_model, monkeypatch):
    studio = Studio(load_settings(data_dir=default_model.parent.parent, batch_size=8))
    with serve(create_app(studio, ApiSettings(max_batch_items=128, max_wait_ms=50))) as base:
        wait_ready(base)
        calls = {"encode": 0, "texts": 0, "runs": 0}
        original_encode, original_run, original_packed = TextTokenizer.encode, Embedder._run, Embedder._run_packed

        def counting_encode(self, texts):
            calls["encode"] += 1
            calls["texts"] += len(texts)
            return original_encode(self, texts)

        def counting_run(self, session, batch, prompt_length=0):
            calls["runs"] += 1
            return original_run(self, session, batch, prompt_length)

        def counting_packed(self, session, items, capacity, prompt_length=0):  # short texts, packed (OpenVINO)
            calls["runs"] += 1
            return original_packed(self, session, items, capacity, prompt_length)

        monkeypatch.setattr(TextTokenizer, "encode", counting_encode)
        monkeypatch.setattr(Embedder, "_run", counting_run)
        monkeypatch.setattr(Embedder, "_run_packed", counting_packed)
        texts = [f"text number {i} about a protein" for i in range(40)]
        response = httpx.post(f"{base}/v1/embeddings", json={"model": MODEL, "input": texts}, timeout=60)
        assert response.status_code == 200, response.text
        assert calls["encode"] == 1 and calls["texts"] == 40  # tokenized once, by the route
        assert calls["runs"] == 1  # 40 texts, STUDIO_BATCH_SIZE 8: still one model batch (the server's limit)
        got = np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)
    monkeypatch.undo()
    np.testing.assert_allclose(got, studio.embedder(MODEL).embed(texts), atol=1e-5)
