-- Read, set or remove a user's cap. Only the cap is stored (no TTL: a cap that expired would
-- lift a limit unnoticed); spent and held are the sums over the user's session budgets,
-- taken here. A cap below them is refused and nothing changes.
-- KEYS: budget index, cap.  ARGV: user base, '' (read), '-' (remove) or '+' .. limit (set).
-- Returns {cap, spent high, spent low, held high, held low} (budget_prelude.lua: limbs), or
-- nil without a cap (or when refused).
if ARGV[2] == '-' then
  redis.call('DEL', KEYS[2])
  return false
end
if ARGV[2] == '' then
  return user_reply(user_view(ARGV[1], KEYS[1], KEYS[2], nil), nil)
end
local limit = string.sub(ARGV[2], 2)
local u = user_sums(ARGV[1], KEYS[1], limit, nil)
if above({u.sp[1] + u.hd[1], u.sp[2] + u.hd[2]}, add({0, 0}, u.cap)) then
  return false
end
redis.call('SET', KEYS[2], limit)
return user_reply(u, nil)
