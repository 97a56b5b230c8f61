"""The ``openvino`` provider: the model's own ONNX file run by the OpenVINO runtime (the ``openvino``
package, installed beside the standard onnxruntime wheel; onnxruntime-openvino would replace it).

``OpenVINOSession`` answers the part of ``onnxruntime.InferenceSession`` the engine uses
(``get_inputs``, ``get_outputs``, ``run``, ``get_providers``), so the session cache, the embedder and
the benchmarks treat it like any other provider. Precision: OpenVINO's own choice for the CPU, bf16
where it has AVX512_BF16 or AMX and f32 elsewhere, unless ``STUDIO_OPENVINO_PRECISION`` says ``f32``
or ``bf16``; the precision in use is reported (``precision``) and its parity is measured like any
variant's (at conversion and by the ``auto`` probe).

Two compiled forms of one model, both with dynamic shapes. Small batches (a query, an HTTP request)
run on the LATENCY form: one stream that uses every thread. A batch of ``BULK_ROWS`` rows or more
(ingest, bulk embedding) runs on the THROUGHPUT form: its rows are split into one part per stream
(one thread each) and the parts run at once. Measured on a 2-core AMX Xeon, all-MiniLM-L6-v2,
batch 32: 256-token abstracts 101 -> 112 texts/s, queries 1041 -> 1059; a single query on one
stream alone would take twice as long, hence both forms. The THROUGHPUT form is compiled with the
session, and only for models up to ``BULK_MAX_BYTES`` (it holds its own copy of the weights). Infer
requests are pooled, so concurrent callers never share one.

Memory: with dynamic shapes OpenVINO keeps the kernels it built for each input shape it has seen, in two
caches (its CPU plugin's runtime cache, 5000 entries by default, and oneDNN's primitive cache, 1024), and
RSS grew with every new (rows, tokens) shape (openvinotoolkit/openvino#20633). Both are capped at
``CACHE_CAPACITY`` entries (``STUDIO_OPENVINO_CACHE_CAPACITY``; an ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``
the user set wins; oneDNN reads it once, so it is set when this module is imported). Measured in
docs/benchmarks.md ("Memory over a long run"): the same speed, and RSS that levels off.
"""

from __future__ import annotations

import logging
import os
import queue
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PROVIDER_NAME = "OpenVINORuntime"  # what get_providers() answers (engine.providers maps it to "openvino")
PRECISIONS = ("auto", "f32", "bf16")
BULK_ROWS = 8
BULK_MAX_BYTES = 1 << 30
CACHE_CAPACITY = 64


@dataclass(frozen=True)
class Port:
    """The name and element type of an input or output, spelled as ``onnxruntime.NodeArg`` has them."""

    name: str
    type: str = "tensor(float)"


_TYPES = {"i64": "tensor(int64)", "i32": "tensor(int32)", "f32": "tensor(float)", "f16": "tensor(float16)"}


def _port(port) -> Port:
    return Port(port.get_any_name(), _TYPES.get(port.get_element_type().get_type_name(), "tensor(float)"))


def is_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def precision_setting() -> str:
    value = os.environ.get("STUDIO_OPENVINO_PRECISION", "auto").strip().lower() or "auto"
    if value not in PRECISIONS:
        from engine.errors import ProviderError

        raise ProviderError(f"STUDIO_OPENVINO_PRECISION must be one of {', '.join(PRECISIONS)}, got {value!r}.")
    return value


def _cache_setting() -> str:
    return os.environ.get("STUDIO_OPENVINO_CACHE_CAPACITY", "").strip() or str(CACHE_CAPACITY)


def cache_capacity() -> int:
    """Entries each kernel cache keeps (``STUDIO_OPENVINO_CACHE_CAPACITY``, default ``CACHE_CAPACITY``)."""
    value = _cache_setting()
    if not value.isdigit():
        from engine.errors import ProviderError

        raise ProviderError(f"STUDIO_OPENVINO_CACHE_CAPACITY must be a whole number of entries, got {value!r}.")
    return int(value)


def _cap_onednn_cache() -> None:
    """oneDNN reads its cache size once, when the CPU plugin first builds a kernel: set it before that.
    A bad setting is left for ``cache_capacity`` to report where sessions are made."""
    value = _cache_setting()
    if value.isdigit():
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", value)


_cap_onednn_cache()


def default_precision() -> str:
    """The precision sessions get here: the setting, or what OpenVINO's CPU plugin picks on this CPU."""
    setting = precision_setting()
    if setting != "auto":
        return setting
    import openvino as ov

    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


class OpenVINOSession:
    def __init__(self, path: Path, threads: int, precision: str = "auto", kernel_cache: int = CACHE_CAPACITY) -> None:
        import openvino as ov

        self._config: dict[str, object] = {"INFERENCE_NUM_THREADS": int(threads),
                                           "CPU_RUNTIME_CACHE_CAPACITY": int(kernel_cache)}
        if precision != "auto":
            self._config["INFERENCE_PRECISION_HINT"] = precision
        self._core = ov.Core()
        self._path = Path(path)
        self._compiled = self._compile("LATENCY")
        self._inputs = [_port(port) for port in self._compiled.inputs]
        self._outputs = [_port(port) for port in self._compiled.outputs]
        self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "bf16", "f32"
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        # (compiled model, streams), compiled now with the session: compiled on a first big batch it stalled a
        # server ~1 s
        self._bulk = self._compile_bulk() if threads >= 2 and self._path.stat().st_size <= BULK_MAX_BYTES else None
        self._bulk_requests: queue.SimpleQueue = queue.SimpleQueue()

    def _compile(self, hint: str):
        return self._core.compile_model(self._core.read_model(str(self._path)), "CPU",
                                        {**self._config, "PERFORMANCE_HINT": hint})

    def get_inputs(self) -> list[Port]:
        return list(self._inputs)

    def get_outputs(self) -> list[Port]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return [PROVIDER_NAME]

    def run(self, output_names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        names = output_names or [port.name for port in self._outputs]
        rows = len(next(iter(feed.values())))
        if self._bulk is not None and rows >= BULK_ROWS:
            return self._run_split(names, feed, rows)
        request = self._take(self._requests, self._compiled)
        try:
            result = request.infer(feed)  # outputs are copied out of the request (share_outputs=False)
            return [np.asarray(result[self._compiled.output(name)]) for name in names]
        finally:
            self._requests.put(request)

    @staticmethod
    def _take(pool: queue.SimpleQueue, compiled):
        try:
            return pool.get_nowait()
        except queue.Empty:
            return compiled.create_infer_request()

    def _compile_bulk(self):
        compiled = self._compile("THROUGHPUT")
        streams = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        log.info("openvino: %s compiled for bulk batches, %d streams", self._path.name, streams)
        return compiled, streams

    def _run_split(self, names: list[str], feed: dict[str, np.ndarray], rows: int) -> list[np.ndarray]:
        """The batch's rows in one contiguous part per stream, run at once; outputs joined in row order."""
        compiled, streams = self._bulk
        bounds = np.linspace(0, rows, min(streams, rows) + 1).astype(int)
        requests = [self._take(self._bulk_requests, compiled) for _ in range(len(bounds) - 1)]
        try:
            for request, start, stop in zip(requests, bounds[:-1], bounds[1:]):
                request.start_async({key: value[start:stop] for key, value in feed.items()})
            for request in requests:
                request.wait()
            return [np.concatenate([request.get_tensor(compiled.output(name)).data for request in requests])
                    for name in names]  # concatenate copies out of the requests' buffers
        finally:
            for request in requests:
                self._bulk_requests.put(request)
