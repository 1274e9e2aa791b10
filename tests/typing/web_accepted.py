"""Web-layer usages mypy --strict must accept, with no cast and no isinstance."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from litestar import Litestar, get
from litestar import Request as LitestarRequest
from litestar.di import NamedDependency
from starlette.applications import Starlette
from starlette.requests import Request
from typing_extensions import assert_type

from walletmesh_sessions import MemorySessionStore, SessionData, open_store
from walletmesh_sessions.asgi import CookieOptions, Session, SessionMiddleware, session_of
from walletmesh_sessions.fastapi import SessionDep
from walletmesh_sessions.litestar import session_dependency

fastapi_app = FastAPI()
fastapi_app.add_middleware(SessionMiddleware, store="memory://", header="X-Session-Id")
fastapi_app.add_middleware(SessionMiddleware, store=MemorySessionStore())
fastapi_app.add_middleware(SessionMiddleware, store=lambda: open_store("memory://"))
fastapi_app.add_middleware(
    SessionMiddleware, store="memory://", cookie=CookieOptions(name="sid", same_site="strict")
)
starlette_app = Starlette()
starlette_app.add_middleware(SessionMiddleware, store="memory://", retry_after=5)


@fastapi_app.get("/me")
async def fastapi_me(session: SessionDep) -> dict[str, Any] | None:
    assert_type(session, Session)
    data = await session.load()
    assert_type(data, SessionData | None)
    return None if data is None else data.to_json()


async def starlette_me(request: Request) -> bool:
    session = session_of(request)
    assert_type(session.id, str | None)
    assert_type(
        await session.rotate(lambda d: d.with_app_data({"a": [1, "b"]})), SessionData | None
    )
    await session.end()
    return await session.may_call("eip155:1", "eth_accounts")


@get("/me")
async def litestar_me(
    session: NamedDependency[Session], request: LitestarRequest[Any, Any, Any]
) -> None:
    assert_type(session_of(request), Session)
    assert_type(await session.start("https://a.example", one_per="0xabc"), SessionData | None)


wrapped = SessionMiddleware(
    Litestar([litestar_me], dependencies={"session": session_dependency}), store="memory://"
)
