"""The commands, each on the open store, the parsed arguments and the masked URL, and how
they read the store's records: page by page, filtered, or the first N by expiry."""

from __future__ import annotations

import argparse
import contextlib
import heapq
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio

from ..._core.data import SessionRecord
from ..._core.expiry import now_ms
from ..._core.protocol import ClosableSessionStore, Inspectable, IterableRecords
from .arguments import EXIT_NOT_FOUND, EXIT_OK, EXIT_STORE, EXIT_USAGE, CommandFailed
from .progress import Progress, waiting
from .rendering import JsonArray, JsonLines, Table, Tally, as_json, print_json, print_stats

__all__ = ("PAGE", "listed", "named", "run_command", "stream")

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


async def run_command(args: argparse.Namespace, store: ClosableSessionStore, url: str) -> int:
    """Run the command `args` names on `store`, closed afterwards; its exit status."""
    async with store:
        return await _COMMANDS[args.command](store, args, url)


async def _list(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    if args.sort is not None and args.limit is None:
        msg = "error: --sort needs --limit N: it keeps only N records in memory"
        raise CommandFailed(msg, EXIT_USAGE)
    now = now_ms(time.time)
    out = (JsonLines if args.jsonl else JsonArray if args.json else Table)(now)
    count = 0
    with Progress("reading records", beside_output=True) as progress:
        async with contextlib.aclosing(listed(store, args, progress)) as records:
            async for record in records:
                out.add(record)
                count += 1
    out.flush()
    if isinstance(out, Table):
        origin = "" if args.origin is None else f" of origin {args.origin}"
        limit = " (the --limit)" if count == args.limit else ""
        print(f"{count} record(s){origin} in {url}{limit}")
    return EXIT_OK


async def _existing(store: ClosableSessionStore, session_id: str, url: str) -> SessionRecord:
    record = await named(store, session_id)
    if record is None:
        raise CommandFailed(f"no session with id {session_id!r} in {url}", EXIT_NOT_FOUND)
    return record


async def _show(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    print_json(as_json(await _existing(store, args.session_id, url), now_ms(time.time)))
    return EXIT_OK


async def _delete(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    await _existing(store, args.session_id, url)
    await store.delete(args.session_id)
    print(f"deleted session {args.session_id!r}")
    return EXIT_OK


async def _clean(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    removed = await waiting("removing expired sessions", store.clean_expired)
    print(f"removed {removed} expired session(s)")
    return EXIT_OK


async def _clear(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    count = (await _tally(store)).records
    if not args.yes:
        question = f"Remove all {count} record(s) of the store at {url}? [y/N] "
        answer = await anyio.to_thread.run_sync(_ask, question)
        if answer.strip().lower() not in ("y", "yes"):
            raise CommandFailed("aborted: nothing was removed", EXIT_NOT_FOUND)
    await waiting("removing every record", store.clear)
    print(f"removed {count} record(s)")
    return EXIT_OK


async def _tally(store: ClosableSessionStore) -> Tally:
    """Every record of the store, added up, with a progress line."""
    tally = Tally(now_ms(time.time))
    with Progress("counting records") as progress:
        async with contextlib.aclosing(stream(store, progress)) as records:
            async for record in records:
                tally.add(record)
    return tally


def _ask(question: str) -> str:
    print(question, end="", flush=True, file=sys.stderr)
    try:
        return input()
    except EOFError:
        print(file=sys.stderr)
        return ""


async def _stats(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    tally = await _tally(store)
    stats = tally.as_json(url)
    if args.json:
        print_json(stats)
    elif tally.records == 0:
        print(f"no sessions in {url}")
    else:
        print_stats(stats)
    return EXIT_OK


_COMMANDS: dict[str, Callable[[ClosableSessionStore, argparse.Namespace, str], Awaitable[int]]] = {
    "list": _list,
    "show": _show,
    "delete": _delete,
    "clean": _clean,
    "clear": _clear,
    "stats": _stats,
}
