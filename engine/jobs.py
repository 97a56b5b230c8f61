"""Background ingest jobs, owned by the process's Studio (``studio.jobs``).

The app's Documents page hands its uploads to a job and returns at once; the job runs in its own thread,
so the user may open another page (which ends that page's script run) without losing the ingest.
Every page can read the job's state (``JobState``: status, the latest progress event, a 0..1 fraction,
the per-file results) and show it; coming back to Documents shows the progress or the result.

One job at a time per collection: a second ingest into a collection that is still being filled is an
InputError saying so (two writers would only queue on the collection's lock, and the user would see
neither finish). Finished jobs are kept (the last ``KEEP_FINISHED``) so that their results can be shown.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from engine.errors import InputError, ServiceBusyError, StudioError

log = logging.getLogger(__name__)
KEEP_FINISHED = 20
Status = Literal["running", "done", "failed"]


@dataclass(frozen=True)
class JobState:
    """A snapshot of one ingest job; a new snapshot replaces it on every progress event."""

    id: str
    collection: str
    files: tuple[str, ...]
    status: Status = "running"
    started_at: float = 0.0
    finished_at: float | None = None
    file_index: int = 0  # the file being worked on (0-based); len(files) when all are done
    event: object | None = None  # the latest pipeline.ProgressEvent
    results: tuple = ()  # pipeline.IngestResult per finished file, in order
    message: str = ""  # why the whole job failed (a crash outside any file), "" otherwise
    fraction: float = 0.0  # 0..1 over all files

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def ok_count(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def failed_count(self) -> int:
        return sum(not r.ok for r in self.results)

    @property
    def seconds(self) -> float:
        return (self.finished_at or time.time()) - self.started_at

    def describe(self) -> str:
        """One line for a status box: what it is doing now, or what it did."""
        if self.running:
            from engine.ui import describe_event

            where = f"file {min(self.file_index + 1, len(self.files))} of {len(self.files)}"
            return f"{where} — {describe_event(self.event)}" if self.event is not None else f"{where}: starting"
        if self.status == "failed" and self.message:
            return self.message
        return f"ingested {self.ok_count} of {len(self.files)} file(s) into '{self.collection}' in {self.seconds:.1f} s"


@dataclass
class _Job:
    state: JobState
    thread: threading.Thread | None = None
    extra: dict = field(default_factory=dict)


class IngestJobs:
    """The Studio's background ingests: start one, read any, one running per collection."""

    def __init__(self, studio) -> None:
        self._studio = studio
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    # -- reading --------------------------------------------------------------------------------------
    def get(self, job_id: str | None) -> JobState | None:
        with self._lock:
            job = self._jobs.get(job_id or "")
            return job.state if job else None

    def running(self) -> list[JobState]:
        with self._lock:
            return [j.state for j in self._jobs.values() if j.state.running]

    def latest(self, collection: str) -> JobState | None:
        """The newest job of a collection (running or finished), or None."""
        with self._lock:
            states = [j.state for j in self._jobs.values() if j.state.collection == collection]
        return max(states, key=lambda s: s.started_at) if states else None

    def wait(self, job_id: str, timeout: float | None = None) -> JobState | None:
        """Block until the job has finished (tests, the CLI); the final state, or the running one on timeout."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None and job.thread is not None:
            job.thread.join(timeout)
        return self.get(job_id)

    # -- starting -------------------------------------------------------------------------------------
    def start(self, collection: str, uploads: Sequence[tuple[str, bytes]], options, extra: dict | None = None) -> JobState:
        """Start ingesting ``uploads`` ((file name, bytes) pairs) into ``collection`` in the background."""
        from engine import pipeline

        if not uploads:
            raise InputError("There is no file to ingest.", "add PDFs first")
        pipeline.collection(self._studio, collection)  # an invalid name fails here, before a thread starts
        with self._lock:
            busy = next((j.state for j in self._jobs.values() if j.state.running and j.state.collection == collection),
                        None)
            if busy is not None:
                raise InputError(f"An ingest into '{collection}' is still running ({busy.describe()}).",
                                 "wait for it to finish, or ingest into another collection")
            job_id = f"ingest-{next(self._ids)}"
            state = JobState(job_id, collection, tuple(name for name, _ in uploads), started_at=time.time())
            thread = threading.Thread(target=self._run, args=(job_id, list(uploads), options), name=job_id,
                                      daemon=True)
            self._jobs[job_id] = _Job(state, thread, extra=dict(extra or {}))
            try:
                # Started under the lock, so no reader sees a registered job whose thread has not started (the
                # worker's first _update waits for the lock, it cannot deadlock).
                thread.start()
            except BaseException as exc:  # e.g. RuntimeError: can't start new thread (a thread or memory limit)
                # Left registered as running, the job would keep the collection busy for good.
                del self._jobs[job_id]
                log.error("%s: the ingest thread could not start: %s", job_id, exc)
                if not isinstance(exc, Exception):
                    raise
                raise ServiceBusyError(
                    f"The ingest into '{collection}' could not start: no thread could be started "
                    f"({type(exc).__name__}: {exc}).",
                    "the process is at its thread or memory limit; try again when other work has finished") from exc
            self._forget_old()
        log.info("%s: ingesting %d file(s) into %s in the background", job_id, len(uploads), collection)
        return state

    def extra(self, job_id: str) -> dict:
        """What the starter attached to the job (e.g. the password, to remember per document)."""
        with self._lock:
            job = self._jobs.get(job_id)
            return dict(job.extra) if job else {}

    # -- the worker -----------------------------------------------------------------------------------
    def _update(self, job_id: str, **changes) -> None:
        with self._lock:
            job = self._jobs[job_id]
            job.state = replace(job.state, **changes)

    def _run(self, job_id: str, uploads: list[tuple[str, bytes]], options) -> None:
        from engine import pipeline
        from engine.ui import ingest_fraction

        results = []
        total = len(uploads)
        try:
            for index, (name, data) in enumerate(uploads):
                self._update(job_id, file_index=index, event=None, fraction=index / total)

                def on_progress(event, index=index) -> None:
                    self._update(job_id, event=event, fraction=(index + ingest_fraction(event)) / total)

                results.append(_ingest_one(pipeline, self._studio, self.get(job_id).collection, name, data, options,
                                           on_progress))
                uploads[index] = (name, b"")  # the bytes are not needed any more
                self._update(job_id, results=tuple(results))
            self._update(job_id, status="done", file_index=total, fraction=1.0, finished_at=time.time())
        except BaseException as exc:  # noqa: BLE001 - a worker thread must record why it stopped
            log.exception("%s stopped", job_id)
            self._update(job_id, status="failed", finished_at=time.time(), results=tuple(results),
                         message=f"The ingest stopped unexpectedly ({type(exc).__name__}); the server log has the details.")
        log.info("%s finished: %s", job_id, self.get(job_id).describe())

    def _forget_old(self) -> None:
        finished = sorted((j.state for j in self._jobs.values() if not j.state.running), key=lambda s: s.started_at)
        for state in finished[:-KEEP_FINISHED]:
            del self._jobs[state.id]


def _ingest_one(pipeline, studio, collection: str, name: str, data: bytes, options, progress):
    """One file's result; a failure of that file is its result, never the end of the job."""
    try:
        return pipeline.ingest(studio, collection, data, name, options, progress)
    except StudioError as exc:
        progress(pipeline.ProgressEvent("error", name, message=exc.message))
        return pipeline.IngestResult(name, False, error=exc.to_dict())
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop the others
        log.exception("ingesting %s failed", name)
        progress(pipeline.ProgressEvent("error", name, message="failed"))
        return pipeline.IngestResult(name, False, error=pipeline.internal_error(name, exc))
