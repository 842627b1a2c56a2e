-- Charge, or (hold = '1') reserve, in one atomic step (protocols.py: BudgetStore.charge and
-- reserve): the session must be live; its budget is created on first use and its expired
-- holds released; the same idempotency key again answers with its first charge ('replayed',
-- or 'mismatch' for another amount); `refusal` (budget_prelude.lua) decides, for the
-- session, then for the user; then the ledger line (or the hold) and the totals are written
-- together.
-- Mirrors sessionward.rules.budgets.charge_refusal (through `refusal`;
-- tests/stores/test_redis_rule_mirrors.py keeps the two in step).
-- KEYS: budget, session, ledger, holds, idempotency keys, budget index, cap.
-- ARGV: now, user base, member, user_id, amount, entry (or hold) id, idempotency key ('' for
--       none, else '+' .. key), description, default limit, currency, hold ('1' or '0'),
--       hold_ttl.
-- Returns {status, entry, budget, user, hold id} (budget_prelude.lua: outcome).
local now = clock(ARGV[1])
local s = load(KEYS[2])
if not (s and s.uid == ARGV[4] and is_live(s, now)) then
  return outcome('closed')
end
local base, m, amount = ARGV[2], ARGV[3], tonumber(ARGV[5])
local bud = budget_now(KEYS[1], KEYS[4], now)
if not bud then
  bud = {lim = tonumber(ARGV[9]), sp = 0, hd = 0, cur = ARGV[10]}
  create_budget(KEYS, base, m, bud)
end
local key = ARGV[7] ~= '' and string.sub(ARGV[7], 2) or nil
if key then
  local first = redis.call('HGET', KEYS[5], key)
  local e = first and find_entry(KEYS[1], KEYS[3], first)
  if e then
    local u = user_view(base, KEYS[6], KEYS[7], m)
    return outcome(e.a == ARGV[5] and 'replayed' or 'mismatch', e, bud, u)
  end
end
local u = user_view(base, KEYS[6], KEYS[7], m)
local why = refusal(bud, u, amount)
if why then
  return outcome(why, nil, bud, u)
end
if ARGV[11] == '1' then
  redis.call('ZADD', KEYS[4], fmt(now + tonumber(ARGV[12])), ARGV[6])
  redis.call('HSET', KEYS[1], 'h:' .. ARGV[6], ARGV[5])
  bud.hd = bud.hd + amount
  redis.call('HSET', KEYS[1], 'hd', int(bud.hd))
  arm(base, m, KEYS[2])
  return outcome('held', nil, bud, u, ARGV[6])
end
local e = {i = ARGV[6], k = 'charge', a = ARGV[5], ik = key, d = ARGV[8], t = fmt(now)}
append(KEYS, e)
bud.sp = bud.sp + amount
redis.call('HSET', KEYS[1], 'sp', int(bud.sp))
arm(base, m, KEYS[2])
return outcome('charged', e, bud, u)
