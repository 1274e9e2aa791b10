"""Sessions in a SQLite file: durable, shared by processes, with an index on the expiry.

The expiry is a generated column of each record's JSON (it never disagrees with the record),
indexed. The event loop never waits on the disk, and another process never waits on us long.
"""

from .backend import SqliteBackend as SqliteBackend
from .file import DURABILITY as DURABILITY
from .file import SCHEMA as SCHEMA
from .file import TABLE as TABLE
from .file import Durability as Durability
from .file import check_durability as check_durability

__all__ = ("DURABILITY", "SCHEMA", "TABLE", "Durability", "SqliteBackend", "check_durability")
