# shellcheck shell=bash
# bench/lib.sh — helpers shared by bench/run.sh and bench/issuer.sh (sourced, not run).
#
# Defines functions only. The sourcing script provides, before it calls them:
#   log, die          progress / fatal-error printers (each script has its own prefix)
#   TMP               temp dir (cleanup, children_cpu, window_* write scratch files there)
#   PIDS              array of background PIDs that cleanup stops, last started first
#   KEEP_TMP          1 = cleanup keeps $TMP
#   READY_TIMEOUT     seconds, bound for wait_http
#   WARNINGS          array; foreign_load appends to it
#   R_RPS R_P50 R_P99 R_CORE0 R_CORE1 R_WRKPCT   associative arrays keyed by scenario id,
#                     filled by parse_wrk and window_stats
# shellcheck disable=SC2154 # the globals above are assigned by the sourcing script

# --------------------------------------------------------------------------
# Set-up checks
# --------------------------------------------------------------------------
# parse_duration: DURATION accepts "10", "10s", "2m"; wrk wants a unit, timeout wants
# seconds. Normalizes DURATION and sets DURATION_S.
# shellcheck disable=SC2034 # DURATION_S is read by the sourcing script
parse_duration() {
    [[ $DURATION =~ ^[0-9]+$ ]] && DURATION=${DURATION}s
    [[ $DURATION =~ ^([0-9]+)([smh])$ ]] || die "DURATION must look like 10s / 2m (got $DURATION)"
    case ${BASH_REMATCH[2]} in
        s) DURATION_S=${BASH_REMATCH[1]} ;;
        m) DURATION_S=$((BASH_REMATCH[1] * 60)) ;;
        h) DURATION_S=$((BASH_REMATCH[1] * 3600)) ;;
    esac
}

# check_cpus CPU_A CPU_B: at least 2 online CPUs and both cores usable by taskset. Sets ncpu.
check_cpus() {
    ncpu=$(getconf _NPROCESSORS_ONLN)
    ((ncpu >= 2)) || die "need at least 2 CPUs (have $ncpu)"
    if ! taskset -c "$1" true || ! taskset -c "$2" true; then
        die "cannot pin to CPUs $1 and $2 (cpuset restricted?)"
    fi
}

# check_load: sets LOADAVG (1/5/15 min) and warns when the machine is already busy.
check_load() {
    LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
    if awk -v l="${LOADAVG%% *}" 'BEGIN { exit !(l > 0.5) }'; then
        log "WARNING: load average is $LOADAVG; other work on this machine will skew the numbers"
    fi
}

# --------------------------------------------------------------------------
# Process bookkeeping, cleanup
# --------------------------------------------------------------------------
stop_pid() { # stop_pid PID: TERM, wait up to 5 s, then KILL
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not exit on TERM; killing"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# EXIT trap: stop every PID in PIDS (newest first), remove TMP unless KEEP_TMP=1 or failing.
cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[i]}"
    done
    if [[ $KEEP_TMP == 1 || $rc -ne 0 ]]; then
        log "temp dir kept: $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
# N distinct free ports on 127.0.0.1 (all bound at once, then released).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# wait_http URL PID [METHOD]: poll until HTTP 200, bounded by READY_TIMEOUT.
wait_http() {
    local url=$1 pid=$2 method=${3:-GET} deadline=$((SECONDS + READY_TIMEOUT)) code
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 1
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -X "$method" "$url" || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}

# utime+stime (clock ticks) summed over the given PIDs (whole thread groups).
cpu_ticks() {
    local total=0 pid s fld
    for pid in "$@"; do
        s=$(<"/proc/$pid/stat") || die "process $pid vanished"
        s=${s##*) } # drop "pid (comm) " — comm may contain spaces
        read -r -a fld <<<"$s"
        # fld[0] is field 3 (state): utime = field 14 -> fld[11], stime = field 15 -> fld[12]
        total=$((total + fld[11] + fld[12]))
    done
    echo "$total"
}

# CPU seconds (user+sys) of all waited-for children of this shell (bash `times`, 2nd line);
# the delta around a wrk run is wrk's own CPU use.
# Must not run in a subshell (a forked shell has no children of its own): writes to $TMP/times.
children_cpu() {
    times >"$TMP/times"
    awk 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] }
        printf "%.3f", t }' "$TMP/times"
}

# core_snap CPU_A CPU_B: "busy total" jiffies of both CPUs from /proc/stat (busy excludes idle,
# iowait and steal) — shows whether core 0 is saturated and whether foreign load interfered.
core_snap() {
    awk -v a="cpu$1" -v b="cpu$2" '$1 == a || $1 == b {
        busy = $2 + $3 + $4 + $7 + $8; tot = busy + $5 + $6 + $9
        v[$1] = busy " " tot } END { print v[a], v[b] }' /proc/stat
}

rss_mb() { # VmRSS of PID in MB (1 decimal)
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# Latency string from wrk ("512.00us", "1.23ms", "1.02s", "1.5m") -> microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") f = 1; else if (u == "ms") f = 1000; else if (u == "s") f = 1e6;
        else if (u == "m") f = 6e7; else { print "NaN"; exit }
        printf "%.0f", n * f }'
}

fmt_lat() { # microseconds -> "123 µs" / "1.23 ms"
    awk -v us="$1" 'BEGIN { if (us == "NaN") print "n/a";
        else if (us < 1000) printf "%d µs", us; else printf "%.2f ms", us / 1000 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# --------------------------------------------------------------------------
# Pieces of measure()
# --------------------------------------------------------------------------
# window_open CPU_A CPU_B / window_close CPU_A CPU_B: bracket a measured wrk run.
# Snapshot both cores (WIN_K0 / WIN_K1), the CPU time of this shell's waited-for children
# ($TMP/w0 / $TMP/w1, i.e. wrk) and the wall clock (WIN_T0 / WIN_T1).
# Call directly, never in $(...): children_cpu must run in this shell.
window_open() {
    WIN_K0=$(core_snap "$1" "$2")
    children_cpu >"$TMP/w0"
    WIN_T0=$(date +%s.%N)
}

window_close() {
    WIN_T1=$(date +%s.%N)
    children_cpu >"$TMP/w1"
    WIN_K1=$(core_snap "$1" "$2")
}

# window_stats ID: busy % of both cores (R_CORE0, R_CORE1) and wrk's CPU % (R_WRKPCT)
# over the last window.
# shellcheck disable=SC2034,SC2004 # R_* are the sourcing script's associative arrays
window_stats() {
    local id=$1 w0 w1
    read -r "R_CORE0[$id]" "R_CORE1[$id]" < <(echo "$WIN_K0 $WIN_K1" | awk '{
        printf "%.0f %.0f\n", 100 * ($5 - $1) / ($6 - $2), 100 * ($7 - $3) / ($8 - $4) }')
    w0=$(<"$TMP/w0") w1=$(<"$TMP/w1")
    R_WRKPCT[$id]=$(awk -v a="$w0" -v b="$w1" -v t0="$WIN_T0" -v t1="$WIN_T1" \
        'BEGIN { printf "%.0f", 100 * (b - a) / (t1 - t0) }')
}

# parse_wrk ID FILE: req/s, requests and p50/p99 from wrk --latency output; dies when missing
# or when no request completed. Sets WRK_RPS WRK_REQS WRK_P50 WRK_P99 (as wrk prints them)
# and R_RPS R_P50 R_P99 (rounded req/s, µs).
# shellcheck disable=SC2034,SC2004 # R_* are the sourcing script's associative arrays
parse_wrk() {
    local id=$1 out=$2
    WRK_RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    WRK_REQS=$(awk '/requests in/ { print $1 }' "$out")
    WRK_P50=$(awk '$1 == "50%" { print $2 }' "$out")
    WRK_P99=$(awk '$1 == "99%" { print $2 }' "$out")
    [[ -n $WRK_RPS && -n $WRK_REQS && -n $WRK_P50 && -n $WRK_P99 ]] ||
        { cat "$out" >&2; die "cannot parse wrk output ($out)"; }
    ((WRK_REQS > 0)) || { cat "$out" >&2; die "[$id] no requests completed"; }
    R_RPS[$id]=$(printf '%.0f' "$WRK_RPS")
    R_P50[$id]=$(to_us "$WRK_P50")
    R_P99[$id]=$(to_us "$WRK_P99")
}

# foreign_load ID CPU BUSY USED WHO: when core CPU was more than 15 points busier (BUSY %)
# than what WHO used (USED %), something else ran there: log it and add it to WARNINGS.

# Direct children of PID (nginx workers), from /proc.
children_of() {
    local parent=$1 f s fld
    for f in /proc/[0-9]*/stat; do
        { s=$(<"$f"); } 2>/dev/null || continue
        s=${s##*) }
        read -r -a fld <<<"$s"
        if [[ ${fld[1]} == "$parent" ]]; then
            f=${f#/proc/}
            echo "${f%/stat}"
        fi
    done
}

# start_nginx NAME CONF URL CPU: nginx in the foreground (no daemon) pinned to CPU, its
# output in $TMP/logs/NAME*; waits until URL answers. Sets NGX_PID (the master) and
# NGX_PIDS (master and workers). Needs NGINX_BIN.
start_nginx() {
    local name=$1 conf=$2 url=$3 cpu=$4 w
    "$NGINX_BIN" -t -q -p "$TMP" -e "$TMP/logs/$name-startup.log" -c "$conf" >&2 ||
        die "nginx config test failed for $conf"
    taskset -c "$cpu" "$NGINX_BIN" -p "$TMP" -e "$TMP/logs/$name-startup.log" -c "$conf" \
        -g 'daemon off;' >"$TMP/logs/$name.out" 2>&1 &
    NGX_PID=$!
    PIDS+=("$NGX_PID")
    wait_http "$url" "$NGX_PID" ||
        { cat "$TMP/logs/$name.out" "$TMP"/*error.log >&2 2>/dev/null || true; die "$name nginx not ready"; }
    w=$(children_of "$NGX_PID" | tr '\n' ' ')
    [[ -n $w ]] || die "no nginx workers under the $name master $NGX_PID"
    NGX_PIDS="$NGX_PID ${w% }"
}

# measured_run ID OUT "PIDS" CMD...: run CMD (a wrk run that writes OUT) inside a
# measurement window and account it for scenario ID: requests and latencies
# (parse_wrk), errors (R_ERR), CPU µs per request and % of a core for PIDS and
# $UPSTREAM_PIDS (R_CPU R_UPCPU R_PCT R_UPPCT), core usage (window_stats).
measured_run() {
    local id=$1 out=$2 pids=$3
    shift 3
    local c0 c1 u0 u1
    # shellcheck disable=SC2086
    c0=$(cpu_ticks $pids)
    # shellcheck disable=SC2086
    u0=$(cpu_ticks $UPSTREAM_PIDS)
    window_open "$PROXY_CPU" "$WRK_CPU"
    log "[$id] measuring ${DURATION_S}s, $CONNECTIONS connections"
    "$@"
    window_close "$PROXY_CPU" "$WRK_CPU"
    # shellcheck disable=SC2086
    c1=$(cpu_ticks $pids)
    # shellcheck disable=SC2086
    u1=$(cpu_ticks $UPSTREAM_PIDS)
    parse_wrk "$id" "$out" # sets WRK_RPS WRK_REQS WRK_P50 WRK_P99, R_RPS R_P50 R_P99
    # Socket errors (connect/read/write/timeout) + non-2xx/3xx responses.
    # shellcheck disable=SC2004 # R_ERR is an associative array of the caller
    R_ERR[$id]=$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 }
                /Non-2xx or 3xx responses:/ { s += $NF } END { print s + 0 }' "$out")
    # CPU µs per request = Δticks / CLK_TCK * 1e6 / requests ; CPU % over the wall window.
    read -r "R_CPU[$id]" "R_UPCPU[$id]" "R_PCT[$id]" "R_UPPCT[$id]" < <(awk \
        -v c="$((c1 - c0))" -v u="$((u1 - u0))" -v hz="$CLK_TCK" -v n="$WRK_REQS" \
        -v t0="$WIN_T0" -v t1="$WIN_T1" 'BEGIN {
            w = t1 - t0
            printf "%.2f %.2f %.0f %.0f\n", c / hz * 1e6 / n, u / hz * 1e6 / n,
                   100 * c / hz / w, 100 * u / hz / w }')
    window_stats "$id" # sets R_CORE0 R_CORE1 R_WRKPCT
    log "[$id] core busy: cpu$PROXY_CPU ${R_CORE0[$id]}%, cpu$WRK_CPU ${R_CORE1[$id]}% (wrk ${R_WRKPCT[$id]}%)"
}

foreign_load() {
    local id=$1 cpu=$2 busy=$3 used=$4 who=$5
    if ((busy - used > 15)); then
        log "[$id] WARNING: core $cpu was ${busy}% busy but $who used ${used}%: foreign load, numbers skewed"
        WARNINGS+=("($id) core $cpu ${busy}% busy vs ${used}% used by $who: other load interfered")
    fi
}

# install_packages PKG...: install missing Debian packages (root only): apt-get
# install, then `apt-get update` and again if that fails, then with nginx-light
# replaced by nginx (nginx-light does not exist everywhere, e.g. Debian 13).
install_packages() {
    (($#)) || return 0
    [[ $(id -u) -eq 0 ]] || die "missing packages: $* (run as root, or: sudo apt-get install -y $*)"
    log "installing: $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "$@" >&2 && return 0
    apt-get update >&2
    apt-get install -y --no-install-recommends "$@" >&2 && return 0
    local pkgs=("${@/#nginx-light/nginx}")
    apt-get install -y --no-install-recommends "${pkgs[@]}" >&2
}

# start_run NAME: a temp dir $TMP (with tmp/ and logs/), the $PIDS list, and the
# traps that stop every started process on exit or interrupt.
start_run() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    mkdir -p "$TMP/tmp" "$TMP/logs"
    PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
