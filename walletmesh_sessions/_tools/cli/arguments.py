"""The command line's words: its name, exit codes, options and the parser that reads them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import NoReturn

__all__ = (
    "DEBUG_VARIABLE",
    "DEFAULT_URL",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_STORE",
    "EXIT_USAGE",
    "PROG",
    "URL_VARIABLE",
    "CommandFailed",
    "build_parser",
    "with_dash_hint",
)

PROG = "walletmesh-sessions"
URL_VARIABLE = "WALLETMESH_SESSIONS_URL"
DEBUG_VARIABLE = "WALLETMESH_SESSIONS_DEBUG"
DEFAULT_URL = "sqlite:///sessions.db"
EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_STORE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EPILOG = (
    "exit status: 0 ok, 1 not found or aborted, 2 usage error (including a bad --store URL), "
    f"3 store error, 130 interrupted. Set {DEBUG_VARIABLE}=1 to see tracebacks."
)
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


class CommandFailed(Exception):
    """A user-facing failure: printed in one line on stderr, with an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line and exit 2, never usage text."""

    def error(self, message: str) -> NoReturn:
        raise CommandFailed(f"error: {message} (see {self.prog} --help)", EXIT_USAGE)


def with_dash_hint(message: str, argv: Sequence[str]) -> str:
    """`message`, told how to pass an id that starts with '-' when that is the likely mistake."""
    command = next((a for a in argv if a in ("show", "delete")), None)
    dashed = [a for a in argv if a.startswith("-") and a.split("=")[0] not in OPTIONS]
    if command is None or not dashed or "--" in argv or "required: ID" not in message:
        return message
    return f"{message}; use -- before an id that starts with '-': {PROG} {command} -- {dashed[0]}"


def _version() -> str:
    try:
        return version("walletmesh-sessions")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
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
