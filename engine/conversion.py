"""Run the converter in its own process, so torch never loads into the app or the server.

The converter prints JSON-line progress events; they are relayed to a callback (the UI's progress
bar, the CLI's progress line) and its final result or error is returned or raised.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConversionError, InputError
from engine.manifest import VARIANTS
from engine.registry import NAME_PATTERN, Registry
from engine.settings import REPO_ROOT

log = logging.getLogger(__name__)
CONVERTER = REPO_ROOT / "converter" / "convert.py"
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class ConversionRequest:
    source: str  # hub id, local folder or pypi:<package>
    name: str
    variants: tuple[str, ...]
    trust_remote_code: bool = False
    force: bool = False


def plan(registry: Registry, model: str, name: str | None = None, variants: tuple[str, ...] | None = None,
         trust_remote_code: bool = False, force: bool = False) -> ConversionRequest:
    """A registry name converts from its offline source (if any) or hub id; anything else is a
    hub id or a local folder converted under ``name`` (default: its last path part, lower-cased)."""
    names = set(registry.names())
    if model in names:
        spec = registry.get(model)
        if spec.curated:
            return ConversionRequest(spec.conversion_source, name or spec.name, variants or spec.variants,
                                     trust_remote_code or spec.trust_remote_code, force)
        model = spec.hf_id
    if "/" not in model and not Path(model).expanduser().is_dir() and not model.startswith("pypi:"):
        raise InputError(
            f"Unknown model {model!r}: not in the registry ({', '.join(sorted(names))}), not a hub id, not a folder.",
            "give a registry name, a Hugging Face id like BAAI/bge-small-en-v1.5, or a local folder",
        )
    default = model.split(":", 1)[-1].rstrip("/").split("/")[-1].lower()
    target = name or "".join(c if c.isalnum() or c in "._-" else "-" for c in default)[:64]
    if not NAME_PATTERN.match(target):
        raise InputError(f"{target!r} is not a valid model name.", "pass --name with lower-case letters, digits, '.', '_', '-'")
    return ConversionRequest(model, target, variants or VARIANTS, trust_remote_code, force)


def converter_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "optimum", "sentence_transformers"))


def run(request: ConversionRequest, models_dir: Path, progress: Progress | None = None,
        timeout: float | None = None) -> dict:
    """Convert in a subprocess; returns the converter's JSON summary."""
    if not converter_installed():
        raise ConversionError(
            "The converter's dependencies (torch, optimum, sentence-transformers) are not installed here.",
            "pip install -r converter/requirements.txt, or use the converter container (docker compose --profile converter)",
        )
    command = [sys.executable, str(CONVERTER), request.source, "--out", str(Path(models_dir) / request.name),
               "--name", request.name, "--variants", ",".join(request.variants), "--progress-jsonl"]
    if request.trust_remote_code:
        command.append("--trust-remote-code")
    if request.force:
        command.append("--force")
    log.info("converting %s -> %s (%s)", request.source, request.name, ",".join(request.variants))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    stderr_tail: deque[str] = deque(maxlen=20)
    result: dict | None = None
    error: dict | None = None

    def drain() -> None:
        for line in process.stderr:  # type: ignore[union-attr]
            stderr_tail.append(line.rstrip())
            log.debug("converter: %s", line.rstrip())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        for line in process.stdout:  # type: ignore[union-attr]
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "progress" and progress is not None:
                progress(event.get("step", ""), float(event.get("fraction", 0.0)))
            elif event.get("event") == "result":
                result = event
            elif event.get("event") == "error":
                error = event
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise ConversionError(f"Converting {request.source} took longer than {timeout:.0f}s and was stopped.") from None
    except BaseException:  # the caller stopped (Ctrl-C, a Streamlit rerun): do not leave the converter running
        process.kill()
        process.wait()
        raise
    reader.join(timeout=5)
    if error is not None:
        raise ConversionError(error.get("message", "conversion failed"), error.get("hint", ""))
    if process.returncode != 0 or result is None:
        tail = " | ".join(list(stderr_tail)[-3:])
        raise ConversionError(f"The converter exited with status {process.returncode}: {tail[:500]}")
    result.pop("event", None)
    return result
