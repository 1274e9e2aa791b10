"""The library's errors for redis-py's: what the store raises when Redis fails or is late."""

from __future__ import annotations

import redis
from redis.exceptions import (
    ClusterError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)

from .._core.errors import NotReplicatedError, SessionStoreError, StoreUnavailableError
from .replicas import ReplicasBehind
from .replies import error_code

__all__ = ("late", "translate")


# A cluster without an owner for a slot (failover under way) is unavailable too.
_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    ReadOnlyError,
    OSError,
    ClusterError,
    TryAgainError,
    RedisClusterException,
)


def translate(exc: Exception, operation: str) -> SessionStoreError:
    """The library's error for a redis-py exception raised during `operation`.

    The message names the operation and the kind of error only: Redis error replies may echo
    command arguments (keys, so session ids, and records), so an error reply's own text is
    cut down to its code in place too, and only then kept as the cause.
    """
    if isinstance(exc, ReplicasBehind):
        return NotReplicatedError(f"Redis wrote ({operation}) on the primary only: {exc}")
    if isinstance(exc, ResponseError):
        code = error_code(exc)
        exc.args = (f"{code} (the rest of the reply is withheld: it may echo arguments)",)
        kind = f"{type(exc).__name__} {code}"
    else:
        kind = type(exc).__name__
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailableError(f"Redis is unavailable ({operation}): {kind}")
    return SessionStoreError(f"Redis refused a command ({operation}): {kind}")


def late(operation: str, budget: float | None) -> StoreUnavailableError:
    """The error of a call that ran out of time (its `budget`, or the deadline it was given)."""
    within = "before the call's deadline" if budget is None else f"within {budget:.3g} s"
    return StoreUnavailableError(
        f"Redis did not answer ({operation}) {within}: no reply, or no free connection"
    )
