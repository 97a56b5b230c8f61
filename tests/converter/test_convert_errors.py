"""The converter's clear errors: unknown model, hub offline, remote code, unsupported architecture,
output folder not writable, existing output without --force."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tiny_models import TinySpec, build

from converter.convert import convert
from engine.errors import (
    ConversionError,
    HubOfflineError,
    InputError,
    ModelNotFoundError,
    RemoteCodeRefusedError,
    UnsupportedModelError,
)

ROOT = __import__("conftest").ROOT


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build(TinySpec("bert"), tmp_path_factory.mktemp("conv-errors") / "st")


def test_missing_local_folder(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        convert("./no/such/folder", tmp_path / "out")


def test_hub_id_while_offline_is_a_clear_error(tmp_path):
    with pytest.raises(HubOfflineError):
        convert("someone/some-model", tmp_path / "out")


def test_not_a_model_id(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a Hugging Face model id"):
        convert("just-a-word", tmp_path / "out")


def test_remote_code_is_refused_unless_allowed(tiny, tmp_path):
    import shutil

    folder = tmp_path / "custom"
    shutil.copytree(tiny, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(RemoteCodeRefusedError, match="refuses"):
        convert(str(folder), tmp_path / "out")


def test_unsupported_architecture(tiny, tmp_path):
    import shutil

    folder = tmp_path / "weird"
    shutil.copytree(tiny, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "quantum-transformer"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="quantum-transformer"):
        convert(str(folder), tmp_path / "out")


def test_output_folder_not_writable(tiny, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConversionError, match="not writable"):
        convert(str(tiny), blocker / "model")


def test_existing_output_needs_force_and_bad_names(tiny, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(ConversionError, match="already exists"):
        convert(str(tiny), out)
    assert (out / "keep.txt").read_text() == "precious"
    with pytest.raises(InputError, match="invalid"):
        convert(str(tiny), tmp_path / "Bad Name!")
    with pytest.raises(InputError, match="Unknown variant"):
        convert(str(tiny), tmp_path / "ok", variant_names=("fp64",))


def test_cli_prints_message_and_hint_without_traceback(tiny, tmp_path):
    result = subprocess.run([sys.executable, "converter/convert.py", "someone/some-model", "--out", str(tmp_path / "x")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "error:" in result.stderr and "hint:" in result.stderr and "Traceback" not in result.stderr


def test_force_through_a_linked_model_folder_replaces_the_link_not_its_target(tiny, tmp_path):
    """models/NAME may be a link (a model kept on another disk). --force followed it: the conversion landed in the
    target, and the target's own files (notes, calibration data) were removed with the old model."""
    shared = tmp_path / "shared" / "minilm"
    shared.mkdir(parents=True)
    (shared / "MY_NOTES.txt").write_text("precious")
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny").symlink_to(shared, target_is_directory=True)
    manifest = convert(str(tiny), models / "tiny", variant_names=("fp32",), force=True, validate_parity=False)
    out = models / "tiny"
    assert manifest.name == "tiny" and not out.is_symlink() and (out / "manifest.json").is_file()
    assert sorted(p.name for p in shared.iterdir()) == ["MY_NOTES.txt"]  # the target as it was
    assert sorted(p.name for p in models.iterdir()) == ["tiny"]  # no staging or old folder left beside it
