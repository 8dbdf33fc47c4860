#define _XOPEN_SOURCE 700
/* libFuzzer target: T=1 over I2C (spec se05x-apdu.md §6.1), three ways,
 * chosen by the first input byte (mod 3):
 *   0  the block codec: the rest is one block, parsed with either NAD; a
 *      block that parses must build back to the same bytes.
 *   1  the card side (emu/t1_card.c) on a real chip channel: byte 1 holds
 *      the card options, then a script of I2C transactions (see run_card).
 *      Every block the card sends must parse.
 *   2  the host engine (host/t1.c) against a "SE" whose read bytes come
 *      from the input: open, one short and one chained APDU, End of
 *      session. Every block the engine writes must parse.
 * Crashes, sanitizer reports, leaks and the two invariants fail. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>

#include "common/t1.h"
#include "edgeauth/emu.h"
#include "emu/t1_card.h"
#include "host/t1.h"

#define MAX_INPUT 8192u

static ea_emu *emu;
static char dir[] = "/tmp/edgeauth-fuzz-t1-XXXXXX";

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    ea_emu_close(emu);
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256] = "";

    (void)argc;
    (void)argv;
    if (!mkdtemp(dir) || ea_emu_init(dir, NULL, err, sizeof err) != EA_OK ||
        ea_emu_open(dir, NULL, &emu, err, sizeof err) != EA_OK) {
        fprintf(stderr, "fuzz_t1: cannot make a chip in %s: %s\n", dir, err);
        abort();
    }
    atexit(cleanup);
    return 0;
}

/* ---- 0: codec ---------------------------------------------------------------- */

static void run_codec(const uint8_t *p, size_t n)
{
    static const uint8_t nads[2] = { EA_T1_NAD_HOST, EA_T1_NAD_SE };
    uint8_t out[EA_T1_FRAME_MAX];
    char name[24];

    for (int i = 0; i < 2; i++) {
        ea_t1_block b;
        size_t m = 0;
        ea_err rc = ea_t1_parse(p, n, nads[i], &b);

        if (rc != EA_OK && rc != EA_ERR_MALFORMED && rc != EA_ERR_CORRUPT)
            abort();
        if (rc != EA_OK)
            continue;
        if (b.len > EA_T1_INF_MAX || b.inf < p || b.inf + b.len > p + n)
            abort();
        if (ea_t1_build(b.nad, b.pcb, b.inf, b.len, out, sizeof out, &m) != EA_OK || m != n ||
            memcmp(out, p, n) != 0)
            abort();
        ea_t1_pcb_name(b.pcb, name, sizeof name);
    }
    (void)ea_t1_crc(p, n);
}

/* ---- 1: card side -------------------------------------------------------------- */

typedef struct rd {
    const uint8_t *p;
    size_t n;
} rd;

static bool take(rd *r, size_t k, const uint8_t **out)
{
    if (k > r->n)
        return false;
    *out = r->p;
    r->p += k;
    r->n -= k;
    return true;
}

static bool byte(rd *r, uint8_t *v)
{
    const uint8_t *b;

    if (!take(r, 1, &b))
        return false;
    *v = *b;
    return true;
}

/* Read the card's whole pending block and check it is well formed. */
static void drain_check(ea_t1_card *c, uint64_t now)
{
    uint8_t f[EA_T1_FRAME_MAX];
    ea_t1_block b;

    if (!ea_t1_card_read(c, f, EA_T1_HDR_LEN, now))
        return; /* busy */
    if (f[0] != EA_T1_NAD_SE || f[2] > EA_T1_INF_MAX)
        abort();
    if (!ea_t1_card_read(c, f + EA_T1_HDR_LEN, (size_t)f[2] + EA_T1_CRC_LEN, now))
        abort(); /* a started block must be readable to its end */
    if (ea_t1_parse(f, EA_T1_HDR_LEN + (size_t)f[2] + EA_T1_CRC_LEN, EA_T1_NAD_SE, &b) != EA_OK)
        abort();
}

/* Script: op byte, then
 *   op%6 == 0  L, L bytes: raw write, then drain and check the answer
 *   op%6 == 1  L, L bytes: raw write, answer left pending
 *   op%6 == 2  N: read N+1 bytes (N+257 when op & 0x80)
 *   op%6 == 3  T: T ms pass
 *   op%6 == 4  PCB, L, L bytes: a host block with a good CRC (raw when it
 *              cannot be built), then drain and check
 *   op%6 == 5  the same without the drain */
static void run_card(const uint8_t *p, size_t n)
{
    rd r = { p, n };
    uint8_t opts = 0, op;
    ea_t1_card_opts o;
    ea_emu_chan *ch;
    ea_t1_card *c;
    uint64_t now = 1000;

    (void)byte(&r, &opts);
    memset(&o, 0, sizeof o);
    o.wtx_count = opts & 3u;
    o.busy_ms = (opts >> 2) & 7u;
    o.wtx_mult = (uint8_t)(opts >> 5);
    if (ea_emu_chan_open(emu, &ch) != EA_OK || ea_t1_card_new(ch, &o, &c) != EA_OK)
        abort();
    while (byte(&r, &op)) {
        uint8_t a = 0, l = 0, buf[EA_T1_TCP_XFER_MAX], frame[EA_T1_FRAME_MAX + 2];
        const uint8_t *q;
        size_t fl = 0;

        switch (op % 6) {
        case 0:
        case 1:
            if (!byte(&r, &l) || !take(&r, l, &q))
                goto out;
            if (ea_t1_card_write(c, q, l, now) && op % 6 == 0)
                drain_check(c, now);
            break;
        case 2:
            if (!byte(&r, &a))
                goto out;
            (void)ea_t1_card_read(c, buf, (size_t)a + 1u + ((op & 0x80u) ? 256u : 0u), now);
            break;
        case 3:
            if (!byte(&r, &a))
                goto out;
            now += a;
            break;
        default:
            if (!byte(&r, &a) || !byte(&r, &l) || !take(&r, l, &q))
                goto out;
            if (ea_t1_build(EA_T1_NAD_HOST, a, q, l, frame, sizeof frame, &fl) != EA_OK) {
                fl = l; /* <= 255 < sizeof frame */
                memcpy(frame, q, fl);
            }
            if (ea_t1_card_write(c, frame, fl, now) && op % 6 == 4)
                drain_check(c, now);
            break;
        }
    }
out:
    ea_t1_card_free(c);
    ea_emu_chan_close(ch);
}

/* ---- 2: host engine ---------------------------------------------------------------- */

/* Reads come from the input; a 2-byte read facing FF gets a NACK (and
 * eats the FF). Writes must be valid host blocks. */
static ea_err fz_write(void *ctx, const uint8_t *p, size_t n, bool *nack, long long dl)
{
    ea_t1_block b;

    (void)ctx, (void)dl;
    if (ea_t1_parse(p, n, EA_T1_NAD_HOST, &b) != EA_OK)
        abort();
    *nack = false;
    return EA_OK;
}

static ea_err fz_read(void *ctx, uint8_t *p, size_t n, bool *nack, long long dl)
{
    rd *r = ctx;
    const uint8_t *q;

    (void)dl;
    if (r->n > 0 && r->p[0] == 0xFF && n == 2) {
        r->p++;
        r->n--;
        *nack = true;
        return EA_OK;
    }
    if (!take(r, n, &q))
        return EA_ERR_IO; /* the input is over: the link "breaks" */
    memcpy(p, q, n);
    *nack = false;
    return EA_OK;
}

static void run_engine(const uint8_t *p, size_t n)
{
    static const uint8_t select[] = { 0x00, 0xA4, 0x04, 0x00, 0x10, 0xA0, 0x00, 0x00, 0x03, 0x96, 0x54,
                                      0x53, 0x00, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00 };
    static uint8_t longer[600];
    rd r = { p, n };
    ea_t1_link link = { &r, fz_write, fz_read };
    ea_t1_opts opts = { -1, -1, -1 }; /* no waiting: silence is a timeout at once */
    ea_t1_eng *e = malloc(sizeof *e);
    uint8_t rsp[1024];
    size_t rl = sizeof rsp;
    char err[256];
    long long dl = ea_t1_now_ms() + 5000;

    if (e == NULL)
        abort();
    longer[0] = 0x80;
    longer[1] = 0x01;
    longer[4] = 0x00;
    longer[5] = 0x02;
    longer[6] = 0x52;
    ea_t1_init(e, &link, &opts);
    if (ea_t1_open(e, dl, err, sizeof err) == EA_OK) {
        if (ea_t1_transceive(e, select, sizeof select, rsp, &rl, dl, err, sizeof err) == EA_OK &&
            rl > sizeof rsp)
            abort();
        rl = 16; /* small: exercises the BUF_TOO_SMALL path too */
        (void)ea_t1_transceive(e, longer, sizeof longer, rsp, &rl, dl, err, sizeof err);
        (void)ea_t1_end_session(e, dl, err, sizeof err);
    }
    ea_t1_wipe(e);
    free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT)
        return 0;
    switch (data[0] % 3) {
    case 0:
        run_codec(data + 1, size - 1);
        break;
    case 1:
        run_card(data + 1, size - 1);
        break;
    default:
        run_engine(data + 1, size - 1);
        break;
    }
    return 0;
}
