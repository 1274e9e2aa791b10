"""The library's logger, and the helpers that keep secrets (ids, passwords) out of messages."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

__all__ = ("logger", "redact", "short_id")

logger = logging.getLogger("walletmesh_sessions")


def short_id(session_id: str) -> str:
    """The first few characters of a session id and its length: enough to correlate, not to use."""
    if len(session_id) <= 4:
        return f"{'*' * len(session_id)}({len(session_id)})"
    return f"{session_id[:4]!r}...({len(session_id)} chars)"


def redact(url: str) -> str:
    """`url` with any password replaced, fit for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return url.replace(parts.netloc, netloc, 1)
