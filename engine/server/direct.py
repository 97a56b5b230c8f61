"""Direct dispatch of the hot route: ``POST /v1/embeddings`` goes straight to its endpoint.

FastAPI's router matches every route in turn and its request wrapper solves dependencies the endpoint
does not have; for one short text that is ~50 us of the event loop's ~115 us of app time per request
(measured: ``docs/benchmarks.md``, "One route dispatched directly"). This middleware, the innermost of
the app's own, answers the listed (method, path) pairs itself: it builds the ``Request``, awaits the
same endpoint function the router has, and turns what the endpoint raises into a response with the
app's own exception handlers, looked up as Starlette's exception middleware looks them up. Anything
it does not handle (a bug) goes on up to Starlette's server-error middleware, as from the router.

The route stays declared on its router: ``/docs`` and the OpenAPI schema show it, and with FastAPI's
OpenTelemetry hooks on (an ``OTEL_*`` variable) the app factory leaves this middleware out so that the
router's spans keep their route.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Response | Awaitable[Response]]


def route_path(scope: Scope) -> str:
    """The path the router would match: the request's path without the app's ``root_path``."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def handler_for(handlers: Mapping[type[Exception] | int, Handler], exc: Exception) -> Handler | None:
    """The handler the app registered for ``exc``: by status code for an HTTPException, then along its
    class hierarchy. Never the catch-all (``Exception`` / 500), which belongs to the server-error
    middleware further out, as in Starlette's own exception middleware."""
    if isinstance(exc, HTTPException) and exc.status_code in handlers and exc.status_code != 500:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None


class DirectRoutes:
    def __init__(self, app: ASGIApp, routes: Mapping[tuple[str, str], Endpoint],
                 handlers: Mapping[type[Exception] | int, Handler]) -> None:
        self.app = app
        self.routes = dict(routes)
        self.handlers = dict(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = (self.routes.get((scope.get("method", ""), route_path(scope)))
                    if scope["type"] == "http" else None)
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = handler_for(self.handlers, exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)
