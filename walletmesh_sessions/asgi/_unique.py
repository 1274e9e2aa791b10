"""One live session per origin and key (a wallet address, say), without guessable session ids.

The guard is a record in the same store under ``one_`` + SHA-256 of the origin and the key:
its data's `id` names the session that holds the pair. It is never a session id itself (its
key is 68 characters, so no cookie or header can present it), carries no permissions, and is
changed only with the store's atomic `create` and compare-and-set `update`, so of concurrent
claimers exactly one wins. A guard whose sessions are all gone is free to be claimed again.

While its session rotates, the guard names the old id and, in ``app_data["next"]``, the ids
the session is moving to; it holds the pair while any of them is live, so a connect racing a
login never finds the guard free in between.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import attrs

from .._core.data import SessionData
from .._core.errors import CorruptRecordError
from .._core.protocol import LifecycleSessionStore

__all__ = ("GUARD_KEY", "begin_move", "claim", "end_move", "guard_id")

GUARD_KEY = "walletmesh.one_per"
"""The `app_data` entry in which a guarded session names its guard."""

_NEXT = "next"
_ATTEMPTS = 4
Change = Callable[[SessionData], SessionData]


def guard_id(origin: str, key: str) -> str:
    """The guard record's id for this origin and key: derived, so every process finds it."""
    digest = hashlib.sha256(f"{origin}\x00{key}".encode()).hexdigest()
    return f"one_{digest}"


def _holders(guard: SessionData) -> list[str]:
    """The session ids a guard stands for: the one it names and those it is moving to."""
    moving = guard.app_data.get(_NEXT, ())
    if not isinstance(moving, tuple):
        return [guard.id]
    return [guard.id, *(i for i in moving if isinstance(i, str))]


async def _any_live(store: LifecycleSessionStore, session_ids: list[str]) -> bool:
    for session_id in session_ids:
        try:
            if await store.get(session_id) is not None:
                return True
        except CorruptRecordError:
            continue  # unreadable: no session (the record itself is kept)
    return False


def _if_unchanged(seen: SessionData, new: SessionData) -> Change:
    """Compare-and-set: `new` if the guard is still exactly as `seen`, else as it is."""
    return lambda current: new if current == seen else current


async def claim(store: LifecycleSessionStore, guard: str, data: SessionData) -> bool:
    """Make the guard name `data.id` unless a live session other than it already holds it."""
    mine = SessionData(data.id, data.origin)
    for _ in range(_ATTEMPTS):
        if await store.create(guard, mine):
            return True
        try:
            seen = await store.get(guard)
        except CorruptRecordError:
            return False  # an unreadable guard is left for an operator, never overwritten
        if seen is None:
            continue  # expired or removed since: try to create it again
        holders = _holders(seen)
        if data.id in holders:
            return True
        if await _any_live(store, holders):
            return False
        taken = await store.update(guard, _if_unchanged(seen, mine))
        if taken is not None and taken.id == data.id:
            # Won. Write it anew: the old guard's clock (its created_at, so its absolute
            # timeout) must not cut short the guard of a session that has just started.
            await store.set(guard, mine)
            return True
    return False


async def begin_move(store: LifecycleSessionStore, guard: str, old_id: str, new_id: str) -> None:
    """Before a rotate: the guard also stands for `new_id` while it still stands for `old_id`."""

    def add(current: SessionData) -> SessionData:
        holders = _holders(current)
        if old_id not in holders:
            return current
        return attrs.evolve(current, app_data={_NEXT: [*holders[1:], new_id]})

    await store.update(guard, add)


async def end_move(store: LifecycleSessionStore, guard: str, old_id: str, new_id: str) -> None:
    """After a rotate won: the guard names `new_id` alone."""

    def settle(current: SessionData) -> SessionData:
        if old_id not in _holders(current):
            return current
        return attrs.evolve(current, id=new_id, app_data={})

    await store.update(guard, settle)
