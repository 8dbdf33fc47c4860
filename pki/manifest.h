/* Internal to pki/provision.c and pki/manifest.c: a small JSON reader and
 * writer, base64url, ES256 (JWS) signatures, the attestation check and the
 * device registry. Nothing outside pki/ includes this file; the public side
 * is include/edgeauth/manifest.h.
 *
 * Why our own JSON: libedgeauth links only libcrypto; the manifest and the
 * registry need a strict reader (duplicate keys refused, depth and size
 * bounded), which is a few hundred lines. */
#ifndef EA_PKI_MANIFEST_H
#define EA_PKI_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "edgeauth/err.h"
#include "edgeauth/host.h"

/* ---- JSON ------------------------------------------------------------------ */

typedef enum pj_type { PJ_NULL, PJ_BOOL, PJ_NUM, PJ_STR, PJ_ARR, PJ_OBJ } pj_type;

typedef struct pj {
    pj_type t;
    bool b;
    double num;
    char *s;          /* PJ_STR: NUL-terminated (\u0000 is refused), slen bytes */
    size_t slen;
    struct pj *kid;   /* PJ_ARR / PJ_OBJ: n children */
    char **key;       /* PJ_OBJ: n keys (unique) */
    size_t n;
} pj;

#define PJ_MAX_DEPTH 16u

/* Parse exactly one JSON value (surrounding white space allowed). NULL on
 * error, with a one-line reason in err. */
pj *pj_parse(const char *text, size_t len, char *err, size_t errlen);
void pj_free(pj *v);
const pj *pj_get(const pj *obj, const char *key);     /* NULL: absent or obj not an object */
const char *pj_str(const pj *obj, const char *key);   /* NULL: absent or not a string */
bool pj_only_keys(const pj *obj, const char *const *allowed, const char **extra);

/* A growable string with a sticky failure flag (like ea_wbuf). */
typedef struct pj_sb {
    char *p;
    size_t len, cap;
    bool oom;
} pj_sb;
void pj_sb_put(pj_sb *b, const char *s, size_t n);
void pj_sb_puts(pj_sb *b, const char *s);
void pj_sb_printf(pj_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pj_sb_str(pj_sb *b, const char *s);               /* a JSON string, quoted and escaped */
void pj_sb_free(pj_sb *b);

/* ---- encodings ------------------------------------------------------------------ */

/* base64url without padding (RFC 7515 §2). out must hold 4*ceil(n/3)+1. */
void pm_b64url_enc(const uint8_t *in, size_t n, char *out);
/* Strict: the url alphabet only, no padding, unused bits zero. *out_len
 * is the capacity on entry. */
ea_err pm_b64url_dec(const char *in, size_t n, uint8_t *out, size_t *out_len);
/* Standard base64 with padding (x5c, RFC 7517 §4.7); malloc'd result. */
char *pm_b64_enc(const uint8_t *in, size_t n);
ea_err pm_b64_dec(const char *in, uint8_t **out, size_t *out_len);

/* RFC 3339 UTC, "2025-01-02T03:04:05Z". */
void pm_rfc3339(time_t t, char out[32]);
/* Serial as upper-case hex without leading zeros (what `openssl x509 -serial` prints). */
bool pm_serial_hex(const X509 *x, char *out, size_t cap);
/* SHA-256 of the DER, lower-case hex (65 bytes). */
bool pm_fingerprint(const X509 *x, char out[65]);
/* The subject attribute nid (NID_commonName, NID_organizationName), or "". */
void pm_name_entry(const X509_NAME *nm, int nid, char *out, size_t cap);
/* The uncompressed P-256 point (65 bytes) of a key; false if not P-256. */
bool pm_p256_point(const EVP_PKEY *k, uint8_t out[65]);
/* The same from a certificate's SubjectPublicKeyInfo fields. */
bool pm_cert_p256_point(const X509 *x, uint8_t out[65]);

/* ---- ES256 (JWS, RFC 7518 §3.4: r || s, 64 bytes) ------------------------------- */

ea_err pm_es256_sign(EVP_PKEY *key, OSSL_LIB_CTX *libctx, const void *msg, size_t n, uint8_t sig[64]);
bool pm_es256_verify(EVP_PKEY *key, const void *msg, size_t n, const uint8_t sig[64]);

/* ---- attestation of an SE object (provisioning and onboarding) -------------------- */

/* What the chip proved about one key object. */
typedef struct pm_attested {
    uint8_t uid[EA_UNIQUE_ID_LEN];
    uint8_t pub[65];      /* the attested public key (04 || X || Y) */
    uint8_t origin;       /* EA_ORIGIN_* */
    uint32_t policy;      /* access rules for "everyone" */
    char attest_subject[256];
} pm_attested;

/* Read obj_id with attestation by 0xF0000012 (fresh random), and check:
 * the certificate 0xF0000013 chains to one of anchors, the signature
 * verifies with its key, the attested uid is the chip's, the object is a
 * P-256 key pair whose public key is returned, its origin is one of
 * origins (a bit mask of 1u << EA_ORIGIN_*). A refusal is EA_ERR_AUTH (or
 * the host error) with the reason in why. */
ea_err pm_attest_key(ea_host *h, uint32_t obj_id, X509_STORE *anchors, unsigned origins, pm_attested *out,
                     char *why, size_t whylen);
/* The access rules for auth id 0 in an ObjectAttributes blob (applet 7.2). */
bool pm_attrs_policy(const uint8_t *attrs, size_t n, uint32_t *ar, uint8_t *origin, uint32_t *id, uint8_t *type);

/* PEM certificates of a file into a new store used as trust anchors
 * (partial chains allowed: the anchor may be an intermediate). */
X509_STORE *pm_anchor_store(const char *pem_path, char *err, size_t errlen);
/* The first certificate of a PEM file. */
X509 *pm_read_cert(const char *path);

/* ---- the registry (JSON lines the cloud imports) --------------------------------- */

typedef struct pm_reg_rec {
    const char *device_id, *unique_id, *serial, *fingerprint, *source;
    bool attested;
} pm_reg_rec;

typedef struct pm_registry pm_registry;
ea_err pm_registry_open(const char *path, pm_registry **out, char *err, size_t errlen);
void pm_registry_close(pm_registry *r);
/* Pick up lines other processes appended. */
ea_err pm_registry_refresh(pm_registry *r);
/* Is there a line for this device id / unique id? The strings are the
 * registry's (valid until the next call). */
bool pm_registry_find_device(pm_registry *r, const char *device_id, const char **uid, const char **fpr);
bool pm_registry_find_uid(pm_registry *r, const char *uid, const char **device_id);
/* Append one line unless the device is there already: under an flock, re-read
 * what others appended, refuse a conflict (EA_ERR_EXISTS with the reason),
 * then one write(2) of the whole line with O_APPEND and, unless deferred, an
 * fsync. *added says whether a line was written. */
ea_err pm_registry_add(pm_registry *r, const pm_reg_rec *rec, bool *added, char *err, size_t errlen);
void pm_registry_defer_sync(pm_registry *r, bool defer);
ea_err pm_registry_sync(pm_registry *r);

#endif
