#!/usr/bin/env bash
# End-to-end tests of the device agent (`edgeauth device run`) against the
# REAL Mosquitto broker (Debian's 2.0.x, started here with a minimal
# mosquitto.conf: mutual TLS, require_certificate, use_identity_as_username;
# no cloud plugin) and chips made by `edgeauth-se init`: the device key is
# generated in the chip, its CSR signed in the chip through the provider, the
# certificate issued by a test PKI made with the openssl CLI and written back
# into the chip with the chain. The agent then proves itself with the SE key
# while mosquitto_sub (its own client certificate) watches the topics.
#
#   bash test_device.sh BUILD_DIR
#       BUILD_DIR holds bin/edgeauth-se, bin/edgeauth, lib/ossl-modules/edgeauth.so
#
# EA_TEST_KEEP=1 keeps the temporary directory for a post-mortem.
# Prints one line per check and a final "N passed, M failed"; exits non-zero
# on any failure. Every command has a time limit, every port is probed
# before use, every background process is stopped by a trap.
set -u

BUILD=${1:?usage: test_device.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd) || exit 1
BIN=$BUILD/bin
SE=$BIN/edgeauth-se
EA=$BIN/edgeauth
MODDIR=$BUILD/lib/ossl-modules
OPENSSL=${OPENSSL:-openssl}
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
LIMIT=90 # seconds for any single command

export OPENSSL_MODULES=$MODDIR
unset EDGEAUTH_SE EDGEAUTH_SE_SEAL_KEY

source "$(dirname "$0")/lib.sh"
setup ea-dev mkhome plain-conf ignore-pipe
SHOW=(tail -25) # a failure shows the end of the output

# runf FUNCTION ARGS...: like run, for a shell function (its commands are
# short; the function itself has no time limit).
runf() {
    "$@" >"$OUT" 2>"$ERR"
    RC=$?
    return $RC
}

# wait_pid PID SECONDS: wait for a background process; its status in $RC
# (124 if it had to be killed).
wait_pid() {
    local i
    for i in $(seq 1 $(($2 * 10))); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$1" 2>/dev/null; then
        kill -KILL "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        RC=124
        return 1
    fi
    wait "$1"
    RC=$?
}

# ---- prerequisites ------------------------------------------------------------------
for f in "$SE" "$EA" "$MODDIR/edgeauth.so"; do
    [ -e "$f" ] || give_up "$f is missing (build first)"
done
for c in "$OPENSSL" "$MOSQUITTO" mosquitto_sub mosquitto_pub jq; do
    command -v "$c" >/dev/null || give_up "$c is not installed (apt-get install mosquitto mosquitto-clients jq)"
done

# ---- a test PKI with the openssl CLI ----------------------------------------------------
# root (P-384) -> OEM intermediate (P-256, pathlen 0) -> server, subscriber and
# device leaves; the profile ea_pki_verify_chain enforces (EC, ecdsa-with-SHA256/384,
# RFC 5280 strict: SKI/AKI, critical basicConstraints and key usage).
PKI=$T/pki
mkdir -p "$PKI"
cat >"$PKI/x.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[inter]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
ORG="/O=Example OEM"
mkpki() {
    local o=("$OPENSSL")
    cd "$PKI" || return 1
    "${o[@]}" req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout root.key \
        -out root.pem -days 30 -sha384 -subj "$ORG/CN=Example OEM Root CA" -config x.cnf -extensions root &&
        "${o[@]}" req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout inter.key \
            -out inter.csr -subj "$ORG/CN=Example OEM Intermediate CA" -config x.cnf &&
        "${o[@]}" x509 -req -in inter.csr -CA root.pem -CAkey root.key -CAcreateserial -days 30 -sha384 \
            -extfile x.cnf -extensions inter -out inter.pem &&
        for leaf in server:server:localhost sub:client:ops-sub; do
            IFS=: read -r name ext cn <<<"$leaf"
            "${o[@]}" req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" \
                -out "$name.csr" -subj "$ORG/CN=$cn" -config x.cnf &&
                "${o[@]}" x509 -req -in "$name.csr" -CA inter.pem -CAkey inter.key -CAcreateserial -days 30 \
                    -sha256 -extfile x.cnf -extensions "$ext" -out "$name.pem" &&
                cat "$name.pem" inter.pem >"$name.chain.pem" || return 1
        done &&
        # A CA the device does not trust (for the unknown_ca case).
        "${o[@]}" req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key \
            -out other.pem -days 30 -sha256 -subj "/O=Other Corp/CN=Other Root" -config x.cnf -extensions root
}
(mkpki) >"$OUT" 2>"$ERR"
RC=$?
expect_ok "test PKI: root P-384 -> intermediate -> server (localhost, 127.0.0.1) and subscriber" || finish

# ---- a chip with the device key, certificate and chain --------------------------------
# make_chip DIR CN [nocert]: key generated in the chip, CSR signed in the chip
# (openssl req through the provider), certificate issued by the test
# intermediate, certificate + intermediate + root written into the chip.
make_chip() {
    local dir=$1 cn=$2 d
    d=$(dirname "$dir")/$(basename "$dir").files
    mkdir -p "$d"
    "$SE" init --state "$dir" >/dev/null &&
        "$EA" --se "emu:$dir" se keygen --id 0xF0000100 --curve P-256 --policy sign,read >/dev/null &&
        "$EA" --se "emu:$dir" se pubkey --id 0xF0000100 --pem >"$d/pub.pem" &&
        EDGEAUTH_SE=emu:$dir "$OPENSSL" req -provider default -provider edgeauth -new -key se05x:0xF0000100 \
            -subj "$ORG/CN=$cn" -config "$PKI/x.cnf" -out "$d/dev.csr" &&
        "$OPENSSL" x509 -req -in "$d/dev.csr" -CA "$PKI/inter.pem" -CAkey "$PKI/inter.key" \
            -CAserial "$PKI/inter.srl" -days 30 -sha256 -extfile "$PKI/x.cnf" -extensions client \
            -out "$d/dev.pem" &&
        # the certificate holds the SE's public key
        "$OPENSSL" x509 -in "$d/dev.pem" -pubkey -noout | cmp -s - "$d/pub.pem" || return 1
    [ "${3:-}" = nocert ] && return 0
    "$OPENSSL" x509 -in "$d/dev.pem" -outform DER -out "$d/dev.der" &&
        "$OPENSSL" x509 -in "$PKI/inter.pem" -outform DER -out "$d/inter.der" &&
        "$OPENSSL" x509 -in "$PKI/root.pem" -outform DER -out "$d/root.der" &&
        "$EA" --se "emu:$dir" se write --id 0xF0000101 --in "$d/dev.der" >/dev/null &&
        "$EA" --se "emu:$dir" se write --id 0x7B000101 --in "$d/inter.der" >/dev/null &&
        "$EA" --se "emu:$dir" se write --id 0x7B000102 --in "$d/root.der" >/dev/null
}
CHIP=$T/chip
runf make_chip "$CHIP" dev-1
expect_ok "chip: key 0xF0000100 made in the SE, CSR signed in the SE, cert + chain written back" || finish
SEURI=emu:$CHIP

# ---- the broker ---------------------------------------------------------------------------
PORT=
BROKER=
BLOG=$T/broker.log
write_conf() {
    cat >"$T/mosquitto.conf" <<EOF
per_listener_settings false
allow_anonymous true
user $(id -un)
log_dest file $BLOG
log_type all
connection_messages true
set_tcp_nodelay true
persistence true
persistence_location $T/mqdb/
listener $1 127.0.0.1
cafile $PKI/root.pem
certfile $PKI/server.chain.pem
keyfile $PKI/server.key
require_certificate true
use_identity_as_username true
acl_file $T/acl
EOF
    # Each device under its own topics; ro-1 may only read (for the PUBACK
    # refusal case); the operators' client everywhere.
    printf 'user dev-1\ntopic readwrite devices/dev-1/#\nuser ro-1\ntopic read devices/ro-1/#\nuser ops-sub\ntopic readwrite devices/#\n' >"$T/acl"
}
# start_broker [PORT]: on PORT, or on a free port found by trying.
start_broker() {
    local want=${1:-} port pid i tries=20
    mkdir -p "$T/mqdb"
    [ -n "$want" ] && tries=50
    for _ in $(seq 1 $tries); do
        port=${want:-$((20000 + RANDOM % 40000))}
        write_conf "$port"
        : >"$BLOG"
        "$MOSQUITTO" -c "$T/mosquitto.conf" >>"$T/broker.stderr" 2>&1 &
        pid=$!
        for i in $(seq 1 50); do
            grep -qE 'mosquitto version .* running' "$BLOG" 2>/dev/null && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null && grep -qE 'mosquitto version .* running' "$BLOG"; then
            BG+=("$pid")
            BROKER=$pid
            PORT=$port
            return 0
        fi
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        sleep 0.2 # a restart on a fixed port may wait for the old socket
    done
    return 1
}
stop_broker() {
    kill -TERM "$BROKER" 2>/dev/null
    wait_pid "$BROKER" 10
    BROKER=
}
if start_broker; then
    ok "mosquitto $("$MOSQUITTO" -h 2>/dev/null | head -1 | grep -oE '[0-9]+\.[0-9]+\.[0-9]+') listening on 127.0.0.1:$PORT (mutual TLS, require_certificate)"
else
    RC=1
    cp "$T/broker.stderr" "$ERR" 2>/dev/null
    bad "mosquitto starts"
    finish
fi
URL=mqtts://127.0.0.1:$PORT

SUBS=0
# start_sub NAME TOPIC [mosquitto_sub args...]: a subscriber with its own
# client certificate, subscribed before this returns. Sets SUB_PID, SUB_OUT.
start_sub() {
    local name=$1 topic=$2
    shift 2
    SUBS=$((SUBS + 1))
    SUB_OUT=$T/sub.$SUBS.out
    mosquitto_sub -h 127.0.0.1 -p "$PORT" --cafile "$PKI/root.pem" --cert "$PKI/sub.chain.pem" \
        --key "$PKI/sub.key" -i "$name" -q 1 -t "$topic" "$@" >"$SUB_OUT" 2>"$SUB_OUT.err" &
    SUB_PID=$!
    BG+=("$SUB_PID")
    wait_for "$BLOG" "Received SUBSCRIBE from $name" 20
}
# mqpub TOPIC MESSAGE [args]: publish with the subscriber's certificate.
mqpub() {
    local topic=$1 msg=$2
    shift 2
    timeout 20 mosquitto_pub -h 127.0.0.1 -p "$PORT" --cafile "$PKI/root.pem" --cert "$PKI/sub.chain.pem" \
        --key "$PKI/sub.key" -q 1 -t "$topic" -m "$msg" "$@"
}

AGENTS=0
# start_agent ARGS...: `edgeauth device run` in the background. Sets AG_PID,
# AG_OUT, AG_ERR.
start_agent() {
    AGENTS=$((AGENTS + 1))
    AG_OUT=$T/agent.$AGENTS.out
    AG_ERR=$T/agent.$AGENTS.err
    "$EA" device run "$@" >"$AG_OUT" 2>"$AG_ERR" &
    AG_PID=$!
    BG+=("$AG_PID")
}
# agent_done NAME SECONDS ERE...: wait for the background agent, then judge
# it like expect_ok (its output becomes $OUT/$ERR).
agent_done() {
    local name=$1 secs=$2
    shift 2
    wait_pid "$AG_PID" "$secs"
    cp "$AG_OUT" "$OUT"
    cp "$AG_ERR" "$ERR"
    expect_ok "$name" "$@"
}
agent_stop() {
    kill -TERM "$AG_PID" 2>/dev/null
}

# ================================ the happy path ======================================
start_sub ops-sub-1 'devices/dev-1/telemetry' -C 3 -W 60 ||
    { RC=1; bad "mosquitto_sub subscribed"; }
run "$EA" device run --se "$SEURI" --broker "$URL" --count 3 --interval 200ms --trace
expect_ok "device run --count 3 --trace: 3 messages acknowledged, exit 0" \
    'published telemetry #3 to devices/dev-1/telemetry \(acknowledged\)' 'agent: 3 published, 3 acknowledged'
cp "$OUT" "$T/trace.txt"
expect_ok "trace: the phases of the app note with their times" \
    'TLS handshake #1 with 127.0.0.1:[0-9]+: full handshake, TLSv1\.3' \
    '1 ClientHello sent +[0-9.]+ ms  random [0-9a-f]{8}\.\.\.: host DRBG .*not the SE' \
    'ServerHello received .* [0-9.]+ ms' \
    'key exchange \(ECDHE on the host\) +[0-9.]+ ms  group ' \
    'server certificate chain verified +[0-9.]+ ms  ea_pki_verify_chain [0-9.]+ ms: ok, IP 127\.0\.0\.1' \
    'CertificateVerify signed in the SE +[0-9.]+ ms  key 0xF0000100, ECDSA with SHA256' \
    'Finished +[0-9.]+ ms' 'handshake total +[0-9.]+ ms' 'TCP connect +[0-9.]+ ms' \
    'MQTT CONNACK [0-9.]+ ms after the handshake' 'messages: >ClientHello@'
sed -n 's/^trace: /    /p' "$T/trace.txt" | head -16
wait_pid "$SUB_PID" 30
n=$(jq -r 'select(.device == "dev-1") | .seq' "$SUB_OUT" 2>/dev/null | sort -n | tr '\n' ' ')
if [ "$RC" -eq 0 ] && [ "$n" = "1 2 3 " ]; then
    ok "mosquitto_sub received seq 1 2 3 on devices/dev-1/telemetry, valid JSON with device/seq/time/uptime_ms"
else
    cp "$SUB_OUT" "$OUT"
    cp "$SUB_OUT.err" "$ERR"
    bad "mosquitto_sub received the 3 messages (got: $n)"
fi
jq -e 'has("time") and has("uptime_ms") and has("temperature_c")' "$SUB_OUT" >/dev/null 2>&1 &&
    ok "telemetry has time, uptime_ms and temperature_c" || { RC=1; bad "telemetry fields"; }
grep -qE "as dev-1 \(p5, c1, k60, u'dev-1'\)" "$BLOG" &&
    ok "broker: client id dev-1, MQTT 5, identity dev-1 from the certificate (the SE key proved it)" ||
    { RC=1; cp "$BLOG" "$OUT"; bad "broker log shows the device's identity"; }

# ================================ TLS 1.2 and 1.3 ======================================
for v in 1.2 1.3; do
    run "$EA" device run --se "$SEURI" --broker "$URL" --count 1 --tls "$v" --trace
    extra='server CertificateVerify checked'
    [ "$v" = 1.2 ] && extra='ServerKeyExchange signature checked'
    expect_ok "--tls $v: full handshake with the SE key" "full handshake, TLSv$v" "$extra" \
        'CertificateVerify signed in the SE' 'published telemetry #1'
done

# ================================ TLS offload ===========================================
# --tls-offload random,ecdhe,prf: the chip's APDU log (headers only) proves the
# SE made the randoms, the ECDHE key and shared secret, and ran the key schedule.
for v in 1.2 1.3; do
    LOG=$T/offload-$v.apdu
    rm -f "$LOG"
    EDGEAUTH_SE_APDU_LOG=$LOG run "$EA" device run --se "$SEURI" --broker "$URL" --count 1 --tls "$v" --trace \
        --tls-offload random,ecdhe,prf
    kdf=TLSPerformPRF
    [ "$v" = 1.3 ] && kdf=HKDF
    expect_ok "--tls $v --tls-offload random,ecdhe,prf: handshake and publish" "full handshake, TLSv$v" \
        'random [0-9a-f]{8}\.\.\.: from the SE' 'key exchange \(ECDHE in the SE\)' 'group secp256r1' \
        'published telemetry #1'
    if grep -q ' TLSGenerateRandom ' "$LOG" && grep -q ' ECDHGenerateSharedSecret ' "$LOG" &&
        grep -q ' WriteECKey ' "$LOG" && grep -q " $kdf " "$LOG"; then
        ok "--tls $v offload: the SE log shows TLSGenerateRandom, WriteECKey, ECDHGenerateSharedSecret, $kdf"
    else
        cp "$LOG" "$OUT"
        bad "--tls $v offload: SE steps missing from the APDU log"
    fi
done
# prf alone keeps the extended master secret (the premaster is on the host).
LOG=$T/offload-prf.apdu
rm -f "$LOG"
EDGEAUTH_SE_APDU_LOG=$LOG run "$EA" device run --se "$SEURI" --broker "$URL" --count 1 --tls 1.2 --tls-offload prf
expect_ok "--tls 1.2 --tls-offload prf: handshake (extended master secret on the host)" 'as dev-1: TLSv1\.2' \
    'published telemetry #1'
assert "--tls-offload prf: the key block came from TLSPerformPRF" grep -q ' TLSPerformPRF ' "$LOG"
run "$EA" device run --se "$SEURI" --broker "$URL" --count 1 --tls-offload random,magic
expect_fail "--tls-offload with an unknown word is refused, naming the words" 'random,ecdhe,prf'
# Without offload the SE signs and nothing else during the handshake.
LOG=$T/plain.apdu
rm -f "$LOG"
EDGEAUTH_SE_APDU_LOG=$LOG run "$EA" device run --se "$SEURI" --broker "$URL" --count 1 --tls 1.3
assert "without offload: no TLSGenerateRandom, ECDH, PRF or HKDF reaches the SE, one ECDSASign" \
    test "$(grep -cE ' (TLSGenerateRandom|ECDHGenerateSharedSecret|TLSPerformPRF|HKDF|GetRandom) ' "$LOG")" = 0 -a \
    "$(grep -c ' ECDSASign ' "$LOG")" = 1

# ================================ the SE050 timing model ==================================
EDGEAUTH_SE_TIMING=se050 run "$EA" device run --se "$SEURI" --broker "$URL" --count 1 --trace
expect_ok "EDGEAUTH_SE_TIMING=se050: the trace shows the part's signing time" 'CertificateVerify signed in the SE'
ms=$(sed -n 's/.*CertificateVerify signed in the SE *\([0-9.]*\) ms.*/\1/p' "$OUT" | head -1)
assert "under the SE050 model the CertificateVerify phase takes at least 45 ms (got ${ms:-?} ms)" \
    awk -v m="${ms:-0}" 'BEGIN { exit !(m >= 45) }'

# ================================ commands =============================================
start_agent --se "$SEURI" --broker "$URL" --interval 300ms
if wait_for "$AG_OUT" 'listening for commands on devices/dev-1/commands' 30; then
    mqpub devices/dev-1/commands 'reboot "now"' -i ops-cmd >/dev/null 2>&1
    wait_for "$AG_OUT" 'command on devices/dev-1/commands: reboot "now"' 20
fi
agent_stop
agent_done "a command published to devices/dev-1/commands is printed; SIGTERM ends the agent with exit 0" 20 \
    'command on devices/dev-1/commands: reboot "now"' 'agent: [0-9]+ published, [0-9]+ acknowledged, 1 commands'

# ================================ resumption ============================================
# The broker drops the agent when another client takes its client id; the
# agent reconnects to the same broker (same ticket keys, same session cache)
# and offers the saved session.
for v in 1.3 1.2; do
    start_agent --se "$SEURI" --broker "$URL" --interval 300ms --retry-min 100ms --tls "$v" --trace
    if wait_for "$AG_OUT" 'published telemetry #1 ' 30; then
        mqpub devices/dev-1/telemetry takeover -i dev-1 >/dev/null 2>&1
        wait_for "$AG_OUT" 'TLS handshake #2 .*resumed session' 20
        wait_for "$AG_OUT" 'connected .*resumed handshake' 20
    fi
    agent_stop
    agent_done "TLS $v: after the broker drops the session, the agent reconnects and resumes" 20 \
        "TLS handshake #2 with .*: resumed session, TLSv$v" 'connected to .* resumed handshake' \
        'connection lost: the broker closed the connection' '\(resumed: no certificates and no CertificateVerify'
done

# ================================ broker restart =========================================
# A persistent subscriber (clean session off, broker persistence on) must see
# every sequence number, including those produced while the broker was down.
start_sub ops-sub-restart 'devices/dev-1/telemetry' -c
RSUB=$SUB_PID
RSUB_OUT=$SUB_OUT
start_agent --se "$SEURI" --broker "$URL" --count 10 --interval 400ms --retry-min 200ms --retry-max 1s --trace
if wait_for "$AG_OUT" 'published telemetry #2 ' 30; then
    stop_broker
    wait_for "$AG_ERR" 'unreachable: Connection refused; retrying in' 20
    sleep 1.5
    start_broker "$PORT" || echo "       (broker did not restart on $PORT)"
fi
agent_done "broker stopped and restarted mid-run: the agent retries with backoff, reconnects, finishes" 60 \
    'published telemetry #10 ' 'agent: 10 published, 10 acknowledged' 'TLS handshake #2'
grep -cE 'unreachable: Connection refused; retrying in [0-9.]+ s' "$AG_ERR" | {
    read -r n
    [ "$n" -ge 2 ]
} && ok "each failed attempt printed with its reason and the backoff delay" ||
    { RC=1; cp "$AG_ERR" "$ERR"; bad "retries printed"; }
for _ in $(seq 1 50); do
    [ "$(jq -r 'select(.device == "dev-1") | .seq' "$RSUB_OUT" 2>/dev/null | sort -un | wc -l)" -ge 10 ] && break
    sleep 0.2
done
kill -TERM "$RSUB" 2>/dev/null
got=$(jq -r 'select(.device == "dev-1") | .seq' "$RSUB_OUT" 2>/dev/null | sort -un | tr '\n' ' ')
if [ "$got" = "1 2 3 4 5 6 7 8 9 10 " ]; then
    ok "no QoS 1 message lost across the restart (subscriber saw seq 1..10)"
else
    RC=1
    cp "$RSUB_OUT" "$OUT"
    bad "subscriber saw every seq across the restart (got: $got)"
fi

# ================================ refusals ===============================================
t0=$(date +%s)
run "$EA" device run --se "$SEURI" --broker "$URL" --count 1 --server-name wrong.example
expect_exit "wrong server name: refused with the reason, not retried" 1 \
    'server certificate refused: name_mismatch' 'expected name wrong\.example'
[ $(($(date +%s) - t0)) -lt 20 ] && ok "... and it fails fast" || { RC=1; bad "refusal took too long"; }
run "$EA" device run --se "$SEURI" --broker "$URL" --count 1 --ca "$PKI/other.pem"
expect_exit "--ca of another CA: the cloud's chain is refused as unknown_ca" 1 'server certificate refused: unknown_ca'
run "$EA" device run --se "$SEURI" --broker "mqtts://localhost:$PORT" --count 1 --trace
expect_ok "--broker mqtts://localhost: checked as DNS name localhost" 'ok, name localhost' 'published telemetry #1'

# The broker refuses the device: a second broker that trusts another CA only.
cp "$T/mosquitto.conf" "$T/mosquitto.other.conf"
OPORT=$(free_port)
sed -i -e "s#^listener .*#listener $OPORT 127.0.0.1#" -e "s#^cafile .*#cafile $PKI/other.pem#" \
    -e "s#^log_dest .*#log_dest file $T/broker.other.log#" -e "s#^persistence_location .*#persistence_location $T/mqdb2/#" \
    "$T/mosquitto.other.conf"
mkdir -p "$T/mqdb2"
"$MOSQUITTO" -c "$T/mosquitto.other.conf" >/dev/null 2>&1 &
OBROKER=$!
BG+=("$OBROKER")
wait_for "$T/broker.other.log" 'mosquitto version .* running' 10
run "$EA" device run --se "$SEURI" --broker "mqtts://127.0.0.1:$OPORT" --count 1 --max-attempts 2 --retry-min 100ms \
    --tls 1.2
expect_exit "a broker that does not trust the device (TLS 1.2): its alert is the reason, retried, then gives up" 1 \
    "the broker refused the TLS connection with alert 'unknown CA'" 'gave up after 2 failed connection attempts'
# In TLS 1.3 the broker decides after our Finished, and its alert may be lost
# in the reset: either way the reason says so.
run "$EA" device run --se "$SEURI" --broker "mqtts://127.0.0.1:$OPORT" --count 1 --max-attempts 1 --tls 1.3
expect_exit "... (TLS 1.3): refused after the handshake, said so" 1 \
    "alert 'unknown CA' after the handshake \(it did not accept our certificate\)|TLS 1\.3 broker that refuses our certificate"
kill -TERM "$OBROKER" 2>/dev/null
wait_pid "$OBROKER" 10

# The broker's ACL lets ro-1 read only: MQTT 5 PUBACK with reason 135.
runf make_chip "$T/ro" ro-1
run "$EA" device run --se "emu:$T/ro" --broker "$URL" --count 1
expect_exit "telemetry refused by the broker (PUBACK reason 135): said, exit 1" 1 \
    'the broker refused telemetry #1 on devices/ro-1/telemetry: Not authorized \(reason 135\)' \
    'the broker refused 1 of 1 telemetry messages'

# ================================ clear errors ===========================================
run "$EA" device run --se "unix:$T/nobody.sock" --broker "$URL" --count 1
expect_exit "SE unreachable: says so" 1 "cannot reach the SE unix:$T/nobody.sock"
runf make_chip "$T/bare" dev-2 nocert
run "$EA" device run --se "emu:$T/bare" --broker "$URL" --count 1
expect_exit "no certificate in the SE: run edgeauth provision first" 1 \
    'no device certificate in the SE .*\(object 0xF0000101\): run `edgeauth provision` first'
# A certificate of another key in 0xF0000101 (the subscriber's).
runf make_chip "$T/wrong" dev-1 nocert
"$OPENSSL" x509 -in "$PKI/sub.pem" -outform DER -out "$T/sub.der" &&
    "$EA" --se "emu:$T/wrong" se write --id 0xF0000101 --in "$T/sub.der" >/dev/null &&
    "$EA" --se "emu:$T/wrong" se write --id 0x7B000101 --in "$T/chip.files/inter.der" >/dev/null &&
    "$EA" --se "emu:$T/wrong" se write --id 0x7B000102 --in "$T/chip.files/root.der" >/dev/null
run "$EA" device run --se "emu:$T/wrong" --broker "$URL" --count 1
expect_exit "a certificate in the SE that is not the key's: refused before connecting" 1 \
    'the device certificate in the SE \(0xF0000101\) does not belong to the key 0xF0000100'
"$SE" init --state "$T/empty" >/dev/null 2>&1
run "$EA" device run --se "emu:$T/empty" --broker "$URL" --count 1
expect_exit "no key in the SE: says which object" 1 'no device key in the SE .*0xF0000100'
run "$EA" device run --se "$SEURI" --broker "$URL" --count 1 --device-id dev-9
expect_exit "--device-id that is not the certificate's CN is refused" 1 'dev-9 does not match .*CN=dev-1'
DEAD=$(free_port) # nobody listens there
run "$EA" device run --se "$SEURI" --broker "mqtts://127.0.0.1:$DEAD" --count 1 --max-attempts 3 --retry-min 100ms
n=$(grep -c "^agent: broker 127\.0\.0\.1:$DEAD unreachable: Connection refused" "$ERR")
r=$(grep -c 'unreachable: Connection refused; retrying in [0-9.]* s' "$ERR")
expect_exit "broker unreachable: every attempt's reason and backoff printed, gives up after --max-attempts" 1 \
    "broker 127\.0\.0\.1:$DEAD unreachable: Connection refused" \
    'gave up after 3 failed connection attempts in a row \(last: broker .* unreachable' &&
    { [ "$n" -eq 3 ] && [ "$r" -eq 2 ] && ok "... 3 attempts, 3 reasons, 2 retries" ||
        { RC=1; bad "3 attempts (saw $n reasons, $r retries)"; }; }
run "$EA" device run --se "$SEURI"
expect_exit "usage: --broker is required (exit 2)" 2 'broker'
run "$EA" device run --se "$SEURI" --broker "mqtt://127.0.0.1:$PORT"
expect_exit "usage: plain mqtt:// refused (exit 2)" 2 'only speaks TLS'
run "$EA" device run --se "$SEURI" --broker "$URL" --tls 1.1
expect_exit "usage: --tls 1.1 refused (exit 2)" 2 'not 1.2 or 1.3'
run "$EA" device --help
expect_ok "device --help" 'edgeauth \[--se URI\] device run --broker'

# ================================ JSON ====================================================
run "$EA" device run --se "$SEURI" --broker "$URL" --count 2 --interval 100ms --trace --json
if [ "$RC" -eq 0 ] && jq -e . "$OUT" >/dev/null 2>&1 &&
    [ "$(jq -r 'select(.event == "published") | .seq' "$OUT" | tr '\n' ' ')" = "1 2 " ] &&
    jq -se 'map(select(.event == "handshake"))[0] |
        .ok and (.phases | map(.phase) | index("se_sign")) != null and .random_from_se == false' \
        "$OUT" >/dev/null; then
    ok "--json: one JSON object per line (handshake phases, published 1 2, summary)"
else
    RC=1
    bad "--json output"
fi

# ================================ over an edgeauth-se serve daemon ========================
SOCK=$T/se.sock
DLOG=$T/daemon.log
"$SE" serve --state "$CHIP" --listen "unix:$SOCK" 2>"$DLOG" &
DAEMON=$!
BG+=("$DAEMON")
if wait_for "$DLOG" 'serving' 20; then
    run "$EA" device run --se "unix:$SOCK" --broker "$URL" --count 2 --interval 100ms --trace
    expect_ok "over edgeauth-se serve --listen unix: (JRCP_v1): certificates read and CertificateVerify signed through the daemon" \
        "SE unix:$SOCK" 'CertificateVerify signed in the SE +[0-9.]+ ms' 'agent: 2 published, 2 acknowledged'
    sed -n 's/^trace: /    /p' "$OUT" | grep -E 'SE|total'

    # The daemon goes away mid-run; a reconnect (forced by a client-id
    # takeover, no resumption so the SE must sign) fails with the SE's
    # reason, is retried, and succeeds once the daemon is back.
    start_agent --se "unix:$SOCK" --broker "$URL" --interval 300ms --retry-min 100ms --retry-max 1s --no-resume
    if wait_for "$AG_OUT" 'published telemetry #1 ' 30; then
        kill -TERM "$DAEMON" 2>/dev/null
        wait_pid "$DAEMON" 10
        mqpub devices/dev-1/telemetry takeover -i dev-1 >/dev/null 2>&1
        wait_for "$AG_ERR" 'TLS handshake failed on our side: edgeauth: .*SE key 0xF0000100' 20
        "$SE" serve --state "$CHIP" --listen "unix:$SOCK" 2>"$DLOG.2" &
        DAEMON=$!
        BG+=("$DAEMON")
        wait_for "$DLOG.2" 'serving' 20
        for _ in $(seq 1 100); do
            [ "$(grep -c '^connected to' "$AG_OUT")" -ge 2 ] && break
            sleep 0.1
        done
    fi
    agent_stop
    agent_done "SE daemon gone mid-run: the handshake fails with the SE's reason, retried until the daemon is back" 20 \
        'TLS handshake failed on our side: edgeauth: .*SE key 0xF0000100.*; retrying in' \
        'agent: [0-9]+ published, [0-9]+ acknowledged, 0 commands; 2 connections \(0 resumed\)'
else
    RC=1
    cp "$DLOG" "$ERR"
    bad "edgeauth-se serve started"
fi
kill -TERM "$DAEMON" 2>/dev/null
wait_pid "$DAEMON" 10

finish
