"""One thread-safe, bounded cache of ONNX Runtime sessions keyed by (model, variant, provider, options).

Creating a session costs hundreds of milliseconds to minutes (TensorRT); every page, CLI call and
HTTP request shares this cache. After creation the session is warmed up and the provider that
really runs it is read back and recorded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine import providers
from engine.errors import ModelFileError, ProviderError, StudioError

log = logging.getLogger(__name__)

_GRAPH_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class SessionOptions:
    intra_op_threads: int | None = None  # None: the CPUs this process may use (cgroup-aware)
    inter_op_threads: int = 1
    graph_optimization: str = "all"
    cpu_mem_arena: bool = True
    mem_pattern: bool = False  # see Settings.mem_pattern

    def build(self):
        import onnxruntime as ort

        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        if self.graph_optimization not in levels:
            raise ValueError(f"graph_optimization must be one of {_GRAPH_LEVELS}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_threads or providers.cpu_count()
        opts.inter_op_num_threads = self.inter_op_threads
        opts.graph_optimization_level = levels[self.graph_optimization]
        opts.enable_cpu_mem_arena = self.cpu_mem_arena
        opts.enable_mem_pattern = self.mem_pattern
        opts.log_severity_level = 3
        return opts


@dataclass(frozen=True)
class SessionKey:
    model: str
    variant: str
    provider: str  # the requested provider ("auto" included)
    options: SessionOptions


@dataclass
class CachedSession:
    key: SessionKey
    session: object  # onnxruntime.InferenceSession
    choice: providers.ProviderChoice
    active_provider: str
    fallback: str | None
    load_seconds: float
    warmup_seconds: float
    path: Path


def create_session(path: Path, choice: providers.ProviderChoice, options: SessionOptions,
                   max_tokens: int | None = None):
    """An InferenceSession (or, for ``openvino``, an OpenVINOSession), with the runtime's failures
    turned into user-facing errors. ``max_tokens`` (the model's max_seq_length) lets OpenVINO compile a
    static form for full-length batches."""
    import onnxruntime as ort

    if not path.is_file():
        raise ModelFileError(f"The ONNX file {path.name} is missing from {path.parent}.", "re-convert the model")
    if choice.name == "openvino":
        return _openvino_session(path, options, max_tokens)
    try:
        return ort.InferenceSession(str(path), sess_options=options.build(), providers=list(choice.ort_providers))
    except Exception as exc:  # ORT raises its own classes (onnxruntime_pybind11_state.*), not one base
        raise ort_failure(exc, path, choice) from None


def _openvino_session(path: Path, options: SessionOptions, max_tokens: int | None):
    from engine.openvino_session import OpenVINOSession, cache_capacity, pack_setting, precision_setting

    # a bad setting says so, before compiling
    precision, kernel_cache, pack_tokens = precision_setting(), cache_capacity(), pack_setting()
    try:
        return OpenVINOSession(path, options.intra_op_threads or providers.cpu_count(), precision, kernel_cache,
                               static_width=max_tokens, pack_tokens=pack_tokens)
    except Exception as exc:  # openvino raises RuntimeError with the cause in its text
        text = str(exc)
        if any(marker.lower() in text.lower() for marker in _CORRUPT_MARKERS):
            raise ModelFileError(*(part.format(file=path.name, folder=path.parent.name) for part in _CORRUPT)) from None
        raise ProviderError(f"OpenVINO could not compile {path.name}: {text[:300]}",
                            "--provider cpu runs the same file with ONNX Runtime") from None


_CORRUPT = ("The ONNX file {file} in {folder} is corrupt or truncated.",
            "replace it and convert again: python -m engine convert {folder} --force, or the Models page")
# ONNX Runtime's exception class names -> (our error, message, hint): the one table of what a user is told.
ORT_FAILURES: dict[str, tuple[type[StudioError], str, str]] = {
    "InvalidProtobuf": (ModelFileError, *_CORRUPT),
    "NoSuchFile": (ModelFileError, "The ONNX file {file} is missing from {folder}.", "re-convert the model"),
    "InvalidGraph": (ModelFileError, "The ONNX file {file} in {folder} is not a valid ONNX graph: {detail}",
                     "re-convert the model; if it persists, report the model id"),
    "NotImplemented": (ModelFileError, "{file} uses an operator this ONNX Runtime cannot run: {detail}",
                       "upgrade onnxruntime, or convert with an older opset"),
    "EPFail": (ProviderError, "ONNX Runtime could not start the {provider} provider: {detail}",
               "python -m engine providers says what is installed; --provider cpu always works"),
}
# Fail and RuntimeException carry the cause only in their text: these markers tell a corrupt file.
# (OpenVINO's ONNX frontend says "ParseFromIstream ... Model can't be parsed")
_CORRUPT_MARKERS = ("Protobuf", "parsing", "ModelProto", "Load model", "ParseFromIstream", "can't be parsed")


def ort_failure(exc: Exception, path: Path, choice: providers.ProviderChoice) -> StudioError:
    """The user-facing error for an ONNX Runtime failure while loading ``path`` on ``choice``."""
    text = str(exc)
    fields = {"file": path.name, "folder": path.parent.name, "provider": choice.name, "detail": text[:300]}
    kind = ORT_FAILURES.get(type(exc).__name__)
    if kind is None and any(marker.lower() in text.lower() for marker in _CORRUPT_MARKERS):
        kind = (ModelFileError, *_CORRUPT)
    if kind is None and choice.name != "cpu" and any(name in text for name in providers.ORT_NAMES.values()):
        kind = ORT_FAILURES["EPFail"]
    if kind is None:
        kind = (ModelFileError, "ONNX Runtime could not load {file}: {detail}", "")
    error, message, hint = kind
    return error(message.format(**fields), hint.format(**fields))


class SessionCache:
    """LRU of sessions; concurrent callers for the same key wait for one creation."""

    def __init__(self, max_size: int = 4) -> None:
        self.max_size = max_size
        self._lock = threading.Lock()
        self._entries: OrderedDict[SessionKey, CachedSession] = OrderedDict()
        self._key_locks: dict[SessionKey, threading.Lock] = {}

    def get(
        self,
        key: SessionKey,
        path: Path,
        warmup: Callable[[object], None] | None = None,
        max_tokens: int | None = None,
    ) -> CachedSession:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._entries:
                    return self._entries[key]
            entry = self._create(key, path, warmup, max_tokens)
            with self._lock:
                self._entries[key] = entry
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_size:
                    evicted, _ = self._entries.popitem(last=False)
                    log.info("session cache full: dropped %s/%s on %s", evicted.model, evicted.variant, evicted.provider)
                self._key_locks.pop(key, None)
            return entry

    def _create(self, key: SessionKey, path: Path, warmup: Callable[[object], None] | None,
                max_tokens: int | None) -> CachedSession:
        choice = providers.resolve(key.provider)
        started = time.perf_counter()
        session = create_session(path, choice, key.options, max_tokens)
        loaded = time.perf_counter()
        if warmup is not None:
            warmup(session)
        warmed = time.perf_counter()
        actual = providers.active_provider(session)
        fallback = providers.check_fallback(choice, actual, f"{key.model}/{key.variant}")
        log.info(
            "session ready: %s/%s on %s (asked %s) load %.2fs warm-up %.2fs",
            key.model, key.variant, actual, key.provider, loaded - started, warmed - loaded,
        )
        return CachedSession(key, session, choice, actual, fallback, loaded - started, warmed - loaded, path)

    def entries(self) -> list[CachedSession]:
        with self._lock:
            return list(self._entries.values())

    def clear(self, model: str | None = None) -> None:
        with self._lock:
            for key in [k for k in self._entries if model is None or k.model == model]:
                del self._entries[key]
