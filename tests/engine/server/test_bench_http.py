"""The benchmark's OpenAI-compatible backend (how vLLM is measured) against this project's own API."""

from server_harness import serve, wait_ready

from engine.measure.bench import run_benchmark, workload_texts
from engine.server import create_app
from engine.server.config import ApiSettings
from engine.settings import load_settings
from engine.studio import Studio


def test_benchmark_row_for_an_openai_compatible_server(default_model):
    studio = Studio(load_settings(data_dir=default_model.parent.parent))
    # the server runs the configuration of the ONNX Runtime row (its default, auto, may be OpenVINO bf16)
    api = ApiSettings(variant="fp32", provider="cpu")
    with serve(create_app(Studio(load_settings(data_dir=default_model.parent.parent)), api)) as base:
        wait_ready(base)
        report = run_benchmark(studio, ["all-minilm-l6-v2"], ["fp32"], ["cpu"], [8], workload_texts("sentences", 24),
                               baseline=False, http_urls=[f"{base}/v1"])
    rows = {r.backend: r for r in report.results}
    http = rows["openai-http"]
    assert http.error is None and http.provider == f"{base}/v1" and http.texts_per_second > 0
    assert http.max_abs_diff <= 1e-5 and http.min_cosine >= 0.99999  # same model behind HTTP
    assert rows["onnxruntime"].error is None
