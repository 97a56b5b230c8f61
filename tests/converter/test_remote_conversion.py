"""engine.conversion through the converter service (STUDIO_CONVERTER_URL): what the app and the CLI do
in the Docker images, which have no torch."""

from __future__ import annotations

import socket

import pytest
from test_server import LiveServer

from converter.server import ConverterSettings, create_app
from engine import conversion
from engine.errors import ConversionError
from engine.manifest import read_manifest
from engine.registry import Registry
from engine.settings import REPO_ROOT, load_settings


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from tiny_models import TinySpec, build

    allowed = tmp_path_factory.mktemp("remote-allowed")
    build(TinySpec("bert", pooling=("cls",)), allowed / "tiny")
    data = tmp_path_factory.mktemp("remote-data")
    app = create_app(ConverterSettings(allowed_dir=allowed, api_token=None), load_settings(data_dir=data))
    with LiveServer(app) as server:
        yield server.url, allowed, data


def test_conversion_runs_on_the_service_with_progress(service, tmp_path):
    url, allowed, data = service
    registry = Registry(REPO_ROOT / "models.yaml", tmp_path)
    request = conversion.plan(registry, str(allowed / "tiny"), name="tiny-remote", variants=("fp32",))
    steps = []
    result = conversion.run(request, tmp_path, progress=lambda step, fraction: steps.append((step, fraction)),
                            converter_url=url)
    assert result["name"] == "tiny-remote" and result["variants"]["fp32"]["min_cosine"] >= 0.99999
    manifest = read_manifest(data / "models" / "tiny-remote")  # landed in the service's models folder
    assert manifest.pooling_modes == ("cls",)
    assert steps and steps[-1][1] == pytest.approx(1.0) and all(0 <= f <= 1 for _, f in steps)


def test_service_refusals_and_outages_are_clear_errors(service, tmp_path):
    url, _, _ = service
    registry = Registry(REPO_ROOT / "models.yaml", tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(ConversionError) as refused:
        conversion.run(conversion.plan(registry, str(outside), name="x"), tmp_path, converter_url=url)
    assert refused.value.message and "Traceback" not in refused.value.message
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(ConversionError, match="cannot be reached") as unreachable:
        conversion.run(conversion.plan(registry, "all-minilm-l6-v2"), tmp_path, converter_url=down)
    assert "STUDIO_CONVERTER_URL" in unreachable.value.hint
