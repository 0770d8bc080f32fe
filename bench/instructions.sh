#!/usr/bin/env bash
# bench/instructions.sh — user-space instructions per proxied request, repeatable
# whatever else the machine is doing: the sidecar runs under
# `valgrind --tool=callgrind`, its counters are zeroed after a warm-up, then wrk
# drives a fixed-length run through the outbound listener to an nginx upstream.
#
# Needs: valgrind, nginx, wrk, curl, python3 (Debian packages:
#   apt-get install -y valgrind nginx-light wrk curl python3).
# Env: SIDECAR_BIN (default target/release/m2m-sidecar), DURATION (default 5s),
#   CONNECTIONS (wrk's keep-alive connections, default 8): with more than 8, one
#   wrk run opens them all, the counters are zeroed once they are warm (WARMUP,
#   default 2s + 1s per 256 connections) and requests are counted from the
#   sidecar's /metrics, so connection set-up is not in the figure,
#   MODE=outbound (default), MODE=inbound: through an [inbound] listener with a
#   public `/*` rule instead (the request screening and path normalisation, no
#   token check; keys from bench/inbound-keys.py, which needs openssl), or
#   MODE=inbound-cached: an ES256 token checked on every request, verification
#   cache on (the same token each time), or MODE=nginx-proxy: the peer, nginx as
#   the reverse proxy of bench/run.sh (static bearer), under callgrind instead of
#   the sidecar (at most 8 connections: requests are counted by wrk).
# Prints: requests=N instructions=N per_request=N; the callgrind profile is kept
# in the temp dir it names, for `callgrind_annotate --inclusive=yes FILE`.
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SIDECAR_BIN=${SIDECAR_BIN:-$SCRIPT_DIR/../target/release/m2m-sidecar}
DURATION=${DURATION:-5s}
for tool in valgrind callgrind_control callgrind_annotate nginx wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "instructions.sh: $tool is needed" >&2; exit 1; }
done
[ -x "$SIDECAR_BIN" ] || { echo "instructions.sh: build first: cargo build --release" >&2; exit 1; }

TMP=$(mktemp -d /tmp/m2m-instr.XXXXXX)
mkdir -p "$TMP/tmp"
PIDS=()
WRK_HEADER=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

read -r PORT_UPSTREAM PORT_SIDECAR PORT_ADMIN PORT_TOKEN < <(python3 -c '
import socket
s=[socket.socket() for _ in range(4)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')
render() {
    sed -e "s|@PREFIX@|$TMP|g" -e "s|@PORT_UPSTREAM@|$PORT_UPSTREAM|g" \
        -e "s|@PORT_SIDECAR@|$PORT_SIDECAR|g" -e "s|@PORT_ADMIN@|$PORT_ADMIN|g" \
        -e "s|@PORT_TOKEN@|$PORT_TOKEN|g" -e "s|@PORT_PROXY@|0|g" -e "s|@TOKEN@|bench-token|g" "$1" >"$2"
}
render "$SCRIPT_DIR/nginx-upstream.conf.tmpl" "$TMP/nginx-upstream.conf"
case "${MODE:-outbound}" in
    outbound) render "$SCRIPT_DIR/sidecar.toml.tmpl" "$TMP/sidecar.toml"; REQ_PATH=/ ;;
    inbound | inbound-cached)
        python3 "$SCRIPT_DIR/inbound-keys.py" "$TMP" >/dev/null 2>&1 || { echo "inbound-keys.py failed" >&2; exit 1; }
        render "$SCRIPT_DIR/inbound-sidecar.toml.tmpl" "$TMP/sidecar.toml"
        if [ "$MODE" = inbound ]; then
            sed -i -e 's|@RULE_PATH@|/*|' -e 's|@RULE_POLICY@|public = true|' -e 's|@CACHE_LINE@||' "$TMP/sidecar.toml"
        else
            sed -i -e 's|@RULE_PATH@|/orders/*|' -e 's|@RULE_POLICY@|scopes = ["orders:read"]|' -e 's|@CACHE_LINE@||' "$TMP/sidecar.toml"
            WRK_HEADER=(-H "Authorization: Bearer $(cat "$TMP/token-es256.txt")")
        fi
        REQ_PATH=/orders/1 ;;
    nginx-proxy)
        sed -e "s|@PREFIX@|$TMP|g" -e "s|@PORT_UPSTREAM@|$PORT_UPSTREAM|g" \
            -e "s|@PORT_PROXY@|$PORT_SIDECAR|g" -e "s|@TOKEN@|bench-token|g" \
            "$SCRIPT_DIR/nginx-proxy.conf.tmpl" >"$TMP/nginx-proxy.conf"
        REQ_PATH=/ ;;
    *) echo "instructions.sh: MODE is outbound, inbound, inbound-cached or nginx-proxy" >&2; exit 1 ;;
esac

nginx -p "$TMP" -e "$TMP/upstream-error.log" -c "$TMP/nginx-upstream.conf" -g 'daemon off;' & PIDS+=($!)
python3 "$SCRIPT_DIR/token_server.py" "$PORT_TOKEN" bench-token >/dev/null 2>&1 & PIDS+=($!)
URL="http://127.0.0.1:$PORT_SIDECAR$REQ_PATH"
if [ "${MODE:-outbound}" = nginx-proxy ]; then
    valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.out" \
        nginx -p "$TMP" -e "$TMP/proxy-error.log" -c "$TMP/nginx-proxy.conf" \
        -g 'daemon off; master_process off;' 2>"$TMP/sidecar.log" & SC=$!
    PIDS+=("$SC")
    for _ in $(seq 200); do
        curl -sf -o /dev/null "$URL" && break
        sleep 0.3
    done
else
    M2M_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.out" \
        "$SIDECAR_BIN" run --config "$TMP/sidecar.toml" 2>"$TMP/sidecar.log" & SC=$!
    PIDS+=("$SC")
    for _ in $(seq 200); do
        curl -sf "http://127.0.0.1:$PORT_ADMIN/readyz" >/dev/null && break
        sleep 0.3
    done
    curl -sf "http://127.0.0.1:$PORT_ADMIN/readyz" >/dev/null || { echo "sidecar not ready" >&2; exit 1; }
fi
CODE=$(curl -s -o /dev/null -w '%{http_code}' "${WRK_HEADER[@]}" "$URL")
[ "$CODE" = 200 ] || { echo "instructions.sh: $URL answered $CODE, not 200" >&2; exit 1; }
CONNECTIONS=${CONNECTIONS:-8}
# Requests answered so far, from the sidecar's own counter.
answered() {
    curl -sf "http://127.0.0.1:$PORT_ADMIN/metrics" |
        awk '/^m2m_(outbound|inbound)_requests_total[{ ]/{n += $NF} END{printf "%d\n", n}'
}
if [ "$CONNECTIONS" -le 8 ]; then
    timeout 60 wrk -t1 -c"$CONNECTIONS" -d2s "${WRK_HEADER[@]}" "$URL" >/dev/null
    callgrind_control -z "$SC" >/dev/null
    REQUESTS=$(timeout 120 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "${WRK_HEADER[@]}" "$URL" | awk '/requests in/{print $1}')
    callgrind_control -d "$SC" >/dev/null
else
    ulimit -n $((CONNECTIONS * 2 + 512))
    WARMUP=${WARMUP:-$((2 + CONNECTIONS / 256))}
    SECS=${DURATION%s}
    timeout $((WARMUP + SECS + 120)) wrk -t1 -c"$CONNECTIONS" -d"$((WARMUP + SECS + 5))s" --timeout 60s \
        "${WRK_HEADER[@]}" "$URL" >"$TMP/wrk.txt" & WRK=$!
    sleep "$WARMUP"
    OPEN=$(ss -Htn state established "( sport = :$PORT_SIDECAR )" | wc -l)
    callgrind_control -z "$SC" >/dev/null
    BEFORE=$(answered)
    sleep "$SECS"
    callgrind_control -d "$SC" >/dev/null
    AFTER=$(answered)
    REQUESTS=$((AFTER - BEFORE))
    wait "$WRK" || true
    echo "connections open when counting started: $OPEN of $CONNECTIONS" >&2
fi
sleep 1
PROFILE=$(ls -t "$TMP"/callgrind.out.* | head -1)
TOTAL=$(callgrind_annotate "$PROFILE" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
echo "requests=$REQUESTS instructions=$TOTAL per_request=$((TOTAL / REQUESTS)) profile=$PROFILE"
