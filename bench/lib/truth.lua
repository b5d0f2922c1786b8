-- wrk script for bench/truth.sh: asks /probe with debug=true and keeps, per answer, the lines a
-- capture can be matched against: the reported phase durations (probe_*_duration_seconds) and,
-- for sonde, the events naming the local port / ICMP id+seq with the kernel and user-space
-- figures. Written at the end to TRUTH_OUT, one answer per line, fields separated by " || ".
-- Prints the same RESULT line as probe.lua.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, bad, recs = 0, 0, {}
end

local wanted = {
  'msg="connected to ',
  'msg="response head: ',
  'msg="tls handshake: ',
  'msg="sending an echo request ',
  'msg="echo reply from ',
  'probe_http_duration_seconds{',
  'probe_tcp_duration_seconds',
  'probe_icmp_duration_seconds{',
  'probe_success ',
}

function response(status, headers, body)
  if status == 200 and body:find("\nprobe_success 1\n", 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
  end
  local keep = {}
  for line in body:gmatch("[^\n]+") do
    for _, w in ipairs(wanted) do
      if line:find(w, 1, true) then
        keep[#keep + 1] = line
        break
      end
    end
  end
  recs[#recs + 1] = table.concat(keep, " || ")
end

function done(summary, latency, requests)
  local tok, tbad = 0, 0
  local f = io.open(os.getenv("TRUTH_OUT"), "w")
  for _, t in ipairs(threads) do
    tok = tok + t:get("ok")
    tbad = tbad + t:get("bad")
    for _, r in ipairs(t:get("recs")) do f:write(r, "\n") end
  end
  f:close()
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f ok=%d bad=%d errors=%d\n",
    summary.requests, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    tok, tbad,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
