"""The converter service's job queue: one conversion at a time, each in its own process.

A ``JobRunner`` keeps a bounded FIFO of ``Job`` records and one worker thread. Each job runs
converter/convert.py (the command line and its progress-line protocol come from engine.conversion)
in an empty working folder; its progress events update the job, its other output becomes the job's
log, and a timeout, a cancel or a crash ends only that job.
"""

from __future__ import annotations

import collections
import logging
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from engine import conversion
from engine.errors import ConversionError, InputError, StudioError
from engine.settings import ConverterSettings

log = logging.getLogger("converter.jobs")
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
ACTIVE = frozenset({QUEUED, RUNNING})


class Rejection(Exception):
    """An HTTP status paired with a user-facing StudioError (the status is the route's choice, the error the engine's)."""

    def __init__(self, status: int, error: StudioError) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error


# --- jobs -------------------------------------------------------------------------------------------
@dataclass
class Job:
    """One conversion. Mutable by design: the worker updates it while clients read snapshots under the lock."""

    id: str
    model: str
    kind: str
    request: conversion.ConversionRequest
    created_at: float
    status: str = QUEUED
    step: str = "queued"
    progress: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    result: dict | None = None
    error: dict | None = None
    log: collections.deque = field(default_factory=collections.deque)
    dropped_lines: int = 0
    cancel_requested: bool = False
    process: subprocess.Popen | None = None

    def snapshot(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "model": self.model,
            "kind": self.kind,
            "source": self.request.source,
            "name": self.request.name,
            "variants": list(self.request.variants),
            "trust_remote_code": self.request.trust_remote_code,
            "force": self.request.force,
            "step": self.step,
            "progress": round(self.progress, 3),
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "seconds": round((self.finished_at or time.time()) - self.started_at, 2) if self.started_at else None,
            "result": self.result,
            "error": self.error,
            "log_lines": self.dropped_lines + len(self.log),
        }


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z"


class JobRunner:
    """A bounded FIFO of jobs and one worker thread that runs them one at a time, each in a subprocess."""

    def __init__(self, models_dir: Path, settings: ConverterSettings) -> None:
        self.models_dir = Path(models_dir)
        self.settings = settings
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="converter-jobs-"))

    # -- client side ---------------------------------------------------------------------------------
    def submit(self, model: str, kind: str, request: conversion.ConversionRequest) -> dict:
        with self._lock:
            waiting = sum(1 for job in self._jobs.values() if job.status == QUEUED)
            if waiting >= self.settings.max_queue:
                raise Rejection(429, ConversionError(f"{waiting} conversions are already waiting.", "try again later"))
            clash = next((j for j in self._jobs.values() if j.status in ACTIVE and j.request.name == request.name), None)
            if clash is not None:
                raise Rejection(409, ConversionError(f"Job {clash.id} is already converting into {request.name!r}.",
                                                     "wait for it, or pick another name"))
            job = Job(id=uuid.uuid4().hex[:16], model=model, kind=kind, request=request, created_at=time.time())
            job.log.append(f"queued: {request.source} -> {request.name} ({','.join(request.variants)})")
            self._jobs[job.id] = job
            self._forget_old_jobs()
            snapshot = job.snapshot()
        self._queue.put(job.id)
        log.info("job %s queued: %s -> %s", job.id, request.source, request.name)
        return snapshot

    def get(self, job_id: str) -> dict:
        with self._lock:
            return self._require(job_id).snapshot()

    def list(self) -> list[dict]:
        with self._lock:
            return [job.snapshot() for job in sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)]

    def log_lines(self, job_id: str, offset: int) -> dict:
        with self._lock:
            job = self._require(job_id)
            start = max(0, offset - job.dropped_lines)
            lines = list(job.log)[start:]
            return {"id": job.id, "status": job.status, "offset": job.dropped_lines + start,
                    "next_offset": job.dropped_lines + len(job.log), "lines": lines}

    def cancel(self, job_id: str) -> dict:
        with self._lock:
            job = self._require(job_id)
            if job.status == QUEUED:
                job.status, job.step, job.finished_at = CANCELLED, "cancelled before it started", time.time()
            elif job.status == RUNNING:
                job.cancel_requested = True
                if job.process is not None and job.process.poll() is None:
                    job.process.terminate()
            return job.snapshot()

    def _require(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise Rejection(404, InputError(f"There is no job {job_id!r}.", "GET /v1/jobs lists the jobs"))
        return job

    def _forget_old_jobs(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.status not in ACTIVE), key=lambda j: j.created_at)
        for job in finished[: max(0, len(finished) - self.settings.keep_jobs)]:
            del self._jobs[job.id]

    # -- worker side ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._worker = threading.Thread(target=self._work, name="converter-worker", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            for job in self._jobs.values():
                if job.status in ACTIVE:
                    job.cancel_requested = True
                    if job.process is not None and job.process.poll() is None:
                        job.process.terminate()
        self._queue.put(None)
        if self._worker is not None:
            self._worker.join(timeout)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._lock:
                job = self._jobs.get(job_id)
                if job is None or job.status != QUEUED:
                    continue  # cancelled (or forgotten) while waiting
                if job.cancel_requested:
                    job.status, job.finished_at = CANCELLED, time.time()
                    continue
                job.status, job.step, job.started_at = RUNNING, "starting the converter", time.time()
            try:
                self._run(job)
            except Exception as exc:  # noqa: BLE001 - a bug here must not kill the worker for every later job
                log.exception("job %s crashed", job.id)
                self._finish(job, FAILED, error={"error": "internal_error", "message": f"{type(exc).__name__}: {exc}",
                                                 "hint": "see the converter server's log"})

    def command(self, request: conversion.ConversionRequest) -> list[str]:
        return conversion.converter_command(request, self.models_dir)

    def _run(self, job: Job) -> None:
        workdir = self._workdir / job.id  # empty: a hub id can never resolve to a relative folder here
        workdir.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(self.command(job.request), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, cwd=workdir, bufsize=1)
        with self._lock:
            job.process = process
            if job.cancel_requested:
                process.terminate()
        events: dict[str, dict] = {}
        stderr_reader = threading.Thread(target=self._drain, args=(job, process.stderr, None), daemon=True)
        stdout_reader = threading.Thread(target=self._drain, args=(job, process.stdout, events), daemon=True)
        stderr_reader.start()
        stdout_reader.start()
        try:
            process.wait(timeout=self.settings.job_timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            process.kill()
            process.wait()
        stdout_reader.join(10)
        stderr_reader.join(10)
        if process.returncode != 0:
            self._remove_leftovers(job, process.pid)
        if job.cancel_requested:
            self._finish(job, CANCELLED, step="cancelled while running")
        elif timed_out:
            self._finish(job, FAILED, error=ConversionError(
                f"The conversion took longer than {self.settings.job_timeout_s:.0f}s and was stopped.",
                "raise STUDIO_CONVERTER_JOB_TIMEOUT_S, or convert fewer variants").to_dict())
        elif conversion.ERROR in events:
            error = {k: v for k, v in events[conversion.ERROR].items() if k != "event"}
            self._finish(job, FAILED, error=error)
        elif process.returncode == 0 and conversion.RESULT in events:
            result = {k: v for k, v in events[conversion.RESULT].items() if k != "event"}
            self._finish(job, SUCCEEDED, result=result)
        else:
            tail = " | ".join(list(job.log)[-3:])
            self._finish(job, FAILED, error=ConversionError(
                f"The converter exited with status {process.returncode}: {tail[:500]}").to_dict())

    def _remove_leftovers(self, job: Job, pid: int) -> None:
        """A converter killed mid-way cannot clean up its staging folder (convert.py names it
        .<name>.partial-<pid> next to the target); the registry ignores it, the disk does not."""
        staging = self.models_dir / f".{job.request.name}.partial-{pid}"
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
            with self._lock:
                self._append(job, f"removed the unfinished {staging.name}")

    def _drain(self, job: Job, stream, events: dict[str, dict] | None) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            event = conversion.parse_event(line) if events is not None else None
            with self._lock:
                if event is None:
                    self._append(job, line)
                elif event["event"] == conversion.PROGRESS:
                    job.step, job.progress = str(event.get("step", "")), float(event.get("fraction", job.progress))
                    self._append(job, f"[{job.progress * 100:3.0f}%] {job.step}")
                elif event["event"] in (conversion.RESULT, conversion.ERROR):
                    events[event["event"]] = event
                    self._append(job, f"{event['event']}: {event.get('message') or event.get('out', '')}")

    def _append(self, job: Job, line: str) -> None:
        job.log.append(line)
        if len(job.log) > self.settings.log_lines:
            job.log.popleft()
            job.dropped_lines += 1

    def _finish(self, job: Job, status: str, result: dict | None = None, error: dict | None = None,
                step: str | None = None) -> None:
        with self._lock:
            job.status, job.finished_at, job.process = status, time.time(), None
            job.result, job.error = result, error
            job.step = step or ("done" if status == SUCCEEDED else status)
            if status == SUCCEEDED:
                job.progress = 1.0
            self._append(job, f"{status}" + (f": {error['message']}" if error else ""))
        log.info("job %s %s", job.id, status)
