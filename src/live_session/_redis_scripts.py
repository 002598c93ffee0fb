"""The Lua scripts that make each RedisStore operation one atomic server-side step.

A session is one hash: ``_v`` holds its version, ``_f`` the record format, ``_d``
its absolute deadline (server time in ms, if it has one), and
each session key ``name`` is the field ``k:name`` holding the value's JSON text.
Changes are published on the session's channel as JSON:
``{"v": version, "r": reason, "c": [changed], "x": [removed], "d": {name: json}}``.
Only EVAL/EVALSHA, HGETALL, HSET, HGET, HDEL, DEL, RENAME, PEXPIRE, TIME and PUBLISH are
used, so Redis 6.2 and Valkey run them as they are.
"""

from __future__ import annotations

import functools
import hashlib

__all__ = ["COMMIT", "DESTROY", "FORMAT", "LOAD", "REGENERATE", "sha"]


@functools.cache
def sha(script: str) -> str:
    """The SHA1 that EVALSHA names a script by."""
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


# The record format this version writes; readers accept it and every older one.
FORMAT = 1

# Shared prelude: read the hash into `data` (name -> json), `version` and `count`.
_READ = """
local flat = redis.call('HGETALL', KEYS[1])
local data, version, count, last_commit, deadline = {}, 0, 0, nil, nil
for i = 1, #flat, 2 do
  local field = flat[i]
  if field == '_v' then
    version = tonumber(flat[i + 1])
  elseif field == '_d' then
    deadline = tonumber(flat[i + 1])
  elseif field == '_c' then
    last_commit = flat[i + 1]
  elseif string.sub(field, 1, 2) == 'k:' then
    data[string.sub(field, 3)] = flat[i + 1]
    count = count + 1
  end
end
local function flatten()
  local out = {}
  for name, text in pairs(data) do
    out[#out + 1] = name
    out[#out + 1] = text
  end
  return out
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Idle lifetime `ttl` ms from now, but never past the absolute deadline (server clock, ms).
local function expire(key, ttl)
  ttl = tonumber(ttl)
  if deadline then ttl = math.max(1, math.min(ttl, deadline - now_ms())) end
  redis.call('PEXPIRE', key, ttl)
end
local function publish(channel, reason, changed, removed, payload)
  local message = cjson.encode({v = version, r = reason, c = changed, x = removed, d = payload})
  redis.call('PUBLISH', channel, message)
end
"""

# KEYS: hash. ARGV: ttl in ms, or '' to leave the lifetime alone.
LOAD = (
    _READ
    + """
if #flat == 0 then return false end
if ARGV[1] ~= '' then expire(KEYS[1], ARGV[1]) end
return {version, flatten()}
"""
)

# KEYS: hash, channel. ARGV: ttl ms, create, expected version (-1: any), drop if empty,
# max size, format, commit id, absolute lifetime ms ('' for none; used on create), n,
# then n (name, json) pairs, then names to remove.
# The commit id is kept in `_c`: a client that retries after a lost reply finds its commit done.
COMMIT = (
    _READ
    + """
local ttl, create, expected = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3])
local drop, max_size, format, commit_id = ARGV[4] == '1', tonumber(ARGV[5]), ARGV[6], ARGV[7]
local lifetime, n = ARGV[8], tonumber(ARGV[9])
if #flat == 0 and not create then return {'missing'} end
if last_commit == commit_id then return {'ok', version, flatten()} end
if expected >= 0 and expected ~= version then return {'conflict', version} end
local changed, setting, hset, hdel = {}, {}, {}, {}
for i = 0, n - 1 do
  local name, text = ARGV[10 + 2 * i], ARGV[11 + 2 * i]
  setting[name] = true
  if data[name] ~= text then
    if data[name] == nil then count = count + 1 end
    data[name] = text
    changed[#changed + 1] = name
    hset[#hset + 1] = 'k:' .. name
    hset[#hset + 1] = text
  end
end
local removed = {}
for i = 10 + 2 * n, #ARGV do
  local name = ARGV[i]
  if data[name] ~= nil and not setting[name] then
    data[name] = nil
    count = count - 1
    removed[#removed + 1] = name
    hdel[#hdel + 1] = 'k:' .. name
  end
end
if #flat > 0 and #changed == 0 and #removed == 0 then
  expire(KEYS[1], ttl)
  return {'ok', version, flatten()}
end
version = version + 1
if #flat > 0 and drop and count == 0 then
  redis.call('DEL', KEYS[1])
  publish(KEYS[2], 'destroyed', {}, removed, {})
  return {'dropped', version}
end
local size = 1
for name, text in pairs(data) do size = size + #name + #text + 4 end
if count == 0 then size = 2 end
if size > max_size then return {'toolarge', size} end
if #hset > 0 then redis.call('HSET', KEYS[1], unpack(hset)) end
if #hdel > 0 then redis.call('HDEL', KEYS[1], unpack(hdel)) end
redis.call('HSET', KEYS[1], '_v', version, '_f', format, '_c', commit_id)
if #flat == 0 and lifetime ~= '' then
  deadline = now_ms() + tonumber(lifetime)
  redis.call('HSET', KEYS[1], '_d', deadline)
end
expire(KEYS[1], ttl)
publish(KEYS[2], 'updated', changed, removed, data)
return {'ok', version, flatten()}
"""
)

# KEYS: hash, channel.
DESTROY = (
    _READ
    + """
if #flat == 0 then return 0 end
local removed = {}
for name, _ in pairs(data) do removed[#removed + 1] = name end
version = version + 1
redis.call('DEL', KEYS[1])
publish(KEYS[2], 'destroyed', {}, removed, {})
return 1
"""
)

# KEYS: old hash, new hash, old channel. ARGV: ttl ms, format, commit id.
REGENERATE = (
    _READ
    + """
if #flat == 0 then
  -- A retry after a lost reply: the session is already under the new key.
  if redis.call('HGET', KEYS[2], '_c') == ARGV[3] then
    flat = redis.call('HGETALL', KEYS[2])
    local moved = {}
    for i = 1, #flat, 2 do
      if string.sub(flat[i], 1, 2) == 'k:' then
        moved[#moved + 1] = string.sub(flat[i], 3)
        moved[#moved + 1] = flat[i + 1]
      end
    end
    return {tonumber(redis.call('HGET', KEYS[2], '_v')), moved}
  end
  return false
end
version = version + 1
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[2], '_v', version, '_f', ARGV[2], '_c', ARGV[3])
expire(KEYS[2], ARGV[1])
publish(KEYS[3], 'regenerated', {}, {}, data)
return {version, flatten()}
"""
)
