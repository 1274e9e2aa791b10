"""`LocalStorageSessionStore`: the TypeScript package's localStorage store, for Python."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

import anyio.to_thread

from .._core import validation
from .._core.data import SessionData, SessionRecord, SessionStoreConfig
from .._core.deadline import DEFAULT_TIMEOUT, Deadline, check_timeout, run_within
from .._core.errors import InvalidConfigError, StoreClosedError
from .._core.expiry import Clock
from .._core.ids import new_session_id
from .._core.lifecycle import check_change
from .._core.protocol import DEFERRED, Backend, Deferred
from .._core.session_map import SessionMap
from .mapping_backend import MappingBackend
from .sqlite import Durability, SqliteBackend, check_durability

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ("LocalStorageSessionStore",)

T = TypeVar("T")
U = TypeVar("U")
P = ParamSpec("P")
Storage = str | os.PathLike[str] | MutableMapping[str, str]


# Seconds past a call's deadline its worker thread has to report which wait ran out.
THREAD_GRACE = 0.25


class LocalStorageSessionStore:
    """Sessions as JSON strings under ``prefix + session_id``, as `@walletmesh/router` keeps them.

    `storage` is a filesystem path (a SQLite file, created if missing; durable and safe for
    several processes at once) or any `MutableMapping[str, str]`. Only keys starting with
    `prefix` belong to the store. Close a file-backed store with `aclose()` or ``async with``.

    `timeout` (seconds) bounds each call from when it is made, every wait included; running
    out raises `StoreUnavailableError`. `durability` (SQLite files only) is what a write
    survives once the call returns: "process" (a crash; commits are not synced to disk) or
    "power" (power loss too; every commit is synced).
    """

    def __init__(
        self,
        storage: Storage,
        config: SessionStoreConfig | None = None,
        *,
        prefix: str = "wm_session_",
        clock: Clock = time.time,
        timeout: float = DEFAULT_TIMEOUT,
        durability: Durability = "process",
    ) -> None:
        config = validation.check_config(config)
        durability = check_durability(durability)
        prefix = validation.check_prefix(prefix)
        clock = validation.check_clock(clock)
        self._timeout = check_timeout(timeout)
        self._config = config
        self._prefix = prefix
        self._sqlite: SqliteBackend | None = None
        self._backend: Backend
        self._closed = False
        if isinstance(storage, (str, os.PathLike)):
            path: object = os.fspath(storage)
            if not isinstance(path, str) or not path:
                msg = f"storage path must be a non-empty str path, got {storage!r}"
                raise InvalidConfigError(msg)
            if "\x00" in path:  # no file system takes one: refused now, not at the first call
                msg = f"storage path must not hold a NUL character, got {storage!r}"
                raise InvalidConfigError(msg)
            self._sqlite = self._backend = SqliteBackend(
                path, prefix, config, clock, self._timeout, durability
            )
            self._description = f"sqlite file {path!r}"
        elif isinstance(storage, MutableMapping):
            if durability != "process":
                msg = f"durability={durability!r} applies to SQLite files only, not to a mapping"
                raise InvalidConfigError(msg)
            self._backend = MappingBackend(storage, prefix, config, clock)
            self._description = f"{type(storage).__name__} mapping"
        else:
            msg = (
                f"storage must be a filesystem path or a MutableMapping[str, str], got {storage!r}"
            )
            raise InvalidConfigError(msg)

    @property
    def config(self) -> SessionStoreConfig:
        """The store's lifetime and refresh settings."""
        return self._config

    @property
    def timeout(self) -> float:
        """Seconds a call may take to get its turn on the storage before it fails."""
        return self._timeout

    @property
    def path(self) -> str | None:
        """The SQLite file's path, or `None` when the store is over a mapping."""
        return None if self._sqlite is None else self._sqlite.connections.path

    @property
    def durability(self) -> Durability | None:
        """What an acknowledged write survives on a SQLite file; `None` over a mapping."""
        return None if self._sqlite is None else self._sqlite.connections.durability

    @property
    def prefix(self) -> str:
        """The key prefix that marks this store's records."""
        return self._prefix

    def __repr__(self) -> str:
        return f"LocalStorageSessionStore({self._description}, prefix={self._prefix!r})"

    async def _call(
        self,
        operation: Callable[Concatenate[bool, P], T | Deferred],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Try `operation` now on this thread; if it must wait, run it in a worker thread, all
        within the call's deadline, which starts here (the try never waits: it is part of the
        call's first microseconds, not of its timeout)."""
        if self._closed:
            msg = f"{self!r} is closed"
            raise StoreClosedError(msg)
        now = operation(False, *args, **kwargs)
        if now is not DEFERRED:
            return now
        deadline = Deadline(self._timeout)
        waiting = functools.partial(operation, True, *args, **kwargs)
        later: T | Deferred = DEFERRED
        try:
            # The thread bounds its own waits by the deadline and names the one that ran out;
            # only a thread stuck past that is given up on here. Cancelled or late, the call
            # returns at once: its thread, left to itself, writes nothing (`Deadline.cancel`).
            with anyio.move_on_after(deadline.remaining() + THREAD_GRACE):
                later = await anyio.to_thread.run_sync(
                    run_within, deadline, waiting, abandon_on_cancel=True
                )
        finally:
            if later is DEFERRED:
                deadline.cancel()
        if later is DEFERRED:
            raise deadline.exceeded(repr(self), "a worker thread")
        return later

    async def set(self, session_id: str, data: SessionData) -> None:
        """Store `data` under `session_id`; its expiry becomes now + lifetime, or none."""
        session_id = validation.check_session_id(session_id)
        data = validation.check_session_data(data)
        await self._call(self._backend.set, session_id, data)

    async def create(self, session_id: str, data: SessionData) -> bool:
        """Store `data` only if no unexpired session holds `session_id`; `True` if stored."""
        session_id = validation.check_session_id(session_id)
        data = validation.check_session_data(data)
        return await self._call(self._backend.create, session_id, data)

    async def update(
        self, session_id: str, change: Callable[[SessionData], SessionData]
    ) -> SessionData | None:
        """Replace an unexpired session's data with ``change(current)``; `None` if none.

        On a SQLite file the write lock is held from the read to the write, so `change` runs
        once and no concurrent write is lost; keep it quick.
        """
        session_id = validation.check_session_id(session_id)
        change = check_change(change)
        return await self._call(self._backend.update, session_id, change)

    async def rotate(self, session_id: str, new_id: str | None = None) -> str | None:
        """Move an unexpired session to `new_id` (default: a fresh id), in one transaction.

        `None` if missing or expired; `SessionIdTakenError` if a live session holds `new_id`.
        """
        session_id = validation.check_session_id(session_id)
        new_id = new_session_id() if new_id is None else validation.check_session_id(new_id)
        return await self._call(self._backend.rotate, session_id, new_id)

    async def validate_and_refresh(self, session_id: str) -> SessionData | None:
        """The session if present and not expired (an expired one is removed), else `None`.

        Raises `CorruptRecordError` if the stored record under this id is not readable.
        """
        session_id = validation.check_session_id(session_id)
        return await self._call(self._backend.get, session_id)

    get = validate_and_refresh

    async def get_all(self) -> Mapping[str, SessionData]:
        """Every unexpired session, keyed by session id; unreadable records are skipped."""
        return await self._call(self._backend.get_all)

    async def delete(self, session_id: str) -> None:
        """Remove the session; a missing one is not an error."""
        session_id = validation.check_session_id(session_id)
        await self._call(self._backend.delete, session_id)

    async def clear(self) -> None:
        """Remove every key under the prefix, unreadable records included; nothing else."""
        await self._call(self._backend.clear)

    async def clean_expired(self) -> int:
        """Remove every expired session and return how many this call removed."""
        return await self._call(self._backend.clean_expired)

    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]:
        """Every record under the prefix (or the one named), expired and unreadable ones
        included; nothing is refreshed or removed."""
        if session_id is not None:
            session_id = validation.check_session_id(session_id)
        return await self._call(self._backend.inspect, session_id)

    async def aclose(self) -> None:
        """Release the file; later calls raise `StoreClosedError`. Closing twice is fine."""
        self._closed = True
        await anyio.to_thread.run_sync(self._backend.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def iter_sessions(self, batch_size: int = 500) -> AsyncIterator[tuple[str, SessionData]]:
        """Each live session as ``(session_id, data)``, read `batch_size` records at a time.

        On a SQLite file each batch is one query in key order after the last key read; over a
        mapping, the keys under the prefix are listed once and read a batch at a time.
        """
        return self._pages(self._backend.page, batch_size, SessionMap.items)

    def iter_records(self, batch_size: int = 500) -> AsyncIterator[SessionRecord]:
        """Every record under the prefix as `inspect` shows it, paged as `iter_sessions` is."""
        return self._pages(self._backend.inspect_page, batch_size, iter)

    async def _pages(
        self,
        page: Callable[[bool, object, int], tuple[T, object] | Deferred],
        batch_size: int,
        items: Callable[[T], Iterable[U]],
    ) -> AsyncIterator[U]:
        """The `items` of each page `page` returns, one call each, until its cursor is `None`."""
        batch_size = validation.check_batch_size(batch_size)
        cursor: object = None
        while True:
            found, cursor = await self._call(page, cursor, batch_size)
            for item in items(found):
                yield item
            if cursor is None:
                return
