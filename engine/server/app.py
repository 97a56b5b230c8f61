"""The app factory: one Studio per process, the routes, and the middleware stack

    metrics (outermost: counts everything, 401 and 413 included) -> bearer auth -> body limit
    -> POST /v1/embeddings dispatched directly (engine/server/direct.py) | the router for the rest

Warm-up of the default model starts with the app and runs in the background, so ``/health``
answers at once and ``/ready`` turns 200 when the model has run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from fastapi import FastAPI

from engine import __version__, providers
from engine.server import errors
from engine.server.auth import BearerAuthMiddleware
from engine.server.batching import Batcher, BatchLimits
from engine.server.config import ApiSettings, load_api_settings
from engine.server.direct import DirectRoutes
from engine.server.limits import BodyLimitMiddleware
from engine.server.metrics import MetricsMiddleware, ServerMetrics
from engine.server.routes import ROUTERS, documents, embeddings
from engine.server.state import Readiness, ServerState, warm_up
from engine.studio import Studio

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/health"})
NO_TELEMETRY = {"tracing": False, "metrics": False, "logs": False}


def fastapi_telemetry(environ=os.environ) -> dict | None:
    """FastAPI's built-in OpenTelemetry hooks, on only where OpenTelemetry is configured (an OTEL_*
    variable, as opentelemetry-instrument sets): unconfigured, they still asked the tracer, meter and
    logger providers on every request, ~9 % of the event loop's time at 64 clients (py-spy). The
    server's own metrics are on /metrics either way."""
    return None if any(name.startswith("OTEL_") for name in environ) else NO_TELEMETRY


def create_app(studio: Studio | None = None, api: ApiSettings | None = None) -> FastAPI:
    studio = studio or Studio()
    api = api or load_api_settings()
    metrics = ServerMetrics()
    limits = BatchLimits(
        max_items=api.max_batch_items,
        max_tokens=studio.settings.max_batch_tokens,
        max_wait=api.max_wait_ms / 1000,
        capacity=api.max_queue_items,
        linger=api.linger_ms / 1000,
    )
    state = ServerState(
        studio=studio,
        api=api,
        metrics=metrics,
        batcher=Batcher(limits, metrics, api.inference_threads),
        readiness=Readiness(),
        default_model=api.model or studio.registry.default_model,
        default_variant=api.variant,
        provider=providers.normalize(api.provider or studio.settings.provider),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        warm = asyncio.create_task(warm_up(state), name="warm-up")
        log.info("serving %s (variant %s, provider %s); auth %s; batches of up to %d texts / %d tokens, wait %.1f ms",
                 state.default_model, state.default_variant or "default", state.provider,
                 "on" if api.auth_enabled else "off", limits.max_items, limits.max_tokens, api.max_wait_ms)
        try:
            yield
        finally:
            warm.cancel()
            await asyncio.gather(warm, return_exceptions=True)
            await state.batcher.close()

    telemetry = fastapi_telemetry()
    app = FastAPI(title="ONNX Embedding Studio", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible embeddings with ONNX Runtime", telemetry=telemetry)
    app.state.server = state
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    # added innermost first: each add_middleware wraps the ones before it
    if telemetry == NO_TELEMETRY:  # with FastAPI's OpenTelemetry hooks on, its router's spans name the route
        app.add_middleware(DirectRoutes, routes={("POST", "/v1/embeddings"): embeddings.create_embeddings},
                           handlers=app.exception_handlers)
    upload_limit = studio.settings.max_upload_bytes + 1024 * 1024  # one file plus the multipart envelope
    app.add_middleware(BodyLimitMiddleware, max_bytes=api.max_body_bytes, upload_bytes=upload_limit,
                       upload_paths=documents.UPLOAD_PATHS)
    token = api.token.get_secret_value() if api.token is not None else None
    app.add_middleware(BearerAuthMiddleware, token=token, open_paths=OPEN_PATHS)
    # the routers' own routes carry the templates used as labels (the app wraps included routers)
    labelled = [route for router in ROUTERS for route in router.routes]
    labelled += [route for route in app.router.routes if hasattr(route, "path")]
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=labelled)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and for each worker of ``serve --workers N``: everything
    comes from the environment (STUDIO_*, STUDIO_API_*, API_TOKEN)."""
    from engine import log as studio_log
    from engine.settings import get_settings

    settings = get_settings()
    studio_log.configure(settings.log_level, json_lines=settings.log_json)
    return create_app(Studio(settings), load_api_settings())
