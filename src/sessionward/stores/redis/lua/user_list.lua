-- A page of the username index in username_key order (byte order, which for UTF-8 is code
-- point order, as Python sorts str).
-- KEYS: index, sorted index.  ARGV: after ('' for the start, else '+' .. username_key), count.
-- Returns {username_key, user_id or false, ...}.
local min = '-'
if ARGV[1] ~= '' then
  min = '(' .. string.sub(ARGV[1], 2)
end
local out = {}
for _, key in ipairs(redis.call('ZRANGEBYLEX', KEYS[2], min, '+', 'LIMIT', 0, tonumber(ARGV[2]))) do
  out[#out + 1] = key
  out[#out + 1] = redis.call('HGET', KEYS[1], key) or false
end
return out
