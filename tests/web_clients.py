"""Helpers for driving an ASGI app in-process: a client over httpx's ASGI transport."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
from asgi_lifespan import LifespanManager

ROOT = Path(__file__).parent.parent
COOKIE = "__Host-wm_session"
_SET_ID = re.compile(rf"{re.escape(COOKIE)}=([A-Za-z0-9_-]*)")
_loaded = 0
# A jar that keeps nothing: every request presents exactly the id its test gives it.
_NO_COOKIES = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def load_docs_module(name: str) -> ModuleType:
    """A fresh copy of a module under docs/ (its app reads its store URL when imported)."""
    global _loaded
    _loaded += 1
    spec = importlib.util.spec_from_file_location(f"docs_{name}_{_loaded}", ROOT / "docs" / name)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTPS client for `app`, with the app's lifespan run around it (store opened, closed).

    The client keeps no cookies: each test says which session id a request presents.
    """
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="https://testserver", cookies=_NO_COOKIES
        ) as client:
            yield client


def presenting(session_id: str | None) -> dict[str, str]:
    """Request headers that present `session_id` in the session cookie (none: no cookie)."""
    return {} if session_id is None else {"cookie": f"{COOKIE}={session_id}"}


def set_id(response: httpx.Response) -> str | None:
    """The session id the response's Set-Cookie gives ('' when it expires the cookie)."""
    for value in response.headers.get_list("set-cookie"):
        match = _SET_ID.match(value)
        if match:
            return match.group(1)
    return None


async def concurrently(
    calls: Iterable[Callable[[], Awaitable[httpx.Response]]],
) -> list[httpx.Response]:
    """Run every call at once; their responses, in the order they finished (within 60 s)."""
    responses: list[httpx.Response] = []

    async def one(call: Callable[[], Awaitable[httpx.Response]]) -> None:
        responses.append(await call())

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for call in calls:
                tg.start_soon(one, call)
    return responses
