/* Object writes and reads: WriteECKey, WriteSymmKey, WriteBinary,
 * ReadObject (plain and with attestation). */
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "common/util.h"
#include "emu/emu_int.h"

#define EC_VAL_MAX (3u * 48u + 1u)

static bool is_ec(const ea_obj *o)
{
    return o->kind == KIND_EC_PAIR || o->kind == KIND_EC_PRIV || o->kind == KIND_EC_PUB;
}

/* Shared start of every write: the id, and what an existing object allows. */
static ea_err write_common(apdu_ctx *c, const tlvs *t, uint32_t *id, ea_obj **existing)
{
    ea_err rc = tlv_req_u32(t, EA_TAG_1, id);
    if (rc != EA_OK)
        return rc;
    if (*id == 0)
        return EA_ERR_CONDITIONS; /* id 0 means "everyone" in policies; never an object */
    *existing = obj_find(c, *id);
    /* 7FFF0000..7FFFFFFF belong to the applet (spec §4.3): no new objects there. */
    if (!*existing && (*id & 0xFFFF0000u) == 0x7FFF0000u)
        return EA_ERR_CONDITIONS;
    if (*existing) {
        if ((*existing)->corrupt)
            return EA_ERR_CORRUPT;
        /* Policy and transience are fixed at creation. */
        if (tlv_has(t, EA_TAG_POLICY) ||
            (*existing)->transient != ((c->ins & EA_INS_MASK_TRANSIENT) != 0))
            return EA_ERR_CONDITIONS;
    } else if (tlv_has(t, EA_TAG_POLICY)) {
        ea_cur p = tlv_get(t, EA_TAG_POLICY);
        if ((rc = policy_validate(p.p, p.n)) != EA_OK)
            return rc;
    }
    return EA_OK;
}

static ea_obj *new_obj(apdu_ctx *c, const tlvs *t, uint32_t id, obj_kind kind, uint8_t origin)
{
    ea_obj *o = obj_new(id);
    if (!o)
        return NULL;
    o->kind = (uint8_t)kind;
    o->origin = origin;
    o->transient = (c->ins & EA_INS_MASK_TRANSIENT) != 0;
    if (tlv_has(t, EA_TAG_POLICY)) {
        ea_cur p = tlv_get(t, EA_TAG_POLICY);
        o->has_policy = true;
        memcpy(o->policy, p.p, p.n);
        o->policy_len = p.n;
    }
    return o;
}

/* Store a new value in an existing object, persistently; on failure the
 * object keeps its old value. */
static ea_err replace_value(apdu_ctx *c, ea_obj *o, const uint8_t *v, size_t n, uint8_t origin)
{
    ea_obj tmp = *o;
    ea_err rc;
    tmp.val = (uint8_t *)v;
    tmp.val_len = n;
    tmp.origin = origin;
    if ((rc = obj_commit(c, &tmp)) != EA_OK)
        return rc;
    o->origin = origin;
    return obj_set_value(o, v, n);
}

ea_err cmd_write_ec_key(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t id;
    uint8_t curve = 0, keypart = c->p1 & EA_P1_KEYPART_MASK;
    uint8_t val[EC_VAL_MAX];
    ea_obj *o = NULL;
    ea_err rc;
    (void)rsp;

    if ((rc = tlvs_parse(c->body,
                         TM(EA_TAG_POLICY) | TM(EA_TAG_1) | TM(EA_TAG_2) | TM(EA_TAG_3) |
                             TM(EA_TAG_4) | TM(EA_TAG_11),
                         &t)) != EA_OK)
        return rc;
    if ((rc = write_common(c, &t, &id, &o)) != EA_OK)
        return rc;
    bool has_priv = tlv_has(&t, EA_TAG_3), has_pub = tlv_has(&t, EA_TAG_4);
    ea_cur priv = tlv_get(&t, EA_TAG_3), pub = tlv_get(&t, EA_TAG_4);

    if (o) {
        if (!is_ec(o))
            return EA_ERR_CONDITIONS;
        if (tlv_has(&t, EA_TAG_2) && (tlv_req_u8(&t, EA_TAG_2, &curve) != EA_OK || curve != o->curve))
            return EA_ERR_CONDITIONS;
        curve = o->curve;
        keypart = o->kind == KIND_EC_PAIR ? EA_P1_KEY_PAIR
                  : o->kind == KIND_EC_PRIV ? EA_P1_PRIVATE
                                            : EA_P1_PUBLIC; /* P1 keypart ignored for existing */
    } else {
        if ((rc = tlv_req_u8(&t, EA_TAG_2, &curve)) != EA_OK)
            return EA_ERR_CONDITIONS; /* a new key needs its curve */
        if (!ec_field_len(curve))
            return EA_ERR_CONDITIONS; /* curve not instantiated on this chip */
        if (keypart == 0)
            return EA_ERR_WRONG_DATA;
    }
    size_t fl = ec_field_len(curve), pl = 2 * fl + 1, vlen;
    uint8_t origin = EA_ORIGIN_EXTERNAL;
    uint32_t need;

    if (keypart == EA_P1_KEY_PAIR && !has_priv && !has_pub) {
        need = EA_POL_ALLOW_GEN;
        if ((rc = ec_generate(c->emu, curve, val, val + fl)) != EA_OK)
            goto out;
        vlen = 3 * fl + 1;
        origin = EA_ORIGIN_INTERNAL;
    } else {
        need = EA_POL_ALLOW_WRITE;
        bool want_priv = keypart != EA_P1_PUBLIC, want_pub = keypart != EA_P1_PRIVATE;
        if (want_priv != has_priv || (keypart == EA_P1_KEY_PAIR && !has_pub) ||
            (keypart == EA_P1_PRIVATE && has_pub) || (keypart == EA_P1_PUBLIC && !has_pub)) {
            rc = EA_ERR_WRONG_DATA;
            goto out;
        }
        (void)want_pub;
        if ((has_priv && priv.n != fl) || (has_pub && pub.n != pl)) {
            rc = EA_ERR_CONDITIONS; /* wrong key length (nano expects 6985) */
            goto out;
        }
        if (has_priv) {
            memcpy(val, priv.p, fl);
            if ((rc = ec_pub_from_priv(c->emu, curve, val, val + fl)) != EA_OK)
                goto out;
            /* A pair must be consistent: the public half is derived, not trusted. */
            if (has_pub && memcmp(val + fl, pub.p, pl) != 0) {
                rc = EA_ERR_WRONG_DATA;
                goto out;
            }
            vlen = fl + pl;
        } else {
            if ((rc = ec_check_pub(c->emu, curve, pub.p, pub.n)) != EA_OK)
                goto out;
            memcpy(val, pub.p, pl);
            vlen = pl;
        }
    }

    if (o) {
        if ((rc = policy_check(o, need)) == EA_OK)
            rc = replace_value(c, o, val, vlen, origin);
    } else {
        obj_kind kind = keypart == EA_P1_KEY_PAIR ? KIND_EC_PAIR
                        : keypart == EA_P1_PRIVATE ? KIND_EC_PRIV
                                                   : KIND_EC_PUB;
        ea_obj *n = new_obj(c, &t, id, kind, origin);
        if (!n) {
            rc = EA_ERR_NO_MEMORY;
            goto out;
        }
        n->curve = curve;
        if ((rc = obj_set_value(n, val, vlen)) != EA_OK) {
            obj_free(n);
            goto out;
        }
        rc = obj_insert(c, n);
    }
out:
    ea_cleanse(val, sizeof val);
    return rc;
}

ea_err cmd_write_symm_key(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t id;
    ea_obj *o = NULL;
    ea_err rc;
    obj_kind kind = c->p1 == EA_P1_AES ? KIND_AES : KIND_HMAC;
    (void)rsp;

    if ((rc = tlvs_parse(c->body,
                         TM(EA_TAG_POLICY) | TM(EA_TAG_1) | TM(EA_TAG_2) | TM(EA_TAG_3) |
                             TM(EA_TAG_4) | TM(EA_TAG_11),
                         &t)) != EA_OK)
        return rc;
    if ((rc = write_common(c, &t, &id, &o)) != EA_OK)
        return rc;
    if (tlv_has(&t, EA_TAG_2))
        return EA_ERR_UNSUPPORTED; /* RFC 3394 wrapped import: not emulated */
    if (!tlv_has(&t, EA_TAG_3))
        return EA_ERR_MALFORMED;
    ea_cur k = tlv_get(&t, EA_TAG_3);
    if (kind == KIND_AES ? (k.n != 16 && k.n != 24 && k.n != 32) : (k.n == 0 || k.n > EMU_HMAC_KEY_MAX))
        return EA_ERR_WRONG_DATA;
    if (o) {
        if (o->kind != kind)
            return EA_ERR_CONDITIONS;
        if ((rc = policy_check(o, EA_POL_ALLOW_WRITE)) != EA_OK)
            return rc;
        return replace_value(c, o, k.p, k.n, EA_ORIGIN_EXTERNAL);
    }
    ea_obj *n = new_obj(c, &t, id, kind, EA_ORIGIN_EXTERNAL);
    if (!n)
        return EA_ERR_NO_MEMORY;
    if ((rc = obj_set_value(n, k.p, k.n)) != EA_OK) {
        obj_free(n);
        return rc;
    }
    return obj_insert(c, n);
}

ea_err cmd_write_binary(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t id;
    uint16_t offset, flen = 0;
    ea_obj *o = NULL;
    ea_err rc;
    (void)rsp;

    if ((rc = tlvs_parse(c->body,
                         TM(EA_TAG_POLICY) | TM(EA_TAG_1) | TM(EA_TAG_2) | TM(EA_TAG_3) |
                             TM(EA_TAG_4) | TM(EA_TAG_11),
                         &t)) != EA_OK)
        return rc;
    if ((rc = write_common(c, &t, &id, &o)) != EA_OK)
        return rc;
    if ((rc = tlv_opt_u16(&t, EA_TAG_2, 0, &offset)) != EA_OK)
        return rc;
    if (tlv_has(&t, EA_TAG_3) && (rc = tlv_req_u16(&t, EA_TAG_3, &flen)) != EA_OK)
        return rc;
    ea_cur data = tlv_get(&t, EA_TAG_4);

    if (o) {
        if (o->kind != KIND_BINARY || (tlv_has(&t, EA_TAG_3) && flen != o->val_len))
            return EA_ERR_CONDITIONS;
        if ((rc = policy_check(o, EA_POL_ALLOW_WRITE)) != EA_OK)
            return rc;
        if ((size_t)offset + data.n > o->val_len)
            return EA_ERR_WRONG_DATA; /* past the declared length: 6A80 */
        if (data.n == 0)
            return EA_OK;
        uint8_t buf[EMU_BINARY_MAX];
        memcpy(buf, o->val, o->val_len);
        memcpy(buf + offset, data.p, data.n);
        rc = replace_value(c, o, buf, o->val_len, o->origin);
        ea_cleanse(buf, o->val_len);
        return rc;
    }
    if (!tlv_has(&t, EA_TAG_3))
        return EA_ERR_CONDITIONS; /* a new file needs its length */
    if (flen == 0 || flen > EMU_BINARY_MAX)
        return EA_ERR_WRONG_DATA;
    if ((size_t)offset + data.n > flen)
        return EA_ERR_WRONG_DATA;
    ea_obj *n = new_obj(c, &t, id, KIND_BINARY, EA_ORIGIN_EXTERNAL);
    if (!n)
        return EA_ERR_NO_MEMORY;
    uint8_t buf[EMU_BINARY_MAX];
    memset(buf, 0, flen);
    if (data.n)
        memcpy(buf + offset, data.p, data.n);
    rc = obj_set_value(n, buf, flen);
    ea_cleanse(buf, flen);
    if (rc != EA_OK) {
        obj_free(n);
        return rc;
    }
    return obj_insert(c, n);
}

/* The readable part of an object, if any: public keys and files. */
static ea_err readable_part(const ea_obj *o, const tlvs *t, const uint8_t **p, size_t *n)
{
    uint16_t off, len;
    ea_err rc;

    switch (o->kind) {
    case KIND_EC_PAIR:
        *p = o->val + ec_field_len(o->curve);
        *n = o->val_len - ec_field_len(o->curve);
        break;
    case KIND_EC_PUB:
        *p = o->val;
        *n = o->val_len;
        break;
    case KIND_BINARY:
        if ((rc = tlv_opt_u16(t, EA_TAG_2, 0, &off)) != EA_OK ||
            (rc = tlv_opt_u16(t, EA_TAG_3, 0, &len)) != EA_OK)
            return rc;
        if (off > o->val_len)
            return EA_ERR_WRONG_DATA;
        if (len == 0)
            len = (uint16_t)(o->val_len - off); /* default: the rest of the file */
        if ((size_t)off + len > o->val_len)
            return EA_ERR_WRONG_DATA;
        *p = o->val + off;
        *n = len;
        return EA_OK;
    default:
        return EA_ERR_CONDITIONS; /* private and secret values never leave the chip */
    }
    if (tlv_has(t, EA_TAG_2) || tlv_has(t, EA_TAG_3))
        return EA_ERR_WRONG_DATA; /* offset/length apply to files only */
    return EA_OK;
}

static ea_err attest(apdu_ctx *c, const tlvs *t, ea_obj *o, ea_wbuf *rsp);

ea_err cmd_read_object(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t id;
    ea_obj *o;
    bool att = (c->ins & EA_INS_MASK_ATTEST) != 0;
    uint32_t allowed = TM(EA_TAG_1) | TM(EA_TAG_2) | TM(EA_TAG_3) | TM(EA_TAG_4);
    ea_err rc;

    if (att)
        allowed |= TM(EA_TAG_5) | TM(EA_TAG_6) | TM(EA_TAG_7);
    if ((rc = tlvs_parse(c->body, allowed, &t)) != EA_OK ||
        (rc = tlv_req_u32(&t, EA_TAG_1, &id)) != EA_OK)
        return rc;
    if (tlv_has(&t, EA_TAG_4))
        return EA_ERR_UNSUPPORTED; /* RSA components: no RSA keys here */
    if ((rc = obj_get_usable(c, id, &o)) != EA_OK)
        return rc;
    if (att)
        return attest(c, &t, o, rsp);
    const uint8_t *p;
    size_t n;
    if ((rc = readable_part(o, &t, &p, &n)) != EA_OK)
        return rc;
    if ((rc = policy_check(o, EA_POL_ALLOW_READ)) != EA_OK)
        return rc;
    ea_tlv_put_long(rsp, EA_TAG_1, p, n);
    return EA_OK;
}

/* Attested read (spec §4.5). The signature covers SHA-256 of the C-APDU
 * (without Le) and the response TLVs rebuilt in the 82-length form (7.2), or
 * the concatenated values (3.x). */
static ea_err attest(apdu_ctx *c, const tlvs *t, ea_obj *o, ea_wbuf *rsp)
{
    uint32_t kid;
    uint8_t algo, dg_mode;
    ea_obj *ak, *uido;
    ea_err rc;
    EVP_PKEY *k;
    const uint8_t *data = NULL;
    size_t data_n = 0, dlen;
    bool v7 = c->emu->version >= 0x07000000u;

    if ((rc = tlv_req_u32(t, EA_TAG_5, &kid)) != EA_OK || (rc = tlv_req_u8(t, EA_TAG_6, &algo)) != EA_OK)
        return rc;
    ea_cur fresh = tlv_get(t, EA_TAG_7);
    if (!tlv_has(t, EA_TAG_7) || fresh.n != EA_FRESHNESS_LEN)
        return EA_ERR_WRONG_DATA;
    if (algo == EA_SIG_ECDSA_SHA256)
        dg_mode = EA_DIGEST_SHA256;
    else if (algo == EA_SIG_ECDSA_SHA384)
        dg_mode = EA_DIGEST_SHA384;
    else
        return EA_ERR_WRONG_DATA;
    if ((rc = obj_get_usable(c, kid, &ak)) != EA_OK)
        return rc;
    if (ak->kind != KIND_EC_PAIR && ak->kind != KIND_EC_PRIV)
        return EA_ERR_CONDITIONS;
    if ((rc = policy_check(ak, EA_POL_ALLOW_ATTESTATION)) != EA_OK)
        return rc;
    if ((rc = obj_get_usable(c, EA_OBJ_UNIQUE_ID, &uido)) != EA_OK || uido->val_len != EA_UNIQUE_ID_LEN)
        return EA_ERR_CONDITIONS;
    /* The value is included only when a plain read would give it. */
    if (readable_part(o, t, &data, &data_n) != EA_OK || policy_check(o, EA_POL_ALLOW_READ) != EA_OK) {
        data = NULL;
        data_n = 0;
    }

    uint8_t attrs[128], ts[EA_TIMESTAMP_LEN] = { 0 }, size[2];
    ea_wbuf aw = ea_wbuf_make(attrs, sizeof attrs);
    if ((rc = obj_attributes(c->emu, o, &aw)) != EA_OK)
        return rc;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    ea_put_be64(ts + 4, (uint64_t)now.tv_sec * 10u + (uint64_t)now.tv_nsec / 100000000u);
    size[0] = (uint8_t)(obj_size(o) >> 8);
    size[1] = (uint8_t)obj_size(o);

    /* Response first (the signed TLVs are a copy of it), signature last. */
    size_t start = rsp->len;
    const char *mdname = digest_name(dg_mode, &dlen);
    EVP_MD *md = EVP_MD_fetch(c->emu->libctx, mdname, NULL);
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    uint8_t apdu_hash[32], dg[64], sig[160];
    size_t sig_len = sizeof sig;
    unsigned int hl = 0;
    rc = EA_ERR_CRYPTO;
    if (!md || !mc)
        goto out;
    if (v7) {
        EVP_MD *sha256 = EVP_MD_fetch(c->emu->libctx, "SHA256", NULL);
        int ok = sha256 && EVP_Digest(c->raw, c->raw_nole_len, apdu_hash, &hl, sha256, NULL) == 1;
        EVP_MD_free(sha256);
        if (!ok)
            goto out;
        if (EVP_DigestInit_ex(mc, md, NULL) != 1 || EVP_DigestUpdate(mc, apdu_hash, hl) != 1)
            goto out;
        uint8_t tmp[EA_EMU_APDU_MAX];
        ea_wbuf sw = ea_wbuf_make(tmp, sizeof tmp);
        if (data)
            ea_tlv_put_long(&sw, EA_TAG_1, data, data_n);
        ea_tlv_put_long(&sw, EA_TAG_2, uido->val, uido->val_len);
        ea_tlv_put_long(&sw, EA_TAG_3, attrs, aw.len);
        ea_tlv_put_long(&sw, EA_TAG_4, size, 2);
        ea_tlv_put_long(&sw, EA_TAG_TIMESTAMP, ts, sizeof ts);
        if (sw.overflow || EVP_DigestUpdate(mc, tmp, sw.len) != 1)
            goto out;
        if (data)
            ea_tlv_put_long(rsp, EA_TAG_1, data, data_n);
        ea_tlv_put_long(rsp, EA_TAG_2, uido->val, uido->val_len);
        ea_tlv_put_long(rsp, EA_TAG_3, attrs, aw.len);
        ea_tlv_u16(rsp, EA_TAG_4, (uint16_t)obj_size(o));
        ea_tlv_put_long(rsp, EA_TAG_TIMESTAMP, ts, sizeof ts);
    } else {
        if (EVP_DigestInit_ex(mc, md, NULL) != 1 || EVP_DigestUpdate(mc, data, data_n) != 1 ||
            EVP_DigestUpdate(mc, attrs, aw.len) != 1 || EVP_DigestUpdate(mc, ts, sizeof ts) != 1 ||
            EVP_DigestUpdate(mc, fresh.p, fresh.n) != 1 ||
            EVP_DigestUpdate(mc, uido->val, uido->val_len) != 1)
            goto out;
        if (data)
            ea_tlv_put_long(rsp, EA_TAG_1, data, data_n);
        ea_tlv_put_long(rsp, EA_TAG_2, attrs, aw.len);
        ea_tlv_put_long(rsp, EA_TAG_3, ts, sizeof ts);
        ea_tlv_put_long(rsp, EA_TAG_4, fresh.p, fresh.n);
        ea_tlv_put_long(rsp, EA_TAG_5, uido->val, uido->val_len);
    }
    if (EVP_DigestFinal_ex(mc, dg, &hl) != 1)
        goto out;
    if ((rc = ec_pkey(c->emu, ak, &k)) != EA_OK ||
        (rc = ec_sign_digest(c->emu, k, dg, hl, sig, &sig_len)) != EA_OK)
        goto out;
    ea_tlv_put_long(rsp, v7 ? EA_TAG_SIGNATURE : EA_TAG_6, sig, sig_len);
    rc = rsp->overflow ? EA_ERR_BUF_TOO_SMALL : EA_OK;
out:
    if (rc != EA_OK)
        rsp->len = start;
    EVP_MD_CTX_free(mc);
    EVP_MD_free(md);
    return rc;
}
