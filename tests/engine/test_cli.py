"""The CLI contracts (DESIGN.md): --help lists subcommands, --json everywhere, embed's file formats,
errors as message + hint with a non-zero exit and no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = __import__("conftest").ROOT


def run(*args, data_dir=None, check=True):
    env = {**os.environ}
    if data_dir is not None:
        env["STUDIO_DATA_DIR"] = str(data_dir)
    result = subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_help_lists_the_subcommands():
    out = run("--help").stdout
    for name in ("providers", "models", "convert", "embed"):
        assert name in out


def test_providers_json():
    data = json.loads(run("providers", "--json").stdout)
    assert data["auto"] == "cpu" and any(p["name"] == "cpu" and p["available"] for p in data["providers"])


def test_models_json(default_model):
    data = json.loads(run("models", "--json", data_dir=default_model.parent.parent).stdout)
    default = next(m for m in data["models"] if m["name"] == data["default"])
    assert default["converted"] and default["parity"]["fp32"]["min_cosine"] >= 0.99999


@pytest.mark.parametrize("fmt", ["txt", "jsonl"])
def test_embed_contract(default_model, tmp_path, fmt):
    texts = ["first line", "", "third: 数据 🙂", "fourth"]
    source = tmp_path / f"in.{fmt}"
    if fmt == "txt":
        source.write_text("\n".join(texts) + "\n")
    else:
        source.write_text("\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(texts)) + "\n")
    out = tmp_path / "out.npy"
    data = json.loads(run("embed", "--model", "all-minilm-l6-v2", "--in", str(source), "--out", str(out),
                          "--provider", "cpu", "--variant", "fp32", "--json", data_dir=default_model.parent.parent).stdout)
    vectors = np.load(out)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32 and data["count"] == 4
    assert data["provider"] == "cpu"
    from engine.settings import load_settings
    from engine.studio import Studio

    expected = Studio(load_settings(data_dir=default_model.parent.parent)).embedder(variant="fp32", provider="cpu")
    np.testing.assert_allclose(vectors, expected.embed(texts), atol=1e-6)


def test_errors_are_messages_not_tracebacks(default_model, tmp_path):
    data_dir = default_model.parent.parent
    (tmp_path / "t.txt").write_text("x\n")
    unknown = run("embed", "--model", "gpt-17", "--in", str(tmp_path / "t.txt"), "--out", str(tmp_path / "o.npy"),
                  data_dir=data_dir, check=False)
    assert unknown.returncode == 2 and "Unknown model 'gpt-17'" in unknown.stderr and "all-minilm-l6-v2" in unknown.stderr
    missing = run("embed", "--in", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o.npy"), data_dir=data_dir, check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    gpu = run("embed", "--in", str(tmp_path / "t.txt"), "--out", str(tmp_path / "o.npy"), "--provider", "cuda", "--json",
              data_dir=data_dir, check=False)
    assert gpu.returncode == 2 and json.loads(gpu.stdout)["error"] == "provider_unavailable"
    not_converted = run("embed", "--model", "bge-small-en-v1.5", "--in", str(tmp_path / "t.txt"), "--out",
                        str(tmp_path / "o.npy"), data_dir=data_dir, check=False)
    assert not_converted.returncode == 2 and "python -m engine convert bge-small-en-v1.5" in not_converted.stderr
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"nope": 1}\n')
    bad = run("embed", "--in", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "o.npy"), data_dir=data_dir, check=False)
    assert bad.returncode == 2 and "bad.jsonl:2" in bad.stderr
