"""Approximate nearest neighbours: one usearch HNSW index per collection (inner product over the
collection's unit vectors), with its vectors stored as f32, f16 or i8.

Why usearch rather than faiss: it adds and removes keys in place (faiss' HNSW cannot remove), opens a
saved index as a memory-mapped view (every process shares the page cache instead of holding a copy),
stores f16/i8 natively, and is one small wheel. ``python -m engine bench-search --compare-faiss``
measures both side by side.

Keys are stable chunk ids: each document segment gets a block of consecutive keys when it enters the
index (``KeyMap``), so a delete or a replaced document only touches its own keys.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import CollectionError, InputError

log = logging.getLogger(__name__)
DTYPES = ("f32", "f16", "i8")



def _usearch_index():
    """usearch's Index class. onnxruntime is imported first: usearch 2.26 loaded before onnxruntime 1.32
    makes the later ``import onnxruntime`` crash the process (SIGSEGV, measured here), and every process
    that searches may also embed."""
    import onnxruntime  # noqa: F401
    from usearch.index import Index

    return Index

@dataclass(frozen=True)
class AnnOptions:
    threshold: int = 20_000  # chunks; exact search below (see README: measured crossover)
    dtype: str = "f16"
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 256  # STUDIO_ANN_EF for new collections; see Settings.ann_ef
    rescore: int = 4  # candidates per wanted hit, re-ranked exactly against the float32 segments

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise InputError(f"{self.dtype!r} is not an ANN vector type.", f"use one of {', '.join(DTYPES)}")

    @classmethod
    def from_dict(cls, data: Mapping) -> AnnOptions:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class KeyMap:
    """segment stem -> (first key, count); ``next_key`` is the first key never handed out."""

    blocks: dict[str, tuple[int, int]] = field(default_factory=dict)
    next_key: int = 0

    def to_json(self) -> str:
        return json.dumps({"blocks": {s: list(b) for s, b in self.blocks.items()}, "next_key": self.next_key})

    @classmethod
    def from_json(cls, text: str) -> KeyMap:
        data = json.loads(text)
        return cls({s: (int(b[0]), int(b[1])) for s, b in data["blocks"].items()}, int(data["next_key"]))


def plan_update(old: KeyMap, segments: Sequence[tuple[str, int]]) -> tuple[KeyMap, list[tuple[int, int]],
                                                                              list[tuple[str, int, int]]]:
    """What changes between the indexed segments and the wanted ``[(stem, count)]``: the new key map,
    key ranges to remove ``[(first, count)]`` and segments to add ``[(stem, first, count)]``."""
    wanted = dict(segments)
    removed = [block for stem, block in old.blocks.items() if stem not in wanted]
    blocks = {s: b for s, b in old.blocks.items() if s in wanted}
    added, next_key = [], old.next_key
    for stem, count in segments:
        if stem not in blocks:
            blocks[stem] = (next_key, count)
            added.append((stem, next_key, count))
            next_key += count
    return KeyMap(blocks, next_key), removed, added


SEED_NODES = 1024  # nodes inserted by one thread before the rest go in parallel (see AnnIndex.add)


class AnnIndex:
    """A usearch index plus its key map; searching is thread-safe, changing it is for the commit path."""

    def __init__(self, index, keymap: KeyMap) -> None:
        self._index = index
        self.keymap = keymap
        self._ef_lock = threading.Lock()

    @classmethod
    def empty(cls, dim: int, options: AnnOptions) -> AnnIndex:
        Index = _usearch_index()

        index = Index(ndim=dim, metric="ip", dtype=options.dtype, connectivity=options.connectivity,
                      expansion_add=options.expansion_add, expansion_search=options.expansion_search)
        return cls(index, KeyMap())

    def __len__(self) -> int:
        return len(self._index)

    def add(self, first_key: int, vectors: np.ndarray, threads: int = 0) -> None:
        """Add rows under consecutive keys. The graph's first SEED_NODES nodes go in one thread at a time:
        nodes inserted concurrently into a near-empty graph miss each other, and a 120-node graph built by two
        threads left about one true top-8 hit in 140 outside the 32 candidates (none when built by one)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        keys = np.arange(first_key, first_key + len(vectors), dtype=np.uint64)
        seeded = max(0, min(len(vectors), SEED_NODES - len(self._index)))
        for part, part_threads in ((slice(0, seeded), 1), (slice(seeded, None), threads)):
            if len(keys[part]):
                self._index.add(keys[part], vectors[part], threads=part_threads)

    def remove(self, first_key: int, count: int) -> None:
        if count:
            self._index.remove(np.arange(first_key, first_key + count, dtype=np.uint64))

    def search(self, query: np.ndarray, count: int, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Keys and inner-product similarities of the ``count`` nearest vectors, best first."""
        count = min(count, len(self._index))
        if count < 1:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.float32)
        if ef is not None and ef != self._index.expansion_search:
            with self._ef_lock:
                self._index.expansion_search = ef
        matches = self._index.search(np.asarray(query, dtype=np.float32).reshape(-1), count, threads=1)
        return np.asarray(matches.keys, dtype=np.uint64), (1.0 - np.asarray(matches.distances)).astype(np.float32)

    # -- persistence --------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """The index file and its ``.keys.json`` sidecar, each written to a temporary name, fsynced, renamed."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self._index.save(str(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        keys_tmp = tmp.with_name(tmp.name + ".keys")
        with open(keys_tmp, "w", encoding="utf-8") as handle:
            handle.write(self.keymap.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(keys_tmp, keys_path(path))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, view: bool = True) -> AnnIndex:
        """``view``: memory-map the file (read-only, shared between processes); else load a mutable copy."""
        Index = _usearch_index()

        try:
            keymap = KeyMap.from_json(keys_path(path).read_text(encoding="utf-8"))
            index = Index.restore(str(path), view=view)
            if index is None and not Path(path).exists():  # usearch answers None for a missing file
                raise FileNotFoundError(2, "No such file or directory", str(path))
        except FileNotFoundError:
            raise  # retired by a writer meanwhile: the collection retries with a newer manifest
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise CollectionError(f"The ANN index {Path(path).name} is unreadable: {exc}",
                                  "rebuild it: python -m engine reindex --collection NAME") from None
        if index is None:
            raise CollectionError(f"The ANN index {Path(path).name} is not a usearch index.",
                                  "rebuild it: python -m engine reindex --collection NAME")
        return cls(index, keymap)


def keys_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".keys.json")
