"""The value types: `SessionData` (what a store keeps) and `SessionStoreConfig` (how long)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any

import attrs

from .errors import InvalidConfigError, InvalidSessionDataError
from .json_values import MAX_SAFE_INTEGER, JSONValue, freeze_object, json_eq_key, thaw
from .text import is_unicode_text

__all__ = ("SessionData", "SessionRecord", "SessionStoreConfig", "assemble_session")

_ONE_MS = timedelta(milliseconds=1)


def _freeze_permissions(
    value: Mapping[str, Iterable[str]],
) -> Mapping[str, tuple[str, ...]]:
    """Copy a chain-id -> method-names mapping into a read-only mapping of tuples."""
    if not isinstance(value, Mapping):
        msg = f"permissions must be a mapping of chain id to method names, got {value!r}"
        raise InvalidSessionDataError(msg)
    frozen: dict[str, tuple[str, ...]] = {}
    for chain_id, methods in value.items():
        if not is_unicode_text(chain_id):
            msg = f"permissions: chain id must be a str of valid Unicode text, got {chain_id!r}"
            raise InvalidSessionDataError(msg)
        # A bare str is iterable too, but "eth_accounts" is not a list of method names.
        if isinstance(methods, (str, bytes)) or not isinstance(methods, Iterable):
            msg = f"permissions[{chain_id!r}] must be a list of method names, got {methods!r}"
            raise InvalidSessionDataError(msg)
        names = tuple(methods)
        for name in names:
            if not is_unicode_text(name):
                msg = f"permissions[{chain_id!r}]: method name must be a str, got {name!r}"
                raise InvalidSessionDataError(msg)
        frozen[chain_id] = names
    return MappingProxyType(frozen)


def _check_text(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not is_unicode_text(value):
        msg = f"SessionData.{attribute.name} must be a str of valid Unicode text, got {value!r}"
        raise InvalidSessionDataError(msg)


def _check_created_at(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (type(value) is not int):
        msg = f"SessionData.created_at must be an int (ms since the epoch) or None, got {value!r}"
        raise InvalidSessionDataError(msg)
    if value is not None and not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        msg = (
            "SessionData.created_at must be within +/-(2**53 - 1), which JavaScript reads "
            f"exactly, got {value!r}"
        )
        raise InvalidSessionDataError(msg)


def _permissions_repr(value: Mapping[str, tuple[str, ...]]) -> str:
    # What the mapping holds (tuples), so the repr never suggests it equals a dict of lists.
    return repr(dict(value))


def _freeze_app_data(value: Mapping[str, JSONValue]) -> Mapping[str, JSONValue]:
    return freeze_object(value, "app_data")


def _app_data_repr(value: Mapping[str, JSONValue]) -> str:
    # Objects as dicts (not mappingproxy(...)), arrays as the tuples they are.
    return repr(thaw(value, tuple))


@attrs.frozen
class SessionData:
    """One session: which dApp `origin` may call which methods on which chains.

    Immutable and hashable. `permissions` maps a chain id (``"eip155:1"``) to the method names
    allowed on it, copied into a read-only mapping of tuples. `created_at` is ms since the epoch.
    `app_data` (keyword-only) holds the application's own state as JSON values (see
    `JSONValue`), copied and frozen too; equality compares it as JSON (``True`` and ``1``
    differ, ``1`` and ``1.0`` do not), and the hash leaves it and `permissions` out.
    """

    id: str = attrs.field(validator=_check_text)
    origin: str = attrs.field(validator=_check_text)
    permissions: Mapping[str, tuple[str, ...]] = attrs.field(
        factory=dict,
        converter=_freeze_permissions,
        hash=False,
        repr=_permissions_repr,
    )
    created_at: int | None = attrs.field(default=None, validator=_check_created_at)
    app_data: Mapping[str, JSONValue] = attrs.field(
        factory=dict,
        converter=_freeze_app_data,
        kw_only=True,
        eq=json_eq_key,
        hash=False,
        repr=_app_data_repr,
    )

    def allows(self, chain: str, method: str) -> bool:
        """True if `method` is granted on `chain`."""
        return method in self.permissions.get(chain, ())

    def granted(self, chain: str, *methods: str) -> SessionData:
        """This session with `methods` granted on `chain`, added after the chain's current ones,
        each once. With nothing to add it is this very session (no chain without methods)."""
        current = self.permissions.get(chain, ())
        names = list(current)
        for method in methods:
            if method not in names:
                names.append(method)
        if len(names) == len(current):
            return self
        return attrs.evolve(self, permissions={**self.permissions, chain: names})

    def revoked(self, chain: str, *methods: str) -> SessionData:
        """This session with `methods` (or, with none, the whole chain) no longer granted on
        `chain`; a chain left with no methods is removed. Nothing to revoke: this session."""
        current = self.permissions.get(chain)
        if current is None:
            return self
        left = tuple(name for name in current if name not in methods) if methods else ()
        if left == current and left:
            return self
        permissions = dict(self.permissions)
        if left:
            permissions[chain] = left
        else:
            del permissions[chain]
        return attrs.evolve(self, permissions=permissions)

    def with_app_data(self, values: Mapping[str, JSONValue]) -> SessionData:
        """This session with `values` merged over its `app_data`, each key given replacing the
        current value whole (no deep merge); `InvalidSessionDataError` for a value not JSON."""
        if not isinstance(values, Mapping):
            msg = f"with_app_data takes a mapping of str keys to JSON values, got {values!r}"
            raise InvalidSessionDataError(msg)
        return attrs.evolve(self, app_data={**self.app_data, **values})

    def without_app_data(self, *keys: str) -> SessionData:
        """This session without those keys of its `app_data` (keys it lacks are ignored).
        Nothing to remove: this very session."""
        app_data = {key: value for key, value in self.app_data.items() if key not in keys}
        if len(app_data) == len(self.app_data):
            return self
        return attrs.evolve(self, app_data=app_data)

    def to_json(self) -> dict[str, Any]:
        """This session as plain dicts and lists: the TypeScript package's session object
        (``"createdAt"`` only when set, ``"appData"`` only when not empty)."""
        from .codec import session_to_json  # the wire format's one home imports this module

        return session_to_json(self)

    def __reduce__(self) -> tuple[Callable[..., SessionData], tuple[Any, ...]]:
        """Pickle and copy through the constructor: read-only mappings cannot be pickled
        themselves, and the constructor checks and freezes them again."""
        args = (self.id, self.origin, dict(self.permissions), self.created_at)
        if not self.app_data:
            return SessionData, args  # what pickles made before app_data existed hold
        return functools.partial(SessionData, app_data=thaw(self.app_data)), args

    @classmethod
    def from_json(cls, obj: Any) -> SessionData:
        """The inverse of `to_json` (unknown fields ignored); `InvalidSessionDataError` if none."""
        from .codec import session_from_json

        return session_from_json(obj)


# The slots' own setters: a frozen class refuses `setattr`, and these skip that refusal.
_SETTERS = tuple(
    SessionData.__dict__[name].__set__
    for name in ("id", "origin", "permissions", "created_at", "app_data")
)


def assemble_session(
    id: str,
    origin: str,
    permissions: Mapping[str, tuple[str, ...]],
    created_at: int | None,
    app_data: Mapping[str, JSONValue],
) -> SessionData:
    """A `SessionData` of fields already as its constructor leaves them: text checked, the
    mappings read-only and frozen. For the codec's fast path, which checked them while
    parsing: nothing is checked here, so anything else must use the constructor."""
    data = object.__new__(SessionData)
    set_id, set_origin, set_permissions, set_created_at, set_app_data = _SETTERS
    set_id(data, id)
    set_origin(data, origin)
    set_permissions(data, permissions)
    set_created_at(data, created_at)
    set_app_data(data, app_data)
    return data


def _to_lifetime(value: timedelta | float | None, name: str = "lifetime") -> timedelta | None:
    """Accept a timedelta, or int/float seconds; refuse anything not strictly positive."""
    if value is None:
        return None
    given = value
    if isinstance(value, bool) or not isinstance(value, (timedelta, int, float)):
        msg = f"{name} must be a timedelta, int or float seconds, or None, got {value!r}"
        raise InvalidConfigError(msg)
    if not isinstance(value, timedelta):
        if not math.isfinite(value):
            msg = f"{name} must be finite, got {value!r}"
            raise InvalidConfigError(msg)
        try:
            value = timedelta(seconds=value)
        except OverflowError:
            msg = f"{name} is too large, got {value!r} seconds"
            raise InvalidConfigError(msg) from None
    if value <= timedelta(0):
        msg = f"{name} must be > 0, got {given!r}"
        raise InvalidConfigError(msg)
    if value < _ONE_MS:
        msg = f"{name} must be at least 1 millisecond (expiry is kept in ms), got {given!r}"
        raise InvalidConfigError(msg)
    return value


def _to_max_lifetime(value: timedelta | float | None) -> timedelta | None:
    return _to_lifetime(value, "max_lifetime")


def _check_bool(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        msg = f"{attribute.name} must be a bool, got {value!r}"
        raise InvalidConfigError(msg)


@attrs.frozen
class SessionStoreConfig:
    """How long sessions live, and whether reading a session extends its life.

    `lifetime` is a `timedelta` (int or float seconds are converted); `None` means sessions never
    expire. With `refresh_on_access`, every read slides a session's expiry to now + lifetime.
    `max_lifetime` is an absolute timeout counted from a session's `created_at` (stores stamp it
    when the data has none): a session expires at the earlier of its sliding expiry and
    ``created_at + max_lifetime``, and no refresh moves it past that.
    """

    lifetime: timedelta | None = attrs.field(default=None, converter=_to_lifetime)
    refresh_on_access: bool = attrs.field(default=False, validator=_check_bool)
    max_lifetime: timedelta | None = attrs.field(
        default=None, converter=_to_max_lifetime, kw_only=True
    )
    # Computed once: every write and refresh of every store reads them.
    lifetime_ms: int | None = attrs.field(init=False, repr=False, eq=False)
    """The lifetime in whole milliseconds (rounded down), or `None`."""
    max_lifetime_ms: int | None = attrs.field(init=False, repr=False, eq=False)
    """The absolute timeout in whole milliseconds (rounded down), or `None`."""

    @lifetime_ms.default
    def _lifetime_in_ms(self) -> int | None:
        return None if self.lifetime is None else self.lifetime // _ONE_MS

    @max_lifetime_ms.default
    def _max_lifetime_in_ms(self) -> int | None:
        return None if self.max_lifetime is None else self.max_lifetime // _ONE_MS


@attrs.frozen
class SessionRecord:
    """What a store holds under one session id, as an operator sees it, expired or not.

    An unreadable record has `data` `None` and `error` saying why. `expires_at`: ms, or `None`.
    """

    session_id: str
    data: SessionData | None
    expires_at: int | None
    error: str | None = None

    def is_expired(self, now_ms: int) -> bool:
        """True if the session is expired at `now_ms` (at exactly its expiry it is not)."""
        return self.expires_at is not None and now_ms > self.expires_at
