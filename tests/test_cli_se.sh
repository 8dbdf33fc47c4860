#!/usr/bin/env bash
# End to end tests of `edgeauth se ...`: the real binaries against real chips
# made by `edgeauth-se init`, in-process (emu:DIR) and over a daemon
# (unix:PATH). Outputs are checked with the openssl CLI where it can judge
# them. Every run has a time limit; every temporary file lives under one
# directory that is removed at the end.
#
#   bash test_cli_se.sh BIN_DIR        (BIN_DIR holds edgeauth and edgeauth-se)
#
# Prints one line per check and a final "N passed, M failed"; exits non-zero
# on any failure.
set -u

BIN=${1:?usage: test_cli_se.sh BIN_DIR}
EA=$BIN/edgeauth
SE=$BIN/edgeauth-se
LIMIT=60 # seconds for any single command

unset EDGEAUTH_SE EDGEAUTH_SE_SEAL_KEY

source "$(dirname "$0")/lib.sh"
setup ea-cli-se

# jcheck NAME JQ-FILTER: stdout is one JSON object for which the filter is true.
jcheck() {
    local name=$1 filter=$2
    if [ "$RC" -ne 0 ] || ! sane; then
        bad "$name"
        return
    fi
    if command -v jq >/dev/null; then
        if [ "$(wc -l <"$OUT")" -ne 1 ] || [ "$(jq -c "$filter" <"$OUT" 2>&1)" != true ]; then
            echo "       (JSON fails $filter)"
            bad "$name"
            return
        fi
    elif ! grep -q '^{"ok":true' "$OUT"; then
        bad "$name"
        return
    fi
    ok "$name"
}

# ---- two chips ---------------------------------------------------------------
A=$T/a
B=$T/b
for d in "$A" "$B"; do
    if ! run "$SE" init --state "$d"; then
        bad "edgeauth-se init --state $d"
        finish
    fi
done
SEA=emu:$A

# ---- info ---------------------------------------------------------------------
ea --se "$SEA" se info
check "se info shows applet 7.2, unique id, memory, transport" '^applet version +7\.2\.' \
    '^unique id +[0-9a-f]{36}$' '^free persistent' '^transport +emu$' "^uri +emu:$A\$"
UID_HEX=$(sed -n 's/^unique id *//p' "$OUT")

ea --se "$SEA" se info --json
jcheck "se info --json" '.ok and (.applet_version|startswith("7.2")) and (.unique_id|length)==36 and .transport=="emu"'

RC=0
EDGEAUTH_SE=$SEA timeout "$LIMIT" "$EA" se info >"$OUT" 2>"$ERR" || RC=$?
check "EDGEAUTH_SE selects the chip when --se is absent" "^unique id +$UID_HEX\$"

ea se info --se "$SEA"
check "--se after the subcommand works too" "^unique id +$UID_HEX\$"

ea se info
check "neither --se nor EDGEAUTH_SE: the per-user chip, made on first use" \
    "^uri +emu:$HOME/.local/share/edgeauth/se\$" '^unique id +[0-9a-f]{36}$'

# ---- list ---------------------------------------------------------------------
ea --se "$SEA" se list
check "se list shows the factory objects with type, origin and policy" \
    '^ID +TYPE +SIZE +STORAGE +ORIGIN +POLICY' \
    '^0x7FFF0206 +binary file +18 +persistent +provisioned +read$' \
    '^0xF0000012 +EC P-256 key pair +32 +persistent +provisioned +read,attest$' \
    '^0xF0000013 +binary file +[0-9]+ +persistent +provisioned +read$'

ea --se "$SEA" se list --json
jcheck "se list --json" '.ok and ([.objects[].id]|index("0xF0000012")!=null) and
    (.objects[]|select(.id=="0xF0000012")|.type=="EC P-256 key pair" and .origin=="provisioned" and .storage=="persistent")'

# ---- keygen / pubkey ----------------------------------------------------------
K=0xF0000100
ea --se "$SEA" se keygen --id $K --curve P-256 --policy sign,verify,read,delete
check "se keygen P-256 with a policy" "^generated EC P-256 key pair $K inside the chip \(persistent, policy: sign,verify,read,delete\)" \
    '^public key 04[0-9a-f]{128}$'

ea --se "$SEA" se keygen --id $K --curve P-256
check_fail "se keygen refuses to overwrite an existing key" 1 "edgeauth se keygen: object $K already exists"

ea --se "$SEA" se pubkey --id $K
check "se pubkey: raw point in hex" '^04[0-9a-f]{128}$'
PUB_HEX=$(cat "$OUT")

ea --se "$SEA" se pubkey --id $K --pem --out "$T/pub.pem"
check "se pubkey --pem --out" "written to $T/pub.pem \(PEM\)"
if openssl pkey -pubin -in "$T/pub.pem" -noout -text >"$OUT" 2>"$ERR" &&
    grep -q 'NIST CURVE: P-256' "$OUT" &&
    [ "$(openssl pkey -pubin -in "$T/pub.pem" -outform DER | tail -c 65 | od -An -tx1 | tr -d ' \n')" = "$PUB_HEX" ]; then
    ok "openssl parses the PEM: named curve P-256, same point"
else
    RC=1
    bad "openssl parses the PEM: named curve P-256, same point"
fi

ea --se "$SEA" se pubkey --id $K --pem
check "se pubkey --pem to stdout" '^-----BEGIN PUBLIC KEY-----$' '^-----END PUBLIC KEY-----$'

ea --se "$SEA" se pubkey --id $K --json
jcheck "se pubkey --json" ".public_key==\"$PUB_HEX\" and .curve==\"P-256\" and .id==\"$K\""

ea --se "$SEA" se list
check "se list shows the new key as generated inside the chip" \
    "^$K +EC P-256 key pair +32 +persistent +internal +sign,verify,read,delete\$"

# ---- sign / verify --------------------------------------------------------------
printf 'telemetry: temperature=21.5C\n' >"$T/msg" # 29 bytes: no digest length
openssl dgst -sha256 -binary "$T/msg" >"$T/dg256"
ea --se "$SEA" se sign --id $K --in "$T/dg256" --out "$T/sig.der"
check "se sign --out (DER)" "ECDSA-sha256 signature by $K \(DER, [0-9]+ bytes\) written to"
if openssl pkeyutl -verify -pubin -inkey "$T/pub.pem" -sigfile "$T/sig.der" -in "$T/dg256" >"$OUT" 2>"$ERR" &&
    grep -q 'Signature Verified Successfully' "$OUT"; then
    ok "openssl pkeyutl verifies the chip's signature"
else
    RC=1
    bad "openssl pkeyutl verifies the chip's signature"
fi

ea --se "$SEA" se sign --id $K --in "$T/dg256" --alg sha256
check "se sign prints the DER signature in hex" '^30[0-9a-f]+$'
cp "$OUT" "$T/sig.hex"

ea --se "$SEA" se verify --id $K --in "$T/dg256" --sig "$T/sig.der"
check "se verify: valid signature, exit 0" "^signature valid \(ECDSA-sha256, key $K"

ea --se "$SEA" se verify --id $K --in "$T/dg256" --sig "$T/sig.hex" --json
jcheck "se verify accepts the hex that se sign prints (--json)" '.valid==true and .alg=="sha256"'

printf 'telemetry: temperature=99.9C' | openssl dgst -sha256 -binary >"$T/dg256b"
ea --se "$SEA" se verify --id $K --in "$T/dg256b" --sig "$T/sig.der"
if [ "$RC" -eq 1 ] && sane && grep -q '^signature NOT valid' "$OUT"; then
    ok "se verify: other digest -> NOT valid, exit 1"
else
    bad "se verify: other digest -> NOT valid, exit 1"
fi

ea --se "$SEA" se sign --id $K --in "$T/dg256" --alg sha384
check_fail "se sign: --alg that does not match the digest length" 1 "has 32 bytes; sha384 needs 48"

ea --se "$SEA" se sign --id $K --in "$T/msg"
check_fail "se sign: a message instead of a digest is refused" 1 "has 29 bytes, which is no SHA-256/384/512 digest"

K384=0xF0000200
ea --se "$SEA" se keygen --id $K384 --curve P-384
check "se keygen P-384 with the chip's default policy" "^generated EC P-384 key pair $K384 .*policy: chip default" \
    '^public key 04[0-9a-f]{192}$'
ea --se "$SEA" se pubkey --id $K384 --pem --out "$T/pub384.pem"
openssl dgst -sha384 -binary "$T/msg" >"$T/dg384"
ea --se "$SEA" se sign --id $K384 --in "$T/dg384" --out "$T/sig384.der"
if [ "$RC" -eq 0 ] && openssl pkeyutl -verify -pubin -inkey "$T/pub384.pem" -sigfile "$T/sig384.der" \
    -in "$T/dg384" >"$OUT" 2>"$ERR" && grep -q 'NIST CURVE\|Verified' "$OUT"; then
    ok "P-384 key signs a SHA-384 digest (alg inferred), openssl verifies"
else
    bad "P-384 key signs a SHA-384 digest (alg inferred), openssl verifies"
fi

# ---- random -------------------------------------------------------------------
ea --se "$SEA" se random 32
check "se random 32 gives 64 hex characters" '^[0-9a-f]{64}$'
ea --se "$SEA" se random 1000 --out "$T/rnd"
if [ "$RC" -eq 0 ] && sane && [ "$(wc -c <"$T/rnd")" -eq 1000 ] && [ "$(stat -c %a "$T/rnd")" = 600 ]; then
    ok "se random 1000 --out writes 1000 bytes, mode 0600"
else
    bad "se random 1000 --out writes 1000 bytes, mode 0600"
fi
ea --se "$SEA" se random 16 --json
jcheck "se random --json" '.bytes==16 and (.random|length)==32'
ea --se "$SEA" se random 0
check_fail "se random 0 is a usage error" 2 "not a byte count"

# ---- write / read -------------------------------------------------------------
F=0x7B000101
head -c 1300 /dev/urandom >"$T/data.bin"
ea --se "$SEA" se write --id $F --in "$T/data.bin"
check "se write: new 1300-byte binary file" "^wrote 1300 bytes to $F \(new binary file\)"
ea --se "$SEA" se read --id $F --out "$T/back.bin"
if [ "$RC" -eq 0 ] && sane && cmp -s "$T/data.bin" "$T/back.bin"; then
    ok "se read --out gives back the same 1300 bytes"
else
    bad "se read --out gives back the same 1300 bytes"
fi
ea --se "$SEA" se read --id $F
check "se read to stdout is the hex of the file" "^$(od -An -tx1 -v "$T/data.bin" | tr -d ' \n')\$"
head -c 1300 /dev/urandom >"$T/data2.bin"
ea --se "$SEA" se write --id $F --in "$T/data2.bin"
check "se write: overwrite a file of the same size" "overwritten"
ea --se "$SEA" se read --id $F --out "$T/back2.bin"
if cmp -s "$T/data2.bin" "$T/back2.bin"; then ok "the overwrite is read back"; else bad "the overwrite is read back"; fi
head -c 10 /dev/urandom >"$T/short.bin"
ea --se "$SEA" se write --id $F --in "$T/short.bin"
check_fail "se write refuses a different size" 1 "$F is a 1300-byte file"
ea --se "$SEA" se write --id $K --in "$T/short.bin"
check_fail "se write refuses to write over a key" 1 "$K is an EC P-256 key pair, not a binary file"
ea --se "$SEA" se read --id 0xF0000013 --out "$T/attest.der"
if [ "$RC" -eq 0 ] && openssl x509 -inform DER -in "$T/attest.der" -noout -subject >"$OUT" 2>"$ERR" &&
    grep -q "SE attestation $UID_HEX" "$OUT"; then
    ok "se read of 0xF0000013 gives the attestation certificate (DER)"
else
    bad "se read of 0xF0000013 gives the attestation certificate (DER)"
fi

# ---- attest -------------------------------------------------------------------
ea --se "$SEA" se attest --id $K --vendor-ca "$A/vendor/vendor-ca.pem"
check "se attest with the chip's own vendor CA" \
    "^proven: object $K \(EC P-256 key pair, origin: generated inside the chip\) with public key $PUB_HEX was read from chip $UID_HEX whose attestation key is certified by .*edgeauth SE vendor root CA; signature valid; freshness matched\$" \
    '^signature +valid' '^freshness +matched'

ea --se "$SEA" se attest --id $F --vendor-ca "$A/vendor/vendor-ca.pem" --json
jcheck "se attest --json of a binary file" ".chain_valid and .signature_valid and .freshness_matched and
    .unique_id==\"$UID_HEX\" and .type==\"binary file\" and .origin==\"external\" and (.data|length)==2600"

ea --se "$SEA" se attest --id $K --vendor-ca "$B/vendor/vendor-ca.pem"
check_fail "se attest with another chip's vendor CA fails" 1 "does not chain to the vendor CA in $B/vendor/vendor-ca.pem"

ea --se "$SEA" se attest --id 0xF0000999 --vendor-ca "$A/vendor/vendor-ca.pem"
check_fail "se attest of a missing object" 1 "object 0xF0000999 does not exist"

ea --se "$SEA" se attest --id $K --vendor-ca "$A/vendor/vendor-ca.pem" --attest-key $K384
check_fail "se attest with a key not allowed to attest" 1 "policy of $K384 forbids attestation"

ea --se "$SEA" se attest --id $K --vendor-ca "$T/data.bin"
check_fail "se attest with a vendor CA file that is no PEM" 1 "no PEM certificate in vendor CA file"

# ---- clear failures -------------------------------------------------------------
for sub in "pubkey --id 0xF0000999" "read --id 0xF0000999" "delete --id 0xF0000999" \
    "sign --id 0xF0000999 --in $T/dg256"; do
    set -- $sub
    ea --se "$SEA" se "$@"
    check_fail "se $1 of a missing object names it" 1 "^edgeauth se $1: object 0xF0000999 does not exist\$"
done

ea --se "$SEA" se pubkey --id 0xF0000999 --json
if [ "$RC" -eq 1 ] && grep -q '^{"ok":false,"command":"se pubkey","error":"object 0xF0000999 does not exist"}$' "$OUT"; then
    ok "--json failure is a JSON object too"
else
    bad "--json failure is a JSON object too"
fi

P=0xF0000300
ea --se "$SEA" se keygen --id $P --curve P-256 --policy sign
check "se keygen --policy sign (public key then unreadable)" "policy: sign\)" "^public key not readable"
ea --se "$SEA" se pubkey --id $P
check_fail "se pubkey of a sign-only key: policy refusal named" 1 "^edgeauth se pubkey: policy of $P forbids read\$"
ea --se "$SEA" se delete --id $P
check_fail "se delete of a key without delete in its policy" 1 "policy of $P forbids delete"
ea --se "$SEA" se sign --id $P --in "$T/dg256"
check "the sign-only key still signs" '^30[0-9a-f]+$'
ea --se "$SEA" se delete --id 0xF0000012
check_fail "the factory attestation key cannot be deleted" 1 \
    "^edgeauth se delete: 0xF0000012 was provisioned by the SE vendor; the chip refuses to delete it\$"
ea --se "$SEA" se delete --id 0x7FFF0206
check_fail "the unique id cannot be deleted" 1 "0x7FFF0206 is the chip's unique id; the chip refuses to delete it"

HK=0xF0000400
ea --se "$SEA" se read --id 0x7FFF0206
check "se read of the unique id" "^$UID_HEX\$"

ea --se "$SEA" se read --id $K384 --out "$T/pub384.raw"
if [ "$RC" -eq 0 ] && [ "$(wc -c <"$T/pub384.raw")" -eq 97 ]; then
    ok "se read of a key pair gives its public point"
else
    bad "se read of a key pair gives its public point"
fi

# A transient key lives only as long as its session: this command's.
ea --se "$SEA" se keygen --id $HK --curve P-256 --transient
check "se keygen --transient" "^generated EC P-256 key pair $HK inside the chip \(transient"
ea --se "$SEA" se list
if [ "$RC" -eq 0 ] && ! grep -q "^$HK" "$OUT"; then
    ok "the transient key is gone once its session ended"
else
    bad "the transient key is gone once its session ended"
fi

START=$(date +%s)
ea --se tcp://127.0.0.1:1 se info
check_fail "no SE reachable (tcp://127.0.0.1:1)" 1 \
    "^edgeauth se info: cannot reach the secure element at tcp://127.0.0.1:1: [Cc]onnection refused\$"
if [ $(($(date +%s) - START)) -lt 15 ]; then ok "... and it does not hang"; else bad "... and it does not hang"; fi

ea --se "emu:$T/nochip" se list
check_fail "no chip in the emu: directory" 1 "cannot reach the secure element at emu:$T/nochip: "

ea --se "unix:$T/no.sock" se random 8
check_fail "no daemon on the unix: socket" 1 "cannot reach the secure element at unix:$T/no.sock: "

# ---- usage errors (exit 2, before any SE is contacted) --------------------------
ea --se tcp://127.0.0.1:1 se keygen --curve P-256
check_fail "keygen without --id" 2 "--id is required"
ea --se tcp://127.0.0.1:1 se keygen --id 0xF0000100 --curve P-192
check_fail "keygen with an unknown curve" 2 "'P-192' is not P-256 or P-384"
ea --se tcp://127.0.0.1:1 se keygen --id 0xF0000100 --curve P-256 --policy sign,fly
check_fail "keygen with an unknown policy word" 2 "unknown word at 'fly'"
ea --se tcp://127.0.0.1:1 se pubkey --id 0xZZ
check_fail "an id that is not a number" 2 "'0xZZ' is not an object id"
ea --se tcp://127.0.0.1:1 se pubkey --id 0x1FFFFFFFF
check_fail "an id above 32 bits" 2 "is not an object id"
ea --se tcp://127.0.0.1:1 se sign --id 1 --in x --pem
check_fail "an option the command does not take" 2 "--pem does not apply"
ea --se tcp://127.0.0.1:1 se info extra
check_fail "a stray argument" 2 "unexpected argument 'extra'"
ea se frobnicate
check_fail "an unknown se command" 2 "unknown command 'frobnicate'"
ea se sign --help
check "se sign --help" '^usage: edgeauth \[--se URI\] se sign' '--alg ALG'
ea --help
check "edgeauth --help lists se" '^  se '

# ---- delete -------------------------------------------------------------------
ea --se "$SEA" se delete --id $K
check "se delete" "^deleted $K\$"
ea --se "$SEA" se list
if [ "$RC" -eq 0 ] && ! grep -q "^$K " "$OUT"; then ok "the deleted key is no longer listed"; else bad "the deleted key is no longer listed"; fi

# ---- over a daemon (JRCP_v1 on a Unix socket) --------------------------------------
C=$T/c
SOCK=$T/se.sock
if timeout "$LIMIT" "$SE" init --state "$C" >/dev/null 2>"$ERR"; then
    "$SE" serve --state "$C" --listen "unix:$SOCK" 2>"$T/serve.err" &
    DAEMON=$!
    BG+=("$DAEMON")
    if wait_for "$T/serve.err" serving; then ok "edgeauth-se serve is up"; else RC=1; bad "edgeauth-se serve is up"; fi

    ea --se "unix:$SOCK" se info
    check "se info over unix:" '^applet version +7\.2\.' '^transport +jrcp-unix$' "^uri +unix:$SOCK\$"
    ea --se "unix:$SOCK" se keygen --id $K --curve P-256 --policy sign,read
    check "se keygen over unix:" "^generated EC P-256 key pair $K"
    ea --se "unix:$SOCK" se pubkey --id $K --pem --out "$T/dpub.pem"
    ea --se "unix:$SOCK" se sign --id $K --in "$T/dg256" --out "$T/dsig.der"
    if [ "$RC" -eq 0 ] && openssl pkeyutl -verify -pubin -inkey "$T/dpub.pem" -sigfile "$T/dsig.der" \
        -in "$T/dg256" >"$OUT" 2>"$ERR" && grep -q 'Signature Verified Successfully' "$OUT"; then
        ok "se sign over unix:, verified by openssl"
    else
        bad "se sign over unix:, verified by openssl"
    fi
    ea --se "unix:$SOCK" se attest --id $K --vendor-ca "$C/vendor/vendor-ca.pem"
    check "se attest over unix:" '^proven: '

    kill -TERM "$DAEMON"
    DRC=0
    for _ in $(seq 100); do
        kill -0 "$DAEMON" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$DAEMON" 2>/dev/null; then
        kill -KILL "$DAEMON"
        DRC=1
    fi
    wait "$DAEMON" 2>/dev/null || DRC=$?
    bg_forget "$DAEMON"
    RC=$DRC
    if [ "$DRC" -eq 0 ]; then ok "the daemon stops on SIGTERM"; else bad "the daemon stops on SIGTERM"; fi
else
    RC=1
    bad "edgeauth-se init --state $C"
fi


# ---- Platform SCP03 from the command line ------------------------------------------------
P=$T/scp-chip
run "$SE" init --state "$P" --scp03-keys default:SE050C1
check "edgeauth-se init --scp03-keys default:SE050C1 says the keys are the published ones" \
    'platform SCP03 +key version 0B, PUBLISHED default keys'
ea --se "emu:$P?scp03=default:SE050C1" se info
check "se info through SCP03 with NXP's SE050C1 keys" 'channel +Platform SCP03 \(C-MAC, C-DEC, R-MAC, R-ENC\)'
ea --se "emu:$P?scp03=default:SE050E" se info
check_fail "the wrong variant's keys fail at the handshake, saying why" 1 'card cryptogram does not match'
ea --se "emu:$P" se scp03 require
check_fail "se scp03 require without ?scp03= is refused before anything is sent" 1 'must travel through Platform SCP03'
ea --se "emu:$P?scp03=default:SE050C1" se scp03 require
check "se scp03 require through SCP03" 'refuses every command outside Platform SCP03'
ea --se "emu:$P" se list
check_fail "then a plain command is refused, with a hint" 1 'SW 6982.*|may require Platform SCP03'
ea --se "emu:$P?scp03=default:SE050C1" se scp03 release
check "se scp03 release" 'accepts plain commands again'
ea --se "emu:$P" se info
check "plain commands work again" 'channel +plain'
run "$SE" init --state "$T/scp-bad" --scp03-keys default:SE999
check_fail "an unknown variant is refused before a chip is made" 1 'unknown SE05x variant "SE999"'
assert "no chip directory left behind" test ! -e "$T/scp-bad/objects"
run "$SE" serve --state "$P" --timing se051
check_fail "serve --timing with an unknown model is a usage error" 2 'se050 or none'

finish
