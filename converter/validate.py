"""Parity of every ONNX variant against sentence-transformers (torch fp32, CPU) on a fixed set of
texts: empty and whitespace-only strings, emoji, CJK, Cyrillic, Arabic, accents, numbers, code,
and texts three times longer than ``max_seq_length`` (so truncation is checked too). Models with
prompts are checked with each prompt as well."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.embedder import Embedder
from engine.manifest import Manifest, Parity
from engine.registry import spec_from_manifest

log = logging.getLogger(__name__)

BASE_TEXTS = (
    "",
    "   ",
    "\t\n ",
    "a",
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "ONNX Runtime runs the same graph on CPUs and GPUs, with cached sessions per provider.",
    "UPPER CASE, lower case and MiXeD CaSe words.",
    "Straße, Größe, naïve café, façade, smørrebrød, año.",
    "数据被存储在内存中，检索速度很快。",
    "日本語のテキストも埋め込みできます。",
    "한국어 문장도 포함됩니다.",
    "Привет! Как дела? Это проверка кириллицы.",
    "مرحبا بالعالم، هذا نص عربي.",
    "🙂🚀👍🏽 emoji 🎉 and symbols ∑ ∫ √ ≤ ≥",
    "Numbers: 3.14159, 2,718, 1e-9, -42 and 100%.",
    "def embed(texts: list[str]) -> np.ndarray:\n    return model.encode(texts)",
    "Line one.\n\nLine two after a blank line.\r\nWindows line end.",
    "supercalifragilisticexpialidocious " * 3,
    "Tables | with | pipes | and <b>html</b> & entities &amp; quotes \"like this\".",
)
LONG_SENTENCE = (
    "Retrieval systems split long documents into chunks, embed each chunk, and compare the query "
    "vector with every chunk vector by cosine similarity to find the most relevant passages. "
)
MAX_LONG_TOKENS = 4096


def long_texts(max_seq_length: int, count_tokens) -> list[str]:
    """Two texts of at least 3 x max_seq_length tokens (capped at 4096 tokens for huge windows)."""
    target = min(3 * max_seq_length, MAX_LONG_TOKENS)
    text = LONG_SENTENCE
    while count_tokens(text) < target:
        text += LONG_SENTENCE
    return [text, "Ünïcödé " + text.upper()]


def validation_texts(max_seq_length: int, count_tokens) -> list[str]:
    return list(BASE_TEXTS) + long_texts(max_seq_length, count_tokens)


@dataclass(frozen=True)
class Reference:
    texts: list[str]
    vectors: dict[str | None, np.ndarray]  # prompt name (None = no prompt) -> ST output
    label: str


def compare(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    diff = float(np.abs(ours.astype(np.float64) - reference.astype(np.float64)).max())
    a = ours / np.maximum(np.linalg.norm(ours, axis=1, keepdims=True), 1e-12)
    b = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    zero_rows = (np.linalg.norm(ours, axis=1) < 1e-12) & (np.linalg.norm(reference, axis=1) < 1e-12)
    cos = np.where(zero_rows, 1.0, (a * b).sum(axis=1))
    return diff, float(cos.min()), float(cos.mean())


def st_reference(source_folder: Path, prompts: dict[str, str], trust_remote_code: bool, count_tokens,
                 max_seq_length: int) -> Reference:
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = SentenceTransformer(str(source_folder), device="cpu", trust_remote_code=trust_remote_code)
    texts = validation_texts(max_seq_length, count_tokens)
    vectors: dict[str | None, np.ndarray] = {}
    # one batch for all texts: decoder graphs with left padding give batch-dependent outputs
    # in transformers itself, so both sides must pad the same texts together
    with torch.inference_mode():
        vectors[None] = model.encode(texts, batch_size=len(texts), convert_to_numpy=True, prompt="")
        for name in (n for n, text in prompts.items() if text):
            vectors[name] = model.encode(texts, batch_size=len(texts), convert_to_numpy=True, prompt_name=name)
    label = f"sentence-transformers {sentence_transformers.__version__} (torch {torch.__version__} fp32, cpu)"
    return Reference(texts, vectors, label)


def measure_variant(folder: Path, manifest: Manifest, variant: str, reference: Reference,
                    provider: str = "cpu") -> Parity:
    spec = spec_from_manifest(folder, manifest)
    embedder = Embedder(spec, variant=variant, provider=provider, batch_size=len(reference.texts),
                        max_batch_tokens=10**9)
    diffs, cosines, means = [], [], []
    for prompt_name, expected in reference.vectors.items():
        prompt = "" if prompt_name is None else manifest.prompts[prompt_name]
        ours = embedder.embed(reference.texts, prompt=prompt)
        diff, min_cos, mean_cos = compare(ours, expected)
        diffs.append(diff)
        cosines.append(min_cos)
        means.append(mean_cos)
    embedder.sessions.clear()
    count = len(reference.texts) * len(reference.vectors)
    return Parity(max(diffs), min(cosines), float(np.mean(means)), count, reference.label)
