"""The ``openvino`` provider: the model's own ONNX file run by the OpenVINO runtime (the ``openvino``
package, installed beside the standard onnxruntime wheel; onnxruntime-openvino would replace it).

``OpenVINOSession`` answers the part of ``onnxruntime.InferenceSession`` the engine uses
(``get_inputs``, ``get_outputs``, ``run``, ``get_providers``), so the session cache, the embedder and
the benchmarks treat it like any other provider. Precision: OpenVINO's own choice for the CPU, bf16
where it has AVX512_BF16 or AMX and f32 elsewhere, unless ``STUDIO_OPENVINO_PRECISION`` says ``f32``
or ``bf16``; the precision in use is reported (``precision``) and its parity is measured like any
variant's (at conversion and by the ``auto`` probe). One compiled model per session, with dynamic
shapes; infer requests are pooled, so concurrent callers never share one.
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


def default_precision() -> str:
    """The precision sessions get here: the setting, or what OpenVINO's CPU plugin picks on this CPU."""
    setting = precision_setting()
    if setting != "auto":
        return setting
    import openvino as ov

    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


class OpenVINOSession:
    def __init__(self, path: Path, threads: int, precision: str = "auto") -> None:
        import openvino as ov

        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads)}
        if precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = precision
        core = ov.Core()
        self._compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self._inputs = [_port(port) for port in self._compiled.inputs]
        self._outputs = [_port(port) for port in self._compiled.outputs]
        self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "bf16", "f32"
        self._requests: queue.SimpleQueue = queue.SimpleQueue()

    def get_inputs(self) -> list[Port]:
        return list(self._inputs)

    def get_outputs(self) -> list[Port]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return [PROVIDER_NAME]

    def run(self, output_names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = self._compiled.create_infer_request()
        try:
            result = request.infer(feed)  # outputs are copied out of the request (share_outputs=False)
            names = output_names or [port.name for port in self._outputs]
            return [np.asarray(result[self._compiled.output(name)]) for name in names]
        finally:
            self._requests.put(request)
