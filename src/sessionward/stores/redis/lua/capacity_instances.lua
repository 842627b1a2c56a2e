-- The capacity samples not yet expired.
-- KEYS: the samples hash, the expiry zset (one hash tag).
-- ARGV: now.
-- Returns a flat list: id, data, expiry (a 17-digit string), for each live sample by expiry.
local now = clock(ARGV[1])
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. fmt(now), '+inf', 'WITHSCORES')
local out = {}
for i = 1, #live, 2 do
  local data = redis.call('HGET', KEYS[1], live[i])
  if data then
    out[#out + 1] = live[i]
    out[#out + 1] = data
    out[#out + 1] = live[i + 1]
  end
end
return out
