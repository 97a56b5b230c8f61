"""One path through the engine: the provider is resolved once (auto and the provider it picks share
one embedder and one session); ``embed_encoded`` is ``embed`` without the tokenization."""

from __future__ import annotations

import numpy as np

from engine import providers
from engine.settings import load_settings
from engine.studio import Studio

MODEL = "all-minilm-l6-v2"


def test_auto_and_the_provider_it_picks_share_one_embedder_and_one_session(default_model):
    studio = Studio(load_settings(data_dir=default_model.parent.parent))
    picked = providers.resolve("auto").name
    auto, explicit = studio.embedder(MODEL, "fp32", "auto"), studio.embedder(MODEL, "fp32", picked.upper())
    assert auto is explicit and auto.provider == picked
    auto.embed(["one"])
    explicit.embed(["two"])
    assert len(studio.sessions.entries()) == 1
    assert auto.info()["provider"] == picked


def test_embed_encoded_gives_what_embed_gives(studio):
    embedder = studio.embedder(MODEL)
    texts = ["a short one", "a somewhat longer text about proteins and cells " * 3, "数据"]
    prompt = "query: "
    encoded = embedder.tokenizer.encode([prompt + t for t in texts])
    got = embedder.embed_encoded(encoded, embedder.tokenizer.prompt_length(prompt))
    np.testing.assert_allclose(got, embedder.embed(texts, prompt=prompt), atol=1e-6)
    assert embedder.embed_encoded([]).shape == (0, embedder.dim)
