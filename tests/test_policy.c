/* The policy matrix: an object whose policy names one rule allows exactly
 * the operations of that rule; FORBID_ALL and FORBID_DERIVED_OUTPUT; and no
 * command ever returns a private or secret value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/tlv.h"
#include "common/util.h"
#include "edgeauth/se05x.h"
#include "tests/testutil.h"

#define OBJ 0x7B000A00u
#define PEER 0x7B000A01u   /* default-policy EC pair: source of a peer point */
#define TARGET 0x7B000A02u /* default-policy HMAC key (32 bytes): output slot */

typedef struct env {
    tu_chip chip;
    uint8_t peer_pub[65];
} env;

static uint16_t send(env *e, uint8_t ins, uint8_t p1, uint8_t p2, ea_wbuf *w)
{
    uint8_t a[EA_EMU_APDU_MAX];
    size_t n = tu_apdu(a, sizeof a, 0x80, ins, p1, p2, w->p, w->len, 0);
    return tu_xfer(e->chip.ch, a, n, NULL, NULL);
}

static void policy_tlv(ea_wbuf *w, uint32_t ar)
{
    uint8_t p[9] = { 8, 0, 0, 0, 0 };
    ea_put_be32(p + 5, ar);
    ea_tlv_put(w, EA_TAG_POLICY, p, sizeof p);
}

typedef enum kind { K_EC, K_AES, K_HMAC, K_BIN } kind;

static void create(env *e, kind k, uint32_t id, bool with_policy, uint32_t ar)
{
    uint8_t b[128], key[32];
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    memset(key, 0x5A, sizeof key);
    if (with_policy)
        policy_tlv(&w, ar);
    ea_tlv_u32(&w, EA_TAG_1, id);
    uint16_t sw;
    switch (k) {
    case K_EC:
        ea_tlv_u8(&w, EA_TAG_2, EA_CURVE_NIST_P256);
        sw = send(e, EA_INS_WRITE, EA_P1_EC | EA_P1_KEY_PAIR, 0, &w);
        break;
    case K_AES:
        ea_tlv_put(&w, EA_TAG_3, key, 16);
        sw = send(e, EA_INS_WRITE, EA_P1_AES, 0, &w);
        break;
    case K_HMAC:
        ea_tlv_put(&w, EA_TAG_3, key, 32);
        sw = send(e, EA_INS_WRITE, EA_P1_HMAC, 0, &w);
        break;
    default:
        ea_tlv_u16(&w, EA_TAG_3, 16);
        sw = send(e, EA_INS_WRITE, EA_P1_BINARY, 0, &w);
        break;
    }
    if (sw != 0x9000)
        fail_msg("create kind %d id %08X policy %d/%08X: SW %04X", k, id, with_policy, ar, sw);
}

/* ---- one function per operation; each succeeds when allowed ------------ */
typedef uint16_t op_fn(env *e);

static uint16_t op_sign(env *e)
{
    uint8_t b[96], dg[32] = { 1 };
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, OBJ);
    ea_tlv_u8(&w, EA_TAG_2, EA_SIG_ECDSA_SHA256);
    ea_tlv_put(&w, EA_TAG_3, dg, 32);
    return send(e, EA_INS_CRYPTO, EA_P1_SIGNATURE, EA_P2_SIGN, &w);
}

static uint16_t op_verify(env *e)
{
    uint8_t b[128], dg[32] = { 1 }, sig[8] = { 0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01 };
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, OBJ);
    ea_tlv_u8(&w, EA_TAG_2, EA_SIG_ECDSA_SHA256);
    ea_tlv_put(&w, EA_TAG_3, dg, 32);
    ea_tlv_put(&w, EA_TAG_5, sig, sizeof sig);
    return send(e, EA_INS_CRYPTO, EA_P1_SIGNATURE, EA_P2_VERIFY, &w);
}

static uint16_t op_ecdh(env *e)
{
    uint8_t b[128];
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, OBJ);
    ea_tlv_put(&w, EA_TAG_2, e->peer_pub, 65);
    return send(e, EA_INS_CRYPTO, EA_P1_EC, EA_P2_DH, &w);
}

static uint16_t op_ecdh_to_object(env *e)
{
    uint8_t b[128];
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, OBJ);
    ea_tlv_put(&w, EA_TAG_2, e->peer_pub, 65);
    ea_tlv_u32(&w, EA_TAG_7, TARGET);
    return send(e, EA_INS_CRYPTO, EA_P1_EC, EA_P2_DH, &w);
}

static uint16_t op_read(env *e)
{
    uint8_t b[16];
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, OBJ);
    return send(e, EA_INS_READ, 0, 0, &w);
}

static uint16_t op_regen(env *e)
{
    uint8_t b[16];
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, OBJ);
    return send(e, EA_INS_WRITE, EA_P1_EC | EA_P1_KEY_PAIR, 0, &w);
}

static uint16_t op_delete(env *e)
{
    uint8_t b[16];
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, OBJ);
    return send(e, EA_INS_MGMT, 0, EA_P2_DELETE_OBJECT, &w);
}

static uint16_t op_attest_with(env *e)
{
    uint8_t b[64], fresh[16] = { 9 };
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, EA_OBJ_UNIQUE_ID);
    ea_tlv_u32(&w, EA_TAG_5, OBJ);
    ea_tlv_u8(&w, EA_TAG_6, EA_SIG_ECDSA_SHA256);
    ea_tlv_put(&w, EA_TAG_7, fresh, sizeof fresh);
    return send(e, EA_INS_READ | EA_INS_MASK_ATTEST, 0, 0, &w);
}

static uint16_t op_pms_ecdh(env *e)
{
    uint8_t b[128];
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_2, OBJ);
    ea_tlv_u32(&w, EA_TAG_3, TARGET);
    ea_tlv_put(&w, EA_TAG_4, e->peer_pub, 65);
    return send(e, EA_INS_CRYPTO, EA_P1_TLS, EA_P2_TLS_PMS, &w);
}

static uint16_t op_pms_psk(env *e)
{
    uint8_t b[32];
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, OBJ);
    ea_tlv_u32(&w, EA_TAG_3, TARGET);
    return send(e, EA_INS_CRYPTO, EA_P1_TLS, EA_P2_TLS_PMS, &w);
}

static uint16_t cipher(env *e, uint8_t p2)
{
    uint8_t b[64], data[16] = { 0 };
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, OBJ);
    ea_tlv_u8(&w, EA_TAG_2, EA_CIPHER_AES_ECB_NOPAD);
    ea_tlv_put(&w, EA_TAG_3, data, sizeof data);
    return send(e, EA_INS_CRYPTO, EA_P1_CIPHER, p2, &w);
}
static uint16_t op_enc(env *e) { return cipher(e, EA_P2_ENCRYPT_ONESHOT); }
static uint16_t op_dec(env *e) { return cipher(e, EA_P2_DECRYPT_ONESHOT); }

static uint16_t mac(env *e, uint8_t algo, bool gen)
{
    uint8_t b[128], tag[32] = { 0 };
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, OBJ);
    ea_tlv_u8(&w, EA_TAG_2, algo);
    ea_tlv_put(&w, EA_TAG_3, "abc", 3);
    if (!gen)
        ea_tlv_put(&w, EA_TAG_5, tag, algo == EA_MAC_CMAC_128 ? 16 : 32);
    return send(e, EA_INS_CRYPTO, EA_P1_MAC, gen ? EA_P2_GENERATE_ONESHOT : EA_P2_VALIDATE_ONESHOT, &w);
}
static uint16_t op_cmac_gen(env *e) { return mac(e, EA_MAC_CMAC_128, true); }
static uint16_t op_cmac_val(env *e) { return mac(e, EA_MAC_CMAC_128, false); }
static uint16_t op_hmac_gen(env *e) { return mac(e, EA_MAC_HMAC_SHA256, true); }
static uint16_t op_hmac_val(env *e) { return mac(e, EA_MAC_HMAC_SHA256, false); }

static uint16_t hkdf(env *e, bool to_obj)
{
    uint8_t b[64];
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, OBJ);
    ea_tlv_u8(&w, EA_TAG_2, EA_DIGEST_SHA256);
    ea_tlv_u16(&w, EA_TAG_5, 32);
    if (to_obj)
        ea_tlv_u32(&w, EA_TAG_7, TARGET);
    return send(e, EA_INS_CRYPTO, 0, EA_P2_HKDF, &w);
}
static uint16_t op_hkdf(env *e) { return hkdf(e, false); }
static uint16_t op_hkdf_to_object(env *e) { return hkdf(e, true); }

static uint16_t op_prf(env *e)
{
    uint8_t b[96], rnd[32] = { 7 };
    assert_int_equal(ea_emu_test_set_tls_random(e->chip.ch, rnd), EA_OK);
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, OBJ);
    ea_tlv_u8(&w, EA_TAG_2, EA_DIGEST_SHA256);
    ea_tlv_put(&w, EA_TAG_3, "master secret", 13);
    ea_tlv_put(&w, EA_TAG_4, rnd, 32);
    ea_tlv_u16(&w, EA_TAG_5, 48);
    return send(e, EA_INS_CRYPTO, EA_P1_TLS, EA_P2_TLS_PRF_CLI_HELLO, &w);
}

static uint16_t write_value(env *e, kind k)
{
    uint8_t b[64], key[32];
    memset(key, 0x33, sizeof key);
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, OBJ);
    if (k == K_BIN) {
        ea_tlv_put(&w, EA_TAG_4, key, 4);
        return send(e, EA_INS_WRITE, EA_P1_BINARY, 0, &w);
    }
    ea_tlv_put(&w, EA_TAG_3, key, k == K_AES ? 16 : 32);
    return send(e, EA_INS_WRITE, k == K_AES ? EA_P1_AES : EA_P1_HMAC, 0, &w);
}
static uint16_t op_write_aes(env *e) { return write_value(e, K_AES); }
static uint16_t op_write_hmac(env *e) { return write_value(e, K_HMAC); }
static uint16_t op_write_bin(env *e) { return write_value(e, K_BIN); }

typedef struct op {
    const char *name;
    op_fn *fn;
    uint32_t needs;
} op;

static const op ec_ops[] = {
    { "sign", op_sign, EA_POL_ALLOW_SIGN },         { "verify", op_verify, EA_POL_ALLOW_VERIFY },
    { "ecdh", op_ecdh, EA_POL_ALLOW_KA },           { "read", op_read, EA_POL_ALLOW_READ },
    { "regenerate", op_regen, EA_POL_ALLOW_GEN },   { "attest-with", op_attest_with, EA_POL_ALLOW_ATTESTATION },
    { "tls-pms", op_pms_ecdh, EA_POL_ALLOW_TLS_PMS }, { "delete", op_delete, EA_POL_ALLOW_DELETE },
};
static const op aes_ops[] = {
    { "encrypt", op_enc, EA_POL_ALLOW_ENC },          { "decrypt", op_dec, EA_POL_ALLOW_DEC },
    { "cmac", op_cmac_gen, EA_POL_ALLOW_SIGN },       { "cmac-verify", op_cmac_val, EA_POL_ALLOW_VERIFY },
    { "read", op_read, EA_POL_ALLOW_READ /* never */ }, { "write", op_write_aes, EA_POL_ALLOW_WRITE },
    { "delete", op_delete, EA_POL_ALLOW_DELETE },
};
static const op hmac_ops[] = {
    { "hmac", op_hmac_gen, EA_POL_ALLOW_SIGN },   { "hmac-verify", op_hmac_val, EA_POL_ALLOW_VERIFY },
    { "hkdf", op_hkdf, EA_POL_ALLOW_HKDF },       { "tls-prf", op_prf, EA_POL_ALLOW_TLS_KDF },
    { "tls-pms-psk", op_pms_psk, EA_POL_ALLOW_TLS_PMS }, { "read", op_read, EA_POL_ALLOW_READ /* never */ },
    { "write", op_write_hmac, EA_POL_ALLOW_WRITE }, { "delete", op_delete, EA_POL_ALLOW_DELETE },
};
static const op bin_ops[] = {
    { "read", op_read, EA_POL_ALLOW_READ },
    { "write", op_write_bin, EA_POL_ALLOW_WRITE },
    { "delete", op_delete, EA_POL_ALLOW_DELETE },
};

static const uint32_t rules[] = {
    0, /* a policy record that allows nothing */
    EA_POL_ALLOW_SIGN, EA_POL_ALLOW_VERIFY, EA_POL_ALLOW_KA, EA_POL_ALLOW_ENC, EA_POL_ALLOW_DEC,
    EA_POL_ALLOW_HKDF, EA_POL_ALLOW_READ, EA_POL_ALLOW_WRITE, EA_POL_ALLOW_GEN, EA_POL_ALLOW_DELETE,
    EA_POL_ALLOW_ATTESTATION, EA_POL_ALLOW_TLS_KDF, EA_POL_ALLOW_TLS_PMS,
    EA_POL_FORBID_ALL | 0x1FFCF000u, /* everything, and FORBID_ALL on top */
};

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    tu_chip_new(&e->chip, 0);
    tu_select(e->chip.ch);
    create(e, K_EC, PEER, false, 0);
    create(e, K_HMAC, TARGET, false, 0);
    uint8_t out[128];
    size_t n = sizeof out;
    assert_int_equal(tu_xfer_hex(e->chip.ch, "80 02 00 00 06 41 04 7B 00 0A 01", out, &n), 0x9000);
    memcpy(e->peer_pub, out + 4, 65);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    tu_chip_free(&e->chip);
    free(e);
    return 0;
}

static void run_matrix(env *e, kind k, const op *ops, size_t n_ops)
{
    int checked = 0;
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
        create(e, k, OBJ, true, rules[r]);
        for (size_t i = 0; i < n_ops; i++) {
            bool never = (k == K_AES || k == K_HMAC) && ops[i].fn == op_read;
            bool allowed = !never && !(rules[r] & EA_POL_FORBID_ALL) && (rules[r] & ops[i].needs);
            uint16_t sw = ops[i].fn(e);
            uint16_t want = allowed ? 0x9000 : never ? 0x6985 : 0x6986;
            if (sw != want)
                fail_msg("kind %d rule %08X op %s: SW %04X, want %04X", k, rules[r], ops[i].name, sw, want);
            checked++;
        }
        if (!(rules[r] & EA_POL_ALLOW_DELETE) || (rules[r] & EA_POL_FORBID_ALL)) {
            /* Undeletable by policy: DeleteAll still removes it (factory reset). */
            assert_int_equal(tu_xfer_hex(e->chip.ch, "80 04 00 2A", NULL, NULL), 0x9000);
            create(e, K_EC, PEER, false, 0);
            create(e, K_HMAC, TARGET, false, 0);
            uint8_t out[128];
            size_t n = sizeof out;
            assert_int_equal(tu_xfer_hex(e->chip.ch, "80 02 00 00 06 41 04 7B 00 0A 01", out, &n), 0x9000);
            memcpy(e->peer_pub, out + 4, 65);
        }
    }
    print_message("policy matrix kind %d: %d checks\n", k, checked);
}

static void test_matrix_ec(void **state) { run_matrix(*state, K_EC, ec_ops, sizeof ec_ops / sizeof ec_ops[0]); }
static void test_matrix_aes(void **state) { run_matrix(*state, K_AES, aes_ops, sizeof aes_ops / sizeof aes_ops[0]); }
static void test_matrix_hmac(void **state) { run_matrix(*state, K_HMAC, hmac_ops, sizeof hmac_ops / sizeof hmac_ops[0]); }
static void test_matrix_bin(void **state) { run_matrix(*state, K_BIN, bin_ops, sizeof bin_ops / sizeof bin_ops[0]); }

static void test_forbid_derived_output(void **state)
{
    env *e = *state;
    create(e, K_EC, OBJ, true, EA_POL_ALLOW_KA | EA_POL_FORBID_DERIVED_OUTPUT | EA_POL_ALLOW_DELETE);
    assert_int_equal(op_ecdh(e), 0x6986);
    assert_int_equal(op_ecdh_to_object(e), 0x9000);
    assert_int_equal(op_delete(e), 0x9000);
    create(e, K_HMAC, OBJ, true, EA_POL_ALLOW_HKDF | EA_POL_FORBID_DERIVED_OUTPUT | EA_POL_ALLOW_DELETE);
    assert_int_equal(op_hkdf(e), 0x6986);
    assert_int_equal(op_hkdf_to_object(e), 0x9000);
    assert_int_equal(op_delete(e), 0x9000);
}

static bool contains(const uint8_t *h, size_t hn, const uint8_t *n, size_t nn)
{
    for (size_t i = 0; i + nn <= hn; i++)
        if (!memcmp(h + i, n, nn))
            return true;
    return false;
}

/* Import known secrets with every right granted, then run every command that
 * touches the objects: the secret bytes appear in no response. */
static void test_secrets_never_leave(void **state)
{
    env *e = *state;
    char apdu[600], d[100], q[200];
    /* P-256 key pair with d = 0x11..11 (a valid scalar); public computed by the chip. */
    uint8_t scalar[32], hmac[32], aes[16];
    memset(scalar, 0x11, 32);
    memset(hmac, 0xC3, 32);
    memset(aes, 0x7E, 16);
    ea_hex_encode(scalar, 32, d);
    snprintf(apdu, sizeof apdu, "80 01 41 00 36 11 09 08 00 00 00 00 DF FC F0 00 41 04 7B 00 0B 01 42 01 03 43 20 %s", d);
    assert_int_equal(tu_xfer_hex(e->chip.ch, apdu, NULL, NULL), 0x9000); /* private only */
    snprintf(apdu, sizeof apdu, "80 01 05 00 33 11 09 08 00 00 00 00 DF FC F0 00 41 04 7B 00 0B 02 43 20 %s", (ea_hex_encode(hmac, 32, q), q));
    assert_int_equal(tu_xfer_hex(e->chip.ch, apdu, NULL, NULL), 0x9000);
    snprintf(apdu, sizeof apdu, "80 01 03 00 23 11 09 08 00 00 00 00 DF FC F0 00 41 04 7B 00 0B 03 43 10 %s", (ea_hex_encode(aes, 16, q), q));
    assert_int_equal(tu_xfer_hex(e->chip.ch, apdu, NULL, NULL), 0x9000);
    static const char *const probes[] = {
        "80 02 00 00 06 41 04 7B 00 0B 01", "80 02 00 00 06 41 04 7B 00 0B 02", "80 02 00 00 06 41 04 7B 00 0B 03",
        "80 02 00 00 0E 41 04 7B 00 0B 02 42 02 00 00 43 02 00 20",
        "80 02 00 00 0E 41 04 7B 00 0B 01 42 02 00 00 43 02 00 20",
        "80 22 00 00 21 41 04 7B 00 0B 01 45 04 F0 00 00 12 46 01 21 47 10 00000000000000000000000000000000",
        "80 22 00 00 21 41 04 7B 00 0B 02 45 04 F0 00 00 12 46 01 21 47 10 00000000000000000000000000000000",
        "80 22 00 00 21 41 04 7B 00 0B 03 45 04 F0 00 00 12 46 01 21 47 10 00000000000000000000000000000000",
        "80 02 00 26 06 41 04 7B 00 0B 01", "80 02 00 07 06 41 04 7B 00 0B 02", "80 02 00 25 07 41 02 00 00 42 01 FF",
        "80 02 0B 36 06 41 04 7B 00 0B 01",
    };
    int refused = 0;
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        uint8_t out[EA_EMU_APDU_MAX];
        size_t n = sizeof out;
        uint16_t sw = tu_xfer_hex(e->chip.ch, probes[i], out, &n);
        if (sw != 0x9000)
            refused++;
        assert_false(contains(out, n, scalar, 16));
        assert_false(contains(out, n, hmac, 16));
        assert_false(contains(out, n, aes, 8));
    }
    /* The three plain reads and the two ranged reads are refused with 6985. */
    assert_true(refused >= 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_matrix_ec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_matrix_aes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_matrix_hmac, setup, teardown),
        cmocka_unit_test_setup_teardown(test_matrix_bin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forbid_derived_output, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets_never_leave, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
