"""Report of bench/scheduler.sh: reads two /metrics snapshots and the process counters the script
measured, prints the table. Usage: scheduler_report.py M0 M1 (other values in the environment)."""
import os
import re
import sys


def runs(text, result):
    pat = r'^sonde_scenario_runs_total\{[^}]*result="%s"[^}]*\} (\S+)' % result
    return sum(float(v) for v in re.findall(pat, text, re.M))


def lag_buckets(text):
    b = {}
    pat = r'^sonde_scheduler_lag_seconds_bucket\{le="([^"]+)"\} (\S+)'
    for le, v in re.findall(pat, text, re.M):
        b[float("inf") if le == "+Inf" else float(le)] = float(v)
    return b


def quantile(q, b0, b1):
    """Prometheus histogram_quantile's linear interpolation over the window's bucket deltas."""
    bounds = sorted(b1)
    counts = [b1[k] - b0.get(k, 0) for k in bounds]
    total = counts[-1] if counts else 0
    if total <= 0:
        return float("nan")
    rank, prev_b, prev_c = q * total, 0.0, 0.0
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
    t0, t1 = float(e["T0"]), float(e["T1"])
    hz = float(e["HZ"])
    cpu = (float(e["C1"]) - float(e["C0"])) / hz
    ncpu = (float(e["NG1"]) - float(e["NG0"])) / hz
    n = int(e["N"])
    dt = t1 - t0
    done = {r: runs(m1, r) - runs(m0, r) for r in ("success", "failure", "timeout", "skipped")}
    ran = done["success"] + done["failure"] + done["timeout"]
    b0, b1 = lag_buckets(m0), lag_buckets(m1)
    p50, p99 = quantile(0.5, b0, b1), quantile(0.99, b0, b1)
    per_1k = cpu / ran * 1000 if ran else float("nan")
    print(f"sonde scheduler benchmark: {n} HTTP scenarios, interval 1s, nginx on loopback, "
          f"{dt:.1f} s window")
    print(f"  planned probes/s    {n:>10.0f}")
    print(f"  achieved probes/s   {ran / dt:>10.1f}  ({100 * ran / dt / n:.2f}% of planned)")
    print(f"  results             success {done['success']:.0f}, failure {done['failure']:.0f}, "
          f"timeout {done['timeout']:.0f}, skipped {done['skipped']:.0f}")
    print(f"  scheduler lag       p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms  "
          "(histogram_quantile over the window)")
    samples = [(float(t), int(kb)) for t, kb in
               (line.split() for line in open(e["RSS_LOG"]) if len(line.split()) == 2)]
    s1a, s1b = (float(x) for x in e["SCRAPE1"].split())
    window = sorted(kb for t, kb in samples if t0 <= t <= t1)
    during_scrape = [kb for t, kb in samples if s1a - 0.3 <= t <= s1b + 0.3]
    median = window[len(window) // 2] if window else 0
    print(f"  sonde RSS           median {median / 1024:.1f} MB, max {max(window or [0]) / 1024:.1f} MB "
          f"over the window; {max(during_scrape or [0]) / 1024:.1f} MB during a /metrics scrape "
          f"of {len(m1) / 1e6:.1f} MB")
    print(f"  sonde CPU           {cpu / dt:.2f} cores, {per_1k:.3f} CPU-s per 1k probes  "
          f"(nginx worker: {ncpu / dt:.2f} cores)")
    if e.get("BB_REQS"):
        reqs = float(e["BB_REQS"])
        bb_cpu = (float(e["BB1"]) - float(e["BB0"])) / hz
        bb_per_1k = bb_cpu / reqs * 1000
        print(f"  blackbox_exporter   {reqs / float(e['BB_SECS']):.0f} probes/s through /probe "
              f"(wrk c=64), {bb_per_1k:.3f} CPU-s per 1k probes, "
              f"RSS {int(e['BB_RSS']) / 1024:.0f} MB")
        print(f"  ratio               sonde uses {per_1k / bb_per_1k:.2f}x blackbox_exporter's "
              "CPU per probe")
    else:
        print("  blackbox_exporter   not measured (prometheus-blackbox-exporter not installed)")


main()
