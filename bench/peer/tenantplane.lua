-- wrk script for Tenantplane: a random tenant per request (its Host and its user's JWT).
--   TOKENS  file of "host token" lines (one per tenant), written by side_by_side.py
--   MODE    "get" (GET /fhir/Patient?_count=20) or "post" (POST /fhir/Patient)
--   GET_PATH  the path of "get" requests instead (noisy_neighbour.py's heavy search)
-- Prints one WRKJSON line with the same fields as the peer's common.lua.
local tokens_file = os.getenv("TOKENS")
local mode = os.getenv("MODE") or "get"
local get_path = os.getenv("GET_PATH") or "/fhir/Patient?_count=20"
local tenants = {}
for line in io.lines(tokens_file) do
  local host, token = line:match("^(%S+)%s+(%S+)$")
  if host then
    table.insert(tenants, { host = host, auth = "Bearer " .. token })
  end
end
local counter = 1
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  math.randomseed(os.time() * 1000 + tid * 7919)
end

local body = '{"resourceType":"Patient","name":[{"family":"Bench","given":["Load"]}],'
  .. '"gender":"female","birthDate":"1980-01-01"}'

request = function()
  local t = tenants[math.random(1, #tenants)]
  if mode == "post" then
    return wrk.format("POST", "/fhir/Patient", {
      ["Host"] = t.host, ["Authorization"] = t.auth,
      ["Content-Type"] = "application/fhir+json" }, body)
  end
  return wrk.format("GET", get_path, {
    ["Host"] = t.host, ["Authorization"] = t.auth })
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"duration_s\":%.3f,\"rps\":%.1f,\"lat_mean_ms\":%.3f,\"lat_p50_ms\":%.3f," ..
    "\"lat_p90_ms\":%.3f,\"lat_p99_ms\":%.3f,\"lat_max_ms\":%.3f,\"err_connect\":%d,\"err_read\":%d," ..
    "\"err_write\":%d,\"err_status\":%d,\"err_timeout\":%d,\"ntenants\":%d}\n",
    summary.requests, secs, summary.requests / secs, latency.mean / 1000,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.connect, e.read, e.write, e.status, e.timeout, #tenants))
end
