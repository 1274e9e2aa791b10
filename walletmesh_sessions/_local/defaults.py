"""`default_store`: the TypeScript package's `defaultStore`, a memory store with a 24 h lifetime."""

from __future__ import annotations

from datetime import timedelta

from .._core.data import SessionStoreConfig
from .memory import MemorySessionStore

__all__ = ("DEFAULT_LIFETIME", "default_store")

DEFAULT_LIFETIME: timedelta = timedelta(hours=24)

# Annotated so every type checker sees the same public type, not its own inference.
default_store: MemorySessionStore = MemorySessionStore(
    SessionStoreConfig(lifetime=DEFAULT_LIFETIME)
)
