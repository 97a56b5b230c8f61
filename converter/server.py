#!/usr/bin/env python
"""The converter's HTTP API: queue Hugging Face -> ONNX conversion jobs and follow them.

    python converter/server.py --host 0.0.0.0 --port 8001 [--data-dir DIR]

Routes (JSON; every route but /health needs ``Authorization: Bearer $API_TOKEN`` when API_TOKEN is set,
the interactive documentation /docs, /redoc and /openapi.json included):
    GET    /health                   alive
    POST   /v1/jobs                  {"model", "name"?, "variants"?, "trust_remote_code"?, "force"?} -> 202 job
    GET    /v1/jobs                  all jobs, newest first
    GET    /v1/jobs/{id}             status, step, progress, result or error
    GET    /v1/jobs/{id}/log         ?offset=N: the job's log lines from line N on
    DELETE /v1/jobs/{id}             cancel a queued or running job
    GET    /v1/models                models in the shared models folder (converted state, variants, parity)

One job runs at a time; the others wait in a bounded queue. Each job runs ``converter/convert.py``
in its own process (torch stays out of this one, a crash or a timeout kills only that job) in an
empty working folder, so a model id can never be taken for a relative path. ``model`` is a
registry name, a Hugging Face repo id, or a local folder inside STUDIO_CONVERTER_ALLOWED_DIR;
``trust_remote_code`` is refused unless the model is on STUDIO_CONVERTER_REMOTE_CODE_ALLOWLIST.
Results land in ``<STUDIO_DATA_DIR>/models/<name>``, the folder the engine reads.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import Depends, FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError  # noqa: E402
from pydantic_settings import BaseSettings, SettingsConfigDict  # noqa: E402

from engine import conversion, hub  # noqa: E402
from engine.errors import (  # noqa: E402
    ConversionError,
    InputError,
    ModelNotFoundError,
    RemoteCodeRefusedError,
    StudioError,
)
from engine.httpauth import BEARER_HINT, authorized, error_body  # noqa: E402
from engine.manifest import MANIFEST_FILE, VARIANTS  # noqa: E402
from engine.registry import Registry  # noqa: E402
from engine.settings import Settings, load_settings  # noqa: E402

log = logging.getLogger("converter.server")
CONVERTER = Path(__file__).resolve().parent / "convert.py"
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
ACTIVE = frozenset({QUEUED, RUNNING})


class ConverterSettings(BaseSettings):
    """STUDIO_CONVERTER_* settings (plus API_TOKEN, shared with the main API)."""

    model_config = SettingsConfigDict(env_prefix="STUDIO_CONVERTER_", extra="ignore", frozen=True)

    allowed_dir: Path | None = Field(None, description="local model folders may be converted only from inside this one")
    remote_code_allowlist: str = Field("", description="comma list of model ids (or registry names, or folders) "
                                                       "whose own Python code may run")
    max_queue: int = Field(16, ge=1, description="jobs waiting at most; more are refused with 429")
    job_timeout_s: float = Field(3600.0, gt=0, description="a conversion running longer is stopped")
    log_lines: int = Field(2000, ge=10, description="log lines kept per job")
    keep_jobs: int = Field(200, ge=1, description="finished jobs remembered")
    api_token: SecretStr | None = Field(None, validation_alias=AliasChoices("API_TOKEN", "STUDIO_CONVERTER_API_TOKEN"))

    @property
    def allowlist(self) -> frozenset[str]:
        return frozenset(item.strip().lower() for item in self.remote_code_allowlist.split(",") if item.strip())


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=512, description="registry name, owner/name hub id, or local folder")
    name: str | None = Field(None, max_length=64, description="name in the studio (default: from the id)")
    variants: list[str] | None = Field(None, description=f"some of {', '.join(VARIANTS)} (default: the registry's, or all)")
    trust_remote_code: bool = False
    force: bool = Field(False, description="replace an existing model of that name")


class Rejection(Exception):
    """An HTTP status paired with a user-facing StudioError (the status is the route's choice, the error the engine's)."""

    def __init__(self, status: int, error: StudioError) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error


# --- validating what a client asks for (pure, apart from reading the filesystem for local paths) ----
def looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or "\\" in model


def validate_source(model: str, registry_names: set[str], allowed_dir: Path | None) -> tuple[str, str]:
    """(kind, model) for a registry name, a hub id or a local folder inside ``allowed_dir``; else a Rejection."""
    model = model.strip()
    if model in registry_names:
        return "registry", model
    if model.startswith("pypi:"):
        raise Rejection(400, InputError("Python-package sources are converted through their registry name only.",
                                        f"use one of: {', '.join(sorted(registry_names))}"))
    if looks_like_path(model):
        return "local", str(_allowed_folder(model, allowed_dir))
    if not hub.REPO_ID.match(model) or ".." in model:
        raise Rejection(400, InputError(
            f"{model!r} is neither a registry name, a Hugging Face model id, nor an absolute folder path.",
            "ids look like 'owner/name' (letters, digits, '-', '_', '.'), e.g. BAAI/bge-small-en-v1.5"))
    return "hub", model


def _allowed_folder(model: str, allowed_dir: Path | None) -> Path:
    if allowed_dir is None:
        raise Rejection(403, InputError("Converting local folders is switched off on this server.",
                                        "set STUDIO_CONVERTER_ALLOWED_DIR to the folder that holds your models"))
    raw = Path(model).expanduser()
    if not raw.is_absolute():
        raise Rejection(400, InputError(f"Local folders must be given as absolute paths (got {model!r}).",
                                        f"e.g. {allowed_dir}/my-model"))
    root = allowed_dir.expanduser().resolve()
    folder = raw.resolve()  # follows symlinks and '..': a link pointing outside is outside
    if folder != root and root not in folder.parents:
        raise Rejection(403, InputError(f"{model} is outside the folder this server may read ({root}).",
                                        "copy the model into STUDIO_CONVERTER_ALLOWED_DIR first"))
    if not folder.is_dir():
        raise Rejection(404, ModelNotFoundError(f"The folder {model} does not exist.", "check the path"))
    return folder


def remote_code_allowed(request: conversion.ConversionRequest, model: str, allowlist: frozenset[str]) -> bool:
    # never the target name: the client picks it, so it would let anyone borrow an allow-listed name
    candidates = {model.lower(), request.source.lower()}
    return bool(candidates & allowlist)


# --- jobs -------------------------------------------------------------------------------------------
@dataclass
class Job:
    """One conversion. Mutable by design: the worker updates it while clients read snapshots under the lock."""

    id: str
    model: str
    kind: str
    request: conversion.ConversionRequest
    created_at: float
    status: str = QUEUED
    step: str = "queued"
    progress: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    result: dict | None = None
    error: dict | None = None
    log: collections.deque = field(default_factory=collections.deque)
    dropped_lines: int = 0
    cancel_requested: bool = False
    process: subprocess.Popen | None = None

    def snapshot(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "model": self.model,
            "kind": self.kind,
            "source": self.request.source,
            "name": self.request.name,
            "variants": list(self.request.variants),
            "trust_remote_code": self.request.trust_remote_code,
            "force": self.request.force,
            "step": self.step,
            "progress": round(self.progress, 3),
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "seconds": round((self.finished_at or time.time()) - self.started_at, 2) if self.started_at else None,
            "result": self.result,
            "error": self.error,
            "log_lines": self.dropped_lines + len(self.log),
        }


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z"


class JobRunner:
    """A bounded FIFO of jobs and one worker thread that runs them one at a time, each in a subprocess."""

    def __init__(self, models_dir: Path, settings: ConverterSettings) -> None:
        self.models_dir = Path(models_dir)
        self.settings = settings
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="converter-jobs-"))

    # -- client side ---------------------------------------------------------------------------------
    def submit(self, model: str, kind: str, request: conversion.ConversionRequest) -> dict:
        with self._lock:
            waiting = sum(1 for job in self._jobs.values() if job.status == QUEUED)
            if waiting >= self.settings.max_queue:
                raise Rejection(429, ConversionError(f"{waiting} conversions are already waiting.", "try again later"))
            clash = next((j for j in self._jobs.values() if j.status in ACTIVE and j.request.name == request.name), None)
            if clash is not None:
                raise Rejection(409, ConversionError(f"Job {clash.id} is already converting into {request.name!r}.",
                                                     "wait for it, or pick another name"))
            job = Job(id=uuid.uuid4().hex[:16], model=model, kind=kind, request=request, created_at=time.time())
            job.log.append(f"queued: {request.source} -> {request.name} ({','.join(request.variants)})")
            self._jobs[job.id] = job
            self._forget_old_jobs()
            snapshot = job.snapshot()
        self._queue.put(job.id)
        log.info("job %s queued: %s -> %s", job.id, request.source, request.name)
        return snapshot

    def get(self, job_id: str) -> dict:
        with self._lock:
            return self._require(job_id).snapshot()

    def list(self) -> list[dict]:
        with self._lock:
            return [job.snapshot() for job in sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)]

    def log_lines(self, job_id: str, offset: int) -> dict:
        with self._lock:
            job = self._require(job_id)
            start = max(0, offset - job.dropped_lines)
            lines = list(job.log)[start:]
            return {"id": job.id, "status": job.status, "offset": job.dropped_lines + start,
                    "next_offset": job.dropped_lines + len(job.log), "lines": lines}

    def cancel(self, job_id: str) -> dict:
        with self._lock:
            job = self._require(job_id)
            if job.status == QUEUED:
                job.status, job.step, job.finished_at = CANCELLED, "cancelled before it started", time.time()
            elif job.status == RUNNING:
                job.cancel_requested = True
                if job.process is not None and job.process.poll() is None:
                    job.process.terminate()
            return job.snapshot()

    def _require(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise Rejection(404, InputError(f"There is no job {job_id!r}.", "GET /v1/jobs lists the jobs"))
        return job

    def _forget_old_jobs(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.status not in ACTIVE), key=lambda j: j.created_at)
        for job in finished[: max(0, len(finished) - self.settings.keep_jobs)]:
            del self._jobs[job.id]

    # -- worker side ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._worker = threading.Thread(target=self._work, name="converter-worker", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            for job in self._jobs.values():
                if job.status in ACTIVE:
                    job.cancel_requested = True
                    if job.process is not None and job.process.poll() is None:
                        job.process.terminate()
        self._queue.put(None)
        if self._worker is not None:
            self._worker.join(timeout)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._lock:
                job = self._jobs.get(job_id)
                if job is None or job.status != QUEUED:
                    continue  # cancelled (or forgotten) while waiting
                if job.cancel_requested:
                    job.status, job.finished_at = CANCELLED, time.time()
                    continue
                job.status, job.step, job.started_at = RUNNING, "starting the converter", time.time()
            try:
                self._run(job)
            except Exception as exc:  # noqa: BLE001 - a bug here must not kill the worker for every later job
                log.exception("job %s crashed", job.id)
                self._finish(job, FAILED, error={"error": "internal_error", "message": f"{type(exc).__name__}: {exc}",
                                                 "hint": "see the converter server's log"})

    def command(self, request: conversion.ConversionRequest) -> list[str]:
        command = [sys.executable, str(CONVERTER), request.source, "--out", str(self.models_dir / request.name),
                   "--name", request.name, "--variants", ",".join(request.variants), "--progress-jsonl"]
        if request.trust_remote_code:
            command.append("--trust-remote-code")
        if request.force:
            command.append("--force")
        return command

    def _run(self, job: Job) -> None:
        workdir = self._workdir / job.id  # empty: a hub id can never resolve to a relative folder here
        workdir.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(self.command(job.request), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, cwd=workdir, bufsize=1)
        with self._lock:
            job.process = process
            if job.cancel_requested:
                process.terminate()
        events: dict[str, dict] = {}
        stderr_reader = threading.Thread(target=self._drain, args=(job, process.stderr, None), daemon=True)
        stdout_reader = threading.Thread(target=self._drain, args=(job, process.stdout, events), daemon=True)
        stderr_reader.start()
        stdout_reader.start()
        try:
            process.wait(timeout=self.settings.job_timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            process.kill()
            process.wait()
        stdout_reader.join(10)
        stderr_reader.join(10)
        if process.returncode != 0:
            self._remove_leftovers(job, process.pid)
        if job.cancel_requested:
            self._finish(job, CANCELLED, step="cancelled while running")
        elif timed_out:
            self._finish(job, FAILED, error=ConversionError(
                f"The conversion took longer than {self.settings.job_timeout_s:.0f}s and was stopped.",
                "raise STUDIO_CONVERTER_JOB_TIMEOUT_S, or convert fewer variants").to_dict())
        elif "error" in events:
            error = {k: v for k, v in events["error"].items() if k != "event"}
            self._finish(job, FAILED, error=error)
        elif process.returncode == 0 and "result" in events:
            result = {k: v for k, v in events["result"].items() if k != "event"}
            self._finish(job, SUCCEEDED, result=result)
        else:
            tail = " | ".join(list(job.log)[-3:])
            self._finish(job, FAILED, error=ConversionError(
                f"The converter exited with status {process.returncode}: {tail[:500]}").to_dict())

    def _remove_leftovers(self, job: Job, pid: int) -> None:
        """A converter killed mid-way cannot clean up its staging folder (convert.py names it
        .<name>.partial-<pid> next to the target); the registry ignores it, the disk does not."""
        staging = self.models_dir / f".{job.request.name}.partial-{pid}"
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
            with self._lock:
                self._append(job, f"removed the unfinished {staging.name}")

    def _drain(self, job: Job, stream, events: dict[str, dict] | None) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            event = _event(line) if events is not None else None
            with self._lock:
                if event is None:
                    self._append(job, line)
                elif event.get("event") == "progress":
                    job.step, job.progress = str(event.get("step", "")), float(event.get("fraction", job.progress))
                    self._append(job, f"[{job.progress * 100:3.0f}%] {job.step}")
                elif event.get("event") in ("result", "error"):
                    events[event["event"]] = event
                    self._append(job, f"{event['event']}: {event.get('message') or event.get('out', '')}")

    def _append(self, job: Job, line: str) -> None:
        job.log.append(line)
        if len(job.log) > self.settings.log_lines:
            job.log.popleft()
            job.dropped_lines += 1

    def _finish(self, job: Job, status: str, result: dict | None = None, error: dict | None = None,
                step: str | None = None) -> None:
        with self._lock:
            job.status, job.finished_at, job.process = status, time.time(), None
            job.result, job.error = result, error
            job.step = step or ("done" if status == SUCCEEDED else status)
            if status == SUCCEEDED:
                job.progress = 1.0
            self._append(job, f"{status}" + (f": {error['message']}" if error else ""))
        log.info("job %s %s", job.id, status)


def _event(line: str) -> dict | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


# --- the app ------------------------------------------------------------------------------------------
def _error_response(status: int, error: StudioError | dict) -> JSONResponse:
    body = error.to_dict() if isinstance(error, StudioError) else error
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(status_code=status, headers=headers,
                        content=error_body(status, body.get("message", ""), body.get("error"), hint=body.get("hint", "")))


def _protected_docs(app: FastAPI, authorize) -> None:
    """/openapi.json, /docs and /redoc behind the bearer token (FastAPI's own ones are switched off)."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authorize)])
    def openapi() -> dict:
        return app.openapi()

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(authorize)])
    def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @app.get("/redoc", include_in_schema=False, dependencies=[Depends(authorize)])
    def redoc():
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")


def model_rows(registry: Registry) -> list[dict]:
    rows = []
    for spec in registry.list():
        manifest = spec.manifest
        rows.append({
            "name": spec.name,
            "source": manifest.source if manifest else spec.conversion_source,
            "curated": spec.curated,
            "converted": manifest is not None,
            "dim": manifest.dim if manifest else spec.dim,
            "variants": {
                name: {"file": info.file, "size_bytes": info.size_bytes,
                       "max_abs_diff": info.parity.max_abs_diff if info.parity else None,
                       "min_cosine": info.parity.min_cosine if info.parity else None}
                for name, info in (manifest.variants.items() if manifest else ())
            },
            "converted_at": manifest.converted_at if manifest else None,
        })
    return rows


def create_app(settings: ConverterSettings | None = None, studio_settings: Settings | None = None) -> FastAPI:
    """The converter API. Settings default to the environment (STUDIO_CONVERTER_*, STUDIO_DATA_DIR, API_TOKEN)."""
    settings = settings or ConverterSettings()
    studio_settings = studio_settings or load_settings()
    models_dir = studio_settings.models_dir
    runner = JobRunner(models_dir, settings)
    token = settings.api_token.get_secret_value() if settings.api_token else ""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        models_dir.mkdir(parents=True, exist_ok=True)
        runner.start()
        log.info("converter API: models in %s, local folders from %s, auth %s", models_dir,
                 settings.allowed_dir or "(switched off)", "on" if token else "off")
        yield
        runner.stop()

    def registry() -> Registry:
        return Registry(studio_settings.registry, models_dir)

    def authorize(request: Request) -> None:
        if not authorized(request.headers.get("authorization"), token):
            raise Rejection(401, InputError("Missing or wrong bearer token.", BEARER_HINT))

    # with a token, the documentation is served only by the token-checked routes below: the request
    # shapes are no one else's business
    docs = {} if not token else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="ONNX Embedding Studio converter", version="1", lifespan=lifespan, **docs)
    app.state.runner = runner
    if token:
        _protected_docs(app, authorize)

    @app.exception_handler(Rejection)
    async def _rejection(request: Request, exc: Rejection) -> JSONResponse:
        return _error_response(exc.status, exc.error)

    @app.exception_handler(StudioError)
    async def _studio_error(request: Request, exc: StudioError) -> JSONResponse:
        status = 404 if isinstance(exc, ModelNotFoundError) else 403 if isinstance(exc, RemoteCodeRefusedError) else 400
        return _error_response(status, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:]) or 'body'}: {err['msg']}" for err in exc.errors())
        return _error_response(422, InputError(f"Invalid request: {problems}", "see GET /docs for the request shape"))

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/jobs", status_code=202, dependencies=[Depends(authorize)])
    def submit(body: JobRequest) -> dict:
        reg = registry()
        kind, model = validate_source(body.model, set(reg.names()), settings.allowed_dir)
        unknown = [v for v in body.variants or () if v not in VARIANTS]
        if unknown or body.variants == []:
            raise Rejection(400, InputError(f"Unknown variant(s): {', '.join(unknown) or '(none given)'}.",
                                            f"choose from {', '.join(VARIANTS)}"))
        request = conversion.plan(reg, model, body.name, tuple(body.variants) if body.variants else None,
                                  body.trust_remote_code, body.force)
        if request.trust_remote_code and not remote_code_allowed(request, model, settings.allowlist):
            raise Rejection(403, RemoteCodeRefusedError(
                f"{model} would run its own Python code (trust_remote_code), and it is not on this server's allow-list.",
                "an administrator can add it to STUDIO_CONVERTER_REMOTE_CODE_ALLOWLIST"))
        target = models_dir / request.name
        if (target / MANIFEST_FILE).is_file() and not request.force:
            raise Rejection(409, ConversionError(f"A model named {request.name!r} is already converted.",
                                                 "pass \"force\": true to replace it, or choose another name"))
        return runner.submit(model, kind, request)

    @app.get("/v1/jobs", dependencies=[Depends(authorize)])
    def jobs() -> dict:
        return {"jobs": runner.list()}

    @app.get("/v1/jobs/{job_id}", dependencies=[Depends(authorize)])
    def job(job_id: str) -> dict:
        return runner.get(job_id)

    @app.get("/v1/jobs/{job_id}/log", dependencies=[Depends(authorize)])
    def job_log(job_id: str, offset: int = 0) -> dict:
        return runner.log_lines(job_id, max(0, offset))

    @app.delete("/v1/jobs/{job_id}", dependencies=[Depends(authorize)])
    def cancel(job_id: str) -> dict:
        return runner.cancel(job_id)

    @app.get("/v1/models", dependencies=[Depends(authorize)])
    def models() -> dict:
        return {"models_dir": str(models_dir), "models": model_rows(registry())}

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="converter/server.py", description="ONNX Embedding Studio converter API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--data-dir", type=Path, help="data directory (default: STUDIO_DATA_DIR or ./data)")
    parser.add_argument("--log-json", action="store_true", help="log as JSON lines")
    args = parser.parse_args(argv)

    import uvicorn

    from engine import log as studio_log

    try:
        studio_settings = load_settings(data_dir=args.data_dir)
        settings = ConverterSettings()
    except StudioError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"error: invalid STUDIO_CONVERTER_* setting: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    studio_log.configure(studio_settings.log_level, json_lines=args.log_json or studio_settings.log_json)
    uvicorn.run(create_app(settings, studio_settings), host=args.host, port=args.port, log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
