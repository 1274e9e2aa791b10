"""SessionData and SessionStoreConfig: construction, immutability and validation."""

from __future__ import annotations

import copy
import json
import pickle
from datetime import timedelta
from typing import Any

import attrs
import pytest

from walletmesh_sessions import (
    InvalidConfigError,
    InvalidSessionDataError,
    InvalidSessionIdError,
    SessionData,
    SessionIdTypeError,
    SessionMap,
    SessionStoreConfig,
    SessionStoreError,
    new_session_id,
)
from walletmesh_sessions._validation import check_session_id


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
            "SessionData(id='s', origin='o', permissions={'c': ('m',)}, created_at=None)"
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


class TestCopies:
    """SessionData pickles and copies (for caches, process pools), as do get_all results."""

    DATA = SessionData("a", "https://app.example.com", {"eip155:1": ["x", "y"]}, created_at=5)

    @pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
    def test_pickle_round_trip(self, protocol: int) -> None:
        copied: SessionData = pickle.loads(pickle.dumps(self.DATA, protocol))
        assert copied == self.DATA
        assert hash(copied) == hash(self.DATA)
        assert copied.permissions == {"eip155:1": ("x", "y")}
        with pytest.raises(TypeError):
            copied.permissions["eip155:1"] = ()  # type: ignore[index]

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
