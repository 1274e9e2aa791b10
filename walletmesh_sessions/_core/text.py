"""What counts as storable text: a str that every backend can encode as UTF-8."""

from __future__ import annotations

__all__ = ("is_unicode_text",)


def is_unicode_text(value: object) -> bool:
    """True if `value` is a str holding no lone surrogates (so UTF-8 can encode it)."""
    if not isinstance(value, str):
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
