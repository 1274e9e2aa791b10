"""Sessions in a SQLite file: durable, shared by processes, with an index on the expiry.

Each record's expiry is also computed by SQLite from its JSON (a generated column, so it can
never disagree with the record) and indexed, so that expired sessions are found fast. The
event loop never waits on the disk, and another process never waits on us for long.

- `file`: the table, the file created owner-only, WAL mode, the file's identity.
- `transactions`: statements read whole, a busy lock recognized, transactions.
- `connections`: the store's two connections and which thread runs what.
- `backend`: the seven operations of the `Backend` seam.
"""

from .backend import SqliteBackend as SqliteBackend
from .file import DURABILITY as DURABILITY
from .file import SCHEMA as SCHEMA
from .file import TABLE as TABLE
from .file import Durability as Durability
from .file import check_durability as check_durability

__all__ = ("DURABILITY", "SCHEMA", "TABLE", "Durability", "SqliteBackend", "check_durability")
