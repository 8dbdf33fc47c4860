/* PRF offload: TLS1-PRF on the SE's TLSPerformPRF and TLS13-KDF on the SE's
 * HKDF. Registered only with `offload` containing prf, under the property
 * edgeauth.offload=yes (provider.c).
 *
 * TLS 1.2. TLSPerformPRF takes a secret in an HMAC object, a label and the
 * two 32-byte randoms, so it computes "master secret" (seed client || server
 * random) and "key expansion" (seed server || client random). Those go to
 * the SE; the secret is the premaster held there by ECDH (a reference, see
 * keyexch.c) or a value written into a transient object for the call. Other
 * PRF uses (the Finished messages, whose seed is a transcript hash, and the
 * extended master secret, whose seed is the session hash) do not fit the
 * command: they run on the host with the default provider's TLS1-PRF, which
 * is possible because the SE returns the master secret to the host anyway.
 * A premaster that is in the SE and asked for a label the SE cannot do is
 * an error (extended master secret: see docs/PROVIDER.md).
 *
 * TLS 1.3. libssl asks for HKDF-Extract (EXTRACT_ONLY, salt = the previous
 * secret, from which the KDF derives "derived") and HKDF-Expand-Label
 * (EXPAND_ONLY). The SE has no extract-only command, but its HKDF does
 * extract-then-expand in one go, with the salt from an object and the
 * output into an object. So an extract is never computed: its result is a
 * reference to (IKM object, salt object), and each expansion from it is one
 * full HKDF in the SE. The ECDHE shared secret, the early, handshake and
 * master secrets and the "derived" salts thus stay in the SE; what comes out
 * are the traffic, exporter and resumption secrets libssl needs for the
 * record layer and tickets. */
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "provider/prov.h"

static OSSL_FUNC_kdf_newctx_fn kdf_newctx;
static OSSL_FUNC_kdf_freectx_fn kdf_freectx;
static OSSL_FUNC_kdf_reset_fn kdf_reset;
static OSSL_FUNC_kdf_derive_fn prf_derive;
static OSSL_FUNC_kdf_derive_fn tls13_derive;
static OSSL_FUNC_kdf_set_ctx_params_fn kdf_set_ctx_params;
static OSSL_FUNC_kdf_settable_ctx_params_fn prf_settable_ctx_params;
static OSSL_FUNC_kdf_settable_ctx_params_fn tls13_settable_ctx_params;
static OSSL_FUNC_kdf_get_ctx_params_fn kdf_get_ctx_params;
static OSSL_FUNC_kdf_gettable_ctx_params_fn kdf_gettable_ctx_params;

#define SEED_MAX 1024u
#define LABEL_MAX 255u
#define INFO_MAX 80u /* the SE's HKDF info limit */

typedef struct kdf_ctx {
    ea_prov *prov;
    char md[32];           /* digest name as given */
    int mode;              /* TLS13-KDF: EVP_KDF_HKDF_MODE_* */
    uint8_t *key;          /* TLS1-PRF secret / TLS13-KDF key (cleared when freed) */
    size_t key_len;
    bool has_key;
    uint8_t *salt;         /* TLS13-KDF previous secret */
    size_t salt_len;
    bool has_salt;
    uint8_t seed[SEED_MAX]; /* TLS1-PRF: every seed parameter, concatenated */
    size_t seed_len;
    uint8_t prefix[LABEL_MAX], label[LABEL_MAX], data[EVP_MAX_MD_SIZE * 2];
    size_t prefix_len, label_len, data_len;
} kdf_ctx;

static void *kdf_newctx(void *provctx)
{
    kdf_ctx *c = OPENSSL_zalloc(sizeof *c);
    if (c)
        c->prov = provctx;
    return c;
}

static void kdf_reset(void *vctx)
{
    kdf_ctx *c = vctx;
    ea_prov *p = c->prov;
    OPENSSL_clear_free(c->key, c->key_len);
    OPENSSL_clear_free(c->salt, c->salt_len);
    OPENSSL_cleanse(c, sizeof *c);
    c->prov = p;
}

static void kdf_freectx(void *vctx)
{
    if (!vctx)
        return;
    kdf_reset(vctx);
    OPENSSL_free(vctx);
}

static int set_octets(const OSSL_PARAM *p, uint8_t **buf, size_t *len, bool *has)
{
    OPENSSL_clear_free(*buf, *len);
    *buf = NULL;
    *len = 0;
    *has = false;
    if (!OSSL_PARAM_get_octet_string(p, (void **)buf, 0, len))
        return 0;
    *has = true;
    return 1;
}

static int set_fixed(const OSSL_PARAM *p, uint8_t *buf, size_t cap, size_t *len)
{
    void *v = buf;
    return OSSL_PARAM_get_octet_string(p, &v, cap, len);
}

static int kdf_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    kdf_ctx *c = vctx;
    const OSSL_PARAM *p;

    if (!params)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_DIGEST))) {
        const char *s = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &s) || !s || strlen(s) >= sizeof c->md)
            return 0;
        strcpy(c->md, s);
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_MODE))) {
        const char *s = NULL;
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &s))
                return 0;
            if (!strcmp(s, "EXTRACT_ONLY"))
                c->mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY;
            else if (!strcmp(s, "EXPAND_ONLY"))
                c->mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
            else if (!strcmp(s, "EXTRACT_AND_EXPAND"))
                c->mode = EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND;
            else
                return 0; /* as OpenSSL's HKDF: an unknown mode is an error */
        } else if (!OSSL_PARAM_get_int(p, &c->mode) || c->mode < EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND ||
                   c->mode > EVP_KDF_HKDF_MODE_EXPAND_ONLY) {
            return 0;
        }
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_SECRET)) ||
        (p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_KEY))) {
        if (!set_octets(p, &c->key, &c->key_len, &c->has_key))
            return 0;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_SALT)) &&
        !set_octets(p, &c->salt, &c->salt_len, &c->has_salt))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_PREFIX)) &&
        !set_fixed(p, c->prefix, sizeof c->prefix, &c->prefix_len))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_LABEL)) &&
        !set_fixed(p, c->label, sizeof c->label, &c->label_len))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_DATA)) &&
        !set_fixed(p, c->data, sizeof c->data, &c->data_len))
        return 0;
    /* TLS1-PRF: each seed parameter appends (libssl passes up to five). */
    p = OSSL_PARAM_locate_const(params, OSSL_KDF_PARAM_SEED);
    if (p)
        c->seed_len = 0;
    for (; p; p = OSSL_PARAM_locate_const(p + 1, OSSL_KDF_PARAM_SEED)) {
        const void *v = NULL;
        size_t n = 0;
        if (p->data_size == 0)
            continue;
        if (!OSSL_PARAM_get_octet_string_ptr(p, &v, &n) || n > SEED_MAX - c->seed_len)
            return 0;
        memcpy(c->seed + c->seed_len, v, n);
        c->seed_len += n;
    }
    return 1;
}

static const OSSL_PARAM *prf_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_PROPERTIES, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SECRET, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SEED, NULL, 0),
        OSSL_PARAM_END,
    };
    (void)vctx;
    (void)provctx;
    return p;
}

static const OSSL_PARAM *tls13_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_KDF_PARAM_MODE, NULL),
        OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_PROPERTIES, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_KEY, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SALT, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_PREFIX, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_LABEL, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_KDF_PARAM_DATA, NULL, 0),
        OSSL_PARAM_END,
    };
    (void)vctx;
    (void)provctx;
    return p;
}

static uint8_t se_digest(const char *md, size_t *len);

static int kdf_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    kdf_ctx *c = vctx;
    OSSL_PARAM *p;
    if ((p = OSSL_PARAM_locate(params, OSSL_KDF_PARAM_SIZE))) {
        /* As OpenSSL's: an extract gives exactly the hash's length. */
        size_t dlen = 0;
        if (c->mode == EVP_KDF_HKDF_MODE_EXTRACT_ONLY && se_digest(c->md, &dlen))
            return OSSL_PARAM_set_size_t(p, dlen);
        return OSSL_PARAM_set_size_t(p, SIZE_MAX);
    }
    return 1;
}

static const OSSL_PARAM *kdf_gettable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = { OSSL_PARAM_size_t(OSSL_KDF_PARAM_SIZE, NULL), OSSL_PARAM_END };
    (void)vctx;
    (void)provctx;
    return p;
}

/* SHA-256 / SHA-384 by any of OpenSSL's names; 0 for anything else. */
static uint8_t se_digest(const char *md, size_t *len)
{
    static const struct {
        const char *name;
        uint8_t d;
        size_t len;
    } t[] = {
        { "SHA256", EA_DIGEST_SHA256, 32 },  { "SHA2-256", EA_DIGEST_SHA256, 32 },
        { "SHA-256", EA_DIGEST_SHA256, 32 }, { "SHA384", EA_DIGEST_SHA384, 48 },
        { "SHA2-384", EA_DIGEST_SHA384, 48 }, { "SHA-384", EA_DIGEST_SHA384, 48 },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!OPENSSL_strcasecmp(md, t[i].name)) {
            *len = t[i].len;
            return t[i].d;
        }
    return 0;
}

/* ---- TLS1-PRF ----------------------------------------------------------------------------- */

/* The two labels TLSPerformPRF computes, and whether libssl's seed has the
 * server random first (key block) or the client random first. */
static const struct {
    const char *label;
    bool server_first;
    bool consumes_secret; /* the premaster is used once: drop it afterwards */
} se_labels[] = {
    { "master secret", false, true },
    { "key expansion", true, false },
};

static int prf_on_host(kdf_ctx *c, unsigned char *out, size_t n)
{
    EVP_KDF *kdf = EVP_KDF_fetch(c->prov->libctx, "TLS1-PRF", "provider!=" EA_PROV_NAME);
    EVP_KDF_CTX *k = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM ps[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, c->md, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, c->key, c->key_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, c->seed, c->seed_len),
        OSSL_PARAM_construct_end(),
    };
    int ok = k && EVP_KDF_derive(k, out, n, ps) == 1;
    if (!ok)
        ea_prov_raise(c->prov, EA_ERR_CRYPTO, "TLS1-PRF on the host (default provider) failed");
    EVP_KDF_CTX_free(k);
    EVP_KDF_free(kdf);
    return ok;
}

/* The label in front of a seed, for messages (labels are not secret). */
static const char *seed_label(const kdf_ctx *c)
{
    static const char *const known[] = { "extended master secret", "client finished", "server finished" };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (c->seed_len >= strlen(known[i]) && !memcmp(c->seed, known[i], strlen(known[i])))
            return known[i];
    return "another label";
}

static int prf_in_se(kdf_ctx *c, ea_host *h, const ea_prov_secret *held, uint8_t digest, size_t li,
                     unsigned char *out, size_t n)
{
    ea_prov *p = c->prov;
    uint8_t rnd[64];
    char label[32];
    uint32_t obj = held ? held->ikm_id : ea_prov_transient_id(p);
    const uint8_t *r = c->seed + strlen(se_labels[li].label);
    ea_err rc;

    snprintf(label, sizeof label, "%s", se_labels[li].label);
    /* TLSPerformPRF (P2 both) wants client || server and orders the seed by
     * the label itself. */
    if (se_labels[li].server_first) {
        memcpy(rnd, r + 32, 32);
        memcpy(rnd + 32, r, 32);
    } else {
        memcpy(rnd, r, 64);
    }
    if (!held && ea_prov_hmac_object(p, h, obj, c->key, c->key_len) != EA_OK)
        return 0;
    rc = ea_host_tls_prf(h, EA_P2_TLS_PRF_BOTH, obj, digest, label, rnd, sizeof rnd, out, n);
    if (rc != EA_OK) {
        ea_prov_raise(p, rc, "TLSPerformPRF (%s): %s", label, ea_host_last_error(h));
        OPENSSL_cleanse(out, n);
    }
    if (!held)
        ea_prov_drop_object(h, obj);
    return rc == EA_OK;
}

static int prf_derive(void *vctx, unsigned char *out, size_t n, const OSSL_PARAM params[])
{
    kdf_ctx *c = vctx;
    ea_prov *p = c->prov;
    ea_prov_secret held;
    size_t dlen = 0, li;
    uint8_t digest;
    bool in_se;
    int ok;

    if (!kdf_set_ctx_params(c, params))
        return 0;
    if (!c->has_key || c->seed_len == 0 || !c->md[0] || n == 0) {
        ea_prov_raise(p, EA_ERR_ARG, "TLS1-PRF: digest, secret and seed are required");
        return 0;
    }
    in_se = ea_prov_secret_get(p, c->key, c->key_len, &held);
    if (!in_se && ea_prov_secret_is_ref(c->key, c->key_len)) {
        ea_prov_raise(p, EA_ERR_NOT_FOUND, "TLS1-PRF: the premaster refers to a secret held in the SE that is "
                                           "gone (evicted or used) or is part of a larger secret (ECDHE-PSK), "
                                           "which the SE cannot take");
        return 0;
    }
    digest = se_digest(c->md, &dlen);
    for (li = 0; li < sizeof se_labels / sizeof se_labels[0]; li++) {
        size_t ll = strlen(se_labels[li].label);
        if (c->seed_len == ll + 64 && !memcmp(c->seed, se_labels[li].label, ll))
            break;
    }
    if (!digest || li == sizeof se_labels / sizeof se_labels[0] || n > 0xFFFF) {
        if (!in_se)
            return prf_on_host(c, out, n);
        ea_prov_raise(p, EA_ERR_UNSUPPORTED,
                      "TLS1-PRF: the premaster is held in the SE, whose TLSPerformPRF computes only "
                      "\"master secret\" and \"key expansion\" with SHA-256/384; this asks for \"%s\" with %s "
                      "(the extended master secret: turn it off with SSL_OP_NO_EXTENDED_MASTER_SECRET, or "
                      "offload prf without ecdhe)",
                      seed_label(c), c->md);
        return 0;
    }
    ea_host *h = ea_prov_host(p, in_se ? held.uri : NULL);
    if (!h)
        return 0;
    ok = prf_in_se(c, h, in_se ? &held : NULL, digest, li, out, n);
    ea_prov_host_done(p, h);
    if (in_se && se_labels[li].consumes_secret)
        ea_prov_secret_drop(p, c->key, c->key_len);
    return ok;
}

/* ---- TLS13-KDF ---------------------------------------------------------------------------- */

/* HkdfLabel (RFC 8446 §7.1): uint16 length, opaque label<7..255> (prefix ||
 * label), opaque context<0..255>. */
static int hkdf_label(uint8_t *info, size_t cap, size_t *len, size_t out_len, const uint8_t *prefix,
                      size_t pl, const uint8_t *label, size_t ll, const uint8_t *data, size_t dl)
{
    size_t n = 2 + 1 + pl + ll + 1 + dl;
    if (n > cap || pl + ll > 255 || dl > 255 || out_len > 0xFFFF)
        return 0;
    info[0] = (uint8_t)(out_len >> 8);
    info[1] = (uint8_t)out_len;
    info[2] = (uint8_t)(pl + ll);
    memcpy(info + 3, prefix, pl);
    memcpy(info + 3 + pl, label, ll);
    info[3 + pl + ll] = (uint8_t)dl;
    memcpy(info + 4 + pl + ll, data, dl);
    *len = n;
    return 1;
}

/* Expand-Label from a secret: a reference to an extract held in the SE (one
 * full HKDF there), or a value (written into a transient object for one
 * expand-only). target != 0 keeps the output in that object. */
static int expand_in_se(kdf_ctx *c, ea_host *h, const ea_prov_secret *held, const uint8_t *key, size_t key_len,
                        uint8_t digest, const uint8_t *info, size_t info_len, uint32_t target, uint8_t *out,
                        size_t n)
{
    ea_prov *p = c->prov;
    ea_hkdf_args a = { 0 };
    ea_err rc;

    a.digest = digest;
    a.info = info;
    a.info_len = info_len;
    a.target = target;
    if (held) {
        if (!held->extract) {
            ea_prov_raise(p, EA_ERR_UNSUPPORTED, "TLS13-KDF: an ECDHE secret held in the SE can only be extracted");
            return 0;
        }
        a.ikm_id = held->ikm_id;
        a.salt_id = held->salt_id;
    } else {
        a.ikm_id = ea_prov_transient_id(p);
        a.expand_only = true;
        if (ea_prov_hmac_object(p, h, a.ikm_id, key, key_len) != EA_OK)
            return 0;
    }
    rc = ea_host_hkdf(h, &a, out, n);
    if (rc != EA_OK) {
        ea_prov_raise(p, rc, "%s in the SE: %s", a.expand_only ? "HKDF-Expand" : "HKDF", ea_host_last_error(h));
        if (out)
            OPENSSL_cleanse(out, n);
    }
    if (!held)
        ea_prov_drop_object(h, a.ikm_id);
    return rc == EA_OK;
}

static int tls13_expand(kdf_ctx *c, ea_host *h, const ea_prov_secret *held, uint8_t digest, unsigned char *out,
                        size_t n)
{
    uint8_t info[INFO_MAX];
    size_t il;
    if (!hkdf_label(info, sizeof info, &il, n, c->prefix, c->prefix_len, c->label, c->label_len, c->data,
                    c->data_len)) {
        ea_prov_raise(c->prov, EA_ERR_UNSUPPORTED, "TLS13-KDF: the HkdfLabel is longer than the SE's %u bytes",
                      INFO_MAX);
        return 0;
    }
    return expand_in_se(c, h, held, c->key, c->key_len, digest, info, il, 0, out, n);
}

/* Extract: nothing is computed. The IKM goes into an object (or already is
 * one: the ECDHE premaster), the salt "derived" from the previous secret is
 * computed by the SE into another object, and libssl gets a reference. */
static int tls13_extract(kdf_ctx *c, ea_host *h, const char *uri, uint8_t digest, size_t dlen, unsigned char *out,
                         size_t n)
{
    ea_prov *p = c->prov;
    ea_prov_secret s = { 0 }, prev, ikm;
    bool prev_held = false;
    uint8_t empty_hash[EVP_MAX_MD_SIZE], info[INFO_MAX];
    size_t hl = 0;
    size_t il;

    if (n != dlen) {
        ea_prov_raise(p, EA_ERR_ARG, "TLS13-KDF extract: %zu bytes asked, the hash has %zu", n, dlen);
        return 0;
    }
    snprintf(s.uri, sizeof s.uri, "%s", uri);
    s.extract = true;
    s.digest = digest;
    /* The salt: Derive-Secret(previous, "derived", "") into an object. */
    if (c->has_salt) {
        prev_held = ea_prov_secret_get(p, c->salt, c->salt_len, &prev);
        if (!prev_held && ea_prov_secret_is_ref(c->salt, c->salt_len)) {
            ea_prov_raise(p, EA_ERR_NOT_FOUND, "TLS13-KDF: the previous secret held in the SE is gone");
            return 0;
        }
        if (!EVP_Q_digest(p->libctx, dlen == 32 ? "SHA256" : "SHA384", "provider!=" EA_PROV_NAME, "", 0, empty_hash,
                          &hl) ||
            !hkdf_label(info, sizeof info, &il, dlen, c->prefix, c->prefix_len, c->label, c->label_len, empty_hash,
                        hl)) {
            ea_prov_raise(p, EA_ERR_CRYPTO, "TLS13-KDF: cannot build the \"derived\" label");
            return 0;
        }
        s.salt_id = ea_prov_transient_id(p);
        if (ea_prov_hmac_object(p, h, s.salt_id, NULL, dlen) != EA_OK)
            return 0;
        if (!expand_in_se(c, h, prev_held ? &prev : NULL, c->salt, c->salt_len, digest, info, il, s.salt_id, NULL,
                          dlen))
            goto fail;
        /* The early secret is dead once "derived" has been taken from it
         * (binders and early traffic come before). The handshake secret
         * still gives the client's handshake traffic secret after the
         * master secret: it and the master secret leave the table by
         * eviction (EA_PROV_SECRETS). */
        if (prev_held && prev.stage == 0)
            ea_prov_secret_drop(p, c->salt, c->salt_len);
        s.stage = prev_held ? (uint8_t)(prev.stage + 1) : 1;
        if (prev_held && prev.stage == 1 && c->salt_len <= sizeof s.parent_ref) {
            memcpy(s.parent_ref, c->salt, c->salt_len);
            s.parent_len = c->salt_len;
        }
    }
    /* The IKM: the premaster held in the SE, or the value given (zeros when
     * absent, as the default TLS13-KDF does). */
    if (c->has_key && ea_prov_secret_take(p, c->key, c->key_len, &ikm)) {
        if (ikm.extract) {
            ea_prov_raise(p, EA_ERR_UNSUPPORTED, "TLS13-KDF: cannot extract from an extract");
            ea_prov_drop_object(h, ikm.ikm_id);
            ea_prov_drop_object(h, ikm.salt_id);
            goto fail;
        }
        s.ikm_id = ikm.ikm_id;
    } else if (c->has_key && ea_prov_secret_is_ref(c->key, c->key_len)) {
        ea_prov_raise(p, EA_ERR_NOT_FOUND, "TLS13-KDF: the ECDHE secret held in the SE is gone");
        goto fail;
    } else {
        s.ikm_id = ea_prov_transient_id(p);
        if (ea_prov_hmac_object(p, h, s.ikm_id, c->has_key ? c->key : NULL, c->has_key ? c->key_len : dlen) != EA_OK)
            goto fail;
    }
    if (ea_prov_secret_put(p, &s, out, n))
        return 1;
    ea_prov_drop_object(h, s.ikm_id);
fail:
    ea_prov_drop_object(h, s.salt_id);
    return 0;
}

/* Expand-Label from a secret that is in host memory already (a traffic
 * secret -> key, iv, finished key): the SE would add round trips and no
 * protection, so the default provider's TLS13-KDF does it. */
static int tls13_expand_on_host(kdf_ctx *c, unsigned char *out, size_t n)
{
    EVP_KDF *kdf = EVP_KDF_fetch(c->prov->libctx, "TLS13-KDF", "provider!=" EA_PROV_NAME);
    EVP_KDF_CTX *k = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM ps[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, c->md, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, c->key, c->key_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, c->prefix, c->prefix_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, c->label, c->label_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_DATA, c->data, c->data_len),
        OSSL_PARAM_construct_end(),
    };
    int ok = k && EVP_KDF_derive(k, out, n, ps) == 1;
    if (!ok)
        ea_prov_raise(c->prov, EA_ERR_CRYPTO, "TLS13-KDF expand on the host (default provider) failed");
    EVP_KDF_CTX_free(k);
    EVP_KDF_free(kdf);
    return ok;
}

static int tls13_derive(void *vctx, unsigned char *out, size_t n, const OSSL_PARAM params[])
{
    kdf_ctx *c = vctx;
    ea_prov *p = c->prov;
    ea_prov_secret held, t; /* uri may point into either: both live to the end */
    bool in_se = false;
    size_t dlen = 0;
    uint8_t digest;
    const char *uri = "";
    int ok;

    if (!kdf_set_ctx_params(c, params))
        return 0;
    if (!(digest = se_digest(c->md, &dlen))) {
        ea_prov_raise(p, EA_ERR_UNSUPPORTED, "TLS13-KDF in the SE: SHA-256 or SHA-384 only, not %s", c->md);
        return 0;
    }
    if (c->mode == EVP_KDF_HKDF_MODE_EXPAND_ONLY) {
        if (!c->has_key) {
            ea_prov_raise(p, EA_ERR_ARG, "TLS13-KDF expand: no secret");
            return 0;
        }
        if (!(in_se = ea_prov_secret_get(p, c->key, c->key_len, &held))) {
            if (ea_prov_secret_is_ref(c->key, c->key_len)) {
                ea_prov_raise(p, EA_ERR_NOT_FOUND, "TLS13-KDF: the secret held in the SE is gone (evicted: more "
                                                   "than %u secrets in use at once)", EA_PROV_SECRETS);
                return 0;
            }
            return tls13_expand_on_host(c, out, n);
        }
        uri = held.uri;
    } else if (c->mode == EVP_KDF_HKDF_MODE_EXTRACT_ONLY) {
        if (c->has_salt && ea_prov_secret_get(p, c->salt, c->salt_len, &t))
            uri = t.uri;
        else if (c->has_key && ea_prov_secret_get(p, c->key, c->key_len, &t))
            uri = t.uri;
    } else {
        ea_prov_raise(p, EA_ERR_UNSUPPORTED, "TLS13-KDF: only EXTRACT_ONLY and EXPAND_ONLY (as libssl uses it)");
        return 0;
    }
    /* Copy: the table entry may be evicted while we work. */
    char se[EA_PROV_URI_MAX];
    snprintf(se, sizeof se, "%s", uri);
    ea_host *h = ea_prov_host(p, se);
    if (!h)
        return 0;
    if (c->mode == EVP_KDF_HKDF_MODE_EXPAND_ONLY)
        ok = tls13_expand(c, h, in_se ? &held : NULL, digest, out, n);
    else
        ok = tls13_extract(c, h, se, digest, dlen, out, n);
    ea_prov_host_done(p, h);
    /* The master secret gives four secrets (RFC 8446 7.1), the last of them
     * after the client's handshake traffic secret was taken from the
     * handshake secret. Once all four are out, both are done: their SE
     * objects go now rather than by eviction. */
    static const char *const from_master[] = { "c ap traffic", "s ap traffic", "exp master", "res master" };
    if (ok && in_se && held.stage == 2) {
        unsigned bit = 0;
        for (unsigned i = 0; i < 4; i++)
            if (c->label_len == strlen(from_master[i]) && !memcmp(c->label, from_master[i], c->label_len))
                bit = 1u << i;
        if (bit && ea_prov_secret_mark(p, c->key, c->key_len, bit) == 0xFu) {
            if (held.parent_len)
                ea_prov_secret_drop(p, held.parent_ref, held.parent_len);
            ea_prov_secret_drop(p, c->key, c->key_len);
        }
    }
    OPENSSL_cleanse(&held, sizeof held);
    OPENSSL_cleanse(&t, sizeof t);
    return ok;
}

const OSSL_DISPATCH ea_prov_tls1_prf_functions[] = {
    { OSSL_FUNC_KDF_NEWCTX, (void (*)(void))kdf_newctx },
    { OSSL_FUNC_KDF_FREECTX, (void (*)(void))kdf_freectx },
    { OSSL_FUNC_KDF_RESET, (void (*)(void))kdf_reset },
    { OSSL_FUNC_KDF_DERIVE, (void (*)(void))prf_derive },
    { OSSL_FUNC_KDF_SETTABLE_CTX_PARAMS, (void (*)(void))prf_settable_ctx_params },
    { OSSL_FUNC_KDF_SET_CTX_PARAMS, (void (*)(void))kdf_set_ctx_params },
    { OSSL_FUNC_KDF_GETTABLE_CTX_PARAMS, (void (*)(void))kdf_gettable_ctx_params },
    { OSSL_FUNC_KDF_GET_CTX_PARAMS, (void (*)(void))kdf_get_ctx_params },
    { 0, NULL },
};

const OSSL_DISPATCH ea_prov_tls13_kdf_functions[] = {
    { OSSL_FUNC_KDF_NEWCTX, (void (*)(void))kdf_newctx },
    { OSSL_FUNC_KDF_FREECTX, (void (*)(void))kdf_freectx },
    { OSSL_FUNC_KDF_RESET, (void (*)(void))kdf_reset },
    { OSSL_FUNC_KDF_DERIVE, (void (*)(void))tls13_derive },
    { OSSL_FUNC_KDF_SETTABLE_CTX_PARAMS, (void (*)(void))tls13_settable_ctx_params },
    { OSSL_FUNC_KDF_SET_CTX_PARAMS, (void (*)(void))kdf_set_ctx_params },
    { OSSL_FUNC_KDF_GETTABLE_CTX_PARAMS, (void (*)(void))kdf_gettable_ctx_params },
    { OSSL_FUNC_KDF_GET_CTX_PARAMS, (void (*)(void))kdf_get_ctx_params },
    { 0, NULL },
};
