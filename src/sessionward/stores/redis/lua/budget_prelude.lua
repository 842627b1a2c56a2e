-- Prepended, after prelude.lua, to the budget scripts (budgets.py; key layout in keys.py).
-- The contract is sessionward.stores.protocols.BudgetStore. `refusal` mirrors
-- sessionward.rules.budgets.charge_refusal (tests/stores/test_redis_rule_mirrors.py keeps
-- the two in step).
--
-- Amounts are integers of at most 2^53 in magnitude, exact in Lua's doubles. They travel and
-- are stored as decimal strings and are formatted with int() ('%.0f'), never with tostring()
-- or '..' (14 digits) nor '%d' (a C long, 32 bits on some builds). A user's sums run over
-- many sessions and may pass 2^53, so they are kept exact in two limbs (see add).
--
-- KEYS of the scripts that move money: the session's budget, the session, its ledger, its
-- holds, its idempotency keys, then the user's budget index and the user's cap.
-- The budget is a HASH: lim, sp, hd, cur (limit, spent, held, currency), 'e:' .. entry id ->
-- the entry's stream id, 'r:' .. charge id -> its refund's id, 'h:' .. hold id -> amount.
-- The ledger is a STREAM of entries: i (id), k (kind), a (amount), d (description),
-- t (created_at), ik (idempotency key) and rf (refund_of), the last two when present.
-- The holds are a ZSET of hold ids by expires_at; the idempotency keys a HASH key -> entry id.

local function int(x)
  return string.format('%.0f', x)
end

-- Two limbs {high, low} of base 10^8: exact for sums of up to ~9 * 10^7 amounts of 2^53.
-- fmod is exact, so `x - low` is a multiple of the base and dividing it is exact too.
local LIMB = 100000000

local function add(acc, x)
  local low = math.fmod(x, LIMB)
  acc[1] = acc[1] + (x - low) / LIMB
  acc[2] = acc[2] + low
  return acc
end

local function norm(acc)
  local low = math.fmod(acc[2], LIMB)
  if low < 0 then
    low = low + LIMB
  end
  return {acc[1] + (acc[2] - low) / LIMB, low}
end

local function above(a, b)
  a, b = norm(a), norm(b)
  return a[1] > b[1] or (a[1] == b[1] and a[2] > b[2])
end

-- The session's budget as numbers (cur a string), or nil when it has none.
local function read_budget(b)
  local v = redis.call('HMGET', b, 'lim', 'sp', 'hd', 'cur')
  if not v[1] then
    return nil
  end
  return {lim = tonumber(v[1]), sp = tonumber(v[2]), hd = tonumber(v[3]), cur = v[4]}
end

local function write_budget(b, bud)
  redis.call('HSET', b, 'lim', int(bud.lim), 'sp', int(bud.sp), 'hd', int(bud.hd), 'cur', bud.cur)
end

-- Release up to `limit` (nil: all) of the session's holds that expired by now (expires_at
-- <= now); returns how many.
local function expire_holds(b, h, now, limit)
  local range = {'ZRANGEBYSCORE', h, '-inf', fmt(now)}
  if limit then
    range[5], range[6], range[7] = 'LIMIT', '0', int(limit)
  end
  local ids = redis.call(unpack(range))
  if #ids == 0 then
    return 0
  end
  local held = tonumber(redis.call('HGET', b, 'hd')) or 0
  for _, id in ipairs(ids) do
    held = held - (tonumber(redis.call('HGET', b, 'h:' .. id)) or 0)
    redis.call('HDEL', b, 'h:' .. id)
    redis.call('ZREM', h, id)
  end
  if redis.call('EXISTS', b) == 1 then
    redis.call('HSET', b, 'hd', int(held))
  end
  return #ids
end

-- The budget as it is now: expired holds released first (lazily, by every operation on it).
local function budget_now(b, h, now)
  expire_holds(b, h, now, nil)
  return read_budget(b)
end

-- Every key of the session's budget lives at least as long as the session (a day when there
-- is no session key: a budget set for a session that is gone, or never was).
local function arm(base, m, session)
  local ms = redis.call('PTTL', session)
  if ms < 1 then
    ms = DAY_MS
  end
  arm_budget(base, m, ms)
end

-- A new budget joins the user's budget index, through which the user's sums are taken.
local function create_budget(keys, base, m, bud)
  write_budget(keys[1], bud)
  redis.call('SADD', keys[6], m)
  arm(base, m, keys[2])
end

-- The sums over the user's budgets other than member `skip`, under the user's cap `limit`
-- (a decimal string). Members whose budget is gone leave the index.
local function user_sums(base, bidx, limit, skip)
  local u = {cap = tonumber(limit), sp = {0, 0}, hd = {0, 0}}
  for _, m in ipairs(redis.call('SMEMBERS', bidx)) do
    if m ~= skip then
      local v = redis.call('HMGET', base .. 'b:' .. m, 'sp', 'hd')
      if v[1] then
        add(u.sp, tonumber(v[1]))
        add(u.hd, tonumber(v[2]))
      else
        redis.call('SREM', bidx, m)
      end
    end
  end
  return u
end

-- The same under the user's stored cap, or nil when the user has none.
local function user_view(base, bidx, cap, skip)
  local limit = redis.call('GET', cap)
  return limit and user_sums(base, bidx, limit, skip) or nil
end

-- The user's totals with budget `bud` (the one skipped above) as it is now.
local function user_totals(u, bud)
  local sp, hd = {u.sp[1], u.sp[2]}, {u.hd[1], u.hd[2]}
  if bud then
    add(sp, bud.sp)
    add(hd, bud.hd)
  end
  return sp, hd
end

-- Mirrors sessionward.rules.budgets.charge_refusal: amount > limit - spent - held, for the
-- session, then for the user.
local function refusal(bud, u, amount)
  if amount > bud.lim - bud.sp - bud.hd then
    return 'exceeded'
  end
  if u then
    local sp, hd = user_totals(u, bud)
    if above(add({sp[1] + hd[1], sp[2] + hd[2]}, amount), add({0, 0}, u.cap)) then
      return 'user_exceeded'
    end
  end
  return nil
end

local function limbs(acc)
  acc = norm(acc)
  return {int(acc[1]), int(acc[2])}
end

local function user_reply(u, bud)
  if not u then
    return false
  end
  local sp, hd = user_totals(u, bud)
  sp, hd = limbs(sp), limbs(hd)
  return {int(u.cap), sp[1], sp[2], hd[1], hd[2]}
end

local function budget_reply(bud)
  return {int(bud.lim), int(bud.sp), int(bud.hd), bud.cur}
end

local function entry_reply(e)
  return {e.i, e.k, e.a, e.ik or false, e.d, e.t, e.rf or false}
end

-- Every reply of a ledger operation: {status, entry, budget, user, hold id}.
local function outcome(status, entry, bud, u, hold)
  local e = entry and entry_reply(entry) or false
  return {status, e, bud and budget_reply(bud) or false, user_reply(u, bud), hold or false}
end

local function fields(flat)
  local e = {}
  for j = 1, #flat, 2 do
    e[flat[j]] = flat[j + 1]
  end
  return e
end

-- An entry of the session's ledger by id, or nil.
local function find_entry(b, l, id)
  local sid = redis.call('HGET', b, 'e:' .. id)
  if not sid then
    return nil
  end
  local found = redis.call('XRANGE', l, sid, sid)[1]
  return found and fields(found[2]) or nil
end

-- Append an entry and index it: by id, by idempotency key, and as its charge's refund.
local function append(keys, e)
  local args = {'XADD', keys[3], '*', 'i', e.i, 'k', e.k, 'a', e.a, 'd', e.d, 't', e.t}
  if e.ik then
    args[#args + 1], args[#args + 2] = 'ik', e.ik
    redis.call('HSET', keys[5], e.ik, e.i)
  end
  if e.rf then
    args[#args + 1], args[#args + 2] = 'rf', e.rf
    redis.call('HSET', keys[1], 'r:' .. e.rf, e.i)
  end
  redis.call('HSET', keys[1], 'e:' .. e.i, redis.call(unpack(args)))
end
