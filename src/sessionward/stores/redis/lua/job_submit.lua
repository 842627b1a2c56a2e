-- Queue a job, unless its user already has max_queued waiting jobs. A job id that exists
-- already is this very submission sent again (its reply was lost) when the user, kind,
-- params and max_attempts are the same: then the job is returned as it is now. Otherwise the
-- id belongs to another job and nothing is written.
-- ARGV: now, base, job member, user member, max_queued, job_id, user_id, kind, params,
-- max_attempts.
-- Returns {'queued', row}, {'full'} or {'collision'}.
local now = clock(ARGV[1])
local m, um = ARGV[3], ARGV[4]
local key = job_key(m)
local old = redis.call('HMGET', key, 'id', 'uid', 'kind', 'par', 'max')
if old[1] then
  if old[2] == ARGV[7] and old[3] == ARGV[8] and old[4] == ARGV[9] and old[5] == ARGV[10] then
    return {'queued', job_row(m)}
  end
  return {'collision'}
end
if redis.call('ZCARD', queue_key(um)) >= tonumber(ARGV[5]) then
  return {'full'}
end
local seq = redis.call('INCR', SEQ)
redis.call('HSET', key, 'id', ARGV[6], 'uid', ARGV[7], 'um', um, 'kind', ARGV[8],
  'par', ARGV[9], 'st', 'queued', 'pg', '0', 'msg', '', 'ca', fmt(now), 'att', '0',
  'max', ARGV[10], 'seq', seq)
enqueue(um, m, seq)
redis.call('ZADD', list_key(um), seq, m)
return {'queued', job_row(m)}
