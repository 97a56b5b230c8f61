"""Text extraction of the next pages overlapped with embedding of the pages already read.

A producer thread walks the document's pages (PyMuPDF, OCR) into a queue; the ingesting thread
takes them and, every ``window`` pages, chunks the new pages the way the final pass will (running
headers stripped with what the pages so far say) and embeds those chunks while the producer reads
on (ONNX Runtime and the tokenizer release the GIL). The vectors land in a cache keyed by the text
embedded. The final pass (strip over all pages, chunk, embed) is unchanged, so the stored chunks are
exactly today's; it takes each vector from the cache and embeds only the chunks whose text came out
differently (a running header that only the whole document revealed, a heading carried over).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.page_records import Page
from engine.running_lines import strip_running_lines

log = logging.getLogger(__name__)
WINDOW = 24  # pages per speculative embedding step: large enough for full batches, small enough to overlap
_END = object()


@dataclass
class _Failure:
    error: BaseException


@dataclass
class Overlapped:
    pages: list[Page]
    cache: dict[str, np.ndarray] = field(default_factory=dict)
    embed_seconds: float = 0.0  # embedding done while the pages were being read

    def vectors(self, texts: Sequence[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Vectors for ``texts`` from the cache, embedding (in one call) those it does not hold."""
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, embed(missing)))
        log.debug("overlap: %d of %d chunk texts embedded during extraction", len(texts) - len(missing), len(texts))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self.cache[t] for t in texts])


def _produce(pages: Iterable[Page], out: queue.Queue, stop: threading.Event) -> None:
    try:
        for page in pages:
            while not stop.is_set():
                try:
                    out.put(page, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        out.put(_END)
    except BaseException as exc:  # noqa: BLE001 - handed to the ingesting thread, which raises it there
        out.put(_Failure(exc))


def extract_overlapped(pages: Iterable[Page], chunk_texts: Callable[[list[Page]], list[str]],
                       embed: Callable[[list[str]], np.ndarray], on_page: Callable[[Page, int], None],
                       window: int = WINDOW) -> Overlapped:
    """Every page of ``pages`` (read in a producer thread), with the chunk vectors of the pages read
    so far computed meanwhile. ``chunk_texts(pages)`` gives the embedding texts of some (already
    cleaned) pages; ``embed(texts)`` their vectors; ``on_page(page, count)`` reports progress."""
    handoff: queue.Queue = queue.Queue(maxsize=4 * window)
    stop = threading.Event()
    producer = threading.Thread(target=_produce, args=(pages, handoff, stop), name="ingest-extract", daemon=True)
    result = Overlapped([])
    pending = 0
    producer.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                break
            if isinstance(item, _Failure):
                raise item.error
            result.pages.append(item)
            on_page(item, len(result.pages))
            pending += 1
            if pending >= window:
                _embed_recent(result, pending, chunk_texts, embed)
                pending = 0
    finally:
        stop.set()
        while producer.is_alive():  # let a blocked producer finish its put, then stop
            try:
                handoff.get(timeout=0.1)
            except queue.Empty:
                pass
        producer.join()
    return result


def _embed_recent(result: Overlapped, count: int, chunk_texts: Callable[[list[Page]], list[str]],
                  embed: Callable[[list[str]], np.ndarray]) -> None:
    started = time.perf_counter()
    cleaned = strip_running_lines(result.pages)[-count:]
    texts = [t for t in dict.fromkeys(chunk_texts(cleaned)) if t not in result.cache]
    if texts:
        result.cache.update(zip(texts, embed(texts)))
    result.embed_seconds += time.perf_counter() - started
