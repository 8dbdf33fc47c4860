/* EDGEAUTH-SE-RNG: random bytes from the SE (GetRandom). Best used as the
 * seed source of OpenSSL's own DRBG ([random] seed=EDGEAUTH-SE-RNG or
 * RAND_set_seed_source_type), so the SE is asked only on (re)seed; as the
 * DRBG itself every RAND_bytes is an SE round trip. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "provider/prov.h"

static OSSL_FUNC_rand_newctx_fn rng_newctx;
static OSSL_FUNC_rand_freectx_fn rng_freectx;
static OSSL_FUNC_rand_instantiate_fn rng_instantiate;
static OSSL_FUNC_rand_uninstantiate_fn rng_uninstantiate;
static OSSL_FUNC_rand_generate_fn rng_generate;
static OSSL_FUNC_rand_reseed_fn rng_reseed;
static OSSL_FUNC_rand_get_seed_fn rng_get_seed;
static OSSL_FUNC_rand_clear_seed_fn rng_clear_seed;
static OSSL_FUNC_rand_enable_locking_fn rng_enable_locking;
static OSSL_FUNC_rand_lock_fn rng_lock;
static OSSL_FUNC_rand_unlock_fn rng_unlock;
static OSSL_FUNC_rand_get_ctx_params_fn rng_get_ctx_params;
static OSSL_FUNC_rand_gettable_ctx_params_fn rng_gettable_ctx_params;

#define MAX_REQUEST 1024u

typedef struct rng {
    ea_prov *prov;
    int state;
    CRYPTO_RWLOCK *lock;
} rng;

static void *rng_newctx(void *provctx, void *parent, const OSSL_DISPATCH *parent_calls)
{
    rng *r = OPENSSL_zalloc(sizeof *r);
    (void)parent;
    (void)parent_calls;
    if (r) {
        r->prov = provctx;
        r->state = EVP_RAND_STATE_UNINITIALISED;
    }
    return r;
}

static void rng_freectx(void *vctx)
{
    rng *r = vctx;
    if (r) {
        CRYPTO_THREAD_lock_free(r->lock);
        OPENSSL_free(r);
    }
}

static int rng_instantiate(void *vctx, unsigned int strength, int prediction_resistance,
                           const unsigned char *pstr, size_t pstr_len, const OSSL_PARAM params[])
{
    rng *r = vctx;
    (void)strength, (void)prediction_resistance, (void)pstr, (void)pstr_len, (void)params;
    r->state = EVP_RAND_STATE_READY;
    return 1;
}

static int rng_uninstantiate(void *vctx)
{
    ((rng *)vctx)->state = EVP_RAND_STATE_UNINITIALISED;
    return 1;
}

static int se_bytes(rng *r, unsigned char *out, size_t n)
{
    ea_host *h = ea_prov_host(r->prov, NULL);
    ea_err rc;
    int ok = 0;
    if (!h)
        return 0;
    /* Random offload: a 32-byte request (the ClientHello random, a session
     * id, a P-256 scalar) is the SE's TLSGenerateRandom, as in the app
     * note's handshake; anything else is GetRandom. */
    bool tls = (r->prov->offload & EA_PROV_OFFLOAD_RANDOM) && n == 32;
    rc = tls ? ea_host_tls_random(h, out) : ea_host_get_random(h, out, n);
    if (rc != EA_OK) {
        ea_prov_raise(r->prov, rc, "%s: %s", tls ? "TLSGenerateRandom" : "GetRandom", ea_host_last_error(h));
        r->state = EVP_RAND_STATE_ERROR;
    } else {
        ok = 1;
    }
    ea_prov_host_done(r->prov, h);
    return ok;
}

static int rng_generate(void *vctx, unsigned char *out, size_t outlen, unsigned int strength,
                        int prediction_resistance, const unsigned char *adin, size_t adin_len)
{
    (void)strength, (void)prediction_resistance, (void)adin, (void)adin_len;
    return se_bytes(vctx, out, outlen);
}

static int rng_reseed(void *vctx, int prediction_resistance, const unsigned char *ent, size_t ent_len,
                      const unsigned char *adin, size_t adin_len)
{
    (void)vctx, (void)prediction_resistance, (void)ent, (void)ent_len, (void)adin, (void)adin_len;
    return 1; /* every output comes fresh from the SE */
}

/* As a seed source: a fresh buffer of min_len..max_len bytes from the SE. */
static size_t rng_get_seed(void *vctx, unsigned char **buffer, int entropy, size_t min_len, size_t max_len,
                           int prediction_resistance, const unsigned char *adin, size_t adin_len)
{
    rng *r = vctx;
    size_t n = min_len > 0 ? min_len : (size_t)(entropy + 7) / 8;
    (void)prediction_resistance, (void)adin, (void)adin_len;
    if (n == 0)
        n = 32;
    if (n > max_len)
        n = max_len;
    unsigned char *b = OPENSSL_secure_malloc(n);
    if (!b)
        return 0;
    if (!se_bytes(r, b, n)) {
        OPENSSL_secure_clear_free(b, n);
        return 0;
    }
    *buffer = b;
    return n;
}

static void rng_clear_seed(void *vctx, unsigned char *buffer, size_t b_len)
{
    (void)vctx;
    OPENSSL_secure_clear_free(buffer, b_len);
}

static int rng_enable_locking(void *vctx)
{
    rng *r = vctx;
    if (!r->lock)
        r->lock = CRYPTO_THREAD_lock_new();
    return r->lock != NULL;
}

static int rng_lock(void *vctx)
{
    rng *r = vctx;
    return !r->lock || CRYPTO_THREAD_write_lock(r->lock);
}

static void rng_unlock(void *vctx)
{
    rng *r = vctx;
    if (r->lock)
        CRYPTO_THREAD_unlock(r->lock);
}

static int rng_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    rng *r = vctx;
    OSSL_PARAM *p;
    if ((p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_STATE)) && !OSSL_PARAM_set_int(p, r->state))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_STRENGTH)) && !OSSL_PARAM_set_uint(p, 256))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_MAX_REQUEST)) && !OSSL_PARAM_set_size_t(p, MAX_REQUEST))
        return 0;
    return 1;
}

static const OSSL_PARAM *rng_gettable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_RAND_PARAM_STATE, NULL),
        OSSL_PARAM_uint(OSSL_RAND_PARAM_STRENGTH, NULL),
        OSSL_PARAM_size_t(OSSL_RAND_PARAM_MAX_REQUEST, NULL),
        OSSL_PARAM_END,
    };
    (void)vctx;
    (void)provctx;
    return p;
}

const OSSL_DISPATCH ea_prov_rand_functions[] = {
    { OSSL_FUNC_RAND_NEWCTX, (void (*)(void))rng_newctx },
    { OSSL_FUNC_RAND_FREECTX, (void (*)(void))rng_freectx },
    { OSSL_FUNC_RAND_INSTANTIATE, (void (*)(void))rng_instantiate },
    { OSSL_FUNC_RAND_UNINSTANTIATE, (void (*)(void))rng_uninstantiate },
    { OSSL_FUNC_RAND_GENERATE, (void (*)(void))rng_generate },
    { OSSL_FUNC_RAND_RESEED, (void (*)(void))rng_reseed },
    { OSSL_FUNC_RAND_GET_SEED, (void (*)(void))rng_get_seed },
    { OSSL_FUNC_RAND_CLEAR_SEED, (void (*)(void))rng_clear_seed },
    { OSSL_FUNC_RAND_ENABLE_LOCKING, (void (*)(void))rng_enable_locking },
    { OSSL_FUNC_RAND_LOCK, (void (*)(void))rng_lock },
    { OSSL_FUNC_RAND_UNLOCK, (void (*)(void))rng_unlock },
    { OSSL_FUNC_RAND_GET_CTX_PARAMS, (void (*)(void))rng_get_ctx_params },
    { OSSL_FUNC_RAND_GETTABLE_CTX_PARAMS, (void (*)(void))rng_gettable_ctx_params },
    { 0, NULL },
};
