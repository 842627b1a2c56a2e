-- Write a document under compare-and-set; a session's documents only while it is live.
-- The compare-and-set mirrors sessionward.rules.state.version_matches (prelude.lua).
-- KEYS: documents[, session].  ARGV: now, user_id, name, data, expected version ('' = any).
-- Returns {applied, version after the write or current (-1: absent), owner live}.
local d, v = 'd:' .. ARGV[3], 'v:' .. ARGV[3]
local version = tonumber(redis.call('HGET', KEYS[1], v))
local shown = version or -1
if not owner_live(ARGV[1], ARGV[2]) then
  return {0, shown, 0}
end
if not version_matches(version, ARGV[5]) then
  return {0, shown, 1}
end
local new = (version or 0) + 1
redis.call('HSET', KEYS[1], d, ARGV[4], v, new)
if #KEYS > 1 then
  -- a session's documents expire with it
  local ms = redis.call('PTTL', KEYS[2])
  if ms > 0 then
    redis.call('PEXPIRE', KEYS[1], ms)
  end
end
return {1, new, 1}
