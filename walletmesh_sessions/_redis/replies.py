"""Reading redis-py replies: an error reply's code, a reply that may be an error, some text."""

from __future__ import annotations

from typing import Any

__all__ = ("as_text", "checked", "error_code")


def error_code(exc: BaseException) -> str:
    """An error reply's kind: its first word (``WRONGTYPE``, ``OOM``, ``ERR``...)."""
    words = str(exc).split(maxsplit=1)
    word = words[0] if words else ""
    return word if word.isalpha() and word.isupper() else "ERR"


def checked(reply: Any) -> Any:
    """`reply`, or raised if it is an error (error replies come back as exception objects)."""
    if isinstance(reply, Exception):
        raise reply
    return reply


def as_text(value: Any) -> str:
    """A reply that is text, as str (our clients answer bytes; a caller's may decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)
