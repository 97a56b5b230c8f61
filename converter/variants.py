"""Derived ONNX variants of an exported fp32 graph.

- ``optimized``: ONNX Runtime's transformer fusions (Attention, SkipLayerNorm, BiasGelu, ...)
  applied offline, so a session starts from the fused graph.
- ``fp16``: the fused graph converted to float16 with float32 inputs/outputs (for GPUs).
- ``int8``: dynamic quantisation, per-channel weights, chosen for this CPU (signed int8 weights
  where the CPU has VNNI/AVX-512 or is ARM64, unsigned on plain AVX2). The down-projection
  MatMuls of the feed-forward blocks (weight in > out, fed by GELU outputs with large outliers)
  stay in float32: on all-MiniLM-L6-v2 this raised the minimum cosine against fp32 from 0.991 to
  0.996 at the same speed.
- ``int8-static``: static int8 (QuantizeLinear/DequantizeLinear pairs, calibrated activation ranges) made by
  NNCF's post-training quantization with its transformer preset (SmoothQuant, fast bias correction) from the
  texts of ``calibration.txt`` (240 original lines: queries, passages of papers, manuals, law, news, fiction,
  ten other languages, flattened tables and references) run through the model one at a time. Meant for the
  ``openvino`` provider, which runs the pairs as int8 kernels (VNNI): on a 2-core Zen 4 EPYC, 256 SciFact
  abstracts 59 -> 92 texts/s against bf16 end to end (docs/benchmarks.md, "The issue's machine"); ONNX Runtime
  runs the same file slower than its dynamic ``int8``.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import ConversionError

log = logging.getLogger(__name__)
FILES = {"fp32": "model.onnx", "optimized": "model_optimized.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx",
         "int8-static": "model_int8_static.onnx"}
CALIBRATION_FILE = Path(__file__).with_name("calibration.txt")
# NNCF keeps the whole graph and its statistics in memory and runs every calibration text: past this the
# variant is skipped with a note (all-mpnet-base-v2 is 438 MB)
STATIC_MAX_BYTES = 1_500_000_000
CALIBRATED_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the fields of engine.tokenize.Batch


@dataclass(frozen=True)
class BuildContext:
    """What a variant builder may need of the model besides its fp32 graph: its architecture (fusion patterns)
    and how its texts are tokenized (calibration runs real texts through the engine's tokenizer)."""

    model_type: str
    max_seq_length: int = 512
    do_lower_case: bool = False


_BERT_LIKE = {"bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "camembert", "electra", "albert", "xlm"}


def _optimizer_type(model_type: str) -> str:
    if model_type in _BERT_LIKE:
        return "bert"
    if model_type == "gpt2":
        return "gpt2"
    return "bert"  # fusions only apply where the patterns match; other graphs stay as they are


def _save(model, path: Path) -> None:
    large = model.model.ByteSize() > 1_900_000_000
    model.save_model_to_file(str(path), use_external_data_format=large)


def make_optimized(fp32: Path, out: Path, context: BuildContext) -> str:
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(fp32), model_type=_optimizer_type(context.model_type), num_heads=0, hidden_size=0)
    _save(model, out)
    fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
    return "fused: " + ", ".join(f"{k}×{v}" for k, v in fused.items()) if fused else "no fusion pattern matched"


def make_fp16(fp32: Path, out: Path, context: BuildContext) -> str:
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(fp32), model_type=_optimizer_type(context.model_type), num_heads=0, hidden_size=0,
                           use_gpu=True)
    model.convert_float_to_float16(keep_io_types=True)
    _save(model, out)
    return "float16 weights and activations, float32 inputs/outputs; meant for GPU providers"


def cpu_quant_flavour() -> str:
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "avx512_vnni" if "avx512_vnni" in flags else "avx_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def down_projection_matmuls(model) -> list[str]:
    """MatMul nodes whose weight maps a wider input to a narrower output (FFN down projections)."""
    weights = {init.name: init for init in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        weight = next((weights[i] for i in node.input if i in weights), None)
        if weight is not None and len(weight.dims) == 2 and weight.dims[0] > weight.dims[1]:
            names.append(node.name)
    return names


def make_int8(fp32: Path, out: Path, context: BuildContext) -> str:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    flavour = cpu_quant_flavour()
    weight_type = QuantType.QUInt8 if flavour == "avx2" else QuantType.QInt8
    model = onnx.load(str(fp32), load_external_data=False)
    exclude = down_projection_matmuls(model)
    quantize_dynamic(
        str(fp32),
        str(out),
        weight_type=weight_type,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=exclude,
        use_external_data_format=fp32.stat().st_size > 1_900_000_000,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return (f"dynamic int8 for {flavour} ({weight_type.name} per-channel weights, uint8 activations); "
            f"{len(exclude)} FFN down-projection MatMuls kept in float32; CPU only")


def calibration_texts(path: Path | None = None) -> list[str]:
    """One text per non-empty line; only ``\\n`` (or ``\\r\\n``) ends a line: ``splitlines`` would also cut at U+2028,
    U+2029, U+0085, form feeds, ... inside a text, and a text-mode read at a lone ``\\r``."""
    text = (path or CALIBRATION_FILE).read_bytes().decode("utf-8")
    lines = (line.removesuffix("\r") for line in text.split("\n"))
    return [line for line in lines if line.strip()]


def calibration_feeds(model, folder: Path, context: BuildContext, texts: list[str]) -> list[dict[str, np.ndarray]]:
    """Each text alone (no padding) through the engine's own tokenizer of ``folder`` as the engine will run it
    (truncated to the model's ``max_seq_length``, lower-cased where its config says so), as the graph's inputs."""
    from engine.tokenize import TextTokenizer

    tokenizer = TextTokenizer.from_folder(folder, context.max_seq_length, context.do_lower_case)
    names = [port.name for port in model.graph.input]
    return [{name: getattr(tokenizer.pad([encoded]), name) for name in names} for encoded in tokenizer.encode(texts)]


def make_int8_static(fp32: Path, out: Path, context: BuildContext) -> str:
    import nncf
    import onnx

    if fp32.stat().st_size > STATIC_MAX_BYTES:
        raise ValueError(f"the fp32 graph is {fp32.stat().st_size / 1e6:.0f} MB, over the "
                         f"{STATIC_MAX_BYTES / 1e6:.0f} MB static quantization takes here")
    model = onnx.load(str(fp32))
    unknown = [port.name for port in model.graph.input if port.name not in CALIBRATED_INPUTS]
    if unknown:
        raise ValueError(f"inputs {unknown} have no calibration values")
    texts = calibration_texts()
    feeds = calibration_feeds(model, out.parent, context, texts)
    quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds))
    onnx.save(quantized, str(out))
    return (f"static int8 (NNCF {nncf.__version__}, transformer preset: SmoothQuant, QDQ pairs) calibrated on "
            f"{len(feeds)} texts of {CALIBRATION_FILE.name}; for the openvino provider (int8 kernels)")


BUILDERS = {"optimized": make_optimized, "fp16": make_fp16, "int8": make_int8, "int8-static": make_int8_static}


def build_variant(variant: str, fp32: Path, folder: Path, context: BuildContext) -> tuple[str, str]:
    """Create one variant next to the fp32 graph (and its tokenizer.json); returns (file name, note)."""
    out = folder / FILES[variant]
    try:
        note = BUILDERS[variant](fp32, out, context)
    except Exception as exc:  # noqa: BLE001 - ORT tools raise many types
        raise ConversionError(f"Building the {variant} variant failed: {type(exc).__name__}: {str(exc)[:300]}") from None
    return FILES[variant], note
