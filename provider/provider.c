/* The provider itself: init, the algorithm tables, parameters, the SE
 * sessions and error reporting. Each operation lives in its own file. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "edgeauth/provider.h"
#include "provider/prov.h"

/* ---- algorithm tables ------------------------------------------------------ */

#define PROPS "provider=" EA_PROV_NAME
/* The names libssl and libcrypto look keys up by (ssl_cert_lookup_by_pkey
 * wants "EC"). With the default provider loaded first, generic fetches of
 * "EC" still go there; ours is reached through our keys only. */
#define EC_NAMES "EC:id-ecPublicKey:1.2.840.10045.2.1"

/* The offload algorithms carry edgeauth.offload=yes besides provider=: with
 * the default provider loaded first they win only a fetch that asks for
 * "?edgeauth.offload=yes" (the agent's SSL_CTX, s_client -propquery), never
 * a generic one. */
#define OFFLOAD_PROPS PROPS "," EA_PROV_OFFLOAD_PROP

static const OSSL_ALGORITHM keymgmts[] = {
    { EC_NAMES, PROPS, ea_prov_ec_keymgmt_functions, "EC key held in an SE05x" },
    { NULL, NULL, NULL, NULL },
};
/* ECDHE offload: the same keymgmt, preferred by the offload query, so that
 * libssl's ephemeral keys (and the peer's share) are made here. */
static const OSSL_ALGORITHM keymgmts_offload[] = {
    { EC_NAMES, OFFLOAD_PROPS, ea_prov_ec_keymgmt_functions, "EC key held in an SE05x (ECDHE in the SE)" },
    { NULL, NULL, NULL, NULL },
};
static const OSSL_ALGORITHM keyexchs_offload[] = {
    { "ECDH", OFFLOAD_PROPS, ea_prov_ecdh_keyexch_functions, "ECDH in the SE" },
    { NULL, NULL, NULL, NULL },
};
static const OSSL_ALGORITHM kdfs_offload[] = {
    { "TLS1-PRF", OFFLOAD_PROPS, ea_prov_tls1_prf_functions, "TLS 1.2 PRF in the SE (TLSPerformPRF)" },
    { "TLS13-KDF", OFFLOAD_PROPS, ea_prov_tls13_kdf_functions, "TLS 1.3 key schedule on the SE's HKDF" },
    { NULL, NULL, NULL, NULL },
};
static const OSSL_ALGORITHM signatures[] = {
    { "ECDSA", PROPS, ea_prov_ecdsa_signature_functions, "ECDSA, digest signed in the SE" },
    { NULL, NULL, NULL, NULL },
};
static const OSSL_ALGORITHM stores[] = {
    { "se05x", PROPS, ea_prov_store_functions, "objects of an SE05x (se05x:0xID)" },
    { NULL, NULL, NULL, NULL },
};
static const OSSL_ALGORITHM decoders[] = {
    { EC_NAMES, PROPS ",input=pem", ea_prov_keyref_decoder_functions, "EDGEAUTH SE KEY PEM" },
    { NULL, NULL, NULL, NULL },
};
static const OSSL_ALGORITHM encoders[] = {
    { EC_NAMES, PROPS ",output=pem,structure=PrivateKeyInfo", ea_prov_keyref_pem_encoder_functions,
      "EDGEAUTH SE KEY PEM" },
    { EC_NAMES, PROPS ",output=pem,structure=type-specific", ea_prov_keyref_pem_encoder_functions,
      "EDGEAUTH SE KEY PEM" },
    { EC_NAMES, PROPS ",output=text", ea_prov_text_encoder_functions, "SE key as text (no secret)" },
    { NULL, NULL, NULL, NULL },
};
/* Its own name: never "CTR-DRBG", so it can only be chosen on purpose. */
static const OSSL_ALGORITHM rands[] = {
    { "EDGEAUTH-SE-RNG", PROPS, ea_prov_rand_functions, "random bytes from the SE" },
    { NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM *query(void *provctx, int op, int *no_cache)
{
    const ea_prov *p = provctx;
    *no_cache = 0;
    switch (op) {
    case OSSL_OP_KEYMGMT:
        return p->offload & EA_PROV_OFFLOAD_ECDHE ? keymgmts_offload : keymgmts;
    case OSSL_OP_KEYEXCH:
        return p->offload & EA_PROV_OFFLOAD_ECDHE ? keyexchs_offload : NULL;
    case OSSL_OP_KDF:
        return p->offload & EA_PROV_OFFLOAD_PRF ? kdfs_offload : NULL;
    case OSSL_OP_SIGNATURE:
        return signatures;
    case OSSL_OP_STORE:
        return stores;
    case OSSL_OP_DECODER:
        return decoders;
    case OSSL_OP_ENCODER:
        return encoders;
    case OSSL_OP_RAND:
        return rands;
    default:
        return NULL;
    }
}

/* ---- provider parameters and errors --------------------------------------------- */

static const OSSL_PARAM *gettable_params(void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0),
        OSSL_PARAM_DEFN(EA_PROVIDER_PARAM_OFFLOAD, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_END,
    };
    (void)provctx;
    return p;
}

/* The canonical spelling of an offload set ("" when off). */
static const char *offload_str(unsigned o)
{
    static const char *const names[8] = { "", "random", "ecdhe", "random,ecdhe",
                                          "prf", "random,prf", "ecdhe,prf", "random,ecdhe,prf" };
    return names[o & 7u];
}

static int get_params(void *provctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p;
    const ea_prov *prov = provctx;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) && !OSSL_PARAM_set_utf8_ptr(p, "edgeauth SE05x provider"))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) && !OSSL_PARAM_set_utf8_ptr(p, EA_VERSION))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) && !OSSL_PARAM_set_utf8_ptr(p, EA_VERSION))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) && !OSSL_PARAM_set_int(p, 1))
        return 0;
    if ((p = OSSL_PARAM_locate(params, EA_PROVIDER_PARAM_OFFLOAD)) &&
        !OSSL_PARAM_set_utf8_ptr(p, offload_str(prov->offload)))
        return 0;
    return 1;
}

static OSSL_ITEM reasons[EA_ERR_COUNT_ + 1];

static const OSSL_ITEM *get_reason_strings(void *provctx)
{
    (void)provctx;
    return reasons;
}

void ea_prov_raise(ea_prov *p, ea_err e, const char *fmt, ...)
{
    va_list ap;
    if (!p || !p->core_new_error || !p->core_vset_error)
        return;
    p->core_new_error(p->core);
    if (p->core_set_error_debug)
        p->core_set_error_debug(p->core, "edgeauth", 0, "edgeauth");
    va_start(ap, fmt);
    p->core_vset_error(p->core, (uint32_t)(EA_PROV_R_BASE + e), fmt, ap);
    va_end(ap);
}

/* ---- SE sessions ---------------------------------------------------------------- */

ea_host *ea_prov_host(ea_prov *p, const char *uri)
{
    const char *want = uri && *uri ? uri : p->se_uri;
    ea_prov_session *slot = NULL, *s = NULL;
    ea_host *h = NULL;
    pid_t me = getpid();

    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < EA_PROV_SESSIONS; i++) {
        ea_prov_session *c = &p->sessions[i];
        if (c->h && c->pid != me) {
            /* Inherited across fork(): the connection belongs to the parent.
             * Forget it without a word on the wire (closing it would send
             * JRCP_v1 CLOSE on the parent's behalf); the child opens its own. */
            c->h = NULL;
            c->busy = 0;
        }
        if (c->h && strcmp(c->uri, want) == 0) {
            s = c;
            break;
        }
        if (!c->h && !slot)
            slot = c;
    }
    if (!s && !slot) {
        /* Full: close the least recently used session nobody is using. */
        for (size_t i = 0; i < EA_PROV_SESSIONS; i++) {
            ea_prov_session *c = &p->sessions[i];
            if (c->busy == 0 && (!slot || c->last_used < slot->last_used))
                slot = c;
        }
        if (!slot) {
            ea_prov_raise(p, EA_ERR_FULL, "too many secure elements in use at once (%u)", EA_PROV_SESSIONS);
            goto out;
        }
        ea_host_close(slot->h);
        slot->h = NULL;
    }
    if (!s) {
        char err[320] = "";
        ea_err rc = ea_host_open(*want ? want : NULL, NULL, &slot->h, err, sizeof err);
        if (rc != EA_OK) {
            /* err names the SE already (the host library puts the URI first). */
            ea_prov_raise(p, rc, "cannot reach the secure element%s: %s", *want ? "" : " (default)", err);
            slot->h = NULL;
            goto out;
        }
        snprintf(slot->uri, sizeof slot->uri, "%s", want);
        slot->pid = me;
        slot->busy = 0;
        s = slot;
        ea_prov_apdu_log_attach(p, slot->h);
    }
    s->busy++;
    s->last_used = ++p->tick;
    h = s->h;
out:
    pthread_mutex_unlock(&p->lock);
    return h;
}

void ea_prov_host_done(ea_prov *p, ea_host *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < EA_PROV_SESSIONS; i++)
        if (p->sessions[i].h == h && p->sessions[i].busy > 0) {
            p->sessions[i].busy--;
            break;
        }
    pthread_mutex_unlock(&p->lock);
}

/* ---- options of the built-in provider ------------------------------------------------ */

/* OpenSSL 3.0 has no way to hand parameters to a built-in provider's init
 * (OSSL_PROVIDER_load_ex came with 3.2), so ea_provider_load_ex leaves them
 * here for the init it triggers, under a lock held across the load. */
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
/* Per thread: ea_provider_load_ex sets them and OSSL_PROVIDER_load runs
 * our init on the same thread; a load in another thread (another library
 * context, from openssl.cnf) must not see them. */
static _Thread_local char pending_offload[128];
static _Thread_local char pending_se[EA_PROV_URI_MAX];
static _Thread_local bool pending_set;

static bool take_pending(char *out, size_t cap, char *se, size_t se_cap)
{
    bool had = pending_set;
    if (had) {
        snprintf(out, cap, "%s", pending_offload);
        snprintf(se, se_cap, "%s", pending_se);
    }
    return had;
}

/* ---- init / teardown -------------------------------------------------------------- */

static void teardown(void *provctx)
{
    ea_prov *p = provctx;
    if (!p)
        return;
    for (size_t i = 0; i < EA_PROV_SESSIONS; i++)
        if (p->sessions[i].h && p->sessions[i].pid == getpid())
            ea_host_close(p->sessions[i].h);
    OSSL_LIB_CTX_free(p->libctx);
    pthread_mutex_destroy(&p->lock);
    OPENSSL_free(p);
}

static const OSSL_DISPATCH provider_functions[] = {
    { OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))teardown },
    { OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))gettable_params },
    { OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))get_params },
    { OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))query },
    { OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void))get_reason_strings },
    { OSSL_FUNC_PROVIDER_GET_CAPABILITIES, (void (*)(void))ea_prov_tls_groups },
    { 0, NULL },
};

int ea_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in, const OSSL_DISPATCH **out,
                     void **provctx)
{
    OSSL_FUNC_core_get_params_fn *core_get_params = NULL;
    const OSSL_DISPATCH *in0 = in;
    ea_prov *p = OPENSSL_zalloc(sizeof *p);

    if (!p)
        return 0;
    p->core = handle;
    pthread_mutex_init(&p->lock, NULL);
    for (; in->function_id != 0; in++) {
        switch (in->function_id) {
        case OSSL_FUNC_CORE_GET_PARAMS:
            core_get_params = OSSL_FUNC_core_get_params(in);
            break;
        case OSSL_FUNC_CORE_NEW_ERROR:
            p->core_new_error = OSSL_FUNC_core_new_error(in);
            break;
        case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
            p->core_set_error_debug = OSSL_FUNC_core_set_error_debug(in);
            break;
        case OSSL_FUNC_CORE_VSET_ERROR:
            p->core_vset_error = OSSL_FUNC_core_vset_error(in);
            break;
        default:
            break;
        }
    }
    for (int e = 0; e < EA_ERR_COUNT_; e++) {
        reasons[e].id = (unsigned)(EA_PROV_R_BASE + e);
        reasons[e].ptr = (void *)ea_err_str((ea_err)e);
    }
    /* `se` from the provider's openssl.cnf section; else EDGEAUTH_SE or the
     * host library's default, resolved when first needed. */
    const char *offload = NULL;
    char *se = NULL, *conf_offload = NULL;
    if (core_get_params) {
        OSSL_PARAM q[] = { OSSL_PARAM_construct_utf8_ptr("se", &se, 0),
                           OSSL_PARAM_construct_utf8_ptr(EA_PROVIDER_PARAM_OFFLOAD, &conf_offload, 0),
                           OSSL_PARAM_construct_end() };
        if (core_get_params(handle, q) && se && *se)
            snprintf(p->se_uri, sizeof p->se_uri, "%s", se);
        offload = conf_offload;
    }
    /* ea_provider_load_ex's options win over openssl.cnf for the built-in. */
    char pending[sizeof pending_offload], pse[sizeof pending_se];
    if (take_pending(pending, sizeof pending, pse, sizeof pse)) {
        if (pending[0])
            offload = pending;
        if (pse[0])
            snprintf(p->se_uri, sizeof p->se_uri, "%s", pse);
    }
    if (!ea_prov_offload_parse(offload, &p->offload)) {
        ea_prov_raise(p, EA_ERR_ARG, "offload = %s: expected words from random,ecdhe,prf (comma-separated)",
                      offload);
        teardown(p);
        return 0;
    }
    const char *log = getenv("EDGEAUTH_APDU_LOG");
    p->apdu_log = log && *log;
    /* A child library context sees the providers of the application (for
     * host-side hashing) and gives us BIOs over the core's. */
    p->libctx = OSSL_LIB_CTX_new_child(handle, in0);
    if (!p->libctx) {
        teardown(p);
        return 0;
    }
    /* Transient ids: start somewhere this process alone is likely to be,
     * so that two processes on one SE daemon do not pick the same ids
     * (their objects are per connection on the emulator, but a real part
     * may not isolate them). Not a secret: no RNG needed. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    p->next_transient = ((uint32_t)getpid() * 2654435761u) ^ (uint32_t)ts.tv_nsec;
    *out = provider_functions;
    *provctx = p;
    return 1;
}

/* The module's entry point (edgeauth.so). */
OSSL_provider_init_fn OSSL_provider_init;
__attribute__((visibility("default"))) int OSSL_provider_init(const OSSL_CORE_HANDLE *handle,
                                                              const OSSL_DISPATCH *in, const OSSL_DISPATCH **out,
                                                              void **provctx)
{
    return ea_provider_init(handle, in, out, provctx);
}

ea_err ea_provider_load(OSSL_LIB_CTX *libctx, OSSL_PROVIDER **out)
{
    return ea_provider_load_ex(libctx, NULL, out);
}

ea_err ea_provider_load_ex(OSSL_LIB_CTX *libctx, const ea_provider_opts *opts, OSSL_PROVIDER **out)
{
    OSSL_PROVIDER *p;
    unsigned want = 0;
    bool loaded;
    const char *off = opts ? opts->offload : NULL, *se = opts ? opts->se : NULL;

    if (!out)
        return EA_ERR_ARG;
    if (off && (strlen(off) >= sizeof pending_offload || !ea_prov_offload_parse(off, &want)))
        return EA_ERR_ARG;
    if (se && strlen(se) >= sizeof pending_se)
        return EA_ERR_ARG;
    pthread_mutex_lock(&load_lock);
    loaded = OSSL_PROVIDER_available(libctx, EA_PROV_NAME);
    /* A second registration of the same name fails harmlessly. */
    if (!loaded)
        (void)OSSL_PROVIDER_add_builtin(libctx, EA_PROV_NAME, ea_provider_init);
    if ((off || se) && !loaded) {
        snprintf(pending_offload, sizeof pending_offload, "%s", off ? off : "");
        snprintf(pending_se, sizeof pending_se, "%s", se ? se : "");
        pending_set = true;
    }
    p = OSSL_PROVIDER_load(libctx, EA_PROV_NAME);
    pending_set = false;
    pthread_mutex_unlock(&load_lock);
    if (!p)
        return EA_ERR_CRYPTO;
    if (off && loaded) {
        /* Already running: its algorithm tables are fixed, so a different
         * offload set cannot be honoured. */
        const char *have = NULL;
        unsigned got = 0;
        OSSL_PARAM q[] = { OSSL_PARAM_construct_utf8_ptr(EA_PROVIDER_PARAM_OFFLOAD, (char **)&have, 0),
                           OSSL_PARAM_construct_end() };
        if (!OSSL_PROVIDER_get_params(p, q) || !ea_prov_offload_parse(have, &got) || got != want) {
            OSSL_PROVIDER_unload(p);
            return EA_ERR_CONDITIONS;
        }
    }
    *out = p;
    return EA_OK;
}
