/* T=1 over I2C, UM11225 flavour (spec se05x-apdu.md §6.1-6.3): the frame
 * codec against the spec's worked frames, the card side (emu/t1_card.c), the
 * host engine (host/t1.c) against the card through an in-process loopback
 * link with fault injection, and both over a real t1-tcp socket served by
 * the real server. Every wait is bounded by a deadline. */
#include "tests/testutil.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/t1.h"
#include "common/util.h"
#include "emu/server.h"
#include "emu/t1_card.h"
#include "host/t1.h"
#include "host/transport.h"

#define DEADLINE_MS 20000 /* one engine call; generous for ASan */
#define FAST_BWT_MS 100   /* BWT in the lost-frame tests: each loss costs one BWT */
#define LOG_MAX 2048

/* ---- the spec's frame catalogue (§6.1), byte for byte --------------------------- */

#define ATR_HEX "00A0000003960403E800FE020B03E80801000000006400000A4A434F5034204154504F"

static const struct golden {
    const char *name;
    const char *hex;
} catalogue[] = {
    { "RESYNC request", "5A C0 00 FF FC" },
    { "RESYNC response", "A5 E0 00 3F 19" },
    { "GET ATR request", "5A C7 00 F7 B1" },
    { "GET ATR response", "A5 E7 23" ATR_HEX "2A 8D" },
    { "soft reset request", "5A CF 00 37 7F" },
    { "soft reset response", "A5 EF 23" ATR_HEX "87 77" },
    { "End of APDU session request", "5A C5 00 47 82" },
    { "End of APDU session response", "A5 E5 00 87 67" },
    { "chip reset request", "5A C6 00 2F A8" },
    { "chip reset response", "A5 E6 00 EF 4D" },
    { "deep power down request", "5A DF 00 A6 EA" },
    { "WTX request", "A5 C3 01 01 1B DD" },
    { "WTX response", "5A E3 01 01 F2 1B" },
    { "R-ACK host N(R)=0", "5A 80 00 99 BA" },
    { "R-ACK host N(R)=1", "5A 90 00 08 2F" },
    { "R-ACK SE N(R)=0", "A5 80 00 6A 7C" },
    { "R-ACK SE N(R)=1", "A5 90 00 FB E9" },
    { "R-NACK host CRC", "5A 81 00 41 A3" },
    { "R-NACK host other", "5A 82 00 29 89" },
    { "I-block SELECT", "5A 00 16 00 A4 04 00 10 A0 00 00 03 96 54 53 00 00 00 01 03 00 00 00 00 00 A8 C8" },
    { "SELECT response", "A5 00 09 03 01 00 3F FF 01 0B 90 00 78 54" },
    { "I-block CheckObjectExists", "5A 40 0B 80 04 00 27 06 41 04 7B 00 04 26 6C 02" },
    { "CheckObjectExists response", "A5 40 05 41 01 02 90 00 B9 C0" },
    { "9000 N(S)=0", "A5 00 02 90 00 02 AF" },
    { "9000 N(S)=1", "A5 40 02 90 00 B5 B9" },
};
#define N_CATALOGUE (sizeof catalogue / sizeof catalogue[0])

static const char SELECT_APDU[] = "00 A4 04 00 10 A0 00 00 03 96 54 53 00 00 00 01 03 00 00 00 00 00";
static const char EXISTS_APDU[] = "80 04 00 27 06 41 04 7B 00 04 26";

/* ---- one chip (applet 3.1.0, whose SELECT answer is the catalogue's) ------------ */

static tu_chip chip;
static uint32_t next_obj = 0x7B100000u; /* each test writes its own objects */

static int group_setup(void **state)
{
    char err[256] = "";
    ea_emu_opts eo;

    (void)state;
    tu_chip_new(&chip, 0);
    ea_emu_chan_close(chip.ch);
    ea_emu_close(chip.emu);
    memset(&eo, 0, sizeof eo);
    eo.applet_version = 0x03010000u;
    if (ea_emu_open(chip.dir, &eo, &chip.emu, err, sizeof err) != EA_OK) {
        fprintf(stderr, "ea_emu_open: %s\n", err);
        return -1;
    }
    return ea_emu_chan_open(chip.emu, &chip.ch) == EA_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_chip_free(&chip);
    return 0;
}

/* ---- helpers ---------------------------------------------------------------------- */

static long long deadline(void)
{
    return ea_t1_now_ms() + DEADLINE_MS;
}

static uint64_t now64(void)
{
    return (uint64_t)ea_t1_now_ms();
}

static void assert_bytes(const uint8_t *got, size_t got_len, const char *hex, const char *what)
{
    size_t n;
    uint8_t *want = tu_hex(hex, &n);

    if (got_len != n || memcmp(got, want, n) != 0) {
        char g[2 * EA_T1_FRAME_MAX + 1] = "";
        if (got_len <= EA_T1_FRAME_MAX)
            ea_hex_encode(got, got_len, g);
        free(want);
        fail_msg("%s: got %s (%zu bytes), want %s", what, g, got_len, hex);
    }
    free(want);
}

/* The card's whole pending block, read as nano does: 2, 1, then LEN+2. */
static size_t card_read_block(ea_t1_card *c, uint8_t *out)
{
    assert_true(ea_t1_card_read(c, out, 2, now64()));
    assert_true(ea_t1_card_read(c, out + 2, 1, now64()));
    assert_true(out[2] <= EA_T1_INF_MAX);
    assert_true(ea_t1_card_read(c, out + 3, (size_t)out[2] + 2, now64()));
    return EA_T1_HDR_LEN + out[2] + EA_T1_CRC_LEN;
}

/* Write hex to the card, expect hex back. */
static void card_expect(ea_t1_card *c, const char *req, const char *rsp, const char *what)
{
    size_t n;
    uint8_t *f = tu_hex(req, &n), out[EA_T1_FRAME_MAX];

    assert_true(ea_t1_card_write(c, f, n, now64()));
    free(f);
    n = card_read_block(c, out);
    assert_bytes(out, n, rsp, what);
    /* One answer per block: the next read finds nothing. */
    assert_false(ea_t1_card_read(c, out, 2, now64()));
}

static uint8_t *frame_of(const char *hex, size_t *n)
{
    return tu_hex(hex, n);
}

/* WriteBinary creating file id with data (extended Lc), and ReadObject of
 * the whole file (extended Le), as nano frames them. */
static size_t apdu_write_binary(uint8_t *out, size_t cap, uint32_t id, const uint8_t *data,
                                size_t len)
{
    uint8_t *body = malloc(len + 16);
    size_t b = 0, n;

    assert_non_null(body);
    body[b++] = 0x41;
    body[b++] = 0x04;
    ea_put_be32(body + b, id);
    b += 4;
    body[b++] = 0x43;
    body[b++] = 0x02;
    body[b++] = (uint8_t)(len >> 8);
    body[b++] = (uint8_t)len;
    body[b++] = 0x44;
    body[b++] = 0x82;
    body[b++] = (uint8_t)(len >> 8);
    body[b++] = (uint8_t)len;
    memcpy(body + b, data, len);
    b += len;
    n = tu_apdu(out, cap, 0x80, 0x01, 0x06, 0x00, body, b, 0);
    free(body);
    return n;
}

static size_t apdu_read_object(uint8_t *out, size_t cap, uint32_t id)
{
    uint8_t body[6] = { 0x41, 0x04 };

    ea_put_be32(body + 2, id);
    return tu_apdu(out, cap, 0x80, 0x02, 0x00, 0x00, body, sizeof body, 1);
}

static void fill_pattern(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7u + seed);
}

/* ---- the loopback link: engine <-> card, with faults ------------------------------ */

typedef struct lb_frame {
    bool from_host;
    uint8_t b[EA_T1_FRAME_MAX];
    size_t n;
} lb_frame;

typedef struct lb {
    ea_t1_card *card;
    /* faults, by index of the host write / SE block (0-based), -1 = none */
    long drop_write, corrupt_write, drop_read, corrupt_read;
    long dead_writes;   /* this many host writes from drop_write on are lost */
    bool mute;          /* the SE has gone: every transaction NACKs */
    bool garbage;       /* the "SE" answers every read with noise */
    unsigned rng;
    unsigned long n_writes, n_reads;
    uint8_t stage[EA_T1_FRAME_MAX + EA_T1_TCP_XFER_MAX];
    size_t stage_len, stage_off;
    lb_frame *log;
    size_t n_log;
} lb;

static void lb_log(lb *l, bool from_host, const uint8_t *p, size_t n)
{
    if (l->n_log < LOG_MAX && n <= EA_T1_FRAME_MAX) {
        l->log[l->n_log].from_host = from_host;
        memcpy(l->log[l->n_log].b, p, n);
        l->log[l->n_log].n = n;
        l->n_log++;
    }
}

static ea_err lb_write(void *ctx, const uint8_t *p, size_t n, bool *nack, long long dl)
{
    lb *l = ctx;
    long k = (long)l->n_writes;
    uint8_t tmp[EA_T1_FRAME_MAX];

    (void)dl;
    if (l->mute) {
        *nack = true;
        return EA_OK;
    }
    l->n_writes++;
    lb_log(l, true, p, n);
    *nack = false;
    if (l->drop_write >= 0 && k >= l->drop_write && k < l->drop_write + l->dead_writes)
        return EA_OK; /* "written", never arrives */
    if (k == l->corrupt_write && n <= sizeof tmp) {
        memcpy(tmp, p, n);
        tmp[n - 1] ^= 0x01; /* CRC no longer matches */
        *nack = !ea_t1_card_write(l->card, tmp, n, now64());
        return EA_OK;
    }
    *nack = !ea_t1_card_write(l->card, p, n, now64());
    return EA_OK;
}

static ea_err lb_read(void *ctx, uint8_t *p, size_t n, bool *nack, long long dl)
{
    lb *l = ctx;
    size_t k;

    (void)dl;
    if (l->mute) {
        *nack = true;
        return EA_OK;
    }
    if (l->garbage) {
        for (size_t i = 0; i < n; i++) {
            l->rng = l->rng * 1103515245u + 12345u;
            p[i] = (uint8_t)(l->rng >> 16);
        }
        *nack = false;
        return EA_OK;
    }
    if (l->stage_off >= l->stage_len) {
        /* A new block: take it off the card whole, so it can be logged,
         * lost or damaged as one unit. */
        long idx;
        uint8_t *s = l->stage;

        if (!ea_t1_card_read(l->card, s, EA_T1_HDR_LEN, now64())) {
            *nack = true;
            return EA_OK;
        }
        if (!ea_t1_card_read(l->card, s + EA_T1_HDR_LEN, (size_t)s[2] + EA_T1_CRC_LEN, now64()))
            fail_msg("card NACKed the rest of a block it had started");
        l->stage_len = EA_T1_HDR_LEN + (size_t)s[2] + EA_T1_CRC_LEN;
        l->stage_off = 0;
        idx = (long)l->n_reads++;
        lb_log(l, false, s, l->stage_len);
        if (idx == l->drop_read) {
            l->stage_len = 0;
            *nack = true;
            return EA_OK;
        }
        if (idx == l->corrupt_read)
            s[l->stage_len - 2] ^= 0x80;
    }
    k = l->stage_len - l->stage_off;
    if (k > n)
        k = n;
    memcpy(p, l->stage + l->stage_off, k);
    memset(p + k, 0xFF, n - k);
    l->stage_off += k;
    *nack = false;
    return EA_OK;
}

typedef struct rig {
    ea_emu_chan *ch;
    ea_t1_card *card;
    lb l;
    ea_t1_eng e;
} rig;

static void rig_new(rig *r, const ea_t1_card_opts *co, const ea_t1_opts *eo)
{
    ea_t1_link link;

    memset(r, 0, sizeof *r);
    assert_int_equal(ea_emu_chan_open(chip.emu, &r->ch), EA_OK);
    assert_int_equal(ea_t1_card_new(r->ch, co, &r->card), EA_OK);
    r->l.card = r->card;
    r->l.drop_write = r->l.corrupt_write = r->l.drop_read = r->l.corrupt_read = -1;
    r->l.dead_writes = 1;
    r->l.log = calloc(LOG_MAX, sizeof *r->l.log);
    assert_non_null(r->l.log);
    link.ctx = &r->l;
    link.write = lb_write;
    link.read = lb_read;
    ea_t1_init(&r->e, &link, eo);
}

static void rig_free(rig *r)
{
    ea_t1_card_free(r->card);
    ea_emu_chan_close(r->ch);
    free(r->l.log);
}

static void rig_open(rig *r)
{
    char err[200] = "";
    ea_err rc = ea_t1_open(&r->e, deadline(), err, sizeof err);

    if (rc != EA_OK)
        fail_msg("ea_t1_open: %s: %s", ea_err_str(rc), err);
}

/* Exchange; returns the SW, response body in out (capacity *out_len). */
static uint16_t rig_xfer(rig *r, const uint8_t *c, size_t cl, uint8_t *out, size_t *out_len)
{
    uint8_t rsp[EA_EMU_APDU_MAX];
    size_t rl = sizeof rsp;
    char err[200] = "";
    ea_err rc = ea_t1_transceive(&r->e, c, cl, rsp, &rl, deadline(), err, sizeof err);

    if (rc != EA_OK)
        fail_msg("ea_t1_transceive: %s: %s", ea_err_str(rc), err);
    assert_true(rl >= 2);
    if (out != NULL) {
        assert_true(rl - 2 <= *out_len);
        memcpy(out, rsp, rl - 2);
        *out_len = rl - 2;
    }
    return (uint16_t)(rsp[rl - 2] << 8 | rsp[rl - 1]);
}

static uint16_t rig_xfer_hex(rig *r, const char *hex, uint8_t *out, size_t *out_len)
{
    size_t n;
    uint8_t *a = tu_hex(hex, &n);
    uint16_t sw = rig_xfer(r, a, n, out, out_len);

    free(a);
    return sw;
}

static bool log_has(const lb *l, const char *hex)
{
    size_t n;
    uint8_t *f = tu_hex(hex, &n);
    bool found = false;

    for (size_t i = 0; i < l->n_log && !found; i++)
        found = l->log[i].n == n && memcmp(l->log[i].b, f, n) == 0;
    free(f);
    return found;
}

/* Is the block NAD PCB (no INF, or one byte) in the log? */
static bool log_has_block(const lb *l, uint8_t nad, uint8_t pcb, const uint8_t *inf, size_t len)
{
    uint8_t f[EA_T1_FRAME_MAX];
    size_t n = 0;

    assert_int_equal(ea_t1_build(nad, pcb, inf, len, f, sizeof f, &n), EA_OK);
    for (size_t i = 0; i < l->n_log; i++)
        if (l->log[i].n == n && memcmp(l->log[i].b, f, n) == 0)
            return true;
    return false;
}

static void dump_log(const lb *l)
{
    char h[2 * EA_T1_FRAME_MAX + 1], name[24];

    for (size_t i = 0; i < l->n_log; i++) {
        ea_hex_encode(l->log[i].b, l->log[i].n < 24 ? l->log[i].n : 24, h);
        ea_t1_pcb_name(l->log[i].b[1], name, sizeof name);
        print_message("  %s %-12s %s%s\n", l->log[i].from_host ? "H>" : "<S", name, h,
                      l->log[i].n > 24 ? "..." : "");
    }
}

/* WriteBinary of len bytes then ReadObject back; checks the data. */
static void write_read_back(rig *r, size_t len, unsigned seed)
{
    uint8_t *data = malloc(len), *apdu = malloc(len + 64), back[EA_EMU_APDU_MAX];
    size_t n, bl = sizeof back;
    uint32_t id = next_obj++;
    uint16_t sw;

    assert_non_null(data);
    assert_non_null(apdu);
    fill_pattern(data, len, seed);
    n = apdu_write_binary(apdu, len + 64, id, data, len);
    sw = rig_xfer(r, apdu, n, NULL, NULL);
    if (sw != 0x9000) {
        dump_log(&r->l);
        fail_msg("WriteBinary of %zu bytes: SW %04X", len, sw);
    }
    n = apdu_read_object(apdu, len + 64, id);
    assert_int_equal(rig_xfer(r, apdu, n, back, &bl), 0x9000);
    /* 41 82 LH LL data */
    assert_int_equal(bl, len + 4);
    assert_int_equal(back[0], 0x41);
    assert_int_equal(back[1], 0x82);
    assert_int_equal(((size_t)back[2] << 8) | back[3], len);
    assert_memory_equal(back + 4, data, len);
    free(data);
    free(apdu);
}

/* ---- codec ---------------------------------------------------------------------------- */

static void test_crc_check_value(void **state)
{
    (void)state;
    /* The CRC-16/X.25 check value (the catalogue of parametrised CRCs). */
    assert_int_equal(ea_t1_crc((const uint8_t *)"123456789", 9), 0x906E);
    assert_int_equal(ea_t1_crc(NULL, 0), 0x0000);
}

/* Each catalogue frame: its CRC, a strict parse, and the same bytes rebuilt
 * from the parsed fields through the PCB constructors. */
static void test_catalogue_codec(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_CATALOGUE; i++) {
        size_t n, m = 0;
        uint8_t *f = frame_of(catalogue[i].hex, &n), out[EA_T1_FRAME_MAX], pcb = 0;
        uint16_t crc = ea_t1_crc(f, n - 2);
        ea_t1_block b;

        if ((uint8_t)crc != f[n - 2] || (uint8_t)(crc >> 8) != f[n - 1])
            fail_msg("%s: CRC %04X, frame says %02X%02X (low byte first)", catalogue[i].name, crc,
                     f[n - 1], f[n - 2]);
        if (ea_t1_parse(f, n, f[0], &b) != EA_OK)
            fail_msg("%s: does not parse", catalogue[i].name);
        assert_int_equal(b.len, f[2]);
        switch (b.kind) {
        case EA_T1_I:
            pcb = ea_t1_pcb_i(b.ns, b.more);
            break;
        case EA_T1_R:
            pcb = ea_t1_pcb_r(b.nr, b.err);
            break;
        case EA_T1_S:
            pcb = ea_t1_pcb_s(b.stype, b.resp);
            break;
        }
        assert_int_equal(pcb, f[1]);
        assert_int_equal(ea_t1_build(f[0], pcb, b.inf, b.len, out, sizeof out, &m), EA_OK);
        assert_bytes(out, m, catalogue[i].hex, catalogue[i].name);
        /* Parsed with the other direction's NAD: refused. */
        assert_int_equal(ea_t1_parse(f, n, f[0] == EA_T1_NAD_HOST ? EA_T1_NAD_SE : EA_T1_NAD_HOST,
                                     &b),
                         EA_ERR_MALFORMED);
        free(f);
    }
}

/* The host frames from named constructors (what the engine sends). */
static void test_build_host_frames(void **state)
{
    static const uint8_t wtx1 = 0x01;
    static const struct {
        uint8_t pcb;
        const char *hex;
    } host[] = {
        { 0xC0, "5A C0 00 FF FC" }, { 0xC7, "5A C7 00 F7 B1" }, { 0xCF, "5A CF 00 37 7F" },
        { 0xC5, "5A C5 00 47 82" }, { 0xC6, "5A C6 00 2F A8" }, { 0xDF, "5A DF 00 A6 EA" },
        { 0x80, "5A 80 00 99 BA" }, { 0x90, "5A 90 00 08 2F" }, { 0x81, "5A 81 00 41 A3" },
        { 0x82, "5A 82 00 29 89" },
    };
    uint8_t out[EA_T1_FRAME_MAX], *a;
    size_t n = 0, al;

    (void)state;
    assert_int_equal(ea_t1_pcb_s(EA_T1_S_RESYNC, false), 0xC0);
    assert_int_equal(ea_t1_pcb_s(EA_T1_S_GET_ATR, false), 0xC7);
    assert_int_equal(ea_t1_pcb_s(EA_T1_S_SOFT_RESET, false), 0xCF);
    assert_int_equal(ea_t1_pcb_s(EA_T1_S_END_SESSION, false), 0xC5);
    assert_int_equal(ea_t1_pcb_s(EA_T1_S_CHIP_RESET, false), 0xC6);
    assert_int_equal(ea_t1_pcb_s(EA_T1_S_DEEP_PD, false), 0xDF);
    assert_int_equal(ea_t1_pcb_r(0, EA_T1_R_OK), 0x80);
    assert_int_equal(ea_t1_pcb_r(1, EA_T1_R_OK), 0x90);
    assert_int_equal(ea_t1_pcb_r(0, EA_T1_R_CRC), 0x81);
    assert_int_equal(ea_t1_pcb_r(0, EA_T1_R_OTHER), 0x82);
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) {
        assert_int_equal(ea_t1_build(EA_T1_NAD_HOST, host[i].pcb, NULL, 0, out, sizeof out, &n),
                         EA_OK);
        assert_bytes(out, n, host[i].hex, host[i].hex);
    }
    assert_int_equal(ea_t1_build(EA_T1_NAD_HOST, ea_t1_pcb_s(EA_T1_S_WTX, true), &wtx1, 1, out,
                                 sizeof out, &n),
                     EA_OK);
    assert_bytes(out, n, "5A E3 01 01 F2 1B", "WTX response");
    a = tu_hex(SELECT_APDU, &al);
    assert_int_equal(ea_t1_build(EA_T1_NAD_HOST, ea_t1_pcb_i(0, false), a, al, out, sizeof out, &n),
                     EA_OK);
    assert_bytes(out, n, catalogue[19].hex, "I-block SELECT");
    free(a);
    a = tu_hex(EXISTS_APDU, &al);
    assert_int_equal(ea_t1_build(EA_T1_NAD_HOST, ea_t1_pcb_i(1, false), a, al, out, sizeof out, &n),
                     EA_OK);
    assert_bytes(out, n, catalogue[21].hex, "I-block CheckObjectExists");
    free(a);
    /* Refusals: too long, R-block with INF, S type unknown, small buffer. */
    uint8_t big[EA_T1_INF_MAX + 1] = { 0 };
    assert_int_equal(ea_t1_build(EA_T1_NAD_HOST, 0x00, big, sizeof big, out, sizeof out, &n),
                     EA_ERR_ARG);
    assert_int_equal(ea_t1_build(EA_T1_NAD_HOST, 0x80, big, 1, out, sizeof out, &n), EA_ERR_ARG);
    assert_int_equal(ea_t1_build(EA_T1_NAD_HOST, 0xC4, NULL, 0, out, sizeof out, &n), EA_ERR_ARG);
    assert_int_equal(ea_t1_build(0x00, 0xC0, NULL, 0, out, sizeof out, &n), EA_ERR_ARG);
    assert_int_equal(ea_t1_build(EA_T1_NAD_HOST, 0xC0, NULL, 0, out, 4, &n), EA_ERR_BUF_TOO_SMALL);
}

/* Every prefix of every frame is refused as malformed (never read past
 * the end), a trailing byte too, and every single bit flip is caught. */
static void test_parse_prefixes_and_flips(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_CATALOGUE; i++) {
        size_t n;
        uint8_t *f = frame_of(catalogue[i].hex, &n);
        ea_t1_block b;

        for (size_t k = 0; k < n; k++) {
            /* A copy of exactly k bytes, so ASan sees any read past it. */
            uint8_t *p = malloc(k ? k : 1);
            assert_non_null(p);
            memcpy(p, f, k);
            if (ea_t1_parse(p, k, f[0], &b) != EA_ERR_MALFORMED)
                fail_msg("%s: prefix of %zu bytes accepted", catalogue[i].name, k);
            free(p);
        }
        uint8_t *longer = malloc(n + 1);
        assert_non_null(longer);
        memcpy(longer, f, n);
        longer[n] = 0x00;
        assert_int_equal(ea_t1_parse(longer, n + 1, f[0], &b), EA_ERR_MALFORMED);
        free(longer);
        uint8_t nad = f[0];
        for (size_t bit = 0; bit < n * 8; bit++) {
            f[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            if (ea_t1_parse(f, n, nad, &b) == EA_OK)
                fail_msg("%s: bit %zu flipped, still accepted", catalogue[i].name, bit);
            f[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        /* Damage in the INF or CRC only: a CRC error, not "malformed". */
        f[n - 1] ^= 0x10;
        assert_int_equal(ea_t1_parse(f, n, f[0], &b), EA_ERR_CORRUPT);
        free(f);
    }
}

/* Structure refused before the CRC is looked at. */
static void test_parse_strict(void **state)
{
    static const struct {
        uint8_t nad, pcb, len;
    } bad[] = {
        { 0x5A, 0x01, 0 },  /* I-block with a reserved bit */
        { 0x5A, 0x10, 0 },  /* I-block with a reserved bit */
        { 0x5A, 0xA0, 0 },  /* R-block with bit 0x20 */
        { 0x5A, 0x84, 0 },  /* R-block with bit 0x04 */
        { 0x5A, 0x80, 1 },  /* R-block with INF */
        { 0x5A, 0xC4, 0 },  /* S type 04 (GP only) */
        { 0x5A, 0xDE, 0 },  /* S type 1E (GP only) */
        { 0x5A, 0xC3, 0 },  /* WTX without its byte */
        { 0x5A, 0xE3, 2 },  /* WTX with two */
        { 0x5A, 0xC0, 1 },  /* RESYNC with INF */
        { 0x5A, 0xC7, 1 },  /* GET ATR request with INF */
        { 0x5A, 0xC1, 0 },  /* IFS without its byte */
    };
    uint8_t f[EA_T1_FRAME_MAX + 8];
    ea_t1_block b;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint16_t crc;
        size_t n = EA_T1_HDR_LEN + bad[i].len;

        f[0] = bad[i].nad;
        f[1] = bad[i].pcb;
        f[2] = bad[i].len;
        memset(f + 3, 0x01, bad[i].len);
        crc = ea_t1_crc(f, n);
        f[n] = (uint8_t)crc;
        f[n + 1] = (uint8_t)(crc >> 8);
        if (ea_t1_parse(f, n + 2, EA_T1_NAD_HOST, &b) != EA_ERR_MALFORMED)
            fail_msg("PCB %02X LEN %u accepted", bad[i].pcb, bad[i].len);
    }
    /* LEN 255 with 255 bytes and a good CRC: still too long. */
    f[0] = 0x5A;
    f[1] = 0x00;
    f[2] = 0xFF;
    memset(f + 3, 0x00, 255);
    uint16_t crc = ea_t1_crc(f, 258);
    f[258] = (uint8_t)crc;
    f[259] = (uint8_t)(crc >> 8);
    assert_int_equal(ea_t1_parse(f, 260, EA_T1_NAD_HOST, &b), EA_ERR_MALFORMED);
    /* LEN 254 is the largest block. */
    f[2] = 0xFE;
    crc = ea_t1_crc(f, 257);
    f[257] = (uint8_t)crc;
    f[258] = (uint8_t)(crc >> 8);
    assert_int_equal(ea_t1_parse(f, 259, EA_T1_NAD_HOST, &b), EA_OK);
    assert_int_equal(b.len, 254);
    assert_int_equal(ea_t1_parse(NULL, 0, EA_T1_NAD_HOST, &b), EA_ERR_MALFORMED);
}

/* ---- card side -------------------------------------------------------------------------- */

/* The catalogue's request -> response pairs through the card, byte for byte. */
static void test_card_catalogue(void **state)
{
    ea_emu_chan *ch;
    ea_t1_card *c;
    uint8_t out[EA_T1_TCP_XFER_MAX];
    size_t n;
    uint8_t *f;

    (void)state;
    assert_int_equal(ea_emu_chan_open(chip.emu, &ch), EA_OK);
    assert_int_equal(ea_t1_card_new(ch, NULL, &c), EA_OK);
    /* Nothing pending: the read NACKs. */
    assert_false(ea_t1_card_read(c, out, 2, now64()));
    card_expect(c, "5A C0 00 FF FC", "A5 E0 00 3F 19", "RESYNC");
    card_expect(c, "5A C7 00 F7 B1", catalogue[3].hex, "GET ATR");
    card_expect(c, catalogue[19].hex, catalogue[20].hex, "SELECT");
    card_expect(c, catalogue[21].hex, catalogue[22].hex, "CheckObjectExists");
    card_expect(c, "5A CF 00 37 7F", catalogue[5].hex, "soft reset");
    /* The soft reset deselected the applet and reset N(S): SELECT at 0. */
    card_expect(c, catalogue[19].hex, catalogue[20].hex, "SELECT after soft reset");
    card_expect(c, "5A C5 00 47 82", "A5 E5 00 87 67", "End of APDU session");
    card_expect(c, "5A C6 00 2F A8", "A5 E6 00 EF 4D", "chip reset");

    /* nano's raw 512-byte read: the block, then FF filler; then NACK. */
    f = frame_of("5A C0 00 FF FC", &n);
    assert_true(ea_t1_card_write(c, f, n, now64()));
    free(f);
    assert_true(ea_t1_card_read(c, out, EA_T1_TCP_XFER_MAX, now64()));
    assert_bytes(out, 5, "A5 E0 00 3F 19", "RESYNC, raw read");
    for (size_t i = 5; i < EA_T1_TCP_XFER_MAX; i++)
        assert_int_equal(out[i], 0xFF);
    assert_false(ea_t1_card_read(c, out, 2, now64()));

    /* A chained command: R-ACK N(R)=1 after I(0,M), N(R)=0 after I(1,M). */
    {
        uint8_t blk[EA_T1_FRAME_MAX];
        size_t bl;
        static const uint8_t part1[] = { 0x00, 0xA4 }, part2[] = { 0x04, 0x00 };
        uint8_t *a = NULL;
        size_t al;

        assert_int_equal(ea_t1_build(0x5A, ea_t1_pcb_i(0, true), part1, 2, blk, sizeof blk, &bl),
                         EA_OK);
        assert_true(ea_t1_card_write(c, blk, bl, now64()));
        bl = card_read_block(c, out);
        assert_bytes(out, bl, "A5 90 00 FB E9", "R-ACK from SE, N(R)=1");
        assert_int_equal(ea_t1_build(0x5A, ea_t1_pcb_i(1, true), part2, 2, blk, sizeof blk, &bl),
                         EA_OK);
        assert_true(ea_t1_card_write(c, blk, bl, now64()));
        bl = card_read_block(c, out);
        assert_bytes(out, bl, "A5 80 00 6A 7C", "R-ACK from SE, N(R)=0");
        a = tu_hex(SELECT_APDU, &al);
        assert_int_equal(
            ea_t1_build(0x5A, ea_t1_pcb_i(0, false), a + 4, al - 4, blk, sizeof blk, &bl), EA_OK);
        free(a);
        assert_true(ea_t1_card_write(c, blk, bl, now64()));
        bl = card_read_block(c, out);
        assert_bytes(out, bl, catalogue[20].hex, "SELECT sent in three blocks");
    }
    ea_t1_card_free(c);
    ea_emu_chan_close(ch);
}

/* Card side: a damaged block gets R-NACK (EE 01, or 10 for garbage), the
 * resent block is answered; the host's R-NACK gets the last block again. */
static void test_card_rnack(void **state)
{
    ea_emu_chan *ch;
    ea_t1_card *c;
    uint8_t out[EA_T1_FRAME_MAX], nack[EA_T1_FRAME_MAX];
    size_t n, nl = 0;
    uint8_t *f;
    ea_t1_card_stats st;

    (void)state;
    assert_int_equal(ea_emu_chan_open(chip.emu, &ch), EA_OK);
    assert_int_equal(ea_t1_card_new(ch, NULL, &c), EA_OK);
    card_expect(c, "5A C0 00 FF FC", "A5 E0 00 3F 19", "RESYNC");

    f = frame_of(catalogue[19].hex, &n);
    f[10] ^= 0x04; /* one bit of the AID */
    assert_true(ea_t1_card_write(c, f, n, now64()));
    n = card_read_block(c, out);
    assert_int_equal(ea_t1_build(0xA5, ea_t1_pcb_r(0, EA_T1_R_CRC), NULL, 0, nack, sizeof nack, &nl),
                     EA_OK);
    assert_memory_equal(out, nack, nl);
    assert_int_equal(n, nl);
    free(f);
    card_expect(c, catalogue[19].hex, catalogue[20].hex, "SELECT resent after R-NACK");

    /* The host did not get the answer: its R-NACK brings it again. */
    card_expect(c, "5A 82 00 29 89", catalogue[20].hex, "SELECT answer again (R-NACK other)");
    /* And the same I-block sent twice is not run twice: the answer again. */
    card_expect(c, catalogue[19].hex, catalogue[20].hex, "duplicate I-block");

    /* Garbage (bad PCB, good CRC): R-NACK "other error", N(R)=1 expected. */
    {
        uint8_t g[5] = { 0x5A, 0x08, 0x00 };
        uint16_t crc = ea_t1_crc(g, 3);
        g[3] = (uint8_t)crc;
        g[4] = (uint8_t)(crc >> 8);
        assert_true(ea_t1_card_write(c, g, 5, now64()));
        n = card_read_block(c, out);
        assert_int_equal(
            ea_t1_build(0xA5, ea_t1_pcb_r(1, EA_T1_R_OTHER), NULL, 0, nack, sizeof nack, &nl), EA_OK);
        assert_int_equal(n, nl);
        assert_memory_equal(out, nack, nl);
    }
    card_expect(c, catalogue[21].hex, catalogue[22].hex, "CheckObjectExists after garbage");

    /* Writes the card cannot take NACK: empty, and longer than a block. */
    uint8_t big[EA_T1_FRAME_MAX + 1] = { 0x5A };
    assert_false(ea_t1_card_write(c, big, 0, now64()));
    assert_false(ea_t1_card_write(c, big, sizeof big, now64()));
    ea_t1_card_get_stats(c, &st);
    /* SELECT (once, after the R-NACK: the duplicate was answered, not run)
     * and CheckObjectExists. */
    assert_int_equal(st.apdus, 2);
    assert_int_equal(st.rnacks_out, 2);
    assert_int_equal(st.write_nacks, 2);
    ea_t1_card_free(c);
    ea_emu_chan_close(ch);
}

/* Card side WTX and busy: forced WTX requests, then the answer; reads NACK
 * while the card is "computing". */
static void test_card_wtx_busy(void **state)
{
    ea_emu_chan *ch;
    ea_t1_card *c;
    ea_t1_card_opts o = { .wtx_count = 2 };
    uint8_t out[EA_T1_FRAME_MAX];
    size_t n;
    uint8_t *f;

    (void)state;
    assert_int_equal(ea_emu_chan_open(chip.emu, &ch), EA_OK);
    assert_int_equal(ea_t1_card_new(ch, &o, &c), EA_OK);
    card_expect(c, "5A C0 00 FF FC", "A5 E0 00 3F 19", "RESYNC");
    card_expect(c, catalogue[19].hex, "A5 C3 01 01 1B DD", "WTX request 1");
    card_expect(c, "5A E3 01 01 F2 1B", "A5 C3 01 01 1B DD", "WTX request 2");
    /* Lost WTX response: the host's R-NACK brings the request again. */
    card_expect(c, "5A 82 00 29 89", "A5 C3 01 01 1B DD", "WTX request again");
    card_expect(c, "5A E3 01 01 F2 1B", catalogue[20].hex, "SELECT after two WTX");
    ea_t1_card_free(c);

    o.wtx_count = 0;
    o.busy_ms = 60;
    assert_int_equal(ea_t1_card_new(ch, &o, &c), EA_OK);
    card_expect(c, "5A C0 00 FF FC", "A5 E0 00 3F 19", "RESYNC (not busy)");
    f = frame_of(catalogue[19].hex, &n);
    uint64_t t0 = now64();
    assert_true(ea_t1_card_write(c, f, n, t0));
    assert_false(ea_t1_card_read(c, out, 2, t0));      /* busy: NACK */
    assert_false(ea_t1_card_read(c, out, 2, t0 + 59)); /* still busy */
    assert_false(ea_t1_card_write(c, f, n, t0 + 10));  /* busy: writes NACK too */
    assert_true(ea_t1_card_read(c, out, 2, t0 + 60));
    assert_int_equal(out[0], 0xA5);
    free(f);
    ea_t1_card_free(c);
    ea_emu_chan_close(ch);
}

/* ---- host engine over the loopback ------------------------------------------------------ */

/* Open, SELECT, CheckObjectExists, End of session, chip reset, soft reset:
 * every block on the link is the catalogue's. */
static void test_engine_catalogue(void **state)
{
    rig r;
    uint8_t out[64], atr[64];
    size_t ol = sizeof out, al = sizeof atr, n;
    const uint8_t *a;
    char err[200];

    (void)state;
    rig_new(&r, NULL, NULL);
    rig_open(&r);
    /* RESYNC, then GET ATR, exactly. */
    assert_true(r.l.n_log >= 4);
    assert_bytes(r.l.log[0].b, r.l.log[0].n, "5A C0 00 FF FC", "open: RESYNC");
    assert_bytes(r.l.log[1].b, r.l.log[1].n, "A5 E0 00 3F 19", "open: RESYNC response");
    assert_bytes(r.l.log[2].b, r.l.log[2].n, "5A C7 00 F7 B1", "open: GET ATR");
    assert_bytes(r.l.log[3].b, r.l.log[3].n, catalogue[3].hex, "open: ATR");
    a = ea_t1_atr(&r.e, &n);
    assert_bytes(a, n, ATR_HEX, "engine's ATR");
    assert_int_equal(r.e.ifsc, 254);
    assert_int_equal(r.e.bwt_ms, 1000);
    assert_int_equal(r.e.mpot_ms, 1);
    assert_int_equal(r.e.segt_us, 100);

    assert_int_equal(rig_xfer_hex(&r, SELECT_APDU, out, &ol), 0x9000);
    assert_bytes(out, ol, "03 01 00 3F FF 01 0B", "SELECT body");
    assert_true(log_has(&r.l, catalogue[19].hex));
    assert_true(log_has(&r.l, catalogue[20].hex));
    ol = sizeof out;
    assert_int_equal(rig_xfer_hex(&r, EXISTS_APDU, out, &ol), 0x9000);
    assert_true(log_has(&r.l, catalogue[21].hex));
    assert_true(log_has(&r.l, catalogue[22].hex));

    assert_int_equal(ea_t1_end_session(&r.e, deadline(), err, sizeof err), EA_OK);
    assert_true(log_has(&r.l, "5A C5 00 47 82"));
    assert_true(log_has(&r.l, "A5 E5 00 87 67"));
    /* After End of session both sides are back at N(S) = 0. */
    ol = sizeof out;
    assert_int_equal(rig_xfer_hex(&r, SELECT_APDU, out, &ol), 0x9000);
    assert_int_equal(ea_t1_chip_reset(&r.e, deadline(), err, sizeof err), EA_OK);
    assert_true(log_has(&r.l, "5A C6 00 2F A8"));
    assert_true(log_has(&r.l, "A5 E6 00 EF 4D"));
    assert_int_equal(ea_t1_soft_reset(&r.e, atr, &al, deadline(), err, sizeof err), EA_OK);
    assert_bytes(atr, al, ATR_HEX, "soft reset ATR");
    assert_true(log_has(&r.l, "5A CF 00 37 7F"));
    assert_true(log_has(&r.l, catalogue[5].hex));
    al = sizeof atr;
    assert_int_equal(ea_t1_get_atr(&r.e, atr, &al, deadline(), err, sizeof err), EA_OK);
    assert_bytes(atr, al, ATR_HEX, "GET ATR");
    /* Chip reset deselected the applet: a command now needs SELECT again. */
    ol = sizeof out;
    assert_int_equal(rig_xfer_hex(&r, EXISTS_APDU, out, &ol), 0x6985);
    ol = sizeof out;
    assert_int_equal(rig_xfer_hex(&r, SELECT_APDU, out, &ol), 0x9000);
    assert_int_equal(ea_t1_get_stats(&r.e)->rnacks_tx, 0);
    rig_free(&r);
}

/* Chained both ways: 600 and 3000 bytes written and read back; blocks at
 * most 254 bytes, R-ACKs as in the catalogue. */
static void test_engine_chaining(void **state)
{
    rig r;
    uint8_t out[64];
    size_t ol = sizeof out, max_inf = 0, chained = 0;
    ea_t1_card_stats cs;

    (void)state;
    rig_new(&r, NULL, NULL);
    rig_open(&r);
    assert_int_equal(rig_xfer_hex(&r, SELECT_APDU, out, &ol), 0x9000);
    write_read_back(&r, 600, 1);
    write_read_back(&r, 3000, 2);
    for (size_t i = 0; i < r.l.n_log; i++) {
        const lb_frame *f = &r.l.log[i];
        if (f->b[2] > max_inf)
            max_inf = f->b[2];
        if ((f->b[1] & 0xA0u) == 0x20u)
            chained++;
    }
    assert_int_equal(max_inf, 254);
    assert_true(chained >= 2 + 2 + 11 + 11);
    /* Both R-ACK codings from both sides appear. */
    assert_true(log_has(&r.l, "5A 80 00 99 BA"));
    assert_true(log_has(&r.l, "5A 90 00 08 2F"));
    assert_true(log_has(&r.l, "A5 80 00 6A 7C"));
    assert_true(log_has(&r.l, "A5 90 00 FB E9"));
    ea_t1_card_get_stats(r.card, &cs);
    assert_int_equal(cs.apdus, 5);
    assert_int_equal(cs.rnacks_out, 0);
    assert_int_equal(ea_t1_get_stats(&r.e)->rnacks_tx, 0);

    /* A response larger than the caller's buffer: read to its end, then
     * BUF_TOO_SMALL with the size, and the link is still in step. */
    {
        uint8_t apdu[32], small[100];
        size_t al = apdu_read_object(apdu, sizeof apdu, next_obj - 1), sl = sizeof small;
        char err[200];
        assert_int_equal(ea_t1_transceive(&r.e, apdu, al, small, &sl, deadline(), err, sizeof err),
                         EA_ERR_BUF_TOO_SMALL);
        assert_int_equal(sl, 3000 + 4 + 2);
        ol = sizeof out;
        assert_int_equal(rig_xfer_hex(&r, EXISTS_APDU, out, &ol), 0x9000);
    }
    rig_free(&r);
}

/* Host side: the SE's block arrives with a bad CRC; the engine sends
 * R-NACK 5A 81 00 41 A3 and the SE sends the block again. */
static void test_engine_bad_crc_from_se(void **state)
{
    rig r;
    uint8_t out[64];
    size_t ol = sizeof out;

    (void)state;
    rig_new(&r, NULL, NULL);
    rig_open(&r);
    r.l.corrupt_read = (long)r.l.n_reads; /* the SELECT answer */
    assert_int_equal(rig_xfer_hex(&r, SELECT_APDU, out, &ol), 0x9000);
    assert_bytes(out, ol, "03 01 00 3F FF 01 0B", "SELECT body");
    assert_true(log_has(&r.l, "5A 81 00 41 A3"));
    assert_int_equal(ea_t1_get_stats(&r.e)->rnacks_tx, 1);
    /* Damage in the middle of a chained response too. */
    write_read_back(&r, 600, 3); /* creates the file */
    r.l.corrupt_read = (long)r.l.n_reads + 1;
    {
        uint8_t apdu[32], back[700];
        size_t al = apdu_read_object(apdu, sizeof apdu, next_obj - 1), bl = sizeof back;
        assert_int_equal(rig_xfer(&r, apdu, al, back, &bl), 0x9000);
        assert_int_equal(bl, 604);
    }
    assert_int_equal(ea_t1_get_stats(&r.e)->rnacks_tx, 2);
    rig_free(&r);
}

/* Card side through the engine: our block is damaged on the way; the SE
 * answers R-NACK and the engine sends the block again. */
static void test_engine_bad_crc_to_se(void **state)
{
    rig r;
    uint8_t out[64];
    size_t ol = sizeof out;
    ea_t1_card_stats cs;

    (void)state;
    rig_new(&r, NULL, NULL);
    rig_open(&r);
    r.l.corrupt_write = (long)r.l.n_writes;
    assert_int_equal(rig_xfer_hex(&r, SELECT_APDU, out, &ol), 0x9000);
    ea_t1_card_get_stats(r.card, &cs);
    assert_int_equal(cs.rnacks_out, 1);
    assert_int_equal(cs.apdus, 1);
    assert_true(log_has_block(&r.l, EA_T1_NAD_SE, ea_t1_pcb_r(0, EA_T1_R_CRC), NULL, 0));
    assert_int_equal(ea_t1_get_stats(&r.e)->resends, 1);
    /* The second block of a chained command damaged. */
    r.l.corrupt_write = (long)r.l.n_writes + 1;
    write_read_back(&r, 600, 4);
    ea_t1_card_get_stats(r.card, &cs);
    assert_int_equal(cs.rnacks_out, 2);
    assert_int_equal(cs.apdus, 3);
    rig_free(&r);
}

/* A lost block anywhere (ours or the SE's) in open + SELECT + chained
 * write + chained read: the engine recovers with R-NACK / resend, the
 * exchange completes, and no command runs twice on the card. */
static void test_engine_lost_frames(void **state)
{
    ea_t1_opts eo = { .bwt_ms = FAST_BWT_MS };
    unsigned long writes = 0, reads = 0;

    (void)state;
    /* A clean run counts the blocks. */
    {
        rig r;
        uint8_t out[64];
        size_t ol = sizeof out;
        rig_new(&r, NULL, &eo);
        rig_open(&r);
        assert_int_equal(rig_xfer_hex(&r, SELECT_APDU, out, &ol), 0x9000);
        write_read_back(&r, 600, 5);
        writes = r.l.n_writes;
        reads = r.l.n_reads;
        rig_free(&r);
    }
    assert_true(writes >= 8 && reads >= 8);
    for (int side = 0; side < 2; side++) {
        unsigned long total = side == 0 ? writes : reads;
        for (unsigned long k = 0; k < total; k++) {
            rig r;
            uint8_t out[64];
            size_t ol = sizeof out;
            ea_t1_card_stats cs;

            rig_new(&r, NULL, &eo);
            if (side == 0)
                r.l.drop_write = (long)k;
            else
                r.l.drop_read = (long)k;
            rig_open(&r);
            assert_int_equal(rig_xfer_hex(&r, SELECT_APDU, out, &ol), 0x9000);
            write_read_back(&r, 600, 6 + (unsigned)k);
            ea_t1_card_get_stats(r.card, &cs);
            if (cs.apdus != 3) {
                dump_log(&r.l);
                fail_msg("%s block %lu lost: the card ran %lu commands, not 3",
                         side == 0 ? "host" : "SE", k, cs.apdus);
            }
            /* A loss shows as a wait and a recovery (unless it hit a block
             * the engine never waited on: none here). */
            assert_true(ea_t1_get_stats(&r.e)->timeouts >= 1);
            rig_free(&r);
        }
    }
}

/* Lost sync: the SE's protocol state is reset behind the engine's back
 * (its sequence numbers no longer match). The engine notices, sends
 * RESYNC, fails that exchange cleanly, and the next exchange works. */
static void test_engine_resync(void **state)
{
    rig r;
    uint8_t out[64], tmp[EA_T1_FRAME_MAX];
    size_t ol = sizeof out, n, before;
    uint8_t *f;
    char err[256] = "";
    uint8_t rsp[64];
    size_t rl = sizeof rsp;
    ea_err rc;

    (void)state;
    rig_new(&r, NULL, NULL);
    rig_open(&r);
    assert_int_equal(rig_xfer_hex(&r, SELECT_APDU, out, &ol), 0x9000); /* engine now at N(S)=1 */
    f = frame_of("5A C0 00 FF FC", &n);
    assert_true(ea_t1_card_write(r.card, f, n, now64())); /* the SE at N(S)=0 again */
    free(f);
    (void)card_read_block(r.card, tmp);
    before = r.l.n_log;
    f = frame_of(EXISTS_APDU, &n);
    rc = ea_t1_transceive(&r.e, f, n, rsp, &rl, deadline(), err, sizeof err);
    free(f);
    if (rc != EA_ERR_IO) {
        dump_log(&r.l);
        fail_msg("expected EA_ERR_IO after lost sync, got %s (%s)", ea_err_str(rc), err);
    }
    assert_non_null(strstr(err, "resynchronised"));
    /* RESYNC went out after the failed block. */
    {
        bool seen = false;
        size_t fl;
        uint8_t *rs = frame_of("5A C0 00 FF FC", &fl);
        for (size_t i = before; i < r.l.n_log; i++)
            seen |= r.l.log[i].n == fl && memcmp(r.l.log[i].b, rs, fl) == 0;
        free(rs);
        assert_true(seen);
    }
    ol = sizeof out;
    assert_int_equal(rig_xfer_hex(&r, EXISTS_APDU, out, &ol), 0x9000);
    assert_true(ea_t1_get_stats(&r.e)->resyncs >= 2);
    rig_free(&r);
}

/* The link goes dead for a while (every write lost): the engine gives up
 * within bounds (RESYNC and soft reset unanswered too), and once the link
 * is back the next exchange starts with RESYNC and works. */
static void test_engine_dead_then_back(void **state)
{
    ea_t1_opts eo = { .bwt_ms = 50 };
    rig r;
    uint8_t out[64], rsp[64];
    size_t ol = sizeof out, n, rl = sizeof rsp;
    uint8_t *f;
    char err[256] = "";
    long long t0;
    ea_err rc;

    (void)state;
    rig_new(&r, NULL, &eo);
    rig_open(&r);
    assert_int_equal(rig_xfer_hex(&r, SELECT_APDU, out, &ol), 0x9000);
    r.l.drop_write = (long)r.l.n_writes;
    r.l.dead_writes = 1000;
    f = frame_of(EXISTS_APDU, &n);
    t0 = ea_t1_now_ms();
    rc = ea_t1_transceive(&r.e, f, n, rsp, &rl, deadline(), err, sizeof err);
    assert_int_equal(rc, EA_ERR_IO);
    assert_true(ea_t1_now_ms() - t0 < 10000);
    assert_true(r.e.need_resync);
    r.l.dead_writes = 0; /* back */
    rl = sizeof rsp;
    rc = ea_t1_transceive(&r.e, f, n, rsp, &rl, deadline(), err, sizeof err);
    free(f);
    if (rc != EA_OK)
        fail_msg("after the link came back: %s: %s", ea_err_str(rc), err);
    /* The soft reset of the recovery (or the RESYNC) may have deselected:
     * either way the SE answered. */
    assert_true(rl >= 2);
    rig_free(&r);
}

/* WTX: three forced requests answered with 5A E3 01 01 F2 1B, the command
 * completes; a multiplier extends the wait. */
static void test_engine_wtx(void **state)
{
    ea_t1_card_opts co = { .wtx_count = 3 };
    rig r;
    uint8_t out[64];
    size_t ol = sizeof out;

    (void)state;
    rig_new(&r, &co, NULL);
    rig_open(&r);
    assert_int_equal(rig_xfer_hex(&r, SELECT_APDU, out, &ol), 0x9000);
    assert_int_equal(ea_t1_get_stats(&r.e)->wtx, 3);
    assert_true(log_has(&r.l, "A5 C3 01 01 1B DD"));
    assert_true(log_has(&r.l, "5A E3 01 01 F2 1B"));
    write_read_back(&r, 600, 7);
    assert_int_equal(ea_t1_get_stats(&r.e)->wtx, 9);
    rig_free(&r);

    /* The SE needs 250 ms with BWT = 100 ms: a WTX x3 buys the time, so
     * the engine never times out. */
    ea_t1_card_opts slow = { .wtx_count = 1, .busy_ms = 250, .wtx_mult = 3 };
    ea_t1_opts eo = { .bwt_ms = FAST_BWT_MS };
    rig_new(&r, &slow, &eo);
    rig_open(&r);
    ol = sizeof out;
    assert_int_equal(rig_xfer_hex(&r, SELECT_APDU, out, &ol), 0x9000);
    assert_int_equal(ea_t1_get_stats(&r.e)->timeouts, 0);
    assert_int_equal(ea_t1_get_stats(&r.e)->wtx, 1);
    {
        static const uint8_t three = 3;
        assert_true(log_has_block(&r.l, EA_T1_NAD_SE, ea_t1_pcb_s(EA_T1_S_WTX, false), &three, 1));
        assert_true(log_has_block(&r.l, EA_T1_NAD_HOST, ea_t1_pcb_s(EA_T1_S_WTX, true), &three, 1));
    }
    rig_free(&r);
}

/* NACK polling: the SE is busy for 40 ms after each command; the engine
 * polls through the NACKs and gets the answer without any recovery. */
static void test_engine_nack_polling(void **state)
{
    ea_t1_card_opts co = { .busy_ms = 40 };
    rig r;
    uint8_t out[64];
    size_t ol = sizeof out;
    const ea_t1_stats *st;
    long long t0;

    (void)state;
    rig_new(&r, &co, NULL);
    rig_open(&r);
    t0 = ea_t1_now_ms();
    assert_int_equal(rig_xfer_hex(&r, SELECT_APDU, out, &ol), 0x9000);
    assert_true(ea_t1_now_ms() - t0 >= 40);
    write_read_back(&r, 600, 8);
    st = ea_t1_get_stats(&r.e);
    assert_true(st->read_nacks >= 3);
    assert_int_equal(st->timeouts, 0);
    assert_int_equal(st->rnacks_tx, 0);
    rig_free(&r);
}

/* Bounded waits: a mute SE (every transaction NACKs) and a babbling one
 * (noise on every read) both end in an error before the deadline. */
static void test_engine_bounded(void **state)
{
    ea_t1_opts eo = { .bwt_ms = 50 };
    rig r;
    char err[256] = "";
    long long t0;
    ea_err rc;
    uint8_t rsp[64], *f;
    size_t rl = sizeof rsp, n;

    (void)state;
    rig_new(&r, NULL, &eo);
    r.l.mute = true;
    t0 = ea_t1_now_ms();
    rc = ea_t1_open(&r.e, ea_t1_now_ms() + 5000, err, sizeof err);
    assert_int_not_equal(rc, EA_OK);
    assert_true(ea_t1_now_ms() - t0 <= 5500);
    assert_non_null(strstr(err, "S(RESYNC"));
    assert_non_null(strstr(err, "not acknowledged")); /* nothing ACKs the address */
    rig_free(&r);

    rig_new(&r, NULL, &eo);
    rig_open(&r);
    r.l.garbage = true;
    r.l.rng = 12345;
    f = frame_of(SELECT_APDU, &n);
    t0 = ea_t1_now_ms();
    rc = ea_t1_transceive(&r.e, f, n, rsp, &rl, ea_t1_now_ms() + 5000, err, sizeof err);
    assert_int_not_equal(rc, EA_OK);
    assert_true(ea_t1_now_ms() - t0 <= 5500);
    /* A deadline already past: no wait at all. */
    r.l.garbage = false;
    r.l.mute = true;
    rl = sizeof rsp;
    t0 = ea_t1_now_ms();
    rc = ea_t1_transceive(&r.e, f, n, rsp, &rl, ea_t1_now_ms() - 1, err, sizeof err);
    assert_int_not_equal(rc, EA_OK);
    assert_true(ea_t1_now_ms() - t0 <= 500);
    free(f);
    /* Not open: refused at once. */
    ea_t1_init(&r.e, &(ea_t1_link){ &r.l, lb_write, lb_read }, NULL);
    rl = sizeof rsp;
    assert_int_equal(ea_t1_transceive(&r.e, (const uint8_t *)"\x00", 1, rsp, &rl, deadline(), err,
                                      sizeof err),
                     EA_ERR_IO);
    rig_free(&r);
}

/* ---- over a real socket: the server's t1-tcp row, the t1-tcp transport ------------------ */

typedef struct srv {
    ea_serve *s;
    pthread_t th;
    char hostport[128];
} srv;

static void *srv_main(void *arg)
{
    srv *v = arg;
    ea_serve_run(v->s);
    return NULL;
}

static void srv_start(srv *v, const char *listen_uri)
{
    ea_serve_opts so;
    char err[256] = "";
    const char *uri;

    memset(&so, 0, sizeof so);
    so.listen = &listen_uri;
    so.n_listen = 1;
    so.stall_ms = 20000;
    if (ea_serve_new(chip.emu, &so, &v->s, err, sizeof err) != EA_OK)
        fail_msg("ea_serve_new(%s): %s", listen_uri, err);
    uri = ea_serve_uri(v->s, 0);
    assert_non_null(uri);
    assert_memory_equal(uri, "t1-tcp://", 9);
    snprintf(v->hostport, sizeof v->hostport, "%s", uri + 9);
    assert_int_equal(pthread_create(&v->th, NULL, srv_main, v), 0);
}

static void srv_stop(srv *v)
{
    ea_serve_stop(v->s);
    pthread_join(v->th, NULL);
    ea_serve_free(v->s);
}

static uint16_t tr_xfer(ea_transport *t, const uint8_t *c, size_t cl, uint8_t *out, size_t *ol)
{
    uint8_t r[EA_EMU_APDU_MAX];
    size_t rl = sizeof r;
    char err[256] = "";
    ea_err rc = t->ops->xfer(t, c, cl, r, &rl, DEADLINE_MS, err, sizeof err);

    if (rc != EA_OK)
        fail_msg("xfer: %s: %s", ea_err_str(rc), err);
    assert_true(rl >= 2 && rl - 2 <= *ol);
    memcpy(out, r, rl - 2);
    *ol = rl - 2;
    return (uint16_t)(r[rl - 2] << 8 | r[rl - 1]);
}

static void socket_round(const char *listen_uri, size_t len)
{
    srv v;
    ea_transport *t = NULL;
    char err[256] = "", uri[160];
    uint8_t *data = malloc(len), apdu[EA_EMU_APDU_MAX], back[EA_EMU_APDU_MAX];
    size_t n, bl;
    uint32_t id = next_obj++;

    assert_non_null(data);
    fill_pattern(data, len, 9);
    srv_start(&v, listen_uri);
    snprintf(uri, sizeof uri, "t1-tcp://%s", v.hostport);
    if (ea_transport_new(uri, &t, err, sizeof err) != EA_OK)
        fail_msg("ea_transport_new(%s): %s", uri, err);
    assert_string_equal(t->ops->name, "t1-tcp");
    if (t->ops->open(t, err, sizeof err) != EA_OK)
        fail_msg("open %s: %s", uri, err);
    n = tu_apdu(apdu, sizeof apdu, 0x00, 0xA4, 0x04, 0x00,
                (const uint8_t *)"\xA0\x00\x00\x03\x96\x54\x53\x00\x00\x00\x01\x03\x00\x00\x00\x00",
                16, 0);
    apdu[n++] = 0x00;
    bl = sizeof back;
    assert_int_equal(tr_xfer(t, apdu, n, back, &bl), 0x9000);
    assert_bytes(back, bl, "03 01 00 3F FF 01 0B", "SELECT over t1-tcp");
    n = apdu_write_binary(apdu, sizeof apdu, id, data, len);
    bl = sizeof back;
    assert_int_equal(tr_xfer(t, apdu, n, back, &bl), 0x9000);
    n = apdu_read_object(apdu, sizeof apdu, id);
    bl = sizeof back;
    assert_int_equal(tr_xfer(t, apdu, n, back, &bl), 0x9000);
    assert_int_equal(bl, len + 4);
    assert_memory_equal(back + 4, data, len);
    /* Close (End of APDU session), reconnect: a new bus, a fresh channel
     * that must select again. */
    t->ops->close(t);
    if (t->ops->open(t, err, sizeof err) != EA_OK)
        fail_msg("reopen %s: %s", uri, err);
    n = tu_apdu(apdu, sizeof apdu, 0x80, 0x04, 0x00, 0x27,
                (const uint8_t *)"\x41\x04\x7B\x00\x04\x26", 6, 0);
    bl = sizeof back;
    assert_int_equal(tr_xfer(t, apdu, n, back, &bl), 0x6985);
    t->ops->free(t);
    srv_stop(&v);
    free(data);
}

/* Chained APDUs over the real server, plain and with forced WTX + busy. */
static void test_socket_t1_tcp(void **state)
{
    (void)state;
    socket_round("t1-tcp://127.0.0.1:0", 600);
    socket_round("t1-tcp://127.0.0.1:0?wtx=2&busy_ms=5", 600);
    socket_round("t1-tcp://127.0.0.1:0?wtx_mult=2&wtx=1", 2500);
}

static void raw_send(int fd, const char *hex)
{
    size_t n;
    uint8_t *b = tu_hex(hex, &n);
    assert_int_equal(ea_sock_write_all(fd, b, n, deadline()), EA_OK);
    free(b);
}

static void raw_expect(int fd, const char *hex, const char *what)
{
    size_t n;
    uint8_t *want = tu_hex(hex, &n), got[600];

    assert_true(n <= sizeof got);
    if (ea_sock_read_exact(fd, got, n, deadline()) != EA_OK)
        fail_msg("%s: no answer", what);
    assert_bytes(got, n, hex, what);
    free(want);
}

/* The t1-tcp wire itself, as documented in common/t1.h. */
static void test_socket_wire(void **state)
{
    srv v;
    char err[256] = "";
    int fd;
    uint8_t b[8];

    (void)state;
    srv_start(&v, "t1-tcp://127.0.0.1:0");
    fd = ea_sock_connect_tcp(v.hostport, 5000, err, sizeof err);
    if (fd < 0)
        fail_msg("connect: %s", err);
    raw_send(fd, "52 00 02");
    raw_expect(fd, "01", "read with nothing pending: NACK");
    raw_send(fd, "57 00 05 5A C0 00 FF FC");
    raw_expect(fd, "00", "write RESYNC: ACK");
    raw_send(fd, "52 00 02");
    raw_expect(fd, "00 A5 E0", "read NAD PCB");
    raw_send(fd, "52 00 01");
    raw_expect(fd, "00 00", "read LEN");
    raw_send(fd, "52 00 02");
    raw_expect(fd, "00 3F 19", "read CRC");
    raw_send(fd, "52 00 02");
    raw_expect(fd, "01", "block consumed: NACK");
    raw_send(fd, "57 00 05 5A C7 00 F7 B1");
    raw_expect(fd, "00", "write GET ATR");
    raw_send(fd, "52 00 2A");
    raw_expect(fd, "00 A5 E7 23" ATR_HEX "2A 8D FF FF", "read 42: ATR block + filler");
    raw_send(fd, "57 00 00");
    raw_expect(fd, "01", "empty write: NACK");
    /* A length beyond the wire's limit: the server hangs up. */
    raw_send(fd, "57 02 01");
    assert_int_not_equal(ea_sock_read_exact(fd, b, 1, ea_t1_now_ms() + 5000), EA_OK);
    close(fd);

    /* Not t1-tcp at all (a JRCP_v1 header): hung up. */
    fd = ea_sock_connect_tcp(v.hostport, 5000, err, sizeof err);
    assert_true(fd >= 0);
    raw_send(fd, "00 00 00 04 00 00 01 00");
    assert_int_not_equal(ea_sock_read_exact(fd, b, 1, ea_t1_now_ms() + 5000), EA_OK);
    close(fd);
    srv_stop(&v);
}

/* Listen URI options: bad ones refused with a message naming the URI. */
static void test_socket_listen_opts(void **state)
{
    static const char *const bad[] = {
        "t1-tcp://127.0.0.1:0?wtx=x",   "t1-tcp://127.0.0.1:0?nope=1",
        "t1-tcp://127.0.0.1:0?wtx",     "t1-tcp://127.0.0.1:0?busy_ms=99999999",
        "tcp://127.0.0.1:0?wtx=1",
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ea_serve_opts so;
        ea_serve *s = NULL;
        char err[256] = "";

        memset(&so, 0, sizeof so);
        so.listen = &bad[i];
        so.n_listen = 1;
        assert_int_equal(ea_serve_new(chip.emu, &so, &s, err, sizeof err), EA_ERR_ARG);
        assert_null(s);
        assert_non_null(strstr(err, bad[i]));
    }
}

/* ---- i2c-dev ------------------------------------------------------------------------------ */

static void test_i2c_missing_device(void **state)
{
    static const char dev[] = "/dev/i2c-edgeauth-test-absent";
    ea_transport *t = NULL;
    char err[256] = "", uri[128];

    (void)state;
    snprintf(uri, sizeof uri, "i2c:%s", dev);
    assert_int_equal(ea_transport_new(uri, &t, err, sizeof err), EA_OK);
    assert_non_null(t);
    assert_string_equal(t->ops->name, "t1-i2c");
    assert_int_equal(t->ops->open(t, err, sizeof err), EA_ERR_IO);
    print_message("  (%s)\n", err);
    assert_non_null(strstr(err, dev));
    assert_non_null(strstr(err, "0x48")); /* the default address is named */
    /* xfer without a device: a clear error, no crash. */
    {
        uint8_t r[8];
        size_t rl = sizeof r;
        assert_int_equal(t->ops->xfer(t, (const uint8_t *)"\x00\xA4\x04\x00", 4, r, &rl, 100, err,
                                      sizeof err),
                         EA_ERR_IO);
    }
    t->ops->close(t);
    t->ops->free(t);

    snprintf(uri, sizeof uri, "%s@0x49", dev);
    assert_int_equal(ea_tr_t1_i2c_new(uri, &t, err, sizeof err), EA_OK);
    assert_int_equal(t->ops->open(t, err, sizeof err), EA_ERR_IO);
    assert_non_null(strstr(err, "0x49"));
    t->ops->free(t);

    /* Bad addresses refused at creation. */
    static const char *const bad[] = { "/dev/i2c-1@0x200", "/dev/i2c-1@", "/dev/i2c-1@0x07",
                                       "/dev/i2c-1@zz", "@0x48", "/dev/i2c-1@-1" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = NULL;
        assert_int_equal(ea_tr_t1_i2c_new(bad[i], &t, err, sizeof err), EA_ERR_ARG);
        assert_null(t);
    }
    assert_int_equal(ea_tr_t1_tcp_new("no-port", &t, err, sizeof err), EA_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc_check_value),
        cmocka_unit_test(test_catalogue_codec),
        cmocka_unit_test(test_build_host_frames),
        cmocka_unit_test(test_parse_prefixes_and_flips),
        cmocka_unit_test(test_parse_strict),
        cmocka_unit_test(test_card_catalogue),
        cmocka_unit_test(test_card_rnack),
        cmocka_unit_test(test_card_wtx_busy),
        cmocka_unit_test(test_engine_catalogue),
        cmocka_unit_test(test_engine_chaining),
        cmocka_unit_test(test_engine_bad_crc_from_se),
        cmocka_unit_test(test_engine_bad_crc_to_se),
        cmocka_unit_test(test_engine_lost_frames),
        cmocka_unit_test(test_engine_resync),
        cmocka_unit_test(test_engine_dead_then_back),
        cmocka_unit_test(test_engine_wtx),
        cmocka_unit_test(test_engine_nack_polling),
        cmocka_unit_test(test_engine_bounded),
        cmocka_unit_test(test_socket_t1_tcp),
        cmocka_unit_test(test_socket_wire),
        cmocka_unit_test(test_socket_listen_opts),
        cmocka_unit_test(test_i2c_missing_device),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
