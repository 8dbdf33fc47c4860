/* Platform SCP03 session core (spec se05x-apdu.md §7): the §7.8 worked vector
 * byte for byte (keys, cryptograms, handshake, ICVs, two wrapped commands and
 * their responses, the extended form), host against card, the §7.5 counter
 * rule for both applet generations, and refusal of every single-bit flip,
 * replay, reordering, truncation and tampered response. */
#include "tests/testutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/scp03.h"
#include "common/util.h"

#define V72 0x07020000u
#define V31 0x03010000u

static const char *const ENC_HEX = "ABCDABCDABCDABCDABCDABCDABCD0001";
static const char *const MAC_HEX = "ABCDABCDABCDABCDABCDABCDABCD0002";
static const char *const HC_HEX = "1122334455667788";
static const char *const CC_HEX = "0102030405060708";

#define CMD1_PLAIN "80 04 00 27 06 41 04 7B 00 04 26"
#define CMD1_WRAP "84 04 00 27 18 E6 66 9B 97 DB 6D 18 70 8A B6 D1 80 B5 A4 71 59 88 4D 71 39 BC 9B 71 6B"
#define RSP1_PLAIN "41 01 02 90 00"
#define RSP1_WRAP "20 78 B1 5A D7 3A 40 BD C7 EB 85 82 E4 3F 84 3D 24 15 37 88 B0 8B 91 D4 90 00"
#define CMD2_PLAIN "80 01 61 00 09 41 04 7B 00 04 26 42 01 03"
#define CMD2_WRAP "84 01 61 00 18 37 0B BC 89 1A 4F EC 3B FC 5C 9A 82 5E 3A 7D 8E 7E 7B 0E 64 D2 80 4A 77"
#define RSP2_WRAP "1E EA 27 FD B8 45 BD D5 90 00"
#define EXT_PLAIN "80 02 00 00 00 00 06 41 04 7B 00 04 3A 00 00"

/* Compare bytes against hex and print both on mismatch. */
static void expect_hex(const uint8_t *got, size_t got_len, const char *hex)
{
    size_t n;
    uint8_t *want = tu_hex(hex, &n);
    if (got_len != n || memcmp(got, want, n) != 0) {
        char g[2 * 4096 + 1], w[2 * 4096 + 1];
        assert_true(got_len <= 4096 && n <= 4096);
        ea_hex_encode(got, got_len, g);
        ea_hex_encode(want, n, w);
        print_error("got  %s\nwant %s\n", g, w);
        free(want);
        fail();
    }
    free(want);
}

static void hex16(const char *hex, uint8_t *out, size_t cap)
{
    size_t n;
    uint8_t *b = tu_hex(hex, &n);
    assert_int_equal(n, cap);
    memcpy(out, b, n);
    free(b);
}

static void derive(ea_scp03_session *s, uint32_t version)
{
    uint8_t enc[16], mac[16], hc[8], cc[8];
    hex16(ENC_HEX, enc, 16);
    hex16(MAC_HEX, mac, 16);
    hex16(HC_HEX, hc, 8);
    hex16(CC_HEX, cc, 8);
    assert_int_equal(ea_scp03_derive(NULL, enc, mac, hc, cc, version, s), EA_OK);
}

/* A host and a card session after a successful EXTERNAL AUTHENTICATE. */
static void pair2(ea_scp03_session *host, uint32_t host_version, ea_scp03_session *card,
                  uint32_t card_version)
{
    uint8_t ea[32];
    size_t n = sizeof ea;
    derive(host, host_version);
    derive(card, card_version);
    assert_int_equal(ea_scp03_ext_auth_cmd(host, ea, &n), EA_OK);
    assert_int_equal(ea_scp03_ext_auth_verify(card, ea, n), EA_OK);
}

static void pair(ea_scp03_session *host, ea_scp03_session *card, uint32_t version)
{
    pair2(host, version, card, version);
}

/* wrap/unwrap through hex; returns the output length. */
typedef ea_err (*xform_fn)(ea_scp03_session *, const uint8_t *, size_t, uint8_t *, size_t *);

static size_t xform_hex(xform_fn f, ea_scp03_session *s, const char *in_hex, uint8_t *out,
                        size_t cap)
{
    size_t n, on = cap;
    uint8_t *in = tu_hex(in_hex, &n);
    assert_int_equal(f(s, in, n, out, &on), EA_OK);
    free(in);
    return on;
}

static bool contains(const uint8_t *hay, size_t hn, const uint8_t *needle, size_t nn)
{
    for (size_t i = 0; i + nn <= hn; i++)
        if (memcmp(hay + i, needle, nn) == 0)
            return true;
    return false;
}

/* ---- §7.8 vector --------------------------------------------------------------------- */

static void test_vector_keys(void **state)
{
    (void)state;
    ea_scp03_session s;
    derive(&s, V72);
    expect_hex(s.s_enc, 16, "F2DEFB2F1D8CC77D8AE9F6648C3093C5");
    expect_hex(s.s_mac, 16, "6A204F12B8E5BDCAFFD6209FC72ED314");
    expect_hex(s.s_rmac, 16, "339D3929CF1C746C2829B0553859C2F7");
    expect_hex(s.card_cryptogram, 8, "04FEFC33ADB56750");
    expect_hex(s.host_cryptogram, 8, "BBCA772C1B5EE35B");
    assert_true(s.always_increment);
    assert_false(s.authenticated);

    uint8_t c[8];
    hex16("04FEFC33ADB56750", c, 8);
    assert_int_equal(ea_scp03_check_card_cryptogram(&s, c), EA_OK);
    hex16("BBCA772C1B5EE35B", c, 8);
    assert_int_equal(ea_scp03_check_host_cryptogram(&s, c), EA_OK);
    for (int bit = 0; bit < 64; bit++) {
        hex16("04FEFC33ADB56750", c, 8);
        c[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(ea_scp03_check_card_cryptogram(&s, c), EA_ERR_AUTH);
        hex16("BBCA772C1B5EE35B", c, 8);
        c[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(ea_scp03_check_host_cryptogram(&s, c), EA_ERR_AUTH);
    }
    ea_scp03_session s31;
    derive(&s31, V31);
    assert_false(s31.always_increment);
    ea_scp03_wipe(&s);
    ea_scp03_wipe(&s31);
}

static void test_init_update(void **state)
{
    (void)state;
    uint8_t hc[8], cmd[16];
    size_t n = sizeof cmd;
    hex16(HC_HEX, hc, 8);
    assert_int_equal(ea_scp03_init_update_cmd(EA_SCP03_KEY_VERSION, hc, cmd, &n), EA_OK);
    expect_hex(cmd, n, "80 50 0B 00 08 11 22 33 44 55 66 77 88");
    n = 12;
    assert_int_equal(ea_scp03_init_update_cmd(EA_SCP03_KEY_VERSION, hc, cmd, &n),
                     EA_ERR_BUF_TOO_SMALL);
    assert_int_equal(n, 13);

    size_t rn;
    uint8_t *rsp = tu_hex("00 00 00 00 00 00 00 00 00 00 0B 03 70 01 02 03 04 05 06 07 08 04 FE FC "
                          "33 AD B5 67 50 90 00",
                          &rn);
    assert_int_equal(rn, 31);
    ea_scp03_iu_rsp iu;
    assert_int_equal(ea_scp03_parse_init_update_rsp(rsp, rn, &iu), EA_OK);
    expect_hex(iu.key_div, 10, "00000000000000000000");
    expect_hex(iu.key_info, 3, "0B0370");
    expect_hex(iu.card_challenge, 8, CC_HEX);
    expect_hex(iu.card_cryptogram, 8, "04FEFC33ADB56750");
    assert_false(iu.has_seq);

    /* the host derives from the parsed response and accepts the card's cryptogram */
    ea_scp03_session s;
    uint8_t enc[16], mac[16];
    hex16(ENC_HEX, enc, 16);
    hex16(MAC_HEX, mac, 16);
    assert_int_equal(ea_scp03_derive(NULL, enc, mac, hc, iu.card_challenge, V72, &s), EA_OK);
    assert_int_equal(ea_scp03_check_card_cryptogram(&s, iu.card_cryptogram), EA_OK);
    ea_scp03_wipe(&s);

    /* every shorter prefix, a wrong SW, a 3-byte sequence counter */
    for (size_t k = 0; k < rn; k++) {
        ea_err e = ea_scp03_parse_init_update_rsp(rsp, k, &iu);
        assert_true(e == EA_ERR_MALFORMED || e == EA_ERR_CARD);
    }
    rsp[rn - 2] = 0x6A;
    rsp[rn - 1] = 0x88;
    assert_int_equal(ea_scp03_parse_init_update_rsp(rsp, rn, &iu), EA_ERR_CARD);
    free(rsp);
    rsp = tu_hex("00000000000000000000 0B0370 0102030405060708 04FEFC33ADB56750 000005 9000", &rn);
    assert_int_equal(ea_scp03_parse_init_update_rsp(rsp, rn, &iu), EA_OK);
    assert_true(iu.has_seq);
    expect_hex(iu.seq, 3, "000005");
    free(rsp);
}

static void test_ext_auth(void **state)
{
    (void)state;
    ea_scp03_session host, card, saved;
    uint8_t ea[32];
    size_t n = sizeof ea;

    derive(&host, V72);
    derive(&card, V72);
    assert_int_equal(ea_scp03_ext_auth_cmd(&host, ea, &n), EA_OK);
    expect_hex(ea, n, "84 82 33 00 10 BB CA 77 2C 1B 5E E3 5B D7 86 52 E7 21 9C 7A B4");
    expect_hex(host.mcv, 16, "D78652E7219C7AB4585BCAB50CF17757");
    expect_hex(host.counter, 16, "00000000000000000000000000000001");
    assert_true(host.authenticated);

    /* card: every single-bit flip refused, state untouched */
    saved = card;
    for (size_t bit = 0; bit < n * 8; bit++) {
        ea[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ea_err e = ea_scp03_ext_auth_verify(&card, ea, n);
        assert_true(bit < 40 ? e == EA_ERR_MALFORMED : e == EA_ERR_AUTH);
        assert_memory_equal(&card, &saved, sizeof card);
        ea[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(ea_scp03_ext_auth_verify(&card, ea, n - 1), EA_ERR_MALFORMED);
    assert_int_equal(ea_scp03_ext_auth_verify(&card, ea, n), EA_OK);
    assert_true(card.authenticated);
    expect_hex(card.mcv, 16, "D78652E7219C7AB4585BCAB50CF17757");
    expect_hex(card.counter, 16, "00000000000000000000000000000001");

    /* ICVs for counter 1 */
    uint8_t icv[16];
    assert_int_equal(ea_scp03_icv(&host, host.counter, false, icv), EA_OK);
    expect_hex(icv, 16, "33DCD1C2055778DD51D5D64579C59C07");
    assert_int_equal(ea_scp03_icv(&host, host.counter, true, icv), EA_OK);
    expect_hex(icv, 16, "D6FF9E65DBC6F20AAD21B1702CC6D6BD");
    ea_scp03_wipe(&host);
    ea_scp03_wipe(&card);
}

/* The vector through both code paths: contexts made per operation, and the
 * keyed contexts of ea_scp03_accelerate. */
static void vector_session(bool accel)
{
    ea_scp03_session host, card;
    uint8_t out[256];
    size_t n;

    pair(&host, &card, V72);
    if (accel) {
        assert_int_equal(ea_scp03_accelerate(&host), EA_OK);
        assert_int_equal(ea_scp03_accelerate(&card), EA_OK);
        assert_non_null(host.accel);
    }
    /* 1st command, counter 1 */
    n = xform_hex(ea_scp03_wrap_command, &host, CMD1_PLAIN, out, sizeof out);
    expect_hex(out, n, CMD1_WRAP);
    n = xform_hex(ea_scp03_unwrap_command, &card, CMD1_WRAP, out, sizeof out);
    expect_hex(out, n, CMD1_PLAIN);
    assert_memory_equal(host.mcv, card.mcv, 16);
    expect_hex(card.counter, 16, "00000000000000000000000000000002");
    expect_hex(card.rsp_counter, 16, "00000000000000000000000000000001");
    n = xform_hex(ea_scp03_wrap_response, &card, RSP1_PLAIN, out, sizeof out);
    expect_hex(out, n, RSP1_WRAP);
    n = xform_hex(ea_scp03_unwrap_response, &host, RSP1_WRAP, out, sizeof out);
    expect_hex(out, n, RSP1_PLAIN);

    /* 2nd command, counter 2; its response has no data */
    n = xform_hex(ea_scp03_wrap_command, &host, CMD2_PLAIN, out, sizeof out);
    expect_hex(out, n, CMD2_WRAP);
    n = xform_hex(ea_scp03_unwrap_command, &card, CMD2_WRAP, out, sizeof out);
    expect_hex(out, n, CMD2_PLAIN);
    n = xform_hex(ea_scp03_wrap_response, &card, "90 00", out, sizeof out);
    expect_hex(out, n, RSP2_WRAP);
    n = xform_hex(ea_scp03_unwrap_response, &host, RSP2_WRAP, out, sizeof out);
    expect_hex(out, n, "90 00");
    expect_hex(host.counter, 16, "00000000000000000000000000000003");
    assert_memory_equal(&host.counter, &card.counter, 16);
    assert_memory_equal(host.mcv, card.mcv, 16);

    /* responses without a pending command are refused */
    n = sizeof out;
    uint8_t sw[2] = { 0x90, 0x00 };
    assert_int_equal(ea_scp03_wrap_response(&card, sw, 2, out, &n), EA_ERR_CONDITIONS);
    ea_scp03_wipe(&host);
    ea_scp03_wipe(&card);
}

static void test_vector_session(void **state)
{
    (void)state;
    vector_session(false);
}

static void test_vector_session_accelerated(void **state)
{
    (void)state;
    vector_session(true);
}

static void test_extended_form(void **state)
{
    (void)state;
    ea_scp03_session host, card;
    uint8_t out[256], back[256];
    size_t n, bn;

    pair(&host, &card, V72);
    n = xform_hex(ea_scp03_wrap_command, &host, EXT_PLAIN, out, sizeof out);
    assert_int_equal(n, 7 + 16 + 8 + 2);
    expect_hex(out, 7, "84 02 00 00 00 00 18");
    expect_hex(out + n - 2, 2, "00 00");
    bn = sizeof back;
    assert_int_equal(ea_scp03_unwrap_command(&card, out, n, back, &bn), EA_OK);
    expect_hex(back, bn, EXT_PLAIN);
    n = xform_hex(ea_scp03_wrap_response, &card, "01 02 03 90 00", out, sizeof out);
    assert_int_equal(n, 16 + 8 + 2);
    bn = sizeof back;
    assert_int_equal(ea_scp03_unwrap_response(&host, out, n, back, &bn), EA_OK);
    expect_hex(back, bn, "01 02 03 90 00");
    ea_scp03_wipe(&host);
    ea_scp03_wipe(&card);
}


/* ---- refusals ------------------------------------------------------------------------ */

/* The card refuses frame f (len n): EA_ERR_AUTH, nothing returned, state unchanged,
 * and the plaintext `secret` nowhere in the output buffer. */
static void expect_refused(ea_scp03_session *card, const uint8_t *f, size_t n,
                           const uint8_t *secret, size_t sn)
{
    ea_scp03_session saved = *card;
    uint8_t out[512];
    size_t on = sizeof out;
    memset(out, 0xAA, sizeof out);
    assert_int_equal(ea_scp03_unwrap_command(card, f, n, out, &on), EA_ERR_AUTH);
    assert_int_equal(on, 0);
    assert_false(contains(out, sizeof out, secret, sn));
    assert_memory_equal(card, &saved, sizeof saved);
}

static void test_bit_flips(void **state)
{
    (void)state;
    ea_scp03_session host, card;
    uint8_t w[256], out[256];
    size_t wn = sizeof w, on, pn;
    uint8_t *plain = tu_hex(CMD1_PLAIN, &pn);

    pair(&host, &card, V72);
    assert_int_equal(ea_scp03_wrap_command(&host, plain, pn, w, &wn), EA_OK);
    for (size_t bit = 0; bit < wn * 8; bit++) {
        w[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        expect_refused(&card, w, wn, plain + 5, pn - 5);
        w[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* the untouched frame still goes through afterwards */
    on = sizeof out;
    assert_int_equal(ea_scp03_unwrap_command(&card, w, wn, out, &on), EA_OK);
    assert_memory_equal(out, plain, pn);
    free(plain);

    /* extended form: every bit up to the MAC (Le 00 00 after it is not MACed, §7.4) */
    uint8_t sw[2] = { 0x90, 0x00 };
    on = sizeof out;
    assert_int_equal(ea_scp03_wrap_response(&card, sw, 2, out, &on), EA_OK);
    on = sizeof out;
    assert_int_equal(ea_scp03_unwrap_response(&host, out, 10, w, &on), EA_OK);
    plain = tu_hex(EXT_PLAIN, &pn);
    wn = sizeof w;
    assert_int_equal(ea_scp03_wrap_command(&host, plain, pn, w, &wn), EA_OK);
    for (size_t bit = 0; bit < (wn - 2) * 8; bit++) {
        w[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        expect_refused(&card, w, wn, plain + 7, 6);
        w[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    on = sizeof out;
    assert_int_equal(ea_scp03_unwrap_command(&card, w, wn, out, &on), EA_OK);
    expect_hex(out, on, EXT_PLAIN);
    free(plain);
    ea_scp03_wipe(&host);
    ea_scp03_wipe(&card);
}

static void test_truncation(void **state)
{
    (void)state;
    ea_scp03_session host, card;
    uint8_t w[256], out[256];
    size_t wn = sizeof w, on, pn;
    uint8_t *plain = tu_hex(CMD1_PLAIN, &pn);

    pair(&host, &card, V72);
    assert_int_equal(ea_scp03_wrap_command(&host, plain, pn, w, &wn), EA_OK);
    for (size_t k = 0; k < wn; k++)
        expect_refused(&card, w, k, plain + 5, pn - 5);
    /* and a trailing extra byte that is not a valid Le position */
    w[wn] = 0x00;
    w[wn + 1] = 0x00;
    expect_refused(&card, w, wn + 2, plain + 5, pn - 5);
    on = sizeof out;
    assert_int_equal(ea_scp03_unwrap_command(&card, w, wn, out, &on), EA_OK);
    free(plain);

    /* the extended command: every prefix that cuts into header, Lc, data or MAC */
    uint8_t sw[2] = { 0x90, 0x00 };
    on = sizeof out;
    assert_int_equal(ea_scp03_wrap_response(&card, sw, 2, out, &on), EA_OK);
    on = sizeof out;
    assert_int_equal(ea_scp03_unwrap_response(&host, out, 10, w, &on), EA_OK);
    plain = tu_hex(EXT_PLAIN, &pn);
    wn = sizeof w;
    assert_int_equal(ea_scp03_wrap_command(&host, plain, pn, w, &wn), EA_OK);
    for (size_t k = 0; k < wn - 2; k++)
        expect_refused(&card, w, k, plain + 7, 6);
    /* one byte of Le is no valid extended frame */
    expect_refused(&card, w, wn - 1, plain + 7, 6);
    free(plain);
    ea_scp03_wipe(&host);
    ea_scp03_wipe(&card);
}

static void test_replay_and_reorder(void **state)
{
    (void)state;
    ea_scp03_session host, card;
    uint8_t c1[64], c2[64], out[256];
    size_t n1 = sizeof c1, n2 = sizeof c2, on, p1n, p2n;
    uint8_t *p1 = tu_hex(CMD1_PLAIN, &p1n), *p2 = tu_hex(CMD2_PLAIN, &p2n);

    pair(&host, &card, V72);
    assert_int_equal(ea_scp03_wrap_command(&host, p1, p1n, c1, &n1), EA_OK);
    assert_int_equal(ea_scp03_wrap_command(&host, p2, p2n, c2, &n2), EA_OK);
    /* reordered: 2nd before 1st */
    expect_refused(&card, c2, n2, p2 + 5, p2n - 5);
    on = sizeof out;
    assert_int_equal(ea_scp03_unwrap_command(&card, c1, n1, out, &on), EA_OK);
    expect_hex(out, on, CMD1_PLAIN);
    /* replayed 1st after success */
    expect_refused(&card, c1, n1, p1 + 5, p1n - 5);
    on = sizeof out;
    assert_int_equal(ea_scp03_unwrap_command(&card, c2, n2, out, &on), EA_OK);
    expect_hex(out, on, CMD2_PLAIN);
    /* replay of both now */
    expect_refused(&card, c1, n1, p1 + 5, p1n - 5);
    expect_refused(&card, c2, n2, p2 + 5, p2n - 5);
    /* replaying EXTERNAL AUTHENTICATE does not rewind the session */
    uint8_t ea[32];
    size_t ean = sizeof ea;
    ea_scp03_session h2;
    derive(&h2, V72);
    assert_int_equal(ea_scp03_ext_auth_cmd(&h2, ea, &ean), EA_OK);
    assert_int_equal(ea_scp03_ext_auth_verify(&card, ea, ean), EA_ERR_CONDITIONS);
    expect_refused(&card, c1, n1, p1 + 5, p1n - 5);
    ean = sizeof ea;
    assert_int_equal(ea_scp03_ext_auth_cmd(&h2, ea, &ean), EA_ERR_CONDITIONS);
    assert_int_equal(ean, 0);
    ea_scp03_wipe(&h2);
    free(p1);
    free(p2);

    /* a card that has not authenticated refuses everything */
    ea_scp03_session fresh;
    derive(&fresh, V72);
    on = sizeof out;
    assert_int_equal(ea_scp03_unwrap_command(&fresh, c1, n1, out, &on), EA_ERR_CONDITIONS);
    on = sizeof out;
    assert_int_equal(ea_scp03_wrap_command(&fresh, c1, n1, out, &on), EA_ERR_CONDITIONS);
    ea_scp03_wipe(&fresh);
    ea_scp03_wipe(&host);
    ea_scp03_wipe(&card);
}

static void test_tampered_response(void **state)
{
    (void)state;
    ea_scp03_session host, card, saved;
    uint8_t out[256];
    size_t n, rn, on;
    uint8_t *rsp = tu_hex(RSP1_WRAP, &rn);
    const uint8_t secret[3] = { 0x41, 0x01, 0x02 };

    pair(&host, &card, V72);
    n = xform_hex(ea_scp03_wrap_command, &host, CMD1_PLAIN, out, sizeof out);
    (void)n;
    saved = host;
    for (size_t bit = 0; bit < rn * 8; bit++) {
        rsp[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        on = sizeof out;
        memset(out, 0xAA, sizeof out);
        ea_err e = ea_scp03_unwrap_response(&host, rsp, rn, out, &on);
        if (bit < (rn - 2) * 8) {
            assert_int_equal(e, EA_ERR_AUTH);
            assert_int_equal(on, 0);
            assert_memory_equal(&host, &saved, sizeof saved);
        } else {
            /* the SW is no longer 9000: passed through bare, unverified (§7.6), no data */
            assert_int_equal(e, EA_OK);
            assert_int_equal(on, 2);
            assert_memory_equal(out, rsp + rn - 2, 2);
            host = saved;
        }
        assert_false(contains(out, sizeof out, secret, sizeof secret));
        rsp[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* every prefix: refused, or a bare non-9000 SW; never data */
    for (size_t k = 0; k < rn; k++) {
        on = sizeof out;
        memset(out, 0xAA, sizeof out);
        ea_err e = ea_scp03_unwrap_response(&host, rsp, k, out, &on);
        if (e == EA_OK) {
            assert_int_equal(on, 2);
            assert_false(out[0] == 0x90 && out[1] == 0x00);
            host = saved;
        } else {
            assert_int_equal(e, EA_ERR_AUTH);
            assert_int_equal(on, 0);
        }
        assert_false(contains(out, sizeof out, secret, sizeof secret));
    }
    on = sizeof out;
    assert_int_equal(ea_scp03_unwrap_response(&host, rsp, rn, out, &on), EA_OK);
    expect_hex(out, on, RSP1_PLAIN);
    /* the same response again: nothing pending any more */
    on = sizeof out;
    assert_int_equal(ea_scp03_unwrap_response(&host, rsp, rn, out, &on), EA_ERR_CONDITIONS);
    /* replayed under the next command: MCV moved on */
    n = xform_hex(ea_scp03_wrap_command, &host, CMD2_PLAIN, out, sizeof out);
    on = sizeof out;
    assert_int_equal(ea_scp03_unwrap_response(&host, rsp, rn, out, &on), EA_ERR_AUTH);
    free(rsp);
    ea_scp03_wipe(&host);
    ea_scp03_wipe(&card);
}

/* ---- counter rule (§7.5), error SW, sizes ------------------------------------------ */

/* One command/response exchange between host and card; checks both ends agree. */
static void exchange(ea_scp03_session *host, ea_scp03_session *card, const char *cmd_hex,
                     const char *rsp_hex)
{
    uint8_t w[1024], p[1024];
    size_t wn, pn, in_n;
    uint8_t *in = tu_hex(cmd_hex, &in_n);

    wn = sizeof w;
    assert_int_equal(ea_scp03_wrap_command(host, in, in_n, w, &wn), EA_OK);
    pn = sizeof p;
    assert_int_equal(ea_scp03_unwrap_command(card, w, wn, p, &pn), EA_OK);
    assert_int_equal(pn, in_n);
    assert_memory_equal(p, in, in_n);
    free(in);
    in = tu_hex(rsp_hex, &in_n);
    wn = sizeof w;
    assert_int_equal(ea_scp03_wrap_response(card, in, in_n, w, &wn), EA_OK);
    pn = sizeof p;
    assert_int_equal(ea_scp03_unwrap_response(host, w, wn, p, &pn), EA_OK);
    if (in[in_n - 2] == 0x90 && in[in_n - 1] == 0x00) {
        assert_int_equal(pn, in_n);
        assert_memory_equal(p, in, in_n);
    } else {
        assert_int_equal(wn, 2);
        assert_int_equal(pn, 2);
        assert_memory_equal(p, in + in_n - 2, 2);
    }
    free(in);
    assert_memory_equal(host->counter, card->counter, 16);
    assert_memory_equal(host->mcv, card->mcv, 16);
}

static void test_counter_rule(void **state)
{
    (void)state;
    ea_scp03_session host, card;

    /* 7.2: every command counts */
    pair(&host, &card, V72);
    exchange(&host, &card, "80 04 00 20", "01 02 03 90 00");
    expect_hex(card.rsp_counter, 16, "00000000000000000000000000000001");
    expect_hex(card.counter, 16, "00000000000000000000000000000002");
    exchange(&host, &card, "80 04 00 20 00", "90 00");
    expect_hex(card.counter, 16, "00000000000000000000000000000003");
    exchange(&host, &card, CMD1_PLAIN, "6A 80");
    expect_hex(card.counter, 16, "00000000000000000000000000000004");

    /* 3.1: only commands with data count; data-less responses use counter - 1 */
    pair(&host, &card, V31);
    exchange(&host, &card, "80 04 00 20", "01 02 03 90 00");
    expect_hex(card.rsp_counter, 16, "00000000000000000000000000000000");
    expect_hex(card.counter, 16, "00000000000000000000000000000001");
    exchange(&host, &card, CMD1_PLAIN, RSP1_PLAIN);
    expect_hex(card.rsp_counter, 16, "00000000000000000000000000000001");
    expect_hex(card.counter, 16, "00000000000000000000000000000002");
    exchange(&host, &card, "80 04 00 20 00", "AA BB 90 00");
    expect_hex(card.rsp_counter, 16, "00000000000000000000000000000001");
    expect_hex(card.counter, 16, "00000000000000000000000000000002");
    exchange(&host, &card, CMD2_PLAIN, "69 85");
    expect_hex(card.counter, 16, "00000000000000000000000000000003");

    /* a host that assumes 7.2 against a 3.1 card: in step on data commands, but the
     * data-less response then uses another ICV and never yields the card's data */
    ea_scp03_session h72, c31;
    uint8_t w[128], p[128];
    size_t wn, pn;
    pair2(&h72, V72, &c31, V31);
    exchange(&h72, &c31, CMD1_PLAIN, RSP1_PLAIN); /* data: both agree */
    wn = sizeof w;
    uint8_t cmd[4] = { 0x80, 0x04, 0x00, 0x20 };
    assert_int_equal(ea_scp03_wrap_command(&h72, cmd, 4, w, &wn), EA_OK);
    pn = sizeof p;
    assert_int_equal(ea_scp03_unwrap_command(&c31, w, wn, p, &pn), EA_OK);
    uint8_t r[5] = { 0x01, 0x02, 0x03, 0x90, 0x00 };
    wn = sizeof w;
    assert_int_equal(ea_scp03_wrap_response(&c31, r, 5, w, &wn), EA_OK);
    pn = sizeof p;
    /* R-MAC does not cover the ICV, so the MAC passes but the padding is garbage,
     * or the plaintext differs: either way not the card's data */
    ea_err e = ea_scp03_unwrap_response(&h72, w, wn, p, &pn);
    assert_true(e == EA_ERR_AUTH || (e == EA_OK && memcmp(p, r, 5) != 0));
    ea_scp03_wipe(&h72);
    ea_scp03_wipe(&c31);
    ea_scp03_wipe(&host);
    ea_scp03_wipe(&card);
}

static void test_sizes_and_forms(void **state)
{
    (void)state;
    ea_scp03_session host, card;
    uint8_t plain[400], w[512], back[512];
    size_t wn, bn, n;

    pair(&host, &card, V72);
    /* short input that grows past 255 after padding + MAC: extended Lc' */
    uint8_t body[240];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (uint8_t)(i * 7);
    n = tu_apdu(plain, sizeof plain, 0x80, 0x01, 0x02, 0x03, body, sizeof body, 0);
    assert_int_equal(n, 245);
    wn = sizeof w;
    assert_int_equal(ea_scp03_wrap_command(&host, plain, n, w, &wn), EA_OK);
    assert_int_equal(wn, 4 + 3 + 256 + 8);
    expect_hex(w, 7, "84 01 02 03 00 01 08");
    bn = 10;
    assert_int_equal(ea_scp03_unwrap_command(&card, w, wn, back, &bn), EA_ERR_BUF_TOO_SMALL);
    assert_int_equal(bn, wn);
    bn = sizeof back;
    assert_int_equal(ea_scp03_unwrap_command(&card, w, wn, back, &bn), EA_OK);
    /* the card hands back the wire's (extended) form */
    assert_int_equal(bn, 4 + 3 + 240);
    expect_hex(back, 7, "80 01 02 03 00 00 F0");
    assert_memory_equal(back + 7, body, sizeof body);
    bn = sizeof back;
    uint8_t sw[2] = { 0x90, 0x00 };
    assert_int_equal(ea_scp03_wrap_response(&card, sw, 2, back, &bn), EA_OK);
    wn = sizeof w;
    assert_int_equal(ea_scp03_unwrap_response(&host, back, bn, w, &wn), EA_OK);

    /* 15, 16, 17-byte data: padding adds a full block at 16 */
    for (size_t len = 1; len <= 33; len++) {
        char hex[2 * 64 + 16];
        int o = snprintf(hex, sizeof hex, "80 11 22 33 %02zX", len);
        for (size_t i = 0; i < len; i++)
            o += snprintf(hex + o, sizeof hex - (size_t)o, "%02zX", i);
        exchange(&host, &card, hex, "90 00");
    }
    /* output too small on wrap: size needed, state untouched */
    ea_scp03_session saved = host;
    uint8_t *p1 = tu_hex(CMD1_PLAIN, &n);
    wn = 10;
    assert_int_equal(ea_scp03_wrap_command(&host, p1, n, w, &wn), EA_ERR_BUF_TOO_SMALL);
    assert_int_equal(wn, 4 + 1 + 16 + 8);
    assert_memory_equal(&host, &saved, sizeof saved);
    free(p1);
    /* malformed plain APDUs */
    uint8_t bad[8] = { 0x80, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 };
    wn = sizeof w;
    assert_int_equal(ea_scp03_wrap_command(&host, bad, 3, w, &wn), EA_ERR_MALFORMED);
    wn = sizeof w;
    assert_int_equal(ea_scp03_wrap_command(&host, bad, 6, w, &wn), EA_ERR_MALFORMED);
    bad[4] = 0x05;
    wn = sizeof w;
    assert_int_equal(ea_scp03_wrap_command(&host, bad, 8, w, &wn), EA_ERR_MALFORMED);

    ea_scp03_wipe(&host);
    for (size_t i = 0; i < sizeof host; i++)
        assert_int_equal(((const uint8_t *)&host)[i], 0);
    ea_scp03_wipe(NULL);
    ea_scp03_wipe(&card);
}

/* Random frames (fixed-seed xorshift) and the odd nano shape 80 xx xx xx 00 00:
 * refused without a crash or a sanitizer report. */
static void test_random_frames(void **state)
{
    (void)state;
    ea_scp03_session host, card, saved;
    uint8_t f[600], out[700];
    uint32_t x = 0x12345678u;
    size_t on;

    pair(&host, &card, V72);
    uint8_t odd[6] = { 0x84, 0x04, 0x00, 0x20, 0x00, 0x00 };
    expect_refused(&card, odd, sizeof odd, odd, 1 /* any byte: nothing is output */);
    for (int it = 0; it < 3000; it++) {
        size_t n;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        n = x % sizeof f;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            f[i] = (uint8_t)x;
        }
        if (n > 4 && (it & 1)) { /* a plausible short or extended Lc */
            if (it & 2 && n >= 7) {
                f[4] = 0;
                f[5] = (uint8_t)((n - 7) >> 8);
                f[6] = (uint8_t)(n - 7);
            } else {
                f[4] = (uint8_t)(n - 5);
            }
        }
        saved = card;
        on = sizeof out;
        assert_int_equal(ea_scp03_unwrap_command(&card, f, n, out, &on), EA_ERR_AUTH);
        assert_int_equal(on, 0);
        assert_memory_equal(&card, &saved, sizeof saved);
    }
    /* random responses to a pending command: refused or a bare non-9000 SW */
    on = xform_hex(ea_scp03_wrap_command, &host, CMD1_PLAIN, out, sizeof out);
    saved = host;
    for (int it = 0; it < 3000; it++) {
        size_t n;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        n = x % 100;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            f[i] = (uint8_t)x;
        }
        if (n >= 2 && (it & 1)) {
            f[n - 2] = 0x90;
            f[n - 1] = 0x00;
        }
        on = sizeof out;
        ea_err e = ea_scp03_unwrap_response(&host, f, n, out, &on);
        if (e == EA_OK) {
            assert_int_equal(on, 2);
            assert_false(out[0] == 0x90 && out[1] == 0x00);
        } else {
            assert_int_equal(e, EA_ERR_AUTH);
            assert_int_equal(on, 0);
        }
        host = saved;
    }
    ea_scp03_wipe(&saved);
    ea_scp03_wipe(&host);
    ea_scp03_wipe(&card);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_keys),
        cmocka_unit_test(test_init_update),
        cmocka_unit_test(test_ext_auth),
        cmocka_unit_test(test_vector_session),
        cmocka_unit_test(test_vector_session_accelerated),
        cmocka_unit_test(test_extended_form),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_replay_and_reorder),
        cmocka_unit_test(test_tampered_response),
        cmocka_unit_test(test_counter_rule),
        cmocka_unit_test(test_sizes_and_forms),
        cmocka_unit_test(test_random_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
