-- Claim a username for a user: the uniqueness point of registration. The username index
-- (HASH username_key -> user_id) and its ordered companion (ZSET of username_keys, score 0)
-- share a hash tag, so they change together. A claim whose owner's record is missing
-- (checked by the caller) may be taken over by naming that owner as `stale`.
-- KEYS: index, sorted index.  ARGV: username_key, user_id, stale owner ('' for none).
-- Returns the username's owner after the claim (user_id when it won, or already had it).
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if not owner or (ARGV[3] ~= '' and owner == ARGV[3]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  owner = ARGV[2]
end
if owner == ARGV[2] then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
end
return owner
