#!/usr/bin/env python3
"""Minimal OAuth 2.0 token endpoint for bench/run.sh (stdlib only).

Usage: token_server.py PORT [TOKEN]

Answers every POST with a fixed client-credentials token response and counts
the requests it served (GET /__count returns the count, so run.sh can show that
the sidecar really cached the token instead of fetching one per request).
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
TOKEN = sys.argv[2] if len(sys.argv) > 2 else "bench-token"
BODY = json.dumps(
    {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}
).encode()

_lock = threading.Lock()
_count = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 (http.server naming)
        global _count
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with _lock:
            _count += 1
        self._send(200, BODY)

    def do_GET(self):  # noqa: N802
        if self.path == "/__count":
            with _lock:
                n = _count
            self._send(200, f"{n}\n".encode(), "text/plain")
        else:
            self._send(405, b'{"error":"invalid_request"}')

    def log_message(self, fmt, *args):  # keep the benchmark quiet
        pass


if __name__ == "__main__":
    srv = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    srv.daemon_threads = True
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
