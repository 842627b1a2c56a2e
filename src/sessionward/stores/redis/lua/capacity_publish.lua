-- Replace one instance's capacity sample, and drop the samples that have expired.
-- KEYS: the samples hash, the expiry zset (one hash tag).
-- ARGV: now, instance id, data (JSON), ttl in seconds.
-- Returns the sample's expiry (a 17-digit string).
local now = clock(ARGV[1])
local expires = now + tonumber(ARGV[4])
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', fmt(now))
for _, id in ipairs(gone) do
  redis.call('HDEL', KEYS[1], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now))
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], fmt(expires), ARGV[2])
return fmt(expires)
