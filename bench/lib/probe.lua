-- wrk script for bench/probe_vs_blackbox.sh: reads every /probe answer, counts probe_success 1
-- vs anything else (a fast failure must not pass for throughput), and, when DURS_OUT is set,
-- keeps each answer's probe_duration_seconds and writes them there, one per line.
-- With PACE_MS set, each connection pauses that long between requests.
-- At the end it prints one line: RESULT requests=… rps=… p50_ms=… p99_ms=… ok=… bad=…
local threads = {}

-- PACE_MS: each connection waits this long between probes (an offered load below saturation).
local pace = tonumber(os.getenv("PACE_MS") or "")  -- nil when unset or empty
if pace then
  function delay() return pace end
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, bad, durs = 0, 0, {}
  collect = (os.getenv("DURS_OUT") or "") ~= ""
end

function response(status, headers, body)
  if status == 200 and body:find("\nprobe_success 1\n", 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
  end
  if collect then
    local d = body:match("\nprobe_duration_seconds ([^\n]+)")
    if d then durs[#durs + 1] = tonumber(d) end
  end
end

function done(summary, latency, requests)
  local tok, tbad = 0, 0
  local out = os.getenv("DURS_OUT")
  local f = out and out ~= "" and io.open(out, "w")
  for _, t in ipairs(threads) do
    tok = tok + t:get("ok")
    tbad = tbad + t:get("bad")
    if f then
      for _, v in ipairs(t:get("durs")) do f:write(string.format("%.9f\n", v)) end
    end
  end
  if f then f:close() end
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f ok=%d bad=%d errors=%d\n",
    summary.requests, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    tok, tbad,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
