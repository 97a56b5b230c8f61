"""Validate the converted models: files present and intact, every ONNX variant loads and runs,
the provider that really runs it, and the parity figures measured at conversion within thresholds.

Backs ``python -m engine check`` and ``scripts/check-models.sh``. The judging functions are pure
(records in, problems out); ``check_models`` is the one place that touches files and sessions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import providers
from engine.errors import StudioError
from engine.manifest import TOKENIZER_FILE, Manifest, Parity, runtime_provider

log = logging.getLogger(__name__)

OK, FAIL, WARN, SKIP = "ok", "fail", "warn", "skip"
PROBE_TEXTS = ("The quick brown fox jumps over the lazy dog.", "", "Straße, 数据, Привет, 🙂")


@dataclass(frozen=True)
class Threshold:
    """Limits a variant's conversion parity must meet; None means 'reported, not judged'."""

    max_abs_diff: float | None = None
    min_cosine: float | None = None


# fp32 and the fused graph must reproduce sentence-transformers to float32 rounding; fp16 loses
# about three decimal digits; int8 is a speed/quality trade the user picks, so it is only reported.
THRESHOLDS: dict[str, Threshold] = {
    "fp32": Threshold(max_abs_diff=1e-5, min_cosine=0.99999),
    "optimized": Threshold(max_abs_diff=1e-5, min_cosine=0.99999),
    "fp16": Threshold(min_cosine=0.999),
    "int8": Threshold(),
    "int8-static": Threshold(),
}
# on OpenVINO the arithmetic is the CPU's (bf16 on AMX/AVX512_BF16): the fp32-quality variants are judged by
# the fp32 tier of the auto variant (engine.variant_probe.FP32_TIER) against the parity measured there
OPENVINO_THRESHOLDS: dict[str, Threshold] = {
    "fp32": Threshold(min_cosine=0.9999),
    "optimized": Threshold(min_cosine=0.9999),
    "fp16": Threshold(min_cosine=0.999),
    "int8": Threshold(),
    "int8-static": Threshold(),
}
# variants that only make sense on the CPU: int8 (dynamic quantisation has no CUDA kernels) and int8-static (its
# QDQ pairs are int8 kernels on OpenVINO's CPU plugin), so a GPU request checks them on the CPU
CPU_ONLY_VARIANTS = frozenset({"int8", "int8-static"})


@dataclass(frozen=True)
class VariantCheck:
    model: str
    variant: str
    status: str  # ok, warn, fail, skip
    provider_requested: str
    provider: str | None  # what ONNX Runtime really runs (None: not loaded)
    max_abs_diff: float | None
    min_cosine: float | None
    load_seconds: float | None
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelCheck:
    name: str
    curated: bool
    converted: bool
    status: str
    variants: tuple[VariantCheck, ...]
    problems: tuple[str, ...] = ()


# --- pure judging ---------------------------------------------------------------------------------
def parity_problems(variant: str, parity: Parity | None, thresholds: dict[str, Threshold] = THRESHOLDS) -> list[str]:
    """What is wrong with a variant's recorded parity (empty when it meets its threshold)."""
    limit = thresholds.get(variant, Threshold())
    if limit.max_abs_diff is None and limit.min_cosine is None:
        return []
    if parity is None:
        return [f"{variant}: no parity figures in the manifest (converted without validation)"]
    problems = []
    if limit.max_abs_diff is not None and not parity.max_abs_diff <= limit.max_abs_diff:
        problems.append(f"{variant}: max|diff| {parity.max_abs_diff:.2e} > {limit.max_abs_diff:.0e}")
    if limit.min_cosine is not None and not parity.min_cosine >= limit.min_cosine:
        problems.append(f"{variant}: min cosine {parity.min_cosine:.7f} < {limit.min_cosine}")
    return problems


def file_problems(folder: Path, manifest: Manifest, variant: str) -> list[str]:
    """Missing or truncated files a variant needs: its ONNX file (size as recorded), tokenizer, Dense layers."""
    problems = []
    info = manifest.variants[variant]
    onnx_file = folder / info.file
    if not onnx_file.is_file():
        problems.append(f"{info.file} is missing")
    elif info.size_bytes and onnx_file.stat().st_size != info.size_bytes:
        problems.append(f"{info.file} is {onnx_file.stat().st_size} bytes, the manifest recorded {info.size_bytes} "
                        f"(truncated or replaced)")
    if not (folder / TOKENIZER_FILE).is_file():
        problems.append(f"{TOKENIZER_FILE} is missing")
    problems += [f"{layer.file} (Dense layer) is missing" for layer in manifest.dense if not (folder / layer.file).is_file()]
    return problems


def provider_for(variant: str, requested: str) -> str:
    return "cpu" if variant in CPU_ONLY_VARIANTS and requested not in providers.CPU_FAMILY else requested


def variant_status(problems: Iterable[str], fallback: str | None, strict_provider: bool) -> str:
    """fail on any problem; a provider fallback fails only when that provider was demanded by name."""
    if list(problems):
        return FAIL
    if fallback:
        return FAIL if strict_provider else WARN
    return OK


def model_status(variants: Iterable[VariantCheck], converted: bool) -> str:
    statuses = [v.status for v in variants]
    if not converted:
        return SKIP
    if FAIL in statuses or not statuses:
        return FAIL
    return WARN if WARN in statuses else OK


def probe_problems(vectors: np.ndarray, expected_rows: int, dim: int, normalized: bool) -> list[str]:
    """Sanity of the vectors a variant produced for the probe texts."""
    if vectors.shape != (expected_rows, dim):
        return [f"output shape {vectors.shape}, expected ({expected_rows}, {dim})"]
    if not np.isfinite(vectors).all():
        return ["output contains NaN or inf"]
    if normalized:
        norms = np.linalg.norm(vectors, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-2):
            return [f"vectors should be unit length, norms {norms.min():.3f}..{norms.max():.3f}"]
    return []


def summary(results: Iterable[ModelCheck]) -> dict[str, int]:
    counts = {OK: 0, WARN: 0, FAIL: 0, SKIP: 0}
    for result in results:
        counts[result.status] += 1
    return counts


# --- the check itself -----------------------------------------------------------------------------
def runtime_parity(info, provider: str) -> Parity | None:
    """The parity measured at conversion on a non-ONNX-Runtime provider (``openvino-bf16`` for openvino)."""
    return next((p for key, p in info.provider_parity.items() if runtime_provider(key) == provider), None)


def check_variant(studio, spec, variant: str, requested_provider: str, load: bool = True) -> VariantCheck:
    manifest: Manifest = spec.manifest
    provider = provider_for(variant, requested_provider)
    info = manifest.variants[variant]
    thresholds, parity = THRESHOLDS, info.parity
    if provider in providers.RUNTIMES:
        thresholds, parity = OPENVINO_THRESHOLDS, runtime_parity(info, provider)
    problems = file_problems(spec.folder, manifest, variant)
    if parity is None and provider in providers.RUNTIMES:
        problems.append(f"{variant}: no parity on {provider} in the manifest (converted where {provider} was not "
                        "installed): convert again with --force")
    else:
        problems += parity_problems(variant, parity, thresholds)
    notes = [] if thresholds.get(variant, Threshold()) != Threshold() else [f"{variant}: parity reported, not judged"]
    if provider != requested_provider and load:
        notes.append(f"{variant} is CPU-only: checked on cpu")
    actual = load_seconds = fallback = None
    if load and not any("missing" in p or "truncated" in p for p in problems):
        started = time.perf_counter()
        try:
            embedder = studio.embedder(spec.name, variant, provider)
            vectors = embedder.embed(list(PROBE_TEXTS))
            info = embedder.info()
            actual, fallback = info["provider"], info["fallback"]
            load_seconds = round(time.perf_counter() - started, 3)
            problems += probe_problems(vectors, len(PROBE_TEXTS), manifest.dim, manifest.normalize)
        except StudioError as exc:
            problems.append(f"{variant} does not load or run: {exc.message}")
        if fallback:
            notes.append(fallback)
    elif not load:
        notes.append("not loaded (--no-load)")
    strict = provider not in ("auto", "cpu")
    return VariantCheck(
        model=spec.name,
        variant=variant,
        status=variant_status(problems, fallback, strict),
        provider_requested=provider,
        provider=actual,
        max_abs_diff=parity.max_abs_diff if parity else None,
        min_cosine=parity.min_cosine if parity else None,
        load_seconds=load_seconds,
        problems=tuple(problems),
        notes=tuple(notes),
    )


def check_models(studio, models: Iterable[str] | None = None, provider: str | None = None,
                 variants: Iterable[str] | None = None, load: bool = True) -> list[ModelCheck]:
    """Check every registry model (or the ones named); not-converted models are listed as skipped."""
    requested = providers.normalize(provider or studio.settings.provider)
    wanted = set(variants) if variants else None
    specs = studio.registry.list() if not models else [studio.registry.get(name) for name in models]
    results = []
    for spec in specs:
        if spec.manifest is None:
            results.append(ModelCheck(spec.name, spec.curated, False, SKIP, (), ("not converted",)))
            continue
        checks = tuple(
            check_variant(studio, spec, variant, requested, load)
            for variant in spec.manifest.variants
            if wanted is None or variant in wanted
        )
        if not checks:  # a --variants filter that this model has none of
            results.append(ModelCheck(spec.name, spec.curated, True, SKIP, (), (f"no {'/'.join(sorted(wanted or []))} variant",)))
            continue
        results.append(ModelCheck(spec.name, spec.curated, True, model_status(checks, True), checks))
        if load:
            studio.forget(spec.name)  # one model's sessions at a time: a registry of big models must fit in memory
        log.info("checked %s: %s", spec.name, results[-1].status)
    return results
