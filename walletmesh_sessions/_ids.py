"""Session id generation: ids are bearer secrets, so they come from `secrets`."""

from __future__ import annotations

import secrets
import string

__all__ = ("new_session_id",)

# The first character is never '-', so an id on a command line never reads as an option.
FIRST_ALPHABET = string.ascii_letters + string.digits
LENGTH = 43


def new_session_id() -> str:
    """A fresh, unguessable, URL-safe session id of 43 characters, never starting with '-'.

    The first character is drawn uniformly from the 62 letters and digits, the other 42 from
    the 64 URL-safe base64 characters: log2(62) + 42 * 6 = 257.9 random bits, all from `secrets`.
    """
    rest = secrets.token_urlsafe(32)[: LENGTH - 1]  # 42 of its 43 characters: 252 whole bits
    return secrets.choice(FIRST_ALPHABET) + rest
