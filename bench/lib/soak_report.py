"""Report of bench/soak.sh: a table per minute and least-squares slopes with a verdict.

usage: soak_report.py OUT_DIR WARMUP_MIN PLANNED_RUNS_PER_S

OUT_DIR/m-NNN.txt: one sample per minute, `# key value` lines (t, rss_kb, hwm_kb, fds, threads,
cpu_ticks, hz, load1) then the sonde_* series the report reads. OUT_DIR/targets.txt: the hostile
targets' and the remote_write receiver's counters. OUT_DIR/sonde.log: sonde's log.
"""
import glob
import math
import os
import re
import sys


def load(path):
    head, body = {}, []
    for line in open(path):
        if line.startswith("# "):
            k, v = line[2:].split()
            head[k] = float(v)
        else:
            body.append(line)
    return head, "".join(body)


def total(text, pat):
    return sum(float(v) for v in re.findall(pat, text, re.M))


def run_series(text, result):
    """{series labels: count} of sonde_scenario_runs_total for one result."""
    pat = r'^sonde_scenario_runs_total\{([^}]*result="%s"[^}]*)\} (\S+)' % result
    return {labels: float(v) for labels, v in re.findall(pat, text, re.M)}


def runs_between(t0, t1, result):
    """Runs between two samples, series by series: a series the reload added since t0 (churn.yaml
    replaces its scenarios every minute) counts from zero, one it removed is gone with its runs."""
    a, b = run_series(t0, result), run_series(t1, result)
    return sum(v - a.get(k, 0.0) for k, v in b.items())


def lag_buckets(text):
    b = {}
    for le, v in re.findall(r'^sonde_scheduler_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', text, re.M):
        b[float("inf") if le == "+Inf" else float(le)] = float(v)
    return b


def quantile(q, b0, b1):
    """histogram_quantile's linear interpolation over the bucket deltas between two samples."""
    bounds = sorted(b1)
    counts = [b1[k] - b0.get(k, 0) for k in bounds]
    n = counts[-1] if counts else 0
    if n <= 0:
        return float("nan")
    rank, prev_b, prev_c = q * n, 0.0, 0.0
    for b, c in zip(bounds, counts):
        if c >= rank:
            if b == float("inf"):
                return prev_b
            return prev_b + (b - prev_b) * (rank - prev_c) / max(c - prev_c, 1e-9)
        prev_b, prev_c = b, c
    return bounds[-1]


def fit(xs, ys):
    """Least-squares slope and its standard error."""
    pts = [(x, y) for x, y in zip(xs, ys) if not math.isnan(y)]
    n = len(pts)
    if n < 3:
        return float("nan"), float("nan")
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx
    resid = sum((y - my - slope * (x - mx)) ** 2 for x, y in pts)
    return slope, math.sqrt(resid / (n - 2) / sxx)


def median(xs):
    xs = sorted(x for x in xs if not math.isnan(x))
    return xs[len(xs) // 2] if xs else float("nan")


def rows(out):
    files = sorted(glob.glob(os.path.join(out, "m-*.txt")))
    samples = [load(f) for f in files]
    table = []
    for (h0, t0), (h1, t1) in zip(samples, samples[1:]):
        dt = h1["t"] - h0["t"]
        done = {r: runs_between(t0, t1, r) for r in ("success", "failure", "timeout", "skipped")}
        rw = {k: total(t1, r"^sonde_remote_write_samples_%s_total(?:\{[^}]*\})? (\S+)" % k) -
              total(t0, r"^sonde_remote_write_samples_%s_total(?:\{[^}]*\})? (\S+)" % k)
              for k in ("sent", "failed", "dropped")}
        table.append({
            "min": int(os.path.basename(files[len(table) + 1])[2:5]),
            "hours": (h1["t"] - samples[0][0]["t"]) / 3600,
            "rss_mb": h1["rss_kb"] / 1024, "hwm_mb": h1["hwm_kb"] / 1024, "fds": h1["fds"],
            "threads": h1["threads"],
            "lag_p99_ms": quantile(0.99, lag_buckets(t0), lag_buckets(t1)) * 1000,
            "lag_p50_ms": quantile(0.5, lag_buckets(t0), lag_buckets(t1)) * 1000,
            "runs_s": (done["success"] + done["failure"] + done["timeout"]) / dt,
            "fail_s": (done["failure"] + done["timeout"]) / dt, "skipped": done["skipped"],
            "cpu": (h1["cpu_ticks"] - h0["cpu_ticks"]) / h1["hz"] / dt, "load1": h1["load1"],
            "rw_sent": rw["sent"], "rw_failed": rw["failed"], "rw_dropped": rw["dropped"],
            "reload_ok": total(t1, r"^sonde_config_last_reload_successful(?:\{[^}]*\})? (\S+)"),
            "queue": total(t1, r"^sonde_remote_write_queue_samples(?:\{[^}]*\})? (\S+)"),
            "sessions": len(re.findall(r"^sonde_session_connected\{[^}]*\} 1(?:\.0)?$", t1, re.M)),
        })
    return samples, table


def verdict(name, unit, rows_, key, floor):
    xs = [r["hours"] for r in rows_]
    ys = [r[key] for r in rows_]
    slope, se = fit(xs, ys)
    med = median(ys)
    limit = max(0.05 * med, floor)
    if math.isnan(slope):
        flat = "n/a (fewer than 3 minutes)"
    elif abs(slope) < limit:
        flat = "FLAT"
    elif abs(slope) < 2 * se:
        flat = "NO TREND SHOWN (the slope is within its noise, which is wider than the limit)"
    else:
        flat = "NOT FLAT (" + ("growing" if slope > 0 else "falling") + ")"
    return (f"  {name:<12} slope {slope:+9.2f} {unit}/h (±{2 * se:.2f}, 2 s.e.), median {med:.2f} {unit}, "
            f"limit ±{limit:.2f} {unit}/h -> {flat}")


def main():
    out, warm, planned = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    samples, table = rows(out)
    if not table:
        sys.exit("soak: fewer than two samples, nothing to report")
    print(f"sonde soak: {table[-1]['min']} minutes, ~{planned:.0f} runs/s planned "
          f"(sonde_scenario_runs_total without skipped; a multi-step run counts once)")
    print(" min  RSS MB  fds  thr  lag p50/p99 ms  runs/s  fail/s  skip  sonde CPU  load1  rw sent/failed/dropped  queue  sess  reload")
    for r in table:
        print(f"{r['min']:4d}  {r['rss_mb']:6.1f} {r['fds']:4.0f} {r['threads']:4.0f}  "
              f"{r['lag_p50_ms']:6.2f} / {r['lag_p99_ms']:6.2f}  {r['runs_s']:6.1f}  {r['fail_s']:6.1f}  "
              f"{r['skipped']:4.0f}  {r['cpu']:9.2f}  {r['load1']:5.2f}  "
              f"{r['rw_sent']:8.0f}/{r['rw_failed']:6.0f}/{r['rw_dropped']:6.0f}  {r['queue']:6.0f}  "
              f"{r['sessions']:4d}  {r['reload_ok']:.0f}")
    steady = [r for r in table if r["min"] > warm] or table
    print(f"\nslopes per hour, least squares over minutes {steady[0]['min']}..{steady[-1]['min']} "
          f"(after a {warm}-minute warm-up); flat = |slope| below 5% of the median per hour;\n"
          "otherwise 'no trend shown' when |slope| < 2 standard errors, 'not flat' when beyond both:")
    print(verdict("RSS", "MB", steady, "rss_mb", 2.0))
    print(verdict("open fds", "fds", steady, "fds", 5.0))
    print(verdict("lag p99", "ms", steady, "lag_p99_ms", 2.0))
    print("  (over every minute, warm-up included:)")
    print(verdict("RSS", "MB", table, "rss_mb", 2.0))
    print(verdict("open fds", "fds", table, "fds", 5.0))
    print(verdict("lag p99", "ms", table, "lag_p99_ms", 2.0))
    print(f"\npeaks: RSS {max(r['rss_mb'] for r in table):.1f} MB (VmHWM {table[-1]['hwm_mb']:.1f} MB), "
          f"fds {max(r['fds'] for r in table):.0f}, lag p99 {max(r['lag_p99_ms'] for r in table):.2f} ms, "
          f"load1 {max(r['load1'] for r in table):.2f} (median {median([r['load1'] for r in table]):.2f})")
    ach = [r["runs_s"] for r in steady]
    print(f"runs/s: median {median(ach):.1f}, min {min(ach):.1f}, max {max(ach):.1f} of ~{planned:.0f} planned; "
          f"skipped runs in all {sum(r['skipped'] for r in table):.0f}")
    _, last = samples[-1]
    _, first = samples[0]
    by_kind = {}
    for name, res, v in re.findall(
            r'^sonde_scenario_runs_total\{scenario="([^"]+)"[^}]*result="([a-z]+)"[^}]*\} (\S+)', last, re.M):
        kind = re.sub(r"-\d+$", "", name)
        kind = re.sub(r"^churn-[ab]", "churn", kind)
        by_kind.setdefault(kind, {}).setdefault(res, 0.0)
        by_kind[kind][res] += float(v)
    print("runs by kind at the end (cumulative; churn counts only the set loaded last):")
    for kind, res in sorted(by_kind.items()):
        print(f"  {kind:<22} " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(res.items())))
    rw_total = {k: total(last, r"^sonde_remote_write_samples_%s_total(?:\{[^}]*\})? (\S+)" % k)
                for k in ("enqueued", "sent", "failed", "dropped")}
    queued = total(last, r"^sonde_remote_write_queue_samples(?:\{[^}]*\})? (\S+)")
    print("remote_write at the end: " + ", ".join(f"{k} {v:.0f}" for k, v in rw_total.items()) +
          f", queued {queued:.0f}")
    tpath = os.path.join(out, "targets.txt")
    if os.path.exists(tpath):
        print("targets: " + ", ".join(line.strip().replace(" ", "=") for line in open(tpath)))
    log = os.path.join(out, "sonde.log")
    if os.path.exists(log):
        lines = open(log, errors="replace").read().splitlines()
        levels = {}
        for line in lines:
            m = re.search(r"\b(ERROR|WARN|INFO|DEBUG)\b", line)
            if m:
                levels[m.group(1)] = levels.get(m.group(1), 0) + 1
        print(f"sonde log: {len(lines)} lines, by level {levels}")
        msgs = {}
        for line in lines:
            if re.search(r"\b(ERROR|WARN)\b", line):
                key = re.sub(r"\d+(\.\d+)?", "N", re.sub(r"^\S+\s+", "", line))[:160]
                msgs[key] = msgs.get(key, 0) + 1
        for k, v in sorted(msgs.items(), key=lambda kv: -kv[1])[:15]:
            print(f"  {v:6d}x {k}")
    for extra in ("reload-errors.txt", "scrape-errors.txt"):
        p = os.path.join(out, extra)
        if os.path.exists(p):
            print(f"{extra}: {sum(1 for _ in open(p))} lines, first: {open(p).readline().strip()}")


main()
