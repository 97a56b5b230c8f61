"""The benchmark harness, run for real on a small workload (ONNX Runtime and the torch baseline)."""

from __future__ import annotations

import csv

import pytest

from engine.errors import InputError
from engine.measure.bench import load_report, run_benchmark, save_report, workload_texts


def test_benchmark_onnx_against_the_torch_baseline(studio, tmp_path):
    texts = workload_texts("sentences", 24)
    report = run_benchmark(studio, ["all-minilm-l6-v2"], ["fp32", "int8"], ["cpu"], [8], texts, baseline=True,
                           workload="sentences")
    rows = {(r.backend, r.variant): r for r in report.results}
    assert set(rows) == {("torch", "float32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    assert report.reference.startswith("sentence-transformers")
    fp32, int8, torch = rows[("onnxruntime", "fp32")], rows[("onnxruntime", "int8")], rows[("torch", "float32")]
    assert all(r.error is None and r.texts == 24 and r.texts_per_second > 0 for r in (fp32, int8, torch))
    assert fp32.provider == "cpu" and fp32.max_abs_diff <= 1e-5 and fp32.min_cosine >= 0.99999
    assert 0.9 < int8.min_cosine < 1.0
    assert fp32.speedup_vs_baseline == pytest.approx(fp32.texts_per_second / torch.texts_per_second)
    assert fp32.latency_ms_p50 <= fp32.latency_ms_p99
    shared = studio.embedder("all-minilm-l6-v2", "fp32", "cpu")  # the benchmark's batch size stayed its own
    assert (shared.batch_size, shared.max_batch_tokens) == (studio.settings.batch_size, studio.settings.max_batch_tokens)
    json_path, csv_path = save_report(report, tmp_path)
    assert load_report(json_path).results == report.results
    with open(csv_path) as handle:
        assert len(list(csv.DictReader(handle))) == 3


def test_unavailable_provider_is_reported_in_the_row(studio):
    report = run_benchmark(studio, ["all-minilm-l6-v2"], ["fp32"], ["cuda"], [4], workload_texts("sentences", 4),
                           baseline=False)
    (row,) = report.results
    assert row.error and "not available" in row.error


def test_bad_workloads_and_reports(tmp_path):
    with pytest.raises(InputError):
        workload_texts("no-such-file.jsonl", 5)
    (tmp_path / "bench-x.json").write_text("{}")
    with pytest.raises(InputError, match="not a benchmark report"):
        load_report(tmp_path / "bench-x.json")
