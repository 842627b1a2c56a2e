-- Delete up to `limit` of a user's dead sessions (now >= idle_expires_at), their state,
-- their spent token hashes and their budget keys. Only needed with an injected clock:
-- otherwise Redis expires these keys by itself.
-- KEYS: index.  ARGV: now, user base, limit.
-- Returns {how many sessions it deleted, {token hashes}, {session members}}: every hash those
-- sessions carried (current and spent), and every session forgotten, so that their routes
-- and owner keys can go too.
local now = clock(ARGV[1])
local base, limit = ARGV[2], tonumber(ARGV[3])
local count, hashes, gone = 0, {}, {}

-- a session's budget, ledger, holds and idempotency keys go with it
local function drop_budget(m)
  redis.call('DEL', base .. 'b:' .. m, base .. 'l:' .. m, base .. 'h:' .. m, base .. 'ik:' .. m)
  redis.call('SREM', base .. 'bidx', m)
end

local function forget_spent(spkey)
  for _, h in ipairs(redis.call('SMEMBERS', spkey)) do
    hashes[#hashes + 1] = h
  end
  redis.call('DEL', spkey)
end

for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if count >= limit then
    break
  end
  local skey, spkey = base .. 's:' .. m, base .. 'sp:' .. m
  local s = load(skey)
  if s == nil then
    redis.call('ZREM', KEYS[1], m)
    forget_spent(spkey)
    drop_budget(m)
    gone[#gone + 1] = m
  elseif now >= tonumber(s.ie) then
    redis.call('DEL', skey, base .. 'ss:' .. m)
    redis.call('ZREM', KEYS[1], m)
    forget_spent(spkey)
    drop_budget(m)
    gone[#gone + 1] = m
    hashes[#hashes + 1] = s.th
    count = count + 1
  end
end
return {count, hashes, gone}
