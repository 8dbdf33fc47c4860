/* edgeauth — signed manifests and the provisioning station.
 *
 * A manifest is what a factory hands to the cloud: one signed entry per
 * chip (unique id, device id, public key, certificate chain), in the
 * spirit of Microchip's Trust&GO manifests. It is a JSON array; every entry
 * is a JWS (RFC 7515) in flattened JSON serialization:
 *
 *   { "protected": b64url({"alg":"ES256","kid":b64url(SKI of the signer cert),
 *                          "x5t#S256":b64url(SHA-256 of the signer cert DER)}),
 *     "header":    { "uniqueId": "<hex>" },                // search aid only
 *     "payload":   b64url({"version":1,"uniqueId":..,"deviceId":..,
 *                          "provisioningTimestamp":"<RFC 3339>","provisioner":{..},
 *                          "publicKeySet":{"keys":[{"kty":"EC","crv":"P-256",
 *                              "x":..,"y":..,"kid":"0xF0000100",
 *                              "x5c":[device, intermediate, root (base64 DER)]}]}}),
 *     "signature": b64url(r || s) }                        // ES256: 64 bytes, not DER
 *
 * The OEM signs its manifests with PKI/manifest.key (certificate
 * PKI/manifest.pem); an SE vendor signs the manifest of pre-provisioned
 * chips with its CA key. docs/PROVISIONING.md has an example.
 *
 * The station functions run the factory flows of pki.h
 * (ea_provision_device) with the expensive parts opened once: the CA, the
 * vendor anchors, the OpenSSL library context with our provider, and the
 * registry. OpenSSL types appear here: OpenSSL 3 is a hard dependency. */
#ifndef EDGEAUTH_MANIFEST_H
#define EDGEAUTH_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "edgeauth/err.h"
#include "edgeauth/pki.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- writing a manifest ------------------------------------------------------ */

/* One chip, as an entry carries it (everything borrowed for the call). */
typedef struct ea_manifest_item {
    const char *unique_id;  /* the SE unique id, hex (required) */
    const char *device_id;  /* NULL: the certificate's CN */
    time_t provisioned_at;  /* 0 = now */
    uint32_t key_id;        /* SE object of the key (the JWK's kid), e.g. 0xF0000100 */
    X509 *cert;             /* the device certificate (required, P-256 key) */
    STACK_OF(X509) *chain;  /* the certificates above it, nearest first (may be NULL) */
} ea_manifest_item;

typedef struct ea_manifest ea_manifest;

/* A new, empty manifest signed by key (P-256), whose certificate is cert
 * (it must carry a subjectKeyIdentifier: that is the kid). key and cert are
 * borrowed until ea_manifest_free. The provisioner named in every entry is
 * the O= of cert. */
ea_err ea_manifest_new(EVP_PKEY *key, X509 *cert, ea_manifest **out);
/* Sign and append one entry. */
ea_err ea_manifest_add(ea_manifest *m, const ea_manifest_item *it, char *err, size_t errlen);
size_t ea_manifest_count(const ea_manifest *m);
/* The JSON text (borrowed: valid until the next add or the free). */
const char *ea_manifest_json(ea_manifest *m, size_t *len);
/* Write the JSON atomically (temp file, fsync, rename), mode 0644. */
ea_err ea_manifest_write(ea_manifest *m, const char *path, char *err, size_t errlen);
void ea_manifest_free(ea_manifest *m);

/* ---- verifying a manifest (the cloud import calls this) ------------------------ */

/* One verified entry; every pointer is borrowed for the callback only. */
typedef struct ea_manifest_entry {
    size_t index;            /* 0-based position in the array */
    const char *unique_id;   /* hex, as in the payload */
    const char *device_id;   /* equals the CN of cert */
    const char *timestamp;   /* provisioningTimestamp */
    const char *key_id;      /* the JWK kid, e.g. "0xF0000100" */
    const char *provisioner; /* provisioner.organizationName, or "" */
    X509 *cert;              /* x5c[0] */
    STACK_OF(X509) *chain;   /* x5c[1..] (may be empty) */
    const uint8_t *pub;      /* the JWK point, 04 || X || Y (65 bytes) = cert's key */
} ea_manifest_entry;

typedef ea_err ea_manifest_entry_fn(void *ctx, const ea_manifest_entry *e);

typedef struct ea_manifest_verify_opts {
    X509 *signer;            /* the manifest-signing certificate the caller trusts (required) */
    STACK_OF(X509) *trusted; /* trust anchors for every entry's x5c chain (required) */
    time_t at;               /* 0 = now (chain validity) */
} ea_manifest_verify_opts;

/* Verify a manifest. For every entry: the member set of a flattened JWS,
 * the protected header is exactly {alg:"ES256", kid, x5t#S256} with kid =
 * b64url(SKI of signer) and x5t#S256 = b64url(SHA-256(signer DER)), the
 * ES256 signature over "protected.payload" verifies with signer's key, the
 * payload is version 1 with a hex uniqueId equal to the unprotected
 * header's, a P-256 JWK whose x/y are x5c[0]'s public key, x5c[0] chains to
 * o->trusted through x5c[1..] (ea_pki_verify_chain, client role) and its CN
 * is deviceId; unique ids and device ids are not repeated.
 * All or nothing: when any entry fails, the result is EA_ERR_AUTH (a
 * signature, key or chain check) or EA_ERR_MALFORMED (format), err names the
 * entry and the reason, and cb is never called. Otherwise cb (may be NULL)
 * is called for each entry in order; a non-EA_OK return stops the walk and
 * is returned. *count (may be NULL) receives the number of entries. */
ea_err ea_manifest_verify(const char *json, size_t len, const ea_manifest_verify_opts *o,
                          ea_manifest_entry_fn *cb, void *ctx, size_t *count, char *err, size_t errlen);

/* ---- the provisioning station ---------------------------------------------------- */

typedef struct ea_station ea_station;

/* Open a station: the CA (ea_ca_open: one station per CA directory at a
 * time), the vendor anchors, a library context with the default provider
 * and ours, the registry. Of o, se_uri and device_id are not used here. */
ea_err ea_station_open(const ea_provision_opts *o, ea_station **out, char *err, size_t errlen);
/* ea_provision_device for one chip (se_uri NULL = the host library's default). */
ea_err ea_station_provision(ea_station *st, const char *se_uri, const char *device_id, ea_provision_result *res,
                            char *err, size_t errlen);
/* Batch mode: the registry's fsync is done once by ea_station_close. */
void ea_station_set_batch(ea_station *st, bool batch);
/* The manifest signer of the station's CA (loaded on first use; borrowed). */
ea_err ea_station_signer(ea_station *st, EVP_PKEY **key, X509 **cert, char *err, size_t errlen);
/* The OEM chain (borrowed): intermediate and root of the CA. */
X509 *ea_station_intermediate(ea_station *st);
X509 *ea_station_root(ea_station *st);
/* Close: flushes what batch mode deferred; EA_ERR_IO if that failed. NULL: no-op. */
ea_err ea_station_close(ea_station *st);

/* ---- a batch of emulated chips (`edgeauth provision --batch`) ---------------------- */

typedef struct ea_batch_progress {
    size_t done, total;      /* chips finished, chips in the batch */
    const char *chip_dir;    /* DIR/chip-0001 */
    const ea_provision_result *res;
} ea_batch_progress;
typedef void ea_batch_progress_fn(void *ctx, const ea_batch_progress *p);

typedef struct ea_batch_opts {
    size_t count;                /* N chips: DIR/chip-0001 ... DIR/chip-N (existing ones are reused) */
    const char *se_dir;          /* DIR (required) */
    const char *ca_dir;          /* the OEM PKI (required) */
    const char *vendor_ca_dir;   /* the SE vendor CA shared by the chips (NULL = DIR/vendor) */
    const char *manifest_path;   /* the signed manifest to write (NULL = none) */
    const char *id_prefix;       /* device ids are <prefix>0001 ... (NULL = "dev-") */
    const char *registry_path;   /* NULL = <ca_dir>/registry.jsonl */
    bool allow_delete;
    ea_batch_progress_fn *progress;
    void *progress_ctx;
} ea_batch_opts;

typedef struct ea_batch_result {
    size_t created;        /* chips made by this run */
    size_t provisioned;    /* chips provisioned by this run */
    size_t already_done;   /* chips a previous run had finished */
    double create_seconds; /* wall time of the chip creation */
    double provision_seconds; /* wall time of the provisioning (and manifest) */
} ea_batch_result;

/* Create the chips, provision each in-process (emu:), write the manifest.
 * Stops at the first chip that fails (err names it); the manifest is only
 * written when every chip is in place. A rerun continues where a crash
 * stopped. */
ea_err ea_provision_batch(const ea_batch_opts *o, ea_batch_result *res, char *err, size_t errlen);

/* ---- pre-provisioned parts (`edgeauth onboard`) ------------------------------------ */

/* The SE vendor's manifest for the pre-provisioned chips in se_dir (every
 * chip directory in it, or se_dir itself), signed with the vendor CA key in
 * vendor_ca_dir (vendor-ca.key.pem, vendor-ca.pem). In the real world the
 * vendor ships it; this makes one for emulated chips. Chips whose device
 * certificate is not from that vendor CA are left out: on EA_OK err lists
 * them ("" when none), on failure it holds the reason. */
ea_err ea_vendor_manifest_make(const char *se_dir, const char *vendor_ca_dir, const char *out_path, size_t *count,
                               char *err, size_t errlen);

typedef struct ea_onboard_result {
    char chip[256];           /* the chip's URI */
    char device_id[80];
    char unique_id[40];
    char serial[48];
    char fingerprint[72];
    bool accepted;
    bool already_done;        /* in the registry from an earlier run */
    bool chip_checked;        /* attestation and certificate checked on the chip itself */
    char reason[400];         /* why it was refused */
} ea_onboard_result;
typedef void ea_onboard_fn(void *ctx, const ea_onboard_result *r);

typedef struct ea_onboard_opts {
    const char *manifest_path;  /* the vendor manifest (required) */
    const char *vendor_ca_pem;  /* the vendor CA: signer of the manifest and trust anchor (required) */
    const char *se_dir;         /* chips to check: every chip directory in DIR (or DIR itself) */
    const char *se_uri;         /* or one chip; neither: the manifest alone is recorded */
    const char *ca_dir;         /* the OEM PKI: audit log and default registry (required) */
    const char *registry_path;  /* NULL = <ca_dir>/registry.jsonl */
    ea_onboard_fn *cb;          /* called per chip (or per entry without chips) */
    void *cb_ctx;
} ea_onboard_opts;

/* Verify the vendor manifest against the vendor CA; then for each chip:
 * key 0xF0000100 attested by 0xF0000012 under the vendor CA (origin
 * provisioned or internal), its uid listed in the manifest with the same
 * public key, certificate 0xF0000101 equal to the manifest's and chaining to
 * the vendor CA with the attested key. Accepted chips go to the registry
 * (source "manifest") and the CA audit log. EA_OK when the manifest verified
 * (refusals are counted, reasons passed to cb); *accepted / *refused may be
 * NULL. */
ea_err ea_onboard(const ea_onboard_opts *o, size_t *accepted, size_t *refused, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
