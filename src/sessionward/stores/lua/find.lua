-- Read a session; touch it if live and touch_interval has passed since last_seen_at.
-- This is validate's hot path: one HMGET, whose reply goes back as it is unless a touch is
-- due, so the common case builds no table (values[5], [7], [9]: ls, ie, ra in FIELDS).
-- KEYS: session, session state, index.
-- ARGV: now, user_id, token_hash ('' when found by id), touch_interval ('' never touches).
-- Returns {now, row}, or {now} when there is no such session or it no longer carries the
-- token hash (a stale route after a rotation).
local now = clock(ARGV[1])
local values = redis.call('HMGET', KEYS[1], unpack(FIELDS))
if not values[1] or values[2] ~= ARGV[2] or (ARGV[3] ~= '' and values[3] ~= ARGV[3]) then
  return {fmt(now)}
end
local live = not values[9] and now < tonumber(values[7])
if ARGV[4] ~= '' and live and now - tonumber(values[5]) >= tonumber(ARGV[4]) then
  local row = as_row(values)
  touch(KEYS[1], KEYS[2], KEYS[3], row, now)
  values = as_reply(row)
end
return {fmt(now), values}
