"""The mapping `get_all` returns: read-only, and built without one long copy of a big table.

A dict of a million sessions grows by copying its whole table in one C call, holding the GIL
meanwhile; kept in many smaller dicts chosen by the key's hash, each copy stays short.

A store that reads records as text (PostgreSQL) keeps each record's text instead of its
`SessionData` (`SessionMap.of_records`) and decodes a value when it is read. Strings in a dict
are not tracked by the garbage collector: a million of them add nothing to what a full
collection walks, where a million `SessionData` (about six tracked objects each) make it
stall the event loop for a second. Nothing decoded is kept, so values a caller drops die at
once.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, ValuesView
from typing import Any, Final

from .data import SessionData
from .errors import InvalidConfigError

__all__ = ("SessionMap",)

# Shards, a power of two: at a million sessions each holds about 4,000.
SHARDS: Final = 256

Decode = Callable[[Any, str], tuple[SessionData, Any]]
"""``decode(text, session_id)``: a record's data and expiry, as the codec's `decode_record`."""


class SessionMap(Mapping[str, SessionData]):
    """Live sessions by id: a read-only `Mapping` (not a dict), equal to any mapping with the
    same items; in no set order (`dict(m)` or `sorted(m)` give one of your own)."""

    __slots__ = ("_decode", "_length", "_mask", "_shards")

    def __init__(
        self,
        items: Mapping[str, SessionData] | Iterable[tuple[str, SessionData]] = (),
        *,
        shards: int = SHARDS,
    ) -> None:
        """`shards` (a power of two): 1 for a small batch, the default for a whole store."""
        if type(shards) is not int or shards < 1 or shards & (shards - 1):  # bool is no count
            msg = f"shards must be a positive power of two, got {shards!r}"
            raise InvalidConfigError(msg)
        self._shards: list[dict[str, Any] | None] = [None] * shards
        self._mask = shards - 1
        self._length = 0
        self._decode: Decode | None = None
        self._put_all(items.items() if isinstance(items, Mapping) else items)

    @classmethod
    def of_records(cls, decode: Decode, *, shards: int = SHARDS) -> SessionMap:
        """An empty map whose values are put as record texts, each already decoded once and
        found readable, and decoded by `decode` (the codec's `decode_record`, which this layer
        does not import) whenever read: never kept, and equal at each read."""
        found = cls(shards=shards)
        found._decode = decode
        return found

    def _put(self, session_id: str, value: SessionData | str) -> None:
        """Add or replace one session; only while the mapping is being built."""
        self._put_all(((session_id, value),))

    def _put_all(self, pairs: Iterable[tuple[str, SessionData | str]]) -> None:
        """Add or replace sessions (their data, or their record texts in a map `of_records`),
        a step of a store's walk at once; only while the mapping is being built."""
        shards, mask = self._shards, self._mask
        length = self._length
        for session_id, value in pairs:
            index = hash(session_id) & mask
            shard = shards[index]
            if shard is None:
                shard = shards[index] = {}
            before = len(shard)
            shard[session_id] = value
            length += len(shard) - before
        self._length = length

    def __getitem__(self, session_id: str) -> SessionData:
        shard = self._shards[hash(session_id) & self._mask]
        if shard is None:
            raise KeyError(session_id)
        value = shard[session_id]
        decode = self._decode
        return value if decode is None else decode(value, session_id)[0]

    def __contains__(self, session_id: object) -> bool:
        try:
            shard = self._shards[hash(session_id) & self._mask]
        except TypeError:  # unhashable: never a key
            return False
        return shard is not None and session_id in shard

    def __iter__(self) -> Iterator[str]:
        for shard in self._shards:
            if shard:
                yield from shard

    def __len__(self) -> int:
        return self._length

    def _pairs(self) -> Iterator[tuple[str, SessionData]]:
        """Every item, shard by shard: no second lookup of each key."""
        decode = self._decode
        for shard in self._shards:
            if not shard:
                continue
            if decode is None:
                yield from shard.items()
            else:
                for session_id, text in shard.items():
                    yield session_id, decode(text, session_id)[0]

    def items(self) -> ItemsView[str, SessionData]:
        return _Items(self)

    def values(self) -> ValuesView[SessionData]:
        return _Values(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        if len(other) != self._length:
            return False
        missing = object()
        return all(other.get(key, missing) == data for key, data in self._pairs())

    __hash__ = None  # type: ignore[assignment]  # mutable contents compare by value

    def __repr__(self) -> str:
        return f"SessionMap({dict(self._pairs())!r})"

    def __reduce__(self) -> tuple[type[SessionMap], tuple[dict[str, SessionData]]]:
        return (type(self), (dict(self._pairs()),))  # the shard count is not worth keeping


class _Items(ItemsView[str, SessionData]):
    _mapping: SessionMap

    def __iter__(self) -> Iterator[tuple[str, SessionData]]:
        return self._mapping._pairs()


class _Values(ValuesView[SessionData]):
    _mapping: SessionMap

    def __iter__(self) -> Iterator[SessionData]:
        for _key, data in self._mapping._pairs():
            yield data
