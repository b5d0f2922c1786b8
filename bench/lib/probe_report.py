"""Tables for bench/probe_vs_blackbox.sh.

usage: probe_report.py RESULTS WORKDIR DELAY_MS

RESULTS has one line per wrk run:
  [truth-MODE] EXPORTER MODULE CONNS RESULT requests=… rps=… p50_ms=… … cpu_s=… rss_kb=…
WORKDIR/durs-MODE-EXPORTER.txt hold the probe_duration_seconds each exporter reported in the
truth runs (MODE saturated or paced), one per line.
"""
import sys


def parse(path):
    runs, truth = {}, {}
    for line in open(path):
        words = line.split()
        if not words:
            continue
        mode = None
        if words[0].startswith("truth-"):
            mode = words[0][len("truth-"):]
            words = words[1:]
        ex, module, conns = words[0], words[1], int(words[2])
        kv = dict(w.split("=", 1) for w in words[4:] if "=" in w)
        r = {k: float(v) for k, v in kv.items()}
        r["conns"] = conns
        if mode:
            truth[(mode, ex)] = r
        else:
            runs[(ex, module, conns)] = r
    return runs, truth


def cpu_per_1k(r):
    return r["cpu_s"] / r["requests"] * 1000 if r["requests"] else float("nan")


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    i = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[i]


def ratio(a, b):
    return a / b if b else float("nan")


def main():
    results, workdir, delay_ms = sys.argv[1], sys.argv[2], float(sys.argv[3])
    runs, truth = parse(results)

    print("Throughput (wrk → /probe; latency is wrk's, per /probe request)")
    hdr = (f"{'module':<12} {'c':>4} {'exporter':<9} {'probes/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
           f"{'CPU s/1k':>9} {'RSS MB':>7} {'failed':>7}")
    print(hdr)
    print("-" * len(hdr))
    ratios = []
    for module in ("http_2xx", "https_2xx", "tcp_connect", "icmp"):
        for conns in (1, 64, 256):
            pair = {}
            for ex in ("blackbox", "sonde"):
                r = runs.get((ex, module, conns))
                if not r:
                    continue
                pair[ex] = r
                print(f"{module:<12} {conns:>4} {ex:<9} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} "
                      f"{r['p99_ms']:>8.2f} {cpu_per_1k(r):>9.3f} {r['rss_kb'] / 1024:>7.1f} "
                      f"{int(r['bad'] + r['errors']):>7}")
            if len(pair) == 2:
                b, s = pair["blackbox"], pair["sonde"]
                ratios.append((module, conns, ratio(s["rps"], b["rps"]),
                               ratio(cpu_per_1k(s), cpu_per_1k(b)),
                               ratio(s["p99_ms"], b["p99_ms"]), ratio(s["rss_kb"], b["rss_kb"])))
    print()
    print("sonde / blackbox")
    hdr = f"{'module':<12} {'c':>4} {'probes/s':>9} {'CPU/probe':>10} {'p99':>6} {'RSS':>6}"
    print(hdr)
    print("-" * len(hdr))
    for module, conns, t, c, p, m in ratios:
        print(f"{module:<12} {conns:>4} {t:>8.2f}x {c:>9.2f}x {p:>5.2f}x {m:>5.2f}x")

    print()
    print(f"Measurement truth: target answers after {delay_ms:.0f} ms; reported "
          f"probe_duration_seconds − {delay_ms:.0f} ms, in ms")
    hdr = (f"{'mode':<10} {'exporter':<9} {'conns':>5} {'probes':>7} {'probes/s':>9} {'p50':>7} "
           f"{'p90':>7} {'p99':>7} {'max':>8} {'<0':>4}")
    print(hdr)
    print("-" * len(hdr))
    errors = {}
    for mode in ("saturated", "paced"):
        d = truth.get((mode, "direct"))
        if d:
            print(f"{mode:<10} {'(direct)':<9} {int(d['conns']):>5} {int(d['requests']):>7} "
                  f"{d['rps']:>9.0f} {d['p50_ms'] - delay_ms:>7.2f} {d['p90_ms'] - delay_ms:>7.2f} "
                  f"{d['p99_ms'] - delay_ms:>7.2f} {d['max_ms'] - delay_ms:>8.2f}")
        for ex in ("blackbox", "sonde"):
            r = truth.get((mode, ex))
            try:
                xs = [float(l) * 1000 - delay_ms for l in open(f"{workdir}/durs-{mode}-{ex}.txt")
                      if l.strip()]
            except OSError:
                xs = []
            if not r:
                continue
            errors[(mode, ex)] = xs
            neg = sum(1 for x in xs if x < 0)
            print(f"{mode:<10} {ex:<9} {int(r['conns']):>5} {len(xs):>7} {r['rps']:>9.0f} "
                  f"{pct(xs, 50):>7.2f} {pct(xs, 90):>7.2f} {pct(xs, 99):>7.2f} "
                  f"{max(xs) if xs else float('nan'):>8.2f} {neg:>4}")
    print("(direct: wrk's own latency to the target minus the delay — the machine's noise floor, "
          "measured client-side;\n <0: answers shorter than the target's delay — impossible for a "
          "correct measurement)")

    print()
    h = {(m, c): (t, cp) for m, c, t, cp, _, _ in ratios}
    if ("http_2xx", 64) in h:
        t, cp = h[("http_2xx", 64)]
        print(f"issue target http_2xx c=64: throughput {t:.2f}x (want >= 5x): "
              f"{'MET' if t >= 5 else 'NOT MET'}; CPU per probe {cp:.2f}x (want <= 0.20x): "
              f"{'MET' if cp <= 0.2 else 'NOT MET'}")
    for mode in ("saturated", "paced"):
        xs = errors.get((mode, "sonde"))
        if xs:
            p99 = pct(xs, 99)
            print(f"issue target sonde measurement error p99 ({mode}) {p99:.2f} ms "
                  f"(want <= 2 ms): {'MET' if p99 <= 2 else 'NOT MET'}")


main()
