#!/usr/bin/env bash
# The OEM cloud end to end: the real Mosquitto 2.0 broker (/usr/sbin/mosquitto)
# with edgeauth_cloud.so, driven by `edgeauth cloud` and judged with the real
# mosquitto_pub / mosquitto_sub and the audit file.
#
#   bash test_cloud.sh BUILD_DIR
#       BUILD_DIR holds bin/edgeauth and lib/edgeauth_cloud.so
#
# The test PKI is made with the openssl CLI: a root, two name-constrained
# OEM intermediates (O=Example OEM, "line A" and "line B"), device
# certificates (O=Example OEM, CN=<id>, EKU clientAuth), a server
# certificate, a backend application's certificate, and the rogues: a
# self-signed device, one from another CA, expired, not yet valid, EKU
# serverAuth only, O=Other Corp under the constrained intermediate.
#
# Covered: the accept/refuse matrix, each with the reason in its audit
# event; the topic jail for MQTT 5 (reason code 135) and MQTT 3.1.1
# (disconnected); live revocation from the registry (measured, must be under
# 1 s) and of a whole intermediate by CRL; auto-registration; a broker
# restart with QoS 1 to persistent sessions; and, when this build has
# `edgeauth ca`, a cloud made from an edgeauth CA (server certificate
# issued by it, a device revoked by `edgeauth ca revoke` dropped live).
#
# Every command has a time limit, ports are chosen free, every broker and
# client is stopped by a trap, every file lives under one temporary
# directory. EA_TEST_KEEP=1 keeps it. Prints one line per check and a final
# "N passed, M failed"; exits non-zero on any failure. Installs nothing.
set -u

BUILD=${1:?usage: test_cloud.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd) || exit 1
EA=$BUILD/bin/edgeauth
PLUGIN=$BUILD/lib/edgeauth_cloud.so
MOSQ=${MOSQUITTO:-/usr/sbin/mosquitto}
LIMIT=30 # seconds for any single command

unset EDGEAUTH_CLOUD EDGEAUTH_CLOUD_PLUGIN EDGEAUTH_SE

source "$(dirname "$0")/lib.sh"
setup ea-cloud mkhome ignore-pipe caller-sanitizers

BROKERS=() # pids of the brokers we started (read from the pid file right after each start)
cleanup() {
    stop_bg # background clients
    for pid in "${BROKERS[@]}"; do
        # only if that pid is still a mosquitto (it may have been stopped and reused)
        grep -q '^mosquitto$' "/proc/$pid/comm" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null
    done
    remove_tmp
}

# started CLOUD: remember the broker's pid for the trap (keeps $RC).
started() {
    local rc=$RC pid
    pid=$(cat "$1/mosquitto.pid" 2>/dev/null) && [ -n "$pid" ] && BROKERS+=("$pid")
    RC=$rc
}

# ---- prerequisites --------------------------------------------------------------
for f in "$EA" "$PLUGIN" "$MOSQ"; do
    if [ ! -x "$f" ] && [ ! -f "$f" ]; then
        give_up "$f is missing (build first; Debian: mosquitto)"
    fi
done
for c in openssl mosquitto_pub mosquitto_sub ss stdbuf; do
    if ! command -v "$c" >/dev/null; then
        give_up "$c is not installed (Debian: openssl, mosquitto-clients, iproute2)"
    fi
done

# ---- the test PKI (openssl CLI) ---------------------------------------------------
P=$T/pkiwork
PKI=$T/pki # what `edgeauth cloud init --pki` reads: root.pem, intermediate.pem, crl.pem
mkdir -p "$P" "$PKI"
cat >"$P/ca.cnf" <<'EOF'
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = $ENV::CADIR
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = 3650
default_crl_days = 30
policy = pol_any
preserve = yes
unique_subject = no
copy_extensions = none
[ pol_any ]
organizationName = optional
commonName = supplied
[ v3_root ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ v3_inter ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
nameConstraints = critical,permitted;dirName:nc_dir,permitted;DNS:localhost,permitted;IP:127.0.0.0/255.0.0.0
[ nc_dir ]
O = Example OEM
[ device ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ device_serverauth ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ server ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost,IP:127.0.0.1
EOF
O="Example OEM"
newca() { mkdir -p "$P/$1/newcerts" && : >"$P/$1/index.txt" && echo 1000 >"$P/$1/serial" && echo 1000 >"$P/$1/crlnumber"; }
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
# issue CADIR EXT SUBJ NAME [openssl ca args]: $P/NAME.key + $P/NAME.pem
issue() {
    local cadir=$1 ext=$2 subj=$3 name=$4
    shift 4
    newkey "$P/$name.key" &&
        CADIR=$P/$cadir openssl req -new -config "$P/ca.cnf" -key "$P/$name.key" -subj "$subj" -out "$P/$name.csr" &&
        CADIR=$P/$cadir openssl ca -batch -notext -config "$P/ca.cnf" -extensions "$ext" -in "$P/$name.csr" \
            -out "$P/$name.pem" "$@"
}
gencrl() { CADIR=$P/$1 openssl ca -gencrl -config "$P/ca.cnf" -out "$P/$1.crl"; }
publish_crls() { # the CRLs of every CA in the chains, atomically
    cat "$P/interA.crl" "$P/interB.crl" "$P/root.crl" >"$PKI/crl.pem.tmp" && mv "$PKI/crl.pem.tmp" "$PKI/crl.pem"
}
DEVICES="dev-1 dev-2 dev-3 dev-c dev-q dev-l dev-u dev-r1 dev-r2 dev-r3 dev-r4 dev-r5"
(
    set -e
    newca root && newkey "$P/root/ca.key"
    CADIR=$P/root openssl req -new -x509 -config "$P/ca.cnf" -extensions v3_root -key "$P/root/ca.key" \
        -subj "/O=$O/CN=Example OEM Root" -days 7300 -out "$P/root/ca.pem"
    for line in A B; do
        newca "inter$line"
        issue root v3_inter "/O=$O/CN=Example OEM Line $line" "inter$line"
        mv "$P/inter$line.key" "$P/inter$line/ca.key" && mv "$P/inter$line.pem" "$P/inter$line/ca.pem"
    done
    issue interA server "/O=$O/CN=localhost" server
    for d in $DEVICES; do issue interA device "/O=$O/CN=$d" "$d"; done
    issue interA device "/O=$O/CN=cloud-app" backend
    issue interA device "/O=$O/CN=cloud-app" fake-backend # same name, not the pinned certificate
    issue interB device "/O=$O/CN=dev-b1" dev-b1
    cat "$P/dev-b1.pem" "$P/interB/ca.pem" >"$P/dev-b1.chain.pem"
    # the rogues
    issue interA device "/O=$O/CN=dev-exp" dev-exp -startdate 20200101000000Z -enddate 20210101000000Z
    issue interA device "/O=$O/CN=dev-future" dev-future -startdate 20990101000000Z -enddate 21000101000000Z
    issue interA device_serverauth "/O=$O/CN=dev-eku" dev-eku
    issue interA device "/O=Other Corp/CN=dev-nc" dev-nc
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/dev-self.key" \
        -subj "/O=$O/CN=dev-self" -days 30 -out "$P/dev-self.pem"
    newca other && newkey "$P/other/ca.key"
    CADIR=$P/other openssl req -new -x509 -config "$P/ca.cnf" -extensions v3_root -key "$P/other/ca.key" \
        -subj "/O=$O/CN=Another Root" -days 30 -out "$P/other/ca.pem"
    issue other device "/O=$O/CN=dev-other" dev-other
    # a chip vendor's CA (no CRL), trusted next to the OEM's with --trust-ca
    newca vendor && newkey "$P/vendor/ca.key"
    CADIR=$P/vendor openssl req -new -x509 -config "$P/ca.cnf" -extensions v3_root -key "$P/vendor/ca.key" \
        -subj "/O=Chip Vendor/CN=Chip Vendor CA" -days 30 -out "$P/vendor/ca.pem"
    issue vendor device "/O=Chip Vendor/CN=dev-v1" dev-v1
    for c in root interA interB; do gencrl "$c"; done
    cp "$P/root/ca.pem" "$PKI/root.pem"
    cat "$P/interA/ca.pem" "$P/interB/ca.pem" >"$PKI/intermediate.pem"
    publish_crls
) >"$OUT" 2>"$ERR"
RC=$?
expect_ok "test PKI: root, two constrained intermediates, devices, rogues, CRLs (openssl)" || finish

# A registry line as provisioning writes it.
reg_line() {
    local id=$1 pem=$P/$1.pem serial fpr
    serial=$(openssl x509 -in "$pem" -noout -serial | cut -d= -f2)
    fpr=$(openssl x509 -in "$pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr 'A-F' 'a-f')
    printf '{"device_id":"%s","unique_id":"04005001%08x","serial":"%s","fingerprint":"%s","source":"provisioned","attested":true,"time":"2025-01-01T00:00:00Z"}\n' \
        "$id" "$RANDOM" "$serial" "$fpr"
}

# ---- init, import, start ------------------------------------------------------------
CLOUD=$T/cloud
PORT=$(free_port) || give_up "no free port"
run "$EA" cloud init --dir "$CLOUD" --pki "$PKI" --port "$PORT" --plugin "$PLUGIN" \
    --server-cert "$P/server.pem" --server-key "$P/server.key" --backend-cert "$P/backend.pem"
expect_ok "cloud init writes the broker config" "listener 127.0.0.1:$PORT"
C=$CLOUD/mosquitto.conf
conf_ok=0
for l in "per_listener_settings false" "listener $PORT 127.0.0.1" "require_certificate true" \
    "set_tcp_nodelay true" "tls_version tlsv1.2" "allow_anonymous false" "plugin $PLUGIN" \
    "plugin_opt_crl_file $PKI/crl.pem" "plugin_opt_auto_register false" "persistence true" "cafile $CLOUD/trust-bundle.pem"; do
    grep -qxF "$l" "$C" || { echo "       (no line '$l')"; conf_ok=1; }
done
grep -q '^use_identity_as_username true' "$C" && conf_ok=1
verdict "mosquitto.conf: per_listener_settings false, mTLS on 127.0.0.1, nodelay, TLS>=1.2, plugin options" $conf_ok
[ "$(grep -c 'BEGIN CERTIFICATE' "$CLOUD/server.pem")" -eq 2 ] && [ "$(grep -c 'BEGIN CERTIFICATE' "$CLOUD/trust-bundle.pem")" -eq 3 ] &&
    openssl verify -CAfile "$PKI/root.pem" -untrusted "$CLOUD/server.pem" "$CLOUD/server.pem" >/dev/null 2>&1
verdict "server chain (leaf + its own intermediate) and broker trust bundle (root + both intermediates)" $?
run "$EA" cloud init --dir "$CLOUD" --pki "$PKI" --plugin "$PLUGIN" --server-cert "$P/server.pem" --server-key "$P/server.key"
expect_fail "init refuses to overwrite an existing cloud without --force" "exists"

for d in dev-1 dev-2 dev-3 dev-c dev-q dev-l dev-r1 dev-r2 dev-r3 dev-r4 dev-r5 dev-b1 dev-exp dev-future dev-eku dev-nc dev-v1; do
    reg_line "$d"
done >"$T/registry.jsonl"
echo '' >>"$T/registry.jsonl" # a blank line is fine
run "$EA" cloud import --dir "$CLOUD" "$T/registry.jsonl"
expect_ok "import a registry file (JSON lines from provisioning)" "17 added"
run "$EA" cloud import --dir "$CLOUD" "$T/registry.jsonl"
expect_ok "importing it again changes nothing" "0 added, 0 updated, 17 unchanged"
printf '%s\n' '{"device_id":"dev-x","serial":"01","source":"provisioned"}' '{"device_id":"dev+bad"}' >"$T/bad.jsonl"
run "$EA" cloud import --dir "$CLOUD" "$T/bad.jsonl"
expect_fail "a bad line refuses the whole file" "line 2.*nothing imported"
run "$EA" cloud devices --dir "$CLOUD" --json
expect_ok "devices --json" '"count":17' '"device_id":"dev-1","status":"active","source":"provisioned"'
grep -q '"dev-x"' "$OUT" && bad "the refused file left dev-x behind"

run "$EA" cloud start --dir "$CLOUD"
started "$CLOUD"
expect_ok "cloud start: the broker runs and listens" "cloud started: pid [0-9]+, listening on 127.0.0.1:$PORT"
grep -q 'edgeauth: ready' "$CLOUD/mosquitto.log"
verdict "the plugin loaded in /usr/sbin/mosquitto (log: edgeauth: ready)" $?
run "$EA" cloud status --dir "$CLOUD"
expect_ok "cloud status" "running, pid" "listening" "17 active, 0 revoked"

AUDIT=$CLOUD/audit.jsonl
B=(-h localhost -p "$PORT" --cafile "$PKI/root.pem")
# as ID PEMBASE: the client arguments of a device
as() { echo --cert "$P/$2.pem" --key "$P/$2.key" -i "$1"; }

# mark: remember the audit length; event PATTERN: wait (2 s) for a new line
# after the mark that contains every fixed string given.
MARK=0
mark() { MARK=$(wc -l <"$AUDIT"); }
event() {
    local i s line
    for i in $(seq 1 40); do
        while IFS= read -r line; do
            for s in "$@"; do
                case $line in *"$s"*) ;; *) continue 2 ;; esac
            done
            LAST_EVENT=$line
            return 0
        done < <(tail -n +"$((MARK + 1))" "$AUDIT")
        sleep 0.05
    done
    echo "       (no audit event with: $*)"
    tail -n +"$((MARK + 1))" "$AUDIT" | sed 's/^/       audit: /' | tail -5
    return 1
}

# ---- the accept/refuse matrix -----------------------------------------------------------
mark
run mosquitto_pub "${B[@]}" $(as dev-1 dev-1) -V 5 -q 1 -t devices/dev-1/telemetry -m '{"t":21.5}' -d
expect_ok "valid device: connects (MQTT 5) and publishes QoS 1 to devices/dev-1/telemetry" "CONNACK \(0\)" "PUBACK"
event '"event":"connect","result":"accepted","reason":"ok"' '"client_id":"dev-1"' '"serial":"' '"issuer":"CN=Example OEM Line A,O=Example OEM"' '"subject":"CN=dev-1,O=Example OEM"'
verdict "  audit: connect accepted, with peer, serial, issuer, subject" $?
case $LAST_EVENT in *'"peer":"127.0.0.1"'*) r=0 ;; *) r=1 ;; esac
verdict "  audit: the peer address is recorded" $r
run mosquitto_pub "${B[@]}" --cert "$P/dev-2.pem" --key "$P/dev-2.key" -i dev-2 -V 311 -q 1 -t devices/dev-2/telemetry -m x
expect_ok "valid device: MQTT 3.1.1 too"

# tls_case NAME CERTBASE ID REASON: refused by the broker's TLS layer.
tls_case() {
    local name=$1 pem=$2 id=$3 reason=$4
    mark
    run mosquitto_pub "${B[@]}" --cert "$P/$pem.pem" --key "$P/$pem.key" -i "$id" -q 1 -t "devices/$id/t" -m x
    expect_fail "$name: refused in the TLS handshake" "rror"
    event '"event":"connect","result":"refused","reason":"'"$reason"'"' '"stage":"tls"' '"peer":"127.0.0.1"'
    verdict "  audit: $reason (stage tls)" $?
}
tls_case "self-signed device" dev-self dev-self tls_verify_failed
tls_case "device from another CA" dev-other dev-other tls_verify_failed
tls_case "expired device certificate" dev-exp dev-exp tls_verify_failed
tls_case "not yet valid device certificate" dev-future dev-future tls_verify_failed
tls_case "EKU serverAuth only" dev-eku dev-eku tls_verify_failed
tls_case "name-constraint violation (O=Other Corp under the O=Example OEM intermediate)" dev-nc dev-nc tls_verify_failed
mark
run mosquitto_pub "${B[@]}" -i dev-1 -q 1 -t devices/dev-1/t -m x
expect_fail "no client certificate" "rror"
event '"result":"refused","reason":"no_certificate"' '"stage":"tls"'
verdict "  audit: no_certificate" $?

# mqtt_refused NAME REASON CLIENT-ARGS...: TLS fine, CONNECT refused by the plugin.
mqtt_refused() {
    local name=$1 reason=$2
    shift 2
    mark
    run mosquitto_pub "${B[@]}" "$@" -q 1 -t devices/x/t -m x
    expect_fail "$name: CONNACK not authorised" "[Nn]ot authori[sz]ed"
    event '"event":"connect","result":"refused","reason":"'"$reason"'"' '"stage":"mqtt"' '"serial":"'
    verdict "  audit: $reason" $?
}
mqtt_refused "CN != client id (dev-1's certificate as dev-2)" clientid_mismatch $(as dev-2 dev-1)
mqtt_refused "CN != client id, MQTT 5" clientid_mismatch $(as dev-9 dev-1) -V 5
mqtt_refused "unregistered device, auto-register off" not_registered $(as dev-u dev-u)
mqtt_refused "a device certificate named like the backend, not the pinned one" bad_identity $(as cloud-app fake-backend)
case $LAST_EVENT in *'"detail":"client id'* | *'backend application'*) r=0 ;; *) r=1 ;; esac
verdict "  audit: a detail says why" $r

# revoked leaf, by CRL (the intermediate's CRL lists dev-c): the plugin reloads crl.pem on change
mark
run mosquitto_pub "${B[@]}" $(as dev-c dev-c) -q 1 -t devices/dev-c/t -m x
expect_ok "dev-c connects before its revocation"
CADIR=$P/interA openssl ca -config "$P/ca.cnf" -revoke "$P/dev-c.pem" >"$OUT" 2>"$ERR" && gencrl interA >>"$OUT" 2>>"$ERR" && publish_crls
RC=$?
expect_ok "the line A CA revokes dev-c and publishes its CRL"
event '"event":"trust","result":"reloaded"'
verdict "  the plugin reloads the CRL file on change (no SIGHUP)" $?
mqtt_refused "revoked leaf (CRL)" revoked $(as dev-c dev-c)

# ---- the topic jail ------------------------------------------------------------------------
BK=(--cert "$P/backend.pem" --key "$P/backend.key" -i cloud-app)
# sub_start NAME ARGS...: a subscriber in the background, -d output in $T/NAME.out; waits for its SUBACK.
SUB_PID=
sub_start() {
    local name=$1
    shift
    # no `timeout` in front: $! must be the client itself (conn_alive looks
    # for its pid); the trap stops it.
    stdbuf -oL -eL mosquitto_sub "${B[@]}" "$@" -d >"$T/$name.out" 2>&1 &
    SUB_PID=$!
    BG+=("$SUB_PID")
    for _ in $(seq 1 100); do
        grep -q 'received SUBACK' "$T/$name.out" && return 0
        kill -0 "$SUB_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
sub_start backend-tele "${BK[@]}" -V 5 -q 1 -t 'devices/+/telemetry' -t 'devices/dev-2/#'
verdict "backend application subscribes to devices/+/telemetry (not jailed to one device)" $?
BT_PID=$SUB_PID

mark
run mosquitto_pub "${B[@]}" $(as dev-1 dev-1) -V 5 -q 1 -t devices/dev-2/telemetry -m 'spoof-v5' -d
expect_ok "MQTT 5 publish outside the jail: PUBACK reason 135" "RC:135|Not authorized"
event '"event":"acl","result":"denied","reason":"acl_denied"' '"access":"publish"' '"topic":"devices/dev-2/telemetry"'
verdict "  audit: acl_denied (publish, denied)" $?
mark
run mosquitto_sub "${B[@]}" $(as dev-1 dev-1) -V 5 -t 'devices/+/telemetry' -E -d
cat "$OUT" "$ERR" 2>/dev/null | grep -qE 'SUBACK|denied' && cat "$OUT" "$ERR" 2>/dev/null | grep -qiE 'denied|135|0x87'
verdict "MQTT 5 subscribe to devices/+/telemetry: refused (135)" $?
event '"event":"acl","result":"denied"' '"access":"subscribe"' '"topic":"devices/+/telemetry"'
verdict "  audit: acl_denied (subscribe)" $?
run mosquitto_sub "${B[@]}" $(as dev-1 dev-1) -V 5 -t '#' -E -d
cat "$OUT" "$ERR" 2>/dev/null | grep -qiE 'denied|135|0x87'
verdict "MQTT 5 subscribe to #: refused" $?

mark
run mosquitto_pub "${B[@]}" $(as dev-1 dev-1) -V 311 -q 1 -t devices/dev-2/telemetry -m 'spoof-v311'
expect_fail "MQTT 3.1.1 publish outside the jail: disconnected, no false PUBACK" "connection was lost|lost"
event '"event":"acl","result":"disconnected","reason":"acl_denied"' '"protocol":"mqtt311"' '"access":"publish"'
verdict "  audit: acl_denied (publish, disconnected)" $?
grep -q 'dev-1 disconnected, not authorised' "$CLOUD/mosquitto.log"
verdict "  broker log: client disconnected, not authorised" $?
mark
# mosquitto_sub reconnects after a lost connection: give it 3 s, then judge.
timeout 3 mosquitto_sub "${B[@]}" $(as dev-1 dev-1) -V 311 -t 'devices/dev-2/#' -d >"$OUT" 2>"$ERR"
RC=$?
grep -q 'sending SUBSCRIBE' "$OUT" && ! grep -q 'received SUBACK' "$OUT"
verdict "MQTT 3.1.1 subscribe outside the jail: disconnected, never a SUBACK" $?
event '"event":"acl","result":"disconnected"' '"access":"subscribe"' '"topic":"devices/dev-2/#"'
verdict "  audit: acl_denied (subscribe, disconnected)" $?

run mosquitto_pub "${B[@]}" $(as dev-2 dev-2) -V 5 -q 1 -t devices/dev-2/telemetry -m 'genuine'
sleep 0.3
! grep -q 'spoof' "$T/backend-tele.out" && grep -q 'genuine' "$T/backend-tele.out"
verdict "no spoofed message was delivered; the genuine one was" $?

sub_start dev1-cmd $(as dev-1 dev-1) -V 5 -q 1 -t 'devices/dev-1/#'
verdict "device subscribes inside its jail with a wildcard (devices/dev-1/#)" $?
D1_PID=$SUB_PID
run mosquitto_pub "${B[@]}" "${BK[@]}" -V 5 -q 1 -t devices/dev-1/commands -m 'reboot'
expect_ok "backend publishes a command to devices/dev-1/commands"
for _ in $(seq 1 40); do grep -q 'reboot' "$T/dev1-cmd.out" && break; sleep 0.05; done
grep -q 'reboot' "$T/dev1-cmd.out"
verdict "  the device receives it" $?
run mosquitto_pub "${B[@]}" "${BK[@]}" -V 5 -q 1 -t other/topic -m x -d
expect_ok "backend outside devices/: refused too (135)" "RC:135|Not authorized"
kill "$D1_PID" "$BT_PID" 2>/dev/null # (mosquitto_sub reconnects forever: one client per id at a time)

# ---- live revocation, measured ------------------------------------------------------------------
# conn_alive PID: does the process still hold a TCP connection to the broker?
conn_alive() { ss -Htnp state established "( dport = :$PORT )" 2>/dev/null | grep -q "pid=$1,"; }
# Two clocks: the whole command (the sanitized CLI alone takes ~0.3 s to
# start on a busy machine), and the requirement proper — from the moment the
# registry says "revoked" (the CLI writes its audit line right after the
# commit) to the moment the TCP connection is gone: under 1 s.
LAT=()
SIDE=()
for d in dev-r1 dev-r2 dev-r3 dev-r4 dev-r5; do
    if ! sub_start "$d" $(as "$d" "$d") -V 5 -q 1 -t "devices/$d/commands" || ! conn_alive "$SUB_PID"; then
        bad "$d subscribed before its revocation"
        continue
    fi
    mark
    t0=$(now_ms)
    # In the background: the drop is watched while the CLI still runs its exit
    # (the sanitizer's leak check alone takes a while).
    timeout "$LIMIT" "$EA" cloud revoke --dir "$CLOUD" "$d" >"$OUT" 2>"$ERR" &
    rv=$!
    while conn_alive "$SUB_PID" && [ $(($(now_ms) - t0)) -lt 5000 ]; do :; done
    t1=$(now_ms)
    wait "$rv"
    RC=$?
    tc=$(grep -F '"event":"revoke","result":"revoked","device_id":"'"$d"'"' "$AUDIT" | head -1 | cut -d'"' -f4)
    tc=$([ -n "$tc" ] && date -d "$tc" +%s%3N || echo "$t0")
    ms=$((t1 - tc))
    LAT+=("$((t1 - t0))")
    SIDE+=("$ms")
    if [ "$RC" -eq 0 ] && [ "$ms" -lt 1000 ] && [ $((t1 - t0)) -lt 3000 ] && sane; then
        ok "live revocation of $d: TCP connection dropped $ms ms after the registry commit ($((t1 - t0)) ms after \`edgeauth cloud revoke\` started)"
    else
        bad "live revocation of $d: $ms ms after the commit, $((t1 - t0)) ms in all"
    fi
done
if [ ${#LAT[@]} -gt 0 ]; then
    echo "# live revocation, registry commit -> TCP connection gone (ms): $(printf '%s\n' "${SIDE[@]}" | sort -n | tr '\n' ' ')"
    echo "# live revocation, \`edgeauth cloud revoke\` started -> TCP connection gone (ms): $(printf '%s\n' "${LAT[@]}" | sort -n | tr '\n' ' ')"
fi
event '"event":"kick","result":"dropped","reason":"revoked"' '"device_id":"dev-r5"'
verdict "  audit: kick (revoked) for the live session" $?
grep -q '"event":"revoke","result":"revoked","device_id":"dev-r5","by":"edgeauth cloud revoke"' "$AUDIT"
verdict "  audit: the operator's revoke is recorded" $?
grep -q 'Received DISCONNECT (152)' "$T/dev-r5.out"
verdict "  the MQTT 5 client got DISCONNECT 0x98 (administrative action)" $?
mqtt_refused "revoked leaf (registry): cannot reconnect" revoked $(as dev-r5 dev-r5)
run "$EA" cloud revoke --dir "$CLOUD" dev-r5
expect_ok "revoking again is harmless" "already revoked"
run "$EA" cloud revoke --dir "$CLOUD" nobody
expect_fail "revoking an unknown id fails" "not registered"

# ---- revoked intermediate: the whole branch, live --------------------------------------------------
sub_start dev-b1 --cert "$P/dev-b1.chain.pem" --key "$P/dev-b1.key" -i dev-b1 -V 311 -q 1 -t devices/dev-b1/commands
verdict "dev-b1 (line B, sends its chain) connects and subscribes" $?
B1_PID=$SUB_PID
mark
CADIR=$P/root openssl ca -config "$P/ca.cnf" -revoke "$P/interB/ca.pem" >"$OUT" 2>"$ERR" && gencrl root >>"$OUT" 2>>"$ERR" &&
    cat "$P/interA.crl" "$P/interB.crl" "$P/root.crl" >"$PKI/crl.pem.tmp"
RC=$?
t0=$(now_ms)
mv "$PKI/crl.pem.tmp" "$PKI/crl.pem" # published: the file changes now
expect_ok "the root revokes the line B intermediate (root CRL published)"
while conn_alive "$B1_PID" && [ $(($(now_ms) - t0)) -lt 5000 ]; do :; done
ms=$(($(now_ms) - t0))
[ "$ms" -lt 2000 ]
verdict "revoked intermediate: its live device dropped $ms ms after the CRL was published" $?
event '"event":"kick","result":"dropped","reason":"revoked"' '"device_id":"dev-b1"' '"issuer":"CN=Example OEM Line B'
verdict "  audit: kick (revoked) naming the line B issuer" $?
mark
run mosquitto_pub "${B[@]}" --cert "$P/dev-b1.chain.pem" --key "$P/dev-b1.key" -i dev-b1 -q 1 -t devices/dev-b1/t -m x
expect_fail "revoked intermediate: its devices cannot reconnect" "[Nn]ot authori[sz]ed"
event '"result":"refused","reason":"revoked"' '"client_id":"dev-b1"'
verdict "  audit: revoked" $?
run mosquitto_pub "${B[@]}" $(as dev-3 dev-3) -q 1 -t devices/dev-3/t -m x
expect_ok "line A devices are not affected"

# ---- broker restart: persistent sessions, QoS 1 ------------------------------------------------------
sub_start dev-q-1 $(as dev-q dev-q) -V 311 -c -q 1 -t devices/dev-q/commands
verdict "dev-q opens a persistent session (clean session false, QoS 1)" $?
kill "$SUB_PID" 2>/dev/null
wait "$SUB_PID" 2>/dev/null
sub_start dev-l $(as dev-l dev-l) -V 311 -c -q 1 -t devices/dev-l/commands
verdict "dev-l stays connected through the restart (persistent session)" $?
L_PID=$SUB_PID
pubs_ok=0
for i in 1 2 3 4 5; do
    timeout "$LIMIT" mosquitto_pub "${B[@]}" "${BK[@]}" -V 5 -q 1 -t devices/dev-q/commands -m "q$i" >/dev/null 2>&1 || pubs_ok=1
done
verdict "backend publishes q1..q5 (QoS 1) while dev-q is offline" $pubs_ok
run "$EA" cloud stop --dir "$CLOUD"
expect_ok "cloud stop" "cloud stopped"
run "$EA" cloud status --dir "$CLOUD"
[ "$RC" -eq 3 ] && grep -q 'not running' "$OUT"
verdict "cloud status says not running (exit 3)" $?
run "$EA" cloud start --dir "$CLOUD"
started "$CLOUD"
expect_ok "cloud start again" "cloud started"
for i in 6 7 8 9 10; do
    timeout "$LIMIT" mosquitto_pub "${B[@]}" "${BK[@]}" -V 5 -q 1 -t devices/dev-q/commands -m "q$i" >/dev/null 2>&1 || pubs_ok=1
done
verdict "backend publishes q6..q10 after the restart" $pubs_ok
run mosquitto_sub "${B[@]}" $(as dev-q dev-q) -V 311 -c -q 1 -t devices/dev-q/commands -C 10 -W 20
got=$(sort -V "$OUT" | tr '\n' ' ')
[ "$RC" -eq 0 ] && [ "$got" = "q1 q2 q3 q4 q5 q6 q7 q8 q9 q10 " ]
verdict "dev-q reconnects and receives all 10 QoS 1 messages, none lost (got: $got)" $?
# dev-l: its client reconnects by itself; then messages reach it
for _ in $(seq 1 100); do
    [ "$(grep -c 'received CONNACK' "$T/dev-l.out")" -ge 2 ] && break
    sleep 0.1
done
[ "$(grep -c 'received CONNACK' "$T/dev-l.out")" -ge 2 ]
verdict "dev-l reconnected after the restart" $?
for i in 1 2 3; do
    timeout "$LIMIT" mosquitto_pub "${B[@]}" "${BK[@]}" -V 5 -q 1 -t devices/dev-l/commands -m "l$i" >/dev/null 2>&1
done
for _ in $(seq 1 40); do grep -q 'l3' "$T/dev-l.out" && break; sleep 0.05; done
grep -q 'l1' "$T/dev-l.out" && grep -q 'l2' "$T/dev-l.out" && grep -q 'l3' "$T/dev-l.out"
verdict "  and receives the messages published after it" $?
kill "$L_PID" 2>/dev/null
mark
run mosquitto_pub "${B[@]}" $(as dev-r1 dev-r1) -q 1 -t devices/dev-r1/t -m x
expect_fail "a revocation survives the restart" "[Nn]ot authori[sz]ed"

# ---- last_seen, devices, status --------------------------------------------------------------------------
sleep 1.2 # last_seen is written in batches, once a second
run "$EA" cloud devices --dir "$CLOUD"
expect_ok "cloud devices: table" "DEVICE +STATUS +SOURCE" "dev-r1 +revoked" "dev-1 +active +provisioned"
awk '$1 == "dev-1" && $5 != "-" && $6 != "-" { f = 1 } END { exit !f }' "$OUT"
verdict "  dev-1 has first and last seen" $?
awk '$1 == "dev-u" { f = 1 } END { exit f }' "$OUT"
verdict "  the refused unregistered device was not added" $?

# ---- auto-registration -------------------------------------------------------------------------------------
tls_case "a chip vendor's device before its CA is trusted" dev-v1 dev-v1 tls_verify_failed
run "$EA" cloud stop --dir "$CLOUD"
expect_ok "stop for reconfiguration"
run "$EA" cloud init --dir "$CLOUD" --pki "$PKI" --port "$PORT" --plugin "$PLUGIN" --force --auto-register \
    --server-cert "$P/server.pem" --server-key "$P/server.key" --backend-cert "$P/backend.pem" --trust-ca "$P/vendor/ca.pem"
expect_ok "init --force --auto-register --trust-ca VENDOR keeps the registry" "auto-register +on" "anchors.pem"
run "$EA" cloud start --dir "$CLOUD"
started "$CLOUD"
expect_ok "start with auto-register"
mark
run mosquitto_pub "${B[@]}" $(as dev-u dev-u) -V 5 -q 1 -t devices/dev-u/telemetry -m hello
expect_ok "unregistered device with a valid chain, auto-register on: accepted"
event '"event":"connect","result":"accepted"' '"client_id":"dev-u"' '"auto_registered":true'
verdict "  audit: accepted, auto_registered" $?
run "$EA" cloud devices --dir "$CLOUD" --json
expect_ok "  the registry now holds dev-u, source auto-registered" '"device_id":"dev-u","status":"active","source":"auto-registered"'
mqtt_refused "auto-register does not bring back a revoked device" revoked $(as dev-r2 dev-r2)
mark
run mosquitto_pub "${B[@]}" $(as dev-v1 dev-v1) -V 5 -q 1 -t devices/dev-v1/telemetry -m hi
expect_ok "a chip vendor's device (its CA trusted, no CRL for it) connects while the OEM's CRLs are enforced"
event '"event":"connect","result":"accepted"' '"client_id":"dev-v1"' '"issuer":"CN=Chip Vendor CA,O=Chip Vendor"'
verdict "  audit: accepted, issuer the vendor CA" $?
tls_case "auto-register does not admit another CA" dev-other dev-other tls_verify_failed

# ---- SIGHUP: the broker re-runs the plugin's check for every live client -------------------------------------
sub_start dev-3-hup $(as dev-3 dev-3) -V 5 -q 1 -t devices/dev-3/commands
verdict "dev-3 connected before the SIGHUP" $?
D3_PID=$SUB_PID
sub_start backend-hup "${BK[@]}" -V 5 -q 1 -t 'devices/+/telemetry'
verdict "the backend application connected before the SIGHUP" $?
BH_PID=$SUB_PID
mark
: >"$CLOUD/backends.pem" # the backend application's certificate is withdrawn
kill -HUP "$(cat "$CLOUD/mosquitto.pid")"
t0=$(now_ms)
while conn_alive "$BH_PID" && [ $(($(now_ms) - t0)) -lt 5000 ]; do sleep 0.01; done
! conn_alive "$BH_PID"
verdict "SIGHUP after withdrawing the backend certificate: its session is dropped ($(($(now_ms) - t0)) ms)" $?
event '"event":"kick","result":"dropped","reason":"not_registered"' '"client_id":"cloud-app"'
verdict "  audit: kick, the re-check's reason (no longer a backend, not a registered device)" $?
sleep 0.3
conn_alive "$D3_PID" && ! tail -n +"$((MARK + 1))" "$AUDIT" | grep -q '"client_id":"dev-3"'
verdict "  dev-3 passes the re-check silently and stays connected" $?
run mosquitto_pub "${B[@]}" $(as dev-2 dev-2) -V 5 -q 1 -t devices/dev-2/telemetry -m after-hup
expect_ok "  new connections are still judged after the reload"
kill "$D3_PID" 2>/dev/null

# ---- every connection attempt has its event ---------------------------------------------------------------
attempts=$(grep -c '"event":"connect"' "$AUDIT")
bad_lines=$(grep -vc '^{"time":"[0-9T:.-]*Z","event":"[a-z_]*".*}$' "$AUDIT")
[ "$bad_lines" -eq 0 ] && [ "$attempts" -ge 40 ]
verdict "audit file: $attempts connect events, every line one JSON object" $?
grep -q '"event":"disconnect","result":"closed"' "$AUDIT" && grep -q '"duration_ms":' "$AUDIT"
verdict "audit file: session ends recorded with their duration" $?

run "$EA" cloud stop --dir "$CLOUD"
expect_ok "cloud stop" "cloud stopped"
grep '"event":"stop","result":"ok"' "$AUDIT" | grep -qE 'verdict cache: [1-9][0-9]* hits'
verdict "the plugin's cleanup ran (stop event); reconnects hit the verdict cache" $?
cp "$C" "$T/conf.good"
sed -i 's/^plugin_opt_auto_register .*/plugin_opt_crlfile x/' "$C"
run "$EA" cloud start --dir "$CLOUD"
started "$CLOUD"
expect_fail "a misspelt plugin option stops the broker from starting (fail closed)" "unknown option plugin_opt_crlfile"
cp "$T/conf.good" "$C"

# ---- a cloud made from an edgeauth CA (when this build has `edgeauth ca`) -----------------------------------
if "$EA" ca --help >/dev/null 2>&1; then
    EPKI=$T/epki
    ECLOUD=$T/ecloud
    EPORT=$(free_port)
    run "$EA" ca init --dir "$EPKI" --org "Example OEM"
    expect_ok "edgeauth ca init"
    newkey "$P/dev-e1.key" 2>/dev/null && openssl req -new -key "$P/dev-e1.key" -subj "/O=Example OEM/CN=dev-e1" -out "$P/dev-e1.csr" 2>/dev/null
    run "$EA" ca issue --dir "$EPKI" --csr "$P/dev-e1.csr" --out "$P/dev-e1.pem"
    expect_ok "edgeauth ca issue (a file-key device, so mosquitto_pub can be it)"
    run "$EA" cloud init --dir "$ECLOUD" --pki "$EPKI" --port "$EPORT" --plugin "$PLUGIN"
    expect_ok "cloud init on an edgeauth CA: the broker certificate is issued by the CA" "crl.pem \(watched\)"
    reg_line dev-e1 >"$T/e.jsonl"
    run "$EA" cloud import --dir "$ECLOUD" "$T/e.jsonl"
    expect_ok "import dev-e1" "1 added"
    run "$EA" cloud start --dir "$ECLOUD"
    started "$ECLOUD"
    expect_ok "start that cloud"
    EB=(-h localhost -p "$EPORT" --cafile "$EPKI/root.pem")
    stdbuf -oL mosquitto_sub "${EB[@]}" --cert "$P/dev-e1.pem" --key "$P/dev-e1.key" -i dev-e1 -V 5 -t 'devices/dev-e1/#' -d >"$T/e1.out" 2>&1 &
    E1=$!
    BG+=("$E1")
    for _ in $(seq 1 100); do grep -q 'received SUBACK' "$T/e1.out" && break; sleep 0.05; done
    grep -q 'received SUBACK' "$T/e1.out"
    verdict "dev-e1 connects through the server certificate edgeauth ca issued (hostname localhost verified)" $?
    t0=$(now_ms)
    run "$EA" ca revoke --dir "$EPKI" dev-e1
    expect_ok "edgeauth ca revoke dev-e1 (rewrites crl.pem)"
    for _ in $(seq 1 100); do kill -0 "$E1" 2>/dev/null || break; sleep 0.02; done
    ! kill -0 "$E1" 2>/dev/null
    verdict "  its live session is dropped ($(($(now_ms) - t0)) ms incl. the CA command)" $?
    # provisioning: chips with the key inside, a signed manifest, the registry file
    if "$EA" provision --help >/dev/null 2>&1; then
        run "$EA" provision --batch 2 --se-dir "$T/chips" --ca "$EPKI" --manifest "$T/m.json"
        expect_ok "edgeauth provision --batch 2 (emulated chips, keys inside, signed manifest)"
        run "$EA" cloud import --dir "$ECLOUD" --manifest "$T/m.json" --signer "$EPKI/root.pem"
        expect_fail "a manifest with the wrong signer is refused" "."
        sed 's/"signature":"[A-Za-z0-9_-]/"signature":"A/' "$T/m.json" >"$T/m-bad.json"
        if ! cmp -s "$T/m.json" "$T/m-bad.json"; then
            run "$EA" cloud import --dir "$ECLOUD" --manifest "$T/m-bad.json" --signer "$EPKI/manifest.pem"
            expect_fail "a manifest with a damaged signature is refused" "."
        fi
        run "$EA" cloud devices --dir "$ECLOUD" --json
        expect_ok "  nothing was imported from them" '"count":1'
        run "$EA" cloud import --dir "$ECLOUD" --manifest "$T/m.json" --signer "$EPKI/manifest.pem"
        expect_ok "import the signed manifest (signature and chains checked)" "2 added"
        run "$EA" cloud import --dir "$ECLOUD" "$EPKI/registry.jsonl"
        expect_ok "the provisioning registry file names the same certificates" "0 added, 0 updated, 2 unchanged"
        run "$EA" cloud devices --dir "$ECLOUD" --json
        expect_ok "  they keep source manifest" '"device_id":"dev-0001","status":"active","source":"manifest"'
        if "$EA" device run --help >/dev/null 2>&1; then
            mark0=$MARK
            AUDIT_SAVE=$AUDIT
            AUDIT=$ECLOUD/audit.jsonl
            mark
            run "$EA" device run --se "emu:$T/chips/chip-0001" --broker "mqtts://localhost:$EPORT" --count 2 --interval 100ms
            expect_ok "the device agent, key in the (emulated) SE, connects and publishes" "2 acknowledged"
            event '"event":"connect","result":"accepted"' '"client_id":"dev-0001"'
            verdict "  audit: accepted" $?
            AUDIT=$AUDIT_SAVE
            MARK=$mark0
        fi
    fi
    run "$EA" cloud stop --dir "$ECLOUD"
    expect_ok "stop that cloud"
else
    echo "# (no \`edgeauth ca\` in this build: the edgeauth-CA cloud is not tested)"
fi

grep -h 'AddressSanitizer\|runtime error' "$T"/*.out 2>/dev/null | head -3
finish
