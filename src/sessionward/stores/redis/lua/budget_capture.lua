-- Charge what a hold's work cost (at most the hold) and release the hold (protocols.py:
-- BudgetStore.capture); a capture of 0 writes no entry. An expired hold is unknown.
-- KEYS: budget, session, ledger, holds, idempotency keys, budget index, cap.
-- ARGV: now, user base, member, hold id, actual, entry id, description.
-- Returns {status, entry, budget, user, hold id}: 'captured', 'too_much' or 'unknown'.
local now = clock(ARGV[1])
local base, m, hold, actual = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local bud = budget_now(KEYS[1], KEYS[4], now)
local held = bud and tonumber(redis.call('HGET', KEYS[1], 'h:' .. hold))
if not held then
  return outcome('unknown')
end
local u = user_view(base, KEYS[6], KEYS[7], m)
if actual > held then
  return outcome('too_much', nil, bud, u, hold)
end
redis.call('HDEL', KEYS[1], 'h:' .. hold)
redis.call('ZREM', KEYS[4], hold)
local e = nil
if actual > 0 then
  e = {i = ARGV[6], k = 'charge', a = ARGV[5], d = ARGV[7], t = fmt(now)}
  append(KEYS, e)
end
bud.sp, bud.hd = bud.sp + actual, bud.hd - held
write_budget(KEYS[1], bud)
arm(base, m, KEYS[2])
return outcome('captured', e, bud, u, hold)
