/* T=1 over I2C block codec (UM11225 flavour, spec se05x-apdu.md §6.1). */
#include "common/t1.h"

#include <stdio.h>
#include <string.h>

#include "common/tlv.h"

/* see t1.h */
uint16_t ea_t1_crc(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFFu;

    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)((crc & 1u) ? (crc >> 1) ^ 0x8408u : crc >> 1);
    }
    return (uint16_t)(crc ^ 0xFFFFu);
}

/* see t1.h */
bool ea_t1_pcb_valid(uint8_t pcb)
{
    if ((pcb & 0x80u) == 0)
        return (pcb & 0x9Fu) == 0; /* I: only N(S) and M may be set */
    if ((pcb & 0xC0u) == EA_T1_PCB_R)
        return (pcb & 0x6Cu) == 0; /* R: only N(R) and EE may be set */
    return ea_t1_s_inf_len(pcb & 0x1Fu, (pcb & EA_T1_PCB_S_RESP) != 0) != -2;
}

/* see t1.h */
int ea_t1_s_inf_len(uint8_t stype, bool resp)
{
    switch (stype) {
    case EA_T1_S_RESYNC:
    case EA_T1_S_ABORT:
    case EA_T1_S_END_SESSION:
    case EA_T1_S_CHIP_RESET:
    case EA_T1_S_DEEP_PD:
        return 0;
    case EA_T1_S_IFS:
    case EA_T1_S_WTX:
        return 1;
    case EA_T1_S_GET_ATR:
    case EA_T1_S_SOFT_RESET:
        return resp ? -1 : 0; /* the response carries the ATR */
    default:
        return -2;
    }
}

/* INF length allowed for this PCB? */
static bool inf_len_ok(uint8_t pcb, size_t len)
{
    int want;

    if ((pcb & 0x80u) == 0)
        return true;
    if ((pcb & 0xC0u) == EA_T1_PCB_R)
        return len == 0;
    want = ea_t1_s_inf_len(pcb & 0x1Fu, (pcb & EA_T1_PCB_S_RESP) != 0);
    return want == -1 || (want >= 0 && (size_t)want == len);
}

/* see t1.h */
ea_err ea_t1_build(uint8_t nad, uint8_t pcb, const uint8_t *inf, size_t len, uint8_t *out,
                   size_t cap, size_t *out_len)
{
    uint16_t crc;

    if (out == NULL || out_len == NULL || (len > 0 && inf == NULL))
        return EA_ERR_ARG;
    if ((nad != EA_T1_NAD_HOST && nad != EA_T1_NAD_SE) || len > EA_T1_INF_MAX ||
        !ea_t1_pcb_valid(pcb) || !inf_len_ok(pcb, len))
        return EA_ERR_ARG;
    if (cap < EA_T1_HDR_LEN + len + EA_T1_CRC_LEN)
        return EA_ERR_BUF_TOO_SMALL;
    out[0] = nad;
    out[1] = pcb;
    out[2] = (uint8_t)len; /* <= 254, checked above */
    if (len > 0)
        memmove(out + EA_T1_HDR_LEN, inf, len);
    crc = ea_t1_crc(out, EA_T1_HDR_LEN + len);
    out[EA_T1_HDR_LEN + len] = (uint8_t)crc;
    out[EA_T1_HDR_LEN + len + 1] = (uint8_t)(crc >> 8);
    *out_len = EA_T1_HDR_LEN + len + EA_T1_CRC_LEN;
    return EA_OK;
}

/* see t1.h */
ea_err ea_t1_parse(const uint8_t *p, size_t n, uint8_t nad, ea_t1_block *b)
{
    ea_cur c = ea_cur_make(p, n), inf;
    uint8_t v_nad, v_pcb, v_len, crc_lo, crc_hi;
    ea_t1_block r;

    if (p == NULL || b == NULL)
        return EA_ERR_MALFORMED;
    if (!ea_cur_u8(&c, &v_nad) || !ea_cur_u8(&c, &v_pcb) || !ea_cur_u8(&c, &v_len))
        return EA_ERR_MALFORMED;
    if (v_nad != nad || v_len > EA_T1_INF_MAX || !ea_t1_pcb_valid(v_pcb) ||
        !inf_len_ok(v_pcb, v_len))
        return EA_ERR_MALFORMED;
    if (!ea_cur_take(&c, v_len, &inf) || !ea_cur_u8(&c, &crc_lo) || !ea_cur_u8(&c, &crc_hi))
        return EA_ERR_MALFORMED;
    /* Exactly one block: trailing bytes mean the framing is wrong. */
    if (c.n != 0)
        return EA_ERR_MALFORMED;
    if (ea_t1_crc(p, EA_T1_HDR_LEN + v_len) != (uint16_t)(crc_lo | (crc_hi << 8)))
        return EA_ERR_CORRUPT;

    memset(&r, 0, sizeof r);
    r.nad = v_nad;
    r.pcb = v_pcb;
    r.inf = inf.p;
    r.len = inf.n;
    if ((v_pcb & 0x80u) == 0) {
        r.kind = EA_T1_I;
        r.ns = (v_pcb & EA_T1_PCB_I_NS) ? 1 : 0;
        r.more = (v_pcb & EA_T1_PCB_I_M) != 0;
    } else if ((v_pcb & 0xC0u) == EA_T1_PCB_R) {
        r.kind = EA_T1_R;
        r.nr = (v_pcb & EA_T1_PCB_R_NR) ? 1 : 0;
        r.err = v_pcb & 0x03u;
    } else {
        r.kind = EA_T1_S;
        r.stype = v_pcb & 0x1Fu;
        r.resp = (v_pcb & EA_T1_PCB_S_RESP) != 0;
    }
    *b = r;
    return EA_OK;
}

static const char *s_name(uint8_t t)
{
    switch (t) {
    case EA_T1_S_RESYNC: return "RESYNC";
    case EA_T1_S_IFS: return "IFS";
    case EA_T1_S_ABORT: return "ABORT";
    case EA_T1_S_WTX: return "WTX";
    case EA_T1_S_END_SESSION: return "END";
    case EA_T1_S_CHIP_RESET: return "CHIPRST";
    case EA_T1_S_GET_ATR: return "ATR";
    case EA_T1_S_SOFT_RESET: return "SOFTRST";
    case EA_T1_S_DEEP_PD: return "DPD";
    default: return "?";
    }
}

/* see t1.h */
void ea_t1_pcb_name(uint8_t pcb, char *out, size_t cap)
{
    static const char *const ee[] = { "ACK", "CRC", "ERR", "SOF" };

    if (out == NULL || cap == 0)
        return;
    if (!ea_t1_pcb_valid(pcb))
        snprintf(out, cap, "PCB %02X", pcb);
    else if ((pcb & 0x80u) == 0)
        snprintf(out, cap, "I(%u%s)", (pcb & EA_T1_PCB_I_NS) ? 1u : 0u,
                 (pcb & EA_T1_PCB_I_M) ? ",M" : "");
    else if ((pcb & 0xC0u) == EA_T1_PCB_R)
        snprintf(out, cap, "R(%u,%s)", (pcb & EA_T1_PCB_R_NR) ? 1u : 0u, ee[pcb & 3u]);
    else
        snprintf(out, cap, "S(%s %s)", s_name(pcb & 0x1Fu),
                 (pcb & EA_T1_PCB_S_RESP) ? "resp" : "req");
}
