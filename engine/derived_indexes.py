"""The indexes derived from a collection's segments, written in the commit path of each generation:
``indexes/keyword-g<N>/`` (BM25) and, at or above the collection's ANN threshold, ``indexes/ann-g<N>.usearch``
(+ ``.keys.json``). They are written before the manifest that names them (collection.json's
``indexes``), so a crash leaves the previous generation and its indexes in force; the ANN index is
updated incrementally from the previous generation's (only the added/removed documents' keys change).
Index files the manifest stops naming are kept for the same retention as segments (a reader may
still hold an older manifest), then removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from engine.ann_index import AnnIndex, plan_update
from engine.errors import CollectionError
from engine.keyword_index import KeywordIndex
from engine.retrieval import INDEXES, SearchConfig, Segment

log = logging.getLogger(__name__)
GENERATION = re.compile(r"-g(\d+)(?:\.|$)")


def build(root: Path, info, segment_files: Callable[[str], tuple[Path, Path]]) -> dict:
    """Write generation ``info.generation``'s indexes; returns collection.json's ``indexes`` entry: the
    file names (``keyword``, ``ann`` when built) and the ``seconds`` each took."""
    if not info.documents:
        return {}
    config = SearchConfig.from_dict(info.search)
    folder = Path(root) / INDEXES
    folder.mkdir(exist_ok=True)
    segments = [Segment(d.doc_id, d.name, d.segment, *segment_files(d.segment)) for d in info.documents]
    started = time.perf_counter()
    keyword_name = f"keyword-g{info.generation}"
    KeywordIndex.build([t for s in segments for t in s.texts()], config.language).save(folder / keyword_name)
    indexes: dict = {"keyword": keyword_name}
    keyworded = time.perf_counter()
    if sum(len(s) for s in segments) >= config.ann.threshold:
        indexes["ann"] = _update_ann(folder, info, segments, config)
    seconds = {"keyword": round(keyworded - started, 3), "ann": round(time.perf_counter() - keyworded, 3)}
    log.info("indexes of %s g%d: keyword %.2fs, ann %.2fs", info.name, info.generation, *seconds.values())
    return {**indexes, "seconds": seconds}


def _update_ann(folder: Path, info, segments: list[Segment], config: SearchConfig) -> str:
    previous = (info.indexes or {}).get("ann")
    ann = None
    if previous and (folder / previous).is_file():
        try:
            ann = AnnIndex.load(folder / previous, view=False)
        except CollectionError as exc:
            log.warning("rebuilding the ANN index of %s: %s", info.name, exc.message)
    if ann is None:
        ann = AnnIndex.empty(info.dim, config.ann)
    keymap, removed, added = plan_update(ann.keymap, [(s.stem, len(s)) for s in segments])
    by_stem = {s.stem: s for s in segments}
    for first, count in removed:
        ann.remove(first, count)
    for stem, first, _ in added:
        ann.add(first, by_stem[stem].vectors)
    ann.keymap = keymap
    name = f"ann-g{info.generation}.usearch"
    ann.save(folder / name)
    return name


def collect_garbage(root: Path, info, retain_seconds: float = 120.0) -> None:
    """Retire and remove index files the manifest no longer names, as segments are: the previous
    generation's are retired now (their mtime marks when), older ones go ``retain_seconds`` after they
    were retired (a reader may still hold a manifest that names them)."""
    folder = Path(root) / INDEXES
    keep = {v for v in (info.indexes or {}).values() if isinstance(v, str)}
    now = time.time()
    for entry in folder.iterdir() if folder.is_dir() else ():
        if ".tmp-" in entry.name and entry.name.startswith("."):  # a killed writer's (we hold the lock)
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            continue
        match = GENERATION.search(entry.name)
        base = entry.name.removesuffix(".keys.json")
        if entry.name.startswith(".") or match is None or base in keep or int(match.group(1)) >= info.generation:
            continue
        if int(match.group(1)) == info.generation - 1:
            with contextlib.suppress(OSError):
                os.utime(entry)  # retired by this commit: the retention clock starts now
            continue
        try:
            retired_for = now - entry.stat().st_mtime
        except OSError:
            continue
        if retired_for <= retain_seconds:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
