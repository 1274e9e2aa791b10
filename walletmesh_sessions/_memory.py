"""`MemorySessionStore`: sessions in a dict, for one process (tests, single-worker apps)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from types import TracebackType

from ._data import SessionData, SessionRecord, SessionStoreConfig
from ._expiry import Clock, expiry_after_read, expiry_after_write, is_expired, now_ms
from ._validation import check_clock, check_config, check_session_data, check_session_id

__all__ = ("MemorySessionStore",)

_Entry = tuple[SessionData, int | None]

# Expired sessions reclaimed from the front of the expiry order on every `set`: a small
# constant, so writes stay O(1) while memory never fills with sessions nobody reads again.
_RECLAIM_PER_WRITE = 2


def _order_key(expires_at: int | None) -> float:
    return float("inf") if expires_at is None else expires_at


class MemorySessionStore:
    """Sessions kept in this process's memory; lost when it exits.

    Sessions are held in expiry order (every write and refresh moves one to the back, and with a
    single lifetime that is its expiry order), so `clean_expired` only visits expired sessions,
    and each `set` reclaims a few expired ones from the front. If the clock steps back and
    breaks that order, the next `clean_expired` scans once and restores it.
    """

    def __init__(
        self, config: SessionStoreConfig | None = None, *, clock: Clock = time.time
    ) -> None:
        self._config = check_config(config)
        self._clock = check_clock(clock)
        self._sessions: OrderedDict[str, _Entry] = OrderedDict()
        self._in_expiry_order = True
        self._latest_expiry: float = float("-inf")
        self._refreshes = self._config.refresh_on_access and self._config.lifetime is not None

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
        now = now_ms(self._clock)
        self._put(session_id, data, expiry_after_write(self._config, now))
        # Reclaim only when the front session has expired: one peek on the common path.
        front_expiry = next(iter(self._sessions.values()))[1]
        if is_expired(front_expiry, now):
            self._reclaim(_RECLAIM_PER_WRITE, now)

    async def get(self, session_id: str) -> SessionData | None:
        """Same as `validate_and_refresh`."""
        return self._read(session_id)

    async def validate_and_refresh(self, session_id: str) -> SessionData | None:
        """The session if present and not expired (an expired one is removed), else `None`."""
        return self._read(session_id)

    async def get_all(self) -> Mapping[str, SessionData]:
        """Every unexpired session, in a new dict; expired ones met on the way are removed."""
        now = now_ms(self._clock)
        sessions = self._sessions
        found: dict[str, SessionData] = {}
        expired: list[str] = []
        for session_id, (data, expires_at) in sessions.items():
            if is_expired(expires_at, now):
                expired.append(session_id)
            else:
                found[session_id] = data
        for session_id in expired:
            del sessions[session_id]
        if self._refreshes:
            for session_id, data in found.items():
                self._put(session_id, data, expiry_after_read(self._config, now, None))
        return found

    async def delete(self, session_id: str) -> None:
        """Remove the session; a missing one is not an error."""
        self._sessions.pop(check_session_id(session_id), None)

    async def clear(self) -> None:
        """Remove every session."""
        self._sessions.clear()
        self._in_expiry_order = True
        self._latest_expiry = float("-inf")

    async def clean_expired(self) -> int:
        """Remove every expired session and return how many were removed.

        Costs in proportion to the expired sessions while the clock moves forward.
        """
        if not self._in_expiry_order:
            return self._clean_by_scan()
        return self._reclaim(None, now_ms(self._clock))

    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]:
        """Every stored session (or the one named), expired ones included; nothing changes."""
        if session_id is not None:
            entry = self._sessions.get(check_session_id(session_id))
            entries = [] if entry is None else [(session_id, entry)]
        else:
            entries = list(self._sessions.items())
        return [SessionRecord(sid, data, expires_at) for sid, (data, expires_at) in entries]

    async def aclose(self) -> None:
        """Nothing to release; present so every shipped store can be closed the same way."""

    async def __aenter__(self) -> MemorySessionStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _read(self, session_id: str) -> SessionData | None:
        # The hot path: a plain ASCII str needs no further checking.
        if type(session_id) is not str or not session_id.isascii() or not session_id:
            session_id = check_session_id(session_id)
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        data, expires_at = entry
        refreshes = self._refreshes
        if expires_at is None and not refreshes:
            return data
        now = now_ms(self._clock)
        if is_expired(expires_at, now):
            del self._sessions[session_id]
            return None
        if refreshes:
            self._put(session_id, data, expiry_after_read(self._config, now, expires_at))
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

    def _clean_by_scan(self) -> int:
        now = now_ms(self._clock)
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
        return removed
