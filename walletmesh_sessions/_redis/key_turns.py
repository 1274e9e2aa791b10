"""`KeyTurns`: this store's updates of one key take turns, one lock per key in use."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio

from .._core.errors import StoreUnavailableError

__all__ = ("KeyTurns",)


class KeyTurns:
    """One lock per key that calls are waiting on, so this store's updates of a key take
    turns: contention inside one process then costs no lost compare-and-set races.

    A key's lock exists only while some call holds or waits for it (a count of users), so
    the dict never grows with the keys ever updated, and no lock outlives its event loop.
    """

    def __init__(self) -> None:
        self._turns: dict[str, tuple[anyio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, key: str, deadline: float, name: str) -> AsyncIterator[None]:
        """Hold the key's lock; `StoreUnavailableError` if it is not free by `deadline`."""
        entry = self._turns.get(key)
        if entry is None:
            entry = self._turns[key] = (anyio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                await lock.acquire()
            if scope.cancelled_caught:
                msg = f"Redis store: {name} waited past the call's deadline for its turn"
                raise StoreUnavailableError(msg)
            try:
                yield
            finally:
                lock.release()
        finally:
            users[0] -= 1
            if not users[0]:
                del self._turns[key]
