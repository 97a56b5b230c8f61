"""The embedder's contract and its clear errors (using the converted default model)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.embedder import Embedder, plan_batches
from engine.errors import InputError, ModelFileError, ProviderError
from engine.manifest import read_manifest
from engine.registry import spec_from_manifest


def test_empty_list_gives_an_empty_result(studio):
    out = studio.embedder().embed([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_vectors_are_normalised_float32_in_input_order(studio):
    embedder = studio.embedder()
    texts = ["a cat sat on the mat", "", "   ", "数据", "🙂🚀", "quantum chromodynamics " * 100]
    out = embedder.embed(texts)
    assert out.shape == (len(texts), 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out[0], embedder.embed([texts[0]])[0], atol=1e-6)


def test_similar_sentences_are_closer_than_unrelated_ones(studio):
    a, b, c = studio.embedder().embed(["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell."])
    assert a @ b > 0.6 > a @ c


def test_token_budget_batches():
    assert plan_batches([5, 50, 10, 40], batch_size=32, max_batch_tokens=100) == [[1, 3], [2, 0]]
    assert plan_batches([3] * 5, batch_size=2, max_batch_tokens=10_000) == [[0, 1], [2, 3], [4]]
    assert plan_batches([500], batch_size=2, max_batch_tokens=10) == [[0]]  # never an empty batch
    assert plan_batches([], 4, 100) == []


def test_a_long_text_does_not_pad_a_batch_of_short_ones():
    lengths = [64] + [12] * 26  # what a server batch of 27 queries can look like
    assert plan_batches(lengths, batch_size=128, max_batch_tokens=16384, call_cost=32) == [[0], list(range(1, 27))]
    # when another call costs more than the padding it saves, the texts share one batch
    assert plan_batches(lengths, batch_size=128, max_batch_tokens=16384, call_cost=2000) == [list(range(27))]


def test_a_runtime_that_runs_full_batches_cheaper_keeps_them_whole():
    """OpenVINO's static form runs batches padded to the full width at 0.87 of the dynamic cost per token slot:
    the planner then keeps 27 full-length texts and 5 a little shorter in one batch instead of splitting them."""
    from engine.openvino_session import STATIC_COST, fills_static

    lengths = [256] * 27 + [240] * 5

    def row_cost(width):
        return 256 * STATIC_COST if fills_static(width, 256) else float(width)

    assert plan_batches(lengths, 32, 8192, call_cost=64) == [list(range(27)), list(range(27, 32))]
    assert plan_batches(lengths, 32, 8192, call_cost=64, row_cost=row_cost) == [list(range(32))]


def _plan_cost(lengths, plan, call_cost):
    return sum(len(b) * max(lengths[i] for i in b) + call_cost for b in plan)


def _cheapest_split(sizes, batch_size, max_tokens, call_cost):
    """Brute force over every split of the sorted lengths into runs."""
    if not sizes:
        return 0
    best = None
    for stop in range(1, min(len(sizes), batch_size) + 1):
        if stop > 1 and stop * sizes[0] > max_tokens:
            break
        total = stop * sizes[0] + call_cost + _cheapest_split(sizes[stop:], batch_size, max_tokens, call_cost)
        best = total if best is None else min(best, total)
    return best


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 300), max_size=40), st.integers(1, 40), st.integers(64, 3000), st.integers(0, 400))
def test_batch_plan_is_a_valid_partition_no_worse_than_filling_batches(lengths, batch_size, max_tokens, call_cost):
    plan = plan_batches(lengths, batch_size, max_tokens, call_cost)
    assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
    for batch in plan:
        assert batch and len(batch) <= batch_size
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= max_tokens
    filled = plan_batches(lengths, batch_size, max_tokens, call_cost=1 << 30)
    assert len(filled) <= len(plan)
    assert _plan_cost(lengths, plan, call_cost) <= _plan_cost(lengths, filled, call_cost)
    if len(lengths) <= 12:
        sizes = sorted(lengths, reverse=True)
        assert _plan_cost(lengths, plan, call_cost) == _cheapest_split(sizes, batch_size, max_tokens, call_cost)


def test_matryoshka_dimensions_and_string_input(studio):
    embedder = studio.embedder()
    cut = embedder.embed(["hello world"], dimensions=64)
    assert cut.shape == (1, 64)
    np.testing.assert_allclose(np.linalg.norm(cut), 1.0, rtol=1e-5)
    with pytest.raises(InputError, match="dimensions"):
        embedder.embed(["x"], dimensions=1000)
    with pytest.raises(InputError, match="list of texts"):
        embedder.embed("a single string")


def test_prompts(studio):
    embedder = studio.embedder()
    with pytest.raises(InputError, match="no prompt named 'query'"):
        embedder.embed(["x"], prompt_name="query")
    plain = embedder.embed(["x"])
    prefixed = embedder.embed(["x"], prompt="query: ")
    assert not np.allclose(plain, prefixed)


def test_unknown_variant(studio, default_model):
    spec = spec_from_manifest(default_model, read_manifest(default_model))
    with pytest.raises(InputError, match="no 'fp64' variant"):
        Embedder(spec, variant="fp64")


def test_unavailable_provider_is_a_clear_error(studio):
    with pytest.raises(ProviderError, match="cuda.*not available") as info:
        studio.embedder(provider="cuda").embed(["x"])
    assert "onnxruntime-gpu" in info.value.hint
    with pytest.raises(ProviderError, match="Unknown execution provider"):
        studio.embedder(provider="quantum").embed(["x"])


def _copy_model(default_model, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(default_model, folder)
    return folder


def test_corrupt_or_truncated_onnx_file(default_model, tmp_path):
    folder = _copy_model(default_model, tmp_path)
    onnx_file = folder / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[: 100_000])  # truncated download
    embedder = Embedder(spec_from_manifest(folder, read_manifest(folder)), provider="cpu")
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        embedder.embed(["x"])
    onnx_file.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        Embedder(spec_from_manifest(folder, read_manifest(folder)), provider="cpu").embed(["x"])


def test_model_folder_without_tokenizer(default_model, tmp_path):
    folder = _copy_model(default_model, tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelFileError, match="no tokenizer.json"):
        Embedder(spec_from_manifest(folder, read_manifest(folder)), provider="cpu")


def test_missing_onnx_file(default_model, tmp_path):
    folder = _copy_model(default_model, tmp_path)
    (folder / "model_int8.onnx").unlink()
    with pytest.raises(ModelFileError, match="missing"):
        Embedder(spec_from_manifest(folder, read_manifest(folder)), variant="int8", provider="cpu").embed(["x"])


def test_info_reports_the_provider_that_really_runs(studio):
    info = studio.embedder(variant="fp32", provider="auto").info()  # a named variant: auto is the CPU here
    assert info["provider"] == "cpu" and info["fallback"] is None and info["provider_requested"] == "auto"
    # the auto variant may move to OpenVINO (its probe timed both): info says where it really runs
    auto = studio.embedder(provider="auto")
    assert auto.info()["provider"] == auto.provider in ("cpu", "openvino")
