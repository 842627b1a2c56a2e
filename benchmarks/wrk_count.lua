-- wrk 4.1: sets the Authorization or Cookie header from the environment, counts non-2xx
-- responses over all threads and prints one JSON line with the totals and percentiles.
-- WRK_METHOD and WRK_BODY give a write; a "%d" in the body becomes a per-request counter
-- (an idempotency key that is new every time).
local threads = {}

local auth = os.getenv("WRK_AUTHORIZATION")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
local cookie = os.getenv("WRK_COOKIE")
if cookie and cookie ~= "" then wrk.headers["Cookie"] = cookie end

local method = os.getenv("WRK_METHOD")
if method and method ~= "" then wrk.method = method end
local body = os.getenv("WRK_BODY")
if body and body ~= "" then
  wrk.headers["Content-Type"] = "application/json"
  if body:find("%%d") then
    function request()
      sent = sent + 1
      return wrk.format(nil, nil, nil, string.format(body, id * 1000000000 + sent))
    end
  else
    wrk.body = body
  end
end

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  bad = 0
  sent = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local non2xx = 0
  for _, thread in ipairs(threads) do non2xx = non2xx + thread:get("bad") end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "non2xx": %d, "errors": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, non2xx,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max))
end
