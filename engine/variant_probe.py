"""The ``auto`` variant: the fastest converted configuration of a model that keeps fp32 quality, measured here.

A variant is a candidate when the parity measured at conversion (the manifest's, against
sentence-transformers torch fp32) reaches the fp32 tier, min cosine >= ``FP32_TIER``. On a host without a
GPU provider, where the provider was left to ``auto`` as well, the same variants also run on the other
CPU runtime (OpenVINO, labelled ``variant@openvino``): its arithmetic differs by CPU (bf16 on AMX), so its
parity is measured on the probe itself against fp32 on ONNX Runtime, and a configuration below the tier is
left out with the figure. The candidates are timed on this machine, on a fixed probe (one batch of long
texts, as ingesting embeds, and one of short ones, as queries are), interleaved and best of ``ROUNDS``; the
reference fp32 is kept unless another candidate is ``MARGIN`` faster, so probe noise never flips the choice.
The result is remembered in the model folder (``variant-probe.json``, one entry per hardware fingerprint)
and reused until the model is re-converted or the machine, providers or runtimes change. A candidate that
failed to run on the probe (memory pressure, a busy GPU: maybe transient) does not stay excluded on one
failure: the next resolve measures again, and only after ``RUN_FAILURE_PROBES`` probes in a row in which it
failed is the result kept for good. A variant or a provider the user names is never second-guessed: only
``auto`` (the registry's default) is resolved here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from engine.errors import StudioError
from engine.manifest import AUTO_VARIANT, Manifest

log = logging.getLogger(__name__)

FP32_TIER = 0.9999
REFERENCE = "fp32"
MARGIN = 1.05
ROUNDS = 3
PROBE_FILE = "variant-probe.json"
RUN_FAILURE = "failed on the probe"  # how an exclusion for a run-time failure starts (the others: parity, tier)
RUN_FAILURE_PROBES = 3  # a candidate failing at run time this many probes in a row stays excluded
_WORDS = ("the protein expression of tumour cells was measured in a cohort of patients with chronic liver "
          "disease and the immune response to insulin was compared across groups at baseline and follow up").split()

Embed = Callable[[Sequence[str]], object]


@dataclass(frozen=True)
class ProbeResult:
    fingerprint: str
    provider: str  # the provider the request resolved to (the reference runs there)
    chosen: str  # the variant
    seconds: dict[str, float]  # candidate label -> best seconds of one probe pass (long batch + short batch)
    excluded: dict[str, str] = field(default_factory=dict)  # label -> why it was not a candidate
    measured_at: str = ""
    chosen_provider: str = ""  # where the chosen variant runs, when another provider won ("" = provider)
    parity: dict[str, float] = field(default_factory=dict)  # label -> min cosine on the probe (other providers)
    # label -> probes in a row in which it failed at run time; below RUN_FAILURE_PROBES the next resolve measures again
    run_failures: dict[str, int] = field(default_factory=dict)

    @property
    def settled(self) -> bool:
        """Whether this result may be reused without measuring: no candidate is out on a maybe-transient failure."""
        return all(count >= RUN_FAILURE_PROBES for count in self.run_failures.values())

    @property
    def runs_on(self) -> str:
        return self.chosen_provider or self.provider


def label(variant: str, provider: str, base: str) -> str:
    """A candidate's name: the variant on the base provider, ``variant@provider`` elsewhere."""
    return variant if provider == base else f"{variant}@{provider}"


def parse_label(name: str, base: str) -> tuple[str, str]:
    variant, _, provider = name.partition("@")
    return variant, provider or base


def candidates(manifest: Manifest) -> tuple[list[str], dict[str, str]]:
    """The variants whose measured parity keeps the fp32 tier (fp32 first), and why the others do not."""
    chosen, excluded = [], {}
    for name, info in manifest.variants.items():
        if name == REFERENCE:
            chosen.insert(0, name)
        elif info.parity is None:
            excluded[name] = "no parity measured at conversion"
        elif info.parity.min_cosine < FP32_TIER:
            excluded[name] = f"min cosine {info.parity.min_cosine:.6f} < {FP32_TIER}"
        else:
            chosen.append(name)
    return chosen, excluded


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith(("model name", "Hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


# the engine code a probe's timings depend on: how batches are planned, padded, run and pooled
TIMED_CODE = ("embedder.py", "openvino_session.py", "sessions.py", "packing.py", "pooling.py", "tokenize.py")


def engine_code_digest(names: Sequence[str] = TIMED_CODE, folder: Path = Path(__file__).parent) -> str:
    """A digest of the engine files that run what a probe times: a change to them (e.g. how OpenVINO pads a
    batch) measures again, as a new machine does, instead of keeping a choice made on the old code."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(manifest: Manifest, provider: str, threads: int, also: Sequence[str] = ()) -> str:
    """What the measurement depends on: the model files, the machine, the providers and their runtimes, and
    the engine code that runs them."""
    import onnxruntime

    parts = [manifest.converted_at, json.dumps({k: v.size_bytes for k, v in sorted(manifest.variants.items())}),
             _cpu_model(), platform.machine(), str(threads), provider, onnxruntime.__version__, engine_code_digest()]
    if also or provider == "openvino":
        import os

        parts += ["+".join(also), _version("openvino"), os.environ.get("STUDIO_OPENVINO_PRECISION", "auto"),
                  os.environ.get("STUDIO_OPENVINO_PACK_TOKENS", "")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def probe_texts(max_seq_length: int, long_count: int = 32, short_count: int = 16) -> tuple[list[str], list[str]]:
    """``long_count`` long texts (``max_seq_length`` words: truncated, as long chunks are; 32, the default
    batch that ingesting embeds) and ``short_count`` short ones (12 words, a query), deterministic: a few
    seconds per candidate, once per machine. With 8 long texts OpenVINO's two streams got 4 rows each and
    its variants came within the margin of one another (0.074 / 0.071 s), so the choice flipped between
    probes; with 32 optimized@openvino led fp32@openvino by 9-14 % in two probes, as in the benchmark (before
    OpenVINO's static form; with it the two tie, 0.224 / 0.225 s, and fp32, the reference, stays)."""
    def text(start: int, words: int) -> str:
        return " ".join(_WORDS[(start + i) % len(_WORDS)] for i in range(words))

    return ([text(i, max_seq_length) for i in range(long_count)], [text(i * 3, 12) for i in range(short_count)])


def probe_parity(embedders: dict[str, Embed], reference: Embed, texts: Sequence[str],
                 failed: dict[str, str]) -> dict[str, float]:
    """Min cosine of each candidate against the reference on the probe texts (both unit vectors); a candidate
    below ``FP32_TIER``, or one that fails to run, lands in ``failed`` with the reason."""
    import numpy as np

    expected = np.asarray(reference(texts), dtype=np.float32)
    cosines = {}
    for name, embed in embedders.items():
        try:
            got = np.asarray(embed(texts), dtype=np.float32)
        except StudioError as exc:
            failed[name] = f"{RUN_FAILURE}: {exc.message}"
            continue
        cosines[name] = round(float((got * expected).sum(axis=1).min()), 7)
        if cosines[name] < FP32_TIER:
            failed[name] = f"min cosine {cosines[name]:.6f} < {FP32_TIER} on the probe"
    return cosines


def measure(embedders: dict[str, Embed], long_texts: Sequence[str], short_texts: Sequence[str],
            rounds: int = ROUNDS, failed: dict[str, str] | None = None) -> dict[str, float]:
    """Best seconds per candidate of embedding both batches; rounds interleaved with a rotating start (a slow
    moment of the machine hits every candidate), one warm-up pass each first. A candidate more than twice as
    slow as the best after the first round is not timed again (fp16 on a CPU): it cannot win. A candidate that
    fails to load or run (a missing file, a provider that cannot run it) is left out, its reason in ``failed``."""
    working = {}
    for name, embed in embedders.items():
        try:
            embed(long_texts[:2])
            embed(short_texts[:2])
            working[name] = embed
        except StudioError as exc:
            if failed is not None:
                failed[name] = f"{RUN_FAILURE}: {exc.message}"
            log.warning("variant auto: %s left out: %s", name, exc.message)
    embedders = working
    if not embedders:
        return {}
    best = {name: float("inf") for name in embedders}
    timed = list(embedders)
    for round_index in range(rounds):
        start = round_index % len(timed)
        for name in timed[start:] + timed[:start]:
            started = time.perf_counter()
            try:
                embedders[name](long_texts)
                embedders[name](short_texts)
            except StudioError as exc:  # it worked in the warm-up: out of this probe, not of the next one
                if failed is not None:
                    failed[name] = f"{RUN_FAILURE}: {exc.message}"
                log.warning("variant auto: %s left out: %s", name, exc.message)
                del best[name]
                continue
            best[name] = min(best[name], time.perf_counter() - started)
        if not best:
            return {}
        fastest = min(best.values())
        timed = [name for name in timed if name in best and best[name] <= 2 * fastest]
    return {name: round(seconds, 4) for name, seconds in best.items()}


def choose(seconds: dict[str, float], margin: float = MARGIN) -> str:
    """The first candidate, in the order given (the reference first, then the other variants, then the other
    providers), whose time is within ``margin`` of the fastest: the reference stays unless another is
    ``margin`` faster, and near-ties between the others (fp16 against fp32 on OpenVINO) never flip on noise."""
    fastest = min(seconds.values())
    return next(name for name, value in seconds.items() if value <= fastest * margin)


def read_cached(folder: Path, key: str) -> ProbeResult | None:
    try:
        data = json.loads((folder / PROBE_FILE).read_text(encoding="utf-8"))
        entry = data.get(key) if isinstance(data, dict) else None
        result = ProbeResult(**entry) if isinstance(entry, dict) else None
        if result is not None and not all(isinstance(n, int) for n in dict(result.run_failures).values()):
            return None
        return result
    except (OSError, ValueError, TypeError):
        return None  # missing, unreadable or of another shape: measure again


def write_cached(folder: Path, result: ProbeResult) -> None:
    """Merged into the file, atomically; a read-only model folder only costs a re-measure next time."""
    path = folder / PROBE_FILE
    try:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            data = {}
        data[result.fingerprint] = asdict(result)
        tmp = path.with_name(f".{PROBE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not remember the variant probe in %s: %s", folder, exc)


def remembered(manifest: Manifest, folder: Path, provider: str, threads: int,
               also: Sequence[str] = ()) -> ProbeResult | None:
    """What ``auto`` resolved to on this machine and providers, if it was measured already (never measures)."""
    return read_cached(folder, fingerprint(manifest, provider, threads, also))


def resolve(manifest: Manifest, folder: Path, provider: str, threads: int,
            make_embed: Callable[[str], Embed], also: Sequence[str] = ()) -> ProbeResult:
    """The probe result for this model, machine and provider (plus the ``also`` providers, compared on the
    same probe): remembered, or measured now (seconds, once). ``make_embed`` takes a candidate label."""
    key = fingerprint(manifest, provider, threads, also)
    cached = read_cached(folder, key)
    if cached is not None and cached.chosen in manifest.variants and cached.settled:
        return cached
    if cached is not None and not cached.settled:
        log.info("variant auto: measuring %s again (%s failed to run on the last probe)", folder.name,
                 ", ".join(name for name, n in cached.run_failures.items() if n < RUN_FAILURE_PROBES))
    earlier_failures = cached.run_failures if cached is not None else {}
    names, excluded = candidates(manifest)
    others = [label(name, other, provider) for other in also for name in names]
    parity: dict[str, float] = {}
    if len(names) + len(others) <= 1:
        result = ProbeResult(key, provider, names[0] if names else next(iter(manifest.variants)), {}, excluded,
                             _now())
    else:
        long_texts, short_texts = probe_texts(manifest.max_seq_length)
        embedders = {name: make_embed(name) for name in names + others}
        if others:
            reference = embedders[names[0]]
            parity = probe_parity({name: embedders[name] for name in others}, reference,
                                  [*long_texts, *short_texts], excluded)
            embedders = {name: embed for name, embed in embedders.items() if name not in excluded}
        log.info("variant auto: timing %s of %s (once per machine)", ", ".join(embedders), folder.name)
        seconds = measure(embedders, long_texts, short_texts, failed=excluded)
        chosen = choose(seconds) if seconds else (REFERENCE if REFERENCE in manifest.variants else names[0])
        variant, runs_on = parse_label(chosen, provider)
        run_failures = {name: earlier_failures.get(name, 0) + 1 for name, why in excluded.items()
                        if why.startswith(RUN_FAILURE)}
        result = ProbeResult(key, provider, variant, seconds, excluded, _now(),
                             chosen_provider="" if runs_on == provider else runs_on, parity=parity,
                             run_failures=run_failures)
        log.info("variant auto for %s: %s (%s)", folder.name, chosen,
                 ", ".join(f"{k} {v:.3f} s" for k, v in seconds.items()))
        if not seconds:  # every candidate failed (a bad setting, a broken file): not a measurement to keep
            return result
        # kept even when not settled: the next resolve reads the failure counts and measures again
    write_cached(folder, result)
    return result


def is_auto(variant: str | None) -> bool:
    return variant == AUTO_VARIANT


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
