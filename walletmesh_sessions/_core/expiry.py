"""Expiry rules shared by every store: pure functions of the config, `now` and a stored expiry.

Times are integer ms since the epoch. ``expires_at`` `None` never expires; otherwise a session
is expired when ``now > expires_at``. Stores carry out what is decided here, and only here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Final, Generic, TypeVar

import attrs

from .data import SessionData, SessionStoreConfig
from .session_map import SessionMap

__all__ = (
    "EXPIRED",
    "Clock",
    "Expired",
    "Sweep",
    "absolute_expiry",
    "after_read",
    "expiry_after_update",
    "expiry_after_write",
    "is_expired",
    "now_ms",
    "slides_on_read",
    "stamped",
    "sweep",
    "sweep_texts",
)

Clock = Callable[[], float]
"""A zero-argument callable returning seconds since the Unix epoch, like `time.time`."""

Handle = TypeVar("Handle")


class Expired(enum.Enum):
    """The type of `EXPIRED`: what `after_read` answers for a session that must be removed."""

    EXPIRED = "expired"

    def __repr__(self) -> str:
        return "EXPIRED"


EXPIRED: Final = Expired.EXPIRED


def now_ms(clock: Clock) -> int:
    """The clock's reading in whole milliseconds: ``round(clock() * 1000)``."""
    return round(clock() * 1000)


def is_expired(expires_at: int | None, now: int) -> bool:
    """True if a session with this expiry is expired at `now` (never at exactly `expires_at`)."""
    return expires_at is not None and now > expires_at


def slides_on_read(config: SessionStoreConfig) -> bool:
    """True if reading a session moves its expiry (refresh on access, with a lifetime)."""
    return config.refresh_on_access and config.lifetime_ms is not None


def absolute_expiry(config: SessionStoreConfig, created_at: int | None) -> int | None:
    """``created_at + max_lifetime``: the latest a session may live, or `None` for no bound."""
    max_lifetime = config.max_lifetime_ms
    if max_lifetime is None or created_at is None:
        return None
    return created_at + max_lifetime


def _capped(expires_at: int | None, cap: int | None) -> int | None:
    if cap is None or (expires_at is not None and expires_at <= cap):
        return expires_at
    return cap


def stamped(config: SessionStoreConfig, data: SessionData, now: int) -> SessionData:
    """`data` with `created_at` set to `now` when the store has an absolute timeout and the
    data has none; otherwise `data` itself."""
    if config.max_lifetime_ms is None or data.created_at is not None:
        return data
    return attrs.evolve(data, created_at=now)


def expiry_after_write(
    config: SessionStoreConfig, now: int, created_at: int | None = None
) -> int | None:
    """The expiry a session stored at `now` gets: now + lifetime, or none, capped at
    ``created_at + max_lifetime``."""
    lifetime = config.lifetime_ms
    expires_at = None if lifetime is None else now + lifetime
    return _capped(expires_at, absolute_expiry(config, created_at))


def expiry_after_update(
    config: SessionStoreConfig, after: int | None, created_at: int | None
) -> int | None:
    """An update's expiry: the read's (`after`), never past the new data's absolute expiry."""
    return _capped(after, absolute_expiry(config, created_at))


def after_read(
    config: SessionStoreConfig, now: int, stored: int | None, created_at: int | None = None
) -> int | Expired | None:
    """What a read at `now` does to a session whose stored expiry is `stored`.

    `EXPIRED`: answer "none" and remove it (only if unchanged). Otherwise its expiry after the
    read: `stored`, or now + lifetime when the store slides on read (a session without one then
    gets one, as the TypeScript store does); a store writes it only when it differs.
    Past ``created_at + max_lifetime`` a session is expired whatever its stored expiry says
    (records written before the timeout was set), and no slide moves the expiry past it.
    """
    if stored is not None and now > stored:
        return EXPIRED
    cap = absolute_expiry(config, created_at)
    if cap is not None and now > cap:
        return EXPIRED
    lifetime = config.lifetime_ms
    if config.refresh_on_access and lifetime is not None:
        return _capped(now + lifetime, cap)
    return stored


@attrs.define
class Sweep(Generic[Handle]):
    """What one pass over stored sessions found (`found`) and must change, only if unchanged:
    `removals` (expired) and `slides` ``(handle, new_expiry)``. A handle is whatever the store
    needs to find the record again and compare it (a key, the text read, or both)."""

    found: SessionMap = attrs.field(factory=SessionMap)
    removals: list[Handle] = attrs.field(factory=list)
    slides: list[tuple[Handle, int]] = attrs.field(factory=list)


def sweep(
    config: SessionStoreConfig,
    now: int,
    records: Iterable[tuple[str, Handle, SessionData, int | None]],
    *,
    collect: bool,
    into: SessionMap | None = None,
) -> Sweep[Handle]:
    """Decide a pass over ``(session_id, handle, data, expires_at)`` records at `now`.

    Expired records are listed for removal. With `collect` (`get_all`), live ones go to `found`
    (or `into`, a mapping of the caller's), read as `after_read` says; else they are left alone.
    """
    result: Sweep[Handle] = Sweep() if into is None else Sweep(found=into)
    removals, slides = result.removals, result.slides
    live: list[tuple[str, SessionData]] = []
    for session_id, handle, data, stored in records:
        after = after_read(config, now, stored, data.created_at)
        if after is EXPIRED:
            removals.append(handle)
        elif collect:
            live.append((session_id, data))
            if after is not None and after != stored:
                slides.append((handle, after))
    result.found._put_all(live)  # the pass at once: one call, not one per session
    return result


def sweep_texts(
    config: SessionStoreConfig,
    now: int,
    records: Iterable[tuple[str, str, int | None, int | None]],
    *,
    collect: bool,
    into: SessionMap | None = None,
) -> Sweep[tuple[str, str]]:
    """`sweep` of records kept as text: ``(session_id, text, expires_at, created_at)``, as
    `decode_readable` with `record_times` reads them (no `SessionData` built). What goes to
    `found` is the text, for a map `SessionMap.of_records` (a slide changes only the expiry,
    never the data); each handle is ``(session_id, text)``. ``created_at`` matters only
    with ``max_lifetime`` (see `after_read`)."""
    result: Sweep[tuple[str, str]] = Sweep() if into is None else Sweep(found=into)
    removals, slides = result.removals, result.slides
    live: list[tuple[str, str]] = []
    for session_id, text, stored, created_at in records:
        after = after_read(config, now, stored, created_at)
        if after is EXPIRED:
            removals.append((session_id, text))
        elif collect:
            live.append((session_id, text))
            if after is not None and after != stored:
                slides.append(((session_id, text), after))
    result.found._put_all(live)  # the pass at once: one call, not one per session
    return result
