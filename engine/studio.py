"""The one object every entry point shares: settings, registry, session cache, embedders.

The Streamlit app keeps one per process (``st.cache_resource``), the HTTP server one per worker,
the CLI one per command. Embedders are cached per (model, variant, provider).
"""

from __future__ import annotations

import logging
import threading

from engine import providers
from engine.embedder import Embedder
from engine.registry import Registry
from engine.sessions import SessionCache, SessionOptions
from engine.settings import Settings, get_settings

log = logging.getLogger(__name__)


class Studio:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.registry = Registry(self.settings.registry, self.settings.models_dir)
        self.sessions = SessionCache(self.settings.session_cache_size)
        self._embedders: dict[tuple[str, str, str], Embedder] = {}
        self._lock = threading.Lock()

    @property
    def session_options(self) -> SessionOptions:
        s = self.settings
        return SessionOptions(
            intra_op_threads=s.intra_op_threads,
            graph_optimization=s.graph_optimization,
            cpu_mem_arena=s.cpu_mem_arena,
            mem_pattern=s.mem_pattern,
        )

    def embedder(self, model: str | None = None, variant: str | None = None, provider: str | None = None) -> Embedder:
        spec = self.registry.require_converted(model or self.registry.default_model)
        variant = variant or spec.default_variant
        requested = (provider or self.settings.provider).strip().lower()
        # resolved once, here: "auto" and the provider it picks share one embedder and one session
        resolved = providers.resolve(requested).name
        key = (spec.name, variant, resolved)
        with self._lock:
            cached = self._embedders.get(key)
            if cached is not None and cached.manifest == spec.manifest:
                return cached
        embedder = Embedder(
            spec,
            variant=variant,
            provider=resolved,
            provider_requested=requested,
            sessions=self.sessions,
            session_options=self.session_options,
            batch_size=self.settings.batch_size,
            max_batch_tokens=self.settings.max_batch_tokens,
        )
        with self._lock:
            self._embedders[key] = embedder
        return embedder

    def forget(self, model: str) -> None:
        """Drop cached embedders and sessions of a model (after it was re-converted or deleted)."""
        with self._lock:
            for key in [k for k in self._embedders if k[0] == model]:
                del self._embedders[key]
        self.sessions.clear(model)
