"""The `_redis_ops` steps on a Redis Cluster, sans-IO: which commands go to which node.

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
from redis.exceptions import ClusterError, NoScriptError, ResponseError

from .._core.codec import same_but_expiry
from .io import (
    _EXCHANGES as _ONE_SERVER,
)
from .io import (
    Exchange,
    Script,
    _as_text,
    _checked,
    _code,
    _compare_and_delete,
    _compare_and_set,
    _script,
)
from .io import _move as _move_script
from .ops import (
    CompareAndDelete,
    CompareAndSet,
    Delete,
    Key,
    Move,
    NonString,
    ReadMany,
    Scan,
    ScanPage,
)

__all__ = (
    "CLUSTER_EXCHANGES",
    "DELETE_ON_NODE",
    "LOCATE",
    "READ_ON_NODE",
    "REFRESH",
    "SCAN_ATTEMPTS",
    "SCAN_ON_NODE",
    "SLOTS",
    "At",
    "Local",
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


def slot_of(key: Key) -> int:
    """The cluster hash slot of `key` (its ``{...}`` hash tag, if any, decides)."""
    return int(key_slot(key if isinstance(key, bytes) else key.encode()))


# Keys are ARGV, not KEYS: a script may then read keys of several slots of this node (Redis 7
# refuses declared keys of several slots). A key this node does not serve right now (its slot
# moved or is moving) is reported, not an error, so the caller asks the cluster for it.
READ_ON_NODE = _script(
    """\
#!lua flags=no-writes,allow-cross-slot-keys
local owners = nil
local function owner(k)
  if not owners then
    owners = {}
    for l in string.gmatch(redis.call('CLUSTER', 'NODES'), '[^\\n]+') do
      local address, n = string.match(l, '^%S+ ([^@,%s]+)') or '', 0
      for f in string.gmatch(l, '%S+') do
        n = n + 1
        local a, b = string.match(f, '^(%d+)%-(%d+)$')
        if not a and string.match(f, '^%d+$') then a, b = f, f end
        if n > 8 and a then owners[#owners + 1] = {tonumber(a), tonumber(b), address} end
      end
    end
  end
  local s = redis.call('CLUSTER', 'KEYSLOT', k)
  for _, r in ipairs(owners) do
    if r[1] <= s and s <= r[2] then return r[3] end
  end
  return ''
end
local values, others = {}, {}
for i, k in ipairs(ARGV) do
  local v = redis.pcall('GET', k)
  values[i] = false
  if type(v) == 'table' and v.err then
    if string.sub(v.err, 1, 9) == 'WRONGTYPE' then
      others[#others + 1] = {i, 1, redis.call('TYPE', k).ok}
    else
      others[#others + 1] = {i, 2, owner(k)}
    end
  elseif v then
    values[i] = v
  end
end
return {values, others}
"""
)
"""The ARGV keys on this node: {values (nil: missing or see the others), others}, the others
being {index, 1, type} (not a string) or {index, 2, owner's address as this node sees it}
(not served here: moved or moving). Flat values: the reply of a page parses fast."""

DELETE_ON_NODE = _script(
    """\
#!lua flags=allow-cross-slot-keys
local deleted, elsewhere = 0, {}
for i, k in ipairs(ARGV) do
  local n = redis.pcall('DEL', k)
  if type(n) == 'table' then elsewhere[#elsewhere + 1] = i else deleted = deleted + n end
end
return {deleted, elsewhere}
"""
)
"""Delete each ARGV key on this node: {how many existed, indexes of keys not served here}."""

# One page of a scan on one node, atomic with the node's own view of its slots: keys cannot
# migrate while a script runs, so a slot this node owns and is not migrating is read whole.
SCAN_ON_NODE = _script(
    """\
#!lua flags=no-writes
local prefix, slot, budget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local nodes = redis.call('CLUSTER', 'NODES')
local line = ''
for l in string.gmatch(nodes, '[^\\n]+') do
  if string.find(l, 'myself', 1, true) then line = l end
end
local fields = {}
for f in string.gmatch(line, '%S+') do fields[#fields + 1] = f end
local primary = fields[3] and string.find(fields[3], 'master', 1, true)
local runs, marks = {}, {}
for n = 9, #fields do
  local f = fields[n]
  local s, dir, peer = string.match(f, '^%[(%d+)%-([<>])%-(%x+)%]$')
  if s then
    marks[tonumber(s)] = {dir, peer}
  elseif primary then
    local a, b = string.match(f, '^(%d+)%-(%d+)$')
    if a then
      runs[#runs + 1] = {tonumber(a), tonumber(b)}
    elseif string.match(f, '^%d+$') then
      runs[#runs + 1] = {tonumber(f), tonumber(f)}
    end
  end
end
local function run_end(s)
  for _, r in ipairs(runs) do
    if r[1] <= s and s <= r[2] then return r[2] end
  end
  return nil
end
local function address(id)
  for l in string.gmatch(nodes, '[^\\n]+') do
    if string.sub(l, 1, #id) == id then return string.match(l, '^%S+ ([^@,%s]+)') or '' end
  end
  return ''
end
local out = {}
local function collect(s)
  local n = redis.call('CLUSTER', 'COUNTKEYSINSLOT', s)
  if n > 0 then
    for _, k in ipairs(redis.call('CLUSTER', 'GETKEYSINSLOT', s, n)) do
      if string.sub(k, 1, #prefix) == prefix then out[#out + 1] = k end
    end
  end
end
local stop = run_end(slot)
local mark = marks[slot]
if mark then
  local state = 'importing'
  if mark[1] == '>' then state = stop and 'migrating' or 'none' end
  collect(slot)
  return {state, address(mark[2]), slot + 1, out}
end
if not stop then
  -- Not this node's slot: name the node that owns it, as this node sees the cluster.
  for l in string.gmatch(nodes, '[^\\n]+') do
    local n = 0
    for f in string.gmatch(l, '%S+') do
      n = n + 1
      if n > 8 then
        local a, b = string.match(f, '^(%d+)%-(%d+)$')
        if not a and string.match(f, '^%d+$') then a, b = f, f end
        if a and tonumber(a) <= slot and slot <= tonumber(b) then
          return {'none', string.match(l, '^%S+ ([^@,%s]+)') or '', slot, out}
        end
      end
    end
  end
  return {'none', '', slot, out}
end
for m in pairs(marks) do
  if m > slot and m <= stop then stop = m - 1 end
end
if budget > 0 and redis.call('DBSIZE') <= budget then
  -- A small node: the whole settled run in one pass over its few keys.
  for _, k in ipairs(redis.call('KEYS', ARGV[4])) do
    local ks = redis.call('CLUSTER', 'KEYSLOT', k)
    if ks >= slot and ks <= stop and string.sub(k, 1, #prefix) == prefix then
      out[#out + 1] = k
    end
  end
  return {'stable', '', stop + 1, out}
end
local s = slot
while s <= stop do
  collect(s)
  s = s + 1
  if #out >= budget then break end
end
return {'stable', '', s, out}
"""
)
"""Keys with prefix ARGV[1] (glob ARGV[4]) from slot ARGV[2] on, while this node owns the slots
and none is moving, until at least ARGV[3] keys (0: one slot): {state, peer address, next
slot, keys}. A node holding at most ARGV[3] keys answers with one KEYS instead of slot by slot.
State ``stable`` (read whole), ``migrating`` (to the peer; this slot's keys still here),
``importing`` (from the peer; the keys that arrived), ``none`` (not this node's slot; the peer
is its owner as this node sees it, or '')."""


def _on_nodes(script: Script, calls: list[tuple[str, tuple[Any, ...]]]) -> Exchange:
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


def _by_node(keys: tuple[Key, ...]) -> Exchange:
    """Group the indexes of `keys` by the primary the runner believes serves each slot."""
    slots = [slot_of(key) for key in keys]
    unique = sorted(set(slots))
    (where,) = yield [(LOCATE, *unique)]
    address = dict(zip(unique, where, strict=True))
    groups: dict[str | None, list[int]] = {}
    for i, slot in enumerate(slots):
        groups.setdefault(address[slot], []).append(i)
    return groups


def _read_routed(keys: tuple[Key, ...], indexes: list[int], values: list[Any]) -> Exchange:
    """GET each key through the cluster's routing; a key of another type becomes a NonString."""
    replies = yield [("GET", keys[i]) for i in indexes]
    wrong: list[int] = []
    for i, reply in zip(indexes, replies, strict=True):
        if isinstance(reply, ResponseError) and _code(reply) == "WRONGTYPE":
            wrong.append(i)
        else:
            values[i] = _checked(reply)
    if wrong:
        kinds = yield [("TYPE", keys[i]) for i in wrong]
        for i, kind in zip(wrong, kinds, strict=True):
            values[i] = NonString(_as_text(_checked(kind)))


def _read_many(step: ReadMany) -> Exchange:
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
            found, others = _checked(reply)
            for i, value in zip(group, found, strict=True):
                values[i] = value
            for n, kind, info in others:
                i = group[int(n) - 1]
                if kind == 1:
                    values[i] = NonString(_as_text(info))
                else:
                    hint = _as_text(info)
                    goes = routed if last or hint in ("", address) else moved.setdefault(hint, [])
                    goes.append(i)
        if not moved:
            break
        groups = moved
    if routed:
        yield from _read_routed(keys, sorted(routed), values)
    return values


def _delete(step: Delete) -> Exchange:
    keys = step.keys
    if len(keys) < FEW_KEYS:
        replies = yield [("DEL", key) for key in keys]
        return sum(int(_checked(reply)) for reply in replies)
    groups: dict[str | None, list[int]] = yield from _by_node(keys)
    routed = groups.pop(None, [])
    calls = [(a, tuple(keys[i] for i in group)) for a, group in groups.items() if a is not None]
    replies = yield from _on_nodes(DELETE_ON_NODE, calls)
    deleted = 0
    for group, reply in zip(groups.values(), replies, strict=True):
        count, elsewhere = _checked(reply)
        deleted += int(count)
        routed.extend(group[int(n) - 1] for n in elsewhere)
    if routed:
        again = yield [("DEL", keys[i]) for i in routed]
        deleted += sum(int(_checked(reply)) for reply in again)
    return deleted


def _move(step: Move) -> Exchange:
    """One script when both keys share a slot; else the two-step order of `Move`'s docstring.

    Between the two steps a sliding read may rewrite either key's ``expiresAt``: that changes
    no data, so it neither fails the move nor keeps the copy from being taken back.
    """
    if slot_of(step.old_key) == slot_of(step.new_key):
        return (yield from _move_script(step))
    stored = yield from _compare_and_set(
        CompareAndSet(step.new_key, step.new_old, step.text, step.ttl_ms)
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


def _delete_unless_changed(key: Key, written: Key) -> Exchange:
    """Compare-and-delete `key` if it holds `written`, or `written` slid (only its
    ``expiresAt`` moved by a read since); True if deleted."""
    expected = written
    for _ in range(_SLIDES_FOLLOWED):
        if (yield from _compare_and_delete(CompareAndDelete(key, expected))):
            return True
        (current,) = yield [("GET", key)]
        if isinstance(current, Exception) or not same_but_expiry(current, written):
            return False
        expected = current
    return False


def _prefix(pattern: bytes) -> bytes:
    """The prefix a scan's glob names (`_redis_ops.glob_escape` of it, then ``*``)."""
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
    keys: list[Key]


def _part(reply: Any) -> _Part | None:
    """The answer, or None if the node failed (down, refusing, no owner for a slot)."""
    if isinstance(reply, Exception):
        return None
    state, peer, after, keys = reply
    return _Part(_as_text(state), _as_text(peer), int(after), list(keys))


def _scan_node(address: str, step: Scan, slot: int, budget: int) -> Exchange:
    args = (_prefix(step.pattern), slot, budget, step.pattern)
    (reply,) = yield from _on_nodes(SCAN_ON_NODE, [(address, args)])
    return _part(reply)


def _moving(source: str, target: str, step: Scan, slot: int, keys: list[Key]) -> Exchange:
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
    seen: dict[bytes, Key] = {}
    for key in (*keys, *part.keys):
        seen.setdefault(key if isinstance(key, bytes) else key.encode(), key)
    return list(seen.values())


def _scan(step: Scan) -> Exchange:
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
            return ScanPage(part.keys, part.after if part.after < SLOTS else None)
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
            return ScanPage(keys, slot + 1 if slot + 1 < SLOTS else None)
    msg = "the cluster's slots kept moving: a scan page could not be read"
    raise ClusterError(msg)


CLUSTER_EXCHANGES: dict[type, Any] = {
    **_ONE_SERVER,
    ReadMany: _read_many,
    Delete: _delete,
    Move: _move,
    Scan: _scan,
}
"""Each step's exchange on a cluster: one server's, except for the steps on many keys."""
