#!/usr/bin/env python3
"""bench/issuer_scale.py — the HTTP client of bench/issuer-scale.sh (stdlib only).

Subcommands (progress and errors on stderr, results on stdout as one line of
key=value pairs that the shell script parses):

  overhead URL --n N
      N keep-alive GETs of URL (a trivial endpoint, the issuer's /healthz):
      round trip p50/p99 in µs and this client's own CPU µs per request.
  create --url URL[,URL2] --token-url URL --audience MGMT --api AUD
         --start S --count C --out FILE --ids FILE
      Creates C apps named app-S .. app-(S+C-1) one by one with
      POST /api/v1/apps over one keep-alive connection per URL (with two URLs,
      writes alternate between them), timing each request. Appends one latency
      (µs) per line to FILE and the created client ids to --ids. Any answer other
      than 201 with a client_secret stops the run (exit 1). The admin token
      (client_credentials, client_secret_post; the secret comes from the
      ADMIN_SECRET environment variable, never argv) is fetched first and renewed
      outside the timed requests once half its lifetime has passed.
  blocks FILE --block B
      p50/p99/max per block of B lines of FILE (in file order), then the whole.
  wait --url BASE --pid PID --t0 EPOCH --timeout S
      Polls BASE + "healthz" every 5 ms until 200, then BASE + "readyz" until 200
      (404: the issuer has no /readyz, reported as n/a): seconds since T0 for each.
      Fails when PID exits or the bound passes.
  exists --url BASE --token-url URL --audience MGMT --id CLIENT_ID
      GET /api/v1/apps/CLIENT_ID with an admin token: exit 0 when 200.
"""

import argparse
import http.client  # only for polling /healthz in `wait`
import json
import os
import socket
import sys
import time
import urllib.parse

ADMIN_ID = os.environ.get("ADMIN_ID", "admin")


def die(msg):
    print(f"[issuer_scale.py] ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


class Conn:
    """One keep-alive HTTP/1.1 connection to BASE (http://host:port/), TCP_NODELAY.

    A minimal client on a plain socket: http.client (email.parser for the headers)
    costs ~70 µs of CPU per request more, ~200 µs after the idle wait of a write,
    which would show in the write latencies; this one answers a trivial endpoint
    in ~30 µs round trip (measured by `overhead`)."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        if u.scheme != "http" or not u.hostname or not u.port:
            die(f"expected http://HOST:PORT/, got {base}")
        self.base = base if base.endswith("/") else base + "/"
        self.host, self.port = u.hostname, u.port
        self.sock = None

    def _connect(self):
        self.sock = socket.create_connection((self.host, self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def message(self, method, path, body=None, headers=None):
        """The request's bytes (made before the timed round trip)."""
        lines = [f"{method} /{path.lstrip('/')} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")

    def roundtrip(self, msg):
        """Send MSG, read one whole response: (status, body bytes). Reconnects once when
        the server had closed the idle connection (nothing at all came back)."""
        for attempt in (0, 1):
            if self.sock is None:
                self._connect()
            try:
                self.sock.sendall(msg)
                return self._response()
            except (ConnectionResetError, BrokenPipeError, EOFError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def request(self, method, path, body=None, headers=None):
        return self.roundtrip(self.message(method, path, body, headers))

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by the server")
        return chunk

    def _response(self):
        buf = self._recv()
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += self._recv()
        head = buf[:end].decode("latin-1").split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise OSError(f"not an HTTP/1 response: {head[0]!r}")
        status = int(parts[1])
        fields = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            fields[k.strip().lower()] = v.strip()
        rest = buf[end + 4:]
        if "chunked" in fields.get("transfer-encoding", "").lower():
            body = self._chunked(rest)
        else:
            n = int(fields.get("content-length", "0"))
            while len(rest) < n:
                rest += self._recv()
            body = rest[:n]
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def _chunked(self, rest):
        body = b""
        while True:
            while (eol := rest.find(b"\r\n")) < 0:
                rest += self._recv()
            size = int(rest[:eol].split(b";")[0], 16)
            rest = rest[eol + 2:]
            while len(rest) < size + 2:
                rest += self._recv()
            if size == 0:
                return body  # trailers are not used by the issuer
            body += rest[:size]
            rest = rest[size + 2:]


def pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, -(-len(sorted_vals) * p // 100) - 1))
    return sorted_vals[int(k)]


class Token:
    """An admin token for the management audience, renewed at half its lifetime."""

    def __init__(self, token_url, audience):
        secret = os.environ.get("ADMIN_SECRET")
        if not secret:
            die("ADMIN_SECRET is not set")
        u = urllib.parse.urlsplit(token_url)
        self.conn = Conn(f"{u.scheme}://{u.netloc}/")
        self.path = u.path
        self.form = urllib.parse.urlencode(
            [("grant_type", "client_credentials"), ("client_id", ADMIN_ID),
             ("client_secret", secret), ("audience", audience)]).encode()
        self.value, self.renew_at = None, 0.0

    def get(self):
        if self.value is None or time.monotonic() >= self.renew_at:
            status, data = self.conn.request(
                "POST", self.path, self.form,
                {"Content-Type": "application/x-www-form-urlencoded"})
            if status != 200:
                die(f"admin token request answered {status}: {data[:300]!r}")
            tok = json.loads(data)
            self.value = tok["access_token"]
            self.renew_at = time.monotonic() + max(1, int(tok.get("expires_in", 60)) // 2)
        return self.value


def cmd_overhead(a):
    c = Conn(a.url)
    msg = c.message("GET", urllib.parse.urlsplit(a.url).path)
    for _ in range(min(200, a.n)):  # warm-up
        c.roundtrip(msg)
    lat = []
    cpu0 = time.process_time()
    for _ in range(a.n):
        t0 = time.perf_counter_ns()
        status, _ = c.roundtrip(msg)
        lat.append((time.perf_counter_ns() - t0) / 1000)
        if status != 200:
            die(f"GET {a.url} answered {status}")
    cpu = (time.process_time() - cpu0) * 1e6 / a.n
    lat.sort()
    print(f"n={a.n} p50_us={pct(lat, 50):.1f} p99_us={pct(lat, 99):.1f} client_cpu_us={cpu:.1f}")


def cmd_create(a):
    urls = a.url.split(",")
    conns = [Conn(u) for u in urls]
    token = Token(a.token_url, a.audience)
    grants = {a.api: ["orders:read"]}
    lat_out = open(a.out, "a", encoding="ascii")
    ids_out = open(a.ids, "a", encoding="ascii")
    cpu_total, timed, last_id = 0.0, 0.0, ""
    progress_every = max(1, a.count // 10)
    start_wall = time.monotonic()
    for i in range(a.start, a.start + a.count):
        conn = conns[i % len(conns)]
        body = json.dumps({"name": f"app-{i}", "grants": grants}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token.get()}
        msg = conn.message("POST", "api/v1/apps", body, headers)
        c0 = time.process_time()
        t0 = time.perf_counter_ns()
        status, data = conn.roundtrip(msg)
        t1 = time.perf_counter_ns()
        cpu_total += time.process_time() - c0
        us = (t1 - t0) / 1000
        timed += us
        if status != 201 or b'"client_secret"' not in data:
            # Error bodies never hold a secret; a 201 without client_secret is shown cut.
            die(f"app-{i} via {conn.base}: HTTP {status}: {data[:300]!r}")
        last_id = json.loads(data)["client_id"]
        lat_out.write(f"{us:.1f}\n")
        ids_out.write(last_id + "\n")
        done = i - a.start + 1
        if a.count >= 100 and done % progress_every == 0:
            print(f"[issuer_scale.py] {done}/{a.count} apps, last {us / 1000:.2f} ms", file=sys.stderr)
    lat_out.close()
    ids_out.close()
    n = max(1, a.count)
    wall = time.monotonic() - start_wall
    print(f"created={a.count} client_cpu_us={cpu_total * 1e6 / n:.1f} "
          f"mean_us={timed / n:.1f} wall_s={wall:.1f} last_id={last_id}")


def cmd_blocks(a):
    with open(a.file, encoding="ascii") as f:
        vals = [float(x) for x in f if x.strip()]
    if not vals:
        die(f"no latencies in {a.file}")
    b = max(1, a.block)
    for s in range(0, len(vals), b):
        blk = sorted(vals[s:s + b])
        print(f"block from={s + 1} to={s + len(blk)} p50_us={pct(blk, 50):.0f} "
              f"p99_us={pct(blk, 99):.0f} max_us={blk[-1]:.0f}")
    allv = sorted(vals)
    print(f"all from=1 to={len(vals)} p50_us={pct(allv, 50):.0f} p99_us={pct(allv, 99):.0f} "
          f"max_us={allv[-1]:.0f}")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by the shell) is not alive.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def poll(url, pid, deadline):
    """Poll until 200 (or 404); returns the status."""
    u = urllib.parse.urlsplit(url)
    while True:
        if not alive(pid):
            die(f"process {pid} exited while waiting for {url}")
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=1)
            c.request("GET", u.path)
            status = c.getresponse().status
            c.close()
            if status in (200, 404):
                return status
        except OSError:
            pass
        if time.time() > deadline:
            die(f"no 200 from {url} within the bound")
        time.sleep(0.005)


def cmd_wait(a):
    deadline = a.t0 + a.timeout
    base = a.url if a.url.endswith("/") else a.url + "/"
    if poll(base + "healthz", a.pid, deadline) != 200:
        die(f"{base}healthz answered 404")
    health = time.time() - a.t0
    ready = "n/a"
    if poll(base + "readyz", a.pid, deadline) == 200:
        ready = f"{time.time() - a.t0:.3f}"
    print(f"healthz_s={health:.3f} readyz_s={ready}")


def cmd_exists(a):
    token = Token(a.token_url, a.audience)
    status, _ = Conn(a.url).request(
        "GET", f"api/v1/apps/{urllib.parse.quote(a.id, safe='')}", None,
        {"Authorization": "Bearer " + token.get()})
    if status != 200:
        die(f"GET api/v1/apps/{a.id} answered {status}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("url")
    o.add_argument("--n", type=int, default=2000)
    c = sub.add_parser("create")
    c.add_argument("--url", required=True, help="issuer base URL(s), comma-separated")
    c.add_argument("--token-url", required=True)
    c.add_argument("--audience", required=True, help="the management API's audience")
    c.add_argument("--api", required=True, help="the API the new apps get orders:read on")
    c.add_argument("--start", type=int, required=True)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--ids", required=True)
    b = sub.add_parser("blocks")
    b.add_argument("file")
    b.add_argument("--block", type=int, required=True)
    w = sub.add_parser("wait")
    w.add_argument("--url", required=True)
    w.add_argument("--pid", type=int, required=True)
    w.add_argument("--t0", type=float, required=True)
    w.add_argument("--timeout", type=float, required=True)
    e = sub.add_parser("exists")
    e.add_argument("--url", required=True)
    e.add_argument("--token-url", required=True)
    e.add_argument("--audience", required=True)
    e.add_argument("--id", required=True)
    a = p.parse_args()
    {"overhead": cmd_overhead, "create": cmd_create, "blocks": cmd_blocks,
     "wait": cmd_wait, "exists": cmd_exists}[a.cmd](a)


if __name__ == "__main__":
    main()
