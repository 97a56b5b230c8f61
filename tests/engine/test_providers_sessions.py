from __future__ import annotations

import threading

import pytest

from engine import providers
from engine.errors import ProviderError
from engine.sessions import SessionCache, SessionKey, SessionOptions


def test_auto_resolves_to_an_available_provider():
    choice = providers.resolve("auto")
    assert choice.name in providers.available()
    assert choice.ort_providers[-1] == "CPUExecutionProvider"


def test_cpu_and_errors():
    assert providers.resolve("CPU").ort_providers == ("CPUExecutionProvider",)
    with pytest.raises(ProviderError, match="not available"):
        providers.resolve("tensorrt")
    with pytest.raises(ProviderError, match="Unknown"):
        providers.resolve("gpu-please")


def test_fallback_is_reported_not_silent(caplog):
    choice = providers.ProviderChoice("cuda", "cuda", ("CUDAExecutionProvider", "CPUExecutionProvider"))
    with caplog.at_level("WARNING"):
        message = providers.check_fallback(choice, "cpu", "m/fp32")
    assert message and "runs cpu" in message and "runs cpu" in caplog.text
    assert providers.check_fallback(providers.resolve("cpu"), "cpu", "m") is None


def test_status_lists_every_provider_once():
    rows = providers.status()
    assert {r.name for r in rows} == set(providers.PROVIDER_NAMES)
    assert sum(r.auto_candidate for r in rows) == 1


def test_cpu_count_is_positive_and_bounded():
    import os

    assert 1 <= providers.cpu_count() <= (os.cpu_count() or 1)


def test_session_options_build():
    opts = SessionOptions(intra_op_threads=1, graph_optimization="basic", cpu_mem_arena=False).build()
    assert opts.intra_op_num_threads == 1 and opts.enable_cpu_mem_arena is False


def test_cache_creates_once_under_concurrency_and_evicts_lru(default_model):
    cache = SessionCache(max_size=2)
    path = default_model / "model.onnx"
    created = []
    key = SessionKey("m", "fp32", "cpu", SessionOptions())

    def warm(session):
        created.append(session)

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(key, path, warm))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 1 and len({id(r) for r in results}) == 1
    assert results[0].active_provider == "cpu" and results[0].fallback is None
    other1 = SessionKey("m", "int8", "cpu", SessionOptions())
    other2 = SessionKey("m", "fp32", "cpu", SessionOptions(intra_op_threads=1))
    cache.get(other1, default_model / "model_int8.onnx")
    cache.get(other2, path)
    assert [e.key for e in cache.entries()] == [other1, other2]


def test_diagnostics_flag_a_gpu_without_the_cuda_provider(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho GPU 0: NVIDIA H100\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    warnings = providers.diagnostics()
    assert any("no CUDA provider" in w and "install-onnxruntime-gpu.sh" in w for w in warnings)


def test_onnx_runtime_failures_are_told_from_one_table(tmp_path):
    from engine import providers
    from engine.errors import ModelFileError, ProviderError
    from engine.sessions import ORT_FAILURES, ort_failure

    cpu = providers.resolve("cpu")
    classes = {name: type(name, (Exception,), {}) for name in ORT_FAILURES}
    path = tmp_path / "model.onnx"
    assert isinstance(ort_failure(classes["InvalidProtobuf"]("x"), path, cpu), ModelFileError)
    assert "corrupt" in ort_failure(classes["InvalidProtobuf"]("x"), path, cpu).message
    assert isinstance(ort_failure(classes["EPFail"]("boom"), path, cpu), ProviderError)
    fail = type("Fail", (Exception,), {})
    assert "corrupt" in ort_failure(fail("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Protobuf parsing failed."), path,
                                    cpu).message
    assert isinstance(ort_failure(fail("anything else"), path, cpu), ModelFileError)
