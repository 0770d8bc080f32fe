#!/usr/bin/env bash
# bench/growth.sh — how m2m-sidecar behaves as its configuration and load grow (issue 13).
#
# Sections (each prints its own markdown table on stdout; progress goes to stderr):
#   forward      forward proxy (HTTP_PROXY mode) with 1, 100, 1000 mapped hosts; the load
#                hits the LAST route (127.0.0.1:<upstream port>, absolute-form requests
#                from wrk): req/s, p99, sidecar CPU µs/req, ratio to 1 host
#   inbound      [inbound] with 1, 100, 1000 rules; the load hits the LAST rule
#                (`/target/*` public, no token): the same figures
#   credentials  1, 100, 1000 credentials on one token endpoint, one outbound listener:
#                start-up time to /readyz 200, idle RSS, token requests at start-up
#                (total and the peak in any 1-second window)
#   connections  32, 256, 1024, 4096 keep-alive connections through an outbound listener
#                and, at each level in the same run, through the peer: nginx as a reverse proxy
#                with a static bearer (bench/run.sh scenario (b); bench/growth-nginx-proxy.conf.tmpl,
#                limits raised for 4,096 clients): req/s, p50/p99, CPU µs/req, RSS at the end of
#                the run (connections open; nginx: master + worker), sidecar VmHWM; the ratios
#                sidecar / nginx and each one's CPU/req against its own at the first level
#   lifetimes    1000 credentials whose tokens live 60 s, no traffic, ~3.5 refresh periods:
#                token requests per credential per refresh period, requests/s per 1-second
#                bucket in the steady state (mean, peak, peak/mean)
# `config` = forward,inbound,credentials. A plot (SVG, bench/growth_plot.py) shows CPU/req
# against configuration size and connections, RSS against connections and credentials, and
# the token requests per second of the lifetimes run; its data goes beside it (.tsv).
#
# Processes: sidecar (M2M_WORKER_THREADS=1) or nginx proxy (1 worker), and the nginx upstream
# (1 worker) on core 0; wrk (-t1), the token endpoint (bench/token_server.py) and the readiness
# poller on core 1. Every load point starts a fresh sidecar / nginx proxy and warms it up.
#
# Needs (Debian packages): nginx-light (or nginx), wrk, curl, python3, openssl (inbound keys),
# util-linux (taskset), coreutils, libc-bin. At least 2 CPUs. Missing packages are installed
# when run as root.
#
# Environment:
#   SIDECAR_BIN   sidecar binary (default <repo>/target/release/m2m-sidecar; copied into the
#                 temp dir first, so a rebuild during the run does not matter)
#   SECTIONS      comma list of the sections above, or `config`, or `all` (default all)
#   QUICK         1 = smoke run: 3 s measurements, 1 s warm-up; lifetimes: 200 credentials,
#                 15 s tokens, 54 s
#   DURATION      measured wrk run per point (default 10s; QUICK 3s); warm-up WARMUP (2s; QUICK 1s)
#   SIZES         configuration sizes (default "1 100 1000")
#   INSTR         forward/inbound: also count user-space instructions per request with
#                 callgrind (repeatable on a busy machine): auto (default: if valgrind is
#                 installed), 1 (required), 0 (off). INSTR_DURATION: its wrk -c8 run (default 5s; QUICK 3s)
#   CONN_LEVELS   connection counts (default "32 256 1024 4096")
#   TOKEN_TTL     lifetimes: expires_in in seconds (default 60; QUICK 15)
#   LIFETIME_CREDS  lifetimes: credentials (default 1000; QUICK 200). Keep LIFETIME_CREDS /
#                 (0.8 × TOKEN_TTL) under the sidecar's token_requests_per_second (default 50)
#   LIFETIME_RUN  lifetimes: seconds from start (default 3.5 refresh periods + 12 s: 180 for 60 s)
#   TOKEN_CLOSE   1 = the token endpoint closes each connection after its answer (default: keeps
#                 them open, as most identity providers do for a while)
#   CRED_READY_TIMEOUT  bound on start-up to /readyz in the credentials sections (default 120 s)
#   PLOT          SVG output (default <repo>/bench/growth.svg; its data: same name, .tsv)
#   KEEP_TMP      1 = keep the temp dir (configs, logs, raw wrk output, token request times)
#   OUT           also write the markdown report to this file
#
# Usage: bench/growth.sh > growth.md        SECTIONS=connections QUICK=1 bench/growth.sh
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    # 200 credentials with 15 s tokens: 17 token requests/s, under the sidecar's default pace
    DURATION=${DURATION:-3s} WARMUP=${WARMUP:-1s} TOKEN_TTL=${TOKEN_TTL:-15} SETTLE=2
    LIFETIME_CREDS=${LIFETIME_CREDS:-200}
else
    DURATION=${DURATION:-10s} WARMUP=${WARMUP:-2s} TOKEN_TTL=${TOKEN_TTL:-60} SETTLE=3
fi
SIDECAR_BIN=${SIDECAR_BIN:-$REPO_DIR/target/release/m2m-sidecar}
SECTIONS=${SECTIONS:-all}
SIZES=${SIZES:-1 100 1000}
CONN_LEVELS=${CONN_LEVELS:-32 256 1024 4096}
LIFETIME_CREDS=${LIFETIME_CREDS:-1000}
REFRESH_AT=0.8 # the sidecar's default refresh_at
LIFETIME_RUN=${LIFETIME_RUN:-$(awk -v t="$TOKEN_TTL" -v r="$REFRESH_AT" \
    'BEGIN { x = 3.5 * t * r + 12; printf "%d", (x == int(x)) ? x : int(x) + 1 }')}
CRED_READY_TIMEOUT=${CRED_READY_TIMEOUT:-120}
TOKEN_CLOSE=${TOKEN_CLOSE:-0}
INSTR=${INSTR:-auto}
INSTR_DURATION=${INSTR_DURATION:-$([[ $QUICK == 1 ]] && echo 3s || echo 5s)}
PLOT=${PLOT:-$REPO_DIR/bench/growth.svg}
KEEP_TMP=${KEEP_TMP:-0}
OUT=${OUT:-}
CONNECTIONS=32 # wrk connections for the configuration-size runs
TOKEN=bench-token
PROXY_CPU=0
WRK_CPU=1
READY_TIMEOUT=30 # seconds, for every readiness poll but the credentials sections'
T_START=$SECONDS

log() { printf '[growth] %s\n' "$*" >&2; }
die() { printf '[growth] ERROR: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------------
# Options, dependencies
# --------------------------------------------------------------------------
ALL_SECTIONS=(forward inbound credentials connections lifetimes)
SEL=","
IFS=, read -r -a wanted <<<"$SECTIONS"
for s in "${wanted[@]}"; do
    case $s in
        all) SEL+="forward,inbound,credentials,connections,lifetimes," ;;
        config) SEL+="forward,inbound,credentials," ;;
        forward | inbound | credentials | connections | lifetimes) SEL+="$s," ;;
        '') ;;
        *) die "unknown section '$s' (${ALL_SECTIONS[*]}, config, all)" ;;
    esac
done
[[ $SEL != , ]] || die "SECTIONS selects nothing"
want() { [[ $SEL == *",$1,"* ]]; }

for v in SIZES CONN_LEVELS; do
    [[ ${!v} =~ ^[1-9][0-9]*( +[1-9][0-9]*)*$ ]] || die "$v must be positive integers separated by spaces"
done
for v in TOKEN_TTL LIFETIME_CREDS LIFETIME_RUN CRED_READY_TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
read -r -a SIZE_LIST <<<"$SIZES"
read -r -a CONN_LIST <<<"$CONN_LEVELS"

PATH=$PATH:/usr/sbin:/sbin
declare -A PKG_FOR=([nginx]=nginx-light [wrk]=wrk [curl]=curl [python3]=python3 [openssl]=openssl
                    [taskset]=util-linux [getconf]=libc-bin [timeout]=coreutils)
need_pkgs=()
for cmd in nginx wrk curl python3 openssl taskset getconf timeout; do
    command -v "$cmd" >/dev/null 2>&1 || need_pkgs+=("${PKG_FOR[$cmd]}")
done
install_packages "${need_pkgs[@]}"
NGINX_BIN=${NGINX_BIN:-$(command -v nginx)}
have_valgrind() { command -v valgrind && command -v callgrind_control && command -v callgrind_annotate; } >/dev/null 2>&1
case $INSTR in
    auto) if have_valgrind; then INSTR=1; else INSTR=0; fi ;;
    1) have_valgrind || die "INSTR=1 needs valgrind (apt-get install -y valgrind)" ;;
    0) ;;
    *) die "INSTR is auto, 1 or 0" ;;
esac
[[ $INSTR_DURATION =~ ^([1-9][0-9]*)s?$ ]] || die "INSTR_DURATION must look like 5s"
INSTR_DURATION_S=${BASH_REMATCH[1]}
[[ -x $SIDECAR_BIN ]] || die "sidecar binary not found at $SIDECAR_BIN (cargo build --release, or set SIDECAR_BIN)"

check_cpus "$PROXY_CPU" "$WRK_CPU"
parse_duration
WARMUP_S=${WARMUP%s}
[[ $WARMUP_S =~ ^[1-9][0-9]*$ ]] || die "WARMUP must look like 2s"
CLK_TCK=$(getconf CLK_TCK)

# Open files: wrk and the upstream nginx hold one descriptor per connection, the sidecar and
# the nginx proxy two (downstream + upstream); raise the soft limit up to the hard one if the
# largest level needs it.
MAX_CONN=$CONNECTIONS
if want connections; then
    for c in "${CONN_LIST[@]}"; do ((c > MAX_CONN)) && MAX_CONN=$c; done
fi
NOFILE_NEED=$((2 * MAX_CONN + 1024))
if (($(ulimit -n) < NOFILE_NEED)); then
    hard=$(ulimit -Hn)
    [[ $hard == unlimited ]] || ((hard >= NOFILE_NEED)) ||
        die "open-file limit: need $NOFILE_NEED for $MAX_CONN connections, hard limit is $hard (raise it, or lower CONN_LEVELS)"
    ulimit -n "$NOFILE_NEED"
fi
NOFILE=$(ulimit -n)

check_load

start_run m2m-growth # TMP, PIDS and the cleanup traps (lib.sh)
BIN=$TMP/m2m-sidecar
cp "$SIDECAR_BIN" "$BIN"
SIDECAR_VERSION=$(timeout 5 "$BIN" --version 2>/dev/null | head -n1 || true)
PLOT_DATA=$TMP/plot.tsv
: >"$PLOT_DATA"

WARNINGS=()
# shellcheck disable=SC2034 # R_UPCPU and the other R_* are filled by lib.sh's measured_run
declare -A R_RPS R_P50 R_P99 R_CPU R_UPCPU R_PCT R_UPPCT R_ERR R_CORE0 R_CORE1 R_WRKPCT
declare -A R_IDLE_RSS R_END_RSS R_HWM R_INSTR R_UPCONN

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
forget_pid() { # stop PID and drop it from PIDS (so cleanup never signals a reused PID)
    local pid=$1 i keep=()
    stop_pid "$pid"
    for i in "${PIDS[@]}"; do [[ $i == "$pid" ]] || keep+=("$i"); done
    PIDS=("${keep[@]}")
}

PORT_PROXY="" KEEPALIVE=64 # the nginx proxy's port and upstream keepalive (connections section)
render() { # render TEMPLATE OUTPUT: substitute @NAME@ placeholders
    sed -e "s|@PREFIX@|$TMP|g" \
        -e "s|@PORT_UPSTREAM@|$PORT_UPSTREAM|g" \
        -e "s|@PORT_SIDECAR@|$PORT_SIDECAR|g" \
        -e "s|@PORT_PROXY@|$PORT_PROXY|g" \
        -e "s|@KEEPALIVE@|$KEEPALIVE|g" \
        -e "s|@PORT_ADMIN@|$PORT_ADMIN|g" \
        -e "s|@PORT_TOKEN@|$PORT_TOKEN|g" \
        -e "s|@TOKEN@|$TOKEN|g" \
        -e "s|@WORKER_CONNECTIONS@|$((NOFILE - 64))|g" \
        "$1" >"$2"
    if grep -q '@[A-Z_]*@' "$2"; then die "unsubstituted placeholder in $2"; fi
}

plot_panel() { # plot_panel ID TITLE XLABEL YLABEL lin|log
    printf 'panel\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$PLOT_DATA"
}
plot_point() { # plot_point PANEL SERIES X Y
    printf 'point\t%s\t%s\t%s\t%s\n' "$@" >>"$PLOT_DATA"
}

kb_of() { # kb_of PID FIELD: a /proc/PID/status field in kB (no fork)
    local k v _
    while read -r k v _; do
        [[ $k == "$2:" ]] && { echo "$v"; return 0; }
    done <"/proc/$1/status"
    echo 0
}
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# wait_ready URL PID TIMEOUT: poll (every 10 ms, from core 1) until URL answers 200; prints
# the UNIX time it did. Exit 1 on timeout, 2 when PID exited.
wait_ready() {
    taskset -c "$WRK_CPU" python3 - "$@" <<'PY'
import http.client, sys, time, urllib.parse
url, pid, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
u = urllib.parse.urlsplit(url)
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                sys.exit(2)
    except FileNotFoundError:
        sys.exit(2)
    try:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=1)
        c.request("GET", u.path)
        ok = c.getresponse().status == 200
        c.close()
        if ok:
            print(f"{time.time():.6f}")
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.01)
sys.exit(1)
PY
}

start_token_server() { # start_token_server PORT [ARGS...] -> TOKEN_PID
    local port=$1 extra=()
    shift
    [[ $TOKEN_CLOSE == 1 ]] && extra=(--close)
    taskset -c "$WRK_CPU" python3 "$SCRIPT_DIR/token_server.py" "$port" "$TOKEN" "$@" "${extra[@]}" \
        >"$TMP/logs/token-$port.out" 2>&1 &
    TOKEN_PID=$!
    PIDS+=("$TOKEN_PID")
    wait_http "http://127.0.0.1:$port/oauth/token" "$TOKEN_PID" POST ||
        { cat "$TMP/logs/token-$port.out" >&2; die "token server not ready"; }
}

# start_sidecar NAME CONF [READY_TIMEOUT]: fresh ports are put in the config by the caller
# (PORT_SIDECAR, PORT_ADMIN). Sets SIDECAR_PID, T_LAUNCH, T_READY (empty on timeout when a
# timeout is given; without one a timeout is fatal).
start_sidecar() {
    local name=$1 conf=$2 limit=${3:-} rc=0
    "$BIN" check --config "$conf" >"$TMP/logs/$name.check" 2>&1 ||
        { tail -n 20 "$TMP/logs/$name.check" >&2; die "[$name] m2m-sidecar check refused $conf"; }
    T_LAUNCH=$EPOCHREALTIME
    M2M_WORKER_THREADS=1 taskset -c "$PROXY_CPU" "$BIN" run --config "$conf" \
        >"$TMP/logs/$name.out" 2>&1 &
    SIDECAR_PID=$!
    PIDS+=("$SIDECAR_PID")
    T_READY=$(wait_ready "http://127.0.0.1:$PORT_ADMIN/readyz" "$SIDECAR_PID" "${limit:-$READY_TIMEOUT}") || rc=$?
    if ((rc == 1)) && [[ -n $limit ]]; then
        T_READY=""
        log "[$name] WARNING: /readyz not 200 within ${limit}s"
        return 0
    fi
    ((rc == 0)) || { tail -n 30 "$TMP/logs/$name.out" >&2; die "[$name] sidecar exited or was not ready within ${limit:-$READY_TIMEOUT}s (log above)"; }
}

new_sidecar_ports() { read -r PORT_SIDECAR PORT_ADMIN < <(free_ports 2); }

WRK_EXTRA=()
run_wrk() { # run_wrk URL DURATION OUTFILE (wrk's extra arguments in WRK_EXTRA)
    timeout --kill-after=5 "$(($2 + 60))" \
        taskset -c "$WRK_CPU" wrk -t1 -c"$CONNECTIONS" -d"$2"s --timeout 10s --latency \
        "${WRK_EXTRA[@]}" "$1" >"$3" 2>&1 ||
        { cat "$3" >&2; die "wrk failed against $1"; }
}

# run_wrk_sampled URL DURATION OUTFILE: run_wrk with wrk in the background, sampling the
# VmRSS of the processes in RSS_PIDS (summed; default the sidecar) every 0.25 s;
# SAMPLE_RSS_KB is the last sample taken while wrk still ran; SAMPLE_UP the established
# connections to the upstream port then (ss).
RSS_PIDS=""
run_wrk_sampled() {
    local wpid v p u
    local -a rss_pids
    read -r -a rss_pids <<<"${RSS_PIDS:-$SIDECAR_PID}"
    run_wrk "$@" &
    wpid=$!
    PIDS+=("$wpid")
    SAMPLE_RSS_KB=0 SAMPLE_UP=0
    while kill -0 "$wpid" 2>/dev/null; do
        v=0
        for p in "${rss_pids[@]}"; do v=$((v + $(kb_of "$p" VmRSS))); done
        u=$(ss -Htn state established "( dport = :$PORT_UPSTREAM )" | wc -l)
        kill -0 "$wpid" 2>/dev/null && SAMPLE_RSS_KB=$v SAMPLE_UP=$u
        sleep 0.25
    done
    wait "$wpid" || die "wrk run failed (see above)"
    local keep=() i
    for i in "${PIDS[@]}"; do [[ $i == "$wpid" ]] || keep+=("$i"); done
    PIDS=("${keep[@]}")
}

# measure ID URL RUNNER [PIDS]: warm-up, measured run (RUNNER = run_wrk or run_wrk_sampled),
# CPU per request of PIDS (default the sidecar; lib.sh measured_run), foreign-load warnings.
measure() {
    local id=$1 url=$2 runner=$3 pids=${4:-$SIDECAR_PID} out="$TMP/logs/wrk-$1.txt"
    log "[$id] warm-up ${WARMUP_S}s: $url"
    run_wrk "$url" "$WARMUP_S" "$TMP/logs/wrk-$id-warmup.txt"
    measured_run "$id" "$out" "$pids" "$runner" "$url" "$DURATION_S" "$out"
    foreign_load "$id" "$WRK_CPU" "${R_CORE1[$id]}" "${R_WRKPCT[$id]}" wrk
    foreign_load "$id" "$PROXY_CPU" "${R_CORE0[$id]}" "$((R_PCT[$id] + R_UPPCT[$id]))" "the measured processes"
    if ((R_ERR[$id] * 2 > WRK_REQS)); then
        head -n 30 "$out" >&2
        die "[$id] ${R_ERR[$id]} of $WRK_REQS requests failed: the figures would not mean anything"
    elif ((R_ERR[$id] > 0)); then
        WARNINGS+=("($id) ${R_ERR[$id]} of $WRK_REQS requests failed")
    fi
    log "[$id] $WRK_RPS req/s, p50 $WRK_P50, p99 $WRK_P99, ${R_CPU[$id]} µs CPU/req (${R_PCT[$id]}% core), errors ${R_ERR[$id]}"
}

# instr_count ID CONF URL: the sidecar under callgrind (core 0), a 2 s wrk -c8 warm-up, counters
# zeroed, a wrk -c8 run of INSTR_DURATION (core 1), counters dumped; sets R_INSTR[ID] to the
# sidecar's user-space instructions per request (all its threads), as bench/instructions.sh.
instr_count() {
    local id=$1 conf=$2 url=$3 pid i prof="" total reqs errs conns=$CONNECTIONS
    local dir="$TMP/callgrind-$1" out="$TMP/logs/wrk-$1-callgrind.txt"
    mkdir -p "$dir"
    M2M_WORKER_THREADS=1 taskset -c "$PROXY_CPU" valgrind --tool=callgrind \
        --callgrind-out-file="$dir/callgrind.out" "$BIN" run --config "$conf" \
        >"$TMP/logs/$id-callgrind.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_ready "http://127.0.0.1:$PORT_ADMIN/readyz" "$pid" 120 >/dev/null ||
        { tail -n 30 "$TMP/logs/$id-callgrind.out" >&2; die "[$id] sidecar under callgrind not ready within 120 s"; }
    log "[$id] callgrind: warm-up, then ${INSTR_DURATION_S}s with 8 connections"
    CONNECTIONS=8
    run_wrk "$url" 2 "$TMP/logs/wrk-$id-callgrind-warmup.txt"
    timeout 30 callgrind_control -z "$pid" >/dev/null || die "[$id] callgrind_control -z failed"
    run_wrk "$url" "$INSTR_DURATION_S" "$out"
    CONNECTIONS=$conns
    timeout 60 callgrind_control -d "$pid" >/dev/null || die "[$id] callgrind_control -d failed"
    for ((i = 0; i < 300; i++)); do # the dump is written by the sidecar's process: poll, bounded
        prof=$(find "$dir" -name 'callgrind.out.*' -size +0 | head -n1)
        [[ -n $prof ]] && total=$(callgrind_annotate "$prof" 2>/dev/null |
            awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }') && [[ -n $total ]] && break
        sleep 0.1
    done
    [[ -n ${total:-} ]] || die "[$id] no callgrind dump in $dir"
    reqs=$(awk '/requests in/ { print $1 }' "$out")
    errs=$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 }
                /Non-2xx or 3xx responses:/ { s += $NF } END { print s + 0 }' "$out")
    if [[ -z $reqs ]] || ((reqs == 0 || errs > 0)); then
        cat "$out" >&2
        die "[$id] callgrind run: ${reqs:-no} requests, $errs errors"
    fi
    R_INSTR[$id]=$((total / reqs))
    log "[$id] ${R_INSTR[$id]} instructions per request ($reqs requests)"
    forget_pid "$pid"
}

# Largest |value / base - 1| over the given ids, in percent; "n/a" without a base.
# The values: R_CPU, or the associative array named by DEV_OF.
DEV_OF=R_CPU
max_dev() {
    local base=$1 id vals=""
    local -n arr=$DEV_OF
    shift
    for id in "$@"; do vals+="${arr[$id]:-0} "; done
    awk -v b="${arr[$base]:-0}" -v v="$vals" 'BEGIN {
        if (b <= 0) { print "n/a"; exit }
        n = split(v, a, " "); m = 0
        for (i = 1; i <= n; i++) { d = a[i] / b - 1; if (d < 0) d = -d; if (d > m) m = d }
        printf "%.0f", 100 * m }'
}
verdict() { # verdict OK-CONDITION-EXIT-STATUS... -> "met" / "missed"
    if "$@"; then echo met; else echo missed; fi
}
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "n/a" && a <= b) }'; }

# token_stats MODE FILE ARGS...: analyse the token endpoint's /__times (lines "TIME CLIENT_ID").
#   startup T_FROM T_TO -> "total peak1s span_s" (requests with T_FROM <= t <= T_TO;
#                          peak = most requests in any 1-second sliding window)
#   lifetimes T_FROM T_TO PERIOD N PLOTDATA -> key=value lines; the per-second counts go to
#                          PLOTDATA (panel "tokens"). Steady state: from PERIOD after T_FROM, or
#                          from the last credential's first request if that is later.
token_stats() {
    python3 - "$@" <<'PY'
import collections, sys
mode, path, t0, t1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
recs = []
with open(path) as f:
    for line in f:
        parts = line.split()
        if len(parts) == 2 and t0 <= float(parts[0]) <= t1:
            recs.append((float(parts[0]), parts[1]))
recs.sort()
times = [t for t, _ in recs]

def peak_window(ts, width=1.0):
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] < t - width + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best

if mode == "startup":
    span = times[-1] - times[0] if times else 0.0
    print(len(times), peak_window(times), f"{span:.3f}")
    sys.exit(0)

period, n, plot = float(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
per_cred = collections.defaultdict(list)
for t, cid in recs:
    per_cred[cid].append(t)
firsts = sorted(ts[0] for ts in per_cred.values())
gaps = [b - a for ts in per_cred.values() for a, b in zip(ts, ts[1:])]
# intervals between refreshes: without each credential's first one (start-up -> first
# refresh, which a sidecar may shorten on purpose to spread the refreshes)
later = [b - a for ts in per_cred.values() for a, b in zip(ts[1:], ts[2:])]
secs = int(t1 - t0)
buckets = [0] * secs
for t in times:
    s = int(t - t0)
    if s < secs:
        buckets[s] += 1
with open(plot, "a") as f:
    for s, c in enumerate(buckets):
        f.write(f"point\ttokens\ttoken requests/s\t{s}\t{c}\n")
# steady state: from one refresh period after start, or after the last first request
steady_from = int(max(period, (firsts[-1] - t0) if firsts else 0) + 0.999)
steady = buckets[steady_from:]
mean = sum(steady) / len(steady) if steady else 0.0
peak = max(steady) if steady else 0
ideal = n / period


def f1(v):
    return f"{v:.1f}"


def stats(xs):
    return " / ".join(f1(v) for v in (sum(xs) / len(xs), min(xs), max(xs))) if xs else "n/a"


out = {
    "total": len(times),
    "credentials_seen": len(per_cred),
    "startup_span": f"{firsts[-1] - firsts[0]:.2f}" if firsts else "n/a",
    "startup_peak": peak_window(firsts),
    "refreshes": len(gaps),
    "gaps_all": stats(gaps),
    "gaps_later": stats(later),
    "per_period_gap": f"{period / (sum(later) / len(later)):.2f}" if later else "n/a",
    "steady_from": steady_from,
    "steady_secs": len(steady),
    "steady_reqs": sum(steady),
    "steady_mean": f1(mean),
    "per_period_rate": f"{mean / ideal:.2f}" if ideal > 0 else "n/a",
    "steady_peak": peak,
    "peak_over_mean": f1(peak / mean) if mean > 0 else "n/a",
    "ideal_mean": f1(ideal),
}
for k, v in out.items():
    print(f"{k}={v}")
PY
}

# Config blocks appended to the rendered templates.
gen_forward_routes() { # N UPSTREAM_PORT
    awk -v n="$1" -v port="$2" 'BEGIN {
        for (i = 1; i < n; i++)
            printf "\n[[forward_proxy.routes]]\nhost = \"svc%d.internal\"\ncredential = \"bench\"\n", i
        printf "\n[[forward_proxy.routes]]\nhost = \"127.0.0.1:%d\"\ncredential = \"bench\"\n", port }'
}
gen_inbound_rules() { # N
    awk -v n="$1" 'BEGIN {
        for (i = 1; i < n; i++)
            printf "\n[[inbound.rules]]\npath = \"/svc%d/*\"\nscopes = [\"x\"]\n", i
        printf "\n[[inbound.rules]]\npath = \"/target/*\"\npublic = true\n" }'
}
gen_credentials() { # N TOKEN_PORT
    awk -v n="$1" -v port="$2" 'BEGIN {
        for (i = 1; i <= n; i++)
            printf "\n[credentials.c%d]\ntoken_url = \"http://127.0.0.1:%d/oauth/token\"\nclient_id = \"c%d\"\nclient_secret = \"bench-secret-0123456789abcdef0123456789\"\nauth_method = \"client_secret_post\"\naudience = \"https://bench.example\"\n", i, port, i }'
}

# --------------------------------------------------------------------------
# Shared set-up: nginx upstream (core 0), token endpoint (core 1)
# --------------------------------------------------------------------------
read -r PORT_UPSTREAM PORT_TOKEN PORT_SIDECAR PORT_ADMIN < <(free_ports 4)
log "temp dir $TMP; upstream port $PORT_UPSTREAM, token port $PORT_TOKEN; open-file limit $NOFILE"
UPSTREAM_PIDS=""
if want forward || want inbound || want connections || want credentials || want lifetimes; then
    render "$SCRIPT_DIR/growth-upstream.conf.tmpl" "$TMP/nginx-upstream.conf"
    start_nginx upstream "$TMP/nginx-upstream.conf" "http://127.0.0.1:$PORT_UPSTREAM/" "$PROXY_CPU"
    UPSTREAM_PIDS="$NGX_PIDS "
fi
start_token_server "$PORT_TOKEN"

size_label() { sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta' <<<"$1"; } # 4096 -> 4,096

# --------------------------------------------------------------------------
# 1a. Forward proxy, N mapped hosts
# --------------------------------------------------------------------------
cfg_panels() {
    plot_panel cfg_cpu "Sidecar CPU per request vs configuration size" "mapped hosts / inbound rules" "CPU µs/req" log
    [[ $INSTR == 1 ]] && plot_panel cfg_instr "Sidecar instructions per request (callgrind) vs configuration size" \
        "mapped hosts / inbound rules" "instructions/req" log
    return 0
}
if want forward; then
    cfg_panels
    cat >"$TMP/forward.lua" <<EOF
-- absolute-form request through the forward proxy to the last mapped host
wrk.method = "GET"
wrk.path = "http://127.0.0.1:$PORT_UPSTREAM/"
wrk.headers["Host"] = "127.0.0.1:$PORT_UPSTREAM"
EOF
    conf_forward() { # N FILE (with the current ports)
        render "$SCRIPT_DIR/growth-forward.toml.tmpl" "$2"
        gen_forward_routes "$1" "$PORT_UPSTREAM" >>"$2"
    }
    for n in "${SIZE_LIST[@]}"; do
        id=fwd-$n
        new_sidecar_ports
        conf_forward "$n" "$TMP/$id.toml"
        start_sidecar "$id" "$TMP/$id.toml"
        R_IDLE_RSS[$id]=$(kb_of "$SIDECAR_PID" VmRSS)
        got=$(curl -fsS --max-time 5 --noproxy '' -x "http://127.0.0.1:$PORT_SIDECAR" \
            "http://127.0.0.1:$PORT_UPSTREAM/__auth") || die "[$id] request through the forward proxy failed"
        [[ $got == "Bearer $TOKEN" ]] || die "[$id] forward proxy sent Authorization '$got', expected 'Bearer $TOKEN'"
        WRK_EXTRA=(-s "$TMP/forward.lua")
        measure "$id" "http://127.0.0.1:$PORT_SIDECAR/" run_wrk
        forget_pid "$SIDECAR_PID"
        plot_point cfg_cpu "forward proxy (hosts)" "$n" "${R_CPU[$id]}"
        if [[ $INSTR == 1 ]]; then
            new_sidecar_ports
            conf_forward "$n" "$TMP/$id-callgrind.toml"
            instr_count "$id" "$TMP/$id-callgrind.toml" "http://127.0.0.1:$PORT_SIDECAR/"
            plot_point cfg_instr "forward proxy (hosts)" "$n" "${R_INSTR[$id]}"
        fi
        WRK_EXTRA=()
    done
fi

# --------------------------------------------------------------------------
# 1b. Inbound, N rules
# --------------------------------------------------------------------------
if want inbound; then
    cfg_panels
    python3 "$SCRIPT_DIR/inbound-keys.py" "$TMP" >/dev/null 2>"$TMP/logs/keys.err" ||
        { cat "$TMP/logs/keys.err" >&2; die "inbound-keys.py failed"; }
    conf_inbound() { # N FILE (with the current ports)
        render "$SCRIPT_DIR/growth-inbound.toml.tmpl" "$2"
        gen_inbound_rules "$1" >>"$2"
    }
    for n in "${SIZE_LIST[@]}"; do
        id=in-$n
        new_sidecar_ports
        conf_inbound "$n" "$TMP/$id.toml"
        start_sidecar "$id" "$TMP/$id.toml"
        R_IDLE_RSS[$id]=$(kb_of "$SIDECAR_PID" VmRSS)
        got=$(curl -fsS --max-time 5 "http://127.0.0.1:$PORT_SIDECAR/target/1") ||
            die "[$id] request through inbound failed"
        [[ $got == ok ]] || die "[$id] inbound answered '$got', expected 'ok'"
        if ((n > 1)); then
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT_SIDECAR/svc1/x")
            [[ $code == 401 ]] || die "[$id] /svc1/x without a token answered $code, expected 401"
        fi
        measure "$id" "http://127.0.0.1:$PORT_SIDECAR/target/1" run_wrk
        forget_pid "$SIDECAR_PID"
        plot_point cfg_cpu "inbound (rules)" "$n" "${R_CPU[$id]}"
        if [[ $INSTR == 1 ]]; then
            new_sidecar_ports
            conf_inbound "$n" "$TMP/$id-callgrind.toml"
            instr_count "$id" "$TMP/$id-callgrind.toml" "http://127.0.0.1:$PORT_SIDECAR/target/1"
            plot_point cfg_instr "inbound (rules)" "$n" "${R_INSTR[$id]}"
        fi
    done
fi

# --------------------------------------------------------------------------
# 1c. Credentials: start-up time, idle RSS, token requests at start-up
# --------------------------------------------------------------------------
declare -A C_START C_RSS C_TOTAL C_PEAK C_SPAN C_FDS
if want credentials; then
    plot_panel cred_rss "Idle RSS vs credentials (one token endpoint)" "credentials" "MB" log
    for n in "${SIZE_LIST[@]}"; do
        id=cred-$n
        new_sidecar_ports
        render "$SCRIPT_DIR/growth-credentials.toml.tmpl" "$TMP/$id.toml"
        gen_credentials "$n" "$PORT_TOKEN" >>"$TMP/$id.toml"
        log "[$id] starting with $n credentials"
        start_sidecar "$id" "$TMP/$id.toml" "$CRED_READY_TIMEOUT"
        if [[ -n $T_READY ]]; then
            C_START[$id]=$(awk -v a="$T_LAUNCH" -v b="$T_READY" 'BEGIN { printf "%.2f", b - a }')
        else
            C_START[$id]="> $CRED_READY_TIMEOUT"
        fi
        sleep "$SETTLE" # idle: no traffic, then read the resident set
        C_RSS[$id]=$(mb "$(kb_of "$SIDECAR_PID" VmRSS)")
        C_FDS[$id]=$(find "/proc/$SIDECAR_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        t_end=$EPOCHREALTIME
        curl -fsS --max-time 10 "http://127.0.0.1:$PORT_TOKEN/__times" >"$TMP/logs/$id-times.txt" ||
            die "cannot read the token server's /__times"
        read -r "C_TOTAL[$id]" "C_PEAK[$id]" "C_SPAN[$id]" < <(token_stats startup "$TMP/logs/$id-times.txt" "$T_LAUNCH" "$t_end")
        log "[$id] ready after ${C_START[$id]} s, idle RSS ${C_RSS[$id]} MB, ${C_FDS[$id]} open fds, ${C_TOTAL[$id]} token requests (peak ${C_PEAK[$id]} in 1 s, first to last ${C_SPAN[$id]} s)"
        forget_pid "$SIDECAR_PID"
        plot_point cred_rss "idle RSS" "$n" "${C_RSS[$id]}"
    done
fi

# --------------------------------------------------------------------------
# 2. Connections through the outbound listener
# --------------------------------------------------------------------------
# start_nginx_proxy ID: a fresh nginx reverse proxy (bench/growth-nginx-proxy.conf.tmpl, one
# worker, core 0) on a fresh port, keepalive max(64, CONNECTIONS); sets PORT_PROXY,
# PROXY_MASTER and PROXY_PIDS (master + worker).
start_nginx_proxy() {
    local id=$1 conf="$TMP/$1-nginx.conf"
    read -r PORT_PROXY < <(free_ports 1)
    KEEPALIVE=$((CONNECTIONS > 64 ? CONNECTIONS : 64))
    render "$SCRIPT_DIR/growth-nginx-proxy.conf.tmpl" "$conf"
    start_nginx "$id-nginx" "$conf" "http://127.0.0.1:$PORT_PROXY/" "$PROXY_CPU"
    PROXY_MASTER=$NGX_PID
    PROXY_PIDS=$NGX_PIDS
}

if want connections; then
    plot_panel conn_cpu "CPU per request vs connections (same run)" "keep-alive connections" "CPU µs/req" log
    plot_panel conn_rss "RSS vs connections (same run)" "keep-alive connections" "MB" log
    : >"$TMP/proxy-error.log"
    for c in "${CONN_LIST[@]}"; do
        CONNECTIONS=$c
        # the sidecar's outbound listener
        id=conn-$c
        new_sidecar_ports
        render "$SCRIPT_DIR/sidecar.toml.tmpl" "$TMP/$id.toml"
        start_sidecar "$id" "$TMP/$id.toml"
        R_IDLE_RSS[$id]=$(kb_of "$SIDECAR_PID" VmRSS)
        got=$(curl -fsS --max-time 5 "http://127.0.0.1:$PORT_SIDECAR/__auth") || die "[$id] request through the sidecar failed"
        [[ $got == "Bearer $TOKEN" ]] || die "[$id] sidecar sent Authorization '$got', expected 'Bearer $TOKEN'"
        RSS_PIDS=$SIDECAR_PID
        measure "$id" "http://127.0.0.1:$PORT_SIDECAR/" run_wrk_sampled
        R_END_RSS[$id]=$SAMPLE_RSS_KB R_UPCONN[$id]=$SAMPLE_UP
        R_HWM[$id]=$(kb_of "$SIDECAR_PID" VmHWM)
        log "[$id] RSS at the end of the run $(mb "${R_END_RSS[$id]}") MB, VmHWM $(mb "${R_HWM[$id]}") MB, ${R_UPCONN[$id]} upstream connections"
        forget_pid "$SIDECAR_PID"
        # the peer: nginx reverse proxy, static bearer
        id=ngx-$c
        start_nginx_proxy "$id"
        got=$(curl -fsS --max-time 5 "http://127.0.0.1:$PORT_PROXY/__auth") || die "[$id] request through the nginx proxy failed"
        [[ $got == "Bearer $TOKEN" ]] || die "[$id] nginx proxy sent Authorization '$got', expected 'Bearer $TOKEN'"
        RSS_PIDS=$PROXY_PIDS
        measure "$id" "http://127.0.0.1:$PORT_PROXY/" run_wrk_sampled "$PROXY_PIDS"
        R_END_RSS[$id]=$SAMPLE_RSS_KB R_UPCONN[$id]=$SAMPLE_UP
        log "[$id] RSS (master + worker) at the end of the run $(mb "${R_END_RSS[$id]}") MB, ${R_UPCONN[$id]} upstream connections"
        forget_pid "$PROXY_MASTER"
        RSS_PIDS=""
        plot_point conn_cpu "m2m-sidecar" "$c" "${R_CPU[conn-$c]}"
        plot_point conn_cpu "nginx proxy" "$c" "${R_CPU[ngx-$c]}"
        plot_point conn_rss "m2m-sidecar" "$c" "$(mb "${R_END_RSS[conn-$c]}")"
        plot_point conn_rss "nginx proxy" "$c" "$(mb "${R_END_RSS[ngx-$c]}")"
        case $c in
            1024) plot_point conn_rss "target (≤ 40 / 120 MB)" "$c" 40 ;;
            4096) plot_point conn_rss "target (≤ 40 / 120 MB)" "$c" 120 ;;
        esac
    done
    CONNECTIONS=32
    n=$(grep -c -E '\[(error|crit|alert|emerg)\]' "$TMP/proxy-error.log" || true)
    if ((n > 0)); then
        grep -E '\[(error|crit|alert|emerg)\]' "$TMP/proxy-error.log" | tail -n 5 >&2
        WARNINGS+=("nginx proxy: $n error lines in its error log (last ones on stderr)")
    fi
fi

# --------------------------------------------------------------------------
# 3. Token lifetimes
# --------------------------------------------------------------------------
declare -A L
if want lifetimes; then
    PERIOD=$(awk -v t="$TOKEN_TTL" -v r="$REFRESH_AT" 'BEGIN { print t * r }')
    plot_panel tokens "Token requests per second, $LIFETIME_CREDS credentials, tokens live ${TOKEN_TTL} s" "seconds since start" "requests/s" lin
    read -r PORT_TOKEN < <(free_ports 1)
    start_token_server "$PORT_TOKEN" --expires-in "$TOKEN_TTL"
    new_sidecar_ports
    render "$SCRIPT_DIR/growth-credentials.toml.tmpl" "$TMP/lifetimes.toml"
    gen_credentials "$LIFETIME_CREDS" "$PORT_TOKEN" >>"$TMP/lifetimes.toml"
    log "[lifetimes] $LIFETIME_CREDS credentials, expires_in ${TOKEN_TTL}s (refresh period ~${PERIOD}s), running ${LIFETIME_RUN}s"
    start_sidecar lifetimes "$TMP/lifetimes.toml" "$CRED_READY_TIMEOUT"
    l_start=$(awk -v a="$T_LAUNCH" 'BEGIN { printf "%d", a }')
    next_log=$((SECONDS + 30))
    while :; do
        now=${EPOCHREALTIME%.*}
        ((now - l_start < LIFETIME_RUN)) || break
        kill -0 "$SIDECAR_PID" 2>/dev/null || { tail -n 30 "$TMP/logs/lifetimes.out" >&2; die "[lifetimes] sidecar exited"; }
        if ((SECONDS >= next_log)); then
            log "[lifetimes] $((now - l_start))s of ${LIFETIME_RUN}s, $(curl -fsS --max-time 2 "http://127.0.0.1:$PORT_TOKEN/__count" | tr -d '\n') token requests so far"
            next_log=$((SECONDS + 30))
        fi
        sleep 1
    done
    t_end=$(awk -v a="$T_LAUNCH" -v r="$LIFETIME_RUN" 'BEGIN { printf "%.6f", a + r }')
    L[rss]=$(mb "$(kb_of "$SIDECAR_PID" VmRSS)")
    curl -fsS --max-time 10 "http://127.0.0.1:$PORT_TOKEN/__times" >"$TMP/logs/lifetimes-times.txt" ||
        die "cannot read the token server's /__times"
    forget_pid "$SIDECAR_PID"
    while IFS='=' read -r k v; do L[$k]=$v; done < <(token_stats lifetimes "$TMP/logs/lifetimes-times.txt" \
        "$T_LAUNCH" "$t_end" "$PERIOD" "$LIFETIME_CREDS" "$PLOT_DATA")
    log "[lifetimes] ${L[total]} token requests, ${L[per_period_rate]} per credential per period, steady ${L[steady_mean]}/s mean, ${L[steady_peak]}/s peak"
fi

# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
ELAPSED=$((SECONDS - T_START))
cfg_table() { # cfg_table PREFIX COLUMN-LABEL UNIT TITLE
    local pre=$1 b=$1-${SIZE_LIST[0]} n id ids=() dev ic="" ih="" is=""
    [[ $INSTR == 1 ]] && { ih=" instructions/req | instr/req vs ${SIZE_LIST[0]} |"; is="---:|---:|"; }
    echo
    echo "#### $4"
    echo
    echo "| $2 | req/s | p99 | sidecar CPU µs/req | CPU/req vs ${SIZE_LIST[0]} | req/s vs ${SIZE_LIST[0]} |$ih idle RSS MB | errors |"
    echo "|---:|---:|---:|---:|---:|---:|$is---:|---:|"
    for n in "${SIZE_LIST[@]}"; do
        id=$pre-$n
        ids+=("$id")
        [[ $INSTR == 1 ]] && ic=" ${R_INSTR[$id]} | $(ratio "${R_INSTR[$id]}" "${R_INSTR[$b]}") |"
        echo "| $(size_label "$n") | ${R_RPS[$id]} | $(fmt_lat "${R_P99[$id]}") | ${R_CPU[$id]} | $(ratio "${R_CPU[$id]}" "${R_CPU[$b]}") | $(ratio "${R_RPS[$id]}" "${R_RPS[$b]}") |$ic $(mb "${R_IDLE_RSS[$id]}") | ${R_ERR[$id]} |"
    done
    echo
    DEV_OF=R_CPU
    dev=$(max_dev "$b" "${ids[@]}")
    echo "Target CPU/req within ±10% of ${SIZE_LIST[0]} $3: largest deviation ${dev}% — $(verdict le "$dev" 10)."
    if [[ $INSTR == 1 ]]; then
        DEV_OF=R_INSTR
        dev=$(max_dev "$b" "${ids[@]}")
        echo "Instructions per request (callgrind, wrk -c8 ${INSTR_DURATION_S} s; repeatable on a busy machine): largest deviation from ${SIZE_LIST[0]} $3 ${dev}% — $(verdict le "$dev" 10)."
    fi
    DEV_OF=R_CPU
}

report() {
    local cpu_model n id b c
    cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo || true)
    echo "### m2m-sidecar growth benchmark"
    echo
    echo "$(date -u +%Y-%m-%d), ${cpu_model:-unknown CPU}, ${ncpu} CPUs, Linux $(uname -r). Sidecar: ${SIDECAR_VERSION:-unknown}, \`M2M_WORKER_THREADS=1\`."
    printf '%s\n' "Sidecar (or, in the connections section, the nginx reverse proxy, 1 worker) and nginx upstream (1 worker, \`return 200 \"ok\\n\"\`) on core $PROXY_CPU; wrk \`-t1 --latency\`, the token endpoint (bench/token_server.py) and the readiness poller on core $WRK_CPU."
    echo "Each load point: a fresh sidecar (or nginx proxy), ${WARMUP_S} s warm-up, ${DURATION_S} s measured. CPU = utime+stime from /proc/PID/stat over the measured run. Load average before the run: $LOADAVG."
    [[ $QUICK == 1 ]] && echo "**QUICK=1 smoke run: short durations, figures are indicative only.**"
    local w
    for w in "${WARNINGS[@]}"; do echo "**Warning:** $w."; done

    if want forward; then
        cfg_table fwd "mapped hosts" host \
            "Forward proxy (\`[forward_proxy]\`), N mapped hosts, load on the last one (wrk -c$CONNECTIONS, absolute-form \`GET http://127.0.0.1:PORT/\`)"
    fi
    if want inbound; then
        cfg_table in rules rule \
            "Inbound (\`[inbound]\`), N rules, load on the last one (\`/target/*\` public; the others \`/svcI/*\` with scopes; wrk -c$CONNECTIONS \`GET /target/1\`, no token)"
    fi
    if want credentials; then
        echo
        echo "#### Credentials: N credentials on one token endpoint ($( [[ $TOKEN_CLOSE == 1 ]] && echo "closes each connection" || echo "keeps connections open")), one outbound listener, no traffic"
        echo
        echo "| credentials | start-up to /readyz 200 (s) | idle RSS MB (${SETTLE} s after ready) | sidecar open fds | token requests at start-up | peak token requests in any 1 s | first to last token request (s) |"
        echo "|---:|---:|---:|---:|---:|---:|---:|"
        for n in "${SIZE_LIST[@]}"; do
            id=cred-$n
            echo "| $(size_label "$n") | ${C_START[$id]} | ${C_RSS[$id]} | ${C_FDS[$id]} | ${C_TOTAL[$id]} | ${C_PEAK[$id]} | ${C_SPAN[$id]} |"
        done
        local last=cred-${SIZE_LIST[-1]}
        echo
        echo "Target idle RSS ≤ 20 MB with $(size_label "${SIZE_LIST[-1]}") credentials: ${C_RSS[$last]} MB — $(verdict le "${C_RSS[$last]}" 20)."
    fi
    if want connections; then
        local c0=${CONN_LIST[0]} cl=${CONN_LIST[-1]} s n
        b=conn-$c0
        n=ngx-$c0
        echo
        echo "#### Connections: keep-alive connections through one outbound listener (cached token) and through nginx as a reverse proxy (static bearer), same run"
        echo
        echo "Per level, in this order: a fresh sidecar, then a fresh nginx proxy (\`bench/growth-nginx-proxy.conf.tmpl\`: bench/run.sh's (b) with worker_connections $((NOFILE - 64)), upstream keepalive max(64, connections)); each ${WARMUP_S} s warm-up, ${DURATION_S} s measured with the same wrk \`-t1 -cN --timeout 10s\`. RSS: last VmRSS sample (every 0.25 s) while wrk ran; nginx: master + worker."
        echo
        echo "| connections | sidecar req/s | sidecar p99 | sidecar CPU µs/req | sidecar RSS MB | nginx req/s | nginx p99 | nginx CPU µs/req | nginx RSS MB | CPU/req sidecar / nginx | RSS sidecar / nginx | sidecar CPU/req vs $c0 | nginx CPU/req vs $c0 |"
        echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for c in "${CONN_LIST[@]}"; do
            s=conn-$c id=ngx-$c
            echo "| $(size_label "$c") | ${R_RPS[$s]} | $(fmt_lat "${R_P99[$s]}") | ${R_CPU[$s]} | $(mb "${R_END_RSS[$s]}") | ${R_RPS[$id]} | $(fmt_lat "${R_P99[$id]}") | ${R_CPU[$id]} | $(mb "${R_END_RSS[$id]}") | $(ratio "${R_CPU[$s]}" "${R_CPU[$id]}") | $(ratio "${R_END_RSS[$s]}" "${R_END_RSS[$id]}") | $(ratio "${R_CPU[$s]}" "${R_CPU[$b]}") | $(ratio "${R_CPU[$id]}" "${R_CPU[$n]}") |"
        done
        echo
        echo "Details: p50, sidecar VmHWM, upstream connections (established to the upstream port, last sample while wrk ran), whole-core busy (core $PROXY_CPU / $WRK_CPU), errors."
        echo
        echo "| connections | sidecar p50 | sidecar VmHWM MB | sidecar upstream conns | sidecar: core busy | sidecar errors | nginx p50 | nginx upstream conns | nginx: core busy | nginx errors |"
        echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for c in "${CONN_LIST[@]}"; do
            s=conn-$c id=ngx-$c
            echo "| $(size_label "$c") | $(fmt_lat "${R_P50[$s]}") | $(mb "${R_HWM[$s]}") | ${R_UPCONN[$s]} | ${R_CORE0[$s]}% / ${R_CORE1[$s]}% | ${R_ERR[$s]} | $(fmt_lat "${R_P50[$id]}") | ${R_UPCONN[$id]} | ${R_CORE0[$id]}% / ${R_CORE1[$id]}% | ${R_ERR[$id]} |"
        done
        local ids=() dev t
        for c in "${CONN_LIST[@]}"; do ids+=("conn-$c"); done
        DEV_OF=R_CPU
        dev=$(max_dev "$b" "${ids[@]}")
        echo
        echo "Target CPU/req within ±10% of $(size_label "$c0") connections: largest deviation ${dev}% — $(verdict le "$dev" 10)."
        for t in "1024 40" "4096 120"; do
            read -r c n <<<"$t"
            id=conn-$c
            [[ -n ${R_END_RSS[$id]:-} ]] &&
                echo "Target RSS ≤ $n MB at $(size_label "$c"): $(mb "${R_END_RSS[$id]}") MB — $(verdict le "$(mb "${R_END_RSS[$id]}")" "$n")."
        done
        echo "The peer in the same run: nginx's own CPU/req went from ${R_CPU[ngx-$c0]} µs at $(size_label "$c0") to ${R_CPU[ngx-$cl]} µs at $(size_label "$cl") connections ($(ratio "${R_CPU[ngx-$cl]}" "${R_CPU[ngx-$c0]}")×; the sidecar's $(ratio "${R_CPU[conn-$cl]}" "${R_CPU[conn-$c0]}")×); sidecar / nginx CPU/req $(ratio "${R_CPU[conn-$c0]}" "${R_CPU[ngx-$c0]}") at $(size_label "$c0"), $(ratio "${R_CPU[conn-$cl]}" "${R_CPU[ngx-$cl]}") at $(size_label "$cl")."
    fi
    if want lifetimes; then
        echo
        echo "#### Token lifetimes: $(size_label "$LIFETIME_CREDS") credentials, \`expires_in\` ${TOKEN_TTL} s (refresh period ${PERIOD} s at refresh_at $REFRESH_AT, ±5% jitter), ${LIFETIME_RUN} s, no traffic"
        echo
        echo "| figure | value |"
        echo "|---|---:|"
        echo "| token requests in ${LIFETIME_RUN} s | ${L[total]} |"
        echo "| credentials seen; their first requests spread over (s); peak of those in any 1 s | ${L[credentials_seen]}; ${L[startup_span]}; ${L[startup_peak]} |"
        echo "| refreshes (requests after a credential's first) | ${L[refreshes]} |"
        echo "| interval between a credential's requests, mean / min / max (s) | ${L[gaps_all]} |"
        echo "| the same without each credential's first interval (refresh to refresh) | ${L[gaps_later]} |"
        echo "| requests per credential per refresh period: ${PERIOD} s / mean refresh-to-refresh interval | ${L[per_period_gap]} |"
        echo "| steady state (from ${L[steady_from]} s, ${L[steady_secs]} one-second buckets): requests | ${L[steady_reqs]} |"
        echo "| steady state mean requests/s (ideal $LIFETIME_CREDS / ${PERIOD} s = ${L[ideal_mean]}) | ${L[steady_mean]} |"
        echo "| requests per credential per refresh period in the steady state (mean / ideal) | ${L[per_period_rate]} |"
        echo "| steady state peak requests/s (1-second bucket) | ${L[steady_peak]} |"
        echo "| peak / mean | ${L[peak_over_mean]} |"
        echo "| sidecar RSS at the end | ${L[rss]} MB |"
    fi
    echo
    echo "Total run time: ${ELAPSED} s. Plot: \`$(basename "$PLOT")\` (data: \`$(basename "${PLOT%.*}").tsv\`)."
}

# Plot (and its data) beside each other.
if [[ -s $PLOT_DATA ]]; then
    mkdir -p "$(dirname "$PLOT")"
    cp "$PLOT_DATA" "${PLOT%.*}.tsv"
    python3 "$SCRIPT_DIR/growth_plot.py" "$PLOT_DATA" "$PLOT" || die "growth_plot.py failed"
    log "plot written to $PLOT"
fi

if [[ -n $OUT ]]; then
    report | tee "$OUT"
else
    report
fi
log "total run time ${ELAPSED} s"
