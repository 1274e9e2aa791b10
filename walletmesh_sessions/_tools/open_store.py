"""`open_store`: a store from a URL, so deployments choose their store in configuration."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit

from .._core.data import SessionStoreConfig
from .._core.errors import InvalidConfigError, MissingDependencyError
from .._core.expiry import Clock
from .._core.masking import misread_userinfo, redact, redact_message
from .._core.protocol import FullSessionStore
from .._core.validation import taken_once
from .._local.localstorage import LocalStorageSessionStore
from .._local.memory import MemorySessionStore

if TYPE_CHECKING:
    from ..postgres import PostgresSessionStore
    from ..redis import RedisSessionStore

__all__ = ("CONNINFO_HINT", "is_conninfo", "open_store")


# Query parameters that build the store's SessionStoreConfig.
CONFIG_PARAMETERS = ("lifetime", "refresh_on_access", "max_lifetime")
# Query parameters that configure the store rather than the connection.
STORE_PARAMETERS = frozenset({"prefix", *CONFIG_PARAMETERS})
# Query parameters (or keyword options) of a SQLite URL: the store's own options.
SQLITE_PARAMETERS = frozenset({"durability", "timeout"})
# libpq's connection keywords that a key=value string starts with or carries.
_CONNINFO = re.compile(
    r"(?:^|\s)(?:host|hostaddr|port|dbname|user|password|passfile|sslmode|service|"
    r"connect_timeout|options|application_name|target_session_attrs)\s*=",
)
CONNINFO_HINT = "write it as postgresql://user:password@host:port/dbname"
TRUE, FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


def open_store(
    url: str,
    config: SessionStoreConfig | None = None,
    *,
    prefix: str | None = None,
    clock: Clock = time.time,
    **options: Any,
) -> FullSessionStore:
    """The store a URL names, typed as `FullSessionStore`; nothing is opened until first use.

    - ``memory://``: a `MemorySessionStore`.
    - ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``: a
      `LocalStorageSessionStore` on that SQLite file.
    - ``redis://``, ``rediss://`` (TLS), ``unix://`` (a socket path): a `RedisSessionStore`
      (extra ``redis``); other query parameters and `options` go to the Redis client.
    - ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://`` for TLS): a
      `RedisSessionStore` on a Redis Cluster, found through the nodes named.
    - ``redis+sentinel://host:port[,host:port...]/service_name[/db]``: a `RedisSessionStore`
      on the primary that those sentinels name for the service, followed through failovers.
    - ``postgresql://`` or ``postgres://``: a `PostgresSessionStore` (extra ``postgres``) on
      the ``table`` query parameter's table; other query parameters and `options` go to it.

    For every scheme, ``lifetime`` and ``max_lifetime`` (seconds, or ``none``) and
    ``refresh_on_access`` (true/false) build the `SessionStoreConfig` (or give `config`), and
    ``prefix`` (not for PostgreSQL) is the `prefix` argument: never both, each once. A SQLite
    URL also takes ``durability`` and ``timeout``, in the query or as `options`. Mistakes raise
    `InvalidConfigError` before anything is opened, the URL's password masked.
    """
    if not isinstance(url, str):
        msg = f"store URL must be a str, got {url!r}"
        raise InvalidConfigError(msg)
    shown = redact(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed '[' of an IPv6 host
        msg = f"not a store URL: {shown!r} ({redact_message(str(exc), url)})"
        raise InvalidConfigError(msg) from None
    if is_conninfo(url):
        msg = f"a libpq key=value string is not a store URL: {shown!r}; {CONNINFO_HINT}"
        raise InvalidConfigError(msg)
    opener = _OPENERS.get(parts.scheme.lower())
    if opener is None:
        msg = f"unknown store URL scheme in {shown!r}: use one of " + ", ".join(
            f"{s}://" for s in SCHEMES
        )
        raise InvalidConfigError(msg)
    query = parse_qsl(parts.query, keep_blank_values=True)
    store_query = taken_once(repr(shown), query, STORE_PARAMETERS)
    rest = [(k, v) for k, v in query if k not in STORE_PARAMETERS]
    config = _config(shown, config, store_query)
    return opener(_Request(url, shown, parts, config, prefix, store_query, rest, clock, options))


def is_conninfo(text: str) -> bool:
    """True if `text` is a libpq key=value connection string, not a URL (no ``://``)."""
    return "://" not in text and _CONNINFO.search(text) is not None


class _Request(NamedTuple):
    """What `open_store` was asked, checked as far as every scheme's checks go."""

    url: str
    shown: str  # the URL with its password masked
    parts: SplitResult
    config: SessionStoreConfig | None
    prefix: str | None  # the argument; the URL's ``prefix`` is in `store_query`
    store_query: dict[str, str]
    rest: list[tuple[str, str]]  # the query parameters that do not configure the store
    clock: Clock
    options: dict[str, Any]

    def store_prefix(self) -> str:
        """The prefix asked for, in the URL or as the argument (not both), or the default."""
        if "prefix" in self.store_query:
            if self.prefix is not None:
                msg = f"give prefix in the URL or as an argument, not both: {self.shown!r}"
                raise InvalidConfigError(msg)
            return self.store_query["prefix"]
        return "wm_session_" if self.prefix is None else self.prefix

    def url_with_rest(self) -> str:
        """The URL with only the query parameters for the connection (rebuilt by hand:
        urlunsplit would turn unix:///path into unix:/path)."""
        rest = self.rest
        return self.url.split("?", 1)[0] + (f"?{urlencode(rest)}" if rest else "")


def _memory(request: _Request) -> FullSessionStore:
    request.store_prefix()  # refused when given twice, though a memory store keeps no keys
    parts = request.parts
    if parts.netloc or parts.path not in ("", "/"):
        msg = f"a memory store has no host or path (memory://?lifetime=...), got {request.shown!r}"
        raise InvalidConfigError(msg)
    _refuse_extras(request.shown, request.rest, request.options)
    return MemorySessionStore(request.config, clock=request.clock)


def _sqlite(request: _Request) -> FullSessionStore:
    prefix = request.store_prefix()
    shown, rest, options = request.shown, request.rest, request.options
    sqlite_options = _sqlite_options(shown, rest, options)
    _refuse_extras(shown, [(k, v) for k, v in rest if k not in SQLITE_PARAMETERS], options)
    parts = request.parts
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if parts.netloc or not path:
        msg = f"a SQLite URL is sqlite:///relative.db or sqlite:////abs/path.db, got {shown!r}"
        raise InvalidConfigError(msg)
    return LocalStorageSessionStore(
        path, request.config, prefix=prefix, clock=request.clock, **sqlite_options
    )


def _redis(request: _Request) -> FullSessionStore:
    prefix = request.store_prefix()
    return _from_url(request, "Redis", _store_class(request, "redis"), prefix=prefix)


def _postgres(request: _Request) -> FullSessionStore:
    shown = request.shown
    if misread_userinfo(request.url):
        msg = f"percent-encode any '#', '/', '?' or '@' in the user name or password: {shown!r}"
        raise InvalidConfigError(msg)
    if request.prefix is not None or "prefix" in request.store_query:
        msg = f"a PostgreSQL store has no prefix: give each store its own table=... in {shown!r}"
        raise InvalidConfigError(msg)
    return _from_url(request, "PostgreSQL", _store_class(request, "postgres"))


def _store_class(
    request: _Request, extra: str
) -> type[RedisSessionStore] | type[PostgresSessionStore]:
    """The store class the optional `extra` installs; `MissingDependencyError`, saying how to
    install it, when it is missing."""
    try:
        if extra == "redis":
            from ..redis import RedisSessionStore

            return RedisSessionStore
        from ..postgres import PostgresSessionStore

        return PostgresSessionStore
    except ImportError as exc:
        msg = (
            f"{request.shown!r} needs the {extra} extra: pip install 'walletmesh-sessions[{extra}]'"
        )
        raise MissingDependencyError(msg) from exc


def _from_url(
    request: _Request,
    kind: str,
    store_class: type[RedisSessionStore] | type[PostgresSessionStore],
    **keywords: Any,
) -> FullSessionStore:
    """``store_class.from_url`` with the URL less the store's parameters, its refusal masked."""
    try:
        return store_class.from_url(
            request.url_with_rest(),
            request.config,
            clock=request.clock,
            **keywords,
            **request.options,
        )
    except InvalidConfigError as exc:
        refused = exc
    # Splitting off the query may have cut a misread password: mask against the whole URL,
    # and raise outside the handler so that the unmasked error is not even the context.
    masked = redact_message(str(refused), request.url)
    if masked == str(refused):
        raise refused
    raise InvalidConfigError(f"not a {kind} URL: {request.shown!r} ({masked})")


_OPENERS: dict[str, Callable[[_Request], FullSessionStore]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "redis": _redis,
    "rediss": _redis,
    "redis+cluster": _redis,
    "rediss+cluster": _redis,
    "redis+sentinel": _redis,
    "unix": _redis,
    "postgresql": _postgres,
    "postgres": _postgres,
}
SCHEMES = tuple(_OPENERS)


def _config(
    shown: str, config: SessionStoreConfig | None, query: dict[str, str]
) -> SessionStoreConfig | None:
    given = [name for name in CONFIG_PARAMETERS if name in query]
    if not given:
        return config
    if config is not None:
        msg = f"give {'/'.join(given)} in the URL or as config, not both: {shown!r}"
        raise InvalidConfigError(msg)
    lifetime = _seconds(shown, query, "lifetime")
    max_lifetime = _seconds(shown, query, "max_lifetime")
    refresh = query.get("refresh_on_access", "false")
    if refresh.lower() not in TRUE | FALSE:
        msg = f"refresh_on_access in {shown!r} must be true or false, got {refresh!r}"
        raise InvalidConfigError(msg)
    try:
        return SessionStoreConfig(
            lifetime=lifetime,
            refresh_on_access=refresh.lower() in TRUE,
            max_lifetime=max_lifetime,
        )
    except InvalidConfigError as exc:  # e.g. "lifetime must be > 0": say which URL
        msg = f"{exc} (in {shown!r})"
        raise InvalidConfigError(msg) from exc


def _seconds(shown: str, query: dict[str, str], name: str) -> float | None:
    """The duration `name` of the query in seconds; `None` when absent, empty or "none"."""
    value = query.get(name, "")
    if value.lower() in ("", "none"):
        return None
    try:
        return float(value)
    except ValueError:
        msg = f"{name} in {shown!r} must be seconds or none, got {value!r}"
        raise InvalidConfigError(msg) from None


def _refuse_extras(url: str, query: list[tuple[str, str]], options: dict[str, Any]) -> None:
    unknown = sorted({k for k, _ in query} | set(options))
    if unknown:
        msg = f"unknown option(s) {', '.join(unknown)} for {url!r}"
        raise InvalidConfigError(msg)


def _sqlite_options(
    url: str, query: list[tuple[str, str]], options: dict[str, Any]
) -> dict[str, Any]:
    """The SQLite store's own options, from the URL's query and the keyword `options`.

    Those taken are removed from `options`; their values are checked by the store.
    """
    found: dict[str, Any] = dict(taken_once(repr(url), query, SQLITE_PARAMETERS))
    if "timeout" in found:  # from the query: text to convert
        try:
            found["timeout"] = float(found["timeout"])
        except ValueError:
            msg = f"timeout in {url!r} must be seconds, got {found['timeout']!r}"
            raise InvalidConfigError(msg) from None
    for key in SQLITE_PARAMETERS & set(options):
        if key in found:
            msg = f"give {key} in the URL or as an argument, not both: {url!r}"
            raise InvalidConfigError(msg)
        found[key] = options.pop(key)  # as given: the store checks its type
    return found
