"""The library's logger, and the helper that keeps session ids out of its lines."""

from __future__ import annotations

import logging

__all__ = ("logger", "short_id")

logger = logging.getLogger("walletmesh_sessions")


def short_id(session_id: str) -> str:
    """The first few characters of a session id and its length: enough to correlate, not to use."""
    if len(session_id) <= 4:
        return f"{'*' * len(session_id)}({len(session_id)})"
    return f"{session_id[:4]!r}...({len(session_id)} chars)"
