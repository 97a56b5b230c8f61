"""Prometheus metrics of one server: requests by route and status, latency, batch sizes, queue
depth, and which provider really runs each model.

Each app owns its own registry (not prometheus_client's global one), so several apps can live in
one process (the tests start a few) without clashing collectors.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)
QUEUE_LABELS = ("model", "variant", "provider")


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, cpu seconds, open fds
        PlatformCollector(registry=r)
        self.requests = Counter("studio_http_requests", "HTTP requests by route, method and status",
                                ("route", "method", "status"), registry=r)
        self.latency = Histogram("studio_http_request_duration_seconds", "HTTP request latency",
                                 ("route", "method"), buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("studio_embedding_batch_size", "Texts per inference call (gathered across requests)",
                                    QUEUE_LABELS, buckets=_BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("studio_embedding_batch_requests", "Requests sharing one inference call",
                                        QUEUE_LABELS, buckets=_BATCH_BUCKETS, registry=r)
        self.batch_tokens = Histogram("studio_embedding_batch_tokens", "Tokens per inference call",
                                      QUEUE_LABELS, buckets=_TOKEN_BUCKETS, registry=r)
        self.inference_seconds = Histogram("studio_embedding_inference_seconds", "Wall time of one inference call",
                                           QUEUE_LABELS, buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_wait_seconds = Histogram("studio_embedding_queue_wait_seconds",
                                            "Time a text waited in the queue before its inference call started",
                                            QUEUE_LABELS, buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("studio_embedding_queue_depth", "Texts waiting for an inference call",
                                 QUEUE_LABELS, registry=r)
        self.texts = Counter("studio_embedded_texts", "Texts embedded", QUEUE_LABELS, registry=r)
        self.tokens = Counter("studio_embedded_tokens", "Tokens embedded (after truncation, special tokens included)",
                              QUEUE_LABELS, registry=r)
        self.provider = Gauge("studio_provider_info",
                              "1 per loaded model variant, labelled with the provider requested and the one that runs",
                              ("model", "variant", "requested", "active"), registry=r)
        self.ready = Gauge("studio_ready", "1 once the default model is loaded and warmed up", registry=r)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def route_label(routes, scope: Scope) -> str:
    """The route template (``/v1/models/{model_id}``), never the raw path: raw paths would make
    the label set unbounded. Matched here, not read from the scope, so that requests refused before
    routing (401, 413) are still counted under their route."""
    for route in routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            return getattr(route, "path", "unmatched")
    return "unmatched"


class MetricsMiddleware:
    """Outermost middleware: counts and times every HTTP request, whatever answered it."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, routes) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        # the label of each static path met (bounded by the routes without parameters): matching every route
        # after every request was ~15 us of the event loop's time per short request
        self._static: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers

        async def send_and_record(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = self._static.get(scope["path"]) or route_label(self.routes, scope)
            if route == scope["path"]:
                self._static[route] = route
            method = scope.get("method", "")
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)
