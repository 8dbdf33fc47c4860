/* Management commands: random, memory, time, object listing and deletion,
 * curves. */
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "common/util.h"
#include "emu/emu_int.h"

ea_err cmd_get_random(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint16_t n;
    ea_err rc;

    if ((rc = tlvs_parse(c->body, TM(EA_TAG_1), &t)) != EA_OK ||
        (rc = tlv_req_u16(&t, EA_TAG_1, &n)) != EA_OK)
        return rc;
    if (n == 0 || n > EA_EMU_APDU_MAX - 16)
        return EA_ERR_WRONG_DATA;
    ea_wbuf_u8(rsp, EA_TAG_1);
    ea_wbuf_u8(rsp, 0x82);
    ea_wbuf_u16(rsp, n);
    uint8_t *out = ea_wbuf_reserve(rsp, n);
    if (!out)
        return EA_ERR_BUF_TOO_SMALL;
    return RAND_bytes_ex(c->emu->libctx, out, n, 0) == 1 ? EA_OK : EA_ERR_CRYPTO;
}

ea_err cmd_get_free_memory(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint8_t type;
    ea_err rc;
    size_t fr;

    if ((rc = tlvs_parse(c->body, TM(EA_TAG_1), &t)) != EA_OK ||
        (rc = tlv_req_u8(&t, EA_TAG_1, &type)) != EA_OK)
        return rc;
    if (type == EA_MEM_PERSISTENT)
        fr = obj_free_bytes(c->emu, false, NULL);
    else if (type == EA_MEM_TRANSIENT_RESET || type == EA_MEM_TRANSIENT_DESELECT)
        fr = obj_free_bytes(c->emu, true, c->ch);
    else
        return EA_ERR_WRONG_DATA;
    fr &= ~(size_t)15; /* 16-byte granularity, "worst case" */
    ea_tlv_u16(rsp, EA_TAG_1, fr > 0x7FFF ? 0x7FFF : (uint16_t)fr);
    return EA_OK;
}

ea_err cmd_get_timestamp(apdu_ctx *c, ea_wbuf *rsp)
{
    uint8_t ts[EA_TIMESTAMP_LEN] = { 0 };
    struct timespec now;

    if (c->body.n != 0)
        return EA_ERR_MALFORMED;
    /* 12 bytes: 4 zero bytes, then 100 ms ticks of the host clock. */
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t ticks = (uint64_t)now.tv_sec * 10u + (uint64_t)now.tv_nsec / 100000000u;
    ea_put_be64(ts + 4, ticks);
    ea_tlv_put_long(rsp, EA_TAG_1, ts, sizeof ts);
    return EA_OK;
}

static ea_err read_id(apdu_ctx *c, uint32_t allowed_extra, tlvs *t, uint32_t *id)
{
    ea_err rc = tlvs_parse(c->body, TM(EA_TAG_1) | allowed_extra, t);
    if (rc == EA_OK)
        rc = tlv_req_u32(t, EA_TAG_1, id);
    return rc;
}

ea_err cmd_check_exists(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t id;
    ea_err rc = read_id(c, 0, &t, &id);
    if (rc != EA_OK)
        return rc;
    ea_tlv_u8(rsp, EA_TAG_1, obj_find(c, id) ? EA_RESULT_SUCCESS : EA_RESULT_FAILURE);
    return EA_OK;
}

ea_err cmd_delete_object(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t id;
    ea_obj *o;
    ea_err rc = read_id(c, 0, &t, &id);
    (void)rsp;
    if (rc != EA_OK)
        return rc;
    if (!(o = obj_find(c, id)))
        return EA_ERR_NOT_FOUND;
    if (o->origin == EA_ORIGIN_PROVISIONED || id == EA_OBJ_UNIQUE_ID)
        return EA_ERR_CONDITIONS;
    /* A corrupt object's policy cannot be trusted; deleting it is the way to
     * recover the id, so it is allowed. */
    if (!o->corrupt && (rc = policy_check(o, EA_POL_ALLOW_DELETE)) != EA_OK)
        return rc;
    return obj_remove(c, o);
}

static int keep_provisioned(void *ctx, uint32_t id)
{
    ea_emu *emu = ctx;
    if (id == EMU_SD_RECORD_ID)
        return 1; /* the security domain is not the applet's to erase */
    for (size_t i = 0; i < emu->n_objs; i++)
        if (emu->objs[i]->id == id && !emu->objs[i]->transient)
            return emu->objs[i]->origin == EA_ORIGIN_PROVISIONED || id == EA_OBJ_UNIQUE_ID;
    return 0;
}

ea_err cmd_delete_all(apdu_ctx *c, ea_wbuf *rsp)
{
    ea_emu *emu = c->emu;
    ea_err rc;
    (void)rsp;
    if (c->body.n != 0)
        return EA_ERR_MALFORMED;
    /* A real SE05x wants a session authenticated with the FACTORY_RESET
     * UserID (7FFF0205); sessions are not emulated, so DeleteAll is off
     * unless the chip was opened with allow_factory_reset. */
    if (!emu->allow_factory_reset)
        return EA_ERR_AUTH;
    /* One atomic store step, then the same selection in memory. */
    if ((rc = ea_store_del_where(emu->store, keep_provisioned, emu)) != EA_OK)
        return rc;
    size_t w = 0;
    for (size_t i = 0; i < emu->n_objs; i++) {
        ea_obj *o = emu->objs[i];
        bool keep = !o->transient && (o->origin == EA_ORIGIN_PROVISIONED || o->id == EA_OBJ_UNIQUE_ID);
        if (keep || (o->transient && o->chan != c->ch))
            emu->objs[w++] = o;
        else
            obj_free(o);
    }
    emu->n_objs = w;
    return EA_OK;
}

ea_err cmd_read_id_list(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint16_t offset;
    uint8_t filter;
    ea_err rc;
    ea_emu *emu = c->emu;

    if ((rc = tlvs_parse(c->body, TM(EA_TAG_1) | TM(EA_TAG_2), &t)) != EA_OK ||
        (rc = tlv_req_u16(&t, EA_TAG_1, &offset)) != EA_OK ||
        (rc = tlv_req_u8(&t, EA_TAG_2, &filter)) != EA_OK)
        return rc;
    /* offset = number of identifiers already listed (AN12413 wording). */
    uint8_t ids[EMU_LIST_PAGE * 4];
    size_t n = 0, seen = 0;
    bool more = false;
    for (size_t i = 0; i < emu->n_objs; i++) {
        ea_obj *o = emu->objs[i];
        if (o->transient && o->chan != c->ch)
            continue;
        if (filter != 0xFF && obj_type_code(emu, o) != filter)
            continue;
        if (seen++ < offset)
            continue;
        if (n == EMU_LIST_PAGE) {
            more = true;
            break;
        }
        ea_put_be32(ids + 4 * n, o->id);
        n++;
    }
    ea_tlv_u8(rsp, EA_TAG_1, more ? EA_MORE_YES : EA_MORE_NO);
    ea_tlv_put_long(rsp, EA_TAG_2, ids, 4 * n);
    return EA_OK;
}

ea_err cmd_read_type(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t id;
    ea_obj *o;
    ea_err rc = read_id(c, 0, &t, &id);
    if (rc != EA_OK)
        return rc;
    if (!(o = obj_find(c, id)))
        return EA_ERR_NOT_FOUND;
    if (o->corrupt)
        return EA_ERR_CORRUPT;
    ea_tlv_u8(rsp, EA_TAG_1, obj_type_code(c->emu, o));
    ea_tlv_u8(rsp, EA_TAG_2, o->transient ? EA_TRANSIENT : EA_PERSISTENT);
    return EA_OK;
}

ea_err cmd_read_size(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t id;
    ea_obj *o;
    ea_err rc = read_id(c, 0, &t, &id);
    if (rc != EA_OK)
        return rc;
    if (!(o = obj_find(c, id)))
        return EA_ERR_NOT_FOUND;
    if (o->corrupt)
        return EA_ERR_CORRUPT;
    ea_tlv_u16(rsp, EA_TAG_1, (uint16_t)obj_size(o));
    return EA_OK;
}

/* NIST P-256 and P-384 are built in (mask ROM, in effect): listed as SET,
 * cannot be created again or deleted. Other curves are not offered. */
#define CURVE_LIST_LEN 0x11u

static bool curve_builtin(uint8_t id)
{
    return id == EA_CURVE_NIST_P256 || id == EA_CURVE_NIST_P384;
}

ea_err cmd_read_curve_list(apdu_ctx *c, ea_wbuf *rsp)
{
    uint8_t list[CURVE_LIST_LEN];
    if (c->body.n != 0)
        return EA_ERR_MALFORMED;
    for (uint8_t i = 0; i < CURVE_LIST_LEN; i++)
        list[i] = curve_builtin((uint8_t)(i + 1)) ? EA_SET_YES : EA_SET_NOT;
    ea_tlv_put_long(rsp, EA_TAG_1, list, sizeof list);
    return EA_OK;
}

ea_err cmd_get_curve_id(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint32_t id;
    ea_obj *o;
    ea_err rc = read_id(c, 0, &t, &id);
    if (rc != EA_OK)
        return rc;
    if ((rc = obj_get_usable(c, id, &o)) != EA_OK)
        return rc;
    if (o->kind != KIND_EC_PAIR && o->kind != KIND_EC_PRIV && o->kind != KIND_EC_PUB)
        return EA_ERR_CONDITIONS;
    ea_tlv_u8(rsp, EA_TAG_1, o->curve);
    return EA_OK;
}

static ea_err curve_arg(apdu_ctx *c, uint32_t extra, tlvs *t, uint8_t *curve)
{
    ea_err rc = tlvs_parse(c->body, TM(EA_TAG_1) | extra, t);
    if (rc == EA_OK)
        rc = tlv_req_u8(t, EA_TAG_1, curve);
    return rc;
}

ea_err cmd_create_curve(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint8_t curve;
    ea_err rc = curve_arg(c, 0, &t, &curve);
    (void)rsp;
    if (rc != EA_OK)
        return rc;
    /* Creating an existing curve is 6985 (Plug&Trust tolerates exactly that). */
    return curve_builtin(curve) ? EA_ERR_EXISTS : EA_ERR_UNSUPPORTED;
}

ea_err cmd_set_curve_param(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint8_t curve, param;
    ea_err rc = curve_arg(c, TM(EA_TAG_2) | TM(EA_TAG_3), &t, &curve);
    (void)rsp;
    if (rc != EA_OK || (rc = tlv_req_u8(&t, EA_TAG_2, &param)) != EA_OK || !tlv_has(&t, EA_TAG_3))
        return rc != EA_OK ? rc : EA_ERR_MALFORMED;
    return curve_builtin(curve) ? EA_ERR_EXISTS : EA_ERR_UNSUPPORTED;
}

ea_err cmd_delete_curve(apdu_ctx *c, ea_wbuf *rsp)
{
    tlvs t;
    uint8_t curve;
    ea_err rc = curve_arg(c, 0, &t, &curve);
    (void)rsp;
    if (rc != EA_OK)
        return rc;
    return curve_builtin(curve) ? EA_ERR_CONDITIONS : EA_ERR_NOT_FOUND;
}
