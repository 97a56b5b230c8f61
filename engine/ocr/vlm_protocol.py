"""The request side of the VLM OCR server: the chat-completions shape vLLM takes (the part we honour),
sampling settings, and turning OpenAI-style messages (text parts, base64 data-URI images) into what a
transformers processor takes. Pure: no torch, no transformers."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


# --- the request (what vLLM accepts, the part we honour) ------------------------------------------
class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = None  # vLLM: -1 or 0 mean "off"
    repetition_penalty: float | None = Field(None, gt=0)
    skip_special_tokens: bool = True
    vllm_xargs: dict[str, Any] | None = None
    stream: bool = False
    n: int = 1


class RequestError(Exception):
    """A request we refuse, with the HTTP status and an OpenAI-style error type."""

    def __init__(self, message: str, status: int = 400, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.message, self.status, self.kind = message, status, kind


@dataclass(frozen=True)
class Sampling:
    max_tokens: int | None
    greedy: bool
    temperature: float
    top_p: float | None
    top_k: int | None
    repetition_penalty: float | None
    skip_special_tokens: bool
    ngram_ban: tuple[int, int, frozenset[int]] | None  # (ngram_size, window_size, whitelist)


def sampling_from(request: ChatRequest) -> Sampling:
    if request.stream:
        raise RequestError("stream=true is not supported by this server")
    if request.n != 1:
        raise RequestError("only n=1 is supported")
    temperature = 1.0 if request.temperature is None else request.temperature  # OpenAI's default
    top_k = request.top_k if request.top_k and request.top_k > 0 else None
    xargs = request.vllm_xargs or {}
    ngram_ban = None
    if "ngram_size" in xargs:
        try:
            ngram_size, window = int(xargs["ngram_size"]), int(xargs.get("window_size", 100))
            whitelist = frozenset(int(t) for t in xargs.get("whitelist_token_ids", []))
        except (TypeError, ValueError):
            raise RequestError("vllm_xargs: ngram_size, window_size and whitelist_token_ids must be integers") from None
        if ngram_size < 1 or window < 1:
            raise RequestError("vllm_xargs: ngram_size and window_size must be positive")
        ngram_ban = (ngram_size, window, whitelist)
    return Sampling(
        max_tokens=request.max_completion_tokens or request.max_tokens,
        greedy=temperature == 0 or top_k == 1,
        temperature=temperature,
        top_p=request.top_p,
        top_k=top_k,
        repetition_penalty=request.repetition_penalty,
        skip_special_tokens=request.skip_special_tokens,
        ngram_ban=ngram_ban,
    )


_DATA_URI = re.compile(r"^data:image/[\w.+-]+;base64,(.*)$", re.S)


def decode_data_uri(url: str) -> bytes:
    match = _DATA_URI.match(url)
    if not match:
        raise RequestError("image_url must be a data:image/...;base64 URI (this server fetches nothing)")
    try:
        return base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("image_url: the base64 payload does not decode") from None


def to_hf_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[bytes]]:
    """OpenAI chat messages -> the messages a processor chat template takes, and the images in order."""
    converted, images = [], []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role not in {"system", "user", "assistant"}:
            raise RequestError(f"unsupported message role: {role!r}")
        if content is None or isinstance(content, str):
            converted.append({"role": role, "content": content or ""})
            continue
        if not isinstance(content, list):
            raise RequestError("message content must be a string or a list of parts")
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(part.get("text", ""))})
            elif kind == "image_url":
                image_url = part.get("image_url")
                url = image_url.get("url") if isinstance(image_url, dict) else image_url
                images.append(decode_data_uri(str(url or "")))
                parts.append({"type": "image"})
            else:
                raise RequestError(f"unsupported content part type: {kind!r}")
        converted.append({"role": role, "content": parts})
    return converted, images


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """The user's text parts joined (for models that take a bare prompt, such as DeepSeek-OCR's infer())."""
    texts = []
    for message in messages:
        if message["role"] != "user":
            continue
        content = message["content"]
        texts += [content] if isinstance(content, str) else [p["text"] for p in content if p["type"] == "text"]
    return "\n".join(t for t in texts if t)


def plain_prompt(messages: list[dict[str, Any]], image_count: int, image_token: str) -> str:
    """For processors without a chat template (DeepSeek-OCR 2): one image token per image, then the prompt,
    as the model card writes it: ``"<image>\\n<|grounding|>Convert the document to markdown."``."""
    text = prompt_text(messages)
    if image_token in text:
        return text
    return "".join(f"{image_token}\n" for _ in range(image_count)) + text
