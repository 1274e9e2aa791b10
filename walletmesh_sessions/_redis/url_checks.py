"""Checks of a Redis URL and of the options it gives, made before anything connects.

A typo in a URL parameter or a client option then fails when the store is made, naming it,
rather than at its first call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
import redis.asyncio
from redis.connection import parse_url as _untyped_parse_url

from .._core.errors import InvalidConfigError
from .._core.masking import redact_message
from .._core.validation import taken_once

__all__ = (
    "CONNECTION_URL_PARAMETERS",
    "POOL_OPTIONS",
    "STORE_URL_PARAMETERS",
    "TLS_URL_PARAMETERS",
    "check_client_options",
    "check_database",
    "check_limits",
    "parse_url",
    "split_query",
)

parse_url: Callable[[str], dict[str, Any]] = _untyped_parse_url
"""redis-py's reading of a ``redis://`` URL into connection options (untyped there)."""

# URL query parameters: the store's own, parsed here, and the connection's, left to redis-py.
STORE_URL_PARAMETERS: dict[str, Callable[[str], Any]] = {
    "timeout": float,
    "retries": int,
    "max_connections": int,
    "wait_for_replicas": int,
    "replica_timeout": float,
}
CONNECTION_URL_PARAMETERS = frozenset(
    {
        "db",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "health_check_interval",
        "client_name",
        "protocol",
        # Credentials may come as query parameters too; messages mask them (`_core.masking`).
        "username",
        "password",
    }
)
# redis-py reads any other word as true: refuse it instead.
_BOOLEAN_URL_PARAMETERS = frozenset({"socket_keepalive", "ssl_check_hostname"})
_BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "1", "0", "on", "off"})
TLS_URL_PARAMETERS = frozenset(
    {"ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}
)
# Options of the pool rather than of each connection.
POOL_OPTIONS = frozenset({"max_connections", "timeout", "connection_class", "retry"})


def check_limits(options: Mapping[str, Any], retries: object) -> None:
    """Refuse a bad `timeout`, `max_connections` or `retries`, naming it and its value."""
    timeout, limit = options["timeout"], options["max_connections"]
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < math.inf  # sockets and timers take no infinite timeout
    ):
        msg = f"timeout must be a positive, finite number of seconds or None, got {timeout!r}"
        raise InvalidConfigError(msg)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        msg = f"max_connections must be a positive int, got {limit!r}"
        raise InvalidConfigError(msg)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        msg = f"retries must be an int >= 0, got {retries!r}"
        raise InvalidConfigError(msg)


def split_query(url: str) -> tuple[str, dict[str, Any]]:
    """`url` without the store's own query parameters, and those parameters parsed.

    Refuses a parameter neither the store nor its connections know, naming it, so a typo
    fails when the store is made rather than at its first call; and one given twice (redis-py
    would take the first, the store the last).
    """
    base, _, query = url.partition("?")
    scheme = urlsplit(url).scheme.lower()
    known = CONNECTION_URL_PARAMETERS | (TLS_URL_PARAMETERS if scheme == "rediss" else set())
    store: dict[str, Any] = {}
    kept: list[tuple[str, str]] = []
    pairs = parse_qsl(query, keep_blank_values=True)
    taken_once("the Redis URL", pairs)
    for name, value in pairs:
        if name in STORE_URL_PARAMETERS:
            try:
                store[name] = STORE_URL_PARAMETERS[name](value)
            except ValueError:
                msg = f"the Redis URL parameter {name!r} must be a number, got {value!r}"
                raise InvalidConfigError(msg) from None
        elif name in known:
            if name in _BOOLEAN_URL_PARAMETERS and value.lower() not in _BOOLEAN_WORDS:
                msg = f"the Redis URL parameter {name!r} must be true or false, got {value!r}"
                raise InvalidConfigError(msg)
            kept.append((name, value))
        else:
            allowed = ", ".join(sorted({*STORE_URL_PARAMETERS, *known}))
            msg = f"unknown parameter {name!r} in the Redis URL (known: {allowed})"
            raise InvalidConfigError(msg)
    return base + (f"?{urlencode(kept)}" if kept else ""), store


def check_database(url: str) -> None:
    """A database in the path must be a number: redis-py would quietly use database 0."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "unix":
        return
    database = parts.path.lstrip("/")
    if database and not (database.isascii() and database.isdigit()):
        msg = f"the database in a Redis URL's path must be a number, got {database!r}"
        raise InvalidConfigError(msg)


def check_client_options(url: str, options: Mapping[str, Any], given: str) -> None:
    """Build (never connect) one connection of each client, so unknown options fail now."""
    kwargs = {**parse_url(url), **options}
    default = redis.SSLConnection if urlsplit(url).scheme.lower() == "rediss" else redis.Connection
    sync_class = kwargs.pop("connection_class", default)
    async_class = {
        redis.SSLConnection: redis.asyncio.SSLConnection,
        redis.UnixDomainSocketConnection: redis.asyncio.UnixDomainSocketConnection,
    }.get(sync_class, redis.asyncio.Connection)
    per_connection = {k: v for k, v in kwargs.items() if k not in POOL_OPTIONS}
    for connection_class in (sync_class, async_class):
        try:
            connection_class(**per_connection)
        except TypeError as exc:
            # Python names the keyword in its message; say it without the value.
            msg = f"a Redis client option is not accepted: {exc}"
            raise InvalidConfigError(msg) from None
        except Exception as exc:  # redis-py refuses bad values (a TLS mode, a protocol) here
            msg = f"a Redis URL parameter or client option has a bad value: {type(exc).__name__}"
            msg += f": {redact_message(str(exc), given)}"
            raise InvalidConfigError(msg) from None
