"""Run the converter in its own process, so torch never loads into the app or the server.

The converter prints JSON-line progress events; they are relayed to a callback (the UI's progress
bar, the CLI's progress line) and its final result or error is returned or raised.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConversionError, InputError
from engine.httpauth import mask_url, mask_urls
from engine.manifest import VARIANTS
from engine.progress import StepProgress
from engine.registry import NAME_PATTERN, Registry
from engine.settings import REPO_ROOT, get_settings
from engine.textcheck import clip

log = logging.getLogger(__name__)
CONVERTER = REPO_ROOT / "converter" / "convert.py"


@dataclass(frozen=True)
class ConversionRequest:
    source: str  # hub id, local folder or pypi:<package>
    name: str
    variants: tuple[str, ...]
    trust_remote_code: bool = False
    force: bool = False
    requested: str = ""  # what the user asked for (a registry name or a hub id): what a converter service gets


def plan(registry: Registry, model: str, name: str | None = None, variants: tuple[str, ...] | None = None,
         trust_remote_code: bool = False, force: bool = False) -> ConversionRequest:
    """A registry name converts from its offline source (if any) or hub id; anything else is a
    hub id or a local folder converted under ``name`` (default: its last path part, lower-cased)."""
    names = set(registry.names())
    if name is not None:  # it names the folder under models/ (and with force the one replaced): never "../"
        _check_name(name)
    if model in names:
        spec = registry.get(model)
        if spec.curated:
            return ConversionRequest(spec.conversion_source, name or spec.name, variants or spec.variants,
                                     trust_remote_code or spec.trust_remote_code, force, requested=model)
        model = spec.hf_id
    if "/" not in model and not Path(model).expanduser().is_dir() and not model.startswith("pypi:"):
        raise InputError(
            f"Unknown model {model!r}: not in the registry ({', '.join(sorted(names))}), not a hub id, not a folder.",
            "give a registry name, a Hugging Face id like BAAI/bge-small-en-v1.5, or a local folder",
        )
    default = model.split(":", 1)[-1].rstrip("/").split("/")[-1].lower()
    target = name or "".join(c if c.isalnum() or c in "._-" else "-" for c in default)[:64]
    _check_name(target)
    return ConversionRequest(model, target, variants or VARIANTS, trust_remote_code, force, requested=model)


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise InputError(f"{clip(name, 80)} is not a valid model name.",
                         "pass --name with lower-case letters, digits, '.', '_', '-' (starting with a letter or digit)")


# --- the converter's command line and its progress-line protocol (convert.py --progress-jsonl) -----
# Every stdout line that is a JSON object with an "event" key is an event: PROGRESS (step, fraction),
# then one RESULT (the summary) or one ERROR (error, message, hint). Other lines are plain log.
PROGRESS, RESULT, ERROR = "progress", "result", "error"


def converter_command(request: ConversionRequest, models_dir: Path, python: str = sys.executable) -> list[str]:
    """The command line that runs converter/convert.py for ``request``, writing into ``models_dir``."""
    command = [python, str(CONVERTER), request.source, "--out", str(Path(models_dir) / request.name),
               "--name", request.name, "--variants", ",".join(request.variants), "--progress-jsonl"]
    if request.trust_remote_code:
        command.append("--trust-remote-code")
    if request.force:
        command.append("--force")
    return command


def event_line(kind: str, **fields: object) -> str:
    """One protocol line (what convert.py prints)."""
    return json.dumps({"event": kind, **fields})


def parse_event(line: str) -> dict | None:
    """The event a converter output line carries, or None for a plain log line."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and event.get("event") in (PROGRESS, RESULT, ERROR) else None


def converter_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "optimum", "sentence_transformers"))


def run(request: ConversionRequest, models_dir: Path, progress: StepProgress | None = None,
        timeout: float | None = None, converter_url: str | None = None) -> dict:
    """Convert in a subprocess, or through the converter service when ``converter_url`` (default:
    STUDIO_CONVERTER_URL) is set; returns the converter's JSON summary."""
    url = converter_url if converter_url is not None else get_settings().converter_url
    if url:
        return run_remote(url, request, progress, timeout)
    if not converter_installed():
        raise ConversionError(
            "The converter's dependencies (torch, optimum, sentence-transformers) are not installed here.",
            "pip install -r converter/requirements.txt, or run the converter service (docker compose --profile converter) "
            "and set STUDIO_CONVERTER_URL",
        )
    command = converter_command(request, models_dir)
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
            event = parse_event(line)
            if event is None:
                continue
            if event["event"] == PROGRESS and progress is not None:
                progress(event.get("step", ""), float(event.get("fraction", 0.0)))
            elif event["event"] == RESULT:
                result = event
            elif event["event"] == ERROR:
                error = event
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise ConversionError(f"Converting {request.source} took longer than {timeout:.0f}s and was stopped.",
                              "convert fewer variants at a time, e.g. --variants fp32") from None
    except BaseException:  # the caller stopped (Ctrl-C, a Streamlit rerun): do not leave the converter running
        process.kill()
        process.wait()
        raise
    reader.join(timeout=5)
    if error is not None:
        raise ConversionError(error.get("message", "conversion failed"), error.get("hint", ""))
    if process.returncode != 0 or result is None:
        tail = " | ".join(list(stderr_tail)[-3:])
        raise ConversionError(f"The converter exited with status {process.returncode}: {tail[:500]}",
                              f"python -m engine convert {request.requested or request.source} -v shows the converter's log")
    result.pop("event", None)
    return result


TERMINAL = {"succeeded", "failed", "cancelled"}


def run_remote(url: str, request: ConversionRequest, progress: StepProgress | None = None,
               timeout: float | None = None, poll_seconds: float = 0.5) -> dict:
    """Convert through the converter service (converter/server.py): submit a job, relay its progress."""
    import httpx

    token = os.environ.get("STUDIO_CONVERTER_TOKEN") or os.environ.get("API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"model": request.requested or request.source, "name": request.name, "variants": list(request.variants),
            "trust_remote_code": request.trust_remote_code, "force": request.force}
    deadline = time.monotonic() + timeout if timeout else None
    try:
        with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30) as client:
            answer = client.post("/v1/jobs", json=body)
            if answer.status_code >= 400:
                raise _service_error(answer)
            job = answer.json()
            try:
                while job["status"] not in TERMINAL:
                    if deadline is not None and time.monotonic() > deadline:
                        raise ConversionError(f"Converting {request.requested} took longer than {timeout:.0f}s.",
                                              "convert fewer variants at a time, e.g. --variants fp32")
                    time.sleep(poll_seconds)
                    job = client.get(f"/v1/jobs/{job['id']}").json()
                    if progress is not None:
                        progress(job.get("step", ""), float(job.get("progress", 0.0)))
            except BaseException:  # the caller stopped: cancel the job on the service too
                if job.get("status") not in TERMINAL:
                    client.delete(f"/v1/jobs/{job['id']}")
                raise
    except httpx.HTTPError as exc:
        raise ConversionError(f"The converter service at {mask_url(url)} cannot be reached: {mask_urls(str(exc))}",
                              "start it (docker compose --profile converter up) or unset STUDIO_CONVERTER_URL") from None
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        raise ConversionError(error.get("message") or f"The conversion was {job['status']}.", error.get("hint", ""))
    return job["result"]


def _service_error(answer) -> ConversionError:
    try:
        error = answer.json().get("error", {})
    except ValueError:
        error = {}
    message = error.get("message") if isinstance(error, dict) else None
    hint = error.get("hint", "") if isinstance(error, dict) else ""
    return ConversionError(message or f"The converter service answered {answer.status_code}: {answer.text[:200]}", hint)
