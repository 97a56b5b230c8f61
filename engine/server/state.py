"""What one server process holds: the Studio, its settings, the batcher, metrics and readiness,
and the warm-up that makes it ready.

Readiness means the default model is loaded and has run once. Until then ``/ready`` answers 503
with the reason; a model that is not there yet (a converter container may still be writing it to
the shared models folder) is retried every ``warmup_retry_s`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field

from fastapi import Request

from engine.embedder import Embedder
from engine.errors import InferenceError, StudioError
from engine.server.batching import Batcher
from engine.server.config import ApiSettings
from engine.server.metrics import ServerMetrics
from engine.studio import Studio

log = logging.getLogger(__name__)


@dataclass
class Readiness:
    """Written by the warm-up, read by ``/ready``; a lock because the warm-up runs in a thread."""

    ready: bool = False
    info: dict = field(default_factory=dict)
    error: StudioError | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def mark_ready(self, info: dict) -> None:
        with self._lock:
            self.ready, self.info, self.error = True, dict(info), None

    def mark_failed(self, error: StudioError) -> None:
        with self._lock:
            self.ready, self.error = False, error

    def snapshot(self) -> tuple[bool, dict, StudioError | None]:
        with self._lock:
            return self.ready, dict(self.info), self.error


@dataclass
class ServerState:
    studio: Studio
    api: ApiSettings
    metrics: ServerMetrics
    batcher: Batcher
    readiness: Readiness
    default_model: str
    default_variant: str | None
    provider: str
    # embedders looked up in the last RECHECK_S seconds: the hot path skips the registry (a manifest
    # read) and a thread hop, and a re-converted model is still picked up within seconds
    _recent: dict[tuple[str, str | None], tuple[Embedder, float]] = field(default_factory=dict, repr=False)
    RECHECK_S = 2.0

    def embedder(self, model: str, variant: str | None) -> Embedder:
        """Blocking (reads the registry, may load a tokenizer): call it in a thread."""
        resolved = self.default_variant if variant is None and model == self.default_model else variant
        embedder = self.studio.embedder(model, resolved, self.provider)
        self._recent[(model, variant)] = (embedder, time.monotonic())
        return embedder

    def recent_embedder(self, model: str, variant: str | None) -> Embedder | None:
        hit = self._recent.get((model, variant))
        return hit[0] if hit is not None and time.monotonic() - hit[1] < self.RECHECK_S else None


async def get_state(request: Request) -> ServerState:
    # async on purpose: FastAPI runs a plain-def dependency in a worker thread, a hop per request
    return request.app.state.server


def _load_default(state: ServerState) -> dict:
    embedder = state.embedder(state.default_model, state.default_variant)
    embedder.embed(["warm up", "a second, somewhat longer text so that the batch has padding"])
    info = embedder.info()
    state.metrics.provider.labels(info["model"], info["variant"], info["provider_requested"], info["provider"]).set(1)
    return info


async def warm_up(state: ServerState) -> None:
    """Load and run the default model; retry until it works (or the server stops)."""
    last_message = None
    while True:
        try:
            info = await asyncio.to_thread(_load_default, state)
        except StudioError as exc:
            error = exc
        except Exception as exc:  # never let a bug here kill the server silently
            log.error("warm-up of %s failed", state.default_model, exc_info=exc)
            error = InferenceError(f"Loading {state.default_model} failed unexpectedly.", "see the server log")
        else:
            state.readiness.mark_ready(info)
            state.metrics.ready.set(1)
            log.info("ready: %s/%s on %s (load %.2fs)", info["model"], info["variant"], info["provider"],
                     info["load_seconds"])
            if info.get("fallback"):
                log.warning("provider fallback: %s", info["fallback"])
            return
        state.readiness.mark_failed(error)
        if error.message != last_message:  # say it once, not every retry
            log.warning("default model %s is not ready: %s %s (retrying every %.0fs)", state.default_model,
                        error.message, error.hint, state.api.warmup_retry_s)
            last_message = error.message
        await asyncio.sleep(state.api.warmup_retry_s)
