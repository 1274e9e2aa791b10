"""What `set`, `create`, `update` and `rotate` do, shared by every store: pure functions, no I/O.

Each decides from what is stored (`Stored`, or `None`), `now` and the config what to write, as
a small frozen value that every store carries out with its own atomicity (a transaction, a
compare-and-set, a script); a retry decides again the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final, Literal

import attrs

from .data import SessionData, SessionStoreConfig
from .errors import InvalidSessionDataError
from .expiry import EXPIRED, Expired, after_read, expiry_after_update, expiry_after_write, stamped

__all__ = (
    "ABSENT",
    "EXPIRED",
    "TAKEN",
    "Change",
    "Move",
    "Stored",
    "Verdict",
    "Write",
    "check_change",
    "decide_create",
    "decide_rotate",
    "decide_set",
    "decide_update",
    "rotated",
    "updated",
)

Change = Callable[[SessionData], SessionData]


def check_change(change: object) -> Change:
    """Return `change` if it is callable (``SessionData -> SessionData``), else raise."""
    if not callable(change):
        msg = f"change must be a function from SessionData to SessionData, got {change!r}"
        raise InvalidSessionDataError(msg)
    return change


def updated(
    config: SessionStoreConfig, now: int, current: SessionData, change: Change
) -> SessionData:
    """The data an update stores: ``change(current)``, checked, with `current`'s `created_at`
    whenever it has one (whatever `change` returned), so an update never moves the absolute
    timeout; stamped when neither has one and the store has an absolute timeout."""
    new = change(current)
    if not isinstance(new, SessionData):
        msg = f"change must return a SessionData, got {type(new).__name__}: {new!r}"
        raise InvalidSessionDataError(msg)
    if current.created_at is not None and new.created_at != current.created_at:
        new = attrs.evolve(new, created_at=current.created_at)
    return stamped(config, new, now)


def rotated(data: SessionData, old_id: str, new_id: str) -> SessionData:
    """The data moved to `new_id`: its `id` follows when it named the old session id (records
    of `@walletmesh/router` keyed ``origin + "_" + id`` keep theirs)."""
    return attrs.evolve(data, id=new_id) if data.id == old_id else data


Stored = tuple[SessionData, int | None]
"""A stored record as decoded: its data and its stored expiry (epoch ms, or `None`)."""


class Verdict(enum.Enum):
    """The decisions that write nothing (besides `EXPIRED`, which removes)."""

    ABSENT = "absent"
    """No record: nothing changes, and the operation answers `None`."""
    TAKEN = "taken"
    """The id holds a live session: `create` answers False, `rotate` raises; nothing changes."""

    def __repr__(self) -> str:
        return self.name


ABSENT: Final = Verdict.ABSENT
TAKEN: Final = Verdict.TAKEN


@attrs.frozen
class Write:
    """Store `data` under the id with expiry `expires_at`, over whatever was read there."""

    data: SessionData
    expires_at: int | None


@attrs.frozen
class Move:
    """Store `data` under the new id with expiry `expires_at` (over an expired record there)
    and remove the old id's record."""

    data: SessionData
    expires_at: int | None


def _after_read(config: SessionStoreConfig, now: int, stored: Stored) -> int | Expired | None:
    data, expires_at = stored
    return after_read(config, now, expires_at, data.created_at)


def decide_set(config: SessionStoreConfig, now: int, data: SessionData) -> Write:
    """`set`: write `data`, stamped, with the expiry a write at `now` gives."""
    data = stamped(config, data, now)
    return Write(data, expiry_after_write(config, now, data.created_at))


def decide_create(
    config: SessionStoreConfig, now: int, stored: Stored | None, data: SessionData
) -> Write | Literal[Verdict.TAKEN]:
    """`create`: as `set`, unless a live session holds the id (an expired one counts as none)."""
    if stored is not None and _after_read(config, now, stored) is not EXPIRED:
        return TAKEN
    return decide_set(config, now, data)


def decide_update(
    config: SessionStoreConfig, now: int, stored: Stored | None, change: Change
) -> Write | Expired | Literal[Verdict.ABSENT]:
    """`update`: write ``change(current)`` (checked, `created_at` kept, with the expiry a read
    now gives, capped at the absolute timeout); `EXPIRED`: remove the record; or `ABSENT`."""
    if stored is None:
        return ABSENT
    after = _after_read(config, now, stored)
    if after is EXPIRED:
        return EXPIRED
    new = updated(config, now, stored[0], change)
    return Write(new, expiry_after_update(config, after, new.created_at))


def decide_rotate(
    config: SessionStoreConfig,
    now: int,
    old_id: str,
    new_id: str,
    stored: Stored | None,
    stored_new: Stored | None,
) -> Move | Expired | Literal[Verdict.ABSENT, Verdict.TAKEN]:
    """`rotate`: move the session to `new_id` (holding `stored_new`), expiry as a read gives.

    `ABSENT` or `EXPIRED` (remove it) as for `old_id`; then `TAKEN` if `new_id` is `old_id`
    or holds a live session (an expired one there is written over).
    """
    if stored is None:
        return ABSENT
    after = _after_read(config, now, stored)
    if after is EXPIRED:
        return EXPIRED
    if new_id == old_id or (
        stored_new is not None and _after_read(config, now, stored_new) is not EXPIRED
    ):
        return TAKEN
    return Move(rotated(stored[0], old_id, new_id), after)
