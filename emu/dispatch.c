/* APDU framing, the command table, and the one place where an ea_err
 * becomes a status word. */
#include <string.h>

#include "common/util.h"
#include "emu/emu_int.h"

int tlv_slot(uint8_t tag)
{
    if (tag >= 0x10 && tag <= 0x1F)
        return tag - 0x10;
    if (tag >= 0x41 && tag <= 0x4F)
        return 16 + (tag - 0x41);
    if (tag == 0x52)
        return 31;
    return -1;
}

ea_err tlvs_parse(ea_cur body, uint32_t allowed, tlvs *t)
{
    int last = -1;
    uint8_t last_tag = 0;

    memset(t, 0, sizeof *t);
    while (body.n > 0) {
        uint8_t tag;
        ea_cur v;
        if (ea_tlv_next(&body, &tag, &v) != EA_OK)
            return EA_ERR_MALFORMED;
        int s = tlv_slot(tag);
        /* Tags must come in ascending order, each at most once (the applet
         * parses positionally; NXP's hosts always send them sorted). */
        if (s < 0 || !(allowed & (1u << s)) || (last >= 0 && tag <= last_tag))
            return EA_ERR_MALFORMED;
        t->present |= 1u << s;
        t->v[s] = v;
        last = s;
        last_tag = tag;
    }
    return EA_OK;
}

bool tlv_has(const tlvs *t, uint8_t tag)
{
    int s = tlv_slot(tag);
    return s >= 0 && (t->present & (1u << s));
}

ea_cur tlv_get(const tlvs *t, uint8_t tag)
{
    int s = tlv_slot(tag);
    ea_cur none = { NULL, 0 };
    return (s >= 0 && (t->present & (1u << s))) ? t->v[s] : none;
}

static ea_err req_be(const tlvs *t, uint8_t tag, size_t n, uint32_t *v)
{
    if (!tlv_has(t, tag))
        return EA_ERR_MALFORMED;
    ea_cur c = tlv_get(t, tag);
    if (c.n != n)
        return EA_ERR_MALFORMED;
    *v = 0;
    for (size_t i = 0; i < n; i++)
        *v = (*v << 8) | c.p[i];
    return EA_OK;
}

ea_err tlv_req_u8(const tlvs *t, uint8_t tag, uint8_t *v)
{
    uint32_t x;
    ea_err rc = req_be(t, tag, 1, &x);
    if (rc == EA_OK)
        *v = (uint8_t)x;
    return rc;
}

ea_err tlv_req_u16(const tlvs *t, uint8_t tag, uint16_t *v)
{
    uint32_t x;
    ea_err rc = req_be(t, tag, 2, &x);
    if (rc == EA_OK)
        *v = (uint16_t)x;
    return rc;
}

ea_err tlv_req_u32(const tlvs *t, uint8_t tag, uint32_t *v)
{
    return req_be(t, tag, 4, v);
}

ea_err tlv_opt_u16(const tlvs *t, uint8_t tag, uint16_t dflt, uint16_t *v)
{
    if (!tlv_has(t, tag)) {
        *v = dflt;
        return EA_OK;
    }
    return tlv_req_u16(t, tag, v);
}

/* ---- the command table -------------------------------------------------- */

#define P_ANY 0x100u
#define MOD_NONE 0x00u

typedef struct route {
    uint8_t ins;     /* low 5 bits */
    uint8_t mods;    /* INS modifier bits this command accepts */
    uint16_t p1, p2; /* P_ANY: checked by the handler */
    cmd_fn *fn;
} route;

static const route routes[] = {
    { EA_INS_MGMT, MOD_NONE, EA_P1_DEFAULT, EA_P2_VERSION, cmd_get_version },
    { EA_INS_MGMT, MOD_NONE, EA_P1_DEFAULT, EA_P2_VERSION_EXT, cmd_get_version },
    { EA_INS_MGMT, MOD_NONE, EA_P1_DEFAULT, EA_P2_RANDOM, cmd_get_random },
    { EA_INS_MGMT, MOD_NONE, EA_P1_DEFAULT, EA_P2_MEMORY, cmd_get_free_memory },
    { EA_INS_MGMT, MOD_NONE, EA_P1_DEFAULT, EA_P2_TIME, cmd_get_timestamp },
    { EA_INS_MGMT, MOD_NONE, EA_P1_DEFAULT, EA_P2_EXIST, cmd_check_exists },
    { EA_INS_MGMT, MOD_NONE, EA_P1_DEFAULT, EA_P2_DELETE_OBJECT, cmd_delete_object },
    { EA_INS_MGMT, MOD_NONE, EA_P1_DEFAULT, EA_P2_DELETE_ALL, cmd_delete_all },
    { EA_INS_MGMT, MOD_NONE, EA_P1_DEFAULT, EA_P2_SCP, cmd_set_platform_scp },
    { EA_INS_MGMT, MOD_NONE, EA_P1_CURVE, EA_P2_DELETE_OBJECT, cmd_delete_curve },
    { EA_INS_READ, EA_INS_MASK_ATTEST, EA_P1_DEFAULT, EA_P2_DEFAULT, cmd_read_object },
    { EA_INS_READ, MOD_NONE, EA_P1_DEFAULT, EA_P2_TYPE, cmd_read_type },
    { EA_INS_READ, MOD_NONE, EA_P1_DEFAULT, EA_P2_SIZE, cmd_read_size },
    { EA_INS_READ, MOD_NONE, EA_P1_DEFAULT, EA_P2_LIST, cmd_read_id_list },
    { EA_INS_READ, MOD_NONE, EA_P1_CURVE, EA_P2_LIST, cmd_read_curve_list },
    { EA_INS_READ, MOD_NONE, EA_P1_CURVE, EA_P2_ID, cmd_get_curve_id },
    { EA_INS_WRITE, EA_INS_MASK_TRANSIENT, P_ANY, EA_P2_DEFAULT, cmd_write_ec_key },
    { EA_INS_WRITE, MOD_NONE, EA_P1_CURVE, EA_P2_CREATE, cmd_create_curve },
    { EA_INS_WRITE, MOD_NONE, EA_P1_CURVE, EA_P2_PARAM, cmd_set_curve_param },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_SIGNATURE, EA_P2_SIGN, cmd_ecdsa_sign },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_SIGNATURE, EA_P2_VERIFY, cmd_ecdsa_verify },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_EC, EA_P2_DH, cmd_ecdh },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_DEFAULT, EA_P2_ONESHOT, cmd_digest },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_DEFAULT, EA_P2_HKDF, cmd_hkdf },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_DEFAULT, EA_P2_HKDF_EXPAND_ONLY, cmd_hkdf },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_TLS, EA_P2_RANDOM, cmd_tls_random },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_TLS, EA_P2_TLS_PMS, cmd_tls_pms },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_TLS, EA_P2_TLS_PRF_CLI_HELLO, cmd_tls_prf },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_TLS, EA_P2_TLS_PRF_SRV_HELLO, cmd_tls_prf },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_TLS, EA_P2_TLS_PRF_CLI_RND, cmd_tls_prf },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_TLS, EA_P2_TLS_PRF_SRV_RND, cmd_tls_prf },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_TLS, EA_P2_TLS_PRF_BOTH, cmd_tls_prf },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_CIPHER, EA_P2_ENCRYPT_ONESHOT, cmd_cipher },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_CIPHER, EA_P2_DECRYPT_ONESHOT, cmd_cipher },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_MAC, EA_P2_GENERATE_ONESHOT, cmd_mac },
    { EA_INS_CRYPTO, MOD_NONE, EA_P1_MAC, EA_P2_VALIDATE_ONESHOT, cmd_mac },
};

/* WRITE's P1 selects the object kind; the generic row above takes every P1
 * and this table splits it. */
static cmd_fn *write_route(uint8_t p1)
{
    switch (p1 & ~EA_P1_KEYPART_MASK) {
    case EA_P1_EC:
        return cmd_write_ec_key;
    case EA_P1_AES:
    case EA_P1_HMAC:
        return (p1 & EA_P1_KEYPART_MASK) ? NULL : cmd_write_symm_key;
    case EA_P1_BINARY:
        return (p1 & EA_P1_KEYPART_MASK) ? NULL : cmd_write_binary;
    default:
        return NULL;
    }
}

static uint16_t sw_of(ea_err e)
{
    switch (e) {
    case EA_OK:
        return EA_SW_OK;
    case EA_ERR_MALFORMED:
    case EA_ERR_WRONG_DATA:
    case EA_ERR_ARG:
        return EA_SW_WRONG_DATA;
    case EA_ERR_DENIED:
        return EA_SW_COMMAND_NOT_ALLOWED;
    case EA_ERR_POLICY:
        return EA_SW_DATA_INVALID;
    case EA_ERR_FULL:
        return EA_SW_FILE_FULL;
    case EA_ERR_BUF_TOO_SMALL:
        return EA_SW_WRONG_LENGTH;
    case EA_ERR_AUTH:
        return EA_SW_SECURITY_STATUS;
    case EA_ERR_NOT_FOUND:
    case EA_ERR_EXISTS:
    case EA_ERR_CONDITIONS:
    case EA_ERR_UNSUPPORTED:
    case EA_ERR_CORRUPT:
        return EA_SW_CONDITIONS_NOT_SATISFIED;
    default:
        return EA_SW_UNKNOWN;
    }
}

/* Split a C-APDU into header and body. Accepts every encoding NXP hosts emit
 * (spec §2.1): case 1, case 2 (Le), short Lc (+ Le), extended Lc (+ Le 00 00),
 * extended Le alone. */
static bool parse_frame(const uint8_t *a, size_t n, apdu_ctx *c)
{
    if (n < 4)
        return false;
    c->cla = a[0];
    c->ins = a[1];
    c->p1 = a[2];
    c->p2 = a[3];
    c->raw = a;
    c->body = ea_cur_make(a + 4, 0);
    c->raw_nole_len = 4;
    if (n == 4 || n == 5)
        return true; /* case 1, or case 2 with a short Le */
    if (a[4] != 0) {
        size_t lc = a[4];
        if (n != 5 + lc && n != 6 + lc)
            return false;
        c->body = ea_cur_make(a + 5, lc);
        c->raw_nole_len = 5 + lc;
        return true;
    }
    if (n == 6)
        return true; /* 00 00: an "extended" call with no data (tolerated) */
    size_t lc = ((size_t)a[5] << 8) | a[6];
    if (n == 7)
        return true; /* extended Le only */
    if (lc == 0 || (n != 7 + lc && n != 9 + lc))
        return false;
    c->body = ea_cur_make(a + 7, lc);
    c->raw_nole_len = 7 + lc;
    return true;
}

static void version_bytes(const ea_emu *emu, uint8_t v[7])
{
    v[0] = (uint8_t)(emu->version >> 24);
    v[1] = (uint8_t)(emu->version >> 16);
    v[2] = (uint8_t)(emu->version >> 8);
    /* Feature bits: in 7.2 mode what is really implemented (ECDSA/ECDH, HMAC,
     * AES, TLS, FIPS mode off); the 3.1 mode replays NXP's capture. */
    uint16_t feat = emu->version >= 0x07000000u ? EMU_FEATURES : 0x3FFFu;
    v[3] = (uint8_t)(feat >> 8);
    v[4] = (uint8_t)feat;
    v[5] = 0x01; /* SecureBox version */
    v[6] = 0x0B;
}

ea_err cmd_get_version(apdu_ctx *c, ea_wbuf *rsp)
{
    uint8_t v[7 + 30];
    size_t n = 7;

    if (c->body.n != 0)
        return EA_ERR_MALFORMED;
    version_bytes(c->emu, v);
    if (c->p2 == EA_P2_VERSION_EXT) {
        memset(v + 7, 0, 30);
        v[7 + 29] = 0x01; /* extended features: none beyond the base set */
        n = sizeof v;
    }
    ea_tlv_put_long(rsp, EA_TAG_1, v, n);
    return EA_OK;
}

static void chan_deselect(ea_emu_chan *ch);

static uint16_t do_select(apdu_ctx *c, ea_wbuf *rsp)
{
    if (c->p1 != 0x04 || c->p2 != 0x00)
        return EA_SW_INCORRECT_P1P2;
    /* Selecting anything (this applet again included) deselects first. */
    chan_deselect(c->ch);
    /* The card matches a partial AID (NXP's own VCOM host sends 15 bytes). */
    if (c->body.n < 5 || c->body.n > EA_APPLET_AID_LEN ||
        memcmp(c->body.p, ea_applet_aid, c->body.n) != 0)
        return EA_SW_FILE_NOT_FOUND;
    uint8_t v[7];
    version_bytes(c->emu, v);
    ea_wbuf_put(rsp, v, sizeof v);
    c->ch->selected = true;
    return EA_SW_OK;
}

static void chan_deselect(ea_emu_chan *ch)
{
    ea_emu *emu = ch->emu;
    ch->selected = false;
    ch->tls_random_set = false;
    ea_cleanse(ch->tls_random, sizeof ch->tls_random);
    /* Transient objects keep their id and policy, lose their value. */
    for (size_t i = 0; i < emu->n_objs; i++) {
        ea_obj *o = emu->objs[i];
        if (o->transient && o->chan == ch && o->has_value) {
            ea_cleanse(o->val, o->val_len);
            o->has_value = false;
            EVP_PKEY_free(o->pkey);
            o->pkey = NULL;
        }
    }
}

void emu_chan_deselect(ea_emu_chan *ch);
void emu_chan_deselect(ea_emu_chan *ch)
{
    chan_deselect(ch);
}

static uint16_t dispatch(apdu_ctx *c, ea_wbuf *rsp)
{
    if (c->cla == EA_CLA_ISO) {
        if (c->ins == EA_INS_SELECT)
            return do_select(c, rsp);
        return EA_SW_INS_NOT_SUPPORTED;
    }
    if (c->cla != EA_CLA_APPLET)
        return EA_SW_CLA_NOT_SUPPORTED;
    if (!c->ch->selected)
        return EA_SW_CONDITIONS_NOT_SATISFIED;

    uint8_t base = c->ins & 0x1F, mods = c->ins & 0xE0;
    bool ins_known = false, p_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const route *r = &routes[i];
        if (r->ins != base)
            continue;
        ins_known = true;
        if ((r->p1 != P_ANY && r->p1 != c->p1) || r->p2 != c->p2)
            continue;
        p_known = true;
        if (mods & ~r->mods)
            return EA_SW_INS_NOT_SUPPORTED;
        cmd_fn *fn = r->fn;
        if (r->p1 == P_ANY && (fn = write_route(c->p1)) == NULL)
            return EA_SW_INCORRECT_P1P2;
        ea_err rc = fn(c, rsp);
        if (rc == EA_OK && rsp->overflow)
            rc = EA_ERR_BUF_TOO_SMALL;
        return sw_of(rc);
    }
    return ins_known && !p_known ? EA_SW_INCORRECT_P1P2 : EA_SW_INS_NOT_SUPPORTED;
}

#define GP_CLA 0x80u
#define GP_CLA_MAC 0x84u
#define GP_INS_INITIALIZE_UPDATE 0x50u
#define GP_INS_EXTERNAL_AUTHENTICATE 0x82u
/* Worst-case growth of a response under R-ENC + R-MAC: padding + MAC. */
#define SCP_RSP_OVERHEAD (EA_SCP03_BLOCK + EA_SCP03_MAC_LEN)

static bool is_handshake(const apdu_ctx *c)
{
    return (c->cla == GP_CLA && c->ins == GP_INS_INITIALIZE_UPDATE) ||
           (c->cla == GP_CLA_MAC && c->ins == GP_INS_EXTERNAL_AUTHENTICATE);
}

/* A command that arrived in the clear. */
static uint16_t dispatch_plain(apdu_ctx *c, ea_wbuf *rsp)
{
    ea_emu_chan *ch = c->ch;
    if (c->cla == GP_CLA && c->ins == GP_INS_INITIALIZE_UPDATE)
        return sd_initialize_update(c, rsp);
    if (c->cla == GP_CLA_MAC && c->ins == GP_INS_EXTERNAL_AUTHENTICATE)
        return sd_external_authenticate(c);
    if (c->cla == EA_CLA_ISO && c->ins == EA_INS_SELECT) {
        /* Selecting the applet again starts over: no secure session. */
        sd_chan_end(ch);
        return do_select(c, rsp);
    }
    if (ch->scp_state != SCP_NONE) {
        /* A plain command inside a secure session: refused, and the
         * session is over (GP: a security failure closes the channel). */
        sd_chan_end(ch);
        return EA_SW_SECURITY_STATUS;
    }
    if (c->emu->sd.scp_required)
        return EA_SW_SECURITY_STATUS;
    return dispatch(c, rsp);
}

/* A command with CLA bit 04: verify and decrypt it, run it, and wrap the
 * answer. Anything wrong with the frame ends the session and answers a bare
 * 6982; no plaintext is ever produced from a frame that failed its MAC.
 * *inner gets the plain header (for the log and the timing model). */
static uint16_t transceive_wrapped(ea_emu_chan *ch, const uint8_t *capdu, size_t clen,
                                   uint8_t *rapdu, size_t cap, size_t *rlen, apdu_ctx *inner)
{
    uint8_t plain[EA_EMU_APDU_MAX], rbuf[EA_EMU_APDU_MAX];
    size_t pl = sizeof plain;
    uint16_t sw;

    if (ch->scp_state != SCP_AUTHENTICATED ||
        ea_scp03_unwrap_command(&ch->scp, capdu, clen, plain, &pl) != EA_OK) {
        sd_chan_end(ch);
        sw = EA_SW_SECURITY_STATUS;
        goto bare;
    }
    apdu_ctx c = { .emu = ch->emu, .ch = ch, .secure = true };
    size_t icap = cap > 2 + SCP_RSP_OVERHEAD ? cap - 2 - SCP_RSP_OVERHEAD : 0;
    ea_wbuf rsp = ea_wbuf_make(rbuf, icap);
    if (!parse_frame(plain, pl, &c))
        sw = EA_SW_WRONG_LENGTH;
    else if (is_handshake(&c))
        sw = EA_SW_CONDITIONS_NOT_SATISFIED; /* the handshake is never wrapped */
    else if (c.cla == EA_CLA_ISO && c.ins == EA_INS_SELECT)
        sw = do_select(&c, &rsp);
    else
        sw = dispatch(&c, &rsp);
    inner->cla = c.cla;
    inner->ins = c.ins;
    inner->p1 = c.p1;
    inner->p2 = c.p2;
    inner->body = c.body; /* its length only: the buffer is wiped below */
    inner->secure = true;
    size_t n = sw == EA_SW_OK ? rsp.len : 0;
    rbuf[n] = (uint8_t)(sw >> 8);
    rbuf[n + 1] = (uint8_t)sw;
    *rlen = cap;
    ea_err rc = ea_scp03_wrap_response(&ch->scp, rbuf, n + 2, rapdu, rlen);
    ea_cleanse(plain, pl);
    ea_cleanse(rbuf, rsp.len + 2);
    if (rc == EA_OK)
        return sw;
    sd_chan_end(ch);
    sw = EA_SW_UNKNOWN;
bare:
    ea_cleanse(plain, sizeof plain);
    rapdu[0] = (uint8_t)(sw >> 8);
    rapdu[1] = (uint8_t)sw;
    *rlen = 2;
    return sw;
}

ea_err ea_emu_transceive(ea_emu_chan *ch, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
                         size_t *rlen)
{
    if (!ch || !capdu || !rapdu || !rlen || *rlen < 2)
        return EA_ERR_ARG;
    ea_emu *emu = ch->emu;
    size_t cap = *rlen < EA_EMU_APDU_MAX ? *rlen : EA_EMU_APDU_MAX;
    apdu_ctx c = { .emu = emu, .ch = ch };
    ea_wbuf rsp = ea_wbuf_make(rapdu, cap - 2);
    uint16_t sw;
    bool framed = false;

    pthread_mutex_lock(&emu->lock);
    uint64_t t0 = emu->timing || emu->apdu_log_fd >= 0 ? emu_now_ns() : 0;
    if (clen > EA_EMU_APDU_MAX) {
        sw = EA_SW_WRONG_LENGTH;
    } else if (!parse_frame(capdu, clen, &c)) {
        sw = EA_SW_WRONG_LENGTH;
    } else if ((c.cla & EA_CLA_SCP_MASK) && !is_handshake(&c)) {
        sw = transceive_wrapped(ch, capdu, clen, rapdu, cap, rlen, &c);
        framed = true;
    } else {
        sw = dispatch_plain(&c, &rsp);
    }
    if (!framed) {
        size_t n = sw == EA_SW_OK ? rsp.len : 0; /* an error never carries data */
        if (sw != EA_SW_OK)
            ea_cleanse(rapdu, rsp.len);
        rapdu[n] = (uint8_t)(sw >> 8);
        rapdu[n + 1] = (uint8_t)sw;
        *rlen = n + 2;
    }
    if (t0) {
        /* Like the real part: one command at a time, each taking its time. */
        uint32_t us = emu_timing_us(emu->timing, c.cla, c.ins, c.p1, c.p2, c.body.n, clen + *rlen, c.secure);
        if (us)
            emu_sleep_until(t0 + (uint64_t)us * 1000u);
        emu_apdu_log(emu, ch, &c, c.secure, sw, clen, *rlen, emu_now_ns() - t0);
    }
    pthread_mutex_unlock(&emu->lock);
    return EA_OK;
}
