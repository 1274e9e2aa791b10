"""Reading a store's records for a command: page by page, filtered, or the first N by expiry."""

from __future__ import annotations

import argparse
import contextlib
import heapq
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TypeVar

from ..._core.data import SessionRecord
from ..._core.protocol import ClosableSessionStore, Inspectable, IterableRecords
from .arguments import EXIT_STORE, CommandFailed
from .progress import Progress

__all__ = ("PAGE", "listed", "named", "stream")

T = TypeVar("T")

# Records per store call when a command reads them all: memory stays within about a page.
PAGE = 500


async def stream(
    store: ClosableSessionStore, progress: Progress, batch_size: int = PAGE
) -> AsyncGenerator[SessionRecord, None]:
    """Every record of the store, each counted on `progress`.

    Through `iter_records`, a page of `batch_size` at a time, so memory stays within a page
    and a reader that stops early stops the reads; a store without it is read with one
    `inspect()`.
    """
    if isinstance(store, IterableRecords):
        async with _closing(store.iter_records(batch_size)) as records:
            async for record in records:
                progress.advance()
                yield record
        return
    if not isinstance(store, Inspectable):
        raise CommandFailed(f"error: {type(store).__name__} cannot list its records", EXIT_STORE)
    for record in await store.inspect():
        progress.advance()
        yield record


@contextlib.asynccontextmanager
async def _closing(iterator: AsyncIterator[T]) -> AsyncGenerator[AsyncIterator[T], None]:
    """`iterator`, closed on the way out when it can be (an async generator): a reader that
    stops early ends the store's iteration there, not when it is collected."""
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def named(store: ClosableSessionStore, session_id: str) -> SessionRecord | None:
    """The record stored under `session_id`, readable or not, or `None`."""
    if not isinstance(store, Inspectable):
        raise CommandFailed(f"error: {type(store).__name__} cannot show its records", EXIT_STORE)
    records = await store.inspect(session_id)
    return records[0] if records else None


def _of_origin(record: SessionRecord, origin: str | None) -> bool:
    return origin is None or (record.data is not None and record.data.origin == origin)


def _expiry_order(sort: str) -> Callable[[SessionRecord], tuple[bool, float]]:
    """The key that puts records in `--sort` order; unreadable records (no expiry) go last."""
    sign = 1 if sort == "soonest" else -1

    def key(record: SessionRecord) -> tuple[bool, float]:
        expires = float("inf") if record.expires_at is None else record.expires_at
        return record.data is None, sign * expires

    return key


async def _first(
    records: AsyncIterator[SessionRecord],
    n: int,
    key: Callable[[SessionRecord], tuple[bool, float]],
    origin: str | None,
) -> list[SessionRecord]:
    """The `n` records of `origin` first by `key` (ties in the order read), holding at most
    `n` at once."""
    # A max-heap of the n kept so far, by negated key: its top is the first to give up.
    heap: list[tuple[bool, float, int, SessionRecord]] = []
    seen = 0
    async for record in records:
        if not _of_origin(record, origin):
            continue
        late, value = key(record)
        entry = (not late, -value, -seen, record)
        seen += 1
        if len(heap) < n:
            heapq.heappush(heap, entry)
        elif entry[:3] > heap[0][:3]:
            heapq.heapreplace(heap, entry)
    return [entry[3] for entry in sorted(heap, key=lambda e: e[:3], reverse=True)]


async def listed(
    store: ClosableSessionStore, args: argparse.Namespace, progress: Progress
) -> AsyncGenerator[SessionRecord, None]:
    """What `list` prints: records of --origin, at most --limit, in store or --sort order."""
    limit: int | None = args.limit
    # With only --limit, a first page of that size is all there is to read.
    plain = limit is not None and args.origin is None and args.sort is None
    batch = min(limit, PAGE) if plain and limit is not None else PAGE
    async with contextlib.aclosing(stream(store, progress, batch)) as records:
        if args.sort is not None and limit is not None:
            key = _expiry_order(args.sort)
            for record in await _first(records, limit, key, args.origin):
                yield record
            return
        count = 0
        async for record in records:
            if not _of_origin(record, args.origin):
                continue
            yield record
            count += 1
            if count == limit:
                return
