"""Optional bearer-token auth: when ``API_TOKEN`` is set, every route but the open ones (``/health``)
needs ``Authorization: Bearer <token>``; anything else gets a 401 in OpenAI's error shape.

The comparison is constant-time on bytes, and neither the expected nor the presented token is
ever logged.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from engine.httpauth import bearer_token as _parse_bearer
from engine.httpauth import token_matches
from engine.server.errors import error_response

log = logging.getLogger(__name__)


def bearer_token(scope: Scope) -> bytes | None:
    """The token of an ``Authorization: Bearer ...`` header, or None."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return _parse_bearer(value)
    return None


__all__ = ["BearerAuthMiddleware", "bearer_token", "token_matches"]


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, token: str | None, open_paths: frozenset[str] = frozenset({"/health"})) -> None:
        self.app = app
        self._expected = token.encode("utf-8") if token else None
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._expected is None or scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        presented = bearer_token(scope)
        if token_matches(presented, self._expected):
            await self.app(scope, receive, send)
            return
        reason = "missing" if presented is None else "wrong"
        log.info("401 on %s %s: %s bearer token", scope.get("method"), scope["path"], reason)
        message = ("This server requires an API token: send 'Authorization: Bearer <token>'."
                   if presented is None else "The API token is not valid.")
        response = error_response(401, message, "invalid_api_key", hint="the token is the server's API_TOKEN",
                                  headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
