"""Report of bench/im_sessions.sh: two /metrics snapshots plus the process counters the script
measured. Usage: im_report.py M0 M1 (other values in the environment)."""
import os
import re
import sys


def total(text, pat):
    return sum(float(v) for v in re.findall(pat, text, re.M))


def runs(text, result):
    return total(text, r'^sonde_scenario_runs_total\{[^}]*result="%s"[^}]*\} (\S+)' % result)


def per_scenario_runs(text):
    """Runs (any result but skipped) of every scenario, by name."""
    out = {}
    pat = r'^sonde_scenario_runs_total\{scenario="([^"]+)"[^}]*result="(success|failure|timeout)"[^}]*\} (\S+)'
    for name, _, v in re.findall(pat, text, re.M):
        out[name] = out.get(name, 0.0) + float(v)
    return out


def deliver_buckets(text):
    """sonde_step_duration_seconds{step="deliver"} summed over every session, by bucket."""
    b = {}
    pat = r'^sonde_step_duration_seconds_bucket\{[^}]*step="deliver"[^}]*le="([^"]+)"[^}]*\} (\S+)'
    for le, v in re.findall(pat, text, re.M):
        k = float("inf") if le == "+Inf" else float(le)
        b[k] = b.get(k, 0.0) + float(v)
    return b


def quantile(q, b0, b1):
    """Prometheus histogram_quantile's linear interpolation over the window's bucket deltas."""
    bounds = sorted(b1)
    counts = [b1[k] - b0.get(k, 0) for k in bounds]
    total_ = counts[-1] if counts else 0
    if total_ <= 0:
        return float("nan")
    rank, prev_b, prev_c = q * total_, 0.0, 0.0
    for b, c in zip(bounds, counts):
        if c >= rank:
            if b == float("inf"):
                return prev_b
            return prev_b + (b - prev_b) * (rank - prev_c) / max(c - prev_c, 1e-9)
        prev_b, prev_c = b, c
    return bounds[-1]


def main():
    m0, m1 = open(sys.argv[1]).read(), open(sys.argv[2]).read()
    e = os.environ
    t0, t1, hz, n = float(e["T0"]), float(e["T1"]), float(e["HZ"]), int(e["N"])
    dt = t1 - t0
    cpu = (float(e["C1"]) - float(e["C0"])) / hz
    chat_cpu = (float(e["K1"]) - float(e["K0"])) / hz
    interval = float(e["INTERVAL"].rstrip("s"))
    done = {r: runs(m1, r) - runs(m0, r) for r in ("success", "failure", "timeout", "skipped")}
    planned = n * dt / interval
    ran = done["success"] + done["failure"] + done["timeout"]
    connected = len(re.findall(r'^sonde_session_connected\{[^}]*\} 1(\.0)?$', m1, re.M))
    reconnects = total(m1, r'^sonde_session_reconnects_total\{[^}]*\} (\S+)') - \
        total(m0, r'^sonde_session_reconnects_total\{[^}]*\} (\S+)')
    b0, b1 = deliver_buckets(m0), deliver_buckets(m1)
    p50, p99 = quantile(0.5, b0, b1), quantile(0.99, b0, b1)
    samples = [int(kb) for t, kb in
               (line.split() for line in open(e["RSS_LOG"]) if len(line.split()) == 2)
               if t0 <= float(t) <= t1]
    samples.sort()
    median = samples[len(samples) // 2] if samples else int(e["RSS_END"])
    # One baseline per sonde process (bench/im_tcp_sessions.sh splits sessions over SHARDS).
    shards = int(e.get("SHARDS", "1"))
    base = int(e["BASE_RSS"]) * shards
    # bench/im_sessions.sh PROTO=tcp (one process, up to 9,900) or bench/im_tcp_sessions.sh.
    transport = e.get("TRANSPORT", "raw TCP, protobuf" if e.get("PROTO") == "tcp" else "WebSocket")
    print(f"sonde IM sessions benchmark: {n} persistent two-user sessions (2 {transport} connections "
          f"each, {shards} sonde process{'es' if shards > 1 else ''}), one message per session every {e['INTERVAL']}, presence noise every "
          f"{e['NOISE']}, chat server on loopback, {dt:.1f} s window")
    print(f"  sessions connected  {connected} of {n}; reconnects in the window {reconnects:.0f}")
    print(f"  runs                planned {planned:.0f}, ran {ran:.0f}: success {done['success']:.0f}, "
          f"failure {done['failure']:.0f}, timeout {done['timeout']:.0f}, skipped {done['skipped']:.0f}")
    r0, r1 = per_scenario_runs(m0), per_scenario_runs(m1)
    floor = int(dt // interval)
    short = sum(1 for k, v in r1.items() if v - r0.get(k, 0.0) < floor)
    print(f"  per session         every session should run at least {floor} times in the window: "
          f"{short} ran fewer")
    missed = done["skipped"] + done["failure"] + done["timeout"]
    print(f"  missed intervals    {missed:.0f} (skipped because a run overran + runs that failed); "
          f"achieved {ran / dt:.1f} runs/s of {n / interval:.1f} planned "
          "(the difference at the window edges is ±1 run per session)")
    print(f"  delivery latency    p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms  "
          "(send-to-match, sonde_step_duration_seconds{step=\"deliver\"}, histogram_quantile)")
    print(f"  sonde RSS           median {median / 1024:.1f} MB over the window, max "
          f"{max(samples or [0]) / 1024:.1f} MB; baseline (no sessions) {base / 1024:.1f} MB"
          + (f" ({shards} x {base // shards / 1024:.1f} MB)" if shards > 1 else ""))
    print(f"  RSS per session     {(median - base) / n:.1f} KB above the baseline "
          f"({median / n:.1f} KB counting everything)")
    print(f"  CPU                 sonde {cpu / dt:.2f} cores, chat server {chat_cpu / dt:.2f} cores")


main()
