import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import pooling


def _right_and_left(tokens_per_row, hidden=4, seed=0):
    """The same rows padded on the right and on the left, with their masks."""
    rng = np.random.default_rng(seed)
    length = max(tokens_per_row)
    rows = [rng.normal(size=(n, hidden)).astype(np.float32) for n in tokens_per_row]
    right = np.full((len(rows), length, hidden), 7.0, dtype=np.float32)  # pads hold garbage on purpose
    left = right.copy()
    mask_r = np.zeros((len(rows), length), dtype=np.int64)
    mask_l = mask_r.copy()
    for i, row in enumerate(rows):
        n = len(row)
        right[i, :n], mask_r[i, :n] = row, 1
        left[i, length - n:], mask_l[i, length - n:] = row, 1
    return rows, right, mask_r, left, mask_l


def test_each_mode_matches_hand_computation():
    rows, tokens, mask, _, _ = _right_and_left([3, 1, 5])
    for i, row in enumerate(rows):
        got = {m: pooling.pool(tokens, mask, [m])[i] for m in pooling.POOLING_MODES}
        np.testing.assert_allclose(got["cls"], row[0], rtol=1e-6)
        np.testing.assert_allclose(got["lasttoken"], row[-1], rtol=1e-6)
        np.testing.assert_allclose(got["mean"], row.mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(got["max"], row.max(axis=0), rtol=1e-6)
        np.testing.assert_allclose(got["mean_sqrt_len_tokens"], row.sum(axis=0) / np.sqrt(len(row)), rtol=1e-5)
        weights = np.arange(1, len(row) + 1, dtype=np.float32)[:, None]
        np.testing.assert_allclose(got["weightedmean"], (row * weights).sum(0) / weights.sum(), rtol=1e-5)


def test_modes_concatenate_in_the_given_order():
    _, tokens, mask, _, _ = _right_and_left([2, 4])
    both = pooling.pool(tokens, mask, ["cls", "mean"])
    np.testing.assert_array_equal(both[:, :4], pooling.pool(tokens, mask, ["cls"]))
    np.testing.assert_array_equal(both[:, 4:], pooling.pool(tokens, mask, ["mean"]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(0, 10_000))
def test_left_and_right_padding_give_the_same_vectors_except_weightedmean(lengths, seed):
    _, right, mask_r, left, mask_l = _right_and_left(lengths, seed=seed)
    for mode in ("cls", "lasttoken", "mean", "max", "mean_sqrt_len_tokens"):
        np.testing.assert_allclose(pooling.pool(right, mask_r, [mode]), pooling.pool(left, mask_l, [mode]),
                                   rtol=1e-5, atol=1e-6)


def test_all_pad_rows_pool_to_zeros_in_every_mode():
    tokens = np.ones((2, 3, 4), dtype=np.float32)
    mask = np.array([[1, 1, 0], [0, 0, 0]])
    out = pooling.pool(tokens, mask, list(pooling.POOLING_MODES))
    assert np.all(out[1] == 0) and np.all(np.isfinite(out))
    assert np.all(pooling.l2_normalize(out)[1] == 0)


def test_exclude_prompt_right_and_left_padding():
    right = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    left = np.array([[0, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    np.testing.assert_array_equal(pooling.exclude_prompt(right, 2), [[0, 0, 1, 1, 0], [0, 0, 1, 0, 0]])
    np.testing.assert_array_equal(pooling.exclude_prompt(left, 2), [[0, 0, 0, 1, 1], [0, 0, 0, 0, 1]])


@pytest.mark.parametrize("activation", sorted(pooling.ACTIVATIONS))
def test_dense_layer(activation):
    import math

    x = np.array([[0.5, -1.0, 2.0]], dtype=np.float32)
    w = np.array([[1.0, 0.0, 1.0], [0.0, 2.0, 0.0]], dtype=np.float32)
    b = np.array([0.1, -0.2], dtype=np.float32)
    z = x @ w.T + b
    expected = {
        "identity": z, "tanh": np.tanh(z), "relu": np.maximum(z, 0), "sigmoid": 1 / (1 + np.exp(-z)),
        "silu": z / (1 + np.exp(-z)),
        "gelu": 0.5 * z * (1 + np.vectorize(math.erf)(z / math.sqrt(2))),
        "gelu_tanh": 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3))),
    }[activation]
    np.testing.assert_allclose(pooling.dense(x, w, b, activation), expected, rtol=1e-5, atol=1e-6)


def test_matryoshka_truncation_renormalises():
    x = pooling.l2_normalize(np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32))
    cut = pooling.truncate_dim(x, 4)
    assert cut.shape == (3, 4)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(cut, x[:, :4] / np.linalg.norm(x[:, :4], axis=1, keepdims=True), rtol=1e-6)
    with pytest.raises(ValueError):
        pooling.truncate_dim(x, 9)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown pooling mode"):
        pooling.pool(np.zeros((1, 1, 2)), np.ones((1, 1)), ["median"])
