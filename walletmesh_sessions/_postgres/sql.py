"""The PostgreSQL table of a `PostgresSessionStore`: its schema and every statement run on it.

One table per store: ``id bytea PRIMARY KEY`` (the session id's UTF-8 bytes, so any id,
NUL included, is a key), ``value text`` (the TypeScript wire format, byte for byte) and
``expires_at bigint``, a column PostgreSQL computes from ``value`` itself, so that it can never
disagree with the record, indexed for `clean_expired`; the record's ``createdAt`` is indexed as
an expression, for `clean_expired` under an absolute timeout.

Every walk over the table is keyset pagination: a page is the rows after the last one seen,
in the order of an index, so a page never skips or repeats a row that stays.
"""

from __future__ import annotations

import re
from typing import Final

from psycopg import sql

from .._core.errors import InvalidConfigError

__all__ = ("DEFAULT_TABLE", "EXPECTED_COLUMNS", "SLIDE_PATTERN", "Statements", "check_table")

DEFAULT_TABLE: Final = "walletmesh_sessions"

# A plain identifier, at most 48 characters so that "<table>_expires_at" and
# "<table>_created_at" fit PostgreSQL's 63.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")

# A JSON number the column reads: at most 255 digits before and after the point and a
# three-digit exponent, so that the cast below never raises (anything else reads as NULL).
_NUMBER = r"^-?[0-9]{1,255}(?:\.[0-9]{1,255})?(?:[eE][+-]?[0-9]{1,3})?$"
# The same for a text of at most 255 characters, whose digit runs cannot be longer: PostgreSQL
# expands each bounded repetition, which made every row cost ~100 µs of the server's time.
_SHORT_NUMBER = r"^-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,3})?$"


def _number(path: str, absent: str) -> str:
    """SQL for the JSON number at `path` of the record in `value`, floored as the codec reads
    it and clamped to bigint; `absent` (a number: GREATEST and LEAST skip NULLs) for anything
    else. It never raises: ``\\u0000`` is read as ``\\u0001``, as json refuses a NUL.
    """
    json_value = f"(replace(value, E'\\\\u0000', E'\\\\u0001')::json {path})::text"
    number = (
        f"CASE WHEN length({json_value}) <= 255 THEN substring({json_value} FROM '{_SHORT_NUMBER}')"
        f" ELSE substring({json_value} FROM '{_NUMBER}') END"
    )
    numeric = f"COALESCE(({number})::numeric, {absent})"
    # Rounded to 300 places first: a float8 cast of a smaller magnitude (1e-400) raises.
    double = f"floor(round(LEAST(GREATEST({numeric}, -1e300), 1e300), 300)::float8)"
    return f"LEAST(GREATEST({double}, -9e18), 9e18)::bigint"


# The record's expiresAt as the codec reads it: 0, null or absent mean none (NULL).
EXPIRES_AT: Final = "NULLIF(" + _number("-> 'expiresAt'", "0") + ", 0)"
# The record's data.createdAt (9e18 when it has none): only finds candidates; the record decides.
CREATED_AT: Final = _number("-> 'data' -> 'createdAt'", "9e18")

# A record whose last top-level member is expiresAt, a number (as every record the TypeScript
# store or this library writes ends): group 1 is the text before the number, group 2 after.
# An escaped quote is preceded by a backslash, never by '{' or ',': the key is a real key.
_WS = "[ \t\n\r]*"
SLIDE_PATTERN: Final = f'^(.*[{{,]{_WS}"expiresAt"{_WS}:{_WS})-?[0-9][0-9.eE+-]*({_WS}}}{_WS})$'

EXPECTED_COLUMNS: Final = {
    "id": ("bytea", False),
    "value": ("text", False),
    "expires_at": ("bigint", True),
}
"""Column name -> (type, generated): what a table must have to be used by a store."""


def check_table(table: object) -> tuple[str, ...]:
    """``table`` or ``schema.table``, each part a plain identifier; else `InvalidConfigError`."""
    if not isinstance(table, str):
        msg = f"table must be a str such as 'walletmesh_sessions', got {table!r}"
        raise InvalidConfigError(msg)
    parts = tuple(table.split("."))
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        msg = (
            "table must be a name of letters, digits and '_' (at most 48, not starting with a"
            f" digit), optionally qualified by a schema as 'schema.table', got {table!r}"
        )
        raise InvalidConfigError(msg)
    if len(parts) == 2 and parts[0].lower().startswith("pg_temp"):
        # Every connection has a temporary schema of its own: each pooled connection of the
        # store would see a different, private table.
        msg = f"table must not be in a temporary schema (one per connection), got {table!r}"
        raise InvalidConfigError(msg)
    return parts


class Statements:
    """Every statement on one table, composed once per store (identifiers quoted), as bytes."""

    def __init__(self, table: tuple[str, ...]) -> None:
        self.table_name = ".".join(table)
        t = sql.Identifier(*table)

        def on_table(text: str, **parts: sql.Composable) -> bytes:
            # Rendered once: plain identifiers need no connection to be quoted.
            return sql.SQL(text).format(t=t, **parts).as_bytes(None)

        self.schema_lock_key = f"walletmesh_sessions:{self.table_name}"
        self.create_table = on_table(
            "CREATE TABLE IF NOT EXISTS {t} (id bytea PRIMARY KEY, value text NOT NULL,"
            " expires_at bigint GENERATED ALWAYS AS ({expires_at}) STORED)",
            expires_at=sql.SQL(EXPIRES_AT),
        )
        self.create_index = on_table(
            "CREATE INDEX IF NOT EXISTS {index} ON {t} (expires_at) WHERE expires_at IS NOT NULL",
            index=sql.Identifier(f"{table[-1]}_expires_at"),
        )
        # An expression index: a table made before it existed gains it without a column change
        # (the expression is immutable, as the generated column's is).
        self.create_created_index = on_table(
            "CREATE INDEX IF NOT EXISTS {index} ON {t} (({created_at}))",
            index=sql.Identifier(f"{table[-1]}_created_at"),
            created_at=sql.SQL(CREATED_AT),
        )
        self.columns = on_table(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated <> ''"
            " FROM pg_attribute a WHERE a.attrelid = to_regclass(%s)"
            " AND a.attnum > 0 AND NOT a.attisdropped"
        )
        self.get = on_table("SELECT value FROM {t} WHERE id = %s")
        self.get_for_update = on_table("SELECT value FROM {t} WHERE id = %s FOR UPDATE")
        self.get_two_for_update = on_table(
            "SELECT id, value FROM {t} WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
        )
        self.upsert = on_table(
            "INSERT INTO {t} (id, value) VALUES (%s, %s)"
            " ON CONFLICT (id) DO UPDATE SET value = excluded.value"
        )
        self.insert_if_absent = on_table(
            "INSERT INTO {t} (id, value) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING"
        )
        # Replace a record only if it still holds exactly the text read (compare-and-set).
        self.replace_unchanged = on_table("UPDATE {t} SET value = %s WHERE id = %s AND value = %s")
        # One statement reads a record and, if it is live, rewrites its expiresAt digits
        # (compare-and-set on the text read); it answers the text read and the text written.
        # The caller checks the rewrite against record_with_expiry and mends any difference.
        self.read_and_slide = on_table(
            "WITH old AS (SELECT value, expires_at FROM {t} WHERE id = %(id)s),"
            " slid AS (UPDATE {t} SET value = regexp_replace(old.value, %(pattern)s,"
            " %(replacement)s) FROM old WHERE {t}.id = %(id)s AND {t}.value = old.value"
            " AND (old.expires_at IS NULL OR old.expires_at >= %(now)s)"
            " AND old.expires_at IS DISTINCT FROM %(new)s AND old.value ~ %(pattern)s"
            " RETURNING {t}.value)"
            " SELECT old.value, (SELECT value FROM slid) FROM old"
        )
        self.delete_unchanged = on_table("DELETE FROM {t} WHERE id = %s AND value = %s")
        self.delete = on_table("DELETE FROM {t} WHERE id = %s")
        # The next rows after the id %s (or the first ones), removed: the page's last id, how
        # many rows the page held and how many were removed. The walk goes on from the page,
        # not from what was removed: a row another transaction deleted meanwhile is one less
        # removed, not the end of the table.
        removed = (
            " gone AS (DELETE FROM {t} WHERE id IN (SELECT id FROM page) RETURNING id)"
            " SELECT (SELECT id FROM page ORDER BY id DESC LIMIT 1),"
            " (SELECT count(*) FROM page), (SELECT count(*) FROM gone)"
        )
        self.clear_page = on_table(
            "WITH page AS (SELECT id FROM {t} WHERE id > %s ORDER BY id LIMIT %s)," + removed
        )
        self.clear_first_page = on_table(
            "WITH page AS (SELECT id FROM {t} ORDER BY id LIMIT %s)," + removed
        )
        self.page = on_table("SELECT id, value FROM {t} WHERE id > %s ORDER BY id LIMIT %s")
        self.first_page = on_table("SELECT id, value FROM {t} ORDER BY id LIMIT %s")
        self.inspect_one = on_table("SELECT id, value FROM {t} WHERE id = %s")
        # Candidates only, a page after the key (sort key, id) in that order: each is decided
        # from its record, then removed compare-and-set.
        self.expired_page = on_table(
            "SELECT id, value, expires_at FROM {t} WHERE expires_at < %(before)s"
            " AND expires_at >= %(key)s AND (expires_at, id) > (%(key)s, %(id)s)"
            " ORDER BY expires_at, id LIMIT %(n)s"
        )
        self.created_page = on_table(
            "SELECT id, value, {created_at} FROM {t} WHERE {created_at} < %(before)s"
            " AND {created_at} >= %(key)s AND ({created_at}, id) > (%(key)s, %(id)s)"
            " ORDER BY {created_at}, id LIMIT %(n)s",
            created_at=sql.SQL(CREATED_AT),
        )
        # Arrays are sent in binary: the text form escapes every quote of every record, a
        # regular expression per element, hundreds of times slower.
        self.delete_many_unchanged = on_table(
            "DELETE FROM {t} USING unnest(%b::bytea[], %b::text[]) AS v(id, value)"
            " WHERE {t}.id = v.id AND {t}.value = v.value"
        )
        self.slide_many_unchanged = on_table(
            "UPDATE {t} SET value = v.new FROM unnest(%b::bytea[], %b::text[], %b::text[])"
            " AS v(id, old, new) WHERE {t}.id = v.id AND {t}.value = v.old"
        )
