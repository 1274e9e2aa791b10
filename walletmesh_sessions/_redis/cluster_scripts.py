"""The Lua scripts a cluster node runs for the store: reads, deletes and scan pages of its keys.

Each reads the node's own view of its slots, so a key or slot the node does not serve (moved,
or moving) is reported rather than an error, and the caller asks the node that serves it.
"""

from __future__ import annotations

from .scripts import script

__all__ = ("DELETE_ON_NODE", "READ_ON_NODE", "SCAN_ON_NODE")


# Keys are ARGV, not KEYS: a script may then read keys of several slots of this node (Redis 7
# refuses declared keys of several slots). A key this node does not serve right now (its slot
# moved or is moving) is reported, not an error, so the caller asks the cluster for it.
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
