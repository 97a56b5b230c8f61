"""Checks on text that comes from outside (files, argv, HTTP bodies) before it reaches a tokenizer.

A lone surrogate (``"a\\ud800b"``: JSON allows the escape, UTF-8 cannot encode it) makes the
tokenizer raise deep inside its Rust code; it is refused here with a message that says where it is.
"""

from __future__ import annotations

from engine.errors import InputError, RequestError


def lone_surrogate_at(text: str) -> int | None:
    """The index of the first code point that UTF-8 cannot encode (a lone surrogate), or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


SURROGATE_HINT = "the text was cut in the middle of a character pair (an emoji, a rare CJK character); fix the source"


def check_encodable(text: str, where: str, param: str | None = None) -> str:
    """``text`` unchanged, or an InputError naming ``where`` (e.g. 'texts.txt:3', 'input[2]') and the position;
    with ``param`` a RequestError naming that HTTP field."""
    position = lone_surrogate_at(text)
    if position is not None:
        message = (f"{where} holds a lone surrogate (U+{ord(text[position]):04X}) at character {position}: "
                   "it is not valid Unicode text.")
        raise RequestError(message, param, SURROGATE_HINT) if param else InputError(message, SURROGATE_HINT)
    return text


def clip(value: object, limit: int = 120) -> str:
    """``repr`` of a value given by a user, cut to ``limit`` characters: messages never echo unbounded input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
