"""Errors on the wire: ONE table from the studio's error classes to HTTP status codes, and
OpenAI's error shape ``{"error": {"message", "type", "param", "code"}}`` for every failure.

No traceback ever reaches a client: unexpected exceptions are logged here and answered with a
generic 500. The few errors only the server raises (RequestError, PayloadTooLargeError,
ServiceBusyError) live in engine/errors.py with the rest of the tree.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import (
    CollectionError,
    CollectionNotFoundError,
    ConfigError,
    ConversionError,
    DocumentError,
    DocumentLimitError,
    DocumentNotFoundError,
    HubError,
    HubOfflineError,
    InferenceError,
    InputError,
    ModelFileError,
    ModelMismatchError,
    ModelNotConvertedError,
    ModelNotFoundError,
    OCRAuthError,
    OCRError,
    OCRRateLimitError,
    OCRServiceError,
    OCRUnavailableError,
    PayloadTooLargeError,
    ProviderError,
    RemoteCodeRefusedError,
    ServiceBusyError,
    StorageError,
    StorageFullError,
    StudioError,
    UnsupportedModelError,
)
from engine.httpauth import error_body, error_type

log = logging.getLogger(__name__)
__all__ = ["error_body", "error_response", "error_type", "install", "status_for", "studio_error_response"]
# a message that quotes what the client sent is cut to this many characters, in the body and in the log
MAX_MESSAGE_CHARS = 2000


# The one table. Looked up along the exception's class hierarchy, so the most specific entry wins
# and a new subclass inherits its parent's status until it gets its own line.
STATUS_BY_ERROR: dict[type[StudioError], int] = {
    PayloadTooLargeError: 413,
    InputError: 400,  # RequestError included
    ModelNotFoundError: 404,
    CollectionNotFoundError: 404,
    DocumentNotFoundError: 404,
    ModelNotConvertedError: 409,  # exists, but has to be converted first
    ModelMismatchError: 409,  # collection built with another model
    CollectionError: 500,  # its stored files are unreadable or damaged: the server's data, not the request
    RemoteCodeRefusedError: 403,
    UnsupportedModelError: 422,
    ConversionError: 500,
    DocumentLimitError: 413,
    DocumentError: 422,  # corrupt, encrypted, empty: the upload was understood but cannot be used
    OCRUnavailableError: 503,
    OCRAuthError: 502,  # our credentials for the OCR service were refused: the gateway's fault, not the client's
    OCRRateLimitError: 429,
    OCRServiceError: 502,
    OCRError: 502,
    HubOfflineError: 503,
    HubError: 502,
    ProviderError: 503,
    ServiceBusyError: 503,
    StorageFullError: 507,  # Insufficient Storage (RFC 4918): the data folder's disk is full
    StorageError: 500,  # read-only, permission denied, path too long: the server's folder, not the client's request
    ModelFileError: 500,
    InferenceError: 500,
    ConfigError: 500,
    StudioError: 500,
}


def status_for(exc: StudioError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def error_response(status: int, message: str, code: str | None, param: str | None = None, hint: str = "",
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, param, hint), status_code=status, headers=headers)


def bounded(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A message cut to ``limit`` characters: an error that quotes a client's 25 MB list must not send it back."""
    return message if len(message) <= limit else f"{message[:limit]}… (message cut: {len(message)} characters)"


# OpenAI's routes: its clients (openai, LangChain, LlamaIndex) show a user the message alone, never a "hint" field,
# so there the hint is also the message's last sentence (LangChain's switch for token ids was in the hint only)
OPENAI_PATHS = ("/v1/embeddings", "/v1/models")


def studio_error_response(exc: StudioError, hint_in_message: bool = False) -> JSONResponse:
    status = status_for(exc)
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    param = getattr(exc, "param", None)
    message = f"{exc.message} Hint: {exc.hint}" if hint_in_message and exc.hint else exc.message
    return error_response(status, bounded(message), exc.code, param, bounded(exc.hint), headers)


def _location(loc: tuple) -> str:
    # the first element says where (body, query, path, header); only it is dropped, so a body field
    # that is itself called "query" (the search route's) is still named
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "form") else loc)]
    return ".".join(parts) or "body"


async def _on_studio_error(request: Request, exc: StudioError) -> JSONResponse:
    status = status_for(exc)
    log.log(logging.ERROR if status >= 500 else logging.INFO, "%s %s -> %d %s: %s",
            request.method, request.url.path, status, exc.code, bounded(exc.message, 300))
    return studio_error_response(exc, hint_in_message=request.url.path.startswith(OPENAI_PATHS))


async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    param = _location(tuple(first.get("loc", ())))
    message = first.get("msg", "invalid request")
    if first.get("type") == "json_invalid":
        message, param = "The request body is not valid JSON.", None
    elif first.get("type") == "json_too_deep":
        message, param = "The request body is JSON nested too deeply to read.", None
    elif "Expected UploadFile" in str(message):  # a form field sent as text where a file goes: FastAPI's own words
        message = f"{param}: send a file in this field (a multipart file part), not a text value."
    elif param != "body":
        message = f"{param}: {message}"
    return error_response(400, message, "invalid_request", param)


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404:
        message = f"No route {request.method} {request.url.path}."
    return error_response(exc.status_code, message, codes.get(exc.status_code, "http_error"),
                          headers=getattr(exc, "headers", None))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this response is sent and the ASGI server logs the traceback
    # once; the client only ever sees the generic message
    return error_response(500, "Internal server error; the server log has the details.", "internal_error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(StudioError, _on_studio_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
