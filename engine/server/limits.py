"""Request body size limit (413), enforced before the app parses anything.

A declared length over the limit is refused before anything is read; otherwise the body is counted
while the app reads it (declared length or chunked), and the read that crosses the limit ends the
request with a 413, so a client cannot make the server read more than the limit. Upload routes
(PDFs) get their own, larger limit, matched by their exact paths.
"""

from __future__ import annotations

import logging
import re

from fastapi import HTTPException
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
    """``max_bytes`` for every body, ``upload_bytes`` for the upload routes (``upload_paths``, a regular
    expression over the path, e.g. ``POST /v1/collections/{name}/documents``). JSON routes such as search
    keep the small limit even though they live under the same prefix as the uploads."""

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int | None = None,
                 upload_paths: str | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes or max_bytes
        self.upload_paths = re.compile(upload_paths) if upload_paths else None

    def limit_for(self, path: str) -> int:
        if self.upload_paths is not None and self.upload_paths.fullmatch(path):
            return self.upload_bytes
        return self.max_bytes

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        log.info("413 on %s %s: body over %d bytes", scope.get("method"), scope["path"], limit)
        await too_large_response(limit)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await self._reject(scope, receive, send, limit)
            return
        # the body is counted as the app reads it, never buffered here: an upload streams on into the
        # multipart parser's spool files, and the read that crosses the limit fails the request with a 413
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    log.info("413 on %s %s: body over %d bytes", scope.get("method"), scope["path"], limit)
                    raise HTTPException(413, too_large_message(limit), headers={"Connection": "close"})
            return message

        await self.app(scope, counted, send)


def too_large_message(limit: int) -> str:
    return f"The request body is larger than this server accepts ({limit} bytes)."


def too_large_response(limit: int):
    return error_response(
        413, too_large_message(limit), "payload_too_large",
        hint="send fewer or shorter texts per request (STUDIO_API_MAX_BODY_MB sets the limit; "
             "STUDIO_MAX_UPLOAD_MB the one for uploads)",
        headers={"Connection": "close"},
    )
