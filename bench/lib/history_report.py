"""Report of bench/history.sh: per mode (history off / on) the runs achieved, CPU per 1k runs
and scheduler lag from two /metrics scrapes per window, and for the store its counters and the
bytes per run of its file. Usage: history_report.py WORKDIR (HZ and N in the environment)."""
import os
import re
import sqlite3
import sys


def total(text, name, match=""):
    pat = r'^%s(\{[^}]*\})? (\S+)' % re.escape(name)
    return sum(float(v) for labels, v in re.findall(pat, text, re.M) if match in (labels or ""))


def buckets(text, name):
    b = {}
    for le, v in re.findall(r'^%s_bucket\{le="([^"]+)"\} (\S+)' % re.escape(name), text, re.M):
        b[float("inf") if le == "+Inf" else float(le)] = float(v)
    return b


def quantile(q, b0, b1):
    """histogram_quantile's linear interpolation over the window's bucket deltas."""
    bounds = sorted(b1)
    counts = [b1[k] - b0.get(k, 0) for k in bounds]
    if not counts or counts[-1] <= 0:
        return float("nan")
    rank, prev_b, prev_c = q * counts[-1], 0.0, 0.0
    for b, c in zip(bounds, counts):
        if c >= rank:
            if b == float("inf"):
                return prev_b
            return prev_b + (b - prev_b) * (rank - prev_c) / max(c - prev_c, 1e-9)
        prev_b, prev_c = b, c
    return bounds[-1]


def store_file(path):
    db = sqlite3.connect(path)
    page = db.execute("PRAGMA page_size").fetchone()[0]
    used = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
    runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    rollups = db.execute("SELECT COUNT(*) FROM rollups").fetchone()[0]
    traces = db.execute("SELECT COUNT(*) FROM runs WHERE trace IS NOT NULL").fetchone()[0]
    return used * page, runs, rollups, traces


def main():
    work = sys.argv[1]
    hz, n = float(os.environ["HZ"]), int(os.environ["N"])
    rows = {}
    for line in open(os.path.join(work, "results.txt")):
        f = line.split()
        mode, rnd, t0, t1, c0, c1 = f[0], f[1], float(f[2]), float(f[3]), float(f[4]), float(f[5])
        m0 = open(os.path.join(work, f"m0-{mode}-{rnd}.txt")).read()
        m1 = open(os.path.join(work, f"m1-{mode}-{rnd}.txt")).read()
        dt = t1 - t0
        ran = sum(total(m1, "sonde_scenario_runs_total", f'result="{r}"')
                  - total(m0, "sonde_scenario_runs_total", f'result="{r}"')
                  for r in ("success", "failure", "timeout"))
        skipped = (total(m1, "sonde_scenario_runs_total", 'result="skipped"')
                   - total(m0, "sonde_scenario_runs_total", 'result="skipped"'))
        lag0, lag1 = buckets(m0, "sonde_scheduler_lag_seconds"), buckets(m1, "sonde_scheduler_lag_seconds")
        r = {
            "round": rnd, "runs_s": ran / dt, "skipped": skipped,
            "cpu_1k": (c1 - c0) / hz / ran * 1000 if ran else float("nan"),
            "cores": (c1 - c0) / hz / dt,
            "p50": quantile(0.5, lag0, lag1), "p99": quantile(0.99, lag0, lag1),
        }
        if mode.startswith("on"):
            r["writer_1k"] = float(f[6]) / hz / ran * 1000 if ran else float("nan")
            r["written"] = total(m1, "sonde_history_runs_written_total") - total(m0, "sonde_history_runs_written_total")
            r["dropped"] = total(m1, "sonde_history_dropped_runs_total") - total(m0, "sonde_history_dropped_runs_total")
            r["errors"] = total(m1, "sonde_history_write_errors_total")
            f0, f1 = buckets(m0, "sonde_history_flush_seconds"), buckets(m1, "sonde_history_flush_seconds")
            r["flush_p99"] = quantile(0.99, f0, f1)
            size, runs, rollups, traces = store_file(f[7])
            r["bytes_run"] = size / runs if runs else float("nan")
            r["per_day_gb"] = r["bytes_run"] * r["runs_s"] * 86400 / 1e9
            r["store"] = (size, runs, rollups, traces)
        rows.setdefault(mode, []).append(r)
    print(f"sonde history benchmark: {n} HTTP scenarios at 1 s, nginx on loopback")
    for mode, mode_rows in rows.items():
        for r in mode_rows:
            line = (f"  history {mode:<9} round {r['round']}: {r['runs_s']:8.1f} runs/s "
                    f"(skipped {r['skipped']:.0f}), {r['cores']:.2f} cores, "
                    f"{r['cpu_1k']:.3f} CPU-s per 1k runs, lag p50 {r['p50'] * 1000:.2f} ms, "
                    f"p99 {r['p99'] * 1000:.2f} ms")
            print(line)
            if mode.startswith("on"):
                size, runs, rollups, traces = r["store"]
                print(f"      writer thread: {r['writer_1k']:.3f} CPU-s per 1k runs "
                      f"({r['writer_1k'] / r['cpu_1k'] * 100:.1f} % of the process)")
                print(f"      store: {r['written']:.0f} runs written in the window, "
                      f"{r['dropped']:.0f} dropped, {r['errors']:.0f} write errors, "
                      f"batch write p99 {r['flush_p99'] * 1000:.1f} ms; file: {size / 1e6:.1f} MB for "
                      f"{runs} runs ({traces} with trace), {rollups} rollup rows = "
                      f"{r['bytes_run']:.0f} B/run → {r['per_day_gb']:.1f} GB/day at this rate")
    avg = lambda mode, k: sum(r[k] for r in rows[mode]) / len(rows[mode])
    for mode in rows:
        if mode == "off" or "off" not in rows:
            continue
        cpu = avg(mode, "cpu_1k") / avg("off", "cpu_1k") - 1
        p99 = avg(mode, "p99") / avg("off", "p99") - 1
        print(f"  {mode} vs off: CPU per 1k runs {cpu * 100:+.1f} %, lag p99 {p99 * 100:+.1f} % "
              f"(target: within ±10 %)")

main()
