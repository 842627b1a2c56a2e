-- Delete up to `limit` jobs that finished before `finished_before`, those that finished
-- first first (ties: by job member), reading no other job.
-- ARGV: now, base, finished_before, limit (at least 1).
-- Returns the deleted jobs' members.
local old = redis.call('ZRANGEBYSCORE', DONE, '-inf', '(' .. ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
for _, m in ipairs(old) do
  local key = job_key(m)
  local um = redis.call('HGET', key, 'um')
  redis.call('ZREM', list_key(um), m)
  redis.call('ZREM', started_key(um), m)
  redis.call('ZREM', DONE, m)
  redis.call('DEL', key)
end
return old
