"""A small dict store for testing the conformance kit itself, with bugs to switch on."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import anyio.lowlevel

from walletmesh_sessions import (
    InvalidSessionDataError,
    InvalidSessionIdError,
    SessionData,
    SessionIdTakenError,
    SessionIdTypeError,
    SessionStoreConfig,
    new_session_id,
)
from walletmesh_sessions._core.expiry import Clock

PREFIX = "session:"
BUGS = frozenset(
    {
        "off_by_one",
        "stale_refresh",
        "revive_deleted",
        "greedy_clear",
        "miscount",
        "racy_create",
        "lossy_update",
        "gappy_rotate",
        "object_lock",
    }
)


class SimpleStore:
    """A correct store over a shared dict, unless `bugs` names some of `BUGS`."""

    def __init__(
        self,
        storage: dict[str, tuple[SessionData, int | None]],
        config: SessionStoreConfig,
        clock: Clock = time.time,
        bugs: frozenset[str] = frozenset(),
    ) -> None:
        assert bugs <= BUGS
        self.storage = storage
        self.config = config
        self.clock = clock
        self.bugs = bugs
        self._updating = anyio.Lock()

    def _now(self) -> int:
        return round(self.clock() * 1000)

    def _expired(self, expires_at: int | None, now: int) -> bool:
        if expires_at is None:
            return False
        return now >= expires_at if "off_by_one" in self.bugs else now > expires_at

    def _key(self, session_id: object) -> str:
        if not isinstance(session_id, str):
            raise SessionIdTypeError(f"bad session id {session_id!r}")
        if not session_id:
            raise InvalidSessionIdError(f"bad session id {session_id!r}")
        try:
            session_id.encode()
        except UnicodeEncodeError:
            raise InvalidSessionIdError(f"bad session id {session_id!r}") from None
        return PREFIX + session_id

    def _lifetime(self) -> int | None:
        return self.config.lifetime_ms

    def _stamp(self, data: SessionData) -> SessionData:
        if self.config.max_lifetime_ms is None or data.created_at is not None:
            return data
        return SessionData(
            data.id, data.origin, data.permissions, self._now(), app_data=data.app_data
        )

    def _until(self, data: SessionData, expires_at: int | None) -> int | None:
        """`expires_at`, capped by the absolute timeout."""
        if self.config.max_lifetime_ms is None or data.created_at is None:
            return expires_at
        cap = data.created_at + self.config.max_lifetime_ms
        return cap if expires_at is None else min(cap, expires_at)

    def _write(self, key: str, data: SessionData) -> None:
        lifetime = self._lifetime()
        data = self._stamp(data)
        expires_at = None if lifetime is None else self._now() + lifetime
        self.storage[key] = (data, self._until(data, expires_at))

    async def set(self, session_id: str, data: SessionData) -> None:
        key = self._key(session_id)
        if not isinstance(data, SessionData):
            raise InvalidSessionDataError(f"bad data {data!r}")
        self._write(key, data)

    async def get(self, session_id: str) -> SessionData | None:
        return await self.validate_and_refresh(session_id)

    async def validate_and_refresh(self, session_id: str) -> SessionData | None:
        key = self._key(session_id)
        entry = self.storage.get(key)
        if entry is None:
            return None
        now = self._now()
        if self._expired(entry[1], now):
            del self.storage[key]
            return None
        lifetime = self._lifetime()
        if self.config.refresh_on_access and lifetime is not None:
            if "stale_refresh" in self.bugs:
                await anyio.lowlevel.checkpoint()  # e.g. a round trip to a database
                self.storage[key] = (entry[0], self._until(entry[0], now + lifetime))
            elif "revive_deleted" in self.bugs:
                await anyio.lowlevel.checkpoint()
                # Keeps a concurrent set's data, but writes the key back even if it was deleted.
                self.storage[key] = (self.storage.get(key, entry)[0], now + lifetime)
            elif key in self.storage:
                data = self.storage[key][0]
                self.storage[key] = (data, self._until(data, now + lifetime))
        return entry[0]

    async def create(self, session_id: str, data: SessionData) -> bool:
        key = self._key(session_id)
        if not isinstance(data, SessionData):
            raise InvalidSessionDataError(f"bad data {data!r}")
        # A refusal is not an access: the live session keeps its expiry (no slide).
        entry = self.storage.get(key)
        if entry is not None and not self._expired(entry[1], self._now()):
            return False
        if "racy_create" in self.bugs:
            await anyio.lowlevel.checkpoint()  # a round trip between the check and the write
        self._write(key, data)
        return True

    async def update(
        self, session_id: str, change: Callable[[SessionData], SessionData]
    ) -> SessionData | None:
        if "object_lock" in self.bugs:
            # Safe among this object's tasks only: another store object's updates interleave.
            async with self._updating:
                current = await self.validate_and_refresh(session_id)
                await anyio.lowlevel.checkpoint()  # a round trip between the read and the write
                if current is None:
                    return None
                self.storage[self._key(session_id)] = (change(current), None)
                return change(current)
        key = self._key(session_id)
        current = await self.validate_and_refresh(session_id)
        if current is None:
            return None
        if "lossy_update" in self.bugs:
            await anyio.lowlevel.checkpoint()  # a round trip between the read and the write
        new = change(current)
        if not isinstance(new, SessionData):
            raise InvalidSessionDataError(f"bad data {new!r}")
        if key not in self.storage:
            return None  # deleted meanwhile: an update never brings a session back
        if current.created_at is not None:
            new = SessionData(
                new.id, new.origin, new.permissions, current.created_at, app_data=new.app_data
            )
        new = self._stamp(new)
        self.storage[key] = (new, self._until(new, self.storage[key][1]))
        return new

    async def rotate(self, session_id: str, new_id: str | None = None) -> str | None:
        key = self._key(session_id)
        new_id = new_session_id() if new_id is None else new_id
        new_key = self._key(new_id)
        data = await self.validate_and_refresh(session_id)
        if data is None:
            return None
        if new_id == session_id or await self.validate_and_refresh(new_id) is not None:
            raise SessionIdTakenError(new_id)
        entry = self.storage.pop(key)
        if "gappy_rotate" in self.bugs:
            await anyio.lowlevel.checkpoint()  # the old id is gone, the new one not yet there
        moved = SessionData(
            new_id, data.origin, data.permissions, data.created_at, app_data=data.app_data
        )
        self.storage[new_key] = (moved if data.id == session_id else data, entry[1])
        return new_id

    async def get_all(self) -> Mapping[str, SessionData]:
        found = {}
        for key in [k for k in self.storage if k.startswith(PREFIX)]:
            data = await self.validate_and_refresh(key[len(PREFIX) :])
            if data is not None:
                found[key[len(PREFIX) :]] = data
        return found

    async def delete(self, session_id: str) -> None:
        self.storage.pop(self._key(session_id), None)

    async def clear(self) -> None:
        for key in list(self.storage):
            if key.startswith(PREFIX) or "greedy_clear" in self.bugs:
                del self.storage[key]

    async def clean_expired(self) -> int:
        now = self._now()
        expired = [
            key
            for key, (_, expires_at) in self.storage.items()
            if key.startswith(PREFIX) and self._expired(expires_at, now)
        ]
        for key in expired:
            del self.storage[key]
        if "miscount" in self.bugs:
            return len([k for k in self.storage if k.startswith(PREFIX)]) + len(expired)
        return len(expired)


class SimpleForeignData:
    """Entries of another owner in the same dict."""

    ENTRY = (SessionData("x", "https://other.example"), None)

    def __init__(self, storage: dict[str, tuple[SessionData, int | None]]) -> None:
        self.storage = storage

    async def plant(self) -> None:
        self.storage["other:x"] = self.ENTRY

    async def intact(self) -> bool:
        return self.storage.get("other:x") == self.ENTRY
