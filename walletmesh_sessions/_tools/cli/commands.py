"""The commands: each takes the open store, the parsed arguments and the masked URL."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable

import anyio

from ..._core.expiry import now_ms
from ..._core.protocol import ClosableSessionStore
from .arguments import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, CommandFailed
from .progress import Progress, waiting
from .reading import listed, named, stream
from .rendering import JsonArray, JsonLines, Table, Tally, as_json, print_json, print_stats

__all__ = ("run_command",)


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
        print(_summary(count, args, url))
    return EXIT_OK


def _summary(count: int, args: argparse.Namespace, url: str) -> str:
    """The table's last line: how many records, of which origin, in which store."""
    origin = "" if args.origin is None else f" of origin {args.origin}"
    limit = " (the --limit)" if count == args.limit else ""
    return f"{count} record(s){origin} in {url}{limit}"


async def _show(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    record = await named(store, args.session_id)
    if record is None:
        raise CommandFailed(f"no session with id {args.session_id!r} in {url}", EXIT_NOT_FOUND)
    print_json(as_json(record, now_ms(time.time)))
    return EXIT_OK


async def _delete(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    if await named(store, args.session_id) is None:
        raise CommandFailed(f"no session with id {args.session_id!r} in {url}", EXIT_NOT_FOUND)
    await store.delete(args.session_id)
    print(f"deleted session {args.session_id!r}")
    return EXIT_OK


async def _clean(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    removed = await waiting("removing expired sessions", store.clean_expired)
    print(f"removed {removed} expired session(s)")
    return EXIT_OK


async def _clear(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    count = 0
    with Progress("counting records") as progress:
        async with contextlib.aclosing(stream(store, progress)) as records:
            async for _record in records:
                count += 1
    if not args.yes:
        question = f"Remove all {count} record(s) of the store at {url}? [y/N] "
        answer = await anyio.to_thread.run_sync(_ask, question)
        if answer.strip().lower() not in ("y", "yes"):
            raise CommandFailed("aborted: nothing was removed", EXIT_NOT_FOUND)
    await waiting("removing every record", store.clear)
    print(f"removed {count} record(s)")
    return EXIT_OK


def _ask(question: str) -> str:
    print(question, end="", flush=True, file=sys.stderr)
    try:
        return input()
    except EOFError:
        print(file=sys.stderr)
        return ""


async def _stats(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    tally = Tally(now_ms(time.time))
    with Progress("counting records") as progress:
        async with contextlib.aclosing(stream(store, progress)) as records:
            async for record in records:
                tally.add(record)
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
