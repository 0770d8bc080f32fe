#!/usr/bin/env python3
"""An echo upstream on 127.0.0.1:8080 for trying config/example.toml by hand
(python3 stdlib only): every request is answered with the method, path and
headers it arrived with, as JSON, so you can see the bearer token the sidecar added.
"""
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        length = int(self.headers.get("content-length", 0) or 0)
        if length:
            self.rfile.read(length)
        data = json.dumps({"method": self.command, "path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET


if __name__ == "__main__":
    print("echo upstream on http://127.0.0.1:8080", flush=True)
    ThreadingHTTPServer(("127.0.0.1", 8080), Echo).serve_forever()
