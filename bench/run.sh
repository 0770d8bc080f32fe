#!/usr/bin/env bash
# bench/run.sh — m2m-sidecar throughput/latency/CPU benchmark on 127.0.0.1.
#
# Measures, in one run:
#   (a) wrk -> nginx upstream (fixed "ok\n")               "the limit"
#   (b) wrk -> nginx reverse proxy (static bearer) -> upstream  "the peer"
#   (c) wrk -> m2m-sidecar outbound listener (cached token) -> upstream
# and prints a markdown table (stdout) for BENCHMARKS.md; progress goes to stderr.
#
# Needs (Debian packages):
#   nginx   - `nginx-light` (or `nginx`)     wrk  - `wrk`
#   curl    - `curl`                         python3 - `python3` (stdlib only)
#   taskset - `util-linux`                   getconf/timeout - `coreutils`/`libc-bin`
#   i.e.  apt-get install -y nginx-light wrk curl python3 util-linux
# Missing ones are installed automatically when run as root.
# At least 2 CPUs: the proxy under test and the upstream share core 0, wrk runs on core 1.
#
# Environment:
#   SIDECAR_BIN   sidecar binary (default: <repo>/target/release/m2m-sidecar)
#   SKIP_SIDECAR  1 = run only (a) and (b)
#   DURATION      measured wrk run per scenario (default 10s; warm-up is 2s, discarded)
#   CONNECTIONS   wrk connections (default 32; wrk uses 1 thread)
#   NGINX_BIN     nginx binary (default: nginx from PATH or /usr/sbin/nginx)
#   KEEP_TMP      1 = keep the temp dir (configs, logs, raw wrk output)
#   OUT           also write the markdown report to this file
#
# Usage: bench/run.sh > bench-result.md
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

SIDECAR_BIN=${SIDECAR_BIN:-$REPO_DIR/target/release/m2m-sidecar}
SKIP_SIDECAR=${SKIP_SIDECAR:-0}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
KEEP_TMP=${KEEP_TMP:-0}
OUT=${OUT:-}
WARMUP=2s
TOKEN=bench-token
PROXY_CPU=0
WRK_CPU=1
READY_TIMEOUT=20 # seconds, for every readiness poll

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------------
# Dependencies
# --------------------------------------------------------------------------
PATH=$PATH:/usr/sbin:/sbin
declare -A PKG_FOR=([nginx]=nginx-light [wrk]=wrk [curl]=curl [python3]=python3
                    [taskset]=util-linux [getconf]=libc-bin [timeout]=coreutils)

need_pkgs=()
for cmd in nginx wrk curl python3 taskset getconf timeout; do
    if [[ $cmd == nginx && -n ${NGINX_BIN:-} ]]; then
        [[ -x $NGINX_BIN ]] || die "NGINX_BIN=$NGINX_BIN is not executable"
        continue
    fi
    command -v "$cmd" >/dev/null 2>&1 || need_pkgs+=("${PKG_FOR[$cmd]}")
done
install_packages "${need_pkgs[@]}"
NGINX_BIN=${NGINX_BIN:-$(command -v nginx)}
[[ -x $NGINX_BIN ]] || die "nginx not found"

check_cpus "$PROXY_CPU" "$WRK_CPU"

if [[ $SKIP_SIDECAR != 1 ]]; then
    [[ -x $SIDECAR_BIN ]] ||
        die "sidecar binary not found at $SIDECAR_BIN (cargo build --release, set SIDECAR_BIN, or SKIP_SIDECAR=1)"
fi

parse_duration
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive integer"

CLK_TCK=$(getconf CLK_TCK)

check_load

# --------------------------------------------------------------------------
# Temp dir, process bookkeeping, cleanup
# --------------------------------------------------------------------------
start_run m2m-bench  # TMP, PIDS and the cleanup traps (lib.sh)

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
render() { # render TEMPLATE OUTPUT: substitute @NAME@ placeholders
    sed -e "s|@PREFIX@|$TMP|g" \
        -e "s|@PORT_UPSTREAM@|$PORT_UPSTREAM|g" \
        -e "s|@PORT_PROXY@|$PORT_PROXY|g" \
        -e "s|@PORT_SIDECAR@|$PORT_SIDECAR|g" \
        -e "s|@PORT_ADMIN@|$PORT_ADMIN|g" \
        -e "s|@PORT_TOKEN@|$PORT_TOKEN|g" \
        -e "s|@TOKEN@|$TOKEN|g" \
        "$1" >"$2"
    if grep -q '@[A-Z_]*@' "$2"; then die "unsubstituted placeholder in $2"; fi
}

run_wrk() { # run_wrk URL DURATION OUTFILE
    timeout --kill-after=5 "$(($2 + 30))" \
        taskset -c "$WRK_CPU" wrk -t1 -c"$CONNECTIONS" -d"$2"s --latency "$1" >"$3" 2>&1 ||
        { cat "$3" >&2; die "wrk failed against $1"; }
}

# Results, keyed by scenario id.
WARNINGS=()
declare -A R_RPS R_P50 R_P99 R_CPU R_UPCPU R_PCT R_UPPCT R_ERR R_CORE0 R_CORE1 R_WRKPCT

# measure ID URL "PIDS of process under test" : warm-up, measured run, parse, account CPU.
measure() {
    local id=$1 url=$2 pids=$3 warm=${WARMUP%s} out="$TMP/logs/wrk-$1.txt"
    log "[$id] warm-up ${warm}s: $url"
    run_wrk "$url" "$warm" "$TMP/logs/wrk-$id-warmup.txt"
    measured_run "$id" "$out" "$pids" run_wrk "$url" "$DURATION_S" "$out"
    local errs=${R_ERR[$id]}
    foreign_load "$id" "$WRK_CPU" "${R_CORE1[$id]}" "${R_WRKPCT[$id]}" wrk
    local ours=$((R_PCT[$id] + R_UPPCT[$id]))
    [[ $id == direct ]] && ours=${R_PCT[$id]}
    foreign_load "$id" "$PROXY_CPU" "${R_CORE0[$id]}" "$ours" "the measured processes"
    log "[$id] $WRK_RPS req/s, p50 $WRK_P50, p99 $WRK_P99, ${R_CPU[$id]} µs CPU/req (${R_PCT[$id]}% core), errors $errs"
}

# --------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------
read -r PORT_UPSTREAM PORT_PROXY PORT_SIDECAR PORT_ADMIN PORT_TOKEN < <(free_ports 5)
log "temp dir $TMP; ports upstream=$PORT_UPSTREAM proxy=$PORT_PROXY sidecar=$PORT_SIDECAR admin=$PORT_ADMIN token=$PORT_TOKEN"

render "$SCRIPT_DIR/nginx-upstream.conf.tmpl" "$TMP/nginx-upstream.conf"
render "$SCRIPT_DIR/nginx-proxy.conf.tmpl" "$TMP/nginx-proxy.conf"
render "$SCRIPT_DIR/sidecar.toml.tmpl" "$TMP/sidecar.toml"

start_nginx upstream "$TMP/nginx-upstream.conf" "http://127.0.0.1:$PORT_UPSTREAM/" "$PROXY_CPU"
UPSTREAM_PIDS=$NGX_PIDS
log "upstream nginx pids: $UPSTREAM_PIDS"

# --------------------------------------------------------------------------
# (a) direct
# --------------------------------------------------------------------------
measure direct "http://127.0.0.1:$PORT_UPSTREAM/" "$UPSTREAM_PIDS"

# --------------------------------------------------------------------------
# (b) nginx reverse proxy
# --------------------------------------------------------------------------
start_nginx proxy "$TMP/nginx-proxy.conf" "http://127.0.0.1:$PORT_PROXY/" "$PROXY_CPU"
PROXY_MASTER=$NGX_PID
PROXY_PIDS=$NGX_PIDS
log "proxy nginx pids: $PROXY_PIDS"
got=$(curl -fsS --max-time 2 "http://127.0.0.1:$PORT_PROXY/__auth") || die "request through nginx proxy failed"
[[ $got == "Bearer $TOKEN" ]] || die "nginx proxy sent Authorization '$got', expected 'Bearer $TOKEN'"
measure nginx "http://127.0.0.1:$PORT_PROXY/" "$PROXY_PIDS"
stop_pid "$PROXY_MASTER"

# --------------------------------------------------------------------------
# (c) m2m-sidecar
# --------------------------------------------------------------------------
SIDECAR_RSS=""
SIDECAR_VERSION=""
TOKEN_FETCHES=""
if [[ $SKIP_SIDECAR != 1 ]]; then
    taskset -c "$WRK_CPU" python3 "$SCRIPT_DIR/token_server.py" "$PORT_TOKEN" "$TOKEN" \
        >"$TMP/logs/token.out" 2>&1 &
    TOKEN_PID=$!
    PIDS+=("$TOKEN_PID")
    wait_http "http://127.0.0.1:$PORT_TOKEN/oauth/token" "$TOKEN_PID" POST ||
        { cat "$TMP/logs/token.out" >&2; die "token server not ready"; }
    fetches_before=$(curl -fsS --max-time 2 "http://127.0.0.1:$PORT_TOKEN/__count")

    SIDECAR_VERSION=$(timeout 5 "$SIDECAR_BIN" --version 2>/dev/null | head -n1 || true)
    M2M_WORKER_THREADS=1 taskset -c "$PROXY_CPU" "$SIDECAR_BIN" run --config "$TMP/sidecar.toml" \
        >"$TMP/logs/sidecar.out" 2>&1 &
    SIDECAR_PID=$!
    PIDS+=("$SIDECAR_PID")
    wait_http "http://127.0.0.1:$PORT_ADMIN/readyz" "$SIDECAR_PID" ||
        { tail -n 50 "$TMP/logs/sidecar.out" >&2; die "sidecar exited or was not ready within ${READY_TIMEOUT}s (log above)"; }
    SIDECAR_RSS=$(rss_mb "$SIDECAR_PID")
    log "sidecar ready (pid $SIDECAR_PID, threads $(awk '/^Threads:/ {print $2}' "/proc/$SIDECAR_PID/status"), idle RSS $SIDECAR_RSS MB)"

    got=$(curl -fsS --max-time 5 "http://127.0.0.1:$PORT_SIDECAR/__auth") ||
        { tail -n 50 "$TMP/logs/sidecar.out" >&2; die "request through the sidecar failed"; }
    [[ $got == "Bearer $TOKEN" ]] || die "sidecar sent Authorization '$got', expected 'Bearer $TOKEN'"
    measure sidecar "http://127.0.0.1:$PORT_SIDECAR/" "$SIDECAR_PID"
    fetches_after=$(curl -fsS --max-time 2 "http://127.0.0.1:$PORT_TOKEN/__count")
    TOKEN_FETCHES=$((fetches_after - fetches_before))
    log "token endpoint hits during the sidecar run: $TOKEN_FETCHES"
    stop_pid "$SIDECAR_PID"
fi

# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
row() { # row ID LABEL
    local id=$1
    printf '| %s | %s | %s | %s | %s | %s | %s%% / %s%% | %s%% / %s%% | %s |\n' "$2" "${R_RPS[$id]}" \
        "$(fmt_lat "${R_P50[$id]}")" "$(fmt_lat "${R_P99[$id]}")" \
        "${R_CPU[$id]}" "${R_UPCPU[$id]}" "${R_PCT[$id]}" "${R_UPPCT[$id]}" \
        "${R_CORE0[$id]}" "${R_CORE1[$id]}" "${R_ERR[$id]}"
}

report() {
    local cpu_model kernel nginx_v wrk_v
    cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo || true)
    kernel=$(uname -r)
    nginx_v=$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: nginx\///')
    wrk_v=$(wrk -v 2>&1 | head -n1 | awk '{ sub(/^debian\//, "", $2); print $2 }' || true)

    echo "### m2m-sidecar outbound proxy benchmark"
    echo
    echo "$(date -u +%Y-%m-%d), ${cpu_model:-unknown CPU}, ${ncpu} CPUs, Linux $kernel, nginx $nginx_v, wrk $wrk_v."
    echo "wrk \`-t1 -c$CONNECTIONS -d${DURATION_S}s --latency\` on core $WRK_CPU after a ${WARMUP} warm-up;"
    printf '%s\n' "proxy under test and the nginx upstream (\`return 200 \"ok\\n\"\`, 1 worker) share core $PROXY_CPU."
    echo "Load average before the run: $LOADAVG. \"core busy\" is the whole core from /proc/stat (includes anything else running)."
    echo "CPU = utime+stime from /proc/PID/stat over the measured run (nginx: master + workers; tick = $((1000000 / CLK_TCK)) µs)."
    [[ -n $SIDECAR_VERSION ]] && echo "Sidecar: $SIDECAR_VERSION, \`M2M_WORKER_THREADS=1\`."
    local w
    for w in "${WARNINGS[@]}"; do echo "**Warning:** $w."; done
    echo
    echo "| scenario | req/s | p50 | p99 | proxy CPU µs/req | upstream CPU µs/req | CPU % proxy / upstream | core $PROXY_CPU / core $WRK_CPU busy | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    row direct "(a) direct to nginx upstream (the limit; \"proxy\" = upstream)"
    row nginx "(b) nginx reverse proxy, static bearer (the peer)"
    if [[ $SKIP_SIDECAR != 1 ]]; then
        row sidecar "(c) m2m-sidecar, cached token"
        echo
        echo "| sidecar / nginx proxy | value |"
        echo "|---|---:|"
        echo "| req/s ratio | $(ratio "${R_RPS[sidecar]}" "${R_RPS[nginx]}") |"
        echo "| CPU/req ratio | $(ratio "${R_CPU[sidecar]}" "${R_CPU[nginx]}") |"
        echo "| p99 ratio | $(ratio "${R_P99[sidecar]}" "${R_P99[nginx]}") |"
        echo "| sidecar idle RSS | ${SIDECAR_RSS} MB |"
        echo "| token endpoint hits (sidecar start to end of run) | ${TOKEN_FETCHES} |"
    else
        echo
        echo "(c) skipped (SKIP_SIDECAR=1)."
    fi
}

if [[ -n $OUT ]]; then
    report | tee "$OUT"
else
    report
fi
