"""scripts/startup.sh and scripts/benchmark.sh decisions, with stand-in `uname`, `nvidia-smi`,
`docker` and `python` executables on a PATH that holds nothing else but the basic tools."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("bash", "sh", "sed", "head", "wc", "tr", "timeout", "dirname", "cat", "grep", "awk", "date", "env", "sort")

H100 = "NVIDIA H100 80GB HBM3"
GB10 = "NVIDIA GB10"


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def make_path(tmp_path: Path, os_name: str = "Linux", arch: str = "x86_64", gpu: str | None = None,
              gpu_broken: bool = False, docker: str | None = None, python_providers: str | None = None) -> str:
    """A bin folder with the basic tools plus stand-ins; docker: None (absent), 'down' (no engine),
    'no-compose', 'plain' (engine + compose) or 'nvidia' (engine + compose + NVIDIA runtime)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    for tool in TOOLS:
        real = shutil.which(tool)
        assert real, f"{tool} is needed for these tests"
        (bin_dir / tool).symlink_to(real)
    _write(bin_dir / "uname", f'#!/bin/sh\ncase "$1" in -m) echo {arch} ;; *) echo {os_name} ;; esac\n')
    if gpu_broken:
        _write(bin_dir / "nvidia-smi", "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate "
                                       "with the NVIDIA driver.\"\nexit 9\n")
    elif gpu:
        _write(bin_dir / "nvidia-smi", f'#!/bin/sh\ncase "$*" in *--query-gpu=name*) echo "{gpu}" ;; '
                                       f'*) echo "GPU 0: {gpu} (UUID: GPU-0)" ;; esac\n')
    if docker:
        runtimes = '{"io.containerd.runc.v2":{"path":"runc"},"runc":{"path":"runc"}'
        runtimes += ',"nvidia":{"path":"nvidia-container-runtime"}}' if docker == "nvidia" else "}"
        _write(bin_dir / "docker", f"""#!/bin/sh
case "$*" in
  "info --format"*) [ {docker} = down ] && exit 1; echo '{runtimes}' ;;
  info) [ {docker} = down ] && {{ echo "Cannot connect to the Docker daemon" >&2; exit 1; }}; echo "Server: ok" ;;
  "compose version") [ {docker} = no-compose ] && {{ echo "docker: 'compose' is not a docker command." >&2; exit 1; }}
                     echo "Docker Compose version v2.40.3" ;;
  *) echo "unexpected docker call: $*" >&2; exit 3 ;;
esac
""")
    if python_providers is not None:
        _write(bin_dir / "python", f'#!/bin/sh\necho "{python_providers}"\n')
    return str(bin_dir)


def run_script(script: str, path: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run([shutil.which("bash"), str(ROOT / "scripts" / script), *args], env=environment,
                          capture_output=True, text=True, timeout=60)


def decision(result: subprocess.CompletedProcess) -> dict[str, list[str]]:
    assert result.returncode == 0, result.stderr
    fields: dict[str, list[str]] = {}
    for line in result.stdout.splitlines()[1:]:
        match = re.match(r"^\s+(\w[\w-]*)\s+(.*)$", line)
        if match:
            fields.setdefault(match.group(1), []).append(match.group(2))
    return fields


def startup(tmp_path: Path, *args: str, **machine) -> dict[str, list[str]]:
    return decision(run_script("startup.sh", make_path(tmp_path, **machine), "--dry-run", *args))


def test_plain_cpu_without_docker_runs_locally_exactly_as_before(tmp_path):
    d = startup(tmp_path)
    assert d["hardware"] == ["cpu (Linux x86_64)"]
    assert d["mode"] == ["local"] and d["onnxruntime"] == ["onnxruntime"]
    assert d["command"] == ["scripts/setup.sh", ".venv/bin/python -m streamlit run app.py"]
    assert "Docker is not installed" in d["reason"][0]


def test_extra_arguments_go_to_streamlit(tmp_path):
    d = startup(tmp_path, "--server.port", "8502", "--theme.base=dark")
    assert d["command"][-1] == ".venv/bin/python -m streamlit run app.py --server.port 8502 --theme.base=dark"


@pytest.mark.parametrize(
    ("machine", "mode", "profile", "ort", "reason"),
    [
        (dict(docker="down"), "local", "-", "onnxruntime", "no Docker engine answers"),
        (dict(docker="no-compose"), "local", "-", "onnxruntime", "compose plugin is missing"),
        (dict(docker="plain"), "docker", "cpu", "(inside the image: onnxruntime)", "Docker engine and compose are usable"),
        (dict(gpu=H100, docker="nvidia"), "docker", "gpu", "(inside the image: onnxruntime-gpu)", "CUDA image"),
        (dict(gpu=H100, docker="plain"), "local", "-", "onnxruntime-gpu", "no NVIDIA runtime"),
        (dict(gpu=H100), "local", "-", "onnxruntime-gpu", "Docker is not installed"),
        (dict(gpu=H100, gpu_broken=True, docker="plain"), "docker", "cpu", "(inside the image: onnxruntime)", "usable"),
        (dict(arch="aarch64", gpu=GB10), "local", "-", "onnxruntime-gpu (PyPI aarch64; CUDA 13 feed fallback)", "not installed"),
        (dict(arch="aarch64", gpu=GB10, docker="nvidia"), "docker", "gpu", "(inside the image: onnxruntime-gpu)", "CUDA"),
        (dict(arch="aarch64"), "local", "-", "onnxruntime", "Docker is not installed"),
        (dict(os_name="Darwin", arch="arm64", docker="plain"), "local", "-", "onnxruntime", "Apple Silicon"),
        (dict(os_name="Darwin", arch="x86_64", docker="plain"), "docker", "cpu", "(inside the image: onnxruntime)", "usable"),
    ],
    ids=["docker-down", "no-compose", "cpu-docker", "nvidia-docker", "nvidia-no-toolkit", "nvidia-no-docker",
         "broken-driver", "spark-local", "spark-docker", "arm64-cpu", "apple-silicon", "intel-mac"],
)
def test_decisions(tmp_path, machine, mode, profile, ort, reason):
    d = startup(tmp_path, **machine)
    assert d["mode"] == [mode] and d["profile"] == [profile] and d["onnxruntime"] == [ort]
    assert reason in d["reason"][0]
    if mode == "docker":
        assert d["command"] == [f"docker compose -f docker/docker-compose.yml --profile {profile} up --build"]
    elif ort.startswith("onnxruntime-gpu"):
        assert d["command"][1] == "scripts/install-onnxruntime-gpu.sh --python .venv/bin/python --with-cuda-libs"
    else:
        assert d["command"][0] == "scripts/setup.sh" and len(d["command"]) == 2


def test_hardware_line_names_the_gpu(tmp_path):
    d = startup(tmp_path, arch="aarch64", gpu=GB10)
    assert d["hardware"] == ["arm64-cuda (Linux aarch64; GPU: NVIDIA GB10 x1)"]


def test_local_and_docker_can_be_forced(tmp_path):
    forced_local = startup(tmp_path / "a", "--local", gpu=H100, docker="nvidia")
    assert forced_local["mode"] == ["local"] and forced_local["reason"] == ["--local was given"]
    forced_docker = startup(tmp_path / "b", "--docker", gpu=H100, docker="plain")
    assert forced_docker["mode"] == ["docker"] and forced_docker["profile"] == ["cpu"]
    assert "no NVIDIA container runtime" in forced_docker["reason"][0]


def test_forcing_docker_without_an_engine_fails_clearly(tmp_path):
    result = run_script("startup.sh", make_path(tmp_path, docker="down"), "--dry-run", "--docker")
    assert result.returncode == 1
    assert "--docker was given, but no Docker engine answers" in result.stderr


@pytest.mark.parametrize(
    ("machine", "providers", "variants", "warning"),
    [
        (dict(), "cpu", "fp32,int8", False),
        (dict(gpu=H100, python_providers="CUDAExecutionProvider CPUExecutionProvider"), "cuda,cpu", "fp32,fp16,int8", False),
        (dict(gpu=GB10, arch="aarch64", python_providers="CPUExecutionProvider"), "cpu", "fp32,int8", True),
    ],
    ids=["cpu", "nvidia-with-cuda-ort", "spark-with-cpu-ort"],
)
def test_benchmark_defaults_follow_the_hardware(tmp_path, machine, providers, variants, warning):
    path = make_path(tmp_path, **machine)
    env = {"STUDIO_PYTHON": str(Path(path) / "python")} if "python_providers" in machine else {}
    result = run_script("benchmark.sh", path, "--dry-run", "--texts", "64", STUDIO_DATA_DIR="/srv/studio", **env)
    plan = decision(result)
    command = plan["command"][0]
    assert f"--providers {providers} --variants {variants}" in command and "--baseline" in command
    assert command.endswith("--texts 64")  # extra arguments come last, so they win
    assert plan["report"] == ["/srv/studio/reports/bench"]
    assert ("no CUDA provider" in result.stderr) == warning
