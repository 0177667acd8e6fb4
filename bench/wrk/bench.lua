-- wrk script for the HTTP benchmarks: the request comes from the environment, and done() prints
-- one JSON line (prefixed BENCHJSON) with the throughput, latency percentiles and errors.
--   BENCH_METHOD  GET (default) or POST
--   BENCH_BODY    a JSON body (sent with Content-Type: application/json)
--   BENCH_TOKENS  bearer tokens, comma-separated; several are used in turn, one per request
--   BENCH_RATE    if set and not 0: about this many requests a second in all, each of the
--                 BENCH_CONNECTIONS connections pausing between its requests
local body = os.getenv("BENCH_BODY")
if body == "" then body = nil end
local tokens = {}
for t in string.gmatch(os.getenv("BENCH_TOKENS") or "", "[^,]+") do
  table.insert(tokens, t)
end

wrk.method = os.getenv("BENCH_METHOD") or "GET"
if body then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
if #tokens == 1 then
  wrk.headers["Authorization"] = "Bearer " .. tokens[1]
end

if #tokens > 1 then
  -- Formatted once here, not per request: wrk's Lua costs the client CPU the server needs on
  -- these two cores.
  local requests = {}
  for k, t in ipairs(tokens) do
    local headers = {["Authorization"] = "Bearer " .. t}
    if body then headers["Content-Type"] = "application/json" end
    requests[k] = wrk.format(nil, nil, headers, body)
  end
  local i = 0
  request = function()
    i = i + 1
    return requests[(i % #requests) + 1]
  end
end

local rate = tonumber(os.getenv("BENCH_RATE") or "0") or 0
if rate > 0 then
  local pause_ms = math.floor(1000 * tonumber(os.getenv("BENCH_CONNECTIONS")) / rate)
  delay = function()
    return pause_ms
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
