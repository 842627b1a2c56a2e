-- Record the progress (never decreasing) and message of a job this worker holds.
-- ARGV: now, base, job member, worker_id, progress, message.
-- Returns the job's status, or nil when this worker does not hold it.
local m = ARGV[3]
local status = held(m, ARGV[4])
if not status then
  return false
end
local key = job_key(m)
local progress = math.max(tonumber(redis.call('HGET', key, 'pg')), tonumber(ARGV[5]))
redis.call('HSET', key, 'pg', fmt(progress), 'msg', ARGV[6])
return status
