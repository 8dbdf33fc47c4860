#!/usr/bin/env bash
# End to end tests of `edgeauth provision` and `edgeauth onboard`: the real
# binaries against real chips made by `edgeauth-se init`, in-process
# (emu:DIR) and over an `edgeauth-se serve` daemon (unix:PATH), with a CA
# made by `edgeauth ca init`. The openssl CLI judges the certificates that
# end up in the chips; jq reads the JSON outputs and the registry.
#
#   bash test_provision_cli.sh BIN_DIR      (BIN_DIR holds edgeauth and edgeauth-se)
#
# Prints one line per check and a final "N passed, M failed"; exits non-zero
# on any failure.
set -u

BIN=${1:?usage: test_provision_cli.sh BIN_DIR}
BIN=$(cd "$BIN" && pwd) || exit 1 # the tests run from their own directory
EA=$BIN/edgeauth
SE=$BIN/edgeauth-se
LIMIT=120 # seconds for any single command

unset EDGEAUTH_SE EDGEAUTH_SE_SEAL_KEY EDGEAUTH_PROVISION_CRASH_AT

source "$(dirname "$0")/lib.sh"
setup ea-prov-cli

reg_lines() { # reg_lines FILE DEVICE_ID
    [ -f "$1" ] || { echo 0; return; }
    jq -c --arg d "$2" 'select(.device_id == $d)' "$1" | wc -l
}

for tool in jq openssl; do
    if ! command -v $tool >/dev/null; then
        echo "0 passed, 1 failed ($tool is needed)"
        exit 1
    fi
done

cd "$T" || exit 1
PKI=$T/pki
REG=$PKI/registry.jsonl

# ---- set-up -----------------------------------------------------------------------
ea ca init --dir "$PKI" --org "Example OEM"
check "ca init" 'created the CA'
timeout "$LIMIT" "$SE" init --state "$T/c1" >"$OUT" 2>"$ERR"
RC=$?
check "edgeauth-se init c1"

# ---- usage errors -------------------------------------------------------------------
ea provision --device-id dev-1 --vendor-ca "$T/c1/vendor/vendor-ca.pem"
check_fail "provision without --ca is a usage error" 2 'ca PKI is required'
ea --se "emu:$T/c1" provision --ca "$PKI" --device-id dev-1
check_fail "provision without --vendor-ca nor --no-attestation" 2 'vendor-ca FILE is required'
ea provision --ca "$PKI" --batch zero --se-dir "$T/x"
check_fail "provision --batch zero" 2 'not a number of chips'
ea onboard --vendor-manifest x.json
check_fail "onboard without --vendor-ca / --ca" 2 'are required'

# ---- one chip, in-process ------------------------------------------------------------
ea --se "emu:$T/c1" provision --ca "$PKI" --device-id dev-1 --vendor-ca "$T/c1/vendor/vendor-ca.pem"
check "provision dev-1 (emu:)" '^provisioned dev-1 on chip [0-9a-f]{36}$' 'attestation verified' '^  certificate  serial [0-9A-F]+$'
ea --se "emu:$T/c1" se read --id 0xF0000101 --out "$T/dev1.der"
check "read the device certificate back from 0xF0000101"
ea --se "emu:$T/c1" se read --id 0x7B000101 --out "$T/inter.der"
check "read the intermediate back from 0x7B000101"
ea --se "emu:$T/c1" se read --id 0x7B000102 --out "$T/root.der"
check "read the root back from 0x7B000102"
openssl x509 -inform der -in "$T/dev1.der" -out "$T/dev1.pem" 2>"$ERR"
openssl x509 -inform der -in "$T/inter.der" -out "$T/inter.pem" 2>>"$ERR"
openssl x509 -inform der -in "$T/root.der" -out "$T/root.pem" 2>>"$ERR"
openssl verify -CAfile "$T/root.pem" -untrusted "$T/inter.pem" -purpose sslclient "$T/dev1.pem" >"$OUT" 2>>"$ERR"
RC=$?
check "openssl verify accepts the certificate and chain read from the SE" ': OK$'
assert "the root in the SE is the CA's root" cmp -s <(openssl x509 -in "$T/root.pem" -outform der) \
    <(openssl x509 -in "$PKI/root.pem" -outform der)
openssl x509 -in "$T/dev1.pem" -noout -subject -ext keyUsage,extendedKeyUsage >"$OUT" 2>"$ERR"
RC=$?
check "the certificate names the device and the OEM" 'CN ?= ?dev-1' 'O ?= ?Example OEM' 'TLS Web Client Authentication'
ea --se "emu:$T/c1" se pubkey --id 0xF0000100 --pem --out "$T/dev1-pub.pem"
check "the device key's public half is readable"
assert "the certificate certifies the key in the SE" cmp -s <(openssl x509 -in "$T/dev1.pem" -noout -pubkey) "$T/dev1-pub.pem"
ea --se "emu:$T/c1" se list
check "objects: key internal sign,read; certificates read-only" \
    '^0xF0000100 .* internal +sign,read$' '^0xF0000101 .* read$' '^0x7B000101 .* read$' '^0x7B000102 .* read$'
assert "one registry line for dev-1" [ "$(reg_lines "$REG" dev-1)" -eq 1 ]
assert "the registry line is complete" jq -e 'select(.device_id == "dev-1") | (.unique_id | test("^[0-9a-f]{36}$"))
    and (.serial | test("^[0-9A-F]+$")) and (.fingerprint | test("^[0-9a-f]{64}$")) and .source == "provisioned"
    and .attested == true and (.time | test("Z$"))' "$REG"
FP=$(openssl x509 -in "$T/dev1.pem" -outform der | openssl dgst -sha256 -r | cut -d' ' -f1)
assert "the registry fingerprint is the SHA-256 of the certificate in the SE" \
    [ "$(jq -r 'select(.device_id == "dev-1") | .fingerprint' "$REG")" = "$FP" ]

ea --se "emu:$T/c1" provision --ca "$PKI" --device-id dev-1 --vendor-ca "$T/c1/vendor/vendor-ca.pem" --json
check "rerun: already done (--json)" '"ok":true' '"already_done":true'
assert "still one registry line for dev-1" [ "$(reg_lines "$REG" dev-1)" -eq 1 ]
ea --se "emu:$T/c1" provision --ca "$PKI" --device-id dev-other --vendor-ca "$T/c1/vendor/vendor-ca.pem"
check_fail "the same chip under another id is refused" 1 'already registered as device dev-1'

# ---- attestation refusals ----------------------------------------------------------------
"$SE" init --state "$T/c2" >/dev/null 2>&1
ea --se "emu:$T/c2" provision --ca "$PKI" --device-id dev-2 --vendor-ca "$T/c1/vendor/vendor-ca.pem"
check_fail "another vendor's CA: refused" 1 'does not chain to the SE vendor CA'
ea --se "emu:$T/c2" provision --ca "$PKI" --device-id dev-2 --vendor-ca "$T/c1/vendor/vendor-ca.pem" --json
check_fail "refusal with --json" 1 'does not chain'
assert "--json refusal is a JSON object with ok:false" jq -e '.ok == false and (.error | test("chain"))' "$OUT"
assert "nothing registered for dev-2" [ "$(reg_lines "$REG" dev-2)" -eq 0 ]

"$SE" init --state "$T/c3" >/dev/null 2>&1
ea --se "emu:$T/c3" se keygen --id 0xF0000100 --curve P-256
check "a key made by hand with the default policy"
ea --se "emu:$T/c3" provision --ca "$PKI" --device-id dev-3 --vendor-ca "$T/c3/vendor/vendor-ca.pem"
check_fail "a key whose policy lets it be replaced is refused" 1 'could be replaced'
ea --se "emu:$T/c3" provision --ca "$PKI" --device-id dev-3 --no-attestation
check "--no-attestation provisions it anyway" '^provisioned dev-3' 'NOT attested'
ea ca audit --dir "$PKI"
check "--no-attestation is in the audit log" '"event":"provision_no_attestation".*"device":"dev-3"'
ea ca audit --dir "$PKI" --verify
check "the audit log's chain is intact" 'OK'
assert "registry says dev-3 is not attested" jq -e 'select(.device_id == "dev-3") | .attested == false' "$REG"

# ---- crash after a step, then rerun ------------------------------------------------------------
for step in key attest csr issue cert intermediate root registry; do
    "$SE" init --state "$T/k-$step" >/dev/null 2>&1
    EDGEAUTH_PROVISION_CRASH_AT=$step timeout "$LIMIT" "$EA" --se "emu:$T/k-$step" provision --ca "$PKI" \
        --device-id "k-$step" --vendor-ca "$T/k-$step/vendor/vendor-ca.pem" >"$OUT" 2>"$ERR"
    RC=$?
    if [ "$RC" -ne 99 ]; then bad "crash hook at $step"; continue; fi
    if [ "$step" = registry ]; then want=1; else want=0; fi
    if [ "$(reg_lines "$REG" "k-$step")" -ne "$want" ]; then RC=1; bad "after a crash at $step: no half entry"; fi
    ea --se "emu:$T/k-$step" provision --ca "$PKI" --device-id "k-$step" \
        --vendor-ca "$T/k-$step/vendor/vendor-ca.pem" --json
    if [ "$step" = registry ]; then
        check "crash after $step, rerun: already done" '"already_done":true'
    else
        check "crash after $step, rerun completes" '"already_done":false'
    fi
    if [ "$(reg_lines "$REG" "k-$step")" -ne 1 ]; then RC=1; bad "after a crash at $step: exactly one registry line"; fi
done
ea ca show --dir "$PKI" --json
assert "exactly one active certificate per provisioned device (3 + 8 crash cases)" \
    jq -e '.devices_active == 10 and .devices_revoked == 0' "$OUT"

# ---- over a daemon ----------------------------------------------------------------------------
"$SE" init --state "$T/cd" >/dev/null 2>&1
SOCK=$T/se.sock
"$SE" serve --state "$T/cd" --listen "unix:$SOCK" 2>"$T/serve.err" &
DAEMON=$!
BG+=("$DAEMON")
wait_for "$T/serve.err" serving
ea --se "unix:$SOCK" provision --ca "$PKI" --device-id dev-daemon --vendor-ca "$T/cd/vendor/vendor-ca.pem"
check "provision over edgeauth-se serve (unix:)" '^provisioned dev-daemon'
ea --se "unix:$SOCK" se read --id 0xF0000101 --out "$T/dd.der"
check "read back over unix:"
openssl x509 -inform der -in "$T/dd.der" -out "$T/dd.pem" 2>"$ERR"
openssl verify -CAfile "$PKI/root.pem" -untrusted "$PKI/intermediate.pem" "$T/dd.pem" >"$OUT" 2>>"$ERR"
RC=$?
check "openssl verify: the daemon's chip holds a good certificate" ': OK$'
kill -TERM "$DAEMON" 2>/dev/null
wait "$DAEMON" 2>/dev/null
bg_forget "$DAEMON"

# ---- batch and manifest ---------------------------------------------------------------------
ea provision --batch 4 --se-dir "$T/line" --ca "$PKI" --manifest "$T/m.json" --id-prefix line-
check "batch of 4 (plain lines when not a TTY)" '^line-0001 .*chip-0001 [0-9a-f]{36} [0-9A-F]+ provisioned$' \
    '^4 chips in .*: 4 created' 'manifest .*: 4 signed entries'
assert "4 registry lines" [ "$(jq -c 'select(.device_id | startswith("line-"))' "$REG" | wc -l)" -eq 4 ]
assert "the manifest is a JSON array of 4 flattened JWS" jq -e 'length == 4 and all(.[]; has("payload")
    and has("protected") and has("signature") and (.header | has("uniqueId")))' "$T/m.json"
assert "protected header: ES256, kid, x5t#S256" jq -e '.[0].protected | gsub("-";"+") | gsub("_";"/")
    | . + ("==" | .[0:((4 - (length % 4)) % 4)]) | @base64d | fromjson
    | .alg == "ES256" and (.kid | length > 0) and (.["x5t#S256"] | length == 43)' "$T/m.json"
assert "payload: uniqueId, deviceId, publicKeySet with a 3-certificate x5c" jq -e '.[0].payload | gsub("-";"+")
    | gsub("_";"/") | . + ("==" | .[0:((4 - (length % 4)) % 4)]) | @base64d | fromjson
    | .version == 1 and .deviceId == "line-0001" and (.uniqueId | test("^[0-9a-f]+$"))
    and (.publicKeySet.keys[0] | .kty == "EC" and .crv == "P-256" and .kid == "0xF0000100" and (.x5c | length == 3))' \
    "$T/m.json"
ea provision --verify-manifest "$T/m.json" --ca "$PKI"
check "the manifest verifies" '^ok line-0004 ' 'manifest .*: 4 entries verified'
sed 's/"signature":"A/"signature":"B/; t; s/"signature":"./"signature":"A/' "$T/m.json" >"$T/m-sig.json"
ea provision --verify-manifest "$T/m-sig.json" --ca "$PKI"
check_fail "a manifest with a signature byte changed is refused" 1 'signature does not verify'
jq -c '.[0].payload |= (.[0:30] + (if .[30:31] == "A" then "B" else "A" end) + .[31:])' "$T/m.json" >"$T/m-pay.json"
ea provision --verify-manifest "$T/m-pay.json" --ca "$PKI"
check_fail "a manifest with a payload byte changed is refused" 1 'signature does not verify'
ea ca init --dir "$T/pki-other" --org "Other OEM"
ea provision --verify-manifest "$T/m.json" --ca "$T/pki-other"
check_fail "a manifest checked against another OEM's signer is refused" 1 'kid does not name'
ea provision --batch 4 --se-dir "$T/line" --ca "$PKI" --manifest "$T/m2.json" --id-prefix line- --json
check "batch rerun: nothing to do" '"created":0' '"already_done":4'
assert "still 4 registry lines" [ "$(jq -c 'select(.device_id | startswith("line-"))' "$REG" | wc -l)" -eq 4 ]
EDGEAUTH_PROVISION_CRASH_AT=issue@2 timeout "$LIMIT" "$EA" provision --batch 3 --se-dir "$T/line3" --ca "$PKI" \
    --manifest "$T/m3.json" --id-prefix l3- >"$OUT" 2>"$ERR"
RC=$?
assert "a batch killed at the 2nd issuance stops (exit 99), no manifest" [ "$RC" -eq 99 -a ! -e "$T/m3.json" ]
ea provision --batch 3 --se-dir "$T/line3" --ca "$PKI" --manifest "$T/m3.json" --id-prefix l3-
check "the rerun of the killed batch completes" '3 chips in .*: 0 created' '2 provisioned, 1 already done'
ea provision --verify-manifest "$T/m3.json" --ca "$PKI"
check "its manifest verifies" '3 entries verified'

# ---- onboarding pre-provisioned chips -------------------------------------------------------
mkdir -p "$T/pre"
"$SE" init --state "$T/pre/chip-1" --vendor-ca "$T/v1" --preprovision >/dev/null 2>&1
"$SE" init --state "$T/pre/chip-2" --vendor-ca "$T/v1" --preprovision >/dev/null 2>&1
"$SE" init --state "$T/pre/chip-3" --vendor-ca "$T/v2" --preprovision >/dev/null 2>&1
ea onboard --make-vendor-manifest --se-dir "$T/pre" --vendor-ca-dir "$T/v1" --out "$T/vm.json"
check "the vendor signs a manifest of its 2 chips" '2 signed entries' 'left out: .*chip-3'
ea onboard --vendor-manifest "$T/vm.json" --vendor-ca "$T/v1/vendor-ca.pem" --se-dir "$T/pre" --ca "$PKI"
check_fail "onboard: 2 accepted, the other vendor's chip refused (exit 1)" 1 '1 chip refused'
assert "onboard output" grep -qE '^2 accepted, 1 refused$' "$OUT"
assert "onboard names the refused chip and why" grep -qE '^refused  emu:.*chip-3: attestation refused' "$OUT"
assert "2 registry lines with source manifest" \
    [ "$(jq -c 'select(.source == "manifest" and .attested == true)' "$REG" | wc -l)" -eq 2 ]
ea onboard --vendor-manifest "$T/vm.json" --vendor-ca "$T/v1/vendor-ca.pem" --se-dir "$T/pre/chip-1" --ca "$PKI" --json
check "onboard again: already registered (--json)" '"accepted":1' '"already_done":true'
assert "still 2 manifest lines" [ "$(jq -c 'select(.source == "manifest")' "$REG" | wc -l)" -eq 2 ]
ea onboard --vendor-manifest "$T/vm.json" --vendor-ca "$T/v2/vendor-ca.pem" --se-dir "$T/pre" --ca "$PKI"
check_fail "a vendor manifest checked against another vendor CA is refused" 1 'kid does not name'

finish
