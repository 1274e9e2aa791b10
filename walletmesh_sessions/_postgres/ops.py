"""The single-session operations of `PostgresSessionStore` (see `steps`), and its schema check:
every decision is the core's `expiry` rules', every record text the codec's.
"""

from __future__ import annotations

from .._core import expiry
from .._core.codec import encode_record, record_with_expiry
from .._core.data import SessionData
from .._core.errors import CorruptRecordError, InvalidConfigError
from .sql import EXPECTED_COLUMNS, SLIDE_PATTERN
from .steps import BEGIN, Op, Spec, Statement, row_key

__all__ = ("delete", "ensure_schema", "read", "read_and_slide", "write")


def ensure_schema(spec: Spec, where: str | None = None, *, indexes: bool = False) -> Op[None]:
    """Create the table and its indexes if missing, or check that the table has our shape.

    Under a transaction-scoped advisory lock, so two processes starting at once create it
    once. With `where` (the store, as shown to users), a missing table is not created but
    refused, naming it there: tools that only look must not make an empty table of a typo.
    With `indexes` (`create_schema`), an existing table gains any index it lacks: building
    one reads every row, which a store's first call must not risk on a big table.
    """
    statements = spec.sql
    qualified = ".".join(f'"{part}"' for part in statements.table_name.split("."))
    if where is None:
        yield BEGIN
        yield Statement(
            b"SELECT pg_advisory_xact_lock(hashtext(%s))", (statements.schema_lock_key,), True
        )
    rows = yield Statement(statements.columns, (qualified,), True)
    if not rows and where is not None:
        msg = f"no session table {statements.table_name!r} in {where}"
        raise InvalidConfigError(msg)
    if not rows:
        yield Statement(statements.create_table)
        yield Statement(statements.create_index)
        yield Statement(statements.create_created_index)
        return
    found = {name: (kind, bool(generated)) for name, kind, generated in rows}
    if found != EXPECTED_COLUMNS:
        shown = ", ".join(f"{n} {k}{' generated' if g else ''}" for n, (k, g) in found.items())
        msg = (
            f"the table {statements.table_name!r} exists but is not a session table (it has"
            f" {shown}; expected id bytea, value text, expires_at bigint generated): choose"
            " another table with the 'table' option"
        )
        raise InvalidConfigError(msg)
    if indexes and where is None:
        yield Statement(statements.create_index)
        yield Statement(statements.create_created_index)


def write(spec: Spec, session_id: str, data: SessionData) -> Op[None]:
    now = expiry.now_ms(spec.clock)
    data = expiry.stamped(spec.config, data, now)
    value = encode_record(data, expiry.expiry_after_write(spec.config, now, data.created_at))
    yield Statement(spec.sql.upsert, (row_key(session_id), value))


def read(spec: Spec, session_id: str) -> Op[SessionData | None]:
    """The session, or `None`; an expired one is removed, a live one slid (compare-and-set)."""
    key = row_key(session_id)
    rows = yield Statement(spec.sql.get, (key,), True)
    if not rows:
        return None
    text = rows[0][0]
    data, stored = spec.decode(text, session_id)
    after = expiry.after_read(spec.config, expiry.now_ms(spec.clock), stored, data.created_at)
    if after is expiry.EXPIRED:
        yield Statement(spec.sql.delete_unchanged, (key, text))
        return None
    if after is not None and after != stored:
        # If the record changed since it was read, a concurrent set or delete wins.
        new = record_with_expiry(text, after)
        yield Statement(spec.sql.replace_unchanged, (new, key, text))
    return data


def read_and_slide(spec: Spec, session_id: str) -> Op[SessionData | None]:
    """`read` in one statement for a store that slides on read (no absolute timeout): the
    server rewrites a live record's expiresAt digits; whatever it wrote that differs from what
    `read` decides (another layout, an unreadable record) is set right, compare-and-set."""
    key = row_key(session_id)
    now = expiry.now_ms(spec.clock)
    new = expiry.after_read(spec.config, now, None)  # what a live record's expiry becomes
    assert isinstance(new, int)
    params = {
        "id": key,
        "pattern": SLIDE_PATTERN,
        "replacement": f"\\1{new}\\2",
        "now": now,
        "new": new,
    }
    rows = yield Statement(spec.sql.read_and_slide, params, True)
    if not rows:
        return None
    text, slid = rows[0]
    current = text if slid is None else slid
    try:
        data, stored = spec.decode(text, session_id)
    except CorruptRecordError:
        if slid is not None:
            yield Statement(spec.sql.replace_unchanged, (text, key, slid))
        raise
    after = expiry.after_read(spec.config, now, stored, data.created_at)
    if after is expiry.EXPIRED:
        yield Statement(spec.sql.delete_unchanged, (key, current))
        return None
    expected = text if after is None or after == stored else record_with_expiry(text, after)
    if current != expected:
        yield Statement(spec.sql.replace_unchanged, (expected, key, current))
    return data


def delete(spec: Spec, session_id: str) -> Op[None]:
    yield Statement(spec.sql.delete, (row_key(session_id),))
