"""The separate Python environment the VLM OCR server runs in (``.venv-vlm``).

DeepSeek-OCR 2 (``deepseek_ocr2``) and HunyuanOCR (``hunyuan_vl``) are native only in transformers 5.x,
while the converter must keep transformers 4.57 (optimum-onnx pins it below 4.58). So the server
(``python -m engine.ocr.vlm_server``) runs in its own environment, built from ``requirements-vlm.txt``
by ``scripts/setup.sh --vlm``: torch 2.13.0 (the CPU build where no NVIDIA GPU is present) and a
pinned transformers 5. The engine never imports it; it only starts that interpreter.

Which interpreter: STUDIO_VLM_PYTHON when set (a Docker image with the requirements installed
system-wide), otherwise ``<repo>/.venv-vlm/bin/python``, created on first use when missing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from engine.errors import OCRUnavailableError
from engine.log import redact

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO_ROOT / "requirements-vlm.txt"
SETUP_SCRIPT = REPO_ROOT / "scripts" / "setup.sh"
DEFAULT_VENV = REPO_ROOT / ".venv-vlm"
STAMP = ".installed-vlm"  # setup.sh writes the sha256 of requirements-vlm.txt here once installed
SETUP_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class VLMEnvironment:
    python: Path
    managed: bool  # True: a .venv-vlm this project creates and updates; False: STUDIO_VLM_PYTHON

    @property
    def venv(self) -> Path:
        return self.python.parent.parent


def locate() -> VLMEnvironment:
    override = os.environ.get("STUDIO_VLM_PYTHON", "").strip()
    if override:
        return VLMEnvironment(Path(override), managed=False)
    venv = Path(os.environ.get("STUDIO_VLM_VENV", "").strip() or DEFAULT_VENV)
    return VLMEnvironment(venv / "bin" / "python", managed=True)


def requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest() if REQUIREMENTS.is_file() else ""


def is_ready(env: VLMEnvironment) -> bool:
    """The interpreter exists and (for a managed venv) was installed from the current requirements."""
    if not env.python.exists():
        return False
    if not env.managed:
        return True
    stamp = env.venv / STAMP
    return stamp.is_file() and stamp.read_text().strip() == requirements_digest()


def problem() -> tuple[str, str] | None:
    """Why the VLM environment can neither be used nor created here (reason, hint); None if it can."""
    env = locate()
    if is_ready(env):
        return None
    if not env.managed:
        return (f"STUDIO_VLM_PYTHON points at {env.python}, which does not exist",
                "install requirements-vlm.txt there, or unset STUDIO_VLM_PYTHON to let the studio create .venv-vlm")
    if not SETUP_SCRIPT.is_file() or not REQUIREMENTS.is_file():
        return ("the VLM environment (.venv-vlm) is missing and this installation has no scripts/setup.sh to create it",
                "set STUDIO_VLM_PYTHON to a Python with requirements-vlm.txt installed")
    return None


def ensure() -> Path:
    """The VLM server's interpreter, creating or updating ``.venv-vlm`` first if needed (minutes, once)."""
    env = locate()
    if is_ready(env):
        return env.python
    reason = problem()
    if reason is not None:
        raise OCRUnavailableError(f"The VLM OCR environment is not available: {reason[0]}", reason[1])
    import fcntl  # Unix only, like scripts/setup.sh; imported here so the engine still imports elsewhere

    env.venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = env.venv.parent / f".{env.venv.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one creator at a time (parallel test workers, two back-ends)
        if is_ready(env):
            return env.python
        log.info("creating the VLM OCR environment in %s (scripts/setup.sh --vlm); this takes a few minutes once", env.venv)
        run_env = {**os.environ, "STUDIO_VLM_VENV": str(env.venv)}
        try:
            done = subprocess.run(["bash", str(SETUP_SCRIPT), "--vlm"], cwd=REPO_ROOT, env=run_env, capture_output=True,
                                  text=True, timeout=SETUP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise OCRUnavailableError(f"Creating the VLM OCR environment took longer than {SETUP_TIMEOUT_S:.0f} s",
                                      "run scripts/setup.sh --vlm by hand and watch its output") from None
        if done.returncode != 0 or not is_ready(env):
            tail = " | ".join(line for line in (done.stderr or done.stdout).strip().splitlines()[-3:])
            raise OCRUnavailableError(f"Creating the VLM OCR environment failed: {redact(tail)[:400] or 'no output'}",
                                      "run scripts/setup.sh --vlm by hand to see the full output")
    return env.python
