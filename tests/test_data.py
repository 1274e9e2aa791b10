"""SessionData and SessionStoreConfig: construction, immutability and validation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest

from walletmesh_sessions import (
    InvalidConfigError,
    InvalidSessionDataError,
    SessionData,
    SessionStoreConfig,
    SessionStoreError,
    new_session_id,
)


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
        """The repr shows plain dicts and lists."""
        assert repr(SessionData("s", "o", {"c": ["m"]})) == (
            "SessionData(id='s', origin='o', permissions={'c': ['m']}, created_at=None)"
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
