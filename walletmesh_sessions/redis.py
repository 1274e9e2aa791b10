"""`RedisSessionStore`: sessions shared by many processes through Redis.

Needs the ``redis`` extra: ``pip install 'walletmesh-sessions[redis]'``.
"""

try:
    import redis as _redis  # noqa: F401
    import sniffio as _sniffio  # noqa: F401
except ImportError as _exc:
    _msg = (
        "walletmesh_sessions.redis needs the redis extra: "
        f"pip install 'walletmesh-sessions[redis]' ({_exc})"
    )
    raise ImportError(_msg, name=_exc.name) from _exc

from ._redis.store import RedisSessionStore as RedisSessionStore

__all__ = ("RedisSessionStore",)
