-- Delete a document under compare-and-set; a session's documents only while it is live.
-- The compare-and-set mirrors sessionward.rules.state.version_matches (prelude.lua).
-- KEYS: documents[, session].  ARGV: now, user_id, name, expected version ('' = any).
-- Returns {applied, current version (-1: absent or deleted), owner live}.
local d, v = 'd:' .. ARGV[3], 'v:' .. ARGV[3]
local version = tonumber(redis.call('HGET', KEYS[1], v))
local shown = version or -1
if not owner_live(ARGV[1], ARGV[2]) then
  return {0, shown, 0}
end
if version == nil or not version_matches(version, ARGV[4]) then
  return {0, shown, 1}
end
redis.call('HDEL', KEYS[1], d, v)
return {1, -1, 1}
