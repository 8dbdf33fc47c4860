/* Card side of T=1 over I2C, UM11225 flavour (spec se05x-apdu.md §6.1).
 *
 * IMPLEMENTATION NOTES
 * - The card keeps one output register: the block the host reads next,
 *   always a copy of `last` (the last block sent, any kind). `last_i` keeps
 *   the last I-block separately, because an R-NACK sent after it must not
 *   make it impossible to send that I-block again.
 * - A new write drops whatever the host left unread: on a bus the host has
 *   moved on, and an answer to the new block follows anyway.
 * - Commands run synchronously inside ea_t1_card_write; busy_ms only delays
 *   when the result can be read, which is what a host polling the bus sees. */
#include "emu/t1_card.h"

#include <stdlib.h>
#include <string.h>

#include "common/t1.h"
#include "common/util.h"

typedef enum card_state {
    ST_IDLE,     /* waiting for a command (or an S-block) */
    ST_RX_CHAIN, /* took I(M=1), sent R-ACK, waiting for the next I-block */
    ST_WTX,      /* sent S(WTX request), waiting for S(WTX response) */
    ST_TX_CHAIN, /* sent I(M=1), waiting for R(N(R) = next) */
} card_state;

struct ea_t1_card {
    ea_emu_chan *ch;
    ea_t1_card_opts o;
    ea_t1_card_stats st;
    card_state state;
    uint8_t nr_expect; /* N(S) the host's next new I-block carries */
    uint8_t ns_next;   /* N(S) of our next new I-block */
    uint8_t ifsd;      /* largest INF the host takes */
    unsigned wtx_left; /* WTX requests still to send before the response */
    uint64_t done_at;  /* when the command being answered "finishes" (busy_ms) */
    /* the command being received */
    uint8_t rx[EA_EMU_APDU_MAX];
    size_t rx_len;
    bool rx_over; /* longer than any C-APDU: answered 67 00 */
    /* the response being sent */
    uint8_t tx[EA_EMU_APDU_MAX];
    size_t tx_len, tx_off;
    /* last blocks sent */
    uint8_t last[EA_T1_FRAME_MAX];
    size_t last_len;
    uint8_t last_i[EA_T1_FRAME_MAX];
    size_t last_i_len;
    uint8_t last_i_ns;
    bool have_last_i;
    /* output register: last[out_off..last_len) is unread */
    bool pending;
    size_t out_off;
    uint64_t ready_at;
};

/* see t1_card.h */
ea_err ea_t1_card_new(ea_emu_chan *ch, const ea_t1_card_opts *opts, ea_t1_card **out)
{
    ea_t1_card *c;

    if (out != NULL)
        *out = NULL;
    if (ch == NULL || out == NULL)
        return EA_ERR_ARG;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return EA_ERR_NO_MEMORY;
    c->ch = ch;
    if (opts != NULL)
        c->o = *opts;
    if (c->o.wtx_mult == 0)
        c->o.wtx_mult = 1;
    c->ifsd = EA_T1_INF_MAX;
    *out = c;
    return EA_OK;
}

/* see t1_card.h */
void ea_t1_card_free(ea_t1_card *c)
{
    if (c == NULL)
        return;
    ea_cleanse(c, sizeof *c); /* command and response bytes can be key material */
    free(c);
}

/* see t1_card.h */
void ea_t1_card_get_stats(const ea_t1_card *c, ea_t1_card_stats *st)
{
    if (c != NULL && st != NULL)
        *st = c->st;
}

/* ---- output ------------------------------------------------------------------- */

static void out_last(ea_t1_card *c, uint64_t ready_at)
{
    c->pending = true;
    c->out_off = 0;
    c->ready_at = ready_at;
    c->st.frames_out++;
}

/* Queue a new block (it becomes `last`). Our own blocks always build. */
static void emit(ea_t1_card *c, uint8_t pcb, const uint8_t *inf, size_t len, uint64_t ready_at)
{
    size_t n = 0;

    if (ea_t1_build(EA_T1_NAD_SE, pcb, inf, len, c->last, sizeof c->last, &n) != EA_OK)
        n = 0; /* unreachable: callers pass valid PCBs and len <= 254 */
    c->last_len = n;
    if (n > 0)
        out_last(c, ready_at);
}

static void emit_r(ea_t1_card *c, uint8_t err, uint64_t now)
{
    if (err != EA_T1_R_OK)
        c->st.rnacks_out++;
    emit(c, ea_t1_pcb_r(c->nr_expect, err), NULL, 0, now);
}

static void resend_last(ea_t1_card *c, uint64_t now)
{
    c->st.resends++;
    if (c->last_len == 0) {
        emit_r(c, EA_T1_R_OK, now); /* nothing sent yet: say what we expect */
        return;
    }
    out_last(c, now);
}

static void resend_last_i(ea_t1_card *c, uint64_t now)
{
    c->st.resends++;
    memcpy(c->last, c->last_i, c->last_i_len);
    c->last_len = c->last_i_len;
    out_last(c, now);
}

/* Send the next block of the response. */
static void send_chunk(ea_t1_card *c, uint64_t ready_at)
{
    size_t chunk = c->tx_len - c->tx_off;
    bool more;

    if (chunk > c->ifsd)
        chunk = c->ifsd;
    more = c->tx_off + chunk < c->tx_len;
    emit(c, ea_t1_pcb_i(c->ns_next, more), c->tx + c->tx_off, chunk, ready_at);
    memcpy(c->last_i, c->last, c->last_len);
    c->last_i_len = c->last_len;
    c->last_i_ns = c->ns_next;
    c->have_last_i = true;
    c->ns_next ^= 1u;
    c->tx_off += chunk;
    c->state = more ? ST_TX_CHAIN : ST_IDLE;
    if (!more)
        ea_cleanse(c->tx, c->tx_len); /* last_i keeps what a resend needs */
}

/* ---- state ---------------------------------------------------------------------- */

static void reset_protocol(ea_t1_card *c)
{
    c->state = ST_IDLE;
    c->nr_expect = 0;
    c->ns_next = 0;
    c->ifsd = EA_T1_INF_MAX;
    c->wtx_left = 0;
    ea_cleanse(c->rx, sizeof c->rx);
    ea_cleanse(c->tx, sizeof c->tx);
    ea_cleanse(c->last_i, sizeof c->last_i);
    c->rx_len = c->tx_len = c->tx_off = 0;
    c->rx_over = false;
    c->last_i_len = 0;
    c->have_last_i = false;
}

/* The complete command in rx[]: run it, then WTX requests and the answer. */
static void run_command(ea_t1_card *c, uint64_t now)
{
    static const uint8_t sw_wrong_length[2] = { 0x67, 0x00 };
    static const uint8_t sw_no_diag[2] = { 0x6F, 0x00 };
    size_t rl = sizeof c->tx;

    c->st.apdus++;
    if (c->rx_over) {
        memcpy(c->tx, sw_wrong_length, 2);
        rl = 2;
    } else if (ea_emu_transceive(c->ch, c->rx, c->rx_len, c->tx, &rl) != EA_OK || rl < 2 ||
               rl > sizeof c->tx) {
        memcpy(c->tx, sw_no_diag, 2);
        rl = 2;
    }
    ea_cleanse(c->rx, c->rx_len);
    c->rx_len = 0;
    c->rx_over = false;
    c->tx_len = rl;
    c->tx_off = 0;
    c->wtx_left = c->o.wtx_count;
    c->done_at = now + c->o.busy_ms;
    if (c->wtx_left > 0) {
        /* A real SE asks for time at once, then keeps computing. */
        c->wtx_left--;
        c->state = ST_WTX;
        c->st.wtx_out++;
        emit(c, ea_t1_pcb_s(EA_T1_S_WTX, false), &c->o.wtx_mult, 1, now);
        return;
    }
    send_chunk(c, c->done_at);
}

static void on_i(ea_t1_card *c, const ea_t1_block *b, uint64_t now)
{
    if (c->state == ST_WTX || c->state == ST_TX_CHAIN) {
        /* The host owes us an S(WTX) response or an R-block first. */
        emit_r(c, EA_T1_R_OTHER, now);
        return;
    }
    if (b->ns != c->nr_expect) {
        /* Taken already: our answer to it got lost. */
        resend_last(c, now);
        return;
    }
    c->nr_expect ^= 1u;
    if (c->state == ST_IDLE) {
        c->rx_len = 0;
        c->rx_over = false;
    }
    if (b->len > sizeof c->rx - c->rx_len)
        c->rx_over = true; /* keep taking the chain so the link stays in step */
    else if (!c->rx_over) {
        memcpy(c->rx + c->rx_len, b->inf, b->len);
        c->rx_len += b->len;
    }
    if (b->more) {
        c->state = ST_RX_CHAIN;
        emit_r(c, EA_T1_R_OK, now);
        return;
    }
    c->state = ST_IDLE;
    run_command(c, now);
}

static void on_r(ea_t1_card *c, const ea_t1_block *b, uint64_t now)
{
    switch (c->state) {
    case ST_TX_CHAIN:
        if (b->nr != c->last_i_ns)
            send_chunk(c, now); /* the host has our block and wants the next */
        else
            resend_last_i(c, now);
        return;
    case ST_RX_CHAIN:
    case ST_WTX:
        resend_last(c, now);
        return;
    case ST_IDLE:
    default:
        if (c->have_last_i && b->nr == c->last_i_ns)
            resend_last_i(c, now);
        else
            emit_r(c, EA_T1_R_OK, now); /* "send me N(S) = nr_expect" */
        return;
    }
}

static void send_atr(ea_t1_card *c, uint8_t type, uint64_t now)
{
    uint8_t atr[EA_T1_INF_MAX];
    size_t n = sizeof atr;

    if (ea_emu_atr(atr, &n) != EA_OK)
        n = 0;
    emit(c, ea_t1_pcb_s(type, true), atr, n, now);
}

static void on_s_request(ea_t1_card *c, const ea_t1_block *b, uint64_t now)
{
    switch (b->stype) {
    case EA_T1_S_RESYNC:
        c->st.resyncs++;
        reset_protocol(c);
        emit(c, ea_t1_pcb_s(b->stype, true), NULL, 0, now);
        return;
    case EA_T1_S_IFS:
        if (b->inf[0] == 0 || b->inf[0] > EA_T1_INF_MAX) {
            emit_r(c, EA_T1_R_OTHER, now);
            return;
        }
        c->ifsd = b->inf[0];
        emit(c, ea_t1_pcb_s(b->stype, true), b->inf, 1, now);
        return;
    case EA_T1_S_ABORT:
        c->state = ST_IDLE;
        c->wtx_left = 0;
        ea_cleanse(c->rx, sizeof c->rx);
        ea_cleanse(c->tx, sizeof c->tx);
        c->rx_len = c->tx_len = c->tx_off = 0;
        c->rx_over = false;
        emit(c, ea_t1_pcb_s(b->stype, true), NULL, 0, now);
        return;
    case EA_T1_S_END_SESSION:
        reset_protocol(c);
        emit(c, ea_t1_pcb_s(b->stype, true), NULL, 0, now);
        return;
    case EA_T1_S_CHIP_RESET:
    case EA_T1_S_DEEP_PD:
        reset_protocol(c);
        ea_emu_chan_reset(c->ch);
        emit(c, ea_t1_pcb_s(b->stype, true), NULL, 0, now);
        return;
    case EA_T1_S_GET_ATR:
        send_atr(c, b->stype, now);
        return;
    case EA_T1_S_SOFT_RESET:
        reset_protocol(c);
        ea_emu_chan_reset(c->ch);
        send_atr(c, b->stype, now);
        return;
    default: /* WTX requests come from the card, never from the host */
        emit_r(c, EA_T1_R_OTHER, now);
        return;
    }
}

static void on_s(ea_t1_card *c, const ea_t1_block *b, uint64_t now)
{
    if (!b->resp) {
        on_s_request(c, b, now);
        return;
    }
    if (b->stype != EA_T1_S_WTX || c->state != ST_WTX) {
        emit_r(c, EA_T1_R_OTHER, now);
        return;
    }
    /* The multiplier the host granted is not checked: nano always says 01. */
    if (c->wtx_left > 0) {
        c->wtx_left--;
        c->st.wtx_out++;
        emit(c, ea_t1_pcb_s(EA_T1_S_WTX, false), &c->o.wtx_mult, 1, now);
        return;
    }
    send_chunk(c, c->done_at > now ? c->done_at : now);
}

/* ---- I2C transactions ---------------------------------------------------------- */

static bool busy(const ea_t1_card *c, uint64_t now)
{
    return c->pending && now < c->ready_at;
}

/* see t1_card.h */
bool ea_t1_card_write(ea_t1_card *c, const uint8_t *p, size_t n, uint64_t now_ms)
{
    ea_t1_block b;
    ea_err rc;

    if (c == NULL || p == NULL || n == 0 || n > EA_T1_FRAME_MAX || busy(c, now_ms)) {
        if (c != NULL)
            c->st.write_nacks++;
        return false;
    }
    c->st.frames_in++;
    c->pending = false; /* unread output is abandoned */
    rc = ea_t1_parse(p, n, EA_T1_NAD_HOST, &b);
    if (rc != EA_OK) {
        emit_r(c, rc == EA_ERR_CORRUPT ? EA_T1_R_CRC : EA_T1_R_OTHER, now_ms);
        return true;
    }
    switch (b.kind) {
    case EA_T1_I:
        on_i(c, &b, now_ms);
        break;
    case EA_T1_R:
        on_r(c, &b, now_ms);
        break;
    case EA_T1_S:
    default:
        on_s(c, &b, now_ms);
        break;
    }
    return true;
}

/* see t1_card.h */
bool ea_t1_card_read(ea_t1_card *c, uint8_t *out, size_t n, uint64_t now_ms)
{
    size_t k;

    if (c == NULL || out == NULL || n == 0 || !c->pending || busy(c, now_ms)) {
        if (c != NULL)
            c->st.read_nacks++;
        return false;
    }
    k = c->last_len - c->out_off;
    if (k > n)
        k = n;
    memcpy(out, c->last + c->out_off, k);
    memset(out + k, 0xFF, n - k); /* past the block the bus floats high */
    c->out_off += k;
    if (c->out_off >= c->last_len)
        c->pending = false;
    return true;
}
