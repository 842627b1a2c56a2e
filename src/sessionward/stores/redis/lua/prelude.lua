-- Prepended to every script of the Redis store (see keys.py for the key layout).
--
-- Times are float seconds since the epoch. They travel as strings with 17 significant
-- digits, because a Lua number returned to Redis is truncated to an integer, and a stored
-- time must compare exactly with what the other backends would have computed.
-- ARGV[1] of every script is the injected clock's time, or '' to use the server's TIME.

local function clock(arg)
  if arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function fmt(x)
  return string.format('%.17g', x)
end

-- A session is one string key holding a JSON object, so that validate can read it with a
-- plain GET (no script). Its fields, in the order of every row a script returns as an array
-- (keys.FIELDS): session_id, user_id, token_hash, created_at, last_seen_at,
-- idle_timeout, idle_expires_at, expires_at, revoked_at, ip, user_agent, metadata,
-- generation, the creation number that orders sessions created within one clock tick,
-- prev_token_hash and rotated_at (absent until the first rotation).
-- Times and numbers are kept as strings, so no JSON encoder can round them.
local FIELDS = {'sid', 'uid', 'th', 'ca', 'ls', 'it', 'ie', 'ea', 'ra', 'ip', 'ua', 'md', 'g', 'n', 'pt', 'rt'}

local function load(key)
  local raw = redis.call('GET', key)
  if not raw then
    return nil
  end
  return cjson.decode(raw)
end

-- KEEPTTL: a write never changes when the session expires; only touch() moves that.
local function save(key, row)
  redis.call('SET', key, cjson.encode(row), 'KEEPTTL')
end

-- false, not nil, for an absent field: a nil would end the array
local function as_reply(row)
  local out = {}
  for i, f in ipairs(FIELDS) do
    out[i] = row[f] or false
  end
  return out
end

local function is_live(row, now)
  return row.ra == nil and now < tonumber(row.ie)
end

-- TTLs are relative to `now`: an injected clock may be years away from the server's, and
-- an absolute expiry computed from it could already be past. Never below 1 ms, because a
-- zero or negative TTL deletes the key at once.
local function ttl_ms(at, now)
  return math.max(1, math.ceil((at - now) * 1000))
end

-- The index must outlive its longest-lived member, or a live session would drop out of it.
local function extend_index(idx, ms)
  if redis.call('PTTL', idx) < ms then
    redis.call('PEXPIRE', idx, ms)
  end
end

-- A session's budget keys (base .. 'b:' .. member: budget, 'l:' ledger, 'h:' holds) expire
-- with the session; its idempotency keys ('ik:') live at least a day (and as long as it);
-- the user's budget index ('bidx') as long as its longest-lived budget. Only ever extended.
local DAY_MS = 86400000
local function arm_budget(base, m, ms)
  extend_index(base .. 'b:' .. m, ms)
  extend_index(base .. 'l:' .. m, ms)
  extend_index(base .. 'h:' .. m, ms)
  extend_index(base .. 'ik:' .. m, math.max(ms, DAY_MS))
  extend_index(base .. 'bidx', ms)
end

-- keys: the session, its documents, the user's index and its spent token hashes (the KEYS
-- of find, rotate and refresh). Everything of a session expires with it, its budget too.
local function touch(keys, row, now)
  local ie = math.min(now + tonumber(row.it), tonumber(row.ea))
  row.ls, row.ie = fmt(now), fmt(ie)
  save(keys[1], row)
  local ms = ttl_ms(ie, now)
  redis.call('PEXPIRE', keys[1], ms)
  redis.call('PEXPIRE', keys[2], ms)
  redis.call('PEXPIRE', keys[4], ms)
  extend_index(keys[3], ms)
  -- ids are encoded without ':', so the last 's:' starts the member
  local base, m = string.match(keys[1], '^(.*:)s:([^:]*)$')
  if redis.call('EXISTS', base .. 'b:' .. m) == 1 then
    arm_budget(base, m, ms)
  end
end

-- Give a live session a new token hash. The old one becomes prev_token_hash and joins the
-- session's set of spent hashes, which lives as long as the session (touch re-arms it).
local function rotate_token(keys, row, new_hash, now)
  redis.call('SADD', keys[4], row.th)
  row.pt, row.rt = row.th, fmt(now)
  row.th, row.g = new_hash, string.format('%d', tonumber(row.g) + 1)
  touch(keys, row, now)  -- saves the row
end

-- The tombstone keeps its TTL (idle_expires_at), so an in-flight write still finds it revoked.
local function revoke(skey, sskey, row, now)
  row.ra = fmt(now)
  save(skey, row)
  redis.call('DEL', sskey)
end

-- The user's live sessions as {row, member} pairs, oldest first: by created_at, then by
-- creation number, so sessions created within one clock tick keep their order. Also the
-- highest creation number present. Members whose key Redis has expired leave the index.
local function live_sessions(base, idx, now)
  local live, top = {}, 0
  for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    local row = load(base .. 's:' .. m)
    if row == nil then
      redis.call('ZREM', idx, m)
    else
      top = math.max(top, tonumber(row.n) or 0)
      if is_live(row, now) then
        live[#live + 1] = {row = row, m = m}
      end
    end
  end
  table.sort(live, function(a, b)
    local x, y = tonumber(a.row.ca), tonumber(b.row.ca)
    if x ~= y then
      return x < y
    end
    return tonumber(a.row.n) < tonumber(b.row.n)
  end)
  return live, top
end

-- For state scripts. KEYS[1] is the documents hash; KEYS[2], present for a session scope
-- only, is that session's hash: its documents exist only while it is live.
local function owner_live(now_arg, user_id)
  if #KEYS < 2 then
    return true
  end
  local s = load(KEYS[2])
  return s ~= nil and s.uid == user_id and not s.ra and clock(now_arg) < tonumber(s.ie)
end

-- Mirrors sessionward.rules.state.version_matches (tests/stores/test_redis_rule_mirrors.py
-- keeps the two in step).
-- expected: '' accepts any version, '0' only an absent document, 'n' only version n.
local function version_matches(current, expected)
  if expected == '' then
    return true
  end
  if expected == '0' then
    return current == nil
  end
  return current == tonumber(expected)
end
