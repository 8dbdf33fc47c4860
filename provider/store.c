/* Store loader for se05x: URIs. se05x:0xF0000100 is a key object;
 * se05x:0xF0000101 a binary object holding a DER certificate. An SE other
 * than the provider's can be named: se05x:0xF0000100?se=tcp://host:8050.
 * There is deliberately no export_object: a key must stay with this
 * provider's keymgmt (libcrypto then uses our keymgmt's load). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/store.h>
#include <openssl/x509.h>

#include "provider/prov.h"

static OSSL_FUNC_store_open_fn st_open;
static OSSL_FUNC_store_load_fn st_load;
static OSSL_FUNC_store_eof_fn st_eof;
static OSSL_FUNC_store_close_fn st_close;
static OSSL_FUNC_store_set_ctx_params_fn st_set_ctx_params;
static OSSL_FUNC_store_settable_ctx_params_fn st_settable_ctx_params;
struct st_ctx;
static int load_in(struct st_ctx *c, ea_host *h, OSSL_CALLBACK *object_cb, void *object_cbarg);

typedef struct st_ctx {
    ea_prov *prov;
    uint32_t id;
    char uri[EA_PROV_URI_MAX];
    bool done;
    int expect; /* OSSL_STORE_INFO_* the caller wants, 0 = anything */
} st_ctx;

static void *st_open(void *provctx, const char *uri)
{
    ea_prov *p = provctx;
    char idbuf[32];
    const char *rest, *q;
    st_ctx *c;

    if (strncmp(uri, "se05x:", 6) != 0)
        return NULL;
    rest = uri + 6;
    q = strchr(rest, '?');
    size_t il = q ? (size_t)(q - rest) : strlen(rest);
    if (il == 0 || il >= sizeof idbuf) {
        ea_prov_raise(p, EA_ERR_ARG, "%s: expected se05x:0xOBJECTID", uri);
        return NULL;
    }
    memcpy(idbuf, rest, il);
    idbuf[il] = '\0';
    if (!(c = OPENSSL_zalloc(sizeof *c)))
        return NULL;
    c->prov = p;
    if (!(c->id = ea_prov_parse_id(idbuf))) {
        ea_prov_raise(p, EA_ERR_ARG, "%s: '%s' is not an object id (e.g. 0xF0000100)", uri, idbuf);
        OPENSSL_free(c);
        return NULL;
    }
    if (q) {
        if (strncmp(q, "?se=", 4) != 0 || strlen(q + 4) >= sizeof c->uri) {
            ea_prov_raise(p, EA_ERR_ARG, "%s: the only query is ?se=URI", uri);
            OPENSSL_free(c);
            return NULL;
        }
        strcpy(c->uri, q + 4);
    }
    return c;
}

static int load_key(st_ctx *c, OSSL_CALLBACK *cb, void *cbarg)
{
    ea_prov_key *k = ea_prov_key_load(c->prov, c->uri, c->id);
    ea_prov_ref ref = { EA_PROV_REF_MAGIC, 1, k, 0 };
    int type = OSSL_OBJECT_PKEY, ok;
    if (!k)
        return 0;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
        OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, "EC", 0),
        OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &ref, sizeof ref),
        OSSL_PARAM_construct_end(),
    };
    ok = cb(params, cbarg);
    ea_prov_key_free(k); /* the keymgmt's load made its own copy */
    return ok;
}

static int load_cert(st_ctx *c, ea_host *h, OSSL_CALLBACK *cb, void *cbarg)
{
    uint8_t *buf = OPENSSL_malloc(0x8000);
    size_t n = 0x8000;
    int type = OSSL_OBJECT_CERT, ok = 0;
    ea_err rc;
    if (!buf)
        return 0;
    if ((rc = ea_host_read_object(h, c->id, buf, &n)) != EA_OK) {
        ea_prov_raise(c->prov, rc, "SE object 0x%08X: %s", c->id, ea_host_last_error(h));
        goto out;
    }
    /* Only what parses as a certificate is offered as one. */
    const uint8_t *pp = buf;
    X509 *x = d2i_X509(NULL, &pp, (long)n);
    if (!x || pp != buf + n) {
        X509_free(x);
        ea_prov_raise(c->prov, EA_ERR_MALFORMED, "SE object 0x%08X does not hold a DER certificate", c->id);
        goto out;
    }
    X509_free(x);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
        OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, buf, n),
        OSSL_PARAM_construct_end(),
    };
    ok = cb(params, cbarg);
out:
    OPENSSL_free(buf);
    return ok;
}

static int st_load(void *vctx, OSSL_CALLBACK *object_cb, void *object_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                   void *pw_cbarg)
{
    st_ctx *c = vctx;
    ea_host *h;
    (void)pw_cb;
    (void)pw_cbarg;

    c->done = true;
    if (!(h = ea_prov_host(c->prov, c->uri)))
        return 0;
    int ok = load_in(c, h, object_cb, object_cbarg);
    ea_prov_host_done(c->prov, h);
    return ok;
}

static int load_in(st_ctx *c, ea_host *h, OSSL_CALLBACK *object_cb, void *object_cbarg)
{
    uint8_t type;
    bool transient;
    ea_err rc;
    if ((rc = ea_host_read_type(h, c->id, &type, &transient)) != EA_OK) {
        bool exists = false;
        if (rc == EA_ERR_CONDITIONS && ea_host_exists(h, c->id, &exists) == EA_OK && !exists)
            ea_prov_raise(c->prov, EA_ERR_NOT_FOUND, "SE object 0x%08X does not exist", c->id);
        else
            ea_prov_raise(c->prov, rc, "SE object 0x%08X: %s", c->id, ea_host_last_error(h));
        return 0;
    }
    bool is_key = type == EA_TYPE_EC_P256_PAIR || type == EA_TYPE_EC_P384_PAIR || type == EA_TYPE_EC_P256_PRIV ||
                  type == EA_TYPE_EC_P384_PRIV;
    if (is_key && c->expect && c->expect != OSSL_STORE_INFO_PKEY) {
        ea_prov_raise(c->prov, EA_ERR_CONDITIONS, "SE object 0x%08X is a key, not a certificate", c->id);
        return 0;
    }
    if (type == EA_TYPE_BINARY && c->expect && c->expect != OSSL_STORE_INFO_CERT) {
        ea_prov_raise(c->prov, EA_ERR_CONDITIONS, "SE object 0x%08X is a binary object (a certificate), not a key",
                      c->id);
        return 0;
    }
    switch (type) {
    case EA_TYPE_EC_P256_PAIR:
    case EA_TYPE_EC_P384_PAIR:
    case EA_TYPE_EC_P256_PRIV:
    case EA_TYPE_EC_P384_PRIV:
        return load_key(c, object_cb, object_cbarg);
    case EA_TYPE_BINARY:
        return load_cert(c, h, object_cb, object_cbarg);
    default:
        ea_prov_raise(c->prov, EA_ERR_UNSUPPORTED, "SE object 0x%08X is neither an EC private key nor a certificate",
                      c->id);
        return 0;
    }
}

static int st_eof(void *vctx)
{
    return ((st_ctx *)vctx)->done;
}

static int st_close(void *vctx)
{
    OPENSSL_free(vctx);
    return 1;
}

static int st_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    st_ctx *c = vctx;
    const OSSL_PARAM *p;
    /* One object per URI: "expect" only lets us say clearly what it is not. */
    if (params && (p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT)) && !OSSL_PARAM_get_int(p, &c->expect))
        return 0;
    return 1;
}

static const OSSL_PARAM *st_settable_ctx_params(void *provctx)
{
    static const OSSL_PARAM p[] = { OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL), OSSL_PARAM_END };
    (void)provctx;
    return p;
}

const OSSL_DISPATCH ea_prov_store_functions[] = {
    { OSSL_FUNC_STORE_OPEN, (void (*)(void))st_open },
    { OSSL_FUNC_STORE_LOAD, (void (*)(void))st_load },
    { OSSL_FUNC_STORE_EOF, (void (*)(void))st_eof },
    { OSSL_FUNC_STORE_CLOSE, (void (*)(void))st_close },
    { OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))st_set_ctx_params },
    { OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void))st_settable_ctx_params },
    { 0, NULL },
};
