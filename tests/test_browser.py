"""The session cookie in a real browser: headless Chromium against the middleware under uvicorn.

Found with Debian's Chromium 156: http://127.0.0.1 and http://localhost are potentially
trustworthy origins, so Chromium keeps a ``Secure`` cookie, and a ``__Host-`` one, that they
set over plain HTTP (CDP reports its sourceScheme as "Secure"), and sends it back to them. So
the default `CookieOptions()` is tested as it is, over plain HTTP, without a certificate.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Route

from walletmesh_sessions import MemorySessionStore, SessionStoreConfig, new_session_id
from walletmesh_sessions.asgi import SessionMiddleware, session_of

from .browser import (
    DEADLINE,
    LiveServer,
    browser_cookies,
    chromium,
    fetch,
    live_server,
    page_json,
    plant_cookie,
)
from .web_clients import COOKIE, presenting

LIFETIME = 900
ROTATIONS = 4
_batches = itertools.count()


def presented(request: Request) -> str | None:
    """The raw value of the session cookie in the request's Cookie header, if it sent one."""
    for pair in request.headers.get("cookie", "").split(";"):
        name, equals, value = pair.strip().partition("=")
        if equals and name == COOKIE:
            return value
    return None


class Gate:
    """Holds concurrent requests of one batch until all have arrived, and losers until released.

    Used only on the server's event loop, so plain dicts need no lock.
    """

    def __init__(self) -> None:
        self._arrived: dict[str, int] = {}
        self._everyone: dict[str, anyio.Event] = {}
        self._released: dict[str, anyio.Event] = {}

    @staticmethod
    def _event(events: dict[str, anyio.Event], batch: str) -> anyio.Event:
        if batch not in events:
            events[batch] = anyio.Event()
        return events[batch]

    async def arrive(self, batch: str, size: int) -> None:
        """Wait until `size` requests of `batch` have arrived (all present the same old id)."""
        self._arrived[batch] = self._arrived.get(batch, 0) + 1
        everyone = self._event(self._everyone, batch)
        if self._arrived[batch] == size:
            everyone.set()
        with anyio.fail_after(DEADLINE / 2):
            await everyone.wait()

    def release(self, batch: str) -> None:
        self._event(self._released, batch).set()

    async def released(self, batch: str) -> None:
        """Wait until the page has the winner's response (so losers answer after it)."""
        with anyio.fail_after(DEADLINE / 2):
            await self._event(self._released, batch).wait()


GATE = Gate()


async def home(request: Request) -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>dapp</title><p>dapp</p>")


async def cross(request: Request) -> HTMLResponse:
    """A POST form and a link, both to /me on 127.0.0.1 (from localhost: another site)."""
    target = f"http://127.0.0.1:{request.url.port}/me"
    return HTMLResponse(
        "<!doctype html><title>other site</title>"
        f'<form method="post" action="{target}"><button id="submit">post</button></form>'
        f'<a id="link" href="{target}">get</a>'
    )


async def me(request: Request) -> JSONResponse:
    data = await session_of(request).load()
    return JSONResponse(
        {
            "method": request.method,
            "cookie": presented(request),
            "session": None if data is None else data.to_json(),
        }
    )


async def start(request: Request) -> JSONResponse:
    data = await session_of(request).start("https://dapp.example", {"eip155:1": ["eth_accounts"]})
    return JSONResponse(None if data is None else data.to_json())


async def rotate(request: Request) -> JSONResponse:
    """Rotate; with ``together=N&batch=B``, N requests rotate at once and the losers answer last."""
    batch, together = request.query_params.get("batch"), request.query_params.get("together")
    if batch is not None and together is not None:
        await GATE.arrive(batch, int(together))
    data = await session_of(request).rotate()
    if batch is not None and data is None:
        await GATE.released(batch)
    return JSONResponse(None if data is None else data.to_json())


async def release(request: Request) -> PlainTextResponse:
    GATE.release(request.query_params["batch"])
    return PlainTextResponse("released")


async def end(request: Request) -> PlainTextResponse:
    await session_of(request).end()
    return PlainTextResponse("bye")


def make_app(store: MemorySessionStore) -> Starlette:
    app = Starlette(
        routes=[
            Route("/", home),
            Route("/cross", cross),
            Route("/me", me, methods=["GET", "POST"]),
            Route("/start", start, methods=["POST"]),
            Route("/rotate", rotate, methods=["POST"]),
            Route("/release", release, methods=["POST"]),
            Route("/end", end, methods=["POST"]),
        ]
    )
    app.add_middleware(SessionMiddleware, store=store)  # the default CookieOptions()
    return app


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    store = MemorySessionStore(SessionStoreConfig(lifetime=LIFETIME, refresh_on_access=True))
    with live_server(make_app(store)) as live:
        yield live


@pytest.fixture(scope="module")
def driver(server: LiveServer) -> Iterator[webdriver.Chrome]:
    # Asks for the server only to quit before it stops: no keep-alive connection is left open.
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(driver: webdriver.Chrome, server: LiveServer) -> webdriver.Chrome:
    """The browser with an empty cookie store, on the server's home page."""
    driver.execute_cdp_cmd("Storage.clearCookies", {})
    driver.get(server.origin + "/")
    return driver


def session_cookies(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The browser's stored cookies named like the session cookie, on any host."""
    return [cookie for cookie in browser_cookies(driver) if cookie["name"] == COOKIE]


def stored_id(driver: webdriver.Chrome) -> str:
    """The session id in the browser's one session cookie."""
    (cookie,) = session_cookies(driver)
    assert cookie["domain"] == "127.0.0.1"
    value = cookie["value"]
    assert isinstance(value, str)
    return value


def start_session(driver: webdriver.Chrome) -> str:
    """Start a session from the current page, as its script would; the new id."""
    status, body = fetch(driver, "/start", "POST")
    assert status == 200
    session_id = json.loads(body)["id"]
    assert isinstance(session_id, str)
    return session_id


def session_over_http(server: LiveServer, session_id: str) -> Any:
    """The session the server finds for a request presenting `session_id` (not the browser)."""
    with httpx.Client(base_url=server.origin, trust_env=False, timeout=DEADLINE) as client:
        response = client.get("/me", headers=presenting(session_id))
    assert response.status_code == 200
    return response.json()["session"]


def open_from_page(driver: webdriver.Chrome, element_id: str, url: str) -> Any:
    """Click the element (a submit button or a link), wait for `url` to load; its JSON."""
    driver.find_element(By.ID, element_id).click()
    WebDriverWait(driver, DEADLINE).until(
        lambda d: (
            d.current_url == url and d.execute_script("return document.readyState") == "complete"
        )
    )
    return page_json(driver)


_CONCURRENT_ROTATIONS = """
const [size, batch, done] = arguments;
const settled = [];
async function rotation() {
  const response = await fetch(`/rotate?together=${size}&batch=${batch}`,
                               {method: "POST", credentials: "include"});
  const body = await response.json();
  const id = body === null ? null : body.id;
  settled.push(id);
  if (id !== null) {  // the winner's response is in (its cookie stored): let the losers answer
    await fetch(`/release?batch=${batch}`, {method: "POST", credentials: "include"});
  }
  return {status: response.status, id};
}
Promise.all(Array.from({length: size}, rotation)).then(
  (results) => done({results, settled}),
  (error) => done({results: null, settled: String(error)}),
);
"""


class TestBrowserCookie:
    """Chromium stores, sends, replaces and drops the session cookie as the middleware says."""

    def test_start_stores_a_safe_cookie(self, page: webdriver.Chrome) -> None:
        """A page's POST to /start stores an HttpOnly, Secure, Lax, host-only cookie for 900 s."""
        before = time.time()
        session_id = start_session(page)
        after = time.time()
        (cookie,) = session_cookies(page)
        assert cookie["value"] == session_id
        assert cookie["domain"] == "127.0.0.1"  # no leading dot: host-only, as __Host- demands
        assert cookie["path"] == "/"
        assert cookie["httpOnly"] is True
        assert cookie["secure"] is True
        assert cookie["sameSite"] == "Lax"
        assert cookie["session"] is False
        assert before + LIFETIME - 1 <= cookie["expires"] <= after + LIFETIME + 1
        # A cookie that scripts may see shows up, so the session cookie's absence means HttpOnly.
        page.execute_script("document.cookie = 'probe=visible; path=/';")
        visible = page.execute_script("return document.cookie;")
        assert "probe=visible" in visible
        assert COOKIE not in visible

    def test_browser_sends_it_back(self, page: webdriver.Chrome, server: LiveServer) -> None:
        """A later navigation to /me presents the cookie and the server finds the session."""
        session_id = start_session(page)
        page.get(server.origin + "/me")
        shown = page_json(page)
        assert shown["cookie"] == session_id
        assert shown["session"]["id"] == session_id
        assert shown["session"]["permissions"] == {"eip155:1": ["eth_accounts"]}

    def test_rotation_replaces_the_cookie(self, page: webdriver.Chrome, server: LiveServer) -> None:
        """/rotate gives a new id, the browser stores it, and the old id no longer works."""
        old = start_session(page)
        status, body = fetch(page, "/rotate", "POST")
        assert status == 200
        new = json.loads(body)["id"]
        assert new != old
        assert stored_id(page) == new
        assert session_over_http(server, old) is None
        page.get(server.origin + "/me")
        assert page_json(page)["session"]["id"] == new

    def test_concurrent_rotations_keep_the_winner(
        self, page: webdriver.Chrome, server: LiveServer
    ) -> None:
        """Of four rotations at once one wins, and the losers, answering last, leave its cookie."""
        old = start_session(page)
        outcome = page.execute_async_script(_CONCURRENT_ROTATIONS, ROTATIONS, next(_batches))
        results = outcome["results"]
        assert results is not None, outcome["settled"]
        assert [result["status"] for result in results] == [200] * ROTATIONS
        winners = [result["id"] for result in results if result["id"] is not None]
        assert len(winners) == 1, results
        (winner,) = winners
        # The order the page saw: the winner's response first, then every loser's.
        assert outcome["settled"] == [winner] + [None] * (ROTATIONS - 1)
        assert stored_id(page) == winner
        assert session_over_http(server, old) is None
        page.get(server.origin + "/me")
        shown = page_json(page)
        assert shown["cookie"] == winner
        assert shown["session"]["id"] == winner

    def test_end_removes_the_cookie(self, page: webdriver.Chrome, server: LiveServer) -> None:
        """Logout makes the browser drop the cookie, and the session is gone on the server."""
        session_id = start_session(page)
        assert stored_id(page) == session_id
        status, _ = fetch(page, "/end", "POST")
        assert status == 200
        assert session_cookies(page) == []
        assert session_over_http(server, session_id) is None
        page.get(server.origin + "/me")
        assert page_json(page) == {"method": "GET", "cookie": None, "session": None}


class TestSameSiteLax:
    """localhost and 127.0.0.1 are different sites: a form POST from one to the other goes
    without the cookie, while a link's top-level GET carries it.

    Observed in Chromium 156: the form on http://localhost:PORT/cross POSTed to
    http://127.0.0.1:PORT/me arrives without the session cookie (the server sees no cookie and
    no session); clicking the link beside it, a top-level GET to that same URL, arrives with the
    cookie and the session is found; the same form served by 127.0.0.1 itself sends it too.
    """

    def test_cross_site_post_goes_without_the_cookie(
        self, page: webdriver.Chrome, server: LiveServer
    ) -> None:
        """Same-site POST and cross-site link GET carry the cookie; a cross-site POST has none."""
        session_id = start_session(page)
        target = server.origin + "/me"
        # The control: the same form on the cookie's own site does send it.
        page.get(server.origin + "/cross")
        same_site_post = open_from_page(page, "submit", target)
        assert same_site_post["method"] == "POST"
        assert same_site_post["cookie"] == session_id
        assert same_site_post["session"]["id"] == session_id

        page.get(server.other_origin + "/cross")
        cross_site_post = open_from_page(page, "submit", target)
        assert cross_site_post == {"method": "POST", "cookie": None, "session": None}

        page.get(server.other_origin + "/cross")
        cross_site_get = open_from_page(page, "link", target)
        assert cross_site_get["method"] == "GET"
        assert cross_site_get["cookie"] == session_id
        assert cross_site_get["session"]["id"] == session_id
        assert stored_id(page) == session_id  # the cookie-less POST cost the browser nothing


REFUSED_VALUES = [
    "a" * 42,
    "a" * 44,
    "-" + "a" * 42,
    "a" * 21 + "." + "a" * 21,
    '"' + "a" * 41 + '"',
    "x" * 4000,
]


class TestRefusedCookie:
    """A cookie value the server refuses is no session, never a server error."""

    def test_planted_bad_value_is_no_session(
        self, page: webdriver.Chrome, server: LiveServer
    ) -> None:
        """Each bad value (and an unknown well-shaped id) reaches the server: 200, no session."""
        for value in [*REFUSED_VALUES, new_session_id()]:
            plant_cookie(page, server.origin + "/", COOKIE, value)
            assert stored_id(page) == value
            status, body = fetch(page, "/me")
            assert status == 200, value
            assert json.loads(body) == {"method": "GET", "cookie": value, "session": None}
        # A login from the same browser still works, and replaces the bad cookie.
        session_id = start_session(page)
        assert stored_id(page) == session_id
