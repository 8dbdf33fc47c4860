/* EC and digest helpers over OpenSSL 3, always in the chip's private
 * library context (never the application's default one). */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>

#include "common/util.h"
#include "emu/emu_int.h"

size_t ec_field_len(uint8_t curve)
{
    return curve == EA_CURVE_NIST_P256 ? 32 : curve == EA_CURVE_NIST_P384 ? 48 : 0;
}

const char *ec_group_name(uint8_t curve)
{
    return curve == EA_CURVE_NIST_P256 ? "P-256" : curve == EA_CURVE_NIST_P384 ? "P-384" : NULL;
}

static int curve_nid(uint8_t curve)
{
    return curve == EA_CURVE_NIST_P256 ? NID_X9_62_prime256v1 : NID_secp384r1;
}

const char *digest_name(uint8_t mode, size_t *len)
{
    switch (mode) {
    case EA_DIGEST_SHA1:
        *len = 20;
        return "SHA1";
    case EA_DIGEST_SHA224:
        *len = 28;
        return "SHA224";
    case EA_DIGEST_SHA256:
        *len = 32;
        return "SHA256";
    case EA_DIGEST_SHA384:
        *len = 48;
        return "SHA384";
    case EA_DIGEST_SHA512:
        *len = 64;
        return "SHA512";
    default:
        *len = 0;
        return NULL;
    }
}

ea_err ec_generate(ea_emu *emu, uint8_t curve, uint8_t *priv, uint8_t *pub)
{
    ea_err rc = EA_ERR_CRYPTO;
    size_t fl = ec_field_len(curve), pl = 0;
    EVP_PKEY *k = NULL;
    BIGNUM *d = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(emu->libctx, "EC", NULL);

    if (!ctx || !fl || EVP_PKEY_keygen_init(ctx) <= 0 ||
        EVP_PKEY_CTX_set_group_name(ctx, ec_group_name(curve)) <= 0 ||
        EVP_PKEY_generate(ctx, &k) <= 0)
        goto out;
    if (!EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &d) ||
        BN_bn2binpad(d, priv, (int)fl) != (int)fl)
        goto out;
    if (!EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub, 2 * fl + 1,
                                         &pl) ||
        pl != 2 * fl + 1)
        goto out;
    rc = EA_OK;
out:
    BN_clear_free(d);
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

ea_err ec_pub_from_priv(ea_emu *emu, uint8_t curve, const uint8_t *priv, uint8_t *pub)
{
    ea_err rc = EA_ERR_CRYPTO;
    size_t fl = ec_field_len(curve);
    EC_GROUP *g = EC_GROUP_new_by_curve_name_ex(emu->libctx, NULL, curve_nid(curve));
    EC_POINT *q = NULL;
    BIGNUM *d = BN_secure_new();
    BN_CTX *bc = BN_CTX_new_ex(emu->libctx);

    if (!g || !d || !bc || !fl || !BN_bin2bn(priv, (int)fl, d))
        goto out;
    /* 1 <= d < n, else the scalar is not a private key of this curve. */
    if (BN_is_zero(d) || BN_cmp(d, EC_GROUP_get0_order(g)) >= 0) {
        rc = EA_ERR_WRONG_DATA;
        goto out;
    }
    if (!(q = EC_POINT_new(g)) || !EC_POINT_mul(g, q, d, NULL, NULL, bc) ||
        EC_POINT_point2oct(g, q, POINT_CONVERSION_UNCOMPRESSED, pub, 2 * fl + 1, bc) !=
            2 * fl + 1)
        goto out;
    rc = EA_OK;
out:
    EC_POINT_free(q);
    BN_clear_free(d);
    BN_CTX_free(bc);
    EC_GROUP_free(g);
    return rc;
}

ea_err ec_check_pub(ea_emu *emu, uint8_t curve, const uint8_t *pub, size_t len)
{
    ea_err rc = EA_ERR_WRONG_DATA;
    size_t fl = ec_field_len(curve);
    EC_GROUP *g = NULL;
    EC_POINT *q = NULL;
    BN_CTX *bc = NULL;

    /* Only the uncompressed form 04||X||Y, as the SE05x takes it. */
    if (!fl || len != 2 * fl + 1 || pub[0] != 0x04)
        return EA_ERR_WRONG_DATA;
    g = EC_GROUP_new_by_curve_name_ex(emu->libctx, NULL, curve_nid(curve));
    bc = BN_CTX_new_ex(emu->libctx);
    if (!g || !bc || !(q = EC_POINT_new(g))) {
        rc = EA_ERR_CRYPTO;
        goto out;
    }
    /* oct2point refuses coordinates >= p and points off the curve. */
    if (EC_POINT_oct2point(g, q, pub, len, bc) == 1 && EC_POINT_is_on_curve(g, q, bc) == 1 &&
        !EC_POINT_is_at_infinity(g, q))
        rc = EA_OK;
out:
    EC_POINT_free(q);
    BN_CTX_free(bc);
    EC_GROUP_free(g);
    return rc;
}

static ea_err build_pkey(ea_emu *emu, uint8_t curve, const uint8_t *priv, const uint8_t *pub,
                         EVP_PKEY **out)
{
    ea_err rc = EA_ERR_CRYPTO;
    size_t fl = ec_field_len(curve);
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    BIGNUM *d = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(emu->libctx, "EC", NULL);
    int sel = priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY;

    if (!b || !ctx || !fl)
        goto out;
    if (!OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, ec_group_name(curve), 0) ||
        !OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, pub, 2 * fl + 1))
        goto out;
    if (priv) {
        if (!(d = BN_secure_new()) || !BN_bin2bn(priv, (int)fl, d) ||
            !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_PRIV_KEY, d))
            goto out;
    }
    if (!(params = OSSL_PARAM_BLD_to_param(b)) || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, out, sel, params) <= 0)
        goto out;
    rc = EA_OK;
out:
    OSSL_PARAM_free(params); /* secure heap for the secure BN: wiped on free */
    OSSL_PARAM_BLD_free(b);
    BN_clear_free(d);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

ea_err ec_pkey(ea_emu *emu, ea_obj *o, EVP_PKEY **out)
{
    size_t fl = ec_field_len(o->curve);
    ea_err rc;

    if (o->pkey) {
        *out = o->pkey;
        return EA_OK;
    }
    if (o->kind == KIND_EC_PUB) {
        if (o->val_len != 2 * fl + 1)
            return EA_ERR_CORRUPT;
        rc = build_pkey(emu, o->curve, NULL, o->val, &o->pkey);
    } else {
        if (o->val_len != 3 * fl + 1)
            return EA_ERR_CORRUPT;
        rc = build_pkey(emu, o->curve, o->val, o->val + fl, &o->pkey);
    }
    if (rc == EA_OK)
        *out = o->pkey;
    return rc;
}

ea_err ec_sign_digest(ea_emu *emu, EVP_PKEY *k, const uint8_t *dg, size_t dlen, uint8_t *sig,
                      size_t *sig_len)
{
    ea_err rc = EA_ERR_CRYPTO;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(emu->libctx, k, NULL);
    /* No digest set: OpenSSL signs the given hash as is, truncating a longer
     * one to the order's bit length (X9.62), as the SE does. */
    if (ctx && EVP_PKEY_sign_init(ctx) > 0 && EVP_PKEY_sign(ctx, sig, sig_len, dg, dlen) > 0)
        rc = EA_OK;
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

ea_err ec_verify_digest(ea_emu *emu, EVP_PKEY *k, const uint8_t *dg, size_t dlen,
                        const uint8_t *sig, size_t sig_len)
{
    ea_err rc = EA_ERR_CRYPTO;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(emu->libctx, k, NULL);
    if (ctx && EVP_PKEY_verify_init(ctx) > 0) {
        /* 1 valid; 0 bad signature; <0 malformed DER: all "not valid" here. */
        rc = EVP_PKEY_verify(ctx, sig, sig_len, dg, dlen) == 1 ? EA_OK : EA_ERR_AUTH;
    }
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error(); /* a refused signature is an answer, not an error */
    return rc;
}

ea_err ec_dh(ea_emu *emu, EVP_PKEY *k, uint8_t curve, const uint8_t *peer, size_t peer_len,
             uint8_t *out, size_t *out_len)
{
    ea_err rc;
    EVP_PKEY *p = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    size_t fl = ec_field_len(curve), n = fl;

    if ((rc = ec_check_pub(emu, curve, peer, peer_len)) != EA_OK)
        return rc;
    if ((rc = build_pkey(emu, curve, NULL, peer, &p)) != EA_OK)
        return rc;
    rc = EA_ERR_CRYPTO;
    ctx = EVP_PKEY_CTX_new_from_pkey(emu->libctx, k, NULL);
    if (ctx && EVP_PKEY_derive_init(ctx) > 0 && EVP_PKEY_derive_set_peer(ctx, p) > 0 &&
        EVP_PKEY_derive(ctx, out, &n) > 0 && n == fl) {
        *out_len = n;
        rc = EA_OK;
    }
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(p);
    return rc;
}
