"""vllm/scripts/monitor.sh against a stand-in vLLM server on 127.0.0.1 speaking vLLM's HTTP
surface (/health, /v1/models, /v1/embeddings, /metrics): healthy, dead, wedged and stalled
engines, the restart after MAX_FAILS runs, the restart budget, the start-up grace period."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MONITOR = ROOT / "vllm" / "scripts" / "monitor.sh"
pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("bash", "curl", "flock", "awk")),
                                reason="monitor.sh needs bash, curl, flock and awk")


class FakeVLLM:
    """State the test flips: health status, canary status, running/waiting gauges."""

    def __init__(self) -> None:
        self.health = 200
        self.canary = 200
        self.running = 1
        self.waiting = 0
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: str, kind: str = "application/json") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                fake.requests.append(("GET", self.path))
                if self.path == "/health":
                    self._send(fake.health, "")
                elif self.path == "/v1/models":
                    self._send(200, json.dumps({"object": "list", "data": [{"id": "BAAI/bge-base-en-v1.5", "object": "model"}]}))
                elif self.path == "/metrics":
                    self._send(200, (
                        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                        "# TYPE vllm:num_requests_running gauge\n"
                        f'vllm:num_requests_running{{engine="0",model_name="BAAI/bge-base-en-v1.5"}} {fake.running}.0\n'
                        "# TYPE vllm:num_requests_waiting gauge\n"
                        f'vllm:num_requests_waiting{{engine="0",model_name="BAAI/bge-base-en-v1.5"}} {fake.waiting}.0\n'
                    ), "text/plain")
                else:
                    self._send(404, "{}")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                fake.requests.append(("POST", body))
                if self.path == "/v1/embeddings" and fake.canary == 200:
                    request = json.loads(body)
                    self._send(200, json.dumps({"object": "list", "model": request["model"],
                                                "data": [{"index": 0, "object": "embedding", "embedding": [0.1, 0.2]}]}))
                else:
                    self._send(fake.canary if fake.canary != 200 else 404, json.dumps({"error": {"message": "boom"}}))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeVLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake():
    with FakeVLLM() as server:
        yield server


def run_monitor(tmp_path: Path, fake: FakeVLLM, **overrides: str) -> subprocess.CompletedProcess:
    env_file = tmp_path / "cluster.env"
    env_file.write_text(
        "HEAD_IP=127.0.0.1\nWORKER_IP=127.0.0.1\nWORKER_SSH=local\nCLUSTER_MODE=replicas\n"
        f"PORT={fake.port}\nREPLICA_PORT={fake.port}\nVLLM_ARGS=\"--runner pooling\"\n"
    )
    env = {
        **os.environ,
        "VLLM_ENV_FILE": str(env_file),
        "MONITOR_STATE_DIR": str(tmp_path / "state"),
        "GRACE_S": "0",
        "MAX_FAILS": "2",
        "STALL_SAMPLES": "2",
        "COOLDOWN_S": "0",
        "MAX_RESTARTS_PER_HOUR": "2",
        "MEM_FLOOR_GIB": "0",
        "CANARY_TIMEOUT_S": "5",
        "RESTART_CMD": f"echo restarted >> {tmp_path / 'restarts.txt'}",
        **overrides,
    }
    return subprocess.run(["bash", str(MONITOR)], env=env, capture_output=True, text=True, timeout=60)


def restarts(tmp_path: Path) -> int:
    path = tmp_path / "restarts.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_healthy_cluster_is_left_alone(tmp_path, fake):
    result = run_monitor(tmp_path, fake)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "health=200 canary=ok running=1 waiting=0" in result.stdout and "action=none" in result.stdout
    assert ("POST", '{"model": "BAAI/bge-base-en-v1.5", "input": "ping"}') in fake.requests
    assert "action=none" in (tmp_path / "state" / "monitor.log").read_text()
    assert restarts(tmp_path) == 0


def test_a_dead_engine_is_restarted_after_max_fails_runs(tmp_path, fake):
    fake.health = 503
    first = run_monitor(tmp_path, fake)
    assert first.returncode == 1 and "fails=1 action=wait" in first.stdout and "health=503" in first.stdout
    assert restarts(tmp_path) == 0
    second = run_monitor(tmp_path, fake)
    assert "action=restart " in second.stdout and "action=restarted" in second.stdout
    assert restarts(tmp_path) == 1
    fake.health = 200
    assert run_monitor(tmp_path, fake).returncode == 0  # the failure count was reset by the restart


def test_a_wedged_engine_with_health_200_fails_the_canary(tmp_path, fake):
    fake.canary = 500
    result = run_monitor(tmp_path, fake)
    assert result.returncode == 1 and "health=200 canary=failed(500)" in result.stdout


def test_requests_waiting_with_none_running_is_a_stall_after_several_samples(tmp_path, fake):
    fake.running, fake.waiting = 0, 3
    first = run_monitor(tmp_path, fake)
    assert first.returncode == 0  # one sample is not a stall yet
    second = run_monitor(tmp_path, fake)
    assert second.returncode == 1 and "stalled=2-samples" in second.stdout
    fake.running = 2
    assert run_monitor(tmp_path, fake).returncode == 0


def test_the_restart_budget_turns_restarts_into_alerts(tmp_path, fake):
    fake.health = 503
    alerts = tmp_path / "alerts.txt"
    overrides = {"MAX_FAILS": "1", "MAX_RESTARTS_PER_HOUR": "1", "ALERT_CMD": f'echo "$1" >> {alerts}'}
    assert "action=restarted" in run_monitor(tmp_path, fake, **overrides).stdout
    second = run_monitor(tmp_path, fake, **overrides)
    assert "action=alert" in second.stdout and restarts(tmp_path) == 1
    assert "not restarting again" in alerts.read_text()


def test_low_memory_on_a_node_counts_as_a_failure(tmp_path, fake):
    result = run_monitor(tmp_path, fake, MEM_FLOOR_GIB="100000")
    assert result.returncode == 1 and "mem-head=" in result.stdout and "mem-worker=" in result.stdout


def test_nothing_is_checked_during_the_start_up_grace_period(tmp_path, fake):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "started_at").write_text(str(int(__import__("time").time())))
    fake.health = 503
    result = run_monitor(tmp_path, fake, GRACE_S="900")
    assert result.returncode == 2 and "start-up-grace" in result.stdout
    assert fake.requests == []


def cluster_script(tmp_path: Path, script: str, *args: str) -> list[str]:
    """The docker/ssh/scp commands a cluster script would run (--dry-run: nothing is contacted)."""
    env_file = tmp_path / "cluster.env"
    env_file.write_text((ROOT / "vllm" / ".env.example").read_text())
    result = subprocess.run(["bash", str(ROOT / "vllm" / "scripts" / script), "--dry-run", *args], capture_output=True,
                            text=True, timeout=30, env={**os.environ, "VLLM_ENV_FILE": str(env_file)})
    assert result.returncode == 0, result.stderr
    return [line.strip()[2:] for line in result.stdout.splitlines() if line.strip().startswith("$ ")]


def test_start_brings_up_the_head_before_the_worker_and_stop_the_reverse(tmp_path):
    start = cluster_script(tmp_path, "start-cluster.sh")
    ups = [c for c in start if c.endswith("up -d") or c.endswith("up -d ")]
    assert "docker-compose.spark-1.yml --profile ray up -d" in ups[0]
    assert ups[1].startswith("ssh -o BatchMode=yes") and "docker-compose.spark-2.yml --profile ray up -d" in ups[1]
    assert any(c.startswith("scp") and c.endswith("/vllm/.env") for c in start)  # one configuration, copied
    assert start.index(next(c for c in start if c.startswith("scp"))) < start.index(ups[0])
    stop = cluster_script(tmp_path, "stop-cluster.sh")
    assert "spark-2.yml" in stop[0] and stop[0].startswith("ssh") and "down" in stop[0]
    assert "spark-1.yml" in stop[1] and "down" in stop[1]


def test_replicas_mode_starts_a_replica_per_node_and_the_balancer(tmp_path):
    start = cluster_script(tmp_path, "start-cluster.sh", "--mode", "replicas")
    ups = [c for c in start if "up -d" in c]
    assert "spark-2.yml --profile replicas up -d" in ups[0] and "spark-1.yml --profile replicas up -d" in ups[1]
