#!/usr/bin/env bash
# bench/issuer.sh — token issuance benchmark of m2m-sidecar's built-in issuer on 127.0.0.1.
#
# Measures, in one run (client_credentials, one POST = one signed JWT access token):
#   (a) m2m-sidecar issuer, ES256 (the default)     `m2m-sidecar issuer --config ...`
#   (b) m2m-sidecar issuer, EdDSA (own state dir, own key)
#   (c') m2m-sidecar issuer, RS256 (RSA-2048; own state dir, own key)
#   (c) the npm oidc-provider peer (tests/peers/oidc-provider, RS256 JWT access tokens)
#   (d) the raw signing rate of one core: `openssl speed -seconds 2 ecdsap256 rsa2048 ed25519`
# and prints a markdown table (stdout) for BENCHMARKS.md; progress goes to stderr.
#
# The server under test runs alone on core 0; wrk (-t1, bench/issuer-token.lua POSTs the
# form body and counts non-2xx responses and 2xx bodies without an access_token) on core 1.
#
# Needs (Debian packages):
#   wrk - `wrk`     openssl - `openssl`     curl - `curl`     python3 - `python3` (stdlib only)
#   node/npm - `nodejs` `npm` (Node >= 18.12, for (c))
#   taskset - `util-linux`                  getconf/timeout - `coreutils`/`libc-bin`
#   i.e.  apt-get install -y wrk openssl curl python3 util-linux nodejs npm
# Missing ones are installed automatically when run as root. The peer's node_modules is
# installed with `npm ci --prefix tests/peers/oidc-provider` when missing (needs network).
# At least 2 CPUs.
#
# Environment:
#   SIDECAR_BIN            sidecar binary (default: <repo>/target/release/m2m-sidecar)
#   DURATION               measured wrk run per scenario (default 10s; warm-up is 2s, discarded)
#   CONNECTIONS            wrk connections (default 32; wrk uses 1 thread)
#   ISSUER_WORKER_THREADS  M2M_WORKER_THREADS for the issuer (default 1 = current-thread
#                          runtime, right for a process pinned to one core; empty = runtime default)
#   SKIP_PEER              1 = skip (c) (no node needed)
#   KEEP_TMP               1 = keep the temp dir (configs, logs, raw wrk/openssl output)
#   OUT                    also write the markdown report to this file
#
# Usage: bench/issuer.sh > issuer-bench.md
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

SIDECAR_BIN=${SIDECAR_BIN:-$REPO_DIR/target/release/m2m-sidecar}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
ISSUER_WORKER_THREADS=${ISSUER_WORKER_THREADS-1}
SKIP_PEER=${SKIP_PEER:-0}
KEEP_TMP=${KEEP_TMP:-0}
OUT=${OUT:-}
WARMUP=2s
SERVER_CPU=0
WRK_CPU=1
READY_TIMEOUT=20 # seconds, for every readiness poll
SPEED_SECONDS=2  # openssl speed -seconds
LUA=$SCRIPT_DIR/issuer-token.lua
TEMPLATE=$SCRIPT_DIR/issuer.toml.tmpl
PEER_DIR=$REPO_DIR/tests/peers/oidc-provider

# Request bodies (already form-encoded).
AUDIENCE=https://orders.example.com
ISSUER_BODY='grant_type=client_credentials&client_id=bench&client_secret=bench-secret-0123456789abcdef0123456789&audience=https%3A%2F%2Forders.example.com'
PEER_CLIENT=post-client
PEER_SECRET='p0st s3cr3t: +%/&=?~' # the peer's default POST_SECRET (passed explicitly below)

log() { printf '[issuer-bench] %s\n' "$*" >&2; }
die() { printf '[issuer-bench] ERROR: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------------
# Dependencies
# --------------------------------------------------------------------------
PATH=$PATH:/usr/sbin:/sbin
declare -A PKG_FOR=([wrk]=wrk [openssl]=openssl [curl]=curl [python3]=python3
                    [taskset]=util-linux [getconf]=libc-bin [timeout]=coreutils
                    [node]=nodejs [npm]=npm)
cmds=(wrk openssl curl python3 taskset getconf timeout)
[[ $SKIP_PEER == 1 ]] || cmds+=(node)
if [[ $SKIP_PEER != 1 && ! -d $PEER_DIR/node_modules/oidc-provider ]]; then cmds+=(npm); fi

need_pkgs=()
for cmd in "${cmds[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || need_pkgs+=("${PKG_FOR[$cmd]}")
done
install_packages "${need_pkgs[@]}"

check_cpus "$SERVER_CPU" "$WRK_CPU"
[[ -x $SIDECAR_BIN ]] || die "sidecar binary not found at $SIDECAR_BIN (cargo build --release, or set SIDECAR_BIN)"
[[ -f $LUA && -f $TEMPLATE ]] || die "missing $LUA or $TEMPLATE"

parse_duration
((DURATION_S > 0)) || die "DURATION must be positive"
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive integer"
[[ -z $ISSUER_WORKER_THREADS || $ISSUER_WORKER_THREADS =~ ^[1-9][0-9]*$ ]] ||
    die "ISSUER_WORKER_THREADS must be a positive integer or empty"

CLK_TCK=$(getconf CLK_TCK)

check_load

# --------------------------------------------------------------------------
# Temp dir, process bookkeeping, cleanup
# --------------------------------------------------------------------------
start_run m2m-issuer-bench  # TMP, PIDS and the cleanup traps (lib.sh)

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
render() { # render OUTPUT PORT STATE_DIR ALG: substitute @NAME@ placeholders in the template
    sed -e "s|@PORT@|$2|g" -e "s|@STATE_DIR@|$3|g" -e "s|@ALG@|$4|g" "$TEMPLATE" >"$1"
    if grep -q '@[A-Z_]*@' "$1"; then die "unsubstituted placeholder in $1"; fi
}

# check_token ID URL BODY ALG: one token request with curl; must be 200 with an access_token
# whose JWT header has alg ALG. Logs the claims that matter.
check_token() {
    local id=$1 url=$2 body=$3 alg=$4 file="$TMP/logs/$1-token.json" code info
    code=$(curl -sS --max-time 5 -o "$file" -w '%{http_code}' \
        -H 'content-type: application/x-www-form-urlencoded' --data-raw "$body" "$url") ||
        die "[$id] token request with curl failed ($url)"
    [[ $code == 200 ]] || { cat "$file" >&2; echo >&2; die "[$id] token request returned HTTP $code, expected 200"; }
    info=$(python3 - "$file" "$alg" <<'PY'
import base64, json, sys
def b64(s):
    return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
try:
    resp = json.load(open(sys.argv[1]))
    tok = resp["access_token"]
    h, p = (b64(x) for x in tok.split(".")[:2])
except Exception as e:  # noqa: BLE001
    sys.exit(f"no JWT access_token in the response: {e}")
if h.get("alg") != sys.argv[2]:
    sys.exit(f"access token alg is {h.get('alg')}, expected {sys.argv[2]}")
print(f"alg={h.get('alg')} typ={h.get('typ')} aud={p.get('aud')} scope={p.get('scope')} "
      f"expires_in={resp.get('expires_in')} token={len(tok)} bytes")
PY
    ) || { cat "$file" >&2; echo >&2; die "[$id] bad token response"; }
    log "[$id] curl check OK: $info"
}

run_wrk() { # run_wrk URL BODY SECONDS OUTFILE
    timeout --kill-after=5 "$(($3 + 30))" \
        taskset -c "$WRK_CPU" wrk -t1 -c"$CONNECTIONS" -d"$3"s --latency -s "$LUA" "$1" -- "$2" \
        >"$4" 2>&1 || { cat "$4" >&2; die "wrk failed against $1"; }
    grep -q '^issuer-lua: ' "$4" || { cat "$4" >&2; die "no issuer-lua summary line in $4"; }
}

lua_field() { # lua_field FILE NAME -> value from the "issuer-lua:" line
    awk -v k="$2" '/^issuer-lua: / { for (i = 2; i <= NF; i++) { split($i, kv, "=");
        if (kv[1] == k) { print kv[2]; exit } } }' "$1"
}

# Results, keyed by scenario id.
WARNINGS=()
declare -A R_RPS R_P50 R_P99 R_CPU R_PCT R_ERR R_ERRDETAIL R_CORE0 R_CORE1 R_WRKPCT R_RSS

# measure ID URL BODY PID : warm-up, measured run, parse, account CPU.
measure() {
    local id=$1 url=$2 body=$3 pid=$4 warm=${WARMUP%s} out="$TMP/logs/wrk-$1.txt"
    log "[$id] warm-up ${warm}s: POST $url"
    run_wrk "$url" "$body" "$warm" "$TMP/logs/wrk-$id-warmup.txt"
    local wn
    wn=$(lua_field "$TMP/logs/wrk-$id-warmup.txt" non2xx)
    ((wn == 0)) || log "[$id] WARNING: $wn non-2xx responses during warm-up ($(lua_field "$TMP/logs/wrk-$id-warmup.txt" statuses))"

    local c0 c1
    c0=$(cpu_ticks "$pid")
    window_open "$SERVER_CPU" "$WRK_CPU"
    log "[$id] measuring ${DURATION_S}s, $CONNECTIONS connections"
    run_wrk "$url" "$body" "$DURATION_S" "$out"
    window_close "$SERVER_CPU" "$WRK_CPU"
    c1=$(cpu_ticks "$pid")
    kill -0 "$pid" 2>/dev/null || die "[$id] server (pid $pid) died during the run"

    local sock non2xx notok statuses
    parse_wrk "$id" "$out" # sets WRK_RPS WRK_REQS WRK_P50 WRK_P99, R_RPS R_P50 R_P99
    # Socket errors (connect/read/write/timeout) from wrk; non-2xx and 2xx-without-token from Lua.
    sock=$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 } END { print s + 0 }' "$out")
    non2xx=$(lua_field "$out" non2xx)
    notok=$(lua_field "$out" no_token)
    statuses=$(lua_field "$out" statuses)
    [[ $non2xx =~ ^[0-9]+$ && $notok =~ ^[0-9]+$ ]] || { cat "$out" >&2; die "cannot parse the issuer-lua line ($out)"; }

    R_ERR[$id]=$((sock + non2xx + notok))
    R_ERRDETAIL[$id]="non-2xx $non2xx, 2xx without access_token $notok, socket errors $sock; statuses ${statuses:-none}"
    # CPU µs per token = Δticks / CLK_TCK * 1e6 / requests ; CPU % over the wall window.
    read -r "R_CPU[$id]" "R_PCT[$id]" < <(awk \
        -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v n="$WRK_REQS" -v t0="$WIN_T0" -v t1="$WIN_T1" 'BEGIN {
            printf "%.1f %.0f\n", c / hz * 1e6 / n, 100 * c / hz / (t1 - t0) }')
    window_stats "$id" # sets R_CORE0 R_CORE1 R_WRKPCT
    R_RSS[$id]=$(rss_mb "$pid")
    log "[$id] core busy: cpu$SERVER_CPU ${R_CORE0[$id]}% (server ${R_PCT[$id]}%), cpu$WRK_CPU ${R_CORE1[$id]}% (wrk ${R_WRKPCT[$id]}%)"
    foreign_load "$id" "$WRK_CPU" "${R_CORE1[$id]}" "${R_WRKPCT[$id]}" wrk
    foreign_load "$id" "$SERVER_CPU" "${R_CORE0[$id]}" "${R_PCT[$id]}" "the server"
    if ((R_ERR[$id] > 0)); then
        log "[$id] WARNING: ${R_ERR[$id]} errors (${R_ERRDETAIL[$id]})"
        WARNINGS+=("($id) ${R_ERR[$id]} errors: ${R_ERRDETAIL[$id]}")
    fi
    log "[$id] $WRK_RPS tokens/s, p50 $WRK_P50, p99 $WRK_P99, ${R_CPU[$id]} µs CPU/token (${R_PCT[$id]}% core), errors ${R_ERR[$id]}"
}

# --------------------------------------------------------------------------
# (d) raw signing rate on one core (first, while nothing else of ours runs)
# --------------------------------------------------------------------------
log "(d) openssl speed -seconds $SPEED_SECONDS ecdsap256 rsa2048 ed25519 on core $SERVER_CPU (~$((SPEED_SECONDS * 6))s)"
timeout --kill-after=5 $((SPEED_SECONDS * 6 + 60)) taskset -c "$SERVER_CPU" \
    openssl speed -seconds "$SPEED_SECONDS" ecdsap256 rsa2048 ed25519 \
    >"$TMP/logs/openssl-speed.txt" 2>"$TMP/logs/openssl-speed.err" ||
    { cat "$TMP/logs/openssl-speed.err" >&2; die "openssl speed failed"; }
# Lines: "rsa 2048 bits 0.000744s 0.000022s   1344.5  46495.7"
#        " 256 bits ecdsa (nistp256)   0.0000s   0.0001s  39850.3  13142.2"
#        " 253 bits EdDSA (Ed25519)   0.0000s   0.0001s  21220.0   7605.5"   (sign/s = NF-1)
SIGN_RSA=$(awk '$1 == "rsa" && $2 == "2048" { printf "%.0f", $(NF - 1) }' "$TMP/logs/openssl-speed.txt")
SIGN_P256=$(awk '/ecdsa \(nistp256\)/ { printf "%.0f", $(NF - 1) }' "$TMP/logs/openssl-speed.txt")
SIGN_ED=$(awk '/EdDSA \(Ed25519\)/ { printf "%.0f", $(NF - 1) }' "$TMP/logs/openssl-speed.txt")
[[ $SIGN_RSA =~ ^[0-9]+$ && $SIGN_P256 =~ ^[0-9]+$ && $SIGN_ED =~ ^[0-9]+$ ]] ||
    { cat "$TMP/logs/openssl-speed.txt" >&2; die "cannot parse openssl speed output"; }
OPENSSL_V=$(openssl version | awk '{ print $2 }')
log "(d) sign/s on one core: ECDSA P-256 $SIGN_P256, Ed25519 $SIGN_ED, RSA-2048 $SIGN_RSA"

# --------------------------------------------------------------------------
# (a), (b) m2m-sidecar issuer
# --------------------------------------------------------------------------
SIDECAR_VERSION=$(timeout 5 "$SIDECAR_BIN" --version 2>/dev/null | head -n1 || true)

run_issuer() { # run_issuer ID ALG
    local id=$1 alg=$2 port dir pid
    read -r port < <(free_ports 1)
    dir="$TMP/state-$id"
    mkdir -p "$dir"
    render "$TMP/issuer-$id.toml" "$port" "$dir" "$alg"
    log "[$id] starting m2m-sidecar issuer ($alg) on 127.0.0.1:$port, state $dir"
    # shellcheck disable=SC2086
    env ${ISSUER_WORKER_THREADS:+M2M_WORKER_THREADS=$ISSUER_WORKER_THREADS} \
        taskset -c "$SERVER_CPU" "$SIDECAR_BIN" issuer --config "$TMP/issuer-$id.toml" \
        </dev/null >"$TMP/logs/$id.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/healthz" "$pid" ||
        { tail -n 50 "$TMP/logs/$id.out" >&2; die "[$id] issuer exited or was not ready within ${READY_TIMEOUT}s (log above)"; }
    log "[$id] ready (pid $pid, threads $(awk '/^Threads:/ {print $2}' "/proc/$pid/status"), idle RSS $(rss_mb "$pid") MB)"
    check_token "$id" "http://127.0.0.1:$port/oauth/token" "$ISSUER_BODY" "$alg"
    measure "$id" "http://127.0.0.1:$port/oauth/token" "$ISSUER_BODY" "$pid"
    stop_pid "$pid"
}

run_issuer es256 ES256
run_issuer eddsa EdDSA

run_issuer rs256 RS256

# --------------------------------------------------------------------------
# (c) oidc-provider peer
# --------------------------------------------------------------------------
PEER_VERSION=""
NODE_V=""
if [[ $SKIP_PEER != 1 ]]; then
    [[ -f $PEER_DIR/server.js ]] || die "peer not found at $PEER_DIR"
    if [[ ! -d $PEER_DIR/node_modules/oidc-provider ]]; then
        log "installing the peer's node_modules: npm ci --prefix $PEER_DIR"
        timeout 600 npm ci --prefix "$PEER_DIR" >&2 || die "npm ci failed in $PEER_DIR"
    fi
    PEER_VERSION=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' \
        "$PEER_DIR/node_modules/oidc-provider/package.json" 2>/dev/null || echo "?")
    NODE_V=$(node --version)
    read -r PEER_PORT < <(free_ports 1)
    log "[peer] starting oidc-provider $PEER_VERSION (node $NODE_V) on 127.0.0.1:$PEER_PORT"
    # NODE_ENV=production as it would be deployed; STRICT_CLIENT_AUTH=0 drops the test-only
    # middleware that re-parses the body (upstream oidc-provider behaviour). The peer also exits
    # by itself if this script dies (it watches its ppid).
    (cd "$PEER_DIR" && exec env PORT="$PEER_PORT" POST_SECRET="$PEER_SECRET" NODE_ENV=production \
        STRICT_CLIENT_AUTH=0 EXIT_ON_STDIN_CLOSE=0 taskset -c "$SERVER_CPU" node server.js \
        </dev/null >"$TMP/logs/peer.out" 2>"$TMP/logs/peer.err") &
    PEER_PID=$!
    PIDS+=("$PEER_PID")
    deadline=$((SECONDS + READY_TIMEOUT))
    until [[ -s $TMP/logs/peer.out ]] && grep -q '}' "$TMP/logs/peer.out"; do
        kill -0 "$PEER_PID" 2>/dev/null || { cat "$TMP/logs/peer.err" >&2; die "[peer] exited during start-up"; }
        ((SECONDS < deadline)) || { cat "$TMP/logs/peer.err" >&2; die "[peer] no start-up line within ${READY_TIMEOUT}s"; }
        sleep 0.1
    done
    PEER_URL=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["token_endpoint"])' \
        "$TMP/logs/peer.out") || { cat "$TMP/logs/peer.out" >&2; die "[peer] cannot parse the start-up line"; }
    wait_http "${PEER_URL%/token}/.well-known/openid-configuration" "$PEER_PID" ||
        { cat "$TMP/logs/peer.err" >&2; die "[peer] discovery document not served"; }
    PEER_BODY=$(python3 -c 'import sys, urllib.parse as u; print(u.urlencode([
        ("grant_type", "client_credentials"), ("client_id", sys.argv[1]), ("client_secret", sys.argv[2]),
        ("resource", sys.argv[3]), ("scope", "orders:read")]))' "$PEER_CLIENT" "$PEER_SECRET" "$AUDIENCE")
    log "[peer] ready (pid $PEER_PID, idle RSS $(rss_mb "$PEER_PID") MB): $PEER_URL"
    check_token peer "$PEER_URL" "$PEER_BODY" RS256
    measure peer "$PEER_URL" "$PEER_BODY" "$PEER_PID"
    stop_pid "$PEER_PID"
    if grep -q 'grant.error\|server_error' "$TMP/logs/peer.err"; then
        log "[peer] errors logged by the peer (first 5):"
        grep -m5 'grant.error\|server_error' "$TMP/logs/peer.err" >&2 || true
    fi
fi

# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
row() { # row ID LABEL
    local id=$1
    printf '| %s | %s | %s | %s | %s | %s%% | %s%% / %s%% | %s MB | %s |\n' "$2" "${R_RPS[$id]}" \
        "$(fmt_lat "${R_P50[$id]}")" "$(fmt_lat "${R_P99[$id]}")" "${R_CPU[$id]}" "${R_PCT[$id]}" \
        "${R_CORE0[$id]}" "${R_CORE1[$id]}" "${R_RSS[$id]}" "${R_ERR[$id]}"
}
verdict() { # verdict VALUE OP TARGET -> PASS / FAIL / n/a
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { if (v == "n/a" || v == "NaN") { print "n/a"; exit }
        ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 < t + 0); print ok ? "PASS" : "FAIL" }'
}

report() {
    local cpu_model kernel wrk_v w r
    cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo || true)
    kernel=$(uname -r)
    wrk_v=$(wrk -v 2>&1 | head -n1 | awk '{ sub(/^debian\//, "", $2); print $2 }' || true)

    echo "### m2m-sidecar issuer benchmark (client_credentials, one signed JWT per request)"
    echo
    echo "$(date -u +%Y-%m-%d), ${cpu_model:-unknown CPU}, ${ncpu} CPUs, Linux $kernel, wrk $wrk_v, OpenSSL $OPENSSL_V."
    echo "wrk \`-t1 -c$CONNECTIONS -d${DURATION_S}s --latency -s bench/issuer-token.lua\` (POST form body) on core $WRK_CPU"
    echo "after a ${WARMUP} warm-up; the server under test runs alone on core $SERVER_CPU."
    echo "Sidecar: ${SIDECAR_VERSION:-?}, \`m2m-sidecar issuer\`, \`M2M_WORKER_THREADS=${ISSUER_WORKER_THREADS:-(default)}\`, token_ttl 1h."
    [[ $SKIP_PEER == 1 ]] ||
        echo "Peer: oidc-provider $PEER_VERSION on Node $NODE_V (\`NODE_ENV=production\`, \`STRICT_CLIENT_AUTH=0\`), post-client / client_secret_post, \`resource\` + \`scope=orders:read\`."
    echo "Load average before the run: $LOADAVG. \"core busy\" is the whole core from /proc/stat (includes anything else running)."
    echo "Server CPU = utime+stime from /proc/PID/stat over the measured run (tick = $((1000000 / CLK_TCK)) µs)."
    echo "Errors = non-2xx responses + 2xx without \`access_token\` (counted by the Lua script) + wrk socket errors."
    for w in "${WARNINGS[@]}"; do echo "**Warning:** $w."; done
    echo
    echo "| scenario | tokens/s | p50 | p99 | server CPU µs/token | server CPU % | core $SERVER_CPU / core $WRK_CPU busy | RSS after | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    row es256 "(a) m2m-sidecar issuer, ES256 (default)"
    row eddsa "(b) m2m-sidecar issuer, EdDSA"
    row rs256 "(c') m2m-sidecar issuer, RS256"
    if [[ $SKIP_PEER != 1 ]]; then
        row peer "(c) oidc-provider $PEER_VERSION (Node $NODE_V), RS256"
    else
        echo "| (c) oidc-provider | skipped (SKIP_PEER=1) | | | | | | | |"
    fi
    echo
    echo "| (d) raw signing, one core (\`openssl speed -seconds $SPEED_SECONDS\`, core $SERVER_CPU) | sign/s |"
    echo "|---|---:|"
    echo "| ECDSA P-256 (ES256) | $SIGN_P256 |"
    echo "| Ed25519 (EdDSA) | $SIGN_ED |"
    echo "| RSA-2048 (RS256) | $SIGN_RSA |"
    echo
    echo "| ratio / check | value | target | result |"
    echo "|---|---:|---:|---|"
    if [[ $SKIP_PEER != 1 ]]; then
        r=$(ratio "${R_RPS[es256]}" "${R_RPS[peer]}")
        echo "| ES256 tokens/s ÷ oidc-provider tokens/s | ${r}× | ≥ 10× | $(verdict "$r" ">=" 10) |"
    else
        echo "| ES256 tokens/s ÷ oidc-provider tokens/s | n/a (SKIP_PEER=1) | ≥ 10× | n/a |"
    fi
    r=$(ratio "${R_RPS[es256]}" "$SIGN_P256")
    echo "| ES256 tokens/s ÷ raw ECDSA P-256 sign/s | ${r}× | ≥ 0.5× | $(verdict "$r" ">=" 0.5) |"
    r=$(ratio "${R_RPS[eddsa]}" "$SIGN_ED")
    echo "| EdDSA tokens/s ÷ raw Ed25519 sign/s | ${r}× | — | — |"
    r=$(ratio "${R_RPS[rs256]}" "$SIGN_RSA")
    echo "| RS256 tokens/s ÷ raw RSA-2048 sign/s | ${r}× | ≥ 0.9× | $(verdict "$r" ">=" 0.9) |"
    if [[ $SKIP_PEER != 1 ]]; then
        r=$(ratio "${R_RPS[peer]}" "$SIGN_RSA")
        echo "| oidc-provider tokens/s ÷ raw RSA-2048 sign/s | ${r}× | — | — |"
    fi
    echo "| p99, (a) ES256 | $(fmt_lat "${R_P99[es256]}") | < 5 ms | $(verdict "${R_P99[es256]}" "<" 5000) |"
    echo "| p99, (b) EdDSA | $(fmt_lat "${R_P99[eddsa]}") | < 5 ms | $(verdict "${R_P99[eddsa]}" "<" 5000) |"
    echo "| p99, (c') RS256 | $(fmt_lat "${R_P99[rs256]}") | < 5 ms | $(verdict "${R_P99[rs256]}" "<" 5000) |"
    local errs=$((R_ERR[es256] + R_ERR[eddsa] + R_ERR[rs256] + ${R_ERR[peer]:-0}))
    echo "| errors, all scenarios | $errs | 0 | $( ((errs == 0)) && echo PASS || echo FAIL) |"
}

if [[ -n $OUT ]]; then
    report | tee "$OUT"
else
    report
fi
