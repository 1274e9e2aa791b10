"""How records look: a table for people, JSON for machines, and the tally of `stats`."""

from __future__ import annotations

import json
import sys
import textwrap
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from ..._core.codec import session_to_json
from ..._core.data import SessionRecord

__all__ = ("JsonArray", "JsonLines", "Table", "Tally", "as_json", "print_json", "print_stats")

# Table rows read before the column widths are set: the rest are printed as they come.
TABLE_HEAD = 50


def state_of(record: SessionRecord, now: int) -> str:
    if record.data is None:
        return "unreadable"
    return "expired" if record.is_expired(now) else "live"


def when(ms: int | None) -> str | None:
    """`ms` as ISO 8601 UTC, or "far future"/"far past" beyond what a datetime holds."""
    if ms is None:
        return None
    try:
        moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    except (OverflowError, ValueError, OSError):
        return "far future" if ms > 0 else "far past"
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def as_json(record: SessionRecord, now: int) -> dict[str, Any]:
    return {
        "sessionId": record.session_id,
        "state": state_of(record, now),
        "expiresAt": record.expires_at,
        "expires": when(record.expires_at),
        "data": None if record.data is None else session_to_json(record.data),
        "error": record.error,
    }


def print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


class Table:
    """Records as aligned columns, printed as they come: the first rows set the widths."""

    HEADER = ("SESSION ID", "STATE", "EXPIRES (UTC)", "ORIGIN", "PERMISSIONS")

    def __init__(self, now: int) -> None:
        self._now = now
        self._head: list[tuple[str, ...]] | None = [self.HEADER]
        self._widths = [0, 0, 0, 0]

    def add(self, record: SessionRecord) -> None:
        row = self._row(record)
        if self._head is None:
            self._print(row)
            return
        self._head.append(row)
        if len(self._head) > TABLE_HEAD:
            self.flush()

    def flush(self) -> None:
        """Print the rows held back to set the widths; later rows print as they come."""
        if self._head is None:
            return
        head, self._head = self._head, None
        self._widths = [max(len(row[i]) for row in head) for i in range(4)]
        for row in head:
            self._print(row)

    def _print(self, row: tuple[str, ...]) -> None:
        # A later cell wider than the first rows' widens its column from there on.
        self._widths = [max(w, len(cell)) for w, cell in zip(self._widths, row, strict=False)]
        cells = zip(row[:4], self._widths, strict=True)
        print("  ".join(cell.ljust(width) for cell, width in cells) + "  " + row[4])

    def _row(self, r: SessionRecord) -> tuple[str, ...]:
        sid = shown(r.session_id)
        if r.data is None:
            return (sid, "unreadable", "-", "-", shown(r.error or ""))
        permissions = " ".join(f"{chain}({len(m)})" for chain, m in r.data.permissions.items())
        expires = when(r.expires_at) or "never"
        return (
            sid,
            state_of(r, self._now),
            expires,
            shown(r.data.origin),
            shown(permissions or "-"),
        )


def shown(text: str) -> str:
    """`text` for a terminal: control characters (from records others wrote) escaped, so a
    record can never retitle, clear or answer back on the operator's terminal."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


class JsonArray:
    """Records as one JSON array, written an object at a time (as `json.dump` would, indent 2)."""

    def __init__(self, now: int) -> None:
        self._now = now
        self._started = False

    def add(self, record: SessionRecord) -> None:
        text = json.dumps(as_json(record, self._now), indent=2, ensure_ascii=False)
        sys.stdout.write(("[\n" if not self._started else ",\n") + textwrap.indent(text, "  "))
        self._started = True

    def flush(self) -> None:
        sys.stdout.write("\n]\n" if self._started else "[]\n")


class JsonLines:
    """Records as JSON lines: one object per line, the objects of `--json`."""

    def __init__(self, now: int) -> None:
        self._now = now

    def add(self, record: SessionRecord) -> None:
        print(json.dumps(as_json(record, self._now), ensure_ascii=False))

    def flush(self) -> None:
        pass


class Tally:
    """What `stats` reports, added up one record at a time: memory holds no record."""

    def __init__(self, now: int) -> None:
        self.now = now
        self.records = self.live = self.expired = self.unreadable = self.never = 0
        self.soonest: int | None = None
        self.latest: int | None = None
        self.origins: Counter[str] = Counter()

    def add(self, record: SessionRecord) -> None:
        self.records += 1
        if record.data is None:
            self.unreadable += 1
        elif record.is_expired(self.now):
            self.expired += 1
        else:
            self.live += 1
            self.origins[record.data.origin] += 1
            expires = record.expires_at
            if expires is None:
                self.never += 1
            else:
                self.soonest = expires if self.soonest is None else min(self.soonest, expires)
                self.latest = expires if self.latest is None else max(self.latest, expires)

    def as_json(self, url: str) -> dict[str, Any]:
        return {
            "store": url,
            "sessions": self.live,
            "expired": self.expired,
            "unreadable": self.unreadable,
            "neverExpire": self.never,
            "soonestExpiry": when(self.soonest),
            "latestExpiry": when(self.latest),
            "origins": dict(self.origins.most_common()),
        }


def print_stats(stats: dict[str, Any]) -> None:
    labels = {
        "neverExpire": "never expire",
        "soonestExpiry": "soonest expiry",
        "latestExpiry": "latest expiry",
    }
    for key in ("store", "sessions", "expired", "unreadable", "neverExpire"):
        print(f"{labels.get(key, key) + ':':16}{stats[key]}")
    for key in ("soonestExpiry", "latestExpiry"):
        print(f"{labels[key] + ':':16}{stats[key] or '-'}")
    origins: dict[str, int] = stats["origins"]
    print("origins:" + ("" if origins else "         -"))
    for origin, count in origins.items():
        print(f"  {count:6}  {shown(origin)}")
