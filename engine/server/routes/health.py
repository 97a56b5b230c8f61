"""``/health`` (alive: no auth, no model needed), ``/ready`` (default model loaded and warmed up)
and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from engine.server.state import ServerState, get_state

router = APIRouter(tags=["service"])


@router.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@router.head("/health", include_in_schema=False)  # probes that send HEAD (uptime checkers, some load balancers)
async def health_head() -> Response:
    return Response(status_code=200)


@router.head("/ready", include_in_schema=False)
async def ready_head(state: ServerState = Depends(get_state)) -> Response:
    return Response(status_code=200 if state.readiness.snapshot()[0] else 503)


@router.get("/ready")
async def ready(state: ServerState = Depends(get_state)) -> JSONResponse:
    is_ready, info, error = state.readiness.snapshot()
    if is_ready:
        return JSONResponse({"status": "ready", **info})
    body = {"status": "starting" if error is None else "unavailable", "model": state.default_model}
    if error is not None:
        body.update(reason=error.message, code=error.code, hint=error.hint)
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


@router.get("/metrics")
async def metrics(request: Request, state: ServerState = Depends(get_state)) -> Response:
    content, content_type = state.metrics.render(request.headers.get("accept"))
    return Response(content, media_type=content_type)
