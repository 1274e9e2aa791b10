"""``redis+sentinel://`` URLs: the sentinels, the service and the primary's options, checked.

``redis+sentinel://[user:password@]host[:port][,host[:port]...]/service_name[/db]``: the user
info and the query's connection parameters are the primary's (and its replicas'),
``sentinel_username`` and ``sentinel_password`` the sentinels'.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import attrs

from .._core.errors import InvalidConfigError
from .._core.masking import misread_userinfo, redact
from .._core.validation import taken_once
from .url_checks import CONNECTION_URL_PARAMETERS, STORE_URL_PARAMETERS, parse_url, split_query

__all__ = (
    "DEFAULT_SENTINEL_PORT",
    "SCHEME",
    "SENTINEL_URL_PARAMETERS",
    "SentinelUrl",
    "parse_sentinel_url",
)

SCHEME = "redis+sentinel"
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
    """What a ``redis+sentinel://`` URL names.

    `primary_url` is a ``redis://`` URL that gives the primary's connection options (its host
    a placeholder: the sentinels name it); `store_options` are the store's own parameters.
    """

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
    if database and not (database.isascii() and database.isdigit()):
        msg = f"the database in a Redis URL's path must be a number, got {database!r}"
        raise InvalidConfigError(msg)
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
