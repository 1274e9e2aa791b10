"""Running `_postgres_ops` operations on connections: natively on asyncio, or in worker threads.

A *source* hands out one connection at a time: a psycopg pool (the store's own or a caller's)
or a single caller's connection, which calls then take turns on. `run_async` drives an
operation on an `AsyncConnection`; `run_in_thread` drives it on a synchronous `Connection` in
an anyio worker thread. Both finish or fail within the call's `Deadline`: waiting for a
connection, every statement, retries after a lost connection, all of it. A worker thread
cannot be cancelled, so when its call runs out of time the socket it is blocked on is shut
down under it (`Watch`), and the thread ends at once with an error nobody waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import psycopg
import psycopg.errors
import psycopg_pool

from .._core.deadline import Deadline, let_thread_end
from .._core.errors import InvalidSessionIdError, SessionStoreError, StoreUnavailableError
from .._core.masking import redact_message
from .ops import BEGIN, CHECKPOINT, Op, Plan, Unsure

__all__ = (
    "AsyncConnectionSource",
    "AsyncPoolSource",
    "AsyncSource",
    "Deadlines",
    "SyncConnectionSource",
    "SyncPoolSource",
    "SyncSource",
    "Watch",
    "run_async",
    "run_in_thread",
)

T = TypeVar("T")

# Rows turned into Python objects between two checkpoints of a big result, on asyncio.
FETCH_STEP = 500
# Seconds a connection of the store's own pool may stay kept aside by it between check-ins.
KEEP_SECONDS = 30.0
IDLE = psycopg.pq.TransactionStatus.IDLE
# Seconds a cancelled call spends at most asking the server to cancel its statement.
CANCEL_SECONDS = 1.0
POLL_READING = psycopg.pq.PollingStatus.READING
POLL_WRITING = psycopg.pq.PollingStatus.WRITING

AsyncConn = psycopg.AsyncConnection[Any]
SyncConn = psycopg.Connection[Any]


class AsyncPoolSource:
    """Connections from an `AsyncConnectionPool`.

    With `keep` (the store's own pool, which nothing else uses), a connection a call is done
    with is kept aside for the next call rather than checked in: taking it back costs a list
    pop, not the pool's checkout (its locks and bookkeeping). A broken connection, one left
    in a transaction, or any while a call waits on the pool goes back to the pool; and every
    `KEEP_SECONDS` all kept ones do, so that the pool's own upkeep (maximum lifetime, idle
    shrinking) still applies. The pool's `max_size` still bounds the connections open.
    """

    def __init__(self, pool: psycopg_pool.AsyncConnectionPool[Any], *, keep: bool = False) -> None:
        self.ready = False  # the store opens its own pool on first use
        self.pool = pool
        self.deadlines: Deadlines | None = None
        self._keep = keep
        self._kept: list[AsyncConn] = []
        self._waiting = 0
        self._check_in_at = time.monotonic() + KEEP_SECONDS

    async def acquire(self, deadline: Deadline) -> AsyncConn:
        kept = self._kept
        while kept:
            conn = kept.pop()
            if not conn.closed:
                return conn
            await self.pool.putconn(conn)  # the pool replaces it
        self._waiting += 1
        try:
            got: AsyncConn = await self.pool.getconn(timeout=max(deadline.remaining(), 0.001))
        finally:
            self._waiting -= 1
        return got

    async def release(self, conn: AsyncConn) -> None:
        if (
            self._keep
            and not self._waiting
            and conn.pgconn.transaction_status == IDLE
            and not conn.closed
        ):
            if time.monotonic() < self._check_in_at:
                self._kept.append(conn)
                return
            self._check_in_at = time.monotonic() + KEEP_SECONDS
            await self.check_in()
        await self.pool.putconn(conn)  # the pool drops a broken one

    async def check_in(self) -> None:
        """Give every kept connection back to the pool (before it closes, for one)."""
        kept, self._kept = self._kept, []
        for conn in kept:
            await self.pool.putconn(conn)


class AsyncConnectionSource:
    """One caller's `AsyncConnection`: calls take turns on it."""

    def __init__(self, conn: AsyncConn) -> None:
        self.ready = False  # the store opens its own pool on first use
        self.deadlines: Deadlines | None = None
        self.conn = conn
        self._lock: anyio.Lock | None = None

    async def acquire(self, deadline: Deadline) -> AsyncConn:
        if self._lock is None:
            self._lock = anyio.Lock()
        with anyio.move_on_after(deadline.remaining()):
            await self._lock.acquire()
            if self.conn.closed:  # there is no other to try: say so, at once
                self._lock.release()
                raise _closed()
            return self.conn
        raise deadline.exceeded("PostgreSQL session store", "its turn on the connection")

    async def release(self, conn: AsyncConn) -> None:
        assert self._lock is not None
        self._lock.release()


class SyncPoolSource:
    """Connections from a `ConnectionPool`, used from worker threads."""

    def __init__(self, pool: psycopg_pool.ConnectionPool[Any]) -> None:
        self.ready = False  # the store opens its own pool on first use
        self.pool = pool

    @contextlib.contextmanager
    def connection(self, deadline: Deadline) -> Iterator[SyncConn]:
        with self.pool.connection(timeout=max(deadline.remaining(), 0.001)) as conn:
            yield conn


class SyncConnectionSource:
    """One caller's synchronous `Connection`: calls take turns on it, from worker threads."""

    def __init__(self, conn: SyncConn) -> None:
        self.ready = False  # the store opens its own pool on first use
        self.conn = conn
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self, deadline: Deadline) -> Iterator[SyncConn]:
        if not deadline.acquire(self._lock):
            raise deadline.exceeded("PostgreSQL session store", "its turn on the connection")
        try:
            if self.conn.closed:  # there is no other to try: say so, at once
                raise _closed()
            yield self.conn
        finally:
            self._lock.release()


def _closed() -> psycopg.OperationalError:
    return psycopg.OperationalError("the connection the store was given is closed")


AsyncSource = AsyncPoolSource | AsyncConnectionSource
SyncSource = SyncPoolSource | SyncConnectionSource


class _Watched:
    """One call under `Deadlines`: its scope until the call is done."""

    __slots__ = ("end", "scope")

    def __init__(self, scope: anyio.CancelScope, end: float) -> None:
        self.scope: anyio.CancelScope | None = scope
        self.end = end


class Deadlines:
    """One timer for the deadlines of every call on a source, instead of one per call.

    A store's calls all get the same timeout, so their deadlines come in the order they were
    made: a queue holds them, and one timer wakes at the oldest unfinished call's deadline
    and cancels the scope of whatever is overdue. A call costs an append and a flag, not a
    timer handle scheduled and cancelled on the loop (as an `anyio.CancelScope` deadline is).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._calls: deque[_Watched] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, scope: anyio.CancelScope, end: float) -> _Watched:
        calls = self._calls
        while calls and calls[0].scope is None:
            calls.popleft()  # done: sequential calls keep the queue at one or two
        call = _Watched(scope, end)
        calls.append(call)
        if self._timer is None:
            self._timer = self.loop.call_at(end, self._expire)
        return call

    def _expire(self) -> None:
        self._timer = None
        now = self.loop.time()
        calls = self._calls
        while calls:
            call = calls[0]
            if call.scope is not None and call.end > now:
                self._timer = self.loop.call_at(call.end, self._expire)
                return
            calls.popleft()
            if call.scope is not None:
                call.scope.cancel()


def _deadlines(source: AsyncSource) -> Deadlines:
    """The source's `Deadlines` on the running loop (a source may outlive a loop)."""
    loop = asyncio.get_running_loop()
    deadlines = source.deadlines
    if deadlines is None or deadlines.loop is not loop:
        deadlines = source.deadlines = Deadlines(loop)
    return deadlines


def _lost(exc: BaseException, conn: AsyncConn | SyncConn) -> bool:
    """True if `exc` came from a connection that is gone (a restart, a dropped socket)."""
    return isinstance(exc, psycopg.OperationalError) and conn.closed


def _fail(what: str, exc: Exception, url: str | None) -> tuple[SessionStoreError, Exception]:
    """The library's error for a psycopg or pool error, and the cause to chain to it.

    With the store's `url`, every message is masked against it; a cause whose chain shows a
    secret gives way to a stand-in that carries the masked message only.
    """
    if isinstance(exc, psycopg.errors.ProgramLimitExceeded):
        msg = f"{what}: a session id (or record) too large for PostgreSQL's index: {exc}"
        return InvalidSessionIdError(msg), exc
    text = f"{type(exc).__name__}: {exc}".strip()
    if url is None:
        return StoreUnavailableError(f"{what}: {text}"), exc
    error = StoreUnavailableError(f"{what}: {redact_message(text, url)}")
    return error, (exc if _clean(exc, url) else Exception(redact_message(str(exc), url)))


def _clean(exc: BaseException, url: str) -> bool:
    """True if no message along `exc`'s chain of causes and contexts shows a secret."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if redact_message(str(current), url) != str(current):
            return False
        pending += [current.__cause__, current.__context__]
    return True


async def run_async(
    source: AsyncSource, plan: Plan, deadline: Deadline, store: str, url: str | None
) -> Any:
    """Drive `plan` on a connection of `source`, within `deadline`; errors translated."""
    failure: tuple[SessionStoreError, Exception] | None = None
    # Cancelled from outside or by the source's `Deadlines` at the call's deadline (asyncio's
    # clock is monotonic), a statement in flight is cancelled on the server by psycopg, and
    # the connection, unless idle, is closed before it goes back (`_attempts_async`).
    with anyio.CancelScope() as scope:
        call = _deadlines(source).watch(scope, time.monotonic() + deadline.remaining())
        try:
            return await _attempts_async(source, plan, deadline)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            failure = _fail(f"{store}: {plan.name}", exc, url)
        finally:
            call.scope = None
    if failure is None:
        raise deadline.exceeded(f"{store}: {plan.name}", "PostgreSQL")
    # Raised here, outside the handler: an unmasked message never rides along as context.
    error, cause = failure
    raise error from cause


class _Sent:
    """Whether an attempt has sent what may have committed: a statement outside a
    transaction, or a COMMIT."""

    __slots__ = ("may_commit",)

    def __init__(self) -> None:
        self.may_commit = False


def _again(plan: Plan, exc: psycopg.Error, conn: AsyncConn | SyncConn, sent: _Sent) -> bool:
    """True if `plan` may run again after `exc`, on another connection.

    Only after a lost connection. An idempotent plan always may; another only if nothing it
    sent can have committed, or if it recognises its own earlier effect (it is then told so).
    """
    if not _lost(exc, conn):
        return False
    if plan.retry or not sent.may_commit:
        return True
    if plan.attempts is None:
        return False
    plan.attempts.unsure = True
    return True


def _unsure(plan: Plan) -> psycopg.OperationalError:
    msg = (
        f"the connection was lost as the {plan.name} was committed, and the row has changed"
        " since: it may or may not have taken effect"
    )
    return psycopg.OperationalError(msg)


async def _attempts_async(source: AsyncSource, plan: Plan, deadline: Deadline) -> Any:
    lost: psycopg.Error | None = None
    while True:
        conn = await source.acquire(deadline)
        sent = _Sent()
        try:
            _keep_canceller(conn)
            return await _drive_async(conn, plan.make(), sent)
        except Unsure:
            raise _unsure(plan) from lost
        except psycopg.Error as exc:
            if not (deadline.remaining() > 0 and _again(plan, exc, conn, sent)):
                raise
            lost = exc
        finally:
            await _give_back(source, conn)
        # The pool drops the lost connection; try again on another.


# Per connection, what cancels its statement in flight once the connection itself is closed
# (libpq 17's non-blocking cancel: the older blocking one holds the interpreter while it waits).
_cancellers: weakref.WeakKeyDictionary[AsyncConn, psycopg.pq.abc.PGcancelConn] = (
    weakref.WeakKeyDictionary()
)
_CAN_CANCEL = psycopg.capabilities.has_cancel_safe()


def _keep_canceller(conn: AsyncConn) -> None:
    """Take `conn`'s cancel request while it is open (once per connection)."""
    if _CAN_CANCEL and not conn.closed and conn not in _cancellers:
        _cancellers[conn] = conn.pgconn.cancel_conn()


async def _give_back(source: AsyncSource, conn: AsyncConn) -> None:
    """Return `conn` to `source`, even from a cancelled call.

    A connection cut short (the call was cancelled with a statement or transaction open) is
    closed, and its statement cancelled on the server: a closed connection alone does not
    stop a statement that waits (for a lock, say), which would run later, after its caller
    was told it was cancelled. The pool replaces the connection.
    """
    with anyio.CancelScope(shield=True):
        if conn.pgconn.transaction_status != IDLE:
            await conn.close()
            await _cancel_on_server(_cancellers.pop(conn, None))
        await source.release(conn)


async def _drive_async(conn: AsyncConn, op: Op[T], sent: _Sent) -> T:
    if conn.autocommit:
        return await _steps_async(conn, op, False, sent)
    async with conn.transaction():  # a connection that is not autocommit: one per call
        result = await _steps_async(conn, op, True, sent)
        sent.may_commit = True  # the COMMIT goes out as the block ends
    return result


async def _steps_async(conn: AsyncConn, op: Op[T], in_transaction: bool, sent: _Sent) -> T:
    """Run `op`'s statements; at `BEGIN`, the rest of them in one transaction."""
    cursor = conn.cursor()  # client-side: nothing to close on the server
    reply: Any = None
    try:
        while True:
            step = op.send(reply)
            reply = None
            if step is CHECKPOINT:
                await asyncio.sleep(0)  # other tasks run; the call's own scope still applies
                continue
            if step is BEGIN:
                if in_transaction:
                    continue
                async with conn.transaction():
                    done = await _steps_async(conn, op, True, sent)
                    sent.may_commit = True  # the COMMIT goes out as the block ends
                return done
            if not in_transaction:
                sent.may_commit = True
            await cursor.execute(step.query, step.params)
            reply = await _fetch_async(cursor) if step.fetch else cursor.rowcount
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        op.close()


async def _fetch_async(cursor: psycopg.AsyncCursor[Any]) -> list[Any]:
    """Every row of the result, `FETCH_STEP` at a time with other tasks run in between."""
    if cursor.rowcount <= FETCH_STEP:
        return await cursor.fetchall()
    rows: list[Any] = []
    while True:
        part = await cursor.fetchmany(FETCH_STEP)
        rows += part
        if len(part) < FETCH_STEP:
            return rows
        await asyncio.sleep(0)


class Watch:
    """What a worker thread is blocked on, so that its caller can cut it loose in time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: SyncConn | None = None
        self._abandoned = False

    def use(self, conn: SyncConn) -> bool:
        """Record `conn` as in use; False if the call was already abandoned."""
        with self._lock:
            self._conn = conn
            return not self._abandoned

    def done(self) -> None:
        with self._lock:
            self._conn = None

    def abandon(self) -> psycopg.pq.abc.PGcancelConn | None:
        """Shut down the socket of the connection in use: the thread's wait ends at once.

        The connection is then broken, and its pool drops it. Returns what cancels the
        statement the connection was running, for `_cancel_on_server`.
        """
        with self._lock:
            self._abandoned = True
            conn = self._conn
            if conn is None or conn.closed:
                return None
            canceller = conn.pgconn.cancel_conn() if _CAN_CANCEL else None
            with contextlib.suppress(OSError):
                fd = os.dup(conn.pgconn.socket)
                with socket.socket(fileno=fd) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            return canceller


async def _cancel_on_server(cancel: psycopg.pq.abc.PGcancelConn | None) -> None:
    """Ask the server to cancel a statement whose connection was cut, within `CANCEL_SECONDS`.

    A closed connection alone does not stop a statement that waits (for a lock, say): it
    would run later, after its caller was told the call was cancelled or late.
    """
    if cancel is None:
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_SECONDS):
        cancel.start()
        while True:
            status = cancel.poll()
            if status == POLL_READING:
                await anyio.wait_readable(cancel.socket)
            elif status == POLL_WRITING:
                await anyio.wait_writable(cancel.socket)
            else:
                break  # sent (OK) or failed: nothing more to do either way
    cancel.finish()


async def run_in_thread(
    source: SyncSource,
    plan: Plan,
    deadline: Deadline,
    store: str,
    url: str | None,
    limiter: anyio.CapacityLimiter,
) -> Any:
    """Drive `plan` on a connection of `source` in a worker thread, within `deadline`."""
    watch = Watch()
    outcome: list[Any] = []
    ended = threading.Event()

    def work() -> None:
        try:
            outcome.append((True, _attempts_sync(source, plan, deadline, watch)))
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            outcome.append((False, exc))
        finally:
            ended.set()

    until = anyio.current_time() + deadline.remaining()
    try:
        with anyio.move_on_after(until - anyio.current_time()) as scope:
            await anyio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=limiter)
    except anyio.get_cancelled_exc_class():
        if not scope.cancel_called:  # from outside: let the statement in flight settle
            await let_thread_end(ended, until)
        raise
    finally:
        if not outcome:  # cancelled, or out of time: cut the thread loose
            await _cancel_on_server(watch.abandon())
    if not outcome:
        raise deadline.exceeded(f"{store}: {plan.name}", "PostgreSQL")
    ok, value = outcome[0]
    if ok:
        return value
    error, cause = _fail(f"{store}: {plan.name}", value, url)
    raise error from cause


def _attempts_sync(source: SyncSource, plan: Plan, deadline: Deadline, watch: Watch) -> Any:
    lost: psycopg.Error | None = None
    while True:
        with source.connection(deadline) as conn:
            if not watch.use(conn):
                raise psycopg_pool.PoolTimeout("the call ran out of time before it started")
            sent = _Sent()
            try:
                return _drive_sync(conn, plan.make(), sent)
            except Unsure:
                raise _unsure(plan) from lost
            except psycopg.Error as exc:
                if not (deadline.remaining() > 0 and _again(plan, exc, conn, sent)):
                    raise
                lost = exc
            finally:
                watch.done()


def _drive_sync(conn: SyncConn, op: Op[T], sent: _Sent) -> T:
    if conn.autocommit:
        return _steps_sync(conn, op, False, sent)
    with conn.transaction():  # a connection that is not autocommit: one per call
        result = _steps_sync(conn, op, True, sent)
        sent.may_commit = True  # the COMMIT goes out as the block ends
    return result


def _steps_sync(conn: SyncConn, op: Op[T], in_transaction: bool, sent: _Sent) -> T:
    """Run `op`'s statements; at `BEGIN`, the rest of them in one transaction."""
    cursor = conn.cursor()  # client-side: nothing to close on the server
    reply: Any = None
    try:
        while True:
            step = op.send(reply)
            reply = None
            if step is CHECKPOINT:
                continue  # a worker thread: the interpreter shares its time with the loop's
            if step is BEGIN:
                if in_transaction:
                    continue
                with conn.transaction():
                    done = _steps_sync(conn, op, True, sent)
                    sent.may_commit = True  # the COMMIT goes out as the block ends
                return done
            if not in_transaction:
                sent.may_commit = True
            cursor.execute(step.query, step.params)
            reply = cursor.fetchall() if step.fetch else cursor.rowcount
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        op.close()
