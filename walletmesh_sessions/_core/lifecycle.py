"""What the lifecycle operations store, shared by every store: pure functions, no I/O.

`update` and `rotate` change a session's data; the rules for how are here, so that every store
(and every retry of a compare-and-set) makes the same decision. Expiry arithmetic stays in
`_expiry`.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .data import SessionData, SessionStoreConfig
from .errors import InvalidSessionDataError
from .expiry import stamped

__all__ = ("Change", "check_change", "rotated", "updated")

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
    """The data moved to `new_id`: its `id` follows when it named the old session id.

    Records written by `@walletmesh/router` may key a session by more than its data's id
    (``origin + "_" + id``); their data's id is left as it is.
    """
    return attrs.evolve(data, id=new_id) if data.id == old_id else data
