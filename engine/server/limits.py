"""Request body size limit (413), enforced before the app parses anything.

The body is read up to the limit and then handed to the app, so a client cannot make the server
hold more than the limit however it sends the body (declared length or chunked). Routes that take
bigger uploads (PDFs) get their own limit by path prefix.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.server.errors import error_response

log = logging.getLogger(__name__)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, prefix_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # longest prefix first, so /v1/collections/x/documents can differ from /v1/collections
        self.prefix_limits = sorted((prefix_limits or {}).items(), key=lambda item: -len(item[0]))

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.prefix_limits if path.startswith(prefix)), self.max_bytes)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        log.info("413 on %s %s: body over %d bytes", scope.get("method"), scope["path"], limit)
        response = error_response(
            413, f"The request body is larger than this server accepts ({limit} bytes).", "payload_too_large",
            hint="send fewer or shorter texts per request (STUDIO_API_MAX_BODY_MB sets the limit)",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await self._reject(scope, receive, send, limit)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away before it finished sending
            body += message.get("body", b"")
            if len(body) > limit:
                await self._reject(scope, receive, send, limit)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
