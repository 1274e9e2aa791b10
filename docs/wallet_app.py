"""A wallet router's sessions on FastAPI: connect, log in, grant, check, read, log out."""

import os
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel

from walletmesh_sessions import SessionData
from walletmesh_sessions.asgi import SessionMiddleware
from walletmesh_sessions.fastapi import SessionDep

# The whole store in one URL: idle timeout 15 minutes, absolute timeout 1 hour.
STORE_URL = os.environ.get(
    "SESSIONS_URL", "sqlite:///sessions.db?lifetime=900&refresh_on_access=true&max_lifetime=3600"
)

app = FastAPI()
app.add_middleware(SessionMiddleware, store=STORE_URL)


class Connect(BaseModel):
    origin: str
    wallet: str


class Login(BaseModel):
    signature: str


class Grant(BaseModel):
    chain: str
    methods: list[str]


def public(data: SessionData) -> dict[str, Any]:
    """What the page may see: never the id, which the HttpOnly cookie keeps from scripts."""
    logged_in = data.app_data.get("logged_in") is True
    shown = {"origin": data.origin, "permissions": data.to_json()["permissions"]}
    return {**shown, "wallet": data.app_data.get("wallet"), "loggedIn": logged_in}


def signed_by(wallet: str, signature: str) -> bool:
    """Stands in for checking the wallet's signature of a login challenge."""
    return signature == f"signed-by-{wallet}"


@app.post("/connect")
async def connect(body: Connect, session: SessionDep) -> dict[str, Any]:
    # At most one live session per origin and wallet; the id itself is always random.
    data = await session.start(body.origin, app_data={"wallet": body.wallet}, one_per=body.wallet)
    if data is None:
        raise HTTPException(409, "this wallet is already connected to this origin")
    return public(data)


@app.post("/login")
async def login(body: Login, session: SessionDep) -> dict[str, Any]:
    data = await session.load()
    if data is None:
        raise HTTPException(401, "connect first")
    if not signed_by(str(data.app_data["wallet"]), body.signature):
        raise HTTPException(403, "bad signature")
    # A new id at the privilege change: whoever knew the old one loses it.
    data = await session.rotate(lambda d: d.with_app_data({"logged_in": True}))
    if data is None:  # a concurrent login of this session won and holds the new id
        raise HTTPException(401, "the session moved on")
    return public(data)


@app.post("/grant")
async def grant(body: Grant, session: SessionDep) -> dict[str, Any]:
    def change(data: SessionData) -> SessionData:
        # Checked inside the atomic update: no logout can slip in between check and grant.
        if data.app_data.get("logged_in") is not True:
            raise HTTPException(401, "log in first")
        return data.granted(body.chain, *body.methods)

    data = await session.update(change)  # atomic: concurrent grants all stay
    if data is None:
        raise HTTPException(401, "no session")
    return public(data)


@app.post("/rpc/{chain}/{method}")
async def rpc(chain: str, method: str, session: SessionDep) -> dict[str, str]:
    if not await session.may_call(chain, method):
        raise HTTPException(403, f"not allowed: {method} on {chain}")
    return {"result": f"{method} sent to {chain}"}


@app.get("/me")
async def me(session: SessionDep) -> dict[str, Any]:
    data = await session.load()
    if data is None:
        raise HTTPException(401, "no session")
    return public(data)


@app.post("/logout", status_code=204)
async def logout(session: SessionDep) -> Response:
    await session.end()
    return Response(status_code=204)
