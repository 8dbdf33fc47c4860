/* One typed function per applet command: encode the TLVs (ascending tags,
 * spec §2.2 length forms), exchange, decode the response strictly (the
 * expected TLVs in order, nothing left over). */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/util.h"
#include "host/host_int.h"

#define BODY_MAX (EA_HOST_APDU_MAX - 16)

ea_policy ea_policy_everyone(uint32_t ar)
{
    ea_policy p = { 0 };
    p.n = 1;
    p.rule[0].auth_id = 0;
    p.rule[0].ar = ar;
    return p;
}

static void put_policy(ea_wbuf *w, const ea_policy *p)
{
    uint8_t b[EA_POLICY_MAX_RULES * 9];
    size_t n = 0;
    if (!p || p->n == 0)
        return;
    for (size_t i = 0; i < p->n && i < EA_POLICY_MAX_RULES; i++) {
        b[n] = 8;
        ea_put_be32(b + n + 1, p->rule[i].auth_id);
        ea_put_be32(b + n + 5, p->rule[i].ar);
        n += 9;
    }
    ea_tlv_put(w, EA_TAG_POLICY, b, n);
}

/* Parse a response made of exactly the tags in want[] (in that order; a
 * tag in optional_mask by index may be absent). */
static ea_err parse_rsp(ea_host *h, const char *what, const uint8_t *r, size_t rl, const uint8_t *want,
                        size_t n, uint32_t optional_mask, ea_cur *vals)
{
    ea_cur c = ea_cur_make(r, rl);
    for (size_t i = 0; i < n; i++) {
        vals[i] = ea_cur_make(NULL, 0);
        ea_cur save = c, v;
        uint8_t tag;
        if (c.n > 0 && ea_tlv_next(&c, &tag, &v) == EA_OK && tag == want[i]) {
            vals[i] = v;
            continue;
        }
        c = save;
        if (!(optional_mask & (1u << i)))
            goto bad;
    }
    if (c.n == 0)
        return EA_OK;
bad:
    snprintf(((struct ea_host *)h)->last_error, sizeof h->last_error, "%s: malformed answer", what);
    return EA_ERR_MALFORMED;
}

/* The single TLV 41 answer most commands give. */
static ea_err one_tag(ea_host *h, const char *what, uint32_t id, uint8_t ins, uint8_t p1, uint8_t p2,
                      ea_wbuf *w, int frame, ea_cur *v, uint8_t *r, size_t rcap)
{
    size_t rl = rcap;
    static const uint8_t want[] = { EA_TAG_1 };
    if (w->overflow)
        return EA_ERR_ARG;
    ea_err rc = host_cmd(h, what, id, ins, p1, p2, w->p, w->len, frame, r, &rl);
    if (rc == EA_OK)
        rc = parse_rsp(h, what, r, rl, want, 1, 0, v);
    return rc;
}

static ea_err copy_out(ea_host *h, const char *what, ea_cur v, uint8_t *out, size_t *out_len)
{
    if (v.n > *out_len) {
        *out_len = v.n;
        snprintf(h->last_error, sizeof h->last_error, "%s: output buffer too small", what);
        return EA_ERR_BUF_TOO_SMALL;
    }
    memcpy(out, v.p, v.n);
    *out_len = v.n;
    return EA_OK;
}

/* ---- management ----------------------------------------------------------- */

ea_err ea_host_get_version(ea_host *h, ea_se_version *v)
{
    uint8_t r[64];
    ea_cur t;
    ea_wbuf w = ea_wbuf_make(NULL, 0);
    ea_err rc = one_tag(h, "GetVersion", 0, EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_VERSION, &w, FRAME_SHORT, &t, r,
                        sizeof r);
    if (rc != EA_OK)
        return rc;
    if (t.n != 7)
        return EA_ERR_MALFORMED;
    v->major = t.p[0];
    v->minor = t.p[1];
    v->patch = t.p[2];
    v->features = (uint16_t)(t.p[3] << 8 | t.p[4]);
    v->securebox = (uint16_t)(t.p[5] << 8 | t.p[6]);
    return EA_OK;
}

ea_err ea_host_get_random(ea_host *h, uint8_t *out, size_t n)
{
    uint8_t b[8], r[EA_HOST_APDU_MAX];
    ea_cur t;
    while (n > 0) {
        size_t chunk = n > 1024 ? 1024 : n;
        ea_wbuf w = ea_wbuf_make(b, sizeof b);
        ea_tlv_u16(&w, EA_TAG_1, (uint16_t)chunk);
        ea_err rc = one_tag(h, "GetRandom", 0, EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_RANDOM, &w, FRAME_EXT, &t, r,
                            sizeof r);
        if (rc != EA_OK)
            return rc;
        if (t.n != chunk)
            return EA_ERR_MALFORMED;
        memcpy(out, t.p, chunk);
        ea_cleanse(r, sizeof r);
        out += chunk;
        n -= chunk;
    }
    return EA_OK;
}

ea_err ea_host_free_memory(ea_host *h, uint8_t memtype, uint16_t *free_bytes)
{
    uint8_t b[8], r[16];
    ea_cur t;
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u8(&w, EA_TAG_1, memtype);
    ea_err rc = one_tag(h, "GetFreeMemory", 0, EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_MEMORY, &w, FRAME_SHORT, &t,
                        r, sizeof r);
    if (rc == EA_OK && t.n != 2)
        rc = EA_ERR_MALFORMED;
    if (rc == EA_OK)
        *free_bytes = (uint16_t)(t.p[0] << 8 | t.p[1]);
    return rc;
}

ea_err ea_host_get_timestamp(ea_host *h, uint8_t ts[EA_TIMESTAMP_LEN])
{
    uint8_t r[32];
    ea_cur t;
    ea_wbuf w = ea_wbuf_make(NULL, 0);
    ea_err rc = one_tag(h, "GetTimestamp", 0, EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_TIME, &w, FRAME_SHORT, &t, r,
                        sizeof r);
    if (rc == EA_OK && t.n != EA_TIMESTAMP_LEN)
        rc = EA_ERR_MALFORMED;
    if (rc == EA_OK)
        memcpy(ts, t.p, EA_TIMESTAMP_LEN);
    return rc;
}

static ea_err id_cmd(ea_host *h, const char *what, uint32_t id, uint8_t ins, uint8_t p1, uint8_t p2,
                     int frame, ea_cur *t, uint8_t *r, size_t rcap)
{
    uint8_t b[8];
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, id);
    return one_tag(h, what, id, ins, p1, p2, &w, frame, t, r, rcap);
}

ea_err ea_host_exists(ea_host *h, uint32_t id, bool *exists)
{
    uint8_t r[16];
    ea_cur t;
    ea_err rc = id_cmd(h, "CheckObjectExists", id, EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_EXIST, FRAME_SHORT, &t, r,
                       sizeof r);
    if (rc == EA_OK && (t.n != 1 || (t.p[0] != EA_RESULT_SUCCESS && t.p[0] != EA_RESULT_FAILURE)))
        rc = EA_ERR_MALFORMED;
    if (rc == EA_OK)
        *exists = t.p[0] == EA_RESULT_SUCCESS;
    return rc;
}

ea_err ea_host_delete(ea_host *h, uint32_t id)
{
    uint8_t b[8];
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, id);
    return host_cmd(h, "DeleteSecureObject", id, EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_DELETE_OBJECT, w.p, w.len,
                    FRAME_SHORT, NULL, NULL);
}

ea_err ea_host_delete_all(ea_host *h)
{
    return host_cmd(h, "DeleteAll", 0, EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_DELETE_ALL, NULL, 0, FRAME_SHORT, NULL,
                    NULL);
}

ea_err ea_host_list(ea_host *h, uint8_t filter, uint32_t *ids, size_t *n)
{
    size_t got = 0;
    for (;;) {
        uint8_t b[16], r[EA_HOST_APDU_MAX];
        size_t rl = sizeof r;
        ea_cur v[2];
        static const uint8_t want[] = { EA_TAG_1, EA_TAG_2 };
        ea_wbuf w = ea_wbuf_make(b, sizeof b);
        if (got > 0xFFFF)
            return EA_ERR_MALFORMED;
        ea_tlv_u16(&w, EA_TAG_1, (uint16_t)got);
        ea_tlv_u8(&w, EA_TAG_2, filter);
        ea_err rc = host_cmd(h, "ReadIDList", 0, EA_INS_READ, EA_P1_DEFAULT, EA_P2_LIST, w.p, w.len, FRAME_EXT, r,
                             &rl);
        if (rc == EA_OK)
            rc = parse_rsp(h, "ReadIDList", r, rl, want, 2, 0, v);
        if (rc != EA_OK)
            return rc;
        if (v[0].n != 1 || v[1].n % 4 != 0 || (v[0].p[0] != EA_MORE_NO && v[0].p[0] != EA_MORE_YES))
            return EA_ERR_MALFORMED;
        for (size_t i = 0; i < v[1].n / 4; i++) {
            if (got >= *n) {
                *n = got + 1;
                return EA_ERR_BUF_TOO_SMALL;
            }
            ids[got++] = ea_get_be32(v[1].p + 4 * i);
        }
        /* A chip that says "more" but lists nothing would loop forever. */
        if (v[0].p[0] == EA_MORE_NO || v[1].n == 0)
            break;
    }
    *n = got;
    return EA_OK;
}

ea_err ea_host_read_type(ea_host *h, uint32_t id, uint8_t *type, bool *transient)
{
    uint8_t b[8], r[16];
    size_t rl = sizeof r;
    ea_cur v[2];
    static const uint8_t want[] = { EA_TAG_1, EA_TAG_2 };
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, id);
    ea_err rc = host_cmd(h, "ReadType", id, EA_INS_READ, EA_P1_DEFAULT, EA_P2_TYPE, w.p, w.len, FRAME_SHORT, r, &rl);
    if (rc == EA_OK)
        rc = parse_rsp(h, "ReadType", r, rl, want, 2, 0, v);
    if (rc == EA_OK && (v[0].n != 1 || v[1].n != 1))
        rc = EA_ERR_MALFORMED;
    if (rc == EA_OK) {
        *type = v[0].p[0];
        *transient = v[1].p[0] == EA_TRANSIENT;
    }
    return rc;
}

ea_err ea_host_read_size(ea_host *h, uint32_t id, uint16_t *size)
{
    uint8_t r[16];
    ea_cur t;
    ea_err rc = id_cmd(h, "ReadSize", id, EA_INS_READ, EA_P1_DEFAULT, EA_P2_SIZE, FRAME_SHORT, &t, r, sizeof r);
    if (rc == EA_OK && t.n != 2)
        rc = EA_ERR_MALFORMED;
    if (rc == EA_OK)
        *size = (uint16_t)(t.p[0] << 8 | t.p[1]);
    return rc;
}

ea_err ea_host_unique_id(ea_host *h, uint8_t uid[EA_UNIQUE_ID_LEN])
{
    uint8_t out[EA_UNIQUE_ID_LEN];
    size_t n = sizeof out;
    ea_err rc = ea_host_read_object(h, EA_OBJ_UNIQUE_ID, out, &n);
    if (rc == EA_OK && n != EA_UNIQUE_ID_LEN)
        rc = EA_ERR_MALFORMED;
    if (rc == EA_OK)
        memcpy(uid, out, n);
    return rc;
}

/* ---- objects ------------------------------------------------------------------ */

static uint8_t write_ins(bool transient)
{
    return (uint8_t)(EA_INS_WRITE | (transient ? EA_INS_MASK_TRANSIENT : 0));
}

/* The curve TLV goes only with a new object (spec §3.3), so ask first. */
static ea_err ec_write(ea_host *h, const char *what, uint32_t id, uint8_t curve, uint8_t keypart,
                       const uint8_t *priv, size_t pl, const uint8_t *pub, size_t ul, const ea_policy *pol,
                       bool transient)
{
    bool exists = false;
    uint8_t b[512];
    ea_err rc = ea_host_exists(h, id, &exists);
    if (rc != EA_OK)
        return rc;
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    if (!exists)
        put_policy(&w, pol);
    ea_tlv_u32(&w, EA_TAG_1, id);
    if (!exists)
        ea_tlv_u8(&w, EA_TAG_2, curve);
    if (priv)
        ea_tlv_put(&w, EA_TAG_3, priv, pl);
    if (pub)
        ea_tlv_put(&w, EA_TAG_4, pub, ul);
    rc = w.overflow ? EA_ERR_ARG
                    : host_cmd(h, what, id, write_ins(transient), (uint8_t)(EA_P1_EC | keypart), EA_P2_DEFAULT, w.p,
                               w.len, FRAME_SHORT, NULL, NULL);
    ea_cleanse(b, sizeof b);
    return rc;
}

ea_err ea_host_ec_generate(ea_host *h, uint32_t id, uint8_t curve, const ea_policy *policy, bool transient)
{
    return ec_write(h, "WriteECKey (generate)", id, curve, EA_P1_KEY_PAIR, NULL, 0, NULL, 0, policy, transient);
}

ea_err ea_host_ec_generate_new(ea_host *h, uint32_t id, uint8_t curve, const ea_policy *policy, bool transient)
{
    uint8_t b[64];
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    put_policy(&w, policy);
    ea_tlv_u32(&w, EA_TAG_1, id);
    ea_tlv_u8(&w, EA_TAG_2, curve);
    return w.overflow ? EA_ERR_ARG
                      : host_cmd(h, "WriteECKey (generate)", id, write_ins(transient),
                                 (uint8_t)(EA_P1_EC | EA_P1_KEY_PAIR), EA_P2_DEFAULT, w.p, w.len, FRAME_SHORT, NULL,
                                 NULL);
}

ea_err ea_host_ec_import(ea_host *h, uint32_t id, uint8_t curve, const uint8_t *priv, size_t priv_len,
                         const uint8_t *pub, size_t pub_len, const ea_policy *policy, bool transient)
{
    uint8_t part = priv && pub ? EA_P1_KEY_PAIR : priv ? EA_P1_PRIVATE : EA_P1_PUBLIC;
    if (!priv && !pub)
        return EA_ERR_ARG;
    return ec_write(h, "WriteECKey (import)", id, curve, part, priv, priv_len, pub, pub_len, policy, transient);
}

ea_err ea_host_read_pubkey(ea_host *h, uint32_t id, uint8_t *out, size_t *out_len)
{
    uint8_t r[256];
    ea_cur t;
    ea_err rc = id_cmd(h, "ReadObject", id, EA_INS_READ, EA_P1_DEFAULT, EA_P2_DEFAULT, FRAME_EXT, &t, r, sizeof r);
    if (rc == EA_OK && (t.n == 0 || t.p[0] != 0x04))
        rc = EA_ERR_MALFORMED;
    return rc == EA_OK ? copy_out(h, "ReadObject", t, out, out_len) : rc;
}

/* WriteSymmKey; the policy goes only with a new object (policy NULL then
 * means the chip's default). */
static ea_err symm_write(ea_host *h, uint32_t id, uint8_t kind, const uint8_t *key, size_t len,
                         const ea_policy *policy, bool transient)
{
    uint8_t b[512];
    ea_err rc;
    if (kind != EA_P1_AES && kind != EA_P1_HMAC)
        return EA_ERR_ARG;
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    put_policy(&w, policy);
    ea_tlv_u32(&w, EA_TAG_1, id);
    ea_tlv_put(&w, EA_TAG_3, key, len);
    rc = w.overflow ? EA_ERR_ARG
                    : host_cmd(h, "WriteSymmKey", id, write_ins(transient), kind, EA_P2_DEFAULT, w.p, w.len,
                               FRAME_SHORT, NULL, NULL);
    ea_cleanse(b, sizeof b);
    return rc;
}

ea_err ea_host_write_symm(ea_host *h, uint32_t id, uint8_t kind, const uint8_t *key, size_t len,
                          const ea_policy *policy, bool transient)
{
    bool exists = false;
    ea_err rc;
    if (kind != EA_P1_AES && kind != EA_P1_HMAC)
        return EA_ERR_ARG;
    if ((rc = ea_host_exists(h, id, &exists)) != EA_OK)
        return rc;
    return symm_write(h, id, kind, key, len, exists ? NULL : policy, transient);
}

ea_err ea_host_write_symm_new(ea_host *h, uint32_t id, uint8_t kind, const uint8_t *key, size_t len,
                              const ea_policy *policy, bool transient)
{
    return symm_write(h, id, kind, key, len, policy, transient);
}

#define BINARY_CHUNK 500u /* Plug&Trust's BINARY_WRITE_MAX_LEN */

ea_err ea_host_write_binary(ea_host *h, uint32_t id, const uint8_t *data, size_t len, const ea_policy *policy)
{
    bool exists = false;
    ea_err rc;
    if (len == 0 || len > 0x7FFF)
        return EA_ERR_ARG;
    if ((rc = ea_host_exists(h, id, &exists)) != EA_OK)
        return rc;
    for (size_t off = 0; off < len; off += BINARY_CHUNK) {
        uint8_t b[BINARY_CHUNK + 64];
        size_t n = len - off > BINARY_CHUNK ? BINARY_CHUNK : len - off;
        ea_wbuf w = ea_wbuf_make(b, sizeof b);
        bool create = !exists && off == 0;
        if (create)
            put_policy(&w, policy);
        ea_tlv_u32(&w, EA_TAG_1, id);
        if (off)
            ea_tlv_u16(&w, EA_TAG_2, (uint16_t)off);
        if (create)
            ea_tlv_u16(&w, EA_TAG_3, (uint16_t)len);
        ea_tlv_put(&w, EA_TAG_4, data + off, n);
        if (w.overflow)
            return EA_ERR_ARG;
        if ((rc = host_cmd(h, "WriteBinary", id, EA_INS_WRITE, EA_P1_BINARY, EA_P2_DEFAULT, w.p, w.len, FRAME_SHORT,
                           NULL, NULL)) != EA_OK)
            return rc;
    }
    return EA_OK;
}

#define READ_CHUNK 512u

ea_err ea_host_read_object(ea_host *h, uint32_t id, uint8_t *out, size_t *out_len)
{
    uint8_t type, r[EA_HOST_APDU_MAX];
    bool transient;
    uint16_t size;
    ea_cur t;
    ea_err rc = ea_host_read_type(h, id, &type, &transient);
    if (rc != EA_OK)
        return rc;
    if (type != EA_TYPE_BINARY) /* keys: one read of the public part */
        return ea_host_read_pubkey(h, id, out, out_len);
    if ((rc = ea_host_read_size(h, id, &size)) != EA_OK)
        return rc;
    if (size > *out_len) {
        *out_len = size;
        return EA_ERR_BUF_TOO_SMALL;
    }
    for (size_t off = 0; off < size; off += READ_CHUNK) {
        size_t n = size - off > READ_CHUNK ? READ_CHUNK : size - off;
        uint8_t b[16];
        ea_wbuf w = ea_wbuf_make(b, sizeof b);
        ea_tlv_u32(&w, EA_TAG_1, id);
        if (off)
            ea_tlv_u16(&w, EA_TAG_2, (uint16_t)off);
        ea_tlv_u16(&w, EA_TAG_3, (uint16_t)n);
        if ((rc = one_tag(h, "ReadObject", id, EA_INS_READ, EA_P1_DEFAULT, EA_P2_DEFAULT, &w, FRAME_EXT, &t, r,
                          sizeof r)) != EA_OK)
            return rc;
        if (t.n != n)
            return EA_ERR_MALFORMED;
        memcpy(out + off, t.p, n);
    }
    *out_len = size;
    return EA_OK;
}

/* ---- crypto ---------------------------------------------------------------------- */

ea_err ea_host_ecdsa_sign(ea_host *h, uint32_t id, uint8_t algo, const uint8_t *digest, size_t dlen,
                          uint8_t *sig, size_t *sig_len)
{
    uint8_t b[128], r[256];
    ea_cur t;
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, id);
    ea_tlv_u8(&w, EA_TAG_2, algo);
    ea_tlv_put(&w, EA_TAG_3, digest, dlen);
    ea_err rc = one_tag(h, "ECDSASign", id, EA_INS_CRYPTO, EA_P1_SIGNATURE, EA_P2_SIGN, &w, FRAME_SHORT, &t, r,
                        sizeof r);
    if (rc == EA_OK && (t.n < 8 || t.p[0] != 0x30))
        rc = EA_ERR_MALFORMED;
    return rc == EA_OK ? copy_out(h, "ECDSASign", t, sig, sig_len) : rc;
}

ea_err ea_host_ecdsa_verify(ea_host *h, uint32_t id, uint8_t algo, const uint8_t *digest, size_t dlen,
                            const uint8_t *sig, size_t sig_len, bool *valid)
{
    uint8_t b[512], r[16];
    ea_cur t;
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, id);
    ea_tlv_u8(&w, EA_TAG_2, algo);
    ea_tlv_put(&w, EA_TAG_3, digest, dlen); /* TAG_3 = hash, TAG_5 = signature (spec §10.1) */
    ea_tlv_put(&w, EA_TAG_5, sig, sig_len);
    ea_err rc = one_tag(h, "ECDSAVerify", id, EA_INS_CRYPTO, EA_P1_SIGNATURE, EA_P2_VERIFY, &w, FRAME_SHORT, &t,
                        r, sizeof r);
    if (rc == EA_OK && (t.n != 1 || (t.p[0] != EA_RESULT_SUCCESS && t.p[0] != EA_RESULT_FAILURE)))
        rc = EA_ERR_MALFORMED;
    if (rc == EA_OK)
        *valid = t.p[0] == EA_RESULT_SUCCESS;
    return rc;
}

ea_err ea_host_ecdh(ea_host *h, uint32_t id, const uint8_t *peer, size_t peer_len, uint32_t target,
                    uint8_t *out, size_t *out_len)
{
    uint8_t b[256], r[128];
    ea_cur t;
    ea_err rc;
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, id);
    ea_tlv_put(&w, EA_TAG_2, peer, peer_len);
    if (target) {
        ea_tlv_u32(&w, EA_TAG_7, target);
        return w.overflow ? EA_ERR_ARG
                          : host_cmd(h, "ECDHGenerateSharedSecret", id, EA_INS_CRYPTO, EA_P1_EC, EA_P2_DH, w.p,
                                     w.len, FRAME_EXT, NULL, NULL);
    }
    rc = one_tag(h, "ECDHGenerateSharedSecret", id, EA_INS_CRYPTO, EA_P1_EC, EA_P2_DH, &w, FRAME_EXT, &t, r,
                 sizeof r);
    if (rc == EA_OK)
        rc = copy_out(h, "ECDHGenerateSharedSecret", t, out, out_len);
    ea_cleanse(r, sizeof r);
    return rc;
}

ea_err ea_host_digest(ea_host *h, uint8_t mode, const uint8_t *data, size_t len, uint8_t *out, size_t *out_len)
{
    uint8_t b[BODY_MAX], r[128];
    ea_cur t;
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u8(&w, EA_TAG_1, mode);
    ea_tlv_put(&w, EA_TAG_2, data, len);
    ea_err rc = one_tag(h, "DigestOneShot", 0, EA_INS_CRYPTO, EA_P1_DEFAULT, EA_P2_ONESHOT, &w, FRAME_SHORT, &t,
                        r, sizeof r);
    return rc == EA_OK ? copy_out(h, "DigestOneShot", t, out, out_len) : rc;
}

ea_err ea_host_hkdf(ea_host *h, const ea_hkdf_args *a, uint8_t *out, size_t len)
{
    uint8_t b[256], r[EA_HOST_APDU_MAX];
    ea_cur t;
    ea_err rc;
    const char *what = a->expand_only ? "HKDF (expand only)" : "HKDF";
    uint8_t p2 = a->expand_only ? EA_P2_HKDF_EXPAND_ONLY : EA_P2_HKDF;
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    if (len == 0 || len > 0xFFFF)
        return EA_ERR_ARG;
    ea_tlv_u32(&w, EA_TAG_1, a->ikm_id);
    ea_tlv_u8(&w, EA_TAG_2, a->digest);
    if (a->salt_len)
        ea_tlv_put(&w, EA_TAG_3, a->salt, a->salt_len);
    if (a->info_len)
        ea_tlv_put(&w, EA_TAG_4, a->info, a->info_len);
    ea_tlv_u16(&w, EA_TAG_5, (uint16_t)len);
    if (a->salt_id)
        ea_tlv_u32(&w, EA_TAG_6, a->salt_id);
    if (a->target) {
        ea_tlv_u32(&w, EA_TAG_7, a->target);
        return w.overflow ? EA_ERR_ARG
                          : host_cmd(h, what, a->ikm_id, EA_INS_CRYPTO, EA_P1_DEFAULT, p2, w.p, w.len, FRAME_EXT,
                                     NULL, NULL);
    }
    rc = one_tag(h, what, a->ikm_id, EA_INS_CRYPTO, EA_P1_DEFAULT, p2, &w, FRAME_EXT, &t, r, sizeof r);
    if (rc == EA_OK && t.n != len)
        rc = EA_ERR_MALFORMED;
    if (rc == EA_OK)
        memcpy(out, t.p, len);
    ea_cleanse(r, sizeof r);
    return rc;
}

ea_err ea_host_tls_random(ea_host *h, uint8_t out[32])
{
    uint8_t r[64];
    ea_cur t;
    ea_wbuf w = ea_wbuf_make(NULL, 0);
    ea_err rc = one_tag(h, "TLSGenerateRandom", 0, EA_INS_CRYPTO, EA_P1_TLS, EA_P2_RANDOM, &w, FRAME_SHORT, &t, r,
                        sizeof r);
    if (rc == EA_OK && t.n != 32)
        rc = EA_ERR_MALFORMED;
    if (rc == EA_OK)
        memcpy(out, t.p, 32);
    ea_cleanse(r, sizeof r); /* it may seed a private key */
    return rc;
}

ea_err ea_host_tls_pms(ea_host *h, uint32_t psk_id, uint32_t kp_id, uint32_t target, const uint8_t *peer,
                       size_t peer_len)
{
    uint8_t b[256];
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    if (psk_id)
        ea_tlv_u32(&w, EA_TAG_1, psk_id);
    if (kp_id)
        ea_tlv_u32(&w, EA_TAG_2, kp_id);
    ea_tlv_u32(&w, EA_TAG_3, target);
    if (peer_len)
        ea_tlv_put(&w, EA_TAG_4, peer, peer_len);
    return w.overflow ? EA_ERR_ARG
                      : host_cmd(h, "TLSCalculatePreMasterSecret", target, EA_INS_CRYPTO, EA_P1_TLS, EA_P2_TLS_PMS,
                                 w.p, w.len, FRAME_SHORT, NULL, NULL);
}

ea_err ea_host_tls_prf(ea_host *h, uint8_t p2, uint32_t secret_id, uint8_t digest, const char *label,
                       const uint8_t *random, size_t random_len, uint8_t *out, size_t len)
{
    uint8_t b[256], r[EA_HOST_APDU_MAX];
    ea_cur t;
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    if (len == 0 || len > 0xFFFF || !label)
        return EA_ERR_ARG;
    ea_tlv_u32(&w, EA_TAG_1, secret_id);
    ea_tlv_u8(&w, EA_TAG_2, digest);
    ea_tlv_put(&w, EA_TAG_3, label, strlen(label));
    ea_tlv_put(&w, EA_TAG_4, random, random_len);
    ea_tlv_u16(&w, EA_TAG_5, (uint16_t)len);
    ea_err rc = one_tag(h, "TLSPerformPRF", secret_id, EA_INS_CRYPTO, EA_P1_TLS, p2, &w, FRAME_EXT, &t, r,
                        sizeof r);
    if (rc == EA_OK && t.n != len)
        rc = EA_ERR_MALFORMED;
    if (rc == EA_OK)
        memcpy(out, t.p, len);
    ea_cleanse(r, sizeof r);
    return rc;
}

ea_err ea_host_cipher(ea_host *h, uint32_t id, uint8_t mode, bool encrypt, const uint8_t *iv, const uint8_t *in,
                      size_t len, uint8_t *out)
{
    uint8_t b[BODY_MAX], r[EA_HOST_APDU_MAX];
    ea_cur t;
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, id);
    ea_tlv_u8(&w, EA_TAG_2, mode);
    ea_tlv_put(&w, EA_TAG_3, in, len);
    if (iv)
        ea_tlv_put(&w, EA_TAG_4, iv, 16);
    ea_err rc = one_tag(h, "CipherOneShot", id, EA_INS_CRYPTO, EA_P1_CIPHER,
                        encrypt ? EA_P2_ENCRYPT_ONESHOT : EA_P2_DECRYPT_ONESHOT, &w, FRAME_EXT, &t, r, sizeof r);
    if (rc == EA_OK && t.n != len)
        rc = EA_ERR_MALFORMED;
    if (rc == EA_OK)
        memcpy(out, t.p, len);
    ea_cleanse(b, sizeof b);
    ea_cleanse(r, sizeof r);
    return rc;
}

ea_err ea_host_mac(ea_host *h, uint32_t id, uint8_t algo, const uint8_t *data, size_t len, uint8_t *tag,
                   size_t *tag_len)
{
    uint8_t b[BODY_MAX], r[128];
    ea_cur t;
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, id);
    ea_tlv_u8(&w, EA_TAG_2, algo);
    ea_tlv_put(&w, EA_TAG_3, data, len);
    ea_err rc = one_tag(h, "MACOneShot", id, EA_INS_CRYPTO, EA_P1_MAC, EA_P2_GENERATE_ONESHOT, &w, FRAME_SHORT, &t,
                        r, sizeof r);
    return rc == EA_OK ? copy_out(h, "MACOneShot", t, tag, tag_len) : rc;
}

ea_err ea_host_mac_verify(ea_host *h, uint32_t id, uint8_t algo, const uint8_t *data, size_t len,
                          const uint8_t *tag, size_t tag_len, bool *valid)
{
    uint8_t b[BODY_MAX], r[16];
    ea_cur t;
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, id);
    ea_tlv_u8(&w, EA_TAG_2, algo);
    ea_tlv_put(&w, EA_TAG_3, data, len);
    ea_tlv_put(&w, EA_TAG_5, tag, tag_len);
    ea_err rc = one_tag(h, "MACOneShot (validate)", id, EA_INS_CRYPTO, EA_P1_MAC, EA_P2_VALIDATE_ONESHOT, &w,
                        FRAME_SHORT, &t, r, sizeof r);
    if (rc == EA_OK && (t.n != 1 || (t.p[0] != EA_RESULT_SUCCESS && t.p[0] != EA_RESULT_FAILURE)))
        rc = EA_ERR_MALFORMED;
    if (rc == EA_OK)
        *valid = t.p[0] == EA_RESULT_SUCCESS;
    return rc;
}

/* ---- attestation ------------------------------------------------------------- */

ea_err ea_host_read_attested(ea_host *h, uint32_t id, uint32_t attest_key, uint8_t algo,
                             const uint8_t freshness[EA_FRESHNESS_LEN], ea_attestation *a)
{
    uint8_t b[64], c[96];
    size_t rl = sizeof a->buf;
    ea_cur v[6];
    static const uint8_t want[] = { EA_TAG_1, EA_TAG_2, EA_TAG_3, EA_TAG_4, EA_TAG_TIMESTAMP, EA_TAG_SIGNATURE };
    const char *md = algo == EA_SIG_ECDSA_SHA384 ? "SHA384" : "SHA256";
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_err rc;

    if (algo != EA_SIG_ECDSA_SHA256 && algo != EA_SIG_ECDSA_SHA384)
        return EA_ERR_ARG;
    memset(a, 0, sizeof *a);
    ea_tlv_u32(&w, EA_TAG_1, id);
    ea_tlv_u32(&w, EA_TAG_5, attest_key);
    ea_tlv_u8(&w, EA_TAG_6, algo);
    ea_tlv_put(&w, EA_TAG_7, freshness, EA_FRESHNESS_LEN);
    rc = host_cmd(h, "ReadObject (attested)", id, EA_INS_READ | EA_INS_MASK_ATTEST, EA_P1_DEFAULT, EA_P2_DEFAULT,
                  w.p, w.len, FRAME_EXT, a->buf, &rl);
    if (rc == EA_OK)
        rc = parse_rsp(h, "ReadObject (attested)", a->buf, rl, want, 6, 1u /* 41 optional */, v);
    if (rc != EA_OK)
        return rc;
    if (v[3].n != 2)
        return EA_ERR_MALFORMED;
    a->data = v[0].p;
    a->data_len = v[0].n;
    a->uid = v[1].p;
    a->uid_len = v[1].n;
    a->attrs = v[2].p;
    a->attrs_len = v[2].n;
    a->size = (uint16_t)(v[3].p[0] << 8 | v[3].p[1]);
    a->timestamp = v[4].p;
    a->timestamp_len = v[4].n;
    a->sig = v[5].p;
    a->sig_len = v[5].n;
    a->algo = algo;

    /* What the signature covers (spec §4.5, applet 7.2): SHA-256 of the
     * C-APDU as sent (extended framing, no Le), then the TLVs 41..4F in the
     * 82-length form. Recomputed here so a verifier needs only the key. */
    size_t cl = 0;
    c[cl++] = EA_CLA_APPLET;
    c[cl++] = EA_INS_READ | EA_INS_MASK_ATTEST;
    c[cl++] = 0;
    c[cl++] = 0;
    c[cl++] = 0;
    c[cl++] = (uint8_t)(w.len >> 8);
    c[cl++] = (uint8_t)w.len;
    memcpy(c + cl, w.p, w.len);
    cl += w.len;
    unsigned int hl = 0;
    EVP_MD *sha = EVP_MD_fetch(NULL, "SHA256", NULL), *mdx = EVP_MD_fetch(NULL, md, NULL);
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    uint8_t tl[4];
    rc = EA_ERR_CRYPTO;
    if (!sha || !mdx || !mc || EVP_Digest(c, cl, a->apdu_hash, &hl, sha, NULL) != 1 ||
        EVP_DigestInit_ex(mc, mdx, NULL) != 1 || EVP_DigestUpdate(mc, a->apdu_hash, 32) != 1)
        goto out;
    for (int i = 0; i < 5; i++) {
        if (i == 0 && !a->data)
            continue;
        tl[0] = want[i];
        tl[1] = 0x82;
        tl[2] = (uint8_t)(v[i].n >> 8);
        tl[3] = (uint8_t)v[i].n;
        if (EVP_DigestUpdate(mc, tl, 4) != 1 || EVP_DigestUpdate(mc, v[i].p, v[i].n) != 1)
            goto out;
    }
    if (EVP_DigestFinal_ex(mc, a->signed_hash, &hl) != 1)
        goto out;
    a->signed_hash_len = hl;
    rc = EA_OK;
out:
    EVP_MD_CTX_free(mc);
    EVP_MD_free(sha);
    EVP_MD_free(mdx);
    return rc;
}
