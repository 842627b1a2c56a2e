-- Revoke every live session of a user but one, and delete their state.
-- KEYS: index.  ARGV: now, user base, kept session id ('' for none, else '+' .. id).
-- Returns how many sessions it revoked.
local now = clock(ARGV[1])
local base = ARGV[2]
local keep = nil
if ARGV[3] ~= '' then
  keep = string.sub(ARGV[3], 2)
end
local n = 0
for _, e in ipairs(live_sessions(base, KEYS[1], now)) do
  if e.row.sid ~= keep then
    revoke(base .. 's:' .. e.m, base .. 'ss:' .. e.m, e.row, now)
    n = n + 1
  end
end
return n
