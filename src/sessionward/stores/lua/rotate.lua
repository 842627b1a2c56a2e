-- If the session is live: replace its token hash, bump its generation and touch it.
-- KEYS: session, session state, index.
-- ARGV: now, user_id, token_hash ('' when found by id), new token_hash.
-- Returns {now} (no such session), {now, row} (not live: unchanged) or
-- {now, row, old token_hash} (rotated).
local now = clock(ARGV[1])
local row = load(KEYS[1])
if row == nil or row.uid ~= ARGV[2] or (ARGV[3] ~= '' and row.th ~= ARGV[3]) then
  return {fmt(now)}
end
if not is_live(row, now) then
  return {fmt(now), as_reply(row)}
end
local old = row.th
row.th, row.g = ARGV[4], string.format('%d', tonumber(row.g) + 1)
touch(KEYS[1], KEYS[2], KEYS[3], row, now)  -- saves the row
return {fmt(now), as_reply(row), old}
