"""OCR with a vision-language model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint.

One client covers both GPU paths of DeepSeek-OCR and HunyuanOCR: a vLLM server, or our own
transformers server (``python -m engine.ocr.vlm_server``), which takes the same request shape.
Each model brings its own recipe (prompt, system message, decoding settings from its published
vLLM recipe); the client adds a max-token cap and, on the way back, strips grounding tags and
cuts a looping tail. A page that hit the cap or looped is marked degraded.

Where to send requests: ``STUDIO_<MODEL>_URL`` when set. Otherwise, when a GPU is present (or
``STUDIO_<MODEL>_DEVICE=cpu`` is set explicitly), the back-end starts the transformers server in a
subprocess on 127.0.0.1 on first use and reuses it. That subprocess runs in the VLM environment
(``.venv-vlm``, transformers 5; engine.ocr.vlm_env creates it on first use): torch never loads in
this process, and the converter's transformers 4.57 is never asked to run these models.
"""

from __future__ import annotations

import atexit
import base64
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import OCRAuthError, OCRRateLimitError, OCRServiceError, OCRUnavailableError
from engine.httpauth import mask_url
from engine.log import redact
from engine.ocr import vlm_env
from engine.ocr.base import Availability, OCRBackend, OCRText, PageImage
from engine.settings import build

log = logging.getLogger(__name__)


# --- settings -------------------------------------------------------------------------------------
class VLMSettings(BaseSettings):
    """Per-model settings; subclasses set the env prefix (``STUDIO_DEEPSEEK_OCR_``, ...) and model."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    url: str | None = None  # OpenAI-compatible server (vLLM or engine.ocr.vlm_server); None: start one locally
    model: str = ""  # model id the server serves (what requests name)
    weights: str | None = None  # what the local server loads (hub id or folder); default: the recipe's for `model`
    revision: str | None = None  # hub commit the local server loads; default: the recipe's pin for `model`
    api_key: SecretStr | None = None  # vLLM --api-key, if the server was started with one
    prompt: str | None = None  # overrides the recipe's prompt
    max_tokens: int | None = Field(None, ge=1)  # overrides STUDIO_OCR_MAX_TOKENS and the recipe default
    timeout_s: float = 600.0  # one page; the transformers path is slow (HunyuanOCR: 40-200 s per image)
    connect_timeout_s: float = 5.0
    probe_timeout_s: float = 2.0  # availability(): GET /v1/models
    # local transformers server (used only when url is not set)
    device: str = "cuda"
    dtype: str = "auto"  # bfloat16 on a GPU, float32 on a CPU
    trust_remote_code: bool = False  # DeepSeek-OCR is hub remote code: running it is an explicit choice
    start_timeout_s: float = 900.0  # model download + load


class SharedOCRSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIO_OCR_", extra="ignore", frozen=True)

    max_tokens: int | None = Field(None, ge=1)  # STUDIO_OCR_MAX_TOKENS: the cap for every VLM back-end


def load_vlm_settings(settings_class: type[BaseSettings], **overrides: Any) -> Any:
    return build(settings_class, "OCR settings", **overrides)


# --- recipes --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChatRecipe:
    """How one model wants to be asked: from its published vLLM recipe (notes: ocr-backends §2-§3)."""

    engine: str  # back-end name
    label: str  # for messages: "DeepSeek-OCR"
    prompt: str
    system_message: str | None  # None: no system message; "": an empty one (HunyuanOCR)
    decoding: Mapping[str, Any]  # top-level request fields: temperature, top_k, vllm_xargs, ...
    default_max_tokens: int
    serve_hint: str  # how to start a server for this model
    # the local transformers server: hub id -> (weights it loads natively, pinned revision or None)
    local_weights: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)


def build_chat_request(recipe: ChatRecipe, model: str, image: PageImage, max_tokens: int, prompt: str | None = None) -> dict:
    """The JSON body of one page's request: the image as a base64 data URI, then the prompt."""
    data_uri = "data:image/png;base64," + base64.b64encode(image.png).decode("ascii")
    messages: list[dict] = []
    if recipe.system_message is not None:
        messages.append({"role": "system", "content": recipe.system_message})
    messages.append({
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": data_uri}},
            {"type": "text", "text": prompt if prompt is not None else recipe.prompt},
        ],
    })
    return {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": False, **dict(recipe.decoding)}


# --- output cleaning (pure) -----------------------------------------------------------------------
# DeepSeek-OCR's grounding output: <|ref|>LABEL<|/ref|><|det|>[[x1,y1,x2,y2]]<|/det|> before each
# block. In document mode LABEL is the block type (dropped, as the official scripts do); in
# "OCR this image" grounding mode it is the recognised text itself (kept).
LAYOUT_LABELS = frozenset({
    "title", "sub_title", "subtitle", "text", "image", "image_caption", "figure", "figure_caption", "table",
    "table_caption", "table_footnote", "equation", "formula", "header", "footer", "page_header", "page_footer",
    "page_number", "list", "list_item", "code", "caption", "footnote", "reference", "abstract", "author", "algorithm",
})
_GROUNDED = re.compile(r"<\|ref\|>(.*?)<\|/ref\|>\s*<\|det\|>.*?<\|/det\|>(\n?)", re.S)
_DANGLING_TAG = re.compile(  # a tag the token cap cut off: "<|ref|>text<|/ref|><|det|>[[12, 4" or "<|ref|>te"
    r"(?:<\|ref\|>(?:(?!<\|/ref\|>).)*<\|/ref\|>\s*)?<\|det\|>(?:(?!<\|/det\|>).)*\Z|<\|ref\|>(?:(?!<\|/ref\|>).)*\Z", re.S
)
_STRAY_TOKEN = re.compile(r"<\|/?(?:ref|det|grounding)\|>|<｜[^｜\n]{1,40}｜>")  # incl. <｜end▁of▁sentence｜>
_BLANK_RUNS = re.compile(r"\n{3,}")


def strip_grounding(text: str) -> str:
    def replace(match: re.Match) -> str:
        label = match.group(1).strip()
        if label.lower() in LAYOUT_LABELS:
            return ""
        return label + match.group(2)

    text = _GROUNDED.sub(replace, text)
    text = _DANGLING_TAG.sub("", text)
    text = _STRAY_TOKEN.sub("", text)
    return _BLANK_RUNS.sub("\n\n", text).strip()


@dataclass(frozen=True)
class Loop:
    start: int  # offset of the first repetition in the text
    period: int  # characters per repetition
    repeats: float  # how many times it repeats (the last one may be partial)

    def unit(self, text: str) -> str:
        return text[self.start : self.start + self.period]


# A page that ended normally is cut only on a long, obvious loop (a legitimate tail such as a row
# of dashes must survive); a page that hit the token cap is already suspect.
STRICT = {"min_repeats": 20, "min_chars": 400}
LENIENT = {"min_repeats": 3, "min_chars": 30}


def find_looping_tail(text: str, *, min_repeats: int, min_chars: int, max_period: int = 500) -> Loop | None:
    """The shortest period p such that the text ends in >= min_repeats copies of a p-character unit
    covering >= min_chars. Works on a tail cut mid-unit by the cap (periodicity ignores rotation)."""
    n = len(text)
    for period in range(1, min(max_period, n // max(min_repeats, 1)) + 1):
        unit = text[n - period :]
        whole = 1
        while (whole + 1) * period <= n and text[n - (whole + 1) * period : n - whole * period] == unit:
            whole += 1
        start = n - whole * period
        while start > 0 and text[start - 1] == text[start - 1 + period]:
            start -= 1
        covered = n - start
        if covered / period >= min_repeats and covered >= min_chars:
            return Loop(start=start, period=period, repeats=covered / period)
    return None


def cut_looping_tail(text: str, capped: bool) -> tuple[str, Loop | None]:
    """Keep one copy of a looping tail; the thresholds depend on whether generation hit the cap."""
    loop = find_looping_tail(text, **(LENIENT if capped else STRICT))
    if loop is None:
        return text, None
    return text[: loop.start + loop.period].rstrip(), loop


@dataclass(frozen=True)
class CleanedText:
    text: str
    degraded: bool
    notes: tuple[str, ...] = ()


def clean_vlm_output(raw: str, finish_reason: str | None, max_tokens: int) -> CleanedText:
    """Grounding tags out, looping tail cut, degraded when the cap or the repetition guard tripped."""
    notes: list[str] = []
    capped = finish_reason == "length"
    if capped:
        notes.append(f"output hit the max-token cap ({max_tokens} tokens): the page may be incomplete")
    stripped = strip_grounding(raw)
    text, loop = cut_looping_tail(stripped, capped)
    if loop is not None:
        sample = loop.unit(stripped)[:40].replace("\n", "\\n")
        notes.append(f"repetition loop cut: a {loop.period}-character unit repeated {loop.repeats:.0f} times ('{sample}')")
    return CleanedText(text=text, degraded=capped or loop is not None, notes=tuple(notes))


# --- HTTP -----------------------------------------------------------------------------------------
def normalise_base_url(url: str) -> str:
    """Accept ``http://host:8000``, ``http://host:8000/`` or ``http://host:8000/v1``."""
    url = url.strip().rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _error_detail(response: httpx.Response) -> str:
    """The server's own error message (vLLM/OpenAI: {"error": {"message": ...}} or {"message": ...})."""
    try:
        body = response.json()
    except ValueError:
        return redact(response.text.strip()[:300])
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return redact(str(error["message"])[:300])
        if isinstance(error, str):
            return redact(error[:300])
        if body.get("message"):
            return redact(str(body["message"])[:300])
        if body.get("detail"):
            return redact(str(body["detail"])[:300])
    return redact(str(body)[:300])


def served_models(base_url: str, timeout: float, api_key: str | None = None) -> list[str]:
    """GET /v1/models: the ids the server serves. Raises httpx errors as they come."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(f"{base_url}/v1/models", timeout=timeout, headers=headers)
    response.raise_for_status()
    return [str(item.get("id")) for item in response.json().get("data", []) if isinstance(item, dict)]


@dataclass(frozen=True)
class ChatResult:
    content: str
    finish_reason: str | None
    completion_tokens: int | None


def parse_chat_response(body: Any) -> ChatResult:
    try:
        choice = body["choices"][0]
        content = choice["message"].get("content") or ""
        usage = body.get("usage") or {}
        return ChatResult(str(content), choice.get("finish_reason"), usage.get("completion_tokens"))
    except (KeyError, IndexError, TypeError, AttributeError):
        raise OCRServiceError(
            "The OCR server's answer is not a chat completion", "check that the URL points at an OpenAI-compatible server"
        ) from None


# --- the local transformers server ----------------------------------------------------------------
def gpu_present() -> bool:
    """An NVIDIA driver on this machine (without importing torch)."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


@dataclass
class LocalServer:
    """One ``engine.ocr.vlm_server`` subprocess, started on first use and stopped at exit.

    ``lock`` is held by the thread that starts it (others asking for the same server wait on it); ``stop``
    never takes it, so the child can be stopped from any thread while a start waits for readiness."""

    command: list[str]
    start_timeout_s: float
    process: subprocess.Popen | None = None
    base_url: str = ""
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="studio-vlm-")))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    retired: bool = False  # stopped for good (stop_local_servers, the exit): a start in progress gives up
    _state: threading.Lock = field(default_factory=threading.Lock, repr=False)  # process/retired, held briefly

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None and bool(self.base_url)

    def start(self) -> str:
        port_file = self.workdir / "port"
        port_file.unlink(missing_ok=True)
        with self._state:  # a retire() either sees this child or stops the start before it exists
            if self.retired:
                raise self._stopped_error()
            log.info("starting the local VLM server: %s", " ".join(self.command))
            with open(self.log_path, "ab") as sink:
                process = self.process = subprocess.Popen(
                    [*self.command, "--port-file", str(port_file)], stdout=sink, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, cwd=vlm_env.REPO_ROOT, env=server_environment(),
                )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.retired:
                raise self._stopped_error()
            if process.poll() is not None:
                if self.retired:  # terminated by retire() between the two checks
                    raise self._stopped_error()
                raise OCRServiceError(
                    f"The local VLM server exited while starting: {self.last_error()}",
                    f"full log: {self.log_path}; or point STUDIO_*_URL at a running vLLM server",
                )
            if port_file.exists() and port_file.read_text().strip():
                base_url = f"http://127.0.0.1:{int(port_file.read_text().strip())}"
                try:
                    served_models(base_url, timeout=2.0)
                    self.base_url = base_url
                    return self.base_url
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        self.stop()
        raise OCRServiceError(
            f"The local VLM server did not become ready within {self.start_timeout_s:.0f} s",
            f"raise STUDIO_*_START_TIMEOUT_S (a first start downloads the model); log: {self.log_path}",
        )

    def _stopped_error(self) -> OCRServiceError:
        return OCRServiceError("The local VLM server was stopped while starting (the process is shutting down)",
                               "run the OCR again")

    def last_error(self) -> str:
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "no log"
        errors = [line for line in lines if line.startswith("error:")]
        return redact((errors[-1][len("error:") :].strip() if errors else " | ".join(lines[-3:]))[:500]) or "no output"

    def retire(self) -> None:
        """Stop the child, and any start in progress, for good."""
        with self._state:
            self.retired = True
        self.stop()

    def stop(self) -> None:
        with self._state:
            process = self.process
            self.base_url = ""
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


_local_servers: dict[tuple, LocalServer] = {}
_local_lock = threading.Lock()  # guards _local_servers only; never held while a server starts
_exiting = False


def stop_local_servers() -> None:
    """Stop every local server this process started, including one still starting (without waiting for it)."""
    with _local_lock:
        servers = list(_local_servers.values())
        _local_servers.clear()
    for server in servers:
        server.retire()


@atexit.register
def _stop_at_exit() -> None:
    global _exiting
    with _local_lock:
        _exiting = True  # a worker thread that asks for a server from now on gets none (its child would outlive us)
    stop_local_servers()


def server_environment() -> dict[str, str]:
    """The server imports ``engine`` from this checkout, whatever interpreter runs it."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(vlm_env.REPO_ROOT), path) if p)}


def local_server_command(settings: VLMSettings, recipe: ChatRecipe, python: str) -> list[str]:
    weights, revision = recipe.local_weights.get(settings.model, (settings.model, None))
    weights, revision = settings.weights or weights, settings.revision or revision
    command = [python, "-m", "engine.ocr.vlm_server", "--model", weights, "--served-model-name", settings.model,
               "--host", "127.0.0.1", "--port", "0", "--device", settings.device, "--dtype", settings.dtype]
    if revision:
        command += ["--revision", revision]
    if settings.trust_remote_code:
        command.append("--trust-remote-code")
    return command


def local_server_url(settings: VLMSettings, recipe: ChatRecipe) -> str:
    """The base URL of a running local server for these settings (started if needed, then shared)."""
    command = local_server_command(settings, recipe, str(vlm_env.ensure()))  # ensure() has its own file lock
    key = tuple(command)
    with _local_lock:
        if _exiting:
            raise OCRUnavailableError("The local VLM server cannot start: the process is shutting down",
                                      "run the OCR again once the studio has restarted")
        server = _local_servers.get(key)
        if server is None:
            server = _local_servers[key] = LocalServer(command=command, start_timeout_s=settings.start_timeout_s)
    with server.lock:  # one starter per server; the global lock stays free for the others and for the exit
        if not server.running():
            server.start()
        return server.base_url


# --- the back-end ---------------------------------------------------------------------------------
class VLMBackend(OCRBackend):
    """An OCR back-end for one vision-language model; subclasses set ``name``, ``recipe``, ``settings_class``."""

    local: ClassVar[bool] = False
    recipe: ClassVar[ChatRecipe]
    settings_class: ClassVar[type[VLMSettings]]

    def __init__(self, settings: VLMSettings | None = None, **overrides: Any) -> None:
        """``overrides``: settings fields by name (``url="http://gpu:8000"``, ``max_tokens=4096``)."""
        unknown = set(overrides) - set(self.settings_class.model_fields)
        if unknown:
            raise TypeError(f"unknown {self.name} option(s): {', '.join(sorted(unknown))}")
        self.settings = settings or load_vlm_settings(self.settings_class, **overrides)
        self._client: httpx.Client | None = None

    # configuration
    @property
    def env_prefix(self) -> str:
        return str(self.settings_class.model_config.get("env_prefix", ""))

    @property
    def max_tokens(self) -> int:
        shared = load_vlm_settings(SharedOCRSettings).max_tokens
        return self.settings.max_tokens or shared or self.recipe.default_max_tokens

    def _api_key(self) -> str | None:
        return self.settings.api_key.get_secret_value() if self.settings.api_key else None

    def local_problem(self) -> tuple[str, str] | None:
        """Why the local transformers path cannot run here (reason, hint), or None. No model loading."""
        s = self.settings
        environment = vlm_env.problem()
        if environment is not None:
            return environment
        if s.device.startswith("cuda") and not gpu_present():
            return ("no NVIDIA GPU was found for the local transformers path",
                    f"or, for a small model, {self.env_prefix}DEVICE=cpu (slow)")
        return None

    def _endpoint(self) -> str:
        if self.settings.url:
            return normalise_base_url(self.settings.url)
        problem = self.local_problem()
        if problem is not None:
            raise OCRUnavailableError(f"{self.recipe.label}: no server configured and {problem[0]}", self._setup_hint(problem[1]))
        return local_server_url(self.settings, self.recipe)

    def _setup_hint(self, extra: str = "") -> str:
        hint = f"set {self.env_prefix}URL to an OpenAI-compatible server, e.g. {self.recipe.serve_hint}"
        return f"{hint}; {extra}" if extra else hint

    # interface
    def availability(self) -> Availability:
        if not self.settings.url:
            problem = self.local_problem()
            if problem is not None:
                return Availability(self.name, False, f"no server configured ({self.env_prefix}URL) and {problem[0]}",
                                    self._setup_hint(problem[1]))
            weights = self.settings.weights or self.recipe.local_weights.get(self.settings.model, (self.settings.model,))[0]
            note = f"{weights} will run locally with transformers on {self.settings.device} (in the VLM environment)"
            return Availability(self.name, True, "", note)
        base = normalise_base_url(self.settings.url)
        try:
            models = served_models(base, timeout=self.settings.probe_timeout_s, api_key=self._api_key())
        except httpx.HTTPStatusError as exc:
            return Availability(self.name, False, f"the server at {mask_url(base)} answered HTTP {exc.response.status_code}",
                                f"check {self.env_prefix}URL and {self.env_prefix}API_KEY")
        except (httpx.HTTPError, ValueError) as exc:
            return Availability(self.name, False, f"no answer from {mask_url(base)} within {self.settings.probe_timeout_s:g} s "
                                f"({type(exc).__name__})", self._setup_hint())
        if models and self.settings.model not in models:
            return Availability(self.name, False, f"the server at {mask_url(base)} serves {', '.join(models)}, "
                                f"not {self.settings.model}",
                                f"set {self.env_prefix}MODEL={models[0]}")
        return Availability(self.name, True)

    def recognize(self, image: PageImage) -> OCRText:
        started = time.perf_counter()
        base = self._endpoint()
        max_tokens = self.max_tokens
        body = build_chat_request(self.recipe, self.settings.model, image, max_tokens, self.settings.prompt)
        response = self._post(base, body)
        result = parse_chat_response(response)
        cleaned = clean_vlm_output(result.content, result.finish_reason, max_tokens)
        seconds = time.perf_counter() - started
        if cleaned.degraded:
            log.warning("%s page %d degraded: %s", self.name, image.number, "; ".join(cleaned.notes))
        log.debug("%s page %d: %d chars, %s tokens in %.1f s", self.name, image.number, len(cleaned.text),
                  result.completion_tokens, seconds)
        return OCRText(text=cleaned.text, seconds=seconds, degraded=cleaned.degraded, notes=cleaned.notes)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # transport
    def _http(self) -> httpx.Client:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self._api_key()}"} if self._api_key() else {}
            timeout = httpx.Timeout(self.settings.timeout_s, connect=self.settings.connect_timeout_s)
            self._client = httpx.Client(timeout=timeout, headers=headers)
        return self._client

    def _post(self, base: str, body: dict) -> Any:
        label, url = self.recipe.label, f"{base}/v1/chat/completions"
        try:
            response = self._http().post(url, json=body)
        except httpx.TimeoutException:
            raise OCRServiceError(
                f"The {label} server at {mask_url(base)} did not answer within {self.settings.timeout_s:g} s",
                f"raise {self.env_prefix}TIMEOUT_S, or check the server's load",
            ) from None
        except httpx.HTTPError as exc:
            raise OCRServiceError(f"Cannot reach the {label} server at {mask_url(base)} ({type(exc).__name__})",
                                  f"is it running? start one with: {self.recipe.serve_hint}; "
                                  f"or check {self.env_prefix}URL") from None
        if response.status_code == 200:
            try:
                return response.json()
            except ValueError:
                raise OCRServiceError(f"The {label} server at {mask_url(base)} sent a body that is not JSON",
                                      "check the URL") from None
        detail, status = _error_detail(response), response.status_code
        if status in (401, 403):
            raise OCRAuthError(f"The {label} server rejected the request (HTTP {status}): {detail}",
                               f"set {self.env_prefix}API_KEY to the server's --api-key")
        if status == 404:
            raise OCRServiceError(f"The {label} server has no model {self.settings.model!r} (HTTP 404): {detail}",
                                  f"set {self.env_prefix}MODEL to a model the server lists at {mask_url(base)}/v1/models")
        if status == 429:
            raise OCRRateLimitError(f"The {label} server is overloaded (HTTP 429): {detail}",
                                    "retry later or lower the concurrency")
        if status == 400 and "context" in detail.lower():
            raise OCRServiceError(f"The {label} server refused the request: {detail}",
                                  "lower STUDIO_OCR_MAX_TOKENS, or start the server with a larger --max-model-len")
        raise OCRServiceError(f"The {label} server failed (HTTP {status}): {detail}", "see the server's log")
