/* Host side of T=1 over I2C, UM11225 flavour (spec se05x-apdu.md §6.1-6.3).
 *
 * IMPLEMENTATION NOTES
 * - Sequence numbers: ns is the N(S) of our block not yet acknowledged; it
 *   toggles on R(N(R) = ns ^ 1) for a chained block, and on the first
 *   I-block of the response for the last one (the response acknowledges
 *   it). nr is the N(S) the SE's next I-block must carry.
 * - `last` is the last block written (any kind), sent again when the SE
 *   answers R-NACK; `last_i` the last I-block, sent again when the SE's
 *   R(N(R)) names it.
 * - A write the SE keeps NACKing for a whole BWT counts as a lost block:
 *   the wait for the answer then expires and the usual recovery runs. */
#include "host/t1.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/tlv.h"
#include "common/util.h"

#if defined(__GNUC__) || defined(__clang__)
#define EA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define EA_PRINTF(a, b)
#endif

typedef enum rx_res {
    RX_OK,   /* a well-formed block with a good CRC */
    RX_CRC,  /* a block whose CRC did not match */
    RX_BAD,  /* garbage: bad NAD, LEN > 254, bad PCB, or cut short */
    RX_NONE, /* nothing within the wait (BWT) */
} rx_res;

/* One exchange's recovery bookkeeping. */
typedef struct xchg {
    unsigned fails;   /* recoveries so far */
    unsigned rnacks;  /* R-NACKs sent since the last good block */
    unsigned wtx_run; /* WTX requests in a row */
    unsigned wait_ms; /* wait for the next block: BWT x WTX multiplier */
    bool soft;        /* recover with an interface soft reset, not RESYNC */
    char why[96];     /* set: sync is lost, stop */
} xchg;

static EA_PRINTF(3, 4) void set_err(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

static long long now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

/* see t1.h */
long long ea_t1_now_ms(void)
{
    return now_us() / 1000;
}

static void sleep_us(long long us)
{
    struct timespec ts;

    if (us <= 0)
        return;
    ts.tv_sec = (time_t)(us / 1000000LL);
    ts.tv_nsec = (long)(us % 1000000LL) * 1000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Sleep one polling interval, never past until_ms. */
static void poll_sleep(const ea_t1_eng *e, long long until_ms)
{
    long long left = (until_ms - ea_t1_now_ms()) * 1000LL;
    long long us = (long long)e->mpot_ms * 1000LL;

    sleep_us(us < left ? us : left);
}

static unsigned pick(int override, unsigned from_atr)
{
    if (override > 0)
        return (unsigned)override;
    return override < 0 ? 0u : from_atr;
}

/* Timing and IFSC from an ATR laid out as spec §6.1; defaults when it does
 * not parse (a real part with a different ATR still works at SE05x
 * timings). */
static void take_atr(ea_t1_eng *e, const uint8_t *atr, size_t n)
{
    unsigned bwt = EA_T1_DEFAULT_BWT_MS, mpot = EA_T1_DEFAULT_MPOT_MS;
    unsigned segt = EA_T1_DEFAULT_SEGT_US, ifsc = EA_T1_INF_MAX;
    ea_cur c = ea_cur_make(atr, n), vid, dllp, plp, hist;
    uint8_t pver, dllp_len, plid, plp_len, hist_len, config, mpot8;
    uint16_t v_bwt, v_ifsc, mcf, v_segt, wut;
    ea_cur rfu;

    if (atr != NULL && ea_cur_u8(&c, &pver) && ea_cur_take(&c, 5, &vid) &&
        ea_cur_u8(&c, &dllp_len) && ea_cur_take(&c, dllp_len, &dllp) &&
        ea_cur_u16(&dllp, &v_bwt) && ea_cur_u16(&dllp, &v_ifsc) && ea_cur_u8(&c, &plid) &&
        ea_cur_u8(&c, &plp_len) && ea_cur_take(&c, plp_len, &plp) && ea_cur_u16(&plp, &mcf) &&
        ea_cur_u8(&plp, &config) && ea_cur_u8(&plp, &mpot8) && ea_cur_take(&plp, 3, &rfu) &&
        ea_cur_u16(&plp, &v_segt) && ea_cur_u16(&plp, &wut) && ea_cur_u8(&c, &hist_len) &&
        ea_cur_take(&c, hist_len, &hist)) {
        if (v_bwt > 0)
            bwt = v_bwt;
        if (v_ifsc > 0 && v_ifsc < EA_T1_INF_MAX)
            ifsc = v_ifsc;
        if (mpot8 > 0)
            mpot = mpot8;
        segt = v_segt;
    }
    e->bwt_ms = pick(e->opts.bwt_ms, bwt);
    e->mpot_ms = pick(e->opts.mpot_ms, mpot);
    e->segt_us = pick(e->opts.segt_us, segt);
    e->ifsc = ifsc;
}

/* see t1.h */
void ea_t1_init(ea_t1_eng *e, const ea_t1_link *link, const ea_t1_opts *opts)
{
    if (e == NULL)
        return;
    memset(e, 0, sizeof *e);
    if (link != NULL)
        e->link = *link;
    if (opts != NULL)
        e->opts = *opts;
    take_atr(e, NULL, 0);
}

/* see t1.h */
const uint8_t *ea_t1_atr(const ea_t1_eng *e, size_t *len)
{
    if (len != NULL)
        *len = e != NULL ? e->atr_len : 0;
    return e != NULL ? e->atr : NULL;
}

/* see t1.h */
const ea_t1_stats *ea_t1_get_stats(const ea_t1_eng *e)
{
    return e != NULL ? &e->st : NULL;
}

/* see t1.h */
void ea_t1_wipe(ea_t1_eng *e)
{
    if (e == NULL)
        return;
    ea_cleanse(e->last, sizeof e->last);
    ea_cleanse(e->last_i, sizeof e->last_i);
    ea_cleanse(e->rx, sizeof e->rx);
    e->last_len = e->last_i_len = 0;
}

/* ---- one block out, one block in ---------------------------------------------- */

/* One write; NACKs retried every MPOT for up to BWT, after which the block
 * counts as lost (the answer's wait expires and recovery starts). */
static ea_err send_raw(ea_t1_eng *e, const uint8_t *f, size_t n, long long deadline)
{
    long long end = ea_t1_now_ms() + e->bwt_ms;
    long long guard = e->last_tx_us + e->segt_us - now_us();
    bool nack = false;

    if (end > deadline)
        end = deadline;
    sleep_us(guard); /* SEGT between two frames of ours */
    for (;;) {
        long long t;
        ea_err rc = e->link.write(e->link.ctx, f, n, &nack, deadline);

        if (rc != EA_OK)
            return rc;
        if (!nack) {
            e->st.frames_tx++;
            e->last_tx_us = now_us();
            return EA_OK;
        }
        e->st.write_nacks++;
        t = ea_t1_now_ms();
        if (t >= deadline)
            return EA_ERR_TIMEOUT;
        if (t >= end)
            return EA_OK;
        poll_sleep(e, end);
    }
}

/* Build a block into `last` (and `last_i` for I-blocks) and send it. */
static ea_err send_block(ea_t1_eng *e, uint8_t pcb, const uint8_t *inf, size_t len,
                         long long deadline)
{
    size_t n = 0;
    ea_err rc = ea_t1_build(EA_T1_NAD_HOST, pcb, inf, len, e->last, sizeof e->last, &n);

    if (rc != EA_OK)
        return EA_ERR_INTERNAL;
    e->last_len = n;
    if ((pcb & 0x80u) == 0) {
        memcpy(e->last_i, e->last, n);
        e->last_i_len = n;
    }
    return send_raw(e, e->last, n, deadline);
}

static ea_err resend_last(ea_t1_eng *e, long long deadline)
{
    e->st.resends++;
    return send_raw(e, e->last, e->last_len, deadline);
}

static ea_err resend_last_i(ea_t1_eng *e, long long deadline)
{
    e->st.resends++;
    memcpy(e->last, e->last_i, e->last_i_len);
    e->last_len = e->last_i_len;
    return send_raw(e, e->last, e->last_len, deadline);
}

/* Read n more bytes of a block the SE has started; a NACK here is retried
 * a few times (nano's PAL does the same), then the block is lost. */
static ea_err sub_read(ea_t1_eng *e, uint8_t *p, size_t n, long long deadline, bool *got)
{
    *got = false;
    for (unsigned i = 0; i <= EA_T1_SUBREAD_TRIES; i++) {
        bool nack = false;
        ea_err rc = e->link.read(e->link.ctx, p, n, &nack, deadline);

        if (rc != EA_OK)
            return rc;
        if (!nack) {
            *got = true;
            return EA_OK;
        }
        e->st.read_nacks++;
        if (ea_t1_now_ms() >= deadline)
            return EA_ERR_TIMEOUT;
        poll_sleep(e, deadline);
    }
    return EA_OK;
}

/* Poll for one block: NAD+PCB every MPOT until the SE answers or wait_ms
 * passes, then LEN, then INF+CRC. */
static ea_err recv_block(ea_t1_eng *e, unsigned wait_ms, long long deadline, ea_t1_block *b,
                         rx_res *res)
{
    uint8_t *f = e->rx;
    long long end = ea_t1_now_ms() + wait_ms;
    bool nack = false, got = false;
    ea_err rc;

    *res = RX_NONE;
    for (;;) {
        long long t;

        rc = e->link.read(e->link.ctx, f, 2, &nack, deadline);
        if (rc != EA_OK)
            return rc;
        if (!nack)
            break;
        e->st.read_nacks++;
        t = ea_t1_now_ms();
        if (t >= deadline)
            return EA_ERR_TIMEOUT;
        if (t >= end) {
            e->st.timeouts++;
            return EA_OK;
        }
        poll_sleep(e, end < deadline ? end : deadline);
    }
    *res = RX_BAD;
    if (f[0] != EA_T1_NAD_SE) {
        /* One junk byte before the NAD (nano skips it too); anything else
         * cannot be framed. */
        if (f[1] != EA_T1_NAD_SE)
            return EA_OK;
        f[0] = EA_T1_NAD_SE;
        if ((rc = sub_read(e, f + 1, 1, deadline, &got)) != EA_OK || !got)
            return rc;
    }
    if ((rc = sub_read(e, f + 2, 1, deadline, &got)) != EA_OK || !got)
        return rc;
    if (f[2] > EA_T1_INF_MAX)
        return EA_OK; /* cannot be a block: do not read 257 bytes of noise */
    if ((rc = sub_read(e, f + 3, (size_t)f[2] + EA_T1_CRC_LEN, deadline, &got)) != EA_OK || !got)
        return rc;
    e->st.frames_rx++;
    rc = ea_t1_parse(f, EA_T1_HDR_LEN + (size_t)f[2] + EA_T1_CRC_LEN, EA_T1_NAD_SE, b);
    *res = rc == EA_OK ? RX_OK : rc == EA_ERR_CORRUPT ? RX_CRC : RX_BAD;
    return EA_OK;
}

/* ---- recovery shared by every wait -------------------------------------------- */

static void lost(xchg *x, const char *why)
{
    if (x->why[0] == '\0')
        snprintf(x->why, sizeof x->why, "%s", why);
}

static bool count_fail(xchg *x)
{
    if (++x->fails > EA_T1_RETRY_MAX) {
        x->soft = true; /* spec §6.1: interface soft reset after 10 failures */
        lost(x, "too many transmission errors");
        return false;
    }
    return true;
}

/* What every wait handles the same way: damaged or missing blocks (R-NACK),
 * the SE's R-NACK (send our last block again) and WTX requests. *handled
 * false leaves a good block for the caller. x->why set: give up. */
static ea_err common_rx(ea_t1_eng *e, xchg *x, rx_res res, const ea_t1_block *b,
                        long long deadline, bool *handled)
{
    *handled = true;
    if (res != RX_OK) {
        if (!count_fail(x))
            return EA_OK;
        if (++x->rnacks > EA_T1_RNACK_MAX) {
            lost(x, res == RX_NONE ? "no answer from the SE" : "blocks keep arriving damaged");
            return EA_OK;
        }
        x->wait_ms = e->bwt_ms;
        e->st.rnacks_tx++;
        return send_block(e, ea_t1_pcb_r(e->nr, res == RX_CRC ? EA_T1_R_CRC : EA_T1_R_OTHER),
                          NULL, 0, deadline);
    }
    x->rnacks = 0;
    if (b->kind == EA_T1_S && b->stype == EA_T1_S_WTX && !b->resp) {
        unsigned mult = b->inf[0] ? b->inf[0] : 1u;
        if (++x->wtx_run > EA_T1_WTX_MAX) {
            x->soft = true;
            lost(x, "the SE keeps asking for more time (WTX)");
            return EA_OK;
        }
        e->st.wtx++;
        x->wait_ms = e->bwt_ms * mult;
        /* Grant what was asked (nano always answers 01; the same bytes
         * for the usual multiplier of 1). */
        return send_block(e, ea_t1_pcb_s(EA_T1_S_WTX, true), b->inf, 1, deadline);
    }
    x->wtx_run = 0;
    x->wait_ms = e->bwt_ms;
    if (b->kind == EA_T1_R && b->err != EA_T1_R_OK) {
        if (!count_fail(x))
            return EA_OK;
        return resend_last(e, deadline);
    }
    *handled = false;
    return EA_OK;
}

/* ---- S-block exchanges ------------------------------------------------------------ */

/* Send S(type) request, wait for its response (answering WTX on the way),
 * sending the request again on silence or anything else. */
static ea_err s_exchange(ea_t1_eng *e, uint8_t type, const uint8_t *inf, size_t len,
                         uint8_t *out, size_t *out_len, long long deadline, char *err,
                         size_t errlen)
{
    char name[24];
    unsigned long sent_before = e->st.frames_tx;
    ea_err rc = EA_ERR_INTERNAL;

    ea_t1_pcb_name(ea_t1_pcb_s(type, false), name, sizeof name);
    for (unsigned t = 0; t < EA_T1_SREQ_TRIES; t++) {
        unsigned wait = e->bwt_ms, wtx = 0;

        if (t > 0)
            e->st.resends++;
        if ((rc = send_block(e, ea_t1_pcb_s(type, false), inf, len, deadline)) != EA_OK)
            goto io;
        for (;;) {
            ea_t1_block b;
            rx_res res;

            if ((rc = recv_block(e, wait, deadline, &b, &res)) != EA_OK)
                goto io;
            if (res != RX_OK)
                break;
            if (b.kind == EA_T1_S && b.stype == type && b.resp) {
                if (out != NULL && out_len != NULL) {
                    size_t n = b.len < *out_len ? b.len : *out_len;
                    memcpy(out, b.inf, n);
                    *out_len = n;
                }
                return EA_OK;
            }
            if (b.kind == EA_T1_S && b.stype == EA_T1_S_WTX && !b.resp && ++wtx <= EA_T1_WTX_MAX) {
                /* Still busy with a command of an earlier session. */
                e->st.wtx++;
                wait = e->bwt_ms * (b.inf[0] ? b.inf[0] : 1u);
                if ((rc = send_block(e, ea_t1_pcb_s(EA_T1_S_WTX, true), b.inf, 1, deadline)) !=
                    EA_OK)
                    goto io;
                continue;
            }
            break; /* a stale or unexpected block: ask again */
        }
    }
    if (e->st.frames_tx == sent_before)
        set_err(err, errlen, "T=1: %s not acknowledged: nothing answers on the bus (address NACK)",
                name);
    else
        set_err(err, errlen, "T=1: no answer to %s from the SE", name);
    return EA_ERR_IO;
io:
    if (rc == EA_ERR_TIMEOUT)
        set_err(err, errlen, "T=1: timed out waiting for the answer to %s", name);
    else
        set_err(err, errlen, "T=1: link failed during %s: %s", name, ea_err_str(rc));
    return rc;
}

static void seq_reset(ea_t1_eng *e)
{
    e->ns = 0;
    e->nr = 0;
    e->need_resync = false;
}

/* see t1.h */
ea_err ea_t1_resync(ea_t1_eng *e, long long deadline_ms, char *err, size_t errlen)
{
    ea_err rc;

    if (e == NULL || e->link.read == NULL || e->link.write == NULL)
        return EA_ERR_ARG;
    e->st.resyncs++;
    rc = s_exchange(e, EA_T1_S_RESYNC, NULL, 0, NULL, NULL, deadline_ms, err, errlen);
    if (rc == EA_OK)
        seq_reset(e);
    return rc;
}

static ea_err atr_exchange(ea_t1_eng *e, uint8_t type, uint8_t *atr, size_t *atr_len,
                           long long deadline_ms, char *err, size_t errlen)
{
    uint8_t buf[EA_T1_INF_MAX];
    size_t n = sizeof buf;
    ea_err rc;

    if (e == NULL || e->link.read == NULL || e->link.write == NULL ||
        (atr != NULL && atr_len == NULL))
        return EA_ERR_ARG;
    rc = s_exchange(e, type, NULL, 0, buf, &n, deadline_ms, err, errlen);
    if (rc != EA_OK)
        return rc;
    if (n > sizeof e->atr) {
        set_err(err, errlen, "T=1: ATR of %zu bytes is longer than %u", n, EA_T1_ATR_MAX);
        return EA_ERR_MALFORMED;
    }
    memcpy(e->atr, buf, n);
    e->atr_len = n;
    take_atr(e, buf, n);
    if (atr != NULL) {
        if (*atr_len < n) {
            *atr_len = n;
            return EA_ERR_BUF_TOO_SMALL;
        }
        memcpy(atr, buf, n);
        *atr_len = n;
    }
    return EA_OK;
}

/* see t1.h */
ea_err ea_t1_get_atr(ea_t1_eng *e, uint8_t *atr, size_t *atr_len, long long deadline_ms,
                     char *err, size_t errlen)
{
    return atr_exchange(e, EA_T1_S_GET_ATR, atr, atr_len, deadline_ms, err, errlen);
}

/* see t1.h */
ea_err ea_t1_soft_reset(ea_t1_eng *e, uint8_t *atr, size_t *atr_len, long long deadline_ms,
                        char *err, size_t errlen)
{
    ea_err rc;

    if (e != NULL)
        e->st.soft_resets++;
    rc = atr_exchange(e, EA_T1_S_SOFT_RESET, atr, atr_len, deadline_ms, err, errlen);
    if (rc == EA_OK || rc == EA_ERR_BUF_TOO_SMALL)
        seq_reset(e);
    return rc;
}

/* see t1.h */
ea_err ea_t1_end_session(ea_t1_eng *e, long long deadline_ms, char *err, size_t errlen)
{
    ea_err rc;

    if (e == NULL || e->link.read == NULL || e->link.write == NULL)
        return EA_ERR_ARG;
    rc = s_exchange(e, EA_T1_S_END_SESSION, NULL, 0, NULL, NULL, deadline_ms, err, errlen);
    if (rc == EA_OK)
        seq_reset(e); /* the SE resets its protocol context */
    return rc;
}

/* see t1.h */
ea_err ea_t1_chip_reset(ea_t1_eng *e, long long deadline_ms, char *err, size_t errlen)
{
    ea_err rc;

    if (e == NULL || e->link.read == NULL || e->link.write == NULL)
        return EA_ERR_ARG;
    rc = s_exchange(e, EA_T1_S_CHIP_RESET, NULL, 0, NULL, NULL, deadline_ms, err, errlen);
    if (rc == EA_OK)
        seq_reset(e);
    return rc;
}

/* see t1.h */
ea_err ea_t1_open(ea_t1_eng *e, long long deadline_ms, char *err, size_t errlen)
{
    ea_err rc;

    if (e == NULL || e->link.read == NULL || e->link.write == NULL)
        return EA_ERR_ARG;
    e->open = false;
    e->atr_len = 0;
    take_atr(e, NULL, 0);
    if ((rc = ea_t1_resync(e, deadline_ms, err, errlen)) != EA_OK)
        return rc;
    if ((rc = ea_t1_get_atr(e, NULL, NULL, deadline_ms, err, errlen)) != EA_OK)
        return rc;
    e->open = true;
    return EA_OK;
}

/* ---- APDU exchange ------------------------------------------------------------------ */

/* Send the command, chained in IFSC blocks. The last block is sent but not
 * yet acknowledged when this returns. */
static ea_err send_command(ea_t1_eng *e, xchg *x, const uint8_t *capdu, size_t clen,
                           long long deadline)
{
    size_t off = 0;
    ea_err rc;

    for (;;) {
        size_t chunk = clen - off < e->ifsc ? clen - off : e->ifsc;
        bool more = off + chunk < clen;

        if ((rc = send_block(e, ea_t1_pcb_i(e->ns, more), capdu + off, chunk, deadline)) != EA_OK)
            return rc;
        if (!more)
            return EA_OK;
        for (;;) {
            ea_t1_block b;
            rx_res res;
            bool handled;
            char name[24];

            if ((rc = recv_block(e, x->wait_ms, deadline, &b, &res)) != EA_OK ||
                (rc = common_rx(e, x, res, &b, deadline, &handled)) != EA_OK)
                return rc;
            if (x->why[0] != '\0')
                return EA_OK;
            if (handled)
                continue;
            if (b.kind == EA_T1_R && b.nr != e->ns) {
                e->ns ^= 1u; /* acknowledged: next block */
                off += chunk;
                break;
            }
            if (b.kind == EA_T1_R) {
                /* The SE names our block: it did not get it. */
                if (!count_fail(x))
                    return EA_OK;
                if ((rc = resend_last_i(e, deadline)) != EA_OK)
                    return rc;
                continue;
            }
            ea_t1_pcb_name(b.pcb, name, sizeof name);
            snprintf(x->why, sizeof x->why, "SE sent %s while a chained command was sent", name);
            return EA_OK;
        }
    }
}

/* Collect the response, acknowledging each chained block. */
static ea_err recv_response(ea_t1_eng *e, xchg *x, uint8_t *rapdu, size_t cap, size_t *total,
                            bool *overflow, long long deadline)
{
    bool got_any = false;
    uint8_t sent_ns = e->ns;
    ea_err rc;

    *total = 0;
    *overflow = false;
    for (;;) {
        ea_t1_block b;
        rx_res res;
        bool handled;
        char name[24];

        if ((rc = recv_block(e, x->wait_ms, deadline, &b, &res)) != EA_OK ||
            (rc = common_rx(e, x, res, &b, deadline, &handled)) != EA_OK)
            return rc;
        if (x->why[0] != '\0')
            return EA_OK;
        if (handled)
            continue;
        if (b.kind == EA_T1_I && b.ns == e->nr) {
            if (!got_any) {
                got_any = true;
                e->ns ^= 1u; /* the response acknowledges our last block */
            }
            if (b.len > EA_T1_RAPDU_LIMIT - *total) {
                lost(x, "response longer than any R-APDU");
                return EA_OK;
            }
            if (!*overflow && b.len <= cap - *total)
                memcpy(rapdu + *total, b.inf, b.len);
            else
                *overflow = true; /* keep reading: the link stays in step */
            *total += b.len;
            e->nr ^= 1u;
            if (!b.more)
                return EA_OK;
            if ((rc = send_block(e, ea_t1_pcb_r(e->nr, EA_T1_R_OK), NULL, 0, deadline)) != EA_OK)
                return rc;
            continue;
        }
        if (b.kind == EA_T1_I && got_any) {
            /* The block before again: our R-ACK was lost. */
            if (!count_fail(x))
                return EA_OK;
            if ((rc = resend_last(e, deadline)) != EA_OK)
                return rc;
            continue;
        }
        if (b.kind == EA_T1_R && !got_any && b.nr == sent_ns) {
            /* The SE did not get our last block. */
            if (!count_fail(x))
                return EA_OK;
            if ((rc = resend_last_i(e, deadline)) != EA_OK)
                return rc;
            continue;
        }
        ea_t1_pcb_name(b.pcb, name, sizeof name);
        snprintf(x->why, sizeof x->why, "SE sent %s out of sequence", name);
        return EA_OK;
    }
}

/* Lost sync: RESYNC (or an interface soft reset when asked, or when RESYNC
 * goes unanswered), so the next exchange starts in step. */
static ea_err recover(ea_t1_eng *e, bool soft, long long deadline)
{
    char ignore[128];
    ea_err rc = EA_ERR_IO;

    if (!soft)
        rc = ea_t1_resync(e, deadline, ignore, sizeof ignore);
    if (rc != EA_OK && rc != EA_ERR_TIMEOUT)
        rc = ea_t1_soft_reset(e, NULL, NULL, deadline, ignore, sizeof ignore);
    if (rc != EA_OK)
        e->need_resync = true;
    return rc;
}

/* see t1.h */
ea_err ea_t1_transceive(ea_t1_eng *e, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
                        size_t *rlen, long long deadline_ms, char *err, size_t errlen)
{
    xchg x;
    size_t total = 0;
    bool overflow = false;
    ea_err rc = EA_ERR_INTERNAL;

    if (e == NULL || capdu == NULL || rlen == NULL || (rapdu == NULL && *rlen > 0) ||
        e->link.read == NULL || e->link.write == NULL) {
        set_err(err, errlen, "T=1: invalid argument");
        return EA_ERR_ARG;
    }
    if (!e->open) {
        set_err(err, errlen, "T=1: link not open");
        return EA_ERR_IO;
    }
    if (e->need_resync && (rc = ea_t1_resync(e, deadline_ms, err, errlen)) != EA_OK)
        return rc;
    memset(&x, 0, sizeof x);
    x.wait_ms = e->bwt_ms;
    rc = send_command(e, &x, capdu, clen, deadline_ms);
    if (rc == EA_OK && x.why[0] == '\0')
        rc = recv_response(e, &x, rapdu, *rlen, &total, &overflow, deadline_ms);
    ea_cleanse(e->rx, sizeof e->rx);
    if (rc != EA_OK) {
        /* Cut short mid-exchange: nobody knows where the SE is. */
        e->need_resync = true;
        if (rc == EA_ERR_TIMEOUT)
            set_err(err, errlen, "T=1: no complete answer before the deadline");
        else
            set_err(err, errlen, "T=1: link failed: %s", ea_err_str(rc));
        return rc;
    }
    if (x.why[0] != '\0') {
        ea_err rrc = recover(e, x.soft, deadline_ms);
        set_err(err, errlen, "T=1: %s; %s", x.why,
                rrc == EA_OK ? (x.soft ? "interface reset (applet deselected), command outcome unknown"
                                       : "link resynchronised, command outcome unknown")
                             : "the SE does not answer RESYNC or soft reset either");
        return EA_ERR_IO;
    }
    if (overflow) {
        *rlen = total;
        set_err(err, errlen, "T=1: response of %zu bytes does not fit", total);
        return EA_ERR_BUF_TOO_SMALL;
    }
    *rlen = total;
    return EA_OK;
}
