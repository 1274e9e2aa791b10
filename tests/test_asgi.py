"""SessionMiddleware on a bare ASGI app, Starlette and Litestar: cookies, laziness, errors."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from litestar import Litestar, get, post
from litestar import Request as LitestarRequest
from litestar.di import NamedDependency
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from walletmesh_sessions import (
    InvalidConfigError,
    LocalStorageSessionStore,
    MemorySessionStore,
    SessionStoreConfig,
    StoreClosedError,
    new_session_id,
)
from walletmesh_sessions.asgi import (
    CookieOptions,
    Session,
    SessionMiddleware,
    session_of,
)
from walletmesh_sessions.litestar import session_dependency
from walletmesh_sessions.testing import FakeClock

from .web_clients import COOKIE, presenting, serving, set_id

pytestmark = pytest.mark.anyio

TIMEOUTS = SessionStoreConfig(lifetime=900, refresh_on_access=True, max_lifetime=3600)


def spy(store: Any) -> list[str]:
    """Record the name of every store method called on `store` (a real store, watched)."""
    calls: list[str] = []
    names = [n for n in dir(store) if not n.startswith("_")]
    for name in [n for n in names if inspect.iscoroutinefunction(getattr(store, n))]:
        method = getattr(store, name)

        def counted(*args: Any, _name: str = name, _method: Any = method) -> Any:
            calls.append(_name)
            return _method(*args)

        setattr(store, name, counted)
    return calls


async def untouched(request: Request) -> PlainTextResponse:
    return PlainTextResponse("no session needed")


async def me(request: Request) -> JSONResponse:
    data = await session_of(request).load()
    return JSONResponse(None if data is None else data.to_json())


async def start(request: Request) -> JSONResponse:
    data = await session_of(request).start("https://dapp.example", {"eip155:1": ["eth_accounts"]})
    return JSONResponse(None if data is None else data.to_json())


async def rotate(request: Request) -> JSONResponse:
    data = await session_of(request).rotate()
    return JSONResponse(None if data is None else data.to_json())


async def end(request: Request) -> PlainTextResponse:
    await session_of(request).end()
    return PlainTextResponse("bye")


async def may(request: Request) -> JSONResponse:
    allowed = await session_of(request).may_call("eip155:1", request.query_params["method"])
    return JSONResponse(allowed)


ROUTES = [
    Route("/untouched", untouched),
    Route("/me", me),
    Route("/start", start, methods=["POST"]),
    Route("/rotate", rotate, methods=["POST"]),
    Route("/end", end, methods=["POST"]),
    Route("/may", may),
]


def starlette_app(store: Any, **options: Any) -> Starlette:
    app = Starlette(routes=ROUTES)
    app.add_middleware(SessionMiddleware, store=store, **options)
    return app


@pytest.fixture
def store(clock: FakeClock) -> MemorySessionStore:
    return MemorySessionStore(TIMEOUTS, clock=clock)


@asynccontextmanager
async def started(store: Any, **options: Any) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client of the Starlette app and the id of a session it started."""
    async with serving(starlette_app(store, **options)) as client:
        session_id = set_id(await client.post("/start"))
        assert session_id
        yield client, session_id


class TestCookie:
    """The id travels in a cookie with safe defaults, refused unless shaped like ours."""

    async def test_safe_defaults(self, store: MemorySessionStore, clock: FakeClock) -> None:
        """HttpOnly, Secure, SameSite=Lax, Path=/ and the __Host- prefix; Max-Age = lifetime."""
        async with serving(starlette_app(store, clock=clock)) as client:
            response = await client.post("/start")
        (cookie,) = response.headers.get_list("set-cookie")
        session_id = set_id(response)
        assert cookie == (
            f"{COOKIE}={session_id}; Max-Age=900; Path=/; Secure; HttpOnly; SameSite=Lax"
        )

    def test_host_prefix_only_where_allowed(self) -> None:
        """A domain, another path or no Secure drops the __Host- prefix (browsers refuse it)."""
        assert CookieOptions().full_name == "__Host-wm_session"
        assert CookieOptions(domain="example.com").full_name == "wm_session"
        assert CookieOptions(path="/app").full_name == "wm_session"
        assert CookieOptions(secure=False).full_name == "wm_session"
        assert CookieOptions(host_prefix=False).full_name == "wm_session"

    @pytest.mark.parametrize(
        "options",
        [
            {"name": ""},
            {"name": "a b"},
            {"name": "a;b"},
            {"path": "app"},
            {"path": "/a;b"},
            {"domain": "a;b"},
            {"same_site": "sometimes"},
            {"same_site": "none", "secure": False},
            {"secure": "yes"},
        ],
    )
    def test_bad_options_refused(self, options: dict[str, Any]) -> None:
        """Options a browser would misread are an InvalidConfigError when made."""
        with pytest.raises(InvalidConfigError):
            CookieOptions(**options)

    async def test_lifetime_follows_idle_and_absolute_timeouts(
        self, store: MemorySessionStore, clock: FakeClock
    ) -> None:
        """Each read slides the cookie with the session, never past the absolute timeout."""
        async with started(store, clock=clock) as (client, session_id):
            clock.advance(seconds=600)
            read = await client.get("/me", headers=presenting(session_id))
            assert "Max-Age=900;" in read.headers["set-cookie"]
            for _ in range(5):
                clock.advance(seconds=600)
                read = await client.get("/me", headers=presenting(session_id))
            # 3,600 s after the start: the absolute timeout, 0 s left but still valid.
            assert read.json() is not None
            assert "Max-Age=0;" in read.headers["set-cookie"]
            clock.advance(ms=1)
            gone = await client.get("/me", headers=presenting(session_id))
        assert gone.json() is None
        assert "set-cookie" not in gone.headers

    async def test_no_lifetime_is_a_browser_session_cookie(self) -> None:
        """A store without timeouts gives a cookie without Max-Age."""
        async with serving(starlette_app(MemorySessionStore())) as client:
            response = await client.post("/start")
        assert "Max-Age" not in response.headers["set-cookie"]

    async def test_end_expires_the_cookie(self, store: MemorySessionStore) -> None:
        """Logout deletes the session and tells the browser to drop the cookie."""
        async with started(store) as (client, session_id):
            response = await client.post("/end", headers=presenting(session_id))
            after = await client.get("/me", headers=presenting(session_id))
        assert response.headers["set-cookie"].startswith(f"{COOKIE}=; Max-Age=0; Expires=")
        assert after.json() is None
        assert await store.get(session_id) is None

    async def test_other_cookies_are_ignored(self, store: MemorySessionStore) -> None:
        """Our cookie is found among others, in any Cookie header."""
        async with started(store) as (client, session_id):
            headers = [
                ("cookie", "theme=dark; other_app=abc"),
                ("cookie", f"x=1; {COOKIE}={session_id}; y=2"),
            ]
            response = await client.get("/me", headers=headers)
        assert response.json()["id"] == session_id


BAD_VALUES = [
    "",
    "x" * 10_000,
    "é" * 43,
    "-" + "a" * 42,
    "a" * 42,
    "a" * 44,
    "a" * 42 + "=",
    '"' + "a" * 41 + '"',
    "a" * 21 + " " + "a" * 21,
]


class TestRefusedBeforeTheStore:
    """A value that cannot be one of our ids gets no store call and no 500."""

    @pytest.mark.parametrize("value", BAD_VALUES, ids=lambda v: f"{v[:6]!r}...{len(v)}")
    async def test_bad_cookie(self, store: MemorySessionStore, value: str) -> None:
        """Empty, 10 KB, non-ASCII, wrong length or alphabet: no session, no store call."""
        calls = spy(store)
        raw = f"{COOKIE}={value}".encode()
        async with serving(starlette_app(store)) as client:
            response = await client.get("/me", headers=[(b"cookie", raw)])
        assert response.status_code == 200
        assert response.json() is None
        assert calls == []

    @pytest.mark.parametrize("value", BAD_VALUES, ids=lambda v: f"{v[:6]!r}...{len(v)}")
    async def test_bad_header(self, store: MemorySessionStore, value: str) -> None:
        """The same in header mode."""
        calls = spy(store)
        app = starlette_app(store, cookie=None, header="X-Session-Id")
        async with serving(app) as client:
            response = await client.get("/me", headers=[(b"x-session-id", value.encode())])
        assert response.status_code == 200
        assert response.json() is None
        assert calls == []

    async def test_an_unknown_well_shaped_id_is_one_read(self, store: MemorySessionStore) -> None:
        """A well-shaped id nobody holds costs one read and gives no session."""
        calls = spy(store)
        async with serving(starlette_app(store)) as client:
            response = await client.get("/me", headers=presenting(new_session_id()))
        assert response.json() is None
        assert calls == ["get"]


class TestLazy:
    """A request that never touches its session costs nothing and writes nothing back."""

    async def test_untouched_request_makes_no_store_call(self, store: MemorySessionStore) -> None:
        """With a valid session cookie, a handler that ignores the session: zero calls."""
        async with started(store) as (client, session_id):
            calls = spy(store)
            response = await client.get("/untouched", headers=presenting(session_id))
        assert response.status_code == 200
        assert calls == []
        assert "set-cookie" not in response.headers

    async def test_a_read_is_one_call_and_nothing_written_back(
        self, store: MemorySessionStore
    ) -> None:
        """Reading the session (twice, in one request) is one `get`, nothing else."""
        async with started(store) as (client, session_id):
            calls = spy(store)
            await client.get("/may?method=eth_accounts", headers=presenting(session_id))
        assert calls == ["get"]


class TestSessionOperations:
    """Start, check, rotate and end, each one atomic store operation."""

    async def test_may_call(self, store: MemorySessionStore) -> None:
        """A wallet router's per-call check: granted methods only, and no session: never."""
        async with started(store) as (client, session_id):
            yes = await client.get("/may?method=eth_accounts", headers=presenting(session_id))
            no = await client.get("/may?method=eth_sign", headers=presenting(session_id))
            anonymous = await client.get("/may?method=eth_accounts")
        assert (yes.json(), no.json(), anonymous.json()) == (True, False, False)

    async def test_start_replaces_the_request_s_session(self, store: MemorySessionStore) -> None:
        """Starting again ends the session the request had: one browser, one session."""
        async with started(store) as (client, first):
            second = set_id(await client.post("/start", headers=presenting(first)))
        assert second
        assert second != first
        assert await store.get(first) is None
        assert await store.get(second) is not None

    async def test_rotate_moves_the_session(self, store: MemorySessionStore) -> None:
        """The new id is sent, the old one is dead, the data (and created_at) moved."""
        async with started(store) as (client, old):
            before = await store.get(old)
            response = await client.post("/rotate", headers=presenting(old))
        new = set_id(response)
        assert new
        assert new != old
        assert await store.get(old) is None
        after = await store.get(new)
        assert before is not None
        assert after is not None
        assert after.id == new
        assert after.created_at == before.created_at

    async def test_rotate_without_a_session(self, store: MemorySessionStore) -> None:
        """No session: nothing to rotate, and the cookie is left alone."""
        async with serving(starlette_app(store)) as client:
            response = await client.post("/rotate", headers=presenting(new_session_id()))
        assert response.json() is None
        assert "set-cookie" not in response.headers


class TestHeader:
    """Wallets and dApps that are not browsers send and get the id in a header."""

    async def test_header_round_trip(self, store: MemorySessionStore) -> None:
        """An empty header asks for header mode; the new id comes back in it, no cookie."""
        app = starlette_app(store, header="X-Session-Id")
        async with serving(app) as client:
            response = await client.post("/start", headers={"X-Session-Id": ""})
            session_id = response.headers["x-session-id"]
            me_response = await client.get("/me", headers={"X-Session-Id": session_id})
        assert "set-cookie" not in response.headers
        assert me_response.json()["id"] == session_id

    async def test_cookie_clients_still_get_cookies(self, store: MemorySessionStore) -> None:
        """With both configured, a browser (no header sent) keeps getting the cookie."""
        app = starlette_app(store, header="X-Session-Id")
        async with serving(app) as client:
            response = await client.post("/start")
        assert set_id(response)
        assert "x-session-id" not in response.headers


class TestStoreTrouble:
    """An unreachable store is a 503 with Retry-After; an unreadable record is no session."""

    async def test_unavailable_is_503_on_starlette(self, unreachable_redis: str) -> None:
        """The handler's store call fails: 503 with Retry-After, not the framework's 500."""
        app = starlette_app(unreachable_redis, retry_after=7)
        async with serving(app) as client:
            response = await client.get("/me", headers=presenting(new_session_id()))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "7"

    async def test_unavailable_is_503_on_litestar(self, unreachable_redis: str) -> None:
        """Litestar turns the error into its own 500 first: the middleware still says 503."""
        app = SessionMiddleware(litestar_app(), store=unreachable_redis)
        async with serving(app) as client:
            response = await client.get("/me", headers=presenting(new_session_id()))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"

    async def test_unreadable_record_is_no_session_and_kept(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A corrupt record: no session, a warning with a short id, the record left in place."""
        storage: dict[str, str] = {}
        store = LocalStorageSessionStore(storage, TIMEOUTS)
        session_id = new_session_id()
        storage["wm_session_" + session_id] = "{not json"
        with caplog.at_level(logging.WARNING, logger="walletmesh_sessions"):
            async with serving(starlette_app(store)) as client:
                response = await client.get("/me", headers=presenting(session_id))
        assert response.status_code == 200
        assert response.json() is None
        assert storage["wm_session_" + session_id] == "{not json"
        assert session_id[:4] in caplog.text
        assert session_id not in caplog.text


@pytest.fixture
def unreachable_redis() -> str:
    """A Redis URL on a loopback port nothing listens on, with a short timeout."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0?socket_connect_timeout=0.2&socket_timeout=0.2"


class TestLifespan:
    """One store per process: opened at startup, closed at shutdown, unless it is the caller's."""

    async def test_owned_store_is_closed_at_shutdown(self) -> None:
        """A factory's store is made at startup and closed after the app's shutdown."""
        made: list[MemorySessionStore] = []

        def factory() -> MemorySessionStore:
            made.append(MemorySessionStore())
            return made[-1]

        app = starlette_app(factory)
        async with serving(app) as client:
            await client.post("/start")
            assert len(made) == 1
        with pytest.raises(StoreClosedError):
            await made[0].get_all()
        async with serving(app) as client:  # started again: a new store
            await client.post("/start")
        assert len(made) == 2

    async def test_callers_store_is_not_closed(self, store: MemorySessionStore) -> None:
        """A store object given to the middleware stays open after shutdown."""
        async with started(store):
            pass
        assert await store.get_all() is not None

    def test_bad_url_fails_when_the_app_is_built(self) -> None:
        """A bad store URL is an error at construction, not at the first request."""
        with pytest.raises(InvalidConfigError):
            SessionMiddleware(untouched, store="nosuch://x")  # type: ignore[arg-type]

    def test_needs_a_way_to_travel(self, store: MemorySessionStore) -> None:
        """No cookie and no header: refused."""
        with pytest.raises(InvalidConfigError):
            SessionMiddleware(untouched, store=store, cookie=None)  # type: ignore[arg-type]


@get("/me")
async def litestar_me(session: NamedDependency[Session]) -> dict[str, Any] | None:
    data = await session.load()
    return None if data is None else data.to_json()


@post("/start")
async def litestar_start(request: LitestarRequest[Any, Any, Any]) -> dict[str, Any] | None:
    data = await session_of(request).start("https://dapp.example")
    return None if data is None else data.to_json()


def litestar_app() -> Litestar:
    return Litestar(
        [litestar_me, litestar_start],
        dependencies={"session": session_dependency},
    )


class TestLitestar:
    """Wrapped around a Litestar app; sessions reached by accessor and by dependency."""

    async def test_start_and_read(self, store: MemorySessionStore) -> None:
        """A session started by one handler is read by another, through the cookie."""
        app = SessionMiddleware(litestar_app(), store=store)
        async with serving(app) as client:
            session_id = set_id(await client.post("/start"))
            assert session_id
            response = await client.get("/me", headers=presenting(session_id))
        assert response.json()["id"] == session_id
