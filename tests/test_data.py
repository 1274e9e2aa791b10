"""SessionData and SessionStoreConfig: construction, immutability and validation."""

from __future__ import annotations

import copy
import enum
import json
import pickle
from collections import OrderedDict
from datetime import timedelta
from types import MappingProxyType
from typing import Any

import attrs
import pytest

from walletmesh_sessions import (
    InvalidConfigError,
    InvalidSessionDataError,
    InvalidSessionIdError,
    JSONValue,
    SessionData,
    SessionIdTypeError,
    SessionStoreConfig,
    SessionStoreError,
    new_session_id,
)
from walletmesh_sessions._core.session_map import SessionMap
from walletmesh_sessions._core.validation import check_session_id


class TestSessionData:
    """SessionData is a frozen, validated value."""

    def test_defaults(self) -> None:
        """permissions defaults to empty, created_at to None."""
        data = SessionData("s1", "https://a.example")
        assert dict(data.permissions) == {}
        assert data.created_at is None

    def test_frozen(self) -> None:
        """Fields cannot be reassigned and permissions cannot be mutated."""
        data = SessionData("s1", "https://a.example", {"eip155:1": ["eth_accounts"]})
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            data.id = "other"  # type: ignore[misc]
        with pytest.raises(TypeError):
            data.permissions["eip155:1"] = ("x",)  # type: ignore[index]
        assert data.permissions["eip155:1"] == ("eth_accounts",)

    def test_copies_caller_permissions(self) -> None:
        """Mutating the caller's dict or list later does not change the session."""
        methods = ["eth_accounts"]
        perms = {"eip155:1": methods}
        data = SessionData("s1", "o", perms)
        methods.append("eth_sign")
        perms["eip155:5"] = []
        assert dict(data.permissions) == {"eip155:1": ("eth_accounts",)}

    def test_equal_and_hashable(self) -> None:
        """Equal sessions compare and hash equal, lists and tuples alike."""
        a = SessionData("s", "o", {"c": ["m"]}, 5)
        b = SessionData("s", "o", {"c": ("m",)}, 5)
        assert a == b
        assert hash(a) == hash(b)
        assert a != SessionData("s", "o", {"c": ["n"]}, 5)

    def test_repr_is_readable(self) -> None:
        """The repr shows what permissions holds (tuples), never a dict it does not equal."""
        assert repr(SessionData("s", "o", {"c": ["m"]})) == (
            "SessionData(id='s', origin='o', permissions={'c': ('m',)}, created_at=None,"
            " app_data={})"
        )

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"id": 1, "origin": "o"},
            {"id": "s", "origin": None},
            {"id": "s", "origin": "o", "permissions": []},
            {"id": "s", "origin": "o", "permissions": {"c": "eth_accounts"}},
            {"id": "s", "origin": "o", "permissions": {"c": [1]}},
            {"id": "s", "origin": "o", "permissions": {1: ["m"]}},
            {"id": "s", "origin": "o", "created_at": 1.5},
            {"id": "s", "origin": "o", "created_at": True},
            {"id": "s", "origin": "o", "created_at": 2**53},
            {"id": "s", "origin": "o", "created_at": -(2**53)},
            {"id": "\ud800", "origin": "o"},
        ],
        ids=repr,
    )
    def test_bad_fields(self, kwargs: dict[str, Any]) -> None:
        """Wrong types raise InvalidSessionDataError, a TypeError and a SessionStoreError."""
        with pytest.raises(InvalidSessionDataError) as info:
            SessionData(**kwargs)
        assert isinstance(info.value, TypeError)
        assert isinstance(info.value, SessionStoreError)


class _Mode(str, enum.Enum):
    DARK = "dark"


class _Level(enum.IntEnum):
    HIGH = 3


class TestAppData:
    """app_data: JSON values, copied and frozen on construction, checked before anything else."""

    def test_default_is_empty(self) -> None:
        """Keyword-only, empty by default."""
        data = SessionData("s", "o")
        assert dict(data.app_data) == {}
        with pytest.raises(TypeError):
            SessionData("s", "o", {}, None, {"a": 1})  # type: ignore[call-arg]

    def test_frozen_deeply(self) -> None:
        """Objects become read-only mappings and arrays tuples, at every depth."""
        data = SessionData("s", "o", app_data={"a": [1, {"b": [True, None]}], "c": {"d": 1.5}})
        assert isinstance(data.app_data, MappingProxyType)
        outer = data.app_data["a"]
        assert isinstance(outer, tuple)
        inner = outer[1]
        assert isinstance(inner, MappingProxyType)
        assert inner["b"] == (True, None)
        with pytest.raises(TypeError):
            data.app_data["x"] = 1  # type: ignore[index]
        with pytest.raises(TypeError):
            inner["b"] = 2  # type: ignore[index]

    def test_copies_caller_values(self) -> None:
        """Mutating what the caller passed, at any depth, does not change the session."""
        nested: dict[str, JSONValue] = {"b": 1}
        items: list[JSONValue] = [nested]
        given: dict[str, JSONValue] = {"a": items}
        proxy = MappingProxyType(given)  # a read-only view of a dict the caller still holds
        data = SessionData("s", "o", app_data=proxy)
        nested["b"] = 2
        items.append(3)
        given["c"] = 4
        assert data.to_json()["appData"] == {"a": [{"b": 1}]}

    def test_leaves_become_plain_builtins(self) -> None:
        """Subclasses (enum members) are kept as the plain values JSON writes for them."""
        data = SessionData(
            "s", "o", app_data=OrderedDict([(_Mode.DARK, _Mode.DARK), ("n", _Level.HIGH)])
        )
        assert data.app_data == {"dark": "dark", "n": 3}
        assert [type(v) for v in data.app_data.values()] == [str, int]
        assert [type(k) for k in data.app_data] == [str, str]

    @pytest.mark.parametrize(
        ("app_data", "where"),
        [
            ({"a": {1, 2}}, "app_data['a'] "),
            ({"a": [1, 2, b"x"]}, "app_data['a'][2] "),
            ({"a": bytearray(b"x")}, "app_data['a'] "),
            ({"a": {"b": float("nan")}}, "app_data['a']['b'] "),
            ({"a": float("inf")}, "app_data['a'] "),
            ({"a": {"b": [{1: "x"}]}}, "app_data['a']['b'][0] "),
            ({2: "x"}, "app_data "),
            ({"a": object()}, "app_data['a'] "),
            ({"a": SessionData("s", "o")}, "app_data['a'] "),
            ({"a": 2**53}, "app_data['a'] "),
            ({"a": [-(2**53)]}, "app_data['a'][0] "),
            ({"a": "\ud800"}, "app_data['a'] "),
            ({"\udfff": 1}, "app_data "),
            ({"a": (x for x in [1])}, "app_data['a'] "),
            ([("a", 1)], "app_data "),
            (None, "app_data "),
        ],
    )
    def test_refuses_what_is_not_json(self, app_data: Any, where: str) -> None:
        """InvalidSessionDataError (a TypeError) naming where the bad value stands."""
        with pytest.raises(InvalidSessionDataError) as info:
            SessionData("s", "o", app_data=app_data)
        assert str(info.value).startswith(where), str(info.value)
        assert isinstance(info.value, TypeError)

    def test_safe_integers_and_depth(self) -> None:
        """+/-(2**53 - 1) is accepted; nesting stops at 64 levels, app_data included."""
        edge = SessionData("s", "o", app_data={"a": [2**53 - 1, -(2**53 - 1)]})
        assert edge.app_data["a"] == (2**53 - 1, -(2**53 - 1))
        deep: JSONValue = 1
        for _ in range(63):
            deep = [deep]
        assert SessionData("s", "o", app_data={"a": deep}).to_json()["appData"] == {"a": deep}
        with pytest.raises(InvalidSessionDataError, match="more than 64 levels"):
            SessionData("s", "o", app_data={"a": [deep]})
        loop: list[Any] = []
        loop.append(loop)
        with pytest.raises(InvalidSessionDataError, match="more than 64 levels"):
            SessionData("s", "o", app_data={"loop": loop})

    def test_equality_is_json_equality(self) -> None:
        """Equal when the JSON is: lists and tuples alike, 1 and 1.0 alike, True and 1 not."""
        a = SessionData("s", "o", app_data={"x": [1, {"y": True}]})
        assert a == SessionData("s", "o", app_data={"x": (1.0, {"y": True})})
        assert a != SessionData("s", "o", app_data={"x": [1, {"y": 1}]})
        assert a != SessionData("s", "o", app_data={"x": [True, {"y": True}]})
        assert a != SessionData("s", "o", app_data={"x": [1, {"y": True}], "z": None})
        assert a != SessionData("s", "o")

    def test_hash_leaves_app_data_out(self) -> None:
        """Hashable whatever it holds; equal sessions hash equal."""
        a = SessionData("s", "o", app_data={"x": [1, {"y": [2]}]})
        assert hash(a) == hash(SessionData("s", "o"))
        assert hash(a) == hash(SessionData("s", "o", app_data={"x": (1, {"y": (2,)})}))
        assert len({a, SessionData("s", "o", app_data={"x": [1, {"y": [2]}]})}) == 1

    def test_repr_shows_plain_values(self) -> None:
        """Objects as dicts, arrays as the tuples they are, never mappingproxy(...)."""
        data = SessionData("s", "o", app_data={"a": [1, {"b": None}], "c": "x"})
        assert repr(data).endswith("app_data={'a': (1, {'b': None}), 'c': 'x'})")


class TestHelpers:
    """allows, granted, revoked, with_app_data, without_app_data: new sessions, one rule each."""

    DATA = SessionData(
        "s", "o", {"eip155:1": ["eth_accounts", "personal_sign"]}, 5, app_data={"a": 1}
    )

    def test_allows(self) -> None:
        """True only for a method granted on that chain."""
        assert self.DATA.allows("eip155:1", "personal_sign")
        assert not self.DATA.allows("eip155:1", "eth_sendTransaction")
        assert not self.DATA.allows("eip155:137", "eth_accounts")

    def test_granted_adds_only_what_is_missing(self) -> None:
        """New methods after the current ones, in order, each once; other fields kept."""
        new = self.DATA.granted("eip155:1", "eth_sign", "eth_accounts", "eth_sign", "x")
        assert new.permissions["eip155:1"] == ("eth_accounts", "personal_sign", "eth_sign", "x")
        assert (new.id, new.created_at, new.app_data) == ("s", 5, {"a": 1})
        assert self.DATA.permissions["eip155:1"] == ("eth_accounts", "personal_sign")
        added = self.DATA.granted("eip155:137", "eth_accounts")
        assert list(added.permissions) == ["eip155:1", "eip155:137"]
        assert added.allows("eip155:137", "eth_accounts")

    def test_granted_with_nothing_to_add(self) -> None:
        """No methods, or all present: the very same session, and no empty chain."""
        assert self.DATA.granted("eip155:1", "eth_accounts") is self.DATA
        assert self.DATA.granted("eip155:137") is self.DATA

    def test_granted_checks_names(self) -> None:
        """A method name that is not text is refused, as the constructor does."""
        with pytest.raises(InvalidSessionDataError, match="method name"):
            self.DATA.granted("eip155:1", 1)  # type: ignore[arg-type]

    def test_revoked(self) -> None:
        """Some methods, or the whole chain; a chain left empty is removed."""
        some = self.DATA.revoked("eip155:1", "personal_sign", "never-granted")
        assert some.permissions == {"eip155:1": ("eth_accounts",)}
        assert some.revoked("eip155:1", "eth_accounts").permissions == {}
        assert self.DATA.revoked("eip155:1").permissions == {}
        assert self.DATA.revoked("eip155:1").app_data == {"a": 1}
        empty = SessionData("s", "o", {"c": [], "d": ["m"]})
        assert empty.revoked("c", "m").permissions == {"d": ("m",)}

    def test_revoked_with_nothing_to_revoke(self) -> None:
        """A chain not granted, or methods not granted: the very same session."""
        assert self.DATA.revoked("eip155:137") is self.DATA
        assert self.DATA.revoked("eip155:1", "eth_sign") is self.DATA

    def test_with_app_data_merges(self) -> None:
        """Keys given replace whole values (no deep merge), others stay; checked as ever."""
        data = SessionData("s", "o", app_data={"a": {"x": 1}, "b": 2})
        new = data.with_app_data({"a": {"y": [3]}, "c": None})
        assert new.to_json()["appData"] == {"a": {"y": [3]}, "b": 2, "c": None}
        assert data.to_json()["appData"] == {"a": {"x": 1}, "b": 2}
        with pytest.raises(InvalidSessionDataError, match=r"^app_data\['a'\]\['y'\] "):
            data.with_app_data({"a": {"y": {1.5, 2.5}}})  # type: ignore[dict-item]
        with pytest.raises(InvalidSessionDataError, match="mapping"):
            data.with_app_data([("a", 1)])  # type: ignore[arg-type]

    def test_without_app_data(self) -> None:
        """Keys removed, missing keys ignored; nothing to remove: the same session."""
        data = SessionData("s", "o", app_data={"a": 1, "b": 2, "c": 3})
        assert data.without_app_data("a", "c", "zz").app_data == {"b": 2}
        assert data.without_app_data("zz") is data
        assert data.without_app_data() is data


class TestCopies:
    """SessionData pickles and copies (for caches, process pools), as do get_all results."""

    DATA = SessionData("a", "https://app.example.com", {"eip155:1": ["x", "y"]}, created_at=5)
    WITH_APP_DATA = attrs.evolve(DATA, app_data={"a": [1, {"b": [True, None, 1.5]}], "c": "x"})

    @pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
    def test_pickle_round_trip(self, protocol: int) -> None:
        copied: SessionData = pickle.loads(pickle.dumps(self.DATA, protocol))
        assert copied == self.DATA
        assert hash(copied) == hash(self.DATA)
        assert copied.permissions == {"eip155:1": ("x", "y")}
        with pytest.raises(TypeError):
            copied.permissions["eip155:1"] = ()  # type: ignore[index]

    @pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
    def test_pickle_keeps_app_data(self, protocol: int) -> None:
        """app_data comes back equal and frozen again."""
        copied: SessionData = pickle.loads(pickle.dumps(self.WITH_APP_DATA, protocol))
        assert copied == self.WITH_APP_DATA
        assert copied.app_data["a"] == (1, {"b": (True, None, 1.5)})
        assert isinstance(copied.app_data, MappingProxyType)
        assert copy.deepcopy(self.WITH_APP_DATA) == self.WITH_APP_DATA
        assert copy.copy(self.WITH_APP_DATA) == self.WITH_APP_DATA

    def test_pickles_without_app_data_are_unchanged(self) -> None:
        """Without app_data a pickle is what it was before app_data existed."""
        assert self.DATA.__reduce__() == (
            SessionData,
            ("a", "https://app.example.com", {"eip155:1": ("x", "y")}, 5),
        )

    def test_copy_and_deepcopy(self) -> None:
        assert copy.copy(self.DATA) == self.DATA
        assert copy.deepcopy(self.DATA) == self.DATA
        assert copy.deepcopy({"s": self.DATA}) == {"s": self.DATA}

    def test_a_session_map_pickles(self) -> None:
        found = SessionMap()
        found._put("a", self.DATA)
        copied = pickle.loads(pickle.dumps(found))
        assert isinstance(copied, SessionMap)
        assert copied == {"a": self.DATA}


class TestSessionStoreConfig:
    """SessionStoreConfig converts seconds and refuses bad values."""

    def test_defaults(self) -> None:
        """No lifetime, no refresh."""
        config = SessionStoreConfig()
        assert config.lifetime is None
        assert config.lifetime_ms is None
        assert config.refresh_on_access is False

    @pytest.mark.parametrize(
        ("value", "expected_ms"),
        [(60, 60_000), (1.5, 1_500), (timedelta(hours=24), 86_400_000), (0.001, 1)],
    )
    def test_lifetime_conversion(self, value: float | timedelta, expected_ms: int) -> None:
        """int and float seconds become a timedelta; lifetime_ms is whole ms."""
        config = SessionStoreConfig(lifetime=value)
        assert isinstance(config.lifetime, timedelta)
        assert config.lifetime_ms == expected_ms

    @pytest.mark.parametrize(
        "value",
        [
            0,
            -1,
            0.0,
            timedelta(0),
            timedelta(seconds=-5),
            0.0001,
            float("nan"),
            float("inf"),
            1e300,
            "60",
            True,
        ],
        ids=repr,
    )
    def test_bad_lifetime(self, value: Any) -> None:
        """A lifetime <= 0 (or unusable) is a ValueError naming the value."""
        with pytest.raises(ValueError, match="lifetime") as info:
            SessionStoreConfig(lifetime=value)
        assert isinstance(info.value, InvalidConfigError)

    def test_refresh_must_be_bool(self) -> None:
        """refresh_on_access refuses truthy non-bools."""
        with pytest.raises(InvalidConfigError, match="refresh_on_access"):
            SessionStoreConfig(refresh_on_access="yes")  # type: ignore[arg-type]


class TestNewSessionId:
    """new_session_id gives unguessable, URL-safe ids."""

    def test_shape(self) -> None:
        """At least 128 bits, URL-safe characters only, never repeated."""
        ids = {new_session_id() for _ in range(1000)}
        assert len(ids) == 1000
        for sid in ids:
            assert len(sid) >= 22  # 22 base64 characters carry 132 bits
            assert set(sid) <= set(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            )


class TestPlainJson:
    """to_json/from_json: the way out to plain JSON types, for web frameworks."""

    def test_to_json_has_lists(self) -> None:
        """The TypeScript session object, with lists: equal to what JSON parsing gives."""
        data = SessionData("s", "https://a.example", {"eip155:1": ("eth_accounts",)}, created_at=5)
        assert data.to_json() == {
            "id": "s",
            "origin": "https://a.example",
            "permissions": {"eip155:1": ["eth_accounts"]},
            "createdAt": 5,
        }
        assert json.loads(json.dumps(data.to_json())) == data.to_json()
        assert "createdAt" not in SessionData("s", "o").to_json()
        assert "appData" not in SessionData("s", "o").to_json()

    def test_to_json_has_plain_app_data(self) -> None:
        """appData after createdAt, as dicts and lists: what JSON parsing gives back."""
        data = SessionData("s", "o", created_at=5, app_data={"a": (1, {"b": (None,)})})
        out = data.to_json()
        assert list(out) == ["id", "origin", "permissions", "createdAt", "appData"]
        assert out["appData"] == {"a": [1, {"b": [None]}]}
        assert type(out["appData"]) is dict
        assert type(out["appData"]["a"]) is list
        assert type(out["appData"]["a"][1]) is dict
        assert json.loads(json.dumps(out)) == out
        assert SessionData.from_json(out) == data

    def test_from_json_is_the_inverse(self) -> None:
        """from_json(to_json(x)) == x; unknown fields are ignored."""
        data = SessionData("s", "o", {"c": ["m", "n"]}, created_at=-(2**53 - 1))
        assert SessionData.from_json(data.to_json()) == data
        assert SessionData.from_json({"id": "s", "origin": "o", "extra": 1}) == SessionData(
            "s", "o"
        )

    @pytest.mark.parametrize(
        "obj",
        [
            None,
            [],
            {"id": "s"},
            {"id": 1, "origin": "o"},
            {"id": "s", "origin": "o", "permissions": {"c": "m"}},
            {"id": "s", "origin": "o", "appData": None},
            {"id": "s", "origin": "o", "appData": ["x"]},
            {"id": "s", "origin": "o", "appData": {"a": float("nan")}},
        ],
    )
    def test_from_json_refuses(self, obj: Any) -> None:
        """Anything else is an InvalidSessionDataError."""
        with pytest.raises(InvalidSessionDataError):
            SessionData.from_json(obj)

    def test_largest_safe_created_at(self) -> None:
        """+/-(2**53 - 1) is accepted: JavaScript reads it back exactly."""
        assert SessionData("s", "o", created_at=2**53 - 1).created_at == 2**53 - 1


class TestBadIds:
    """A non-str id is a TypeError; an empty or invalid str a ValueError; both one class."""

    @pytest.mark.parametrize("bad_id", [1, None, b"id", ["id"]], ids=repr)
    def test_not_a_str(self, bad_id: Any) -> None:
        """Not a str: SessionIdTypeError, a TypeError and an InvalidSessionIdError."""
        with pytest.raises(SessionIdTypeError) as info:
            check_session_id(bad_id)
        assert isinstance(info.value, TypeError)
        assert isinstance(info.value, InvalidSessionIdError)

    @pytest.mark.parametrize("bad_id", ["", "\ud800"], ids=repr)
    def test_bad_text(self, bad_id: str) -> None:
        """A str that is empty or not valid text: a ValueError, not a TypeError."""
        with pytest.raises(InvalidSessionIdError) as info:
            check_session_id(bad_id)
        assert not isinstance(info.value, TypeError)
