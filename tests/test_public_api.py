"""Every public module re-exports exactly what its tuple __all__ names."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import walletmesh_sessions

CONTRACT_NAMES = {
    "SessionStore",
    "SessionData",
    "SessionStoreConfig",
    "MemorySessionStore",
    "default_store",
    "new_session_id",
    "SessionStoreError",
}
# What FullSessionStore names: every member of every store protocol, and config.
FULL_MEMBERS = (
    "set",
    "get",
    "get_all",
    "delete",
    "clear",
    "validate_and_refresh",
    "clean_expired",
    "create",
    "update",
    "rotate",
    "iter_sessions",
    "inspect",
    "aclose",
    "__aenter__",
    "__aexit__",
    "config",
)
PUBLIC_MODULES = [
    "walletmesh_sessions",
    "walletmesh_sessions.testing",
    "walletmesh_sessions.redis",
    "walletmesh_sessions.postgres",
    "walletmesh_sessions.asgi",
    "walletmesh_sessions.fastapi",
    "walletmesh_sessions.litestar",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_a_tuple_of_exports(name: str) -> None:
    """__all__ is a sorted tuple, and every name in it is importable."""
    module = importlib.import_module(name)
    assert isinstance(module.__all__, tuple)
    assert list(module.__all__) == sorted(module.__all__)
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"
    public = {n for n in vars(module) if not n.startswith("_")}
    submodules = {n for n in public if type(getattr(module, n)).__name__ == "module"}
    assert public - submodules == set(module.__all__), "exports and __all__ differ"


def test_contract_names() -> None:
    """The names the contract lists import from the package."""
    assert set(walletmesh_sessions.__all__) >= CONTRACT_NAMES


def test_errors_share_one_base() -> None:
    """Every exported exception is a SessionStoreError."""
    for name in walletmesh_sessions.__all__:
        obj = getattr(walletmesh_sessions, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, walletmesh_sessions.SessionStoreError)


def test_py_typed_ships() -> None:
    """The package carries a py.typed marker."""
    assert walletmesh_sessions.__file__ is not None
    from pathlib import Path

    assert (Path(walletmesh_sessions.__file__).parent / "py.typed").is_file()


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_names_are_documented(name: str) -> None:
    """Every exported class and function, and every public method, has a docstring."""
    module = importlib.import_module(name)
    assert module.__doc__
    for attr in module.__all__:
        obj = getattr(module, attr)
        if not (isinstance(obj, type) or inspect.isfunction(obj)):
            continue
        assert obj.__doc__, f"{name}.{attr} has no docstring"
        if isinstance(obj, type):
            for member, value in vars(obj).items():
                if member.startswith("_") or not callable(value) or member.startswith("test_"):
                    continue
                if isinstance(value, (classmethod, staticmethod)):
                    value = value.__func__
                assert value.__doc__, f"{name}.{attr}.{member} has no docstring"


def test_the_middleware_needs_no_framework() -> None:
    """walletmesh_sessions.asgi is pure ASGI: it imports and serves with no web framework."""
    code = (
        "import sys\n"
        "for name in ('starlette', 'fastapi', 'litestar', 'quart', 'httpx', 'uvicorn'):\n"
        "    sys.modules[name] = None\n"
        "import anyio\n"
        "from walletmesh_sessions.asgi import SessionMiddleware, session_from_scope\n"
        "async def app(scope, receive, send):\n"
        "    data = await session_from_scope(scope).start('https://a.example')\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': data.id.encode()})\n"
        "sent = []\n"
        "async def send(message):\n"
        "    sent.append(message)\n"
        "async def receive():\n"
        "    return {'type': 'http.request', 'body': b''}\n"
        "scope = {'type': 'http', 'headers': [], 'path': '/', 'method': 'POST'}\n"
        "anyio.run(SessionMiddleware(app, store='memory://'), scope, receive, send)\n"
        "cookie = dict(sent[0]['headers'])[b'set-cookie'].decode()\n"
        "print(cookie.startswith('__Host-wm_session=' + sent[1]['body'].decode() + ';'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout == "True\n"


def test_fake_clock_needs_no_test_dependencies() -> None:
    """FakeClock imports without pytest; the kit then names the extra that brings it."""
    code = (
        "import sys; sys.modules['pytest'] = None; sys.modules['hypothesis'] = None\n"
        "from walletmesh_sessions.testing import FakeClock\n"
        "assert FakeClock()() == 1_700_000_000.0\n"
        "try:\n"
        "    from walletmesh_sessions.testing import SessionStoreContract\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "pip install 'walletmesh-sessions[testing]'" in result.stdout


def test_shipped_stores_do_not_inherit_the_protocols() -> None:
    """Our own stores satisfy every protocol structurally, never by subclassing one."""
    from walletmesh_sessions import (
        ClosableSessionStore,
        FullSessionStore,
        Inspectable,
        IterableRecords,
        IterableSessionStore,
        LifecycleSessionStore,
        LocalStorageSessionStore,
        MemorySessionStore,
        SessionStore,
    )
    from walletmesh_sessions.postgres import PostgresSessionStore
    from walletmesh_sessions.redis import RedisSessionStore

    protocols = {
        SessionStore,
        LifecycleSessionStore,
        IterableSessionStore,
        ClosableSessionStore,
        Inspectable,
        IterableRecords,
        FullSessionStore,
    }
    stores = (LocalStorageSessionStore, RedisSessionStore, PostgresSessionStore)
    for store in (MemorySessionStore, *stores):
        bases = set(store.__mro__)
        assert bases.isdisjoint(protocols), store
        assert issubclass(store, ClosableSessionStore)
        assert issubclass(store, Inspectable)
        assert issubclass(store, IterableRecords)


class TestFullSessionStore:
    """FullSessionStore: every shipped store has all of it, at runtime too."""

    def test_every_shipped_store_is_one(self, tmp_path: Path) -> None:
        """Each store, however built, passes isinstance (nothing connects)."""
        from walletmesh_sessions import (
            FullSessionStore,
            IterableRecords,
            LocalStorageSessionStore,
            MemorySessionStore,
            default_store,
        )
        from walletmesh_sessions.postgres import PostgresSessionStore
        from walletmesh_sessions.redis import RedisSessionStore

        stores: list[object] = [
            MemorySessionStore(),
            default_store,
            LocalStorageSessionStore(tmp_path / "s.db"),
            LocalStorageSessionStore({}),
            RedisSessionStore.from_url("redis://127.0.0.1:1/0"),
            RedisSessionStore.from_url("redis+cluster://127.0.0.1:7000"),
            RedisSessionStore.from_url("redis+sentinel://127.0.0.1:26379/sessions"),
            PostgresSessionStore.from_url("postgresql://app@127.0.0.1:1/app"),
        ]
        for store in stores:
            assert isinstance(store, FullSessionStore), store
            assert isinstance(store, IterableRecords), store  # apart from FullSessionStore

    def test_a_missing_member_fails_isinstance(self) -> None:
        """A look-alike lacking any one member is not a FullSessionStore; with all, it is."""
        from walletmesh_sessions import FullSessionStore, SessionStoreConfig

        async def method(*args: object) -> None: ...

        members: dict[str, object] = dict.fromkeys(FULL_MEMBERS, method)
        members["config"] = SessionStoreConfig()
        assert isinstance(type("Complete", (), members)(), FullSessionStore)
        for name in FULL_MEMBERS:
            incomplete = type("Incomplete", (), {k: v for k, v in members.items() if k != name})
            assert not isinstance(incomplete(), FullSessionStore), name
