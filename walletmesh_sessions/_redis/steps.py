"""The meaning-level steps an operation yields, and the replies it gets back (no I/O).

A step says what it means, never which command carries it out: `exchanges` turns each into
commands for one Redis server, and `cluster_steps` routes the same steps by hash slot.
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from typing import Any, Final, NamedTuple, TypeVar

__all__ = (
    "CHECKPOINT",
    "MORE",
    "SCAN_BATCH",
    "WRONG_TYPE",
    "Batch",
    "Checkpoint",
    "CompareAndDelete",
    "CompareAndSet",
    "Delete",
    "Key",
    "KeyStep",
    "More",
    "Move",
    "NonString",
    "Op",
    "Read",
    "ReadAndSlide",
    "ReadMany",
    "Scan",
    "ScanPage",
    "Slide",
    "Step",
    "Verdict",
    "Write",
    "WrongType",
)

T = TypeVar("T")

# How many keys a scan page should hold: the size of each ReadMany and of each Batch.
SCAN_BATCH = 500

Key = str | bytes


class Checkpoint(enum.Enum):
    """The type of `CHECKPOINT`."""

    CHECKPOINT = "checkpoint"

    def __repr__(self) -> str:
        return "CHECKPOINT"


class More(enum.Enum):
    """The type of `MORE`."""

    MORE = "more"

    def __repr__(self) -> str:
        return "MORE"


class WrongType(enum.Enum):
    """The type of `WRONG_TYPE`."""

    WRONG_TYPE = "wrong type"

    def __repr__(self) -> str:
        return "WRONG_TYPE"


CHECKPOINT: Final = Checkpoint.CHECKPOINT
"""Yielded between pages of a long scan: a place where a driver may return to its loop."""

MORE: Final = More.MORE
"""What `until_checkpoint` returns when the operation stopped at a checkpoint, not its end."""

WRONG_TYPE: Final = WrongType.WRONG_TYPE
"""The reply to `Read` of a key that holds a value that is not a string (a hash, a list...)."""


class NonString(NamedTuple):
    """In a `ReadMany` reply: the key holds a value of Redis type `kind`, not a string."""

    kind: str


class Scan(NamedTuple):
    """Scan for keys matching `pattern` (a glob naming one prefix) from `cursor` (`None` to
    start, else the opaque one a previous `ScanPage` gave). Reply: a `ScanPage`."""

    pattern: bytes
    cursor: object = None


class ScanPage(NamedTuple):
    """One page of a scan: some keys (maybe none, maybe repeated), and where to go on."""

    keys: list[Key]
    cursor: object  # None: the scan is complete


class Read(NamedTuple):
    """Read one key: its value, `None` if missing, or `WRONG_TYPE`."""

    key: Key


class ReadAndSlide(NamedTuple):
    """Read one key and, atomically, do what `after_read` decides at `now` for a store that
    slides on read: a live session whose expiry moves gets only its top-level ``expiresAt``
    changed, and a TTL of `ttl_ms`. Nothing is removed (an expired session is reported), and
    a record the driver cannot read safely is `UNDECIDED`. Reply: `None`, `WRONG_TYPE` or a
    `Slide`."""

    key: Key
    now: int
    lifetime_ms: int
    max_lifetime_ms: int | None
    ttl_ms: int
    look_first: bool = False
    """Ask first, writing nothing, whether the expiry would move: a store whose writes wait
    for replicas then holds up no read that writes nothing."""


class Verdict(enum.Enum):
    """What a `ReadAndSlide` decided."""

    KEPT = "kept"  # live; its expiry stays
    SLID = "slid"  # live; its expiry moved (written)
    EXPIRED = "expired"  # expired; left in place
    UNDECIDED = "undecided"  # not judged (a shape the driver does not rewrite); left in place


class Slide(NamedTuple):
    """The reply to `ReadAndSlide`: the bytes read and the verdict; for `SLID`, the bytes
    written and the key's TTL before (`None`: it had none), so the write can be undone."""

    verdict: Verdict
    raw: Key
    new: Key | None = None
    old_ttl_ms: int | None = None


class ReadMany(NamedTuple):
    """Read these keys: values aligned with `keys`, each also `None` or a `NonString`."""

    keys: tuple[Key, ...]


class Write(NamedTuple):
    """Store `text` under `key`, expiring after `ttl_ms` (or never: any old TTL goes)."""

    key: Key
    text: str
    ttl_ms: int | None


class CompareAndSet(NamedTuple):
    """If `key` holds exactly `old` (`None`: if it is absent), store `new` with a TTL of
    `ttl_ms`. Reply: written?"""

    key: Key
    old: Key | None
    new: Key
    ttl_ms: int | None


class CompareAndDelete(NamedTuple):
    """If `key` holds exactly `old`, delete it. Reply: deleted?"""

    key: Key
    old: Key


class Delete(NamedTuple):
    """Delete these keys, whatever they hold. Reply: how many existed."""

    keys: tuple[Key, ...]


class Move(NamedTuple):
    """Atomically: if `old_key` holds exactly `old` and `new_key` exactly `new_old` (`None`:
    is absent), delete `old_key` and store `text` under `new_key`. Reply: moved?

    On Redis Cluster, keys of two slots are two one-key steps in the order that is never
    unsafe: store under `new_key` if it still holds `new_old`, then compare-and-delete
    `old_key` (undoing the first if that fails): both ids may answer for a moment, never neither.
    """

    old_key: Key
    old: Key
    new_key: Key
    new_old: Key | None
    text: str
    ttl_ms: int | None


KeyStep = Read | Write | CompareAndSet | CompareAndDelete
"""A step on one key: what a `Batch` holds."""


class Batch(NamedTuple):
    """Independent one-key steps sent together (no transaction); replies aligned with steps."""

    steps: tuple[KeyStep, ...]


Step = Scan | ReadMany | Delete | Batch | Move | ReadAndSlide | KeyStep | Checkpoint
Op = Generator[Step, Any, T]
