"""N persistent two-user IM sessions for bench/im_sessions.sh, the shape of
scenarios/im-login-send-receive.yaml with users alice-i / bob-i.
Usage: im_config.py N WS_URL INTERVAL"""
import sys

n, url, interval = int(sys.argv[1]), sys.argv[2], sys.argv[3]
print("scenarios:")
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
