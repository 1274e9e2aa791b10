"""`PostgresSessionStore`: sessions in a PostgreSQL table, shared by every process using it."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import anyio
import anyio.to_thread
import psycopg
import psycopg.conninfo
import psycopg.errors
import psycopg_pool

from .._core.data import SessionData, SessionRecord, SessionStoreConfig
from .._core.deadline import Deadline, check_timeout
from .._core.decode_cache import DecodeCache
from .._core.errors import InvalidConfigError, StoreClosedError, StoreUnavailableError
from .._core.expiry import Clock, slides_on_read
from .._core.ids import new_session_id
from .._core.lifecycle import check_change
from .._core.loops import closed_at_shutdown, trio_token
from .._core.masking import misread_userinfo, redact, redact_error, redact_message
from .._core.session_map import SessionMap
from .._core.validation import (
    check_batch_size,
    check_clock,
    check_config,
    check_session_data,
    check_session_id,
    taken_once,
)
from . import ops as ops
from .io import (
    AsyncConnectionSource,
    AsyncPoolSource,
    AsyncSource,
    SyncConnectionSource,
    SyncPoolSource,
    SyncSource,
    run_async,
    run_in_thread,
)
from .pools import POOL_NAME, OwnAsyncPool, OwnPool
from .sql import DEFAULT_TABLE, Statements, check_table

__all__ = ("PostgresSessionStore",)

_S = TypeVar("_S", bound="PostgresSessionStore")

DEFAULT_TIMEOUT: Final = 5.0
DEFAULT_MAX_CONNECTIONS: Final = 10
SCHEMES: Final = ("postgresql", "postgres")
# Keywords of psycopg.connect itself rather than of libpq's connection string.
PSYCOPG_CONNECT_OPTIONS: Final = frozenset(
    {"autocommit", "prepare_threshold", "context", "row_factory", "cursor_factory"}
)
# URL query parameters of the store itself; every other one is libpq's.
STORE_URL_PARAMETERS: Final[dict[str, Callable[[str], Any]]] = {
    "table": str,
    "timeout": float,
    "max_connections": int,
}


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Sources:
    """Where a store gets its connections, for the event loop in use."""

    url: str | None = None

    def asyncio_source(self) -> AsyncSource | SyncSource:
        raise NotImplementedError

    def trio_source(self) -> SyncSource:
        raise NotImplementedError

    def limiter(self) -> anyio.CapacityLimiter:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class _Limiters:
    """One worker-thread limiter per trio run (or asyncio loop): limiters belong to a loop."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._limiter: anyio.CapacityLimiter | None = None
        self._owner: object = None

    def get(self) -> anyio.CapacityLimiter:
        owner = asyncio.get_running_loop() if _on_asyncio() else trio_token()
        if self._limiter is None or self._owner is not owner:
            self._limiter, self._owner = anyio.CapacityLimiter(self._size), owner
        return self._limiter


class _CallerSource(_Sources):
    """A pool or connection the caller made and keeps: used as it is, never closed."""

    def __init__(self, given: object) -> None:
        self._async: AsyncSource | None = None
        self._sync: SyncSource | None = None
        size = 1
        if isinstance(given, psycopg_pool.AsyncConnectionPool):
            self._async = AsyncPoolSource(given)
        elif isinstance(given, psycopg_pool.ConnectionPool):
            self._sync = SyncPoolSource(given)
            size = given.max_size
        elif isinstance(given, psycopg.AsyncConnection):
            self._async = AsyncConnectionSource(given)
        elif isinstance(given, psycopg.Connection):
            self._sync = SyncConnectionSource(given)
        else:
            msg = (
                "connection must be a psycopg_pool.AsyncConnectionPool or ConnectionPool, or a"
                f" psycopg.AsyncConnection or Connection, got {type(given).__name__}"
            )
            raise InvalidConfigError(msg)
        self._kind = type(given).__name__
        self._limiters = _Limiters(size)

    def asyncio_source(self) -> AsyncSource | SyncSource:
        source = self._async or self._sync
        assert source is not None
        return source

    def trio_source(self) -> SyncSource:
        if self._sync is None:
            msg = (
                f"a psycopg {self._kind} works on asyncio only; on trio pass a synchronous"
                " ConnectionPool or Connection (used in worker threads), or use"
                " PostgresSessionStore.from_url"
            )
            raise InvalidConfigError(msg)
        return self._sync

    def limiter(self) -> anyio.CapacityLimiter:
        return self._limiters.get()

    async def aclose(self) -> None:
        """Nothing to do: the caller closes its own pool or connection."""

    def describe(self) -> str:
        return f"the caller's {self._kind}"


class _UrlSources(_Sources):
    """Pools the store makes from a URL on first use and closes: an `AsyncConnectionPool` per
    asyncio loop, one `ConnectionPool` (in worker threads) for every trio run."""

    def __init__(self, url: str, conninfo: str, kwargs: dict[str, Any], size: int) -> None:
        self.url = self._url = url
        self._conninfo = conninfo
        self._kwargs = kwargs
        self._size = size
        self._async: AsyncPoolSource | None = None
        self._loop: object = None
        self._closer: AsyncGenerator[None, None] | None = None
        self._sync: SyncPoolSource | None = None
        self._limiters = _Limiters(size)

    def asyncio_source(self) -> AsyncSource:
        loop = asyncio.get_running_loop()
        if self._async is None or self._loop is not loop:
            pool: psycopg_pool.AsyncConnectionPool[Any] = OwnAsyncPool(
                self._conninfo,
                url=self._url,
                kwargs=self._kwargs,
                min_size=1,
                max_size=self._size,
                open=False,
            )

            source = AsyncPoolSource(pool, keep=True)

            async def close() -> None:
                await source.check_in()
                await pool.close(timeout=1.0)

            self._async, self._loop, self._closer = source, loop, closed_at_shutdown(close)
        return self._async

    def trio_source(self) -> SyncSource:
        if self._sync is None:
            pool: psycopg_pool.ConnectionPool[Any] = OwnPool(
                self._conninfo,
                url=self._url,
                kwargs=self._kwargs,
                min_size=1,
                max_size=self._size,
                open=False,
            )
            self._sync = SyncPoolSource(pool)
        return self._sync

    def limiter(self) -> anyio.CapacityLimiter:
        return self._limiters.get()

    async def aclose(self) -> None:
        closer, self._closer, self._async = self._closer, None, None
        loop, self._loop = self._loop, None
        sync, self._sync = self._sync, None
        try:
            if sync is not None:
                await anyio.to_thread.run_sync(lambda: sync.pool.close(timeout=1.0))
        finally:
            # An asyncio pool can only be closed on its own loop; elsewhere its loop did it.
            if closer is not None and _on_asyncio() and asyncio.get_running_loop() is loop:
                await closer.aclose()

    def describe(self) -> str:
        assert self.url is not None
        return redact(self.url)


async def _open(source: AsyncSource | SyncSource) -> None:
    """Open the store's own pool on first use (a caller's is the caller's to open)."""
    if isinstance(source, (AsyncPoolSource, SyncPoolSource)) and source.pool.name == POOL_NAME:
        if isinstance(source, AsyncPoolSource):
            await source.pool.open(wait=False)
        else:
            source.pool.open(wait=False)
    source.ready = True


def _split_url(url: str) -> tuple[str, dict[str, Any]]:
    """`url` without the store's own query parameters, and those parameters parsed.

    Any parameter given twice is refused: neither libpq's last one nor ours decides.
    """
    base, _, query = url.partition("?")
    store: dict[str, Any] = {}
    kept: list[tuple[str, str]] = []
    pairs = parse_qsl(query, keep_blank_values=True)
    taken_once(repr(redact(url)), pairs)
    for name, value in pairs:
        parse = STORE_URL_PARAMETERS.get(name)
        if parse is None:
            kept.append((name, value))
            continue
        try:
            store[name] = parse(value)
        except ValueError:
            msg = f"the PostgreSQL URL parameter {name!r} must be a number, got {value!r}"
            raise InvalidConfigError(msg) from None
    return base + (f"?{urlencode(kept)}" if kept else ""), store


# libpq takes these only from a fixed set, or as whole numbers, but says so only when it
# connects: checked when the store is made, so a typo is an error there and then.
_LIBPQ_CHOICES: dict[str, frozenset[str]] = {
    "sslmode": frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}),
    "gssencmode": frozenset({"disable", "prefer", "require"}),
    "channel_binding": frozenset({"disable", "prefer", "require"}),
    "target_session_attrs": frozenset(
        {"any", "read-write", "read-only", "primary", "standby", "prefer-standby"}
    ),
    "load_balance_hosts": frozenset({"disable", "random"}),
}
_LIBPQ_NUMBERS = frozenset(
    {
        "port",
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
    }
)


def _check_libpq_values(params: dict[str, Any], shown: str) -> None:
    """Refuse a libpq value libpq would refuse at connect time (``sslmode=bogus``, ``port=x``)."""
    for name, value in params.items():
        text = str(value)
        choices = _LIBPQ_CHOICES.get(name)
        if choices is not None and text not in choices:
            msg = f"{name} must be one of {', '.join(sorted(choices))}, got {text!r} in {shown!r}"
            raise InvalidConfigError(msg)
        # A list of ports (one per host) is comma-separated; an empty one means the default.
        parts = text.split(",") if name == "port" else [text]
        if name in _LIBPQ_NUMBERS and not all(p.strip().isdigit() or not p for p in parts):
            msg = f"{name} must be a whole number, got {text!r} in {shown!r}"
            raise InvalidConfigError(msg)


def _check_max_connections(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"max_connections must be a positive int, got {value!r}"
        raise InvalidConfigError(msg)
    return value


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
    any retry; running out raises `StoreUnavailableError`.
    """

    def __init__(
        self,
        connection: (
            psycopg_pool.AsyncConnectionPool[Any]
            | psycopg_pool.ConnectionPool[Any]
            | psycopg.AsyncConnection[Any]
            | psycopg.Connection[Any]
        ),
        config: SessionStoreConfig | None = None,
        *,
        table: str = DEFAULT_TABLE,
        clock: Clock = time.time,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._setup(_CallerSource(connection), config, table, clock, timeout)

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
        if not isinstance(url, str):
            msg = f"url must be a str such as 'postgresql://localhost/db', got {url!r}"
            raise InvalidConfigError(msg)
        given = url
        shown = redact(given)
        if urlsplit(given).scheme.lower() not in SCHEMES:
            msg = f"a PostgreSQL URL starts with postgresql:// or postgres://, got {shown!r}"
            raise InvalidConfigError(msg)
        if misread_userinfo(given):
            msg = (
                f"percent-encode any '#', '/', '?' or '@' in the user name or password of {shown!r}"
            )
            raise InvalidConfigError(msg)
        conninfo, from_query = _split_url(given)
        refused: psycopg.Error | None = None
        libpq = {k: v for k, v in connect_options.items() if k not in PSYCOPG_CONNECT_OPTIONS}
        try:
            # make_conninfo checks every keyword against libpq's own list.
            params = psycopg.conninfo.conninfo_to_dict(
                psycopg.conninfo.make_conninfo(conninfo, **libpq)
            )
        except psycopg.Error as exc:
            refused = exc
        if refused is not None:
            masked = redact_message(str(refused), given)
            msg = f"not a PostgreSQL URL: {shown!r} ({masked})"
            raise InvalidConfigError(msg) from redact_error(refused, given)
        _check_libpq_values(params, shown)
        timeout = check_timeout(from_query.get("timeout", timeout))
        max_connections = _check_max_connections(from_query.get("max_connections", max_connections))
        kwargs: dict[str, Any] = {**connect_options, "autocommit": True}
        if "connect_timeout" not in params:
            # libpq counts whole seconds and takes anything under 2 as 2.
            kwargs["connect_timeout"] = max(2, math.ceil(timeout))
        if "options" not in params:
            kwargs["options"] = f"-c statement_timeout={math.ceil(timeout * 1000)}"
        sources = _UrlSources(given, conninfo, kwargs, max_connections)
        store = cls.__new__(cls)
        store._setup(sources, config, from_query.get("table", table), clock, timeout)
        return store

    def _setup(
        self,
        sources: _Sources,
        config: SessionStoreConfig | None,
        table: str,
        clock: Clock,
        timeout: float,
    ) -> None:
        self._sources = sources
        self._statements = Statements(check_table(table))
        self._what = f"PostgreSQL session store {self._statements.table_name!r}"
        self._cache = DecodeCache()
        self._spec = ops.Spec(
            self._statements, check_config(config), check_clock(clock), self._cache.decode
        )
        self._timeout = check_timeout(timeout)
        config = self._spec.config
        # With an absolute timeout the new expiry depends on the record's createdAt: read first.
        self._slides_in_one = slides_on_read(config) and config.max_lifetime_ms is None
        self._schema_ready = False
        self._creates_table = True
        self._closed = False

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

    async def _run(self, plan: ops.Plan) -> Any:
        if self._closed:
            msg = f"{self!r} is closed"
            raise StoreClosedError(msg)
        deadline = Deadline(self._timeout)
        if not self._schema_ready:
            await self._drive(self._schema_plan(), deadline)
            self._schema_ready = True
        try:
            if _on_asyncio():  # the hot path, inline: one coroutine less per call
                source = self._sources.asyncio_source()
                if source.ready and isinstance(source, (AsyncPoolSource, AsyncConnectionSource)):
                    return await run_async(source, plan, deadline, self._what, self._sources.url)
            return await self._drive(plan, deadline)
        except StoreUnavailableError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
                self._schema_ready = False  # dropped under us: made again on the next call
            raise

    def _schema_plan(self) -> ops.Plan:
        """What the first call does: create the table if missing, or only check it."""
        if self._creates_table:
            return ops.Plan("create_schema", lambda: ops.ensure_schema(self._spec))
        where = self._sources.describe()
        return ops.Plan("check_table", lambda: ops.ensure_schema(self._spec, where))

    def _existing_table_only(self) -> None:
        """Never create the table on first use, only check it: for tools that only look or
        remove (the command line), where a mistyped table must be an error, not a new table.
        """
        self._creates_table = False

    async def _drive(self, plan: ops.Plan, deadline: Deadline) -> Any:
        what, url = self._what, self._sources.url
        if _on_asyncio():
            source = self._sources.asyncio_source()
            if not source.ready:
                await _open(source)
            if isinstance(source, (AsyncPoolSource, AsyncConnectionSource)):
                return await run_async(source, plan, deadline, what, url)
        else:
            source = self._sources.trio_source()
            if not source.ready:
                await _open(source)
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
        await self._run(ops.Plan("create_schema", lambda: ops.ensure_schema(self._spec)))

    async def set(self, session_id: str, data: SessionData) -> None:
        """Store `data` under `session_id`: one INSERT ... ON CONFLICT DO UPDATE."""
        session_id = check_session_id(session_id)
        data = check_session_data(data)
        await self._run(ops.Plan("set", lambda: ops.write(self._spec, session_id, data)))

    async def get(self, session_id: str) -> SessionData | None:
        """Same as `validate_and_refresh`."""
        session_id = check_session_id(session_id)
        read = ops.read_and_slide if self._slides_in_one else ops.read
        result: SessionData | None = await self._run(
            ops.Plan("get", lambda: read(self._spec, session_id))
        )
        return result

    async def validate_and_refresh(self, session_id: str) -> SessionData | None:
        """The session if present and not expired (an expired one is removed), else `None`.

        One statement: a SELECT, or on a store that slides (without `max_lifetime`) one that
        reads and rewrites the expiresAt digits of a live record, compare-and-set. Removing an
        expired record is one more statement, compare-and-set on the text read. Raises
        `CorruptRecordError` if the stored record is not readable.
        """
        session_id = check_session_id(session_id)
        read = ops.read_and_slide if self._slides_in_one else ops.read
        result: SessionData | None = await self._run(
            ops.Plan("get", lambda: read(self._spec, session_id))
        )
        return result

    async def create(self, session_id: str, data: SessionData) -> bool:
        """Store `data` only if no unexpired session holds `session_id`; `True` if stored.

        One INSERT ... ON CONFLICT DO NOTHING; when the id is taken, one transaction with the
        row locked replaces it if it has expired. Of concurrent creators exactly one wins.
        Raises `CorruptRecordError` if the id holds an unreadable record. After a lost
        connection it is tried again, and knows its own record if its insert did commit
        (see "Connection loss" in the PostgreSQL docs).
        """
        session_id = check_session_id(session_id)
        data = check_session_data(data)
        attempts = ops.Attempts()
        plan = ops.Plan(
            "create",
            lambda: ops.create(self._spec, session_id, data, attempts),
            retry=False,
            attempts=attempts,
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
        session_id = check_session_id(session_id)
        change = check_change(change)
        attempts = ops.Attempts()
        plan = ops.Plan(
            "update",
            lambda: ops.update(self._spec, session_id, change, attempts),
            retry=False,
            attempts=attempts,
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
        session_id = check_session_id(session_id)
        target = new_session_id() if new_id is None else check_session_id(new_id)
        attempts = ops.Attempts()
        plan = ops.Plan(
            "rotate",
            lambda: ops.rotate(self._spec, session_id, target, attempts),
            retry=False,
            attempts=attempts,
        )
        result: str | None = await self._run(plan)
        return result

    async def get_all(self) -> Mapping[str, SessionData]:
        """Every unexpired session, in a new mapping; unreadable records are skipped with a
        warning. Expired ones are left to `clean_expired`."""
        result: SessionMap = await self._run(ops.Plan("get_all", lambda: ops.get_all(self._spec)))
        return result

    async def delete(self, session_id: str) -> None:
        """Remove the session; a missing one is not an error."""
        session_id = check_session_id(session_id)
        await self._run(ops.Plan("delete", lambda: ops.delete(self._spec, session_id)))

    async def clear(self) -> None:
        """Remove every row of the store's table, unreadable records included."""
        try:
            await self._run(ops.Plan("clear", lambda: ops.clear(self._spec)))
        finally:
            self._cache.clear()

    async def clean_expired(self) -> int:
        """Remove every expired session; return how many this call removed.

        Candidates come from the index on ``expires_at``; each is decided from its record
        and removed only if unchanged. Unreadable records stay.
        """
        result: int = await self._run(
            ops.Plan("clean_expired", lambda: ops.clean_expired(self._spec))
        )
        return result

    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]:
        """Every record (or the one named), expired and unreadable ones included.

        For operators and tools: nothing is refreshed or removed.
        """
        if session_id is not None:
            session_id = check_session_id(session_id)
        result: list[SessionRecord] = await self._run(
            ops.Plan("inspect", lambda: ops.inspect(self._spec, session_id))
        )
        return result

    async def iter_sessions(self, batch_size: int = 500) -> AsyncIterator[tuple[str, SessionData]]:
        """Each live session as ``(session_id, data)``, `batch_size` rows per query.

        Keyset pagination on the primary key: each batch costs its own rows, whatever the
        size of the table, and no snapshot is held between batches. Batches are decided as
        `get_all` decides. See `IterableSessionStore.iter_sessions`.
        """
        batch_size = check_batch_size(batch_size)
        cursor: bytes | None = None
        while True:
            plan = ops.Plan(
                "iter_sessions", functools.partial(ops.page, self._spec, cursor, batch_size)
            )
            found, cursor = await self._run(plan)
            for item in found.items():
                yield item
            if cursor is None:
                return

    async def iter_records(self, batch_size: int = 500) -> AsyncIterator[SessionRecord]:
        """Every record as `inspect` shows it, `batch_size` rows per query, in id order.

        Keyset pagination on the primary key, as `iter_sessions`: each batch is one call
        within the timeout and costs its own rows. Nothing is refreshed or removed, and
        unreadable records are yielded.
        """
        batch_size = check_batch_size(batch_size)
        cursor: bytes | None = None
        while True:
            plan = ops.Plan(
                "iter_records", functools.partial(ops.inspect_page, self._spec, cursor, batch_size)
            )
            records: list[SessionRecord]
            records, cursor = await self._run(plan)
            for record in records:
                yield record
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

    async def __aenter__(self) -> PostgresSessionStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
