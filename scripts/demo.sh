#!/usr/bin/env bash
# edgeauth demo: figure 1 of NXP AN12400, end to end, on this machine.
#
# A vendor and an OEM PKI; secure elements (edgeauth-se daemons); two devices
# provisioned by the OEM's factory flow and one pre-provisioned by the chip
# vendor and onboarded from its manifest; the OEM cloud (Mosquitto + our
# plugin); three devices publishing telemetry over mutual TLS with their key
# in the SE; two rogue devices refused; one device revoked while connected.
#
#   usage: scripts/demo.sh [BUILD_DIR]     (make demo runs it)
# Exits non-zero as soon as a step does not behave as described.
set -uo pipefail

BUILD=$(cd "${1:-build}" && pwd)
BIN=$BUILD/bin
W=$(mktemp -d "${TMPDIR:-/tmp}/edgeauth-demo-XXXXXX")
export OPENSSL_MODULES=$BUILD/lib/ossl-modules
unset EDGEAUTH_SE

PIDS=()
CLOUD_UP=0
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    [ "$CLOUD_UP" = 1 ] && "$BIN/edgeauth" cloud stop --dir "$W/cloud" >/dev/null 2>&1
    wait 2>/dev/null
}
trap cleanup EXIT

# ---- narration and bookkeeping ----------------------------------------------
STEPS=()
RESULTS=()
T0=$(date +%s%N)
ms() { echo $(( ($(date +%s%N) - T0) / 1000000 )); }
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
ok() { STEPS+=("$1"); RESULTS+=("ok   ${2:-}"); printf '   \033[32mok\033[0m  %s\n' "$1"; }
fail() {
    STEPS+=("$1"); RESULTS+=("FAIL ${2:-}")
    printf '   \033[31mFAIL\033[0m %s\n' "$1"
    [ -n "${2:-}" ] && printf '        %s\n' "$2"
    summary
    exit 1
}
summary() {
    say "Summary ($(( $(ms) / 1000 )).$(( $(ms) % 1000 / 100 )) s, work directory $W)"
    for i in "${!STEPS[@]}"; do printf '   %-62s %s\n' "${STEPS[$i]}" "${RESULTS[$i]}"; done
}
run() { # run CMD... ; output to $W/last.log
    "$@" >"$W/last.log" 2>&1
}

free_port() {
    local p
    for p in $(seq 18883 18999); do
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    echo 18883
}

wait_for_file() { # PATH SECONDS
    local i
    for i in $(seq 1 $(( $2 * 20 ))); do [ -e "$1" ] && return 0; sleep 0.05; done
    return 1
}

serve_chip() { # DIR SOCKET
    "$BIN/edgeauth-se" serve --state "$1" --listen "unix:$2" 2>>"$W/se.log" &
    PIDS+=($!)
    wait_for_file "$2" 10
}

ORG="Example OEM"
VENDOR=$W/vendor
PKI=$W/pki
CLOUD=$W/cloud
PORT=$(free_port)

printf 'edgeauth demo: device-to-cloud authentication with keys that never leave a secure element\n'
printf 'work directory %s\n' "$W"

# ---- 1. the SE vendor and its chips -------------------------------------------
say "1. An SE vendor makes three chips. Each has a unique id and an attestation key certified by the vendor's CA; the third also gets a vendor-made device identity (key 0xF0000100 + certificate). Chip a's Platform SCP03 keys are exported once, for the host that will drive it."
for c in a b; do
    extra=()
    [ "$c" = a ] && extra=(--scp03-keys-out "$W/chips/a.scp03")
    run "$BIN/edgeauth-se" init --state "$W/chips/$c" --vendor-ca "$VENDOR" "${extra[@]}" ||
        fail "chip $c made" "$(tail -1 "$W/last.log")"
done
SE_A="unix:$W/a.sock?scp03=$W/chips/a.scp03" # chip a, always through Platform SCP03
run "$BIN/edgeauth-se" init --state "$W/vchips/c" --vendor-ca "$VENDOR" --preprovision || fail "chip c made" "$(tail -1 "$W/last.log")"
ok "3 chips made; vendor CA in vendor/vendor-ca.pem"

# ---- 2. the OEM PKI ---------------------------------------------------------------
say "2. The OEM creates its PKI: a root CA (P-384) and a name-constrained intermediate (P-256, pathlen 0) for its factory line."
run "$BIN/edgeauth" ca init --dir "$PKI" --org "$ORG" || fail "OEM PKI created" "$(tail -1 "$W/last.log")"
ok "root CA and OEM intermediate (O=$ORG)"

# ---- 3. factory provisioning --------------------------------------------------------
say "3. The factory station provisions chips a and b: key generated inside the SE, proven by attestation, CSR signed by the SE through the OpenSSL provider, certificate and chain written back into the SE."
serve_chip "$W/chips/a" "$W/a.sock" || fail "chip a served" "no socket"
A_PID=${PIDS[-1]}
serve_chip "$W/chips/b" "$W/b.sock" || fail "chip b served" "no socket"
i=1
for c in a b; do
    id=dev-000$i
    se="unix:$W/$c.sock"
    [ "$c" = a ] && se=$SE_A
    run "$BIN/edgeauth" --se "$se" provision --ca "$PKI" --device-id "$id" \
        --vendor-ca "$VENDOR/vendor-ca.pem" || fail "$id provisioned" "$(tail -2 "$W/last.log" | head -1)"
    note "$(grep -m1 -E 'serial' "$W/last.log" | sed 's/^ *//')"
    ok "$id provisioned on chip $c (attestation checked)"
    i=$((i + 1))
done
run "$BIN/edgeauth" --se "$SE_A" se scp03 require || fail "chip a locked to SCP03" "$(tail -1 "$W/last.log")"
ok "chip a was provisioned through Platform SCP03 and now refuses every plain command"
if run "$BIN/edgeauth" --se "unix:$W/a.sock" se info; then fail "plain command to chip a refused" "it answered"; fi
note "$(tail -1 "$W/last.log" | cut -c1-150)"
ok "a plain GetVersion to chip a is refused (SW 6982)"

# ---- 4. onboarding a vendor-provisioned chip ------------------------------------------
say "4. Chip c came pre-provisioned by the vendor. The vendor ships a signed manifest; the OEM checks the manifest, the chip's attestation and its vendor certificate, and registers it."
run "$BIN/edgeauth" onboard --make-vendor-manifest --se-dir "$W/vchips" --vendor-ca-dir "$VENDOR" \
    --out "$W/vendor-manifest.json" || fail "vendor manifest made" "$(tail -1 "$W/last.log")"
run "$BIN/edgeauth" onboard --vendor-manifest "$W/vendor-manifest.json" --vendor-ca "$VENDOR/vendor-ca.pem" \
    --se-dir "$W/vchips" --ca "$PKI" || fail "vendor chip onboarded" "$(tail -1 "$W/last.log")"
VID=$(grep -o '"device_id" *: *"[^"]*"' "$PKI/registry.jsonl" | tail -1 | sed 's/.*"\([^"]*\)"$/\1/')
[ -n "$VID" ] || fail "vendor chip onboarded" "no registry entry"
ok "vendor device $VID onboarded (manifest, attestation and certificate checked)"
serve_chip "$W/vchips/c" "$W/c.sock" || fail "chip c served" "no socket"

# ---- 5. the cloud ------------------------------------------------------------------------
say "5. The OEM cloud: Mosquitto with mutual TLS and the edgeauth plugin (identity from the certificate, per-device topic jail, registry, live revocation), listening on 127.0.0.1:$PORT."
run "$BIN/edgeauth" cloud init --dir "$CLOUD" --pki "$PKI" --port "$PORT" --trust-ca "$VENDOR/vendor-ca.pem" \
    || fail "cloud configured" "$(tail -1 "$W/last.log")"
run "$BIN/edgeauth" cloud import --dir "$CLOUD" "$PKI/registry.jsonl" || fail "registry imported" "$(tail -1 "$W/last.log")"
run "$BIN/edgeauth" cloud start --dir "$CLOUD" || fail "broker started" "$(tail -3 "$W/last.log")"
CLOUD_UP=1
ok "broker up; 3 devices registered"
AUDIT=$CLOUD/audit.jsonl

# ---- 6. devices online -----------------------------------------------------------------------
say "6. The three devices connect and publish telemetry. Each signs its TLS CertificateVerify in its SE; here is the handshake of dev-0001 (its SE link runs inside Platform SCP03):"
BROKER=mqtts://127.0.0.1:$PORT
"$BIN/edgeauth" --se "$SE_A" device run --broker "$BROKER" --count 3 --interval 200ms --trace \
    >"$W/dev-0001.log" 2>&1 &
D1=$!
"$BIN/edgeauth" --se "unix:$W/c.sock" device run --broker "$BROKER" --count 3 --interval 200ms \
    --ca "$PKI/root.pem" >"$W/$VID.log" 2>&1 &
D3=$!
"$BIN/edgeauth" --se "unix:$W/b.sock" device run --broker "$BROKER" --count 0 --interval 200ms \
    --retry-min 200ms --retry-max 400ms --max-attempts 3 >"$W/dev-0002.log" 2>&1 &
D2=$!
PIDS+=("$D2")
wait "$D1" || fail "dev-0001 published 3 messages" "$(tail -2 "$W/dev-0001.log" | head -1)"
grep -E '^trace:' "$W/dev-0001.log" | head -12 | sed 's/^/   /'
ok "dev-0001 published 3 messages over mutual TLS"
wait "$D3" || fail "$VID published 3 messages" "$(tail -2 "$W/$VID.log" | head -1)"
ok "vendor device published 3 messages"

# ---- 7. rogue devices ---------------------------------------------------------------------------
say "7. Two rogue devices try to connect: one with a self-signed certificate, one with a certificate from another CA."
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/rogue1.key" \
    -out "$W/rogue1.pem" -subj "/O=$ORG/CN=rogue-1" -days 2 >/dev/null 2>&1
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/other-ca.key" \
    -out "$W/other-ca.pem" -subj "/O=Other Corp/CN=Other CA" -days 2 >/dev/null 2>&1
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/rogue2.key" \
    -out "$W/rogue2.csr" -subj "/O=$ORG/CN=rogue-2" >/dev/null 2>&1
printf 'extendedKeyUsage=clientAuth\n' >"$W/rogue2.ext"
openssl x509 -req -in "$W/rogue2.csr" -CA "$W/other-ca.pem" -CAkey "$W/other-ca.key" -CAcreateserial \
    -out "$W/rogue2.pem" -days 2 -extfile "$W/rogue2.ext" >/dev/null 2>&1
for r in 1 2; do
    before=$(wc -l <"$AUDIT" 2>/dev/null || echo 0)
    if timeout 10 mosquitto_pub -h 127.0.0.1 -p "$PORT" --cafile "$PKI/root.pem" --cert "$W/rogue$r.pem" \
        --key "$W/rogue$r.key" -i "rogue-$r" -t "devices/rogue-$r/telemetry" -m hi -q 1 >"$W/rogue$r.log" 2>&1; then
        fail "rogue-$r refused" "the broker accepted it"
    fi
    sleep 0.2
    ev=$(tail -n +"$((before + 1))" "$AUDIT" 2>/dev/null | grep '"result":"refused"' | tail -1)
    reason=$(printf '%s' "$ev" | sed -n 's/.*"reason":"\([^"]*\)".*/\1/p')
    detail=$(printf '%s' "$ev" | sed -n 's/.*"detail":"\([^"]*\)".*/\1/p')
    [ -n "$reason" ] || fail "rogue-$r refused with an audit event" "no refusal event in $AUDIT"
    ok "rogue-$r refused: $reason" "($detail)"
done

# ---- 8. live revocation -------------------------------------------------------------------------
say "8. dev-0002 is connected. The OEM revokes it; the cloud drops the live session within a second and refuses it from then on."
for i in $(seq 1 100); do grep -q -E 'connected|CONNACK|published|seq' "$W/dev-0002.log" && break; sleep 0.1; done
grep -q -E 'connected|CONNACK|published|seq' "$W/dev-0002.log" || fail "dev-0002 online" "$(tail -1 "$W/dev-0002.log")"
R0=$(date +%s%N)
run "$BIN/edgeauth" cloud revoke --dir "$CLOUD" dev-0002 || fail "dev-0002 revoked" "$(tail -1 "$W/last.log")"
lines0=$(wc -l <"$W/dev-0002.log")
dropped=""
for i in $(seq 1 100); do
    if tail -n +"$((lines0 + 1))" "$W/dev-0002.log" | grep -q -i -E 'lost|disconnect|closed|refused'; then
        dropped=$(( ($(date +%s%N) - R0) / 1000000 )); break
    fi
    sleep 0.02
done
[ -n "$dropped" ] || fail "dev-0002 dropped after revocation" "still connected after 2 s"
ok "dev-0002 dropped ${dropped} ms after the revocation"
for i in $(seq 1 100); do kill -0 "$D2" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$D2" 2>/dev/null; then fail "dev-0002 cannot reconnect" "still running"; fi
ok "dev-0002 cannot reconnect (gave up after 3 refused attempts)"

# ---- 9. the app note's handshake on a real part -----------------------------------------------------
say "9. The app note's handshake, priced for a real SE050: chip a restarts under the SE050 timing model (NXP's measured times per command), and dev-0001 connects with the client random, ECDHE and the key schedule done in the SE (--tls-offload random,ecdhe,prf)."
kill "$A_PID" 2>/dev/null
wait "$A_PID" 2>/dev/null
rm -f "$W/a.sock"
"$BIN/edgeauth-se" serve --state "$W/chips/a" --listen "unix:$W/a.sock" --timing se050 \
    --apdu-log "$W/a-apdu.log" 2>>"$W/se.log" &
PIDS+=($!)
wait_for_file "$W/a.sock" 10 || fail "chip a served with --timing se050" "no socket"
run "$BIN/edgeauth" --se "$SE_A" device run --broker "$BROKER" --count 1 --trace --tls-offload random,ecdhe,prf ||
    fail "dev-0001 connected with the full offload" "$(tail -2 "$W/last.log" | head -1)"
grep -E '^trace:' "$W/last.log" | head -12 | sed 's/^/   /'
note "APDUs the chip saw for this connection (from its --apdu-log; headers only, never data):"
awk '{print $8, $7}' "$W/a-apdu.log" | sort | uniq -c | sort -rn | head -20 |
    awk '{printf "     %3d x %-30s %s\n", $1, $3, $2}'
ok "dev-0001 published over TLS with random, ECDHE and PRF in the SE; times as an SE050 would take"

# ---- 10. shutdown ----------------------------------------------------------------------------------
say "10. Shutting down: the cloud, then the secure elements."
"$BIN/edgeauth" cloud devices --dir "$CLOUD" 2>/dev/null | sed 's/^/   /' | head -8
run "$BIN/edgeauth" cloud stop --dir "$CLOUD" || fail "broker stopped" "$(tail -1 "$W/last.log")"
CLOUD_UP=0
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
wait 2>/dev/null
PIDS=()
ok "everything stopped cleanly"

summary
printf '\nEverything behaved as described. Logs and state stay in %s\n' "$W"
