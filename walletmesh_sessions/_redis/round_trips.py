"""One round trip's commands as the requests a runner's sender carries out (sans-IO).

A round trip (what an exchange yields once) becomes a generator of requests; the sender sends
back each answer, or throws in the redis-py error it raised, and the generator returns the
round trip's replies. What to send and what the answers mean is written here once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from typing import Any, NamedTuple

import redis

from .cluster_steps import LOCATE, REFRESH, At
from .exchanges import Args
from .replicas import ReplicaWait, with_wait, without_wait

__all__ = (
    "Call",
    "ConnectionDropped",
    "Locate",
    "OnNode",
    "Pipeline",
    "Ready",
    "Refresh",
    "Request",
    "RoundTrip",
    "on_cluster",
    "on_one_server",
)


class Call(NamedTuple):
    """Send one command (on a cluster, where the client routes it); answer: its reply."""

    args: Args


class Pipeline(NamedTuple):
    """Send these commands in one pipeline (no transaction); answer: replies, errors as values."""

    commands: list[Args]


class Ready(NamedTuple):
    """Have the cluster client know the topology (made or started); answer: None."""


class OnNode(NamedTuple):
    """Send one command to the cluster node at ``host:port``; answer: its reply."""

    address: str
    args: Args


class Locate(NamedTuple):
    """Each slot's primary address in the client's view of the topology, or None."""

    slots: tuple[int, ...]


class Refresh(NamedTuple):
    """Wait `pause` seconds, then read the cluster's topology again; answer: None."""

    pause: float


Request = Call | Pipeline | Ready | OnNode | Locate | Refresh
RoundTrip = Generator[Request, Any, list[Any]]

# A node's answer that is an error stays a value: the cluster exchanges decide what it means.
_NODE_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)


class ConnectionDropped(redis.ConnectionError):
    """A cluster connection was closed while in use: the call fails, whichever node it was."""


def _one(args: Args) -> Generator[Request, Any, Any]:
    try:
        return (yield Call(args))
    except redis.exceptions.ResponseError as exc:
        return exc


def on_one_server(commands: list[Args], wait: ReplicaWait | None) -> RoundTrip:
    """`commands` on one server: one command, or one pipeline (with ``WAIT`` if asked for)."""
    sent = with_wait(commands, wait)
    if len(sent) == 1:
        return [(yield from _one(sent[0]))]
    replies: list[Any] = yield Pipeline(sent)
    return replies if sent is commands or wait is None else without_wait(commands, replies, wait)


def on_cluster(commands: list[Args], wait: ReplicaWait | None = None) -> RoundTrip:
    """`commands` on a cluster: those for one node or for the client's own view sent on their
    own, keyed ones through the client's routing (which follows MOVED and ASK).

    A cluster has no one node to load a script on: a load is answered with the script's hash
    at once, and an EVALSHA that needs the script becomes EVAL of the source, sent where the
    EVALSHA would go (which caches it there).
    """
    yield Ready()
    replies: list[Any] = [None] * len(commands)
    sources: dict[str, Any] = {}
    for i, command in enumerate(commands):
        body = command[1:] if isinstance(command[0], At) else command
        if body[:2] == ("SCRIPT", "LOAD"):
            sha = hashlib.sha1(str(body[2]).encode()).hexdigest()
            sources[sha] = body[2]
            replies[i] = sha.encode()
    routed: list[tuple[int, Args]] = []
    for i, command in enumerate(commands):
        at = command[:1] if isinstance(command[0], At) else ()
        body = command[len(at) :]
        if body[:2] == ("SCRIPT", "LOAD"):
            continue
        if body[:1] == ("EVALSHA",) and body[1] in sources:
            command = (*at, "EVAL", sources[body[1]], *body[2:])
        if at or command[0] in (LOCATE, REFRESH):
            replies[i] = yield from _local(command)
        else:
            routed.append((i, command))
    if len(routed) == 1:
        replies[routed[0][0]] = yield from _one(routed[0][1])
    elif routed:
        answers = yield Pipeline([command for _, command in routed])
        for (i, _), answer in zip(routed, answers, strict=True):
            replies[i] = answer
    return replies


def _local(command: Args) -> Generator[Request, Any, Any]:
    head, *args = command
    if head is LOCATE:
        return (yield Locate(tuple(args)))
    try:
        if head is REFRESH:
            yield Refresh(args[0])
            return None
        return (yield OnNode(head.address, tuple(args)))
    except _NODE_ERRORS as exc:
        if isinstance(exc, ConnectionDropped):
            raise
        # No node answering a refresh is no error: the exchange tries again, within the deadline.
        return None if head is REFRESH else exc
