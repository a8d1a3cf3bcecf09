-- The operations a wrk thread can drive. Each has request(ctx) -> label, request (nil when it has nothing
-- left to send) and response(ctx, status, body) -> ok, finished. A two-step operation (hold then capture)
-- answers finished = false after its first step, and the driver sends its second step next.
local common = require("common")

local M = {}
local members = tonumber(os.getenv("BENCH_MEMBERS") or "1")
local tag = os.getenv("BENCH_TAG") or "bench"
local coupon = os.getenv("BENCH_COUPON")
local api = { ["Authorization"] = "Bearer " .. (os.getenv("BENCH_API_KEY") or ""),
              ["Content-Type"] = "application/json" }

local function member()
  return "mem_bench" .. math.random(1, members)
end

local function has(body, pattern)
  return body ~= nil and body:find(pattern) ~= nil
end

local function get(path)
  return wrk.format("GET", path, api)
end

M.healthz = {
  request = function() return "healthz", get("/healthz") end,
  response = function(_, status) return status == 200, true end,
}

M.summary = {
  request = function() return "summary", get("/v1/members/" .. member()) end,
  response = function(_, status, body) return status == 200 and has(body, '"available"'), true end,
}

-- A basket of 2 or 3 lines from a small catalog (shoes earn a category bonus), sometimes with the
-- public coupon and sometimes with points, as a shop's checkout page asks.
local CATALOG = { { "sku-shoe", "shoes", 8900 }, { "sku-shirt", "shirts", 2900 }, { "sku-sock", "socks", 900 },
                  { "sku-hat", "hats", 1900 } }

local function quote_body()
  local lines = {}
  for i = 1, math.random(2, 3) do
    local item = CATALOG[math.random(#CATALOG)]
    lines[i] = string.format('{"sku":"%s","category":"%s","quantity":%d,"unit_amount":%d}',
      item[1], item[2], math.random(1, 2), item[3])
  end
  local extra = ""
  if coupon and math.random() < 0.3 then extra = extra .. string.format(',"coupon_code":"%s"', coupon) end
  if math.random() < 0.3 then extra = extra .. string.format(',"points":%d', 10 * math.random(1, 2)) end
  return string.format('{"member_id":"%s","currency":"usd","lines":[%s]%s}', member(),
    table.concat(lines, ","), extra)
end

M.quote = {
  request = function() return "quote", wrk.format("POST", "/v1/checkout/quote", api, quote_body()) end,
  response = function(_, status, body) return status == 200 and has(body, '"total_amount"'), true end,
}

-- Hold 10 points for a new order, then capture the hold with the id the first answer gave.
M.redeem = {
  request = function(ctx)
    if ctx.redemption then
      return "capture", wrk.format("POST", "/v1/redemptions/" .. ctx.redemption .. "/capture", api, "{}")
    end
    ctx.n = ctx.n + 1
    local order = string.format("%s-%d-%d", tag, ctx.id, ctx.n)
    local headers = { ["Idempotency-Key"] = order }
    for k, v in pairs(api) do headers[k] = v end
    local body = string.format('{"member_id":"%s","order_id":"%s","currency":"usd","amount":1000,"points":10}',
      member(), order)
    return "hold", wrk.format("POST", "/v1/redemptions", headers, body)
  end,
  response = function(ctx, status, body)
    if ctx.redemption then
      ctx.redemption = nil
      return status == 200 and has(body, '"status": *"captured"'), true
    end
    ctx.redemption = status == 201 and body:match('"id": *"([^"]+)"') or nil
    return ctx.redemption ~= nil, ctx.redemption == nil
  end,
}

-- Signed Stripe events from this thread's file, each sent once: when they run out the thread says so
-- (request answers nil) rather than send one twice.
local function webhook(label)
  return {
    request = function(ctx)
      local list = ctx.bodies[label]
      ctx.sent[label] = (ctx.sent[label] or 0) + 1
      local entry = list[ctx.sent[label]]
      if not entry then return nil end
      local headers = { ["Content-Type"] = "application/json", ["Stripe-Signature"] = entry[1] }
      return label, wrk.format("POST", "/v1/webhooks/stripe", headers, entry[2])
    end,
    response = function(_, status, body) return status == 200 and has(body, '"status": *"applied"'), true end,
  }
end

M.earn = webhook("earn")
M.refund = webhook("refund")

-- The ceiling app (bench/raw_app.py): the same rows, no ORM, no schemas.
M.raw_summary = {
  request = function() return "raw_summary", get("/raw/summary/" .. member()) end,
  response = function(_, status, body) return status == 200 and has(body, '"available"'), true end,
}

M.raw_hold = {
  request = function()
    local body = string.format('{"member_id":"%s","points":10}', member())
    return "raw_hold", wrk.format("POST", "/raw/hold", api, body)
  end,
  response = function(_, status, body) return status == 201 and has(body, '"id"'), true end,
}

function M.load_bodies(ctx)
  ctx.bodies = { earn = common.bodies(os.getenv("BENCH_EARN_BODIES"), ctx.id),
                 refund = common.bodies(os.getenv("BENCH_REFUND_BODIES"), ctx.id) }
  ctx.sent = {}
end

return M
