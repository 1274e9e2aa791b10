"""`MemorySessionStore`: sessions in a dict, for one process (tests, single-worker apps)."""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from anyio.lowlevel import checkpoint

from .._core.data import SessionData, SessionRecord, SessionStoreConfig
from .._core.errors import SessionIdTakenError, StoreClosedError
from .._core.expiry import (
    EXPIRED,
    Clock,
    after_read,
    expiry_after_write,
    is_expired,
    now_ms,
    slides_on_read,
    stamped,
    sweep,
)
from .._core.ids import new_session_id
from .._core.lifecycle import (
    TAKEN,
    Move,
    Write,
    check_change,
    decide_create,
    decide_rotate,
    decide_update,
)
from .._core.session_map import SessionMap
from .._core.validation import (
    check_batch_size,
    check_clock,
    check_config,
    check_session_data,
    check_session_id,
)
from .steps import STEP_MAX, TimedSteps

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ("MemorySessionStore", "default_store")

_Entry = tuple[SessionData, int | None]

# Expired sessions reclaimed from the front of the expiry order on every `set`: a small
# constant, so writes stay O(1) while memory never fills with sessions nobody reads again.
_RECLAIM_PER_WRITE = 2
# Out of expiry order (the clock stepped back), a write scans the whole store once it has
# grown this many times past its size at the last scan: amortized O(1), and bounded memory.
_RESCAN_GROWTH = 2
_RESCAN_MIN = 64
# Ids copied per step of a snapshot (a plain list copy: a few hundred microseconds).
_SNAPSHOT_CHUNK = 10_000
# Snapshots restarted because a write added or removed a session meanwhile, before the
# snapshot is taken in one step (a single stall, rather than no progress under steady writes).
_SNAPSHOT_ATTEMPTS = 3
_NEVER = float("-inf")


def _order_key(expires_at: int | None) -> float:
    return float("inf") if expires_at is None else expires_at


class MemorySessionStore:
    """Sessions kept in this process's memory; lost when it exits.

    Held in expiry order (every write and refresh moves one to the back), so `clean_expired`
    visits only expired sessions and each `set` reclaims a few from the front; a clock that
    steps back breaks the order until the next scan restores it.
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
        # The hot paths inline the expiry arithmetic when there is no absolute timeout; a
        # property test checks the inlined code against `_expiry` (tests/test_memory_expiry.py).
        self._lifetime_ms = self._config.lifetime_ms
        self._inline = self._config.max_lifetime_ms is None
        # The front session's expiry when last looked at: in expiry order nothing expires
        # before it, so a write only peeks at the front once the clock has passed it.
        self._reclaim_after: float = _NEVER
        # Bumped by every insertion and removal of an id: a pass's snapshot of the ids is
        # restarted when it changed between two of its steps.
        self._shape = 0
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
            self._check_open()
        now = round(self._clock() * 1000)  # now_ms, inlined
        expires_at: int | None
        if not self._inline:
            data = stamped(self._config, data, now)
            expires_at = expiry_after_write(self._config, now, data.created_at)
        elif (lifetime := self._lifetime_ms) is None:  # expiry_after_write, inlined
            expires_at = None
        else:
            expires_at = now + lifetime
        self._put(session_id, data, expires_at)
        if now > self._reclaim_after:
            self._reclaim_on_write(now)

    def _reclaim_on_write(self, now: int) -> None:
        if not self._in_expiry_order:
            if len(self._sessions) > _RESCAN_GROWTH * max(self._size_at_scan, _RESCAN_MIN):
                self._clean_by_scan(now)
            return
        sessions = self._sessions
        if not sessions:
            return
        front_expiry = next(iter(sessions.values()))[1]
        if is_expired(front_expiry, now):
            self._reclaim(_RECLAIM_PER_WRITE, now)
            if not sessions:
                return
            front_expiry = next(iter(sessions.values()))[1]
            if is_expired(front_expiry, now):
                return  # more to reclaim: the next write peeks again
        self._reclaim_after = _order_key(front_expiry)

    async def create(self, session_id: str, data: SessionData) -> bool:
        """Store `data` only if no unexpired session holds `session_id`; `True` if stored."""
        session_id = check_session_id(session_id)
        data = check_session_data(data)
        self._check_open()
        now = now_ms(self._clock)
        decision = decide_create(self._config, now, self._sessions.get(session_id), data)
        if decision is TAKEN:
            return False
        self._put(session_id, decision.data, decision.expires_at)
        if now > self._reclaim_after:
            self._reclaim_on_write(now)
        return True

    async def update(
        self, session_id: str, change: Callable[[SessionData], SessionData]
    ) -> SessionData | None:
        """Replace an unexpired session's data with ``change(current)``; `None` if none."""
        session_id = check_session_id(session_id)
        change = check_change(change)
        self._check_open()
        stored = self._sessions.get(session_id)
        decision = decide_update(self._config, now_ms(self._clock), stored, change)
        if isinstance(decision, Write):
            self._put(session_id, decision.data, decision.expires_at)
            return decision.data
        if decision is EXPIRED:
            self._remove(session_id)
        return None

    async def rotate(self, session_id: str, new_id: str | None = None) -> str | None:
        """Move an unexpired session to `new_id` (default: a fresh id); `None` if none."""
        session_id = check_session_id(session_id)
        new_id = new_session_id() if new_id is None else check_session_id(new_id)
        self._check_open()
        get = self._sessions.get
        now = now_ms(self._clock)
        decision = decide_rotate(
            self._config, now, session_id, new_id, get(session_id), get(new_id)
        )
        if decision is TAKEN:
            raise SessionIdTakenError(new_id)
        if isinstance(decision, Move):
            self._remove(session_id)
            self._put(new_id, decision.data, decision.expires_at)
            return new_id
        if decision is EXPIRED:
            self._remove(session_id)
        return None

    def _remove(self, session_id: str) -> None:
        del self._sessions[session_id]
        self._shape += 1

    async def validate_and_refresh(self, session_id: str) -> SessionData | None:
        """The session if present and not expired (an expired one is removed), else `None`."""
        return self._read(session_id)

    get = validate_and_refresh

    async def get_all(self) -> Mapping[str, SessionData]:
        """Every unexpired session, in a new mapping; expired ones met on the way are removed.

        Built in steps with a checkpoint between them: each session appears as its step reads
        it, and one added after the call began may be missing.
        """
        self._check_open()
        found = SessionMap()
        async for _batch in self._passes(await self._ids(), into=found):
            pass
        return found

    async def iter_sessions(self, batch_size: int = 500) -> AsyncIterator[tuple[str, SessionData]]:
        """Each live session, as ``(session_id, data)``, read at most `batch_size` at a time.

        A step reads what takes about a millisecond, decided when read as `get_all` decides.
        The ids are copied when the iteration begins (no session data), so writes in between
        never break it; one added after that may be missing.
        """
        batch_size = check_batch_size(batch_size)
        self._check_open()
        async for batch in self._passes(await self._ids(), most=batch_size):
            for item in batch.items():
                yield item

    async def _ids(self) -> list[str]:
        """The ids stored now, copied in steps of the plain dict (faster than the ordered view)
        with a checkpoint between them; a write between steps restarts the copy, a few times."""
        for _attempt in range(_SNAPSHOT_ATTEMPTS):
            sessions, shape = self._sessions, self._shape
            step = dict.__iter__(sessions)
            ids: list[str] = []
            while True:
                chunk = list(itertools.islice(step, _SNAPSHOT_CHUNK))
                ids.extend(chunk)
                if len(chunk) < _SNAPSHOT_CHUNK:
                    return ids
                await checkpoint()
                self._check_open()
                if self._sessions is not sessions or self._shape != shape:
                    break
        return list(dict.__iter__(self._sessions))

    async def _passes(
        self, ids: list[str], into: SessionMap | None = None, most: int = STEP_MAX
    ) -> AsyncIterator[SessionMap]:
        """The live sessions among `ids`, a step at a time (`TimedSteps`), each step decided
        when read, in a new mapping per step or all added `into` one."""
        steps = TimedSteps(most)
        while ids:
            step = await steps.take(ids)
            self._check_open()
            sessions = self._sessions
            get = sessions.get
            result = sweep(
                self._config,
                now_ms(self._clock),
                ((sid, sid, entry[0], entry[1]) for sid in step if (entry := get(sid)) is not None),
                collect=True,
                into=SessionMap(shards=1) if into is None else into,
            )
            for session_id in result.removals:
                del sessions[session_id]
            if result.removals:
                self._shape += 1
            found = result.found
            for session_id, expires_at in result.slides:
                self._put(session_id, found[session_id], expires_at)
            yield found

    async def delete(self, session_id: str) -> None:
        """Remove the session; a missing one is not an error."""
        session_id = check_session_id(session_id)
        self._check_open()
        if self._sessions.pop(session_id, None) is not None:
            self._shape += 1

    async def clear(self) -> None:
        """Remove every session."""
        self._check_open()
        self._forget()

    def _forget(self) -> None:
        self._sessions.clear()
        self._in_expiry_order = True
        self._latest_expiry = float("-inf")
        self._size_at_scan = 0
        self._reclaim_after = _NEVER
        self._shape += 1

    async def clean_expired(self) -> int:
        """Remove every expired session and return how many (visiting only those, in order)."""
        self._check_open()
        now = now_ms(self._clock)
        if not self._in_expiry_order:
            return self._clean_by_scan(now)
        return self._reclaim(None, now)

    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]:
        """Every stored session (or the one named), expired ones included; nothing changes."""
        self._check_open()
        if session_id is not None:
            entry = self._sessions.get(check_session_id(session_id))
            entries = [] if entry is None else [(session_id, entry)]
        else:
            entries = list(self._sessions.items())
        return [SessionRecord(sid, data, expires_at) for sid, (data, expires_at) in entries]

    async def iter_records(self, batch_size: int = 500) -> AsyncIterator[SessionRecord]:
        """Every stored session as `inspect` shows it, `batch_size` at a time, from the ids taken
        as `iter_sessions` takes them; a session deleted meanwhile is left out."""
        batch_size = check_batch_size(batch_size)
        self._check_open()
        ids = await self._ids()
        while ids:
            await checkpoint()
            self._check_open()
            # From the end, as `_passes` reads, so the ids are released a batch at a time.
            batch = ids[-batch_size:]
            del ids[-batch_size:]
            for session_id in batch:
                # Looked up as each is yielded: the consumer may let writes run in between.
                if (entry := self._sessions.get(session_id)) is not None:
                    yield SessionRecord(session_id, entry[0], entry[1])

    async def aclose(self) -> None:
        """Drop every session; later calls raise `StoreClosedError`. Closing twice is fine."""
        self._closed = True
        self._forget()

    def _check_open(self) -> None:
        """Raise `StoreClosedError` once `aclose()` has run (the hot paths test the flag first)."""
        if self._closed:
            msg = f"{self!r} is closed"
            raise StoreClosedError(msg)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _read(self, session_id: str) -> SessionData | None:
        # The hot path: a plain ASCII str needs no further checking.
        if type(session_id) is not str or not session_id.isascii() or not session_id:
            session_id = check_session_id(session_id)
        if self._closed:
            self._check_open()
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        data, stored = entry
        if stored is None and not self._slides:
            return data  # what after_read answers, without reading the clock
        if not self._inline:
            after = after_read(self._config, now_ms(self._clock), stored, data.created_at)
        else:
            # after_read without an absolute timeout, inlined.
            now = round(self._clock() * 1000)
            if stored is not None and now > stored:
                after = EXPIRED
            elif self._slides:
                after = now + self._lifetime_ms  # type: ignore[operator]  # slides: a lifetime
            else:
                return data
        if after is EXPIRED:
            self._remove(session_id)
            return None
        if after != stored:
            self._put(session_id, data, after)
        return data

    def _put(self, session_id: str, data: SessionData, expires_at: int | None) -> None:
        sessions = self._sessions
        if session_id in sessions:
            sessions[session_id] = (data, expires_at)
            sessions.move_to_end(session_id)
        else:
            sessions[session_id] = (data, expires_at)
            self._shape += 1
        key = _order_key(expires_at)
        if key < self._latest_expiry:
            self._in_expiry_order = False
            self._reclaim_after = _NEVER
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
        if removed:
            self._shape += 1
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
        self._shape += 1
        self._reclaim_after = _NEVER
        self._in_expiry_order = True
        self._latest_expiry = _order_key(live[-1][1][1]) if live else float("-inf")
        self._size_at_scan = len(live)
        return removed


# Annotated so every type checker sees the same public type, not its own inference.
default_store: MemorySessionStore = MemorySessionStore(
    SessionStoreConfig(lifetime=timedelta(hours=24))
)
"""The TypeScript package's `defaultStore`: a memory store with a 24 h lifetime."""
