/* The card side of Platform SCP03 (spec se05x-apdu.md §7): the security
 * domain's static keys, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE and
 * SetPlatformSCPRequest. Wrapping and unwrapping of the applet's APDUs is
 * in dispatch.c; the cryptography is common/scp03.c. */
#include <string.h>

#include <openssl/rand.h>

#include "common/util.h"
#include "emu/emu_int.h"

#define SD_META_MAGIC "EASD"
#define SD_META_FORMAT 1u
#define SD_META_LEN 7u
#define SD_FLAG_REQUIRED 0x01u
#define SD_VALUE_LEN (3u * EA_SCP03_KEY_LEN)

/* GP SCP03 i-parameter reported in key information (the value NXP's own
 * mock answers; hosts ignore it). */
#define SD_I_PARAM 0x70u
#define SD_SW_KEY_NOT_FOUND 0x6A88u

ea_err sd_load(ea_emu *emu, ea_err status, const ea_store_rec *rec)
{
    emu_sd *sd = &emu->sd;
    memset(sd, 0, sizeof *sd);
    if (status != EA_OK || rec->meta_len != SD_META_LEN || memcmp(rec->meta, SD_META_MAGIC, 4) != 0 ||
        rec->meta[4] != SD_META_FORMAT || rec->value_len != SD_VALUE_LEN) {
        /* A damaged record must not silently turn the channel requirement
         * off: the chip then accepts nothing but SELECT. */
        sd->corrupt = true;
        sd->scp_required = true;
        return EA_OK;
    }
    sd->has_keys = true;
    sd->key_version = rec->meta[5];
    sd->scp_required = (rec->meta[6] & SD_FLAG_REQUIRED) != 0;
    memcpy(sd->keys.enc, rec->value, EA_SCP03_KEY_LEN);
    memcpy(sd->keys.mac, rec->value + EA_SCP03_KEY_LEN, EA_SCP03_KEY_LEN);
    memcpy(sd->keys.dek, rec->value + 2 * EA_SCP03_KEY_LEN, EA_SCP03_KEY_LEN);
    return EA_OK;
}

/* Persist next, then (only on success) make it the chip's state. */
static ea_err sd_save(ea_emu *emu, const emu_sd *next)
{
    uint8_t meta[SD_META_LEN], value[SD_VALUE_LEN];
    memcpy(meta, SD_META_MAGIC, 4);
    meta[4] = SD_META_FORMAT;
    meta[5] = next->key_version;
    meta[6] = next->scp_required ? SD_FLAG_REQUIRED : 0;
    memcpy(value, next->keys.enc, EA_SCP03_KEY_LEN);
    memcpy(value + EA_SCP03_KEY_LEN, next->keys.mac, EA_SCP03_KEY_LEN);
    memcpy(value + 2 * EA_SCP03_KEY_LEN, next->keys.dek, EA_SCP03_KEY_LEN);
    ea_store_rec rec = { .id = EMU_SD_RECORD_ID, .meta = meta, .meta_len = sizeof meta,
                         .value = value, .value_len = sizeof value };
    ea_err rc = ea_store_put(emu->store, &rec);
    ea_cleanse(value, sizeof value);
    if (rc == EA_OK && next != &emu->sd)
        emu->sd = *next;
    return rc;
}

ea_err sd_provision(ea_emu *emu, const ea_scp03_keys *k)
{
    emu_sd next = { .has_keys = true, .key_version = EA_SCP03_KEY_VERSION, .keys = *k };
    pthread_mutex_lock(&emu->lock);
    ea_err rc = sd_save(emu, &next);
    pthread_mutex_unlock(&emu->lock);
    ea_cleanse(&next, sizeof next);
    return rc;
}

void sd_chan_end(ea_emu_chan *ch)
{
    ea_scp03_wipe(&ch->scp);
    ch->scp_state = SCP_NONE;
}

/* 80 50 <key version> 00 08 <host challenge> [Le] */
uint16_t sd_initialize_update(apdu_ctx *c, ea_wbuf *rsp)
{
    ea_emu_chan *ch = c->ch;
    emu_sd *sd = &c->emu->sd;
    uint8_t card_challenge[EA_SCP03_CHALLENGE_LEN];

    /* Whatever happens next, a new INITIALIZE UPDATE ends the old session. */
    sd_chan_end(ch);
    if (c->p2 != 0x00)
        return EA_SW_INCORRECT_P1P2;
    if (c->body.n != EA_SCP03_CHALLENGE_LEN)
        return EA_SW_WRONG_LENGTH;
    if (!sd->has_keys || (c->p1 != 0x00 && c->p1 != sd->key_version))
        return SD_SW_KEY_NOT_FOUND;
    if (ch->test_card_challenge_set) {
        memcpy(card_challenge, ch->test_card_challenge, sizeof card_challenge);
        ch->test_card_challenge_set = false;
    } else if (RAND_bytes_ex(c->emu->libctx, card_challenge, sizeof card_challenge, 0) != 1) {
        return EA_SW_UNKNOWN;
    }
    if (ea_scp03_derive(c->emu->libctx, sd->keys.enc, sd->keys.mac, c->body.p, card_challenge,
                        c->emu->version, &ch->scp) != EA_OK)
        return EA_SW_UNKNOWN;
    (void)ea_scp03_accelerate(&ch->scp); /* optional: slower without */
    ch->scp_state = SCP_INITIALIZED;

    static const uint8_t key_div[10] = { 0 };
    uint8_t key_info[3] = { sd->key_version, 0x03, SD_I_PARAM };
    ea_wbuf_put(rsp, key_div, sizeof key_div);
    ea_wbuf_put(rsp, key_info, sizeof key_info);
    ea_wbuf_put(rsp, card_challenge, sizeof card_challenge);
    ea_wbuf_put(rsp, ch->scp.card_cryptogram, EA_SCP03_CRYPTOGRAM_LEN);
    return EA_SW_OK;
}

/* 84 82 33 00 10 <host cryptogram> <C-MAC> */
uint16_t sd_external_authenticate(apdu_ctx *c)
{
    ea_emu_chan *ch = c->ch;
    if (ch->scp_state != SCP_INITIALIZED) {
        sd_chan_end(ch);
        return EA_SW_CONDITIONS_NOT_SATISFIED;
    }
    ea_err rc = ea_scp03_ext_auth_verify(&ch->scp, c->raw, c->raw_nole_len);
    if (rc != EA_OK) {
        /* Wrong keys, a forged or replayed cryptogram: the attempt is over. */
        sd_chan_end(ch);
        return rc == EA_ERR_MALFORMED ? EA_SW_WRONG_DATA : EA_SW_SECURITY_STATUS;
    }
    ch->scp_state = SCP_AUTHENTICATED;
    return EA_SW_OK;
}

/* SetPlatformSCPRequest: 80 04 00 52, TAG_1 = 01 REQUIRED / 02 NOT_REQUIRED.
 * A real SE05x wants a session with the PLATFORM_SCP UserID (7FFF0207);
 * sessions are not emulated, so the emulator asks for the next best proof:
 * the command must itself arrive through Platform SCP03. Whoever changes
 * the requirement therefore holds the keys and cannot lock themselves out,
 * and a probe on the bus cannot switch it off. */
ea_err cmd_set_platform_scp(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint8_t v;
    ea_err rc;
    (void)rsp;
    if ((rc = tlvs_parse(c->body, TM(EA_TAG_1), &t)) != EA_OK ||
        (rc = tlv_req_u8(&t, EA_TAG_1, &v)) != EA_OK)
        return rc;
    if (v != EA_SCP_REQUIRED && v != EA_SCP_NOT_REQUIRED)
        return EA_ERR_WRONG_DATA;
    if (!c->secure)
        return EA_ERR_AUTH;
    emu_sd next = c->emu->sd;
    next.scp_required = v == EA_SCP_REQUIRED;
    rc = sd_save(c->emu, &next);
    ea_cleanse(&next, sizeof next);
    return rc;
}
