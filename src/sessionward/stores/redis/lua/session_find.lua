-- Touch a session if it is live and touch_interval has passed since last_seen_at, deciding
-- on the server's clock. Validate reads a session with a plain GET and runs this script only
-- when its own clock says a touch is due (about once per touch_interval per session).
-- The touch condition mirrors sessionward.rules.sessions.touch_due.
-- KEYS: session, session state, index, spent token hashes.
-- ARGV: now, user_id, token_hash ('' when found by id), touch_interval.
-- Returns {now, row as JSON}, or {now} when there is no such session or it no longer
-- carries the token hash (a spent token).
local now = clock(ARGV[1])
local raw = redis.call('GET', KEYS[1])
if not raw then
  return {fmt(now)}
end
local row = cjson.decode(raw)
if row.uid ~= ARGV[2] or (ARGV[3] ~= '' and row.th ~= ARGV[3]) then
  return {fmt(now)}
end
if is_live(row, now) and now - tonumber(row.ls) >= tonumber(ARGV[4]) then
  touch(KEYS, row, now)
  raw = cjson.encode(row)
end
return {fmt(now), raw}
