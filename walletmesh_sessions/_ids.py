"""Session id generation: ids are bearer secrets, so they come from `secrets`."""

from __future__ import annotations

import secrets

__all__ = ("new_session_id",)


def new_session_id() -> str:
    """A fresh, unguessable, URL-safe session id carrying 256 random bits (43 characters)."""
    return secrets.token_urlsafe(32)
