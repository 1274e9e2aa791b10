"""PostgreSQL that refuses the store's connections: libpq's reason at once, quietly logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import anyio
import psycopg
import pytest

from tests.postgres_server import PostgresServer, own_server
from tests.redis_server import free_port
from walletmesh_sessions import SessionData, StoreUnavailableError
from walletmesh_sessions.postgres import PostgresSessionStore

pytestmark = pytest.mark.anyio

# A call that waited for its timeout would take this long; one told the reason, far less.
TIMEOUT = 30.0
PROMPT = 10.0
SECRET = "s3cr#t/pa?ss@word"
DATA = SessionData("s1", "https://app.example")


def _host(server: PostgresServer) -> str:
    return f"127.0.0.1:{server.port}"


# How to make a URL the server (or nothing at all) refuses, and the reason libpq gives.
REFUSALS: dict[str, tuple[Callable[[PostgresServer], str], str]] = {
    "refused": (lambda s: f"postgresql://127.0.0.1:{free_port()}/x", "Connection refused"),
    "no database": (
        lambda s: f"postgresql://postgres@{_host(s)}/nope",
        'database "nope" does not exist',
    ),
    "no TLS": (lambda s: f"{s.url}?sslmode=require", "server does not support SSL"),
    "no role": (
        lambda s: f"postgresql://ghost:{quote(SECRET, safe='')}@{_host(s)}/postgres",
        'role "ghost" does not exist',
    ),
}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


class TestStatedReasons:
    """A connection the server or libpq refuses fails the call at once, with the reason."""

    @pytest.mark.parametrize("case", list(REFUSALS))
    async def test_reason_at_once(self, case: str, postgres_server: PostgresServer) -> None:
        """Every call, not only the first, fails well before its timeout and says why."""
        make_url, reason = REFUSALS[case]
        async with PostgresSessionStore.from_url(
            make_url(postgres_server), timeout=TIMEOUT
        ) as store:
            for write in (False, True):
                start = time.monotonic()
                with pytest.raises(StoreUnavailableError, match=reason) as info:
                    await (store.set("a", DATA) if write else store.get("a"))
                assert time.monotonic() - start < PROMPT
                assert "within the timeout" not in str(info.value)
                assert SECRET not in str(info.value)
                assert "s3cr" not in repr(info.value.__cause__)

    async def test_no_warning_per_attempt(self, caplog: pytest.LogCaptureFixture) -> None:
        """The pool's attempts in the background log nothing: the caller is told instead."""
        caplog.set_level(logging.INFO)
        url = f"postgresql://127.0.0.1:{free_port()}/x"
        async with PostgresSessionStore.from_url(url, timeout=TIMEOUT) as store:
            for _ in range(4):  # 1 s in all: the pool tries again every 0.1 to 0.5 s meanwhile
                with pytest.raises(StoreUnavailableError, match="Connection refused"):
                    await store.get("a")
                await anyio.sleep(0.25)
        assert _warnings(caplog) == []


@pytest.fixture(scope="module")
def outage_server() -> Iterator[PostgresServer]:
    """A server of this module's own, to stop and start (it starts stopped)."""
    with own_server(started=False) as server:
        yield server


class TestOutage:
    """A server that is down, then back: refused at once while down, working once back."""

    async def test_down_then_back(
        self, outage_server: PostgresServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Down from the start: refused at once; back: the next call works. Down again:
        calls refused at once, and one warning (none per attempt); back again: working."""
        caplog.set_level(logging.INFO)
        outage_server.stop()
        store = PostgresSessionStore.from_url(outage_server.url, timeout=2.0)
        async with store:
            with pytest.raises(StoreUnavailableError, match="Connection refused"):
                await store.get("a")
            outage_server.start()
            await store.set("a", DATA)
            assert _warnings(caplog) == []
            outage_server.stop()
            try:
                await self._refused_at_once(store)
            finally:
                outage_server.start()
            assert await store.get("a") == DATA
        warnings = _warnings(caplog)
        assert not [w for w in warnings if "error connecting" in w], warnings
        ours = [r.getMessage() for r in caplog.records if r.name == "walletmesh_sessions"]
        assert [w for w in ours if "cannot connect" in w] == [ours[-2]], ours
        assert "connection failed" in ours[-2]  # refused, or the server shutting down
        assert "connected" in ours[-1]

    @staticmethod
    async def _refused_at_once(store: PostgresSessionStore) -> None:
        """Calls on the lost connections fail as they do; then each call is refused at once."""
        for _ in range(10):  # each call fails within its 2 s timeout at the latest
            with pytest.raises(StoreUnavailableError) as info:
                await store.get("a")
            if "Connection refused" in str(info.value):
                break
        for _ in range(3):
            start = time.monotonic()
            with pytest.raises(StoreUnavailableError, match="Connection refused"):
                await store.get("a")
            assert time.monotonic() - start < 1.5


class TestFirstCallsTogether:
    async def test_many_first_calls_open_few_connections(
        self, postgres_url: str, postgres_table: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Fifty first calls at once on a fresh store: one of them checks the server, not
        every one (each with a connection of its own: a server's limit of clients runs out)."""
        opened = [0]
        for cls in (psycopg.AsyncConnection, psycopg.Connection):
            original = cls.__dict__["connect"].__func__

            def counting(klass: Any, /, *args: Any, _original: Any = original, **kw: Any) -> Any:
                opened[0] += 1
                return _original(klass, *args, **kw)

            monkeypatch.setattr(cls, "connect", classmethod(counting))
        store = PostgresSessionStore.from_url(
            f"{postgres_url}?table={postgres_table}", max_connections=2, timeout=TIMEOUT
        )
        async with store, anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(store.get, f"id{n}")
        assert opened[0] <= 4, f"{opened[0]} connections opened for a pool of 2"
