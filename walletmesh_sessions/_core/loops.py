"""Event-loop bookkeeping shared by the network stores: clients that belong to one loop.

An asyncio client belongs to the loop it first ran on, and a worker-thread limiter to one trio
run. Stores keep one per loop; these helpers tell loops apart and close what a loop leaves.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable

__all__ = ("closed_at_shutdown", "trio_token")


def closed_at_shutdown(aclose: Callable[[], Awaitable[None]]) -> AsyncGenerator[None, None]:
    """An async generator, already started, that awaits ``aclose()`` when it is closed.

    asyncio closes every unfinished async generator of a loop as the loop shuts down
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


def trio_token() -> object:
    """The current trio run's token (only ever called on trio, so trio is there)."""
    import trio.lowlevel

    return trio.lowlevel.current_trio_token()
