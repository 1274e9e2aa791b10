"""`main`: the command line from arguments to exit status, every failure in one line."""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Sequence
from urllib.parse import quote

import anyio

from ..._core.errors import InvalidConfigError, InvalidSessionIdError, SessionStoreError
from ..._core.masking import NOTICE, redact, redact_message
from ..._core.protocol import ClosableSessionStore
from ..._local.localstorage import LocalStorageSessionStore
from ..open_store import CONNINFO_HINT, is_conninfo, open_store
from .arguments import (
    DEBUG_VARIABLE,
    DEFAULT_URL,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_STORE,
    EXIT_USAGE,
    PROG,
    URL_VARIABLE,
    CommandFailed,
    build_parser,
    with_dash_hint,
)
from .commands import run_command

__all__ = ("main", "main_entry")

SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; its exit status. Every failure is one line on stderr."""
    argv = sys.argv[1:] if argv is None else list(argv)
    url = ""
    if sys.stdout is None:  # started with its output closed (`>&-`): as `>/dev/null`
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (for the process)
    try:
        try:
            args = build_parser().parse_args(argv)
        except CommandFailed as exc:
            raise CommandFailed(with_dash_hint(str(exc), argv), exc.code) from None
        except SystemExit as exc:  # --help and --version
            sys.stdout.flush()
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        url = _store_url(getattr(args, "store", None) or os.environ.get(URL_VARIABLE))
        store = _open(url)
        code = anyio.run(run_command, args, store, redact(url))
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
    from ..._postgres.store import PostgresSessionStore

    if isinstance(store, PostgresSessionStore):
        store._existing_table_only()


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
