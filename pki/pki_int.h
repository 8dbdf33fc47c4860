/* Internal to pki/: the CA context shared by ca.c (hierarchy, issuance,
 * index, CRL) and audit.c (the hash-chained log). Nothing outside pki/
 * includes this file. */
#ifndef EA_PKI_INT_H
#define EA_PKI_INT_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "edgeauth/pki.h"

#define PKI_SERIAL_LEN 16u     /* bytes of a serial we mint (positive, top byte 0x40..0x7F) */
#define PKI_SERIAL_HEX 41u     /* up to 20 octets in hex + NUL: serials of other CAs may be longer */
#define PKI_ID_MAX 64u         /* device id / CN bytes */
#define PKI_ORG_MAX 64u        /* X.520 ub-organization-name */
#define PKI_URI_MAX 512u
#define PKI_PATTERN_MAX 256u
#define PKI_AUDIT_LINE_MAX 8192u /* one audit record, newline excluded */

/* One certificate the CA issued (kept in memory, mirrored in issued/index*). */
typedef enum pki_kind {
    PKI_KIND_DEVICE = 'D',
    PKI_KIND_SERVER = 'S',
    PKI_KIND_MANIFEST = 'M',
    PKI_KIND_INTERMEDIATE = 'I', /* issued by the root: listed in the root's CRL */
} pki_kind;

typedef struct pki_entry {
    char serial[PKI_SERIAL_HEX]; /* upper-case hex, no leading zeros */
    char kind;                   /* pki_kind */
    bool revoked;
    time_t not_after;            /* 99991231235959Z is 253402300799 */
    time_t revoked_at;
    uint64_t off;                /* where its DER is in issued/certs.der */
    uint32_t len;
    char name[PKI_ID_MAX + 1];   /* device id, server CN, ... */
} pki_entry;

/* Open-addressing table of entry indices (linear probing, tombstones). */
typedef struct pki_table {
    uint32_t *slot; /* 0 = empty, 1 = tombstone, else entry index + 2 */
    size_t cap;     /* power of two */
    size_t used;    /* live + tombstones */
} pki_table;

struct ea_ca {
    char *dir;
    int lock_fd;                /* the flock()ed directory */

    /* configuration (ca.json) */
    char org[PKI_ORG_MAX + 1];
    char pattern[PKI_PATTERN_MAX];
    regex_t re;
    bool re_ok;
    unsigned device_days, server_days, crl_days, root_crl_days;
    unsigned crl_days_override;  /* ea_ca_set_crl_days; 0 = crl_days */
    char key_uri[PKI_URI_MAX];  /* "" = intermediate.key file */

    /* keys and certificates */
    OSSL_LIB_CTX *libctx;       /* own context with default + edgeauth when the key is in an SE, else NULL */
    OSSL_PROVIDER *prov_default, *prov_ea;
    X509 *root, *inter;
    EVP_PKEY *inter_key;
    unsigned char inter_ski[EVP_MAX_MD_SIZE];
    size_t inter_ski_len;
    /* the device profile, built once: added as-is to every device certificate */
    X509_EXTENSION *ext_bc, *ext_ku, *ext_eku, *ext_aki;
    X509_NAME *issuer;           /* the intermediate's subject (borrowed from inter) */
    EVP_MD_CTX *sign_tmpl;       /* DigestSign initialised once; copied per certificate */
    EC_GROUP *p256;              /* made once for the CSR fast path */
    EVP_MD *md_sha1, *md_sha256, *md_sha384; /* fetched once (implicit fetches cost per call in OpenSSL 3) */

    /* index */
    pki_entry *ent;
    size_t n_ent, cap_ent;
    pki_table by_serial;         /* every entry */
    pki_table by_device;         /* active device entries only */
    int journal_fd;
    int certs_fd;                /* issued/certs.der, append-only */
    uint64_t certs_size;
    size_t journal_records;
    bool inter_revoked;

    /* audit log */
    int audit_fd;
    uint64_t audit_seq;          /* seq of the last line (0 = none yet) */
    uint8_t audit_prev[32];      /* SHA-256 of the last line */

    /* batch mode: fsyncs deferred to ea_ca_batch_end() */
    bool batch;
    bool dirty_journal, dirty_audit, dirty_issued;
};

/* ---- audit.c ---- */
/* Open dir/audit.log for appending and recover seq/prev from its last line
 * (and audit.head). */
ea_err pki_audit_open(ea_ca *ca, char *err, size_t errlen);
void pki_audit_close(ea_ca *ca);
/* fsync the log and rewrite audit.head (end of a batch). */
ea_err pki_audit_sync(ea_ca *ca);
/* Append `"key":"value"` to a JSON body (value escaped); false when it does not fit. */
bool pki_json_str(char *buf, size_t cap, const char *key, const char *val);
/* Append `"key":N`. */
bool pki_json_num(char *buf, size_t cap, const char *key, unsigned long long v);
/* RFC 3339 UTC, "2025-01-02T03:04:05Z". */
void pki_rfc3339(time_t t, char out[32]);

/* ---- ca.c helpers used by verify.c / tests ---- */
/* Is the key EC P-256 (want 256) or P-384 (want 384), or either (want 0)? */
bool pki_key_is_ec(const EVP_PKEY *k, int want_bits);

#endif
