-- Release a hold without charging (protocols.py: BudgetStore.release). An expired hold is unknown.
-- KEYS: budget, session, ledger, holds, idempotency keys, budget index, cap.
-- ARGV: now, user base, member, hold id.
-- Returns {status, entry, budget, user, hold id}: 'released' or 'unknown'.
local now = clock(ARGV[1])
local base, m, hold = ARGV[2], ARGV[3], ARGV[4]
local bud = budget_now(KEYS[1], KEYS[4], now)
local held = bud and tonumber(redis.call('HGET', KEYS[1], 'h:' .. hold))
if not held then
  return outcome('unknown')
end
redis.call('HDEL', KEYS[1], 'h:' .. hold)
redis.call('ZREM', KEYS[4], hold)
bud.hd = bud.hd - held
redis.call('HSET', KEYS[1], 'hd', int(bud.hd))
return outcome('released', nil, bud, user_view(base, KEYS[6], KEYS[7], m), hold)
