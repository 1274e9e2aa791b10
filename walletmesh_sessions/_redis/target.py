"""A Redis URL, checked and parsed once into a `RedisTarget`: where a store's clients connect,
and the settings the URL and the arguments give.

One server (``redis://``, ``rediss://``, ``unix://``), the primary of a Sentinel-managed
service (``redis+sentinel://``) and a Cluster (``redis+cluster://``, ``rediss+cluster://``)
all parse into the one value, by the same rules; the store then makes the clients it names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl

import attrs

from .._core.errors import InvalidConfigError
from .._core.masking import redact, redact_error, redact_message
from .replicas import ReplicaWait, replica_wait
from .url_checks import (
    SENTINEL_SCHEME,
    check_auto_pipeline,
    check_client_options,
    check_database,
    check_limits,
    parse_sentinel_url,
    parse_url,
    split_query,
)

__all__ = (
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REPLICA_TIMEOUT",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "NO_CLUSTER_WAIT",
    "RedisTarget",
    "parse_target",
)

T = TypeVar("T")

DEFAULT_TIMEOUT: Final = 5.0
DEFAULT_RETRIES: Final = 1
DEFAULT_MAX_CONNECTIONS: Final = 50
DEFAULT_REPLICA_TIMEOUT: Final = 1.0

CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

NO_CLUSTER_WAIT: Final = (
    "wait_for_replicas is not supported on Redis Cluster: each write goes to its slot's "
    "primary, and the store does not follow it with WAIT there"
)


@attrs.frozen
class RedisTarget:
    """What a Redis URL names, checked before anything connects: `url` without the store's
    own parameters (the server's, a cluster's first node's, or for Sentinel one giving the
    primary's options, its host a placeholder), and `options` for redis-py's pools."""

    url: str
    options: Mapping[str, Any]
    retries: int
    wait: ReplicaWait | None = None
    read_timeout_given: bool = False
    nodes: tuple[str, ...] = ()
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    sentinel_options: Mapping[str, Any] = attrs.field(factory=lambda: MappingProxyType({}))
    auto_pipeline: bool = True


def node_urls(url: str) -> list[str]:
    """One ``redis://`` (or ``rediss://``) URL per node named in a cluster URL, query kept:
    ``redis+cluster://[user:password@]host:port[,host:port...][/][?query]``, without ``db``."""
    shown = redact(url)
    scheme, _, rest = url.partition("://")
    base = CLUSTER_SCHEMES[scheme.lower()]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = netloc.rpartition("@")
    path = tail.partition("?")[0]
    if path not in ("", "/", "/0"):
        msg = f"a Redis Cluster URL has no database (only 0): {shown!r}"
        raise InvalidConfigError(msg)
    query = tail.partition("?")[2]
    # Names as the query's parser reads them: ``%64b`` is ``db`` too.
    if any(name == "db" for name, _ in parse_qsl(query, keep_blank_values=True)):
        msg = (
            f"a Redis Cluster URL takes no db parameter (a cluster has database 0 only): {shown!r}"
        )
        raise InvalidConfigError(msg)
    nodes = hosts.split(",")
    if not all(nodes):
        msg = f"a Redis Cluster URL names nodes as host:port[,host:port...], got {shown!r}"
        raise InvalidConfigError(msg)
    suffix = f"?{query}" if query else ""
    return [f"{base}://{userinfo}{at}{node}{suffix}" for node in nodes]


def _read(parse: Callable[[], T], given: str, what: str) -> T:
    """``parse()``; a `ValueError` it raises becomes `InvalidConfigError`, secrets masked."""
    try:
        return parse()
    except ValueError as exc:
        if isinstance(exc, InvalidConfigError):
            raise
        msg = f"not a {what}: {redact(given)!r} ({redact_message(str(exc), given)})"
        raise InvalidConfigError(msg) from redact_error(exc, given)


def _server_urls(urls: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Each ``redis://`` URL without the store's parameters, and those parameters, checked."""
    split: list[tuple[str, dict[str, Any]]] = []
    for node in urls:
        parse_url(node)
        url, from_query = split_query(node)
        parse_url(url)
        check_database(url)
        split.append((url, from_query))
    return split


def parse_target(
    url: object,
    *,
    timeout: float | None,
    retries: int,
    max_connections: int,
    wait_for_replicas: object,
    replica_timeout: object,
    client_options: Mapping[str, Any],
    auto_pipeline: object = True,
) -> RedisTarget:
    """`url` and the store's arguments, checked, as one `RedisTarget` (the URL's query wins)."""
    if not isinstance(url, str):
        msg = f"url must be a str such as 'redis://localhost:6379/0', got {url!r}"
        raise InvalidConfigError(msg)
    given = url  # messages mask secrets in the URL as given, whatever parsing cut off
    scheme = url.partition("://")[0].lower()
    sentinel = None
    nodes: list[str] = []
    if scheme == SENTINEL_SCHEME:
        sentinel = _read(lambda: parse_sentinel_url(given), given, "Redis Sentinel URL")
        url, from_query = sentinel.primary_url, sentinel.store_options
    else:
        named = node_urls(given) if scheme in CLUSTER_SCHEMES else [given]
        split = _read(lambda: _server_urls(named), given, "Redis URL")
        url, from_query = split[-1]
        if scheme in CLUSTER_SCHEMES:
            nodes = [node for node, _ in split]
    auto_pipeline = check_auto_pipeline(from_query.get("auto_pipeline", auto_pipeline))
    timeout = from_query.get("timeout", timeout)
    retries = from_query.get("retries", retries)
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "timeout": timeout,
        "max_connections": from_query.get("max_connections", max_connections),
        **client_options,
    }
    check_limits(options, retries)
    check_client_options(url, options, given)
    sentinel_options: dict[str, Any] = {}
    if sentinel is not None:
        # Finding the primary asks the sentinels one after another: each gets its share of
        # the timeout, so asking them all (hung ones too) fits in one call's timeout.
        share = len(sentinel.sentinels)
        for name in ("socket_timeout", "socket_connect_timeout"):
            sentinel_options[name] = None if options[name] is None else options[name] / share
        sentinel_options.update(sentinel.sentinel_options)
    wait = replica_wait(
        from_query.get("wait_for_replicas", wait_for_replicas),
        from_query.get("replica_timeout", replica_timeout),
        timeout,
    )
    if nodes and wait is not None:
        raise InvalidConfigError(NO_CLUSTER_WAIT)
    return RedisTarget(
        nodes[0] if nodes else url,
        MappingProxyType(options),
        retries,
        wait,
        read_timeout_given="socket_timeout" in client_options,
        nodes=tuple(nodes),
        sentinels=() if sentinel is None else sentinel.sentinels,
        service="" if sentinel is None else sentinel.service,
        sentinel_options=MappingProxyType(sentinel_options),
        auto_pipeline=auto_pipeline,
    )
