-- The recorded totals of some of one user's budgets and the sums they must equal: every
-- entry of the ledger, every hold (expired or not, until released).
-- KEYS: budget keys of that user's sessions (found by SCAN).
-- Returns per budget {spent, held, ledger high, ledger low, holds high, holds low}, or false
-- for a budget gone meanwhile.
local out = {}
for i, b in ipairs(KEYS) do
  local base, m = string.match(b, '^(.*:)b:([^:]*)$')
  local v = redis.call('HMGET', b, 'sp', 'hd')
  if v[1] then
    local ledger, holds, start = {0, 0}, {0, 0}, '-'
    repeat
      local page = redis.call('XRANGE', base .. 'l:' .. m, start, '+', 'COUNT', 1000)
      for _, item in ipairs(page) do
        add(ledger, tonumber(fields(item[2]).a))
        start = '(' .. item[1]
      end
    until #page < 1000
    for _, id in ipairs(redis.call('ZRANGE', base .. 'h:' .. m, 0, -1)) do
      add(holds, tonumber(redis.call('HGET', b, 'h:' .. id)) or 0)
    end
    ledger, holds = limbs(ledger), limbs(holds)
    out[i] = {v[1], v[2], ledger[1], ledger[2], holds[1], holds[2]}
  else
    out[i] = false
  end
end
return out
