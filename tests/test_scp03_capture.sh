#!/usr/bin/env bash
# Platform SCP03 seen from the bus: a signing session (the edgeauth CLI and
# the openssl CLI through the provider) runs through a recording proxy
# between the host and `edgeauth-se serve`; the capture must not contain the
# digest, the signature, the public key or the certificate, in whole or in
# any 8-byte piece. The same session without SCP03 shows them (so the check
# can fail), and a proxy that flips one bit of an answer makes the command
# fail with the SCP03 error and no output.
#
#   bash test_scp03_capture.sh BUILD_DIR
set -u

BUILD=${1:?usage: test_scp03_capture.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd) || exit 1
HERE=$(cd "$(dirname "$0")" && pwd)
SE=$BUILD/bin/edgeauth-se
EA=$BUILD/bin/edgeauth
export OPENSSL_MODULES=$BUILD/lib/ossl-modules
unset EDGEAUTH_SE EDGEAUTH_SE_SCP03 EDGEAUTH_SE_SEAL_KEY
LIMIT=60

source "$(dirname "$0")/lib.sh"
setup ea-scpcap mkhome plain-conf
# This suite's failures name the check and show only the error output.
bad() {
    FAIL=$((FAIL + 1))
    echo "FAIL - $1"
    [ -s "$ERR" ] && sed 's/^/       err: /' "$ERR" | head -10
}

# found CAPTURE FILE WINDOW: does any WINDOW-byte piece of FILE occur in CAPTURE?
found() {
    python3 - "$1" "$2" "$3" <<'PY'
import sys
cap = open(sys.argv[1], "rb").read()
item = open(sys.argv[2], "rb").read()
w = int(sys.argv[3])
if len(item) < w:
    sys.exit(2)
hits = [i for i in range(len(item) - w + 1) if item[i:i + w] in cap]
sys.exit(0 if hits else 1)
PY
}

start_proxy() { # start_proxy CAPTURE [--flip-response N]
    rm -f "$T/port"
    : >"$1"
    python3 "$HERE/scp03_proxy.py" "$T/port" "$T/se.sock" "$@" &
    BG+=($!)
    PROXY=$!
    wait_for "$T/port" || { echo "proxy did not start"; exit 1; }
    U=tcp://127.0.0.1:$(cat "$T/port")
}
stop_proxy() { kill "$PROXY" 2>/dev/null; wait "$PROXY" 2>/dev/null; }

run "$SE" init --state "$T/chip" --preprovision --scp03-keys-out "$T/scp03.keys" &&
    [ "$(stat -c %a "$T/scp03.keys")" = 600 ] && grep -q '^ENC [0-9a-fA-F]\{32\}$' "$T/scp03.keys" &&
    ok "init exports the chip's SCP03 keys once, mode 0600" || bad "init --scp03-keys-out"
# The keys go to the file only: never to the terminal.
leaked=0
for k in $(awk '{print $2}' "$T/scp03.keys"); do
    grep -qi "$k" "$T/out" "$T/err" && leaked=1
done
[ "$leaked" -eq 0 ] && ok "init prints none of the SCP03 keys" || bad "init printed an SCP03 key"
"$SE" serve --state "$T/chip" --listen "unix:$T/se.sock" 2>"$T/serve.err" &
BG+=($!)
wait_for "$T/se.sock" || { echo "serve did not start"; exit 1; }

# session NAME URI-SUFFIX: keygen, sign, pubkey, read the certificate, verify,
# and an openssl pkeyutl signature through the provider; files under $T/NAME.
session() {
    local d=$T/$1 s=$U$2
    mkdir -p "$d"
    head -c 32 /dev/urandom >"$d/dg"
    head -c 200 /dev/urandom >"$d/msg"
    run "$EA" --se "$s" se keygen --id 0x7B000020 --curve P-256 --force &&
        run "$EA" --se "$s" se sign --id 0x7B000020 --in "$d/dg" --out "$d/sig" &&
        run "$EA" --se "$s" se pubkey --id 0x7B000020 --pem --out "$d/pub.pem" &&
        run "$EA" --se "$s" se read --id 0xF0000101 --out "$d/cert.der" &&
        run "$EA" --se "$s" se verify --id 0x7B000020 --in "$d/dg" --sig "$d/sig" &&
        run openssl dgst -sha256 -binary -out "$d/dg2" "$d/msg" &&
        run openssl pkeyutl -provider default -provider edgeauth -sign \
            -inkey "se05x:0xF0000100?se=$s" -in "$d/dg2" -out "$d/sig2" &&
        run openssl x509 -inform DER -in "$d/cert.der" -noout -pubkey -out "$d/devpub.pem" &&
        run openssl pkeyutl -verify -pubin -inkey "$d/devpub.pem" -in "$d/dg2" -sigfile "$d/sig2" &&
        run openssl pkey -pubin -in "$d/pub.pem" -outform DER -out "$d/pub.der" &&
        tail -c 65 "$d/pub.der" >"$d/point"
}

start_proxy "$T/cap-scp.bin"
if session scp "?scp03=$T/scp03.keys"; then
    ok "signing session through the proxy with ?scp03= (CLI and openssl via the provider)"
else
    bad "signing session with SCP03"
fi
stop_proxy
[ -s "$T/cap-scp.bin" ] && ok "the proxy saw $(stat -c %s "$T/cap-scp.bin") bytes" || bad "empty capture"
for item in dg:8 sig:8 point:8 cert.der:16 dg2:8 sig2:8; do
    f=${item%%:*} w=${item##*:}
    found "$T/cap-scp.bin" "$T/scp/$f" "$w"
    case $? in
    1) ok "no $w-byte piece of $f is on the wire under SCP03" ;;
    0) bad "$f appears in clear on the wire under SCP03" ;;
    *) bad "$f missing from the session" ;;
    esac
done

# The control: the same session without SCP03 leaks all of it.
start_proxy "$T/cap-plain.bin"
session plain "" && ok "the same session without SCP03" || bad "plain session"
stop_proxy
for f in dg sig point cert.der dg2; do
    found "$T/cap-plain.bin" "$T/plain/$f" 8 && ok "control: $f is visible on a plain link" ||
        bad "control: $f not found on a plain link (the check is blind)"
done

# A tampered answer: one flipped bit in the first wrapped answer (after ATR, SELECT and INITIALIZE UPDATE) with data.
start_proxy "$T/cap-flip.bin" --flip-response 4
rm -f "$T/flip.sig"
head -c 32 /dev/urandom >"$T/flip.dg"
if run "$EA" --se "$U?scp03=$T/scp03.keys" se sign --id 0x7B000020 --in "$T/flip.dg" --out "$T/flip.sig"; then
    bad "a tampered answer was accepted"
elif grep -q "SCP03 check" "$T/err" && [ ! -e "$T/flip.sig" ]; then
    ok "a tampered answer ends the channel with the SCP03 error and no output"
else
    bad "tampered answer: wrong failure"
fi
stop_proxy

# Wrong keys are refused at the handshake, named as such.
start_proxy "$T/cap-wrong.bin"
if run "$EA" --se "$U?scp03=default:SE050C1" se info; then
    bad "wrong SCP03 keys accepted"
elif grep -q "card cryptogram does not match" "$T/err"; then
    ok "wrong keys: refused at the handshake with the reason"
else
    bad "wrong keys: unclear error"
fi
stop_proxy

finish
