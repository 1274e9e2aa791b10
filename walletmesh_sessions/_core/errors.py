"""The library's exceptions: one base, `SessionStoreError`, and one rule for the rest.

Each subclass also inherits the builtin that says who can fix it: the caller's input
(`ValueError`, `TypeError`), the store's or backend's state (`RuntimeError`, `ConnectionError`,
`ImportError`); what the storage holds or did (a corrupt record, an unconfirmed write) is a
`SessionStoreError` only, so ``except ValueError`` never hides damaged storage.
"""

from __future__ import annotations

__all__ = (
    "CorruptRecordError",
    "InvalidConfigError",
    "InvalidSessionDataError",
    "InvalidSessionIdError",
    "MissingDependencyError",
    "NotReplicatedError",
    "SessionIdTakenError",
    "SessionIdTypeError",
    "SessionStoreError",
    "StoreClosedError",
    "StoreUnavailableError",
)


class SessionStoreError(Exception):
    """Base class of every error this library raises on purpose."""


class InvalidSessionIdError(SessionStoreError, ValueError):
    """A session id that is not a non-empty str of valid Unicode text."""


class SessionIdTypeError(InvalidSessionIdError, TypeError):
    """A session id that is not a str at all (an int, None, bytes): also a `TypeError`."""


class InvalidSessionDataError(SessionStoreError, TypeError):
    """Session data that is not a `SessionData`, or a field of it with the wrong type."""


class InvalidConfigError(SessionStoreError, ValueError):
    """A store configuration value that cannot be used (a lifetime <= 0, a bad prefix, ...)."""


class CorruptRecordError(SessionStoreError):
    """A stored record that is not a valid session record; left in place, `session_id` names it."""

    def __init__(self, session_id: str, reason: str) -> None:
        self.session_id = session_id
        self.reason = reason
        super().__init__(f"stored record for session id {session_id!r} is corrupt: {reason}")


class SessionIdTakenError(SessionStoreError, ValueError):
    """`rotate` was asked for a new id that an unexpired session holds; nothing changed."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"session id {session_id!r} is already held by an unexpired session")


class StoreClosedError(SessionStoreError, RuntimeError):
    """The store was closed with `aclose()`; it cannot be used any more."""


class StoreUnavailableError(SessionStoreError, ConnectionError):
    """The storage backend could not be reached or did not answer in time."""


class MissingDependencyError(SessionStoreError, ImportError):
    """An optional extra is needed; the message names the `pip install` that fixes it."""


class NotReplicatedError(SessionStoreError):
    """A write done on the Redis primary that too few replicas confirmed in time: a failover
    may still lose it. Not a `StoreUnavailableError`: the write happened, retrying is no remedy."""
