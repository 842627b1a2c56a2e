-- Create a session unless one with its id exists, holding the user to max_sessions live ones.
-- KEYS: session, index.
-- ARGV: now, user base, member, max_sessions, evict ('1' or '0'), session_id, user_id,
--       token_hash, idle_timeout, absolute_timeout, ip, user_agent, metadata
--       (ip and user_agent: '' for none, else '+' .. value).
-- Returns {now, 'created' | 'existing', row, evicted session ids} or {now, 'refused' | 'collision'}.
local now = clock(ARGV[1])
local existing = load(KEYS[1])
if existing then
  if existing.th ~= ARGV[8] then
    return {fmt(now), 'collision'}
  end
  return {fmt(now), 'existing', as_reply(existing), {}}
end

local base = ARGV[2]
local live, top = live_sessions(base, KEYS[2], now)
local excess = #live - tonumber(ARGV[4]) + 1
if excess > 0 and ARGV[5] ~= '1' then
  return {fmt(now), 'refused'}
end
local evicted = {}
for i = 1, math.min(excess, #live) do
  local e = live[i]
  revoke(base .. 's:' .. e.m, base .. 'ss:' .. e.m, e.row, now)
  evicted[i] = e.row.sid
end

local ea = now + tonumber(ARGV[10])
local ie = math.min(now + tonumber(ARGV[9]), ea)
local row = {
  sid = ARGV[6], uid = ARGV[7], th = ARGV[8], ca = fmt(now), ls = fmt(now), it = ARGV[9],
  ie = fmt(ie), ea = fmt(ea), md = ARGV[13], g = '1', n = string.format('%d', top + 1),
}
if ARGV[11] ~= '' then
  row.ip = string.sub(ARGV[11], 2)
end
if ARGV[12] ~= '' then
  row.ua = string.sub(ARGV[12], 2)
end
save(KEYS[1], row)
local ms = ttl_ms(ie, now)
redis.call('PEXPIRE', KEYS[1], ms)
redis.call('ZADD', KEYS[2], row.ca, ARGV[3])
extend_index(KEYS[2], ms)
if redis.call('EXISTS', base .. 'b:' .. ARGV[3]) == 1 then
  arm_budget(base, ARGV[3], ms)  -- a budget set before its session: it lives as long now
end
return {fmt(now), 'created', as_reply(row), evicted}
