"""Hugging Face hub client: search sentence-similarity models, read model info, download the
files a conversion needs into the standard HF cache.

Offline-aware: ``HF_HUB_OFFLINE=1`` or an unreachable endpoint gives a clear HubOfflineError
within seconds (a TCP probe with a short timeout runs before any hub call), never a hang.
The endpoint is ``HF_ENDPOINT`` (default https://huggingface.co), which lets tests use a local hub.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from engine.errors import HubError, HubOfflineError, ModelNotFoundError

log = logging.getLogger(__name__)
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}\Z")
_probe_cache: dict[str, tuple[float, bool]] = {}
_PROBE_TTL = 30.0

# what a conversion reads: configs, tokenizer, sentence-transformers modules, weights
CONVERSION_PATTERNS = (
    "*.json", "*.txt", "*.model", "tokenizer*", "spiece*", "sentencepiece*", "merges.txt", "vocab*",
    "1_Pooling/*", "2_Dense*/*", "3_Dense*/*", "*_Normalize/*",
)


@dataclass(frozen=True)
class HubModel:
    id: str
    downloads: int
    likes: int
    pipeline_tag: str | None
    library: str | None
    last_modified: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class HubModelInfo:
    id: str
    sha: str
    pipeline_tag: str | None
    library: str | None
    tags: tuple[str, ...]
    gated: bool
    files: tuple[str, ...]
    custom_code: bool

    @property
    def is_sentence_transformers(self) -> bool:
        return "modules.json" in self.files or "sentence-transformers" in self.tags


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def is_offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def reachable(url: str | None = None, timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to the hub? Cached for a few seconds."""
    url = url or endpoint()
    now = time.monotonic()
    cached = _probe_cache.get(url)
    if cached and now - cached[0] < _PROBE_TTL:
        return cached[1]
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            ok = True
    except OSError:
        ok = False
    _probe_cache[url] = (now, ok)
    return ok


def ensure_online() -> None:
    if is_offline_mode():
        raise HubOfflineError(
            "The Hugging Face hub is switched off (HF_HUB_OFFLINE is set).",
            "unset HF_HUB_OFFLINE, or convert a local folder / the offline default model",
        )
    if not reachable():
        raise HubOfflineError(
            f"The Hugging Face hub ({endpoint()}) cannot be reached from this machine.",
            "check the network or proxy; offline, convert a local sentence-transformers folder instead",
        )


def validate_repo_id(repo_id: str) -> str:
    if not REPO_ID.match(repo_id or "") or ".." in repo_id:
        raise ModelNotFoundError(
            f"{repo_id!r} is not a Hugging Face model id.", "ids look like 'owner/name', e.g. BAAI/bge-small-en-v1.5"
        )
    return repo_id


def _api():
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint())


def _translate(exc: Exception, repo_id: str | None = None) -> Exception:
    import requests
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, hf_errors.GatedRepoError):
        return HubError(f"{repo_id} is gated: you must accept its licence on the hub.", "set HF_TOKEN after accepting")
    if isinstance(exc, (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError)):
        return ModelNotFoundError(f"The Hugging Face hub has no model {repo_id!r} (or it is private).",
                                  "check the id, or set HF_TOKEN for a private model")
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return HubOfflineError("The Hugging Face hub is switched off (HF_HUB_OFFLINE is set).", "unset HF_HUB_OFFLINE")
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, hf_errors.LocalEntryNotFoundError)):
        return HubOfflineError(f"The Hugging Face hub ({endpoint()}) did not answer.", "try again later or work offline")
    if isinstance(exc, hf_errors.HfHubHTTPError):
        return HubError(f"The Hugging Face hub answered with an error: {str(exc).splitlines()[0][:200]}",
                        "check the model id (and HF_TOKEN for a private or gated model), or try again later")
    return HubError(f"Hugging Face hub request failed: {type(exc).__name__}: {str(exc)[:200]}",
                    "try again later; python -m engine models lists the models already converted here")


def search_models(query: str = "", limit: int = 20, pipeline_tag: str = "sentence-similarity") -> list[HubModel]:
    """Models matching ``query``, most downloaded first."""
    ensure_online()
    try:
        found = _api().list_models(search=query or None, pipeline_tag=pipeline_tag, sort="downloads", limit=limit)
        results = [
            HubModel(
                id=m.id,
                downloads=int(m.downloads or 0),
                likes=int(m.likes or 0),
                pipeline_tag=m.pipeline_tag,
                library=m.library_name,
                last_modified=str(m.last_modified or m.created_at or ""),
                tags=tuple(m.tags or ()),
            )
            for m in found
        ]
    except Exception as exc:  # noqa: BLE001 - converted into the error tree
        raise _translate(exc) from None
    return results


def model_info(repo_id: str, revision: str | None = None) -> HubModelInfo:
    validate_repo_id(repo_id)
    ensure_online()
    try:
        info = _api().model_info(repo_id, revision=revision)
    except Exception as exc:  # noqa: BLE001
        raise _translate(exc, repo_id) from None
    files = tuple(s.rfilename for s in (info.siblings or ()))
    config = getattr(info, "config", None) or {}
    return HubModelInfo(
        id=info.id,
        sha=info.sha or "",
        pipeline_tag=info.pipeline_tag,
        library=info.library_name,
        tags=tuple(info.tags or ()),
        gated=bool(info.gated),
        files=files,
        custom_code="auto_map" in config or "custom_code" in (info.tags or ()),
    )


def conversion_files(files: tuple[str, ...], allow_code: bool = False) -> list[str]:
    """The subset of a repo's files a conversion needs (no ONNX/OpenVINO copies, one weight format)."""
    wanted = [f for f in files if any(fnmatch.fnmatch(f, p) for p in CONVERSION_PATTERNS)]
    skip_dirs = ("onnx/", "openvino/", "coreml/", "tflite/")
    wanted = [f for f in wanted if not f.startswith(skip_dirs)]
    safetensors = [f for f in files if f.endswith(".safetensors") and not f.startswith(skip_dirs)]
    weights = safetensors or [f for f in files if f.endswith(".bin") and not f.startswith(skip_dirs)]
    code = [f for f in files if f.endswith(".py")] if allow_code else []
    return sorted(set(wanted + weights + code))


def download(repo_id: str, revision: str | None = None, allow_code: bool = False) -> tuple[Path, str]:
    """Download what a conversion needs into the HF cache; returns (local folder, commit sha)."""
    from huggingface_hub import snapshot_download

    info = model_info(repo_id, revision)
    patterns = conversion_files(info.files, allow_code=allow_code)
    log.info("downloading %d files of %s@%s", len(patterns), repo_id, info.sha[:10])
    try:
        path = snapshot_download(
            repo_id, revision=info.sha or revision, allow_patterns=patterns, endpoint=endpoint(), etag_timeout=10
        )
    except Exception as exc:  # noqa: BLE001
        raise _translate(exc, repo_id) from None
    return Path(path), info.sha
