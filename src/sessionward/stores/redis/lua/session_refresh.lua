-- Rotate by a presented token hash, with reuse detection (protocols.py:
-- SessionStore.refresh_session). A spent hash's verdict mirrors
-- sessionward.rules.sessions.refresh_of_spent.
-- A hash the session carries now rotates it if it is live; a hash it carried before (in its spent
-- set) is a replay of the latest rotation if it was that rotation's old hash, the rotation produced
-- new_token_hash, it happened at most `grace` seconds ago and the session is live; any other spent
-- hash revokes the session.
-- KEYS: session, session state, index, spent token hashes.
-- ARGV: now, user_id, token_hash, new token_hash, grace.
-- Returns {now, 'unknown'} or {now, 'rotated' | 'replayed' | 'reused' | 'dead', row}.
local now = clock(ARGV[1])
local row = load(KEYS[1])
if row == nil or row.uid ~= ARGV[2] then
  return {fmt(now), 'unknown'}
end
local live = is_live(row, now)
if row.th == ARGV[3] then
  if not live then
    return {fmt(now), 'dead', as_reply(row)}
  end
  rotate_token(KEYS, row, ARGV[4], now)
  return {fmt(now), 'rotated', as_reply(row)}
end
-- The route led here, but only the spent set proves the session ever carried this hash.
if redis.call('SISMEMBER', KEYS[4], ARGV[3]) == 0 then
  return {fmt(now), 'unknown'}
end
local latest = row.pt == ARGV[3] and row.th == ARGV[4] and row.rt ~= nil
if live and latest and now - tonumber(row.rt) <= tonumber(ARGV[5]) then
  return {fmt(now), 'replayed', as_reply(row)}
end
if live then
  revoke(KEYS[1], KEYS[2], row, now)
end
return {fmt(now), 'reused', as_reply(row)}
