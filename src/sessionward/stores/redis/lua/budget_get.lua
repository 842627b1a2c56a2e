-- A session's budget, its expired holds released first; the default while it has none
-- (nothing is created).
-- KEYS: budget, holds.  ARGV: now, default limit, currency.
-- Returns {limit, spent, held, currency}.
local bud = budget_now(KEYS[1], KEYS[2], clock(ARGV[1]))
return budget_reply(bud or {lim = tonumber(ARGV[2]), sp = 0, hd = 0, cur = ARGV[3]})
