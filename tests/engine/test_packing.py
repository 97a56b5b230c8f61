"""Sequence packing (engine.packing): the row layout and the feed over arbitrary lengths and token ids, and the
OpenVINO provider's packed graph against padded rows on real SciFact queries, alone and from concurrent callers."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import shared_data
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import packing
from engine.errors import ProviderError
from engine.settings import load_settings
from engine.studio import Studio
from engine.tokenize import Encoded

MODEL = "all-minilm-l6-v2"
texts_of_tokens = st.lists(st.lists(st.integers(0, 30000), min_size=1, max_size=90), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=60), st.integers(1, 256))
def test_rows_hold_every_text_once_within_their_capacity(lengths, capacity):
    rows = packing.pack_rows(lengths, capacity)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    for row in rows:
        assert sum(lengths[i] for i in row) <= max(capacity, lengths[row[0]])
        assert lengths[row[0]] == max(lengths[i] for i in row)  # the longest text opens its row
        assert len(row) == 1 or all(lengths[i] <= capacity for i in row)  # a text over capacity is alone
    # first fit: no row could have taken a later row's opening text when that row was opened
    for later, row in enumerate(rows):
        for earlier in rows[:later]:
            opened_before = [i for i in earlier if lengths[i] >= lengths[row[0]] and i != earlier[0]]
            room = max(capacity, lengths[earlier[0]]) - lengths[earlier[0]] - sum(lengths[i] for i in opened_before)
            assert lengths[row[0]] > room or lengths[row[0]] > capacity


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 120), min_size=1, max_size=40), st.integers(0, 128))
def test_a_batch_worth_packing_takes_fewer_rows(lengths, capacity):
    if packing.worth_packing(lengths, capacity):
        assert len(packing.pack_rows(lengths, capacity)) < len(lengths)
    elif capacity > 0 and len(lengths) > 1 and max(lengths) <= capacity:
        assert len(packing.pack_rows(lengths, capacity)) == len(lengths)


@settings(max_examples=200, deadline=None)
@given(texts_of_tokens, st.integers(1, 128), st.integers(0, 5))
def test_packed_feed_holds_each_text_at_its_own_positions_and_unpacks_back(ids, capacity, pad_id):
    items = [Encoded(tuple(t), tuple(x % 2 for x in t)) for t in ids]
    packed = packing.pack(items, capacity, pad_id)
    feed = packed.feed
    rows, width = packed.shape
    assert width % packing.STEP == 0 and rows == len(packing.pack_rows([len(t) for t in ids], capacity))
    assert {name: value.dtype for name, value in feed.items()} == {name: np.dtype(np.int64) for name in feed}
    for index, tokens in enumerate(ids):
        row, span = packed.rows[index], slice(packed.offsets[index], packed.offsets[index] + len(tokens))
        assert feed["input_ids"][row, span].tolist() == tokens
        assert feed["token_type_ids"][row, span].tolist() == [x % 2 for x in tokens]
        assert feed[packing.POSITIONS][row, span].tolist() == list(range(len(tokens)))
        segment = feed[packing.SEGMENTS][row, span]
        assert segment.min() == segment.max() > 0  # one segment id per text, never padding's 0
        assert (feed[packing.SEGMENTS][row] == segment[0]).sum() == len(tokens)  # no other text shares it
    assert (feed["attention_mask"] == (feed[packing.SEGMENTS] > 0)).all()
    assert (feed["input_ids"][feed["attention_mask"] == 0] == pad_id).all()
    # a token output that is each token's id comes back as each text's ids, right-padded with zeros
    output = np.stack([feed["input_ids"], feed[packing.POSITIONS]], axis=-1).astype(np.float32)
    tokens, mask = packing.unpack(output, packed)
    assert tokens.shape == (len(ids), max(map(len, ids)), 2) and mask.shape == tokens.shape[:2]
    for index, text in enumerate(ids):
        assert mask[index].sum() == len(text) and mask[index, :len(text)].all()
        assert tokens[index, :len(text), 0].tolist() == text
        assert tokens[index, :len(text), 1].tolist() == list(range(len(text)))
        assert not tokens[index, len(text):].any()


@pytest.fixture(scope="module")
def queries() -> list[str]:
    with shared_data("scifact", "queries.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line)["text"] for _, line in zip(range(96), handle)]


def _embedder(default_model, variant: str = "fp32"):
    return Studio(load_settings(data_dir=default_model.parent.parent)).embedder(MODEL, variant, "openvino")


@pytest.mark.parametrize("precision,atol", [("f32", 1e-5), ("bf16", 3e-3)])
def test_packed_queries_equal_padded_ones_on_openvino(default_model, queries, monkeypatch, precision, atol):
    monkeypatch.setenv("STUDIO_OPENVINO_PRECISION", precision)
    packed = _embedder(default_model)
    assert packed.session().session.packing_capacity == packing.CAPACITY
    monkeypatch.setenv("STUDIO_OPENVINO_PACK_TOKENS", "0")
    padded = _embedder(default_model)
    assert padded.session().session.packing_capacity == 0
    reference = Studio(load_settings(data_dir=default_model.parent.parent)).embedder(MODEL, "fp32", "cpu")
    for size in (2, 8, 32, 96):  # 32 and 96: packed rows over the throughput form's streams
        got, expected = packed.embed(queries[:size]), padded.embed(queries[:size])
        assert float(np.abs(got - expected).max()) < atol
        assert float((got * reference.embed(queries[:size])).sum(axis=1).min()) >= 0.9999


def test_files_fused_for_onnx_runtime_run_unpacked(default_model, queries):
    embedder = _embedder(default_model, "optimized")  # com.microsoft Attention: not the pattern packing changes
    assert embedder.session().session.packing_capacity == 0
    assert embedder.embed(queries[:8]).shape == (8, 384)


def test_a_bad_packing_setting_is_a_message(default_model, monkeypatch):
    monkeypatch.setenv("STUDIO_OPENVINO_PACK_TOKENS", "many")
    with pytest.raises(ProviderError, match="STUDIO_OPENVINO_PACK_TOKENS must be a whole number of tokens"):
        _embedder(default_model).embed(["x"])


def test_concurrent_callers_of_packed_batches_get_their_own_results(default_model, queries):
    """4 threads x 8 calls of 2-24 short texts on one session (packed rows on the latency form or on a stream of
    the throughput form while another call runs) equal the same calls made one at a time."""
    embedder = _embedder(default_model)
    jobs = [queries[i:i + 2 + (i * 7) % 23] for i in range(32)]
    expected = [embedder.embed(texts) for texts in jobs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(embedder.embed, jobs))
    for mine, theirs in zip(got, expected):
        np.testing.assert_allclose(mine, theirs, atol=3e-3)  # bf16 rounding differs by form, not by text
        assert float((mine * theirs).sum(axis=1).min()) >= 0.9999


def test_a_graph_the_edit_fails_on_runs_unpacked_with_a_warning(default_model, queries, monkeypatch, caplog):
    """An OpenVINO release whose graph API rejects the edit costs the speed-up, never the embeddings."""
    import engine.openvino_session as ov_session

    def refuse(model):
        raise RuntimeError("Check 'node' failed")  # what openvino raises on a port it cannot connect

    expected = _embedder(default_model).embed(queries[:8])
    monkeypatch.setattr(ov_session, "packed_model", refuse)
    with caplog.at_level("WARNING", logger=ov_session.log.name):
        embedder = _embedder(default_model)
        got = embedder.embed(queries[:8])
    assert embedder.session().session.packing_capacity == 0
    assert "runs unpacked" in caplog.text
    assert float((got * expected).sum(axis=1).min()) >= 0.9999
