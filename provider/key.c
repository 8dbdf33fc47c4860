/* SE key objects and the key-reference encoding shared by the keymgmt,
 * store, decoder and encoder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "provider/prov.h"

ea_prov_key *ea_prov_key_new(ea_prov *p)
{
    ea_prov_key *k = OPENSSL_zalloc(sizeof *k);
    if (k)
        k->prov = p;
    return k;
}

void ea_prov_key_copy(ea_prov_key *dst, const ea_prov_key *src)
{
    *dst = *src;
    if (dst->eph)
        __atomic_add_fetch(&dst->eph->refs, 1, __ATOMIC_ACQ_REL);
}

/* The last copy of an ephemeral key deletes its transient object: the SE
 * has little transient memory, and a handshake needs the key only once. */
static void eph_release(ea_prov_eph *e)
{
    if (__atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    ea_host *h = ea_prov_host(e->prov, e->uri);
    ea_prov_drop_object(h, e->id);
    ea_prov_host_done(e->prov, h);
    OPENSSL_free(e);
}

void ea_prov_key_free(ea_prov_key *k)
{
    if (k && k->eph)
        eph_release(k->eph);
    OPENSSL_free(k); /* nothing secret inside: the private half is in the SE */
}

/* OpenSSL's own group names: libssl turns the name into a NID with
 * OBJ_txt2nid, which knows "prime256v1" but not "P-256". */
const char *ea_prov_curve_name(uint8_t curve)
{
    return curve == EA_CURVE_NIST_P256 ? "prime256v1" : curve == EA_CURVE_NIST_P384 ? "secp384r1" : NULL;
}

int ea_prov_curve_bits(uint8_t curve)
{
    return curve == EA_CURVE_NIST_P256 ? 256 : curve == EA_CURVE_NIST_P384 ? 384 : 0;
}

uint8_t ea_prov_curve_from_name(const char *n)
{
    if (!n)
        return 0;
    if (!strcmp(n, "P-256") || !strcmp(n, "prime256v1") || !strcmp(n, "secp256r1"))
        return EA_CURVE_NIST_P256;
    if (!strcmp(n, "P-384") || !strcmp(n, "secp384r1"))
        return EA_CURVE_NIST_P384;
    return 0;
}

uint32_t ea_prov_parse_id(const char *s)
{
    char *end;
    if (!s || !*s)
        return 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (*end != '\0' || v == 0 || v > 0xFFFFFFFFull)
        return 0;
    return (uint32_t)v;
}

static ea_prov_key *key_load(ea_prov *p, ea_host *h, const char *uri, uint32_t id)
{
    uint8_t type;
    bool transient;
    ea_prov_key *k;
    ea_err rc;

    if (!h)
        return NULL;
    if ((rc = ea_host_read_type(h, id, &type, &transient)) != EA_OK) {
        ea_prov_raise(p, rc == EA_ERR_CONDITIONS ? EA_ERR_NOT_FOUND : rc, "SE object 0x%08X: %s", id,
                      rc == EA_ERR_CONDITIONS ? "no such object" : ea_host_last_error(h));
        return NULL;
    }
    if (!(k = ea_prov_key_new(p)))
        return NULL;
    switch (type) {
    case EA_TYPE_EC_P256_PAIR:
    case EA_TYPE_EC_P256_PRIV:
        k->curve = EA_CURVE_NIST_P256;
        break;
    case EA_TYPE_EC_P384_PAIR:
    case EA_TYPE_EC_P384_PRIV:
        k->curve = EA_CURVE_NIST_P384;
        break;
    default:
        ea_prov_raise(p, EA_ERR_CONDITIONS, "SE object 0x%08X is not an EC P-256/P-384 private key", id);
        ea_prov_key_free(k);
        return NULL;
    }
    k->id = id;
    snprintf(k->uri, sizeof k->uri, "%s", uri ? uri : "");
    /* The public half, cached for every get_params/match to come. A key
     * whose policy forbids reading it cannot be used for TLS anyway (the
     * certificate must match it), so this is required. */
    k->pub_len = sizeof k->pub;
    if ((rc = ea_host_read_pubkey(h, id, k->pub, &k->pub_len)) != EA_OK) {
        ea_prov_raise(p, rc, "SE object 0x%08X: cannot read its public key: %s", id, ea_host_last_error(h));
        ea_prov_key_free(k);
        return NULL;
    }
    return k;
}

ea_prov_key *ea_prov_key_load(ea_prov *p, const char *uri, uint32_t id)
{
    ea_host *h = ea_prov_host(p, uri);
    ea_prov_key *k = key_load(p, h, uri, id);
    ea_prov_host_done(p, h);
    return k;
}

/* ---- key reference DER -------------------------------------------------------- */

static size_t der_len(uint8_t *out, size_t n)
{
    if (n < 0x80) {
        if (out)
            out[0] = (uint8_t)n;
        return 1;
    }
    if (n < 0x100) {
        if (out) {
            out[0] = 0x81;
            out[1] = (uint8_t)n;
        }
        return 2;
    }
    if (out) {
        out[0] = 0x82;
        out[1] = (uint8_t)(n >> 8);
        out[2] = (uint8_t)n;
    }
    return 3;
}

int ea_prov_keyref_encode(const ea_prov_key *k, uint8_t **der, size_t *der_len_out)
{
    uint8_t body[EA_PROV_URI_MAX + 32], idv[5];
    size_t n = 0, il = 0, ul = strlen(k->uri);

    /* INTEGER id: positive, minimal, with a leading 00 when the top bit is set. */
    uint32_t id = k->id;
    int start = 0;
    uint8_t raw[4] = { (uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id };
    while (start < 3 && raw[start] == 0 && !(raw[start + 1] & 0x80))
        start++;
    if (raw[start] & 0x80)
        idv[il++] = 0;
    memcpy(idv + il, raw + start, (size_t)(4 - start));
    il += (size_t)(4 - start);

    body[n++] = 0x02, body[n++] = 1, body[n++] = 1; /* version 1 */
    body[n++] = 0x02;
    n += der_len(body + n, il);
    memcpy(body + n, idv, il);
    n += il;
    if (ul) {
        body[n++] = 0x0C; /* UTF8String */
        n += der_len(body + n, ul);
        memcpy(body + n, k->uri, ul);
        n += ul;
    }
    size_t total = 1 + der_len(NULL, n) + n;
    uint8_t *out = OPENSSL_malloc(total);
    if (!out)
        return 0;
    out[0] = 0x30;
    size_t h = 1 + der_len(out + 1, n);
    memcpy(out + h, body, n);
    *der = out;
    *der_len_out = total;
    return 1;
}

static int read_tl(const uint8_t **p, size_t *left, uint8_t tag, size_t *len)
{
    if (*left < 2 || (*p)[0] != tag)
        return 0;
    size_t l = (*p)[1], hl = 2;
    if (l == 0x81 || l == 0x82) {
        size_t nb = l - 0x80;
        if (*left < 2 + nb)
            return 0;
        l = 0;
        for (size_t i = 0; i < nb; i++)
            l = (l << 8) | (*p)[2 + i];
        hl += nb;
    } else if (l >= 0x80) {
        return 0;
    }
    if (*left - hl < l)
        return 0;
    *p += hl;
    *left -= hl;
    *len = l;
    return 1;
}

int ea_prov_keyref_decode(const uint8_t *der, size_t n, uint32_t *id, char *uri, size_t uri_cap)
{
    const uint8_t *p = der;
    size_t left = n, l;

    if (!read_tl(&p, &left, 0x30, &l) || l != left)
        return 0;
    if (!read_tl(&p, &left, 0x02, &l) || l != 1 || p[0] != 1) /* version 1 */
        return 0;
    p += 1, left -= 1;
    if (!read_tl(&p, &left, 0x02, &l) || l == 0 || l > 5 || (p[0] & 0x80))
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < l; i++)
        v = (v << 8) | p[i];
    if (v == 0 || v > 0xFFFFFFFFu)
        return 0;
    p += l, left -= l;
    *id = (uint32_t)v;
    uri[0] = '\0';
    if (left > 0) {
        if (!read_tl(&p, &left, 0x0C, &l) || l >= uri_cap || l != left || memchr(p, 0, l))
            return 0;
        memcpy(uri, p, l);
        uri[l] = '\0';
    }
    return 1;
}
