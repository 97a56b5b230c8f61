"""LangChain's and LlamaIndex's OpenAI embedding classes against the server, when they are installed
(they are not in requirements-dev.txt: the test skips without them)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from server_harness import serve, wait_ready

from engine.server import create_app
from engine.server.config import ApiSettings
from engine.settings import load_settings
from engine.studio import Studio

MODEL = "all-minilm-l6-v2"
DOCS = ["LangChain talks to the studio.", "A second document, about ONNX Runtime."]
QUERY = "what is onnx?"


@pytest.fixture(scope="module")
def served(default_model):
    studio = Studio(load_settings(data_dir=default_model.parent.parent))
    with serve(create_app(studio, ApiSettings())) as base:
        wait_ready(base)
        embedder = studio.embedder(MODEL)
        yield f"{base}/v1", embedder.embed(DOCS), embedder.embed([QUERY])[0]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is missing
        return False


# marks, not importorskip in the test: a skip must come before the module's server starts
@pytest.mark.skipif(not _installed("langchain_openai"), reason="langchain-openai is not installed")
def test_langchain_openai_embeddings(served):
    import langchain_openai

    base, docs, query = served
    # LangChain's default tokenizes with OpenAI's tiktoken and sends token ids, which no other
    # model can read; check_embedding_ctx_length=False is its documented switch for other servers
    embeddings = langchain_openai.OpenAIEmbeddings(model=MODEL, base_url=base, api_key="unused",
                                                   check_embedding_ctx_length=False, max_retries=0)
    np.testing.assert_allclose(embeddings.embed_documents(DOCS), docs, atol=1e-6)
    np.testing.assert_allclose(embeddings.embed_query(QUERY), query, atol=1e-6)


def test_the_openai_client_shows_the_hint_in_the_message(served):
    """LangChain's default sends tiktoken ids (what this call sends; LangChain itself would fetch tiktoken's table from
    the internet first). The switch that fixes it was only in the error's "hint" field, which the openai client,
    and so LangChain, never shows: a user read only that ids cannot be used."""
    import openai

    base, _, _ = served
    client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input=[[15339, 1917]])
    assert "token ids" in str(caught.value) and "check_embedding_ctx_length=False" in str(caught.value)
    assert caught.value.body["hint"] in caught.value.body["message"]
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="no-such-model", input="x")
    assert "Hint: " in caught.value.body["message"]


@pytest.mark.skipif(not _installed("llama_index.embeddings.openai"), reason="llama-index-embeddings-openai is not installed")
def test_llamaindex_openai_embedding(served):
    from llama_index.embeddings import openai as llamaindex_openai

    base, docs, query = served
    embedding = llamaindex_openai.OpenAIEmbedding(model_name=MODEL, api_base=base, api_key="unused", max_retries=0)
    np.testing.assert_allclose(embedding.get_text_embedding_batch(DOCS), docs, atol=1e-6)
    np.testing.assert_allclose(embedding.get_query_embedding(QUERY), query, atol=1e-6)
