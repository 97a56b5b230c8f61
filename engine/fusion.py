"""Search modes and reciprocal-rank fusion (Cormack et al. 2009): a row's fused score is
``sum(weight_r / (k + rank_r))`` over the retrievers r that returned it (rank 1-based)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.errors import InputError

MODES = ("dense", "keyword", "hybrid")
RRF_K = 60
CANDIDATES = 100  # each retriever's depth before fusion


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"{mode!r} is not a search mode.", f"use one of {', '.join(MODES)}", param="mode")
    return mode


@dataclass(frozen=True)
class Fused:
    row: int
    score: float
    sources: tuple[tuple[str, float], ...]  # (retriever, its own score), in the order the rankings were given


def dense_weights(dense_weight: float) -> dict[str, float]:
    """The hybrid weight setting (share of the dense side, 0..1) as per-retriever RRF weights."""
    if not 0.0 <= dense_weight <= 1.0:
        raise InputError(f"The hybrid dense weight must lie between 0 and 1, not {dense_weight}.",
                         "0 is keyword only, 1 dense only: e.g. --dense-weight 0.5 or STUDIO_HYBRID_DENSE_WEIGHT=0.5")
    return {"dense": dense_weight, "keyword": 1.0 - dense_weight}


def reciprocal_rank_fusion(rankings: Mapping[str, tuple[Sequence[int], Sequence[float]]],
                           weights: Mapping[str, float] | None = None, k: int = RRF_K) -> list[Fused]:
    """Fuse ``{retriever: (rows best first, scores)}``; ties keep the order of first appearance."""
    fused: dict[int, float] = {}
    sources: dict[int, list[tuple[str, float]]] = {}
    for name, (rows, scores) in rankings.items():
        weight = 1.0 if weights is None else weights.get(name, 1.0)
        for rank, (row, score) in enumerate(zip(rows, scores), 1):
            row = int(row)
            fused[row] = fused.get(row, 0.0) + weight / (k + rank)
            sources.setdefault(row, []).append((name, float(score)))
    order = sorted(fused, key=lambda r: -fused[r])  # stable: first appearance breaks ties
    return [Fused(r, fused[r], tuple(sources[r])) for r in order]


def resolve_mode(requested: str | None, default: str, has_text: bool, has_vector: bool) -> str:
    """The mode a search runs in: the one asked for, else the collection's default; a query given only as
    a vector falls back to dense when the mode was not asked for explicitly."""
    mode = check_mode(requested or default)
    if mode != "dense" and not has_text:
        if requested is None and has_vector:
            return "dense"
        raise InputError(f"A {mode} search needs a query text.", "pass the query as text, or use mode dense",
                         param="mode")
    if mode != "keyword" and not has_vector:
        raise InputError(f"A {mode} search needs a query vector.", "embed the query, or use mode keyword",
                         param="mode")
    return mode
