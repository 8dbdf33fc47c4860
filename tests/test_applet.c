/* The applet byte for byte: the spec's [V] APDUs, framing variants, and
 * malformed input (every prefix of each golden APDU, bad TLVs, wrong
 * Lc/Le/CLA/INS/P1/P2) answered with the right status word and changing
 * nothing in the store. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "common/util.h"
#include "edgeauth/se05x.h"
#include "tests/testutil.h"

/* ---- store fingerprint: names and bytes of every file under objects/ ---- */
static void store_digest(const char *dir, uint8_t out[32])
{
    char path[1024];
    snprintf(path, sizeof path, "%s/objects", dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    char *names[512];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 512)
        if (e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    closedir(d);
    for (size_t i = 0; i < n; i++) /* sort: readdir order is not stable */
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char *t = names[i];
                names[i] = names[j];
                names[j] = t;
            }
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    EVP_DigestInit_ex(mc, EVP_sha256(), NULL);
    for (size_t i = 0; i < n; i++) {
        char fp[1400];
        uint8_t *buf;
        size_t len;
        snprintf(fp, sizeof fp, "%s/%s", path, names[i]);
        EVP_DigestUpdate(mc, names[i], strlen(names[i]) + 1);
        if (ea_file_read(fp, 1 << 20, &buf, &len) == EA_OK) {
            EVP_DigestUpdate(mc, buf, len);
            free(buf);
        }
        free(names[i]);
    }
    EVP_DigestFinal_ex(mc, out, NULL);
    EVP_MD_CTX_free(mc);
}

static int setup(void **state)
{
    tu_chip *c = calloc(1, sizeof *c);
    tu_chip_new(c, 0);
    tu_select(c->ch);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    tu_chip_free(*state);
    free(*state);
    return 0;
}

static void expect_rsp(ea_emu_chan *ch, const char *apdu, const char *want_hex)
{
    uint8_t out[EA_EMU_APDU_MAX];
    size_t n = sizeof out, wl;
    uint16_t sw = tu_xfer_hex(ch, apdu, out, &n);
    uint8_t *want = tu_hex(want_hex, &wl);
    assert_int_equal(wl, n + 2);
    assert_memory_equal(out, want, n);
    assert_int_equal(sw, (uint16_t)((want[wl - 2] << 8) | want[wl - 1]));
    free(want);
}

/* ---- golden APDUs -------------------------------------------------------- */

static void test_select_and_version_applet_3_1(void **state)
{
    (void)state;
    /* With the applet version set to 3.1.0 the chip answers exactly as the
     * captures in spec §3.1 (nano SELECT, NXP VCOM 15-byte AID, GetVersion
     * in both case-1 and case-2 framing). */
    tu_chip c;
    tu_chip_new(&c, 0);
    ea_emu_close(c.emu);
    ea_emu_opts o = { .applet_version = 0x03010000u };
    char err[256];
    assert_int_equal(ea_emu_open(c.dir, &o, &c.emu, err, sizeof err), EA_OK);
    assert_int_equal(ea_emu_chan_open(c.emu, &c.ch), EA_OK);
    expect_rsp(c.ch, "00A4040010A0000003965453000000010300000000 00", "03 01 00 3F FF 01 0B 90 00");
    expect_rsp(c.ch, "00A404000FA00000039654530000000103000000", "03 01 00 3F FF 01 0B 90 00");
    expect_rsp(c.ch, "80 04 00 20", "41 82 00 07 03 01 00 3F FF 01 0B 90 00");
    expect_rsp(c.ch, "80 04 00 20 00", "41 82 00 07 03 01 00 3F FF 01 0B 90 00");
    /* 3.x generic EC type codes. */
    assert_int_equal(tu_xfer_hex(c.ch, "80 01 61 00 09 41 04 7B 00 04 26 42 01 03", NULL, NULL), 0x9000);
    expect_rsp(c.ch, "80 02 00 26 06 41 04 7B 00 04 26", "41 01 01 42 01 01 90 00");
    tu_chip_free(&c);
}

static void test_delete_all_needs_factory_reset(void **state)
{
    (void)state;
    tu_chip c;
    char err[256];
    tu_chip_new(&c, 0);
    ea_emu_close(c.emu);
    assert_int_equal(ea_emu_open(c.dir, NULL, &c.emu, err, sizeof err), EA_OK);
    assert_int_equal(ea_emu_chan_open(c.emu, &c.ch), EA_OK);
    tu_select(c.ch);
    expect_rsp(c.ch, "80 01 61 00 09 41 04 7B 00 04 26 42 01 03", "90 00");
    expect_rsp(c.ch, "80 04 00 2A", "69 82");
    expect_rsp(c.ch, "80 04 00 27 06 41 04 7B 00 04 26", "41 01 01 90 00");
    /* With the factory reset allowed, everything but the provisioned objects goes. */
    ea_emu_close(c.emu);
    ea_emu_opts o = { .allow_factory_reset = 1 };
    assert_int_equal(ea_emu_open(c.dir, &o, &c.emu, err, sizeof err), EA_OK);
    assert_int_equal(ea_emu_chan_open(c.emu, &c.ch), EA_OK);
    tu_select(c.ch);
    expect_rsp(c.ch, "80 04 00 2A", "90 00");
    expect_rsp(c.ch, "80 04 00 27 06 41 04 7B 00 04 26", "41 01 02 90 00");
    expect_rsp(c.ch, "80 04 00 27 06 41 04 F0 00 00 12", "41 01 01 90 00");
    /* Policies that demand secure messaging or a PCR are refused at creation (6984). */
    expect_rsp(c.ch, "80 01 61 00 14 11 09 08 00 00 00 00 10 02 00 00 41 04 7B 00 04 26 42 01 03", "69 84");
    expect_rsp(c.ch, "80 01 61 00 12 11 07 06 00 00 00 00 10 00 41 04 7B 00 04 26 42 01 03", "69 84");
    tu_chip_free(&c);
}

static void test_same_chip_twice_in_process(void **state)
{
    tu_chip *c = *state;
    ea_emu *again;
    ea_emu_chan *ch2;
    char err[256];
    /* A second open in this process shares the chip (no lock fight)... */
    assert_int_equal(ea_emu_open(c->dir, NULL, &again, err, sizeof err), EA_OK);
    assert_ptr_equal(again, c->emu);
    assert_int_equal(ea_emu_chan_open(again, &ch2), EA_OK);
    tu_select(ch2);
    expect_rsp(c->ch, "80 01 61 00 09 41 04 7B 00 0C 01 42 01 03", "90 00");
    expect_rsp(ch2, "80 04 00 27 06 41 04 7B 00 0C 01", "41 01 01 90 00");
    /* ...and closing one reference leaves the other working. */
    ea_emu_chan_close(ch2);
    ea_emu_close(again);
    expect_rsp(c->ch, "80 04 00 27 06 41 04 7B 00 0C 01", "41 01 01 90 00");
}

static void test_select_7_2(void **state)
{
    tu_chip *c = *state;
    expect_rsp(c->ch, "00A4040010A0000003965453000000010300000000 00", "07 02 00 14 92 01 0B 90 00");
    expect_rsp(c->ch, "80 04 00 20", "41 82 00 07 07 02 00 14 92 01 0B 90 00");
    /* A wrong AID deselects: applet commands are refused until SELECT. */
    assert_int_equal(tu_xfer_hex(c->ch, "00A4040005A000000399", NULL, NULL), 0x6A82);
    assert_int_equal(tu_xfer_hex(c->ch, "80 04 00 20", NULL, NULL), 0x6985);
    tu_select(c->ch);
}

static void test_object_lifecycle_golden(void **state)
{
    tu_chip *c = *state;
    ea_emu_chan *ch = c->ch;
    uint8_t out[512];
    size_t n;

    expect_rsp(ch, "80 04 00 27 06 41 04 7B 00 04 26", "41 01 02 90 00");
    expect_rsp(ch, "80 01 61 00 09 41 04 7B 00 04 26 42 01 03", "90 00");
    expect_rsp(ch, "80 04 00 27 06 41 04 7B 00 04 26", "41 01 01 90 00");
    /* ReadType (7.2 code 29 = P-256 pair, persistent) and ReadSize (32). */
    expect_rsp(ch, "80 02 00 26 06 41 04 7B 00 04 26", "41 01 29 42 01 01 90 00");
    expect_rsp(ch, "80 02 00 07 06 41 04 7B 00 04 26", "41 02 00 20 90 00");
    /* ReadObject of a key pair: the public point, 82-length form (nano's
     * extended framing). */
    n = sizeof out;
    assert_int_equal(tu_xfer_hex(ch, "80 02 00 00 00 00 06 41 04 7B 00 04 26 00 00", out, &n), 0x9000);
    assert_int_equal(n, 4 + 65);
    assert_memory_equal(out, "\x41\x82\x00\x41\x04", 5);
    /* The same id again with a curve: the object exists, P1 keypart ignored,
     * the pair is regenerated (ALLOW_GEN in the default policy). */
    expect_rsp(ch, "80 01 61 00 06 41 04 7B 00 04 26", "90 00");
    expect_rsp(ch, "80 04 00 28 06 41 04 7B 00 04 26", "90 00");
    expect_rsp(ch, "80 04 00 27 06 41 04 7B 00 04 26", "41 01 02 90 00");
    /* Object id 0 is refused. */
    expect_rsp(ch, "80 01 61 00 09 41 04 00 00 00 00 42 01 03", "69 85");
    /* Deleting what is not there. */
    expect_rsp(ch, "80 04 00 28 06 41 04 7B 00 04 26", "69 85");
}

static void test_policy_golden(void **state)
{
    tu_chip *c = *state;
    /* "everyone may sign" (spec §3.3): sign works, reading is not allowed. */
    expect_rsp(c->ch, "80 01 61 00 14 11 09 08 00 00 00 00 10 00 00 00 41 04 7B 00 04 27 42 01 03", "90 00");
    uint8_t out[128];
    size_t n = sizeof out;
    assert_int_equal(tu_xfer_hex(c->ch,
                                 "80 03 0C 09 2B 41 04 7B 00 04 27 42 01 21 43 20"
                                 "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
                                 out, &n),
                     0x9000);
    assert_memory_equal(out, "\x41\x82\x00", 3);
    assert_int_equal(out[4], 0x30);
    expect_rsp(c->ch, "80 02 00 00 06 41 04 7B 00 04 27", "69 86");
    expect_rsp(c->ch, "80 04 00 28 06 41 04 7B 00 04 27", "69 86");
}

static void test_unique_id_read(void **state)
{
    tu_chip *c = *state;
    uint8_t out[64];
    size_t n = sizeof out;
    /* NXP VCOM capture: only TAG_3 (length 0x12), no offset. */
    assert_int_equal(tu_xfer_hex(c->ch, "80 02 00 00 00 00 0A 41 04 7F FF 02 06 43 02 00 12 00 00", out, &n),
                     0x9000);
    assert_int_equal(n, 4 + 18);
    assert_memory_equal(out, "\x41\x82\x00\x12\x04\x00\x50\x01", 8);
    /* The unique id cannot be written or deleted. */
    expect_rsp(c->ch, "80 01 06 00 0C 41 04 7F FF 02 06 44 04 00 00 00 00", "69 86");
    expect_rsp(c->ch, "80 04 00 28 06 41 04 7F FF 02 06", "69 85");
}

static void test_binary_golden(void **state)
{
    tu_chip *c = *state;
    char apdu[2048];
    char data[400] = "";
    for (int i = 0; i < 128; i++)
        sprintf(data + 2 * i, "%02X", i);
    /* Create a 512-byte file with its first 128 bytes (note 44 81 80). */
    snprintf(apdu, sizeof apdu, "80 01 06 00 8D 41 04 7B 00 02 01 43 02 02 00 44 81 80 %s", data);
    expect_rsp(c->ch, apdu, "90 00");
    /* Update at offset 0x80. */
    snprintf(apdu, sizeof apdu, "80 01 06 00 8D 41 04 7B 00 02 01 42 02 00 80 44 81 80 %s", data);
    expect_rsp(c->ch, apdu, "90 00");
    /* Past the declared length: 6A80 (nano test_se05x_set_cert_invalid_len). */
    snprintf(apdu, sizeof apdu, "80 01 06 00 8D 41 04 7B 00 02 01 42 02 01 81 44 81 80 %s", data);
    expect_rsp(c->ch, apdu, "6A 80");
    /* Chunked read (spec §3.4 example). */
    uint8_t out[256];
    size_t n = sizeof out;
    assert_int_equal(tu_xfer_hex(c->ch, "80 02 00 00 00 00 0E 41 04 7B 00 02 01 42 02 00 80 43 02 00 80 00 00", out, &n),
                     0x9000);
    assert_int_equal(n, 4 + 128);
    for (int i = 0; i < 128; i++)
        assert_int_equal(out[4 + i], i);
    /* Reading past the end. */
    expect_rsp(c->ch, "80 02 00 00 0E 41 04 7B 00 02 01 42 02 01 F0 43 02 00 20", "6A 80");
    expect_rsp(c->ch, "80 02 00 07 06 41 04 7B 00 02 01", "41 02 02 00 90 00");
}

static void test_sign_verify_golden(void **state)
{
    tu_chip *c = *state;
    uint8_t sig[128];
    size_t n = sizeof sig;
    char apdu[1024];
    const char *dg32 = "A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBFC0";
    expect_rsp(c->ch, "80 01 61 00 09 41 04 7B 00 06 2D 42 01 03", "90 00");
    /* SHA-1 algo, 20-byte input (the captured shape of spec §3.7). */
    assert_int_equal(tu_xfer_hex(c->ch, "80 03 0C 09 1F 41 04 7B 00 06 2D 42 01 11 43 14 000102030405060708090A0B0C0D0E0F10111213", sig, &n),
                     0x9000);
    assert_memory_equal(sig, "\x41\x82\x00", 3);
    size_t sl = sig[3];
    char sighex[300];
    ea_hex_encode(sig + 4, sl, sighex);
    snprintf(apdu, sizeof apdu, "80 03 0C 0A %02zX 41 04 7B 00 06 2D 42 01 11 43 14 000102030405060708090A0B0C0D0E0F10111213 45 %02zX %s",
             31 + 2 + sl, sl, sighex);
    expect_rsp(c->ch, apdu, "41 01 01 90 00");
    /* Corrupted DER (first two bytes XOR FF): FAILURE, not an error SW. */
    sig[4] ^= 0xFF;
    sig[5] ^= 0xFF;
    ea_hex_encode(sig + 4, sl, sighex);
    snprintf(apdu, sizeof apdu, "80 03 0C 0A %02zX 41 04 7B 00 06 2D 42 01 11 43 14 000102030405060708090A0B0C0D0E0F10111213 45 %02zX %s",
             31 + 2 + sl, sl, sighex);
    expect_rsp(c->ch, apdu, "41 01 02 90 00");
    /* Input length must match the algorithm: 6985. */
    snprintf(apdu, sizeof apdu, "80 03 0C 09 2A 41 04 7B 00 06 2D 42 01 21 43 1F %.62s", dg32);
    expect_rsp(c->ch, apdu, "69 85");
    /* Non-existent key: 6985. */
    snprintf(apdu, sizeof apdu, "80 03 0C 09 2B 41 04 7B 00 06 2E 42 01 21 43 20 %s", dg32);
    expect_rsp(c->ch, apdu, "69 85");
    /* A P-256 key signs a SHA-384 digest (X9.62 truncation), as nano expects. */
    n = sizeof sig;
    snprintf(apdu, sizeof apdu, "80 03 0C 09 3B 41 04 7B 00 06 2D 42 01 22 43 30 %s%.32s", dg32, dg32);
    assert_int_equal(tu_xfer_hex(c->ch, apdu, sig, &n), 0x9000);
}

static void test_ecdh_and_digest_golden(void **state)
{
    tu_chip *c = *state;
    /* Peer key pair made by OpenSSL on the host; both sides must agree. */
    EVP_PKEY *peer = EVP_EC_gen("P-256");
    uint8_t peer_pub[65], chip_pub[128], z_chip[64], z_host[32];
    size_t pl = 0, n, zl = sizeof z_host;
    assert_non_null(peer);
    assert_int_equal(EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, peer_pub,
                                                     sizeof peer_pub, &pl),
                     1);
    expect_rsp(c->ch, "80 01 61 00 09 41 04 7B 00 05 01 42 01 03", "90 00");
    n = sizeof chip_pub;
    assert_int_equal(tu_xfer_hex(c->ch, "80 02 00 00 06 41 04 7B 00 05 01", chip_pub, &n), 0x9000);
    char hex[200], apdu[400];
    ea_hex_encode(peer_pub, 65, hex);
    snprintf(apdu, sizeof apdu, "80 03 01 0F 49 41 04 7B 00 05 01 42 41 %s", hex);
    n = sizeof z_chip;
    assert_int_equal(tu_xfer_hex(c->ch, apdu, z_chip, &n), 0x9000);
    assert_int_equal(n, 4 + 32);
    assert_memory_equal(z_chip, "\x41\x82\x00\x20", 4);
    EVP_PKEY *chip = NULL;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    OSSL_PARAM prm[] = { OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0),
                         OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, chip_pub + 4, 65),
                         OSSL_PARAM_construct_end() };
    assert_true(EVP_PKEY_fromdata_init(pc) > 0 && EVP_PKEY_fromdata(pc, &chip, EVP_PKEY_PUBLIC_KEY, prm) > 0);
    EVP_PKEY_CTX *dc = EVP_PKEY_CTX_new(peer, NULL);
    assert_true(EVP_PKEY_derive_init(dc) > 0 && EVP_PKEY_derive_set_peer(dc, chip) > 0 &&
                EVP_PKEY_derive(dc, z_host, &zl) > 0);
    assert_memory_equal(z_chip + 4, z_host, 32);
    EVP_PKEY_CTX_free(dc);
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(chip);
    EVP_PKEY_free(peer);
    /* A point off the curve is refused. */
    peer_pub[64] ^= 1;
    ea_hex_encode(peer_pub, 65, hex);
    snprintf(apdu, sizeof apdu, "80 03 01 0F 49 41 04 7B 00 05 01 42 41 %s", hex);
    expect_rsp(c->ch, apdu, "6A 80");
    /* DigestOneShot SHA-256("abc"), spec §3.10. */
    expect_rsp(c->ch, "80 03 00 0E 08 41 01 04 42 03 61 62 63",
               "41 82 00 20 BA 78 16 BF 8F 01 CF EA 41 41 40 DE 5D AE 22 23 B0 03 61 A3 96 17 7A 9C B4 10 FF 61 F2 00 15 AD 90 00");
}

static void test_random_memory_time(void **state)
{
    tu_chip *c = *state;
    uint8_t out[64], out2[64];
    size_t n = sizeof out, n2 = sizeof out2;
    /* Plug&Trust's extended framing (spec §3.2). */
    assert_int_equal(tu_xfer_hex(c->ch, "80 04 00 49 00 00 04 41 02 00 08 00 00", out, &n), 0x9000);
    assert_int_equal(n, 12);
    assert_memory_equal(out, "\x41\x82\x00\x08", 4);
    assert_int_equal(tu_xfer_hex(c->ch, "80 04 00 49 04 41 02 00 08", out2, &n2), 0x9000);
    assert_memory_not_equal(out + 4, out2 + 4, 8);
    expect_rsp(c->ch, "80 04 00 49 04 41 02 00 00", "6A 80");
    n = sizeof out;
    assert_int_equal(tu_xfer_hex(c->ch, "80 04 00 22 03 41 01 01", out, &n), 0x9000);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "\x41\x02", 2);
    uint16_t fr = (uint16_t)((out[2] << 8) | out[3]);
    assert_true(fr == 0x7FFF || fr % 16 == 0); /* 7FFF = at least 32 KiB */
    expect_rsp(c->ch, "80 04 00 22 03 41 01 09", "6A 80");
    n = sizeof out;
    assert_int_equal(tu_xfer_hex(c->ch, "80 04 00 3D", out, &n), 0x9000);
    assert_int_equal(n, 4 + 12);
    /* ReadIDList: the factory objects are listed, NO_MORE. */
    n = sizeof out;
    assert_int_equal(tu_xfer_hex(c->ch, "80 02 00 25 07 41 02 00 00 42 01 FF", out, &n), 0x9000);
    assert_memory_equal(out, "\x41\x01\x01\x42\x82\x00\x0C", 7);
    assert_memory_equal(out + 7, "\x7F\xFF\x02\x06\xF0\x00\x00\x12\xF0\x00\x00\x13", 12);
}

static void test_transient_objects(void **state)
{
    tu_chip *c = *state;
    expect_rsp(c->ch, "80 81 61 00 09 41 04 7B 00 09 01 42 01 03", "90 00");
    expect_rsp(c->ch, "80 02 00 26 06 41 04 7B 00 09 01", "41 01 29 42 01 02 90 00");
    /* Reselect = deselect: the value is lost, the object stays. */
    tu_select(c->ch);
    expect_rsp(c->ch, "80 04 00 27 06 41 04 7B 00 09 01", "41 01 01 90 00");
    expect_rsp(c->ch, "80 02 00 00 06 41 04 7B 00 09 01", "69 85");
    /* Regenerating gives it a value again. */
    expect_rsp(c->ch, "80 81 61 00 06 41 04 7B 00 09 01", "90 00");
    uint8_t out[128];
    size_t n = sizeof out;
    assert_int_equal(tu_xfer_hex(c->ch, "80 02 00 00 06 41 04 7B 00 09 01", out, &n), 0x9000);
    /* Another channel does not see it; a restart forgets it. */
    ea_emu_chan *other;
    assert_int_equal(ea_emu_chan_open(c->emu, &other), EA_OK);
    tu_select(other);
    expect_rsp(other, "80 04 00 27 06 41 04 7B 00 09 01", "41 01 02 90 00");
    ea_emu_chan_close(other);
    tu_chip_reopen(c);
    tu_select(c->ch);
    expect_rsp(c->ch, "80 04 00 27 06 41 04 7B 00 09 01", "41 01 02 90 00");
}

static void test_persistence_across_reopen(void **state)
{
    tu_chip *c = *state;
    uint8_t a[128], b[128];
    size_t na = sizeof a, nb = sizeof b;
    expect_rsp(c->ch, "80 01 61 00 09 41 04 7B 00 0A 01 42 01 04", "90 00");
    assert_int_equal(tu_xfer_hex(c->ch, "80 02 00 00 06 41 04 7B 00 0A 01", a, &na), 0x9000);
    assert_int_equal(na, 4 + 97);
    tu_chip_reopen(c);
    tu_select(c->ch);
    assert_int_equal(tu_xfer_hex(c->ch, "80 02 00 00 06 41 04 7B 00 0A 01", b, &nb), 0x9000);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    expect_rsp(c->ch, "80 02 00 26 06 41 04 7B 00 0A 01", "41 01 2D 42 01 01 90 00");
}

/* ---- malformed input ------------------------------------------------------ */

static const char *const golden[] = {
    "80 01 61 00 09 41 04 7B 00 04 26 42 01 03",
    "80 01 61 00 14 11 09 08 00 00 00 00 10 00 00 00 41 04 7B 00 04 28 42 01 03",
    "80 04 00 27 06 41 04 7B 00 04 26",
    "80 04 00 28 06 41 04 7B 00 04 26",
    "80 02 00 00 00 00 06 41 04 7B 00 04 3A 00 00",
    "80 02 00 00 00 00 0A 41 04 7F FF 02 06 43 02 00 12 00 00",
    "80 04 00 49 00 00 04 41 02 00 08 00 00",
    "80 04 00 22 03 41 01 01",
    "80 02 00 25 07 41 02 00 00 42 01 FF",
    "80 02 00 26 06 41 04 F0 00 00 12",
    "80 02 00 07 06 41 04 F0 00 00 12",
    "80 03 00 0E 08 41 01 04 42 03 61 62 63",
    "80 01 06 00 0F 41 04 7B 00 02 01 43 02 00 10 44 02 AA BB",
    "80 01 05 00 0A 41 04 7B 00 05 01 43 02 11 22",
    "80 03 0C 09 2B 41 04 F0 00 00 12 42 01 21 43 20 000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
};

static void test_every_prefix(void **state)
{
    tu_chip *c = *state;
    uint8_t before[32], after[32];
    store_digest(c->dir, before);
    for (size_t g = 0; g < sizeof golden / sizeof golden[0]; g++) {
        size_t n;
        uint8_t *a = tu_hex(golden[g], &n);
        for (size_t k = 0; k < n; k++) {
            uint16_t sw = tu_xfer(c->ch, a, k, NULL, NULL);
            bool ext = a[4] == 0;
            size_t lc = ext ? ((size_t)a[5] << 8 | a[6]) : 0;
            /* A cut APDU is a length error; cut right after the header, the
             * Lc byte or an extended Le it is a command with a missing TLV;
             * cut exactly before an extended Le it is complete (reads only). */
            if (k < 4)
                assert_int_equal(sw, 0x6700);
            else if (k <= 5 || (ext && k <= 7))
                assert_true(sw == 0x6A80 || sw == 0x6985);
            else if (!(ext && k == 7 + lc))
                assert_int_equal(sw, 0x6700);
        }
        free(a);
    }
    store_digest(c->dir, after);
    assert_memory_equal(before, after, 32);
}

static void test_bad_tlvs_and_headers(void **state)
{
    tu_chip *c = *state;
    uint8_t before[32], after[32];
    store_digest(c->dir, before);
    static const struct {
        const char *apdu;
        uint16_t sw;
    } cases[] = {
        { "80 01 61 00 09 41 05 7B 00 04 26 42 01 03", 0x6A80 },       /* TLV runs past the end */
        { "80 01 61 00 09 41 04 7B 00 04 26 42 02 03", 0x6A80 },       /* curve TLV over-long */
        { "80 01 61 00 0A 41 04 7B 00 04 26 42 01 03 00", 0x6A80 },    /* trailing byte */
        { "80 01 61 00 09 42 01 03 41 04 7B 00 04 26", 0x6A80 },       /* tags out of order */
        { "80 01 61 00 0C 41 04 7B 00 04 26 41 01 00 42 01 03", 0x6A80 }, /* duplicate tag */
        { "80 01 61 00 09 41 83 7B 00 04 26 42 01 03", 0x6A80 },       /* 83 length form */
        { "80 01 61 00 09 41 04 7B 00 04 26 42 01 09", 0x6985 },       /* curve not on chip */
        { "80 01 61 00 09 41 04 7B 00 04 26 4C 01 03", 0x6A80 },       /* unknown tag */
        { "80 01 61 00 0A 41 04 7B 00 04 26 42 01 03", 0x6700 },       /* Lc says more than sent */
        { "80 01 61 00 08 41 04 7B 00 04 26 42 01 03", 0x6A80 },       /* Lc says less: last byte is Le, TLV cut */
        { "80 01 61 00 00 00 41 04 7B 00 04 26 42 01 03", 0x6700 },    /* extended Lc too short */
        { "80 01 61 00 00 00 00", 0x6A80 },                            /* extended Le, no body */
        { "80 1F 00 00", 0x6D00 },                                     /* unknown INS */
        { "80 04 00 99", 0x6A86 },                                     /* unknown P2 */
        { "80 03 7F 09", 0x6A86 },                                     /* unknown P1 */
        { "80 01 07 00 06 41 04 7B 00 04 26", 0x6A86 },               /* UserID: not emulated */
        { "80 41 61 00 09 41 04 7B 00 04 26 42 01 03", 0x6D00 },       /* auth objects: not emulated */
        { "80 A2 00 00 06 41 04 F0 00 00 12", 0x6D00 },               /* READ with a bad modifier */
        { "90 04 00 20", 0x6E00 },                                     /* wrong CLA */
        { "00 04 00 20", 0x6D00 },                                     /* ISO CLA, applet INS */
        { "00 A4 00 00 10 A0 00 00 03 96 54 53 00 00 00 01 03 00 00 00 00", 0x6A86 },
        { "80 02 00 00 06 41 04 F0 00 00 12", 0x9000 },                /* attestation public key: readable */
        { "80 02 00 00 0A 41 04 F0 00 00 12 42 02 00 01", 0x6A80 },    /* offset on a key */
        { "80 02 00 00 09 41 04 F0 00 00 12 44 01 00", 0x6985 },       /* RSA component */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t sw = tu_xfer_hex(c->ch, cases[i].apdu, NULL, &(size_t){ 0 });
        if (sw != cases[i].sw)
            fail_msg("case %zu (%s): SW %04X, want %04X", i, cases[i].apdu, sw, cases[i].sw);
        tu_select(c->ch); /* a refused SELECT deselects */
    }
    store_digest(c->dir, after);
    assert_memory_equal(before, after, 32);
}

static void test_random_garbage(void **state)
{
    tu_chip *c = *state;
    uint8_t buf[600];
    uint32_t x = 12345;
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)(x % sizeof buf);
        for (size_t k = 0; k < n; k++) {
            x = x * 1103515245u + 12345u;
            buf[k] = (uint8_t)(x >> 16);
        }
        /* Mostly well-formed headers, so the handlers see the junk. */
        if (n >= 4 && (i & 1)) {
            buf[0] = 0x80;
            buf[1] = (uint8_t)(1 + (x >> 8) % 4);
            if (n >= 5)
                buf[4] = (uint8_t)(n - 5);
        }
        uint8_t r[EA_EMU_APDU_MAX];
        size_t rl = sizeof r;
        assert_int_equal(ea_emu_transceive(c->ch, buf, n, r, &rl), EA_OK);
        assert_true(rl >= 2);
        x = x * 1103515245u + 12345u;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select_and_version_applet_3_1),
        cmocka_unit_test(test_delete_all_needs_factory_reset),
        cmocka_unit_test_setup_teardown(test_same_chip_twice_in_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_7_2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_object_lifecycle_golden, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_golden, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unique_id_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_golden, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_verify_golden, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ecdh_and_digest_golden, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_memory_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transient_objects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence_across_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_tlvs_and_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_garbage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
