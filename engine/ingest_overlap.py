"""Text extraction of the next pages overlapped with embedding of the pages already read.

A producer thread walks the document's pages (PyMuPDF, OCR) into a queue; the ingesting thread first
runs ``prepare`` (compiling the embedding session: 0.8-1.6 s on a cold process) while the first pages
are read, then takes the pages and, every ``window`` pages, chunks the new pages the way the final pass
will (running headers stripped with what the pages so far say) and embeds those chunks while the
producer reads on (ONNX Runtime, OpenVINO and the tokenizer release the GIL). The vectors land in a
cache keyed by the text embedded. The final pass (strip over all pages, chunk, embed) is unchanged, so
the stored chunks are exactly a sequential ingest's; it takes each vector from the cache and embeds only
the chunks whose text came out differently (a running header that only the whole document revealed, a
heading carried over).

Embedding during extraction pays while extraction is the long part (OCR; a remote OCR service, where the
CPU idles while it answers), and costs where embedding is: the two then share the cores, and the pages
wait anyway. So after each window embedded meanwhile, the pages the producer read during it decide: fewer
than a window, and the next window is embedded as well; a window or more, and the pages wait, until one
takes longer to come than a page took to embed (an OCR page among text pages: then it measures again) or
until the last page is read, after which the final pass embeds the rest in full batches. Measured on a
2-core Zen 4, ``book_free_culture_352p.pdf`` (352 pages read in 2.2 s, 1757 chunks embedded in 7.1 s on
int8-static, 10.8 s on fp32 · openvino), fp32, alternating runs: every window embedded during extraction
16.5-16.8 s, the pages' pace deciding 14.0-15.7 s; with 30 ms of latency a page (a remote OCR service)
17.3-17.9 s and 16.6-18.8 s, against 26.0-29.5 s one after the other (docs/benchmarks.md, "Ingest: overlap
only where extraction is the long part").
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
            if stop.is_set():  # the ingesting thread gave up: read no further
                return
            out.put(page)
        out.put(_END)
    except BaseException as exc:  # noqa: BLE001 - handed to the ingesting thread, which raises it there
        out.put(_Failure(exc))


def extract_overlapped(pages: Iterable[Page], chunk_texts: Callable[[list[Page]], list[str]],
                       embed: Callable[[list[str]], np.ndarray], on_page: Callable[[Page, int], None],
                       window: int = WINDOW, prepare: Callable[[], object] | None = None) -> Overlapped:
    """Every page of ``pages`` (read in a producer thread), with the chunk vectors of the pages read
    so far computed meanwhile while extraction is the slower side. ``chunk_texts(pages)`` gives the
    embedding texts of some (already cleaned) pages; ``embed(texts)`` their vectors; ``on_page(page,
    count)`` reports progress; ``prepare()`` runs first, while the producer reads."""
    handoff: queue.Queue = queue.Queue()  # unbounded: the producer never waits for the embedding (pages are text)
    stop = threading.Event()
    producer = threading.Thread(target=_produce, args=(pages, handoff, stop), name="ingest-extract", daemon=True)
    result = Overlapped([])
    pending = 0
    speculate = True
    embed_pace = 0.0  # seconds a page's chunks took to embed, in the last window embedded during extraction
    producer.start()
    try:
        if prepare is not None:
            prepare()
        while True:
            asked = time.perf_counter()
            item = handoff.get()
            waited = time.perf_counter() - asked
            if item is _END:
                break
            if isinstance(item, _Failure):
                raise item.error
            result.pages.append(item)
            on_page(item, len(result.pages))
            pending += 1
            if not speculate and waited > embed_pace:  # a page took longer to come than one to embed (an OCR page)
                speculate = True
            if speculate and pending >= window and producer.is_alive():  # once every page is read, the final pass
                waiting = handoff.qsize()
                embed_pace = _embed_recent(result, pending, chunk_texts, embed) / pending
                pending = 0
                # the producer read a window of pages meanwhile: embedding is the long part, the pages wait for it
                speculate = handoff.qsize() - waiting < window
    finally:
        stop.set()
        producer.join()
    return result


def _embed_recent(result: Overlapped, count: int, chunk_texts: Callable[[list[Page]], list[str]],
                  embed: Callable[[list[str]], np.ndarray]) -> float:
    """Chunk and embed the last ``count`` pages read; returns the seconds it took (also added to the total)."""
    started = time.perf_counter()
    cleaned = strip_running_lines(result.pages)[-count:]
    texts = [t for t in dict.fromkeys(chunk_texts(cleaned)) if t not in result.cache]
    if texts:
        result.cache.update(zip(texts, embed(texts)))
    seconds = time.perf_counter() - started
    result.embed_seconds += seconds
    return seconds
