/* Crypto commands: ECDSA, ECDH, digest, HKDF, TLS helpers, cipher, MAC. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "common/util.h"
#include "emu/emu_int.h"

static bool has_private(const ea_obj *o)
{
    return o->kind == KIND_EC_PAIR || o->kind == KIND_EC_PRIV;
}

static ea_err sig_digest_len(uint8_t algo, size_t *len)
{
    switch (algo) {
    case EA_SIG_ECDSA_SHA1:
        *len = 20;
        return EA_OK;
    case EA_SIG_ECDSA_SHA224:
        *len = 28;
        return EA_OK;
    case EA_SIG_ECDSA_SHA256:
        *len = 32;
        return EA_OK;
    case EA_SIG_ECDSA_SHA384:
        *len = 48;
        return EA_OK;
    case EA_SIG_ECDSA_SHA512:
        *len = 64;
        return EA_OK;
    default:
        return EA_ERR_WRONG_DATA;
    }
}

/* Common part of sign and verify: key, algorithm, and the pre-hashed input
 * whose length must match the algorithm (6985 otherwise, as nano tests). */
static ea_err ecdsa_args(apdu_ctx *c, uint32_t extra, tlvs *t, ea_obj **o, ea_cur *dg)
{
    uint32_t id;
    uint8_t algo;
    size_t dl;
    ea_err rc;

    if ((rc = tlvs_parse(c->body, TM(EA_TAG_1) | TM(EA_TAG_2) | TM(EA_TAG_3) | extra, t)) != EA_OK ||
        (rc = tlv_req_u32(t, EA_TAG_1, &id)) != EA_OK || (rc = tlv_req_u8(t, EA_TAG_2, &algo)) != EA_OK)
        return rc;
    if ((rc = sig_digest_len(algo, &dl)) != EA_OK)
        return rc;
    if ((rc = obj_get_usable(c, id, o)) != EA_OK)
        return rc;
    *dg = tlv_get(t, EA_TAG_3);
    if (!tlv_has(t, EA_TAG_3) || dg->n != dl)
        return EA_ERR_CONDITIONS;
    return EA_OK;
}

ea_err cmd_ecdsa_sign(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    ea_obj *o;
    ea_cur dg;
    EVP_PKEY *k;
    uint8_t sig[160];
    size_t sl = sizeof sig;
    ea_err rc;

    if ((rc = ecdsa_args(c, 0, &t, &o, &dg)) != EA_OK)
        return rc;
    if (!has_private(o))
        return EA_ERR_CONDITIONS;
    if ((rc = policy_check(o, EA_POL_ALLOW_SIGN)) != EA_OK)
        return rc;
    if ((rc = ec_pkey(c->emu, o, &k)) != EA_OK ||
        (rc = ec_sign_digest(c->emu, k, dg.p, dg.n, sig, &sl)) != EA_OK)
        return rc;
    ea_tlv_put_long(rsp, EA_TAG_1, sig, sl);
    return EA_OK;
}

ea_err cmd_ecdsa_verify(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    ea_obj *o;
    ea_cur dg;
    EVP_PKEY *k;
    ea_err rc;

    /* TAG_3 = hash, TAG_5 = signature: what every NXP host sends (spec §10.1). */
    if ((rc = ecdsa_args(c, TM(EA_TAG_5), &t, &o, &dg)) != EA_OK)
        return rc;
    if (!tlv_has(&t, EA_TAG_5))
        return EA_ERR_MALFORMED;
    if (o->kind != KIND_EC_PAIR && o->kind != KIND_EC_PUB)
        return EA_ERR_CONDITIONS;
    if ((rc = policy_check(o, EA_POL_ALLOW_VERIFY)) != EA_OK)
        return rc;
    if ((rc = ec_pkey(c->emu, o, &k)) != EA_OK)
        return rc;
    ea_cur sig = tlv_get(&t, EA_TAG_5);
    rc = ec_verify_digest(c->emu, k, dg.p, dg.n, sig.p, sig.n);
    if (rc != EA_OK && rc != EA_ERR_AUTH)
        return rc;
    /* A bad or malformed signature is an answer (FAILURE), not an error SW. */
    ea_tlv_u8(rsp, EA_TAG_1, rc == EA_OK ? EA_RESULT_SUCCESS : EA_RESULT_FAILURE);
    return EA_OK;
}

/* Put a derived secret either into the response or into an HMAC key object
 * (tag 0x47-style targets), honouring FORBID_DERIVED_OUTPUT of the source. */
static ea_err deliver_secret(apdu_ctx *c, const ea_obj *src, bool to_obj, uint32_t target,
                             const uint8_t *s, size_t n, bool exact_size, ea_wbuf *rsp)
{
    ea_obj *dst;
    ea_err rc;

    if (!to_obj) {
        /* A source marked FORBID_DERIVED_OUTPUT only feeds other objects. */
        if (policy_forbids_output(src))
            return EA_ERR_DENIED;
        ea_tlv_put_long(rsp, EA_TAG_1, s, n);
        return EA_OK;
    }
    if ((rc = obj_get_usable(c, target, &dst)) != EA_OK)
        return rc;
    if (dst->kind != KIND_HMAC || (exact_size && dst->val_len != n))
        return EA_ERR_CONDITIONS;
    if ((rc = policy_check(dst, EA_POL_ALLOW_WRITE)) != EA_OK)
        return rc;
    ea_obj tmp = *dst;
    tmp.val = (uint8_t *)s;
    tmp.val_len = n;
    if ((rc = obj_commit(c, &tmp)) != EA_OK)
        return rc;
    return obj_set_value(dst, s, n);
}

ea_err cmd_ecdh(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t id, target = 0;
    ea_obj *o;
    EVP_PKEY *k;
    uint8_t z[48];
    size_t zl = sizeof z;
    ea_err rc;

    if ((rc = tlvs_parse(c->body, TM(EA_TAG_1) | TM(EA_TAG_2) | TM(EA_TAG_7), &t)) != EA_OK ||
        (rc = tlv_req_u32(&t, EA_TAG_1, &id)) != EA_OK)
        return rc;
    if (!tlv_has(&t, EA_TAG_2))
        return EA_ERR_MALFORMED;
    if (tlv_has(&t, EA_TAG_7) && (rc = tlv_req_u32(&t, EA_TAG_7, &target)) != EA_OK)
        return rc;
    if ((rc = obj_get_usable(c, id, &o)) != EA_OK)
        return rc;
    if (!has_private(o))
        return EA_ERR_CONDITIONS;
    if ((rc = policy_check(o, EA_POL_ALLOW_KA)) != EA_OK)
        return rc;
    ea_cur peer = tlv_get(&t, EA_TAG_2);
    if ((rc = ec_pkey(c->emu, o, &k)) != EA_OK ||
        (rc = ec_dh(c->emu, k, o->curve, peer.p, peer.n, z, &zl)) != EA_OK)
        goto out;
    rc = deliver_secret(c, o, tlv_has(&t, EA_TAG_7), target, z, zl, true, rsp);
out:
    ea_cleanse(z, sizeof z);
    return rc;
}

ea_err cmd_digest(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint8_t mode, out[EVP_MAX_MD_SIZE];
    unsigned int ol = 0;
    size_t dl;
    ea_err rc;

    if ((rc = tlvs_parse(c->body, TM(EA_TAG_1) | TM(EA_TAG_2), &t)) != EA_OK ||
        (rc = tlv_req_u8(&t, EA_TAG_1, &mode)) != EA_OK)
        return rc;
    const char *name = digest_name(mode, &dl);
    if (!name)
        return EA_ERR_WRONG_DATA;
    ea_cur data = tlv_get(&t, EA_TAG_2);
    EVP_MD *md = EVP_MD_fetch(c->emu->libctx, name, NULL);
    rc = md && EVP_Digest(data.p, data.n, out, &ol, md, NULL) == 1 ? EA_OK : EA_ERR_CRYPTO;
    EVP_MD_free(md);
    if (rc == EA_OK)
        ea_tlv_put_long(rsp, EA_TAG_1, out, ol);
    return rc;
}

/* HMAC over the concatenation of up to three parts, in the chip's context. */
static ea_err hmac3(ea_emu *emu, const char *md, const uint8_t *key, size_t kl, const uint8_t *a,
                    size_t al, const uint8_t *b, size_t bl, const uint8_t *cc, size_t cl,
                    uint8_t *out, size_t *ol)
{
    ea_err rc = EA_ERR_CRYPTO;
    EVP_MAC *mac = EVP_MAC_fetch(emu->libctx, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM p[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)md, 0),
                       OSSL_PARAM_construct_end() };
    if (ctx && EVP_MAC_init(ctx, key, kl, p) == 1 && EVP_MAC_update(ctx, a, al) == 1 &&
        EVP_MAC_update(ctx, b, bl) == 1 && EVP_MAC_update(ctx, cc, cl) == 1 &&
        EVP_MAC_final(ctx, out, ol, EVP_MAX_MD_SIZE) == 1)
        rc = EA_OK;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

/* HKDF (RFC 5869) extract+expand, or expand-only where TAG_3 is an IV:
 * T(0) = IV, T(i) = HMAC(PRK, T(i-1) || info || i) — SP 800-108 feedback
 * mode, which is RFC 5869's expand when the IV is empty. */
ea_err cmd_hkdf(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t ikm_id, salt_id = 0, out_id = 0;
    uint8_t mode;
    uint16_t L;
    size_t hl;
    ea_obj *ikm, *salt_obj = NULL;
    ea_err rc;
    bool expand_only = c->p2 == EA_P2_HKDF_EXPAND_ONLY;
    uint8_t prk[EVP_MAX_MD_SIZE], okm[EMU_KDF_OUT_MAX + EVP_MAX_MD_SIZE], tprev[EVP_MAX_MD_SIZE];

    if ((rc = tlvs_parse(c->body,
                         TM(EA_TAG_1) | TM(EA_TAG_2) | TM(EA_TAG_3) | TM(EA_TAG_4) | TM(EA_TAG_5) |
                             TM(EA_TAG_6) | TM(EA_TAG_7),
                         &t)) != EA_OK ||
        (rc = tlv_req_u32(&t, EA_TAG_1, &ikm_id)) != EA_OK ||
        (rc = tlv_req_u8(&t, EA_TAG_2, &mode)) != EA_OK || (rc = tlv_req_u16(&t, EA_TAG_5, &L)) != EA_OK)
        return rc;
    const char *md = digest_name(mode, &hl);
    ea_cur salt = tlv_get(&t, EA_TAG_3), info = tlv_get(&t, EA_TAG_4);
    /* Applet limits: salt/IV 0..64 bytes, info 0..80, 1 <= L <= 255*HashLen
     * and what fits an APDU. */
    if (!md || mode == EA_DIGEST_SHA1 || salt.n > 64 || info.n > 80 || L == 0 ||
        L > EMU_KDF_OUT_MAX || L > 255 * hl)
        return EA_ERR_WRONG_DATA;
    if (tlv_has(&t, EA_TAG_6) && ((rc = tlv_req_u32(&t, EA_TAG_6, &salt_id)) != EA_OK))
        return rc;
    if (tlv_has(&t, EA_TAG_7) && ((rc = tlv_req_u32(&t, EA_TAG_7, &out_id)) != EA_OK))
        return rc;
    if (tlv_has(&t, EA_TAG_3) && tlv_has(&t, EA_TAG_6))
        return EA_ERR_WRONG_DATA; /* one salt, not two */
    if ((rc = obj_get_usable(c, ikm_id, &ikm)) != EA_OK)
        return rc;
    if (ikm->kind != KIND_HMAC)
        return EA_ERR_CONDITIONS;
    if ((rc = policy_check(ikm, EA_POL_ALLOW_HKDF)) != EA_OK)
        return rc;
    if (salt_id) {
        if ((rc = obj_get_usable(c, salt_id, &salt_obj)) != EA_OK)
            return rc;
        if (salt_obj->kind != KIND_HMAC || salt_obj->val_len > 64)
            return EA_ERR_CONDITIONS;
        if ((rc = policy_check(salt_obj, EA_POL_ALLOW_HKDF)) != EA_OK)
            return rc;
        salt = ea_cur_make(salt_obj->val, salt_obj->val_len);
    }

    const uint8_t *key;
    size_t kl, prk_len = sizeof prk;
    if (expand_only) {
        key = ikm->val;
        kl = ikm->val_len;
    } else {
        /* Extract: PRK = HMAC(salt or HashLen zeros, IKM). */
        uint8_t zeros[EVP_MAX_MD_SIZE] = { 0 };
        const uint8_t *s = salt.n ? salt.p : zeros;
        size_t sl = salt.n ? salt.n : hl;
        if ((rc = hmac3(c->emu, md, s, sl, ikm->val, ikm->val_len, NULL, 0, NULL, 0, prk, &prk_len)) !=
            EA_OK)
            goto out;
        key = prk;
        kl = prk_len;
    }
    size_t done = 0, tl = expand_only ? salt.n : 0;
    if (tl)
        memcpy(tprev, salt.p, tl);
    for (uint8_t i = 1; done < L; i++) {
        size_t ol = 0;
        if ((rc = hmac3(c->emu, md, key, kl, tprev, tl, info.p, info.n, &i, 1, okm + done, &ol)) != EA_OK)
            goto out;
        memcpy(tprev, okm + done, ol);
        tl = ol;
        done += ol;
    }
    if (!out_id && salt_obj && policy_forbids_output(salt_obj)) {
        rc = EA_ERR_DENIED; /* every secret input obeys FORBID_DERIVED_OUTPUT */
        goto out;
    }
    rc = deliver_secret(c, ikm, out_id != 0, out_id, okm, L, true, rsp);
out:
    ea_cleanse(prk, sizeof prk);
    ea_cleanse(okm, sizeof okm);
    ea_cleanse(tprev, sizeof tprev);
    return rc;
}

ea_err cmd_tls_random(apdu_ctx *c, ea_wbuf *rsp)
{
    if (c->body.n != 0)
        return EA_ERR_MALFORMED;
    if (RAND_bytes_ex(c->emu->libctx, c->ch->tls_random, 32, 0) != 1)
        return EA_ERR_CRYPTO;
    c->ch->tls_random_set = true;
    ea_tlv_put_long(rsp, EA_TAG_1, c->ch->tls_random, 32);
    return EA_OK;
}

static void put_u16_be(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* TLSCalculatePreMasterSecret: PSK (RFC 4279), ECDHE_PSK (RFC 5489) and EC
 * key exchange (RFC 4492); the result goes into the HMAC key of TAG_3. */
ea_err cmd_tls_pms(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t psk_id = 0, kp_id = 0, target;
    ea_obj *psk = NULL, *kp = NULL;
    uint8_t z[48], pms[4 + 48 + EMU_HMAC_KEY_MAX];
    size_t zl = 0, n;
    ea_err rc;
    EVP_PKEY *k;
    (void)rsp;

    if ((rc = tlvs_parse(c->body, TM(EA_TAG_1) | TM(EA_TAG_2) | TM(EA_TAG_3) | TM(EA_TAG_4), &t)) !=
            EA_OK ||
        (rc = tlv_req_u32(&t, EA_TAG_3, &target)) != EA_OK)
        return rc;
    if (tlv_has(&t, EA_TAG_1) && (rc = tlv_req_u32(&t, EA_TAG_1, &psk_id)) != EA_OK)
        return rc;
    if (tlv_has(&t, EA_TAG_2) && (rc = tlv_req_u32(&t, EA_TAG_2, &kp_id)) != EA_OK)
        return rc;
    if (!psk_id && !kp_id)
        return EA_ERR_WRONG_DATA;
    if (psk_id) {
        if ((rc = obj_get_usable(c, psk_id, &psk)) != EA_OK)
            return rc;
        if (psk->kind != KIND_HMAC)
            return EA_ERR_CONDITIONS;
        if ((rc = policy_check(psk, EA_POL_ALLOW_TLS_PMS)) != EA_OK)
            return rc;
    }
    if (kp_id) {
        if ((rc = obj_get_usable(c, kp_id, &kp)) != EA_OK)
            return rc;
        if (!has_private(kp))
            return EA_ERR_CONDITIONS;
        if ((rc = policy_check(kp, EA_POL_ALLOW_TLS_PMS)) != EA_OK)
            return rc;
        ea_cur peer = tlv_get(&t, EA_TAG_4);
        if ((rc = ec_pkey(c->emu, kp, &k)) != EA_OK)
            return rc;
        zl = sizeof z;
        if ((rc = ec_dh(c->emu, k, kp->curve, peer.p, peer.n, z, &zl)) != EA_OK)
            goto out;
    } else if (tlv_get(&t, EA_TAG_4).n != 0) {
        return EA_ERR_WRONG_DATA;
    }
    if (!psk) {
        memcpy(pms, z, zl); /* plain ECDH: the x coordinate */
        n = zl;
    } else {
        /* other_secret (zeros for plain PSK) || psk, each with a 2-byte length. */
        size_t ol = kp ? zl : psk->val_len;
        put_u16_be(pms, ol);
        if (kp)
            memcpy(pms + 2, z, zl);
        else
            memset(pms + 2, 0, ol);
        put_u16_be(pms + 2 + ol, psk->val_len);
        memcpy(pms + 4 + ol, psk->val, psk->val_len);
        n = 4 + ol + psk->val_len;
    }
    rc = deliver_secret(c, kp ? kp : psk, true, target, pms, n, false, rsp);
out:
    ea_cleanse(z, sizeof z);
    ea_cleanse(pms, sizeof pms);
    return rc;
}

static ea_err tls1_prf(ea_emu *emu, const char *md, const uint8_t *secret, size_t sl,
                       const uint8_t *label, size_t ll, const uint8_t *s1, const uint8_t *s2,
                       uint8_t *out, size_t n)
{
    ea_err rc = EA_ERR_CRYPTO;
    uint8_t seed[64 + 64];
    EVP_KDF *kdf = EVP_KDF_fetch(emu->libctx, "TLS1-PRF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;

    memcpy(seed, label, ll);
    memcpy(seed + ll, s1, 32);
    memcpy(seed + ll + 32, s2, 32);
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, (void *)secret, sl),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, ll + 64),
        OSSL_PARAM_construct_end(),
    };
    if (ctx && EVP_KDF_derive(ctx, out, n, p) == 1)
        rc = EA_OK;
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    ea_cleanse(seed, sizeof seed);
    return rc;
}

/* TLSPerformPRF. 4B/4C give the master secret (seed client||server), 4D/4E
 * the key block (seed server||client); the host passes one random, the SE
 * holds the other (from TLSGenerateRandom) and forgets it afterwards. 5A
 * (applet >= 7.2, undocumented) is taken as: both randoms from the host,
 * TAG_4 = client_random || server_random, order chosen by the label. */
ea_err cmd_tls_prf(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t id;
    uint8_t mode;
    uint16_t n;
    size_t hl;
    ea_obj *o;
    ea_err rc;
    uint8_t out[EMU_KDF_OUT_MAX];

    if ((rc = tlvs_parse(c->body, TM(EA_TAG_1) | TM(EA_TAG_2) | TM(EA_TAG_3) | TM(EA_TAG_4) | TM(EA_TAG_5),
                         &t)) != EA_OK ||
        (rc = tlv_req_u32(&t, EA_TAG_1, &id)) != EA_OK || (rc = tlv_req_u8(&t, EA_TAG_2, &mode)) != EA_OK ||
        (rc = tlv_req_u16(&t, EA_TAG_5, &n)) != EA_OK)
        return rc;
    const char *md = digest_name(mode, &hl);
    ea_cur label = tlv_get(&t, EA_TAG_3), rnd = tlv_get(&t, EA_TAG_4);
    bool both = c->p2 == EA_P2_TLS_PRF_BOTH;
    if ((mode != EA_DIGEST_SHA256 && mode != EA_DIGEST_SHA384) || label.n == 0 || label.n > 64 ||
        rnd.n != (both ? 64u : 32u) || n == 0 || n > EMU_KDF_OUT_MAX)
        return EA_ERR_WRONG_DATA;
    if (!both && !c->ch->tls_random_set)
        return EA_ERR_CONDITIONS; /* no SE-side random: TLSGenerateRandom first */
    if ((rc = obj_get_usable(c, id, &o)) != EA_OK)
        return rc;
    if (o->kind != KIND_HMAC)
        return EA_ERR_CONDITIONS;
    if ((rc = policy_check(o, EA_POL_ALLOW_TLS_KDF)) != EA_OK)
        return rc;
    if (policy_forbids_output(o))
        return EA_ERR_DENIED;

    const uint8_t *s1, *s2, *se = c->ch->tls_random;
    switch (c->p2) {
    case EA_P2_TLS_PRF_CLI_HELLO: /* host: client hello random; SE: server's */
        s1 = rnd.p;
        s2 = se;
        break;
    case EA_P2_TLS_PRF_SRV_HELLO: /* host: server hello random; SE: client's */
        s1 = se;
        s2 = rnd.p;
        break;
    case EA_P2_TLS_PRF_CLI_RND: /* key block: seed server || client */
        s1 = se;
        s2 = rnd.p;
        break;
    case EA_P2_TLS_PRF_SRV_RND:
        s1 = rnd.p;
        s2 = se;
        break;
    default: { /* BOTH */
        static const char kx[] = "key expansion";
        bool key_block = label.n == sizeof kx - 1 && memcmp(label.p, kx, label.n) == 0;
        s1 = key_block ? rnd.p + 32 : rnd.p;
        s2 = key_block ? rnd.p : rnd.p + 32;
        break;
    }
    }
    rc = tls1_prf(c->emu, md, o->val, o->val_len, label.p, label.n, s1, s2, out, n);
    if (!both) {
        c->ch->tls_random_set = false;
        ea_cleanse(c->ch->tls_random, sizeof c->ch->tls_random);
    }
    if (rc == EA_OK)
        ea_tlv_put_long(rsp, EA_TAG_1, out, n);
    ea_cleanse(out, sizeof out);
    return rc;
}

ea_err cmd_cipher(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t id;
    uint8_t mode;
    ea_obj *o;
    ea_err rc;
    bool enc = c->p2 == EA_P2_ENCRYPT_ONESHOT;
    const char *name;
    char full[32];

    if ((rc = tlvs_parse(c->body, TM(EA_TAG_1) | TM(EA_TAG_2) | TM(EA_TAG_3) | TM(EA_TAG_4), &t)) !=
            EA_OK ||
        (rc = tlv_req_u32(&t, EA_TAG_1, &id)) != EA_OK || (rc = tlv_req_u8(&t, EA_TAG_2, &mode)) != EA_OK)
        return rc;
    ea_cur data = tlv_get(&t, EA_TAG_3), iv = tlv_get(&t, EA_TAG_4);
    switch (mode) {
    case EA_CIPHER_AES_ECB_NOPAD:
        name = "ECB";
        if (tlv_has(&t, EA_TAG_4))
            return EA_ERR_WRONG_DATA;
        break;
    case EA_CIPHER_AES_CBC_NOPAD:
        name = "CBC";
        break;
    case EA_CIPHER_AES_CTR:
        name = "CTR";
        break;
    default:
        return EA_ERR_WRONG_DATA;
    }
    if (mode != EA_CIPHER_AES_ECB_NOPAD && iv.n != 16)
        return EA_ERR_WRONG_DATA;
    if (data.n == 0 || (mode != EA_CIPHER_AES_CTR && data.n % 16 != 0) ||
        data.n > EA_EMU_APDU_MAX - 16)
        return EA_ERR_WRONG_DATA;
    if ((rc = obj_get_usable(c, id, &o)) != EA_OK)
        return rc;
    if (o->kind != KIND_AES)
        return EA_ERR_CONDITIONS;
    if ((rc = policy_check(o, enc ? EA_POL_ALLOW_ENC : EA_POL_ALLOW_DEC)) != EA_OK)
        return rc;
    snprintf(full, sizeof full, "AES-%zu-%s", o->val_len * 8, name);

    uint8_t *out = ea_wbuf_reserve(rsp, 4 + data.n);
    if (!out)
        return EA_ERR_BUF_TOO_SMALL;
    out[0] = EA_TAG_1;
    out[1] = 0x82;
    out[2] = (uint8_t)(data.n >> 8);
    out[3] = (uint8_t)data.n;
    EVP_CIPHER *ci = EVP_CIPHER_fetch(c->emu->libctx, full, NULL);
    EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0;
    rc = EA_ERR_CRYPTO;
    if (ci && cx && EVP_CipherInit_ex2(cx, ci, o->val, iv.n ? iv.p : NULL, enc ? 1 : 0, NULL) == 1 &&
        EVP_CIPHER_CTX_set_padding(cx, 0) == 1 &&
        EVP_CipherUpdate(cx, out + 4, &l1, data.p, (int)data.n) == 1 &&
        EVP_CipherFinal_ex(cx, out + 4 + l1, &l2) == 1 && (size_t)(l1 + l2) == data.n)
        rc = EA_OK;
    EVP_CIPHER_CTX_free(cx);
    EVP_CIPHER_free(ci);
    return rc;
}

ea_err cmd_mac(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t id;
    uint8_t algo, tag[EVP_MAX_MD_SIZE];
    size_t tl = 0;
    ea_obj *o;
    ea_err rc;
    bool gen = c->p2 == EA_P2_GENERATE_ONESHOT;
    const char *macname, *sub = NULL;
    obj_kind want;

    if ((rc = tlvs_parse(c->body, TM(EA_TAG_1) | TM(EA_TAG_2) | TM(EA_TAG_3) | (gen ? 0 : TM(EA_TAG_5)),
                         &t)) != EA_OK ||
        (rc = tlv_req_u32(&t, EA_TAG_1, &id)) != EA_OK || (rc = tlv_req_u8(&t, EA_TAG_2, &algo)) != EA_OK)
        return rc;
    switch (algo) {
    case EA_MAC_HMAC_SHA1:
        macname = "HMAC", sub = "SHA1", want = KIND_HMAC;
        break;
    case EA_MAC_HMAC_SHA256:
        macname = "HMAC", sub = "SHA256", want = KIND_HMAC;
        break;
    case EA_MAC_HMAC_SHA384:
        macname = "HMAC", sub = "SHA384", want = KIND_HMAC;
        break;
    case EA_MAC_HMAC_SHA512:
        macname = "HMAC", sub = "SHA512", want = KIND_HMAC;
        break;
    case EA_MAC_CMAC_128:
        macname = "CMAC", want = KIND_AES;
        break;
    default:
        return EA_ERR_WRONG_DATA;
    }
    if (!gen && !tlv_has(&t, EA_TAG_5))
        return EA_ERR_MALFORMED;
    if ((rc = obj_get_usable(c, id, &o)) != EA_OK)
        return rc;
    if (o->kind != want)
        return EA_ERR_CONDITIONS;
    if ((rc = policy_check(o, gen ? EA_POL_ALLOW_SIGN : EA_POL_ALLOW_VERIFY)) != EA_OK)
        return rc;
    char cipher[16];
    snprintf(cipher, sizeof cipher, "AES-%zu-CBC", o->val_len * 8);
    OSSL_PARAM p[] = {
        want == KIND_HMAC ? OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)sub, 0)
                          : OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0),
        OSSL_PARAM_construct_end(),
    };
    ea_cur data = tlv_get(&t, EA_TAG_3);
    EVP_MAC *mac = EVP_MAC_fetch(c->emu->libctx, macname, NULL);
    EVP_MAC_CTX *mx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    rc = EA_ERR_CRYPTO;
    if (mx && EVP_MAC_init(mx, o->val, o->val_len, p) == 1 && EVP_MAC_update(mx, data.p, data.n) == 1 &&
        EVP_MAC_final(mx, tag, &tl, sizeof tag) == 1)
        rc = EA_OK;
    EVP_MAC_CTX_free(mx);
    EVP_MAC_free(mac);
    if (rc != EA_OK)
        return rc;
    if (gen) {
        ea_tlv_put_long(rsp, EA_TAG_1, tag, tl);
    } else {
        /* Constant-time compare; the length is public (it is in the APDU). */
        ea_cur want_tag = tlv_get(&t, EA_TAG_5);
        bool ok = want_tag.n == tl && CRYPTO_memcmp(want_tag.p, tag, tl) == 0;
        ea_tlv_u8(rsp, EA_TAG_1, ok ? EA_RESULT_SUCCESS : EA_RESULT_FAILURE);
    }
    ea_cleanse(tag, sizeof tag);
    return EA_OK;
}
