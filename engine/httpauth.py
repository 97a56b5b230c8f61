"""What the three HTTP servers (the main API, the converter API, the VLM OCR server) share about who may
come in and how a refusal looks, and what every client shares about credentials in URLs.

- ``bearer_token`` / ``token_matches`` / ``authorized``: ``Authorization: Bearer <token>`` checked in
  constant time (``hmac.compare_digest`` on bytes; a missing token is compared too, so it takes as
  long as a wrong one). Neither token is ever logged.
- ``error_body``: OpenAI's error shape ``{"error": {"message", "type", "param", "code"[, "hint"]}}``.
- ``mask_url``: ``http://user:secret@host`` -> ``http://user:***@host`` for messages and log lines.

Standard library only (no torch, no web framework), so every process can import it.
"""

from __future__ import annotations

import hmac
import re
from urllib.parse import urlsplit, urlunsplit

_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@]*):([^/\s@]+)@")
BEARER_HINT = "send 'Authorization: Bearer <token>' (the server's API_TOKEN)"


def bearer_token(header: bytes | str | None) -> bytes | None:
    """The token of an ``Authorization: Bearer ...`` header value, or None (no header, another scheme)."""
    if not header:
        return None
    raw = header.encode("latin-1", "replace") if isinstance(header, str) else header
    scheme, _, token = raw.strip().partition(b" ")
    token = token.strip()
    return token if scheme.lower() == b"bearer" and token else None


def token_matches(presented: bytes | None, expected: bytes) -> bool:
    """Constant-time comparison; a missing token never matches (and costs as long as a wrong one)."""
    return hmac.compare_digest(presented if presented is not None else b"", expected) and presented is not None


def authorized(header: bytes | str | None, expected: str | None) -> bool:
    """True when no token is configured, or the header carries exactly the expected token."""
    if not expected:
        return True
    return token_matches(bearer_token(header), expected.encode("utf-8"))


def secret_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of two strings (a password typed into the app)."""
    return hmac.compare_digest((given or "").encode("utf-8"), expected.encode("utf-8")) and given is not None


def error_type(status: int) -> str:
    """OpenAI's ``type`` field: clients branch on it (and the openai client on the status)."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_body(status: int, message: str, code: str | int | None, param: str | None = None, hint: str = "",
               kind: str | None = None) -> dict:
    """The error body every server answers with; ``kind`` overrides ``type`` (the VLM server mimics vLLM's names)."""
    body = {"message": message, "type": kind or error_type(status), "param": param, "code": code}
    if hint:
        body["hint"] = hint
    return {"error": body}


def mask_url(url: str | None) -> str:
    """The URL with the password of its ``user:password@`` part replaced by ``***`` (the user name stays,
    so a reader can tell which account it is); anything that is not a URL comes back unchanged."""
    if not url or "@" not in url:
        return url or ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    netloc = f"{parts.username or ''}:***@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def mask_urls(text: str) -> str:
    """Every ``scheme://user:password@`` inside a free text (an exception message, a log line) masked."""
    return _CREDENTIALS.sub(r"\1\2:***@", text) if "@" in text else text
