"""Session id generation: ids are bearer secrets, so they come from `secrets`."""

from __future__ import annotations

import re
import secrets
import string

__all__ = ("is_new_session_id_shape", "new_session_id")

# The first character is never '-', so an id on a command line never reads as an option.
FIRST_ALPHABET = string.ascii_letters + string.digits
LENGTH = 43
_SHAPE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{{LENGTH - 1}}}")


def new_session_id() -> str:
    """A fresh, unguessable, URL-safe session id of 43 characters, never starting with '-':
    log2(62) + 42 * 6 = 257.9 random bits, all from `secrets`."""
    rest = secrets.token_urlsafe(32)[: LENGTH - 1]  # 42 of its 43 characters: 252 whole bits
    return secrets.choice(FIRST_ALPHABET) + rest


def is_new_session_id_shape(text: str) -> bool:
    """True if `text` could have come from `new_session_id`: 43 URL-safe characters, the first
    a letter or digit. Lets a web layer refuse a forged or foreign cookie before any store call."""
    return len(text) == LENGTH and _SHAPE.fullmatch(text) is not None
