#!/usr/bin/env python3
"""Minimal OAuth 2.0 token endpoint for the benchmarks (stdlib only).

Usage: token_server.py PORT [TOKEN] [--expires-in SECONDS] [--close]

Answers every POST with a fixed client-credentials token response
(`expires_in` 3600 unless --expires-in says otherwise; with --close, then closes
the connection, `Connection: close`) and keeps, per request,
the time it arrived and the client_id it named:

  GET /__count   how many token requests were served (run.sh shows the sidecar
                 cached the token instead of fetching one per request)
  GET /__times   one line per token request, "UNIX_TIME CLIENT_ID" (seconds with
                 microseconds; client_id from the form body or Basic auth, "-"
                 when neither names one), oldest first (bench/growth.sh)
"""
import argparse
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

MAX_RECORDS = 1_000_000  # bounded memory: later requests are still counted

_args = argparse.ArgumentParser(description="fixed-answer OAuth token endpoint")
_args.add_argument("port", type=int)
_args.add_argument("token", nargs="?", default="bench-token")
_args.add_argument("--expires-in", type=int, default=3600, metavar="SECONDS")
_args.add_argument("--close", action="store_true", help="close the connection after each token")
ARGS = _args.parse_args()

BODY = json.dumps(
    {"access_token": ARGS.token, "token_type": "Bearer", "expires_in": ARGS.expires_in}
).encode()

_lock = threading.Lock()
_count = 0
_records = []  # (time, client_id)


def client_id_of(headers, body):
    try:
        ids = parse_qs(body.decode("ascii", "replace")).get("client_id")
        if ids:
            return ids[0]
        auth = headers.get("Authorization") or ""
        if auth.lower().startswith("basic "):
            user = base64.b64decode(auth[6:].strip()).decode("utf-8", "replace")
            return user.split(":", 1)[0] or "-"
    except ValueError:
        pass
    return "-"


def clean(text):
    """client_id as one whitespace-free token for the /__times lines."""
    return "".join(c if c.isprintable() and not c.isspace() else "_" for c in text) or "-"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, code, body, ctype="application/json", close=False):
        self.send_response(code)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 (http.server naming)
        global _count
        now = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        cid = clean(client_id_of(self.headers, body))
        with _lock:
            _count += 1
            if len(_records) < MAX_RECORDS:
                _records.append((now, cid))
        self._send(200, BODY, close=ARGS.close)

    def do_GET(self):  # noqa: N802
        if self.path == "/__count":
            with _lock:
                n = _count
            self._send(200, f"{n}\n".encode(), "text/plain")
        elif self.path == "/__times":
            with _lock:
                recs = sorted(_records)
            text = "".join(f"{t:.6f} {cid}\n" for t, cid in recs)
            self._send(200, text.encode(), "text/plain")
        else:
            self._send(405, b'{"error":"invalid_request"}')

    def log_message(self, fmt, *args):  # keep the benchmark quiet
        pass


class Server(ThreadingHTTPServer):
    # A sidecar with many credentials may open hundreds of connections at once:
    # the default listen backlog (5) would drop SYNs and delay them by a second.
    request_queue_size = 4096
    daemon_threads = True


if __name__ == "__main__":
    srv = Server(("127.0.0.1", ARGS.port), Handler)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
