-- Extend the leases of the listed jobs this worker holds to now + lease.
-- ARGV: now, base, worker_id, lease, then the job members.
-- Returns the ids of those of them that are cancelling, in the order listed.
local now = clock(ARGV[1])
local worker, lease_expires_at = ARGV[3], fmt(now + tonumber(ARGV[4]))
local cancelling = {}
for i = 5, #ARGV do
  local m = ARGV[i]
  local status = held(m, worker)
  if status then
    redis.call('HSET', job_key(m), 'le', lease_expires_at)
    redis.call('ZADD', LEASES, lease_expires_at, m)
    if status == 'cancelling' then
      cancelling[#cancelling + 1] = redis.call('HGET', job_key(m), 'id')
    end
  end
end
return cancelling
