-- Decide every GCRA check in one atomic step (base.py: gcra_candidate: a negative cost, a
-- refund, is always allowed; a cost of 0 is judged like any other, so that a zero capacity
-- makes a lock); if every check allows and `apply`, store every candidate TAT. A key holds its TAT as a string with full
-- precision and expires at that TAT; a TAT not ahead of now is the same as no key, so it is
-- deleted rather than stored. On Redis Cluster the keys of one call would need a common
-- hash tag: they are declared, but each limiter key is in its own slot.
-- KEYS: one limiter key per check (a key may repeat: the later check's TAT is stored).
-- ARGV: now, apply ('1' or '0'), then period, capacity and cost of each check.
-- Returns {now, {1 or 0 per check}, {candidate TAT per check}}.
local now = clock(ARGV[1])
local allowed, tats, shown, all = {}, {}, {}, true
for i, key in ipairs(KEYS) do
  local j = 3 * i
  local period, capacity, cost = tonumber(ARGV[j]), tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])
  local tat = tonumber(redis.call('GET', key)) or now
  local candidate = math.max(math.max(tat, now) + cost * period, now)
  local ok = cost < 0 or candidate - now <= capacity
  all = all and ok
  allowed[i], tats[i], shown[i] = ok and 1 or 0, candidate, fmt(candidate)
end
if ARGV[2] == '1' and all then
  for i, key in ipairs(KEYS) do
    if tats[i] > now then
      redis.call('SET', key, shown[i], 'PX', ttl_ms(tats[i], now))
    else
      redis.call('DEL', key)
    end
  end
end
return {fmt(now), allowed, shown}
