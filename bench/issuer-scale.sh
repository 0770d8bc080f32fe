#!/usr/bin/env bash
# bench/issuer-scale.sh — the built-in issuer with many apps (issue 12), on 127.0.0.1.
#
# For each store in STORES:
#   sqlite  `store = "sqlite://DIR/issuer.db"` (the embedded default; store.key generated)
#   pg      `store = "postgres://..."`, one issuer on a throwaway PostgreSQL cluster
#   pg2     two issuer processes (replicas) on one PostgreSQL database; writes alternate
#   json    `state = "DIR/issuer.json"` (the JSON file of the releases before the store:
#           the "before" baseline; slow: every write rewrites the whole file)
# it
#   1. starts the issuer (config: the Orders API, an `admin` app with apps:read apps:write
#      on the management audience, a `bench` app with orders:read, ES256 signing),
#   2. creates 8 apps (10 in all) through POST /api/v1/apps, measures ES256 tokens/s with
#      wrk (client_credentials of `bench`, as bench/issuer.sh) at 10 apps,
#   3. creates apps one by one up to APPS created (one keep-alive connection per issuer,
#      bench/issuer_scale.py), timing every request: p50/p99 per block of BLOCK,
#   4. measures tokens/s again at APPS apps (ratio to 10 apps), the issuer's VmRSS,
#   5. stops the issuer (replica A with pg2) and starts it again on the same store: the
#      start-up time until /healthz answers 200 (and /readyz, when the issuer has it),
#      polled every 5 ms; the last created app must still be there.
# and prints a markdown table (stdout) for BENCHMARKS.md; progress goes to stderr.
#
# Everything under test (the issuer(s), PostgreSQL) runs on core 0; the load generators
# (wrk -t1, the Python client) on core 1. The Python client's own cost per request is
# measured first (keep-alive GETs of the issuer's /healthz) and reported: it must stay
# below 0.2 ms for the write latencies to be the issuer's.
#
# Needs (Debian packages):
#   wrk - `wrk`     curl - `curl`     python3 - `python3` (stdlib only)
#   taskset - `util-linux`            getconf/timeout - `coreutils`/`libc-bin`
#   PostgreSQL (pg, pg2) - `postgresql` (initdb, pg_ctl, createdb from /usr/lib/postgresql/*/bin)
# Missing ones are installed automatically when run as root. As root, the PostgreSQL
# cluster runs as the unprivileged user `m2m-bench` (created with useradd when missing).
# At least 2 CPUs.
#
# Environment:
#   SIDECAR_BIN            sidecar binary (default: <repo>/target/release/m2m-sidecar)
#   STORES                 stores to run, in order (default "sqlite pg pg2"; STORE is an alias)
#   APPS                   apps created through the API per store (default 100000, at least 10)
#   BLOCK                  latency block size (default APPS/10)
#   DURATION               measured wrk run per token measurement (default 10s; warm-up 2s)
#   CONNECTIONS            wrk connections (default 32; wrk uses 1 thread)
#   ISSUER_WORKER_THREADS  M2M_WORKER_THREADS for the issuer (default 1; empty = runtime default)
#   PG_BIN                 PostgreSQL's bin directory (default: newest /usr/lib/postgresql/*/bin)
#   KEEP_TMP               1 = keep the temp dir (configs, logs, latencies, raw wrk output)
#   OUT                    also write the markdown report to this file
#
# Usage: bench/issuer-scale.sh > issuer-scale.md
#        STORES=json APPS=2000 bench/issuer-scale.sh     # the JSON-state baseline, small
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

SIDECAR_BIN=${SIDECAR_BIN:-$REPO_DIR/target/release/m2m-sidecar}
STORES=${STORES:-${STORE:-sqlite pg pg2}}
STORES=${STORES//,/ }
APPS=${APPS:-100000}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
ISSUER_WORKER_THREADS=${ISSUER_WORKER_THREADS-1}
PG_BIN=${PG_BIN:-}
KEEP_TMP=${KEEP_TMP:-0}
OUT=${OUT:-}
WARMUP=2s
SERVER_CPU=0
CLIENT_CPU=1
WRK_CPU=$CLIENT_CPU
READY_TIMEOUT=60     # seconds, for every readiness poll (start-up with many apps included)
OVERHEAD_N=2000      # keep-alive GETs of /healthz to measure the client's own cost
FIRST_APPS=8         # created before the first token measurement: 10 apps with admin, bench
PG_USER=m2m-bench    # the unprivileged OS user of the PostgreSQL cluster when run as root
LUA=$SCRIPT_DIR/issuer-token.lua
CLIENT=$SCRIPT_DIR/issuer_scale.py

AUDIENCE=https://orders.example.com
ADMIN_SECRET=admin-secret-0123456789abcdef0123456789
BENCH_SECRET=bench-secret-0123456789abcdef0123456789
ISSUER_BODY="grant_type=client_credentials&client_id=bench&client_secret=$BENCH_SECRET&audience=https%3A%2F%2Forders.example.com"
export ADMIN_SECRET # read by issuer_scale.py from the environment, never from argv

log() { printf '[issuer-scale] %s\n' "$*" >&2; }
die() { printf '[issuer-scale] ERROR: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------------
# Arguments, dependencies
# --------------------------------------------------------------------------
if ! [[ $APPS =~ ^[0-9]+$ ]] || ((APPS < 10)); then die "APPS must be an integer ≥ 10 (got $APPS)"; fi
BLOCK=${BLOCK:-$((APPS / 10))}
[[ $BLOCK =~ ^[1-9][0-9]*$ ]] || die "BLOCK must be a positive integer (got $BLOCK)"
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive integer"
[[ -z $ISSUER_WORKER_THREADS || $ISSUER_WORKER_THREADS =~ ^[1-9][0-9]*$ ]] ||
    die "ISSUER_WORKER_THREADS must be a positive integer or empty"
parse_duration
((DURATION_S > 0)) || die "DURATION must be positive"
read -r -a STORE_LIST <<<"$STORES"
((${#STORE_LIST[@]} > 0)) || die "STORES is empty"
NEED_PG=0
for s in "${STORE_LIST[@]}"; do
    case $s in
        sqlite | json) ;;
        pg | pg2) NEED_PG=1 ;;
        *) die "unknown store '$s' in STORES (sqlite, pg, pg2, json)" ;;
    esac
done
if [[ " $STORES " == *" json "* ]] && ((APPS > 20000)); then
    log "WARNING: json with APPS=$APPS: every write rewrites the whole file (~9 ms at 10k apps, ~90 ms at 100k); this takes hours"
fi

PATH=$PATH:/usr/sbin:/sbin
declare -A PKG_FOR=([wrk]=wrk [curl]=curl [python3]=python3 [taskset]=util-linux
                    [getconf]=libc-bin [timeout]=coreutils)
need_pkgs=()
for cmd in wrk curl python3 taskset getconf timeout; do
    command -v "$cmd" >/dev/null 2>&1 || need_pkgs+=("${PKG_FOR[$cmd]}")
done
find_pg_bin() {
    [[ -n $PG_BIN ]] && return 0
    local d
    d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1 || true)
    [[ -n $d && -x $d/initdb ]] && PG_BIN=$d
    return 0
}
if ((NEED_PG)); then
    find_pg_bin
    [[ -n $PG_BIN ]] || need_pkgs+=(postgresql)
fi
install_packages "${need_pkgs[@]}"
if ((NEED_PG)); then
    find_pg_bin
    for t in initdb pg_ctl createdb postgres; do
        [[ -x $PG_BIN/$t ]] || die "PostgreSQL's $t not found in ${PG_BIN:-/usr/lib/postgresql/*/bin} (apt-get install postgresql, or set PG_BIN)"
    done
fi

check_cpus "$SERVER_CPU" "$CLIENT_CPU"
[[ -x $SIDECAR_BIN ]] || die "sidecar binary not found at $SIDECAR_BIN (cargo build --release, or set SIDECAR_BIN)"
[[ -f $LUA && -f $CLIENT ]] || die "missing $LUA or $CLIENT"
CLK_TCK=$(getconf CLK_TCK)
check_load

# --------------------------------------------------------------------------
# Temp dir, process bookkeeping, cleanup (the issuers first, then PostgreSQL)
# --------------------------------------------------------------------------
start_run m2m-issuer-scale # TMP, PIDS and the cleanup traps (lib.sh)
PG_DIR=""
PG_PORT="" PG_PASSWORD="" STORE_KEY=""
scale_cleanup() {
    local rc=$? i
    set +e # stop everything even when one step fails
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    PIDS=()
    stop_pg
    (exit "$rc") # cleanup reads the exit status from $?
    cleanup
}
trap scale_cleanup EXIT

# --------------------------------------------------------------------------
# PostgreSQL: a throwaway cluster in $TMP/pg, loopback, password auth (SCRAM)
# --------------------------------------------------------------------------
as_pg() { # as_pg CMD...: as the cluster's owner (PG_USER when root, else ourselves)
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

start_pg() {
    PG_DIR=$TMP/pg
    mkdir -p "$PG_DIR/sock"
    PG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
    printf '%s\n' "$PG_PASSWORD" >"$PG_DIR/pwfile"
    chmod 600 "$PG_DIR/pwfile"
    if [[ $(id -u) -eq 0 ]]; then
        if ! id "$PG_USER" >/dev/null 2>&1; then
            log "creating the unprivileged user $PG_USER for PostgreSQL"
            useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER" ||
                die "useradd $PG_USER failed"
        fi
        chmod 711 "$TMP" # the cluster's owner must reach $TMP/pg; nothing else is readable
        chown -R "$PG_USER" "$PG_DIR"
    fi
    read -r PG_PORT < <(free_ports 1)
    PG_VERSION=$("$PG_BIN/postgres" --version | awk '{ print $3 }')
    log "PostgreSQL $PG_VERSION: initdb in $PG_DIR/data, port $PG_PORT"
    as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U issuer --pwfile="$PG_DIR/pwfile" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --no-locale \
        >"$TMP/logs/initdb.log" 2>&1 || { cat "$TMP/logs/initdb.log" >&2; die "initdb failed"; }
    # Started on core 0 beside the issuer (the server side). Defaults otherwise: fsync on,
    # synchronous_commit on, as a user's database would be.
    as_pg taskset -c "$SERVER_CPU" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -w -t "$READY_TIMEOUT" \
        -l "$PG_DIR/postgres.log" \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR/sock" start \
        >"$TMP/logs/pg_ctl.log" 2>&1 ||
        { cat "$TMP/logs/pg_ctl.log" "$PG_DIR/postgres.log" >&2 || true; die "pg_ctl start failed"; }
    log "PostgreSQL ready on 127.0.0.1:$PG_PORT (pid $(head -n1 "$PG_DIR/data/postmaster.pid"))"
}

createdb_pg() { # createdb_pg NAME
    PGPASSWORD=$PG_PASSWORD "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U issuer "$1" \
        >"$TMP/logs/createdb-$1.log" 2>&1 || { cat "$TMP/logs/createdb-$1.log" >&2; die "createdb $1 failed"; }
}

stop_pg() {
    [[ -n $PG_DIR && -f $PG_DIR/data/postmaster.pid ]] || return 0
    local pid
    pid=$(head -n1 "$PG_DIR/data/postmaster.pid")
    log "stopping PostgreSQL (pid $pid)"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 20 stop >>"$TMP/logs/pg_ctl.log" 2>&1; then
        log "pg_ctl stop failed; killing the postmaster (pid $pid)"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    PG_DIR=""
}

# --------------------------------------------------------------------------
# Issuer configs and processes
# --------------------------------------------------------------------------
# write_config FILE STORE DIR LISTEN_PORT URL_PORT [DB]: one issuer; replicas share the
# url (the issuer's public name), the database and STORE_KEY.
write_config() {
    local file=$1 store=$2 dir=$3 listen=$4 urlport=$5 db=${6:-} store_lines
    case $store in
        json) store_lines="state = \"$dir/issuer.json\"" ;;
        sqlite) store_lines="store = \"sqlite://$dir/issuer.db\"" ;;
        pg | pg2)
            store_lines="store = \"postgres://issuer@127.0.0.1:$PG_PORT/$db\"
store_password = \"$PG_PASSWORD\"
store_key = \"$STORE_KEY\""
            ;;
    esac
    cat >"$file" <<EOF
# m2m-sidecar issuer config written by bench/issuer-scale.sh ($store)
drain_timeout = "1s"

[issuer]
listen = "127.0.0.1:$listen"
url = "http://127.0.0.1:$urlport/"
$store_lines
token_ttl = "1h"
signing_alg = "ES256"

[[issuer.apis]]
name = "Orders API"
identifier = "$AUDIENCE"
scopes = ["orders:read", "orders:write"]

[[issuer.apps]]
name = "admin"
client_id = "admin"
client_secret = "$ADMIN_SECRET"
grants = { "http://127.0.0.1:$urlport/api/v1/" = ["apps:read", "apps:write"] }

[[issuer.apps]]
name = "bench"
client_id = "bench"
client_secret = "$BENCH_SECRET"
grants = { "$AUDIENCE" = ["orders:read"] }
EOF
    chmod 600 "$file"
}

# start_issuer NAME CONFIG PORT: start on core 0, wait for /healthz (and /readyz when
# served), timed from the exec. Sets ISSUER_PID, START_HEALTH, START_READY (seconds).
start_issuer() {
    local name=$1 config=$2 port=$3 t0 res
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    env ${ISSUER_WORKER_THREADS:+M2M_WORKER_THREADS=$ISSUER_WORKER_THREADS} \
        taskset -c "$SERVER_CPU" "$SIDECAR_BIN" issuer --config "$config" \
        </dev/null >>"$TMP/logs/$name.out" 2>&1 &
    ISSUER_PID=$!
    PIDS+=("$ISSUER_PID")
    res=$(python3 "$CLIENT" wait --url "http://127.0.0.1:$port/" --pid "$ISSUER_PID" \
        --t0 "$t0" --timeout "$READY_TIMEOUT") ||
        { tail -n 50 "$TMP/logs/$name.out" >&2; die "[$name] issuer exited or was not ready within ${READY_TIMEOUT}s (log above)"; }
    START_HEALTH=$(kv "$res" healthz_s)
    START_READY=$(kv "$res" readyz_s)
    log "[$name] ready in ${START_HEALTH}s (/readyz: $START_READY) (pid $ISSUER_PID, RSS $(rss_mb "$ISSUER_PID") MB)"
}

kv() { # kv "k=v k2=v2" KEY -> value
    awk -v k="$2" '{ for (i = 1; i <= NF; i++) { split($i, p, "="); if (p[1] == k) { print substr($i, length(k) + 2); exit } } }' <<<"$1"
}

forget_pid() { # drop PID from PIDS (after stop_pid)
    local i keep=()
    for i in "${PIDS[@]}"; do [[ $i == "$1" ]] || keep+=("$i"); done
    PIDS=("${keep[@]}")
}

# check_token ID URL: one token request with curl; must be 200 with an ES256 JWT.
check_token() {
    local id=$1 url=$2 file="$TMP/logs/$1-token.json" code
    code=$(curl -sS --max-time 5 -o "$file" -w '%{http_code}' \
        -H 'content-type: application/x-www-form-urlencoded' --data-raw "$ISSUER_BODY" "$url") ||
        die "[$id] token request with curl failed ($url)"
    [[ $code == 200 ]] || { cat "$file" >&2; echo >&2; die "[$id] token request returned HTTP $code, expected 200"; }
    python3 - "$file" <<'PY' || { cat "$file" >&2; echo >&2; die "[$id] bad token response"; }
import base64, json, sys
tok = json.load(open(sys.argv[1]))["access_token"]
h = json.loads(base64.urlsafe_b64decode(tok.split(".")[0] + "=="))
sys.exit(None if h.get("alg") == "ES256" else f"alg {h.get('alg')}, expected ES256")
PY
}

# --------------------------------------------------------------------------
# Token measurement (as bench/issuer.sh: wrk -t1, bench/issuer-token.lua)
# --------------------------------------------------------------------------
WARNINGS=()
# shellcheck disable=SC2034 # R_P50, R_PCT: filled by parse_wrk (lib.sh) and measure_tokens, logged only
declare -A R_RPS R_P50 R_P99 R_CPU R_PCT R_ERR R_CORE0 R_CORE1 R_WRKPCT
# Per store: write latencies, RSS, start-up, client cost.
declare -A W_BLOCKS W_P50 W_P99 W_LAST_P50 W_LAST_P99 W_CLIENT_CPU W_WALL RSS_N RSS_B START_S READY_S RSS_RESTART

run_wrk() { # run_wrk URL SECONDS OUTFILE
    timeout --kill-after=5 "$(($2 + 30))" \
        taskset -c "$WRK_CPU" wrk -t1 -c"$CONNECTIONS" -d"$2"s --latency -s "$LUA" "$1" -- "$ISSUER_BODY" \
        >"$3" 2>&1 || { cat "$3" >&2; die "wrk failed against $1"; }
    grep -q '^issuer-lua: ' "$3" || { cat "$3" >&2; die "no issuer-lua summary line in $3"; }
}

lua_field() { # lua_field FILE NAME -> value from the "issuer-lua:" line
    awk -v k="$2" '/^issuer-lua: / { for (i = 2; i <= NF; i++) { split($i, kv, "=");
        if (kv[1] == k) { print kv[2]; exit } } }' "$1"
}

# measure_tokens ID URL PID: warm-up, measured run; R_RPS R_P50 R_P99 R_CPU R_PCT R_ERR.
measure_tokens() {
    local id=$1 url=$2 pid=$3 out="$TMP/logs/wrk-$1.txt" c0 c1 sock non2xx notok
    log "[$id] warm-up ${WARMUP}, then ${DURATION_S}s of wrk -c$CONNECTIONS: POST $url"
    run_wrk "$url" "${WARMUP%s}" "$TMP/logs/wrk-$id-warmup.txt"
    c0=$(cpu_ticks "$pid")
    window_open "$SERVER_CPU" "$WRK_CPU"
    run_wrk "$url" "$DURATION_S" "$out"
    window_close "$SERVER_CPU" "$WRK_CPU"
    c1=$(cpu_ticks "$pid")
    kill -0 "$pid" 2>/dev/null || die "[$id] issuer (pid $pid) died during the run"
    parse_wrk "$id" "$out"
    sock=$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 } END { print s + 0 }' "$out")
    non2xx=$(lua_field "$out" non2xx)
    notok=$(lua_field "$out" no_token)
    [[ $non2xx =~ ^[0-9]+$ && $notok =~ ^[0-9]+$ ]] || { cat "$out" >&2; die "cannot parse the issuer-lua line ($out)"; }
    R_ERR[$id]=$((sock + non2xx + notok))
    read -r "R_CPU[$id]" "R_PCT[$id]" < <(awk \
        -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v n="$WRK_REQS" -v t0="$WIN_T0" -v t1="$WIN_T1" 'BEGIN {
            printf "%.1f %.0f\n", c / hz * 1e6 / n, 100 * c / hz / (t1 - t0) }')
    window_stats "$id"
    foreign_load "$id" "$WRK_CPU" "${R_CORE1[$id]}" "${R_WRKPCT[$id]}" wrk
    foreign_load "$id" "$SERVER_CPU" "${R_CORE0[$id]}" "${R_PCT[$id]}" "the issuer"
    if ((${R_ERR[$id]} > 0)); then
        log "[$id] WARNING: ${R_ERR[$id]} errors (non-2xx $non2xx, no access_token $notok, socket $sock; $(lua_field "$out" statuses))"
        WARNINGS+=("($id) ${R_ERR[$id]} token errors")
    fi
    log "[$id] $WRK_RPS tokens/s, p50 $WRK_P50, p99 $WRK_P99, ${R_CPU[$id]} µs CPU/token, errors ${R_ERR[$id]}"
}

# create_apps STORE URLS START COUNT TOKEN_URL MGMT "ISSUER_PIDS": the Python client on
# core 1, inside a measurement window: R_CORE0/R_CORE1 (busy %), R_WRKPCT (the client's
# CPU %) and R_PCT (the issuers' CPU %) under the id STORE-writes.
create_apps() {
    local store=$1 urls=$2 start=$3 count=$4 token_url=$5 mgmt=$6 pids=$7 res c0 c1
    local id="$1-writes"
    log "[$store] creating apps $start..$((start + count - 1)) one by one via ${urls//,/ and }"
    # shellcheck disable=SC2086
    c0=$(cpu_ticks $pids)
    window_open "$SERVER_CPU" "$CLIENT_CPU"
    res=$(taskset -c "$CLIENT_CPU" python3 "$CLIENT" create --url "$urls" --token-url "$token_url" \
        --audience "$mgmt" --api "$AUDIENCE" --start "$start" --count "$count" \
        --out "$TMP/$store-latencies.txt" --ids "$TMP/$store-ids.txt") ||
        die "[$store] creating apps failed (issuer log: $TMP/logs/$store-a.out)"
    window_close "$SERVER_CPU" "$CLIENT_CPU"
    # shellcheck disable=SC2086
    c1=$(cpu_ticks $pids)
    window_stats "$id"
    R_PCT[$id]=$(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v t0="$WIN_T0" -v t1="$WIN_T1" \
        'BEGIN { printf "%.0f", 100 * c / hz / (t1 - t0) }')
    log "[$store] $res"
    LAST_ID=$(kv "$res" last_id)
    CREATE_CPU=$(kv "$res" client_cpu_us)
    CREATE_WALL=$(kv "$res" wall_s)
    log "[$id] core busy: cpu$SERVER_CPU ${R_CORE0[$id]}% (issuer ${R_PCT[$id]}%), cpu$CLIENT_CPU ${R_CORE1[$id]}% (client ${R_WRKPCT[$id]}%)"
    ((count >= 1000)) || return 0 # too short a window to judge foreign load
    foreign_load "$id" "$CLIENT_CPU" "${R_CORE1[$id]}" "${R_WRKPCT[$id]}" "the client"
    # With PostgreSQL, its processes share core 0 with the issuer(s): not foreign.
    [[ $store == pg* ]] || foreign_load "$id" "$SERVER_CPU" "${R_CORE0[$id]}" "${R_PCT[$id]}" "the issuer"
    LAST_ID=$(kv "$res" last_id)
    CREATE_CPU=$(kv "$res" client_cpu_us)
    CREATE_WALL=$(kv "$res" wall_s)
}

# --------------------------------------------------------------------------
# One store
# --------------------------------------------------------------------------
FIRST_STORE=1
run_store() {
    local store=$1
    local dir="$TMP/$store" port_a port_b url_a urls mgmt token_url db="" pid_a pid_b="" line blocks
    local rss_created rss_tokens
    mkdir -p "$dir"
    read -r port_a port_b < <(free_ports 2)
    url_a="http://127.0.0.1:$port_a/"
    mgmt="${url_a}api/v1/"
    token_url="${url_a}oauth/token"
    if [[ $store == pg || $store == pg2 ]]; then
        db="issuer_$store"
        createdb_pg "$db"
        # 32 random bytes, base64: encrypts the signing keys at rest; one per database.
        STORE_KEY=$(python3 -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())')
    fi
    write_config "$dir/a.toml" "$store" "$dir" "$port_a" "$port_a" "$db"
    log "[$store] starting the issuer on 127.0.0.1:$port_a"
    start_issuer "$store-a" "$dir/a.toml" "$port_a"
    pid_a=$ISSUER_PID
    urls=$url_a
    if [[ $store == pg2 ]]; then
        # Replica B: same database, same url (the issuer's public name), its own port.
        write_config "$dir/b.toml" "$store" "$dir" "$port_b" "$port_a" "$db"
        log "[$store] starting replica B on 127.0.0.1:$port_b"
        start_issuer "$store-b" "$dir/b.toml" "$port_b"
        pid_b=$ISSUER_PID
        urls="$url_a,http://127.0.0.1:$port_b/"
        check_token "$store-b" "http://127.0.0.1:$port_b/oauth/token"
    fi
    check_token "$store" "$token_url"

    if ((FIRST_STORE)); then
        FIRST_STORE=0
        line=$(taskset -c "$CLIENT_CPU" python3 "$CLIENT" overhead "${url_a}healthz" --n "$OVERHEAD_N") ||
            die "measuring the client's overhead failed"
        OVH_P50=$(kv "$line" p50_us) OVH_P99=$(kv "$line" p99_us) OVH_CPU=$(kv "$line" client_cpu_us)
        OVH_STORE=$store
        log "client overhead: keep-alive GET /healthz round trip p50 ${OVH_P50} µs, p99 ${OVH_P99} µs; client CPU ${OVH_CPU} µs/request"
    fi

    : >"$TMP/$store-latencies.txt"
    : >"$TMP/$store-ids.txt"
    create_apps "$store" "$urls" 0 "$FIRST_APPS" "$token_url" "$mgmt" "$pid_a $pid_b"
    measure_tokens "$store-10" "$token_url" "$pid_a"
    create_apps "$store" "$urls" "$FIRST_APPS" "$((APPS - FIRST_APPS))" "$token_url" "$mgmt" "$pid_a $pid_b"
    W_CLIENT_CPU[$store]=$CREATE_CPU
    W_WALL[$store]=$CREATE_WALL
    rss_created=$(rss_mb "$pid_a")
    measure_tokens "$store-N" "$token_url" "$pid_a"
    rss_tokens=$(rss_mb "$pid_a")
    # RSS at APPS apps: the larger of right after the writes and after the token run.
    RSS_N[$store]=$(awk -v a="$rss_created" -v b="$rss_tokens" 'BEGIN { print (a > b) ? a : b }')
    [[ -z $pid_b ]] || RSS_B[$store]=$(rss_mb "$pid_b")
    log "[$store] RSS at $APPS apps: $rss_created MB after the writes, $rss_tokens MB after the token run${pid_b:+; replica B ${RSS_B[$store]:-} MB}"

    blocks=$(python3 "$CLIENT" blocks "$TMP/$store-latencies.txt" --block "$BLOCK") ||
        die "[$store] cannot compute the latency blocks"
    W_BLOCKS[$store]=$(grep '^block ' <<<"$blocks")
    line=$(grep '^all ' <<<"$blocks")
    W_P50[$store]=$(kv "$line" p50_us) W_P99[$store]=$(kv "$line" p99_us)
    line=$(tail -n1 <<<"${W_BLOCKS[$store]}")
    W_LAST_P50[$store]=$(kv "$line" p50_us) W_LAST_P99[$store]=$(kv "$line" p99_us)
    while read -r line; do
        log "[$store] writes $(kv "$line" from)-$(kv "$line" to): p50 $(fmt_lat "$(kv "$line" p50_us)"), p99 $(fmt_lat "$(kv "$line" p99_us)"), max $(fmt_lat "$(kv "$line" max_us)")"
    done <<<"${W_BLOCKS[$store]}"

    # Start-up with APPS apps: stop (replica A), start again on the same store.
    stop_pid "$pid_a"
    forget_pid "$pid_a"
    log "[$store] restarting the issuer on the same store ($((APPS + 2)) apps)"
    start_issuer "$store-a" "$dir/a.toml" "$port_a"
    pid_a=$ISSUER_PID
    START_S[$store]=$START_HEALTH
    READY_S[$store]=$START_READY
    RSS_RESTART[$store]=$(rss_mb "$pid_a")
    check_token "$store-restart" "$token_url"
    python3 "$CLIENT" exists --url "$url_a" --token-url "$token_url" --audience "$mgmt" --id "$LAST_ID" ||
        die "[$store] the last app created ($LAST_ID) is missing after the restart"
    log "[$store] after the restart: the last app created is there; RSS ${RSS_RESTART[$store]} MB"

    stop_pid "$pid_a"
    forget_pid "$pid_a"
    if [[ -n $pid_b ]]; then
        stop_pid "$pid_b"
        forget_pid "$pid_b"
    fi
    if [[ $store == json ]]; then
        log "[$store] state file: $(du -h "$dir/issuer.json" | cut -f1)"
    elif [[ $store == sqlite ]]; then
        log "[$store] database: $(du -ch "$dir"/issuer.db* 2>/dev/null | tail -n1 | cut -f1)"
    fi
}

SIDECAR_VERSION=$(timeout 5 "$SIDECAR_BIN" --version 2>/dev/null | head -n1 || true)
PG_VERSION=""
((NEED_PG == 0)) || start_pg
for s in "${STORE_LIST[@]}"; do
    run_store "$s"
done

# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
label() {
    case $1 in
        sqlite) echo "SQLite" ;;
        pg) echo "PostgreSQL, 1 replica" ;;
        pg2) echo "PostgreSQL, 2 replicas" ;;
        json) echo "JSON state file (before)" ;;
    esac
}
verdict() { # verdict VALUE OP TARGET -> PASS / FAIL / n/a
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { if (v == "" || v == "n/a" || v == "NaN") { print "n/a"; exit }
        if (op == ">=") ok = v + 0 >= t + 0; else if (op == "<=") ok = v + 0 <= t + 0; else ok = v + 0 < t + 0
        print ok ? "PASS" : "FAIL" }'
}
secs() { [[ $1 == n/a ]] && echo n/a || printf '%s s' "$1"; }

report() {
    local cpu_model kernel wrk_v w s i n r line hdr sep
    cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo || true)
    kernel=$(uname -r)
    wrk_v=$(wrk -v 2>&1 | head -n1 | awk '{ sub(/^debian\//, "", $2); print $2 }' || true)

    echo "### m2m-sidecar issuer with $APPS apps (bench/issuer-scale.sh)"
    echo
    echo "$(date -u +%Y-%m-%d), ${cpu_model:-unknown CPU}, ${ncpu} CPUs, Linux $kernel, wrk $wrk_v${PG_VERSION:+, PostgreSQL $PG_VERSION}."
    echo "Sidecar: ${SIDECAR_VERSION:-?}, \`m2m-sidecar issuer\`, \`M2M_WORKER_THREADS=${ISSUER_WORKER_THREADS:-(default)}\`, ES256, token_ttl 1h;"
    echo "the issuer(s)${PG_VERSION:+ and PostgreSQL} on core $SERVER_CPU, the clients on core $CLIENT_CPU. Load average before the run: $LOADAVG."
    echo "Writes: \`POST /api/v1/apps\` one by one (bench/issuer_scale.py, a minimal HTTP/1.1 client on one keep-alive"
    echo "socket per issuer; with 2 replicas writes alternate between them), $APPS per store, latency per block of $BLOCK."
    echo "Client cost: the same client's keep-alive \`GET /healthz\` round trip is p50 $OVH_P50 µs / p99 $OVH_P99 µs (client,"
    echo "loopback and server together, on the $OVH_STORE issuer; client CPU $OVH_CPU µs per request); \"client CPU µs/write\""
    echo "below is its CPU per write, including waking up after each write's wait."
    echo "Tokens: wrk \`-t1 -c$CONNECTIONS -d${DURATION_S}s --latency -s bench/issuer-token.lua\` after a ${WARMUP} warm-up, client_credentials"
    echo "of one app, at 10 apps (2 from the config + 8 created) and at $((APPS + 2)) apps (replica A with 2 replicas)."
    echo "Start-up: stop the issuer (replica A), start it on the same store, time from exec until \`/healthz\` answers 200 (polled every 5 ms)."
    for w in "${WARNINGS[@]}"; do echo "**Warning:** $w."; done
    echo
    hdr="| apps created |"
    sep="|---|"
    for s in "${STORE_LIST[@]}"; do
        hdr+=" $(label "$s") p50 | p99 |"
        sep+="---:|---:|"
    done
    echo "$hdr"
    echo "$sep"
    n=$(wc -l <<<"${W_BLOCKS[${STORE_LIST[0]}]}")
    for ((i = 1; i <= n; i++)); do
        line=$(sed -n "${i}p" <<<"${W_BLOCKS[${STORE_LIST[0]}]}")
        printf '| %s–%s |' "$(kv "$line" from)" "$(kv "$line" to)"
        for s in "${STORE_LIST[@]}"; do
            line=$(sed -n "${i}p" <<<"${W_BLOCKS[$s]}")
            printf ' %s | %s |' "$(fmt_lat "$(kv "$line" p50_us)")" "$(fmt_lat "$(kv "$line" p99_us)")"
        done
        echo
    done
    printf '| all |'
    for s in "${STORE_LIST[@]}"; do printf ' %s | %s |' "$(fmt_lat "${W_P50[$s]}")" "$(fmt_lat "${W_P99[$s]}")"; done
    echo
    echo
    echo "| store | tokens/s at 10 apps | tokens/s at $APPS | ratio | token p99 at $APPS | CPU µs/token at $APPS | RSS at $APPS | start-up | RSS after start-up | $APPS writes took | core $SERVER_CPU / $CLIENT_CPU busy in writes | client CPU µs/write | token errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in "${STORE_LIST[@]}"; do
        r=$(ratio "${R_RPS[$s-N]}" "${R_RPS[$s-10]}")
        printf '| %s | %s | %s | %s× | %s | %s | %s MB%s | %s%s | %s MB | %s s | %s%% / %s%% | %s | %s |\n' "$(label "$s")" \
            "${R_RPS[$s-10]}" "${R_RPS[$s-N]}" "$r" "$(fmt_lat "${R_P99[$s-N]}")" "${R_CPU[$s-N]}" \
            "${RSS_N[$s]}" "${RSS_B[$s]:+ (B: ${RSS_B[$s]} MB)}" "$(secs "${START_S[$s]}")" \
            "$([[ ${READY_S[$s]} == n/a ]] || echo " (/readyz ${READY_S[$s]} s)")" \
            "${RSS_RESTART[$s]}" "${W_WALL[$s]}" "${R_CORE0[$s-writes]}" "${R_CORE1[$s-writes]}" "${W_CLIENT_CPU[$s]}" "$((${R_ERR[$s-10]} + ${R_ERR[$s-N]}))"
    done
    echo
    echo "| check (issue 12, at $APPS apps) | value | target | result |"
    echo "|---|---:|---:|---|"
    for s in "${STORE_LIST[@]}"; do
        if [[ $s == sqlite ]]; then
            echo "| $(label "$s"): write p50, last block | $(fmt_lat "${W_LAST_P50[$s]}") | ≤ 2 ms | $(verdict "${W_LAST_P50[$s]}" "<=" 2000) |"
            echo "| $(label "$s"): write p99, last block | $(fmt_lat "${W_LAST_P99[$s]}") | ≤ 10 ms | $(verdict "${W_LAST_P99[$s]}" "<=" 10000) |"
        fi
        r=$(ratio "${R_RPS[$s-N]}" "${R_RPS[$s-10]}")
        echo "| $(label "$s"): tokens/s at $APPS ÷ at 10 | ${r}× | ≥ 0.9× | $(verdict "$r" ">=" 0.9) |"
        echo "| $(label "$s"): RSS | ${RSS_N[$s]} MB | ≤ 100 MB | $(verdict "${RSS_N[$s]}" "<=" 100) |"
        echo "| $(label "$s"): start-up | $(secs "${START_S[$s]}") | ≤ 2 s | $(verdict "${START_S[$s]}" "<=" 2) |"
    done
    if [[ -n ${R_RPS[sqlite-10]:-} ]]; then
        for s in pg pg2; do
            [[ -n ${R_RPS[$s-10]:-} ]] || continue
            r=$(ratio "${R_RPS[$s-10]}" "${R_RPS[sqlite-10]}")
            echo "| $(label "$s") tokens/s ÷ SQLite's (10 apps) | ${r}× | ≥ 0.9× | $(verdict "$r" ">=" 0.9) |"
        done
    fi
    local maxcpu
    maxcpu=$(for s in "${STORE_LIST[@]}"; do echo "${W_CLIENT_CPU[$s]}"; done | sort -g | tail -n1)
    echo "| client CPU per write (worst store) | $maxcpu µs | < 200 µs | $(verdict "$maxcpu" "<" 200) |"
    echo "| keep-alive GET /healthz round trip p50 (client + loopback + server) | $OVH_P50 µs | < 200 µs | $(verdict "$OVH_P50" "<" 200) |"
}

if [[ -n $OUT ]]; then
    report | tee "$OUT"
else
    report
fi
