"""The `walletmesh-sessions` command: look inside a store, remove sessions, clean expired ones."""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import re
import sys
import textwrap
import time
import traceback
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar
from urllib.parse import quote

import anyio

from .._core.codec import session_to_json
from .._core.data import SessionRecord
from .._core.errors import InvalidConfigError, InvalidSessionIdError, SessionStoreError
from .._core.expiry import now_ms
from .._core.masking import NOTICE, redact, redact_message
from .._core.protocol import ClosableSessionStore, Inspectable, IterableRecords
from .._local.localstorage import LocalStorageSessionStore
from .open_store import CONNINFO_HINT, is_conninfo, open_store

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ("main", "main_entry")

T = TypeVar("T")

PROG = "walletmesh-sessions"
URL_VARIABLE = "WALLETMESH_SESSIONS_URL"
DEBUG_VARIABLE = "WALLETMESH_SESSIONS_DEBUG"
DEFAULT_URL = "sqlite:///sessions.db"
EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_STORE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EPILOG = (
    "exit status: 0 ok, 1 not found or aborted, 2 usage error (including a bad --store URL), "
    f"3 store error, 130 interrupted. Set {DEBUG_VARIABLE}=1 to see tracebacks."
)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Arguments that are options of some command, so never a mistyped id.
OPTIONS = frozenset(
    {
        "-h",
        "--help",
        "--version",
        "--store",
        "--json",
        "--jsonl",
        "--yes",
        "--limit",
        "--origin",
        "--sort",
    }
)
# Records per store call when a command reads them all: memory stays within about a page.
PAGE = 500
# Table rows read before the column widths are set: the rest are printed as they come.
TABLE_HEAD = 50


class CommandFailed(Exception):
    """A user-facing failure: printed in one line on stderr, with an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line and exit 2, never usage text."""

    def error(self, message: str) -> NoReturn:
        raise CommandFailed(f"error: {message} (see {self.prog} --help)", EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the epilog of ``--help``).

    Every failure is one line on stderr; a traceback only when $WALLETMESH_SESSIONS_DEBUG is 1.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    url = ""
    if sys.stdout is None:  # started with its output closed (`>&-`): as `>/dev/null`
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (for the process)
    try:
        try:
            args = _parser().parse_args(argv)
        except CommandFailed as exc:
            raise CommandFailed(_with_dash_hint(str(exc), argv), exc.code) from None
        except SystemExit as exc:  # --help and --version
            sys.stdout.flush()
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        url = _store_url(getattr(args, "store", None) or os.environ.get(URL_VARIABLE))
        store = _open(url)
        code = anyio.run(_run, args, store, redact(url))
        sys.stdout.flush()  # inside the try: a closed pipe shows up here at the latest
        return code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as the Python docs advise (exit 1).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_NOT_FOUND
    except CommandFailed as exc:
        return _fail(str(exc), exc.code, url)
    except InvalidSessionIdError as exc:  # an id on the command line: a usage error
        return _fail(f"error: {exc}", EXIT_USAGE, url)
    except SessionStoreError as exc:
        return _fail(f"error: {exc}", EXIT_STORE, url)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED, url)
    except Exception as exc:
        # A bug: one line for users, the (masked) traceback for whoever debugs it.
        debug = os.environ.get(DEBUG_VARIABLE) == "1"
        if debug:
            print(redact_message(traceback.format_exc(), url), end="", file=sys.stderr)
        hint = "" if debug else f"; {DEBUG_VARIABLE}=1 shows the traceback"
        return _fail(f"unexpected error: {type(exc).__name__}: {exc}{hint}", EXIT_STORE, url)


def _fail(message: str, code: int, url: str) -> int:
    line = " ".join(redact_message(message, url).split())
    if line == NOTICE:
        line = f"error: {NOTICE}"
    print(f"{PROG}: {line}", file=sys.stderr)
    return code


def _with_dash_hint(message: str, argv: Sequence[str]) -> str:
    """`message`, told how to pass an id that starts with '-' when that is the likely mistake."""
    command = next((a for a in argv if a in ("show", "delete")), None)
    dashed = [a for a in argv if a.startswith("-") and a.split("=")[0] not in OPTIONS]
    if command is None or not dashed or "--" in argv or "required: ID" not in message:
        return message
    return f"{message}; use -- before an id that starts with '-': {PROG} {command} -- {dashed[0]}"


def _store_url(value: str | None) -> str:
    """The store URL a --store value means: a bare path (``~`` expanded) is a SQLite file."""
    if not value:
        return DEFAULT_URL
    if SCHEME.match(value):
        if value.split(":", 1)[0].lower() == "memory":
            msg = "error: a memory store lives inside one process: here it would always be empty"
            raise CommandFailed(msg, EXIT_USAGE)
        return value
    if is_conninfo(value):  # not a file name: never quote it into one (nor its password)
        msg = f"error: a libpq key=value string is not a store: {redact(value)!r}; {CONNINFO_HINT}"
        raise CommandFailed(msg, EXIT_USAGE)
    return "sqlite:///" + quote(os.path.expanduser(value))


def _open(url: str) -> ClosableSessionStore:
    try:
        store = open_store(url)
    except InvalidConfigError as exc:
        # The URL itself is wrong: that is the caller's mistake, not the store's.
        raise CommandFailed(f"error: {exc}", EXIT_USAGE) from exc
    path = store.path if isinstance(store, LocalStorageSessionStore) else None
    if path is not None and not os.path.exists(path):
        # Opening would create an empty file: in the wrong directory that hides the mistake.
        msg = f"error: no session file at {path!r} (from {redact(url)})"
        raise CommandFailed(msg, EXIT_STORE)
    if url.split(":", 1)[0].lower() in ("postgresql", "postgres"):
        _existing_table_only(store)
    return store


def _existing_table_only(store: ClosableSessionStore) -> None:
    """A PostgreSQL store checks its table on first use rather than creating it: a mistyped
    ``table=`` is then an error, as a missing SQLite file is, not a new empty table."""
    from .._postgres.store import PostgresSessionStore

    if isinstance(store, PostgresSessionStore):
        store._existing_table_only()


def _version() -> str:
    try:
        return version("walletmesh-sessions")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    store = _Parser(add_help=False)
    store.add_argument(
        "--store",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="store URL (memory://, sqlite:///file.db, redis://host:6379/0, postgresql://host/db,"
        f" ...) or the path of a SQLite file; default: ${URL_VARIABLE}, else {DEFAULT_URL}",
    )
    parser = _Parser(
        prog=PROG,
        description="Inspect and maintain a walletmesh session store.",
        parents=[store],
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, parents=[store], help=text, description=text, epilog=EPILOG
        )

    listing = command(
        "list",
        "list records (live, expired and unreadable) as they are read, in the store's order:"
        " by key on SQLite and PostgreSQL, in no set order on Redis (SCAN order)",
    )
    output = listing.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON array for machines")
    output.add_argument(
        "--jsonl", action="store_true", help="print one JSON object per line (as --json's)"
    )
    listing.add_argument(
        "--limit", type=_positive, metavar="N", help="stop after N records (reads only those)"
    )
    listing.add_argument(
        "--origin", metavar="ORIGIN", help="only sessions of this dApp origin (exact match)"
    )
    listing.add_argument(
        "--sort",
        choices=("soonest", "latest"),
        help="with --limit N: the N records that expire soonest (or latest; never expiring"
        " counts as latest), from a read of the whole store that keeps only N in memory",
    )
    show = command("show", "print one session as JSON (an id starting with '-': show -- ID)")
    show.add_argument("session_id", metavar="ID")
    delete = command("delete", "remove one session (an id starting with '-': delete -- ID)")
    delete.add_argument("session_id", metavar="ID")
    command("clean", "remove expired sessions and say how many were removed")
    clear = command("clear", "remove every record of the store (asks first)")
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    stats = command("stats", "counts, expiry range and sessions per origin")
    stats.add_argument("--json", action="store_true", help="print JSON for machines")
    return parser


def _positive(text: str) -> int:
    """An option's value that must be a whole number of at least 1."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        msg = f"must be a whole number of at least 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


async def _run(args: argparse.Namespace, store: ClosableSessionStore, url: str) -> int:
    async with store:
        handler = {
            "list": _list,
            "show": _show,
            "delete": _delete,
            "clean": _clean,
            "clear": _clear,
            "stats": _stats,
        }[args.command]
        return await handler(store, args, url)


def _stderr_is_terminal() -> bool:
    """Progress is for people: shown only when stderr is a terminal (tests replace this)."""
    return _is_terminal(sys.stderr)


def _stdout_is_terminal() -> bool:
    """Whether the output itself is on a terminal, where a progress line would cut into it."""
    return _is_terminal(sys.stdout)


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # closed
        return False


def _bar(description: str, bar_format: str) -> tqdm[Any] | None:
    """A tqdm progress line on stderr, or `None`: not a terminal, or tqdm not installed.

    tqdm comes with the `cli` extra; without it the commands work the same, silently.
    """
    if not _stderr_is_terminal():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        desc=description,
        file=sys.stderr,
        leave=False,  # the line goes once the command prints its result
        unit=" records",
        mininterval=0.25,
        bar_format=bar_format,
    )


class _Progress:
    """A progress line on stderr while a command reads many records or waits on the store.

    Does nothing where no one watches (see `_bar`), so callers never check.
    """

    RECORDS = "{desc}: {n_fmt} records [{elapsed}, {rate_fmt}]"
    WAITING = "{desc}... {elapsed}"

    def __init__(self, description: str, bar_format: str = RECORDS, *, show: bool = True) -> None:
        self._bar = _bar(description, bar_format) if show else None

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update()

    def refresh(self) -> None:
        if self._bar is not None:
            self._bar.refresh()

    def __enter__(self) -> _Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()


async def _waiting(description: str, call: Callable[[], Awaitable[T]]) -> T:
    """``await call()``, one store call that may take long, with a line counting the time."""
    with _Progress(description, _Progress.WAITING) as progress:
        if not progress.shown:
            return await call()
        results: list[T] = []
        failures: list[Exception] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_tick, progress)
            try:
                results.append(await call())
            except Exception as exc:  # raised as it is below, not wrapped in a group
                failures.append(exc)
            tasks.cancel_scope.cancel()
        if failures:
            raise failures[0]
        return results[0]


async def _tick(progress: _Progress) -> None:
    while True:
        await anyio.sleep(0.5)
        progress.refresh()


async def _stream(
    store: ClosableSessionStore, progress: _Progress, batch_size: int = PAGE
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


async def _named(store: ClosableSessionStore, session_id: str) -> SessionRecord | None:
    """The record stored under `session_id`, readable or not, or `None`."""
    if not isinstance(store, Inspectable):
        raise CommandFailed(f"error: {type(store).__name__} cannot show its records", EXIT_STORE)
    records = await store.inspect(session_id)
    return records[0] if records else None


def _state(record: SessionRecord, now: int) -> str:
    if record.data is None:
        return "unreadable"
    return "expired" if record.is_expired(now) else "live"


def _when(ms: int | None) -> str | None:
    """`ms` as ISO 8601 UTC, or "far future"/"far past" beyond what a datetime holds."""
    if ms is None:
        return None
    try:
        moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    except (OverflowError, ValueError, OSError):
        return "far future" if ms > 0 else "far past"
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _as_json(record: SessionRecord, now: int) -> dict[str, Any]:
    return {
        "sessionId": record.session_id,
        "state": _state(record, now),
        "expiresAt": record.expires_at,
        "expires": _when(record.expires_at),
        "data": None if record.data is None else session_to_json(record.data),
        "error": record.error,
    }


def _print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


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


async def _listed(
    store: ClosableSessionStore, args: argparse.Namespace, progress: _Progress
) -> AsyncGenerator[SessionRecord, None]:
    """What `list` prints: records of --origin, at most --limit, in store or --sort order."""
    limit: int | None = args.limit
    # With only --limit, a first page of that size is all there is to read.
    plain = limit is not None and args.origin is None and args.sort is None
    batch = min(limit, PAGE) if plain and limit is not None else PAGE
    async with contextlib.aclosing(_stream(store, progress, batch)) as records:
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


class _Table:
    """Records as aligned columns, printed as they come: the first rows set the widths."""

    HEADER = ("SESSION ID", "STATE", "EXPIRES (UTC)", "ORIGIN", "PERMISSIONS")

    def __init__(self, now: int) -> None:
        self._now = now
        self._head: list[tuple[str, ...]] | None = [self.HEADER]
        self._widths = [0, 0, 0, 0]

    def add(self, record: SessionRecord) -> None:
        row = self._row(record)
        if self._head is None:
            self._print(row)
            return
        self._head.append(row)
        if len(self._head) > TABLE_HEAD:
            self.flush()

    def flush(self) -> None:
        """Print the rows held back to set the widths; later rows print as they come."""
        if self._head is None:
            return
        head, self._head = self._head, None
        self._widths = [max(len(row[i]) for row in head) for i in range(4)]
        for row in head:
            self._print(row)

    def _print(self, row: tuple[str, ...]) -> None:
        # A later cell wider than the first rows' widens its column from there on.
        self._widths = [max(w, len(cell)) for w, cell in zip(self._widths, row, strict=False)]
        cells = zip(row[:4], self._widths, strict=True)
        print("  ".join(cell.ljust(width) for cell, width in cells) + "  " + row[4])

    def _row(self, r: SessionRecord) -> tuple[str, ...]:
        sid = _shown(r.session_id)
        if r.data is None:
            return (sid, "unreadable", "-", "-", _shown(r.error or ""))
        permissions = " ".join(f"{chain}({len(m)})" for chain, m in r.data.permissions.items())
        expires = _when(r.expires_at) or "never"
        return (
            sid,
            _state(r, self._now),
            expires,
            _shown(r.data.origin),
            _shown(permissions or "-"),
        )


def _shown(text: str) -> str:
    """`text` for a terminal: control characters (from records others wrote) escaped, so a
    record can never retitle, clear or answer back on the operator's terminal."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


class _JsonArray:
    """Records as one JSON array, written an object at a time (as `json.dump` would, indent 2)."""

    def __init__(self, now: int) -> None:
        self._now = now
        self._started = False

    def add(self, record: SessionRecord) -> None:
        text = json.dumps(_as_json(record, self._now), indent=2, ensure_ascii=False)
        sys.stdout.write(("[\n" if not self._started else ",\n") + textwrap.indent(text, "  "))
        self._started = True

    def flush(self) -> None:
        sys.stdout.write("\n]\n" if self._started else "[]\n")


class _JsonLines:
    """Records as JSON lines: one object per line, the objects of `--json`."""

    def __init__(self, now: int) -> None:
        self._now = now

    def add(self, record: SessionRecord) -> None:
        print(json.dumps(_as_json(record, self._now), ensure_ascii=False))

    def flush(self) -> None:
        pass


async def _list(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    if args.sort is not None and args.limit is None:
        msg = "error: --sort needs --limit N: it keeps only N records in memory"
        raise CommandFailed(msg, EXIT_USAGE)
    now = now_ms(time.time)
    out = (_JsonLines if args.jsonl else _JsonArray if args.json else _Table)(now)
    count = 0
    # The records are the progress when they go to the terminal; else a line counts them.
    with _Progress("reading records", show=not _stdout_is_terminal()) as progress:
        async with contextlib.aclosing(_listed(store, args, progress)) as records:
            async for record in records:
                out.add(record)
                count += 1
    out.flush()
    if isinstance(out, _Table):
        print(_summary(count, args, url))
    return EXIT_OK


def _summary(count: int, args: argparse.Namespace, url: str) -> str:
    """The table's last line: how many records, of which origin, in which store."""
    origin = "" if args.origin is None else f" of origin {args.origin}"
    limit = " (the --limit)" if count == args.limit else ""
    return f"{count} record(s){origin} in {url}{limit}"


async def _show(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    record = await _named(store, args.session_id)
    if record is None:
        raise CommandFailed(f"no session with id {args.session_id!r} in {url}", EXIT_NOT_FOUND)
    _print_json(_as_json(record, now_ms(time.time)))
    return EXIT_OK


async def _delete(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    if await _named(store, args.session_id) is None:
        raise CommandFailed(f"no session with id {args.session_id!r} in {url}", EXIT_NOT_FOUND)
    await store.delete(args.session_id)
    print(f"deleted session {args.session_id!r}")
    return EXIT_OK


async def _clean(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    removed = await _waiting("removing expired sessions", store.clean_expired)
    print(f"removed {removed} expired session(s)")
    return EXIT_OK


async def _clear(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    count = 0
    with _Progress("counting records") as progress:
        async with contextlib.aclosing(_stream(store, progress)) as records:
            async for _record in records:
                count += 1
    if not args.yes:
        question = f"Remove all {count} record(s) of the store at {url}? [y/N] "
        answer = await anyio.to_thread.run_sync(_ask, question)
        if answer.strip().lower() not in ("y", "yes"):
            raise CommandFailed("aborted: nothing was removed", EXIT_NOT_FOUND)
    await _waiting("removing every record", store.clear)
    print(f"removed {count} record(s)")
    return EXIT_OK


def _ask(question: str) -> str:
    print(question, end="", flush=True, file=sys.stderr)
    try:
        return input()
    except EOFError:
        print(file=sys.stderr)
        return ""


class _Tally:
    """What `stats` reports, added up one record at a time: memory holds no record."""

    def __init__(self, now: int) -> None:
        self.now = now
        self.records = self.live = self.expired = self.unreadable = self.never = 0
        self.soonest: int | None = None
        self.latest: int | None = None
        self.origins: Counter[str] = Counter()

    def add(self, record: SessionRecord) -> None:
        self.records += 1
        state = _state(record, self.now)
        if state == "unreadable":
            self.unreadable += 1
        elif state == "expired":
            self.expired += 1
        else:
            self.live += 1
            self._count_live(record)

    def _count_live(self, record: SessionRecord) -> None:
        assert record.data is not None  # a live record was read
        self.origins[record.data.origin] += 1
        expires = record.expires_at
        if expires is None:
            self.never += 1
            return
        self.soonest = expires if self.soonest is None else min(self.soonest, expires)
        self.latest = expires if self.latest is None else max(self.latest, expires)

    def as_json(self, url: str) -> dict[str, Any]:
        return {
            "store": url,
            "sessions": self.live,
            "expired": self.expired,
            "unreadable": self.unreadable,
            "neverExpire": self.never,
            "soonestExpiry": _when(self.soonest),
            "latestExpiry": _when(self.latest),
            "origins": dict(self.origins.most_common()),
        }


async def _stats(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    tally = _Tally(now_ms(time.time))
    with _Progress("counting records") as progress:
        async with contextlib.aclosing(_stream(store, progress)) as records:
            async for record in records:
                tally.add(record)
    stats = tally.as_json(url)
    if args.json:
        _print_json(stats)
    elif tally.records == 0:
        print(f"no sessions in {url}")
    else:
        _print_stats(stats)
    return EXIT_OK


def _print_stats(stats: dict[str, Any]) -> None:
    labels = {
        "neverExpire": "never expire",
        "soonestExpiry": "soonest expiry",
        "latestExpiry": "latest expiry",
    }
    for key in ("store", "sessions", "expired", "unreadable", "neverExpire"):
        print(f"{labels.get(key, key) + ':':16}{stats[key]}")
    for key in ("soonestExpiry", "latestExpiry"):
        print(f"{labels[key] + ':':16}{stats[key] or '-'}")
    origins: dict[str, int] = stats["origins"]
    print("origins:" + ("" if origins else "         -"))
    for origin, count in origins.items():
        print(f"  {count:6}  {_shown(origin)}")


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
