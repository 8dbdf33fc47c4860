#!/usr/bin/env bash
# What does edgeauth_cloud.so cost the broker? Mosquitto 2.0.11 with the
# configuration `edgeauth cloud init` writes (A: plugin) against the same
# listener and certificates with `use_identity_as_username true` and no
# plugin (B), in the same run:
#   1. mutual-TLS MQTT 3.1.1 connects/s (TCP + TLS with client certificate +
#      CONNECT/CONNACK + DISCONNECT + close), TLS 1.3 and 1.2, full and
#      resumed handshakes, one client process (and 2 in parallel), rounds
#      interleaved over brokers and cells, medians, ratio A/B;
#   2. broker VmRSS per idle connected device with NDEV (1000) connections
#      (keepalive 600), each broker freshly started.
#
#   usage: bash scripts/bench_cloud.sh [BUILD_DIR]          (default: build)
#   env:   NDEV=1000 RATE_DEV=100 N=200 ROUNDS=7 PROCS="1 2"
#          BENCH_CLOUD_DIR=BUILD_DIR/bench-cloud (PKI + device keys are kept
#          there and reused by the next run; brokers' dirs are recreated)
# Only 127.0.0.1; both brokers are stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
[[ $BUILD = /* ]] || BUILD=$ROOT/$BUILD
BIN=$BUILD/bin
EA=$BIN/edgeauth
BENCH=$BIN/bench_cloud_connect
MOSQ=${MOSQUITTO:-/usr/sbin/mosquitto}
WORK=${BENCH_CLOUD_DIR:-$BUILD/bench-cloud}
NDEV=${NDEV:-1000}
RATE_DEV=${RATE_DEV:-100}
N=${N:-200}
ROUNDS=${ROUNDS:-7}
PROCS=${PROCS:-"1 2"}

for f in "$EA" "$BENCH" "$MOSQ"; do
    [[ -x $f ]] || { echo "bench_cloud: $f missing (cmake --build $BUILD)" >&2; exit 1; }
done
(( RATE_DEV <= NDEV )) || { echo "bench_cloud: RATE_DEV > NDEV" >&2; exit 1; }

# 1,000 connections: the client and both brokers need the descriptors.
hard=$(ulimit -Hn)
want=$(( NDEV * 2 + 256 ))
if [[ $hard != unlimited ]] && (( hard < want )); then
    echo "bench_cloud: ulimit -Hn is $hard, need $want" >&2; exit 1
fi
ulimit -n "$want"

mkdir -p "$WORK"
PKI=$WORK/pki
DEV=$WORK/devices
A=$WORK/cloud-A
B=$WORK/cloud-B

# --- PKI and devices (kept between runs) ----------------------------------------
if [[ ! -f $PKI/ca.json ]]; then
    rm -rf "$PKI" "$DEV"
    "$EA" ca init --dir "$PKI" --org "Example OEM" >/dev/null
fi
mkdir -p "$DEV"
have=0
while (( have < NDEV )) && [[ -f $DEV/$(printf 'dev-%04d' $((have + 1))).pem ]]; do have=$((have + 1)); done
if (( have < NDEV )); then
    echo "creating devices $((have + 1))..$NDEV (file keys, edgeauth ca issue)..." >&2
    t0=$SECONDS
    for ((i = have + 1; i <= NDEV; i++)); do
        id=$(printf 'dev-%04d' "$i")
        openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$DEV/$id.key" \
            -subj "/CN=$id" -out "$DEV/$id.csr" 2>/dev/null
        out=$("$EA" ca issue --dir "$PKI" --csr "$DEV/$id.csr" --out "$DEV/$id.pem.tmp" --json)
        serial=$(sed -n 's/.*"serial":"\([0-9A-Fa-f]*\)".*/\1/p' <<<"$out")
        fpr=$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' <<<"$out")
        [[ -n $serial && -n $fpr ]] || { echo "bench_cloud: unexpected ca issue output: $out" >&2; exit 1; }
        printf '{"device_id":"%s","serial":"%s","fingerprint":"%s","source":"provisioned"}\n' \
            "$id" "$serial" "$fpr" >"$DEV/$id.json"
        mv "$DEV/$id.pem.tmp" "$DEV/$id.pem"
        rm -f "$DEV/$id.csr"
    done
    echo "  done in $((SECONDS - t0)) s" >&2
fi

# --- brokers ---------------------------------------------------------------------
free_port() {
    local p used
    used=$(ss -Htln | awk '{print $4}' | sed 's/.*://')
    for _ in $(seq 1 200); do
        p=$(( 20000 + RANDOM % 30000 ))
        grep -qx "$p" <<<"$used" || { [[ $p != "${PA:-}" ]] && { echo "$p"; return; }; }
    done
    echo "bench_cloud: no free port" >&2; exit 1
}

pid_of() { cat "$1/mosquitto.pid" 2>/dev/null || true; }

stop_brokers() {
    local p
    if [[ -f $A/mosquitto.conf ]]; then "$EA" cloud stop --dir "$A" >/dev/null 2>&1 || true; fi
    p=$(pid_of "$B")
    if [[ -n $p ]] && [[ $(cat /proc/"$p"/comm 2>/dev/null) == mosquitto ]]; then
        kill "$p" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    fi
    rm -f "$B/mosquitto.pid"
}
trap stop_brokers EXIT
trap 'exit 130' INT TERM

listening() { ss -Htln "sport = :$1" | grep -q .; }

start_brokers() {
    local p
    "$EA" cloud start --dir "$A" >/dev/null
    rm -f "$B/mosquitto.pid"
    "$MOSQ" -c "$B/mosquitto.conf" -d
    for _ in $(seq 1 100); do
        p=$(pid_of "$B")
        [[ -n $p ]] && listening "$PB" && break
        sleep 0.05
    done
    listening "$PA" && listening "$PB" || { echo "bench_cloud: brokers not listening" >&2; tail "$B/mosquitto.log" >&2; exit 1; }
}

rm -rf "$A" "$B"
PA=$(free_port)
PB=$(free_port)
[[ $PA != "$PB" ]] || PB=$(free_port)
"$EA" cloud init --dir "$A" --pki "$PKI" --port "$PA" --plugin "$BUILD/lib/edgeauth_cloud.so" >/dev/null
cat "$DEV"/dev-*.json >"$WORK/registry.jsonl"
"$EA" cloud import --dir "$A" "$WORK/registry.jsonl" >/dev/null
# both: no connection limit (the default, made explicit), listener option
echo "max_connections -1" >>"$A/mosquitto.conf"
grep -q '^listener .* 127\.0\.0\.1$' "$A/mosquitto.conf" || { echo "bench_cloud: unexpected listener line" >&2; exit 1; }
# B = A without the plugin, with use_identity_as_username, its own port/pid/db/log
mkdir -p "$B"
sed -e '/^plugin/d' -e "/^\(pid_file\|persistence_location\|log_dest\) /s|$A/|$B/|" -e "s|^listener $PA |listener $PB |" "$A/mosquitto.conf" >"$B/mosquitto.conf"
echo "use_identity_as_username true" >>"$B/mosquitto.conf"
grep -q "^listener $PB " "$B/mosquitto.conf" && ! grep -q '^plugin' "$B/mosquitto.conf" && ! grep -q "^\(pid_file\|persistence_location\|log_dest\) .*$A/" "$B/mosquitto.conf" \
    || { echo "bench_cloud: could not derive config B" >&2; exit 1; }

CA=$PKI/root.pem
start_brokers
echo "A (plugin) pid $(pid_of "$A") port $PA; B (use_identity_as_username) pid $(pid_of "$B") port $PB" >&2
echo "$(nproc) CPUs, $(openssl version), $("$MOSQ" -h 2>/dev/null | head -1)" >&2

# --- 1. connect rates ------------------------------------------------------------
declare -A R RES RAWS
for P in $PROCS; do
    echo "rate: $ROUNDS rounds x 8 cells x $N connects x $P client(s), $RATE_DEV devices round robin..." >&2
    out=$("$BENCH" rate --ca "$CA" --devdir "$DEV" --devices "$RATE_DEV" --port "A=$PA" --port "B=$PB" \
        -n "$N" -r "$ROUNDS" -P "$P")
    while read -r _ br ver kind _ med res rounds; do
        R[$br,$ver,$kind,$P]=${med#median=}
        RES[$br,$ver,$kind,$P]=${res#resumed=}
        RAWS[$br,$ver,$kind,$P]=${rounds#rounds=}
    done <<<"$out"
done

# --- 2. memory per idle connection (fresh brokers) --------------------------------
stop_brokers
start_brokers
declare -A M
for br in A B; do
    if [[ $br == A ]]; then port=$PA; pid=$(pid_of "$A"); else port=$PB; pid=$(pid_of "$B"); fi
    echo "mem: $NDEV idle connections to $br..." >&2
    M[$br]=$("$BENCH" mem --ca "$CA" --devdir "$DEV" --devices "$NDEV" --port "$br=$port" --pid "$pid" --settle 3)
done
accepted=$(grep -c '"result":"accepted"' "$A/audit.jsonl" || true)
refused=$(grep -c '"result":"refused"' "$A/audit.jsonl" || true)
stop_brokers

# --- table -------------------------------------------------------------------------
echo
echo "Mutual-TLS MQTT 3.1.1 connects/s (TCP+TLS+CONNECT/CONNACK+DISCONNECT+close), median of $ROUNDS interleaved rounds x $N connects"
echo "A = edgeauth cloud init config + edgeauth_cloud.so; B = same listener, use_identity_as_username, no plugin"
printf '%-8s %-7s %-8s %10s %10s %8s %9s   %s\n' clients TLS handshake A B A/B resumed "rounds A | B"
for P in $PROCS; do
    for ver in TLS1.3 TLS1.2; do
        for kind in full resumed; do
            a=${R[A,$ver,$kind,$P]:-nan}; b=${R[B,$ver,$kind,$P]:-nan}
            ratio=$(awk -v a="$a" -v b="$b" 'BEGIN{ if (b > 0) printf "%.3f", a / b; else print "n/a" }')
            printf '%-8s %-7s %-8s %10s %10s %8s %4s/%-4s   %s | %s\n' "$P" "$ver" "$kind" "$a" "$b" "$ratio" \
                "${RES[A,$ver,$kind,$P]:-?}" "${RES[B,$ver,$kind,$P]:-?}" "${RAWS[A,$ver,$kind,$P]:-}" "${RAWS[B,$ver,$kind,$P]:-}"
        done
    done
done
echo "(resumed = share of handshakes the broker actually resumed, A/B)"
echo
echo "Broker memory with $NDEV idle TLS 1.3 + MQTT connections (keepalive 600), fresh broker, VmRSS"
printf '%-4s %14s %14s %14s %10s %16s\n' broker "before KiB" "after KiB" "KiB/conn" "open s" "ms/first connect"
for br in A B; do
    line=${M[$br]}
    get() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$line"; }
    printf '%-4s %14s %14s %14s %10s %16s\n' "$br" "$(get rss_before_kib)" "$(get rss_after_kib)" "$(get kib_per_conn)" \
        "$(get open_s)" "$(awk -v s="$(get open_s)" -v n="$NDEV" 'BEGIN{printf "%.2f", s * 1000 / n}')"
done
echo "(open s: the $NDEV sequential connects of devices the fresh broker has not seen: A pays the full chain"
echo " verification, no verdict-cache hit, and the first_seen registry update)"
echo
echo "plugin audit (A, whole run): $accepted accepted, $refused refused connects"
