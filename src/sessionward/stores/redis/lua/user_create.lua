-- Write a new user's record, unless a user with this id exists, and mark it unclaimed: it
-- stays invisible until its username is claimed (user_claim.lua) and the mark is deleted.
-- The record is a JSON object: id, un (username), uk (username_key), ph (password hash),
-- ro (roles: a JSON array *as a string*, so that cjson never turns [] into {}), dis
-- (disabled), ca and ua (created_at, updated_at). Users never expire.
-- KEYS: record, unclaimed mark.
-- ARGV: now, user_id, username, username_key, password_hash, roles as JSON.
-- Returns {now, record} or {now} when the id is taken.
local now = clock(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {fmt(now)}
end
local record = cjson.encode({
  id = ARGV[2], un = ARGV[3], uk = ARGV[4], ph = ARGV[5], ro = ARGV[6], dis = false,
  ca = fmt(now), ua = fmt(now),
})
redis.call('SET', KEYS[1], record)
redis.call('SET', KEYS[2], '1')
return {fmt(now), record}
