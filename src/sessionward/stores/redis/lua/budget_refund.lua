-- Refund a charge of the session, once: a negative entry of the same amount with refund_of
-- (protocols.py: BudgetStore.refund). Expired holds are released first, as by every operation.
-- KEYS: budget, session, ledger, holds, idempotency keys, budget index, cap.
-- ARGV: now, user base, member, charge id, refund id.
-- Returns {status, entry, budget, user, hold id}: 'refunded' with the refund, 'already' with
-- the entry named (a refund, or a charge refunded before) or 'unknown'.
local now = clock(ARGV[1])
local base, m = ARGV[2], ARGV[3]
local charge = find_entry(KEYS[1], KEYS[3], ARGV[4])
if not charge then
  return outcome('unknown')
end
local bud = budget_now(KEYS[1], KEYS[4], now)
local u = user_view(base, KEYS[6], KEYS[7], m)
if charge.k ~= 'charge' or redis.call('HEXISTS', KEYS[1], 'r:' .. ARGV[4]) == 1 then
  return outcome('already', charge, bud, u)
end
local e = {
  i = ARGV[5], k = 'refund', a = '-' .. charge.a, d = 'refund of ' .. ARGV[4], t = fmt(now),
  rf = ARGV[4],
}
append(KEYS, e)
bud.sp = bud.sp - tonumber(charge.a)
redis.call('HSET', KEYS[1], 'sp', int(bud.sp))
arm(base, m, KEYS[2])
return outcome('refunded', e, bud, u)
