-- Change a user under compare-and-set on its password hash (mirrors
-- sessionward.rules.users.apply_change).
-- KEYS: record, unclaimed mark.
-- ARGV: now, expected password hash, new password hash, roles as JSON ('' for none, else
--       '+' .. value, each), disabled ('' unchanged, '1' or '0').
-- Returns {now, 'missing' | 'conflict'}, {now, 'unclaimed', record} (the caller decides
-- whether its username claim landed) or {now, 'updated', record}.
local now = clock(ARGV[1])
local raw = redis.call('GET', KEYS[1])
if not raw then
  return {fmt(now), 'missing'}
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {fmt(now), 'unclaimed', raw}
end
local user = cjson.decode(raw)
if ARGV[2] ~= '' and user.ph ~= string.sub(ARGV[2], 2) then
  return {fmt(now), 'conflict'}
end
if ARGV[3] ~= '' then
  user.ph = string.sub(ARGV[3], 2)
end
if ARGV[4] ~= '' then
  user.ro = string.sub(ARGV[4], 2)
end
if ARGV[5] ~= '' then
  user.dis = ARGV[5] == '1'
end
user.ua = fmt(now)
raw = cjson.encode(user)
redis.call('SET', KEYS[1], raw)
return {fmt(now), 'updated', raw}
