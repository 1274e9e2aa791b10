"""The protocols stores satisfy structurally: `SessionStore` (the contract) and its seams.

`Backend` (private) is the seam under stores whose storage blocks: try now, else in a thread.
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

    A session is expired once the store's clock, in whole milliseconds, reads later than its
    expiry. Every method refuses a `session_id` that is not a non-empty str before touching
    storage. `isinstance` checks only that the methods exist; `walletmesh_sessions.testing`
    checks their behaviour.
    """

    async def set(self, session_id: str, data: SessionData) -> None:
        """Store `data` under `session_id`, replacing any; its expiry: now + lifetime, or none."""
        ...

    async def get(self, session_id: str) -> SessionData | None:
        """Same as `validate_and_refresh`: the session, or `None` if missing or expired."""
        ...

    async def get_all(self) -> Mapping[str, SessionData]:
        """Every unexpired session by id, in a new mapping (slid when the store refreshes).

        Expired sessions are removed, or left to `clean_expired`.
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

        A refreshing store with a lifetime slides the expiry to now + lifetime, and changes
        nothing else.
        """
        ...

    async def clean_expired(self) -> int:
        """Remove every expired session; return how many this call removed."""
        ...


@runtime_checkable
class LifecycleSessionStore(SessionStore, Protocol):
    """A `SessionStore` with atomic lifecycle operations, so apps never compose get + set.

    Each is atomic against every other call on the same storage, from any task or process:
    one of concurrent creators wins, `update` loses no write, and after `rotate` only the new
    id works, with no moment where neither does.
    """

    async def create(self, session_id: str, data: SessionData) -> bool:
        """Store `data` only if no unexpired session holds `session_id` (an expired one may be
        replaced); `True` if it was stored. Its expiry is as after `set`."""
        ...

    async def update(
        self, session_id: str, change: Callable[[SessionData], SessionData]
    ) -> SessionData | None:
        """Replace an unexpired session's data with ``change(current)``, atomically.

        `change` may run more than once (compare-and-set with retry): no side effects. Returns
        the new data, or `None` if missing or expired. The expiry changes as after a read;
        `created_at` stays whatever `change` returns. If `change` raises, nothing is written.
        """
        ...

    async def rotate(self, session_id: str, new_id: str | None = None) -> str | None:
        """Move an unexpired session to `new_id` (default: `new_session_id()`); return it.

        The data's `id` follows when it was the old id; the expiry changes as after a read.
        `None` if missing or expired; `SessionIdTakenError` if a live session holds `new_id`.
        """
        ...


@runtime_checkable
class ClosableSessionStore(SessionStore, Protocol):
    """A `SessionStore` closed with `aclose()` or ``async with`` (which gives back the store)."""

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
    """A store that shows its records as they are, for operators and tools."""

    async def inspect(self, session_id: str | None = None) -> list[SessionRecord]:
        """Every record (or the one named), expired and unreadable ones included; no changes."""
        ...


@runtime_checkable
class IterableRecords(Protocol):
    """A store that shows its records as `inspect` does, a page at a time, in constant memory."""

    def iter_records(self, batch_size: int = 500) -> AsyncIterator[SessionRecord]:
        """Every record as `inspect` shows it (nothing changes), about `batch_size` per call.

        In the store's order; an unreadable record is yielded (`data` `None`, reason in `error`).
        Records written or deleted meanwhile may or may not appear. A bad `batch_size` raises
        `InvalidConfigError` on the first step.
        """
        ...


@runtime_checkable
class IterableSessionStore(SessionStore, Protocol):
    """A `SessionStore` that lists its live sessions a batch at a time, in constant memory.

    `walletmesh_sessions.iter_sessions(store)` uses it, or `get_all` for a store without it.
    """

    def iter_sessions(self, batch_size: int = 500) -> AsyncIterator[tuple[str, SessionData]]:
        """Each live session as ``(session_id, data)``, reading at most `batch_size` at a time.

        Each session live when its batch is read comes once (on Redis, unless the server
        resizes its key space meanwhile, as SCAN allows). Batches are decided as `get_all`
        decides. Sessions written or deleted meanwhile may or may not appear; unreadable
        records are skipped with a warning. A bad `batch_size` raises `InvalidConfigError`.
        """
        ...


@runtime_checkable
class FullSessionStore(
    LifecycleSessionStore, IterableSessionStore, ClosableSessionStore, Inspectable, Protocol
):
    """Everything every shipped store has, plus `config`: what `open_store` returns.

    `isinstance` works on it; `issubclass` does not (it has a non-method member).
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
    """Blocking storage under a store (private); session ids are checked before any call.

    Every operation takes `wait` first. With ``wait=False`` it must not block: it finishes at
    once, or changes nothing and answers `DEFERRED`, and the store calls it again with
    ``wait=True`` in a worker thread.
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
        """About `n` records decided as `get_all` decides, and the next cursor (`None`: done).

        `cursor` is `None` to start, else what the previous page returned (opaque to the store).
        """
        ...

    def inspect_page(
        self, wait: bool, cursor: object, n: int
    ) -> tuple[list[SessionRecord], object] | Deferred:
        """One batch of `iter_records`: about `n` records as `inspect` shows them (as `page`)."""
        ...
