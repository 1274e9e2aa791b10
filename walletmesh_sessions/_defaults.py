"""`default_store`: the TypeScript package's `defaultStore`, a memory store with a 24 h lifetime."""

from __future__ import annotations

from datetime import timedelta

from ._data import SessionStoreConfig
from ._memory import MemorySessionStore

__all__ = ("DEFAULT_LIFETIME", "default_store")

DEFAULT_LIFETIME = timedelta(hours=24)

default_store = MemorySessionStore(SessionStoreConfig(lifetime=DEFAULT_LIFETIME))
