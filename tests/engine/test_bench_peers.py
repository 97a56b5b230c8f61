"""The side-by-side benchmark's pieces that need no peer environment: configurations, the SciFact
workloads, the Markdown report, and our own worker over its pipe protocol."""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest
from conftest import shared_data

from engine.errors import InputError
from engine.measure import peer_env as peers
from engine.measure.bench import BenchReport, BenchResult
from engine.measure.peers import OurConfig, markdown, workload


def test_configs_parse_and_name():
    assert OurConfig.parse("int8") == OurConfig("int8", "cpu")
    assert OurConfig.parse("fp32:openvino").name == "ours fp32 · openvino"
    assert OurConfig.parse("optimized:cpu").name == "ours optimized"
    with pytest.raises(InputError):
        OurConfig.parse(":cpu")


def test_scifact_workloads_are_the_300_queries_and_256_abstracts():
    folder = shared_data("scifact")
    queries, abstracts = workload("scifact-queries", folder), workload("scifact-abstracts", folder)
    assert len(queries) == 300 and len(abstracts) == 256
    assert all(queries) and np.mean([len(a) for a in abstracts]) > 5 * np.mean([len(q) for q in queries])
    with pytest.raises(InputError, match="Unknown workload"):
        workload("nope", folder)


def test_unknown_peer_is_a_clear_error(tmp_path):
    with pytest.raises(peers.PeerError, match="Unknown peer"):
        peers.peer_command("st-tensorflow", tmp_path, None, 2, python=tmp_path / "python")


def test_markdown_has_one_table_per_workload_with_parity():
    def row(backend, workload_name, speed, cosine, error=None):
        return BenchResult(backend, "m", "fp32", "cpu", 32, 256, 1.0, speed, speed * 200, 10, 12, 15, 1.0, 1e-7,
                           cosine, speed / 20, 300, error=error, workload=workload_name)

    report = BenchReport("2026-01-01T00:00:00Z", {"cpu": "X", "cpu_threads": 2, "cpu_flags": ["avx2"]},
                         {"batch_size": 32, "rounds": 2}, "st-torch",
                         [row("st-torch", "scifact-abstracts", 20, 1.0), row("ours int8", "scifact-abstracts", 40, 0.99),
                          row("fastembed", "scifact-queries", 0, None, error="boom")])
    text = markdown(report)
    assert "### scifact-abstracts" in text and "### scifact-queries" in text
    assert "| ours int8 | 40.0 | 8000 |" in text and "0.990000 | 2.00 |" in text and "error: boom" in text


def test_our_worker_speaks_the_runner_protocol(default_model, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA_DIR", str(default_model.parent.parent))
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(["a protein", "a cell regulates growth", "mortality"]))
    worker = peers.PeerProcess("ours fp32", [sys.executable, "-m", "engine.measure.peer_env.ours", "--model", default_model.name,
                                             "--variant", "fp32"], threads=1)
    try:
        worker.load()
        assert worker.info["provider"] == "cpu"
        run = worker.run(texts, 2, tmp_path / "v.npy")
        assert len(run.latencies) == 2 and run.peak_rss_mb > 0
        vectors = np.load(tmp_path / "v.npy")
        assert vectors.shape == (3, 384)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
        with pytest.raises(peers.PeerError):
            worker.run(tmp_path / "missing.json", 2)
    finally:
        worker.close()


def test_our_rows_use_the_studios_data_folder_not_the_environments(default_model, tmp_path, monkeypatch):
    """``engine bench --peers ... --data-dir D``: our worker processes embed with D's models (they read
    STUDIO_DATA_DIR, which pointed elsewhere here, and every row of ours was 'not converted')."""
    from engine.measure.peers import run_side_by_side
    from engine.settings import load_settings
    from engine.studio import Studio

    shared_data("scifact", "queries.jsonl")
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "elsewhere"))
    studio = Studio(load_settings(data_dir=default_model.parent.parent))
    report = run_side_by_side(studio, default_model.name, [], [OurConfig.parse("fp32:cpu")], ["scifact-queries"],
                              rounds=1, threads=1)
    [row] = report.results
    assert row.error is None and row.texts_per_second > 0, row.error


def test_a_peer_that_never_answers_is_stopped_at_the_deadline(tmp_path):
    """A real process that reads the command and then hangs (a hung inference): the command raises PeerError
    naming the peer and the command once the deadline passes, and the process is killed."""
    hangs = [sys.executable, "-c", "import sys, time; sys.stdin.readline(); time.sleep(120)"]
    peer = peers.PeerProcess("hangs", hangs, 1, timeout_s=1.5)
    began = time.monotonic()
    try:
        with pytest.raises(peers.PeerError) as raised:
            peer.load()
        assert time.monotonic() - began < 30
        assert "hangs" in raised.value.message and "'load'" in raised.value.message
        assert "STUDIO_PEER_TIMEOUT_S" in raised.value.hint
        assert peer._process.poll() is not None  # killed, not left running
        with pytest.raises(peers.PeerError):  # a later command fails at once instead of waiting again
            peer.run(tmp_path / "texts.json", 2)
    finally:
        if peer._process.poll() is None:
            peer._process.kill()
        peer.close()


def test_a_peer_that_answers_slowly_within_the_deadline_and_one_that_dies(tmp_path):
    slow = [sys.executable, "-c", "import json, sys, time; sys.stdin.readline(); time.sleep(0.5); "
            "print('a warning line'); print(json.dumps({'ok': True, 'load_seconds': 0.5, 'info': {'x': 1}}), flush=True);"
            "sys.stdin.readline()"]
    peer = peers.PeerProcess("slow", slow, 1, timeout_s=20)
    try:
        peer.load()
        assert peer.info == {"x": 1} and peer.load_seconds == 0.5
    finally:
        peer.close()
    dies = [sys.executable, "-c", "import os, sys; sys.stdin.readline(); os._exit(7)"]
    peer = peers.PeerProcess("dies", dies, 1, timeout_s=20)
    try:
        with pytest.raises(peers.PeerError, match="ended unexpectedly during 'load' .exit 7"):
            peer.load()
    finally:
        peer.close()


def test_the_peer_deadline_setting(monkeypatch):
    monkeypatch.delenv("STUDIO_PEER_TIMEOUT_S", raising=False)
    assert peers.command_timeout_s() == peers.DEFAULT_TIMEOUT_S
    monkeypatch.setenv("STUDIO_PEER_TIMEOUT_S", "2.5")
    assert peers.command_timeout_s() == 2.5
    quiet = peers.PeerProcess("x", [sys.executable, "-c", "pass"], 1)
    quiet.close()
    assert quiet.timeout_s == 2.5
    for bad in ("0", "-1", "soon", "inf"):
        monkeypatch.setenv("STUDIO_PEER_TIMEOUT_S", bad)
        with pytest.raises(peers.PeerError, match="STUDIO_PEER_TIMEOUT_S must be a positive"):
            peers.command_timeout_s()
