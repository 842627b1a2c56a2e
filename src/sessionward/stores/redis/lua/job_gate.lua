-- The global slot gate of sharded job queues (job_shards > 1; jobs_sharded.py). KEYS[1]
-- is the gate, a ZSET in its own slot: one member per slot held overall, scored by when it
-- was reserved. A claim reserves here first, then starts jobs on shards, each start holding
-- one reserved member (the job's 'gm' field, indexed in its shard's HASH 'gm'); a shard
-- releases a job's slot in the script that ends it, then the gate member is removed.
-- ARGV: now, op, then per op:
--   'reserve', overall, token, n: add up to n members '<token>:<i>' while fewer than
--     `overall` are held; returns how many.
--   'stale', age, limit: up to `limit` members reserved more than `age` seconds ago.
local now = clock(ARGV[1])
local op = ARGV[2]
if op == 'reserve' then
  local free = tonumber(ARGV[3]) - redis.call('ZCARD', KEYS[1])
  local n = math.min(tonumber(ARGV[5]), free)
  for i = 1, n do
    redis.call('ZADD', KEYS[1], fmt(now), ARGV[4] .. ':' .. i)
  end
  return math.max(n, 0)
end
if op == 'stale' then
  return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', fmt(now - tonumber(ARGV[3])),
    'LIMIT', 0, tonumber(ARGV[4]))
end
return redis.error_reply('unknown gate op ' .. op)
