-- GCRA decisions. Mirrors sessionward.rules.limits.gcra_candidate
-- (tests/stores/test_redis_rule_mirrors.py keeps the two in step): a negative cost, a refund, is
-- always allowed; a cost of 0 is judged like any other, so that a zero capacity makes a lock. One
-- call decides one or more *decisions*, one after another in ARGV order: the store sends concurrent
-- callers' decisions together (limits.py: GcraLane). Each decision is what one call used to be: its
-- checks are judged against their keys' TATs and, if every one allows and it applies, every
-- candidate TAT is stored. A later decision sees what an earlier one stored. A decision that fails
-- (a key of another type: its read fails, before it writes) is answered with its error and leaves
-- the others be: every command runs through redis.pcall.
--
-- A key holds its TAT as a string with full precision (%.17g) and expires at that TAT; a TAT
-- not ahead of now is the same as no key, so it is deleted rather than stored. The TTL is
-- relative to now (an injected clock may be years away from the server's) and never below
-- 1 ms. On Redis Cluster the keys of one call would need a common hash tag: they are
-- declared, but each limiter key is in its own slot.
--
-- No prelude, few tables and strings: this runs once per request (a decision of one check,
-- the common case, takes a path of its own that builds no table).
-- KEYS: the limiter key of every check of every decision, in order (a key may repeat: the
-- later check's TAT is stored).
-- ARGV: one per decision, space separated: now (the injected clock's time, or '-' for the
-- server's TIME, read once per call), apply ('1' or '0'), then period, capacity and cost of
-- each of its checks.
-- Returns {now, one answer per decision}: now is the server's time if a decision used it,
-- else ''; an answer is one flag per check ('1' allowed, '0' refused) then each check's
-- candidate TAT, space separated, or '!' and the error of a decision that failed.
local out, server_now = {''}, nil

local function clock(arg)
  if arg ~= '-' then
    return tonumber(arg)
  end
  if not server_now then
    local t = redis.call('TIME')
    server_now = tonumber(t[1]) + tonumber(t[2]) / 1000000
    out[1] = string.format('%.17g', server_now)
  end
  return server_now
end

-- redis.pcall answers an error as {err = ...} (and a status as {ok = ...})
local function failed(reply)
  return type(reply) == 'table' and reply.err
end

local function store(key, tat, shown, now)
  if tat > now then
    return redis.pcall('SET', key, shown, 'PX', math.max(1, math.ceil((tat - now) * 1000)))
  end
  return redis.pcall('DEL', key)
end

-- One check: its answer.
local function one(key, now, apply, period, capacity, cost)
  local tat = redis.pcall('GET', key)
  if failed(tat) then
    return '!' .. tat.err
  end
  now, cost = clock(now), tonumber(cost)
  local candidate = math.max(math.max(tonumber(tat) or now, now) + cost * tonumber(period), now)
  local shown = string.format('%.17g', candidate)
  if cost >= 0 and candidate - now > tonumber(capacity) then
    return '0 ' .. shown
  end
  if apply == '1' then
    local stored = store(key, candidate, shown, now)
    if failed(stored) then
      return '!' .. stored.err
    end
  end
  return '1 ' .. shown
end

-- Any number of checks (f: the decision's fields, from its first key on): its answer.
local function many(f, first, n)
  local now = clock(f[1])
  local tats, flags, shown, all = {}, {}, {}, true
  for i = 1, n do
    local j = 3 * i
    local period, capacity, cost = tonumber(f[j]), tonumber(f[j + 1]), tonumber(f[j + 2])
    local tat = redis.pcall('GET', KEYS[first + i])
    if failed(tat) then
      return '!' .. tat.err
    end
    local candidate = math.max(math.max(tonumber(tat) or now, now) + cost * period, now)
    local ok = cost < 0 or candidate - now <= capacity
    all = all and ok
    tats[i], flags[i], shown[i + 1] = candidate, ok and '1' or '0', string.format('%.17g', candidate)
  end
  if f[2] == '1' and all then
    for i = 1, n do
      local stored = store(KEYS[first + i], tats[i], shown[i + 1], now)
      if failed(stored) then
        return '!' .. stored.err
      end
    end
  end
  shown[1] = table.concat(flags)
  return table.concat(shown, ' ')
end

local first = 0
for d = 1, #ARGV do
  local spec = ARGV[d]
  local now, apply, period, capacity, cost = string.match(spec, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
  if now then
    out[d + 1], first = one(KEYS[first + 1], now, apply, period, capacity, cost), first + 1
  else
    local f = {}
    for part in string.gmatch(spec, '[^ ]+') do
      f[#f + 1] = part
    end
    local n = (#f - 2) / 3
    out[d + 1], first = many(f, first, n), first + n
  end
end
return out
