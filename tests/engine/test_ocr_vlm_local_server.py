"""The local VLM server's lifetime (engine/ocr/vlm.py): a start that waits for readiness holds no global lock,
so the exit (and stop_local_servers) can stop a child that is still starting. The "server" here is a real
child process that never becomes ready (it sleeps), so no VLM environment is needed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from engine.errors import OCRServiceError
from engine.ocr import vlm, vlm_env
from engine.ocr.deepseek import RECIPE, DeepSeekOCRSettings

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (killed, not reaped yet) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def _wait_for(path: Path, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written within {seconds} s")


def _sleeping_child(pid_file: Path) -> list[str]:
    return [sys.executable, "-c",
            f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"]


def test_the_process_exits_while_a_thread_starts_the_local_server_and_the_child_is_stopped(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(f"""
        import sys, threading, time
        from engine.ocr import vlm, vlm_env
        from engine.ocr.deepseek import RECIPE, DeepSeekOCRSettings
        vlm_env.ensure = lambda: sys.executable
        vlm.local_server_command = lambda settings, recipe, python: {_sleeping_child(pid_file)!r}
        settings = DeepSeekOCRSettings(device="cpu")  # start_timeout_s: 900 s, the default
        threading.Thread(target=lambda: vlm.local_server_url(settings, RECIPE), daemon=True).start()
        deadline = time.monotonic() + 30
        while not __import__("os").path.exists({str(pid_file)!r}) and time.monotonic() < deadline:
            time.sleep(0.05)
        sys.exit(3)  # the main thread gives up (an error, Ctrl-C): atexit must not wait for the starter
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    began = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung at exit while a thread was starting the local VLM server")
    finally:
        if pid_file.exists() and pid_file.read_text().strip():
            child = int(pid_file.read_text())
            if _alive(child):
                os.kill(child, 9)
                pytest.fail("the half-started local VLM server outlived the process")
    assert done.returncode == 3, done.stderr
    assert time.monotonic() - began < 30
    assert pid_file.exists()  # the child really started before the exit


def test_stop_local_servers_stops_a_start_in_progress_at_once(tmp_path, monkeypatch):
    pid_file = tmp_path / "child.pid"
    monkeypatch.setattr(vlm_env, "ensure", lambda: sys.executable)
    monkeypatch.setattr(vlm, "local_server_command", lambda settings, recipe, python: _sleeping_child(pid_file))
    outcome: dict = {}

    def start() -> None:
        try:
            outcome["url"] = vlm.local_server_url(DeepSeekOCRSettings(device="cpu", start_timeout_s=60), RECIPE)
        except OCRServiceError as exc:
            outcome["error"] = exc

    starter = threading.Thread(target=start, daemon=True)
    starter.start()
    child = int(_wait_for(pid_file, 30))
    began = time.monotonic()
    vlm.stop_local_servers()  # used to wait on the lock the starter held for up to start_timeout_s
    assert time.monotonic() - began < 15
    starter.join(10)
    assert not starter.is_alive()
    assert not _alive(child)
    assert "stopped while starting" in outcome["error"].message and "url" not in outcome
    assert vlm._local_servers == {}
