-- What every wrk thread keeps: per-operation latencies, status counts and errors, and the results files
-- that bench/load.py parses. Plain "key value ..." lines: there is no JSON library in wrk's LuaJIT.
local ffi = require("ffi")

ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]

local M = {}
local CLOCK_MONOTONIC = 1 -- the clock Python's time.monotonic() reads, so both sides agree on deadlines
local timespec = ffi.new("bench_timespec")

function M.ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

-- This thread's figures: latencies (ms) per operation, "<op> <status>" counts, errors per operation, and
-- the operations it ran out of bodies for. An answer after the deadline (the operation under way when the
-- phase ended) is only counted in late / late_ok: the database holds its effect, but its latency is not
-- the phase's (threads that have stopped hold gunicorn's sync workers for a while: see driver.lua).
lat, codes, errs, exhausted, late, late_ok = {}, {}, {}, {}, {}, {}

function M.record(op, started, status, ok, deadline)
  local now = M.ms()
  if now > deadline then
    late[op] = (late[op] or 0) + 1
    if ok then late_ok[op] = (late_ok[op] or 0) + 1 end
    return
  end
  local list = lat[op]
  if not list then list = {}; lat[op] = list end
  list[#list + 1] = now - started
  local key = op .. " " .. status
  codes[key] = (codes[key] or 0) + 1
  if not ok then errs[op] = (errs[op] or 0) + 1 end
end

-- This thread's figures, written by the thread itself when it stops: wrk's thread:get() cannot be used
-- to collect them in done(), it corrupts the Lua stack when it copies a table (wrk 4.1).
function M.write_thread(path, started)
  local out = assert(io.open(path .. ".partial", "w"))
  out:write(string.format("start %.3f\n", started))
  for op, _ in pairs(exhausted) do out:write("exhausted ", op, "\n") end
  for op, count in pairs(late) do out:write(string.format("late %s %d %d\n", op, count, late_ok[op] or 0)) end
  for key, count in pairs(codes) do out:write(string.format("status %s %d\n", key, count)) end
  for op, count in pairs(errs) do out:write(string.format("error %s %d\n", op, count)) end
  for op, list in pairs(lat) do
    local parts = {}
    for i, v in ipairs(list) do parts[i] = string.format("%.3f", v) end
    out:write("lat ", op, " ", table.concat(parts, " "), "\n")
  end
  out:close()
  os.rename(path .. ".partial", path) -- Python waits for the final name: the file is whole once it appears
end

-- wrk's own totals, written in the main Lua state once wrk has stopped.
function M.write_summary(path, summary)
  local out = assert(io.open(path, "w"))
  local e = summary.errors
  out:write(string.format("wrk requests %d duration_us %d connect %d read %d write %d status %d timeout %d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
  out:close()
end

-- Signed webhook bodies prepared by Python for this thread: "<signature>\n<byte length>\n<body>" repeated.
function M.bodies(pattern, id)
  local list = {}
  if not pattern then return list end
  local file = io.open(string.format(pattern, id), "rb")
  if not file then return list end
  while true do
    local signature = file:read("*l")
    if not signature then break end
    local length = tonumber(file:read("*l"))
    list[#list + 1] = { signature, file:read(length) }
  end
  file:close()
  return list
end

return M
