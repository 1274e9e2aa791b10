"""The docs' FastAPI wallet-router app (docs/wallet_app.py) holds every race on every store.

Concurrent grants to one session all stay, of concurrent logins exactly one rotates and the
old id is dead, and concurrent connects of one wallet make one session: on SQLite, Redis and
PostgreSQL, through the app's real middleware stack, on both anyio backends.
"""

from __future__ import annotations

import itertools
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from walletmesh_sessions import open_store

from .web_clients import concurrently, load_docs_module, presenting, serving, set_id

pytestmark = pytest.mark.anyio

TIMEOUTS = "lifetime=900&refresh_on_access=true&max_lifetime=3600"
ORIGIN = "https://dapp.example"
_names = itertools.count()


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL with the app's timeouts, private to this test."""
    n = next(_names)
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sessions.db'}?{TIMEOUTS}"
    if request.param == "redis":
        base = str(request.getfixturevalue("redis_url"))
        return f"{base}?prefix=webapp{n}_&{TIMEOUTS}"
    base = str(request.getfixturevalue("postgres_url"))
    return f"{base}?table=webapp_{n}&{TIMEOUTS}"


@pytest.fixture
def wallet_app(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh copy of the docs' app, on this test's store."""
    monkeypatch.setenv("SESSIONS_URL", store_url)
    return load_docs_module("wallet_app.py").app


async def connect(client: httpx.AsyncClient, wallet: str) -> httpx.Response:
    return await client.post("/connect", json={"origin": ORIGIN, "wallet": wallet})


async def login(client: httpx.AsyncClient, session_id: str, wallet: str) -> httpx.Response:
    return await client.post(
        "/login", json={"signature": f"signed-by-{wallet}"}, headers=presenting(session_id)
    )


async def sessions_of(store_url: str, wallet: str) -> list[str]:
    async with open_store(store_url) as store:
        found = await store.get_all()
    return [sid for sid, data in found.items() if data.app_data.get("wallet") == wallet]


class TestRaces:
    """Exact counts under concurrency: nothing lost, one winner, nothing duplicated."""

    async def test_concurrent_grants_all_stay(self, store_url: str, wallet_app: Any) -> None:
        """200 concurrent grants to one session: every one is there afterwards (0 lost)."""
        async with serving(wallet_app) as client:
            started = await connect(client, "0xgrants")
            first = set_id(started)
            assert first
            logged_in = await login(client, first, "0xgrants")
            session_id = set_id(logged_in)
            assert logged_in.status_code == 200
            assert session_id
            assert session_id != first

            async def grant(i: int) -> httpx.Response:
                body = {"chain": f"eip155:{i % 3}", "methods": [f"m{i}"]}
                return await client.post("/grant", json=body, headers=presenting(session_id))

            responses = await concurrently(partial(grant, i) for i in range(200))
            assert [r.status_code for r in responses] == [200] * 200
            me = await client.get("/me", headers=presenting(session_id))
        granted = {m for methods in me.json()["permissions"].values() for m in methods}
        assert granted == {f"m{i}" for i in range(200)}

    async def test_concurrent_logins_one_winner(self, store_url: str, wallet_app: Any) -> None:
        """100 concurrent logins of one session: one rotates, the old id is dead, one copy."""
        async with serving(wallet_app) as client:
            old = set_id(await connect(client, "0xlogins"))
            assert old
            responses = await concurrently([partial(login, client, old, "0xlogins")] * 100)
            winners = [r for r in responses if r.status_code == 200]
            assert len(winners) == 1
            assert sorted({r.status_code for r in responses}) == [200, 401]
            losers_cookies = [set_id(r) for r in responses if r.status_code != 200]
            assert losers_cookies == [None] * 99  # the winner's new cookie stands
            new = set_id(winners[0])
            assert new
            assert new != old
            assert (await client.get("/me", headers=presenting(old))).status_code == 401
            assert (await client.get("/me", headers=presenting(new))).json()["loggedIn"]
        assert await sessions_of(store_url, "0xlogins") == [new]

    async def test_concurrent_connects_one_session(self, store_url: str, wallet_app: Any) -> None:
        """100 concurrent connects of one wallet to one origin: one session, 99 refused."""
        async with serving(wallet_app) as client:
            responses = await concurrently([partial(connect, client, "0xconnects")] * 100)
        assert sorted(r.status_code for r in responses) == [200] + [409] * 99
        winner = next(set_id(r) for r in responses if r.status_code == 200)
        assert await sessions_of(store_url, "0xconnects") == [winner]


def test_the_docs_page_shows_this_app() -> None:
    """docs/web-apps.md shows docs/wallet_app.py whole, so the tested app is the one readers see."""
    root = Path(__file__).parent.parent
    app = (root / "docs" / "wallet_app.py").read_text(encoding="utf-8")
    page = (root / "docs" / "web-apps.md").read_text(encoding="utf-8")
    assert f"```python\n{app}```" in page


def test_the_app_is_short() -> None:
    """The whole app, six endpoints and both timeouts, stays within 110 lines."""
    root = Path(__file__).parent.parent
    assert len((root / "docs" / "wallet_app.py").read_text(encoding="utf-8").splitlines()) <= 110
