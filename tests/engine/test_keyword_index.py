"""The BM25 keyword index over any texts: chunks with no term at all (stop words, symbols, OCR garbage
from a tiny random model) once crashed bm25s's index build (max() of an empty vocabulary)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.keyword_index import Analyzer, KeywordIndex

TEXTS = st.lists(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40), max_size=12)


def test_texts_without_a_single_term_build_an_index_that_scores_zero(tmp_path):
    texts = ["the of a", "—", "!!! ...", ""]
    index = KeywordIndex.build(texts, "en")
    assert not index.indexed
    assert index.scores("anything at all").tolist() == [0.0] * 4
    index.save(tmp_path / "kw")
    loaded = KeywordIndex.load(tmp_path / "kw")
    assert loaded.size == 4 and loaded.scores("the").tolist() == [0.0] * 4


@settings(max_examples=150, deadline=None)
@given(texts=TEXTS, query=st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30))
def test_any_texts_build_save_load_and_score(tmp_path_factory, texts, query):
    index = KeywordIndex.build(texts, "en")
    folder = tmp_path_factory.mktemp("kw") / "index"
    index.save(folder)
    loaded = KeywordIndex.load(folder)
    scores = loaded.scores(query)
    assert scores.shape == (len(texts),) and np.all(np.isfinite(scores)) and np.all(scores >= 0)
    assert np.allclose(scores, index.scores(query))
    if texts and any(Analyzer("en").terms([texts[0]])[0]):  # a text with a term is found by its own words
        assert loaded.scores(texts[0])[0] > 0
