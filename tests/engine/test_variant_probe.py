"""``auto`` variant: the fastest converted variant that keeps fp32 quality, measured on this machine once and
remembered in the model folder; a variant the user names is used as named."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine import variant_probe
from engine.manifest import read_manifest


def test_candidates_are_the_variants_in_the_fp32_tier(default_model):
    names, excluded = variant_probe.candidates(read_manifest(default_model))
    assert names[0] == "fp32"
    assert {"optimized", "fp16"} <= set(names)  # parity at conversion: min cosine >= 0.9999
    assert "int8" not in names and excluded["int8"].startswith("min cosine 0.9")


@pytest.mark.parametrize(("seconds", "chosen"), [
    ({"fp32": 1.0, "optimized": 0.90}, "optimized"),
    ({"fp32": 1.0, "optimized": 0.97}, "fp32"),  # within the 5 % margin: the reference stays
    ({"fp32": 1.0, "optimized": 1.20, "fp16": 5.0}, "fp32"),
    ({"optimized": 1.0, "fp16": 2.0}, "optimized"),  # no reference converted
    # another provider: the first configuration within the margin of the fastest, not the noisiest winner
    ({"fp32": 0.30, "optimized": 0.41, "fp32@openvino": 0.083, "optimized@openvino": 0.081,
      "fp16@openvino": 0.080}, "fp32@openvino"),
    ({"fp32": 0.30, "fp32@openvino": 0.089, "optimized@openvino": 0.081}, "optimized@openvino"),
])
def test_choose_needs_a_margin_over_the_reference(seconds, chosen):
    assert variant_probe.choose(seconds) == chosen


def test_measure_interleaves_and_stops_timing_a_hopeless_candidate(monkeypatch):
    calls: list[str] = []
    clock = [0.0]  # the probe's clock, advanced by each call's cost: no machine's speed or hiccup in the result
    monkeypatch.setattr(variant_probe, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def fake(name, cost):
        def embed(texts):
            calls.append(name)
            clock[0] += cost / 1000
        return embed

    seconds = variant_probe.measure({"a": fake("a", 1), "b": fake("b", 10)}, ["x"] * 4, ["y"] * 4, rounds=3)
    assert seconds == {"a": 0.002, "b": 0.02}  # a long and a short call each
    # warm-up (2 calls each), then round 1 times both; b, 10x slower, is not timed in rounds 2 and 3
    assert calls.count("b") == 4 and calls.count("a") == 2 + 2 * 3


def test_studio_resolves_auto_once_and_remembers_it(default_model, tmp_path, monkeypatch):
    from engine.settings import load_settings
    from engine.studio import Studio

    probe_file = default_model / variant_probe.PROBE_FILE
    probe_file.unlink(missing_ok=True)
    studio = Studio(load_settings(data_dir=default_model.parent.parent))
    embedder = studio.embedder()  # the registry's default variant is auto
    assert embedder.variant in ("fp32", "optimized", "fp16")
    stored = json.loads(probe_file.read_text())
    (entry,) = stored.values()
    assert entry["chosen"] == embedder.variant and entry["provider"] == "cpu"
    assert (entry["chosen_provider"] or "cpu") == embedder.provider
    # the fp32-tier variants on ONNX Runtime, and on OpenVINO (installed with the engine) where the probe's own
    # parity keeps the tier; each OpenVINO candidate is either timed or excluded with its figure
    assert {"fp32", "optimized", "fp16"} <= set(entry["seconds"]) and all(v > 0 for v in entry["seconds"].values())
    for label in ("fp32@openvino", "optimized@openvino", "fp16@openvino"):
        assert (label in entry["seconds"]) != (label in entry["excluded"])
        assert (entry["parity"][label] >= variant_probe.FP32_TIER) == (label in entry["seconds"])
    assert "int8" in entry["excluded"] and "int8@openvino" not in entry["seconds"]

    # another process (a new Studio) reads the file instead of measuring again
    monkeypatch.setattr(variant_probe, "measure", lambda *a, **k: pytest.fail("measured again"))
    again = Studio(load_settings(data_dir=default_model.parent.parent))
    assert again.embedder(variant="auto").variant == embedder.variant
    # a variant the user names is used as named
    assert again.embedder(variant="int8").variant == "int8"


def test_a_new_machine_fingerprint_measures_again(default_model):
    manifest = read_manifest(default_model)
    assert variant_probe.fingerprint(manifest, "cpu", 2) != variant_probe.fingerprint(manifest, "cpu", 4)
    assert variant_probe.fingerprint(manifest, "cpu", 2) != variant_probe.fingerprint(manifest, "cuda", 2)


def test_another_packing_setting_measures_again(default_model, monkeypatch):
    manifest = read_manifest(default_model)
    monkeypatch.delenv("STUDIO_OPENVINO_PACK_TOKENS", raising=False)
    default = variant_probe.fingerprint(manifest, "openvino", 2)
    monkeypatch.setenv("STUDIO_OPENVINO_PACK_TOKENS", "0")
    assert variant_probe.fingerprint(manifest, "openvino", 2) != default


def test_a_change_to_the_timed_engine_code_measures_again(default_model, tmp_path, monkeypatch):
    import shutil

    engine_folder = Path(variant_probe.__file__).parent
    for name in variant_probe.TIMED_CODE:
        shutil.copy(engine_folder / name, tmp_path / name)
    assert variant_probe.engine_code_digest(folder=tmp_path) == variant_probe.engine_code_digest()
    manifest = read_manifest(default_model)
    before = variant_probe.fingerprint(manifest, "openvino", 2)
    (tmp_path / "openvino_session.py").write_text((tmp_path / "openvino_session.py").read_text() + "\nWIDTH_STEP = 16\n")
    changed = variant_probe.engine_code_digest(folder=tmp_path)
    assert changed != variant_probe.engine_code_digest()
    monkeypatch.setattr(variant_probe, "engine_code_digest", lambda: changed)  # the engine as if it were edited
    assert variant_probe.fingerprint(manifest, "openvino", 2) != before


def test_unreadable_or_unwritable_probe_file_costs_only_a_measurement(default_model, tmp_path, caplog):
    manifest = read_manifest(default_model)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / variant_probe.PROBE_FILE).write_text("{not json")
    assert variant_probe.read_cached(folder, "any") is None
    (folder / variant_probe.PROBE_FILE).write_text(json.dumps({"k": {"unexpected": 1}}))
    assert variant_probe.read_cached(folder, "k") is None

    calls = []
    result = variant_probe.resolve(manifest, folder, "cpu", 2,
                                   lambda name: (lambda texts: calls.append((name, len(texts)))))
    assert result.chosen in ("fp32", "optimized", "fp16") and calls
    assert variant_probe.read_cached(folder, result.fingerprint) == result  # merged over the broken entry

    if os.geteuid() != 0:  # root ignores the permission bits
        folder.chmod(0o500)
        try:
            variant_probe.write_cached(folder, result)
            assert "could not remember" in caplog.text
        finally:
            folder.chmod(0o700)


def test_models_json_shows_what_auto_chose(default_model, capsys):
    from engine.cli import main
    from engine.settings import load_settings
    from engine.studio import Studio

    embedder = Studio(load_settings(data_dir=default_model.parent.parent)).embedder()
    assert main(["models", "--json"]) == 0
    row = next(m for m in json.loads(capsys.readouterr().out)["models"] if m["name"] == "all-minilm-l6-v2")
    assert row["default_variant"] == "auto"
    assert row["auto_variant"]["chosen"] == embedder.variant and row["auto_variant"]["provider"] == embedder.provider


def test_a_candidate_that_cannot_run_is_left_out_with_its_reason(default_model, tmp_path):
    from engine.errors import ModelFileError

    def make(name):
        def embed(texts):
            if name == "optimized":
                raise ModelFileError("The ONNX file model_optimized.onnx is missing.")
        return embed

    result = variant_probe.resolve(read_manifest(default_model), tmp_path, "cpu", 2, make)
    assert "optimized" not in result.seconds and "missing" in result.excluded["optimized"]
    assert result.chosen in ("fp32", "fp16")


def test_labels_name_the_provider_only_off_the_base():
    assert variant_probe.label("fp32", "cpu", "cpu") == "fp32"
    assert variant_probe.label("optimized", "openvino", "cpu") == "optimized@openvino"
    assert variant_probe.parse_label("optimized@openvino", "cpu") == ("optimized", "openvino")
    assert variant_probe.parse_label("fp16", "cpu") == ("fp16", "cpu")


def test_another_runtime_below_the_fp32_tier_is_left_out_with_its_figure(default_model, tmp_path):
    """A configuration whose arithmetic drifts (here: vectors rotated by a fixed small angle) is not timed."""
    import numpy as np

    def make(name):
        def embed(texts):
            rows = np.zeros((len(texts), 4), np.float32)
            rows[:, 0] = 1.0
            if name == "fp32@openvino":  # cos = 0.999, below the tier
                rows[:, 0], rows[:, 1] = 0.999, np.sqrt(1 - 0.999 ** 2)
            if name == "optimized@openvino":  # cos = 0.999995, inside it
                rows[:, 0], rows[:, 1] = 0.999995, np.sqrt(1 - 0.999995 ** 2)
            return rows
        return embed

    result = variant_probe.resolve(read_manifest(default_model), tmp_path, "cpu", 2, make, also=("openvino",))
    assert "fp32@openvino" not in result.seconds and "0.999000 < 0.9999" in result.excluded["fp32@openvino"]
    assert "optimized@openvino" in result.seconds and result.parity["optimized@openvino"] >= 0.99999
    assert result.runs_on in ("cpu", "openvino")
    # the fingerprint names the compared runtimes: a probe without them is another entry
    assert result.fingerprint == variant_probe.fingerprint(read_manifest(default_model), "cpu", 2, ("openvino",))
    assert result.fingerprint != variant_probe.fingerprint(read_manifest(default_model), "cpu", 2)


def test_a_probe_where_every_candidate_failed_is_not_remembered(default_model, tmp_path):
    from engine.errors import ProviderError

    def make(name):
        def embed(texts):
            raise ProviderError("STUDIO_OPENVINO_PRECISION must be one of auto, f32, bf16, got 'fp8'.")
        return embed

    result = variant_probe.resolve(read_manifest(default_model), tmp_path, "openvino", 2, make)
    # int8 and int8-static are left out by their parity (below the tier), before any run
    ran = {name: why for name, why in result.excluded.items() if name not in ("int8", "int8-static")}
    assert result.seconds == {} and ran and all("fp8" in why for why in ran.values())
    assert not (tmp_path / variant_probe.PROBE_FILE).exists()  # the next call, with a good setting, measures


def _flaky(victim: str, failures: dict, during: str = "warm-up"):
    """Candidates whose vectors all agree; ``victim`` is the fastest and fails while ``failures['left']`` > 0 (in
    the warm-up calls, or only in the timed rounds: the batch of 32 long texts)."""
    import time as real_time

    import numpy as np

    from engine.errors import InferenceError

    def make(name):
        def embed(texts):
            timed = len(texts) > 16
            if name == victim and failures["left"] and (during == "warm-up") != timed:
                failures["left"] -= 1
                raise InferenceError("simulated transient failure (memory pressure)")
            real_time.sleep(0.0005 if name == victim else 0.004)
            return np.full((len(texts), 4), 0.5, np.float32)
        return embed
    return make


@pytest.mark.parametrize("during", ["warm-up", "timed round"])
def test_a_candidate_that_failed_once_at_run_time_is_measured_again(default_model, tmp_path, monkeypatch, during):
    manifest = read_manifest(default_model)
    names, _ = variant_probe.candidates(manifest)
    victim = names[-1]
    failures = {"left": 1}
    first = variant_probe.resolve(manifest, tmp_path, "cpu", 2, _flaky(victim, failures, during))
    assert victim not in first.seconds and "transient" in first.excluded[victim]
    assert first.run_failures == {victim: 1} and not first.settled
    second = variant_probe.resolve(manifest, tmp_path, "cpu", 2, _flaky(victim, failures, during))  # healthy now
    assert victim in second.seconds and victim not in second.excluded and second.run_failures == {}
    assert second.chosen == victim  # 8x faster than the others: it wins once it runs
    # settled now: another process reuses it without measuring
    monkeypatch.setattr(variant_probe, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert variant_probe.resolve(manifest, tmp_path, "cpu", 2, _flaky(victim, failures)) == second


def test_a_candidate_that_keeps_failing_at_run_time_stays_out_after_a_few_probes(default_model, tmp_path, monkeypatch):
    manifest = read_manifest(default_model)
    victim = variant_probe.candidates(manifest)[0][-1]
    failures = {"left": 10 ** 6}
    for probe in range(1, variant_probe.RUN_FAILURE_PROBES + 1):
        result = variant_probe.resolve(manifest, tmp_path, "cpu", 2, _flaky(victim, failures))
        assert result.run_failures == {victim: probe} and victim not in result.seconds
    assert result.settled
    monkeypatch.setattr(variant_probe, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert variant_probe.resolve(manifest, tmp_path, "cpu", 2, _flaky(victim, failures)) == result


def test_an_exclusion_by_parity_is_remembered_at_once(default_model, tmp_path, monkeypatch):
    import numpy as np

    def make(name):
        def embed(texts):
            rows = np.zeros((len(texts), 4), np.float32)
            rows[:, 0] = 1.0
            if name == "fp32@openvino":  # cos = 0.999, below the tier: not a run-time failure
                rows[:, 0], rows[:, 1] = 0.999, np.sqrt(1 - 0.999 ** 2)
            return rows
        return embed

    manifest = read_manifest(default_model)
    first = variant_probe.resolve(manifest, tmp_path, "cpu", 2, make, also=("openvino",))
    assert "< 0.9999" in first.excluded["fp32@openvino"] and first.run_failures == {} and first.settled
    monkeypatch.setattr(variant_probe, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert variant_probe.resolve(manifest, tmp_path, "cpu", 2, make, also=("openvino",)) == first
