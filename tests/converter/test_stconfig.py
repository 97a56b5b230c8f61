"""Reading sentence-transformers configuration files (pure: no torch)."""

from __future__ import annotations

import json

import pytest

from converter import stconfig
from engine.errors import UnsupportedModelError

OLD = "sentence_transformers.models."
NEW = {
    "Transformer": "sentence_transformers.base.modules.transformer.Transformer",
    "Pooling": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
    "Dense": "sentence_transformers.base.modules.dense.Dense",
    "Normalize": "sentence_transformers.base.modules.normalize.Normalize",  # v6 location
}


def _write(folder, name, data):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _model(tmp_path, modules, pooling=None, dense=(), bert_config=None, st_meta=None):
    _write(tmp_path, "modules.json", [{"idx": i, "name": str(i), "path": p, "type": t} for i, (p, t) in enumerate(modules)])
    if pooling is not None:
        _write(tmp_path, "1_Pooling/config.json", pooling)
    for path, config in dense:
        _write(tmp_path, f"{path}/config.json", config)
    if bert_config is not None:
        _write(tmp_path, "sentence_bert_config.json", bert_config)
    if st_meta is not None:
        _write(tmp_path, "config_sentence_transformers.json", st_meta)
    return tmp_path


def test_old_class_paths_and_legacy_pooling_schema(tmp_path):
    folder = _model(
        tmp_path,
        [("", OLD + "Transformer"), ("1_Pooling", OLD + "Pooling"), ("2_Normalize", OLD + "Normalize")],
        pooling={"word_embedding_dimension": 384, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
                 "pooling_mode_max_tokens": True},
        bert_config={"max_seq_length": 256, "do_lower_case": True},
    )
    config = stconfig.read_st_config(folder)
    assert config.pooling_modes == ("max", "mean")  # sentence-transformers' concatenation order
    assert config.normalize and config.max_seq_length == 256 and config.do_lower_case
    assert config.pooling_source == "1_Pooling/config.json" and config.is_sentence_transformers


def test_new_class_paths_compact_schema_dense_and_prompts(tmp_path):
    folder = _model(
        tmp_path,
        [("", NEW["Transformer"]), ("1_Pooling", NEW["Pooling"]), ("2_Dense", NEW["Dense"]),
         ("3_Dense", NEW["Dense"]), ("4_Normalize", NEW["Normalize"])],
        pooling={"embedding_dimension": 768, "pooling_mode": ["lasttoken"], "include_prompt": False},
        dense=[("2_Dense", {"in_features": 768, "out_features": 3072, "bias": False,
                            "activation_function": "torch.nn.modules.linear.Identity"}),
               ("3_Dense", {"in_features": 3072, "out_features": 768})],
        st_meta={"prompts": {"query": "task: search | query: ", "document": "title: none | text: "},
                 "default_prompt_name": "query", "similarity_fn_name": "dot"},
    )
    config = stconfig.read_st_config(folder)
    assert config.pooling_modes == ("lasttoken",) and config.include_prompt is False
    assert [(d.out_features, d.bias, d.activation) for d in config.dense] == [(3072, False, "identity"), (768, True, "tanh")]
    assert config.prompts["query"] == "task: search | query: " and config.default_prompt_name == "query"
    assert config.similarity == "dot" and config.max_seq_length is None


def test_all_false_legacy_pooling_means_mean(tmp_path):
    folder = _model(tmp_path, [("", OLD + "Transformer"), ("1_Pooling", OLD + "Pooling")],
                    pooling={"word_embedding_dimension": 8, "pooling_mode_cls_token": False})
    assert stconfig.read_st_config(folder).pooling_modes == ("mean",)


def test_plain_transformers_folder_gets_the_stated_default(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    config = stconfig.read_st_config(tmp_path)
    assert config.pooling_modes == ("mean",) and config.normalize is False and not config.is_sentence_transformers
    assert config.pooling_source == "default" and "mean pooling" in config.notes[0]


def test_transformer_in_a_subfolder(tmp_path):
    folder = _model(tmp_path, [("0_Transformer", OLD + "Transformer"), ("1_Pooling", OLD + "Pooling")],
                    pooling={"pooling_mode": "cls"})
    _write(tmp_path, "0_Transformer/sentence_bert_config.json", {"max_seq_length": 128})
    config = stconfig.read_st_config(folder)
    assert config.transformer_folder == tmp_path / "0_Transformer" and config.max_seq_length == 128


@pytest.mark.parametrize(
    "modules, pooling, message",
    [
        ([("", OLD + "Transformer"), ("1", OLD + "WeightedLayerPooling")], None, "not supported"),
        ([("1_Pooling", OLD + "Pooling")], {"pooling_mode": "mean"}, "no Transformer"),
        ([("", OLD + "Transformer"), ("1_Pooling", OLD + "Pooling")], {"pooling_mode": "median"}, "Unknown pooling"),
    ],
)
def test_unsupported_configurations_are_clear_errors(tmp_path, modules, pooling, message):
    folder = _model(tmp_path, modules, pooling=pooling)
    with pytest.raises(UnsupportedModelError, match=message):
        stconfig.read_st_config(folder)


def test_unsupported_dense_activation(tmp_path):
    folder = _model(tmp_path, [("", OLD + "Transformer"), ("2_Dense", OLD + "Dense")],
                    dense=[("2_Dense", {"in_features": 4, "out_features": 2, "activation_function": "my.custom.Swish"})])
    with pytest.raises(UnsupportedModelError, match="activation"):
        stconfig.read_st_config(folder)


@pytest.mark.parametrize("where", ["../outside", "/abs/outside", "link", "0_Transformer/../../outside"])
def test_a_module_folder_outside_the_model_is_refused(tmp_path, where):
    """modules.json is the model author's: a Transformer path of "../private/model" (or a link out) let a converter
    that may only read its allowed folder export any model the process could read."""
    outside = tmp_path / "outside"
    outside.mkdir()
    _write(outside, "config.json", {"model_type": "bert"})
    model = tmp_path / "model"
    model.mkdir()
    if where == "link":
        (model / "link").symlink_to(outside, target_is_directory=True)
    folder = _model(model, [(where, OLD + "Transformer"), ("1_Pooling", OLD + "Pooling")], pooling={"pooling_mode": "mean"})
    with pytest.raises(UnsupportedModelError, match="outside the model's folder"):
        stconfig.read_st_config(folder)


def test_a_model_reached_through_a_link_keeps_its_module_folders(tmp_path):
    # a hub snapshot or a linked model folder: the model's own subfolders are inside it, wherever it lives
    real = _model(tmp_path / "real", [("0_Transformer", OLD + "Transformer"), ("1_Pooling", OLD + "Pooling")],
                  pooling={"pooling_mode": "cls"})
    (tmp_path / "real" / "0_Transformer").mkdir(exist_ok=True)
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    assert stconfig.read_st_config(tmp_path / "linked").transformer_folder == tmp_path / "linked" / "0_Transformer"
