"""The SQLite file itself: its table, created owner-only, in WAL mode, and which file it is."""

from __future__ import annotations

import contextlib
import os
import pathlib
import sqlite3
import threading
import time
from typing import Final, Literal

from ..._core.deadline import Deadline
from ..._core.errors import InvalidConfigError
from .transactions import fetch_all, is_busy, transaction

__all__ = (
    "CREATED_AT",
    "DURABILITY",
    "MIN_SQLITE",
    "SCHEMA",
    "TABLE",
    "TRUSTED",
    "Durability",
    "Identity",
    "check_durability",
    "create_private",
    "ensure_schema",
    "enter_wal",
    "identity_of",
    "open_existing",
    "stamp",
)

TABLE = "walletmesh_storage"
# The record's expiresAt as the codec reads it (0 or absent: none), NULL for anything else.
# A BLOB value is read as the text it holds, as the codec reads it.
EXPIRES_AT = (
    "CASE WHEN json_valid(CAST(value AS TEXT))"
    " AND json_type(CAST(value AS TEXT), '$.expiresAt') IN ('integer', 'real')"
    " THEN NULLIF(json_extract(CAST(value AS TEXT), '$.expiresAt'), 0) END"
)
CREATED_AT = "json_extract(CAST(value AS TEXT), '$.data.createdAt')"
# Who wrote a row's value. Each write of the store stamps it ``written = nonce || key`` (a
# fresh nonce: 16 hex digits); the trigger clears the stamp when a value is written without a
# new one (other programs, older releases, hand edits). A row whose stamp names its own key
# holds a record the store encoded itself: readable by construction, no decode needed.
TRUSTED = "substr(written, 17) = key"
_UNTRUST = (
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_untrust AFTER UPDATE OF value ON {TABLE}"
    " WHEN NEW.written IS NOT NULL AND NEW.written IS OLD.written"
    f" BEGIN UPDATE {TABLE} SET written = NULL WHERE key = NEW.key; END"
)
_CREATE_TABLE = (
    "CREATE TABLE {name} (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL,"
    f" expires_at INTEGER GENERATED ALWAYS AS ({EXPIRES_AT}) VIRTUAL, written TEXT)"
    " WITHOUT ROWID"
)
SCHEMA = (
    _CREATE_TABLE.format(name=f"IF NOT EXISTS {TABLE}"),
    f"CREATE INDEX IF NOT EXISTS {TABLE}_expiry ON {TABLE} (expires_at)"
    " WHERE expires_at IS NOT NULL",
    _UNTRUST,
)
"""The statements that create the table. Other programs write ``(key, value)`` only: their
rows are untrusted (``written`` NULL) and decoded before `clean_expired` removes them."""


def stamp(key: str) -> str:
    """The SQL of a fresh stamp for the row whose key is the SQL expression `key`."""
    return f"hex(randomblob(8)) || {key}"


# Generated columns need SQLite 3.31.
MIN_SQLITE = (3, 31, 0)
# New files are the service user's only: they hold every live session id in clear.
FILE_MODE = 0o600

Durability = Literal["process", "power"]
DURABILITY: Final[dict[str, str]] = {"process": "NORMAL", "power": "FULL"}
"""Each durability level and the ``PRAGMA synchronous`` it sets (the file is always in WAL)."""

# (st_dev, st_ino): which file a path named when it was opened.
Identity = tuple[int, int]
# Held while a store creates a missing file (see create_private).
_CREATING = threading.Lock()


def check_durability(durability: object) -> Durability:
    """Return `durability` if it is "process" or "power", else raise `InvalidConfigError`."""
    if isinstance(durability, str) and durability in ("process", "power"):
        return "process" if durability == "process" else "power"
    msg = f'durability must be "process" or "power", got {durability!r}'
    raise InvalidConfigError(msg)


def open_existing(path: str) -> sqlite3.Connection:
    """A connection to the database file at `path`, which must exist: SQLite raises
    rather than create a new file (with the process's default permissions, not 0600)."""
    uri = pathlib.Path(os.path.abspath(path)).as_uri() + "?mode=rw"
    return sqlite3.connect(uri, uri=True, timeout=0)


def identity_of(path: str) -> Identity | None:
    """The identity of the file at `path` now, or `None` if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def create_private(path: str) -> Identity:
    """Create `path` owner-only if missing (an existing file keeps its mode); its identity.

    An existing file is never opened: closing a descriptor drops every POSIX lock this process
    holds on the file, other connections' included, and another process could then delete the
    WAL under our feet. `_CREATING` keeps our stores off a new file until its descriptor closes.
    """
    with _CREATING:
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(path)
            return st.st_dev, st.st_ino
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return st.st_dev, st.st_ino


def enter_wal(conn: sqlite3.Connection, deadline: Deadline) -> None:
    """Put the file in WAL mode, retrying within `deadline` while another connection's lock
    makes SQLite answer "busy" (at once here: no busy handler runs)."""
    pause = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or deadline.remaining() <= 0:
                raise
        time.sleep(min(pause, deadline.remaining()))
        pause = min(pause * 2, 0.05)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the table, or migrate an older one (a plain expires_at column: every row copied
    as stored; no written column: added, every row untrusted), in one write transaction: two
    processes opening an old file migrate it once."""
    with transaction(conn):
        hidden = {row[1]: row[6] for row in fetch_all(conn, f"PRAGMA table_xinfo({TABLE})", ())}
        if hidden.get("expires_at") == 0:  # 0: an ordinary column, written by older releases
            old = f"{TABLE}_before_generated_expiry"
            conn.execute(f"ALTER TABLE {TABLE} RENAME TO {old}")
            conn.execute(f"DROP INDEX IF EXISTS {TABLE}_expiry")
            conn.execute(_CREATE_TABLE.format(name=TABLE))
            conn.execute(f"INSERT INTO {TABLE} (key, value) SELECT key, value FROM {old}")
            conn.execute(f"DROP TABLE {old}")
        elif hidden and "written" not in hidden:
            conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN written TEXT")
        for statement in SCHEMA:
            conn.execute(statement)
