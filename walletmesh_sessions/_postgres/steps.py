"""What the operations of `PostgresSessionStore` are made of, and how a call runs one.

Each operation is a generator that yields the statements it wants run (a `Statement`, or
`BEGIN` to run the rest in one transaction) and receives their results: the rows of a query,
or the number of rows a write touched. A bulk operation also yields `CHECKPOINT` between
steps of its decoding, where the runner lets other tasks run. The runners (`runners`) drive
them on a connection, on asyncio or in worker threads: an operation is written once for both.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Final, NamedTuple, TypeVar

import attrs

from .._core.codec import Decode
from .._core.data import SessionStoreConfig
from .._core.expiry import Clock
from .sql import Statements

__all__ = (
    "BEGIN",
    "CHECKPOINT",
    "Attempts",
    "Begin",
    "Op",
    "Plan",
    "Spec",
    "Statement",
    "Unsure",
    "row_key",
)

T = TypeVar("T")


class Statement(NamedTuple):
    """One statement and its parameters; `fetch`: answer its rows, else its row count."""

    query: bytes
    params: Sequence[Any] | Mapping[str, Any] | None = None
    fetch: bool = False


class Begin(enum.Enum):
    """The type of `BEGIN` and `CHECKPOINT` (see the module)."""

    BEGIN = "begin"
    CHECKPOINT = "checkpoint"


BEGIN: Final = Begin.BEGIN
CHECKPOINT: Final = Begin.CHECKPOINT

Op = Generator["Statement | Begin", Any, T]


class Unsure(Exception):
    """Raised by an operation retried after a lost connection when it cannot tell whether its
    earlier attempt took effect (the row changed meanwhile)."""


@attrs.define
class Attempts:
    """What the attempts of one non-idempotent call share: the `intent` it recorded before it
    may commit, and whether an earlier attempt lost its connection after that (`unsure`)."""

    intent: Any = None
    unsure: bool = False


@attrs.frozen
class Plan:
    """How to run an operation: `make` gives a fresh generator for each attempt; `retry`:
    it is idempotent (see `Tries.failed` for the others)."""

    name: str
    make: Callable[[], Op[Any]]
    retry: bool = True
    attempts: Attempts | None = None

    @classmethod
    def recognising(cls, name: str, make: Callable[[Attempts], Op[Any]]) -> Plan:
        """A plan for a non-idempotent operation whose attempts share one `Attempts`."""
        attempts = Attempts()
        return cls(name, lambda: make(attempts), retry=False, attempts=attempts)


@attrs.frozen
class Spec:
    """What the operations need: the table's statements, the config, the clock, a decoder."""

    sql: Statements
    config: SessionStoreConfig
    clock: Clock
    decode: Decode


def row_key(session_id: str) -> bytes:
    """The ``id`` column's value for `session_id`: its UTF-8 bytes."""
    return session_id.encode("utf-8")
