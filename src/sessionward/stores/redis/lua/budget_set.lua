-- Set a session's limit and currency, creating its budget if needed; refused (nothing
-- changed but the release of expired holds) below what it has spent and holds.
-- KEYS: budget, session, ledger, holds, idempotency keys, budget index.
-- ARGV: now, user base, member, limit, currency.
-- Returns {limit, spent, held, currency}, or nil when refused.
local bud = budget_now(KEYS[1], KEYS[4], clock(ARGV[1])) or {sp = 0, hd = 0}
local limit = tonumber(ARGV[4])
if limit < bud.sp + bud.hd then
  return false
end
bud.lim, bud.cur = limit, ARGV[5]
create_budget(KEYS, ARGV[2], ARGV[3], bud)
return budget_reply(bud)
