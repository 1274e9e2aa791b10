"""`SessionMap`, the mapping `get_all` returns: a read-only Mapping that compares like a dict."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Mapping, MutableMapping

import pytest

from walletmesh_sessions import InvalidConfigError, SessionData
from walletmesh_sessions._core.session_map import SessionMap


def _data(n: int) -> SessionData:
    return SessionData(f"s{n}", "https://app.example")


def _built(count: int) -> SessionMap:
    sessions = SessionMap()
    for n in range(count):
        sessions._put(f"id{n}", _data(n))
    return sessions


class TestMapping:
    def test_holds_every_session_once(self) -> None:
        """Many more sessions than shards: each is found, counted and iterated exactly once."""
        sessions = _built(5_000)
        assert len(sessions) == 5_000
        assert sorted(sessions) == sorted(f"id{n}" for n in range(5_000))
        assert all(sessions[f"id{n}"] == _data(n) for n in range(5_000))

    def test_replacing_a_session_keeps_the_count(self) -> None:
        """A second `_put` under one id replaces the data and does not count twice."""
        sessions = _built(3)
        sessions._put("id1", _data(9))
        assert len(sessions) == 3
        assert sessions["id1"] == _data(9)

    def test_missing_ids(self) -> None:
        """A missing id raises KeyError, `in` says False, unhashable keys are never present."""
        sessions = _built(2)
        with pytest.raises(KeyError):
            sessions["nope"]
        assert "nope" not in sessions
        assert "id0" in sessions
        unhashable: object = []
        assert unhashable not in sessions
        assert sessions.get("nope") is None

    def test_read_only(self) -> None:
        """A Mapping, not a MutableMapping: the caller copies it to change it."""
        sessions = _built(1)
        assert isinstance(sessions, Mapping)
        assert not isinstance(sessions, MutableMapping)
        assert dict(sessions) == {"id0": _data(0)}


class TestEquality:
    def test_equals_a_dict_with_the_same_items(self) -> None:
        """Equal to a dict (either side) and to another SessionMap with the same items."""
        expected = {f"id{n}": _data(n) for n in range(300)}
        assert _built(300) == expected
        assert expected == _built(300)
        assert _built(300) == SessionMap(expected)
        assert SessionMap() == {}

    @pytest.mark.parametrize(
        "other",
        [{"id0": _data(1)}, {"id1": _data(0)}, {}, {"id0": _data(0), "id1": _data(1)}],
        ids=["other-data", "other-id", "shorter", "longer"],
    )
    def test_differs_from_other_items(self, other: dict[str, SessionData]) -> None:
        assert _built(1) != other

    def test_not_equal_to_non_mappings(self) -> None:
        assert _built(1) != [("id0", _data(0))]

    def test_unhashable(self) -> None:
        with pytest.raises(TypeError):
            hash(_built(1))


class TestRepresentation:
    def test_repr_shows_the_items(self) -> None:
        assert repr(SessionMap({"a": _data(1)})) == f"SessionMap({{'a': {_data(1)!r}}})"

    def test_copies(self) -> None:
        """`copy.copy` (and pickle, for picklable values) rebuild it from its items."""
        sessions = _built(10)
        copied = copy.copy(sessions)
        assert type(copied) is SessionMap
        assert copied == sessions
        assert pickle.loads(pickle.dumps(SessionMap())) == {}

    def test_copies_keep_a_subclass(self) -> None:
        """A subclass is copied and unpickled as itself, not as a plain SessionMap."""
        copied = copy.copy(_Named({"a": _data(1)}))
        assert type(copied) is _Named
        assert type(pickle.loads(pickle.dumps(_Named()))) is _Named


class _Named(SessionMap):
    """A subclass, as a caller might define one (module level: picklable)."""

    __slots__ = ()


class TestShards:
    @pytest.mark.parametrize("shards", [1, 2, 64, 256, 1024])
    def test_powers_of_two(self, shards: int) -> None:
        """Any power of two holds every session."""
        sessions = SessionMap({f"id{n}": _data(n) for n in range(100)}, shards=shards)
        assert len(sessions) == 100
        assert all(sessions[f"id{n}"] == _data(n) for n in range(100))

    @pytest.mark.parametrize("shards", [0, -1, 3, 100, 1.0, True, "4", None])
    def test_anything_else_is_refused(self, shards: object) -> None:
        """A shard count that is not a positive power of two is a clear ValueError at once."""
        with pytest.raises(InvalidConfigError, match="shards"):
            SessionMap(shards=shards)  # type: ignore[arg-type]
        assert issubclass(InvalidConfigError, ValueError)
