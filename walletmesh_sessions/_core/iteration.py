"""`iter_sessions(store)`: batched iteration over any `SessionStore`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from .data import SessionData
from .protocol import IterableSessionStore, SessionStore
from .validation import check_batch_size

__all__ = ("iter_sessions",)


async def iter_sessions(
    store: SessionStore, batch_size: int = 500
) -> AsyncIterator[tuple[str, SessionData]]:
    """Each live session of `store` as ``(session_id, data)``, as `IterableSessionStore`
    says: through the store's own `iter_sessions`, else (a custom store) one `get_all`."""
    batch_size = check_batch_size(batch_size)
    if isinstance(store, IterableSessionStore):
        async for item in store.iter_sessions(batch_size):
            yield item
        return
    for item in (await store.get_all()).items():
        yield item
