"""OpenAI-compatible ``POST /v1/embeddings`` and ``GET /v1/models``.

What differs from OpenAI, on purpose:
- ``model`` is a registry name; ``name:variant`` picks a variant (``all-minilm-l6-v2:int8``);
  left out, the server's default model is used.
- ``input`` must be text: token-id arrays (what LangChain's ``OpenAIEmbeddings`` sends by default,
  counted with OpenAI's tokenizer) are refused with a 400 that says how to send text instead,
  because ids of another tokenizer would embed garbage.
- ``prompt_name`` (TEI's extension) selects one of the model's prompts, e.g. ``query``.
- ``usage`` counts the model's own tokens, after truncation, special tokens included.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime
from typing import Any, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine import pooling
from engine.embedder import Embedder
from engine.errors import InputError, ModelNotConvertedError, ModelNotFoundError, RequestError, ServiceBusyError
from engine.registry import ModelSpec
from engine.server.state import ServerState, get_state
from engine.textcheck import check_encodable
from engine.tokenize import Encoded

router = APIRouter(tags=["openai"])
# small requests are tokenized on the event loop (~0.1 ms for a sentence): a hop to a thread costs
# more than that, and far more when the CPU is busy with inference
INLINE_TOKENIZE_CHARS = 4096
OWNER = "onnx-embedding-studio"
LANGCHAIN_HINT = "send the texts themselves (LangChain: OpenAIEmbeddings(..., check_embedding_ctx_length=False))"


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: Any = Field(..., description="A string or a list of strings")
    # "" is no model (a client's unset setting), not the default: a 400 naming the field
    model: str | None = Field(None, min_length=1, description="Registry name, optionally name:variant")
    encoding_format: Literal["float", "base64"] | None = "float"
    # strict: JSON true or "12" is a 400, not 1 or 12
    dimensions: int | None = Field(None, ge=1, strict=True, description="Matryoshka: keep this many dimensions, re-normalised")
    user: str | None = None  # accepted and ignored, like OpenAI's abuse-monitoring id
    prompt_name: str | None = Field(None, description="One of the model's prompts, e.g. query or document")
    # text-embeddings-inference's switch: false makes a text over the model's max_seq_length a 400 instead of
    # its first max_seq_length tokens (sentence-transformers' behaviour, and the default here)
    truncate: bool = Field(True, strict=True, description="false: a text over max_seq_length tokens is a 400")


# --- pure helpers ---------------------------------------------------------------------------------
def parse_request(body: bytes) -> EmbeddingRequest:
    """The request body validated by ``EmbeddingRequest``; a bad one raises the same
    RequestValidationError (a 400 naming the field) FastAPI raises for a declared body."""
    try:
        # json.loads, as FastAPI does: it keeps a lone surrogate (\ud800), which check_encodable then
        # names as a bad input; pydantic's own parser would call the whole body invalid JSON
        data = json.loads(body)
    except ValueError as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": str(exc)}]) from None
    except RecursionError:  # arrays nested thousands deep: a 400 like the search route's, not a 500
        raise RequestValidationError([{"type": "json_too_deep", "loc": ("body",),
                                       "msg": "JSON nested too deeply"}]) from None
    try:
        return EmbeddingRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]) from None


def _is_token_ids(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def parse_input(value: object, max_items: int, max_chars: int) -> list[str]:
    """The request's texts, or a RequestError naming what is wrong (empty, too many, too long, not text)."""
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list):
        if _is_token_ids(value) or (value and all(_is_token_ids(v) for v in value)):
            raise RequestError("input holds token ids; this server embeds text with each model's own tokenizer, "
                               "so ids from another tokenizer cannot be used.", "input", LANGCHAIN_HINT)
        texts = value
    else:
        raise RequestError("input must be a string or a list of strings.", "input",
                           'send "input": "a text" or "input": ["a text", "another"]')
    if not texts:
        raise RequestError("input is empty: send at least one text.", "input", 'e.g. "input": ["a text"]')
    if len(texts) > max_items:
        raise RequestError(f"input has {len(texts)} texts; this server takes at most {max_items} per request.",
                           "input", "split the texts over several requests (STUDIO_API_MAX_ITEMS sets the limit)")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(f"input[{index}] is not a string.", "input", "send each text as a JSON string")
        if not text:
            raise RequestError(f"input[{index}] is an empty string.", "input", "leave the empty texts out of input")
        check_encodable(text, f"input[{index}]", param="input")
        if len(text) > max_chars:
            raise RequestError(f"input[{index}] has {len(text)} characters; this server takes at most {max_chars}.",
                               "input", "split long texts into chunks (STUDIO_API_MAX_CHARS sets the limit)")
    return texts


def parse_model_id(model_id: str) -> tuple[str, str | None]:
    """``name`` or ``name:variant`` (registry names cannot contain ':')."""
    name, _, variant = model_id.partition(":")
    return name, variant or None


def encode_vectors(vectors: np.ndarray, encoding_format: str) -> list:
    """Base64 of little-endian float32 bytes: exactly what OpenAI's client decodes
    (``np.frombuffer(base64.b64decode(s), dtype="float32")``); or the float32 rows themselves, which ``_json``
    writes as the shortest decimals that read back as the same float32 values (what OpenAI's API sends, e.g.
    ``0.0023064255``), not float64's 17 digits: a 384-float response 8.2 -> 4.8 KB, and a client's ``json.loads``
    of it 89 -> 41 us."""
    little = np.ascontiguousarray(vectors, dtype="<f4")
    if encoding_format == "base64":
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    return list(little)


def embedding_response(vectors: np.ndarray, encoding_format: str, model: str, tokens: int) -> dict:
    data = [{"object": "embedding", "index": i, "embedding": e}
            for i, e in enumerate(encode_vectors(vectors, encoding_format))]
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _created(spec: ModelSpec) -> int:
    try:
        return int(datetime.fromisoformat(spec.manifest.converted_at.replace("Z", "+00:00")).timestamp())
    except (AttributeError, ValueError):
        return 0


def model_card(spec: ModelSpec, default_model: str) -> dict:
    manifest = spec.manifest
    return {
        "id": spec.name,
        "object": "model",
        "created": _created(spec),
        "owned_by": OWNER,
        "source": spec.hf_id,
        "dimensions": manifest.dim if manifest else spec.dim,
        "max_seq_length": manifest.max_seq_length if manifest else spec.max_seq_length,
        "variants": list(manifest.variants) if manifest else [],
        "default_variant": spec.default_variant,
        "default": spec.name == default_model,
    }


def _tokenize(embedder: Embedder, texts: list[str], prompt: str) -> tuple[list[Encoded], list[int], int]:
    """The request tokenized once: what the model runs, the tokens each text occupies (truncated,
    special tokens included: the batch budget and ``usage`` count these) and the prompt's length."""
    encoded = embedder.tokenizer.encode([prompt + t for t in texts])
    prompt_length = embedder.tokenizer.prompt_length(prompt) if prompt else 0
    return encoded, [len(e.ids) for e in encoded], prompt_length


def check_untruncated(encoded: list[Encoded], max_seq_length: int) -> None:
    """A RequestError naming the first text the tokenizer cut (``truncate: false``)."""
    cut = [index for index, item in enumerate(encoded) if item.truncated]
    if cut:
        more = f" (and {len(cut) - 1} more)" if len(cut) > 1 else ""
        raise RequestError(f"input[{cut[0]}]{more} is longer than the model's {max_seq_length} tokens.", "input",
                           f"send shorter texts, or leave truncate out to embed each text's first {max_seq_length} "
                           "tokens, as sentence-transformers does")


def _json(body: dict, status: int = 200) -> Response:
    # orjson: FastAPI's encoder walks every float of every vector, and json.dumps of one 384-float
    # vector takes ~15 times as long (0.17 ms); numpy rows are written as they are (no Python floats)
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


async def _embedder(state: ServerState, model_id: str | None) -> tuple[str, Embedder]:
    """The embedder of the request's ``model``, or of the server's default when it names none: the default's failure
    is the server's, and may pass (a 503: a converter may still be writing it), not the request's."""
    asked, model_id = model_id, model_id or state.default_model
    name, variant = parse_model_id(model_id)
    recent = state.recent_embedder(name, variant)
    if recent is not None:
        return model_id, recent
    try:
        return model_id, await asyncio.to_thread(state.embedder, name, variant)
    except InputError as exc:  # e.g. a variant that was not converted
        raise RequestError(exc.message, "model", exc.hint) from None
    except (ModelNotFoundError, ModelNotConvertedError) as exc:
        if asked is None:
            raise ServiceBusyError(f"The server's default model {model_id} is not ready: {exc.message}",
                                   "retry when GET /ready answers 200, or name a model that is converted") from None
        exc.param = "model"
        raise


# --- routes ---------------------------------------------------------------------------------------
# the body is read and validated here, not declared as a parameter: FastAPI's dependency and body
# machinery cost a third of the event loop's time per short request (py-spy, 64 clients); the
# OpenAPI schema still shows the request model
_BODY_SCHEMA = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": EmbeddingRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}


@router.post("/v1/embeddings", openapi_extra=_BODY_SCHEMA)
async def create_embeddings(http: Request) -> Response:
    state: ServerState = http.app.state.server
    request = parse_request(await http.body())
    texts = parse_input(request.input, state.api.max_items, state.api.max_chars)
    model_id, embedder = await _embedder(state, request.model)
    if request.dimensions is not None and request.dimensions > embedder.dim:
        raise RequestError(f"dimensions must be between 1 and {embedder.dim} for {embedder.spec.name}, "
                           f"got {request.dimensions}.", "dimensions",
                           f"leave dimensions out for all {embedder.dim}, or ask for fewer")
    try:
        prompt = embedder.resolve_prompt(request.prompt_name)
    except InputError as exc:
        raise RequestError(exc.message, "prompt_name", exc.hint) from None
    if sum(map(len, texts)) <= INLINE_TOKENIZE_CHARS:
        encoded, lengths, prompt_length = _tokenize(embedder, texts, prompt)
    else:
        encoded, lengths, prompt_length = await asyncio.to_thread(_tokenize, embedder, texts, prompt)
    if not request.truncate:
        check_untruncated(encoded, embedder.tokenizer.max_seq_length)
    vectors = await state.batcher.embed(embedder, encoded, lengths, prompt, prompt_length)
    if request.dimensions is not None and request.dimensions < embedder.dim:
        vectors = pooling.truncate_dim(vectors, request.dimensions, renormalize=True)
    return _json(embedding_response(vectors, request.encoding_format or "float", model_id, sum(lengths)))


@router.get("/v1/models")
async def list_models(state: ServerState = Depends(get_state)) -> Response:
    specs = await asyncio.to_thread(state.studio.registry.list)
    cards = [model_card(spec, state.default_model) for spec in specs if spec.converted]
    return _json({"object": "list", "data": cards})


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, state: ServerState = Depends(get_state)) -> Response:
    """The model card of ``name`` or ``name:variant``: an id with a slash ("sentence-transformers/all-MiniLM-L6-v2")
    is an unknown model like any other (it was "no route"), and a variant the model lacks is a 404 as it is for
    /v1/embeddings (it answered the model's card)."""
    name, variant = parse_model_id(model_id)
    spec = await asyncio.to_thread(state.studio.registry.require_converted, name)
    variants = list(spec.manifest.variants) if spec.manifest else []
    if variant is not None and variant not in variants:
        raise ModelNotFoundError(f"{spec.name} has no variant {variant!r}.",
                                 f"its variants: {', '.join(variants)}; GET /v1/models lists every model")
    return _json(model_card(spec, state.default_model))
