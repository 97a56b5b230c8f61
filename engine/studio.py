"""The one object every entry point shares: settings, registry, session cache, embedders.

The Streamlit app keeps one per process (``st.cache_resource``), the HTTP server one per worker,
the CLI one per command. Embedders are cached per (model, variant, provider); collections per name,
so that one Collection object (and its in-memory vectors) serves every query of the process; background
ingest jobs (the app's) live here too, so they outlast the page run that started them.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from engine import providers, variant_probe
from engine.embedder import Embedder
from engine.manifest import AUTO_VARIANT
from engine.registry import Registry
from engine.sessions import SessionCache, SessionOptions
from engine.settings import Settings, get_settings

if TYPE_CHECKING:
    from engine.collection import Collection

log = logging.getLogger(__name__)


class Studio:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.registry = Registry(self.settings.registry, self.settings.models_dir)
        self.sessions = SessionCache(self.settings.session_cache_size)
        self._embedders: dict[tuple[str, str, str], Embedder] = {}
        self._collections: dict[str, tuple[str, Collection]] = {}  # name -> (store kind, collection)
        self._lock = threading.Lock()
        self._jobs = None  # engine.jobs.IngestJobs, made on first use
        # (model, provider, compared providers, converted_at) -> what auto resolved to
        self._auto: dict[tuple, variant_probe.ProbeResult] = {}
        self._probe_lock = threading.Lock()  # one probe at a time: they would time each other

    def collection(self, name: str, store: str | None = None) -> Collection:
        """The one Collection object of this Studio for ``name`` (an invalid name is an InputError), of the
        store its collection.json names; ``store`` (embedded, qdrant) only decides for a new collection
        (default STUDIO_VECTOR_STORE)."""
        from engine.stores import open_collection, stored_kind

        with self._lock:
            cached = self._collections.get(name)
            if cached is not None and store in (None, cached[0]):
                return cached[1]  # no extra read of collection.json per query
            kind = stored_kind(self.settings.collections_dir, name) or store or self.settings.vector_store
            if cached is None or cached[0] != kind:
                self._collections[name] = (kind, open_collection(self.settings, name, kind=kind))
            return self._collections[name][1]

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
        requested, resolved = self._resolve_provider(provider)
        if variant == AUTO_VARIANT:
            probe = self.auto_variant(spec, resolved, self._compared(requested, resolved))
            variant, resolved = probe.chosen, probe.runs_on
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

    def _resolve_provider(self, provider: str | None) -> tuple[str, str]:
        """What was asked for (the setting when None) and what it resolves to, once: ``auto`` and the
        provider it picks share one embedder, one session and one remembered probe."""
        requested = providers.normalize(provider or self.settings.provider)
        return requested, providers.resolve(requested).name

    @property
    def _probe_threads(self) -> int:
        return self.settings.intra_op_threads or providers.cpu_count()

    @staticmethod
    def _compared(requested: str, resolved: str) -> tuple[str, ...]:
        """The other providers the auto variant times: the CPU runtimes, when the provider was left to auto
        and resolved to the CPU (a GPU, or a provider the user named, is used as it is)."""
        if requested != "auto" or resolved != "cpu":
            return ()
        present = providers.available()
        return tuple(p for p in providers.CPU_FAMILY if p != resolved and p in present)

    def remembered_variant(self, spec, provider: str | None = None) -> variant_probe.ProbeResult | None:
        """What ``auto`` resolved to for ``spec`` on ``provider`` (default: this Studio's), if measured (never measures)."""
        if spec.manifest is None:
            return None
        requested, resolved = self._resolve_provider(provider)
        return variant_probe.remembered(spec.manifest, spec.folder, resolved, self._probe_threads,
                                        self._compared(requested, resolved))

    def auto_variant(self, spec, provider: str, also: tuple[str, ...] = ()) -> variant_probe.ProbeResult:
        """What ``auto`` means for ``spec`` on ``provider`` (and the ``also`` providers) here: remembered in the
        model folder, or measured once (engine.variant_probe); the probe's sessions are its own and are freed
        after it."""
        key = (spec.name, provider, also, spec.manifest.converted_at)
        with self._probe_lock:
            if key not in self._auto:
                probe_sessions = SessionCache(len(spec.manifest.variants) * (1 + len(also)))

                def make_embed(name: str):
                    variant, runs_on = variant_probe.parse_label(name, provider)
                    return Embedder(spec, variant=variant, provider=runs_on, sessions=probe_sessions,
                                    session_options=self.session_options, batch_size=32,
                                    max_batch_tokens=self.settings.max_batch_tokens).embed

                self._auto[key] = variant_probe.resolve(spec.manifest, spec.folder, provider, self._probe_threads,
                                                        make_embed, also)
            return self._auto[key]

    @property
    def jobs(self):
        """The background ingest jobs of this Studio (engine.jobs.IngestJobs), created on first use."""
        with self._lock:
            if self._jobs is None:
                from engine.jobs import IngestJobs

                self._jobs = IngestJobs(self)
            return self._jobs

    def forget(self, model: str) -> None:
        """Drop cached embedders and sessions of a model (after it was re-converted or deleted)."""
        with self._lock:
            for key in [k for k in self._embedders if k[0] == model]:
                del self._embedders[key]
        self.sessions.clear(model)
