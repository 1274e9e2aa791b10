"""Stopping a statement whose call gave up: on the server, and in a blocked worker thread.

A closed connection alone does not stop a statement that waits (for a lock, say): it would
run later, after its caller was told the call was cancelled or late. So a connection cut
short has its statement cancelled on the server too, with libpq 17's non-blocking cancel
(the older blocking one holds the interpreter while it waits). A worker thread cannot be
cancelled: when its call runs out of time, the socket it is blocked on is shut down under it
(`ThreadWatch`), and the thread ends at once with an error nobody waits for.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import weakref
from typing import Final

import anyio
import psycopg

from .sources import AsyncConn, SyncConn

__all__ = ("ThreadWatch", "cancel_on_server", "keep_canceller", "take_canceller")

# Seconds a cancelled call spends at most asking the server to cancel its statement.
CANCEL_SECONDS: Final = 1.0
POLL_READING: Final = psycopg.pq.PollingStatus.READING
POLL_WRITING: Final = psycopg.pq.PollingStatus.WRITING

Canceller = psycopg.pq.abc.PGcancelConn

# Per connection, what cancels its statement in flight once the connection itself is closed.
_cancellers: weakref.WeakKeyDictionary[AsyncConn, Canceller] = weakref.WeakKeyDictionary()
_CAN_CANCEL: Final = psycopg.capabilities.has_cancel_safe()


def keep_canceller(conn: AsyncConn) -> None:
    """Take `conn`'s cancel request while it is open (once per connection)."""
    if _CAN_CANCEL and not conn.closed and conn not in _cancellers:
        _cancellers[conn] = conn.pgconn.cancel_conn()


def take_canceller(conn: AsyncConn) -> Canceller | None:
    """What cancels `conn`'s statement in flight, kept by `keep_canceller`, if any."""
    return _cancellers.pop(conn, None)


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
            if status == POLL_READING:
                await anyio.wait_readable(cancel.socket)
            elif status == POLL_WRITING:
                await anyio.wait_writable(cancel.socket)
            else:
                break  # sent (OK) or failed: nothing more to do either way
    cancel.finish()
