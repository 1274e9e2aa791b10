"""The Lua scripts a Redis server runs for the store, each with its SHA1 for EVALSHA.

Every script but the cluster node's own touches only the keys it declares (one, or two for
`MOVE`), so it is atomic on one server and cluster-safe where its keys share a slot. The
``*_ON_NODE`` scripts read a cluster node's own view of its slots, so a key or slot the node
does not serve (moved, or moving) is reported rather than an error, and the caller asks the
node that serves it.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

__all__ = (
    "COMPARE_AND_DELETE",
    "COMPARE_AND_SET",
    "DELETE_ON_NODE",
    "LOOK_BEFORE_SLIDE",
    "MOVE",
    "READ_AND_SLIDE",
    "READ_ON_NODE",
    "SCAN_ON_NODE",
    "Script",
)


class Script(NamedTuple):
    """A Lua script, run by EVALSHA and loaded again when Redis answers NOSCRIPT."""

    source: str
    sha: str


def script(source: str) -> Script:
    """`source` with its SHA1, the name Redis knows it by once loaded."""
    return Script(source, hashlib.sha1(source.encode()).hexdigest())


# pcall makes a key of another type simply "not equal" instead of an error.
COMPARE_AND_SET = script(
    """\
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  if ARGV[3] then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  else
    redis.call('SET', KEYS[1], ARGV[2])
  end
  return 1
end
return 0
"""
)
"""KEYS[1] holds exactly ARGV[1]? then write ARGV[2], with a TTL of ARGV[3] ms if given."""

COMPARE_AND_DELETE = script(
    """\
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)
"""KEYS[1] holds exactly ARGV[1]? then delete it. 1 if deleted."""

# On Redis Cluster only when both keys hash to one slot (see `steps.Move`).
MOVE = script(
    """\
local held = redis.pcall('GET', KEYS[2])
if #ARGV >= 4 then
  if held ~= ARGV[4] then return 0 end
elseif held ~= false then
  return 0
end
if redis.pcall('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[2], ARGV[2])
end
return 1
"""
)
"""KEYS[1] holds exactly ARGV[1], and KEYS[2] exactly ARGV[4] (no ARGV[4]: nothing)? then
delete KEYS[1] and write ARGV[2] under KEYS[2], with a TTL of ARGV[3] ms unless it is ''."""

# It reads only the top-level "expiresAt" and "data"."createdAt" (integers of at most 15
# digits, or null) and rewrites only the bytes of the expiresAt value: whether the rest of the
# record is readable is for the caller to judge, as is any shape it does not read with
# certainty (an escaped or repeated name, no expiresAt, a fraction).
#
# `quick` reads the shape the stores write, `{"data":{...},"expiresAt":N}` with no backslash
# (every quote a string's edge, each name counted exactly), in about half the time `walked`
# takes; anything else, and any text cjson reads more leniently than `walked` (a NUL byte,
# `nan(...)`, a repeated createdAt), goes to `walked`, a character class at a time.
READ_AND_SLIDE = script(
    """\
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local function once(name)
  local i = string.find(raw, name, 1, true)
  return i and not string.find(raw, name, i + 1, true)
end
local function quick()
  if string.sub(raw, 1, 9) ~= '{"data":{' or string.find(raw, '\\\\', 1, true) then return nil end
  local s, _, num = string.find(raw, ',"expiresAt":(%-?%d+)}[ \\t\\n\\r]*$')
  if not s or #string.match(num, '%d+') > 15 then return nil end
  if not once('"data"') or not once('"expiresAt"') then return nil end
  if string.find(raw, '\\0', 1, true) then return nil end
  if string.find(raw, '(', 1, true) and string.find(raw, '[nN][aA][nN]%(') then return nil end
  local ok, top = pcall(cjson.decode, raw)
  if not ok then return nil end
  local created = top.data.createdAt
  if created ~= nil then
    if not once('"createdAt"') then return nil end
    if created == cjson.null then
      created = nil
    else
      local digits = string.match(raw, '"createdAt":(%-?%d+)[,}]')
      if not digits or #string.match(digits, '%d+') > 15 then return nil end
      created = tonumber(digits)
    end
  end
  return {s + 13, s + 13 + #num}, tonumber(num), created
end
local function space(i)
  local _, e = string.find(raw, '^[ \\t\\n\\r]*', i)
  return e + 1
end
local function str(i)
  local j, esc = i + 1, false
  while true do
    local k = string.find(raw, '["\\\\]', j)
    if not k then return nil end
    if string.byte(raw, k) == 34 then return k + 1, esc end
    esc, j = true, k + 2
  end
end
local function value(i)
  local c = string.sub(raw, i, i)
  if c == '"' then return (str(i)) end
  if c == '{' or c == '[' then
    local depth, j = 0, i
    while true do
      local k = string.find(raw, '[%[%]{}"]', j)
      if not k then return nil end
      local d = string.sub(raw, k, k)
      if d == '"' then
        j = str(k)
        if not j then return nil end
      else
        depth = (d == '{' or d == '[') and depth + 1 or depth - 1
        j = k + 1
        if depth == 0 then return j end
      end
    end
  end
  local _, e = string.find(raw, '^[%w%.%+%-]+', i)
  return e and e + 1
end
local function members(i, wanted)
  local found = {}
  i = space(i + 1)
  if string.sub(raw, i, i) == '}' then return i + 1, found end
  while string.sub(raw, i, i) == '"' do
    local j, esc = str(i)
    if not j or esc then return nil end
    local name = string.sub(raw, i + 1, j - 2)
    j = space(j)
    if string.sub(raw, j, j) ~= ':' then return nil end
    local s = space(j + 1)
    local e = value(s)
    if not e then return nil end
    if wanted[name] then
      if found[name] then return nil end
      found[name] = {s, e}
    end
    i = space(e)
    local c = string.sub(raw, i, i)
    if c == '}' then return i + 1, found end
    if c ~= ',' then return nil end
    i = space(i + 1)
  end
  return nil
end
local function ms(span)
  local t = string.sub(raw, span[1], span[2] - 1)
  if t == 'null' then return nil end
  local digits = string.match(t, '^%-?(%d+)$')
  if not digits or #digits > 15 then return false end
  return tonumber(t)
end
local function walked()
  local start = space(1)
  if string.sub(raw, start, start) ~= '{' then return nil end
  local stop, top = members(start, {expiresAt = true, data = true})
  if not stop or space(stop) ~= #raw + 1 then return nil end
  local exp, data = top.expiresAt, top.data
  if not exp or not data or string.sub(raw, data[1], data[1]) ~= '{' then return nil end
  local _, inner = members(data[1], {createdAt = true})
  if not inner then return nil end
  local stored = ms(exp)
  if stored == false then return nil end
  local created = nil
  if inner.createdAt then
    created = ms(inner.createdAt)
    if created == false then return nil end
  end
  return exp, stored, created
end
local exp, stored, created = quick()
if not exp then exp, stored, created = walked() end
if not exp then return {3, raw} end
if stored == 0 then stored = nil end
local now, lifetime, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), nil
if stored and now > stored then return {2, raw} end
if ARGV[3] ~= '' and created then cap = created + tonumber(ARGV[3]) end
if cap and now > cap then return {2, raw} end
local after = now + lifetime
if cap and after > cap then after = cap end
if after == stored then return {0, raw} end
local new = string.sub(raw, 1, exp[1] - 1) .. string.format('%.0f', after)
new = new .. string.sub(raw, exp[2])
local ttl = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[1], new, 'PX', ARGV[4])
return {1, raw, new, ttl}
"""
)
"""KEYS[1] as `expiry.after_read` decides at now ARGV[1] for a lifetime of ARGV[2] ms and a
max_lifetime of ARGV[3] ms ('' for none), a slide writing a TTL of ARGV[4] ms. Reply: nil if
missing, else {verdict, text read[, text written, TTL before]}: 0 kept, 1 slid, 2 expired
(left in place), 3 not judged (left in place). A key of another type: the WRONGTYPE error."""

_SLIDE_WRITE = """\
local ttl = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[1], new, 'PX', ARGV[4])
return {1, raw, new, ttl}
"""
if _SLIDE_WRITE not in READ_AND_SLIDE.source:  # pragma: no cover - a guard for edits above
    raise RuntimeError("READ_AND_SLIDE no longer ends with the write LOOK_BEFORE_SLIDE drops")
LOOK_BEFORE_SLIDE = script(READ_AND_SLIDE.source.replace(_SLIDE_WRITE, "return {1, raw}\n"))
"""READ_AND_SLIDE that writes nothing: where it would slide, it replies {1, text read}."""

# Keys are ARGV, not KEYS: a script may then read keys of several slots of this node (Redis 7
# refuses declared keys of several slots).
READ_ON_NODE = script(
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

DELETE_ON_NODE = script(
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
SCAN_ON_NODE = script(
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
