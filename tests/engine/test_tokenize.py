from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engine.errors import ModelFileError
from engine.tokenize import TextTokenizer


@pytest.fixture()
def tokenizer_folder(tmp_path):
    from tiny_models import gt_model_dir

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(gt_model_dir() / name, tmp_path / name)
    return tmp_path


def test_truncates_at_max_seq_length_with_special_tokens(tokenizer_folder):
    tok = TextTokenizer.from_folder(tokenizer_folder, max_seq_length=16)
    (long,) = tok.encode(["word " * 100])
    assert len(long.ids) == 16 and long.ids[0] == 101 and long.ids[-1] == 102  # [CLS] ... [SEP]
    assert tok.count_tokens("word " * 100) == 100  # counting never truncates


def test_padding_sides(tokenizer_folder):
    right = TextTokenizer.from_folder(tokenizer_folder, 32).batch(["a b c", "a"])
    assert right.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    config = json.loads((tokenizer_folder / "tokenizer_config.json").read_text())
    config["padding_side"] = "left"
    (tokenizer_folder / "tokenizer_config.json").write_text(json.dumps(config))
    left = TextTokenizer.from_folder(tokenizer_folder, 32).batch(["a b c", "a"])
    assert left.attention_mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]]
    assert left.input_ids[1, 0] == 0 and left.input_ids.dtype == np.int64


def test_prompt_length_excludes_the_trailing_separator(tokenizer_folder):
    tok = TextTokenizer.from_folder(tokenizer_folder, 32)
    assert tok.prompt_length("query: ") == 3  # [CLS] query :
    assert tok.special_tokens_count == 2


def test_token_offsets_point_into_the_text(tokenizer_folder):
    tok = TextTokenizer.from_folder(tokenizer_folder, 32)
    text = "Hello, wonderful world"
    spans = tok.token_offsets(text)
    assert text[spans[0][0]:spans[0][1]].lower() == "hello" and spans[-1][1] == len(text)


def test_missing_or_broken_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="no tokenizer.json"):
        TextTokenizer.from_folder(tmp_path, 16)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="unreadable"):
        TextTokenizer.from_folder(tmp_path, 16)


def test_one_text_encodes_as_it_does_in_a_batch(tokenizer_folder):
    """One text takes the tokenizer's single-text path (no thread pool); it must give what the batch path gives,
    truncation included, for any Unicode."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    tok = TextTokenizer.from_folder(tokenizer_folder, max_seq_length=24)

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=200))
    def check(text):
        assert tok.encode([text]) == tok.encode([text, "another text"])[:1]

    check()


def test_a_batch_encodes_as_the_tokenizer_with_offsets_does(tokenizer_folder):
    """Batches go through ``encode_batch_fast`` (no character offsets); its ids and type ids must be those of the
    offset-computing ``encode_batch`` for any Unicode, truncation included."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from engine.tokenize import Encoded

    tok = TextTokenizer.from_folder(tokenizer_folder, max_seq_length=24)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.text(max_size=300), min_size=2, max_size=6))
    def check(texts):
        full = tok._tokenizer.encode_batch(texts, add_special_tokens=True)
        encoded = tok.encode(texts)
        assert encoded == [Encoded(tuple(e.ids), tuple(e.type_ids), bool(e.overflowing)) for e in full]
        # truncated says whether the text had more tokens than the model takes (the HTTP API's "truncate": false)
        assert [e.truncated for e in encoded] == [len(tok._plain.encode(t).ids) > 24 for t in texts]

    check()
