#!/usr/bin/env bash
# End-to-end tests of the OpenSSL 3 provider (edgeauth.so) with the real
# `openssl` CLI and the real `curl`, against chips made by `edgeauth-se init`:
# once in-process (emu:DIR) and once over an `edgeauth-se serve` daemon
# (unix:PATH, plus a tcp:// listener for one case). Every command has a time
# limit, every port is probed before use, every background process is
# stopped by a trap, every file lives under one temporary directory.
#
#   bash test_provider.sh BUILD_DIR
#       BUILD_DIR holds bin/edgeauth-se, bin/edgeauth, lib/ossl-modules/edgeauth.so
#
# EA_TEST_KEEP=1 keeps the temporary directory for a post-mortem.
# Prints one line per check and a final "N passed, M failed[, K skipped]";
# exits non-zero on any failure. Installs nothing: without curl the curl
# cases are skipped, with the reason.
set -u

BUILD=${1:?usage: test_provider.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd) || exit 1 # openssl.cnf wants an absolute module path
BIN=$BUILD/bin
SE=$BIN/edgeauth-se
EA=$BIN/edgeauth
MODDIR=$BUILD/lib/ossl-modules
OPENSSL=${OPENSSL:-openssl}
LIMIT=60   # seconds for any single command
HANG=20    # limit for the commands that must fail fast; a hang shows as exit 124

# The sanitized edgeauth binaries report here (ASAN_OPTIONS, UBSAN_OPTIONS:
# setup); the openssl/curl binaries and the module are not instrumented.
export OPENSSL_MODULES=$MODDIR
# The SE comes from each case (EDGEAUTH_SE or `se =`), never from the caller.
unset EDGEAUTH_SE EDGEAUTH_SE_SEAL_KEY

source "$(dirname "$0")/lib.sh"
setup ea-prov mkhome plain-conf ignore-pipe
cleanup() {
    exec 7>&- 8>&- 9>&- 2>/dev/null # the fifos some cases hold open
    stop_bg
    remove_tmp
}

ossl() { run "$OPENSSL" "$@"; }

# ---- prerequisites ----------------------------------------------------------------
for f in "$SE" "$MODDIR/edgeauth.so"; do
    [ -e "$f" ] || give_up "$f is missing (build first)"
done
command -v "$OPENSSL" >/dev/null || give_up "the openssl CLI is not installed"
P=(-provider default -provider edgeauth) # the robust order: default first

# ---- a test CA and a TLS server with file keys (no provider) -----------------------
PKI=$T/pki
mkdir -p "$PKI"
(
    cd "$PKI" &&
        "$OPENSSL" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
            -out ca.pem -days 2 -subj /CN=edgeauth-test-ca &&
        "$OPENSSL" req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key \
            -out srv.csr -subj /CN=localhost &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >srv.ext &&
        "$OPENSSL" x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile srv.ext -out srv.pem
) >"$OUT" 2>"$ERR"
RC=$?
expect_ok "test CA and server certificate (file keys)" || finish

# issue CSR CERT [extra x509 args]: sign a device certificate with the test CA.
issue() {
    local csr=$1 cert=$2
    shift 2
    "$OPENSSL" x509 -req -in "$csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAserial "$PKI/ca.srl" \
        -days 2 -out "$cert" "$@" >/dev/null 2>"$ERR"
}

# start_www NAME: an `openssl s_server -www -Verify 1` on a free port.
# Sets WWW_PORT and WWW_LOG. Probes ports until one binds.
WWW_PORT=
WWW_LOG=
start_www() {
    WWW_LOG=$T/$1.log
    serve_on_free_port "$WWW_LOG" '^ACCEPT' "$OPENSSL" s_server -accept 127.0.0.1:@PORT@ -cert "$PKI/srv.pem" \
        -key "$PKI/srv.key" -CAfile "$PKI/ca.pem" -Verify 1 -verify_return_error -www &&
        WWW_PORT=$SERVER_PORT
}

# tls_case NAME KEY CERT SUBJECT PROTO-ARGS...: s_client with the SE key
# fetches the s_server -www page; the page shows the client certificate as
# verified, and the server log of this connection has no complaint.
tls_case() {
    local name=$1 key=$2 cert=$3 subj=$4 from proto_re cipher_re=.
    shift 4
    case "$*" in
    *-tls1_2*) proto_re='Protocol  : TLSv1\.2' ;;
    *) proto_re='Protocol  : TLSv1\.3' ;;
    esac
    case "$*" in
    *"-cipher ECDHE-ECDSA-AES128-GCM-SHA256"*) cipher_re='Cipher    : ECDHE-ECDSA-AES128-GCM-SHA256' ;;
    esac
    from=$(wc -l <"$WWW_LOG")
    printf 'GET / HTTP/1.0\r\n\r\n' | timeout "$LIMIT" "$OPENSSL" s_client "${P[@]}" \
        -connect "127.0.0.1:$WWW_PORT" -CAfile "$PKI/ca.pem" -verify_return_error \
        -key "$key" -cert "$cert" -ign_eof -quiet "$@" >"$OUT" 2>"$ERR"
    RC=$?
    if tail -n +"$((from + 1))" "$WWW_LOG" | grep -qE 'peer did not return a certificate|verify error|SSL_accept|error:'; then
        echo "       (s_server complained:)"
        tail -n +"$((from + 1))" "$WWW_LOG" | sed 's/^/       srv: /' | head -10
        [ "$RC" -eq 0 ] && RC=1
    fi
    expect_ok "$name" "$proto_re" "$cipher_re" '^Client certificate' "Subject: CN ?= ?$subj\$" \
        'Verify return code: 0 \(ok\)'
}

# tls_fail NAME KEY CERT ERE PROTO-ARGS...: the handshake fails with ERE.
tls_fail() {
    local name=$1 key=$2 cert=$3 re=$4
    shift 4
    printf 'GET / HTTP/1.0\r\n\r\n' | timeout "$HANG" "$OPENSSL" s_client "${P[@]}" \
        -connect "127.0.0.1:$WWW_PORT" -CAfile "$PKI/ca.pem" -key "$key" -cert "$cert" \
        -ign_eof -quiet "$@" >"$OUT" 2>"$ERR"
    RC=$?
    if grep -q '^Client certificate' "$OUT"; then
        RC=0 # the page came back: the handshake did not fail
    fi
    expect_fail "$name" "$re"
}

# mkcnf FILE SE-URI [random|seed]: an openssl.cnf that activates default
# first and edgeauth second; `se =` only when SE-URI is not empty.
mkcnf() {
    local f=$1 se=$2 rnd=${3:-}
    {
        echo 'openssl_conf = openssl_init'
        echo '[openssl_init]'
        echo 'providers = provider_sect'
        [ -n "$rnd" ] && echo 'random = random_sect'
        echo '[provider_sect]'
        echo 'default = default_sect'
        echo 'edgeauth = edgeauth_sect'
        echo '[default_sect]'
        echo 'activate = 1'
        echo '[edgeauth_sect]'
        echo "module = $MODDIR/edgeauth.so"
        [ -n "$se" ] && echo "se = $se"
        echo 'activate = 1'
        if [ "$rnd" = seed ]; then
            printf '[random_sect]\nseed = EDGEAUTH-SE-RNG\nseed_properties = provider=edgeauth\n'
        elif [ "$rnd" = random ]; then
            printf '[random_sect]\nrandom = EDGEAUTH-SE-RNG\nproperties = provider=edgeauth\n'
        fi
    } >"$f"
}

HAVE_CURL=0
CURL_WHY=
if ! command -v curl >/dev/null; then
    CURL_WHY="curl is not installed (scripts/deps.sh adds it)"
elif ! curl -V 2>/dev/null | head -1 | grep -q 'OpenSSL/3'; then
    CURL_WHY="curl is not built with OpenSSL 3 ($(curl -V | head -1))"
else
    HAVE_CURL=1
fi

# curl_case NAME CNF KEYFILE SUBJECT PROTOCOL-ERE [curl args]: curl --key
# KEYFILE (a key-reference PEM, read through the decoder) fetches the page.
curl_case() {
    local name=$1 cnf=$2 key=$3 subj=$4 proto_re=$5
    shift 5
    if [ "$HAVE_CURL" -ne 1 ]; then
        skip "$name" "$CURL_WHY"
        return
    fi
    OPENSSL_CONF=$cnf run curl -sS --max-time 30 --cacert "$PKI/ca.pem" --cert "$D/dev.pem" \
        --key "$key" "$@" "https://127.0.0.1:$WWW_PORT/"
    expect_ok "$name" "$proto_re" '^Client certificate' "Subject: CN ?= ?$subj\$" 'Verify return code: 0 \(ok\)'
}

# write_object URI ID FILE: put FILE into an SE binary object with
# `edgeauth se write` (cli/se.c).
HAVE_WRITE=0
if [ -x "$EA" ] && timeout "$LIMIT" "$EA" se write --help >/dev/null 2>&1; then
    HAVE_WRITE=1
fi
write_object() {
    run "$EA" --se "$1" se write --id "$2" --in "$3"
}

start_www www || give_up "openssl s_server -www did not start on any port"
ok "openssl s_server -www -Verify 1 listening on 127.0.0.1:$WWW_PORT"

# ---- the cases, for one SE ------------------------------------------------------------
# suite LABEL URI: run every positive and negative case against the SE at
# URI (EDGEAUTH_SE); outputs go to $T/LABEL.
suite() {
    local L=$1 URI=$2
    D=$T/$L
    mkdir -p "$D"
    export EDGEAUTH_SE=$URI
    echo "# ---- $L: EDGEAUTH_SE=$URI"

    # -- key generation in the SE, key-reference PEM --
    ossl genpkey "${P[@]}" -propquery '?provider=edgeauth' -algorithm EC -pkeyopt group:P-256 \
        -pkeyopt se05x-id:0xF0000100 -out "$D/dev.ref.pem"
    expect_ok "[$L] genpkey -pkeyopt se05x-id:0xF0000100 generates in the SE"
    ossl asn1parse -in "$D/dev.ref.pem"
    local size
    size=$(wc -c <"$D/dev.ref.pem")
    if [ "$RC" -eq 0 ] && [ "$size" -lt 200 ] && head -1 "$D/dev.ref.pem" | grep -qx -- '-----BEGIN EDGEAUTH SE KEY-----' &&
        [ "$(grep -c 'prim: INTEGER' "$OUT")" -eq 2 ] && grep -qE 'INTEGER +:01$' "$OUT" &&
        grep -qE 'INTEGER +:F0000100$' "$OUT" && ! grep -qE 'OCTET STRING|BIT STRING' "$OUT"; then
        ok "[$L] key-reference PEM: $size bytes, SEQUENCE { 1, 0xF0000100 }, no key material"
    else
        RC=1
        bad "[$L] key-reference PEM: tiny, version 1 + object id, no key material"
    fi

    ossl genpkey "${P[@]}" -propquery '?provider=edgeauth' -algorithm EC -pkeyopt group:P-384 \
        -pkeyopt se05x-id:0xF0000102 -out "$D/d384.ref.pem"
    expect_ok "[$L] genpkey P-384 in the SE"
    ossl genpkey "${P[@]}" -propquery '?provider=edgeauth' -algorithm EC -pkeyopt group:P-256 \
        -pkeyopt se05x-id:0xF0000103 -pkeyopt se05x-policy:read,verify -out "$D/nosign.ref.pem"
    expect_ok "[$L] genpkey with -pkeyopt se05x-policy:read,verify (no ALLOW_SIGN)"
    ossl genpkey -provider edgeauth -provider default -algorithm EC -pkeyopt group:P-256 \
        -pkeyopt se05x-id:0xF0000105 -out "$D/first.ref.pem"
    expect_ok "[$L] genpkey without -propquery when edgeauth is loaded first"
    # genpkey on an id that is taken must not replace the key (its
    # certificate would be orphaned), nor hand back a key of another curve.
    "$OPENSSL" pkey "${P[@]}" -in se05x:0xF0000105 -pubout -out "$D/first.pub" 2>"$ERR"
    ossl genpkey "${P[@]}" -propquery '?provider=edgeauth' -algorithm EC -pkeyopt group:P-384 \
        -pkeyopt se05x-id:0xF0000105 -out "$D/again.ref.pem"
    expect_fail "[$L] genpkey refuses an object id that is taken" '0xF0000105.*(exist|already)'
    "$OPENSSL" pkey "${P[@]}" -in se05x:0xF0000105 -pubout -out "$D/again.pub" 2>"$ERR"
    cmp -s "$D/first.pub" "$D/again.pub"
    RC=$?
    : >"$OUT"
    expect_ok "[$L] ... and the key in that object is unchanged"

    # -- public key, text --
    ossl pkey "${P[@]}" -in se05x:0xF0000100 -text -noout
    if grep -qE '^ *priv:' "$OUT"; then
        echo "       (a private key line was printed)"
        RC=1
    fi
    expect_ok "[$L] pkey -text: public key, named curve, held in the SE, no priv: line" '^pub:' \
        'ASN1 OID: prime256v1' 'held in the secure element' 'never leaves the SE'
    ossl pkey "${P[@]}" -in se05x:0xF0000100 -pubout -out "$D/pub.pem"
    expect_ok "[$L] pkey -pubout"
    ossl pkey "${P[@]}" -in se05x:0xF0000102 -pubout -out "$D/pub384.pem"
    expect_ok "[$L] pkey -pubout (P-384)"
    ossl pkey "${P[@]}" -in "se05x:0xF0000100?se=$URI" -pubout
    if [ "$RC" -eq 0 ] && ! cmp -s "$OUT" "$D/pub.pem"; then
        echo "       (not the same public key)"
        RC=1
    fi
    expect_ok "[$L] se05x:0xF0000100?se=URI names the SE in the URI (same public key)"

    # -- CSR --
    ossl req "${P[@]}" -new -key se05x:0xF0000100 -subj "/CN=dev-1-$L" -out "$D/dev.csr"
    expect_ok "[$L] req -new -key se05x:0xF0000100"
    ossl req -in "$D/dev.csr" -verify -noout
    expect_ok "[$L] req -verify (default provider only) accepts the CSR" 'verify OK|self-signature ok'
    ossl req -in "$D/dev.csr" -noout -text
    if expect_ok "[$L] CSR: named curve prime256v1, ecdsa-with-SHA256" 'ASN1 OID: prime256v1' \
        'NIST CURVE: P-256' 'Signature Algorithm: ecdsa-with-SHA256' && grep -qE 'Field Type|Prime:|Cofactor' "$OUT"; then
        RC=1
        bad "[$L] CSR has no explicit curve parameters"
    fi
    ossl req "${P[@]}" -new -key se05x:0xF0000102 -subj "/CN=dev-384-$L" -out "$D/d384.csr"
    expect_ok "[$L] req -new with the P-384 SE key"
    ossl req -in "$D/d384.csr" -verify -noout -text
    expect_ok "[$L] P-384 CSR verifies: secp384r1, ecdsa-with-SHA384" 'ASN1 OID: secp384r1' \
        'Signature Algorithm: ecdsa-with-SHA384'

    issue "$D/dev.csr" "$D/dev.pem" && issue "$D/d384.csr" "$D/d384.pem" &&
        "$OPENSSL" pkey "${P[@]}" -in se05x:0xF0000103 -pubout -out "$D/nosign.pub" 2>>"$ERR" &&
        issue "$D/dev.csr" "$D/nosign.pem" -force_pubkey "$D/nosign.pub"
    RC=$?
    : >"$OUT"
    expect_ok "[$L] CA issues dev.pem, d384.pem (and a cert for the no-sign key)"
    ossl x509 -in "$D/dev.pem" -noout -pubkey
    if [ "$RC" -eq 0 ] && cmp -s "$OUT" "$D/pub.pem"; then ok "[$L] dev.pem carries the SE key's public key"; else RC=1; bad "[$L] dev.pem carries the SE key's public key"; fi

    # -- signatures with pkeyutl / dgst, verified by the default provider alone --
    printf 'telemetry: temperature=21.5C\n' >"$D/msg"
    "$OPENSSL" dgst -sha256 -binary "$D/msg" >"$D/dg256"
    "$OPENSSL" dgst -sha384 -binary "$D/msg" >"$D/dg384"
    ossl pkeyutl "${P[@]}" -sign -inkey se05x:0xF0000100 -in "$D/dg256" -pkeyopt digest:sha256 -out "$D/sig256"
    expect_ok "[$L] pkeyutl -sign a SHA-256 digest in the SE"
    ossl pkeyutl -verify -pubin -inkey "$D/pub.pem" -in "$D/dg256" -sigfile "$D/sig256" -pkeyopt digest:sha256
    expect_ok "[$L] pkeyutl -verify (default provider) accepts it" 'Signature Verified Successfully'
    ossl pkeyutl "${P[@]}" -sign -inkey se05x:0xF0000100 -in "$D/dg256" -out "$D/sigraw"
    expect_ok "[$L] pkeyutl -sign a raw 32-byte digest (no digest named)"
    ossl pkeyutl -verify -pubin -inkey "$D/pub.pem" -in "$D/dg256" -sigfile "$D/sigraw"
    expect_ok "[$L] ... verified by the default provider" 'Signature Verified Successfully'
    ossl pkeyutl "${P[@]}" -sign -inkey se05x:0xF0000102 -in "$D/dg384" -pkeyopt digest:sha384 -out "$D/sig384"
    expect_ok "[$L] pkeyutl -sign a SHA-384 digest with the P-384 key"
    ossl pkeyutl -verify -pubin -inkey "$D/pub384.pem" -in "$D/dg384" -sigfile "$D/sig384"
    expect_ok "[$L] ... verified by the default provider" 'Signature Verified Successfully'
    ossl pkeyutl "${P[@]}" -sign -inkey se05x:0xF0000100 -rawin -digest sha256 -in "$D/msg" -out "$D/sigmsg"
    expect_ok "[$L] pkeyutl -sign -rawin (host hashes, SE signs)"
    ossl dgst -sha256 -verify "$D/pub.pem" -signature "$D/sigmsg" "$D/msg"
    expect_ok "[$L] ... dgst -verify (default provider)" 'Verified OK'
    ossl pkeyutl "${P[@]}" -sign -inkey se05x:0xF0000100 -in "$D/msg" -pkeyopt digest:sha256 -out "$D/x"
    expect_fail "[$L] pkeyutl -sign refuses input that is not a digest of that size" 'input is 29 bytes'

    # -- mutual TLS with the real s_client --
    tls_case "[$L] s_client -key se05x:0xF0000100 TLS 1.3: server verified the client cert" \
        se05x:0xF0000100 "$D/dev.pem" "dev-1-$L" -tls1_3
    tls_case "[$L] s_client TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256" \
        se05x:0xF0000100 "$D/dev.pem" "dev-1-$L" -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256
    tls_case "[$L] s_client P-384 SE key, TLS 1.3" se05x:0xF0000102 "$D/d384.pem" "dev-384-$L" -tls1_3
    tls_case "[$L] s_client P-384 SE key, TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256" \
        se05x:0xF0000102 "$D/d384.pem" "dev-384-$L" -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256
    EDGEAUTH_SE=unix:$T/nobody-here.sock tls_case "[$L] s_client -key 'se05x:0xF0000100?se=URI' (EDGEAUTH_SE points elsewhere)" \
        "se05x:0xF0000100?se=$URI" "$D/dev.pem" "dev-1-$L" -tls1_3

    # -- the certificate in an SE binary object --
    if [ "$HAVE_WRITE" -eq 1 ]; then
        "$OPENSSL" x509 -in "$D/dev.pem" -outform DER -out "$D/dev.der"
        write_object "$URI" 0xF0000101 "$D/dev.der"
        expect_ok "[$L] edgeauth se write --id 0xF0000101 --in dev.der"
        ossl x509 "${P[@]}" -in se05x:0xF0000101 -noout -subject -fingerprint -sha256
        local fp
        fp=$("$OPENSSL" x509 -in "$D/dev.pem" -noout -fingerprint -sha256)
        expect_ok "[$L] x509 -in se05x:0xF0000101 loads the certificate from the SE" \
            "^subject=CN ?= ?dev-1-$L\$" "^${fp//:/:}\$"
        tls_case "[$L] s_client -cert se05x:0xF0000101 -key se05x:0xF0000100 (both from the SE)" \
            se05x:0xF0000100 se05x:0xF0000101 "dev-1-$L" -tls1_3
        printf 'not a certificate' >"$D/junk"
        write_object "$URI" 0xF0000104 "$D/junk"
        ossl x509 "${P[@]}" -in se05x:0xF0000104 -noout -subject
        expect_fail "[$L] a binary object that is no certificate: clear error" \
            'SE object 0xF0000104 does not hold a DER certificate'
    else
        skip "[$L] certificate object cases" "$EA has no 'se write' (cli/se.c not in this build)"
    fi

    # -- programs that only read key files, provider from OPENSSL_CONF --
    mkcnf "$D/openssl.cnf" "$URI"
    curl_case "[$L] curl --cert dev.pem --key dev.ref.pem (OPENSSL_CONF), TLS 1.3" "$D/openssl.cnf" \
        "$D/dev.ref.pem" "dev-1-$L" 'Protocol  : TLSv1\.3' --tlsv1.3
    curl_case "[$L] curl ... TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256" "$D/openssl.cnf" "$D/dev.ref.pem" \
        "dev-1-$L" 'Cipher    : ECDHE-ECDSA-AES128-GCM-SHA256' --tlsv1.2 --tls-max 1.2 \
        --ciphers ECDHE-ECDSA-AES128-GCM-SHA256
    EDGEAUTH_SE=unix:$T/nobody-here.sock curl_case "[$L] curl: 'se =' in openssl.cnf wins over EDGEAUTH_SE" \
        "$D/openssl.cnf" "$D/dev.ref.pem" "dev-1-$L" 'Protocol  : TLSv1\.3'
    OPENSSL_CONF=$D/openssl.cnf run "$OPENSSL" s_time -connect "127.0.0.1:$WWW_PORT" -new -time 1 \
        -cert "$D/dev.pem" -key "$D/dev.ref.pem" -CAfile "$PKI/ca.pem"
    expect_ok "[$L] s_time -key dev.ref.pem (SSL_CTX_use_PrivateKey_file) does full handshakes" \
        '^[1-9][0-9]* connections in'

    # -- negatives --
    ossl pkey "${P[@]}" -in se05x:0xF0000999 -noout
    expect_fail "[$L] unknown object id: error names it" 'SE object 0xF0000999 does not exist'
    tls_fail "[$L] s_client -key se05x:0xF0000999: error names the object" se05x:0xF0000999 "$D/dev.pem" \
        'SE object 0xF0000999 does not exist'
    ossl req "${P[@]}" -new -key se05x:nothex -subj /CN=x -out "$D/x.csr"
    expect_fail "[$L] malformed URI se05x:nothex: clear error" "'nothex' is not an object id"
    ossl pkey "${P[@]}" -in 'se05x:0xF0000100?pin=1' -noout
    expect_fail "[$L] unknown URI query: clear error" 'the only query is \?se=URI'
    ossl req "${P[@]}" -new -key se05x:0xF0000103 -subj /CN=x -out "$D/x.csr"
    expect_fail "[$L] req with a key whose policy lacks ALLOW_SIGN" 'policy of SE key 0xF0000103 does not allow signing'
    tls_fail "[$L] TLS 1.3 handshake with the no-sign key fails, saying why" se05x:0xF0000103 "$D/nosign.pem" \
        'policy of SE key 0xF0000103 does not allow signing' -tls1_3
    tls_fail "[$L] TLS 1.2 handshake with the no-sign key fails, saying why" se05x:0xF0000103 "$D/nosign.pem" \
        'policy of SE key 0xF0000103 does not allow signing' -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256
    # A well-formed reference to an object that is not there (id 0xF0000999).
    printf -- '-----BEGIN EDGEAUTH SE KEY-----\nMAoCAQECBQDwAAmZ\n-----END EDGEAUTH SE KEY-----\n' >"$D/missing.ref.pem"
    if [ "$HAVE_CURL" -eq 1 ]; then
        OPENSSL_CONF=$D/openssl.cnf run curl -sS --max-time "$HANG" --cacert "$PKI/ca.pem" \
            --cert "$D/dev.pem" --key "$D/missing.ref.pem" "https://127.0.0.1:$WWW_PORT/"
        expect_fail "[$L] curl with a reference to a missing object fails (no page)" 'private key|unable to set'
    else
        skip "[$L] curl with a reference to a missing object" "$CURL_WHY"
    fi

    # -- RAND --
    mkcnf "$D/seed.cnf" "$URI" seed
    OPENSSL_CONF=$D/seed.cnf ossl rand -hex 16
    expect_ok "[$L] [random] seed = EDGEAUTH-SE-RNG: openssl rand -hex 16" '^[0-9a-f]{32}$'
    mkcnf "$D/drbg.cnf" "$URI" random
    OPENSSL_CONF=$D/drbg.cnf ossl rand -hex 16
    expect_ok "[$L] [random] random = EDGEAUTH-SE-RNG (every byte from the SE)" '^[0-9a-f]{32}$'
}

# ---- chips -------------------------------------------------------------------------------
CHIP_E=$T/chip-emu
CHIP_D=$T/chip-daemon
run "$SE" init --state "$CHIP_E"
expect_ok "edgeauth-se init (chip for emu:)"
run "$SE" init --state "$CHIP_D"
expect_ok "edgeauth-se init (chip for the daemon)"

ossl list -random-generators "${P[@]}"
expect_ok "list -random-generators shows EDGEAUTH-SE-RNG @ edgeauth" 'EDGEAUTH-SE-RNG @ edgeauth' 'CTR-DRBG @ default'
ossl list -providers "${P[@]}"
expect_ok "list -providers shows edgeauth active" 'edgeauth' 'status: active'

# ============================== emu: (in-process) =========================================
suite emu "emu:$CHIP_E"

# An emu: chip is locked by the process that opened it.
mkfifo "$T/hold"
EDGEAUTH_SE=emu:$CHIP_E "$OPENSSL" s_client "${P[@]}" -connect "127.0.0.1:$WWW_PORT" -CAfile "$PKI/ca.pem" \
    -key se05x:0xF0000100 -cert "$T/emu/dev.pem" <"$T/hold" >"$T/hold.log" 2>&1 &
HOLDER=$!
BG+=("$HOLDER")
exec 9>"$T/hold" # s_client connects, then waits for input with the chip open
for _ in $(seq 1 50); do
    EDGEAUTH_SE=emu:$CHIP_E ossl pkey "${P[@]}" -in se05x:0xF0000100 -noout
    grep -q 'in use' "$ERR" && break
    sleep 0.1
done
expect_fail "emu: chip in use by another process: clear error naming the holder" 'in use by pid [0-9]+'
exec 9>&-
kill "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null

# ============================== the daemon (unix:, tcp:) ==================================
SOCK=$T/se.sock
DLOG=
NDAEMON=0
DAEMON=
TCP_URI=
start_daemon() {
    NDAEMON=$((NDAEMON + 1))
    DLOG=$T/daemon.$NDAEMON.log
    "$SE" serve --state "$CHIP_D" --listen "unix:$SOCK" --listen tcp://127.0.0.1:0 2>"$DLOG" &
    DAEMON=$!
    BG+=("$DAEMON")
    for _ in $(seq 1 100); do
        grep -q 'serving' "$DLOG" 2>/dev/null && break
        kill -0 "$DAEMON" 2>/dev/null || break
        sleep 0.1
    done
    TCP_URI=$(grep -oE 'tcp://127\.0\.0\.1:[0-9]+' "$DLOG" | head -1)
    grep -q "serving .* on unix:$SOCK" "$DLOG" && [ -n "$TCP_URI" ]
}
stop_daemon() {
    local drc=0
    kill -TERM "$DAEMON" 2>/dev/null
    for _ in $(seq 1 100); do
        kill -0 "$DAEMON" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$DAEMON" 2>/dev/null
    wait "$DAEMON" 2>/dev/null || drc=$?
    DAEMON=
    return $drc
}

if start_daemon; then
    ok "edgeauth-se serve on unix:$SOCK and $TCP_URI"
    suite unix "unix:$SOCK"

    # -- over tcp:// too --
    D=$T/unix
    EDGEAUTH_SE=$TCP_URI tls_case "[tcp] s_client TLS 1.3 with the SE over $TCP_URI" \
        se05x:0xF0000100 "$D/dev.pem" "dev-1-unix" -tls1_3

    # -- a key reference that names its SE: no `se =`, no EDGEAUTH_SE --
    ossl genpkey "${P[@]}" -propquery '?provider=edgeauth' -algorithm EC -pkeyopt group:P-256 \
        -pkeyopt se05x-id:0xF0000106 -pkeyopt "se05x-uri:unix:$SOCK" -out "$D/uri.ref.pem"
    expect_ok "genpkey -pkeyopt se05x-uri:unix:... (the reference names its SE)"
    ossl asn1parse -in "$D/uri.ref.pem"
    expect_ok "... the reference holds the URI as a UTF8String" "UTF8STRING +:unix:$SOCK\$" 'INTEGER +:F0000106$'
    (
        unset EDGEAUTH_SE
        ossl req "${P[@]}" -new -key "se05x:0xF0000106?se=unix:$SOCK" -subj /CN=dev-uri -out "$D/uri.csr" &&
            issue "$D/uri.csr" "$D/uri.pem"
        exit $?
    )
    RC=$?
    expect_ok "... CSR and certificate for it"
    mkcnf "$D/nose.cnf" ""
    if [ "$HAVE_CURL" -eq 1 ]; then
        (
            unset EDGEAUTH_SE
            OPENSSL_CONF=$D/nose.cnf timeout "$LIMIT" curl -sS --max-time 30 --cacert "$PKI/ca.pem" \
                --cert "$D/uri.pem" --key "$D/uri.ref.pem" "https://127.0.0.1:$WWW_PORT/" >"$OUT" 2>"$ERR"
        )
        RC=$?
        expect_ok "curl --key uri.ref.pem finds the SE from the reference alone" '^Client certificate' 'Subject: CN ?= ?dev-uri$'
    else
        skip "curl --key uri.ref.pem finds the SE from the reference alone" "$CURL_WHY"
    fi

    # -- RAND fails when the seed source cannot be reached: it is really used --
    mkcnf "$D/seed-gone.cnf" "unix:$T/nobody-here.sock" seed
    OPENSSL_CONF=$D/seed-gone.cnf ossl rand -hex 16
    expect_fail "seed source really is the SE: unreachable SE -> openssl rand fails" 'cannot reach the secure element'

    # -- the daemon dies in the middle of a session --------------------------------------
    # s_client loads the key and completes the handshake; then the daemon is
    # stopped and the server asks for the certificate again (TLS 1.3
    # post-handshake authentication): the new CertificateVerify needs the SE.
    mkfifo "$T/srv.in" "$T/cli.in"
    PHA_LOG=$T/pha-server.log
    PHA_PORT=
    for _ in $(seq 1 20); do
        port=$((20000 + RANDOM % 40000))
        "$OPENSSL" s_server -accept "127.0.0.1:$port" -cert "$PKI/srv.pem" -key "$PKI/srv.key" \
            -CAfile "$PKI/ca.pem" -Verify 1 <"$T/srv.in" >"$PHA_LOG" 2>&1 &
        SPID=$!
        exec 8>"$T/srv.in"
        for _ in $(seq 1 100); do
            grep -q '^ACCEPT' "$PHA_LOG" && break
            kill -0 "$SPID" 2>/dev/null || break
            sleep 0.1
        done
        if grep -q '^ACCEPT' "$PHA_LOG"; then
            BG+=("$SPID")
            PHA_PORT=$port
            break
        fi
        exec 8>&-
        wait "$SPID" 2>/dev/null
    done
    if [ -z "$PHA_PORT" ]; then
        RC=1
        bad "s_server for post-handshake authentication did not start"
    else
        EDGEAUTH_SE=unix:$SOCK timeout "$LIMIT" "$OPENSSL" s_client "${P[@]}" -enable_pha -tls1_3 -state \
            -connect "127.0.0.1:$PHA_PORT" -CAfile "$PKI/ca.pem" -key se05x:0xF0000100 -cert "$D/dev.pem" \
            <"$T/cli.in" >"$T/pha.out" 2>"$T/pha.err" &
        CPID=$!
        BG+=("$CPID")
        exec 7>"$T/cli.in"
        for _ in $(seq 1 100); do
            grep -q 'CIPHER is' "$PHA_LOG" && break
            sleep 0.1
        done
        echo c >&8 # post-handshake auth while the SE is up: must work
        for _ in $(seq 1 100); do
            [ "$(grep -c 'write certificate verify' "$T/pha.err")" -ge 2 ] && break
            sleep 0.1
        done
        n=$(grep -c 'write certificate verify' "$T/pha.err")
        verdict "post-handshake auth signs in the SE again (daemon up)" $([ "$n" -ge 2 ]; echo $?)
        stop_daemon
        t0=$(now_ms)
        echo c >&8 # now the SE is gone
        for _ in $(seq 1 $((HANG * 10))); do
            kill -0 "$CPID" 2>/dev/null || break
            sleep 0.1
        done
        wait "$CPID" 2>/dev/null
        RC=$?
        t1=$(now_ms)
        cp "$T/pha.out" "$OUT"
        cp "$T/pha.err" "$ERR"
        expect_fail "daemon stopped mid-session: s_client fails (in $((t1 - t0)) ms), naming the SE" \
            "SE key 0xF0000100: unix:$SOCK: connection lost"
        verdict "... within 10 s, not a hang" $([ $((t1 - t0)) -lt 10000 ]; echo $?)
        exec 7>&- 8>&-
        kill "$SPID" 2>/dev/null
        wait "$SPID" 2>/dev/null
    fi
    [ -n "$DAEMON" ] && stop_daemon

    # -- the daemon is gone before the command starts --
    t0=$(now_ms)
    EDGEAUTH_SE=unix:$SOCK run timeout "$HANG" "$OPENSSL" req "${P[@]}" -new -key se05x:0xF0000100 \
        -subj /CN=x -out "$D/x.csr"
    t1=$(now_ms)
    expect_fail "daemon stopped: req fails cleanly ($((t1 - t0)) ms)" "cannot reach the secure element.*unix:$SOCK"
    t0=$(now_ms)
    EDGEAUTH_SE=unix:$SOCK tls_fail "daemon stopped: s_client fails cleanly" se05x:0xF0000100 "$D/dev.pem" \
        "cannot reach the secure element.*unix:$SOCK" -tls1_3
    t1=$(now_ms)
    verdict "... both within a few seconds ($((t1 - t0)) ms for s_client)" $([ $((t1 - t0)) -lt 5000 ]; echo $?)
    if [ "$HAVE_CURL" -eq 1 ]; then
        (
            export EDGEAUTH_SE=unix:$SOCK
            OPENSSL_CONF=$D/openssl.cnf timeout "$HANG" curl -sS --max-time "$HANG" --cacert "$PKI/ca.pem" \
                --cert "$D/dev.pem" --key "$D/dev.ref.pem" "https://127.0.0.1:$WWW_PORT/" >"$OUT" 2>"$ERR"
        )
        RC=$?
        expect_fail "daemon stopped: curl fails cleanly (no page)" 'curl: \([0-9]+\)'
    fi

    # -- a daemon that accepts but never answers (SIGSTOP) --
    if start_daemon; then
        kill -STOP "$DAEMON"
        t0=$(now_ms)
        EDGEAUTH_SE=unix:$SOCK run timeout "$HANG" "$OPENSSL" req "${P[@]}" -new -key se05x:0xF0000100 \
            -subj /CN=x -out "$D/x.csr"
        t1=$(now_ms)
        expect_fail "frozen daemon: req gives up with a timeout error ($((t1 - t0)) ms)" 'timed out|no JRCP_v1 answer'
        kill -CONT "$DAEMON"
        EDGEAUTH_SE=unix:$SOCK ossl pkey "${P[@]}" -in se05x:0xF0000100 -noout
        expect_ok "daemon resumed: the next process works"
        stop_daemon
        RC=$?
        : >"$OUT"
        cat "$T"/daemon.*.log >"$ERR"
        expect_ok "edgeauth-se serve exits 0 on SIGTERM; no sanitizer report in any daemon run"
    else
        RC=1
        bad "edgeauth-se serve restarts"
    fi
else
    RC=1
    cp "$DLOG" "$ERR"
    bad "edgeauth-se serve on unix:$SOCK"
fi

finish
