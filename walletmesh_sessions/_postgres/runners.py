"""Running a call's `Plan` on connections: natively on asyncio, or in worker threads, and
stopping a statement whose call gave up.

`run_async` drives an operation on an `AsyncConnection`; `run_in_thread` on a synchronous
`Connection` in an anyio worker thread. Both finish or fail within the call's `Deadline`;
what an attempt does is `driving`'s, written once. A connection cut short has its statement
cancelled on the server too (a closed connection alone does not stop a statement waiting
for a lock), with libpq 17's non-blocking cancel; a worker thread cannot be cancelled, so the
socket it is blocked on is shut down under it (`ThreadWatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import weakref
from collections.abc import Generator
from typing import Any, Final

import anyio
import anyio.to_thread
import psycopg
import psycopg_pool

from .._core.deadline import Deadline, let_thread_end
from .._core.errors import SessionStoreError
from .._core.timers import running_queue
from .driving import Request, Sent, Transaction, Tries, drive, translate
from .sources import IDLE, AsyncConn, AsyncSource, SyncConn, SyncSource
from .steps import Plan, Statement, Unsure

__all__ = ("run_async", "run_in_thread")

# Seconds a cancelled call spends at most asking the server to cancel its statement.
CANCEL_SECONDS: Final = 1.0

Canceller = psycopg.pq.abc.PGcancelConn

# Per connection, what cancels its statement in flight once the connection itself is closed.
_cancellers: weakref.WeakKeyDictionary[AsyncConn, Canceller] = weakref.WeakKeyDictionary()
_CAN_CANCEL: Final = psycopg.capabilities.has_cancel_safe()


# Rows turned into Python objects between two checkpoints of a big result, on asyncio.
FETCH_STEP = 500


async def run_async(
    source: AsyncSource, plan: Plan, deadline: Deadline, store: str, url: str | None
) -> Any:
    """Drive `plan` on a connection of `source`, within `deadline`; errors translated."""
    failure: tuple[SessionStoreError, Exception] | None = None
    # Cancelled from outside or at the deadline (the loop's `TimerQueue`), a statement in
    # flight is cancelled on the server by psycopg.
    with anyio.CancelScope() as scope:
        call = running_queue().watch(scope.cancel, deadline.end)
        try:
            return await _attempts_async(source, plan, deadline)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            failure = translate(f"{store}: {plan.name}", exc, url)
        finally:
            call.done()
    if failure is None:
        raise deadline.exceeded(f"{store}: {plan.name}", "PostgreSQL")
    # Raised here, outside the handler: an unmasked message never rides along as context.
    error, cause = failure
    raise error from cause


async def _attempts_async(source: AsyncSource, plan: Plan, deadline: Deadline) -> Any:
    tries = Tries(plan, deadline)
    while True:
        conn = await source.acquire(deadline)
        sent = Sent()
        try:
            if _CAN_CANCEL and not conn.closed and conn not in _cancellers:
                _cancellers[conn] = conn.pgconn.cancel_conn()  # taken while it is open
            return await _pump_async(conn, drive(plan.make(), conn.autocommit, sent))
        except (Unsure, psycopg.Error) as exc:
            tries.failed(exc, conn, sent)
        finally:
            # Given back even from a cancelled call: one cut short (a statement or transaction
            # open) is closed, its statement cancelled on the server; the pool replaces it.
            with anyio.CancelScope(shield=True):
                if conn.pgconn.transaction_status != IDLE:
                    await conn.close()
                    await cancel_on_server(_cancellers.pop(conn, None))
                await source.release(conn)
        # The pool drops the lost connection; try again on another.


async def _pump_async(conn: AsyncConn, requests: Generator[Request, Any, Any]) -> Any:
    """Execute `requests` on `conn`; the value they end with."""
    cursor = conn.cursor()  # client-side: nothing to close on the server
    reply: Any = None
    try:
        while True:
            try:
                request = requests.send(reply)
            except StopIteration as stop:
                return stop.value
            if isinstance(request, Statement):
                await cursor.execute(request.query, request.params)
                reply = await _fetch_async(cursor) if request.fetch else cursor.rowcount
            elif isinstance(request, Transaction):
                async with conn.transaction():
                    reply = await _pump_async(conn, request.body)
                    request.committing()
            else:  # CHECKPOINT
                reply = None
                await asyncio.sleep(0)  # other tasks run; the call's own scope still applies
    finally:
        requests.close()


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


async def run_in_thread(
    source: SyncSource,
    plan: Plan,
    deadline: Deadline,
    store: str,
    url: str | None,
    limiter: anyio.CapacityLimiter,
) -> Any:
    """Drive `plan` on a connection of `source` in a worker thread, within `deadline`."""
    watch = ThreadWatch()
    outcome: list[Any] = []
    ended = threading.Event()

    def work() -> None:
        try:
            outcome.append((True, _attempts_sync(source, plan, deadline, watch)))
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            outcome.append((False, exc))
        finally:
            ended.set()

    until = deadline.end
    try:
        with anyio.CancelScope(deadline=until) as scope:
            await anyio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=limiter)
    except anyio.get_cancelled_exc_class():
        if not scope.cancel_called:  # from outside: let the statement in flight settle
            await let_thread_end(ended, until)
        raise
    finally:
        # Decided before the thread is cut loose: cutting it loose may give it an error of its
        # own (its socket shut down), which is not what happened to the call.
        abandoned = not outcome
        if abandoned:  # cancelled, or out of time
            await cancel_on_server(watch.abandon())
    if abandoned:
        raise deadline.exceeded(f"{store}: {plan.name}", "PostgreSQL")
    ok, value = outcome[0]
    if ok:
        return value
    error, cause = translate(f"{store}: {plan.name}", value, url)
    raise error from cause


def _attempts_sync(source: SyncSource, plan: Plan, deadline: Deadline, watch: ThreadWatch) -> Any:
    tries = Tries(plan, deadline)
    while True:
        with source.connection(deadline) as conn:
            if not watch.use(conn):
                raise psycopg_pool.PoolTimeout("the call ran out of time before it started")
            sent = Sent()
            try:
                return _pump_sync(conn, drive(plan.make(), conn.autocommit, sent))
            except (Unsure, psycopg.Error) as exc:
                tries.failed(exc, conn, sent)
            finally:
                watch.done()


def _pump_sync(conn: SyncConn, requests: Generator[Request, Any, Any]) -> Any:
    """Execute `requests` on `conn`; the value they end with."""
    cursor = conn.cursor()  # client-side: nothing to close on the server
    reply: Any = None
    try:
        while True:
            try:
                request = requests.send(reply)
            except StopIteration as stop:
                return stop.value
            if isinstance(request, Statement):
                cursor.execute(request.query, request.params)
                reply = cursor.fetchall() if request.fetch else cursor.rowcount
            elif isinstance(request, Transaction):
                with conn.transaction():
                    reply = _pump_sync(conn, request.body)
                    request.committing()
            else:  # CHECKPOINT: a worker thread shares the interpreter's time with the loop
                reply = None
    finally:
        requests.close()


class ThreadWatch:
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

    def abandon(self) -> Canceller | None:
        """Shut down the socket of the connection in use: the thread's wait ends at once.

        The connection is then broken, and its pool drops it. Returns what cancels the
        statement the connection was running, for `cancel_on_server`.
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


async def cancel_on_server(cancel: Canceller | None) -> None:
    """Ask the server to cancel a statement whose connection was cut, within `CANCEL_SECONDS`."""
    if cancel is None:
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_SECONDS):
        cancel.start()
        while True:
            status = cancel.poll()
            if status == psycopg.pq.PollingStatus.READING:
                await anyio.wait_readable(cancel.socket)
            elif status == psycopg.pq.PollingStatus.WRITING:
                await anyio.wait_writable(cancel.socket)
            else:
                break  # sent (OK) or failed: nothing more to do either way
    cancel.finish()
