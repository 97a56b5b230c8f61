import math

import numpy as np
import pytest
from conftest import shared_data

from engine.measure.evaluation import load_beir, ndcg_at_k, rank, recall_at_k


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


def test_fusion_of_two_rankings_is_the_collections_fusion():
    from engine.measure.evaluation import fuse_ranked

    assert fuse_ranked(["a", "b", "c"], ["c", "d"], 3) == ["c", "a", "b"]  # c: 1/63 + 1/61 beats a: 1/61
    assert fuse_ranked(["a"], ["b"], 2, dense_weight=0.2) == ["b", "a"]


def test_keyword_mode_on_scifact_needs_no_model():
    from engine.measure.evaluation import evaluate

    result = evaluate(load_beir(shared_data("scifact")), None, None, {"model": "bm25"}, mode="keyword")
    data = result.to_dict()
    assert data["mode"] == "keyword" and data["ndcg@10"] == result.ndcg_at_10
    assert 0.68 <= data["ndcg@10"] <= 0.70 and data["recall@100"] > 0.9  # bm25s + English stemmer: 0.686
