"""The Lua scripts that make each RedisStore write one atomic server-side step.

A session is one hash. Each session key ``name`` is the field ``k:name``, holding
the value's JSON text; the other fields are bookkeeping:

- ``_v``: the version; ``_f``: the record format; ``_c``: the id of the last commit;
- ``_e``: when the idle lifetime ends (server time, ms), as last set;
- ``_d``: the absolute deadline (server time, ms), if the session has one;
- ``_s``: the size parts of ``encoded_size()`` summed (kept by format 2 only).

Reads are a plain HGETALL, no script: ``_e`` tells the reader whether the idle
lifetime needs setting (TOUCH), which then happens about once per slack. Every
lifetime is set by the server's clock (TIME). Scripts touch only the fields
they change (HMGET, never HGETALL on the write path), because time a script
spends in Redis adds about 2.5 times as much to its caller's latency.
Changes are published on the session's channel as JSON, carrying only what changed:
``{"v": version, "r": reason, "c": [changed], "x": [removed], "d": {changed name: json}}``.
Only EVAL/EVALSHA, HGETALL, HMGET, HSET, HGET, HDEL, DEL, EXISTS, RENAME, PEXPIREAT, TIME
and PUBLISH are used, so Redis 6.2 and Valkey run them as they are.
"""

from __future__ import annotations

import functools
import hashlib

__all__ = ["COMMIT", "DESTROY", "FORMAT", "MISSING", "REGENERATE", "TOUCH", "sha"]


@functools.cache
def sha(script: str) -> str:
    """The SHA1 that EVALSHA names a script by."""
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


# The record format this version writes; readers accept it and every older one.
FORMAT = 2

_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Set the idle lifetime: `ttl` ms from now by the server's clock, never past the deadline, and
-- remember its end in `_e` (set first: PEXPIREAT never deletes, as the end is always ahead).
local function expire(key, ttl, deadline)
  local now = now_ms()
  local at = now + tonumber(ttl)
  if deadline and deadline < at then at = math.max(now + 1, deadline) end
  redis.call('HSET', key, '_e', at)
  redis.call('PEXPIREAT', key, at)
end
-- Whether the idle lifetime needs setting: its recorded end `ends` is more than `slack` ms away
-- from where `ttl` (capped by the deadline) would put it, by the client's estimate of the server's
-- clock `now`. Both ways: a shorter idle_timeout shortens sessions too. `ends`, `now` and `slack`
-- come as the text of a number, converted here only when needed (tonumber is not free in a script).
local function needs_setting(ends, now, ttl, deadline, slack)
  ends = tonumber(ends)
  if not ends then return true end
  local at = tonumber(now) + tonumber(ttl)
  if deadline and deadline < at then at = deadline end
  return math.abs(at - ends) > tonumber(slack)
end
local function publish(channel, version, reason, changed, removed, payload)
  redis.call('PUBLISH', channel, cjson.encode({v = version, r = reason, c = changed, x = removed, d = payload}))
end
-- A command over a long list of arguments, in slices that Lua's unpack() can take; replies joined.
local function sliced(command, key, list)
  if #list <= 4000 then return redis.call(command, key, unpack(list)) end
  local out = {}
  for i = 1, #list, 4000 do
    local part = redis.call(command, key, unpack(list, i, math.min(i + 3999, #list)))
    if type(part) == 'table' then
      for j = 1, #part do out[#out + 1] = part[j] end
    end
  end
  return out
end
-- The session keys and values of a record, flat.
local function contents(key)
  local flat, out = redis.call('HGETALL', key), {}
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 2) == 'k:' then
      out[#out + 1] = string.sub(flat[i], 3)
      out[#out + 1] = flat[i + 1]
    end
  end
  return out
end
-- The size parts of a whole record: for a record of an older format, which does not keep `_s`.
local function count_size(key)
  local flat, size = contents(key), 0
  for i = 1, #flat, 2 do size = size + #flat[i] + #flat[i + 1] + 4 end
  return size
end
"""

# KEYS: hash. ARGV: ttl ms. Sets the idle lifetime of an existing session; replies 1, or 0 if none.
TOUCH = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
expire(KEYS[1], ARGV[1], tonumber(redis.call('HGET', KEYS[1], '_d')))
return 1
"""
)

# KEYS: hash, channel. ARGV: ttl ms, create, expected version (-1: any), drop if empty, max size,
# format, commit id, absolute lifetime ms ('' for none; used on create), now (the client's estimate
# of the server's clock, ms), known version (-1: none), slack ms, n, then n (name, json) pairs,
# then names to remove.
# Like a read, a commit sets the idle lifetime only when it is more than the slack away from
# where it belongs (by the estimate); the new end itself always comes from the server's clock.
# Replies {status, version, size parts, contents}: status is ok, missing, conflict (with the
# version), dropped or toolarge (with the size). Contents (flat name, json pairs) come only when
# the client cannot work them out: when the session changed since the version it knows.
# The commit id is kept in `_c`: a client that retries after a lost reply finds its commit done.
COMMIT = (
    _PRELUDE
    + """
-- Written for the time it spends in Redis, which a client pays about threefold: numbers are
-- converted only where needed, no table or closure is made that the path taken does not use, and
-- the usual commit (one key set, none removed) calls HMGET and HSET without building their lists.
local key, ttl, commit_id, known = KEYS[1], ARGV[1], ARGV[7], tonumber(ARGV[10])
local n = tonumber(ARGV[12])
local first_removed, last = 13 + 2 * n, #ARGV
-- One read for the bookkeeping and the current value of every key named.
local got
if n == 1 and last == 14 then
  got = redis.call('HMGET', key, '_v', '_c', '_d', '_s', '_e', '_f', 'k:' .. ARGV[13])
else
  local fields = {'_v', '_c', '_d', '_s', '_e', '_f'}
  for i = 0, n - 1 do fields[7 + i] = 'k:' .. ARGV[13 + 2 * i] end
  for i = first_removed, last do fields[7 + n + i - first_removed] = 'k:' .. ARGV[i] end
  got = sliced('HMGET', key, fields)
end
local exists = got[1] ~= false
if not exists and ARGV[2] ~= '1' then return {'missing'} end
local version, deadline = tonumber(got[1]) or 0, tonumber(got[3])
-- `_s` is kept by format 2 only: an older writer may have changed the record without it.
local size = 0
if exists then
  if got[6] == '2' then size = tonumber(got[4]) else size = count_size(key) end
end
-- Replies carry the contents only when the client cannot work them out: when the version it
-- knows is not the one just before this commit's (or, for a new session, it knew one).
if exists and got[2] == commit_id then return {'ok', version, size, contents(key)} end
if ARGV[3] ~= '-1' then
  local expected = tonumber(ARGV[3])
  if expected >= 0 and expected ~= version then return {'conflict', version} end
end
local changed, payload = {}, {}
for i = 0, n - 1 do
  local name, text, old = ARGV[13 + 2 * i], ARGV[14 + 2 * i], got[7 + i]
  if old ~= text then
    if old then size = size - (#name + #old + 4) end
    size = size + #name + #text + 4
    changed[#changed + 1] = name
    payload[name] = text
  end
end
local removed, hdel = {}, nil
if first_removed <= last then
  -- Keys both set and removed are set; a key named twice is removed once.
  local setting = {}
  for i = 0, n - 1 do setting[ARGV[13 + 2 * i]] = true end
  hdel = {}
  for i = first_removed, last do
    local name, old = ARGV[i], got[7 + n + i - first_removed]
    if old and not setting[name] then
      setting[name] = true
      size = size - (#name + #old + 4)
      removed[#removed + 1] = name
      hdel[#hdel + 1] = 'k:' .. name
    end
  end
end
local extend = not exists or needs_setting(got[5], ARGV[9], ttl, deadline, ARGV[11])
if exists and #changed == 0 and #removed == 0 then
  if extend then expire(key, ttl, deadline) end
  if known == version then return {'ok', version, size} end
  return {'ok', version, size, contents(key)}
end
local before = version
version = version + 1
if exists and ARGV[4] == '1' and size == 0 then
  redis.call('DEL', key)
  publish(KEYS[2], version, 'destroyed', {}, removed, {})
  return {'dropped', version}
end
local total = size + 1
if size == 0 then total = 2 end
if total > tonumber(ARGV[5]) then return {'toolarge', total} end
if hdel and #hdel > 0 then sliced('HDEL', key, hdel) end
local with_deadline = not exists and ARGV[8] ~= ''
if #changed == 1 and not with_deadline then
  local name = changed[1]
  redis.call('HSET', key, 'k:' .. name, payload[name], '_v', version, '_f', ARGV[6], '_c', commit_id, '_s', size)
else
  local hset = {}
  for i = 1, #changed do
    hset[2 * i - 1], hset[2 * i] = 'k:' .. changed[i], payload[changed[i]]
  end
  local at = #hset
  hset[at + 1], hset[at + 2], hset[at + 3], hset[at + 4] = '_v', version, '_f', ARGV[6]
  hset[at + 5], hset[at + 6], hset[at + 7], hset[at + 8] = '_c', commit_id, '_s', size
  if with_deadline then
    deadline = now_ms() + tonumber(ARGV[8])
    hset[at + 9], hset[at + 10] = '_d', deadline
  end
  sliced('HSET', key, hset)
end
if extend then expire(key, ttl, deadline) end
publish(KEYS[2], version, 'updated', changed, removed, payload)
-- Short when the client knew the version before this one (a new session: knew none).
if (exists and known == before) or (not exists and known ~= before) then return {'ok', version, size} end
return {'ok', version, size, contents(key)}
"""
)

# KEYS: hash, channel. Replies 1 if there was a session, else 0.
DESTROY = (
    _PRELUDE
    + """
local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then return 0 end
local removed, version = {}, 0
for i = 1, #flat, 2 do
  if flat[i] == '_v' then version = tonumber(flat[i + 1])
  elseif string.sub(flat[i], 1, 2) == 'k:' then removed[#removed + 1] = string.sub(flat[i], 3) end
end
redis.call('DEL', KEYS[1])
publish(KEYS[2], version + 1, 'destroyed', {}, removed, {})
return 1
"""
)

# KEYS: old hash, new hash, old channel. ARGV: ttl ms, format, commit id.
# Replies {new version, contents}, or false if there was no session.
REGENERATE = (
    _PRELUDE
    + """
local got = redis.call('HMGET', KEYS[1], '_v', '_d', '_f')
if got[1] == false then
  -- A retry after a lost reply: the session is already under the new key.
  if redis.call('HGET', KEYS[2], '_c') == ARGV[3] then
    return {tonumber(redis.call('HGET', KEYS[2], '_v')), contents(KEYS[2])}
  end
  return false
end
local version = tonumber(got[1]) + 1
redis.call('RENAME', KEYS[1], KEYS[2])
local fields = {'_v', version, '_c', ARGV[3]}
if got[3] ~= '2' then
  -- A record of an older format: count its size, as format 2 keeps it.
  for _, field in ipairs({'_f', ARGV[2], '_s', count_size(KEYS[2])}) do fields[#fields + 1] = field end
end
redis.call('HSET', KEYS[2], unpack(fields))
expire(KEYS[2], ARGV[1], tonumber(got[2]))
publish(KEYS[3], version, 'regenerated', {}, {}, {})
return {version, contents(KEYS[2])}
"""
)

# KEYS: session hashes. Replies the positions (from 1) of those that no longer exist: the listener's
# expiry check, one round trip for many sessions instead of an EXISTS each.
MISSING = """
local gone = {}
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then gone[#gone + 1] = i end
end
return gone
"""
