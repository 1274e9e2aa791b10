"""`RedisSessionStore`: sessions shared by many processes through Redis.

Needs the ``redis`` extra: ``pip install 'walletmesh-sessions[redis]'``; without it, importing
this module raises `MissingDependencyError` (an `ImportError` too).
"""

from ._core.errors import MissingDependencyError as _MissingDependencyError

try:
    import redis as _redis  # noqa: F401
    import sniffio as _sniffio  # noqa: F401
except ImportError as _exc:
    _msg = (
        "walletmesh_sessions.redis needs the redis extra: "
        f"pip install 'walletmesh-sessions[redis]' ({_exc})"
    )
    raise _MissingDependencyError(_msg, name=_exc.name) from _exc

from ._redis.store import RedisSessionStore as RedisSessionStore

# The class reports the module it is imported from, as anyio's public classes do.
RedisSessionStore.__module__ = __name__

__all__ = ("RedisSessionStore",)
