"""`Conversation`: one operation in progress, walked from step to step (sans-IO).

It asks each step's exchange for the commands of the next round trip and feeds it the
replies; the runners only move the bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .._core.errors import SessionStoreError
from .cluster_steps import CLUSTER_EXCHANGES
from .exchanges import EXCHANGES, Args, Exchange
from .failures import translate
from .replicas import ReplicasBehind, Unconfirmed
from .steps import CHECKPOINT, Checkpoint, Op

__all__ = ("ClusterConversation", "Conversation")

T = TypeVar("T")


class Conversation(Generic[T]):
    """One operation in progress: which commands to send next, and what the replies mean.

    `exchanges` maps each step type to its exchange: one Redis server's here; a subclass may
    carry the same operations out on other topologies (a cluster).
    """

    __slots__ = ("_exchange", "_op", "name", "result", "shortfall")

    exchanges: dict[type, Callable[[Any], Exchange]] = EXCHANGES

    def __init__(self, op: Op[T], name: str) -> None:
        self._op = op
        self._exchange: Exchange | None = None
        self.name = name
        self.result: T
        self.shortfall: str | None = None  # writes too few replicas confirmed, if any

    def advance(self, replies: list[Any] | None) -> list[Args] | Checkpoint | None:
        """Feed the replies to the last commands (`None` at first and after a checkpoint).

        Returns the commands of the next round trip, `CHECKPOINT` where a runner may return
        to its event loop, or `None` once the operation is done (its value in `result`).
        """
        reply: Any = None
        if isinstance(replies, Unconfirmed):
            self.shortfall = self.shortfall or replies.shortfall
        talk = self._exchange
        if talk is not None:
            try:
                return talk.send(replies)  # type: ignore[arg-type]
            except StopIteration as stop:
                reply = stop.value
                self._exchange = None
        try:
            step = self._op.send(reply)
        except StopIteration as stop:
            self.result = stop.value
            if self.shortfall is not None:
                raise ReplicasBehind(self.shortfall) from None
            return None
        if step is CHECKPOINT:
            return CHECKPOINT
        talk = self._exchange = self.exchanges[type(step)](step)
        return next(talk)

    def fail(self, exc: Exception) -> SessionStoreError:
        """Abandon the operation; the library's error for `exc` (chain it as the cause)."""
        self._op.close()
        if self._exchange is not None:
            self._exchange.close()
        return translate(exc, self.name)


class ClusterConversation(Conversation[Any]):
    """A `Conversation` that carries the steps out on a cluster."""

    __slots__ = ()

    exchanges = CLUSTER_EXCHANGES
