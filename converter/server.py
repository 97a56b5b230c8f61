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
import logging
import sys
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from converter.jobs import JobRunner, Rejection
from engine import conversion, hub
from engine.errors import (
    ConversionError,
    InputError,
    ModelNotFoundError,
    RemoteCodeRefusedError,
    StudioError,
)
from engine.httpauth import BEARER_HINT, authorized, error_body
from engine.manifest import MANIFEST_FILE, VARIANTS
from engine.registry import Registry
from engine.server.auth import BearerAuthMiddleware
from engine.server.limits import BodyLimitMiddleware
from engine.settings import ConverterSettings, Settings, build, load_settings

log = logging.getLogger("converter.server")
MAX_BODY_BYTES = 64 * 1024  # a job request is a few hundred bytes


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=512, description="registry name, owner/name hub id, or local folder")
    name: str | None = Field(None, max_length=64, description="name in the studio (default: from the id)")
    variants: list[str] | None = Field(None, description=f"some of {', '.join(VARIANTS)} (default: the registry's, or all)")
    trust_remote_code: bool = False
    force: bool = Field(False, description="replace an existing model of that name")


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
    settings = settings or build(ConverterSettings, "converter settings")
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

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:  # the 413 of the limit
        return _error_response(exc.status_code, InputError(str(exc.detail), "a job request is a few hundred bytes"))

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
        if kind == "registry" and not reg.get(model).curated:
            # a converted folder outside models.yaml names its own source (its manifest's): held to the same rules
            # as one a client names, or the name of any folder there reached past the allowed folder
            validate_source(request.source, set(), settings.allowed_dir)
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

    # outermost first: the token is checked before any body is read (a 1 GB unauthenticated POST /v1/jobs was read
    # whole and answered 422), and no body over MAX_BODY_BYTES is read at all
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    if token:
        app.add_middleware(BearerAuthMiddleware, token=token, open_paths=frozenset({"/health"}))
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
        settings = build(ConverterSettings, "converter settings")
    except StudioError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    studio_log.configure(studio_settings.log_level, json_lines=args.log_json or studio_settings.log_json)
    uvicorn.run(create_app(settings, studio_settings), host=args.host, port=args.port, log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
