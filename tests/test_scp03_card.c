/* Platform SCP03, card side (emu/sd.c + the wrapping in emu/dispatch.c):
 * the spec's §7.8 worked vector reproduced byte for byte by the emulated
 * chip; tampered, replayed, reordered and truncated frames refused without
 * effect; the SetPlatformSCPRequest REQUIRED lock, persistent and fail
 * closed. */
#define _GNU_SOURCE /* memmem */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/scp03.h"
#include "common/util.h"
#include "edgeauth/se05x.h"
#include "testutil.h"

/* nano's dummy keys (spec §7.2), the keys of the §7.8 vector. */
static const char *const dummy_keys = "ENC ABCDABCDABCDABCDABCDABCDABCD0001\n"
                                      "MAC ABCDABCDABCDABCDABCDABCDABCD0002\n"
                                      "DEK ABCDABCDABCDABCDABCDABCDABCD0003\n";

typedef struct fix {
    char *dir;
    char keyfile[600];
    ea_emu *emu;
    ea_emu_chan *ch;
    ea_scp03_keys keys;
} fix;

static void fix_open(fix *f)
{
    char err[256] = "";
    ea_emu_opts o = { .allow_factory_reset = 1 };
    if (ea_emu_open(f->dir, &o, &f->emu, err, sizeof err) != EA_OK)
        fail_msg("open: %s", err);
    assert_int_equal(ea_emu_chan_open(f->emu, &f->ch), EA_OK);
}

static void fix_close(fix *f)
{
    ea_emu_close(f->emu);
    f->emu = NULL;
    f->ch = NULL;
}

static int setup(void **state)
{
    fix *f = calloc(1, sizeof *f);
    char err[256] = "";
    f->dir = tu_tmpdir("scpcard");
    snprintf(f->keyfile, sizeof f->keyfile, "%s.keys", f->dir);
    assert_int_equal(ea_file_write_atomic(f->keyfile, dummy_keys, strlen(dummy_keys), 0600), EA_OK);
    assert_int_equal(ea_scp03_keys_load(f->keyfile, &f->keys, err, sizeof err), EA_OK);
    ea_emu_init_opts io = { .scp03_keys = f->keyfile };
    if (ea_emu_init(f->dir, &io, err, sizeof err) != EA_OK)
        fail_msg("init: %s", err);
    fix_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix *f = *state;
    fix_close(f);
    tu_rmrf(f->dir);
    unlink(f->keyfile);
    free(f->dir);
    free(f);
    return 0;
}

/* Exchange; the whole R-APDU (data and SW) into r. */
static size_t xfer(ea_emu_chan *ch, const uint8_t *c, size_t cl, uint8_t *r, size_t cap)
{
    size_t rl = cap;
    assert_int_equal(ea_emu_transceive(ch, c, cl, r, &rl), EA_OK);
    assert_true(rl >= 2);
    return rl;
}

static uint16_t sw_of(const uint8_t *r, size_t rl)
{
    return (uint16_t)(r[rl - 2] << 8 | r[rl - 1]);
}

static void expect_hex(const uint8_t *got, size_t n, const char *hex)
{
    size_t en;
    uint8_t *e = tu_hex(hex, &en);
    if (n != en || memcmp(got, e, n) != 0) {
        char g[2 * 600 + 1];
        ea_hex_encode(got, n < 600 ? n : 600, g);
        fail_msg("got %s\nwant %s", g, hex);
    }
    free(e);
}

static uint16_t xfer_hex(ea_emu_chan *ch, const char *hex, uint8_t *r, size_t cap, size_t *rl)
{
    size_t n;
    uint8_t *a = tu_hex(hex, &n);
    *rl = xfer(ch, a, n, r, cap);
    free(a);
    return sw_of(r, *rl);
}

/* Host side of a handshake (common/scp03.c plays the host). */
static void handshake(fix *f, ea_scp03_session *hs)
{
    uint8_t hc[8] = { 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80 }, c[32], r[64];
    size_t cl = sizeof c, rl;
    ea_scp03_iu_rsp iu;
    assert_int_equal(ea_scp03_init_update_cmd(EA_SCP03_KEY_VERSION, hc, c, &cl), EA_OK);
    rl = xfer(f->ch, c, cl, r, sizeof r);
    assert_int_equal(sw_of(r, rl), 0x9000);
    assert_int_equal(ea_scp03_parse_init_update_rsp(r, rl, &iu), EA_OK);
    assert_int_equal(ea_scp03_derive(NULL, f->keys.enc, f->keys.mac, hc, iu.card_challenge,
                                     0x07020000u, hs),
                     EA_OK);
    assert_int_equal(ea_scp03_check_card_cryptogram(hs, iu.card_cryptogram), EA_OK);
    cl = sizeof c;
    assert_int_equal(ea_scp03_ext_auth_cmd(hs, c, &cl), EA_OK);
    rl = xfer(f->ch, c, cl, r, sizeof r);
    assert_int_equal(sw_of(r, rl), 0x9000);
    assert_int_equal(rl, 2);
}

/* Wrap plain (hex), send, unwrap. Returns the SW; the plain answer data in
 * out when given. */
static uint16_t secure(fix *f, ea_scp03_session *hs, const char *plain_hex, uint8_t *out, size_t *out_len)
{
    size_t pn, wl, rl, ul;
    uint8_t *p = tu_hex(plain_hex, &pn), w[600], r[EA_EMU_APDU_MAX], u[EA_EMU_APDU_MAX];
    wl = sizeof w;
    assert_int_equal(ea_scp03_wrap_command(hs, p, pn, w, &wl), EA_OK);
    free(p);
    rl = xfer(f->ch, w, wl, r, sizeof r);
    ul = sizeof u;
    assert_int_equal(ea_scp03_unwrap_response(hs, r, rl, u, &ul), EA_OK);
    if (out) {
        assert_true(*out_len >= ul - 2);
        memcpy(out, u, ul - 2);
        *out_len = ul - 2;
    }
    return sw_of(u, ul);
}

/* CheckObjectExists(id): 1 exists, 2 not (plain, on a chip without lock). */
#define EXISTS_CMD(idhex) "800400270641 04" idhex

/* ---- the worked vector ---------------------------------------------------------- */

static void test_vector_card_side(void **state)
{
    fix *f = *state;
    uint8_t r[128], cc[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    size_t rl;

    tu_select(f->ch);
    assert_int_equal(ea_emu_test_set_card_challenge(f->ch, cc), EA_OK);
    assert_int_equal(xfer_hex(f->ch, "80500B00081122334455667788", r, sizeof r, &rl), 0x9000);
    expect_hex(r, rl, "00000000000000000000 0B0370 0102030405060708 04FEFC33ADB56750 9000");
    assert_int_equal(xfer_hex(f->ch, "8482330010BBCA772C1B5EE35BD78652E7219C7AB4", r, sizeof r, &rl), 0x9000);
    expect_hex(r, rl, "9000");
    /* CheckObjectExists 7B000426 (absent): wrapped answer of the spec. */
    assert_int_equal(xfer_hex(f->ch, "8404002718E6669B97DB6D18708AB6D180B5A47159884D7139BC9B716B", r,
                              sizeof r, &rl),
                     0x9000);
    expect_hex(r, rl, "2078B15AD73A40BDC7EB8582E43F843D24153788B08B91D49000");
    /* WriteECKey 7B000426 P-256 (generate), counter 2. */
    assert_int_equal(xfer_hex(f->ch, "8401610018370BBC891A4FEC3BFC5C9A825E3A7D8E7E7B0E64D2804A77", r,
                              sizeof r, &rl),
                     0x9000);
    expect_hex(r, rl, "1EEA27FDB845BDD59000");
    /* It did what the plain command says: the key exists now. */
    ea_scp03_session hs;
    handshake(f, &hs);
    uint8_t d[8];
    size_t dn = sizeof d;
    assert_int_equal(secure(f, &hs, EXISTS_CMD("7B000426"), d, &dn), 0x9000);
    expect_hex(d, dn, "410101");
    ea_scp03_wipe(&hs);
}

/* The same handshake with the wrong key version, or no handshake at all. */
static void test_handshake_refusals(void **state)
{
    fix *f = *state;
    uint8_t r[128];
    size_t rl;
    tu_select(f->ch);
    assert_int_equal(xfer_hex(f->ch, "80500C00081122334455667788", r, sizeof r, &rl), 0x6A88);
    assert_int_equal(xfer_hex(f->ch, "80500B000411223344", r, sizeof r, &rl), 0x6700);
    /* EXTERNAL AUTHENTICATE without INITIALIZE UPDATE. */
    assert_int_equal(xfer_hex(f->ch, "8482330010BBCA772C1B5EE35BD78652E7219C7AB4", r, sizeof r, &rl), 0x6985);
    /* A wrapped command without a session. */
    assert_int_equal(xfer_hex(f->ch, "8404002718E6669B97DB6D18708AB6D180B5A47159884D7139BC9B716B", r,
                              sizeof r, &rl),
                     0x6982);
    assert_int_equal(rl, 2);
    /* A forged host cryptogram (keys not known): refused, session over. */
    assert_int_equal(xfer_hex(f->ch, "80500B00081122334455667788", r, sizeof r, &rl), 0x9000);
    assert_int_equal(xfer_hex(f->ch, "8482330010BBCA772C1B5EE35BD78652E7219C7AB4", r, sizeof r, &rl), 0x6982);
    /* Host with the wrong keys: the card's cryptogram does not verify. */
    uint8_t hc[8] = { 0 }, c[32];
    size_t cl = sizeof c;
    ea_scp03_iu_rsp iu;
    ea_scp03_keys wrong;
    ea_scp03_session hs;
    char err[200];
    assert_int_equal(ea_scp03_keys_load("default:SE050C1", &wrong, err, sizeof err), EA_OK);
    assert_int_equal(ea_scp03_init_update_cmd(EA_SCP03_KEY_VERSION, hc, c, &cl), EA_OK);
    rl = xfer(f->ch, c, cl, r, sizeof r);
    assert_int_equal(ea_scp03_parse_init_update_rsp(r, rl, &iu), EA_OK);
    assert_int_equal(ea_scp03_derive(NULL, wrong.enc, wrong.mac, hc, iu.card_challenge, 0x07020000u, &hs),
                     EA_OK);
    assert_int_equal(ea_scp03_check_card_cryptogram(&hs, iu.card_cryptogram), EA_ERR_AUTH);
    ea_scp03_wipe(&hs);
    ea_scp03_keys_wipe(&wrong);
}

/* ---- tampered, replayed, reordered, truncated ---------------------------------- */

/* WriteBinary 7B00BEEF, 4 bytes: a command with an effect to look for. */
#define WRITE_CMD "8001060010 41047B00BEEF 43020004 440411223344"

static bool object_exists(fix *f, const char *idhex)
{
    ea_scp03_session hs;
    uint8_t d[8];
    size_t dn = sizeof d;
    char cmd[64];
    handshake(f, &hs);
    snprintf(cmd, sizeof cmd, EXISTS_CMD("%s"), idhex);
    assert_int_equal(secure(f, &hs, cmd, d, &dn), 0x9000);
    ea_scp03_wipe(&hs);
    assert_int_equal(dn, 3);
    return d[2] == 0x01;
}

static size_t wrap_hex(ea_scp03_session *hs, const char *hex, uint8_t *w, size_t cap)
{
    size_t pn, wl = cap;
    uint8_t *p = tu_hex(hex, &pn);
    assert_int_equal(ea_scp03_wrap_command(hs, p, pn, w, &wl), EA_OK);
    free(p);
    return wl;
}

static void test_tampered_frames(void **state)
{
    fix *f = *state;
    uint8_t w[128], t[128], r[256];
    size_t wl, rl;
    unsigned refused = 0;

    tu_select(f->ch);
    ea_scp03_session hs;
    handshake(f, &hs);
    wl = wrap_hex(&hs, WRITE_CMD, w, sizeof w);
    ea_scp03_wipe(&hs);
    /* Every single-bit flip of the wrapped frame, each in a fresh session
     * whose state matches the one the frame was wrapped in. */
    for (size_t i = 0; i < wl; i++) {
        for (int b = 0; b < 8; b++) {
            if (i == 0 && (1 << b) == EA_CLA_SCP_MASK)
                continue; /* that one is simply a plain command: see below */
            handshake(f, &hs);
            ea_scp03_session copy = hs;
            uint8_t w2[128];
            size_t w2l = wrap_hex(&copy, WRITE_CMD, w2, sizeof w2);
            ea_scp03_wipe(&copy);
            memcpy(t, w2, w2l);
            t[i] ^= (uint8_t)(1 << b);
            rl = xfer(f->ch, t, w2l, r, sizeof r);
            uint16_t sw = sw_of(r, rl);
            assert_int_not_equal(sw, 0x9000);
            assert_int_equal(rl, 2); /* a bare SW: nothing decrypted comes back */
            refused++;
            ea_scp03_wipe(&hs);
        }
    }
    assert_false(object_exists(f, "7B00BEEF"));
    print_message("tampered: %u bit flips refused, nothing written\n", refused);
}

static void test_replay_reorder_truncate(void **state)
{
    fix *f = *state;
    uint8_t a[128], b[128], r[256];
    size_t al, bl, rl;
    ea_scp03_session hs;

    tu_select(f->ch);
    /* Replay: A accepted once, refused the second time (and the session
     * is over). */
    handshake(f, &hs);
    al = wrap_hex(&hs, EXISTS_CMD("7B000001"), a, sizeof a);
    rl = xfer(f->ch, a, al, r, sizeof r);
    assert_int_equal(sw_of(r, rl), 0x9000);
    rl = xfer(f->ch, a, al, r, sizeof r);
    assert_int_equal(sw_of(r, rl), 0x6982);
    assert_int_equal(rl, 2);
    ea_scp03_wipe(&hs);

    /* Replay into a new session: old frames mean nothing there. */
    handshake(f, &hs);
    rl = xfer(f->ch, a, al, r, sizeof r);
    assert_int_equal(sw_of(r, rl), 0x6982);
    ea_scp03_wipe(&hs);

    /* Reorder: A then B wrapped, B sent first. */
    handshake(f, &hs);
    al = wrap_hex(&hs, EXISTS_CMD("7B000001"), a, sizeof a);
    bl = wrap_hex(&hs, WRITE_CMD, b, sizeof b);
    rl = xfer(f->ch, b, bl, r, sizeof r);
    assert_int_equal(sw_of(r, rl), 0x6982);
    rl = xfer(f->ch, a, al, r, sizeof r);
    assert_int_equal(sw_of(r, rl), 0x6982); /* the session ended with B */
    ea_scp03_wipe(&hs);

    /* Truncated: every prefix, each in its own session. */
    for (size_t n = 0; n + 1 < bl; n++) {
        handshake(f, &hs);
        bl = wrap_hex(&hs, WRITE_CMD, b, sizeof b);
        rl = xfer(f->ch, b, n, r, sizeof r);
        assert_int_not_equal(sw_of(r, rl), 0x9000);
        assert_int_equal(rl, 2);
        ea_scp03_wipe(&hs);
    }
    /* A plain command inside a session: refused, and the session is over. */
    handshake(f, &hs);
    al = wrap_hex(&hs, EXISTS_CMD("7B000001"), a, sizeof a);
    assert_int_equal(xfer_hex(f->ch, EXISTS_CMD("7B000001"), r, sizeof r, &rl), 0x6982);
    rl = xfer(f->ch, a, al, r, sizeof r);
    assert_int_equal(sw_of(r, rl), 0x6982);
    ea_scp03_wipe(&hs);
    assert_false(object_exists(f, "7B00BEEF"));
}

/* Answers travel encrypted: the data of a read never appears on the wire. */
static void test_responses_encrypted(void **state)
{
    fix *f = *state;
    ea_scp03_session hs;
    uint8_t w[128], r[256], d[64];
    size_t wl, rl, dn = sizeof d;
    tu_select(f->ch);
    handshake(f, &hs);
    assert_int_equal(secure(f, &hs, WRITE_CMD, NULL, NULL), 0x9000);
    wl = wrap_hex(&hs, "800200000641047B00BEEF", w, sizeof w); /* ReadObject */
    rl = xfer(f->ch, w, wl, r, sizeof r);
    assert_int_equal(sw_of(r, rl), 0x9000);
    static const uint8_t secret[] = { 0x11, 0x22, 0x33, 0x44 };
    assert_null(memmem(r, rl, secret, sizeof secret));
    size_t ul = sizeof d;
    assert_int_equal(ea_scp03_unwrap_response(&hs, r, rl, d, &ul), EA_OK);
    expect_hex(d, ul, "41820004112233449000");
    (void)dn;
    ea_scp03_wipe(&hs);
}

/* ---- SetPlatformSCPRequest ------------------------------------------------------- */

static void test_required_lock(void **state)
{
    fix *f = *state;
    ea_scp03_session hs;
    uint8_t r[256], d[16];
    size_t rl, dn;

    tu_select(f->ch);
    /* In the clear it is refused: a probe must not be able to flip it. */
    assert_int_equal(xfer_hex(f->ch, "80040052034101 01", r, sizeof r, &rl), 0x6982);
    assert_int_equal(xfer_hex(f->ch, "80040052034101 02", r, sizeof r, &rl), 0x6982);
    assert_int_equal(xfer_hex(f->ch, "8004002000", r, sizeof r, &rl), 0x9000);
    handshake(f, &hs);
    assert_int_equal(secure(f, &hs, "80040052034101 03", NULL, NULL), 0x6A80);
    ea_scp03_wipe(&hs);
    handshake(f, &hs);
    assert_int_equal(secure(f, &hs, "80040052034101 01", NULL, NULL), 0x9000);
    /* The session itself goes on. */
    dn = sizeof d;
    assert_int_equal(secure(f, &hs, "8004002000", d, &dn), 0x9000);
    ea_scp03_wipe(&hs);

    /* Persistently, through a restart: only SELECT and the handshake pass. */
    for (int round = 0; round < 2; round++) {
        fix_close(f);
        fix_open(f);
        assert_int_equal(xfer_hex(f->ch, "8004002000", r, sizeof r, &rl), 0x6982);
        assert_int_equal(xfer_hex(f->ch, EXISTS_CMD("7FFF0206"), r, sizeof r, &rl), 0x6982);
        tu_select(f->ch);
        assert_int_equal(xfer_hex(f->ch, "8004002000", r, sizeof r, &rl), 0x6982);
        assert_int_equal(rl, 2);
        handshake(f, &hs);
        dn = sizeof d;
        assert_int_equal(secure(f, &hs, "8004002000", d, &dn), 0x9000);
        if (round == 0) {
            /* A factory reset (DeleteAll) does not touch the security domain. */
            assert_int_equal(secure(f, &hs, "8004002A", NULL, NULL), 0x9000);
        }
        ea_scp03_wipe(&hs);
    }
    handshake(f, &hs);
    assert_int_equal(secure(f, &hs, "80040052034101 02", NULL, NULL), 0x9000);
    ea_scp03_wipe(&hs);
    fix_close(f);
    fix_open(f);
    tu_select(f->ch);
    assert_int_equal(xfer_hex(f->ch, "8004002000", r, sizeof r, &rl), 0x9000);
}

/* A damaged security-domain record fails closed: nothing but SELECT. */
static void test_damaged_record_fails_closed(void **state)
{
    fix *f = *state;
    char path[1200] = "", odir[700];
    uint8_t r[128];
    size_t rl;

    fix_close(f);
    snprintf(odir, sizeof odir, "%s/objects", f->dir);
    DIR *d = opendir(odir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (!strncmp(e->d_name, "7fff02ff.", 9))
            snprintf(path, sizeof path, "%s/%s", odir, e->d_name);
    closedir(d);
    assert_true(path[0]);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t byte;
    off_t at = 40;
    assert_int_equal(pread(fd, &byte, 1, at), 1);
    byte ^= 0x01;
    assert_int_equal(pwrite(fd, &byte, 1, at), 1);
    close(fd);
    fix_open(f);
    tu_select(f->ch);
    assert_int_equal(xfer_hex(f->ch, "8004002000", r, sizeof r, &rl), 0x6982);
    assert_int_equal(xfer_hex(f->ch, "80500B00081122334455667788", r, sizeof r, &rl), 0x6A88);
}

/* Key files: format errors are named, loose permissions refused. */
static void test_key_files(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("scpkeys"), p[700], err[300];
    ea_scp03_keys k;
    snprintf(p, sizeof p, "%s/k", dir);
    assert_int_equal(ea_file_write_atomic(p, dummy_keys, strlen(dummy_keys), 0644), EA_OK);
    assert_int_equal(ea_scp03_keys_load(p, &k, err, sizeof err), EA_ERR_DENIED);
    assert_non_null(strstr(err, "chmod 600"));
    const char *bad[] = { "ENC 00\nMAC ABCDABCDABCDABCDABCDABCDABCD0002\n",
                          "MAC ABCDABCDABCDABCDABCDABCDABCD0002\n",
                          "ENC ABCDABCDABCDABCDABCDABCDABCD0001\nENC ABCDABCDABCDABCDABCDABCDABCD0001\n",
                          "KEY ABCDABCDABCDABCDABCDABCDABCD0001\n" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ea_file_write_atomic(p, bad[i], strlen(bad[i]), 0600), EA_OK);
        assert_int_equal(ea_scp03_keys_load(p, &k, err, sizeof err), EA_ERR_MALFORMED);
        assert_non_null(strstr(err, p));
    }
    const char *ok = "# comment\n\n  mac abcdabcdabcdabcdabcdabcdabcd0002 \nENC ABCDABCDABCDABCDABCDABCDABCD0001\n";
    assert_int_equal(ea_file_write_atomic(p, ok, strlen(ok), 0600), EA_OK);
    assert_int_equal(ea_scp03_keys_load(p, &k, err, sizeof err), EA_OK);
    assert_int_equal(k.mac[15], 0x02);
    assert_int_equal(ea_scp03_keys_load("default:se050c1", &k, err, sizeof err), EA_OK);
    assert_int_equal(k.enc[0], 0x85);
    assert_int_equal(ea_scp03_keys_load("default:SE999", &k, err, sizeof err), EA_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "SE050C1"));
    tu_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_vector_card_side, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_reorder_truncate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_responses_encrypted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_required_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_record_fails_closed, setup, teardown),
        cmocka_unit_test(test_key_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
