"""The steps on a Redis Cluster, sans-IO: which commands go to which node.

One-key steps and `Batch` use one server's exchanges unchanged: their commands name their key,
and the cluster runner routes each by slot (following MOVED and ASK). What touches many keys
is split here: `ReadMany` and `Delete` become one script per primary (keys in its slots, read
or deleted in one round trip), with routed commands for any key whose slot is moving. `Move`
is one script when both keys share a slot, else two compare steps in the safe order. `Scan`
walks the slots in order, one script per page reading a node's own ownership and its keys in
one atomic step, so no session is missed or repeated while slots migrate.

Besides Redis commands, an exchange here may yield: ``(At(address), *command)`` for one node,
``(LOCATE, *slots)`` (answered locally: each slot's primary address, or None) and
``(REFRESH, pause)`` (wait `pause` seconds, then read the cluster's topology again).
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

from redis.crc import key_slot
from redis.exceptions import ClusterError, NoScriptError

from .._core.codec import same_but_expiry
from . import exchanges, steps
from .scripts import DELETE_ON_NODE, READ_ON_NODE, SCAN_ON_NODE, Script

__all__ = (
    "CLUSTER_EXCHANGES",
    "LOCATE",
    "REFRESH",
    "SLOTS",
    "At",
    "slot_of",
)

SLOTS = 16384
# A page whose slots keep moving is tried again this often (each after a topology refresh)
# before the scan gives up; the call's deadline bounds it too.
SCAN_ATTEMPTS = 40
# Keys a scan page collects before it stops at the end of a slot.
PAGE_KEYS = 500
# Below this many keys, a ReadMany or Delete is routed key by key (one pipeline).
FEW_KEYS = 4


class At(NamedTuple):
    """The head of a command for one node, by its ``host:port`` address."""

    address: str


class Local(enum.Enum):
    """Heads of commands the runner answers from (or for) its view of the topology."""

    LOCATE = "locate"
    REFRESH = "refresh"


LOCATE = Local.LOCATE
REFRESH = Local.REFRESH


def slot_of(key: steps.Key) -> int:
    """The cluster hash slot of `key` (its ``{...}`` hash tag, if any, decides)."""
    return int(key_slot(key if isinstance(key, bytes) else key.encode()))


def _on_nodes(script: Script, calls: list[tuple[str, tuple[Any, ...]]]) -> exchanges.Exchange:
    """Run `script` (no declared keys) on each ``(address, args)``; replies, errors as values."""
    commands = [(At(address), "EVALSHA", script.sha, 0, *args) for address, args in calls]
    replies = list((yield commands))
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        # A node that restarted or was promoted has no scripts yet: load and run again.
        again = yield [
            command
            for i in missing
            for command in ((At(calls[i][0]), "SCRIPT", "LOAD", script.source), commands[i])
        ]
        for n, i in enumerate(missing):
            loaded, reply = again[2 * n], again[2 * n + 1]
            replies[i] = loaded if isinstance(loaded, Exception) else reply
    return replies


def _by_node(keys: tuple[steps.Key, ...]) -> exchanges.Exchange:
    """Group the indexes of `keys` by the primary the runner believes serves each slot."""
    slots = [slot_of(key) for key in keys]
    unique = sorted(set(slots))
    (where,) = yield [(LOCATE, *unique)]
    address = dict(zip(unique, where, strict=True))
    groups: dict[str | None, list[int]] = {}
    for i, slot in enumerate(slots):
        groups.setdefault(address[slot], []).append(i)
    return groups


def _read_routed(
    keys: tuple[steps.Key, ...], indexes: list[int], values: list[Any]
) -> exchanges.Exchange:
    """GET each key through the cluster's routing; a key of another type becomes a NonString."""
    replies = yield [("GET", keys[i]) for i in indexes]
    wrong: list[int] = []
    for i, reply in zip(indexes, replies, strict=True):
        if exchanges.is_wrong_type(reply):
            wrong.append(i)
        else:
            values[i] = exchanges.checked(reply)
    if wrong:
        kinds = yield [("TYPE", keys[i]) for i in wrong]
        for i, kind in zip(wrong, kinds, strict=True):
            values[i] = steps.NonString(exchanges.as_text(exchanges.checked(kind)))


def _read_many(step: steps.ReadMany) -> exchanges.Exchange:
    keys = step.keys
    values: list[Any] = [None] * len(keys)
    if len(keys) < FEW_KEYS:
        yield from _read_routed(keys, list(range(len(keys))), values)
        return values
    groups: dict[str | None, list[int]] = yield from _by_node(keys)
    routed = groups.pop(None, [])
    for last in (False, True):
        # A key whose slot moved is asked again where its node says it went; a second miss
        # (a slot still moving) goes through the client, which follows MOVED and ASK.
        moved: dict[str | None, list[int]] = {}
        calls = [(a, tuple(keys[i] for i in group)) for a, group in groups.items() if a]
        replies = yield from _on_nodes(READ_ON_NODE, calls)
        for (address, _), group, reply in zip(calls, groups.values(), replies, strict=True):
            found, others = exchanges.checked(reply)
            for i, value in zip(group, found, strict=True):
                values[i] = value
            for n, kind, info in others:
                i = group[int(n) - 1]
                if kind == 1:
                    values[i] = steps.NonString(exchanges.as_text(info))
                else:
                    hint = exchanges.as_text(info)
                    goes = routed if last or hint in ("", address) else moved.setdefault(hint, [])
                    goes.append(i)
        if not moved:
            break
        groups = moved
    if routed:
        yield from _read_routed(keys, sorted(routed), values)
    return values


def _delete(step: steps.Delete) -> exchanges.Exchange:
    keys = step.keys
    if len(keys) < FEW_KEYS:
        replies = yield [("DEL", key) for key in keys]
        return sum(int(exchanges.checked(reply)) for reply in replies)
    groups: dict[str | None, list[int]] = yield from _by_node(keys)
    routed = groups.pop(None, [])
    calls = [(a, tuple(keys[i] for i in group)) for a, group in groups.items() if a is not None]
    replies = yield from _on_nodes(DELETE_ON_NODE, calls)
    deleted = 0
    for group, reply in zip(groups.values(), replies, strict=True):
        count, elsewhere = exchanges.checked(reply)
        deleted += int(count)
        routed.extend(group[int(n) - 1] for n in elsewhere)
    if routed:
        again = yield [("DEL", keys[i]) for i in routed]
        deleted += sum(int(exchanges.checked(reply)) for reply in again)
    return deleted


def _move(step: steps.Move) -> exchanges.Exchange:
    """One script when both keys share a slot; else the two-step order of `Move`'s docstring.

    Between the two steps a sliding read may rewrite either key's ``expiresAt``: that changes
    no data, so it neither fails the move nor keeps the copy from being taken back.
    """
    if slot_of(step.old_key) == slot_of(step.new_key):
        return (yield from exchanges.move(step))
    stored = yield from exchanges.compare_and_set(
        steps.CompareAndSet(step.new_key, step.new_old, step.text, step.ttl_ms)
    )
    if not stored:
        return False
    if (yield from _delete_unless_changed(step.old_key, step.old)):
        return True
    # The old key changed meanwhile (another rotate, a write, a delete): take back the copy,
    # unless something other than a slide was written over it since.
    yield from _delete_unless_changed(step.new_key, step.text)
    return False


# How many slides in a row one compare-and-delete follows before it gives up (the caller
# then reads again and decides again, within its deadline).
_SLIDES_FOLLOWED = 8


def _delete_unless_changed(key: steps.Key, written: steps.Key) -> exchanges.Exchange:
    """Compare-and-delete `key` if it holds `written`, or `written` slid (only its
    ``expiresAt`` moved by a read since); True if deleted."""
    expected = written
    for _ in range(_SLIDES_FOLLOWED):
        if (yield from exchanges.compare_and_delete(steps.CompareAndDelete(key, expected))):
            return True
        (current,) = yield [("GET", key)]
        if isinstance(current, Exception) or not same_but_expiry(current, written):
            return False
        expected = current
    return False


def _prefix(pattern: bytes) -> bytes:
    """The prefix a scan's glob names (`spec.glob_escape` of it, then ``*``)."""
    body, out, i = pattern[:-1], bytearray(), 0
    while i < len(body):
        if body[i] == 0x5C:  # a backslash escapes the next byte
            i += 1
        out.append(body[i])
        i += 1
    return bytes(out)


class _Part(NamedTuple):
    """A node's answer to `SCAN_ON_NODE`."""

    state: str
    peer: str
    after: int
    keys: list[steps.Key]


def _scan_node(address: str, step: steps.Scan, slot: int, budget: int) -> exchanges.Exchange:
    """The node's `_Part`, or None if it failed (down, refusing, no owner for a slot)."""
    args = (_prefix(step.pattern), slot, budget, step.pattern)
    (reply,) = yield from _on_nodes(SCAN_ON_NODE, [(address, args)])
    if isinstance(reply, Exception):
        return None
    state, peer, after, keys = reply
    return _Part(exchanges.as_text(state), exchanges.as_text(peer), int(after), list(keys))


def _moving(
    source: str, target: str, step: steps.Scan, slot: int, keys: list[steps.Key]
) -> exchanges.Exchange:
    """A migrating slot: `keys` were read on the source; now its target, after it.

    MIGRATE puts a key on the target before it leaves the source, so every key present
    throughout is in one of the two reads. The slot counts as read only if the target was
    still importing it from this source, or had become its owner; else None.
    """
    part: _Part | None = yield from _scan_node(target, step, slot, 0)
    if part is None:
        return None
    done = part.state == "stable" or (part.state == "importing" and part.peer == source)
    if not done:
        return None
    seen: dict[bytes, steps.Key] = {}
    for key in (*keys, *part.keys):
        seen.setdefault(key if isinstance(key, bytes) else key.encode(), key)
    return list(seen.values())


def _scan(step: steps.Scan) -> exchanges.Exchange:
    """One page, from the slot in the cursor: a run of one node's settled slots, or one slot
    that is migrating (read on its source, then its target). The next slot is the cursor."""
    slot = 0 if step.cursor is None else int(str(step.cursor))
    hint: str | None = None
    for attempt in range(SCAN_ATTEMPTS):
        owner = hint
        if owner is None:
            if attempt:
                yield [(REFRESH, min(0.01 * attempt, 0.2))]
            (where,) = yield [(LOCATE, slot)]
            owner = where[0]
            if owner is None:
                continue
        hint = None
        part: _Part | None = yield from _scan_node(owner, step, slot, PAGE_KEYS)
        if part is None:
            continue
        if part.state == "stable":
            return steps.ScanPage(part.keys, part.after if part.after < SLOTS else None)
        if not part.peer:
            continue
        if part.state == "none":
            hint = part.peer  # the owner, as the node asked sees it: ask it next
            continue
        source, target = (owner, part.peer) if part.state == "migrating" else (part.peer, owner)
        if part.state == "importing":
            # Asked the target first: read the source now, and the target again after it.
            part = yield from _scan_node(source, step, slot, 0)
            if part is None or part.state != "migrating" or part.peer != target:
                continue
        keys = yield from _moving(source, target, step, slot, part.keys)
        if keys is not None:
            return steps.ScanPage(keys, slot + 1 if slot + 1 < SLOTS else None)
    msg = "the cluster's slots kept moving: a scan page could not be read"
    raise ClusterError(msg)


CLUSTER_EXCHANGES: exchanges.Exchanges = {
    **exchanges.EXCHANGES,
    steps.ReadMany: _read_many,
    steps.Delete: _delete,
    steps.Move: _move,
    steps.Scan: _scan,
}
"""Each step's exchange on a cluster: one server's, except for the steps on many keys."""
