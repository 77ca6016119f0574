package redis

import goredis "github.com/redis/go-redis/v9"

// The Lua scripts below make each write one atomic step in Redis: read,
// check, write and set the expiry together, so that concurrent writers
// never lose each other's keys and no key ever exists without a TTL. They
// run through EVALSHA (EVAL once per server after a restart or SCRIPT
// FLUSH), one round trip each.
//
// A session is one hash:
//
//	created   unix nanoseconds, as decimal text
//	deadline  unix nanoseconds: the absolute end
//	expires   unix nanoseconds: the idle expiry (never after deadline)
//	aud       the session's audience (Record.Audience); absent when empty
//	new       present only while the session is New (Record.New): unix
//	          nanoseconds, the end of its new-session life (created +
//	          the NewTTL it was created with), past which no Touch and no
//	          unconfirmed Merge moves its expiry; Confirm removes it
//	v:<name>  the JSON text of session key <name>
//	rotated   present only on a record that Rotate moved away (see below)
//
// A hash written before aud and new existed reads as a confirmed session
// of no audience. The key's PEXPIREAT always follows expires, so a New
// session that is never confirmed leaves Redis at its new-session end, not
// at its deadline.
//
// Times are kept in nanoseconds so that a Record comes back exactly as the
// caller's times went in. Lua numbers are doubles, exact only to about
// 256 ns at today's dates: fine for comparing times, not for writing them,
// so the scripts only ever store times as the text they were given, and
// derive PEXPIREAT's milliseconds from that text.

// luaLib is prepended to every script: Redis scripts cannot share code.
const luaLib = `
-- ms returns the unix milliseconds of a nanosecond time given as text,
-- rounded down, so that Redis never keeps a key past that time.
local function ms(ns)
  if #ns <= 6 then return '0' end
  return string.sub(ns, 1, -7)
end

-- addns returns the sum of two non-negative nanosecond times or durations
-- given as decimal text, as text, exactly: Lua's doubles are not exact at
-- today's nanoseconds, so the digits are added in two parts.
local function addns(a, b)
  local ah, al = tonumber(string.sub(a, 1, -10)) or 0, tonumber(string.sub(a, -9))
  local bh, bl = tonumber(string.sub(b, 1, -10)) or 0, tonumber(string.sub(b, -9))
  local l, h = al + bl, ah + bh
  if l >= 1000000000 then l, h = l - 1000000000, h + 1 end
  if h == 0 then return string.format('%d', l) end
  return string.format('%d%09d', h, l)
end

-- earlier returns whichever of two times given as text comes first.
local function earlier(a, b)
  if tonumber(b) < tonumber(a) then return b end
  return a
end

-- newcap returns the new-session end of a New session from its 'new' and
-- 'expires' fields, or nil for a confirmed one. A 'new' field that is not
-- a time (written by something else) caps at the current expiry.
local function newcap(new, expires)
  if new == nil or new == false then return nil end
  if tonumber(new) == nil then return expires end
  return new
end

-- read returns the hash at key as its flat HGETALL list, its metadata
-- fields, its values by name, and whether it is a live session at now.
local function read(key, now)
  local h = redis.call('HGETALL', key)
  local meta, vals = {}, {}
  for i = 1, #h, 2 do
    local f = h[i]
    if string.sub(f, 1, 2) == 'v:' then
      vals[string.sub(f, 3)] = h[i + 1]
    else
      meta[f] = h[i + 1]
    end
  end
  local d, e = tonumber(meta.deadline), tonumber(meta.expires)
  local live = meta.rotated == nil and meta.created ~= nil and d ~= nil and e ~= nil
    and now < d and now < e
  return h, meta, vals, live
end

-- current is the {"version", ...} refusal of a write made at another
-- version: the stored session, laid out as mergeScript's "ok" reply.
local function current(meta, vals)
  local isnew = '0'
  if meta.new ~= nil then isnew = '1' end
  local res = {'version', meta.created, meta.deadline, meta.expires, meta.aud or '', isnew, meta.ver or '0'}
  for k, v in pairs(vals) do
    table.insert(res, k); table.insert(res, v)
  end
  return res
end

-- batched runs cmd on key with list[first..] as arguments, a thousand at a
-- time (an even number, so field/value pairs stay together): unpack fails
-- past a few thousand values.
local function batched(cmd, key, list, first)
  local i = first
  while i <= #list do
    local j = math.min(i + 999, #list)
    redis.call(cmd, key, unpack(list, i, j))
    i = j + 1
  end
end

-- tombstone marks a record that Rotate moved away: invisible to every
-- other operation, kept briefly so that a retried Rotate (go-redis retries
-- a command whose reply timed out, though Redis may have run it) can tell
-- its own earlier success from a session that is gone.
local function tombstone(key, nonce, now, ttl, expires)
  redis.call('HSET', key, 'rotated', nonce)
  local t = now + ttl
  if tonumber(expires) < t then
    redis.call('PEXPIREAT', key, ms(expires))
  else
    redis.call('PEXPIREAT', key, ms(string.format('%.0f', t)))
  end
end
`

// mergeScript applies a patch to the session at KEYS[1].
//
//	ARGV[1]  "1" to create the session when there is none, "2" to only
//	         create it (a live session answers {"exists"})
//	ARGV[2]  now (ns)
//	ARGV[3]  deadline of a created session (ns)
//	ARGV[4]  now + idle timeout (ns), or "" without one
//	ARGV[5]  max keys
//	ARGV[6]  max size (bytes of the JSON object)
//	ARGV[7]  audience of a created session, or ""
//	ARGV[8]  new-session TTL (ns), or "" without one: a created session is
//	         New, and a New one ends at created + this at the latest
//	ARGV[9]  "1" to confirm a New session (clear 'new')
//	ARGV[10] the session's new deadline (ns), created or not
//	         (MergeOptions.SetDeadline), or "" to keep it
//	ARGV[11] the version of a created session (decimal)
//	ARGV[12] the version the session must be at (MergeOptions.IfVersion),
//	         or "" for an unconditional merge
//	ARGV[13…] name, value pairs; an empty value deletes the name
//
// It returns {"ok", created, deadline, expires, audience, "1"|"0" (New),
// version, name, value, ...} with the whole resulting session,
// {"version", ...} laid out as "ok" with the current session when it is
// at another version than ARGV[12], {"notfound"}, {"exists"}, {"rotated"}
// (a tombstone of Rotate), {"collision", key, other} or {"limit",
// "keys"|"size", limit, got}. A refused merge writes nothing. The checks mirror storage.Apply; names
// were validated by the caller.
var mergeScript = goredis.NewScript(luaLib + `
local key = KEYS[1]
local now = tonumber(ARGV[2])
local _, meta, vals, live = read(key, now)
if meta.rotated ~= nil then return {'rotated'} end
local fresh = not live
local created, deadline, aud = meta.created, meta.deadline, meta.aud
local cap = nil
local ver = meta.ver or '0'
if ARGV[12] ~= '' then
  if fresh then return {'notfound'} end
  if ver ~= ARGV[12] then return current(meta, vals) end
end
if not fresh and ARGV[1] == '2' then return {'exists'} end
if fresh then
  if ARGV[1] == '0' then return {'notfound'} end
  vals = {}
  created, deadline = ARGV[2], ARGV[3]
  if ARGV[7] ~= '' then aud = ARGV[7] else aud = nil end
  if ARGV[8] ~= '' then cap = addns(created, ARGV[8]) end
elseif ARGV[9] ~= '1' then
  cap = newcap(meta.new, meta.expires)
  if cap ~= nil and ARGV[8] ~= '' then cap = earlier(cap, addns(created, ARGV[8])) end
end
local moved = ARGV[10] ~= ''
if moved then deadline = ARGV[10] end

local out = {}
for k, v in pairs(vals) do out[k] = v end
local named = {}
for i = 13, #ARGV, 2 do named[ARGV[i]] = true end
-- ended[k]: the end of key k that this write removes (storage.Apply: an
-- end belongs to the value it was set for).
local ended = {}
for i = 13, #ARGV, 2 do
  local k = ARGV[i]
  if ARGV[i + 1] == '' then out[k] = nil else out[k] = ARGV[i + 1] end
  if string.sub(k, 1, 1) ~= '~' and not named['~x~' .. k] then
    out['~x~' .. k] = nil
    if vals['~x~' .. k] ~= nil then ended['~x~' .. k] = true end
  end
end

-- Two names that would be forwarded as one header may not coexist.
local function hk(k) return (string.gsub(string.lower(k), '_', '-')) end
local byhk = {}
for k in pairs(out) do
  local x = hk(k)
  if byhk[x] == nil then byhk[x] = {} end
  table.insert(byhk[x], k)
end
for i = 13, #ARGV, 2 do
  local k = ARGV[i]
  if ARGV[i + 1] ~= '' then
    for _, o in ipairs(byhk[hk(k)]) do
      if o ~= k then return {'collision', k, o} end
    end
  end
end

-- Limits, counted as storage.Size counts: the length of {"k":v,...}.
local n, size = 0, 2
for k, v in pairs(out) do
  n = n + 1
  size = size + #k + #v + 4
end
if n > 0 then size = size - 1 end
if n > tonumber(ARGV[5]) then return {'limit', 'keys', tonumber(ARGV[5]), n} end
if size > tonumber(ARGV[6]) then return {'limit', 'size', tonumber(ARGV[6]), size} end

local expires = deadline
if ARGV[4] ~= '' then expires = earlier(expires, ARGV[4]) end
if cap ~= nil then expires = earlier(expires, cap) end

local set = {'expires', expires}
local del = {}
if fresh then
  ver = ARGV[11]
  table.insert(set, 'ver'); table.insert(set, ver)
elseif #ARGV >= 13 then
  ver = string.format('%d', tonumber(ver) + 1)
  table.insert(set, 'ver'); table.insert(set, ver)
end
if fresh then
  redis.call('DEL', key)
  table.insert(set, 'created'); table.insert(set, created)
  table.insert(set, 'deadline'); table.insert(set, deadline)
  if aud ~= nil then table.insert(set, 'aud'); table.insert(set, aud) end
elseif moved then
  table.insert(set, 'deadline'); table.insert(set, deadline)
end
if cap ~= nil then
  table.insert(set, 'new'); table.insert(set, cap)
elseif not fresh and meta.new ~= nil then
  table.insert(del, 'new')
end
for k in pairs(ended) do table.insert(del, 'v:' .. k) end
for i = 13, #ARGV, 2 do
  local k, v = ARGV[i], ARGV[i + 1]
  if v ~= '' then
    table.insert(set, 'v:' .. k); table.insert(set, v)
  elseif vals[k] ~= nil then
    table.insert(del, 'v:' .. k)
  end
end
batched('HDEL', key, del, 1)
batched('HSET', key, set, 1)
redis.call('PEXPIREAT', key, ms(expires))

local isnew = '0'
if cap ~= nil then isnew = '1' end
local res = {'ok', created, deadline, expires, aud or '', isnew, ver}
for k, v in pairs(out) do
  table.insert(res, k); table.insert(res, v)
end
return res
`)

// deleteVersionScript deletes the live session at KEYS[1] if it is at
// version ARGV[2], given now ARGV[1] (ns). It returns {"ok"}, {"notfound"},
// {"rotated"}, or {"version", ...} laid out as mergeScript's "ok" with the
// current session.
var deleteVersionScript = goredis.NewScript(luaLib + `
local _, meta, vals, live = read(KEYS[1], tonumber(ARGV[1]))
if meta.rotated ~= nil then return {'rotated'} end
if not live then return {'notfound'} end
if (meta.ver or '0') ~= ARGV[2] then return current(meta, vals) end
redis.call('DEL', KEYS[1])
return {'ok'}
`)

// touchScript moves the expiry of the live session at KEYS[1] to ARGV[1]
// (ns), capped at its deadline (and, while it is New, at its new-session
// end), given now ARGV[2] (ns). When ARGV[3] is "1" it confirms the
// session too (Store.Confirm): it removes 'new', and the cap with it. It
// reads only the metadata and writes only the expiry (and 'new'): a
// concurrent Merge is never undone, and a deleted or rotated session is
// never re-created. It returns 1 when it moved the expiry, 0 when there
// was no live session.
var touchScript = goredis.NewScript(luaLib + `
local key = KEYS[1]
local m = redis.call('HMGET', key, 'created', 'deadline', 'expires', 'rotated', 'new')
local now = tonumber(ARGV[2])
local d, e = tonumber(m[2]), tonumber(m[3])
if not m[1] or m[4] or d == nil or e == nil or now >= d or now >= e then return 0 end
local expires = earlier(ARGV[1], m[2])
if ARGV[3] == '1' then
  if m[5] then redis.call('HDEL', key, 'new') end
else
  local cap = newcap(m[5], m[3])
  if cap ~= nil then expires = earlier(expires, cap) end
end
redis.call('HSET', key, 'expires', expires)
redis.call('PEXPIREAT', key, ms(expires))
return 1
`)

// rotateScript moves the live session at KEYS[1] to KEYS[2] in one atomic
// step, for servers where both keys live together (standalone, Sentinel).
//
//	ARGV[1]  now (ns)
//	ARGV[2]  a nonce unique to this Rotate call
//	ARGV[3]  how long the tombstone at KEYS[1] lives (ns)
//
// It returns "ok" or "notfound".
var rotateScript = goredis.NewScript(luaLib + `
local now = tonumber(ARGV[1])
local h, meta, _, live = read(KEYS[1], now)
if meta.rotated ~= nil then
  if meta.rotated == ARGV[2] then return 'ok' end
  return 'notfound'
end
if not live then return 'notfound' end
redis.call('DEL', KEYS[2])
batched('HSET', KEYS[2], h, 1)
redis.call('PEXPIREAT', KEYS[2], ms(meta.expires))
redis.call('DEL', KEYS[1])
tombstone(KEYS[1], ARGV[2], now, tonumber(ARGV[3]), meta.expires)
return 'ok'
`)

// takeScript is the first half of Rotate in a Cluster, where the old and
// new keys live in different slots and no one script may touch both: it
// turns the live session at KEYS[1] into a tombstone (same ARGV as
// rotateScript) and returns {"ok", field, value, ...} with its contents,
// or {"notfound"}. The tombstone keeps the contents only for a retry of
// this same call.
var takeScript = goredis.NewScript(luaLib + `
local now = tonumber(ARGV[1])
local h, meta, _, live = read(KEYS[1], now)
if meta.rotated ~= nil and meta.rotated ~= ARGV[2] then return {'notfound'} end
if meta.rotated == nil then
  if not live then return {'notfound'} end
  tombstone(KEYS[1], ARGV[2], now, tonumber(ARGV[3]), meta.expires)
end
local res = {'ok'}
for i = 1, #h, 2 do
  if h[i] ~= 'rotated' then
    table.insert(res, h[i]); table.insert(res, h[i + 1])
  end
end
return res
`)

// putScript is the second half of Rotate in a Cluster: it writes the hash
// given as ARGV[2…] (field, value pairs) at KEYS[1], replacing anything
// there, with its expiry ARGV[1] (ns) set in the same step. Running it
// twice is harmless.
var putScript = goredis.NewScript(luaLib + `
redis.call('DEL', KEYS[1])
batched('HSET', KEYS[1], ARGV, 2)
redis.call('PEXPIREAT', KEYS[1], ms(ARGV[1]))
return 1
`)
