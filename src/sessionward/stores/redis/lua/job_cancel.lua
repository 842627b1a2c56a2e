-- Cancel one of the user's jobs: a waiting one becomes cancelled at once (and leaves its
-- queue), a running one cancelling (it keeps its slot until its worker ends it or the
-- reaper does); any other is left as it is.
-- ARGV: now, base, job member, user_id.
-- Returns the row, or nil when the user has no such job.
local now = clock(ARGV[1])
local m = ARGV[3]
local key = job_key(m)
local job = redis.call('HMGET', key, 'uid', 'st', 'um')
if job[1] ~= ARGV[4] then
  return false
end
local status, um = job[2], job[3]
if status == 'queued' or status == 'interrupted' then
  redis.call('HSET', key, 'st', 'cancelled')
  redis.call('ZREM', queue_key(um), m)
  dequeued(um, 1)
  finished(key, m, now)
elseif status == 'running' then
  redis.call('HSET', key, 'st', 'cancelling')
end
return job_row(m)
