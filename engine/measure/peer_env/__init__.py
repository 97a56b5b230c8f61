"""Peer embedding libraries measured next to the engine, each in its own process and environment.

The peers (sentence-transformers with its torch, ONNX, quantised-ONNX and OpenVINO back-ends, and
fastembed) need torch, optimum and optimum-intel, which the engine never imports. They live in
their own virtual environment, ``.venv-peers`` at the repository root (``STUDIO_PEERS_VENV`` moves
it), created on first use from ``engine/measure/peer_env/requirements.txt`` (pinned; torch is the CPU build
and is installed first so that pip never pulls a CUDA one). Each peer runs ``runner.py`` in that
environment and is driven over a pipe, so the benchmark can interleave rounds of every backend.
Every command has a deadline (``STUDIO_PEER_TIMEOUT_S``, 900 s): a peer that does not answer in time (a hung
inference) is killed and its row reports the error, instead of the benchmark waiting forever.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.errors import StudioError
from engine.settings import REPO_ROOT

log = logging.getLogger(__name__)
PEERS = {
    "st-torch": "sentence-transformers, torch fp32 (the reference)",
    "st-onnx": "sentence-transformers, backend='onnx' (its own optimum export, ONNX Runtime CPU)",
    "st-onnx-qint8": "sentence-transformers, export_dynamic_quantized_onnx_model (preset for this CPU)",
    "st-openvino": "sentence-transformers, backend='openvino' (optimum-intel; bf16 where the CPU has it)",
    "fastembed": "fastembed TextEmbedding on the engine's fp32 ONNX file (custom model, local files)",
}
REQUIREMENTS = Path(__file__).with_name("requirements.txt")
RUNNER = Path(__file__).with_name("runner.py")
TORCH_PIN = "torch==2.13.0"
# a CPU-only wheel source when pip's own configuration has none (never the CUDA wheels on PyPI)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
DEFAULT_TIMEOUT_S = 900.0  # one command (load: exports and quantisation included; run: one pass over a workload)


class PeerError(StudioError):
    pass


def command_timeout_s() -> float:
    """How long one peer command may take: ``STUDIO_PEER_TIMEOUT_S`` (seconds, > 0), 900 by default."""
    raw = os.environ.get("STUDIO_PEER_TIMEOUT_S", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise PeerError(f"STUDIO_PEER_TIMEOUT_S must be a positive number of seconds, not {raw!r}.",
                        f"unset it for the default ({DEFAULT_TIMEOUT_S:.0f} s)")
    return value


def venv_dir() -> Path:
    return Path(os.environ.get("STUDIO_PEERS_VENV", REPO_ROOT / ".venv-peers"))


def venv_python(folder: Path | None = None) -> Path:
    folder = folder or venv_dir()
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _stamp(folder: Path) -> Path:
    return folder / ".installed-peers"


def _digest() -> str:
    import hashlib

    return hashlib.sha256(REQUIREMENTS.read_bytes() + TORCH_PIN.encode()).hexdigest()


def ensure_env(folder: Path | None = None) -> Path:
    """The peers' Python, creating or updating the environment when the pins changed (minutes, once)."""
    folder = folder or venv_dir()
    python = venv_python(folder)
    if python.is_file() and _stamp(folder).is_file() and _stamp(folder).read_text().strip() == _digest():
        return python
    log.info("creating the peers' environment in %s (torch CPU, sentence-transformers, fastembed)", folder)
    steps = []
    if not python.is_file():
        steps.append([sys.executable, "-m", "venv", str(folder)])
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    steps.append(pip + ["--only-binary", ":all:", TORCH_PIN])
    steps.append(pip + ["-r", str(REQUIREMENTS)])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0 and step[-1] == TORCH_PIN:  # no local CPU wheel: PyTorch's CPU index
            done = subprocess.run(step[:-1] + ["--index-url", TORCH_CPU_INDEX, TORCH_PIN + "+cpu"],
                                  capture_output=True, text=True)
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise PeerError(f"Setting up the peers' environment failed: {tail[:400]}",
                            f"check network access to PyPI, or remove {folder} and retry")
    cuda = subprocess.run([str(python), "-c", "import torch; print(torch.version.cuda or '')"],
                          capture_output=True, text=True).stdout.strip()
    if cuda:
        raise PeerError(f"The peers' environment got a CUDA build of torch (CUDA {cuda}); the CPU "
                        "benchmark needs the CPU build.", f"remove {folder} and install {TORCH_PIN}+cpu first")
    _stamp(folder).write_text(_digest())
    return python


@dataclass(frozen=True)
class PeerRun:
    seconds: float
    latencies: list[float]
    peak_rss_mb: float


def peer_command(name: str, work: Path, onnx_file: Path | None, threads: int, python: Path | None = None,
                 model_dir: Path | None = None) -> list[str]:
    """The command line of one peer's process in the peers' environment."""
    if name not in PEERS:
        raise PeerError(f"Unknown peer {name!r}.", f"use one of: {', '.join(PEERS)}")
    command = [str(python or ensure_env()), str(RUNNER), "--peer", name, "--work", str(work / name),
               "--threads", str(threads)]
    if onnx_file is not None:
        command += ["--onnx", str(onnx_file)]
    if model_dir is not None:
        command += ["--model-dir", str(model_dir)]
    return command


def ours_command(model: str, variant: str, provider: str) -> list[str]:
    """The engine itself as a worker with the same protocol (this environment's Python)."""
    return [sys.executable, "-m", "engine.measure.peer_env.ours", "--model", model, "--variant", variant, "--provider", provider]


class PeerProcess:
    """One backend in its own process; ``run`` embeds a texts file and optionally saves the vectors.

    Every command waits at most ``timeout_s`` (default: ``STUDIO_PEER_TIMEOUT_S``) for its answer; past it the
    process is killed and the command raises PeerError."""

    def __init__(self, name: str, command: list[str], threads: int, env: dict[str, str] | None = None,
                 timeout_s: float | None = None) -> None:
        self.name = name
        self.timeout_s = command_timeout_s() if timeout_s is None else timeout_s
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "OMP_NUM_THREADS": str(threads), **(env or {})}
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO_ROOT)
        # the peer's stdout, line by line (None: it closed); a reader thread, so that _ask can wait with a deadline
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(self._process.stdout,), name=f"peer-{name}", daemon=True).start()
        self.info: dict = {}
        self.load_seconds = 0.0

    def _read(self, stdout) -> None:
        try:
            for line in stdout:
                self._lines.put(line)
        except (OSError, ValueError):  # the pipe closed under us (kill, close)
            pass
        finally:
            self._lines.put(None)

    def _ask(self, command: dict) -> dict:
        what = command.get("cmd", "?")
        deadline = time.monotonic() + self.timeout_s
        try:
            self._process.stdin.write(json.dumps(command) + "\n")
            self._process.stdin.flush()
            while True:
                try:
                    line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    self._kill()
                    raise PeerError(f"The {self.name} process did not answer '{what}' within {self.timeout_s:.0f} s; "
                                    "it was stopped.",
                                    "a hung or very slow backend: raise STUDIO_PEER_TIMEOUT_S if it is only slow"
                                    ) from None
                if line is None:
                    raise PeerError(f"The {self.name} process ended unexpectedly during '{what}' "
                                    f"(exit {self._exit_code()}).")
                if line.startswith("{"):
                    answer = json.loads(line)
                    break
        except (BrokenPipeError, ValueError) as exc:
            raise PeerError(f"The {self.name} process did not answer '{what}': {exc}") from None
        if not answer.get("ok"):
            raise PeerError(f"{self.name}: {answer.get('error', 'failed')}")
        return answer

    def _exit_code(self) -> int | None:
        try:
            return self._process.wait(timeout=5)  # its stdout closed: it is exiting, or gone
        except subprocess.TimeoutExpired:
            return None

    def _kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("the %s process (pid %d) did not exit after a kill", self.name, self._process.pid)

    def load(self) -> None:
        answer = self._ask({"cmd": "load"})
        self.info, self.load_seconds = answer.get("info", {}), answer["load_seconds"]

    def run(self, texts_file: Path, batch_size: int, out: Path | None = None) -> PeerRun:
        answer = self._ask({"cmd": "run", "texts": str(texts_file), "batch_size": batch_size,
                            "out": str(out) if out else None})
        return PeerRun(answer["seconds"], answer["latencies"], answer["peak_rss_mb"])

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self._process.stdin.flush()
                self._process.wait(timeout=10)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
