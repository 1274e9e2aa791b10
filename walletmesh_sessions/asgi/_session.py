"""`Session`: one request's handle on its session, every change an atomic store operation.

Lazy: nothing is read until asked, and nothing is written back when the request ends. Each
change is one of the store's lifecycle operations (`create`, `update`, `rotate`, `delete`),
so two requests that change one session at once both keep their change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Literal, ParamSpec, TypeVar

import anyio
import attrs

from .._core.data import SessionData, SessionStoreConfig
from .._core.errors import (
    CorruptRecordError,
    InvalidSessionDataError,
    NotReplicatedError,
    SessionStoreError,
    StoreClosedError,
    StoreUnavailableError,
)
from .._core.expiry import Clock, expiry_after_write, now_ms, slides_on_read
from .._core.ids import new_session_id
from .._core.json_values import JSONValue
from .._core.log import logger, short_id
from .._core.protocol import LifecycleSessionStore
from ._unique import GUARD_KEY, begin_move, claim, end_move, guard_id

__all__ = ("ResponseStartedError", "Session")

Change = Callable[[SessionData], SessionData]
Outcome = Literal["set", "expire"]
P = ParamSpec("P")
T = TypeVar("T")
# Ids are 258 random bits: a second collision in a row means something else is wrong.
_CREATE_ATTEMPTS = 3
# How long cleaning up after a failed start may take, even when the request is cancelled.
_CLEANUP_SECONDS = 5.0
# Store errors that make a request a 503: the store could not do, or confirm, what was asked.
_UNAVAILABLE = (StoreUnavailableError, StoreClosedError, NotReplicatedError)


class ResponseStartedError(SessionStoreError, RuntimeError):
    """`start`, `rotate` or `end` after the response began: the new id could not reach the
    client, so nothing was changed. Change the session before sending the response."""


class Session:
    """The session of one request, from the id its cookie or header presented.

    Every method may raise `StoreUnavailableError`; the middleware answers it with 503. Made by
    `SessionMiddleware`; reach it with `session_of(request)` or the framework helpers.
    """

    def __init__(
        self,
        store: LifecycleSessionStore,
        presented: str | None,
        config: SessionStoreConfig | None,
        clock: Clock,
    ) -> None:
        self._store = store
        self._id = presented
        self._config = config
        self._clock = clock
        self._data: SessionData | None = None
        self._loaded = False
        self.outcome: Outcome | None = None
        """What the response must tell the client: a new or refreshed id, or that it ended."""
        self.unavailable: SessionStoreError | None = None
        """The store failure this request met, if any: the middleware answers 503 for it."""
        self.sent = False
        """True once the response (or WebSocket accept) carrying the outcome has gone out."""

    @property
    def id(self) -> str | None:
        """The session id this request presented or was given; `None` if it has none."""
        return self._id

    @property
    def store(self) -> LifecycleSessionStore:
        """The store the session lives in: the same one for every request of this process."""
        return self._store

    def cookie_max_age(self) -> int | None:
        """Seconds the client should keep the id: about as long as the session can live.

        A store that slides on read keeps it one lifetime from now; one that does not, one
        lifetime from when the session started; never past the absolute timeout.
        """
        config, data = self._config, self._data
        if config is None or data is None:
            return None
        now = now_ms(self._clock)
        written = now if slides_on_read(config) or data.created_at is None else data.created_at
        expires_at = expiry_after_write(config, written, data.created_at)
        return None if expires_at is None else max(0, -(-(expires_at - now) // 1000))

    async def load(self) -> SessionData | None:
        """The session's data, read once per request; `None` if there is no live session.

        An unreadable record counts as no session: it is logged (with a short id) and kept.
        """
        if not self._loaded:
            if self._id is not None:
                self._data = await self._read(self._id)
                self._note_read()
            self._loaded = True
        return self._data

    async def may_call(self, chain: str, method: str) -> bool:
        """True if the session is live and may call `method` on `chain`."""
        data = await self.load()
        return data is not None and data.allows(chain, method)

    async def start(
        self,
        origin: str,
        permissions: Mapping[str, Iterable[str]] | None = None,
        *,
        app_data: Mapping[str, JSONValue] | None = None,
        one_per: str | None = None,
    ) -> SessionData | None:
        """Start a session under a fresh random id and send it to the client.

        A session this request already had is ended. With `one_per` (a wallet address, say), at
        most one live session holds each origin and key: if another live session holds them,
        nothing changes and the answer is `None`; if this request's own session holds them, it
        is returned as it is.
        """
        self._check_not_sent()
        # Stamped now: the absolute timeout and the cookie's lifetime count from it.
        created_at = now_ms(self._clock)
        data = SessionData("-", origin, permissions or {}, created_at, app_data=app_data or {})
        if one_per is not None and not isinstance(one_per, str):
            msg = f"one_per must be a str (a wallet address, say), got {one_per!r}"
            raise InvalidSessionDataError(msg)
        guard = None if one_per is None else guard_id(origin, one_per)
        if guard is not None:
            current = await self.load()
            if current is not None and current.app_data.get(GUARD_KEY) == guard:
                return current
            data = data.with_app_data({GUARD_KEY: guard})
        data = await self._create(data)
        if guard is not None:
            try:
                claimed = await self._guarded(claim, self._store, guard, data)
            except BaseException:
                await self._discard(data.id)
                raise
            if not claimed:
                await self._discard(data.id)
                return None
        old_id = self._id
        self._id, self._data, self._loaded, self.outcome = data.id, data, True, "set"
        if old_id is not None:
            await self._end_quietly(old_id)
        return data

    async def update(self, change: Change) -> SessionData | None:
        """Replace the data with ``change(current)`` atomically (the store's `update`).

        `change` may run more than once and must have no side effects. `None` if there is no
        live session.
        """
        if self._id is None:
            return None
        self._data = await self._guarded(self._store.update, self._id, change)
        self._loaded = True
        self._note_read()
        return self._data

    async def grant(self, chain: str, *methods: str) -> SessionData | None:
        """Allow `methods` on `chain` (those already allowed stay as they are)."""
        return await self.update(lambda data: data.granted(chain, *methods))

    async def revoke(self, chain: str, *methods: str) -> SessionData | None:
        """Withdraw `methods` on `chain`, or the whole chain when none are named."""
        return await self.update(lambda data: data.revoked(chain, *methods))

    async def update_app_data(self, values: Mapping[str, JSONValue]) -> SessionData | None:
        """Merge `values` into the session's application data."""
        return await self.update(lambda data: data.with_app_data(values))

    async def rotate(self, change: Change | None = None) -> SessionData | None:
        """Move the session to a fresh id (at login, at any privilege change), then apply `change`.

        Afterwards only the new id works, and it goes to the client. `change` is tried on the
        current data first, so one that raises changes nothing. Of concurrent rotations of one
        session exactly one wins; the others get `None`, see no session for the rest of the
        request, and leave the client's cookie alone so the winner's new one stands.
        """
        self._check_not_sent()
        current = await self.load()
        old_id = self._id
        if current is None or old_id is None:
            return None
        if change is not None:
            tried = change(current)
            if not isinstance(tried, SessionData):
                msg = f"change must return a SessionData, got {tried!r}"
                raise InvalidSessionDataError(msg)
        new_id = new_session_id()
        guard = current.app_data.get(GUARD_KEY)
        if isinstance(guard, str):  # the guard stands for both ids while the session moves
            await self._guarded(begin_move, self._store, guard, old_id, new_id)
        moved = await self._guarded(self._store.rotate, old_id, new_id)
        if moved is None:  # lost to a concurrent rotate (or gone): the client's cookie stays
            self._id, self._data, self.outcome = None, None, None
            return None
        self._id, self.outcome = new_id, "set"
        if isinstance(guard, str):
            await self._guarded(end_move, self._store, guard, old_id, new_id)
        if change is None:
            self._data = await self._guarded(self._store.get, new_id)
        else:
            self._data = await self._guarded(self._store.update, new_id, change)
        return self._data

    async def end(self) -> None:
        """Delete the session and tell the client to drop its id (logout)."""
        self._check_not_sent()
        if self._id is not None:
            await self._guarded(self._store.delete, self._id)
        self._id, self._data, self._loaded, self.outcome = None, None, True, "expire"

    def _check_not_sent(self) -> None:
        if self.sent:
            msg = "the response has started: a new session id could no longer reach the client"
            raise ResponseStartedError(msg)

    async def _create(self, data: SessionData) -> SessionData:
        for _ in range(_CREATE_ATTEMPTS):
            candidate = attrs.evolve(data, id=new_session_id())
            if await self._guarded(self._store.create, candidate.id, candidate):
                return candidate
        msg = "the store refused three fresh random session ids in a row"
        raise SessionStoreError(msg)

    async def _discard(self, session_id: str) -> None:
        """Delete a session the client will never learn of; shielded, bounded, never raising."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_SECONDS):
            try:
                await self._store.delete(session_id)
            except SessionStoreError as exc:
                logger.warning("could not remove unused session %s: %s", short_id(session_id), exc)

    async def _end_quietly(self, session_id: str) -> None:
        """End the session a new one replaces; if that fails it simply expires."""
        try:
            await self._store.delete(session_id)
        except SessionStoreError as exc:
            logger.warning("could not end replaced session %s: %s", short_id(session_id), exc)

    async def _read(self, session_id: str) -> SessionData | None:
        try:
            return await self._guarded(self._store.get, session_id)
        except CorruptRecordError as exc:
            logger.warning(
                "session %s is unreadable, treated as none: %s", short_id(session_id), exc.reason
            )
            return None

    def _note_read(self) -> None:
        # A store that slides on read has just moved the expiry: the cookie follows it.
        config = self._config
        if self._data is not None and self.outcome is None and config is not None:
            self.outcome = "set" if slides_on_read(config) else None

    async def _guarded(
        self, call: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run one store call, remembering a store failure so the response can be a 503."""
        try:
            return await call(*args, **kwargs)
        except _UNAVAILABLE as exc:
            self.unavailable = exc
            raise
