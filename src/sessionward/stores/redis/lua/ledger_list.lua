-- A page of a session's ledger, oldest first, after the entry `after` (none if that entry is
-- not in this ledger).
-- KEYS: budget, ledger.  ARGV: after ('' for the start, else '+' .. entry id), count (>= 1).
-- Returns {entry, ...} (budget_prelude.lua: entry_reply).
local start = '-'
if ARGV[1] ~= '' then
  local sid = redis.call('HGET', KEYS[1], 'e:' .. string.sub(ARGV[1], 2))
  if not sid then
    return {}
  end
  start = '(' .. sid
end
local out = {}
for i, item in ipairs(redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', ARGV[2])) do
  out[i] = entry_reply(fields(item[2]))
end
return out
