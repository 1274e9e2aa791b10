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
from .._core.codec import decode_record
from .._core.data import SessionData, SessionRecord, SessionStoreConfig
from .._core.deadline import Deadline, check_timeout
from .._core.decode_cache import DecodeCache
from .._core.errors import StoreClosedError, StoreUnavailableError
from .._core.expiry import Clock, slides_on_read
from .._core.ids import new_session_id
from .._core.lifecycle import check_change
from .._core.session_map import SessionMap
from . import bulk, changes, ops
from .runners import run_async, run_in_thread
from .sources import (
    AsyncConnectionSource,
    AsyncPoolSource,
    CallerProvider,
    Provider,
    UrlProvider,
    on_asyncio,
    open_source,
)
from .sql import DEFAULT_TABLE, Statements, check_table
from .steps import Op, Plan, Spec
from .target import DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, UrlTarget, parse_url

__all__ = ("PostgresSessionStore",)

_S = TypeVar("_S", bound="PostgresSessionStore")


class PostgresSessionStore:
    """Sessions in a PostgreSQL table, one row per session in the TypeScript wire format.

    Satisfies `SessionStore`, `LifecycleSessionStore`, `IterableSessionStore`,
    `ClosableSessionStore` and `Inspectable`, on asyncio and trio. Every write that depends on
    a read is compare-and-set or one transaction with the row locked, across processes.
    Build it with `from_url` (the store owns and closes its pools) or from a psycopg pool or
    connection you keep (asyncio only for the async ones). `timeout` (seconds) bounds every
    call, waiting for a connection and retries included. See the PostgreSQL docs.
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

        The URL's ``table``, ``timeout`` and ``max_connections`` win over the arguments; its
        other parameters are libpq's, checked here (see `parse_url`). `connect_options` go to
        `psycopg.connect`. At most `max_connections` are open at once, per event loop.
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

    def _schema_plan(self, *, indexes: bool = False) -> Plan:
        """What the first call does: create the table if missing, or only check it
        (`indexes`: also add the indexes an older table lacks)."""
        if self._creates_table:
            return Plan("create_schema", lambda: ops.ensure_schema(self._spec, indexes=indexes))
        where = self._sources.describe()
        return Plan("check_table", lambda: ops.ensure_schema(self._spec, where))

    def _existing_table_only(self) -> None:
        """Only check the table on first use: for tools, a mistyped table is an error."""
        self._creates_table = False

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

    async def create_schema(self) -> None:
        """Create the table and its indexes now if missing, else check the table's shape and
        add any index it lacks (a table made by an older version gains the createdAt index
        `clean_expired` walks under an absolute timeout; on a big table, allow the time to
        read every row)."""
        self._schema_ready = False
        self._creates_table = True  # asked for: also on a store that only checked its table
        await self._run(self._schema_plan(indexes=True))

    async def set(self, session_id: str, data: SessionData) -> None:
        """Store `data` under `session_id`: one INSERT ... ON CONFLICT DO UPDATE."""
        session_id = validation.check_session_id(session_id)
        data = validation.check_session_data(data)
        await self._run(Plan("set", lambda: ops.write(self._spec, session_id, data)))

    async def validate_and_refresh(self, session_id: str) -> SessionData | None:
        """The session if present and not expired (an expired one is removed), else `None`."""
        session_id = validation.check_session_id(session_id)
        read = ops.read_and_slide if self._slides_in_one else ops.read
        result: SessionData | None = await self._run(
            Plan("get", lambda: read(self._spec, session_id))
        )
        return result

    get = validate_and_refresh

    async def create(self, session_id: str, data: SessionData) -> bool:
        """Store `data` only if no unexpired session holds `session_id`; `True` if stored."""
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

        The row stays locked from the read to the write: keep `change` quick (on trio it runs
        in a worker thread).
        """
        session_id = validation.check_session_id(session_id)
        change = check_change(change)
        plan = Plan.recognising(
            "update", lambda attempts: changes.update(self._spec, session_id, change, attempts)
        )
        result: SessionData | None = await self._run(plan)
        return result

    async def rotate(self, session_id: str, new_id: str | None = None) -> str | None:
        """Move an unexpired session to `new_id` (default: `new_session_id()`); return it."""
        session_id = validation.check_session_id(session_id)
        target = new_session_id() if new_id is None else validation.check_session_id(new_id)
        plan = Plan.recognising(
            "rotate", lambda attempts: changes.rotate(self._spec, session_id, target, attempts)
        )
        result: str | None = await self._run(plan)
        return result

    async def get_all(self) -> Mapping[str, SessionData]:
        """Every unexpired session (unreadable ones skipped, expired ones left as they are),
        read a page per call (see `_pages`); values are decoded when read."""
        found = SessionMap.of_records(decode_record)
        async for _nothing in self._walk("get_all", functools.partial(bulk.live_page, into=found)):
            pass
        return found

    async def delete(self, session_id: str) -> None:
        """Remove the session; a missing one is not an error."""
        session_id = validation.check_session_id(session_id)
        await self._run(Plan("delete", lambda: ops.delete(self._spec, session_id)))

    async def clear(self) -> None:
        """Remove every row of the store's table, unreadable records included, a page per
        call (see `_pages`); never TRUNCATE, which would lock out every other call."""
        try:
            async for _removed in self._pages("clear", bulk.clear_page):
                pass
        finally:
            self._cache.clear()

    async def clean_expired(self) -> int:
        """Remove every expired session (unreadable records stay); return how many.

        Candidates are walked a page per call through the index on expires_at, then, with an
        absolute timeout, through the one on the record's createdAt.
        """
        removed = 0
        walks = (False, True) if self._spec.config.max_lifetime_ms is not None else (False,)
        for by_created in walks:
            page = functools.partial(bulk.expired_page, by_created=by_created)
            async for count in self._pages("clean_expired", page):
                removed += count
        return removed

    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]:
        """Every record (or the one named) as it is, a page per call: nothing is refreshed or
        removed."""
        if session_id is None:
            return [record async for record in self._pages("inspect", bulk.inspect_page)]
        session_id = validation.check_session_id(session_id)
        result: list[SessionRecord] = await self._run(
            Plan("inspect", lambda: bulk.inspect_one(self._spec, session_id))
        )
        return result

    async def iter_sessions(self, batch_size: int = 500) -> AsyncIterator[tuple[str, SessionData]]:
        """Each live session as ``(session_id, data)``, `batch_size` rows per query (keyset
        pagination on the primary key: no snapshot is held between batches)."""
        async for item in self._pages("iter_sessions", bulk.page, batch_size):
            yield item

    async def iter_records(self, batch_size: int = 500) -> AsyncIterator[SessionRecord]:
        """Every record as `inspect` shows it, `batch_size` rows per query, in id order."""
        async for record in self._pages("iter_records", bulk.inspect_page, batch_size):
            yield record

    async def _pages(
        self, name: str, page: Callable[..., Op[Any]], batch_size: int | None = None
    ) -> AsyncIterator[Any]:
        """Each item `page` finds, from the start of its walk to the end (see `_walk`)."""
        async for items in self._walk(name, page, batch_size):
            for item in items:
                yield item

    async def _walk(
        self, name: str, page: Callable[..., Op[Any]], batch_size: int | None = None
    ) -> AsyncIterator[list[Any]]:
        """What `page` finds, a list per call, from the start of its walk to the end.

        Each page is a call of its own, bounded by the store's timeout: a walk of any length
        completes, and one page that fails ends the walk with its error. The walk holds no
        snapshot: see `bulk` for what a page sees.
        """
        batch_size = validation.check_batch_size(
            bulk.PAGE_ROWS if batch_size is None else batch_size
        )
        cursor: Any = None
        while True:
            plan = Plan(name, functools.partial(page, self._spec, cursor=cursor, n=batch_size))
            items, cursor = await self._run(plan)
            yield items
            if cursor is None:
                return

    async def aclose(self) -> None:
        """Close the pools the store made (a caller's stay open); later calls raise
        `StoreClosedError`."""
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
