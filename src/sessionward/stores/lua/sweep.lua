-- Delete up to `limit` of a user's dead sessions (now >= idle_expires_at) and their state.
-- Only needed with an injected clock: otherwise Redis expires these keys by itself.
-- KEYS: index.  ARGV: now, user base, limit.
-- Returns {how many it deleted, {their token hashes}} so that their routes can go too.
local now = clock(ARGV[1])
local base, limit = ARGV[2], tonumber(ARGV[3])
local gone = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if #gone >= limit then
    break
  end
  local skey = base .. 's:' .. m
  local s = load(skey)
  if s == nil then
    redis.call('ZREM', KEYS[1], m)
  elseif now >= tonumber(s.ie) then
    redis.call('DEL', skey, base .. 'ss:' .. m)
    redis.call('ZREM', KEYS[1], m)
    gone[#gone + 1] = s.th
  end
end
return {#gone, gone}
