"""`PostgresSessionStore`: sessions shared by many processes through a PostgreSQL table.

Needs the ``postgres`` extra: ``pip install 'walletmesh-sessions[postgres]'``; without it,
importing this module raises `MissingDependencyError` (an `ImportError` too).
"""

from ._core.errors import MissingDependencyError as _MissingDependencyError

try:
    import psycopg as _psycopg  # noqa: F401
    import psycopg_pool as _psycopg_pool  # noqa: F401
except ImportError as _exc:
    _msg = (
        "walletmesh_sessions.postgres needs the postgres extra: "
        f"pip install 'walletmesh-sessions[postgres]' ({_exc})"
    )
    raise _MissingDependencyError(_msg, name=_exc.name) from _exc

from ._postgres.store import PostgresSessionStore as PostgresSessionStore

# The class reports the module it is imported from, as anyio's public classes do.
PostgresSessionStore.__module__ = __name__

__all__ = ("PostgresSessionStore",)
