"""Parity with sentence-transformers (torch fp32): the default model and tiny random-weight models
of every architecture family and pooling configuration the engine claims to handle.

Gate for the fp32 variant: max |diff| <= 1e-5 and min cosine >= 0.99999 on texts that include the
empty string, whitespace only, emoji, CJK and texts three times longer than max_seq_length.
"""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import TinySpec, build

from converter.convert import convert
from converter.validate import compare, validation_texts
from engine import packing
from engine.embedder import Embedder
from engine.manifest import read_manifest
from engine.registry import spec_from_manifest

packing_pack = packing.pack
MAX_DIFF = 1e-5
MIN_COSINE = 0.99999

TINY = {
    "bert-mean-token-type-ids": TinySpec("bert"),
    "roberta-cls": TinySpec("roberta", pooling=("cls",)),
    "xlmr-max-legacy-schema": TinySpec("xlmr", pooling=("max",), legacy_pooling_schema=True),
    "mpnet-concat-no-normalize": TinySpec("mpnet", pooling=("cls", "max", "mean"), normalize=False),
    "qwen2-lasttoken-left-padding": TinySpec("qwen2", pooling=("lasttoken",)),
    "bert-dense-layers": TinySpec("bert", dense=((24, "Tanh"), (8, "Identity"))),
    "bert-compact-schema-weighted": TinySpec("bert", pooling=("weightedmean", "mean_sqrt_len_tokens")),
    "bert-prompts-exclude-prompt": TinySpec(
        "bert", prompts={"query": "query: ", "document": "passage: "}, include_prompt=False
    ),
    "roberta-lower-case-legacy-config": TinySpec("roberta", do_lower_case=True, pooling=("cls",)),
}


def _reference(st_folder, max_seq_length, prompt_name=None, batch_size=32):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(st_folder), device="cpu")
    texts = validation_texts(max_seq_length, lambda s: len(model.tokenizer(s, add_special_tokens=False)["input_ids"]))
    return texts, model.encode(texts, batch_size=batch_size, prompt_name=prompt_name, convert_to_numpy=True)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny")


@pytest.mark.parametrize("case", sorted(TINY))
def test_tiny_model_fp32_parity(case, tiny_root, monkeypatch):
    spec = TINY[case]
    st_folder = build(spec, tiny_root / f"{case}-st")
    manifest = convert(str(st_folder), tiny_root / case, name=case, variant_names=("fp32",),
                       progress=lambda step, fraction: None)
    # what the converter read from the sentence-transformers files
    assert manifest.pooling_modes == spec.pooling
    assert manifest.normalize == spec.normalize
    assert manifest.include_prompt == spec.include_prompt
    assert manifest.max_seq_length == spec.max_seq_length
    assert manifest.do_lower_case == spec.do_lower_case
    assert [d.out_features for d in manifest.dense] == [d[0] for d in spec.dense]
    assert {k: v for k, v in manifest.prompts.items() if v} == spec.prompts  # ST saves empty defaults too
    if spec.arch in ("roberta", "xlmr", "mpnet"):
        assert "token_type_ids" not in manifest.onnx_inputs
    if spec.arch == "bert":
        assert "token_type_ids" in manifest.onnx_inputs
    if spec.arch == "qwen2":
        assert manifest.padding_side == "left"
    if spec.do_lower_case:
        shouting = Embedder(spec_from_manifest(tiny_root / case, manifest), provider="cpu").embed(["HELLO World", "hello world"])
        np.testing.assert_allclose(shouting[0], shouting[1], atol=1e-6)

    embedder = Embedder(spec_from_manifest(tiny_root / case, manifest), provider="cpu", batch_size=7)
    for prompt_name in [None, *spec.prompts]:
        texts, reference = _reference(st_folder, manifest.max_seq_length, prompt_name)
        assert any(len(t) > 3 * manifest.max_seq_length for t in texts)
        ours = embedder.embed(texts, prompt_name=prompt_name)
        assert ours.shape == reference.shape
        max_diff, min_cos, _ = compare(ours, reference)
        assert max_diff <= MAX_DIFF, f"{case} prompt={prompt_name}: max |diff| {max_diff:.2e}"
        assert min_cos >= MIN_COSINE, f"{case} prompt={prompt_name}: min cosine {min_cos:.7f}"
    # the figure the converter measured and wrote into the manifest meets the same gate
    parity = manifest.variants["fp32"].parity
    assert parity.max_abs_diff <= MAX_DIFF and parity.min_cosine >= MIN_COSINE

    # OpenVINO in f32 on the same texts: every batch of texts of at most 40 tokens runs packed, several to a row,
    # where the graph has the BERT pattern (absolute positions); the others run padded, as exported
    monkeypatch.setenv("STUDIO_OPENVINO_PRECISION", "f32")
    on_openvino = Embedder(spec_from_manifest(tiny_root / case, manifest), provider="openvino", batch_size=7)
    assert on_openvino.session().session.packing_capacity == (64 if spec.arch == "bert" else 0)
    packed_batches = []

    def counted_pack(*args, **kwargs):
        packed_batches.append(packing_pack(*args, **kwargs))
        return packed_batches[-1]

    monkeypatch.setattr(packing, "pack", counted_pack)
    for prompt_name in [None, *spec.prompts]:
        texts, reference = _reference(st_folder, manifest.max_seq_length, prompt_name)
        max_diff, min_cos, _ = compare(on_openvino.embed(texts, prompt_name=prompt_name), reference)
        assert max_diff <= MAX_DIFF and min_cos >= MIN_COSINE, (case, prompt_name, max_diff, min_cos)
    assert bool(packed_batches) == (spec.arch == "bert")
    assert all(batch.shape[0] < len(batch.lengths) for batch in packed_batches)  # fewer rows than texts


def test_default_model_parity_all_variants(default_model):
    manifest = read_manifest(default_model)
    assert manifest.variants.keys() == {"fp32", "optimized", "fp16", "int8", "int8-static"}
    assert manifest.pooling_modes == ("mean",) and manifest.normalize and manifest.max_seq_length == 256
    assert manifest.pooling_source == "1_Pooling/config.json"
    from tiny_models import gt_model_dir

    texts, reference = _reference(gt_model_dir(), 256)
    spec = spec_from_manifest(default_model, manifest)
    fp32 = Embedder(spec, variant="fp32", provider="cpu").embed(texts)
    max_diff, min_cos, _ = compare(fp32, reference)
    assert max_diff <= MAX_DIFF and min_cos >= MIN_COSINE, (max_diff, min_cos)
    optimized = compare(Embedder(spec, variant="optimized", provider="cpu").embed(texts), reference)
    assert optimized[0] <= MAX_DIFF and optimized[1] >= MIN_COSINE, optimized
    fp16 = compare(Embedder(spec, variant="fp16", provider="cpu").embed(texts), reference)
    assert fp16[1] >= 0.999, fp16
    int8 = compare(Embedder(spec, variant="int8", provider="cpu").embed(texts), reference)
    assert int8[1] >= 0.95, int8  # reported, not a gate: retrieval quality is measured by `engine eval`
    for variant, info in manifest.variants.items():
        assert info.parity is not None and info.parity.texts >= len(texts), variant


def test_batching_and_order_do_not_change_vectors(studio):
    embedder = studio.embedder()
    texts = ["short", "a much longer text " * 30, "", "middle sized text here", "🙂"]
    one_by_one = np.stack([embedder.embed([t])[0] for t in texts])
    embedder_small = studio.embedder()
    together = embedder_small.embed(texts)
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)
    reversed_order = embedder.embed(texts[::-1])[::-1]
    np.testing.assert_allclose(reversed_order, one_by_one, atol=1e-6)
