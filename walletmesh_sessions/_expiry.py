"""Expiry arithmetic shared by every store: pure functions of the config and of `now` in ms.

Times are integer milliseconds since the Unix epoch, as in the wire format. A session with
``expires_at`` of `None` never expires; otherwise it is expired when ``now > expires_at``, so at
exactly its expiry it is still valid.
"""

from __future__ import annotations

from collections.abc import Callable

from ._data import SessionStoreConfig

__all__ = ("Clock", "expiry_after_read", "expiry_after_write", "is_expired", "now_ms")

Clock = Callable[[], float]
"""A zero-argument callable returning seconds since the Unix epoch, like `time.time`."""


def now_ms(clock: Clock) -> int:
    """The clock's reading in whole milliseconds: ``round(clock() * 1000)``."""
    return round(clock() * 1000)


def is_expired(expires_at: int | None, now: int) -> bool:
    """True if a session with this expiry is expired at `now` (never at exactly `expires_at`)."""
    return expires_at is not None and now > expires_at


def expiry_after_write(config: SessionStoreConfig, now: int) -> int | None:
    """The expiry a session gets when it is stored at `now`: now + lifetime, or none."""
    lifetime = config.lifetime_ms
    return None if lifetime is None else now + lifetime


def expiry_after_read(config: SessionStoreConfig, now: int, current: int | None) -> int | None:
    """The expiry after a successful read: slid to now + lifetime when refreshing, else unchanged.

    With `refresh_on_access` and a lifetime, a session stored without an expiry gets one too.
    """
    lifetime = config.lifetime_ms
    if config.refresh_on_access and lifetime is not None:
        return now + lifetime
    return current
