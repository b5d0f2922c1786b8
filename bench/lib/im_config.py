"""N persistent two-user IM sessions for bench/im_sessions.sh, the shape of
scenarios/im-login-send-receive.yaml (ws) or scenarios/im-tcp-protobuf.yaml (tcp) with users
alice-i / bob-i.
Usage: im_config.py N URL INTERVAL [ws|tcp]   (URL: ws://HOST:PORT/chat, or HOST:PORT for tcp;
tcp needs chat.proto beside the generated file)"""
import sys

n, url, interval = int(sys.argv[1]), sys.argv[2], sys.argv[3]
proto = sys.argv[4] if len(sys.argv) > 4 else "ws"
print("scenarios:")
if proto == "tcp":
    conn = f'target: "{url}", framing: {{length: {{bytes: 4}}}}, proto_file: chat.proto, message: chat.v1.ServerFrame'
    pb = "proto_file: chat.proto, message: chat.v1.ClientFrame"
    for i in range(n):
        a, b = f"alice-{i}", f"bob-{i}"
        print(f"""  - scenario: im-{i:05d}
    interval: {interval}
    timeout: 5s
    session: persistent
    setup:
      - {{name: a-connect, tcp.connect: {{as: a, {conn}, heartbeat: {{hex: "1a00", every: 30s}}}}}}
      - {{name: a-login, tcp.send: {{on: a, {pb}, protobuf: {{login: {{user: {a}, token: "{{{{ hmac_sha256('sonde-demo-secret', '{a}') }}}}"}}}}}}}}
      - {{name: a-ok, tcp.expect: {{on: a, match: {{json: {{"$.login_ok.user": {a}}}}}, within: 3s}}}}
      - {{name: b-connect, tcp.connect: {{as: b, {conn}, heartbeat: {{hex: "1a00", every: 30s}}}}}}
      - {{name: b-login, tcp.send: {{on: b, {pb}, protobuf: {{login: {{user: {b}, token: "{{{{ hmac_sha256('sonde-demo-secret', '{b}') }}}}"}}}}}}}}
      - {{name: b-ok, tcp.expect: {{on: b, match: {{json: {{"$.login_ok.user": {b}}}}}, within: 3s}}}}
    steps:
      - {{name: send, tcp.send: {{on: a, {pb}, protobuf: {{send: {{to: {b}, id: "{{{{ uuid() }}}}", text: hi}}}}, capture: {{msg_id: {{json: "$.send.id"}}}}}}}}
      - {{name: deliver, tcp.expect: {{on: b, match: {{json: {{"$.message.id": "{{{{ msg_id }}}}"}}}}, within: 3s}}}}""")
    sys.exit(0)
for i in range(n):
    a, b = f"alice-{i}", f"bob-{i}"
    print(f"""  - scenario: im-{i:05d}
    interval: {interval}
    timeout: 5s
    session: persistent
    heartbeat: 30s
    setup:
      - {{name: a-connect, ws.connect: {{as: a, url: "{url}"}}}}
      - {{name: a-login, ws.send: {{on: a, json: {{op: login, user: {a}, token: "{{{{ hmac_sha256('sonde-demo-secret', '{a}') }}}}"}}}}}}
      - {{name: a-ok, ws.expect: {{on: a, match: {{json: {{"$.op": login_ok}}}}, within: 3s}}}}
      - {{name: b-connect, ws.connect: {{as: b, url: "{url}"}}}}
      - {{name: b-login, ws.send: {{on: b, json: {{op: login, user: {b}, token: "{{{{ hmac_sha256('sonde-demo-secret', '{b}') }}}}"}}}}}}
      - {{name: b-ok, ws.expect: {{on: b, match: {{json: {{"$.op": login_ok}}}}, within: 3s}}}}
    steps:
      - {{name: send, ws.send: {{on: a, json: {{op: send, to: {b}, id: "{{{{ uuid() }}}}", text: hi}}, capture: {{msg_id: {{json: "$.id"}}}}}}}}
      - {{name: deliver, ws.expect: {{on: b, match: {{json: {{"$.op": message, "$.id": "{{{{ msg_id }}}}"}}}}, within: 3s}}}}""")
