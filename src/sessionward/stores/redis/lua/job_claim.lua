-- Mirrors sessionward.rules.jobs.fair_order (the conformance suite's claim-order cases keep
-- the two in step).
-- Start up to `want` waiting jobs by that order, counting every running or cancelling
-- job in the store against the limits: while slots are free, the next job is the head of
-- the queue of the user with the fewest running jobs; among those, the user served longest
-- ago (latest started_at of the user's stored jobs; never: first; picked in this claim:
-- last), then the user whose head is oldest. The work is bounded by the users with waiting
-- jobs (READY), not by the jobs: per user with a free slot only the head of its queue and
-- of its started jobs are read, and its next job only once its head is taken. A min-heap
-- of {running, served, head seq} picks the user.
-- ARGV: now, base, worker_id, want, per_user, overall, lease, then (sharded queues) one
-- reserved gate member per job it may start, which the start holds (job_gate.lua).
-- Returns the started rows, in the order they were chosen.

local function before(a, b)
  if a.busy ~= b.busy then
    return a.busy < b.busy
  end
  if a.served ~= b.served then
    return a.served < b.served
  end
  return a.seq < b.seq
end

local function push(heap, item)
  local i = #heap + 1
  heap[i] = item
  while i > 1 and before(heap[i], heap[math.floor(i / 2)]) do
    local p = math.floor(i / 2)
    heap[i], heap[p] = heap[p], heap[i]
    i = p
  end
end

local function pop(heap)
  local top, last = heap[1], table.remove(heap)
  local n, i = #heap, 1
  if n == 0 then
    return top
  end
  heap[1] = last
  while true do
    local low, l, r = i, 2 * i, 2 * i + 1
    if l <= n and before(heap[l], heap[low]) then low = l end
    if r <= n and before(heap[r], heap[low]) then low = r end
    if low == i then
      return top
    end
    heap[i], heap[low] = heap[low], heap[i]
    i = low
  end
end

local function head_seq(um)
  local head = redis.call('ZRANGE', queue_key(um), 0, 0, 'WITHSCORES')
  return head[2] and tonumber(head[2])
end

-- the latest started_at of the user's stored jobs, or -inf when none ever started
local function served(um)
  local top = redis.call('ZREVRANGE', started_key(um), 0, 0, 'WITHSCORES')
  return top[2] and tonumber(top[2]) or -math.huge
end

-- every user with waiting jobs and a free slot, keyed by {running, served, head seq}
local function open_users(per_user)
  local busy, heap = {}, {}
  local flat = redis.call('HGETALL', BUSY)
  for i = 1, #flat, 2 do
    busy[flat[i]] = tonumber(flat[i + 1])
  end
  for _, um in ipairs(redis.call('SMEMBERS', READY)) do
    local running, seq = busy[um] or 0, head_seq(um)
    if running < per_user and seq then
      push(heap, {um = um, busy = running, served = served(um), seq = seq})
    end
  end
  return heap
end

local started = 0

local function start(um, m, worker, now, lease)
  started = started + 1
  local key, lease_expires_at = job_key(m), fmt(now + lease)
  redis.call('HSET', key, 'st', 'running', 'sa', fmt(now), 'wid', worker, 'le', lease_expires_at)
  redis.call('HINCRBY', key, 'att', 1)
  hold(um, m, lease_expires_at)
  redis.call('ZADD', started_key(um), fmt(now), m)
  local gm = ARGV[7 + started]
  if gm then
    redis.call('HSET', key, 'gm', gm)
    redis.call('HSET', BASE .. 'gm', gm, m)
  end
end

local now = clock(ARGV[1])
local worker, want, per_user = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local overall, lease = tonumber(ARGV[6]), tonumber(ARGV[7])
local slots = math.min(want, overall - redis.call('ZCARD', LEASES))
local rows = {}
if slots <= 0 then
  return rows
end
local heap = open_users(per_user)
while #rows < slots and #heap > 0 do
  local user = pop(heap)
  local m = redis.call('ZPOPMIN', queue_key(user.um))[1]
  dequeued(user.um, 1)
  start(user.um, m, worker, now, lease)
  rows[#rows + 1] = job_row(m)
  user.busy, user.served, user.seq = user.busy + 1, math.huge, head_seq(user.um)
  if user.seq and user.busy < per_user then
    push(heap, user)
  end
end
return rows
