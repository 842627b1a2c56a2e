-- If the session is live: replace its token hash, bump its generation and touch it; the old
-- hash becomes prev_token_hash and is remembered as spent.
-- KEYS: session, session state, index, spent token hashes.
-- ARGV: now, user_id, token_hash ('' when found by id), new token_hash.
-- Returns {now} (no such session), {now, row} (not live: unchanged) or
-- {now, row, 'rotated'}.
local now = clock(ARGV[1])
local row = load(KEYS[1])
if row == nil or row.uid ~= ARGV[2] or (ARGV[3] ~= '' and row.th ~= ARGV[3]) then
  return {fmt(now)}
end
if not is_live(row, now) then
  return {fmt(now), as_reply(row)}
end
rotate_token(KEYS, row, ARGV[4], now)
return {fmt(now), as_reply(row), 'rotated'}
