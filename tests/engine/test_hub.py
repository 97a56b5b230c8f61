"""engine.hub against a local hub on 127.0.0.1 speaking the Hugging Face HTTP protocol, plus the
offline behaviours (switched off, unreachable) that must answer fast and clearly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from fake_hub import FakeHub
from huggingface_hub.utils import reset_sessions
from tiny_models import TinySpec, build

from engine import hub
from engine.errors import HubOfflineError, ModelNotFoundError

ROOT = __import__("conftest").ROOT


@pytest.fixture()
def online(monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    hub._probe_cache.clear()
    reset_sessions()  # huggingface_hub caches one HTTP session per thread, built for offline mode
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake
    reset_sessions()


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    return build(TinySpec("bert", pooling=("cls",)), tmp_path_factory.mktemp("hubmodel") / "st")


def test_search_info_and_download(online, tiny_st):
    online.add("acme/tiny-bert", tiny_st, downloads=50)
    online.add("acme/other-bert", tiny_st, downloads=900)
    online.add("acme/a-classifier", tiny_st, pipeline_tag="text-classification")
    found = hub.search_models("bert")
    assert [m.id for m in found] == ["acme/other-bert", "acme/tiny-bert"]
    info = hub.model_info("acme/tiny-bert")
    assert info.is_sentence_transformers and "modules.json" in info.files and len(info.sha) == 40
    folder, sha = hub.download("acme/tiny-bert")
    assert sha == info.sha
    assert (folder / "modules.json").is_file() and (folder / "1_Pooling" / "config.json").is_file()
    assert (folder / "model.safetensors").is_file()


def test_conversion_files_skip_other_exports():
    files = ("config.json", "model.safetensors", "pytorch_model.bin", "onnx/model.onnx", "openvino/x.xml",
             "1_Pooling/config.json", "2_Dense/model.safetensors", "modeling_custom.py", "README.md")
    chosen = hub.conversion_files(files)
    assert "onnx/model.onnx" not in chosen and "pytorch_model.bin" not in chosen
    assert {"config.json", "model.safetensors", "1_Pooling/config.json", "2_Dense/model.safetensors"} <= set(chosen)
    assert "modeling_custom.py" not in chosen
    assert "modeling_custom.py" in hub.conversion_files(files, allow_code=True)


def test_unknown_model_and_bad_ids(online):
    with pytest.raises(ModelNotFoundError, match="no model"):
        hub.model_info("acme/does-not-exist")
    for bad in ("not-an-id", "../../etc/passwd", "a/b/c", ""):
        with pytest.raises(ModelNotFoundError, match="not a Hugging Face model id"):
            hub.model_info(bad)


def test_offline_switch_answers_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(HubOfflineError, match="HF_HUB_OFFLINE"):
        hub.search_models("minilm")
    assert time.perf_counter() - started < 1


def test_unreachable_hub_answers_within_seconds(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    hub._probe_cache.clear()
    started = time.perf_counter()
    with pytest.raises(HubOfflineError, match="cannot be reached"):
        hub.model_info("acme/tiny-bert")
    assert time.perf_counter() - started < 5


def test_cli_converts_a_hub_model_end_to_end(online, tiny_st, tmp_path):
    """python -m engine convert OWNER/NAME: download from the (local) hub, convert, validate, register."""
    online.add("acme/tiny-bert", tiny_st)
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-m", "engine", "convert", "acme/tiny-bert", "--name", "tiny", "--variants", "fp32,int8", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["source"] == "acme/tiny-bert" and summary["revision"] == online.repos["acme/tiny-bert"].sha
    assert summary["pooling"] == ["cls"] and set(summary["variants"]) == {"fp32", "int8"}
    assert summary["variants"]["fp32"]["min_cosine"] >= 0.99999
    assert any("/resolve/" in r for r in online.requests)
    listed = subprocess.run([sys.executable, "-m", "engine", "models", "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    models = {m["name"]: m for m in json.loads(listed.stdout)["models"]}
    assert models["tiny"]["converted"] and models["tiny"]["hf_id"] == "acme/tiny-bert"
