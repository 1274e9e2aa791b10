"""docs/wallet_app.py's wallet router on other session layers, for bench_asgi.py to compare.

Same endpoints and answers: connect makes a session for (origin, wallet) holding the wallet,
login checks the stand-in signature ``signed-by-<wallet>`` and rotates the id, grant adds
methods under a chain, rpc checks one, me returns the session, logout ends it. Each layer is
used as its docs show: the handler changes the session dict and the middleware writes the
whole dict back when the response starts. Neither has a one-per-wallet guard.

- `starsessions_app`: FastAPI with starsessions' `SessionMiddleware` and
  `SessionAutoloadMiddleware` over its Redis store; login rotates with `regenerate_session_id`.
- `litestar_app`: Litestar's server-side sessions over litestar's `RedisStore`. Litestar has
  no public way to give a session a new id (the id comes from the request's cookie), so its
  login keeps the id.

Both are factories (``uvicorn --factory --app-dir benchmarks asgi_peers:starsessions_app``)
reading the Redis URL from ``BENCH_ASGI_REDIS_URL`` and a key prefix from ``BENCH_ASGI_PREFIX``.
"""

import os
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from litestar import Litestar, get, post
from litestar import Request as LitestarRequest
from litestar.exceptions import HTTPException as LitestarHTTPException
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.stores.redis import RedisStore as LitestarRedisStore
from pydantic import BaseModel
from redis.asyncio import Redis
from starsessions import (
    SessionAutoloadMiddleware,
    SessionMiddleware,
    get_session_id,
    regenerate_session_id,
)
from starsessions.stores.redis import RedisStore

__all__ = ("litestar_app", "starsessions_app")

LIFETIME_S = 900  # the idle timeout of our app's SESSIONS_URL; each write slides it


class Connect(BaseModel):
    origin: str
    wallet: str


class Login(BaseModel):
    signature: str


class Grant(BaseModel):
    chain: str
    methods: list[str]


def _settings() -> tuple[str, str]:
    return os.environ["BENCH_ASGI_REDIS_URL"], os.environ["BENCH_ASGI_PREFIX"]


def _new_session(body: Connect) -> dict[str, Any]:
    return {"origin": body.origin, "permissions": {}, "appData": {"wallet": body.wallet}}


def _granted(session: dict[str, Any], body: Grant) -> None:
    names = session["permissions"].setdefault(body.chain, [])
    names.extend(method for method in body.methods if method not in names)


def _shown(session_id: str | None, session: dict[str, Any]) -> dict[str, Any]:
    """What the page sees, as docs/wallet_app.py shows it (never the id)."""
    del session_id  # kept in the calls: each framework finds the id its own way
    app_data = session["appData"]
    return {
        "origin": session["origin"],
        "permissions": session["permissions"],
        "wallet": app_data.get("wallet"),
        "loggedIn": app_data.get("logged_in") is True,
    }


def _logged_in(session: dict[str, Any]) -> bool:
    return bool(session) and session["appData"].get("logged_in") is True


def _allows(session: dict[str, Any], chain: str, method: str) -> bool:
    return bool(session) and method in session["permissions"].get(chain, ())


# starsessions: `request.session` is the loaded dict; SessionMiddleware saves it all back.
router = APIRouter()


@router.post("/connect")
async def star_connect(body: Connect, request: Request) -> dict[str, Any]:
    request.session.clear()
    session_id = regenerate_session_id(request)
    request.session.update(_new_session(body))
    return _shown(session_id, request.session)


@router.post("/login")
async def star_login(body: Login, request: Request) -> dict[str, Any]:
    session = request.session
    if not session:
        raise HTTPException(401, "connect first")
    if body.signature != f"signed-by-{session['appData']['wallet']}":
        raise HTTPException(403, "bad signature")
    session_id = regenerate_session_id(request)  # the data is saved under the new id
    session["appData"]["logged_in"] = True
    return _shown(session_id, session)


@router.post("/grant")
async def star_grant(body: Grant, request: Request) -> dict[str, Any]:
    if not _logged_in(request.session):
        raise HTTPException(401, "log in first")
    _granted(request.session, body)
    return _shown(get_session_id(request), request.session)


@router.post("/rpc/{chain}/{method}")
async def star_rpc(chain: str, method: str, request: Request) -> dict[str, str]:
    if not _allows(request.session, chain, method):
        raise HTTPException(403, f"not allowed: {method} on {chain}")
    return {"result": f"{method} sent to {chain}"}


@router.get("/me")
async def star_me(request: Request) -> dict[str, Any]:
    if not request.session:
        raise HTTPException(401, "no session")
    return _shown(get_session_id(request), request.session)


@router.post("/logout", status_code=204)
async def star_logout(request: Request) -> Response:
    request.session.clear()  # an emptied session is removed from the store
    return Response(status_code=204)


def starsessions_app() -> FastAPI:
    """The wallet router on starsessions, as its README sets it up."""
    url, prefix = _settings()
    app = FastAPI()
    app.include_router(router)
    app.add_middleware(SessionAutoloadMiddleware)
    store = RedisStore(connection=Redis.from_url(url), prefix=prefix)
    app.add_middleware(SessionMiddleware, store=store, lifetime=LIFETIME_S, rolling=True)
    return app


# Litestar: `request.session` is the loaded dict; the middleware saves it all back.
LitestarRequestT = LitestarRequest[Any, Any, Any]


@post("/connect", status_code=200)
async def lite_connect(data: Connect, request: LitestarRequestT) -> dict[str, Any]:
    request.set_session(_new_session(data))
    return _shown(request.get_session_id(), request.session)


@post("/login", status_code=200)
async def lite_login(data: Login, request: LitestarRequestT) -> dict[str, Any]:
    session = request.session
    if not session:
        raise LitestarHTTPException(status_code=401, detail="connect first")
    if data.signature != f"signed-by-{session['appData']['wallet']}":
        raise LitestarHTTPException(status_code=403, detail="bad signature")
    session["appData"]["logged_in"] = True  # no rotation: litestar offers none
    return _shown(request.get_session_id(), session)


@post("/grant", status_code=200)
async def lite_grant(data: Grant, request: LitestarRequestT) -> dict[str, Any]:
    if not _logged_in(request.session):
        raise LitestarHTTPException(status_code=401, detail="log in first")
    _granted(request.session, data)
    return _shown(request.get_session_id(), request.session)


@post("/rpc/{chain:str}/{method:str}", status_code=200)
async def lite_rpc(chain: str, method: str, request: LitestarRequestT) -> dict[str, str]:
    if not _allows(request.session, chain, method):
        raise LitestarHTTPException(status_code=403, detail=f"not allowed: {method} on {chain}")
    return {"result": f"{method} sent to {chain}"}


@get("/me")
async def lite_me(request: LitestarRequestT) -> dict[str, Any]:
    if not request.session:
        raise LitestarHTTPException(status_code=401, detail="no session")
    return _shown(request.get_session_id(), request.session)


@post("/logout", status_code=204)
async def lite_logout(request: LitestarRequestT) -> None:
    request.clear_session()


def litestar_app() -> Litestar:
    """The wallet router on Litestar's server-side sessions over its Redis store."""
    url, prefix = _settings()
    config = ServerSideSessionConfig(max_age=LIFETIME_S, renew_on_access=True, secure=True)
    return Litestar(
        [lite_connect, lite_login, lite_grant, lite_rpc, lite_me, lite_logout],
        middleware=[config.middleware],
        stores={"sessions": LitestarRedisStore.with_client(url=url, namespace=prefix)},
    )
