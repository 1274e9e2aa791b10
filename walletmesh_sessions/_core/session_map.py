"""The mapping `get_all` returns: read-only, and built without one long copy of a big table.

A dict of a million sessions grows by copying its whole table in one C call, holding the GIL
meanwhile; kept in many smaller dicts chosen by the key's hash, each copy stays short.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from .data import SessionData
from .errors import InvalidConfigError

__all__ = ("SessionMap",)

# Shards, a power of two: at a million sessions each holds about 4,000.
SHARDS: Final = 256


class SessionMap(Mapping[str, SessionData]):
    """Live sessions by id: a read-only `Mapping` (not a dict), equal to any mapping with the
    same items; in no set order (`dict(m)` or `sorted(m)` give one of your own)."""

    __slots__ = ("_length", "_mask", "_shards")

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
        self._shards: list[dict[str, SessionData] | None] = [None] * shards
        self._mask = shards - 1
        self._length = 0
        pairs = items.items() if isinstance(items, Mapping) else items
        for session_id, data in pairs:
            self._put(session_id, data)

    def _put(self, session_id: str, data: SessionData) -> None:
        """Add or replace one session; only while the mapping is being built."""
        index = hash(session_id) & self._mask
        shard = self._shards[index]
        if shard is None:
            shard = self._shards[index] = {}
        before = len(shard)
        shard[session_id] = data
        self._length += len(shard) - before

    def __getitem__(self, session_id: str) -> SessionData:
        shard = self._shards[hash(session_id) & self._mask]
        if shard is None:
            raise KeyError(session_id)
        return shard[session_id]

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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        if len(other) != self._length:
            return False
        missing = object()
        return all(other.get(key, missing) == data for key, data in self.items())

    __hash__ = None  # type: ignore[assignment]  # mutable contents compare by value

    def __repr__(self) -> str:
        return f"SessionMap({dict(self.items())!r})"

    def __reduce__(self) -> tuple[type[SessionMap], tuple[dict[str, SessionData]]]:
        return (type(self), (dict(self.items()),))  # the shard count is not worth keeping
