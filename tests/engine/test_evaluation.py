import math

import numpy as np
import pytest
from conftest import shared_data

from engine.evaluation import load_beir, ndcg_at_k, rank, recall_at_k


def test_ndcg_and_recall_by_hand():
    relevant = {"d1": 1, "d2": 1}
    assert ndcg_at_k(["d1", "d2", "x"], relevant) == pytest.approx(1.0)
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["x", "d1", "y"], relevant) == pytest.approx(expected)
    assert ndcg_at_k(["x"] * 10 + ["d1"], relevant) == 0.0  # beyond the cut-off
    assert recall_at_k(["d2", "x"], relevant, 100) == 0.5
    assert ndcg_at_k(["a"], {}) == 0.0 and recall_at_k(["a"], {}) == 0.0


def test_rank_orders_by_cosine():
    docs = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    queries = np.array([[0, 2], [3, 0.1]], dtype=np.float32)
    assert rank(queries, docs, ["a", "b", "c"], 2) == [["b", "c"], ["a", "c"]]


def test_load_scifact():
    dataset = load_beir(shared_data("scifact"))
    assert len(dataset.doc_ids) == 5183 and len(dataset.query_ids) == 300
    assert sum(len(v) for v in dataset.qrels.values()) == 339
    assert all(t == t.strip() and t for t in dataset.doc_texts[:100])
