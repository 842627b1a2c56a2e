-- Revoke a live session and delete its state.
-- KEYS: session, session state.  ARGV: now, user_id.
-- Returns 1 if it revoked the session, 0 if it was not live (or not this user's).
local now = clock(ARGV[1])
local row = load(KEYS[1])
if row == nil or row.uid ~= ARGV[2] or not is_live(row, now) then
  return 0
end
revoke(KEYS[1], KEYS[2], row, now)
return 1
