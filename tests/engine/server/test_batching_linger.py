"""The batch queue's linger: a free worker waits for the callers its last batch answered, so closed-loop clients
share one batch instead of taking turns in two half-size cohorts; a lone caller and callers that never come back
are not made to wait again and again. The real default model (fp32 on ONNX Runtime) runs every batch."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engine.server.batching import BatchLimits, EmbeddingQueue
from engine.server.metrics import ServerMetrics

MODEL = "all-minilm-l6-v2"


class RecordingQueue(EmbeddingQueue):
    """The real queue, noting the texts of each batch it runs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []
        self.running = asyncio.Event()  # set when the first batch has begun

    async def _run_batch(self, slices) -> None:
        self.batches.append(sum(s.stop - s.start for s in slices))
        self.running.set()
        await super()._run_batch(slices)


@pytest.fixture()
def embedder(studio):
    return studio.embedder(MODEL, "fp32", "cpu")


def _run(embedder, linger: float, scenario):
    """``scenario(queue, embed)`` run on a fresh queue; ``embed(text)`` is one caller's request."""
    async def main():
        executor = ThreadPoolExecutor(max_workers=1)
        limits = BatchLimits(max_items=16, max_tokens=4096, max_wait=0.0, capacity=1000, linger=linger)
        queue = RecordingQueue((MODEL, "fp32", "cpu"), limits, executor, ServerMetrics())

        async def embed(text: str) -> np.ndarray:
            encoded = embedder.tokenizer.encode([text])
            return await queue.embed(embedder, encoded, [len(encoded[0].ids)], "")

        try:
            return queue, await scenario(queue, embed)
        finally:
            await queue.close()
            executor.shutdown(wait=True)

    return asyncio.run(main())


def test_closed_loop_callers_merge_into_one_batch(embedder):
    reference = embedder.embed([f"claim {i} about a protein" for i in range(4)])

    async def scenario(queue, embed):
        async def client(index: int, late: bool) -> list[np.ndarray]:
            if late:
                # arrive while the first batch runs, whatever this machine's speed: the event wakes these two before
                # the inference thread's answer can be handled, so they are waiting when it is delivered (a fixed
                # 2 ms delay let a fast machine finish the first batch before they came, and the cohorts alternated)
                await queue.running.wait()
            vectors = []
            for _ in range(8):
                vectors.append(await embed(f"claim {index} about a protein"))
                await asyncio.sleep(0.005)  # the answer's way back and the next request's way in, as over HTTP
            return vectors

        # two cohorts: clients 2 and 3 arrive while the batch of 0 and 1 runs
        return await asyncio.gather(client(0, False), client(1, False), client(2, True), client(3, True))

    queue, answers = _run(embedder, 0.5, scenario)
    for index, vectors in enumerate(answers):  # every caller got its own text's vector each time
        for vector in vectors:
            assert np.abs(vector - reference[index]).max() < 1e-5
    assert sum(queue.batches) == 32
    # after the first cohort's first batch, every batch holds all four callers (the worker waited for the two it
    # had just answered) until the first two are done: the second two finish alone
    assert queue.batches == [2] + [4] * 7 + [2], queue.batches


def test_a_lone_caller_never_waits_for_the_linger(embedder):
    async def scenario(queue, embed):
        await embed("warm-up")
        began = time.perf_counter()
        for i in range(5):
            await embed(f"query {i}")  # it comes back itself, which ends each wait at once
        return time.perf_counter() - began

    queue, seconds = _run(embedder, 1.0, scenario)
    assert seconds < 1.0, seconds  # five waits of the 1 s linger would take 5 s
    assert queue.batches == [1] * 6


def test_callers_that_do_not_come_back_cost_one_linger_then_none(embedder):
    async def scenario(queue, embed):
        await asyncio.gather(embed("one-shot a"), embed("one-shot b"))  # answered; they never send again
        timings = []
        for text in ("next caller", "next caller again"):
            began = time.perf_counter()
            await embed(text)
            timings.append(time.perf_counter() - began)
        return timings

    _, (first, second) = _run(embedder, 1.0, scenario)
    assert first >= 0.95, first  # waited for one of the two that had been answered, up to the linger
    # the wait ended the count: the caller's own return is not waited for again (half the linger: room for a
    # slow machine's inference, none for a second wait)
    assert second < 0.5, second


def test_closing_the_queue_answers_the_requests_whose_batch_is_running(embedder):
    """close() cancels the batches in flight; a request whose texts were all taken into one had left the pending
    queue, and was never answered (its caller waited forever). It now gets the shutting-down error."""
    from engine.errors import ServiceBusyError

    texts = [f"claim {i} about a protein that binds a receptor in the membrane of a cell " * 12 for i in range(16)]

    async def scenario(queue, embed):
        encoded = embedder.tokenizer.encode(texts)
        request = asyncio.ensure_future(queue.embed(embedder, encoded, [len(e.ids) for e in encoded], ""))
        await asyncio.wait_for(queue.running.wait(), 10)
        await queue.close()
        with pytest.raises(ServiceBusyError, match="shutting down"):
            await asyncio.wait_for(request, 5)
        return queue.batches

    _, batches = _run(embedder, 0.0, scenario)
    assert batches == [16]
