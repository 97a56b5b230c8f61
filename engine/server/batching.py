"""Dynamic batching: concurrent requests share inference calls.

One queue per (model, variant, provider). A request's texts wait in the queue with their token
counts; a worker task takes texts from the oldest requests first until the batch holds
``max_batch_items`` texts or ``max_batch_tokens`` tokens (TEI's rule: a token budget, FIFO), or
until the oldest waiting text has waited ``max_wait`` seconds. Then a free worker lingers (up to
``linger`` seconds) for the callers its last batch answered: a client that sends its next request as
soon as it has its answer (an SDK in a loop, a closed-loop load test) comes back within a millisecond or
two, and without the wait 8 such clients split into two cohorts that take turns with half-size batches
(mean 3.9 texts; with a 1 ms linger 7.9, and 627 -> 793 texts/s on OpenVINO, docs/benchmarks.md "HTTP
API"). A caller that sends again ends the wait at once, so a lone client waits for nothing; callers that
do not come back cost one ``linger``. A big request may be spread over
several batches and a batch may serve many requests; results go back to each request in its own
order. Inference runs in a thread (ONNX Runtime releases the GIL), so the event loop keeps
accepting requests while the model runs.

The texts arrive tokenized (the route tokenizes each request once, for the budget and ``usage``)
and go to ``Embedder.embed_encoded`` as they are; the batch this queue forms is the batch the
model runs (the embedder's own ``STUDIO_BATCH_SIZE`` does not split it again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from engine.embedder import Embedder
from engine.errors import InferenceError, ServiceBusyError, StudioError
from engine.server.metrics import ServerMetrics
from engine.tokenize import Encoded

log = logging.getLogger(__name__)
QueueKey = tuple[str, str, str]  # model, variant, resolved provider


@dataclass(frozen=True)
class BatchLimits:
    max_items: int
    max_tokens: int
    max_wait: float  # seconds
    capacity: int  # texts waiting before new requests are refused
    linger: float = 0.0  # seconds a free worker waits for the callers it just answered to send again


@dataclass(eq=False)
class Job:
    """One request's texts on their way through the queue."""

    embedder: Embedder
    prompt: str
    texts: Sequence[Encoded]  # tokenized once by the route (prompt included)
    lengths: Sequence[int]
    future: asyncio.Future
    enqueued: float
    prompt_length: int = 0
    taken: int = 0  # texts handed to a batch so far
    remaining: int = 0  # texts whose vectors have not come back yet
    vectors: np.ndarray | None = None

    @property
    def waiting(self) -> int:
        return len(self.texts) - self.taken


@dataclass(frozen=True)
class Slice:
    job: Job
    start: int
    stop: int


@dataclass
class _Group:
    """Texts of one batch that share an embedder and a prompt: one ``embed_encoded`` call."""

    embedder: Embedder
    prompt: str
    prompt_length: int = 0
    slices: list[Slice] = field(default_factory=list)

    def texts(self) -> list[Encoded]:
        return [text for s in self.slices for text in s.job.texts[s.start:s.stop]]


def take_batch(pending: deque[Job], max_items: int, max_tokens: int) -> list[Slice]:
    """Texts for the next batch, oldest request first, within the item and token budgets (always at
    least one text). Drops requests whose caller has gone away. Pure apart from advancing the jobs."""
    slices: list[Slice] = []
    items = tokens = 0
    while pending and items < max_items:
        job = pending[0]
        if job.future.done():  # cancelled (client disconnected) or failed in an earlier batch
            pending.popleft()
            continue
        start = stop = job.taken
        while stop < len(job.texts) and items < max_items:
            if items and tokens + job.lengths[stop] > max_tokens:
                break
            tokens += job.lengths[stop]
            items += 1
            stop += 1
        if stop > start:
            slices.append(Slice(job, start, stop))
            job.taken = stop
        if job.waiting:
            break  # the budget is spent
        pending.popleft()
    return slices


def group_slices(slices: list[Slice]) -> list[_Group]:
    groups: dict[tuple[int, str], _Group] = {}
    for s in slices:
        key = (id(s.job.embedder), s.job.prompt)
        if key not in groups:
            groups[key] = _Group(s.job.embedder, s.job.prompt, s.job.prompt_length)
        groups[key].slices.append(s)
    return list(groups.values())


def _infer(groups: list[_Group], limits: BatchLimits) -> list[np.ndarray]:
    """Runs in the inference thread. The queue's batch runs as one model batch: the embedder gets the
    queue's limits, not its own smaller default."""
    return [group.embedder.with_batching(limits.max_items, limits.max_tokens).embed_encoded(
                group.texts(), group.prompt_length) for group in groups]


class EmbeddingQueue:
    def __init__(self, key: QueueKey, limits: BatchLimits, executor: ThreadPoolExecutor, metrics: ServerMetrics,
                 slots: int = 1) -> None:
        self.key = key
        self.limits = limits
        self.executor = executor
        self.metrics = metrics
        self._pending: deque[Job] = deque()
        self._waiting_items = 0
        self._waiting_tokens = 0
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(slots)
        self._running: set[asyncio.Task] = set()
        self._provider_recorded = False
        self._answered = 0  # requests answered by the last batches whose callers have not sent another yet
        self._worker = asyncio.create_task(self._run(), name=f"embedding-queue-{'/'.join(key)}")

    async def embed(self, embedder: Embedder, texts: Sequence[Encoded], lengths: Sequence[int], prompt: str,
                    prompt_length: int = 0) -> np.ndarray:
        """Vectors for the tokenized ``texts`` in their order, computed in batches shared with other requests."""
        if not texts:
            return np.zeros((0, embedder.dim), dtype=np.float32)
        if self._waiting_items and self._waiting_items + len(texts) > self.limits.capacity:
            raise ServiceBusyError(
                f"The server is busy: {self._waiting_items} texts are already waiting for {self.key[0]}.",
                "retry in a moment, or send fewer texts at once",
            )
        loop = asyncio.get_running_loop()
        job = Job(embedder, prompt, texts, lengths, loop.create_future(), loop.time(), prompt_length=prompt_length,
                  remaining=len(texts))
        self._pending.append(job)
        self._answered = max(0, self._answered - 1)
        self._add_waiting(len(texts), sum(lengths))
        self._arrived.set()
        try:
            return await job.future
        finally:
            if not job.future.done():  # the caller went away: drop what has not been batched yet
                job.future.cancel()
            if job.waiting:
                self._add_waiting(-job.waiting, -sum(job.lengths[job.taken:]))
                job.taken = len(job.texts)

    def _add_waiting(self, items: int, tokens: int) -> None:
        self._waiting_items = max(0, self._waiting_items + items)
        self._waiting_tokens = max(0, self._waiting_tokens + tokens)
        self.metrics.queue_depth.labels(*self.key).set(self._waiting_items)

    def _full(self) -> bool:
        return self._waiting_items >= self.limits.max_items or self._waiting_tokens >= self.limits.max_tokens

    def _oldest(self) -> float | None:
        return next((job.enqueued for job in self._pending if not job.future.done()), None)

    async def _gather(self) -> None:
        """Wait until a batch is worth running: full, or the oldest text has waited max_wait, and the callers the
        last batch answered have sent their next request or ``linger`` has passed."""
        loop = asyncio.get_running_loop()
        lingering = loop.time() + self.limits.linger
        while not self._full():
            oldest = self._oldest()
            if oldest is None:
                return
            remaining = oldest + self.limits.max_wait - loop.time()
            if self._answered > 0:
                remaining = max(remaining, lingering - loop.time())
            if remaining <= 0:
                self._answered = 0  # they did not come back in time: do not wait for them again
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                self._answered = 0
                return

    async def _run(self) -> None:
        while True:
            while self._waiting_items <= 0:
                self._arrived.clear()
                await self._arrived.wait()
            await self._slots.acquire()
            try:
                await self._gather()
                slices = take_batch(self._pending, self.limits.max_items, self.limits.max_tokens)
            except Exception:  # the worker must outlive any bug, or every later request would hang
                log.exception("embedding queue %s failed to form a batch", "/".join(self.key))
                slices = []
            if not slices:
                # every waiting job was cancelled or failed a moment ago; let their callers' cleanup
                # (which adjusts the counters) run before looking again
                self._slots.release()
                await asyncio.sleep(0)
                continue
            self._add_waiting(-sum(s.stop - s.start for s in slices),
                              -sum(sum(s.job.lengths[s.start:s.stop]) for s in slices))
            task = asyncio.create_task(self._execute(slices))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _execute(self, slices: list[Slice]) -> None:
        try:
            await self._run_batch(slices)
        except asyncio.CancelledError:  # close(): these jobs left the pending queue, so only this task can answer them
            self._fail(slices, _shutting_down())
            raise
        except StudioError as exc:
            self._fail(slices, exc)
        except Exception as exc:  # a bug or an ORT failure the embedder did not convert: never leak it
            log.error("inference failed for %s", "/".join(self.key), exc_info=exc)
            self._fail(slices, InferenceError("Embedding failed inside the server.", "see the server log"))
        finally:
            self._slots.release()

    async def _run_batch(self, slices: list[Slice]) -> None:
        loop = asyncio.get_running_loop()
        labels = self.key
        started = loop.time()
        items = sum(s.stop - s.start for s in slices)
        tokens = sum(sum(s.job.lengths[s.start:s.stop]) for s in slices)
        self.metrics.batch_size.labels(*labels).observe(items)
        self.metrics.batch_requests.labels(*labels).observe(len({id(s.job) for s in slices}))
        self.metrics.batch_tokens.labels(*labels).observe(tokens)
        for s in slices:
            self.metrics.queue_wait_seconds.labels(*labels).observe(max(0.0, started - s.job.enqueued))
        groups = group_slices(slices)
        clock = time.perf_counter()
        results = await loop.run_in_executor(self.executor, _infer, groups, self.limits)
        self.metrics.inference_seconds.labels(*labels).observe(time.perf_counter() - clock)
        self.metrics.texts.labels(*labels).inc(items)
        self.metrics.tokens.labels(*labels).inc(tokens)
        for group, vectors in zip(groups, results):
            self._deliver(group, vectors)
        if not self._provider_recorded:
            try:  # read in the inference thread: info() may have to reload a session the cache evicted
                info = await loop.run_in_executor(self.executor, groups[0].embedder.info)
            except Exception:  # noqa: BLE001 - a metric must not fail texts already answered (or their other parts)
                log.warning("could not read the provider of %s for the metrics", "/".join(self.key), exc_info=True)
                return
            self.metrics.provider.labels(info["model"], info["variant"], info["provider_requested"],
                                         info["provider"]).set(1)
            self._provider_recorded = True

    def _deliver(self, group: _Group, vectors: np.ndarray) -> None:
        row = 0
        for s in group.slices:
            count = s.stop - s.start
            job = s.job
            if not job.future.done():
                if job.vectors is None:
                    job.vectors = np.empty((len(job.texts), vectors.shape[1]), dtype=np.float32)
                job.vectors[s.start:s.stop] = vectors[row:row + count]
                job.remaining -= count
                if job.remaining == 0:
                    job.future.set_result(job.vectors)
                    self._answered += 1
            row += count

    def _fail(self, slices: list[Slice], exc: StudioError) -> None:
        for s in slices:
            job = s.job
            if not job.future.done():
                job.future.set_exception(exc)
                # its texts still waiting will never run: count them out now, not when the caller wakes
                self._add_waiting(-job.waiting, -sum(job.lengths[job.taken:]))
                job.taken = len(job.texts)

    async def close(self) -> None:
        self._worker.cancel()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(self._worker, *self._running, return_exceptions=True)
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(_shutting_down())


def _shutting_down() -> ServiceBusyError:
    return ServiceBusyError("The server is shutting down.", "retry on another instance")


class Batcher:
    """The queues of one server, created on first use; one inference thread pool for all of them."""

    def __init__(self, limits: BatchLimits, metrics: ServerMetrics, threads: int = 1) -> None:
        self.limits = limits
        self.metrics = metrics
        self.threads = threads
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inference")
        self._queues: dict[QueueKey, EmbeddingQueue] = {}

    def queue(self, key: QueueKey) -> EmbeddingQueue:
        if key not in self._queues:
            self._queues[key] = EmbeddingQueue(key, self.limits, self.executor, self.metrics, self.threads)
        return self._queues[key]

    async def embed(self, embedder: Embedder, texts: Sequence[Encoded], lengths: Sequence[int], prompt: str,
                    prompt_length: int = 0) -> np.ndarray:
        key = (embedder.spec.name, embedder.variant, embedder.provider)  # the provider that really runs
        return await self.queue(key).embed(embedder, texts, lengths, prompt, prompt_length)

    async def close(self) -> None:
        await asyncio.gather(*(q.close() for q in self._queues.values()))
        self._queues.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)
