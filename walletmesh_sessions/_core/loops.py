"""What belongs to one event loop: a resource per asyncio loop or trio run, closed with it.

An asyncio client belongs to the loop it first ran on, a worker-thread limiter to one trio run,
a `TimerQueue` to one loop. A store that outlives a loop (a second ``anyio.run``) needs a fresh
one there, and the old one closed on its own loop. `PerLoop` does both, for any resource.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

from anyio.lowlevel import RunVar

__all__ = ("PerLoop", "closed_at_shutdown")

T = TypeVar("T")


class PerLoop(Generic[T]):
    """One `T` per event loop (asyncio) or run (trio): made by `factory` on the first `get()`
    there, and closed by `close` when that loop shuts down or on `aclose()` from it.

    Each holder has its own `anyio.lowlevel.RunVar`. A holder dropped while its loop runs
    has its resource closed on that loop: soon after on asyncio (as a dropped client would
    be), as the run ends on trio.

    Usage, a store's clients and limiters::

        self._clients = PerLoop(self._new_client, close=lambda client: client.aclose())
        self._limiters = PerLoop(lambda: anyio.CapacityLimiter(size))
        self._timers = PerLoop(TimerQueue.running)  # asyncio only

        client = self._clients.get()  # in async code; this loop's, made on first use
        await self._clients.aclose()  # in the store's aclose: this loop's, closed now
    """

    __slots__ = ("__weakref__", "_close", "_factory", "_held", "_last", "_last_loop", "_var")

    def __init__(
        self, factory: Callable[[], T], close: Callable[[T], Awaitable[object]] | None = None
    ) -> None:
        self._factory = factory
        self._close = close
        # The run's key into `_held`, and on trio the closer too: trio warns of an unfinished
        # async generator it collects, so there the run keeps it until it ends. Each holder's
        # RunVar has a name of its own: anyio before 4.10 stores a run's values by name, so
        # holders sharing one would overwrite each other's.
        self._var: RunVar[tuple[int, object] | None] = RunVar(
            f"walletmesh_sessions.PerLoop.{next(_keys)}", None
        )
        # The holder keeps what it made; its loop's RunVar keeps only a key into this.
        self._held: dict[int, tuple[T, AsyncGenerator[None, None]]] = {}
        # The last asyncio loop served: a RunVar look-up costs more than a store's own work
        # on a cached read, so calls on that loop skip it.
        self._last_loop: object = None
        self._last: T | None = None

    def get(self) -> T:
        """This loop's resource, made now if this loop has none yet."""
        loop = _running_asyncio_loop()
        if loop is not None and loop is self._last_loop:
            return self._last  # type: ignore[return-value]  # set together with _last_loop
        held = self._held_here()
        if held is None:
            value = self._factory()
            key = next(_keys)
            closer = closed_at_shutdown(_releaser(weakref.ref(self), key, value, self._close))
            self._held[key] = (value, closer)
            self._var.set((key, None if loop is not None else closer))
        else:
            value = held[0]
        if loop is not None:
            self._last_loop, self._last = loop, value
        return value

    def current(self) -> T | None:
        """This loop's resource if it has one, without making it."""
        held = self._held_here()
        return None if held is None else held[0]

    async def aclose(self) -> None:
        """Close this loop's resource now, if it has one; a later `get()` makes a fresh one.

        Other loops' resources are closed by their own loops as they shut down (an asyncio
        resource can only be closed on its own loop)."""
        self._last_loop = self._last = None
        here = self._var.get()
        held = None if here is None else self._held.pop(here[0], None)
        if held is not None:
            self._var.set(None)
            await held[1].aclose()

    def _held_here(self) -> tuple[T, AsyncGenerator[None, None]] | None:
        here = self._var.get()
        return None if here is None else self._held.get(here[0])

    def _forget(self, key: int, value: T) -> None:
        self._held.pop(key, None)
        if self._last is value:
            self._last_loop = self._last = None


_keys = itertools.count()


def _releaser(
    holder: weakref.ref[PerLoop[T]],
    key: int,
    value: T,
    close: Callable[[T], Awaitable[object]] | None,
) -> Callable[[], Awaitable[None]]:
    """What closing `value` does: its holder forgets it (if the holder is still there), then
    `close` runs. The holder is held weakly, so a dropped holder's resources are closed too."""

    async def release() -> None:
        owner = holder()
        if owner is not None:
            owner._forget(key, value)
        if close is not None:
            await close(value)

    return release


def _running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # on trio
        return None


def closed_at_shutdown(aclose: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None]:
    """An async generator, already started, that awaits ``aclose()`` when it is closed.

    asyncio and trio close every unfinished async generator of a loop as the loop shuts down
    (``asyncio.run`` and ``anyio.run`` do), while the loop still runs: so a store that
    outlives its event loop has its connections closed properly, on their own loop.
    """

    async def close_at_exit() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await aclose()

    closer = close_at_exit()
    with contextlib.suppress(StopIteration):
        closer.asend(None).send(None)  # run to the yield now: nothing there awaits
    return closer
