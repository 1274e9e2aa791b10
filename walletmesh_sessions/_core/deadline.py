"""Bounded waiting: a call finishes or fails within its timeout, measured from when it was made.

Every wait along the way (a worker thread, the store's lock, another process's lock on the
file) gets only the time left, so a call queued behind nine others still fails on time.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar

import anyio
import anyio.to_thread

from .errors import InvalidConfigError, StoreUnavailableError

__all__ = (
    "CANCEL_GRACE",
    "DEFAULT_TIMEOUT",
    "Deadline",
    "check_timeout",
    "current_deadline",
    "let_thread_end",
    "run_within",
)

T = TypeVar("T")

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds a call may wait, in all, before it fails with `StoreUnavailableError`."""

_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "walletmesh_sessions_deadline", default=None
)


def check_timeout(timeout: object) -> float:
    """Return `timeout` as float seconds if it is a positive, finite number, else raise."""
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < math.inf
    ):
        msg = f"timeout must be a positive, finite number of seconds, got {timeout!r}"
        raise InvalidConfigError(msg)
    return float(timeout)


class Deadline:
    """The moment by which one call must be done, on two clocks.

    `end` is on the event loop's clock (for a `CancelScope` or a `TimerQueue`; uvloop's is not
    `time.monotonic`); `remaining()` counts on `time.monotonic`, which worker threads read too.
    """

    __slots__ = ("_end", "cancelled", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._end = time.monotonic() + timeout
        self.cancelled = False

    @property
    def end(self) -> float:
        """The deadline on the running loop's clock (outside any event loop, `time.monotonic`'s):
        read only by the calls that hand it to a loop, so the others never pay for it."""
        return _loop_time() + self._end - time.monotonic()

    def cancel(self) -> None:
        """Mark the call as given up: what still runs for it writes nothing, and waits no more."""
        self.cancelled = True
        self._end = min(self._end, time.monotonic())

    def remaining(self) -> float:
        """Seconds left before the deadline, 0.0 once it has passed."""
        return max(0.0, self._end - time.monotonic())

    def remaining_ms(self) -> int:
        """Whole milliseconds left (rounded up while any time is left, so never 0 too early)."""
        return math.ceil(self.remaining() * 1000)

    def acquire(self, lock: threading.Lock) -> bool:
        """Take `lock`, waiting at most the time left; False if the deadline passed first."""
        return lock.acquire(timeout=self.remaining())

    def exceeded(self, what: str, waiting_for: str) -> StoreUnavailableError:
        """The error of a call that ran out of time: names `what` and the timeout, no session id."""
        msg = f"{what}: no answer within the timeout of {self.timeout:g} s"
        msg += f" (waiting for {waiting_for})"
        return StoreUnavailableError(msg)


def _loop_time() -> float:
    """`anyio.current_time()`, or `time.monotonic()` outside any event loop (a thread)."""
    try:
        return asyncio.get_running_loop().time()  # asyncio's clock, the common case, cheaply
    except RuntimeError:
        pass
    try:
        return anyio.current_time()
    except RuntimeError:  # no event loop in this thread (sniffio's error is one too)
        return time.monotonic()


def current_deadline() -> Deadline | None:
    """The deadline of the call this thread is running for, set by `run_within`."""
    return _current.get()


def run_within(deadline: Deadline, function: Callable[..., T], *args: object) -> T:
    """Call `function(*args)` with `deadline` as `current_deadline()` while it runs."""
    token = _current.set(deadline)
    try:
        return function(*args)
    finally:
        _current.reset(token)


CANCEL_GRACE: Final = 0.5
"""Seconds a call cancelled from outside waits for its worker thread's request in flight."""


async def let_thread_end(ended: threading.Event, until: float) -> None:
    """Wait, shielded, until `ended` is set, `CANCEL_GRACE` passes, or `until` (anyio's clock):
    a cancelled call lets its worker thread's request settle, whole or not at all."""
    left = min(CANCEL_GRACE, until - anyio.current_time())
    if left > 0 and not ended.is_set():
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(ended.wait, left, abandon_on_cancel=True)
