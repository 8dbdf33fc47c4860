#!/usr/bin/env bash
# End to end tests of `edgeauth ca ...`: the real binary, CSRs made by
# `openssl req`, and the openssl CLI (verify, crl, x509) as the judge. Also a
# CA whose intermediate key lives in an emulated SE (edgeauth-se init).
# Every command has a time limit; every temporary file lives under one
# directory that is removed at the end.
#
#   bash test_ca_cli.sh BIN_DIR        (BIN_DIR holds edgeauth and edgeauth-se)
#
# Prints one line per check and a final "N passed, M failed"; exits non-zero
# on any failure.
set -u

BIN=${1:?usage: test_ca_cli.sh BIN_DIR}
BIN=$(cd "$BIN" && pwd) || exit 1 # the tests run from a temporary directory
EA=$BIN/edgeauth
SE=$BIN/edgeauth-se
LIMIT=120 # seconds for any single command

unset EDGEAUTH_SE EDGEAUTH_SE_SEAL_KEY EDGEAUTH_CA_LOCK_WAIT_MS

source "$(dirname "$0")/lib.sh"
setup ea-ca-cli
cd "$T" || exit 1

csr() { # csr FILE CN [openssl req key options...]
    local f=$1 cn=$2
    shift 2
    openssl req -new -nodes -keyout "$f.key" -subj "/CN=$cn" -out "$f" "$@" 2>/dev/null
}

verify() { # verify DIR CERT [more openssl verify options]: output in $OUT
    local d=$1 c=$2
    shift 2
    run openssl verify -x509_strict "$@" -CAfile "$d/root.pem" -untrusted "$d/intermediate.pem" "$c"
}

# ---- init ----------------------------------------------------------------------
P=$T/pki
ea ca init --dir "$P" --org "Example OEM"
check "ca init" "created the CA in" "root .*P-384" "intermediate .*pathlen 0"
assert "ca init: keys are 0600" test "$(stat -c %a "$P/root.key" "$P/intermediate.key" "$P/manifest.key" | sort -u)" = 600
assert "ca init: the files of the layout" test -f "$P/ca.json" -a -f "$P/root.pem" -a -f "$P/intermediate.pem" \
    -a -f "$P/manifest.pem" -a -f "$P/crl.pem" -a -f "$P/root-crl.pem" -a -f "$P/audit.log" -a -f "$P/audit.head" \
    -a -f "$P/issued/certs.der"
run openssl x509 -in "$P/intermediate.pem" -noout -text
check "intermediate: CA:TRUE pathlen 0, critical KU, name constraints O=<org>" "CA:TRUE, pathlen:0" \
    "Name Constraints: critical" "DirName:O = Example OEM" "Certificate Sign, CRL Sign"
verify "$P" "$P/intermediate.pem"
check "openssl verify: the intermediate under the root" ": OK"

ea ca init --dir "$P" --org "Other"
check_fail "ca init on an existing CA is refused" 1 "already holds a CA"
mkdir -p "$T/notempty" && touch "$T/notempty/x"
ea ca init --dir "$T/notempty" --org "Example OEM"
check_fail "ca init in a non-empty directory is refused" 1 "not empty"
ea ca init --dir "$T/x"
check_fail "ca init without --org: usage" 2 "--org is required"
ea ca init --dir "$T/x" --org O --device-days abc
check_fail "ca init --device-days abc: usage" 2 "number of days"
ea ca init --dir "$T/x" --org O --device-id-pattern "("
check_fail "ca init with a bad pattern" 1 "pattern"
assert "a refused init leaves nothing behind" test ! -e "$T/x"

# ---- server certificate -----------------------------------------------------------
ea ca server-cert --dir "$P" --cn cloud.example.com --san DNS:localhost,IP:127.0.0.1 --out-key "$T/s.key" \
    --out-cert "$T/s.pem"
check "ca server-cert" "EKU serverAuth"
verify "$P" "$T/s.pem" -purpose sslserver -verify_hostname localhost
check "openssl verify -purpose sslserver (localhost)" ": OK"
verify "$P" "$T/s.pem" -purpose sslserver -verify_ip 127.0.0.1
check "openssl verify -purpose sslserver (127.0.0.1)" ": OK"
verify "$P" "$T/s.pem" -purpose sslserver -verify_hostname cloud.example.com
check "openssl verify: the CN is a SAN entry too" ": OK"
verify "$P" "$T/s.pem" -purpose sslclient
assert "the server certificate is no client certificate" test "$RC" -ne 0
assert "server key is 0600" test "$(stat -c %a "$T/s.key")" = 600
ea ca server-cert --dir "$P" --cn cloud.example.com --san FTP:x
check_fail "server-cert with a bad SAN" 1 "expected DNS:name or IP:address"

# ---- issuance ---------------------------------------------------------------------------
csr "$T/d1.csr" dev-0001 -newkey ec -pkeyopt ec_paramgen_curve:P-256
ea ca issue --dir "$P" --csr "$T/d1.csr" --out "$T/d1.pem"
check "ca issue (openssl req CSR, PEM)" "issued CN=dev-0001,O=Example OEM" "not after 9999-12-31T23:59:59Z"
verify "$P" "$T/d1.pem" -purpose sslclient
check "openssl verify -purpose sslclient accepts the device certificate" ": OK"
run openssl x509 -in "$T/d1.pem" -noout -text
check "device profile: KU, EKU, CA:FALSE, SKI/AKI" "Digital Signature" "TLS Web Client Authentication" \
    "CA:FALSE" "Subject Key Identifier" "Authority Key Identifier" "Subject: O = Example OEM, CN = dev-0001"

# a CSR asking for CA:TRUE and a SAN gets neither
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$T/d2.key" -subj "/CN=dev-0002" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "subjectAltName=DNS:evil.example" -out "$T/d2.csr" 2>/dev/null
openssl req -in "$T/d2.csr" -outform DER -out "$T/d2.der"
ea ca issue --dir "$P" --csr "$T/d2.der" --out "$T/d2.pem" --device-id dev-0002 --note "line 4"
check "ca issue (DER CSR asking for CA:TRUE and a SAN)" "dev-0002"
run openssl x509 -in "$T/d2.pem" -noout -text
if grep -q "CA:TRUE\|evil.example" "$OUT"; then bad "no extension copied from the CSR"; else ok "no extension copied from the CSR"; fi

ea ca issue --dir "$P" --csr "$T/d1.csr" --out "$T/dup.pem"
check_fail "duplicate active device id refused" 1 "already has an active certificate"
csr "$T/p384.csr" dev-0003 -newkey ec -pkeyopt ec_paramgen_curve:P-384
ea ca issue --dir "$P" --csr "$T/p384.csr" --out "$T/x.pem"
check_fail "P-384 CSR refused" 1 "P-384.*requires EC P-256"
csr "$T/rsa.csr" dev-0004 -newkey rsa:2048
ea ca issue --dir "$P" --csr "$T/rsa.csr" --out "$T/x.pem"
check_fail "RSA CSR refused" 1 "key is RSA"
csr "$T/cn.csr" ".bad-id" -newkey ec -pkeyopt ec_paramgen_curve:P-256
ea ca issue --dir "$P" --csr "$T/cn.csr" --out "$T/x.pem"
check_fail "CN outside the device-id pattern refused" 1 "does not match the pattern"
csr "$T/d5.csr" dev-0005 -newkey ec -pkeyopt ec_paramgen_curve:P-256
ea ca issue --dir "$P" --csr "$T/d5.csr" --out "$T/x.pem" --device-id dev-0006
check_fail "CN other than --device-id refused" 1 "is not the device id"
openssl req -in "$T/d5.csr" -outform DER -out "$T/d5.der"
python3 - "$T/d5.der" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[-5] ^= 1
open(p, "wb").write(bytes(b))
EOF
ea ca issue --dir "$P" --csr "$T/d5.der" --out "$T/x.pem"
check_fail "tampered CSR signature refused" 1 "bad CSR signature"
echo "not a csr" >"$T/junk.csr"
ea ca issue --dir "$P" --csr "$T/junk.csr" --out "$T/x.pem"
check_fail "garbage refused" 1 "malformed CSR"
ea ca issue --dir "$P" --out "$T/x.pem"
check_fail "issue without --csr: usage" 2 "--csr is required"
assert "no certificate written on refusal" test ! -e "$T/x.pem"

ea ca export --dir "$P" dev-0001
check "ca export by device id" "BEGIN CERTIFICATE"
assert "ca export gives the issued certificate" cmp -s "$OUT" "$T/d1.pem"

# ---- revocation and CRL --------------------------------------------------------------------
SERIAL1=$(openssl x509 -in "$T/d1.pem" -noout -serial | cut -d= -f2)
ea ca revoke --dir "$P" dev-0001
check "ca revoke by device id" "revoked dev-0001"
ea ca crl --dir "$P" --days 7
check "ca crl --days 7" "1 revoked"
run openssl crl -in "$P/crl.pem" -noout -text
check "openssl crl -text shows the serial and nextUpdate" "Serial Number: $SERIAL1" "Next Update" \
    "Issuer: O = Example OEM, CN = Example OEM Device CA"
verify "$P" "$T/d1.pem" -crl_check_all -CRLfile "$P/crl.pem"
if [ "$RC" -ne 0 ] && grep -q "certificate revoked" "$OUT" "$ERR"; then ok "openssl verify -crl_check_all: revoked"; else bad "openssl verify -crl_check_all: revoked"; fi
verify "$P" "$T/d2.pem" -crl_check_all -CRLfile "$P/crl.pem"
check "openssl verify -crl_check_all: another device still OK" ": OK"
ea ca revoke --dir "$P" dev-0001
check_fail "revoking again: nothing active" 1 "no certificate"
SERIAL2=$(openssl x509 -in "$T/d2.pem" -noout -serial | cut -d= -f2)
ea ca revoke --dir "$P" "0x$SERIAL2"
check "ca revoke by serial" "revoked"
ea ca issue --dir "$P" --csr "$T/d1.csr" --out "$T/d1b.pem"
check "the same device id again after revocation" "dev-0001"
ea ca revoke --dir "$P"
check_fail "revoke without a target: usage" 2 "SERIAL or DEVICE-ID"

ea ca show --dir "$P" --json
check "ca show --json" '"devices_active":1' '"devices_revoked":2' '"server_certs":1'

# ---- audit log ------------------------------------------------------------------------------
ea ca audit --dir "$P" --verify
check "ca audit --verify" "audit log OK: [0-9]+ lines"
ea ca audit --dir "$P"
check "ca audit prints the log" '"event":"init"' '"event":"issue"' '"event":"revoke"' '"note":"line 4"'
cp "$P/audit.log" "$T/audit.bak"
sed -i '3s/"time":"2/"time":"1/' "$P/audit.log"
ea ca audit --dir "$P" --verify
check_fail "an edited line is named" 1 "line 3 was edited"
cp "$T/audit.bak" "$P/audit.log"
sed -i '4d' "$P/audit.log"
ea ca audit --dir "$P" --verify --json
if [ "$RC" -eq 1 ] && grep -q '"result":"bad"' "$OUT" && grep -q "line 4: seq 5" "$OUT"; then ok "a deleted line is named (--json)"; else bad "a deleted line is named (--json)"; fi
cp "$T/audit.bak" "$P/audit.log"
sed -i '3{h;d};4G' "$P/audit.log"
ea ca audit --dir "$P" --verify
check_fail "swapped lines are named" 1 "line 3: seq 4"
cp "$T/audit.bak" "$P/audit.log"
sed -i '$d' "$P/audit.log"
ea ca audit --dir "$P" --verify
check_fail "a deleted last line is named (audit.head)" 1 "missing"
ea ca issue --dir "$P" --csr "$T/d5.csr" --out "$T/x.pem"
check_fail "the CA refuses to append to a truncated log" 1 "cannot open the CA.*lines were removed"
cp "$T/audit.bak" "$P/audit.log"
ea ca audit --dir "$P" --verify
check "restored log verifies" "audit log OK"
if grep -q "PRIVATE" "$P/audit.log" "$P/ca.json" "$P/issued/index.journal"; then bad "no key material outside the key files"; else ok "no key material outside the key files"; fi

# ---- revoking the intermediate ----------------------------------------------------------------
ea ca revoke --dir "$P" --intermediate
check "ca revoke --intermediate" "revoked the intermediate"
ISERIAL=$(openssl x509 -in "$P/intermediate.pem" -noout -serial | cut -d= -f2)
run openssl crl -in "$P/root-crl.pem" -noout -text
check "the root's CRL lists the intermediate" "Serial Number: $ISERIAL"
verify "$P" "$T/d1b.pem" -crl_check_all -CRLfile "$P/crl.pem"
if [ "$RC" -ne 0 ] && grep -q "revoked" "$OUT" "$ERR"; then ok "devices under a revoked intermediate fail"; else bad "devices under a revoked intermediate fail"; fi
ea ca issue --dir "$P" --csr "$T/d5.csr" --out "$T/x.pem"
check_fail "no issuance once the intermediate is revoked" 1 "intermediate CA is revoked"

# ---- the intermediate's key in a secure element ------------------------------------------------
CHIP=$T/chip
run "$SE" init --state "$CHIP"
check "edgeauth-se init" ""
export EDGEAUTH_SE=emu:$CHIP
PS=$T/pki-se
ea ca init --dir "$PS" --org "Example OEM" --ca-key se05x:0x7D000001 --device-days 3650
check "ca init --ca-key se05x:0x7D000001" "key: se05x:0x7D000001\?se=emu:"
assert "no intermediate key file" test ! -e "$PS/intermediate.key"
ea ca issue --dir "$PS" --csr "$T/d5.csr" --out "$T/se-d5.pem"
check "ca issue with the SE-held key" "dev-0005"
verify "$PS" "$T/se-d5.pem" -purpose sslclient
check "openssl verify accepts what the SE-held key signed" ": OK"
ea ca crl --dir "$PS"
check "a CRL signed in the SE" "0 revoked"
run openssl crl -in "$PS/crl.pem" -noout -CAfile "$PS/intermediate.pem" -verify
if grep -q "verify OK" "$OUT" "$ERR"; then ok "openssl crl -verify: the SE's CRL signature"; else bad "openssl crl -verify: the SE's CRL signature"; fi
run "$EA" se list
check "the CA key is in the chip" "7D000001"
ea ca init --dir "$T/pki-se2" --org "Example OEM" --ca-key se05x:0x7D000001
check_fail "the same SE object twice is refused" 1 "already exists"
unset EDGEAUTH_SE
# the SE URI was recorded at init: the CA works without EDGEAUTH_SE
ea ca issue --dir "$PS" --csr "$T/d2.csr" --out "$T/se-d2.pem"
check "the CA finds its SE without EDGEAUTH_SE" "dev-0002"
ea --se "emu:$CHIP" ca init --dir "$T/pki-se3" --org "Example OEM" --ca-key se05x:0x7D000002
check "edgeauth --se URI ca init --ca-key se05x:ID" "se05x:0x7D000002\?se=emu:"
ea ca audit --dir "$PS" --verify
check "audit log of the SE-keyed CA" "audit log OK"

finish
