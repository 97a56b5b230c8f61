"""engine/checks.py and `python -m engine check` (scripts/check-models.sh): the judging rules,
then a real converted tiny model checked intact, with a truncated ONNX file, a missing tokenizer
and parity figures outside the thresholds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import checks
from engine.manifest import Parity, read_manifest

ROOT = Path(__file__).resolve().parents[2]


def parity(max_abs_diff: float, min_cosine: float) -> Parity:
    return Parity(max_abs_diff, min_cosine, min_cosine, 22, "sentence-transformers (test)")


@pytest.mark.parametrize(
    ("variant", "figures", "problems"),
    [
        ("fp32", (2e-7, 0.9999999), []),
        ("fp32", (1e-5, 0.99999), []),  # the limits themselves pass
        ("fp32", (2e-5, 0.9999999), ["max|diff| 2.00e-05 > 1e-05"]),
        ("fp32", (2e-7, 0.99998), ["min cosine 0.9999800 < 0.99999"]),
        ("optimized", (3e-5, 0.9998), ["max|diff|", "min cosine"]),
        ("fp16", (2.5e-4, 0.999999), []),  # fp16 is judged on cosine only
        ("fp16", (1e-3, 0.998), ["min cosine 0.9980000 < 0.999"]),
        ("int8", (0.2, 0.5), []),  # int8 is reported, never judged
        ("fp32", (float("nan"), 1.0), ["max|diff| nan"]),
    ],
)
def test_parity_thresholds(variant, figures, problems):
    found = checks.parity_problems(variant, parity(*figures))
    assert len(found) == len(problems)
    for expected, message in zip(problems, found):
        assert expected in message and message.startswith(variant)


def test_missing_parity_fails_judged_variants_only():
    assert checks.parity_problems("fp32", None) == ["fp32: no parity figures in the manifest (converted without validation)"]
    assert checks.parity_problems("int8", None) == []


def test_statuses():
    assert checks.variant_status([], None, strict_provider=False) == checks.OK
    assert checks.variant_status([], "fell back to cpu", strict_provider=False) == checks.WARN
    assert checks.variant_status([], "fell back to cpu", strict_provider=True) == checks.FAIL
    assert checks.variant_status(["x"], None, strict_provider=False) == checks.FAIL
    assert checks.provider_for("int8", "cuda") == "cpu" and checks.provider_for("fp16", "cuda") == "cuda"
    assert checks.provider_for("int8-static", "cuda") == "cpu" and checks.provider_for("int8-static", "openvino") == "openvino"


def test_probe_problems():
    unit = np.eye(3, 4, dtype=np.float32)
    assert checks.probe_problems(unit, 3, 4, normalized=True) == []
    assert "shape" in checks.probe_problems(unit, 2, 4, normalized=True)[0]
    assert "unit length" in checks.probe_problems(unit * 2, 3, 4, normalized=True)[0]
    assert checks.probe_problems(unit * 2, 3, 4, normalized=False) == []
    broken = unit.copy()
    broken[0, 0] = np.nan
    assert "NaN" in checks.probe_problems(broken, 3, 4, normalized=False)[0]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """A data dir holding one tiny model converted with fp32 and int8 (a real conversion, ~10 s)."""
    from tiny_models import TinySpec, build

    from converter.convert import convert

    root = tmp_path_factory.mktemp("checks")
    source = build(TinySpec("bert"), root / "tiny-src")
    convert(str(source), root / "data" / "models" / "tiny", name="tiny", variant_names=("fp32", "int8"),
            progress=lambda step, fraction: None)
    return root / "data"


def copy_data(converted: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(converted, target)
    return target


def engine_check(data_dir: Path, *args: str) -> tuple[int, dict]:
    env = {**os.environ, "STUDIO_DATA_DIR": str(data_dir)}
    result = subprocess.run([sys.executable, "-m", "engine", "check", "--json", *args], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=120)
    return result.returncode, json.loads(result.stdout)


def tiny(report: dict) -> dict:
    return next(m for m in report["models"] if m["name"] == "tiny")


def test_an_intact_model_passes_and_unconverted_ones_are_skipped(converted):
    code, report = engine_check(converted)
    assert code == 0 and report["ok"]
    model = tiny(report)
    assert model["status"] == "ok" and {v["variant"] for v in model["variants"]} == {"fp32", "int8"}
    for variant in model["variants"]:
        assert variant["provider"] == "cpu" and variant["problems"] == [] and variant["load_seconds"] is not None
    skipped = [m for m in report["models"] if m["name"] != "tiny"]
    assert skipped and all(m["status"] == "skip" and m["problems"] == ["not converted"] for m in skipped)
    assert report["summary"] == {"ok": 1, "warn": 0, "fail": 0, "skip": len(skipped)}


def test_the_table_and_the_exit_status_of_the_script(converted):
    env = {**os.environ, "STUDIO_DATA_DIR": str(converted), "STUDIO_PYTHON": sys.executable}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "check-models.sh"), "--model", "tiny"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "all converted models pass: 1 ok" in result.stdout
    assert any(line.split()[:3] == ["tiny", "int8", "OK"] for line in result.stdout.splitlines())


def test_a_truncated_onnx_file_fails(converted, tmp_path):
    data = copy_data(converted, tmp_path)
    onnx_file = data / "models" / "tiny" / "model_int8.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:1000])
    code, report = engine_check(data, "--model", "tiny")
    assert code == 1 and not report["ok"]
    int8 = next(v for v in tiny(report)["variants"] if v["variant"] == "int8")
    fp32 = next(v for v in tiny(report)["variants"] if v["variant"] == "fp32")
    assert int8["status"] == "fail" and "truncated or replaced" in int8["problems"][0]
    assert fp32["status"] == "ok"


def test_an_unloadable_onnx_file_of_the_recorded_size_fails_on_load(converted, tmp_path):
    data = copy_data(converted, tmp_path)
    onnx_file = data / "models" / "tiny" / "model.onnx"
    onnx_file.write_bytes(b"\0" * onnx_file.stat().st_size)  # same size, garbage
    code, report = engine_check(data, "--model", "tiny", "--variants", "fp32")
    assert code == 1
    (fp32,) = tiny(report)["variants"]
    assert fp32["status"] == "fail" and "does not load or run" in fp32["problems"][0]


def test_a_missing_tokenizer_and_bad_parity_figures_fail(converted, tmp_path):
    data = copy_data(converted, tmp_path)
    folder = data / "models" / "tiny"
    (folder / "tokenizer.json").unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["variants"]["fp32"]["parity"]["min_cosine"] = 0.99
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert read_manifest(folder).variants["fp32"].parity.min_cosine == 0.99
    code, report = engine_check(data, "--model", "tiny", "--no-load")
    assert code == 1
    fp32 = next(v for v in tiny(report)["variants"] if v["variant"] == "fp32")
    assert any("tokenizer.json is missing" in p for p in fp32["problems"])
    assert any("min cosine 0.9900000 < 0.99999" in p for p in fp32["problems"])
    assert fp32["provider"] is None  # --no-load


def test_a_variant_filter_the_model_lacks_skips_it(converted):
    code, report = engine_check(converted, "--model", "tiny", "--variants", "fp16")
    assert code == 0 and tiny(report)["status"] == "skip" and tiny(report)["problems"] == ["no fp16 variant"]


def test_an_unavailable_provider_fails_clearly(converted):
    code, report = engine_check(converted, "--model", "tiny", "--provider", "migraphx", "--variants", "fp32")
    assert code == 1
    (fp32,) = tiny(report)["variants"]
    assert fp32["status"] == "fail" and "migraphx execution provider is not available" in fp32["problems"][0]


def test_on_openvino_the_parity_measured_there_is_judged(converted, tmp_path):
    """--provider openvino judges each variant by its parity on OpenVINO (bf16 on AMX CPUs: the fp32 tier), and
    a manifest written where OpenVINO was not installed is a failure that says to convert again."""
    code, report = engine_check(converted, "--model", "tiny", "--provider", "openvino")
    fp32 = next(v for v in tiny(report)["variants"] if v["variant"] == "fp32")
    manifest = json.loads((converted / "models" / "tiny" / "manifest.json").read_text())
    (on_openvino,) = manifest["variants"]["fp32"]["provider_parity"].values()
    assert code == 0 and fp32["status"] == "ok" and fp32["provider"] == "openvino"
    assert fp32["min_cosine"] == on_openvino["min_cosine"] >= 0.9999

    data = copy_data(converted, tmp_path)
    path = data / "models" / "tiny" / "manifest.json"
    stripped = json.loads(path.read_text())
    stripped["variants"]["fp32"]["provider_parity"] = {}
    path.write_text(json.dumps(stripped))
    code, report = engine_check(data, "--model", "tiny", "--provider", "openvino", "--variants", "fp32")
    (fp32,) = tiny(report)["variants"]
    assert code == 1 and fp32["status"] == "fail" and "no parity on openvino" in fp32["problems"][0]
