"""Checks of caller input shared by every store, run before anything is written."""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import Any, cast

from .data import SessionData, SessionStoreConfig
from .errors import (
    InvalidConfigError,
    InvalidSessionDataError,
    InvalidSessionIdError,
    SessionIdTypeError,
)
from .expiry import Clock
from .text import is_unicode_text

__all__ = (
    "check_batch_size",
    "check_clock",
    "check_config",
    "check_prefix",
    "check_session_data",
    "check_session_id",
    "taken_once",
)


def check_session_id(session_id: object) -> str:
    """Return `session_id` if it is a non-empty str of valid Unicode text, else raise."""
    if not isinstance(session_id, str):
        msg = f"session id must be a str, got {type(session_id).__name__}: {session_id!r}"
        raise SessionIdTypeError(msg)
    if not session_id:
        msg = f"session id must be a non-empty str, got {session_id!r}"
        raise InvalidSessionIdError(msg)
    if not is_unicode_text(session_id):
        msg = f"session id must be valid Unicode text (no lone surrogates), got {session_id!r}"
        raise InvalidSessionIdError(msg)
    # A str subclass could compare or hash differently from the text it holds: keep the text.
    return session_id if type(session_id) is str else str.__str__(session_id)


def check_session_data(data: Any) -> SessionData:
    """Return `data` if it is a `SessionData`, else raise."""
    if not isinstance(data, SessionData):
        msg = f"session data must be a SessionData, got {type(data).__name__}: {data!r}"
        raise InvalidSessionDataError(msg)
    return data


def check_config(config: Any) -> SessionStoreConfig:
    """The store's config: `None` means `SessionStoreConfig()`; anything else must be one."""
    if config is None:
        return SessionStoreConfig()
    if not isinstance(config, SessionStoreConfig):
        msg = f"config must be a SessionStoreConfig or None, got {config!r}"
        raise InvalidConfigError(msg)
    return config


def check_clock(clock: Any) -> Clock:
    """Return `clock` if it is callable (it is read on every expiry decision), else raise."""
    if not callable(clock):
        msg = f"clock must be a zero-argument callable returning epoch seconds, got {clock!r}"
        raise InvalidConfigError(msg)
    return cast("Clock", clock)


def check_prefix(prefix: Any) -> str:
    """Return `prefix` if it is a non-empty str of valid Unicode text, else raise."""
    if not isinstance(prefix, str) or not prefix or not is_unicode_text(prefix):
        msg = f"prefix must be a non-empty str, got {prefix!r}"
        raise InvalidConfigError(msg)
    return str(prefix)


def check_batch_size(batch_size: Any) -> int:
    """Return `batch_size` if it is a positive int (not a bool), else raise `InvalidConfigError`."""
    if type(batch_size) is not int or batch_size < 1:
        msg = f"batch_size must be a positive int, got {batch_size!r}"
        raise InvalidConfigError(msg)
    return batch_size


def taken_once(
    where: str, query: Iterable[tuple[str, str]], names: Container[str] | None = None
) -> dict[str, str]:
    """The query parameters named in `names` (default: all of them); one given twice is
    refused, never the last won. `where` names the URL in the message (secrets masked)."""
    found: dict[str, str] = {}
    for key, value in query:
        if names is None or key in names:
            if key in found:
                msg = f"{key} given twice in {where}"
                raise InvalidConfigError(msg)
            found[key] = value
    return found
