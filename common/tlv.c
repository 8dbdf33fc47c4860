#include "common/tlv.h"

#include <string.h>

bool ea_cur_u8(ea_cur *c, uint8_t *v)
{
    if (c->n < 1)
        return false;
    *v = *c->p++;
    c->n--;
    return true;
}

bool ea_cur_u16(ea_cur *c, uint16_t *v)
{
    if (c->n < 2)
        return false;
    *v = (uint16_t)((c->p[0] << 8) | c->p[1]);
    c->p += 2;
    c->n -= 2;
    return true;
}

bool ea_cur_u32(ea_cur *c, uint32_t *v)
{
    if (c->n < 4)
        return false;
    *v = ((uint32_t)c->p[0] << 24) | ((uint32_t)c->p[1] << 16) | ((uint32_t)c->p[2] << 8) | c->p[3];
    c->p += 4;
    c->n -= 4;
    return true;
}

bool ea_cur_take(ea_cur *c, size_t len, ea_cur *out)
{
    if (len > c->n)
        return false;
    out->p = c->p;
    out->n = len;
    c->p += len;
    c->n -= len;
    return true;
}

ea_err ea_tlv_next(ea_cur *c, uint8_t *tag, ea_cur *val)
{
    ea_cur r = *c;
    uint8_t l0, b;
    size_t len = 0;

    if (!ea_cur_u8(&r, tag) || !ea_cur_u8(&r, &l0))
        return EA_ERR_MALFORMED;
    if (l0 == 0x81 || l0 == 0x82) {
        for (int i = 0; i < l0 - 0x80; i++) {
            if (!ea_cur_u8(&r, &b))
                return EA_ERR_MALFORMED;
            len = (len << 8) | b;
        }
    } else if (l0 < 0x80) {
        len = l0;
    } else {
        return EA_ERR_MALFORMED; /* indefinite (80) and 83+ never occur in SE05x APDUs */
    }
    if (!ea_cur_take(&r, len, val))
        return EA_ERR_MALFORMED;
    *c = r;
    return EA_OK;
}

void ea_wbuf_put(ea_wbuf *w, const void *src, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    if (n)
        memcpy(w->p + w->len, src, n);
    w->len += n;
}

uint8_t *ea_wbuf_reserve(ea_wbuf *w, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return NULL;
    }
    uint8_t *at = w->p + w->len;
    w->len += n;
    return at;
}

void ea_wbuf_u8(ea_wbuf *w, uint8_t v)
{
    ea_wbuf_put(w, &v, 1);
}

void ea_wbuf_u16(ea_wbuf *w, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    ea_wbuf_put(w, b, 2);
}

void ea_wbuf_u32(ea_wbuf *w, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    ea_wbuf_put(w, b, 4);
}

static void tlv_len(ea_wbuf *w, size_t n, bool long_form)
{
    if (n > 0xFFFF) {
        w->overflow = true;
    } else if (long_form || n > 0xFF) {
        ea_wbuf_u8(w, 0x82);
        ea_wbuf_u16(w, (uint16_t)n);
    } else if (n > 0x7F) {
        ea_wbuf_u8(w, 0x81);
        ea_wbuf_u8(w, (uint8_t)n);
    } else {
        ea_wbuf_u8(w, (uint8_t)n);
    }
}

void ea_tlv_put(ea_wbuf *w, uint8_t tag, const void *v, size_t n)
{
    ea_wbuf_u8(w, tag);
    tlv_len(w, n, false);
    ea_wbuf_put(w, v, n);
}

void ea_tlv_put_long(ea_wbuf *w, uint8_t tag, const void *v, size_t n)
{
    ea_wbuf_u8(w, tag);
    tlv_len(w, n, true);
    ea_wbuf_put(w, v, n);
}

void ea_tlv_u8(ea_wbuf *w, uint8_t tag, uint8_t v)
{
    ea_tlv_put(w, tag, &v, 1);
}

void ea_tlv_u16(ea_wbuf *w, uint8_t tag, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    ea_tlv_put(w, tag, b, 2);
}

void ea_tlv_u32(ea_wbuf *w, uint8_t tag, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    ea_tlv_put(w, tag, b, 4);
}
