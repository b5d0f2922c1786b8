"""Scenario files for bench/soak.sh.

usage: soak_config.py main DIR   -> DIR/soak.yaml (the steady mix) and prints its planned runs/s
       soak_config.py churn DIR N -> DIR/churn.yaml, version N (rewritten every minute: a reload
                                     that adds, removes and changes scenarios)

Addresses come from the environment bench/soak.sh sets (all loopback).
"""
import os
import sys

E = os.environ
NGINX = f"127.0.0.1:{E['NGINX_PORT']}"
HOSTILE = int(E["HOSTILE_BASE"])
DEMO_HTTP, DEMO_HTTPS, DEMO_DNS = E["SONDE_EXAMPLE_HTTP"], E["SONDE_EXAMPLE_HTTPS"], E["SONDE_EXAMPLE_DNS"]
IM_URL, CA = E["SONDE_IM_URL"], E["SOAK_CA_FILE"]
ICMP = E.get("SOAK_ICMP", "1") == "1"


def secs(d):
    return float(d[:-2]) / 1000 if d.endswith("ms") else float(d[:-1])


class Doc:
    def __init__(self):
        self.parts, self.rate = [], 0.0

    def add(self, name, interval, body, timeout=None):
        t = f"\n    timeout: {timeout}" if timeout else ""
        self.parts.append(f"  - scenario: {name}\n    interval: {interval}{t}\n{body}")
        self.rate += 1 / secs(interval)

    def write(self, path):
        with open(path + ".tmp", "w") as f:
            f.write("scenarios:\n" + "\n".join(self.parts) + "\n")
        os.replace(path + ".tmp", path)  # the file watcher never sees half a file


def ws_session(name, i, persistent):
    a, b = f"{name}-a{i}", f"{name}-b{i}"
    login = lambda who, u: (  # noqa: E731
        f"      - {{name: {who}-connect, ws.connect: {{as: {who}, url: \"{IM_URL}\", subprotocols: [chat.v1]}}}}\n"
        f"      - {{name: {who}-login, ws.send: {{on: {who}, json: {{op: login, user: {u}, "
        f"token: \"{{{{ hmac_sha256('sonde-demo-secret', '{u}') }}}}\"}}}}}}\n"
        f"      - {{name: {who}-ok, ws.expect: {{on: {who}, match: {{json: {{\"$.op\": login_ok}}}}, within: 3s}}}}\n")
    head = "    session: persistent\n    heartbeat: 20s\n" if persistent else ""
    return (head + "    setup:\n" + login("a", a) + login("b", b) +
            "    steps:\n"
            f"      - {{name: send, ws.send: {{on: a, json: {{op: send, to: {b}, id: \"{{{{ uuid() }}}}\", text: soak}}, "
            "capture: {msg_id: {json: \"$.id\"}}}}\n"
            "      - {name: deliver, ws.expect: {on: b, match: {json: {\"$.op\": message, \"$.id\": \"{{ msg_id }}\"}}, within: 3s}}\n"
            "    teardown:\n      - ws.close: {on: a}\n      - ws.close: {on: b}")


def main_doc():
    d = Doc()
    for i in range(500):
        d.add(f"http-{i:03d}", "1s", f"    http: {{url: \"http://{NGINX}/p{i}\"}}", "900ms")
    for i in range(150):
        d.add(f"tcp-{i:03d}", "1s", f"    tcp: {{target: \"{NGINX}\"}}", "900ms")
    for i in range(50):
        d.add(f"tcp-qr-{i:02d}", "1s",
              f"    tcp:\n      target: \"{NGINX}\"\n      query_response:\n"
              "        - send: \"HEAD / HTTP/1.0\\r\\n\\r\"\n        - expect: \"^HTTP/1\\\\.[01] 200\"", "900ms")
    for i in range(150):
        proto = "udp" if i % 3 else "tcp"
        d.add(f"dns-{i:03d}", "1s",
              f"    dns: {{server: \"{DEMO_DNS}\", query_name: web.sonde.test, query_type: A, "
              f"transport_protocol: {proto}}}", "900ms")
    if ICMP:
        for i in range(50):
            d.add(f"icmp-{i:02d}", "1s", "    icmp: {target: 127.0.0.1}", "900ms")
    for i in range(20):
        d.add(f"https-{i:02d}", "2s",
              f"    http:\n      url: \"https://localhost:{DEMO_HTTPS.split(':')[1]}/\"\n"
              f"      tls_config: {{ca_file: \"{CA}\"}}\n    expect: {{status: 200, body: {{contains: hello}}}}")
    for i in range(40):  # multi-step: a capture feeds the next step's request
        d.add(f"steps-{i:02d}", "2s",
              "    steps:\n"
              f"      - name: health\n        http: {{url: \"http://{DEMO_HTTP}/health\"}}\n"
              "        expect: {status: 200, json: {\"$.status\": ok}}\n"
              "        capture: {state: {json: \"$.status\"}}\n"
              f"      - name: page\n        http: {{url: \"http://{DEMO_HTTP}/?state={{{{ state }}}}\"}}\n"
              "        expect: {status: 200, body: {contains: hello}}\n"
              f"      - name: nginx\n        http: {{url: \"http://{NGINX}/after/{{{{ state }}}}\"}}")
    for i in range(20):
        d.add(f"ws-persistent-{i:02d}", "5s", ws_session("wsp", i, True), "4s")
    for i in range(5):
        d.add(f"ws-oneshot-{i}", "10s", ws_session("wso", i, False), "5s")
    # hostile: each must end at its deadline and fail only itself
    for i in range(30):
        d.add(f"hostile-silent-http-{i:02d}", "5s", f"    http: {{url: \"http://127.0.0.1:{HOSTILE}/\"}}", "2s")
        d.add(f"hostile-trickle-{i:02d}", "5s", f"    http: {{url: \"http://127.0.0.1:{HOSTILE + 1}/\"}}", "2s")
        d.add(f"hostile-reset-{i:02d}", "5s", f"    http: {{url: \"http://127.0.0.1:{HOSTILE + 2}/\"}}", "2s")
    for i in range(20):
        d.add(f"hostile-silent-tcp-{i:02d}", "5s",
              f"    tcp:\n      target: \"127.0.0.1:{HOSTILE}\"\n      query_response:\n        - expect: \"^220 \"", "2s")
        d.add(f"hostile-silent-dns-{i:02d}", "5s",
              f"    dns: {{server: \"127.0.0.1:{HOSTILE + 3}\", query_name: web.sonde.test, query_type: A}}", "2s")
    return d


def churn_doc(n):
    """20 HTTP scenarios whose names alternate between two sets, one of which changes its path
    and interval every version: each reload removes 20, adds 20 and changes some."""
    d = Doc()
    tag = "a" if n % 2 == 0 else "b"
    for i in range(20):
        interval = "1s" if (n // 2) % 2 == 0 else "2s"
        d.add(f"churn-{tag}-{i:02d}", interval, f"    http: {{url: \"http://{NGINX}/churn/{n}/{i}\"}}", "900ms")
    return d


if __name__ == "__main__":
    if sys.argv[1] == "main":
        doc = main_doc()
        doc.write(os.path.join(sys.argv[2], "soak.yaml"))
        print(f"{len(doc.parts)} {doc.rate:.1f}")
    else:
        churn_doc(int(sys.argv[3])).write(os.path.join(sys.argv[2], "churn.yaml"))
