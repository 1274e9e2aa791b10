"""Worker threads that let the event loop's thread in while they work through many rows.

CPython makes a thread that wants the GIL wait up to the switch interval (5 ms by default)
before it asks the holder to let go. A worker decoding a million rows would hold the event
loop's thread back that long at each of its turns; a worker that releases the GIL about every
millisecond lets it in at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ("sharing_the_gil",)

T = TypeVar("T")

# Items between two looks at the clock, and the work between two releases of the GIL.
_EVERY = 64
_SLICE = 0.001


def sharing_the_gil(
    items: Iterable[T],
    *,
    clock: Callable[[], float] = time.perf_counter,
    pause: Callable[[float], None] = time.sleep,
) -> Iterator[T]:
    """`items` as they are, with the GIL released after about each millisecond of work.

    The work counted is the consumer's as much as the iterable's: wrap the rows a worker
    thread decodes, and the decoding takes turns with the event loop. ``pause(0)`` releases
    the GIL (`time.sleep` does); a thread waiting for it takes it then.
    """
    last = clock()
    for n, item in enumerate(items, 1):
        yield item
        if not n % _EVERY:
            now = clock()
            if now - last >= _SLICE:
                pause(0)
                last = clock()
