"""Checks of a Redis URL (a Sentinel one too) and of the options it gives, made before anything
connects: a typo then fails when the store is made, naming it, rather than at its first call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import attrs
import redis
import redis.asyncio
from redis.connection import parse_url as _untyped_parse_url

from .._core.errors import InvalidConfigError
from .._core.masking import misread_userinfo, redact, redact_message
from .._core.validation import taken_once

__all__ = (
    "POOL_OPTIONS",
    "SENTINEL_SCHEME",
    "check_auto_pipeline",
    "check_client_options",
    "check_database",
    "check_limits",
    "parse_sentinel_url",
    "parse_url",
    "split_query",
)

parse_url: Callable[[str], dict[str, Any]] = _untyped_parse_url
"""redis-py's reading of a ``redis://`` URL into connection options (untyped there)."""

_FLAGS = {"true": True, "yes": True, "1": True, "on": True}
_FLAGS.update(dict.fromkeys(("false", "no", "0", "off"), False))


def _flag(value: str) -> bool:
    try:
        return _FLAGS[value.lower()]
    except KeyError:
        msg = f"the Redis URL parameter 'auto_pipeline' must be true or false, got {value!r}"
        raise InvalidConfigError(msg) from None


def check_auto_pipeline(value: object) -> bool:
    """`value` if it is a bool, else `InvalidConfigError` naming it."""
    if not isinstance(value, bool):
        msg = f"auto_pipeline must be True or False, got {value!r}"
        raise InvalidConfigError(msg)
    return value


# URL query parameters: the store's own, parsed here, and the connection's, left to redis-py.
STORE_URL_PARAMETERS: dict[str, Callable[[str], Any]] = {
    "timeout": float,
    "retries": int,
    "max_connections": int,
    "wait_for_replicas": int,
    "replica_timeout": float,
    "auto_pipeline": _flag,
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
    """`url` without the store's own query parameters, and those parameters parsed; refuses
    one unknown, or given twice (redis-py would take the first, the store the last), in a
    message that shows none of `url`'s secrets (a value may be a password pasted there)."""
    try:
        return _split_query(url)
    except InvalidConfigError as exc:
        raise InvalidConfigError(redact_message(str(exc), url)) from None


def _split_query(url: str) -> tuple[str, dict[str, Any]]:
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
            except InvalidConfigError:
                raise
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


SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
# Credentials of the sentinels themselves; those in the URL's user info are the primary's.
SENTINEL_URL_PARAMETERS = frozenset({"sentinel_username", "sentinel_password"})


def _refuse(message: str, given: str) -> InvalidConfigError:
    return InvalidConfigError(f"{message}: {redact(given)!r}")


def _address(text: str, given: str) -> tuple[str, int]:
    """``host[:port]`` or ``[ipv6][:port]``, the port 26379 if not given."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            host, port = text, ""
    if not host or not (port == "" or (port.isascii() and port.isdigit())):
        msg = f"a sentinel address must be host:port, got {text!r} in the Redis Sentinel URL"
        raise _refuse(msg, given)
    number = int(port) if port else DEFAULT_SENTINEL_PORT
    if not 0 < number < 65536:
        msg = f"a sentinel port must be 1 to 65535, got {number}"
        raise _refuse(msg, given)
    return host, number


@attrs.frozen
class SentinelUrl:
    """What a ``redis+sentinel://[user:password@]host[:port][,...]/service_name[/db]`` URL
    names; `primary_url` gives the primary's options (its host a placeholder)."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    sentinel_options: Mapping[str, Any]
    primary_url: str
    store_options: Mapping[str, Any]


def parse_sentinel_url(given: str) -> SentinelUrl:
    """`given` parsed and checked, or `InvalidConfigError` (secrets masked) naming what is wrong."""
    if misread_userinfo(given):
        msg = "percent-encode any '#', '/', '?' or '@' in the user name or password"
        raise _refuse(msg, given)
    try:
        parts = urlsplit(given)
    except ValueError:
        raise _refuse("not a Redis Sentinel URL", given) from None
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if not hosts:
        raise _refuse("a Redis Sentinel URL names at least one sentinel", given)
    sentinels = tuple(_address(host, given) for host in hosts.split(","))
    path = parts.path.split("/")[1:]
    service = unquote(path[0]) if path else ""
    database = path[1] if len(path) > 1 else ""
    if not service or len(path) > 2:
        msg = "a Redis Sentinel URL's path is /service_name or /service_name/db"
        raise _refuse(msg, given)
    check_database(f"redis://placeholder/{database}")
    sentinel_options: dict[str, Any] = {}
    kept: list[tuple[str, str]] = []
    known = {*STORE_URL_PARAMETERS, *CONNECTION_URL_PARAMETERS, *SENTINEL_URL_PARAMETERS}
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    taken_once("the Redis URL", pairs, SENTINEL_URL_PARAMETERS)  # the rest: `split_query`
    for name, value in pairs:
        if name in SENTINEL_URL_PARAMETERS:
            sentinel_options[name.removeprefix("sentinel_")] = value
        elif name in known:
            kept.append((name, value))
        else:
            allowed = ", ".join(sorted(known))
            msg = f"unknown parameter {name!r} in the Redis URL (known: {allowed})"
            raise InvalidConfigError(msg)
    # The primary's connection options are what a redis:// URL with the same user info,
    # database and query would give (the host is a placeholder: the sentinels name it).
    at = f"{userinfo}@" if userinfo else ""
    query = f"?{urlencode(kept, quote_via=quote)}" if kept else ""
    primary_url, store_options = split_query(f"redis://{at}127.0.0.1/{database}{query}")
    parse_url(primary_url)
    return SentinelUrl(
        sentinels,
        service,
        MappingProxyType(sentinel_options),
        primary_url,
        MappingProxyType(store_options),
    )
