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


def _beir(folder, corpus='{"_id": "d1", "text": "pumps and valves"}\n', queries='{"_id": "q1", "text": "pumps"}\n',
          qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\n"):
    folder.mkdir()
    for name, content in (("corpus.jsonl", corpus), ("queries.jsonl", queries), ("qrels-test.tsv", qrels)):
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        elif content is not None:
            (folder / name).write_text(content, encoding="utf-8")
    return folder


@pytest.mark.parametrize("files, message", [
    ({"qrels": "q1\td1\t1.0\n"}, None),  # a float score is a score
    ({"qrels": "q1\td1\thigh\n"}, "the score 'high' is not a number"),
    ({"qrels": b"q1\td1\t1\n\xff\xfe\n"}, "is not UTF-8 text"),
    ({"corpus": "[1, 2]\n"}, "is not a JSON object with an '_id'"),
    ({"corpus": '{"text": "no id"}\n'}, "is not a JSON object with an '_id'"),
    ({"corpus": '{"_id": "d1", "text": null}\n'}, None),  # null text: an empty document
    ({"corpus": '{"_id": "d1", "title": 7, "text": "x"}\n'}, "'title' is a JSON int, not a string"),
    ({"corpus": '{"_id": "d1", "text": "\\ud800"}\n'}, "holds a lone surrogate"),
    ({"corpus": '{"_id": "d1", "a": ' + "[" * 100_000 + "]" * 100_000 + "}\n"}, "is not valid JSON"),
    ({"corpus": ""}, "holds no document"),
    ({"queries": '{"_id": "q1"}\n'}, "has no 'text'"),
])
def test_a_malformed_dataset_is_an_input_error_naming_file_and_line(tmp_path, files, message):
    """Each of these was a traceback (ValueError, KeyError, TypeError, AttributeError, RecursionError, a
    UnicodeDecodeError, the tokenizer's TypeError), or an nDCG of 0.0 over no documents."""
    from engine.errors import InputError

    folder = _beir(tmp_path / "beir", **files)
    if message is None:
        assert load_beir(folder).query_ids == ["q1"]
        return
    with pytest.raises(InputError, match=message) as caught:
        load_beir(folder)
    assert caught.value.hint and str(folder) in caught.value.message


def test_a_dataset_file_that_is_a_folder_a_device_or_a_fifo_is_refused_before_reading(tmp_path):
    import os

    from engine.errors import InputError

    folder = _beir(tmp_path / "beir", corpus=None)
    (folder / "corpus.jsonl").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        load_beir(folder)
    (folder / "corpus.jsonl").rmdir()
    (folder / "corpus.jsonl").symlink_to("/dev/zero")  # was read until memory ran out
    with pytest.raises(InputError, match="not a regular file"):
        load_beir(folder)
    (folder / "corpus.jsonl").unlink()
    os.mkfifo(folder / "corpus.jsonl")  # waited forever for a writer
    with pytest.raises(InputError, match="not a regular file"):
        load_beir(folder)
