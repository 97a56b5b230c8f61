"""Read a sentence-transformers model folder's configuration, without importing torch or
sentence-transformers: modules.json (old and new class paths), 1_Pooling (legacy boolean and
compact ``pooling_mode`` schemas), 2_Dense* layers, Normalize, sentence_bert_config.json and
config_sentence_transformers.json. A folder without these files gets sentence-transformers'
own default (mean pooling, no normalisation), and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import UnsupportedModelError
from engine.manifest import POOLING_MODES
from engine.textcheck import clip

LEGACY_POOLING_KEYS = {  # sentence-transformers' concatenation order
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
TRANSFORMER_CLASSES = {"Transformer", "BERT", "RoBERTa", "XLMRoBERTa", "DistilBERT", "ALBERT", "T5", "CamemBERT"}
ACTIVATIONS = {
    "Tanh": "tanh", "Identity": "identity", "ReLU": "relu", "GELU": "gelu", "Sigmoid": "sigmoid", "SiLU": "silu",
}
DEFAULT_POOLING_NOTE = (
    "no sentence-transformers configuration found: mean pooling without normalisation "
    "(what sentence-transformers itself does for a plain transformers model)"
)


@dataclass(frozen=True)
class DenseSpec:
    folder: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str


@dataclass(frozen=True)
class STConfig:
    transformer_folder: Path
    pooling_modes: tuple[str, ...]
    pooling_source: str
    include_prompt: bool
    dense: tuple[DenseSpec, ...]
    normalize: bool
    max_seq_length: int | None
    do_lower_case: bool
    prompts: dict[str, str]
    default_prompt_name: str | None
    similarity: str
    is_sentence_transformers: bool
    notes: tuple[str, ...] = field(default_factory=tuple)


def _read(path: Path) -> dict | list | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UnsupportedModelError(f"{path.name} in the model folder is not valid JSON: {exc}") from None


def class_name(type_path: str) -> str:
    """'sentence_transformers.models.Pooling' and '...modules.pooling.Pooling' both -> 'Pooling'."""
    return type_path.rsplit(".", 1)[-1]


def parse_pooling(config: dict) -> tuple[tuple[str, ...], bool]:
    """Both schemas -> (modes in concatenation order, include_prompt)."""
    include_prompt = bool(config.get("include_prompt", True))
    if "pooling_mode" in config:
        value = config["pooling_mode"]
        modes = (value,) if isinstance(value, str) else tuple(value)
    else:
        modes = tuple(mode for key, mode in LEGACY_POOLING_KEYS.items() if config.get(key, False)) or ("mean",)
    unknown = [m for m in modes if m not in POOLING_MODES]
    if unknown:
        raise UnsupportedModelError(f"Unknown pooling mode(s) {unknown} in 1_Pooling/config.json.",
                                    f"supported: {', '.join(POOLING_MODES)}")
    return modes, include_prompt


def parse_activation(type_path: str | None) -> str:
    if type_path is None:
        return "tanh"  # sentence-transformers' Dense default
    name = class_name(type_path)
    if name not in ACTIVATIONS:
        raise UnsupportedModelError(f"Dense activation {type_path!r} is not supported.",
                                    f"supported: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def module_folder(folder: Path, path: object) -> Path:
    """A module's folder, inside the model's folder: modules.json is the model author's, and a path like
    "../../private/model" (or one through a link) had a converter that may only read its allowed folder export a
    model from anywhere. Files may still be links (a hub snapshot's are, into its blobs); folders may not leave."""
    relative = Path(str(path))
    inside = Path(folder).resolve()
    target = (Path(folder) / relative).resolve()
    if not isinstance(path, str) or relative.is_absolute() or ".." in relative.parts or not target.is_relative_to(inside):
        raise UnsupportedModelError(f"modules.json names the module folder {clip(path, 80)}, which is outside the "
                                    "model's folder.", "a module's path is a folder inside the model, e.g. 1_Pooling")
    return Path(folder) / relative


def read_st_config(folder: Path) -> STConfig:
    folder = Path(folder)
    modules = _read(folder / "modules.json")
    st_meta = _read(folder / "config_sentence_transformers.json") or {}
    prompts = dict(st_meta.get("prompts") or {})
    default_prompt_name = st_meta.get("default_prompt_name") or None
    similarity = st_meta.get("similarity_fn_name") or "cosine"

    if modules is None:
        bert_config = _read(folder / "sentence_bert_config.json") or {}
        return STConfig(
            transformer_folder=folder,
            pooling_modes=("mean",),
            pooling_source="default",
            include_prompt=True,
            dense=(),
            normalize=False,
            max_seq_length=bert_config.get("max_seq_length"),
            do_lower_case=bool(bert_config.get("do_lower_case", False)),
            prompts=prompts,
            default_prompt_name=default_prompt_name,
            similarity=similarity,
            is_sentence_transformers=False,
            notes=(DEFAULT_POOLING_NOTE,),
        )

    transformer_folder: Path | None = None
    pooling: tuple[tuple[str, ...], bool] | None = None
    pooling_source = ""
    dense: list[DenseSpec] = []
    normalize = False
    for module in sorted(modules, key=lambda m: m.get("idx", 0)):
        name = class_name(module.get("type", ""))
        path = module_folder(folder, module.get("path", ""))
        if name in TRANSFORMER_CLASSES:
            if transformer_folder is not None:
                raise UnsupportedModelError("The model has more than one Transformer module (not supported).")
            transformer_folder = path
        elif name == "Pooling":
            config = _read(path / "config.json")
            if config is None:
                raise UnsupportedModelError(f"The Pooling module has no config.json in {module.get('path')}.")
            pooling = parse_pooling(config)
            pooling_source = f"{module.get('path')}/config.json"
        elif name == "Dense":
            config = _read(path / "config.json") or {}
            try:
                dense.append(DenseSpec(
                    folder=path,
                    in_features=int(config["in_features"]),
                    out_features=int(config["out_features"]),
                    bias=bool(config.get("bias", True)),
                    activation=parse_activation(config.get("activation_function")),
                ))
            except KeyError as exc:
                raise UnsupportedModelError(f"Dense layer {module.get('path')} config lacks {exc}.") from None
        elif name == "Normalize":
            normalize = True
        else:
            raise UnsupportedModelError(
                f"The sentence-transformers module {module.get('type')!r} is not supported.",
                "supported modules: Transformer, Pooling, Dense, Normalize",
            )
    if transformer_folder is None:
        raise UnsupportedModelError("modules.json has no Transformer module.")
    notes: list[str] = []
    if pooling is None:
        pooling = (("mean",), True)
        pooling_source = "default"
        notes.append("modules.json has no Pooling module: mean pooling used")
    bert_config = _read(transformer_folder / "sentence_bert_config.json") or {}
    return STConfig(
        transformer_folder=transformer_folder,
        pooling_modes=pooling[0],
        pooling_source=pooling_source,
        include_prompt=pooling[1],
        dense=tuple(dense),
        normalize=normalize,
        max_seq_length=bert_config.get("max_seq_length"),
        do_lower_case=bool(bert_config.get("do_lower_case", False)),
        prompts=prompts,
        default_prompt_name=default_prompt_name,
        similarity=similarity,
        is_sentence_transformers=True,
        notes=tuple(notes),
    )
