"""Export the Transformer module of a model to ONNX with optimum (``feature-extraction``, plain
transformers graph: ``last_hidden_state``; pooling, Dense and Normalize are applied by the engine)."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConversionError, RemoteCodeRefusedError, UnsupportedModelError

log = logging.getLogger(__name__)
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class ExportResult:
    file: Path
    inputs: tuple[str, ...]
    output: str
    opset: int


def read_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise UnsupportedModelError(
            f"{folder} has no config.json: it is not a Hugging Face transformers model.",
            "point the converter at a model id or a sentence-transformers / transformers folder",
        )
    return json.loads(path.read_text(encoding="utf-8"))


def check_remote_code(config: dict, allowed: bool, source: str) -> None:
    if "auto_map" in config and not allowed:
        raise RemoteCodeRefusedError(
            f"{source} ships its own Python code (auto_map in config.json); the converter refuses to run it.",
            "if you trust that code, pass --trust-remote-code (or set trust_remote_code: true in models.yaml)",
        )


def check_supported(config: dict, remote_code: bool) -> str:
    import optimum.exporters.onnx.model_configs  # noqa: F401 - registers the ONNX configs
    from optimum.exporters.tasks import TasksManager

    model_type = str(config.get("model_type", ""))
    if remote_code and "auto_map" in config:
        return model_type
    supported = set(TasksManager.get_supported_model_type_for_task("feature-extraction", exporter="onnx"))
    if not {model_type, model_type.replace("_", "-"), model_type.replace("-", "_")} & supported:
        families = ", ".join(sorted(t for t in supported if t in {
            "bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "qwen2", "qwen3", "llama", "gpt2", "modernbert"}))
        raise UnsupportedModelError(
            f"Architecture {model_type or '?'!r} cannot be exported to ONNX by optimum.",
            f"supported families include {families}",
        )
    return model_type


def export_transformer(folder: Path, out_dir: Path, trust_remote_code: bool = False, opset: int | None = None) -> ExportResult:
    """Export ``folder``'s transformer to ``out_dir/model.onnx`` (plus external data if > 2 GB)."""
    import onnx
    from optimum.exporters.onnx import main_export

    work = Path(tempfile.mkdtemp(prefix="export-", dir=out_dir))
    try:
        main_export(
            str(folder),
            output=work,
            task="feature-extraction",
            library_name="transformers",
            opset=opset,
            do_validation=False,
            trust_remote_code=trust_remote_code,
            local_files_only=True,
        )
    except (ValueError, KeyError, NotImplementedError) as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise UnsupportedModelError(f"optimum could not export this model: {str(exc)[:400]}") from None
    except Exception as exc:  # torch.onnx failures
        shutil.rmtree(work, ignore_errors=True)
        raise ConversionError(f"ONNX export failed: {type(exc).__name__}: {str(exc)[:400]}") from None
    for produced in work.iterdir():
        if produced.name.startswith("model.onnx"):  # model.onnx and model.onnx_data
            shutil.move(str(produced), out_dir / produced.name)
    shutil.rmtree(work, ignore_errors=True)
    path = out_dir / ONNX_FILE
    model = onnx.load(str(path), load_external_data=False)
    inputs = tuple(i.name for i in model.graph.input)
    outputs = [o.name for o in model.graph.output]
    output = next((n for n in ("last_hidden_state", "token_embeddings", "sentence_embedding") if n in outputs), outputs[0])
    opset_version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ExportResult(path, inputs, output, opset_version)
