-- Mirrors sessionward.rules.jobs.release (the conformance suite's release cases keep the two
-- in step).
-- Hand back the given jobs this worker holds (its clean stop): a cancelling one becomes
-- cancelled; a running one queued again in its place in its user's queue (by seq), the
-- attempt it was on not charged, progress 0, with the message given. Frees their slots.
-- Jobs not held by this worker are left as they are.
-- ARGV: now, base, worker_id, message, job members...
-- Returns the released rows, by seq.

local now, worker, message = clock(ARGV[1]), ARGV[3], ARGV[4]
local held_jobs, seen = {}, {}
for i = 5, #ARGV do
  local m = ARGV[i]
  local status, um = held(m, worker)
  if status and not seen[m] then
    seen[m] = true
    held_jobs[#held_jobs + 1] = {m = m, um = um, status = status,
                                 seq = tonumber(redis.call('HGET', job_key(m), 'seq'))}
  end
end
table.sort(held_jobs, function(a, b) return a.seq < b.seq end)
local rows = {}
for i, job in ipairs(held_jobs) do
  local key = job_key(job.m)
  release(job.um, job.m)
  redis.call('HDEL', key, 'wid', 'le')
  if job.status == 'cancelling' then
    redis.call('HSET', key, 'st', 'cancelled')
    finished(key, job.m, now)
  else
    local attempts = math.max(tonumber(redis.call('HGET', key, 'att')) - 1, 0)
    redis.call('HSET', key, 'st', 'queued', 'att', attempts, 'pg', '0', 'msg', message)
    enqueue(job.um, job.m, job.seq)
  end
  rows[i] = job_row(job.m)
end
return rows
