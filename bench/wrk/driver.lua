-- The script wrk runs (wrk -t C -c C: one connection per thread, so each thread's Lua state owns one
-- connection and drives it request -> response). BENCH_OPS picks the operations, e.g. "summary" or
-- "summary:40,quote:25,redeem:15,earn:12,refund:8" for a weighted mix; bench/load.py sets the rest.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
local ops = require("ops")

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("id", #threads)
end

local ctx, plan, total = { n = 0 }, {}, 0
-- One deadline for every thread (CLOCK_MONOTONIC ms, from Python): no thread stops while others still
-- measure. Each thread's window starts after its init (wrk starts a thread right after it).
local deadline = tonumber(os.getenv("BENCH_DEADLINE"))
local current, step_label, step_started, op_started, started, stopped

function init()
  ctx.id = id
  math.randomseed(id * 7919 + os.time())
  ops.load_bodies(ctx)
  for name, weight in string.gmatch(os.getenv("BENCH_OPS"), "([%w_]+):?(%d*)") do
    total = total + (tonumber(weight) or 1)
    plan[#plan + 1] = { name = name, upto = total }
  end
  started = common.ms()
end

local function pick()
  local roll = math.random() * total
  for _, entry in ipairs(plan) do
    if roll <= entry.upto and not exhausted[entry.name] then return entry.name end
  end
  for _, entry in ipairs(plan) do -- the weighted pick ran dry: anything still able to send
    if not exhausted[entry.name] then return entry.name end
  end
end

-- Stop sending and write this thread's figures (their file tells Python the thread has drained). wrk
-- still writes the request returned here, so it is a harmless read, never counted. Lua cannot close the
-- connection, so a sync worker that answers it lingers up to 2 s for our close (gunicorn's close_graceful)
-- until wrk exits: that is why answers after the deadline are kept out of the latencies.
local function stop()
  current = nil
  wrk.thread:stop()
  if not stopped then
    stopped = true
    common.write_thread(os.getenv("BENCH_RESULTS") .. ".thread." .. id, started)
  end
  return wrk.format("GET", "/healthz")
end

function request()
  -- A new operation only before the deadline; a started one (a hold's capture) is always finished.
  if not current then
    if common.ms() >= deadline then return stop() end
    current = pick()
    if not current then return stop() end
    op_started = nil
  end
  local label, req = ops[current].request(ctx)
  if not req then
    exhausted[current] = true
    current = nil
    return request()
  end
  step_label, step_started = label, common.ms()
  op_started = op_started or step_started
  return req
end

function response(status, headers, body)
  if not current then return end
  local ok, finished = ops[current].response(ctx, status, body)
  common.record(step_label, step_started, status, ok, deadline)
  if finished then
    if ok and step_label ~= current then common.record(current, op_started, status, true, deadline) end
    current = nil
  end
end

function done(summary)
  common.write_summary(os.getenv("BENCH_RESULTS"), summary)
end
