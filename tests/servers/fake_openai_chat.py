"""A fake of an OpenAI-compatible vLLM server for OCR models: ``GET /v1/models`` and
``POST /v1/chat/completions`` (notes: vllm-spark §3.4).

Like vLLM it answers 404 for a model it does not serve, 401 without the ``--api-key`` it was
given, and 400 for an image part that is not a decodable data URI. The answer text is scripted
(a string or a function of the request); every request is recorded for assertions.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable

from servers.base import FakeServer, Reply, Request


def openai_error(status: int, message: str, kind: str) -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": status}})


class FakeOpenAIChat(FakeServer):
    def __init__(self, models: tuple[str, ...] = ("deepseek-ai/DeepSeek-OCR",), api_key: str | None = None,
                 answer: str | Callable[[dict], str] = "# Page\n\nSome text.", finish_reason: str = "stop") -> None:
        super().__init__()
        self.models, self.api_key, self.answer, self.finish_reason = models, api_key, answer, finish_reason

    def chat_bodies(self) -> list[dict]:
        return [r.json() for r in self.requests_to("/v1/chat/completions")]

    def handle(self, request: Request) -> Reply:
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return openai_error(401, "Unauthorized", "AuthenticationError")
        if request.method == "GET" and request.path == "/v1/models":
            return Reply(200, {"object": "list", "data": [
                {"id": m, "object": "model", "owned_by": "vllm", "root": m, "max_model_len": 8192} for m in self.models]})
        if request.method == "POST" and request.path == "/v1/chat/completions":
            return self._chat(request.json())
        return Reply(404, {"detail": "Not Found"})

    def _chat(self, body: dict) -> Reply:
        if body.get("model") not in self.models:
            return openai_error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        for message in body.get("messages", []):
            for part in message.get("content") if isinstance(message.get("content"), list) else []:
                if part.get("type") == "image_url":
                    url = part["image_url"]["url"]
                    try:
                        base64.b64decode(url.split(";base64,", 1)[1], validate=True)
                    except (IndexError, binascii.Error):
                        return openai_error(400, "Invalid image data URL", "BadRequestError")
        text = self.answer(body) if callable(self.answer) else self.answer
        completion_tokens = min(len(text) // 3 + 1, body.get("max_tokens") or 10**9)
        return Reply(200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": self.finish_reason}],
            "usage": {"prompt_tokens": 900, "completion_tokens": completion_tokens, "total_tokens": 900 + completion_tokens},
        })
