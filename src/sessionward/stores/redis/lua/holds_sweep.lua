-- Release up to `limit` expired holds of one user's sessions.
-- KEYS: holds keys of that user's sessions (found by SCAN).  ARGV: now, limit.
-- Returns how many holds it released.
local now, left = clock(ARGV[1]), tonumber(ARGV[2])
for _, h in ipairs(KEYS) do
  if left <= 0 then
    break
  end
  local base, m = string.match(h, '^(.*:)h:([^:]*)$')
  left = left - expire_holds(base .. 'b:' .. m, h, now, left)
end
return tonumber(ARGV[2]) - left
