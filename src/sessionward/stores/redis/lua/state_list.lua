-- The names of a scope's documents (unsorted); none when the session is not live.
-- KEYS: documents[, session].  ARGV: now, user_id.
if not owner_live(ARGV[1], ARGV[2]) then
  return {}
end
local names = {}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 2) == 'd:' then
    names[#names + 1] = string.sub(field, 3)
  end
end
return names
