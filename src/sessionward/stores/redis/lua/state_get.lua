-- Read one document.
-- KEYS: documents[, session].  ARGV: now, user_id, name.
-- Returns {data, version}, with both nil when absent; nil when the session is not live.
if not owner_live(ARGV[1], ARGV[2]) then
  return false
end
return redis.call('HMGET', KEYS[1], 'd:' .. ARGV[3], 'v:' .. ARGV[3])
