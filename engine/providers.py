"""Execution providers: what this installation offers, which one a request resolves to, and
which one really runs once a session exists.

Every provider but one is an ONNX Runtime execution provider. ``openvino`` is the OpenVINO runtime
(the ``openvino`` package, beside the standard onnxruntime wheel) running the same ONNX file
(engine.openvino_session); ONNX Runtime's own OpenVINO EP needs onnxruntime-openvino, which replaces
the onnxruntime wheel, lags it, and was slower than ORT's CPU EP in public reports
(onnxruntime#15027, openvino#22401), so it is not used.

``auto`` takes the best available of CUDA, ROCm, MIGraphX, DirectML, then CPU. On a CPU-only host
the ``auto`` variant (engine.variant_probe) then times ONNX Runtime and OpenVINO side by side and
keeps the faster one that holds fp32 quality: which of the two wins depends on the CPU (bf16 on
AMX/AVX512_BF16), so it is measured, not assumed. TensorRT and CoreML are used only when asked for:
TensorRT builds an engine per input shape (minutes of cold start) and needs TensorRT libraries the
pip wheel does not carry; CoreML splits BERT-class graphs into dozens of partitions and ran slower
than the CPU in every public report (see the notes in README). A provider that was asked for but is
not what the session runs is a *fallback*: it is logged as a warning and reported, never silent.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from engine import openvino_session
from engine.errors import ProviderError

log = logging.getLogger(__name__)

ORT_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
# providers that are not ONNX Runtime's: short name -> what their session's get_providers() answers
RUNTIMES = {"openvino": openvino_session.PROVIDER_NAME}
PROVIDER_NAMES = {**ORT_NAMES, **RUNTIMES}
SHORT_NAMES = {v: k for k, v in PROVIDER_NAMES.items()}
AUTO_ORDER = ("cuda", "rocm", "migraphx", "directml", "cpu")
CPU_FAMILY = ("cpu", "openvino")  # what the auto variant compares on a host without a GPU provider


@dataclass(frozen=True)
class ProviderStatus:
    name: str
    ort_name: str
    available: bool
    auto_candidate: bool
    note: str


@dataclass(frozen=True)
class ProviderChoice:
    requested: str  # what the caller asked for ("auto", "cuda", ...)
    name: str  # what the request resolved to
    ort_providers: tuple[str | tuple[str, dict[str, str]], ...]  # passed to InferenceSession


def available() -> list[str]:
    """Short names of the providers this installation offers: the onnxruntime build's, in ORT's
    priority order (CPU last), with OpenVINO before CPU when the openvino package is installed."""
    import onnxruntime as ort

    names = [SHORT_NAMES[p] for p in ort.get_available_providers() if p in ORT_NAMES.values()]
    if openvino_session.is_installed():
        names.insert(names.index("cpu") if "cpu" in names else len(names), "openvino")
    return names


def status() -> list[ProviderStatus]:
    present = set(available())
    auto = resolve("auto").name
    notes = {
        "tensorrt": "only when asked: engine build per shape, needs TensorRT libraries",
        "coreml": "only when asked: partitions BERT graphs, slower than CPU in public reports",
        "openvino": "OpenVINO runtime on the CPU (bf16 where the CPU has it); the auto variant times it against cpu",
        "cpu": "always present",
    }
    return [
        ProviderStatus(
            name=name,
            ort_name=PROVIDER_NAMES[name],
            available=name in present,
            auto_candidate=name == auto,
            note=notes.get(name, ""),
        )
        for name in PROVIDER_NAMES
    ]


def _options(name: str) -> dict[str, str]:
    if name == "cuda":
        return {"arena_extend_strategy": "kSameAsRequested", "cudnn_conv_algo_search": "HEURISTIC"}
    if name == "tensorrt":
        cache = Path(os.environ.get("STUDIO_TRT_CACHE", Path.home() / ".cache" / "studio-trt"))
        return {"trt_fp16_enable": "True", "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache)}
    return {}


def normalize(request: str | None) -> str:
    """A provider as the user typed it (" CUDA", None) -> its one spelling ("cuda", "auto")."""
    return (request or "auto").strip().lower()


def resolve(request: str | None) -> ProviderChoice:
    """Turn 'auto' or a provider name into the provider list for a session."""
    requested = normalize(request)
    present = available()
    if requested == "auto":
        name = next(p for p in AUTO_ORDER if p in present or p == "cpu")
    elif requested in PROVIDER_NAMES:
        if requested not in present:
            raise ProviderError(
                f"The {requested} execution provider is not available in this onnxruntime build "
                f"(available: {', '.join(present)}).",
                _install_hint(requested),
            )
        name = requested
    else:
        raise ProviderError(
            f"Unknown execution provider {request!r}.", f"use auto or one of: {', '.join(PROVIDER_NAMES)}"
        )
    chain: list[str | tuple[str, dict[str, str]]] = []
    if name in RUNTIMES:
        return ProviderChoice(requested=requested, name=name, ort_providers=())
    if name == "tensorrt":
        chain.append((ORT_NAMES["tensorrt"], _options("tensorrt")))
        if "cuda" in present:
            chain.append((ORT_NAMES["cuda"], _options("cuda")))
    elif name != "cpu":
        options = _options(name)
        chain.append((ORT_NAMES[name], options) if options else ORT_NAMES[name])
    chain.append(ORT_NAMES["cpu"])
    return ProviderChoice(requested=requested, name=name, ort_providers=tuple(chain))


def _install_hint(name: str) -> str:
    hints = {
        "cuda": "run scripts/install-onnxruntime-gpu.sh: it leaves onnxruntime-gpu as the only ONNX Runtime wheel "
                "(from PyPI on x86_64 and on ARM64 + CUDA such as DGX Spark; Microsoft's CUDA 13 feed as the "
                "fallback); see docker/README.md",
        "tensorrt": "install onnxruntime-gpu plus TensorRT libraries",
        "rocm": "install an onnxruntime build with ROCm",
        "migraphx": "install an onnxruntime build with MIGraphX",
        "coreml": "use the macOS onnxruntime wheel on Apple hardware",
        "directml": "pip install onnxruntime-directml (Windows)",
        "openvino": "pip install openvino (the OpenVINO runtime; it installs beside onnxruntime)",
    }
    return hints.get(name, "use --provider cpu")


ORT_PACKAGES = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino", "onnxruntime-rocm",
                "onnxruntime-silicon", "onnxruntime-training")


def diagnostics() -> list[str]:
    """Warnings about this installation that make a GPU provider silently absent."""
    import importlib.metadata
    import shutil

    warnings = []
    installed = []
    for package in ORT_PACKAGES:
        try:
            installed.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    if len(installed) > 1:
        warnings.append(f"Several ONNX Runtime packages are installed ({', '.join(installed)}); they overwrite each "
                        "other's files. Run scripts/install-onnxruntime-gpu.sh (GPU) or reinstall onnxruntime alone.")
    if shutil.which("nvidia-smi") and "cuda" not in available():
        warnings.append("An NVIDIA GPU is present but this onnxruntime build has no CUDA provider: everything runs on "
                        "the CPU. Run scripts/install-onnxruntime-gpu.sh.")
    return warnings


def active_provider(session) -> str:
    """The provider that really runs the session's graph (the first one ORT kept)."""
    providers = session.get_providers()
    return SHORT_NAMES.get(providers[0], providers[0]) if providers else "cpu"


def check_fallback(choice: ProviderChoice, actual: str, model: str) -> str | None:
    """A message if the session does not run on the resolved provider, else None (and it is logged)."""
    if actual == choice.name:
        return None
    message = (
        f"{model}: asked for {choice.requested} ({choice.name}) but ONNX Runtime runs {actual}; "
        f"check the GPU driver/CUDA libraries"
    )
    log.warning(message)
    return message


def cpu_count() -> int:
    """CPUs this process may really use: affinity mask and cgroup quota (containers) both count."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, quota)
    return max(1, count)


def _cgroup_quota() -> int | None:
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return max(1, int(int(text[0]) / int(text[1]) + 0.999))
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return max(1, int(quota / period + 0.999))
    except (OSError, ValueError):
        pass
    return None
