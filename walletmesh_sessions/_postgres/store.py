"""`PostgresSessionStore`: sessions in a PostgreSQL table, shared by every process using it."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import psycopg_pool

from .._core import validation
from .._core.data import SessionData, SessionRecord, SessionStoreConfig
from .._core.deadline import Deadline, check_timeout
from .._core.decode_cache import DecodeCache
from .._core.errors import StoreClosedError, StoreUnavailableError
from .._core.expiry import Clock, slides_on_read
from .._core.ids import new_session_id
from .._core.lifecycle import check_change
from . import bulk, changes, ops
from .providers import CallerProvider, Provider, UrlProvider, on_asyncio, open_source
from .runners import run_async, run_in_thread
from .sources import AsyncConnectionSource, AsyncPoolSource
from .sql import DEFAULT_TABLE, Statements, check_table
from .steps import Op, Plan, Spec
from .target import DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, UrlTarget, parse_url

__all__ = ("PostgresSessionStore",)

_S = TypeVar("_S", bound="PostgresSessionStore")


class PostgresSessionStore:
    """Sessions in a PostgreSQL table, as the TypeScript wire format, one row per session.

    Satisfies `SessionStore`, `LifecycleSessionStore`, `IterableSessionStore`,
    `ClosableSessionStore` and `Inspectable`. The table (``table``, default
    ``walletmesh_sessions``; ``schema.table`` works too) holds ``id bytea`` (the session id's
    UTF-8 bytes), ``value text`` (the record, byte for byte) and ``expires_at``, a column
    PostgreSQL computes from the record, indexed. It is created on first use, or by
    `create_schema`. Every table is one store's: several stores share a database through
    several tables.

    Works on asyncio (psycopg's `AsyncConnectionPool`) and on trio (the synchronous pool in
    worker threads). Refresh, removal of expired sessions, `create`, `update` and `rotate` are
    compare-and-set statements or one transaction with the row locked, so they never undo a
    concurrent write or bring back a deleted session, across processes.

    Build it with `from_url` (the store owns and closes its pools) or from a pool or
    connection you keep (never closed by the store): a `psycopg_pool.AsyncConnectionPool` or
    `psycopg.AsyncConnection` (asyncio only), or a `psycopg_pool.ConnectionPool` or
    `psycopg.Connection` (asyncio and trio, in worker threads). `timeout` (seconds) bounds
    every call, measured from when it is made: waiting for a connection, each statement and
    any retry; running out raises `StoreUnavailableError`. (`from_url` passes the
    `UrlTarget` it parsed the URL into.)
    """

    def __init__(
        self,
        connection: (
            psycopg_pool.AsyncConnectionPool[Any]
            | psycopg_pool.ConnectionPool[Any]
            | psycopg.AsyncConnection[Any]
            | psycopg.Connection[Any]
            | UrlTarget
        ),
        config: SessionStoreConfig | None = None,
        *,
        table: str = DEFAULT_TABLE,
        clock: Clock = time.time,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._sources: Provider = (
            UrlProvider(connection)
            if isinstance(connection, UrlTarget)
            else CallerProvider(connection)
        )
        self._statements = Statements(check_table(table))
        self._what = f"PostgreSQL session store {self._statements.table_name!r}"
        self._cache = DecodeCache()
        self._spec = Spec(
            self._statements,
            validation.check_config(config),
            validation.check_clock(clock),
            self._cache.decode,
        )
        self._timeout = check_timeout(timeout)
        config = self._spec.config
        # With an absolute timeout the new expiry depends on the record's createdAt: read first.
        self._slides_in_one = slides_on_read(config) and config.max_lifetime_ms is None
        self._schema_ready = False
        self._creates_table = True
        self._closed = False

    @classmethod
    def from_url(
        cls: type[_S],
        url: str,
        config: SessionStoreConfig | None = None,
        *,
        table: str = DEFAULT_TABLE,
        clock: Clock = time.time,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        **connect_options: Any,
    ) -> _S:
        """A store on ``postgresql://user:password@host:port/dbname?...``, connected on first use.

        The URL's query may give ``table``, ``timeout`` and ``max_connections`` (they win over
        the arguments); every other parameter is libpq's (``sslmode``, ``application_name``,
        ...) and is checked here: an unknown one raises `InvalidConfigError`, as does a bad
        value. `connect_options` go to `psycopg.connect` as they are. Unless given, each
        connection gets ``connect_timeout`` and a ``statement_timeout`` of `timeout`. At most
        `max_connections` connections are open at once, per event loop.
        """
        target = parse_url(
            url,
            table=table,
            timeout=timeout,
            max_connections=max_connections,
            connect_options=connect_options,
        )
        return cls(target, config, table=target.table, clock=clock, timeout=target.timeout)

    @property
    def config(self) -> SessionStoreConfig:
        """The store's lifetime and refresh settings."""
        return self._spec.config

    @property
    def table(self) -> str:
        """The table that holds this store's sessions (``schema.table`` when qualified)."""
        return self._statements.table_name

    @property
    def timeout(self) -> float:
        """Seconds each call may take, waiting for a connection included."""
        return self._timeout

    def __repr__(self) -> str:
        return (
            f"PostgresSessionStore({self._sources.describe()!r}, table={self.table!r},"
            f" config={self._spec.config!r})"
        )

    # -- running ---------------------------------------------------------------------------

    async def _run(self, plan: Plan) -> Any:
        if self._closed:
            msg = f"{self!r} is closed"
            raise StoreClosedError(msg)
        deadline = Deadline(self._timeout)
        if not self._schema_ready:
            await self._drive(self._schema_plan(), deadline)
            self._schema_ready = True
        try:
            if on_asyncio():  # the hot path, inline: one coroutine less per call
                source = self._sources.asyncio_source()
                if source.ready and isinstance(source, (AsyncPoolSource, AsyncConnectionSource)):
                    return await run_async(source, plan, deadline, self._what, self._sources.url)
            return await self._drive(plan, deadline)
        except StoreUnavailableError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
                self._schema_ready = False  # dropped under us: made again on the next call
            raise

    def _schema_plan(self) -> Plan:
        """What the first call does: create the table if missing, or only check it."""
        if self._creates_table:
            return Plan("create_schema", lambda: ops.ensure_schema(self._spec))
        where = self._sources.describe()
        return Plan("check_table", lambda: ops.ensure_schema(self._spec, where))

    def _existing_table_only(self) -> None:
        """Never create the table on first use, only check it: for tools that only look or
        remove (the command line), where a mistyped table must be an error, not a new table.
        """
        self._creates_table = False

    def _read_plan(self, session_id: str) -> Plan:
        session_id = validation.check_session_id(session_id)
        read = ops.read_and_slide if self._slides_in_one else ops.read
        return Plan("get", lambda: read(self._spec, session_id))

    async def _drive(self, plan: Plan, deadline: Deadline) -> Any:
        what, url = self._what, self._sources.url
        if on_asyncio():
            source = self._sources.asyncio_source()
            if not source.ready:
                await open_source(source)
            if isinstance(source, (AsyncPoolSource, AsyncConnectionSource)):
                return await run_async(source, plan, deadline, what, url)
        else:
            source = self._sources.trio_source()
            if not source.ready:
                await open_source(source)
        limiter = self._sources.limiter()
        return await run_in_thread(source, plan, deadline, what, url, limiter)

    # -- the methods -----------------------------------------------------------------------

    async def create_schema(self) -> None:
        """Create the table and its index now if they are missing (else check the table).

        Safe to run from several processes at once. Raises `InvalidConfigError` if the table
        exists with another shape.
        """
        self._schema_ready = False
        self._creates_table = True  # asked for: also on a store that only checked its table
        await self._run(Plan("create_schema", lambda: ops.ensure_schema(self._spec)))

    async def set(self, session_id: str, data: SessionData) -> None:
        """Store `data` under `session_id`: one INSERT ... ON CONFLICT DO UPDATE."""
        session_id = validation.check_session_id(session_id)
        data = validation.check_session_data(data)
        await self._run(Plan("set", lambda: ops.write(self._spec, session_id, data)))

    async def get(self, session_id: str) -> SessionData | None:
        """Same as `validate_and_refresh`."""
        result: SessionData | None = await self._run(self._read_plan(session_id))
        return result

    async def validate_and_refresh(self, session_id: str) -> SessionData | None:
        """The session if present and not expired (an expired one is removed), else `None`.

        One statement: a SELECT, or on a store that slides (without `max_lifetime`) one that
        reads and rewrites the expiresAt digits of a live record, compare-and-set. Removing an
        expired record is one more statement, compare-and-set on the text read. Raises
        `CorruptRecordError` if the stored record is not readable.
        """
        result: SessionData | None = await self._run(self._read_plan(session_id))
        return result

    async def create(self, session_id: str, data: SessionData) -> bool:
        """Store `data` only if no unexpired session holds `session_id`; `True` if stored.

        One INSERT ... ON CONFLICT DO NOTHING; when the id is taken, one transaction with the
        row locked replaces it if it has expired. Of concurrent creators exactly one wins.
        Raises `CorruptRecordError` if the id holds an unreadable record. After a lost
        connection it is tried again, and knows its own record if its insert did commit
        (see "Connection loss" in the PostgreSQL docs).
        """
        session_id = validation.check_session_id(session_id)
        data = validation.check_session_data(data)
        plan = Plan.recognising(
            "create", lambda attempts: changes.create(self._spec, session_id, data, attempts)
        )
        result: bool = await self._run(plan)
        return result

    async def update(
        self, session_id: str, change: Callable[[SessionData], SessionData]
    ) -> SessionData | None:
        """Replace an unexpired session's data with ``change(current)``; the new data, or `None`.

        One transaction holds the row locked from the read to the write, so `change` runs
        once and no concurrent write is lost; keep it quick (on trio it runs in a worker
        thread). The expiry changes as after a read. After a connection lost at the commit,
        the retry finds what it wrote (done) or what it read (it writes its result), without
        calling `change` again; otherwise it raises `StoreUnavailableError`.
        """
        session_id = validation.check_session_id(session_id)
        change = check_change(change)
        plan = Plan.recognising(
            "update", lambda attempts: changes.update(self._spec, session_id, change, attempts)
        )
        result: SessionData | None = await self._run(plan)
        return result

    async def rotate(self, session_id: str, new_id: str | None = None) -> str | None:
        """Move an unexpired session to `new_id` (default: `new_session_id()`); return it.

        One transaction with both rows locked: afterwards only the new id works, with no
        moment where neither does. `None` if the session is missing or expired; a `new_id`
        held by an unexpired session raises `SessionIdTakenError`, and nothing changes.
        After a connection lost at the commit, the retry knows whether it took effect, or
        raises `StoreUnavailableError`.
        """
        session_id = validation.check_session_id(session_id)
        target = new_session_id() if new_id is None else validation.check_session_id(new_id)
        plan = Plan.recognising(
            "rotate", lambda attempts: changes.rotate(self._spec, session_id, target, attempts)
        )
        result: str | None = await self._run(plan)
        return result

    async def get_all(self) -> Mapping[str, SessionData]:
        """Every unexpired session, in a new mapping; unreadable records are skipped with a
        warning. Expired ones are left to `clean_expired`."""
        result: Mapping[str, SessionData] = await self._run(
            Plan("get_all", lambda: bulk.get_all(self._spec))
        )
        return result

    async def delete(self, session_id: str) -> None:
        """Remove the session; a missing one is not an error."""
        session_id = validation.check_session_id(session_id)
        await self._run(Plan("delete", lambda: ops.delete(self._spec, session_id)))

    async def clear(self) -> None:
        """Remove every row of the store's table, unreadable records included."""
        try:
            await self._run(Plan("clear", lambda: ops.clear(self._spec)))
        finally:
            self._cache.clear()

    async def clean_expired(self) -> int:
        """Remove every expired session; return how many this call removed.

        Candidates come from the index on ``expires_at``; each is decided from its record
        and removed only if unchanged. Unreadable records stay.
        """
        result: int = await self._run(Plan("clean_expired", lambda: bulk.clean_expired(self._spec)))
        return result

    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]:
        """Every record (or the one named), expired and unreadable ones included.

        For operators and tools: nothing is refreshed or removed.
        """
        if session_id is not None:
            session_id = validation.check_session_id(session_id)
        result: list[SessionRecord] = await self._run(
            Plan("inspect", lambda: bulk.inspect(self._spec, session_id))
        )
        return result

    async def iter_sessions(self, batch_size: int = 500) -> AsyncIterator[tuple[str, SessionData]]:
        """Each live session as ``(session_id, data)``, `batch_size` rows per query.

        Keyset pagination on the primary key: each batch costs its own rows, whatever the
        size of the table, and no snapshot is held between batches. Batches are decided as
        `get_all` decides. See `IterableSessionStore.iter_sessions`.
        """
        async for item in self._pages("iter_sessions", bulk.page, batch_size):
            yield item

    async def iter_records(self, batch_size: int = 500) -> AsyncIterator[SessionRecord]:
        """Every record as `inspect` shows it, `batch_size` rows per query, in id order.

        Keyset pagination on the primary key, as `iter_sessions`: each batch is one call
        within the timeout and costs its own rows. Nothing is refreshed or removed, and
        unreadable records are yielded.
        """
        async for record in self._pages("iter_records", bulk.inspect_page, batch_size):
            yield record

    async def _pages(
        self, name: str, page: Callable[[Spec, bytes | None, int], Op[Any]], batch_size: int
    ) -> AsyncIterator[Any]:
        """What `page` finds, a batch per call, from the first id to the last."""
        batch_size = validation.check_batch_size(batch_size)
        cursor: bytes | None = None
        while True:
            plan = Plan(name, functools.partial(page, self._spec, cursor, batch_size))
            items, cursor = await self._run(plan)
            for item in items:
                yield item
            if cursor is None:
                return

    async def aclose(self) -> None:
        """Close the pools the store made; a caller's pool or connection is left open.

        Later calls raise `StoreClosedError`. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        self._cache.clear()
        await self._sources.aclose()

    async def __aenter__(self: _S) -> _S:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
