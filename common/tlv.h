/* Internal: byte cursor, bounded writer and SE05x BER-TLV helpers.
 * Parsers compare against the bytes left, never the buffer size. */
#ifndef EA_COMMON_TLV_H
#define EA_COMMON_TLV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgeauth/err.h"

typedef struct ea_cur {
    const uint8_t *p;
    size_t n; /* bytes not yet read */
} ea_cur;

static inline ea_cur ea_cur_make(const uint8_t *p, size_t n)
{
    ea_cur c = { p, n };
    return c;
}
bool ea_cur_u8(ea_cur *c, uint8_t *v);
bool ea_cur_u16(ea_cur *c, uint16_t *v); /* big-endian */
bool ea_cur_u32(ea_cur *c, uint32_t *v); /* big-endian */
bool ea_cur_take(ea_cur *c, size_t len, ea_cur *out);

/* One BER-TLV with a 1-byte tag and length 00..7F | 81 xx | 82 xx xx.
 * *c advances only on success. */
ea_err ea_tlv_next(ea_cur *c, uint8_t *tag, ea_cur *val);

/* A writer with a sticky overflow flag: check w->overflow once at the end. */
typedef struct ea_wbuf {
    uint8_t *p;
    size_t cap, len;
    bool overflow;
} ea_wbuf;

static inline ea_wbuf ea_wbuf_make(uint8_t *p, size_t cap)
{
    ea_wbuf w = { p, cap, 0, false };
    return w;
}
void ea_wbuf_put(ea_wbuf *w, const void *src, size_t n);
void ea_wbuf_u8(ea_wbuf *w, uint8_t v);
void ea_wbuf_u16(ea_wbuf *w, uint16_t v);
void ea_wbuf_u32(ea_wbuf *w, uint32_t v);
/* Reserve n bytes and return where they start (NULL, and overflow set, if
 * they do not fit). */
uint8_t *ea_wbuf_reserve(ea_wbuf *w, size_t n);

/* TLV writers. ea_tlv_put uses the shortest length form; ea_tlv_put_long
 * always uses 82 LH LL (what a real SE05x emits for byte arrays). Lengths
 * over 0xFFFF set overflow rather than being cut down. */
void ea_tlv_put(ea_wbuf *w, uint8_t tag, const void *v, size_t n);
void ea_tlv_put_long(ea_wbuf *w, uint8_t tag, const void *v, size_t n);
void ea_tlv_u8(ea_wbuf *w, uint8_t tag, uint8_t v);
void ea_tlv_u16(ea_wbuf *w, uint8_t tag, uint16_t v);
void ea_tlv_u32(ea_wbuf *w, uint8_t tag, uint32_t v);

#endif
