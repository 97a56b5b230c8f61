"""The self-describing model folder: ``manifest.json`` next to the ONNX file(s) and tokenizer.

The converter writes it, the engine reads it. It holds everything needed to reproduce
sentence-transformers' output without sentence-transformers: pooling, Dense layers, Normalize,
max length, lower-casing, prompts, padding side, and the parity figures measured at conversion.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ModelFileError
from engine.textcheck import clip

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
VARIANTS = ("fp32", "optimized", "fp16", "int8", "int8-static")
# not a file: the fastest converted variant that keeps fp32 quality here, measured (engine.variant_probe)
AUTO_VARIANT = "auto"
VARIANT_CHOICES = (*VARIANTS, AUTO_VARIANT)
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class DenseLayer:
    file: str  # .npz with "weight" (out, in) and optionally "bias" (out,)
    in_features: int
    out_features: int
    bias: bool
    activation: str  # tanh, identity, relu, gelu, sigmoid, silu, ...


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    min_cosine: float
    mean_cosine: float
    texts: int
    reference: str  # e.g. "sentence-transformers 5.7.0 (torch fp32, cpu)"


def runtime_key(provider: str, precision: str) -> str:
    """The key of a ``VariantInfo.provider_parity`` entry: the provider and the precision it ran in
    (``openvino-bf16``), since the precision is the converting CPU's."""
    return f"{provider}-{precision}"


def runtime_provider(key: str) -> str:
    """The provider of a ``provider_parity`` key (``openvino-bf16`` -> ``openvino``)."""
    return key.split("-", 1)[0]


@dataclass(frozen=True)
class VariantInfo:
    file: str
    size_bytes: int
    note: str = ""
    parity: Parity | None = None  # on ONNX Runtime's CPU provider
    # on the other runtimes measured at conversion, e.g. {"openvino-bf16": Parity} (precision named: it is the CPU's)
    provider_parity: dict[str, Parity] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    name: str
    source: str  # hub id, local path or pypi:<package>
    revision: str
    architecture: str
    model_type: str
    hidden_size: int
    dim: int
    max_seq_length: int
    do_lower_case: bool
    pooling_modes: tuple[str, ...]
    pooling_source: str  # which file decided the pooling, or why the default was used
    include_prompt: bool
    dense: tuple[DenseLayer, ...]
    normalize: bool
    prompts: dict[str, str]
    default_prompt_name: str | None
    similarity: str
    padding_side: str
    opset: int
    onnx_inputs: tuple[str, ...]
    onnx_output: str  # last_hidden_state / token_embeddings / sentence_embedding
    variants: dict[str, VariantInfo]
    converted_at: str = ""
    conversion_seconds: float = 0.0
    tools: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    format: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        data = dict(data)
        data["pooling_modes"] = tuple(data["pooling_modes"])
        data["dense"] = tuple(DenseLayer(**d) for d in data.get("dense", ()))
        for layer in data["dense"]:
            _bare_file_name(layer.file)
        data["onnx_inputs"] = tuple(data["onnx_inputs"])
        data["notes"] = tuple(data.get("notes", ()))
        variants = {}
        for key, value in data["variants"].items():
            value = dict(value)
            if value.get("parity"):
                value["parity"] = Parity(**value["parity"])
            value["provider_parity"] = {k: Parity(**v) for k, v in (value.get("provider_parity") or {}).items()}
            variants[key] = VariantInfo(**value)
            _bare_file_name(variants[key].file)
        data["variants"] = variants
        return cls(**data)

    def write(self, folder: Path) -> Path:
        path = folder / MANIFEST_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def _bare_file_name(name: object) -> None:
    """ValueError unless ``name`` is a file name in the model's folder: the engine loads it from there, and a
    manifest that says "../../x.onnx" would run a model from anywhere."""
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise ValueError(f"the file {clip(name, 80)} is not a file name in the model's folder")


def read_manifest(folder: Path) -> Manifest:
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise ModelFileError(
            f"{folder} is not a converted model folder (no {MANIFEST_FILE}).",
            "convert the model first: python -m engine convert NAME",
        )
    try:
        return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelFileError(
            f"The manifest of {Path(folder).name} is unreadable ({type(exc).__name__}: {exc}).",
            "re-convert the model: python -m engine convert NAME --force",
        ) from None
