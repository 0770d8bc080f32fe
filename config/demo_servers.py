#!/usr/bin/env python3
"""Stand-ins for trying config/example.toml by hand (python3 stdlib only):

- a token endpoint on 127.0.0.1:15100 (POST /oauth/token, client_secret_basic,
  client id `billing`, secret from $ORDERS_CLIENT_SECRET), issuing opaque tokens
  that live 60 s;
- an echo upstream on 127.0.0.1:8080 answering every request with the method,
  path and headers it received, as JSON.

Not part of the sidecar: the built-in issuer replaces the token endpoint.
"""
import base64, json, os, secrets, threading, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ.get("ORDERS_CLIENT_SECRET", "demo-secret-0123456789abcdef0123456789")


class TokenEndpoint(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        auth = self.headers.get("authorization", "")
        ok = False
        if auth.startswith("Basic "):
            pair = base64.b64decode(auth[6:]).decode()
            cid, _, sec = pair.partition(":")
            ok = urllib.parse.unquote_plus(cid) == "billing" and secrets.compare_digest(
                urllib.parse.unquote_plus(sec), SECRET)
        if not ok:
            return self.answer(401, {"error": "invalid_client"})
        form = urllib.parse.parse_qs(body.decode())
        self.answer(200, {"access_token": "demo-" + secrets.token_urlsafe(16), "token_type": "Bearer",
                          "expires_in": 60, "scope": form.get("scope", [""])[0]})

    def answer(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Echo(TokenEndpoint):
    def do_GET(self):
        self.answer(200, {"method": self.command, "path": self.path, "headers": dict(self.headers)})

    do_POST = do_PUT = do_DELETE = do_GET


if __name__ == "__main__":
    servers = [ThreadingHTTPServer(("127.0.0.1", 15100), TokenEndpoint), ThreadingHTTPServer(("127.0.0.1", 8080), Echo)]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("token endpoint http://127.0.0.1:15100/oauth/token, echo upstream http://127.0.0.1:8080", flush=True)
    servers[0].serve_forever()
