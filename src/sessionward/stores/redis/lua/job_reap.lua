-- Mirrors sessionward.rules.jobs.reap (the conformance suite's reaper cases keep the two in
-- step).
-- Jobs whose lease expired (lease_expires_at <= now: their worker died), up to `limit` of
-- them by seq: a cancelling one becomes cancelled; a running one interrupted while attempts
-- remain (back in its place in its user's queue), else failed. Frees their slots. Only
-- running jobs have leases, so the work is bounded by the running jobs.
-- ARGV: now, base, limit (at least 1).
-- Returns the rows as they end up, by seq.

local function reap(m, now)
  local key = job_key(m)
  local job = redis.call('HMGET', key, 'st', 'att', 'max', 'um', 'seq')
  local status, um = job[1], job[4]
  release(um, m)
  redis.call('HDEL', key, 'wid', 'le')
  if status == 'cancelling' then
    redis.call('HSET', key, 'st', 'cancelled')
    finished(key, m, now)
  elseif tonumber(job[2]) < tonumber(job[3]) then
    redis.call('HSET', key, 'st', 'interrupted',
      'msg', 'interrupted: its worker stopped; it will run again')
    enqueue(um, m, job[5])
  else
    redis.call('HSET', key, 'st', 'failed', 'err', "the job's worker stopped too many times")
    finished(key, m, now)
  end
end

local now = clock(ARGV[1])
local dead = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', fmt(now))) do
  dead[#dead + 1] = {m = m, seq = tonumber(redis.call('HGET', job_key(m), 'seq'))}
end
table.sort(dead, function(a, b) return a.seq < b.seq end)
local rows = {}
for i = 1, math.min(tonumber(ARGV[3]), #dead) do
  reap(dead[i].m, now)
  rows[i] = job_row(dead[i].m)
end
return rows
