"""A fixture target on loopback that flaps: two answers 200, then two 503, and so on."""
import http.server
import itertools
import sys

count = itertools.count()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        n = next(count)
        code = 200 if (n // 2) % 2 == 0 else 503
        body = b"ok\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
