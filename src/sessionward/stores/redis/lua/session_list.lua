-- A user's live sessions, oldest first.
-- KEYS: index.  ARGV: now, user base.
-- Returns {now, {row, ...}}.
local now = clock(ARGV[1])
local rows = {}
for i, e in ipairs(live_sessions(ARGV[2], KEYS[1], now)) do
  rows[i] = as_reply(e.row)
end
return {fmt(now), rows}
