#!/usr/bin/env bash
# TLS offload (issue 8) end to end: the real `openssl s_client` with the
# edgeauth provider against a real `openssl s_server -Verify 1` (file keys),
# TLS 1.2 ECDHE-ECDSA and TLS 1.3, with each offload part off and on. The
# provider's APDU log (EDGEAUTH_APDU_LOG: header and status word of every
# APDU, never data) shows what the SE did in each handshake:
#   off     exactly one ECDSASign besides the key's loading (3 ReadObject)
#   random  TLSGenerateRandom/GetRandom (the SE is the DRBG, [random] in openssl.cnf)
#   ecdhe   a transient WriteECKey, ECDHGenerateSharedSecret, DeleteSecureObject
#   prf     TLSPerformPRF (TLS 1.2 master secret + key block), HKDF (TLS 1.3)
# Plus the negative cases: no offload algorithm is offered when `offload` is
# absent, an unknown word fails the provider's init, and the extended master
# secret with the premaster held in the SE fails with a clear message.
#
#   bash test_offload.sh BUILD_DIR
set -u

BUILD=${1:?usage: test_offload.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd) || exit 1
SE=$BUILD/bin/edgeauth-se
EA=$BUILD/bin/edgeauth
MODDIR=$BUILD/lib/ossl-modules
OPENSSL=${OPENSSL:-openssl}
LIMIT=60

export OPENSSL_MODULES=$MODDIR
unset EDGEAUTH_SE EDGEAUTH_SE_SEAL_KEY EDGEAUTH_APDU_LOG

source "$(dirname "$0")/lib.sh"
setup ea-offload mkhome plain-conf ignore-pipe
LOG=$T/apdu.log
SHOW=(head -15)
# A failure shows the APDU log of the handshake too.
show_also() { [ -s "$LOG" ] && awk '{print "       apdu: " $0}' "$LOG" | head -40; }

# count NAME: APDUs named NAME in the log.
count() { awk -v n="$1" '$7 == n' "$LOG" | wc -l; }
# others: APDUs in the log other than ReadObject (the key's loading).
# Transient objects made (WRITE with the transient bit, INS 81) and deleted.
made() { awk '$3 == "81"' "$LOG" | wc -l; }
balanced() { [ "$(made)" -ge 1 ] && [ "$(made)" -eq "$(count DeleteSecureObject)" ]; }
reads() { awk '$7 ~ /^Read(Object|Type|Size)$/' "$LOG" | wc -l; }
others() { awk '$7 !~ /^Read(Object|Type|Size)$/' "$LOG" | wc -l; }

for f in "$SE" "$EA" "$MODDIR/edgeauth.so"; do
    [ -e "$f" ] || give_up "$f is missing (build first)"
done
command -v "$OPENSSL" >/dev/null || give_up "no openssl CLI"

# ---- PKI, chip, server ------------------------------------------------------------------
PKI=$T/pki
mkdir -p "$PKI"
(
    cd "$PKI" &&
        "$OPENSSL" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
            -subj /CN=test-ca -days 2 &&
        "$OPENSSL" req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr \
            -subj /CN=localhost &&
        "$OPENSSL" x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out srv.pem
) >"$OUT" 2>"$ERR"
RC=$?
[ $RC -eq 0 ] && ok "test CA and server certificate" || bad "test CA and server certificate"

CHIP=$T/chip
run "$SE" init --state "$CHIP" && sane && ok "edgeauth-se init" || bad "edgeauth-se init"
export EDGEAUTH_SE=emu:$CHIP
run "$EA" se keygen --id 0xF0000100 --curve P-256 --policy sign,read && ok "SE key 0xF0000100" ||
    bad "SE key 0xF0000100"
run "$OPENSSL" req -provider default -provider edgeauth -new -key se05x:0xF0000100 -subj /CN=dev-1 \
    -out "$T/dev.csr" &&
    run "$OPENSSL" x509 -req -in "$T/dev.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAserial "$PKI/ca.srl" \
        -days 2 -out "$T/dev.pem" && ok "device certificate for the SE key" || bad "device certificate"

serve_on_free_port "$T/server.log" '^ACCEPT' "$OPENSSL" s_server -accept 127.0.0.1:@PORT@ -cert "$PKI/srv.pem" \
    -key "$PKI/srv.key" -CAfile "$PKI/ca.pem" -Verify 1 -verify_return_error -www || give_up "s_server did not start"
PORT=$SERVER_PORT
ok "openssl s_server -www -Verify 1 on 127.0.0.1:$PORT"

# cnf FILE OFFLOAD [noems] [random]: a config loading default, then edgeauth
# with `offload = OFFLOAD` (none: no parameter at all).
cnf() {
    local f=$1 off=$2 noems=${3:-} rnd=${4:-}
    {
        echo 'openssl_conf = openssl_init'
        echo '[openssl_init]'
        echo 'providers = provider_sect'
        [ -n "$noems" ] && echo 'ssl_conf = ssl_sect'
        [ -n "$rnd" ] && echo 'random = random_sect'
        echo '[provider_sect]'
        echo 'default = default_sect'
        echo 'edgeauth = edgeauth_sect'
        echo '[default_sect]'
        echo 'activate = 1'
        echo '[edgeauth_sect]'
        echo "module = $MODDIR/edgeauth.so"
        [ "$off" != none ] && echo "offload = $off"
        echo 'activate = 1'
        if [ -n "$noems" ]; then
            echo '[ssl_sect]'
            echo 'system_default = sys_sect'
            echo '[sys_sect]'
            echo 'Options = -ExtendedMasterSecret'
        fi
        if [ -n "$rnd" ]; then
            echo '[random_sect]'
            echo 'random = EDGEAUTH-SE-RNG'
            echo 'properties = provider=edgeauth'
        fi
    } >"$f"
}

# hs CNF PROTO: one mutual-TLS handshake with the SE key, APDUs logged.
hs() {
    local conf=$1 proto=$2
    local args=(-tls1_3)
    [ "$proto" = 1.2 ] && args=(-tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256)
    : >"$LOG"
    printf 'GET / HTTP/1.0\r\n\r\n' >"$T/req"
    OPENSSL_CONF=$conf EDGEAUTH_APDU_LOG=$LOG timeout "$LIMIT" "$OPENSSL" s_client \
        -propquery '?edgeauth.offload=yes' -groups P-256 -connect "127.0.0.1:$PORT" -CAfile "$PKI/ca.pem" \
        -key se05x:0xF0000100 -cert "$T/dev.pem" "${args[@]}" -ign_eof -quiet <"$T/req" >"$OUT" 2>"$ERR"
    RC=$?
}

# handshake_ok NAME PROTO: the page shows our certificate, verified.
handshake_ok() {
    local want=TLSv1.3
    [ "$2" = 1.2 ] && want=TLSv1.2
    [ $RC -eq 0 ] && sane && grep -q "Protocol  : $want" "$OUT" && grep -q 'Verify return code: 0' "$OUT" &&
        grep -q 'Client certificate' "$OUT" && grep -q 'Subject: CN *= *dev-1' "$OUT"
}

# ---- offload off: nothing offered, the handshake as before ----------------------------------
cnf "$T/off.cnf" none
run env OPENSSL_CONF="$T/off.cnf" "$OPENSSL" list -kdf-algorithms -key-exchange-algorithms
if [ $RC -eq 0 ] && ! grep -q '@ edgeauth' "$OUT"; then ok "offload off: no KDF or key exchange from edgeauth"; else bad "offload off: no KDF or key exchange from edgeauth"; fi
cnf "$T/prf.cnf" prf
run env OPENSSL_CONF="$T/prf.cnf" "$OPENSSL" list -kdf-algorithms
if [ $RC -eq 0 ] && grep -q 'TLS1-PRF @ edgeauth' "$OUT" && grep -q 'TLS13-KDF @ edgeauth' "$OUT"; then ok "offload=prf: TLS1-PRF and TLS13-KDF from edgeauth"; else bad "offload=prf: TLS1-PRF and TLS13-KDF from edgeauth"; fi

for proto in 1.2 1.3; do
    # Even with the offload query, an `offload`-less provider changes nothing.
    hs "$T/off.cnf" $proto
    if handshake_ok x $proto && [ "$(count ECDSASign)" -eq 1 ] && [ "$(others)" -eq 1 ] &&
        [ "$(reads)" -eq 3 ]; then
        ok "TLS $proto offload off: exactly 1 ECDSASign per handshake (+3 reads loading the key)"
    else
        bad "TLS $proto offload off: exactly 1 ECDSASign per handshake"
    fi
done

# ---- random --------------------------------------------------------------------------------
cnf "$T/random.cnf" random "" rnd
for proto in 1.2 1.3; do
    hs "$T/random.cnf" $proto
    if handshake_ok x $proto && [ "$(count TLSGenerateRandom)" -ge 1 ] && [ "$(count ECDSASign)" -eq 1 ] &&
        [ "$(count ECDHGenerateSharedSecret)" -eq 0 ] && [ "$(count TLSPerformPRF)" -eq 0 ]; then
        ok "TLS $proto offload=random: randomness from the SE ($(count TLSGenerateRandom) TLSGenerateRandom, $(count GetRandom) GetRandom)"
    else
        bad "TLS $proto offload=random"
    fi
done

# ---- ecdhe ---------------------------------------------------------------------------------
cnf "$T/ecdhe.cnf" ecdhe
for proto in 1.2 1.3; do
    hs "$T/ecdhe.cnf" $proto
    if handshake_ok x $proto && [ "$(count ECDHGenerateSharedSecret)" -eq 1 ] &&
        [ "$(awk '$7 == "WriteECKey" && $3 == "81"' "$LOG" | wc -l)" -eq 1 ] &&
        [ "$(count DeleteSecureObject)" -eq 1 ] && [ "$(count TLSPerformPRF)" -eq 0 ] &&
        [ "$(count HKDF)" -eq 0 ] && [ "$(count ECDSASign)" -eq 1 ]; then
        ok "TLS $proto offload=ecdhe: transient key generated, ECDH in the SE, key deleted"
    else
        bad "TLS $proto offload=ecdhe"
    fi
done

# ---- prf -----------------------------------------------------------------------------------
cnf "$T/prf-noems.cnf" prf noems
hs "$T/prf-noems.cnf" 1.2
if handshake_ok x 1.2 && [ "$(count TLSPerformPRF)" -eq 2 ] && [ "$(count ECDHGenerateSharedSecret)" -eq 0 ] &&
    [ "$(count ECDSASign)" -eq 1 ] && balanced; then
    ok "TLS 1.2 offload=prf: master secret and key block by TLSPerformPRF; every transient object deleted"
else
    bad "TLS 1.2 offload=prf"
fi
hs "$T/prf.cnf" 1.3
if handshake_ok x 1.3 && [ "$(count HKDF)" -ge 4 ] && [ "$(count ECDHGenerateSharedSecret)" -eq 0 ] && balanced; then
    ok "TLS 1.3 offload=prf: key schedule on the SE's HKDF ($(count HKDF) HKDF); every transient object deleted ($(made))"
else
    bad "TLS 1.3 offload=prf"
fi

# ---- all three -----------------------------------------------------------------------------
cnf "$T/all.cnf" random,ecdhe,prf noems rnd
for proto in 1.2 1.3; do
    hs "$T/all.cnf" $proto
    kdf=TLSPerformPRF
    [ $proto = 1.3 ] && kdf=HKDF
    if handshake_ok x $proto && [ "$(count TLSGenerateRandom)" -ge 1 ] && [ "$(count ECDHGenerateSharedSecret)" -eq 1 ] &&
        [ "$(count $kdf)" -ge 2 ] && [ "$(count ECDSASign)" -eq 1 ] && balanced; then
        ok "TLS $proto offload=random,ecdhe,prf: $(wc -l <"$LOG") APDUs ($(count $kdf) $kdf), all $(made) transient objects deleted"
    else
        bad "TLS $proto offload=random,ecdhe,prf"
    fi
done

# ---- negative cases ----------------------------------------------------------------------
# The premaster is in the SE, and the extended master secret does not fit TLSPerformPRF.
cnf "$T/ems.cnf" ecdhe,prf
hs "$T/ems.cnf" 1.2
if [ $RC -ne 0 ] && [ $RC -ne 124 ] && sane && grep -q 'extended master secret' "$ERR" &&
    grep -q 'SSL_OP_NO_EXTENDED_MASTER_SECRET' "$ERR"; then
    ok "TLS 1.2 ecdhe,prf with the extended master secret fails, saying why"
else
    bad "TLS 1.2 ecdhe,prf with the extended master secret fails, saying why"
fi
# ECDH with a persistent SE key (not libssl's ephemeral one) returns the real
# shared secret even under ecdhe,prf: the same bytes the peer computes.
run "$EA" se keygen --id 0xF0000200 --curve P-256 --policy ka,read
run "$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/peer.key" &&
    run "$OPENSSL" pkey -in "$T/peer.key" -pubout -out "$T/peer.pub" &&
    run "$EA" se pubkey --id 0xF0000200 --pem --out "$T/se200.pub"
run env OPENSSL_CONF="$T/ems.cnf" "$OPENSSL" pkeyutl -derive -inkey se05x:0xF0000200 -peerkey "$T/peer.pub" \
    -out "$T/z-se"
run "$OPENSSL" pkeyutl -derive -inkey "$T/peer.key" -peerkey "$T/se200.pub" -out "$T/z-peer"
if [ -s "$T/z-se" ] && cmp -s "$T/z-se" "$T/z-peer" && ! grep -q EASEREF "$T/z-se"; then
    ok "ECDH with a persistent SE key under ecdhe,prf: the real shared secret (= the peer's)"
else
    bad "ECDH with a persistent SE key under ecdhe,prf"
fi
# libssl's ephemeral keys cannot be saved as a key reference.
run env OPENSSL_CONF="$T/ecdhe.cnf" "$OPENSSL" genpkey -propquery '?provider=edgeauth' -algorithm EC \
    -pkeyopt group:P-256 -out "$T/eph.pem"
expect_fail "offload=ecdhe: genpkey without se05x-id writes no reference to a transient key" 'ephemeral|se05x-id'

cnf "$T/badword.cnf" ecdhe,turbo
# OpenSSL's config loader keeps a provider's init error to itself: the
# provider must at least not run with a set it did not understand.
run env OPENSSL_CONF="$T/badword.cnf" "$OPENSSL" list -providers
if grep -q '  default' "$OUT" && ! grep -q 'edgeauth' "$OUT"; then ok "offload = unknown word: the provider refuses to start"; else bad "offload = unknown word: the provider refuses to start"; fi

finish
