"""`MemorySessionStore`: sessions in a dict, for one process (tests, single-worker apps)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from ._data import SessionData, SessionRecord, SessionStoreConfig
from ._errors import SessionIdTakenError, StoreClosedError
from ._expiry import (
    EXPIRED,
    Clock,
    after_read,
    expiry_after_update,
    expiry_after_write,
    is_expired,
    now_ms,
    slides_on_read,
    stamped,
    sweep,
)
from ._ids import new_session_id
from ._lifecycle import check_change, rotated, updated
from ._validation import check_clock, check_config, check_session_data, check_session_id

__all__ = ("MemorySessionStore",)

_Entry = tuple[SessionData, int | None]

# Expired sessions reclaimed from the front of the expiry order on every `set`: a small
# constant, so writes stay O(1) while memory never fills with sessions nobody reads again.
_RECLAIM_PER_WRITE = 2
# Out of expiry order (the clock stepped back), a write scans the whole store once it has
# grown this many times past its size at the last scan: amortized O(1), and bounded memory.
_RESCAN_GROWTH = 2
_RESCAN_MIN = 64


def _order_key(expires_at: int | None) -> float:
    return float("inf") if expires_at is None else expires_at


class MemorySessionStore:
    """Sessions kept in this process's memory; lost when it exits.

    Sessions are held in expiry order (every write and refresh moves one to the back, and with a
    single lifetime that is its expiry order), so `clean_expired` only visits expired sessions,
    and each `set` reclaims a few expired ones from the front. If the clock steps back and
    breaks that order, the next `clean_expired`, or a `set` once the store has doubled, scans
    once and restores it. After `aclose()` every call raises `StoreClosedError`.
    """

    def __init__(
        self, config: SessionStoreConfig | None = None, *, clock: Clock = time.time
    ) -> None:
        self._config = check_config(config)
        self._clock = check_clock(clock)
        self._sessions: OrderedDict[str, _Entry] = OrderedDict()
        self._in_expiry_order = True
        self._latest_expiry: float = float("-inf")
        self._size_at_scan = 0
        self._slides = slides_on_read(self._config)
        self._closed = False

    @property
    def config(self) -> SessionStoreConfig:
        """The store's lifetime and refresh settings."""
        return self._config

    def __repr__(self) -> str:
        return f"MemorySessionStore(config={self._config!r}, sessions={len(self._sessions)})"

    async def set(self, session_id: str, data: SessionData) -> None:
        """Store `data` under `session_id`; its expiry becomes now + lifetime, or none."""
        if type(session_id) is not str or not session_id.isascii() or not session_id:
            session_id = check_session_id(session_id)
        if type(data) is not SessionData:
            data = check_session_data(data)
        if self._closed:
            self._refuse()
        now = now_ms(self._clock)
        data = stamped(self._config, data, now)
        self._put(session_id, data, expiry_after_write(self._config, now, data.created_at))
        self._reclaim_on_write(now)

    def _reclaim_on_write(self, now: int) -> None:
        if not self._in_expiry_order:
            if len(self._sessions) > _RESCAN_GROWTH * max(self._size_at_scan, _RESCAN_MIN):
                self._clean_by_scan(now)
            return
        # Reclaim only when the front session has expired: one peek on the common path.
        front_expiry = next(iter(self._sessions.values()))[1]
        if is_expired(front_expiry, now):
            self._reclaim(_RECLAIM_PER_WRITE, now)

    async def get(self, session_id: str) -> SessionData | None:
        """Same as `validate_and_refresh`."""
        return self._read(session_id)

    async def create(self, session_id: str, data: SessionData) -> bool:
        """Store `data` only if no unexpired session holds `session_id`; `True` if stored."""
        session_id = check_session_id(session_id)
        data = check_session_data(data)
        if self._closed:
            self._refuse()
        now = now_ms(self._clock)
        if self._live(session_id, now) is not None:
            return False
        data = stamped(self._config, data, now)
        self._put(session_id, data, expiry_after_write(self._config, now, data.created_at))
        self._reclaim_on_write(now)
        return True

    async def update(
        self, session_id: str, change: Callable[[SessionData], SessionData]
    ) -> SessionData | None:
        """Replace an unexpired session's data with ``change(current)``; `None` if none."""
        session_id = check_session_id(session_id)
        change = check_change(change)
        if self._closed:
            self._refuse()
        now = now_ms(self._clock)
        live = self._live(session_id, now)
        if live is None:
            return None
        current, after = live
        new = updated(self._config, now, current, change)
        self._put(session_id, new, expiry_after_update(self._config, after, new.created_at))
        return new

    async def rotate(self, session_id: str, new_id: str | None = None) -> str | None:
        """Move an unexpired session to `new_id` (default: a fresh id); `None` if none."""
        session_id = check_session_id(session_id)
        new_id = new_session_id() if new_id is None else check_session_id(new_id)
        if self._closed:
            self._refuse()
        now = now_ms(self._clock)
        live = self._live(session_id, now)
        if live is None:
            return None
        if new_id == session_id or self._live(new_id, now) is not None:
            raise SessionIdTakenError(new_id)
        data, after = live
        del self._sessions[session_id]
        self._put(new_id, rotated(data, session_id, new_id), after)
        return new_id

    def _live(self, session_id: str, now: int) -> tuple[SessionData, int | None] | None:
        """The session and its expiry after a read at `now`, or `None` (an expired one goes)."""
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        data, stored = entry
        after = after_read(self._config, now, stored, data.created_at)
        if after is EXPIRED:
            del self._sessions[session_id]
            return None
        return data, after

    async def validate_and_refresh(self, session_id: str) -> SessionData | None:
        """The session if present and not expired (an expired one is removed), else `None`."""
        return self._read(session_id)

    async def get_all(self) -> Mapping[str, SessionData]:
        """Every unexpired session, in a new dict; expired ones met on the way are removed."""
        if self._closed:
            self._refuse()
        now = now_ms(self._clock)
        sessions = self._sessions
        result = sweep(
            self._config,
            now,
            ((sid, sid, data, expires_at) for sid, (data, expires_at) in sessions.items()),
            collect=True,
        )
        for session_id in result.removals:
            del sessions[session_id]
        found = result.found
        for session_id, expires_at in result.slides:
            self._put(session_id, found[session_id], expires_at)
        return found

    async def delete(self, session_id: str) -> None:
        """Remove the session; a missing one is not an error."""
        session_id = check_session_id(session_id)
        if self._closed:
            self._refuse()
        self._sessions.pop(session_id, None)

    async def clear(self) -> None:
        """Remove every session."""
        if self._closed:
            self._refuse()
        self._forget()

    def _forget(self) -> None:
        self._sessions.clear()
        self._in_expiry_order = True
        self._latest_expiry = float("-inf")
        self._size_at_scan = 0

    async def clean_expired(self) -> int:
        """Remove every expired session and return how many were removed.

        Costs in proportion to the expired sessions while the clock moves forward.
        """
        if self._closed:
            self._refuse()
        now = now_ms(self._clock)
        if not self._in_expiry_order:
            return self._clean_by_scan(now)
        return self._reclaim(None, now)

    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]:
        """Every stored session (or the one named), expired ones included; nothing changes."""
        if self._closed:
            self._refuse()
        if session_id is not None:
            entry = self._sessions.get(check_session_id(session_id))
            entries = [] if entry is None else [(session_id, entry)]
        else:
            entries = list(self._sessions.items())
        return [SessionRecord(sid, data, expires_at) for sid, (data, expires_at) in entries]

    async def aclose(self) -> None:
        """Drop every session; later calls raise `StoreClosedError`. Closing twice is fine."""
        self._closed = True
        self._forget()

    def _refuse(self) -> None:
        msg = f"{self!r} is closed"
        raise StoreClosedError(msg)

    async def __aenter__(self) -> MemorySessionStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _read(self, session_id: str) -> SessionData | None:
        # The hot path: a plain ASCII str needs no further checking.
        if type(session_id) is not str or not session_id.isascii() or not session_id:
            session_id = check_session_id(session_id)
        if self._closed:
            self._refuse()
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        data, stored = entry
        if stored is None and not self._slides:
            return data  # what after_read answers, without reading the clock
        after = after_read(self._config, now_ms(self._clock), stored, data.created_at)
        if after is EXPIRED:
            del self._sessions[session_id]
            return None
        if after != stored:
            self._put(session_id, data, after)
        return data

    def _put(self, session_id: str, data: SessionData, expires_at: int | None) -> None:
        sessions = self._sessions
        if session_id in sessions:
            sessions.move_to_end(session_id)
        sessions[session_id] = (data, expires_at)
        key = _order_key(expires_at)
        if key < self._latest_expiry:
            self._in_expiry_order = False
        else:
            self._latest_expiry = key

    def _reclaim(self, limit: int | None, now: int) -> int:
        """Remove expired sessions from the front of the order, at most `limit` of them."""
        sessions = self._sessions
        removed = 0
        while sessions and (limit is None or removed < limit):
            session_id, (_data, expires_at) = next(iter(sessions.items()))
            if not is_expired(expires_at, now):
                break
            del sessions[session_id]
            removed += 1
        return removed

    def _clean_by_scan(self, now: int) -> int:
        live = [
            (session_id, entry)
            for session_id, entry in self._sessions.items()
            if not is_expired(entry[1], now)
        ]
        removed = len(self._sessions) - len(live)
        live.sort(key=lambda item: _order_key(item[1][1]))
        self._sessions = OrderedDict(live)
        self._in_expiry_order = True
        self._latest_expiry = _order_key(live[-1][1][1]) if live else float("-inf")
        self._size_at_scan = len(live)
        return removed
