/* ECDSA with the private key in the SE: the message is hashed here, on the
 * host, and only the digest crosses to the SE (ECDSASign). Verification
 * needs only the public key and runs in the host's own provider. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "provider/prov.h"

static OSSL_FUNC_signature_newctx_fn sig_newctx;
static OSSL_FUNC_signature_freectx_fn sig_freectx;
static OSSL_FUNC_signature_dupctx_fn sig_dupctx;
static OSSL_FUNC_signature_sign_init_fn sig_sign_init;
static OSSL_FUNC_signature_sign_fn sig_sign;
static OSSL_FUNC_signature_verify_init_fn sig_verify_init;
static OSSL_FUNC_signature_verify_fn sig_verify;
static OSSL_FUNC_signature_digest_sign_init_fn sig_digest_sign_init;
static OSSL_FUNC_signature_digest_sign_update_fn sig_digest_update;
static OSSL_FUNC_signature_digest_sign_final_fn sig_digest_sign_final;
static OSSL_FUNC_signature_digest_sign_fn sig_digest_sign;
static OSSL_FUNC_signature_digest_verify_init_fn sig_digest_verify_init;
static OSSL_FUNC_signature_digest_verify_final_fn sig_digest_verify_final;
static OSSL_FUNC_signature_digest_verify_fn sig_digest_verify;
static OSSL_FUNC_signature_get_ctx_params_fn sig_get_ctx_params;
static OSSL_FUNC_signature_gettable_ctx_params_fn sig_gettable_ctx_params;
static OSSL_FUNC_signature_set_ctx_params_fn sig_set_ctx_params;
static OSSL_FUNC_signature_settable_ctx_params_fn sig_settable_ctx_params;

/* Host-side fetches must never come back to us. */
#define NOT_US "provider!=" EA_PROV_NAME

typedef struct sig_ctx {
    ea_prov *prov;
    ea_prov_key *key;
    EVP_MD *md;
    EVP_MD_CTX *mdctx;
} sig_ctx;

static void *sig_newctx(void *provctx, const char *propq)
{
    sig_ctx *c = OPENSSL_zalloc(sizeof *c);
    (void)propq;
    if (c)
        c->prov = provctx;
    return c;
}

static void sig_freectx(void *vctx)
{
    sig_ctx *c = vctx;
    if (!c)
        return;
    EVP_MD_CTX_free(c->mdctx);
    EVP_MD_free(c->md);
    OPENSSL_free(c);
}

static void *sig_dupctx(void *vctx)
{
    sig_ctx *c = vctx, *d = OPENSSL_zalloc(sizeof *d);
    if (!d)
        return NULL;
    *d = *c;
    d->md = NULL;
    d->mdctx = NULL;
    if (c->md && !EVP_MD_up_ref(c->md))
        goto fail;
    d->md = c->md;
    if (c->mdctx && (!(d->mdctx = EVP_MD_CTX_new()) || EVP_MD_CTX_copy_ex(d->mdctx, c->mdctx) != 1))
        goto fail;
    return d;
fail:
    sig_freectx(d);
    return NULL;
}

static int set_md(sig_ctx *c, const char *mdname)
{
    const char *name = mdname && *mdname ? mdname : c->key->curve == EA_CURVE_NIST_P384 ? "SHA384" : "SHA256";
    EVP_MD *md = EVP_MD_fetch(c->prov->libctx, name, NOT_US);
    if (!md) {
        ea_prov_raise(c->prov, EA_ERR_UNSUPPORTED, "digest %s is not available", name);
        return 0;
    }
    int n = EVP_MD_get_size(md);
    if (n != 20 && n != 28 && n != 32 && n != 48 && n != 64) {
        EVP_MD_free(md);
        ea_prov_raise(c->prov, EA_ERR_UNSUPPORTED, "digest %s cannot be used with ECDSA in the SE", name);
        return 0;
    }
    EVP_MD_free(c->md);
    c->md = md;
    return 1;
}

static int key_init(sig_ctx *c, void *key, bool need_private)
{
    ea_prov_key *k = key;
    if (!k || !k->curve)
        return 0;
    if (need_private && !k->id) {
        ea_prov_raise(c->prov, EA_ERR_ARG, "this key has no private half in an SE");
        return 0;
    }
    c->key = k;
    return 1;
}

static int sig_sign_init(void *vctx, void *key, const OSSL_PARAM params[])
{
    sig_ctx *c = vctx;
    return key_init(c, key, true) && sig_set_ctx_params(c, params);
}

static size_t max_sig(const sig_ctx *c)
{
    return c->key->curve == EA_CURVE_NIST_P384 ? 104 : 72;
}

static uint8_t algo_for(size_t dlen)
{
    switch (dlen) {
    case 20:
        return EA_SIG_ECDSA_SHA1;
    case 28:
        return EA_SIG_ECDSA_SHA224;
    case 32:
        return EA_SIG_ECDSA_SHA256;
    case 48:
        return EA_SIG_ECDSA_SHA384;
    case 64:
        return EA_SIG_ECDSA_SHA512;
    default:
        return 0;
    }
}

/* The one place a signature is made: the digest goes to the SE. */
static int se_sign(sig_ctx *c, const uint8_t *dg, size_t dlen, unsigned char *sig, size_t *siglen, size_t sigsize)
{
    uint8_t algo = algo_for(dlen);
    ea_host *h;
    ea_err rc;
    if (!algo) {
        ea_prov_raise(c->prov, EA_ERR_ARG, "cannot sign a %zu-byte digest", dlen);
        return 0;
    }
    if (!(h = ea_prov_host(c->prov, c->key->uri)))
        return 0;
    size_t n = sigsize;
    rc = ea_host_ecdsa_sign(h, c->key->id, algo, dg, dlen, sig, &n);
    if (rc != EA_OK) {
        if (rc == EA_ERR_DENIED)
            ea_prov_raise(c->prov, rc, "the policy of SE key 0x%08X does not allow signing", c->key->id);
        else
            ea_prov_raise(c->prov, rc, "SE key 0x%08X: %s", c->key->id, ea_host_last_error(h));
    } else {
        *siglen = n;
    }
    ea_prov_host_done(c->prov, h);
    return rc == EA_OK;
}

static int sig_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize, const unsigned char *tbs,
                    size_t tbslen)
{
    sig_ctx *c = vctx;
    if (!sig) {
        *siglen = max_sig(c);
        return 1;
    }
    if (c->md && (size_t)EVP_MD_get_size(c->md) != tbslen) {
        ea_prov_raise(c->prov, EA_ERR_ARG, "input is %zu bytes, the digest %s is %d", tbslen, EVP_MD_get0_name(c->md),
                      EVP_MD_get_size(c->md));
        return 0;
    }
    return se_sign(c, tbs, tbslen, sig, siglen, sigsize);
}

/* ---- host-side verification with the cached public key ------------------------ */

static EVP_PKEY *host_pub(sig_ctx *c)
{
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(c->prov->libctx, "EC", NOT_US);
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)ea_prov_curve_name(c->key->curve), 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, c->key->pub, c->key->pub_len),
        OSSL_PARAM_construct_end(),
    };
    if (!pc || EVP_PKEY_fromdata_init(pc) <= 0 || EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, p) <= 0)
        pk = NULL;
    EVP_PKEY_CTX_free(pc);
    return pk;
}

static int sig_verify_init(void *vctx, void *key, const OSSL_PARAM params[])
{
    sig_ctx *c = vctx;
    return key_init(c, key, false) && sig_set_ctx_params(c, params);
}

static int sig_verify(void *vctx, const unsigned char *sig, size_t siglen, const unsigned char *tbs, size_t tbslen)
{
    sig_ctx *c = vctx;
    EVP_PKEY *pk = host_pub(c);
    EVP_PKEY_CTX *vc = pk ? EVP_PKEY_CTX_new_from_pkey(c->prov->libctx, pk, NOT_US) : NULL;
    int ok = vc && EVP_PKEY_verify_init(vc) > 0 && EVP_PKEY_verify(vc, sig, siglen, tbs, tbslen) == 1;
    EVP_PKEY_CTX_free(vc);
    EVP_PKEY_free(pk);
    return ok;
}

/* ---- digest-and-sign ---------------------------------------------------------- */

static int digest_init(sig_ctx *c, const char *mdname, void *key, bool need_private, const OSSL_PARAM params[])
{
    if (!key_init(c, key, need_private) || !set_md(c, mdname))
        return 0;
    if (!c->mdctx && !(c->mdctx = EVP_MD_CTX_new()))
        return 0;
    return EVP_DigestInit_ex2(c->mdctx, c->md, NULL) == 1 && sig_set_ctx_params(c, params);
}

static int sig_digest_sign_init(void *vctx, const char *mdname, void *key, const OSSL_PARAM params[])
{
    return digest_init(vctx, mdname, key, true, params);
}

static int sig_digest_verify_init(void *vctx, const char *mdname, void *key, const OSSL_PARAM params[])
{
    return digest_init(vctx, mdname, key, false, params);
}

static int sig_digest_update(void *vctx, const unsigned char *data, size_t datalen)
{
    sig_ctx *c = vctx;
    return c->mdctx && EVP_DigestUpdate(c->mdctx, data, datalen) == 1;
}

static int sig_digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize)
{
    sig_ctx *c = vctx;
    uint8_t dg[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    if (!sig) {
        *siglen = max_sig(c);
        return 1;
    }
    return c->mdctx && EVP_DigestFinal_ex(c->mdctx, dg, &dl) == 1 && se_sign(c, dg, dl, sig, siglen, sigsize);
}

/* One-shot: what libssl's CertificateVerify uses (no dupctx needed). */
static int sig_digest_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize, const unsigned char *tbs,
                           size_t tbslen)
{
    sig_ctx *c = vctx;
    if (!sig) {
        *siglen = max_sig(c);
        return 1;
    }
    return sig_digest_update(c, tbs, tbslen) && sig_digest_sign_final(c, sig, siglen, sigsize);
}

static int sig_digest_verify_final(void *vctx, const unsigned char *sig, size_t siglen)
{
    sig_ctx *c = vctx;
    uint8_t dg[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    return c->mdctx && EVP_DigestFinal_ex(c->mdctx, dg, &dl) == 1 && sig_verify(c, sig, siglen, dg, dl);
}

static int sig_digest_verify(void *vctx, const unsigned char *sig, size_t siglen, const unsigned char *tbs,
                             size_t tbslen)
{
    return sig_digest_update(vctx, tbs, tbslen) && sig_digest_verify_final(vctx, sig, siglen);
}

/* ---- parameters ---------------------------------------------------------------- */

/* DER AlgorithmIdentifier of ecdsa-with-SHA* (1.2.840.10045.4.x), no params. */
static int algorithm_id(const EVP_MD *md, const uint8_t **der, size_t *len)
{
    static const uint8_t sha1[] = { 0x30, 0x09, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x01 };
    static uint8_t sha2[][12] = {
        { 0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x01 }, /* SHA224 */
        { 0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02 }, /* SHA256 */
        { 0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x03 }, /* SHA384 */
        { 0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x04 }, /* SHA512 */
    };
    if (EVP_MD_is_a(md, "SHA1")) {
        *der = sha1, *len = sizeof sha1;
        return 1;
    }
    static const char *const names[] = { "SHA2-224", "SHA2-256", "SHA2-384", "SHA2-512" };
    for (size_t i = 0; i < 4; i++)
        if (EVP_MD_is_a(md, names[i])) {
            *der = sha2[i], *len = sizeof sha2[i];
            return 1;
        }
    return 0;
}

static int sig_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    sig_ctx *c = vctx;
    OSSL_PARAM *p;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID))) {
        const uint8_t *der;
        size_t n;
        if (!c->md || !algorithm_id(c->md, &der, &n) || !OSSL_PARAM_set_octet_string(p, der, n))
            return 0;
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST)) &&
        !OSSL_PARAM_set_utf8_string(p, c->md ? EVP_MD_get0_name(c->md) : ""))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST_SIZE)) &&
        !OSSL_PARAM_set_size_t(p, c->md ? (size_t)EVP_MD_get_size(c->md) : 0))
        return 0;
    return 1;
}

static const OSSL_PARAM *sig_gettable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_size_t(OSSL_SIGNATURE_PARAM_DIGEST_SIZE, NULL),
        OSSL_PARAM_END,
    };
    (void)vctx;
    (void)provctx;
    return p;
}

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    sig_ctx *c = vctx;
    const OSSL_PARAM *p;
    const char *name;
    if (!params)
        return 1;
    /* The digest can be named for sign()/pkeyutl (it fixes the input length). */
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST))) {
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !c->key || !set_md(c, name))
            return 0;
    }
    return 1;
}

static const OSSL_PARAM *sig_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_END,
    };
    (void)vctx;
    (void)provctx;
    return p;
}

const OSSL_DISPATCH ea_prov_ecdsa_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))sig_newctx },
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))sig_freectx },
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))sig_dupctx },
    { OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))sig_sign_init },
    { OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))sig_sign },
    { OSSL_FUNC_SIGNATURE_VERIFY_INIT, (void (*)(void))sig_verify_init },
    { OSSL_FUNC_SIGNATURE_VERIFY, (void (*)(void))sig_verify },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))sig_digest_sign_init },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))sig_digest_update },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))sig_digest_sign_final },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))sig_digest_sign },
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, (void (*)(void))sig_digest_verify_init },
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE, (void (*)(void))sig_digest_update },
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL, (void (*)(void))sig_digest_verify_final },
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY, (void (*)(void))sig_digest_verify },
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))sig_get_ctx_params },
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))sig_gettable_ctx_params },
    { OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))sig_set_ctx_params },
    { OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))sig_settable_ctx_params },
    { 0, NULL },
};
