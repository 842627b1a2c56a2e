-- The number of running (or cancelling) jobs and of waiting (queued or interrupted) ones.
-- ARGV: now, base.
-- Returns {running, waiting}.
return {redis.call('ZCARD', LEASES), tonumber(redis.call('GET', NWAIT) or '0')}
