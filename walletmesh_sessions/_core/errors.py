"""The library's exceptions: one base class, `SessionStoreError`, and one rule for the rest.

Each subclass also inherits the builtin that says who can fix it:

- the caller's mistake, a value the caller passed that the library cannot use (an argument,
  a configuration, a new id that a live session holds), is also a `ValueError`, or a
  `TypeError` when the type is wrong: the caller fixes its input;
- the state of the store or of its backend is also the builtin of that state: `RuntimeError`
  for the store object (closed), `ConnectionError` (an `OSError`) for a backend that cannot
  be reached or answer in time, `ImportError` for a missing optional extra;
- what the storage holds or did, which no input of the caller caused and no builtin names (a
  corrupt record, a write the replicas have not confirmed), is a `SessionStoreError` only:
  ``except ValueError`` around a call with a bad id never hides damaged storage.
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
    """A session id that is not a str at all (an int, None, bytes): also a `TypeError`.

    Still an `InvalidSessionIdError`, so one ``except`` catches every bad id.
    """


class InvalidSessionDataError(SessionStoreError, TypeError):
    """Session data that is not a `SessionData`, or a field of it with the wrong type."""


class InvalidConfigError(SessionStoreError, ValueError):
    """A store configuration value that cannot be used (a lifetime <= 0, a bad prefix, ...)."""


class CorruptRecordError(SessionStoreError):
    """A stored record under the store's prefix that is not a valid session record.

    The record is left in place; `session_id` names it. Not a `ValueError`: the caller's
    arguments were fine, the storage is not.
    """

    def __init__(self, session_id: str, reason: str) -> None:
        self.session_id = session_id
        self.reason = reason
        super().__init__(f"stored record for session id {session_id!r} is corrupt: {reason}")


class SessionIdTakenError(SessionStoreError, ValueError):
    """`rotate` was asked to move a session to an id that an unexpired session holds.

    Nothing was changed; `session_id` names the id that is taken.
    """

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
    """A write is done on the Redis primary, but fewer replicas than the store waits for
    confirmed it in time: a failover may still lose it.

    Not a `StoreUnavailableError`: the write happened, so retrying it is not the remedy.
    """
