"""A PostgreSQL URL, checked and parsed once into a `UrlTarget`: where a store connects, and
the settings its URL gives.

The URL's query may give the store's own ``table``, ``timeout`` and ``max_connections``;
every other parameter is libpq's and is checked here against libpq's own list and values,
so that a typo is an error when the store is made rather than at its first connection.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

import attrs
import psycopg
import psycopg.conninfo

from .._core.deadline import check_timeout
from .._core.errors import InvalidConfigError
from .._core.masking import misread_userinfo, redact, redact_error, redact_message
from .._core.validation import taken_once

__all__ = ("DEFAULT_MAX_CONNECTIONS", "DEFAULT_TIMEOUT", "UrlTarget", "parse_url")

DEFAULT_TIMEOUT: Final = 5.0
DEFAULT_MAX_CONNECTIONS: Final = 10
SCHEMES: Final = ("postgresql", "postgres")
# Keywords of psycopg.connect itself rather than of libpq's connection string.
PSYCOPG_CONNECT_OPTIONS: Final = frozenset(
    {"autocommit", "prepare_threshold", "context", "row_factory", "cursor_factory"}
)
# URL query parameters of the store itself; every other one is libpq's.
STORE_URL_PARAMETERS: Final[dict[str, Callable[[str], Any]]] = {
    "table": str,
    "timeout": float,
    "max_connections": int,
}


def _split_url(url: str) -> tuple[str, dict[str, Any]]:
    """`url` without the store's own query parameters, and those parameters parsed.

    Any parameter given twice is refused: neither libpq's last one nor ours decides.
    """
    base, _, query = url.partition("?")
    store: dict[str, Any] = {}
    kept: list[tuple[str, str]] = []
    pairs = parse_qsl(query, keep_blank_values=True)
    taken_once(repr(redact(url)), pairs)
    for name, value in pairs:
        parse = STORE_URL_PARAMETERS.get(name)
        if parse is None:
            kept.append((name, value))
            continue
        try:
            store[name] = parse(value)
        except ValueError:
            msg = f"the PostgreSQL URL parameter {name!r} must be a number, got {value!r}"
            raise InvalidConfigError(msg) from None
    return base + (f"?{urlencode(kept)}" if kept else ""), store


# libpq takes these only from a fixed set, or as whole numbers, but says so only when it
# connects: checked when the store is made, so a typo is an error there and then.
_LIBPQ_CHOICES: dict[str, frozenset[str]] = {
    "sslmode": frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}),
    "gssencmode": frozenset({"disable", "prefer", "require"}),
    "channel_binding": frozenset({"disable", "prefer", "require"}),
    "target_session_attrs": frozenset(
        {"any", "read-write", "read-only", "primary", "standby", "prefer-standby"}
    ),
    "load_balance_hosts": frozenset({"disable", "random"}),
}
_LIBPQ_NUMBERS = frozenset(
    {
        "port",
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
    }
)


def _check_libpq_values(params: dict[str, Any], shown: str) -> None:
    """Refuse a libpq value libpq would refuse at connect time (``sslmode=bogus``, ``port=x``)."""
    for name, value in params.items():
        text = str(value)
        choices = _LIBPQ_CHOICES.get(name)
        if choices is not None and text not in choices:
            msg = f"{name} must be one of {', '.join(sorted(choices))}, got {text!r} in {shown!r}"
            raise InvalidConfigError(msg)
        # A list of ports (one per host) is comma-separated; an empty one means the default.
        parts = text.split(",") if name == "port" else [text]
        if name in _LIBPQ_NUMBERS and not all(p.strip().isdigit() or not p for p in parts):
            msg = f"{name} must be a whole number, got {text!r} in {shown!r}"
            raise InvalidConfigError(msg)


@attrs.frozen
class UrlTarget:
    """A store's PostgreSQL URL, checked: what its pools connect with, and its settings.

    `url` is the URL as given (it masks secrets in messages and logs); `conninfo` is the URL
    without the store's own parameters; `kwargs` go to `psycopg.connect`.
    """

    url: str
    conninfo: str
    kwargs: Mapping[str, Any]
    table: str
    timeout: float
    max_connections: int


def parse_url(
    url: object,
    *,
    table: str,
    timeout: float,
    max_connections: int,
    connect_options: Mapping[str, Any],
) -> UrlTarget:
    """Check `url` and parse it into a `UrlTarget`; the URL's own parameters win over the
    arguments. Raises `InvalidConfigError`, naming the URL with its secrets masked."""
    if not isinstance(url, str):
        msg = f"url must be a str such as 'postgresql://localhost/db', got {url!r}"
        raise InvalidConfigError(msg)
    shown = redact(url)
    if urlsplit(url).scheme.lower() not in SCHEMES:
        msg = f"a PostgreSQL URL starts with postgresql:// or postgres://, got {shown!r}"
        raise InvalidConfigError(msg)
    if misread_userinfo(url):
        msg = f"percent-encode any '#', '/', '?' or '@' in the user name or password of {shown!r}"
        raise InvalidConfigError(msg)
    conninfo, from_query = _split_url(url)
    params = _libpq_params(url, conninfo, connect_options)
    _check_libpq_values(params, shown)
    timeout = check_timeout(from_query.get("timeout", timeout))
    limit = from_query.get("max_connections", max_connections)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        msg = f"max_connections must be a positive int, got {limit!r}"
        raise InvalidConfigError(msg)
    kwargs: dict[str, Any] = {**connect_options, "autocommit": True}
    if "connect_timeout" not in params:
        # libpq counts whole seconds and takes anything under 2 as 2.
        kwargs["connect_timeout"] = max(2, math.ceil(timeout))
    if "options" not in params:
        kwargs["options"] = f"-c statement_timeout={math.ceil(timeout * 1000)}"
    return UrlTarget(
        url=url,
        conninfo=conninfo,
        kwargs=MappingProxyType(kwargs),
        table=from_query.get("table", table),
        timeout=timeout,
        max_connections=limit,
    )


def _libpq_params(url: str, conninfo: str, connect_options: Mapping[str, Any]) -> dict[str, Any]:
    """Every libpq parameter of `conninfo` and `connect_options`, each checked by libpq's own
    list (`make_conninfo`)."""
    libpq = {k: v for k, v in connect_options.items() if k not in PSYCOPG_CONNECT_OPTIONS}
    refused: psycopg.Error
    try:
        return psycopg.conninfo.conninfo_to_dict(psycopg.conninfo.make_conninfo(conninfo, **libpq))
    except psycopg.Error as exc:
        refused = exc
    # Raised here, outside the handler: the unmasked error never rides along as context.
    msg = f"not a PostgreSQL URL: {redact(url)!r} ({redact_message(str(refused), url)})"
    raise InvalidConfigError(msg) from redact_error(refused, url)
