-- The user's jobs, newest first.
-- ARGV: now, base, user member, limit (at least 1).
-- Returns the rows.
local rows = {}
local members = redis.call('ZREVRANGE', list_key(ARGV[3]), 0, tonumber(ARGV[4]) - 1)
for i, m in ipairs(members) do
  rows[i] = job_row(m)
end
return rows
