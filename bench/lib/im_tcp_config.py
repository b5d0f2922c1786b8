"""Persistent two-user IM sessions over raw TCP with length-prefixed protobuf frames for
bench/im_tcp_sessions.sh: the shape of scenarios/im-tcp-protobuf.yaml with users alice-i / bob-i.
Usage: im_tcp_config.py FIRST COUNT HOST:PORT INTERVAL  (chat.proto must sit beside the output)"""
import sys

first, count, target, interval = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]

CONNECT = ('{name: %(c)s-connect, tcp.connect: {as: %(c)s, target: "' + target + '", '
           'framing: {length: {bytes: 4}}, proto_file: chat.proto, message: chat.v1.ServerFrame, '
           'heartbeat: {hex: "1a00", every: 30s}}}')
SEND = 'tcp.send: {on: %(c)s, proto_file: chat.proto, message: chat.v1.ClientFrame, protobuf: '
TOKEN = "\"{{ hmac_sha256('sonde-demo-secret', '%(u)s') }}\""
LOGIN = ('{name: %(c)s-login, ' + SEND + '{login: {user: %(u)s, token: ' + TOKEN + '}}}}')
OK = '{name: %(c)s-ok, tcp.expect: {on: %(c)s, match: {json: {"$.login_ok.user": %(u)s}}, within: 3s}}'
MSG = ('{name: send, ' + SEND.replace('%(c)s', 'a') +
       '{send: {to: %(u)s, id: "{{ uuid() }}", text: hi}}, capture: {msg_id: {json: "$.send.id"}}}}')
DELIVER = ('{name: deliver, tcp.expect: {on: b, match: {json: {"$.message.id": "{{ msg_id }}"}}, '
           'within: 3s}}')

print("scenarios:")
for i in range(first, first + count):
    a, b = {"c": "a", "u": f"alice-{i}"}, {"c": "b", "u": f"bob-{i}"}
    print(f"""  - scenario: im-tcp-{i:05d}
    interval: {interval}
    timeout: 5s
    session: persistent
    setup:
      - {CONNECT % a}
      - {LOGIN % a}
      - {OK % a}
      - {CONNECT % b}
      - {LOGIN % b}
      - {OK % b}
    steps:
      - {MSG % b}
      - {DELIVER}""")
