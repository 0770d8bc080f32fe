#!/usr/bin/env bash
# bench/inbound.sh — m2m-sidecar inbound (JWT-verifying reverse proxy) benchmark on 127.0.0.1.
#
# Measures, in one run, wrk `-t1 -c32` GET /orders/1 with `Authorization: Bearer <token>`
# through a proxy to an nginx upstream (`return 200 "ok\n"`):
#   (a) m2m-sidecar [inbound], rule `/*` public = true (no token check: plain forwarding)
#   (b) m2m-sidecar [inbound], ES256 token, verification cache on (default cache_size)
#   (c) m2m-sidecar [inbound], ES256 token, cache_size = 0
#   (d) m2m-sidecar [inbound], RS256 token, cache on
#   (e) m2m-sidecar [inbound], RS256 token, cache_size = 0
#   (f) haproxy 2.6 jwt_verify (+ iss/aud/exp/scope via jwt_payload_query), RS256 token
#   (g) haproxy 2.6 jwt_verify (+ the same claim checks), ES256 token
# and prints a markdown table (stdout) for BENCHMARKS.md; progress goes to stderr.
#
# Keys (RSA-2048, EC P-256), the JWKS file and the two tokens are made fresh in the temp dir by
# bench/inbound-keys.py (python3 stdlib + openssl). Before each measured scenario one curl
# with the token must get 200 and one without it 401 (plain forwarding: 200), and one with a
# corrupted signature 401, so a rejecting path is never measured.
#
# Needs (Debian packages): nginx-light (or nginx), wrk, haproxy (Debian 12: 2.6), curl,
#   python3, openssl, util-linux (taskset), coreutils, libc-bin (getconf)
# Missing ones are installed automatically when run as root.
# At least 2 CPUs: the proxy under test and the upstream share core 0, wrk runs on core 1.
#
# Environment:
#   SIDECAR_BIN   sidecar binary (default: <repo>/target/release/m2m-sidecar); must accept
#                 [inbound] (checked with `m2m-sidecar check --config`)
#   SKIP_HAPROXY  1 = skip (f) and (g)
#   DURATION      measured wrk run per scenario (default 10s; warm-up is 2s, discarded)
#   CONNECTIONS   wrk connections (default 32; wrk uses 1 thread)
#   NGINX_BIN     nginx binary (default: nginx from PATH or /usr/sbin/nginx)
#   HAPROXY_BIN   haproxy binary (default: haproxy from PATH)
#   KEEP_TMP      1 = keep the temp dir (configs, keys, logs, raw wrk output)
#   OUT           also write the markdown report to this file
#
# Usage: bench/inbound.sh > bench-inbound.md
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

SIDECAR_BIN=${SIDECAR_BIN:-$REPO_DIR/target/release/m2m-sidecar}
SKIP_HAPROXY=${SKIP_HAPROXY:-0}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
KEEP_TMP=${KEEP_TMP:-0}
OUT=${OUT:-}
WARMUP=2s
PROXY_CPU=0
WRK_CPU=1
READY_TIMEOUT=20 # seconds, for every readiness poll
REQ_PATH=/orders/1

log() { printf '[bench-inbound] %s\n' "$*" >&2; }
die() { printf '[bench-inbound] ERROR: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------------
# Dependencies
# --------------------------------------------------------------------------
PATH=$PATH:/usr/sbin:/sbin
declare -A PKG_FOR=([nginx]=nginx-light [wrk]=wrk [haproxy]=haproxy [curl]=curl [python3]=python3
                    [openssl]=openssl [taskset]=util-linux [getconf]=libc-bin [timeout]=coreutils)

need_pkgs=()
for cmd in nginx wrk haproxy curl python3 openssl taskset getconf timeout; do
    if [[ $cmd == nginx && -n ${NGINX_BIN:-} ]]; then
        [[ -x $NGINX_BIN ]] || die "NGINX_BIN=$NGINX_BIN is not executable"
        continue
    fi
    if [[ $cmd == haproxy ]]; then
        [[ $SKIP_HAPROXY == 1 ]] && continue
        if [[ -n ${HAPROXY_BIN:-} ]]; then
            [[ -x $HAPROXY_BIN ]] || die "HAPROXY_BIN=$HAPROXY_BIN is not executable"
            continue
        fi
    fi
    command -v "$cmd" >/dev/null 2>&1 || need_pkgs+=("${PKG_FOR[$cmd]}")
done
install_packages "${need_pkgs[@]}"
NGINX_BIN=${NGINX_BIN:-$(command -v nginx)}
[[ -x $NGINX_BIN ]] || die "nginx not found"
if [[ $SKIP_HAPROXY != 1 ]]; then
    HAPROXY_BIN=${HAPROXY_BIN:-$(command -v haproxy)}
    [[ -x $HAPROXY_BIN ]] || die "haproxy not found"
    # jwt_verify / jwt_header_query / jwt_payload_query appeared in haproxy 2.5.
    HAPROXY_V=$("$HAPROXY_BIN" -v 2>&1 | awk 'NR == 1 { print $3 }')
    [[ $HAPROXY_V =~ ^([0-9]+)\.([0-9]+) ]] || die "cannot parse haproxy version ($HAPROXY_V)"
    ((BASH_REMATCH[1] > 2 || (BASH_REMATCH[1] == 2 && BASH_REMATCH[2] >= 5))) ||
        die "haproxy $HAPROXY_V has no jwt_verify (needs >= 2.5); set SKIP_HAPROXY=1"
fi

check_cpus "$PROXY_CPU" "$WRK_CPU"

[[ -x $SIDECAR_BIN ]] ||
    die "sidecar binary not found at $SIDECAR_BIN (cargo build --release, or set SIDECAR_BIN)"

parse_duration
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive integer"

CLK_TCK=$(getconf CLK_TCK)

check_load

# --------------------------------------------------------------------------
# Temp dir, process bookkeeping, cleanup
# --------------------------------------------------------------------------
start_run m2m-bench-inbound  # TMP, PIDS and the cleanup traps (lib.sh)

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
# render TEMPLATE OUTPUT: substitute @NAME@ placeholders from the current values of
# PORT_UPSTREAM PORT_SIDECAR PORT_ADMIN PORT_HAPROXY CACHE_LINE RULE_PATH RULE_POLICY ALG CERT.
render() {
    sed -e "s|@PREFIX@|$TMP|g" \
        -e "s|@PORT_UPSTREAM@|$PORT_UPSTREAM|g" \
        -e "s|@PORT_SIDECAR@|${PORT_SIDECAR:-}|g" \
        -e "s|@PORT_ADMIN@|${PORT_ADMIN:-}|g" \
        -e "s|@PORT_HAPROXY@|${PORT_HAPROXY:-}|g" \
        -e "s|@CACHE_LINE@|${CACHE_LINE:-}|g" \
        -e "s|@RULE_PATH@|${RULE_PATH:-}|g" \
        -e "s|@RULE_POLICY@|${RULE_POLICY:-}|g" \
        -e "s|@ALG@|${ALG:-}|g" \
        -e "s|@CERT@|${CERT:-}|g" \
        "$1" >"$2"
    if grep -q '@[A-Z_]*@' "$2"; then die "unsubstituted placeholder in $2"; fi
}

run_wrk() { # run_wrk URL TOKEN DURATION OUTFILE
    timeout --kill-after=5 "$(($3 + 30))" \
        taskset -c "$WRK_CPU" wrk -t1 -c"$CONNECTIONS" -d"$3"s --latency \
        -H "Authorization: Bearer $2" "$1" >"$4" 2>&1 ||
        { cat "$4" >&2; die "wrk failed against $1"; }
}

# http_code URL [TOKEN]: status of one GET (000 on connection failure).
http_code() {
    local args=(-s -o "$TMP/logs/curl-body" -w '%{http_code}' --max-time 5)
    [[ -n ${2:-} ]] && args+=(-H "Authorization: Bearer $2")
    curl "${args[@]}" "$1" || true
}

# The token with one character in the middle of its signature changed (a bad signature).
corrupt() {
    local t=$1 i c
    i=$((${#t} - 20))
    c=${t:i:1}
    [[ $c == A ]] && c=B || c=A
    echo "${t:0:i}${c}${t:i+1}"
}

# check_paths ID URL TOKEN NO_TOKEN_CODE: with the token -> 200 "ok"; without -> NO_TOKEN_CODE;
# when NO_TOKEN_CODE is not 200 (the token is checked), a bad signature must not get 200 either.
check_paths() {
    local id=$1 url=$2 tok=$3 want=$4 code
    code=$(http_code "$url" "$tok")
    [[ $code == 200 ]] || die "[$id] GET with the token got HTTP $code, expected 200 (body: $(head -c 200 "$TMP/logs/curl-body" 2>/dev/null))"
    [[ $(<"$TMP/logs/curl-body") == ok ]] || die "[$id] 200 but the body is not the upstream's \"ok\""
    code=$(http_code "$url")
    [[ $code == "$want" ]] || die "[$id] GET without a token got HTTP $code, expected $want"
    local bad=""
    if [[ $want != 200 ]]; then
        bad=$(http_code "$url" "$(corrupt "$tok")")
        [[ $bad == 401 || $bad == 403 ]] || die "[$id] GET with a bad signature got HTTP $bad, expected 401/403"
        bad=", bad signature -> $bad"
    fi
    log "[$id] curl check OK: token -> 200, no token -> $code$bad"
}

# Results, keyed by scenario id.
WARNINGS=()
declare -A R_RPS R_P50 R_P99 R_CPU R_UPCPU R_PCT R_UPPCT R_ERR R_CORE0 R_CORE1 R_WRKPCT R_RSS

# measure ID URL TOKEN "PIDS of process under test" : warm-up, measured run, parse, account CPU.
measure() {
    local id=$1 url=$2 tok=$3 pids=$4 warm=${WARMUP%s} out="$TMP/logs/wrk-$1.txt"
    log "[$id] warm-up ${warm}s: $url"
    run_wrk "$url" "$tok" "$warm" "$TMP/logs/wrk-$id-warmup.txt"
    measured_run "$id" "$out" "$pids" run_wrk "$url" "$tok" "$DURATION_S" "$out"
    local errs=${R_ERR[$id]}
    # shellcheck disable=SC2086
    R_RSS[$id]=$(rss_mb ${pids%% *})
    foreign_load "$id" "$WRK_CPU" "${R_CORE1[$id]}" "${R_WRKPCT[$id]}" wrk
    foreign_load "$id" "$PROXY_CPU" "${R_CORE0[$id]}" "$((R_PCT[$id] + R_UPPCT[$id]))" "the measured processes"
    if ((errs > 0)); then
        log "[$id] WARNING: $errs errors (non-2xx + socket errors)"
        WARNINGS+=("($id) $errs errors (non-2xx responses + socket errors)")
    fi
    log "[$id] $WRK_RPS req/s, p50 $WRK_P50, p99 $WRK_P99, ${R_CPU[$id]} µs CPU/req (${R_PCT[$id]}% core), errors $errs"
}

# --------------------------------------------------------------------------
# Setup: keys, tokens, upstream
# --------------------------------------------------------------------------
log "temp dir $TMP; generating keys, JWKS and tokens"
python3 "$SCRIPT_DIR/inbound-keys.py" "$TMP" 2>"$TMP/logs/keys.err" ||
    { cat "$TMP/logs/keys.err" >&2; die "inbound-keys.py failed"; }
TOKEN_RS=$(<"$TMP/token-rs256.txt")
TOKEN_ES=$(<"$TMP/token-es256.txt")
log "tokens: RS256 ${#TOKEN_RS} bytes, ES256 ${#TOKEN_ES} bytes"

read -r PORT_UPSTREAM < <(free_ports 1)
render "$SCRIPT_DIR/nginx-upstream.conf.tmpl" "$TMP/nginx-upstream.conf"
start_nginx upstream "$TMP/nginx-upstream.conf" "http://127.0.0.1:$PORT_UPSTREAM$REQ_PATH" "$PROXY_CPU"
UPSTREAM_PIDS=$NGX_PIDS
log "upstream nginx on 127.0.0.1:$PORT_UPSTREAM, pids: $UPSTREAM_PIDS"

# --------------------------------------------------------------------------
# (a)-(e) m2m-sidecar [inbound]
# --------------------------------------------------------------------------
SIDECAR_VERSION=$(timeout 5 "$SIDECAR_BIN" --version 2>/dev/null | head -n1 || true)
SIDECAR_RSS_IDLE=""

# run_sidecar ID TOKEN MODE: MODE = plain | cache | nocache
run_sidecar() {
    local id=$1 tok=$2 mode=$3 cfg="$TMP/sidecar-$1.toml" pid want=401
    read -r PORT_SIDECAR PORT_ADMIN < <(free_ports 2)
    case $mode in
        plain) RULE_PATH='/*' RULE_POLICY='public = true' CACHE_LINE='# cache_size: default'; want=200 ;;
        cache) RULE_PATH='/orders/*' RULE_POLICY='scopes = ["orders:read"]' CACHE_LINE='# cache_size: default' ;;
        nocache) RULE_PATH='/orders/*' RULE_POLICY='scopes = ["orders:read"]' CACHE_LINE='cache_size = 0' ;;
        *) die "bad mode $mode" ;;
    esac
    render "$SCRIPT_DIR/inbound-sidecar.toml.tmpl" "$cfg"
    timeout 10 "$SIDECAR_BIN" check --config "$cfg" >"$TMP/logs/check-$id.out" 2>&1 || {
        cat "$TMP/logs/check-$id.out" >&2
        die "[$id] $SIDECAR_BIN rejects the [inbound] config $cfg (binary older than the inbound feature? rebuild, or set SIDECAR_BIN)"
    }
    log "[$id] starting m2m-sidecar inbound ($mode) on 127.0.0.1:$PORT_SIDECAR, admin $PORT_ADMIN"
    M2M_WORKER_THREADS=1 taskset -c "$PROXY_CPU" "$SIDECAR_BIN" run --config "$cfg" \
        </dev/null >"$TMP/logs/sidecar-$id.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$PORT_ADMIN/readyz" "$pid" ||
        { tail -n 50 "$TMP/logs/sidecar-$id.out" >&2; die "[$id] sidecar exited or was not ready within ${READY_TIMEOUT}s (log above)"; }
    [[ -n $SIDECAR_RSS_IDLE ]] || SIDECAR_RSS_IDLE=$(rss_mb "$pid")
    log "[$id] ready (pid $pid, threads $(awk '/^Threads:/ {print $2}' "/proc/$pid/status"), RSS $(rss_mb "$pid") MB)"
    check_paths "$id" "http://127.0.0.1:$PORT_SIDECAR$REQ_PATH" "$tok" "$want"
    measure "$id" "http://127.0.0.1:$PORT_SIDECAR$REQ_PATH" "$tok" "$pid"
    stop_pid "$pid"
}

run_sidecar plain "$TOKEN_ES" plain
run_sidecar es-cache "$TOKEN_ES" cache
run_sidecar es-nocache "$TOKEN_ES" nocache
run_sidecar rs-cache "$TOKEN_RS" cache
run_sidecar rs-nocache "$TOKEN_RS" nocache

# --------------------------------------------------------------------------
# (f), (g) haproxy jwt_verify
# --------------------------------------------------------------------------
run_haproxy() { # run_haproxy ID TOKEN ALG CERT
    local id=$1 tok=$2 pid cfg="$TMP/haproxy-$1.cfg"
    ALG=$3 CERT=$4
    read -r PORT_HAPROXY < <(free_ports 1)
    render "$SCRIPT_DIR/inbound-haproxy.cfg.tmpl" "$cfg"
    "$HAPROXY_BIN" -c -f "$cfg" >"$TMP/logs/check-$id.out" 2>&1 ||
        { cat "$TMP/logs/check-$id.out" >&2; die "[$id] haproxy config check failed ($cfg)"; }
    # A key file haproxy cannot load is only a WARNING at check time (then jwt_verify fails).
    if grep -q WARNING "$TMP/logs/check-$id.out"; then
        cat "$TMP/logs/check-$id.out" >&2
        die "[$id] haproxy config check warned ($cfg)"
    fi
    log "[$id] starting haproxy $HAPROXY_V ($ALG) on 127.0.0.1:$PORT_HAPROXY"
    # -db: stay in the foreground (no daemon, no master-worker): one process to measure.
    taskset -c "$PROXY_CPU" "$HAPROXY_BIN" -db -f "$cfg" </dev/null >"$TMP/logs/haproxy-$id.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    local deadline=$((SECONDS + READY_TIMEOUT)) code=000
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || break
        code=$(http_code "http://127.0.0.1:$PORT_HAPROXY$REQ_PATH" "$tok")
        [[ $code == 000 ]] || break
        sleep 0.1
    done
    [[ $code != 000 ]] ||
        { tail -n 50 "$TMP/logs/haproxy-$id.out" >&2; die "[$id] haproxy exited or was not listening within ${READY_TIMEOUT}s (log above)"; }
    log "[$id] ready (pid $pid, threads $(awk '/^Threads:/ {print $2}' "/proc/$pid/status"), RSS $(rss_mb "$pid") MB)"
    check_paths "$id" "http://127.0.0.1:$PORT_HAPROXY$REQ_PATH" "$tok" 401
    measure "$id" "http://127.0.0.1:$PORT_HAPROXY$REQ_PATH" "$tok" "$pid"
    stop_pid "$pid"
}

if [[ $SKIP_HAPROXY != 1 ]]; then
    run_haproxy hap-rs "$TOKEN_RS" RS256 "$TMP/rs.pub.pem"
    run_haproxy hap-es "$TOKEN_ES" ES256 "$TMP/ec.pub.pem"
fi

# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
row() { # row ID LABEL
    local id=$1
    printf '| %s | %s | %s | %s | %s | %s | %s%% / %s%% | %s%% / %s%% | %s MB | %s |\n' "$2" "${R_RPS[$id]}" \
        "$(fmt_lat "${R_P50[$id]}")" "$(fmt_lat "${R_P99[$id]}")" \
        "${R_CPU[$id]}" "${R_UPCPU[$id]}" "${R_PCT[$id]}" "${R_UPPCT[$id]}" \
        "${R_CORE0[$id]}" "${R_CORE1[$id]}" "${R_RSS[$id]}" "${R_ERR[$id]}"
}
verdict() { # verdict VALUE TARGET -> PASS (value <= target) / FAIL / n/a
    awk -v v="$1" -v t="$2" 'BEGIN { if (v == "n/a") { print "n/a"; exit }
        print (v + 0 <= t + 0) ? "PASS" : "FAIL" }'
}

report() {
    local cpu_model kernel nginx_v wrk_v w r
    cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo || true)
    kernel=$(uname -r)
    nginx_v=$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: nginx\///')
    wrk_v=$(wrk -v 2>&1 | head -n1 | awk '{ sub(/^debian\//, "", $2); print $2 }' || true)

    echo "### m2m-sidecar inbound (JWT verification) benchmark"
    echo
    echo "$(date -u +%Y-%m-%d), ${cpu_model:-unknown CPU}, ${ncpu} CPUs, Linux $kernel, nginx $nginx_v, wrk $wrk_v, OpenSSL $(openssl version | awk '{ print $2 }')${HAPROXY_V:+, haproxy $HAPROXY_V}."
    echo "wrk \`-t1 -c$CONNECTIONS -d${DURATION_S}s --latency -H 'Authorization: Bearer <token>'\` GET \`$REQ_PATH\` on core $WRK_CPU after a ${WARMUP} warm-up;"
    printf '%s\n' "proxy under test and the nginx upstream (\`return 200 \"ok\\n\"\`, 1 worker) share core $PROXY_CPU."
    echo "Tokens: at+jwt, RSA-2048 (RS256, ${#TOKEN_RS} bytes) / P-256 (ES256, ${#TOKEN_ES} bytes), iss/aud/exp/scope checked; the same token on every request."
    echo "Sidecar: ${SIDECAR_VERSION:-?}, \`M2M_WORKER_THREADS=1\`, \`jwks_file\`; (a) rule \`/*\` \`public = true\`, others rule \`/orders/*\` \`scopes = [\"orders:read\"]\`."
    [[ $SKIP_HAPROXY == 1 ]] ||
        echo "haproxy: \`nbthread 1\`, foreground, \`jwt_verify\` with the public key PEM plus \`jwt_payload_query\` checks of iss, aud, exp and scope (bench/inbound-haproxy.cfg.tmpl)."
    echo "Load average before the run: $LOADAVG. \"core busy\" is the whole core from /proc/stat (includes anything else running)."
    echo "CPU = utime+stime from /proc/PID/stat over the measured run (tick = $((1000000 / CLK_TCK)) µs); upstream = nginx master + worker."
    for w in "${WARNINGS[@]}"; do echo "**Warning:** $w."; done
    echo
    echo "| scenario | req/s | p50 | p99 | proxy CPU µs/req | upstream CPU µs/req | CPU % proxy / upstream | core $PROXY_CPU / core $WRK_CPU busy | proxy RSS after | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    row plain "(a) m2m-sidecar, plain forwarding (public rule, no verification)"
    row es-cache "(b) m2m-sidecar inbound, ES256, cache on (default size)"
    row es-nocache "(c) m2m-sidecar inbound, ES256, cache_size = 0"
    row rs-cache "(d) m2m-sidecar inbound, RS256, cache on (default size)"
    row rs-nocache "(e) m2m-sidecar inbound, RS256, cache_size = 0"
    if [[ $SKIP_HAPROXY != 1 ]]; then
        row hap-rs "(f) haproxy $HAPROXY_V jwt_verify, RS256"
        row hap-es "(g) haproxy $HAPROXY_V jwt_verify, ES256"
    else
        echo "| (f), (g) haproxy | skipped (SKIP_HAPROXY=1) | | | | | | | | |"
    fi
    echo
    echo "| ratio (proxy CPU µs/req) | value | target | result |"
    echo "|---|---:|---:|---|"
    if [[ $SKIP_HAPROXY != 1 ]]; then
        r=$(ratio "${R_CPU[es-nocache]}" "${R_CPU[hap-es]}")
        echo "| ES256: inbound cache off (c) ÷ haproxy (g) | $r | ≤ 0.5 | $(verdict "$r" 0.5) |"
        r=$(ratio "${R_CPU[rs-nocache]}" "${R_CPU[hap-rs]}")
        echo "| RS256: inbound cache off (e) ÷ haproxy (f) | $r | ≤ 0.5 | $(verdict "$r" 0.5) |"
    else
        echo "| inbound cache off ÷ haproxy | n/a (SKIP_HAPROXY=1) | ≤ 0.5 | n/a |"
    fi
    r=$(ratio "${R_CPU[es-cache]}" "${R_CPU[plain]}")
    echo "| ES256: inbound cache on (b) ÷ plain forwarding (a) | $r | ≤ 1.1 | $(verdict "$r" 1.1) |"
    r=$(ratio "${R_CPU[rs-cache]}" "${R_CPU[plain]}")
    echo "| RS256: inbound cache on (d) ÷ plain forwarding (a) | $r | ≤ 1.1 | $(verdict "$r" 1.1) |"
    local errs=0 id
    for id in "${!R_ERR[@]}"; do errs=$((errs + R_ERR[$id])); done
    echo "| errors, all scenarios | $errs | 0 | $( ((errs == 0)) && echo PASS || echo FAIL) |"
}

if [[ -n $OUT ]]; then
    report | tee "$OUT"
else
    report
fi
