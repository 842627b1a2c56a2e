-- Prepended, after prelude.lua, to the job scripts (jobs.py; key layout in keys.py). The
-- contract is sessionward.stores.protocols.JobStore; the rules are sessionward.rules.jobs.
--
-- Every job key carries the hash tag {jobs}, so all of them live in one Redis Cluster slot:
-- a claim must see the queues of every user and the global counts in one atomic step. The
-- shared keys are declared (KEYS, below); a job's and a user's keys are built from the base
-- 'P:{jobs}:' (ARGV[2]): undeclared, but in the declared keys' slot, so this stays
-- cluster-compatible.
--
-- KEYS of every job script: the seq counter, the SET of (encoded) users with waiting jobs,
-- the HASH user -> running (or cancelling) jobs, the ZSET of running jobs by
-- lease_expires_at, the ZSET of finished jobs by finished_at, the count of waiting jobs.
-- ARGV of every job script: now ('' for the server's TIME), the base, then its own.
--
-- The invariants every script keeps, in the same step as the status change:
--   queued, interrupted    in its user's queue (q:U, by seq); U in READY; counted in NWAIT
--   running, cancelling    in LEASES (by lease_expires_at); counted in BUSY[U]
--   succeeded, failed, cancelled    in DONE (by finished_at), until purged
-- and every job is in its user's list (a:U, by seq) until purged, and every job that ever
-- started in its user's started jobs (s:U, by started_at), whose top is the user's latest
-- start (rules.jobs.fair_order's last_started). ZCARD(LEASES) is the number of running jobs;
-- NWAIT the number of waiting ones. Nothing here has a TTL.
local SEQ, READY, BUSY, LEASES, DONE, NWAIT = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local BASE = ARGV[2]

-- A job is a HASH; these are its fields in the order of every row a script returns
-- (jobs.JOB_FIELDS): job_id, user_id, kind, params, status, progress, message, result,
-- error, created_at, started_at, finished_at, attempts, max_attempts, worker_id,
-- lease_expires_at, seq, then 'gm': the global slot its latest start held (sharded queues
-- only: see job_gate.lua). A None is an absent field. The hash also holds 'um', the user's
-- encoded id, from which its user's keys are built.
local JOB_FIELDS = {'id', 'uid', 'kind', 'par', 'st', 'pg', 'msg', 'res', 'err', 'ca', 'sa', 'fa', 'att', 'max', 'wid', 'le', 'seq', 'gm'}

local function job_key(m)
  return BASE .. 'j:' .. m
end

local function queue_key(um)
  return BASE .. 'q:' .. um
end

local function list_key(um)
  return BASE .. 'a:' .. um
end

local function started_key(um)
  return BASE .. 's:' .. um
end

-- false, not nil, for an absent field (HMGET's nil): a nil would end the array
local function job_row(m)
  return redis.call('HMGET', job_key(m), unpack(JOB_FIELDS))
end

-- '' is None (the field is removed); '+text' is text
local function set_optional(key, field, arg)
  if arg == '' then
    redis.call('HDEL', key, field)
  else
    redis.call('HSET', key, field, string.sub(arg, 2))
  end
end

-- A waiting job takes its place in its user's queue: by seq, so an interrupted job goes back
-- where it was.
local function enqueue(um, m, seq)
  redis.call('ZADD', queue_key(um), seq, m)
  redis.call('SADD', READY, um)
  redis.call('INCR', NWAIT)
end

local function dequeued(um, count)
  if redis.call('EXISTS', queue_key(um)) == 0 then
    redis.call('SREM', READY, um)
  end
  redis.call('DECRBY', NWAIT, count)
end

-- A running job holds a slot: it is in LEASES and counted in its user's BUSY.
local function hold(um, m, lease_expires_at)
  redis.call('ZADD', LEASES, lease_expires_at, m)
  redis.call('HINCRBY', BUSY, um, 1)
end

local function release(um, m)
  local gm = redis.call('HGET', job_key(m), 'gm')
  if gm then
    redis.call('HDEL', BASE .. 'gm', gm)  -- the gate member is removed after this script
  end
  redis.call('ZREM', LEASES, m)
  if redis.call('HINCRBY', BUSY, um, -1) <= 0 then
    redis.call('HDEL', BUSY, um)
  end
end

-- succeeded, failed or cancelled at `now`: stays until purge_jobs deletes it
local function finished(key, m, now)
  redis.call('HSET', key, 'fa', fmt(now))
  redis.call('ZADD', DONE, fmt(now), m)
end

-- The job's status and user if this worker holds it (running or cancelling), else nil.
local function held(m, worker)
  local job = redis.call('HMGET', job_key(m), 'st', 'wid', 'um')
  if (job[1] == 'running' or job[1] == 'cancelling') and job[2] == worker then
    return job[1], job[3]
  end
  return nil
end
