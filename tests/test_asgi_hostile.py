"""The ASGI session layer under hostile use: races, store failures, clocks, odd transports.

Each test states what must hold and fails while the layer does not. Real stores and servers
(memory, Redis, PostgreSQL), no mocks; expiry through a `FakeClock`, never a sleep.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import anyio
import httpx
import psycopg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from walletmesh_sessions import (
    MemorySessionStore,
    SessionStoreConfig,
    StoreUnavailableError,
    open_store,
)
from walletmesh_sessions.asgi import SessionMiddleware, session_of
from walletmesh_sessions.testing import FakeClock

from .redis_server import RedisServer, free_port
from .web_clients import COOKIE, concurrently, load_docs_module, presenting, serving, set_id

pytestmark = pytest.mark.anyio

ORIGIN = "https://dapp.example"
APP_TIMEOUTS = "lifetime=900&refresh_on_access=true&max_lifetime=3600"
_names = itertools.count()


# A small wallet router on Starlette: the same calls as docs/wallet_app.py, one per route.


async def connect_route(request: Request) -> JSONResponse:
    wallet = request.query_params["wallet"]
    data = await session_of(request).start(ORIGIN, app_data={"wallet": wallet}, one_per=wallet)
    return JSONResponse(None if data is None else data.id, status_code=409 if data is None else 200)


async def plain_start_route(request: Request) -> JSONResponse:
    data = await session_of(request).start(ORIGIN)
    return JSONResponse(None if data is None else data.id)


async def me_route(request: Request) -> JSONResponse:
    data = await session_of(request).load()
    return JSONResponse(None if data is None else data.id, status_code=401 if data is None else 200)


async def rotate_route(request: Request) -> JSONResponse:
    data = await session_of(request).rotate()
    return JSONResponse(None if data is None else data.id)


async def logout_route(request: Request) -> Response:
    await session_of(request).end()
    return Response(status_code=204)


ROUTES = [
    Route("/connect", connect_route, methods=["POST"]),
    Route("/start", plain_start_route, methods=["POST"]),
    Route("/me", me_route),
    Route("/rotate", rotate_route, methods=["POST"]),
    Route("/logout", logout_route, methods=["POST"]),
]


def router(store: Any, extra: list[Any] | None = None, **options: Any) -> Starlette:
    app = Starlette(routes=[*ROUTES, *(extra or [])])
    app.add_middleware(SessionMiddleware, store=store, **options)
    return app


@asynccontextmanager
async def quiet_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTPS client that turns the app's unhandled errors into 500s, as a server does.

    It keeps no cookies: each request presents exactly the id its test gives it.
    """
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    async with httpx.AsyncClient(
        transport=transport, base_url="https://testserver", cookies=no_cookies
    ) as client:
        yield client


def max_age(response: httpx.Response) -> int:
    match = re.search(r"Max-Age=(-?\d+)", response.headers["set-cookie"])
    assert match is not None
    return int(match.group(1))


async def live_sessions_of(store_url: str, wallet: str) -> list[str]:
    async with open_store(store_url) as store:
        found = await store.get_all()
    return [sid for sid, data in found.items() if data.app_data.get("wallet") == wallet]


@pytest.fixture
def unreachable_redis() -> str:
    """A Redis URL on a loopback port nothing listens on, with a short timeout."""
    return f"redis://127.0.0.1:{free_port()}/0?timeout=0.2"


class TestOnePerWallet:
    """`start(..., one_per=wallet)`: at most one live session per origin and wallet, ever."""

    @pytest.mark.parametrize(
        "config",
        [
            SessionStoreConfig(lifetime=900),
            # The docs' own remedy for the guard caveat: lifetime at least max_lifetime.
            SessionStoreConfig(lifetime=3600, refresh_on_access=True, max_lifetime=3600),
        ],
        ids=["idle-only", "lifetime-equals-max"],
    )
    async def test_a_taken_over_guard_lives_as_long_as_its_new_session(
        self, clock: FakeClock, config: SessionStoreConfig
    ) -> None:
        """A guard reclaimed from a logged-out session still stops a second connect later."""
        store = MemorySessionStore(config, clock=clock)
        lifetime = config.lifetime_ms
        assert lifetime is not None
        async with quiet_client(router(store, clock=clock)) as client:
            first = set_id(await client.post("/connect?wallet=0xw"))
            assert first
            await client.post("/logout", headers=presenting(first))
            clock.advance(seconds=500)
            second = set_id(await client.post("/connect?wallet=0xw"))
            assert second
            clock.advance(ms=lifetime - 500_000 + 1)  # the old guard's deadline has passed
            assert (await client.get("/me", headers=presenting(second))).status_code == 200
            third = await client.post("/connect?wallet=0xw")
        assert third.status_code == 409
        assert len([d for d in (await store.get_all()).values() if d.app_data]) == 1

    async def test_a_login_racing_connects_leaves_one_session(
        self, redis_url: str, redis_client: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The docs' app on Redis: a login racing 20 connects of its wallet leaves one session."""
        url = f"{redis_url}?prefix=hostile{next(_names)}_&{APP_TIMEOUTS}"
        monkeypatch.setenv("SESSIONS_URL", url)
        app = load_docs_module("wallet_app.py").app
        doubled: list[str] = []
        async with serving(app) as client:
            for n in range(15):
                wallet = f"0xrace{n}"
                body = {"origin": ORIGIN, "wallet": wallet}
                first = set_id(await client.post("/connect", json=body))
                assert first

                async def login(first: str = first, wallet: str = wallet) -> httpx.Response:
                    signature = {"signature": f"signed-by-{wallet}"}
                    return await client.post("/login", json=signature, headers=presenting(first))

                async def connect(body: dict[str, str] = body) -> httpx.Response:
                    return await client.post("/connect", json=body)

                await concurrently([login, *[connect] * 20])
                if len(await live_sessions_of(url, wallet)) > 1:
                    doubled.append(wallet)
        assert doubled == []

    async def test_a_failure_after_the_claim_does_not_block_the_wallet(
        self,
        postgres_url: str,
        postgres_conn: psycopg.Connection[Any],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A connect answered 503 leaves nothing claimed: once the store is back, a retry works.

        The browser holds wallet A's session and connects wallet B; the store fails on the one
        call `start` makes after claiming B's guard (ending A's session), so the client gets a
        503 and never learns B's new session, which holds B's guard.
        """
        table = f"hostile_{os.getpid()}_{next(_names)}"
        monkeypatch.setenv("SESSIONS_URL", f"{postgres_url}?table={table}&{APP_TIMEOUTS}")
        app = load_docs_module("wallet_app.py").app
        refuse = f"{table}_refuse"
        async with serving(app) as client:
            session_a = set_id(
                await client.post("/connect", json={"origin": ORIGIN, "wallet": "0xa"})
            )
            assert session_a
            postgres_conn.execute(
                f"CREATE FUNCTION {refuse}() RETURNS trigger LANGUAGE plpgsql"
                " AS $$ BEGIN RAISE EXCEPTION 'disk trouble'; END $$"
            )
            postgres_conn.execute(
                f"CREATE TRIGGER {refuse} BEFORE DELETE ON {table} FOR EACH ROW"
                f' WHEN (OLD.value LIKE \'%"wallet":"0xa"%\') EXECUTE FUNCTION {refuse}()'
            )
            try:
                body = {"origin": ORIGIN, "wallet": "0xb"}
                failed = await client.post("/connect", json=body, headers=presenting(session_a))
            finally:
                postgres_conn.execute(f"DROP TRIGGER {refuse} ON {table}")
                postgres_conn.execute(f"DROP FUNCTION {refuse}()")
            retried = await client.post("/connect", json=body, headers=presenting(session_a))
        assert failed.status_code in (200, 503)
        if failed.status_code == 503:
            assert retried.status_code == 200


class TestRotate:
    """A rotation that cannot reach the client must not happen; its cookie must not outlive it."""

    async def test_a_failing_change_leaves_the_client_a_session(self) -> None:
        """rotate(change) whose change is refused (InvalidSessionDataError): the old id still works.

        The docs promise bad input fails "before anything is written"; a wei amount above 2**53
        is such input.
        """

        async def login(request: Request) -> JSONResponse:
            data = await session_of(request).rotate(
                lambda d: d.with_app_data({"balance_wei": 2**64})
            )
            return JSONResponse(None if data is None else data.id)

        store = MemorySessionStore(SessionStoreConfig(lifetime=900))
        app = router(store, [Route("/login", login, methods=["POST"])])
        async with quiet_client(app) as client:
            old = set_id(await client.post("/start"))
            assert old
            failed = await client.post("/login", headers=presenting(old))
            new = set_id(failed)
            still = await client.get("/me", headers=presenting(new or old))
        assert failed.status_code == 500
        assert still.status_code == 200

    async def test_rotate_after_the_response_started_leaves_the_id_alive(self) -> None:
        """A rotate in a streaming body (headers already sent) must not kill the client's id."""

        async def stream(request: Request) -> StreamingResponse:
            session = session_of(request)

            async def body() -> AsyncIterator[bytes]:
                yield b"event: hello\n\n"
                await session.rotate()
                yield b"event: bye\n\n"

            return StreamingResponse(body(), media_type="text/event-stream")

        store = MemorySessionStore(SessionStoreConfig(lifetime=900))
        app = router(store, [Route("/events", stream)])
        async with quiet_client(app) as client:
            session_id = set_id(await client.post("/start"))
            assert session_id
            await client.get("/events", headers=presenting(session_id))
            after = await client.get("/me", headers=presenting(session_id))
        assert after.status_code == 200

    async def test_the_rotated_cookie_does_not_outlive_the_session(self, clock: FakeClock) -> None:
        """Without refresh on access, a rotate keeps the expiry: Max-Age is what is left of it."""
        store = MemorySessionStore(SessionStoreConfig(lifetime=900), clock=clock)
        async with quiet_client(router(store, clock=clock)) as client:
            old = set_id(await client.post("/start"))
            assert old
            clock.advance(seconds=800)
            rotated = await client.post("/rotate", headers=presenting(old))
            new = set_id(rotated)
            assert new
            clock.advance(seconds=101)
            gone = await client.get("/me", headers=presenting(new))
        assert gone.status_code == 401  # the session ended 100 s after the rotate ...
        assert max_age(rotated) <= 100  # ... so the browser must drop the cookie by then


class TestStoreTrouble:
    """A store failure is a 503 for that request only, and never hides another error."""

    async def test_an_unrelated_error_after_a_handled_outage_is_not_swallowed(
        self, unreachable_redis: str
    ) -> None:
        """The app handled the store error; its later bug must reach the server, not become 503."""

        async def degraded(request: Request) -> JSONResponse:
            with contextlib.suppress(StoreUnavailableError):
                await session_of(request).load()  # the app carries on without the session ...
            raise RuntimeError("a bug unrelated to the store")  # ... and then fails on its own

        app = router(unreachable_redis, [Route("/degraded", degraded)])
        async with serving(app) as client:
            with pytest.raises(RuntimeError, match="unrelated"):
                await client.get("/degraded", headers=presenting("a" * 43))

    async def test_load_after_an_outage_asks_the_store_again(
        self, dedicated_redis: Callable[..., RedisServer]
    ) -> None:
        """A second load() after a StoreUnavailableError reads the store, not "no session"."""
        server = dedicated_redis()
        second: list[bool] = []

        async def retrying(request: Request) -> JSONResponse:
            session = session_of(request)
            try:
                await session.load()
            except StoreUnavailableError:
                server.resume()  # the store is back: the app tries once more
            second.append(await session.load() is not None)
            return JSONResponse(second[-1])

        app = router(f"{server.url}?timeout=0.3&lifetime=900", [Route("/retrying", retrying)])
        async with serving(app) as client:
            session_id = set_id(await client.post("/start"))
            assert session_id
            server.pause()
            try:
                await client.get("/retrying", headers=presenting(session_id))
            finally:
                server.resume()
        assert second == [True]

    async def test_a_write_done_but_not_replicated_is_not_a_500(self, redis_url: str) -> None:
        """wait_for_replicas unmet: the write is done (docs/redis.md): 200 with the id, or 503."""
        url = f"{redis_url}?prefix=hostile{next(_names)}_&wait_for_replicas=1&replica_timeout=0.1"
        async with quiet_client(router(url)) as client:
            response = await client.post("/connect?wallet=0xrepl")
        assert response.status_code != 500
        if response.status_code == 200:
            assert set_id(response)


class TestWebSocket:
    """A WebSocket request's session is the client's too: a new id must reach it."""

    async def test_start_in_a_websocket_sends_the_id_at_accept(self) -> None:
        """A session started before accept goes out in the accept's Set-Cookie."""

        async def ws(websocket: WebSocket) -> None:
            data = await session_of(websocket).start(ORIGIN)
            await websocket.accept()
            await websocket.send_text("none" if data is None else data.id)
            await websocket.close()

        store = MemorySessionStore(SessionStoreConfig(lifetime=900))
        sent = await drive_websocket(router(store, [WebSocketRoute("/ws", ws)]))
        accept = next(m for m in sent if m["type"] == "websocket.accept")
        started = next(m["text"] for m in sent if m["type"] == "websocket.send")
        cookies = [v for k, v in accept.get("headers", []) if k.lower() == b"set-cookie"]
        assert any(v.startswith(f"{COOKIE}={started};".encode()) for v in cookies)


async def drive_websocket(app: Any) -> list[dict[str, Any]]:
    """Open a WebSocket to `/ws` in-process; the messages the app sent, until it closed."""
    sent: list[dict[str, Any]] = []
    incoming: Iterator[dict[str, Any]] = iter([{"type": "websocket.connect"}])
    closed = anyio.Event()

    async def receive() -> dict[str, Any]:
        message = next(incoming, None)
        if message is not None:
            return message
        await closed.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "websocket.close":
            closed.set()

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "scheme": "wss",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "server": ("127.0.0.1", 443),
        "client": ("127.0.0.1", 50000),
        "subprotocols": [],
    }
    with anyio.fail_after(10):
        await app(scope, receive, send)
    return sent
