/* SCP03 session core (spec se05x-apdu.md §7); see scp03.h for the contract.
 *
 * IMPLEMENTATION NOTES
 * - Every state change (MCV, counter, flags) is committed only after the
 *   whole operation succeeded, so a refused frame changes nothing.
 * - The counter update happens at command time: the counter block the
 *   response ICV needs is remembered in rsp_counter, then the counter is
 *   incremented (always, or only for commands with data on applets below
 *   4.3). That is nano's "increment at the end of Decrypt" moved earlier, so
 *   that a response with an error SW (not wrapped) still advances it (§7.5).
 * - Card side: the C-MAC is verified (CRYPTO_memcmp) before any byte is
 *   decrypted; padding is checked only on authenticated plaintext. */
#include "common/scp03.h"

#include <limits.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "common/tlv.h"
#include "common/util.h"

#define KDF_S_ENC 0x04
#define KDF_S_MAC 0x06
#define KDF_S_RMAC 0x07
#define KDF_CARD_CRYPTOGRAM 0x00
#define KDF_HOST_CRYPTOGRAM 0x01
#define MAX_LC 0xFFFF

/* ---- crypto primitives ---------------------------------------------------------- */

/* CMAC(key, a || b || c); any part may be empty. */
static ea_err cmac3(OSSL_LIB_CTX *libctx, const uint8_t key[16], const uint8_t *a, size_t an,
                    const uint8_t *b, size_t bn, const uint8_t *c, size_t cn, uint8_t out[16])
{
    ea_err rc = EA_ERR_CRYPTO;
    EVP_MAC *mac = EVP_MAC_fetch(libctx, "CMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    char cipher[] = "AES-128-CBC";
    OSSL_PARAM params[2];
    size_t outl = 0;

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (ctx == NULL || !EVP_MAC_init(ctx, key, EA_SCP03_KEY_LEN, params))
        goto out;
    if ((an && !EVP_MAC_update(ctx, a, an)) || (bn && !EVP_MAC_update(ctx, b, bn)) ||
        (cn && !EVP_MAC_update(ctx, c, cn)))
        goto out;
    if (!EVP_MAC_final(ctx, out, &outl, EA_SCP03_BLOCK) || outl != EA_SCP03_BLOCK)
        goto out;
    rc = EA_OK;
out:
    EVP_MAC_CTX_free(ctx); /* OpenSSL cleanses the CMAC key schedule */
    EVP_MAC_free(mac);
    return rc;
}

/* AES-128 ECB or CBC without padding; n must be a multiple of 16; in == out allowed. */
static ea_err aes(OSSL_LIB_CTX *libctx, const char *name, int enc, const uint8_t key[16],
                  const uint8_t *iv, const uint8_t *in, uint8_t *out, size_t n)
{
    ea_err rc = EA_ERR_CRYPTO;
    EVP_CIPHER *ciph = EVP_CIPHER_fetch(libctx, name, NULL);
    EVP_CIPHER_CTX *ctx = ciph ? EVP_CIPHER_CTX_new() : NULL;
    int l1 = 0, l2 = 0;

    if (n % EA_SCP03_BLOCK != 0 || n > INT_MAX) {
        rc = EA_ERR_ARG;
        goto out;
    }
    if (ctx == NULL || !EVP_CipherInit_ex2(ctx, ciph, key, iv, enc, NULL) ||
        !EVP_CIPHER_CTX_set_padding(ctx, 0))
        goto out;
    if (n && !EVP_CipherUpdate(ctx, out, &l1, in, (int)n))
        goto out;
    if (!EVP_CipherFinal_ex(ctx, out + l1, &l2) || (size_t)(l1 + l2) != n)
        goto out;
    rc = EA_OK;
out:
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(ciph);
    return rc;
}

/* ---- keyed contexts --------------------------------------------------------------- */

struct ea_scp03_accel {
    EVP_MAC_CTX *mac, *rmac;             /* CMAC under S-MAC, S-RMAC */
    EVP_CIPHER_CTX *ecb, *cbc_enc, *cbc_dec; /* AES-128 under S-ENC */
};

static void accel_free(ea_scp03_accel *a)
{
    if (!a)
        return;
    EVP_MAC_CTX_free(a->mac); /* OpenSSL cleanses the key schedules */
    EVP_MAC_CTX_free(a->rmac);
    EVP_CIPHER_CTX_free(a->ecb);
    EVP_CIPHER_CTX_free(a->cbc_enc);
    EVP_CIPHER_CTX_free(a->cbc_dec);
    OPENSSL_free(a);
}

static EVP_MAC_CTX *keyed_cmac(OSSL_LIB_CTX *libctx, const uint8_t key[16])
{
    EVP_MAC *mac = EVP_MAC_fetch(libctx, "CMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    char cipher[] = "AES-128-CBC";
    OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0),
                            OSSL_PARAM_construct_end() };
    EVP_MAC_free(mac);
    if (ctx && !EVP_MAC_init(ctx, key, EA_SCP03_KEY_LEN, params)) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

static EVP_CIPHER_CTX *keyed_aes(OSSL_LIB_CTX *libctx, const char *name, int enc, const uint8_t key[16])
{
    EVP_CIPHER *ciph = EVP_CIPHER_fetch(libctx, name, NULL);
    EVP_CIPHER_CTX *ctx = ciph ? EVP_CIPHER_CTX_new() : NULL;
    static const uint8_t zero_iv[16];
    if (ctx && (!EVP_CipherInit_ex2(ctx, ciph, key, strstr(name, "CBC") ? zero_iv : NULL, enc, NULL) ||
                !EVP_CIPHER_CTX_set_padding(ctx, 0))) {
        EVP_CIPHER_CTX_free(ctx);
        ctx = NULL;
    }
    EVP_CIPHER_free(ciph);
    return ctx;
}

ea_err ea_scp03_accelerate(ea_scp03_session *s)
{
    if (s == NULL)
        return EA_ERR_ARG;
    ea_scp03_accel *a = OPENSSL_zalloc(sizeof *a);
    if (a == NULL)
        return EA_ERR_NO_MEMORY;
    a->mac = keyed_cmac(s->libctx, s->s_mac);
    a->rmac = keyed_cmac(s->libctx, s->s_rmac);
    a->ecb = keyed_aes(s->libctx, "AES-128-ECB", 1, s->s_enc);
    a->cbc_enc = keyed_aes(s->libctx, "AES-128-CBC", 1, s->s_enc);
    a->cbc_dec = keyed_aes(s->libctx, "AES-128-CBC", 0, s->s_enc);
    if (!a->mac || !a->rmac || !a->ecb || !a->cbc_enc || !a->cbc_dec) {
        accel_free(a);
        return EA_ERR_CRYPTO;
    }
    accel_free(s->accel);
    s->accel = a;
    return EA_OK;
}

/* CMAC under S-MAC (rmac false) or S-RMAC of (a || b || c). */
static ea_err s_cmac(const ea_scp03_session *s, bool rmac, const uint8_t *a, size_t an, const uint8_t *b,
                     size_t bn, const uint8_t *c, size_t cn, uint8_t out[16])
{
    EVP_MAC_CTX *ctx = s->accel ? (rmac ? s->accel->rmac : s->accel->mac) : NULL;
    size_t outl = 0;
    if (ctx == NULL)
        return cmac3(s->libctx, rmac ? s->s_rmac : s->s_mac, a, an, b, bn, c, cn, out);
    /* Re-initialising with no key starts a new MAC under the same key. */
    if (!EVP_MAC_init(ctx, NULL, 0, NULL) || (an && !EVP_MAC_update(ctx, a, an)) ||
        (bn && !EVP_MAC_update(ctx, b, bn)) || (cn && !EVP_MAC_update(ctx, c, cn)) ||
        !EVP_MAC_final(ctx, out, &outl, EA_SCP03_BLOCK) || outl != EA_SCP03_BLOCK)
        return EA_ERR_CRYPTO;
    return EA_OK;
}

/* AES-128 under S-ENC: ECB (iv NULL) or CBC encrypt/decrypt, no padding. */
static ea_err s_aes(const ea_scp03_session *s, bool cbc, int enc, const uint8_t *iv, const uint8_t *in,
                    uint8_t *out, size_t n)
{
    EVP_CIPHER_CTX *ctx = !s->accel ? NULL : !cbc ? s->accel->ecb : enc ? s->accel->cbc_enc : s->accel->cbc_dec;
    int l1 = 0, l2 = 0;
    if (ctx == NULL)
        return aes(s->libctx, cbc ? "AES-128-CBC" : "AES-128-ECB", enc, s->s_enc, iv, in, out, n);
    if (n % EA_SCP03_BLOCK != 0 || n > INT_MAX)
        return EA_ERR_ARG;
    /* A new IV, the same key schedule. */
    if (!EVP_CipherInit_ex2(ctx, NULL, NULL, iv, enc, NULL) || !EVP_CIPHER_CTX_set_padding(ctx, 0) ||
        (n && !EVP_CipherUpdate(ctx, out, &l1, in, (int)n)) || !EVP_CipherFinal_ex(ctx, out + l1, &l2) ||
        (size_t)(l1 + l2) != n)
        return EA_ERR_CRYPTO;
    return EA_OK;
}

/* SP 800-108 counter mode, PRF = AES-CMAC, one iteration (§7.3 item 2). */
static ea_err kdf(OSSL_LIB_CTX *libctx, const uint8_t key[16], uint8_t constant, uint16_t l_bits,
                  const uint8_t ctx16[16], uint8_t *out, size_t out_n)
{
    uint8_t in[32] = { 0 }; /* label: 11 zero bytes + constant */
    uint8_t full[16];
    ea_err rc;

    in[11] = constant;
    in[12] = 0x00; /* separation indicator */
    in[13] = (uint8_t)(l_bits >> 8);
    in[14] = (uint8_t)l_bits;
    in[15] = 0x01; /* counter */
    memcpy(in + 16, ctx16, 16);
    rc = cmac3(libctx, key, in, sizeof in, NULL, 0, NULL, 0, full);
    if (rc == EA_OK)
        memcpy(out, full, out_n);
    ea_cleanse(full, sizeof full);
    return rc;
}

static void ctr_inc(uint8_t c[16])
{
    for (int i = 15; i >= 0; i--)
        if (++c[i] != 0)
            break;
}

static void ctr_dec(uint8_t c[16])
{
    for (int i = 15; i >= 0; i--)
        if (c[i]-- != 0)
            break;
}

/* Pad in place: buf holds n data bytes and room for the padded length. */
static size_t pad_len(size_t n)
{
    return n == 0 ? 0 : (n / EA_SCP03_BLOCK + 1) * EA_SCP03_BLOCK;
}

static void pad(uint8_t *buf, size_t n)
{
    size_t p = pad_len(n);
    buf[n] = 0x80;
    memset(buf + n + 1, 0, p - n - 1);
}

/* Strip 00s then one 80, all within the last block. */
static bool unpad(const uint8_t *buf, size_t n, size_t *plain_len)
{
    size_t i = n;

    if (n < EA_SCP03_BLOCK || n % EA_SCP03_BLOCK != 0)
        return false;
    while (i > n - EA_SCP03_BLOCK && buf[i - 1] == 0x00)
        i--;
    if (i == n - EA_SCP03_BLOCK || buf[i - 1] != 0x80)
        return false;
    *plain_len = i - 1;
    return true;
}

/* ---- ISO 7816-4 APDU shape ---------------------------------------------------------- */

typedef struct apdu_view {
    const uint8_t *hdr; /* 4 bytes */
    const uint8_t *data;
    size_t lc;
    size_t data_off;
    uint8_t le[2];
    size_t le_len; /* 0, 1 (short) or 2 (extended) */
    bool ext;
} apdu_view;

/* Cases 1, 2S, 3S, 4S, 2E, 3E, 4E; nothing else. */
static bool parse_apdu(const uint8_t *p, size_t n, apdu_view *v)
{
    ea_cur c = ea_cur_make(p, n), d;
    uint8_t b;
    uint16_t w;

    memset(v, 0, sizeof *v);
    if (!ea_cur_take(&c, 4, &d))
        return false;
    v->hdr = d.p;
    if (c.n == 0)
        return true; /* case 1 */
    if (c.n == 1) {  /* case 2S */
        v->le[0] = c.p[0];
        v->le_len = 1;
        return true;
    }
    (void)ea_cur_u8(&c, &b);
    if (b != 0) { /* short Lc */
        if (!ea_cur_take(&c, b, &d))
            return false;
        v->data = d.p;
        v->lc = b;
        v->data_off = 5;
        if (c.n == 0)
            return true;
        if (c.n == 1) {
            v->le[0] = c.p[0];
            v->le_len = 1;
            return true;
        }
        return false;
    }
    v->ext = true;
    if (!ea_cur_u16(&c, &w))
        return false;
    if (c.n == 0) { /* case 2E */
        v->le[0] = (uint8_t)(w >> 8);
        v->le[1] = (uint8_t)w;
        v->le_len = 2;
        return true;
    }
    if (w == 0 || !ea_cur_take(&c, w, &d))
        return false;
    v->data = d.p;
    v->lc = w;
    v->data_off = 7;
    if (c.n == 0)
        return true;
    if (c.n == 2) {
        v->le[0] = c.p[0];
        v->le[1] = c.p[1];
        v->le_len = 2;
        return true;
    }
    return false;
}

/* After a command: remember the response counter, advance the counter (§7.5). */
static void counter_after_command(ea_scp03_session *s, bool had_data)
{
    memcpy(s->rsp_counter, s->counter, 16);
    if (s->always_increment || had_data)
        ctr_inc(s->counter);
    else
        ctr_dec(s->rsp_counter); /* applet < 4.3, data-less: response ICV uses counter - 1 */
    s->rsp_pending = true;
}

/* Early refusal: no output. */
static ea_err fail_len(size_t *out_len, ea_err rc)
{
    *out_len = 0;
    return rc;
}

/* ---- handshake ----------------------------------------------------------------------- */

ea_err ea_scp03_init_update_cmd(uint8_t key_version, const uint8_t host_challenge[8],
                                uint8_t *out, size_t *out_len)
{
    if (host_challenge == NULL || out == NULL || out_len == NULL)
        return EA_ERR_ARG;
    if (*out_len < EA_SCP03_INIT_UPDATE_LEN) {
        *out_len = EA_SCP03_INIT_UPDATE_LEN;
        return EA_ERR_BUF_TOO_SMALL;
    }
    out[0] = 0x80;
    out[1] = 0x50;
    out[2] = key_version;
    out[3] = 0x00;
    out[4] = EA_SCP03_CHALLENGE_LEN;
    memcpy(out + 5, host_challenge, EA_SCP03_CHALLENGE_LEN);
    *out_len = EA_SCP03_INIT_UPDATE_LEN;
    return EA_OK;
}

ea_err ea_scp03_parse_init_update_rsp(const uint8_t *rsp, size_t len, ea_scp03_iu_rsp *out)
{
    ea_cur c, d;

    if (rsp == NULL || out == NULL)
        return EA_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (len >= 2 && (rsp[len - 2] != 0x90 || rsp[len - 1] != 0x00))
        return EA_ERR_CARD;
    if (len != 29 + 2 && len != 32 + 2)
        return EA_ERR_MALFORMED;
    c = ea_cur_make(rsp, len - 2);
    if (!ea_cur_take(&c, sizeof out->key_div, &d))
        return EA_ERR_MALFORMED;
    memcpy(out->key_div, d.p, d.n);
    if (!ea_cur_take(&c, sizeof out->key_info, &d))
        return EA_ERR_MALFORMED;
    memcpy(out->key_info, d.p, d.n);
    if (!ea_cur_take(&c, sizeof out->card_challenge, &d))
        return EA_ERR_MALFORMED;
    memcpy(out->card_challenge, d.p, d.n);
    if (!ea_cur_take(&c, sizeof out->card_cryptogram, &d))
        return EA_ERR_MALFORMED;
    memcpy(out->card_cryptogram, d.p, d.n);
    if (c.n == sizeof out->seq) {
        (void)ea_cur_take(&c, sizeof out->seq, &d);
        memcpy(out->seq, d.p, d.n);
        out->has_seq = true;
    }
    return c.n == 0 ? EA_OK : EA_ERR_MALFORMED;
}

ea_err ea_scp03_derive(OSSL_LIB_CTX *libctx, const uint8_t enc[16], const uint8_t mac[16],
                       const uint8_t host_challenge[8], const uint8_t card_challenge[8],
                       uint32_t applet_version, ea_scp03_session *out)
{
    ea_err rc = EA_ERR_INTERNAL;
    uint8_t ctx[16];

    if (enc == NULL || mac == NULL || host_challenge == NULL || card_challenge == NULL ||
        out == NULL)
        return EA_ERR_ARG;
    ea_cleanse(out, sizeof *out);
    out->libctx = libctx;
    out->applet_version = applet_version;
    out->always_increment = applet_version >= EA_SCP03_ALWAYS_INC_VERSION;
    memcpy(ctx, host_challenge, 8);
    memcpy(ctx + 8, card_challenge, 8);

    if ((rc = kdf(libctx, enc, KDF_S_ENC, 0x0080, ctx, out->s_enc, 16)) != EA_OK ||
        (rc = kdf(libctx, mac, KDF_S_MAC, 0x0080, ctx, out->s_mac, 16)) != EA_OK ||
        (rc = kdf(libctx, mac, KDF_S_RMAC, 0x0080, ctx, out->s_rmac, 16)) != EA_OK ||
        (rc = kdf(libctx, out->s_mac, KDF_CARD_CRYPTOGRAM, 0x0040, ctx, out->card_cryptogram, 8)) !=
            EA_OK ||
        (rc = kdf(libctx, out->s_mac, KDF_HOST_CRYPTOGRAM, 0x0040, ctx, out->host_cryptogram, 8)) !=
            EA_OK) {
        ea_cleanse(out, sizeof *out);
    }
    ea_cleanse(ctx, sizeof ctx);
    return rc;
}

ea_err ea_scp03_check_card_cryptogram(const ea_scp03_session *s, const uint8_t cryptogram[8])
{
    if (s == NULL || cryptogram == NULL)
        return EA_ERR_ARG;
    return CRYPTO_memcmp(s->card_cryptogram, cryptogram, 8) == 0 ? EA_OK : EA_ERR_AUTH;
}

ea_err ea_scp03_check_host_cryptogram(const ea_scp03_session *s, const uint8_t cryptogram[8])
{
    if (s == NULL || cryptogram == NULL)
        return EA_ERR_ARG;
    return CRYPTO_memcmp(s->host_cryptogram, cryptogram, 8) == 0 ? EA_OK : EA_ERR_AUTH;
}

static const uint8_t ext_auth_hdr[5] = { 0x84, 0x82, EA_SCP03_SECLVL, 0x00, 0x10 };
static const uint8_t zero_mcv[16];

/* Commit the authenticated state: MCV = full MAC, counter = 1 (§7.3 item 4). */
static void set_authenticated(ea_scp03_session *s, const uint8_t mac[16])
{
    memcpy(s->mcv, mac, 16);
    memset(s->counter, 0, 16);
    s->counter[15] = 0x01;
    memset(s->rsp_counter, 0, 16);
    s->rsp_pending = false;
    s->authenticated = true;
}

ea_err ea_scp03_ext_auth_cmd(ea_scp03_session *s, uint8_t *out, size_t *out_len)
{
    ea_err rc = EA_ERR_INTERNAL;
    uint8_t mac[16];

    if (s == NULL || out == NULL || out_len == NULL)
        return EA_ERR_ARG;
    if (s->authenticated) /* once per derive (INITIALIZE UPDATE) */
        return fail_len(out_len, EA_ERR_CONDITIONS);
    if (*out_len < EA_SCP03_EXT_AUTH_LEN) {
        *out_len = EA_SCP03_EXT_AUTH_LEN;
        return EA_ERR_BUF_TOO_SMALL;
    }
    memcpy(out, ext_auth_hdr, 5);
    memcpy(out + 5, s->host_cryptogram, 8);
    rc = s_cmac(s, false, zero_mcv, 16, out, 13, NULL, 0, mac);
    if (rc == EA_OK) {
        memcpy(out + 13, mac, EA_SCP03_MAC_LEN);
        *out_len = EA_SCP03_EXT_AUTH_LEN;
        set_authenticated(s, mac);
    } else {
        ea_cleanse(out, EA_SCP03_EXT_AUTH_LEN);
        *out_len = 0;
    }
    ea_cleanse(mac, sizeof mac);
    return rc;
}

ea_err ea_scp03_ext_auth_verify(ea_scp03_session *s, const uint8_t *apdu, size_t len)
{
    ea_err rc = EA_ERR_INTERNAL;
    uint8_t mac[16];
    int diff;

    if (s == NULL || apdu == NULL)
        return EA_ERR_ARG;
    /* Once per derive: a replayed EXTERNAL AUTHENTICATE must not rewind MCV and
     * counter, or every earlier command of the session could be replayed. */
    if (s->authenticated)
        return EA_ERR_CONDITIONS;
    /* The shape is public; only the cryptogram and MAC need constant time. */
    if (len != EA_SCP03_EXT_AUTH_LEN || memcmp(apdu, ext_auth_hdr, 5) != 0)
        return EA_ERR_MALFORMED;
    if ((rc = s_cmac(s, false, zero_mcv, 16, apdu, 13, NULL, 0, mac)) != EA_OK)
        goto out;
    diff = CRYPTO_memcmp(apdu + 5, s->host_cryptogram, 8);
    diff |= CRYPTO_memcmp(apdu + 13, mac, EA_SCP03_MAC_LEN);
    if (diff != 0) {
        rc = EA_ERR_AUTH;
        goto out;
    }
    set_authenticated(s, mac);
    rc = EA_OK;
out:
    ea_cleanse(mac, sizeof mac);
    return rc;
}

ea_err ea_scp03_icv(const ea_scp03_session *s, const uint8_t counter[16], bool response,
                    uint8_t icv[16])
{
    uint8_t blk[16];
    ea_err rc;

    if (s == NULL || counter == NULL || icv == NULL)
        return EA_ERR_ARG;
    memcpy(blk, counter, 16);
    if (response)
        blk[0] = 0x80;
    rc = s_aes(s, false, 1, NULL, blk, icv, 16);
    ea_cleanse(blk, sizeof blk);
    return rc;
}

/* ---- command wrapping (§7.4) ---------------------------------------------------- */

ea_err ea_scp03_wrap_command(ea_scp03_session *s, const uint8_t *apdu, size_t len, uint8_t *out,
                             size_t *out_len)
{
    ea_err rc = EA_ERR_INTERNAL;
    apdu_view v;
    uint8_t icv[16], mac[16];
    size_t padded, lcw, need, pos, le_out = 0;
    bool ext;

    if (s == NULL || apdu == NULL || out == NULL || out_len == NULL)
        return EA_ERR_ARG;
    if (!s->authenticated)
        return fail_len(out_len, EA_ERR_CONDITIONS);
    if (!parse_apdu(apdu, len, &v))
        return fail_len(out_len, EA_ERR_MALFORMED);
    padded = pad_len(v.lc);
    lcw = padded + EA_SCP03_MAC_LEN;
    if (lcw > MAX_LC)
        return fail_len(out_len, EA_ERR_MALFORMED);
    ext = v.ext || lcw >= 255;
    if (v.le_len)
        le_out = ext ? 2 : 1;
    need = 4 + (ext ? 3 : 1) + lcw + le_out;
    if (*out_len < need) {
        *out_len = need;
        return EA_ERR_BUF_TOO_SMALL;
    }

    out[0] = (uint8_t)(v.hdr[0] | 0x04);
    memcpy(out + 1, v.hdr + 1, 3);
    pos = 4;
    if (ext) {
        out[pos++] = 0x00;
        out[pos++] = (uint8_t)(lcw >> 8);
    }
    out[pos++] = (uint8_t)lcw;
    if (v.lc) {
        memmove(out + pos, v.data, v.lc);
        pad(out + pos, v.lc);
        if ((rc = ea_scp03_icv(s, s->counter, false, icv)) != EA_OK ||
            (rc = s_aes(s, true, 1, icv, out + pos, out + pos, padded)) !=
                EA_OK)
            goto fail;
        pos += padded;
    }
    if ((rc = s_cmac(s, false, s->mcv, 16, out, pos, NULL, 0, mac)) != EA_OK)
        goto fail;
    memcpy(out + pos, mac, EA_SCP03_MAC_LEN);
    pos += EA_SCP03_MAC_LEN;
    if (le_out == 2) {
        if (v.le_len == 2) {
            out[pos++] = v.le[0];
            out[pos++] = v.le[1];
        } else { /* short Le 00 means 256 */
            out[pos++] = v.le[0] == 0 ? 0x01 : 0x00;
            out[pos++] = v.le[0];
        }
    } else if (le_out == 1) {
        out[pos++] = v.le[0];
    }
    *out_len = pos;
    memcpy(s->mcv, mac, 16);
    counter_after_command(s, v.lc > 0);
    rc = EA_OK;
    goto out;
fail:
    ea_cleanse(out, need);
    *out_len = 0;
out:
    ea_cleanse(icv, sizeof icv);
    ea_cleanse(mac, sizeof mac);
    return rc;
}

ea_err ea_scp03_unwrap_command(ea_scp03_session *s, const uint8_t *apdu, size_t len, uint8_t *out,
                               size_t *out_len)
{
    ea_err rc = EA_ERR_INTERNAL;
    apdu_view v;
    uint8_t icv[16], mac[16];
    size_t enc_len = 0, plain_len = 0, pos;
    const size_t scratch = 7; /* decrypt here, then move down to the data offset */

    if (s == NULL || apdu == NULL || out == NULL || out_len == NULL)
        return EA_ERR_ARG;
    if (!s->authenticated)
        return fail_len(out_len, EA_ERR_CONDITIONS);
    /* Framing is public: a frame that cannot hold a MAC is refused as unauthentic. */
    if (!parse_apdu(apdu, len, &v) || v.lc < EA_SCP03_MAC_LEN ||
        (v.lc - EA_SCP03_MAC_LEN) % EA_SCP03_BLOCK != 0)
        return fail_len(out_len, EA_ERR_AUTH);
    enc_len = v.lc - EA_SCP03_MAC_LEN;

    /* MAC first, in constant time; nothing is decrypted before it matches. */
    if ((rc = s_cmac(s, false, s->mcv, 16, apdu, v.data_off + enc_len, NULL, 0, mac)) !=
        EA_OK)
        goto out;
    if (CRYPTO_memcmp(mac, v.data + enc_len, EA_SCP03_MAC_LEN) != 0) {
        rc = EA_ERR_AUTH;
        goto out;
    }
    /* len bounds the plain APDU and the scratch area (len >= 13 + enc_len). */
    if (*out_len < len) {
        *out_len = len;
        rc = EA_ERR_BUF_TOO_SMALL;
        goto out;
    }
    if (enc_len) {
        if ((rc = ea_scp03_icv(s, s->counter, false, icv)) != EA_OK ||
            (rc = s_aes(s, true, 0, icv, v.data, out + scratch, enc_len)) !=
                EA_OK)
            goto fail;
        if (!unpad(out + scratch, enc_len, &plain_len)) {
            rc = EA_ERR_AUTH;
            goto fail;
        }
    }
    out[0] = (uint8_t)(v.hdr[0] & ~0x04);
    memcpy(out + 1, v.hdr + 1, 3);
    pos = 4;
    if (plain_len) {
        if (v.ext) {
            out[pos++] = 0x00;
            out[pos++] = (uint8_t)(plain_len >> 8);
        }
        out[pos++] = (uint8_t)plain_len;
        memmove(out + pos, out + scratch, plain_len);
        pos += plain_len;
        if (pos < scratch + enc_len) /* wipe the padding / moved-from tail */
            ea_cleanse(out + pos, scratch + enc_len - pos);
    } else if (v.ext && v.le_len) {
        out[pos++] = 0x00; /* case 2E: 00 LeH LeL */
    }
    memcpy(out + pos, v.le, v.le_len);
    pos += v.le_len;
    *out_len = pos;
    memcpy(s->mcv, mac, 16);
    counter_after_command(s, enc_len > 0);
    rc = EA_OK;
    goto out;
fail:
    ea_cleanse(out, len);
    *out_len = 0;
out:
    if (rc != EA_OK && rc != EA_ERR_BUF_TOO_SMALL)
        *out_len = 0;
    ea_cleanse(icv, sizeof icv);
    ea_cleanse(mac, sizeof mac);
    return rc;
}

/* ---- response wrapping (§7.6) ----------------------------------------------------- */

static const uint8_t sw_ok[2] = { 0x90, 0x00 };

ea_err ea_scp03_wrap_response(ea_scp03_session *s, const uint8_t *rsp, size_t len, uint8_t *out,
                              size_t *out_len)
{
    ea_err rc = EA_ERR_INTERNAL;
    uint8_t icv[16], mac[16];
    size_t dlen, padded, need;

    if (s == NULL || rsp == NULL || out == NULL || out_len == NULL || len < 2)
        return EA_ERR_ARG;
    if (!s->authenticated || !s->rsp_pending)
        return fail_len(out_len, EA_ERR_CONDITIONS);
    dlen = len - 2;
    if (rsp[len - 2] != 0x90 || rsp[len - 1] != 0x00) { /* error SW goes bare (§7.6) */
        if (*out_len < 2) {
            *out_len = 2;
            return EA_ERR_BUF_TOO_SMALL;
        }
        out[0] = rsp[len - 2];
        out[1] = rsp[len - 1];
        *out_len = 2;
        s->rsp_pending = false;
        return EA_OK;
    }
    padded = pad_len(dlen);
    need = padded + EA_SCP03_MAC_LEN + 2;
    if (*out_len < need) {
        *out_len = need;
        return EA_ERR_BUF_TOO_SMALL;
    }
    if (dlen) {
        memmove(out, rsp, dlen);
        pad(out, dlen);
        if ((rc = ea_scp03_icv(s, s->rsp_counter, true, icv)) != EA_OK ||
            (rc = s_aes(s, true, 1, icv, out, out, padded)) != EA_OK)
            goto fail;
    }
    if ((rc = s_cmac(s, true, s->mcv, 16, out, padded, sw_ok, 2, mac)) != EA_OK)
        goto fail;
    memcpy(out + padded, mac, EA_SCP03_MAC_LEN);
    memcpy(out + padded + EA_SCP03_MAC_LEN, sw_ok, 2);
    *out_len = need;
    s->rsp_pending = false;
    rc = EA_OK;
    goto out;
fail:
    ea_cleanse(out, need);
    *out_len = 0;
out:
    ea_cleanse(icv, sizeof icv);
    ea_cleanse(mac, sizeof mac);
    return rc;
}

ea_err ea_scp03_unwrap_response(ea_scp03_session *s, const uint8_t *rsp, size_t len, uint8_t *out,
                                size_t *out_len)
{
    ea_err rc = EA_ERR_INTERNAL;
    uint8_t icv[16], mac[16];
    size_t enc_len, plain_len = 0;

    if (s == NULL || rsp == NULL || out == NULL || out_len == NULL)
        return EA_ERR_ARG;
    if (!s->authenticated || !s->rsp_pending)
        return fail_len(out_len, EA_ERR_CONDITIONS);
    if (len < 2) {
        *out_len = 0;
        return EA_ERR_AUTH;
    }
    if (rsp[len - 2] != 0x90 || rsp[len - 1] != 0x00) {
        /* §7.6: hosts take an error SW without a MAC; any data with it is dropped. */
        if (*out_len < 2) {
            *out_len = 2;
            return EA_ERR_BUF_TOO_SMALL;
        }
        out[0] = rsp[len - 2];
        out[1] = rsp[len - 1];
        *out_len = 2;
        s->rsp_pending = false;
        return EA_OK;
    }
    if (len < 2 + EA_SCP03_MAC_LEN || (len - 2 - EA_SCP03_MAC_LEN) % EA_SCP03_BLOCK != 0) {
        *out_len = 0;
        return EA_ERR_AUTH;
    }
    enc_len = len - 2 - EA_SCP03_MAC_LEN;
    if ((rc = s_cmac(s, true, s->mcv, 16, rsp, enc_len, sw_ok, 2, mac)) != EA_OK)
        goto out;
    if (CRYPTO_memcmp(mac, rsp + enc_len, EA_SCP03_MAC_LEN) != 0) {
        rc = EA_ERR_AUTH;
        goto out;
    }
    if (*out_len < len) {
        *out_len = len;
        rc = EA_ERR_BUF_TOO_SMALL;
        goto out;
    }
    if (enc_len) {
        if ((rc = ea_scp03_icv(s, s->rsp_counter, true, icv)) != EA_OK ||
            (rc = s_aes(s, true, 0, icv, rsp, out, enc_len)) != EA_OK)
            goto fail;
        if (!unpad(out, enc_len, &plain_len)) {
            rc = EA_ERR_AUTH;
            goto fail;
        }
        ea_cleanse(out + plain_len, enc_len - plain_len);
    }
    memcpy(out + plain_len, sw_ok, 2);
    *out_len = plain_len + 2;
    s->rsp_pending = false;
    rc = EA_OK;
    goto out;
fail:
    ea_cleanse(out, len);
    *out_len = 0;
out:
    if (rc != EA_OK && rc != EA_ERR_BUF_TOO_SMALL)
        *out_len = 0;
    ea_cleanse(icv, sizeof icv);
    ea_cleanse(mac, sizeof mac);
    return rc;
}

void ea_scp03_wipe(ea_scp03_session *s)
{
    if (s == NULL)
        return;
    accel_free(s->accel);
    ea_cleanse(s, sizeof *s);
}
