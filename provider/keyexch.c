/* ECDH in the SE (ECDHE offload only): libssl's ephemeral key was generated
 * in the SE by our keymgmt, the peer's share is a public key in our
 * keymgmt, and ECDHGenerateSharedSecret computes the shared x coordinate.
 *
 * With PRF offload too, the premaster never comes back: ECDH writes it into
 * a transient HMAC object (tag 0x47 target) and libssl receives a reference
 * of the same length, which only our TLS1-PRF / TLS13-KDF understand
 * (offload.c). Without PRF offload, the shared secret is returned: libssl's
 * default KDFs need it in host memory. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "provider/prov.h"

static OSSL_FUNC_keyexch_newctx_fn ecdh_newctx;
static OSSL_FUNC_keyexch_init_fn ecdh_init;
static OSSL_FUNC_keyexch_set_peer_fn ecdh_set_peer;
static OSSL_FUNC_keyexch_derive_fn ecdh_derive;
static OSSL_FUNC_keyexch_freectx_fn ecdh_freectx;
static OSSL_FUNC_keyexch_dupctx_fn ecdh_dupctx;
static OSSL_FUNC_keyexch_set_ctx_params_fn ecdh_set_ctx_params;
static OSSL_FUNC_keyexch_settable_ctx_params_fn ecdh_settable_ctx_params;

typedef struct ecdh_ctx {
    ea_prov *prov;
    ea_prov_key *key;  /* our copy: the SE key pair */
    ea_prov_key *peer; /* our copy: the peer's public point */
} ecdh_ctx;

static void *ecdh_newctx(void *provctx)
{
    ecdh_ctx *c = OPENSSL_zalloc(sizeof *c);
    if (c)
        c->prov = provctx;
    return c;
}

static ea_prov_key *copy_key(ecdh_ctx *c, const ea_prov_key *src)
{
    ea_prov_key *k = ea_prov_key_new(c->prov);
    if (k)
        ea_prov_key_copy(k, src);
    return k;
}

static int ecdh_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
    ecdh_ctx *c = vctx;
    const ea_prov_key *k = provkey;
    (void)params;
    if (!k || k->id == 0) {
        ea_prov_raise(c->prov, EA_ERR_ARG, "ECDH in the SE needs a key pair held in the SE");
        return 0;
    }
    ea_prov_key_free(c->key);
    return (c->key = copy_key(c, k)) != NULL;
}

static int ecdh_set_peer(void *vctx, void *provkey)
{
    ecdh_ctx *c = vctx;
    const ea_prov_key *k = provkey;
    if (!k || k->pub_len == 0 || !c->key || k->curve != c->key->curve) {
        ea_prov_raise(c->prov, EA_ERR_WRONG_DATA, "ECDH: the peer's key is missing or on another curve");
        return 0;
    }
    ea_prov_key_free(c->peer);
    return (c->peer = copy_key(c, k)) != NULL;
}

static int derive_in(ecdh_ctx *c, ea_host *h, unsigned char *secret, size_t field)
{
    ea_prov *p = c->prov;
    ea_err rc;

    /* Only libssl's ephemeral keys hand out a reference for the PRF; ECDH
     * with any other SE key returns the real shared secret. */
    if (!(p->offload & EA_PROV_OFFLOAD_PRF) || !c->key->eph) {
        size_t n = field;
        if ((rc = ea_host_ecdh(h, c->key->id, c->peer->pub, c->peer->pub_len, 0, secret, &n)) != EA_OK ||
            n != field) {
            ea_prov_raise(p, rc == EA_OK ? EA_ERR_MALFORMED : rc, "ECDH in the SE: %s", ea_host_last_error(h));
            OPENSSL_cleanse(secret, field);
            return 0;
        }
        return 1;
    }
    /* The premaster goes into a transient HMAC object: created empty (the
     * SE writes a target of the exact size only), then filled by ECDH. */
    ea_prov_secret s = { 0 };
    snprintf(s.uri, sizeof s.uri, "%s", c->key->uri);
    s.ikm_id = ea_prov_transient_id(p);
    s.digest = field == 48 ? EA_DIGEST_SHA384 : EA_DIGEST_SHA256;
    if (ea_prov_hmac_object(p, h, s.ikm_id, NULL, field) != EA_OK)
        return 0;
    if ((rc = ea_host_ecdh(h, c->key->id, c->peer->pub, c->peer->pub_len, s.ikm_id, NULL, NULL)) != EA_OK) {
        ea_prov_raise(p, rc, "ECDH in the SE: %s", ea_host_last_error(h));
        ea_prov_drop_object(h, s.ikm_id);
        return 0;
    }
    return ea_prov_secret_put(p, &s, secret, field);
}

static int ecdh_derive(void *vctx, unsigned char *secret, size_t *secretlen, size_t outlen)
{
    ecdh_ctx *c = vctx;
    ea_host *h;
    int ok;

    if (!c->key || !c->peer) {
        ea_prov_raise(c->prov, EA_ERR_ARG, "ECDH: no key or no peer key set");
        return 0;
    }
    size_t field = (size_t)ea_prov_curve_bits(c->key->curve) / 8;
    if (!secret) {
        *secretlen = field;
        return 1;
    }
    if (outlen < field) {
        ea_prov_raise(c->prov, EA_ERR_BUF_TOO_SMALL, "ECDH: %zu bytes of room for a %zu-byte secret", outlen, field);
        return 0;
    }
    if (!(h = ea_prov_host(c->prov, c->key->uri)))
        return 0;
    ok = derive_in(c, h, secret, field);
    ea_prov_host_done(c->prov, h);
    if (ok)
        *secretlen = field;
    return ok;
}

static void ecdh_freectx(void *vctx)
{
    ecdh_ctx *c = vctx;
    if (!c)
        return;
    ea_prov_key_free(c->key);
    ea_prov_key_free(c->peer);
    OPENSSL_free(c);
}

static void *ecdh_dupctx(void *vctx)
{
    const ecdh_ctx *c = vctx;
    ecdh_ctx *d = ecdh_newctx(c->prov);
    if (!d)
        return NULL;
    if ((c->key && !(d->key = copy_key(d, c->key))) || (c->peer && !(d->peer = copy_key(d, c->peer)))) {
        ecdh_freectx(d);
        return NULL;
    }
    return d;
}

/* Plain ECDH only: no cofactor mode, no KDF inside the exchange. */
static int ecdh_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p;
    int mode;
    (void)vctx;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE)) &&
        (!OSSL_PARAM_get_int(p, &mode) || mode > 0))
        return 0; /* -1 (default) and 0 are the same for P-256/P-384 (cofactor 1) */
    if ((p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_KDF_TYPE))) {
        const char *s = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &s) || (s && *s))
            return 0;
    }
    return 1;
}

static const OSSL_PARAM *ecdh_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE, NULL),
        OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, NULL, 0),
        OSSL_PARAM_END,
    };
    (void)vctx;
    (void)provctx;
    return p;
}

const OSSL_DISPATCH ea_prov_ecdh_keyexch_functions[] = {
    { OSSL_FUNC_KEYEXCH_NEWCTX, (void (*)(void))ecdh_newctx },
    { OSSL_FUNC_KEYEXCH_INIT, (void (*)(void))ecdh_init },
    { OSSL_FUNC_KEYEXCH_SET_PEER, (void (*)(void))ecdh_set_peer },
    { OSSL_FUNC_KEYEXCH_DERIVE, (void (*)(void))ecdh_derive },
    { OSSL_FUNC_KEYEXCH_FREECTX, (void (*)(void))ecdh_freectx },
    { OSSL_FUNC_KEYEXCH_DUPCTX, (void (*)(void))ecdh_dupctx },
    { OSSL_FUNC_KEYEXCH_SET_CTX_PARAMS, (void (*)(void))ecdh_set_ctx_params },
    { OSSL_FUNC_KEYEXCH_SETTABLE_CTX_PARAMS, (void (*)(void))ecdh_settable_ctx_params },
    { 0, NULL },
};
