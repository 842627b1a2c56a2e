-- End a job this worker holds: `status` (succeeded, failed or cancelled; a job being
-- cancelled ends cancelled whatever is asked), with its result and error; succeeded sets
-- the progress to 1. Frees its slot; the worker id stays on the row.
-- ARGV: now, base, job member, worker_id, status, result, error ('' for None, else '+' ..).
-- Returns the row, or nil when this worker does not hold the job.
local now = clock(ARGV[1])
local m = ARGV[3]
local status, um = held(m, ARGV[4])
if not status then
  return false
end
local key = job_key(m)
local final = status == 'cancelling' and 'cancelled' or ARGV[5]
redis.call('HSET', key, 'st', final)
if final == 'succeeded' then
  redis.call('HSET', key, 'pg', '1')
end
set_optional(key, 'res', ARGV[6])
set_optional(key, 'err', ARGV[7])
redis.call('HDEL', key, 'le')
release(um, m)
finished(key, m, now)
return job_row(m)
