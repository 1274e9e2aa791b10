"""Web-layer usages mypy --strict must reject: each line's ignore is required."""

from __future__ import annotations

from fastapi import FastAPI

from walletmesh_sessions import SessionData, SessionStore
from walletmesh_sessions.asgi import CookieOptions, Session, SessionMiddleware, session_of


class NoScope:
    pass


async def misuse(session: Session, plain: SessionStore) -> None:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=plain)  # type: ignore[arg-type]
    app.add_middleware(SessionMiddleware, store="memory://", cookie="sid")  # type: ignore[arg-type]
    app.add_middleware(SessionMiddleware, store="memory://", retry_after="5")  # type: ignore[arg-type]
    app.add_middleware(SessionMiddleware, store="memory://", cokie=None)  # type: ignore[call-arg]
    CookieOptions(same_site="sometimes")  # type: ignore[arg-type]
    CookieOptions("sid")  # type: ignore[call-arg]
    session_of(NoScope())  # type: ignore[arg-type]
    await session.grant("eip155:1", ["eth_accounts"])  # type: ignore[arg-type]
    await session.update(lambda d: None)  # type: ignore[arg-type,return-value]
    data: SessionData = await session.load()  # type: ignore[assignment]
    session.id = "x"  # type: ignore[misc]
