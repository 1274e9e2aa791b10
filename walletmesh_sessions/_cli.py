"""The `walletmesh-sessions` command: look inside a store, remove sessions, clean expired ones."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn, TextIO
from urllib.parse import quote

import anyio

from ._codec import session_to_json
from ._data import SessionRecord
from ._errors import InvalidConfigError, InvalidSessionIdError, SessionStoreError
from ._expiry import now_ms
from ._localstorage import LocalStorageSessionStore
from ._protocol import ClosableSessionStore, Inspectable
from ._secrets import NOTICE, redact, redact_message
from ._urls import CONNINFO_HINT, is_conninfo, open_store

__all__ = ("main", "main_entry")

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
OPTIONS = frozenset({"-h", "--help", "--version", "--store", "--json", "--yes"})


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
    return store


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

    listing = command("list", "list every record: live, expired and unreadable")
    listing.add_argument("--json", action="store_true", help="print JSON for machines")
    show = command("show", "print one session as JSON (an id starting with '-': show -- ID)")
    show.add_argument("session_id", metavar="ID")
    delete = command("delete", "remove one session (an id starting with '-': delete -- ID)")
    delete.add_argument("session_id", metavar="ID")
    command("clean", "remove expired sessions and print how many were removed")
    clear = command("clear", "remove every record of the store (asks first)")
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    stats = command("stats", "counts, expiry range and sessions per origin")
    stats.add_argument("--json", action="store_true", help="print JSON for machines")
    return parser


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


async def _records(
    store: ClosableSessionStore, session_id: str | None = None
) -> list[SessionRecord]:
    if not isinstance(store, Inspectable):
        raise CommandFailed(f"error: {type(store).__name__} cannot list its records", EXIT_STORE)
    records = await store.inspect(session_id)
    return sorted(records, key=lambda r: r.session_id)


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


def _print_json(value: object, out: TextIO = sys.stdout) -> None:
    json.dump(value, out, indent=2, ensure_ascii=False)
    out.write("\n")


async def _list(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    now = now_ms(time.time)
    records = await _records(store)
    if args.json:
        _print_json([_as_json(r, now) for r in records])
        return EXIT_OK
    rows = [("SESSION ID", "STATE", "EXPIRES (UTC)", "ORIGIN", "PERMISSIONS")]
    for r in records:
        if r.data is None:
            rows.append((r.session_id, "unreadable", "-", "-", r.error or ""))
            continue
        permissions = " ".join(f"{chain}({len(m)})" for chain, m in r.data.permissions.items())
        expires = _when(r.expires_at) or "never"
        rows.append((r.session_id, _state(r, now), expires, r.data.origin, permissions or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
            + "  "
            + row[4]
        )
    print(f"{len(records)} record(s) in {url}")
    return EXIT_OK


async def _show(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    records = await _records(store, args.session_id)
    if not records:
        raise CommandFailed(f"no session with id {args.session_id!r} in {url}", EXIT_NOT_FOUND)
    _print_json(_as_json(records[0], now_ms(time.time)))
    return EXIT_OK


async def _delete(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    if not await _records(store, args.session_id):
        raise CommandFailed(f"no session with id {args.session_id!r} in {url}", EXIT_NOT_FOUND)
    await store.delete(args.session_id)
    print(f"deleted session {args.session_id!r}")
    return EXIT_OK


async def _clean(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    print(await store.clean_expired())
    return EXIT_OK


async def _clear(store: ClosableSessionStore, args: argparse.Namespace, url: str) -> int:
    count = len(await _records(store))
    if not args.yes:
        question = f"Remove all {count} record(s) of the store at {url}? [y/N] "
        answer = await anyio.to_thread.run_sync(_ask, question)
        if answer.strip().lower() not in ("y", "yes"):
            raise CommandFailed("aborted: nothing was removed", EXIT_NOT_FOUND)
    await store.clear()
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
    now = now_ms(time.time)
    records = await _records(store)
    live = [r for r in records if _state(r, now) == "live"]
    expiries = [r.expires_at for r in live if r.expires_at is not None]
    origins = Counter(r.data.origin for r in live if r.data is not None)
    stats: dict[str, Any] = {
        "store": url,
        "sessions": len(live),
        "expired": sum(_state(r, now) == "expired" for r in records),
        "unreadable": sum(r.data is None for r in records),
        "neverExpire": sum(r.expires_at is None for r in live),
        "soonestExpiry": _when(min(expiries, default=None)),
        "latestExpiry": _when(max(expiries, default=None)),
        "origins": dict(origins.most_common()),
    }
    if args.json:
        _print_json(stats)
        return EXIT_OK
    labels = {
        "neverExpire": "never expire",
        "soonestExpiry": "soonest expiry",
        "latestExpiry": "latest expiry",
    }
    for key in ("store", "sessions", "expired", "unreadable", "neverExpire"):
        print(f"{labels.get(key, key) + ':':16}{stats[key]}")
    for key in ("soonestExpiry", "latestExpiry"):
        print(f"{labels[key] + ':':16}{stats[key] or '-'}")
    print("origins:" + ("" if origins else "         -"))
    for origin, count in origins.most_common():
        print(f"  {count:6}  {origin}")
    return EXIT_OK


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
