/* EC keymgmt for SE-held keys: public part + group in and out, never the
 * private part; parameters answered from the host-side cache. */
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>

#include "provider/prov.h"

static OSSL_FUNC_keymgmt_new_fn km_new;
static OSSL_FUNC_keymgmt_free_fn km_free;
static OSSL_FUNC_keymgmt_load_fn km_load;
static OSSL_FUNC_keymgmt_has_fn km_has;
static OSSL_FUNC_keymgmt_match_fn km_match;
static OSSL_FUNC_keymgmt_import_fn km_import;
static OSSL_FUNC_keymgmt_import_types_fn km_io_types;
static OSSL_FUNC_keymgmt_export_fn km_export;
static OSSL_FUNC_keymgmt_get_params_fn km_get_params;
static OSSL_FUNC_keymgmt_gettable_params_fn km_gettable_params;
static OSSL_FUNC_keymgmt_query_operation_name_fn km_query_name;
static OSSL_FUNC_keymgmt_dup_fn km_dup;
static OSSL_FUNC_keymgmt_gen_init_fn km_gen_init;
static OSSL_FUNC_keymgmt_gen_set_params_fn km_gen_set_params;
static OSSL_FUNC_keymgmt_gen_settable_params_fn km_gen_settable_params;
static OSSL_FUNC_keymgmt_gen_fn km_gen;
static OSSL_FUNC_keymgmt_gen_cleanup_fn km_gen_cleanup;
static OSSL_FUNC_keymgmt_gen_set_template_fn km_gen_set_template;
static OSSL_FUNC_keymgmt_set_params_fn km_set_params;
static OSSL_FUNC_keymgmt_settable_params_fn km_settable_params;
struct gen_ctx;
static void *gen_in(struct gen_ctx *g, ea_host *h);

#define PARAM_SE_ID "se05x-id"
#define PARAM_SE_URI "se05x-uri"
#define PARAM_SE_POLICY "se05x-policy"

static void *km_new(void *provctx)
{
    return ea_prov_key_new(provctx);
}

static void km_free(void *keydata)
{
    ea_prov_key_free(keydata);
}

/* The reference is a pointer to a key the store or the decoder made; we
 * return our own copy (the caller keeps and frees the original). */
static void *km_load(const void *reference, size_t reference_sz)
{
    ea_prov_ref ref;
    const ea_prov_key *src;
    if (!reference || reference_sz != sizeof ref)
        return NULL;
    memcpy(&ref, reference, sizeof ref);
    if (ref.magic != EA_PROV_REF_MAGIC || ref.version != 1 || !(src = ref.key))
        return NULL;
    ea_prov_key *k = ea_prov_key_new(src->prov);
    if (k)
        ea_prov_key_copy(k, src);
    return k;
}

/* libssl copies the parameters of its ephemeral key into the key that will
 * hold the peer's share (EVP_PKEY_copy_parameters): such a copy must not
 * carry the SE object, or the peer's key would pose as ours. */
static void *km_dup(const void *keydata, int selection)
{
    const ea_prov_key *src = keydata;
    ea_prov_key *k = ea_prov_key_new(src->prov);
    if (!k)
        return NULL;
    if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) {
        ea_prov_key_copy(k, src);
        return k;
    }
    k->curve = src->curve;
    memcpy(k->uri, src->uri, sizeof k->uri);
    if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) {
        memcpy(k->pub, src->pub, src->pub_len);
        k->pub_len = src->pub_len;
    }
    return k;
}

static int km_has(const void *keydata, int selection)
{
    const ea_prov_key *k = keydata;
    if (!k)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && k->id == 0)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) && k->pub_len == 0)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) && k->curve == 0)
        return 0;
    return 1;
}

static int km_match(const void *a, const void *b, int selection)
{
    const ea_prov_key *x = a, *y = b;
    if ((selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) && x->curve != y->curve)
        return 0;
    /* The private halves cannot be compared; the public points can, and a
     * key pair is fixed by its public point. */
    if (selection & OSSL_KEYMGMT_SELECT_KEYPAIR)
        return x->curve == y->curve && x->pub_len == y->pub_len && x->pub_len > 0 &&
               memcmp(x->pub, y->pub, x->pub_len) == 0;
    return 1;
}

/* Any point encoding in, uncompressed out (what the SE and we use). */
static int set_pub(ea_prov_key *k, const uint8_t *p, size_t n)
{
    int ok = 0;
    int nid = k->curve == EA_CURVE_NIST_P256 ? NID_X9_62_prime256v1 : NID_secp384r1;
    EC_GROUP *g = EC_GROUP_new_by_curve_name_ex(k->prov->libctx, NULL, nid);
    EC_POINT *q = g ? EC_POINT_new(g) : NULL;
    if (q && EC_POINT_oct2point(g, q, p, n, NULL) == 1 && !EC_POINT_is_at_infinity(g, q)) {
        size_t len = EC_POINT_point2oct(g, q, POINT_CONVERSION_UNCOMPRESSED, k->pub, sizeof k->pub, NULL);
        if (len > 0) {
            k->pub_len = len;
            ok = 1;
        }
    }
    EC_POINT_free(q);
    EC_GROUP_free(g);
    return ok;
}

static int km_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    ea_prov_key *k = keydata;
    const OSSL_PARAM *p;
    const char *group = NULL;
    const void *pub = NULL;
    size_t pub_len = 0;

    /* A private scalar is never imported: this keymgmt only knows keys that
     * live in the SE. */
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PRIV_KEY))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME)) && !OSSL_PARAM_get_utf8_string_ptr(p, &group))
        return 0;
    if (group && !(k->curve = ea_prov_curve_from_name(group)))
        return 0;
    if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) {
        if (!(p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY)) ||
            !OSSL_PARAM_get_octet_string_ptr(p, &pub, &pub_len) || !k->curve)
            return 0;
        return set_pub(k, pub, pub_len);
    }
    return k->curve != 0;
}

static const OSSL_PARAM io_types[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *km_io_types(int selection)
{
    (void)selection;
    return io_types;
}

static int km_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
    ea_prov_key *k = keydata;
    OSSL_PARAM out[3];
    size_t n = 0;

    /* Refuse, never fake: an export without the private key would let the
     * default provider "sign" and fail with "missing private key". */
    if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)
        return 0;
    if (!k->curve)
        return 0;
    out[n++] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)ea_prov_curve_name(k->curve), 0);
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) && k->pub_len)
        out[n++] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, k->pub, k->pub_len);
    out[n] = OSSL_PARAM_construct_end();
    return cb(out, cbarg);
}

static int km_get_params(void *keydata, OSSL_PARAM params[])
{
    ea_prov_key *k = keydata;
    OSSL_PARAM *p;
    int bits = ea_prov_curve_bits(k->curve);

    if (!bits)
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_BITS)) && !OSSL_PARAM_set_int(p, bits))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_SECURITY_BITS)) && !OSSL_PARAM_set_int(p, bits / 2))
        return 0;
    /* DER ECDSA signature: 2 INTEGERs of up to field+1 bytes plus headers. */
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_MAX_SIZE)) && !OSSL_PARAM_set_int(p, bits == 256 ? 72 : 104))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_GROUP_NAME)) &&
        !OSSL_PARAM_set_utf8_string(p, ea_prov_curve_name(k->curve)))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_DEFAULT_DIGEST)) &&
        !OSSL_PARAM_set_utf8_string(p, bits == 256 ? "SHA256" : "SHA384"))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY)) &&
        !OSSL_PARAM_set_octet_string(p, k->pub, k->pub_len))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PUB_KEY)) && !OSSL_PARAM_set_octet_string(p, k->pub, k->pub_len))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_EC_DECODED_FROM_EXPLICIT_PARAMS)) && !OSSL_PARAM_set_int(p, 0))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_EC_ENCODING)) &&
        !OSSL_PARAM_set_utf8_string(p, OSSL_PKEY_EC_ENCODING_GROUP))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT)) &&
        !OSSL_PARAM_set_utf8_string(p, OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_UNCOMPRESSED))
        return 0;
    return 1;
}

static const OSSL_PARAM *km_gettable_params(void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_EC_DECODED_FROM_EXPLICIT_PARAMS, NULL),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
        OSSL_PARAM_END,
    };
    (void)provctx;
    return p;
}

/* The peer's public key (ECDHE: libssl sets the encoded point on a key it
 * made from ours with EVP_PKEY_copy_parameters). */
static int km_set_params(void *keydata, const OSSL_PARAM params[])
{
    ea_prov_key *k = keydata;
    const OSSL_PARAM *p;
    const void *pub;
    size_t n;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY)) ||
        (p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY))) {
        /* Never on a key whose private half is in the SE: it would no longer
         * match its own public key. */
        if (k->id != 0 || !k->curve || !OSSL_PARAM_get_octet_string_ptr(p, &pub, &n))
            return 0;
        if (!set_pub(k, pub, n)) {
            ea_prov_raise(k->prov, EA_ERR_WRONG_DATA, "the peer's %s point is not on the curve",
                          ea_prov_curve_name(k->curve));
            return 0;
        }
    }
    return 1;
}

static const OSSL_PARAM *km_settable_params(void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_END,
    };
    (void)provctx;
    return p;
}

static const char *km_query_name(int op)
{
    return op == OSSL_OP_SIGNATURE ? "ECDSA" : op == OSSL_OP_KEYEXCH ? "ECDH" : NULL;
}

/* ---- key generation inside the SE ------------------------------------------- */

typedef struct gen_ctx {
    ea_prov *prov;
    int selection;
    uint8_t curve;
    uint32_t id;
    char uri[EA_PROV_URI_MAX];
    bool has_policy;
    ea_policy policy;
} gen_ctx;

static const struct {
    const char *word;
    uint32_t bit;
} policy_words[] = {
    { "sign", EA_POL_ALLOW_SIGN }, { "verify", EA_POL_ALLOW_VERIFY }, { "ka", EA_POL_ALLOW_KA },
    { "read", EA_POL_ALLOW_READ }, { "write", EA_POL_ALLOW_WRITE },   { "gen", EA_POL_ALLOW_GEN },
    { "delete", EA_POL_ALLOW_DELETE }, { "attest", EA_POL_ALLOW_ATTESTATION },
    { "tls-pms", EA_POL_ALLOW_TLS_PMS },
};

static int parse_policy(const char *s, ea_policy *out)
{
    uint32_t ar = 0;
    char buf[256], *save = NULL;
    if (strlen(s) >= sizeof buf)
        return 0;
    strcpy(buf, s);
    for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        size_t i;
        for (i = 0; i < sizeof policy_words / sizeof policy_words[0]; i++)
            if (!strcmp(w, policy_words[i].word))
                break;
        if (i == sizeof policy_words / sizeof policy_words[0])
            return 0;
        ar |= policy_words[i].bit;
    }
    *out = ea_policy_everyone(ar);
    return 1;
}

static int km_gen_set_params(void *genctx, const OSSL_PARAM params[])
{
    gen_ctx *g = genctx;
    const OSSL_PARAM *p;
    const char *s;

    if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME))) {
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &s) || !(g->curve = ea_prov_curve_from_name(s))) {
            ea_prov_raise(g->prov, EA_ERR_UNSUPPORTED, "the SE generates P-256 and P-384 keys only");
            return 0;
        }
    }
    if ((p = OSSL_PARAM_locate_const(params, PARAM_SE_ID))) {
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &s) || !(g->id = ea_prov_parse_id(s))) {
            ea_prov_raise(g->prov, EA_ERR_ARG, "se05x-id: expected an object id such as 0xF0000100");
            return 0;
        }
    }
    if ((p = OSSL_PARAM_locate_const(params, PARAM_SE_URI))) {
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &s) || strlen(s) >= sizeof g->uri)
            return 0;
        strcpy(g->uri, s);
    }
    if ((p = OSSL_PARAM_locate_const(params, PARAM_SE_POLICY))) {
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &s) || !parse_policy(s, &g->policy)) {
            ea_prov_raise(g->prov, EA_ERR_ARG, "se05x-policy: expected words from sign,verify,ka,read,write,"
                                              "gen,delete,attest,tls-pms");
            return 0;
        }
        g->has_policy = true;
    }
    return 1;
}

static const OSSL_PARAM *km_gen_settable_params(void *genctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
        OSSL_PARAM_utf8_string(PARAM_SE_ID, NULL, 0),
        OSSL_PARAM_utf8_string(PARAM_SE_URI, NULL, 0),
        OSSL_PARAM_utf8_string(PARAM_SE_POLICY, NULL, 0),
        OSSL_PARAM_END,
    };
    (void)genctx;
    (void)provctx;
    return p;
}

static void *km_gen_init(void *provctx, int selection, const OSSL_PARAM params[])
{
    gen_ctx *g = OPENSSL_zalloc(sizeof *g);
    if (!g)
        return NULL;
    g->prov = provctx;
    g->selection = selection;
    g->curve = EA_CURVE_NIST_P256;
    if (params && !km_gen_set_params(g, params)) {
        OPENSSL_free(g);
        return NULL;
    }
    return g;
}

static int km_gen_set_template(void *genctx, void *templ)
{
    gen_ctx *g = genctx;
    const ea_prov_key *t = templ;
    if (!t || !t->curve)
        return 0;
    g->curve = t->curve;
    return 1;
}

/* ECDHE offload: an ephemeral key pair generated in the SE as a transient
 * object, deleted when the last copy of the key is freed. */
static void *gen_ephemeral(gen_ctx *g)
{
    ea_prov *p = g->prov;
    ea_prov_key *k = ea_prov_key_new(p);
    ea_prov_eph *e = OPENSSL_zalloc(sizeof *e);
    ea_policy pol = ea_policy_everyone(EA_POL_ALLOW_KA | EA_POL_ALLOW_READ | EA_POL_ALLOW_DELETE);
    ea_host *h = NULL;
    ea_err rc;

    if (!k || !e)
        goto fail;
    if (!(h = ea_prov_host(p, g->uri)))
        goto fail;
    e->refs = 1;
    e->prov = p;
    e->id = ea_prov_transient_id(p);
    memcpy(e->uri, g->uri, sizeof e->uri);
    if ((rc = ea_host_ec_generate_new(h, e->id, g->curve, &pol, true)) != EA_OK) {
        ea_prov_raise(p, rc, "ECDHE: cannot generate an ephemeral %s key in the SE: %s",
                      ea_prov_curve_name(g->curve), ea_host_last_error(h));
        e->id = 0;
        goto fail;
    }
    k->id = e->id;
    k->eph = e;
    e = NULL;
    k->curve = g->curve;
    memcpy(k->uri, g->uri, sizeof k->uri);
    k->pub_len = sizeof k->pub;
    if ((rc = ea_host_read_pubkey(h, k->id, k->pub, &k->pub_len)) != EA_OK) {
        ea_prov_raise(p, rc, "ECDHE: cannot read the ephemeral public key: %s", ea_host_last_error(h));
        goto fail;
    }
    ea_prov_host_done(p, h);
    return k;
fail:
    ea_prov_host_done(p, h);
    OPENSSL_free(e);
    ea_prov_key_free(k); /* deletes the object if it was made */
    return NULL;
}

static void *km_gen(void *genctx, OSSL_CALLBACK *cb, void *cbarg)
{
    gen_ctx *g = genctx;
    ea_host *h;
    (void)cb;
    (void)cbarg;

    /* Parameters only (libssl's TLS 1.2 ServerKeyExchange group): a key
     * with a curve and nothing else, to receive the server's point. */
    if (!(g->selection & OSSL_KEYMGMT_SELECT_KEYPAIR)) {
        ea_prov_key *k = ea_prov_key_new(g->prov);
        if (k)
            k->curve = g->curve;
        return k;
    }
    /* libssl's ephemeral ECDHE key: no se05x-* parameter at all. A caller
     * who names a policy or an SE but no id wants a real key: say so. */
    if (!g->id && !g->has_policy && !g->uri[0] && (g->prov->offload & EA_PROV_OFFLOAD_ECDHE))
        return gen_ephemeral(g);
    if (!g->id) {
        ea_prov_raise(g->prov, EA_ERR_ARG,
                      "which SE object? pass -pkeyopt se05x-id:0x... (the key is generated inside the SE)");
        return NULL;
    }
    if (!(h = ea_prov_host(g->prov, g->uri)))
        return NULL;
    void *k = gen_in(g, h);
    ea_prov_host_done(g->prov, h);
    return k;
}

static void *gen_in(gen_ctx *g, ea_host *h)
{
    ea_err rc;
    /* Never replace a key silently: its certificate would be orphaned (and
     * WriteECKey on an existing object would ignore the curve asked for). */
    bool exists = false;
    if ((rc = ea_host_exists(h, g->id, &exists)) != EA_OK) {
        ea_prov_raise(g->prov, rc, "%s", ea_host_last_error(h));
        return NULL;
    }
    if (exists) {
        ea_prov_raise(g->prov, EA_ERR_EXISTS, "SE object 0x%08X already exists: delete it first "
                                              "(edgeauth se delete --id 0x%08X) or choose another id",
                      g->id, g->id);
        return NULL;
    }
    if ((rc = ea_host_ec_generate(h, g->id, g->curve, g->has_policy ? &g->policy : NULL, false)) != EA_OK) {
        ea_prov_raise(g->prov, rc, "%s", ea_host_last_error(h));
        return NULL;
    }
    return ea_prov_key_load(g->prov, g->uri, g->id);
}

static void km_gen_cleanup(void *genctx)
{
    OPENSSL_free(genctx);
}

const OSSL_DISPATCH ea_prov_ec_keymgmt_functions[] = {
    { OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))km_new },
    { OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))km_free },
    { OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))km_load },
    { OSSL_FUNC_KEYMGMT_DUP, (void (*)(void))km_dup },
    { OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))km_has },
    { OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))km_match },
    { OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))km_import },
    { OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))km_io_types },
    { OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))km_export },
    { OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))km_io_types },
    { OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))km_get_params },
    { OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))km_gettable_params },
    { OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))km_query_name },
    { OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))km_gen_init },
    { OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))km_gen_set_params },
    { OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, (void (*)(void))km_gen_settable_params },
    { OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))km_gen },
    { OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))km_gen_cleanup },
    { OSSL_FUNC_KEYMGMT_GEN_SET_TEMPLATE, (void (*)(void))km_gen_set_template },
    { OSSL_FUNC_KEYMGMT_SET_PARAMS, (void (*)(void))km_set_params },
    { OSSL_FUNC_KEYMGMT_SETTABLE_PARAMS, (void (*)(void))km_settable_params },
    { 0, NULL },
};
