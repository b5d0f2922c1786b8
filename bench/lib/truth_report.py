#!/usr/bin/env python3
"""Report for bench/truth.sh: each probe's reported phase durations against the wire.

Usage: truth_report.py RUNS_FILE
RUNS_FILE lines: name exporter target_port pcap records
  name      e.g. delay-http_2xx-c200
  exporter  sonde | blackbox
  target_port  the target's TCP port (0 for icmp)
  pcap      the loopback capture of the run (tcpdump -w, nanosecond timestamps)
  records   truth.lua's output: one /probe answer per line

Wire phases, from the capture (timestamps the kernel took at the loopback device):
  connect     client SYN -> server SYN-ACK (per client port)
  tls         the handshake's rounds, summed: a round is the last data segment of a client
              flight -> the last data segment of the server's answer before the client's next
              flight (flights: runs of data segments one way, in capture order). A probe whose
              trace says "over N round trip(s)" has N handshake rounds; otherwise 1 (TLS 1.3)
  processing  the round after the handshake: its client flight's last segment (the request's)
              -> the server's first data segment after it
  A data segment that brings no new bytes (a retransmission, e.g. a tail loss probe when the
  peer was slow to acknowledge) is not a flight's segment: the bytes left with their first
  copy, which the peer had (its D-SACK says so). They are counted and printed per run.
  rtt         echo request -> echo reply (per ICMP id+seq)

sonde's answers name the local port / ICMP id+seq and give the kernel and user-space figures of
each phase, so each probe is matched to its own packets: |reported - wire| per probe, p50/p99/max.
blackbox_exporter's answers cannot be matched to packets (it logs no port), so its column compares
distributions: |quantile(reported) - quantile(wire)| at p50/p99/max over the run. The same
quantile comparison is printed for sonde-kernel beside it for a like-for-like reading.
"""
import re
import struct
import sys
from collections import defaultdict


def packets(path):
    data = open(path, "rb").read()
    if len(data) < 24:
        return
    magic = data[:4]
    table = {
        b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
        b"\xa1\xb2\x3c\x4d": (">", 1e-9), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    }
    if magic not in table:
        sys.exit(f"{path}: not a pcap file (pcapng is not read; use tcpdump -w)")
    e, unit = table[magic]
    link = struct.unpack(e + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(e + "IIII", data[off:off + 16])
        off += 16
        pkt = data[off:off + incl]
        off += incl
        t = sec + frac * unit
        if link == 1:  # Ethernet (Linux lo)
            proto, ip = struct.unpack("!H", pkt[12:14])[0], pkt[14:]
        elif link == 113:  # Linux cooked
            proto, ip = struct.unpack("!H", pkt[14:16])[0], pkt[16:]
        elif link == 276:  # Linux cooked v2
            proto, ip = struct.unpack("!H", pkt[0:2])[0], pkt[20:]
        else:
            sys.exit(f"{path}: link type {link} not handled")
        if proto != 0x0800 or len(ip) < 20:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        l4 = ip[ihl:]
        if ip[9] == 6 and len(l4) >= 20:
            sport, dport, seq = struct.unpack("!HHI", l4[0:8])
            flags = l4[13]
            doff = (l4[12] >> 4) * 4
            yield t, "tcp", (sport, dport, flags, total - ihl - doff, seq)
        elif ip[9] == 1 and len(l4) >= 8:
            ident, seq = struct.unpack("!HH", l4[4:8])
            yield t, "icmp", (l4[0], ident, seq)


def wire(pcap, port):
    """{client port: [(SYN time, conn), …]} for TCP (a port is reused within a run: one entry per
    connection, in order; conn has syn, synack and rounds), {(id, seq): [(request time,
    {rtt: s})]} for ICMP."""
    conns = defaultdict(list)  # port -> [dict per connection]
    echo = defaultdict(dict)
    for t, kind, f in packets(pcap):
        if kind == "icmp":
            typ, ident, seq = f
            if typ == 8:
                echo[(ident, seq)].setdefault("req", t)
            elif typ == 0:
                echo[(ident, seq)].setdefault("rep", t)
            continue
        sport, dport, flags, plen, seq = f
        syn, ack = flags & 0x02, flags & 0x10
        if dport == port:  # client -> server
            if syn and not ack:
                if not conns[sport] or "synack" in conns[sport][-1]:
                    conns[sport].append({"segs": []})  # a new connection (a retransmitted SYN is not)
                conns[sport][-1].setdefault("syn", t)
                continue
            if conns[sport] and plen > 0 and new_bytes(conns[sport][-1], "c", seq, plen):
                conns[sport][-1]["segs"].append((t, True))
        elif sport == port:
            if not conns[dport]:
                continue
            c = conns[dport][-1]
            if syn and ack:
                c.setdefault("synack", t)
            elif plen > 0 and new_bytes(c, "s", seq, plen):
                c["segs"].append((t, False))
    out = {}
    for p, cs in conns.items():
        out[p] = []
        for c in cs:
            c["rounds"] = rounds(c.pop("segs"))
            out[p].append((c.get("syn", 0.0), c))
    for k, c in echo.items():
        if "req" in c and "rep" in c:
            out[k] = [(c["req"], {"rtt": c["rep"] - c["req"]})]
    return out


RESENT = [0]


def new_bytes(conn, side, seq, plen):
    """Whether a data segment brings bytes past the highest sent so far on that side (32-bit
    sequence arithmetic); a retransmission does not, and is counted in RESENT."""
    end = (seq + plen) & 0xFFFFFFFF
    hi = conn.get(side)
    if hi is not None and not 0 < ((end - hi) & 0xFFFFFFFF) < 1 << 31:
        RESENT[0] += 1
        return False
    conn[side] = end
    return True


def rounds(segs):
    """[(client flight's last segment, server answer's first, server answer's last)]"""
    out, last_client, first_srv, last_srv = [], None, None, None
    for t, client in segs:
        if client:
            if first_srv is not None:
                out.append((last_client, first_srv, last_srv))
                first_srv = last_srv = None
            last_client = t
        elif last_client is not None:
            first_srv = t if first_srv is None else first_srv
            last_srv = t
    if first_srv is not None:
        out.append((last_client, first_srv, last_srv))
    return out


def phases(conn, handshake_rounds):
    """{phase: seconds} of one TCP connection, its first `handshake_rounds` rounds being TLS."""
    if "rtt" in conn:
        return conn
    ph = {}
    if "syn" in conn and "synack" in conn:
        ph["connect"] = conn["synack"] - conn["syn"]
    rs = conn.get("rounds", [])
    if handshake_rounds and len(rs) >= handshake_rounds:
        ph["tls"] = sum(last - c for c, _, last in rs[:handshake_rounds])
    if len(rs) > handshake_rounds:
        c, first, _ = rs[handshake_rounds]
        ph["processing"] = first - c
    return ph


def instance(w, key, when, handshake_rounds):
    """The phases of the connection on `key` whose SYN is nearest `when` (the probe's own
    estimate)."""
    cands = w.get(key) or []
    if not cands:
        return None
    if when is None or len(cands) == 1:
        return phases(cands[0][1], handshake_rounds) if len(cands) == 1 else None
    return phases(min(cands, key=lambda c: abs(c[0] - when))[1], handshake_rounds)


DUR = re.compile(r"(\d+(?:\.\d+)?)(µs|ms|s)\b")
UNIT = {"µs": 1e-6, "ms": 1e-3, "s": 1.0}


def secs(text):
    m = DUR.search(text)
    return float(m.group(1)) * UNIT[m.group(2)] if m else None


def figures(text):
    """(kernel, user) from 'kernel A, user space B (...)' or (None, user) from 'B (user-space timing: …)'."""
    m = re.search(r"kernel (\S+), user space (\S+)", text)
    if m:
        return secs(m.group(1)), secs(m.group(2))
    m = re.search(r"(\S+) \(user-space timing", text)
    return (None, secs(m.group(1))) if m else (None, None)


METRIC = re.compile(r'probe_(?:http|icmp)_duration_seconds\{phase="(\w+)"\} (\S+)')


TS = re.compile(r"ts=(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)\.(\d+)Z")
AT = re.compile(r"at_seconds=(\S+)")


def wall(part):
    """The log line's wall time (ms precision), in Unix seconds."""
    import calendar
    m = TS.search(part)
    if not m:
        return None
    y, mo, d, h, mi, s, ms_ = (int(x) for x in m.groups())
    return calendar.timegm((y, mo, d, h, mi, s)) + ms_ / 1000


ROUNDS = re.compile(r"over (\d+) round trip")


def records(path, exporter):
    """[(key, {phase: reported}, {phase: (kernel, user)}, estimated SYN wall time,
    handshake rounds or None)]"""
    out = []
    for line in open(path, encoding="utf-8", errors="replace"):
        reported = {m.group(1): float(m.group(2)) for m in METRIC.finditer(line)}
        both, key, when, hs = {}, None, None, None
        parts = line.split(" || ")
        # Lines are written when the probe ends: its start is the last line's time minus the
        # last event's offset; the connect event's offset minus its user-space figure is the SYN.
        ats = [float(m.group(1)) for m in (AT.search(p) for p in parts) if m]
        end = wall(parts[0]) if parts else None
        if exporter == "sonde":
            for part in line.split(" || "):
                m = re.search(r"connected to \S+ from port (\d+) in \S+: (.*?)\" ", part + " ")
                if m:
                    key = int(m.group(1))
                    both["connect"] = figures(m.group(2))
                    at = AT.search(part)
                    if end is not None and at and ats and both["connect"][1] is not None:
                        when = end - max(ats) + float(at.group(1)) - both["connect"][1]
                m = re.search(r"response head: processing (.*?)\" ", part + " ")
                if m:
                    both["processing"] = figures(m.group(1))
                m = re.search(r"tls handshake: (.*?)\" ", part + " ")
                if m:
                    both["tls"] = figures(m.group(1))
                    r = ROUNDS.search(m.group(1))
                    hs = int(r.group(1)) if r else None
                m = re.search(r"echo request .*?seq (\d+), id (\d+)", part)
                if m:
                    key = (int(m.group(2)), int(m.group(1)))
                m = re.search(r"echo reply from .*?; rtt (.*?)\" ", part + " ")
                if m:
                    both["rtt"] = figures(m.group(1))
        out.append((key, reported, both, when, hs))
    return out


def q(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def ms(x):
    return f"{x * 1e3:8.3f}"


def row(label, errs):
    if not errs:
        return f"    {label:<28} (no matched probes)"
    return (f"    {label:<28} p50 {ms(q(errs, .5))}  p99 {ms(q(errs, .99))}  "
            f"max {ms(max(errs))}  ms  (n={len(errs)})")


def qdiff_row(label, reported, wired):
    if not reported or not wired:
        return f"    {label:<28} (no data)"
    d = [abs(q(reported, p) - q(wired, p)) for p in (.5, .99)] + [abs(max(reported) - max(wired))]
    return (f"    {label:<28} p50 {ms(d[0])}  p99 {ms(d[1])}  max {ms(d[2])}  ms  "
            f"(quantile vs quantile; n={len(reported)} reported, {len(wired)} on the wire)")


def main():
    for line in open(sys.argv[1]):
        name, exporter, port, pcap, recs = line.split()
        RESENT[0] = 0
        w = wire(pcap, int(port))
        rs = records(recs, exporter)
        tls = "https" in name
        default_hs = 1 if tls else 0
        names = ["rtt"] if port == "0" else (["connect", "tls", "processing"] if tls else ["connect", "processing"])
        on_wire = sum(len(cs) for cs in w.values())
        print(f"{name} [{exporter}]: {len(rs)} probes answered, {on_wire} probes on the wire, "
              f"{RESENT[0]} data segments sent again (not counted as flights)")
        for ph in names:
            wired = [v[ph] for cs in w.values() for _, c in cs
                     for v in [phases(c, default_hs)] if ph in v]
            reported = [r[ph] for _, r, _, _, _ in rs if ph in r]
            print(f"  {ph}: wire p50 {ms(q(wired, .5))} p99 {ms(q(wired, .99))} ms")
            if exporter == "blackbox":
                print(qdiff_row("blackbox |reported - wire|", reported, wired))
                continue
            kern, user, delay, unmatched, nokernel = [], [], [], 0, 0
            for key, _, both, when, hs in rs:
                inst = instance(w, key, when, default_hs if hs is None else hs)
                if ph not in both or inst is None or ph not in inst:
                    unmatched += 1
                    continue
                k, u = both[ph]
                truth = inst[ph]
                if u is not None:
                    user.append(abs(u - truth))
                if k is None:
                    nokernel += 1
                else:
                    kern.append(abs(k - truth))
                    if u is not None:
                        delay.append(u - k)
            print(row("sonde-kernel |rep - wire|", kern))
            print(row("sonde-userspace |rep - wire|", user))
            print(row("sonde own delay (user-kern)", delay))
            print(qdiff_row("sonde-kernel (quantiles)", reported, wired))
            if unmatched or nokernel:
                print(f"    ({unmatched} probes not matched to packets, {nokernel} without a kernel figure)")


if __name__ == "__main__":
    main()
