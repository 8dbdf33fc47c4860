/* edgeauth — PKI: the OEM CA hierarchy, device certificate issuance under a
 * fixed profile, the hash-chained audit log, chain verification, and the
 * factory provisioning flows.
 *
 * A CA directory (PKI) holds (see docs/PKI.md):
 *   ca.json              configuration: organisation, validity, device-id pattern, key locations
 *   root.pem             root CA certificate (P-384, self-signed)
 *   intermediate.pem     OEM intermediate CA (P-256, pathlen:0, name constraints on O=<org>)
 *   root.key, intermediate.key   0600 PEM files, unless the key is in an SE (se05x:0x... URI)
 *   issued/              certs.der (every issued certificate, DER, append-only) and the index
 *                        (index.txt + index.journal: status, kind, serial, notAfter, where in certs.der, name)
 *   crl.pem              the intermediate's CRL, then the root's (edgeauth ca crl); root-crl.pem
 *   audit.log            append-only JSON lines, each with the SHA-256 of the previous line;
 *                        audit.head holds the seq and SHA-256 of the last line
 *   manifest.key/.pem    the manifest-signing key and certificate (signed manifests)
 * OpenSSL types appear in this header: OpenSSL 3 is a hard dependency. */
#ifndef EDGEAUTH_PKI_H
#define EDGEAUTH_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#include "edgeauth/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the CA ---------------------------------------------------------------- */

typedef struct ea_ca ea_ca;

typedef struct ea_ca_init_opts {
    const char *org;              /* O= of the CAs and of every device certificate (required) */
    const char *ca_key_uri;       /* NULL: intermediate key in a 0600 file; "se05x:0x...[?se=URI]":
                                   * generated and kept in a secure element through the provider */
    unsigned root_days;           /* 0 = 7300 */
    unsigned intermediate_days;   /* 0 = 3650 */
    unsigned device_days;         /* 0 = notAfter 99991231235959Z (RFC 5280 "no expiry") */
    const char *device_id_pattern; /* POSIX extended regex the subject CN must match;
                                    * NULL = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$" */
    unsigned crl_days;            /* nextUpdate of the intermediate's CRL; 0 = 30 */
    unsigned server_days;         /* validity of server certificates; 0 = 825 */
} ea_ca_init_opts;

/* Create a new CA hierarchy in dir (refuses an existing one). */
ea_err ea_ca_init(const char *dir, const ea_ca_init_opts *o, char *err, size_t errlen);
/* Open a CA (takes an flock on dir while open). */
ea_err ea_ca_open(const char *dir, ea_ca **out, char *err, size_t errlen);
void ea_ca_close(ea_ca *ca);

X509 *ea_ca_root(const ea_ca *ca);         /* borrowed */
X509 *ea_ca_intermediate(const ea_ca *ca); /* borrowed */

/* Issue a device certificate for a CSR (DER or PEM). The CA verifies the
 * CSR's signature, requires a P-256 key, a subject CN matching the
 * device-id pattern (and equal to device_id when not NULL), no active
 * certificate for the same device id; then applies the fixed device profile
 * (KU digitalSignature critical, EKU clientAuth, CA:FALSE critical,
 * SKI/AKI, subject O=<org>, CN=<device id>, random 128-bit serial (126
 * random bits, positive) unique in this CA, validity from the configuration) and copies nothing from the
 * CSR but the public key and CN. A refusal is EA_ERR_DENIED with the
 * reason in err (policy: key type/curve, CN, duplicate active id, revoked
 * intermediate), except a CSR that does not parse (EA_ERR_MALFORMED) and
 * one whose signature does not verify (EA_ERR_AUTH); err always says which.
 * note (may be NULL) goes into the audit line.
 * On EA_OK *cert is the new certificate (X509_free it). */
ea_err ea_ca_issue_device(ea_ca *ca, const uint8_t *csr, size_t csr_len, const char *device_id,
                          const char *note, X509 **cert, char *err, size_t errlen);

/* A server certificate (EKU serverAuth) for the cloud with a new P-256
 * key; san is a comma list "DNS:name,IP:1.2.3.4". Writes key (0600) and
 * certificate PEM files at the given paths. */
ea_err ea_ca_issue_server(ea_ca *ca, const char *cn, const char *san, const char *key_path,
                          const char *cert_path, char *err, size_t errlen);

/* Revoke by serial (hex) or device id; updates the index, audit log, CRL. */
ea_err ea_ca_revoke(ea_ca *ca, const char *serial_or_device_id, char *err, size_t errlen);
/* nextUpdate of the CRLs this session writes (days; 0 = the configured
 * crl_days). */
ea_err ea_ca_set_crl_days(ea_ca *ca, unsigned days);
/* Write a fresh CRL (PEM) to dir/crl.pem and return it (X509_CRL_free).
 * crl.pem holds the intermediate's CRL first, then the root's (needed for
 * X509_V_FLAG_CRL_CHECK_ALL); the root's is re-signed when dir/root.key is
 * present, else kept from dir/root-crl.pem. */
ea_err ea_ca_crl(ea_ca *ca, X509_CRL **crl, char *err, size_t errlen);
/* Is a device id currently issued and not revoked? */
bool ea_ca_device_active(ea_ca *ca, const char *device_id);
/* The active certificate of a device id (X509_free it): what a rerun of a
 * provisioning that crashed after issuance needs. EA_ERR_NOT_FOUND if none. */
ea_err ea_ca_device_cert(ea_ca *ca, const char *device_id, X509 **cert);
/* Any certificate this CA issued, by serial (hex, revoked ones too), else
 * by active device id (X509_free it). EA_ERR_NOT_FOUND if none. */
ea_err ea_ca_find_cert(ea_ca *ca, const char *serial_or_device_id, X509 **cert);
/* The organisation (O=) of this CA. */
const char *ea_ca_org(const ea_ca *ca);
/* A summary for tools (`edgeauth ca show`); strings borrowed from ca. */
typedef struct ea_ca_info {
    size_t devices_active, devices_revoked, server_certs;
    uint64_t audit_lines;
    unsigned device_days, server_days, crl_days; /* device_days 0 = no expiry */
    const char *device_id_pattern;
    const char *intermediate_key; /* "file" or the se05x: URI */
    bool intermediate_revoked;
} ea_ca_info;
void ea_ca_get_info(const ea_ca *ca, ea_ca_info *out);
/* The manifest-signing key (dir/manifest.key) and its certificate
 * (dir/manifest.pem, issued by the intermediate, KU digitalSignature, EKU
 * codeSigning). New references: EVP_PKEY_free / X509_free them. */
ea_err ea_ca_manifest_signer(ea_ca *ca, EVP_PKEY **key, X509 **cert, char *err, size_t errlen);

/* Batch mode: between begin and end, issuances and revocations do not fsync
 * issued/certs.der, the index journal or the audit log one by one;
 * ea_ca_batch_end (or ea_ca_close) syncs them all at once. Durability
 * trade-off: a crash inside a batch can lose the CA's record of
 * certificates issued in that batch (docs/PKI.md). */
ea_err ea_ca_batch_begin(ea_ca *ca);
ea_err ea_ca_batch_end(ea_ca *ca);

/* Append one audit line {"seq":N,"time":...,"event":...,...,"prev":"<sha256 of previous line>"}.
 * fields_json is a JSON object body without braces, e.g. "\"device\":\"dev-1\"" (may be NULL). */
ea_err ea_ca_audit(ea_ca *ca, const char *event, const char *fields_json);
/* Check the chain of the audit log in dir: every line's prev is the hash of
 * the line before. On failure, err names the first bad line. */
ea_err ea_ca_audit_verify(const char *dir, size_t *lines, char *err, size_t errlen);

/* ---- chain verification (device, cloud and tools alike) ------------------------ */

typedef enum ea_verify_reason {
    EA_VERIFY_OK = 0,
    EA_VERIFY_UNKNOWN_CA,      /* no path to a trust anchor */
    EA_VERIFY_EXPIRED,
    EA_VERIFY_NOT_YET_VALID,
    EA_VERIFY_REVOKED,
    EA_VERIFY_NAME_CONSTRAINT,
    EA_VERIFY_BAD_PURPOSE,     /* EKU / key usage / basicConstraints */
    EA_VERIFY_NAME_MISMATCH,   /* peer name (DNS/IP) does not match */
    EA_VERIFY_BAD_SIGNATURE,
    EA_VERIFY_POLICY,          /* key type, algorithm or depth outside our profile */
    EA_VERIFY_MALFORMED,
    EA_VERIFY_OTHER,
} ea_verify_reason;

/* Short token for logs and audit events: "unknown_ca", "expired", ... */
const char *ea_verify_reason_str(ea_verify_reason r);

typedef enum ea_verify_role {
    EA_VERIFY_CLIENT, /* a device's certificate (EKU clientAuth) */
    EA_VERIFY_SERVER, /* the cloud's certificate (EKU serverAuth) */
} ea_verify_role;

typedef struct ea_verify_opts {
    STACK_OF(X509) *trusted;       /* trust anchors (required) */
    STACK_OF(X509) *untrusted;     /* intermediates offered by the peer (may be NULL) */
    STACK_OF(X509_CRL) *crls;      /* when not NULL: CRL checks on the whole chain */
    ea_verify_role role;
    const char *peer_dns;          /* server role: expected DNS name (or NULL) */
    const char *peer_ip;           /* server role: expected IP address (or NULL) */
    time_t at;                     /* 0 = now */
    int max_depth;                 /* 0 = no limit beyond OpenSSL's */
} ea_verify_opts;

/* Verify leaf against the options. EA_OK, or EA_ERR_AUTH with *reason set
 * and detail (if not NULL) a one-line explanation. Beyond OpenSSL's checks
 * (X509_V_FLAG_X509_STRICT, no partial chains) it applies our profile to the
 * whole chain: keys EC P-256/P-384, ECDSA with SHA-256/384, the leaf not a
 * CA and its EKU naming the role's purpose; see docs/PKI.md §9. */
ea_err ea_pki_verify_chain(X509 *leaf, const ea_verify_opts *o, ea_verify_reason *reason, char *detail,
                           size_t detail_len);

/* ---- provisioning (the factory station) --------------------------------------- */

typedef struct ea_provision_opts {
    const char *se_uri;         /* the chip (NULL = host library default) */
    const char *ca_dir;         /* the OEM PKI */
    const char *device_id;      /* the CN to certify */
    const char *vendor_ca_pem;  /* SE vendor CA for the attestation check (NULL = skip only if no_attestation) */
    bool no_attestation;        /* recorded in the audit log */
    const char *registry_path;  /* JSON lines the cloud imports (NULL = <ca_dir>/registry.jsonl) */
    bool allow_delete;          /* device key policy gets ALLOW_DELETE */
} ea_provision_opts;

typedef struct ea_provision_result {
    char device_id[80];
    char unique_id[40];     /* SE unique id, hex */
    char serial[48];        /* certificate serial, hex */
    char fingerprint[72];   /* SHA-256 of the certificate DER, hex */
    bool already_done;      /* a rerun found everything in place */
} ea_provision_result;

/* The whole flow: key generated in the SE (0xF0000100), public key read
 * with attestation and checked against the vendor CA, CSR signed by the SE
 * key through the provider, certificate issued, certificate and chain
 * written back (0xF0000101, 0x7B000101, 0x7B000102) and read back, device
 * recorded in the registry. Idempotent: a rerun completes what a crash
 * left undone. */
ea_err ea_provision_device(const ea_provision_opts *o, ea_provision_result *res, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
