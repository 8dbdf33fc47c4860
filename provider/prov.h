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
 * No digests, ciphers, KDFs or key exchange: those would win generic fetches
 * and slow every handshake down (or break it). Default first, edgeauth
 * second, no global property query. */
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
} ea_prov_session;

typedef struct ea_prov {
    const OSSL_CORE_HANDLE *core;
    OSSL_LIB_CTX *libctx; /* child library context (core BIOs, host-side hashing) */
    char se_uri[EA_PROV_URI_MAX]; /* the `se` parameter of openssl.cnf, or "" */
    pthread_mutex_t lock;        /* guards the session table */
    ea_prov_session sessions[EA_PROV_SESSIONS];
    uint64_t tick;
    OSSL_FUNC_core_new_error_fn *core_new_error;
    OSSL_FUNC_core_set_error_debug_fn *core_set_error_debug;
    OSSL_FUNC_core_vset_error_fn *core_vset_error;
} ea_prov;

/* An EC key in the SE (or only its public half, after an import). The
 * public key and group are cached here so that libssl's per-handshake
 * get_params never costs an SE round trip. */
typedef struct ea_prov_key {
    ea_prov *prov;
    uint32_t id;                 /* SE object; 0 = public-only key */
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

#endif
