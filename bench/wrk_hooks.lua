-- wrk script for bench/run.py: every request is its own webhook (a milestone id from the ids
-- file in turn, and a projected end of its own), and done() prints one JSON line the bench reads.
--   wrk -t1 -cC -dDs -s bench/wrk_hooks.lua URL -- TOKEN TEMPLATE_FILE IDS_FILE FIRST_PROJECTED_END
-- The template holds @@ID@@ (first) and @@PE@@ (second); see bench/payloads.py.

local head, middle, tail
local ids = {}
local counter = 0
local first_pe = 0
local headers = {}

local function read(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("*a")
  file:close()
  return text
end

function init(args)
  local token, template, ids_file = args[1], read(args[2]), args[3]
  first_pe = tonumber(args[4])
  local id_at = assert(string.find(template, "@@ID@@", 1, true))
  local pe_at = assert(string.find(template, "@@PE@@", 1, true))
  head = string.sub(template, 1, id_at - 1)
  middle = string.sub(template, id_at + 6, pe_at - 1)
  tail = string.sub(template, pe_at + 6)
  for line in string.gmatch(read(ids_file), "[^\n]+") do
    ids[#ids + 1] = line
  end
  headers["Content-Type"] = "application/json"
  headers["X-Hook-Token"] = token
end

function request()
  local id = ids[(counter % #ids) + 1]
  local body = head .. id .. middle .. string.format("%d", first_pe + counter) .. tail
  counter = counter + 1
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
