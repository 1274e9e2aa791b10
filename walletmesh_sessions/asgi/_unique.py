"""One live session per origin and key (a wallet address, say), without guessable session ids.

The guard is a record in the same store under ``one_`` + SHA-256 of the origin and the key:
its data's `id` names the session that holds the pair. It is never a session id itself (its
key is 68 characters, so no cookie or header can present it), carries no permissions, and is
claimed with the store's atomic `create` and `update`, so of concurrent claimers exactly one
wins. A guard that names a session which is gone is free to be claimed again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import attrs

from .._data import SessionData
from .._errors import CorruptRecordError
from .._protocol import LifecycleSessionStore

__all__ = ("GUARD_KEY", "claim", "guard_id", "repoint")

GUARD_KEY = "walletmesh.one_per"
"""The `app_data` entry in which a guarded session names its guard."""

_ATTEMPTS = 4


def guard_id(origin: str, key: str) -> str:
    """The guard record's id for this origin and key: derived, so every process finds it."""
    digest = hashlib.sha256(f"{origin}\x00{key}".encode()).hexdigest()
    return f"one_{digest}"


async def _holder_is_live(store: LifecycleSessionStore, session_id: str) -> bool:
    try:
        return await store.get(session_id) is not None
    except CorruptRecordError:
        return False  # unreadable: no session holds the pair (the record itself is kept)


async def claim(store: LifecycleSessionStore, guard: str, data: SessionData) -> bool:
    """Make the guard name `data.id` unless a live session other than it already holds it."""
    mine = SessionData(data.id, data.origin)
    for _ in range(_ATTEMPTS):
        if await store.create(guard, mine):
            return True
        try:
            current = await store.get(guard)
        except CorruptRecordError:
            return False  # an unreadable guard is left for an operator, never overwritten
        if current is None:
            continue  # expired or removed since: try to create it again
        holder = current.id
        if holder == data.id:
            return True
        if await _holder_is_live(store, holder):
            return False
        taken = await store.update(guard, _moved(holder, data.id))
        if taken is not None and taken.id == data.id:
            return True
        if taken is not None and taken.id != holder:
            return False  # another claimer won the race for the free guard
    return False


async def repoint(store: LifecycleSessionStore, guard: str, old_id: str, new_id: str) -> None:
    """After a rotate: the guard follows its session to `new_id` (if it still names `old_id`)."""
    await store.update(guard, _moved(old_id, new_id))


def _moved(old_id: str, new_id: str) -> Callable[[SessionData], SessionData]:
    """A compare-and-set change: name `new_id` if the guard still names `old_id`."""
    return lambda data: attrs.evolve(data, id=new_id) if data.id == old_id else data
