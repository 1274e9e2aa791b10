"""The protocols stores satisfy structurally: `SessionStore` (the seven methods) and its seams.

`SessionStore` is the contract. `LifecycleSessionStore` adds the atomic lifecycle operations
(create-if-absent, update, rotate the id). `ClosableSessionStore` adds closing (`aclose`,
``async with``), `Inspectable` the operator's read-only view that the command line uses, and
`IterableRecords` the same view a page at a time.
`FullSessionStore` is all of them at once but `IterableRecords`, plus `config`: what
`open_store` returns (every shipped store also has `iter_records`).
`Backend` (private) is the seam under stores whose storage blocks (a SQLite file): try now,
else defer to a thread.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Final, Protocol, TypeVar, runtime_checkable

from .data import SessionData, SessionRecord, SessionStoreConfig
from .session_map import SessionMap

__all__ = (
    "DEFERRED",
    "Backend",
    "ClosableSessionStore",
    "Deferred",
    "FullSessionStore",
    "Inspectable",
    "IterableSessionStore",
    "LifecycleSessionStore",
    "SessionStore",
)

_Self = TypeVar("_Self", bound="ClosableSessionStore")


@runtime_checkable
class SessionStore(Protocol):
    """Async storage of sessions, satisfied structurally: stores never inherit from it.

    A session with an expiry is expired when the store's clock reads later than that expiry,
    in whole milliseconds: at exactly its expiry it is still valid. Every method that takes a
    `session_id` refuses one that is not a non-empty str before touching storage.
    `isinstance(x, SessionStore)` checks only that the methods exist; the conformance kit in
    `walletmesh_sessions.testing` checks their behaviour.
    """

    async def set(self, session_id: str, data: SessionData) -> None:
        """Store `data` under `session_id`, replacing any session there.

        Its expiry becomes now + lifetime, or none when the store has no lifetime.
        """
        ...

    async def get(self, session_id: str) -> SessionData | None:
        """Same as `validate_and_refresh`: the session, or `None` if missing or expired."""
        ...

    async def get_all(self) -> Mapping[str, SessionData]:
        """Every session that has not expired, keyed by session id, in a new mapping.

        Slides each returned session's expiry when the store refreshes on access. Never returns
        an expired session; it may remove them or leave them to `clean_expired`.
        """
        ...

    async def delete(self, session_id: str) -> None:
        """Remove the session; removing a missing one is not an error."""
        ...

    async def clear(self) -> None:
        """Remove every session of this store, and nothing else that shares its storage."""
        ...

    async def validate_and_refresh(self, session_id: str) -> SessionData | None:
        """The session if present and not expired, else `None` (an expired one is removed).

        When the store refreshes on access and has a lifetime, the expiry slides to
        now + lifetime. Only the expiry changes: data read earlier is never written back.
        """
        ...

    async def clean_expired(self) -> int:
        """Remove every expired session; return how many this call removed."""
        ...


@runtime_checkable
class LifecycleSessionStore(SessionStore, Protocol):
    """A `SessionStore` with atomic lifecycle operations, so apps never compose get + set.

    Each method is atomic against every other call on the same storage, from any task or
    process: of concurrent creators of one id exactly one wins, no concurrent write is lost
    or undone by `update`, and after `rotate` only the new id works, with no moment where
    neither does. Every shipped store satisfies it structurally.
    """

    async def create(self, session_id: str, data: SessionData) -> bool:
        """Store `data` only if no unexpired session holds `session_id` (an expired one may be
        replaced); `True` if it was stored. Its expiry is as after `set`."""
        ...

    async def update(
        self, session_id: str, change: Callable[[SessionData], SessionData]
    ) -> SessionData | None:
        """Replace an unexpired session's data with ``change(current)``, atomically.

        `change` is a plain function; it may be called more than once (compare-and-set with
        retry), so it must not have side effects. Returns the new data, or `None` if the
        session is missing or expired. The expiry changes as after a read. The session keeps
        its `created_at` whatever `change` returns, so the absolute timeout cannot be escaped.
        An exception raised by `change` propagates as it is, and nothing is written.
        """
        ...

    async def rotate(self, session_id: str, new_id: str | None = None) -> str | None:
        """Move an unexpired session to `new_id` (default: `new_session_id()`); return it.

        The data's `id` follows when it equalled the old session id. The expiry changes as
        after a read; `created_at` stays. `None` if the session is missing or expired. A
        `new_id` held by an unexpired session raises `SessionIdTakenError`, changing nothing.
        """
        ...


@runtime_checkable
class ClosableSessionStore(SessionStore, Protocol):
    """A `SessionStore` that is also closed with `aclose()` or ``async with``.

    ``async with store as s`` gives back the store itself, with its own type.
    """

    async def aclose(self) -> None:
        """Release connections or files; later calls raise `StoreClosedError`. Idempotent."""
        ...

    async def __aenter__(self: _Self) -> _Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class Inspectable(Protocol):
    """A store that shows its records as they are, for operators and tools.

    Every shipped store has it: the command line lists, shows and counts through it.
    """

    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]:
        """Every record (or the one named), expired and unreadable ones included.

        Nothing is refreshed or removed.
        """
        ...


@runtime_checkable
class IterableRecords(Protocol):
    """A store that shows its records as `inspect` does, a page at a time, in constant memory.

    Every shipped store has it: the command line lists and counts through it, and falls back
    to `inspect` for a store without it.
    """

    def iter_records(self, batch_size: int = 500) -> AsyncIterator[SessionRecord]:
        """Every record, expired and unreadable ones included, reading about `batch_size` a time.

        Nothing is refreshed or removed, and an unreadable record is yielded (with `data`
        `None` and the reason in `error`), never raised. Records come in the store's own
        order; each page is one call, bounded by the store's timeout. Records written or
        deleted during the iteration may or may not appear. A `batch_size` that is not a
        positive int raises `InvalidConfigError` on the first step.
        """
        ...


@runtime_checkable
class IterableSessionStore(SessionStore, Protocol):
    """A `SessionStore` that lists its live sessions a batch at a time, in constant memory.

    Every shipped store satisfies it structurally. For any store, the function
    `walletmesh_sessions.iter_sessions(store)` uses this method when there is one and falls
    back to `get_all` otherwise.
    """

    def iter_sessions(self, batch_size: int = 500) -> AsyncIterator[tuple[str, SessionData]]:
        """Each live session as ``(session_id, data)``, reading at most `batch_size` at a time.

        Yields each session that is live when its batch is read, at most once (on Redis,
        at most once unless the server resizes its key space during the iteration, as SCAN
        allows). Each batch is decided as `get_all` decides: expired sessions met are removed
        or left as the store's `get_all` does, and a refreshing store slides the expiry of
        what it yields, compare-and-set. Sessions written or deleted during the iteration may
        or may not appear. Unreadable records are skipped with a warning. A `batch_size`
        that is not a positive int raises `InvalidConfigError` on the first step.
        """
        ...


@runtime_checkable
class FullSessionStore(
    LifecycleSessionStore, IterableSessionStore, ClosableSessionStore, Inspectable, Protocol
):
    """Everything every shipped store has: what `open_store` returns, so no narrowing is needed.

    The seven methods of `SessionStore`, the lifecycle of `LifecycleSessionStore`, the
    batched iteration of `IterableSessionStore`, `inspect` of `Inspectable`, closing of
    `ClosableSessionStore` (``async with store as s`` gives back the store with its own type)
    and the read-only `config`. Satisfied structurally, as the others are. `isinstance`
    works on it; `issubclass` does not, as for any protocol with a non-method member.
    """

    @property
    def config(self) -> SessionStoreConfig:
        """The store's lifetime, refresh and absolute-timeout settings (read-only)."""
        ...


class Deferred(enum.Enum):
    """The type of `DEFERRED`: a backend's answer when a call must wait in a worker thread."""

    DEFERRED = "deferred"

    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED: Final = Deferred.DEFERRED


class Backend(Protocol):
    """Blocking storage under a store (private): each call is tried now, else in a thread.

    Every operation takes `wait` first. With ``wait=False`` it runs on the event loop's thread
    and must not block: it finishes at once, or changes nothing and answers `DEFERRED`. The
    store then calls it again with ``wait=True`` in a worker thread, where it may wait. Session
    ids are checked by the store before any call.
    """

    def set(self, wait: bool, session_id: str, data: SessionData) -> Deferred | None: ...

    def get(self, wait: bool, session_id: str) -> SessionData | Deferred | None: ...

    def get_all(self, wait: bool) -> SessionMap | Deferred: ...

    def create(self, wait: bool, session_id: str, data: SessionData) -> bool | Deferred: ...

    def update(
        self, wait: bool, session_id: str, change: Callable[[SessionData], SessionData]
    ) -> SessionData | Deferred | None: ...

    def rotate(self, wait: bool, session_id: str, new_id: str) -> str | Deferred | None: ...

    def delete(self, wait: bool, session_id: str) -> Deferred | None: ...

    def clear(self, wait: bool) -> Deferred | None: ...

    def clean_expired(self, wait: bool) -> int | Deferred: ...

    def inspect(self, wait: bool, session_id: str | None) -> list[SessionRecord] | Deferred: ...

    def close(self) -> None:
        """Release what the backend holds; blocking, called in a worker thread."""
        ...

    def page(self, wait: bool, cursor: object, n: int) -> tuple[SessionMap, object] | Deferred:
        """One batch of an iteration: about `n` records decided as `get_all` decides them.

        `cursor` is `None` to start, else what the previous page returned (opaque to the
        store); the returned cursor is `None` once the iteration is complete.
        """
        ...

    def inspect_page(
        self, wait: bool, cursor: object, n: int
    ) -> tuple[list[SessionRecord], object] | Deferred:
        """One batch of `iter_records`: about `n` records as `inspect` shows them.

        The cursor works as for `page`; nothing is refreshed or removed.
        """
        ...
