"""``wait_for_replicas``: every round trip that writes ends with ``WAIT``, in the same pipeline;
too few confirmations mark the replies `Unconfirmed`, and the call fails once it has ended."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import redis

from .._core.errors import InvalidConfigError
from .exchanges import Args
from .scripts import LOOK_BEFORE_SLIDE, READ_AND_SLIDE

__all__ = (
    "ReplicaWait",
    "ReplicasBehind",
    "Unconfirmed",
    "replica_wait",
    "with_wait",
    "without_wait",
)


class ReplicaWait(NamedTuple):
    """``WAIT replicas timeout_ms`` after every round trip that writes."""

    replicas: int
    timeout_ms: int


def replica_wait(
    replicas: object, timeout: object, call_timeout: float | None
) -> ReplicaWait | None:
    """The checked setting for `wait_for_replicas` and `replica_timeout`; `None` for 0.
    `replica_timeout` must be shorter than `call_timeout`, which bounds the wait's reply."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        msg = f"wait_for_replicas must be an int >= 0, got {replicas!r}"
        raise InvalidConfigError(msg)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < math.inf  # WAIT takes whole milliseconds: infinity has none
    ):
        msg = f"replica_timeout must be a positive, finite number of seconds, got {timeout!r}"
        raise InvalidConfigError(msg)
    if replicas and call_timeout is not None and not timeout < call_timeout:
        msg = f"replica_timeout ({timeout!r} s) must be shorter than timeout ({call_timeout!r} s)"
        raise InvalidConfigError(msg)
    return ReplicaWait(replicas, max(1, round(timeout * 1000))) if replicas else None


# Commands that may write, and the scripts that never do: a round trip with none of the
# former is not followed by WAIT, which would wait for nothing (or for earlier writes).
_WRITES = frozenset({"SET", "DEL", "EVALSHA"})
_READ_ONLY_SCRIPTS = frozenset({LOOK_BEFORE_SLIDE.sha})


def _writes(command: Args) -> bool:
    if command[0] == "EVALSHA":
        return command[1] not in _READ_ONLY_SCRIPTS
    return command[0] in _WRITES


class ReplicasBehind(redis.RedisError):
    """WAIT counted fewer replicas than asked for: the write is on the primary only."""


def with_wait(commands: list[Args], wait: ReplicaWait | None) -> list[Args]:
    """`commands`, followed by ``WAIT`` if they may write and `wait` asks for replicas."""
    if wait is None or not any(_writes(command) for command in commands):
        return commands
    return [*commands, ("WAIT", wait.replicas, wait.timeout_ms)]


def _wrote(command: Args, reply: Any) -> bool:
    """Whether `command`, answered `reply`, changed anything (what WAIT has to confirm)."""
    if isinstance(reply, Exception) or not _writes(command):
        return False
    if command[0] == "EVALSHA" and command[1] == READ_AND_SLIDE.sha:
        return int(reply[0]) == 1 if isinstance(reply, list) else False
    if command[0] == "SET":
        return reply is not None  # SET NX on a taken key: nil
    return bool(reply)  # DEL: how many; the other scripts: 1 or 0


def without_wait(commands: list[Args], replies: list[Any], wait: ReplicaWait) -> list[Any]:
    """The replies to `commands`, `Unconfirmed` if WAIT counted too few replicas for what
    they wrote (a round trip that wrote nothing has nothing to confirm)."""
    acked = replies.pop()
    if not any(_wrote(c, r) for c, r in zip(commands, replies, strict=True)):
        return replies
    if isinstance(acked, Exception):
        raise acked
    if int(acked) < wait.replicas:
        msg = f"{int(acked)} of {wait.replicas} replicas confirmed within {wait.timeout_ms} ms"
        return Unconfirmed(replies, msg)
    return replies


class Unconfirmed(list[Any]):
    """Replies whose writes too few replicas confirmed: the operation goes on to its end (an
    undo included), then fails with `NotReplicatedError`."""

    def __init__(self, replies: list[Any], shortfall: str) -> None:
        super().__init__(replies)
        self.shortfall = shortfall
