"""`SessionMiddleware`: pure ASGI, so it fits Starlette, FastAPI, Litestar, Quart or a bare app.

It gives each HTTP or WebSocket request a lazy `Session`, puts the id in a cookie (or a
header) when the session starts, rotates or ends, answers a store outage with 503, and owns one
store per process: opened from a URL or factory when the app starts, closed when it stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from .._core.data import SessionStoreConfig
from .._core.errors import InvalidConfigError
from .._core.expiry import Clock
from .._core.ids import is_new_session_id_shape
from .._core.log import logger
from .._core.protocol import ClosableSessionStore, LifecycleSessionStore
from .._core.validation import check_clock
from .._tools.open_store import open_store
from ._cookies import CookieOptions, is_token, session_id_from_cookies
from ._session import Session
from ._types import AnyASGIApp, Message, Receive, Scope, Send

__all__ = ("SCOPE_KEY", "HasScope", "SessionMiddleware", "session_from_scope", "session_of")

SCOPE_KEY: Final = "walletmesh_sessions.session"
"""Where the middleware puts each request's `Session` in the ASGI scope."""

# After these the app serves no more requests: an owned store is closed.
_LIFESPAN_ENDS = frozenset(
    {"lifespan.startup.failed", "lifespan.shutdown.complete", "lifespan.shutdown.failed"}
)

StoreSource = LifecycleSessionStore | str | Callable[[], LifecycleSessionStore]


class SessionMiddleware:
    """Sessions for an ASGI app, over any store with the lifecycle operations.

    `store` is a store URL (as `open_store` takes), a zero-argument factory, or a store object.
    From a URL or factory the middleware makes one store per process, at the app's startup (or
    its first request), and closes it at shutdown; a store object is used as it is and never
    closed. The id travels in the cookie `cookie` describes (``None``: no cookie), or in the
    request header `header` (for wallets and dApps that are not browsers): a request that
    sends that header, even empty, gets its new id back in the same response header instead of
    a cookie. `retry_after` is the seconds a 503 asks the client to wait.
    """

    def __init__(
        self,
        app: AnyASGIApp,
        store: StoreSource,
        *,
        cookie: CookieOptions | None = CookieOptions(),  # noqa: B008  (frozen: safe to share)
        header: str | None = None,
        retry_after: int = 1,
        clock: Clock = time.time,
    ) -> None:
        if cookie is not None and not isinstance(cookie, CookieOptions):
            msg = f"cookie must be CookieOptions or None, got {cookie!r}"
            raise InvalidConfigError(msg)
        if header is not None and not is_token(header):
            msg = f"header must be a header name (an HTTP token) or None, got {header!r}"
            raise InvalidConfigError(msg)
        if cookie is None and header is None:
            msg = "give a cookie, a header, or both: the session id needs a way to travel"
            raise InvalidConfigError(msg)
        if type(retry_after) is not int or retry_after < 0:
            msg = f"retry_after must be a non-negative int of seconds, got {retry_after!r}"
            raise InvalidConfigError(msg)
        self.app = app
        self._cookie = cookie
        self._cookie_name = None if cookie is None else cookie.full_name
        self._header = None if header is None else header.lower().encode("ascii")
        self._retry_after = str(retry_after).encode("ascii")
        self._clock = check_clock(clock)
        self._open, self._store = _source(store)

    @property
    def store(self) -> LifecycleSessionStore:
        """This process's store, opened now if the app has not started it yet."""
        if self._store is None:
            assert self._open is not None  # only an owned store is ever dropped
            self._store = self._open()
        return self._store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif kind in ("http", "websocket"):
            await self._request(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _request(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope.get("headers", ())
        by_header, presented = self._presented(headers)
        store = self.store
        config = getattr(store, "config", None)
        session = Session(
            store,
            presented,
            config if isinstance(config, SessionStoreConfig) else None,
            self._clock,
        )
        scope[SCOPE_KEY] = session
        started = replaced = False

        async def send_with_session(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the app's own error response, already answered with a 503
            if message["type"] in ("http.response.start", "websocket.accept"):
                started = session.sent = True
                # A framework that turned the store error into its own 500 (Litestar): 503.
                if session.unavailable is not None and message.get("status") == 500:
                    replaced = True
                    await self._unavailable(send)
                    return
                told = self._tell(session, by_header)
                if told:
                    message["headers"] = [*message.get("headers", ()), *told]
            await send(message)

        try:
            await self.app(scope, receive, send_with_session)
        except Exception as exc:
            if started or scope["type"] != "http" or not _caused_by(exc, session.unavailable):
                raise
            logger.warning("session store unavailable, answered 503: %s", session.unavailable)
            await self._unavailable(send)

    def _presented(self, headers: list[tuple[bytes, bytes]]) -> tuple[bool, str | None]:
        """Whether the client speaks by header, and the well-shaped id it sent, if any."""
        if self._header is not None:
            for key, value in headers:
                if key.lower() == self._header:
                    text = value.strip(b" \t").decode("latin-1")
                    return True, text if is_new_session_id_shape(text) else None
        if self._cookie_name is None:
            return False, None
        return False, session_id_from_cookies(headers, self._cookie_name)

    def _tell(self, session: Session, by_header: bool) -> list[tuple[bytes, bytes]]:
        """The response headers that carry the session's outcome to the client."""
        outcome, session_id = session.outcome, session.id
        if outcome == "expire" and not by_header and self._cookie is not None:
            return [(b"set-cookie", self._cookie.expire_header())]
        if outcome != "set" or session_id is None:
            return []
        if by_header or self._cookie is None:
            assert self._header is not None  # no cookie: there is a header
            return [(self._header, session_id.encode("ascii"))]
        return [(b"set-cookie", self._cookie.set_header(session_id, session.cookie_max_age()))]

    async def _unavailable(self, send: Send) -> None:
        body = b"session store unavailable, try again shortly\n"
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode("ascii")),
                    (b"retry-after", self._retry_after),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Open an owned store at startup, close it when the app stops."""

        async def receive_opening() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup" and self._open is not None:
                _ = self.store  # open it now: a bad URL fails the startup, not a request
            return message

        async def send_closing(message: Message) -> None:
            if message["type"] in _LIFESPAN_ENDS:
                await self._close()
            await send(message)

        await self.app(scope, receive_opening, send_closing)

    async def _close(self) -> None:
        store, self._store = self._store, None
        if self._open is None:
            self._store = store  # the caller's own store: never closed here
        elif isinstance(store, ClosableSessionStore):
            await store.aclose()


def _source(
    store: StoreSource,
) -> tuple[Callable[[], LifecycleSessionStore] | None, LifecycleSessionStore | None]:
    """How the middleware gets its store: (a way to open one it owns, or the caller's store)."""
    if isinstance(store, LifecycleSessionStore):
        return None, store
    if isinstance(store, str):
        url = store
        opened = open_store(url)  # checked now: a bad URL fails when the app is built
        return (lambda: open_store(url)), opened
    if callable(store):
        return store, None
    msg = f"store must be a store URL, a store factory or a LifecycleSessionStore, got {store!r}"
    raise InvalidConfigError(msg)


def _caused_by(exc: BaseException, cause: BaseException | None) -> bool:
    """True if `exc` is `cause`, or has it in its chain or (as an exception group) inside it."""
    if cause is None:
        return False
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is cause:
            return True
        if id(current) in seen:
            continue
        seen.add(id(current))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        pending.extend(getattr(current, "exceptions", ()))
    return False


class HasScope(Protocol):
    """A request object that shows its ASGI scope: Starlette's, FastAPI's, Litestar's."""

    @property
    def scope(self) -> Mapping[str, Any]: ...


def session_of(connection: HasScope) -> Session:
    """The request's `Session`: ``session_of(request)`` in a Starlette or Litestar handler."""
    return session_from_scope(connection.scope)


def session_from_scope(scope: Mapping[str, Any]) -> Session:
    """The request's `Session`, from its ASGI scope (a Litestar dependency can take `scope`)."""
    session = scope.get(SCOPE_KEY)
    if not isinstance(session, Session):
        msg = "no session in this request: is SessionMiddleware wrapping the app?"
        raise InvalidConfigError(msg)
    return session
