/* Internal: the edgeauth OpenSSL 3 provider (module edgeauth.so).
 *
 * What it offers and why (see ../shared/spec/openssl-provider.md):
 *  - an EC keymgmt for keys held in the SE: public part + group only, never
 *    the private part (export refuses any selection with it, so libssl and
 *    the X.509 code route signing back here instead of to the default
 *    provider);
 *  - ECDSA signatures: the hash runs on the host, only the digest goes to
 *    the SE;
 *  - a store loader for se05x: URIs, a decoder/encoder for the key-reference
 *    PEM, a text encoder;
 *  - the SE's RNG under its own name, usable as a seed source.
 * No digests or ciphers. Key exchange, KDFs and TLS groups exist only in the
 * opt-in TLS offload mode (offload.c, keyexch.c, kdf.c: the `offload`
 * parameter), and even then carry the property edgeauth.offload=yes so they
 * win a fetch only for a caller that asks "?edgeauth.offload=yes". Default
 * first, edgeauth second, no global property query. */
#ifndef EA_PROV_H
#define EA_PROV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>

#include "edgeauth/host.h"

#define EA_PROV_NAME "edgeauth"
#define EA_PROV_URI_MAX 1024u
#define EA_PROV_SESSIONS 8u

/* Reasons raised with ERR_raise; the strings come from ea_err_str. */
#define EA_PROV_R_BASE 100

typedef struct ea_prov_session {
    char uri[EA_PROV_URI_MAX]; /* "" = the provider's default SE */
    ea_host *h;
    pid_t pid;          /* the process that opened it: a forked child opens its own */
    unsigned busy;      /* callers between ea_prov_host and ea_prov_host_done */
    uint64_t last_used; /* for evicting the least recently used idle session */
    uint8_t log_hdr[4]; /* the APDU log's last command header (offload.c) */
} ea_prov_session;

/* What the `offload` parameter switched on (docs/PROVIDER.md "TLS offload"). */
#define EA_PROV_OFFLOAD_RANDOM 0x1u
#define EA_PROV_OFFLOAD_ECDHE 0x2u
#define EA_PROV_OFFLOAD_PRF 0x4u
/* The property the offload algorithms carry, and the query that picks them. */
#define EA_PROV_OFFLOAD_PROP "edgeauth.offload=yes"

/* A secret that stays in the SE (an HMAC key object), handed through libssl
 * as an opaque reference of the secret's own length: an ECDHE premaster
 * produced by ECDH straight into an object, or a TLS 1.3 extract whose PRK
 * is only ever used inside the SE's HKDF. See offload.c. */
#define EA_PROV_SECRETS 16u
typedef struct ea_prov_secret {
    uint32_t gen;         /* 0 = free slot */
    char uri[EA_PROV_URI_MAX]; /* the SE whose session holds the (transient) objects */
    uint32_t ikm_id;      /* HMAC object: the premaster, or the IKM of a lazy extract */
    uint32_t salt_id;     /* HMAC object with the extract's salt (0 = HashLen zeros) */
    bool extract;         /* a TLS 1.3 PRK = HKDF-Extract(salt, ikm), never computed on the host */
    uint8_t digest;       /* EA_DIGEST_SHA256/384 of the extract */
    uint8_t stage;        /* extracts: 0 early, 1 handshake, 2 master secret */
    size_t len;           /* length of the reference handed out */
    /* The master secret's parent (the handshake secret's reference): both
     * leave the table once the master secret has given its four secrets. */
    uint8_t parent_ref[64]; /* a reference is as long as its secret: 32 or 48 */
    size_t parent_len;
    unsigned used; /* expansions done from this secret (bits, see kdf.c) */
} ea_prov_secret;

typedef struct ea_prov {
    const OSSL_CORE_HANDLE *core;
    OSSL_LIB_CTX *libctx; /* child library context (core BIOs, host-side hashing) */
    char se_uri[EA_PROV_URI_MAX]; /* the `se` parameter of openssl.cnf, or "" */
    pthread_mutex_t lock;        /* guards the session table */
    ea_prov_session sessions[EA_PROV_SESSIONS];
    uint64_t tick;
    unsigned offload;            /* EA_PROV_OFFLOAD_* from the `offload` parameter */
    uint32_t next_transient;     /* transient object ids handed out (under lock) */
    uint32_t secret_gen;
    ea_prov_secret secrets[EA_PROV_SECRETS]; /* under lock */
    bool apdu_log;               /* EDGEAUTH_APDU_LOG was set at init */
    OSSL_FUNC_core_new_error_fn *core_new_error;
    OSSL_FUNC_core_set_error_debug_fn *core_set_error_debug;
    OSSL_FUNC_core_vset_error_fn *core_vset_error;
} ea_prov;

/* An EC key in the SE (or only its public half, after an import). The
 * public key and group are cached here so that libssl's per-handshake
 * get_params never costs an SE round trip. */
/* A transient key pair made for one ECDHE exchange, shared by the copies of
 * the key that libssl makes; the last one deletes the SE object. */
typedef struct ea_prov_eph {
    int refs;                    /* atomic */
    ea_prov *prov;
    uint32_t id;
    char uri[EA_PROV_URI_MAX];
} ea_prov_eph;

typedef struct ea_prov_key {
    ea_prov *prov;
    uint32_t id;                 /* SE object; 0 = public-only key */
    ea_prov_eph *eph;            /* set for an ephemeral (transient) key: owns id */
    char uri[EA_PROV_URI_MAX];   /* SE holding it ("" = provider default) */
    uint8_t curve;               /* EA_CURVE_NIST_P256 / _P384 */
    uint8_t pub[97];
    size_t pub_len;
} ea_prov_key;

/* What the store and the decoder hand to libcrypto as an object reference.
 * Deliberately not pointer-sized: when the default provider is loaded first,
 * libcrypto may offer our reference to the default EC keymgmt's load(),
 * which takes any pointer-sized reference for its own EC_KEY. A size it
 * does not expect makes it refuse instead of misreading our key. */
#define EA_PROV_REF_MAGIC 0x45415246u /* "EARF" */
typedef struct ea_prov_ref {
    uint32_t magic;
    uint32_t version;
    ea_prov_key *key;
    uint64_t reserved;
} ea_prov_ref;
_Static_assert(sizeof(ea_prov_ref) != sizeof(void *), "must not look like a provider key pointer");

/* The session for uri ("" or NULL = default), opened on first use. On
 * failure raises an error naming the SE and returns NULL. */
ea_host *ea_prov_host(ea_prov *p, const char *uri);
/* Every ea_prov_host must be paired with ea_prov_host_done once the
 * caller is finished with the session: a session nobody uses may be closed
 * to make room for another SE (a station working through many chips). */
void ea_prov_host_done(ea_prov *p, ea_host *h);
void ea_prov_raise(ea_prov *p, ea_err e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Keys */
ea_prov_key *ea_prov_key_new(ea_prov *p);
void ea_prov_key_free(ea_prov_key *k);
/* Copy a key (the ephemeral object is shared, not duplicated). */
void ea_prov_key_copy(ea_prov_key *dst, const ea_prov_key *src);

/* ---- TLS offload (offload.c) ---- */
/* Parse "random,ecdhe,prf" (any subset, any order; "" or "none" = off). 0 on
 * an unknown word. */
int ea_prov_offload_parse(const char *s, unsigned *out);
/* A fresh transient object id for this process's session: never in the
 * applet's 7FFF0000..7FFFFFFF. */
uint32_t ea_prov_transient_id(ea_prov *p);
/* A transient HMAC key object holding key[0..len) (zeros when key is NULL),
 * usable for TLS PRF, HKDF and as an ECDH/HKDF target. */
ea_err ea_prov_hmac_object(ea_prov *p, ea_host *h, uint32_t id, const uint8_t *key, size_t len);
/* Delete a transient object; errors are ignored (it dies with the session). */
void ea_prov_drop_object(ea_host *h, uint32_t id);
/* Register a secret held in the SE and write its reference (len bytes, 32
 * or 48) into out. The objects now belong to the table; the oldest entry is
 * evicted (its objects deleted) when the table is full. */
int ea_prov_secret_put(ea_prov *p, const ea_prov_secret *s, uint8_t *out, size_t len);
/* Whether buf is or contains a reference (live or not), e.g. inside an
 * ECDHE-PSK premaster: such a value must never be used as a secret on the
 * host. */
int ea_prov_secret_is_ref(const uint8_t *buf, size_t len);
/* Record that expansion bit was taken from a live secret; the bits so far
 * (0 when the reference is not live). */
unsigned ea_prov_secret_mark(ea_prov *p, const uint8_t *buf, size_t len, unsigned bit);
/* Look a reference up: 1 and *s filled when buf is one of ours. */
int ea_prov_secret_get(ea_prov *p, const uint8_t *buf, size_t len, ea_prov_secret *s);
/* The same, and the entry leaves the table: its objects are now the
 * caller's (a premaster that becomes the IKM of a TLS 1.3 extract). */
int ea_prov_secret_take(ea_prov *p, const uint8_t *buf, size_t len, ea_prov_secret *s);
/* Forget a reference now and delete its objects (the premaster after the
 * master secret). */
void ea_prov_secret_drop(ea_prov *p, const uint8_t *buf, size_t len);
/* An APDU log for tests and benchmarks: EDGEAUTH_APDU_LOG=FILE appends one
 * line per exchange with the command's header and status word only (never
 * data: the bytes may be key material). */
void ea_prov_apdu_log_attach(ea_prov *p, ea_host *h);
/* Load id from the SE (reads the public key and curve). */
ea_prov_key *ea_prov_key_load(ea_prov *p, const char *uri, uint32_t id);
const char *ea_prov_curve_name(uint8_t curve); /* "prime256v1" / "secp384r1" */
int ea_prov_curve_bits(uint8_t curve);
uint8_t ea_prov_curve_from_name(const char *name); /* 0 if unsupported */

/* Key-reference DER (inside the EDGEAUTH SE KEY PEM):
 * SEQUENCE { version INTEGER (1), id INTEGER, uri UTF8String OPTIONAL } */
#define EA_PROV_PEM_NAME "EDGEAUTH SE KEY"
int ea_prov_keyref_encode(const ea_prov_key *k, uint8_t **der, size_t *der_len);
int ea_prov_keyref_decode(const uint8_t *der, size_t len, uint32_t *id, char *uri, size_t uri_cap);

/* Parse "0xF0000100" / decimal; 0 on failure. */
uint32_t ea_prov_parse_id(const char *s);

extern const OSSL_DISPATCH ea_prov_ec_keymgmt_functions[];
extern const OSSL_DISPATCH ea_prov_ecdsa_signature_functions[];
extern const OSSL_DISPATCH ea_prov_store_functions[];
extern const OSSL_DISPATCH ea_prov_keyref_decoder_functions[];
extern const OSSL_DISPATCH ea_prov_keyref_pem_encoder_functions[];
extern const OSSL_DISPATCH ea_prov_text_encoder_functions[];
extern const OSSL_DISPATCH ea_prov_rand_functions[];
extern const OSSL_DISPATCH ea_prov_ecdh_keyexch_functions[];
extern const OSSL_DISPATCH ea_prov_tls1_prf_functions[];
extern const OSSL_DISPATCH ea_prov_tls13_kdf_functions[];
/* The TLS-GROUP capability (secp256r1, secp384r1) in ECDHE offload mode. */
int ea_prov_tls_groups(void *provctx, const char *capability, OSSL_CALLBACK *cb, void *arg);

#endif
