/* Known-answer tests through the APDU path of the in-process emulator.
 *
 * The external vectors in ../shared/vectors (Wycheproof ECDSA / ECDH / HKDF /
 * HMAC, NIST CAVS and ACVP TLS 1.2 PRF) are read in place, never copied into
 * the repository, and sent to the chip the way a host sends them: SELECT
 * first, CLA 80, command TLVs in ascending tag order. The host's own share of
 * the work (hashing the message before ECDSAVerify, decoding an X.509
 * SubjectPublicKeyInfo into a raw point before ECDH) is done here with
 * OpenSSL; every keyed operation happens inside the chip.
 *
 * Each test walks one vector file and tallies how every case was answered.
 * A case whose answer its `result` field does not allow is a disagreement:
 * it is printed (tcId, C-APDU, R-APDU) and the test ends with
 * assert(disagreements == 0) and exact totals, after a one-line summary.
 * Where the vectors folder is absent the tests print why and skip. */
#include "tests/testutil.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "edgeauth/se05x.h"

#define BODY_CAP 8192u
#define SW_NOT_SENT 0x0000u /* ea_emu_transceive refused the C-APDU as a whole */
#define MAX_REPORTS 10u     /* disagreements printed in full per test */
#define SHOW_MAX 320u       /* bytes of an APDU shown in a report */

/* Object ids, one range per test so that a test aborted half-way cannot
 * disturb the next one (each test also deletes its ids before starting). */
#define ID_ECDSA 0x20E10001u
#define ID_ECDH 0x20E20001u
#define ID_HKDF 0x20E30001u
#define ID_HMAC 0x20E30002u
#define ID_TLS_PMS 0x20E40001u
#define ID_TLS_MS 0x20E40002u

/* Applet limits the KAT relies on (the real SE05x's; see the brief in §3.12). */
#define HKDF_SALT_MAX 64u
#define HKDF_INFO_MAX 80u
#define HKDF_L_MAX 800u

/* ------------------------------------------------------------------------ */
/* One chip for the whole file, and the exchange being built or just made.  */

typedef struct kat {
    ea_emu_chan *ch;
    uint8_t body[BODY_CAP];
    size_t body_len;
    uint8_t apdu[BODY_CAP + 16];
    size_t apdu_len;
    uint8_t rsp[EA_EMU_APDU_MAX]; /* R-APDU data, SW excluded */
    size_t rsp_len;
    uint16_t sw;
    unsigned bad; /* disagreements in the current test */
    const char *file;
} kat;

typedef struct fixture {
    tu_chip chip;
    kat k;
} fixture;

static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    tu_chip_new(&f->chip, 0);
    f->k.ch = f->chip.ch;
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f) {
        tu_chip_free(&f->chip);
        free(f);
    }
    return 0;
}

static kat *kat_begin(void **state, const char *file)
{
    fixture *f = *state;
    kat *k = &f->k;
    k->bad = 0;
    k->file = file;
    tu_select(k->ch);
    return k;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------ */
/* Command bodies: 1-byte tag, length 00-7F | 81 xx | 82 xx xx.              */

static void body_reset(kat *k)
{
    k->body_len = 0;
}

static void body_tlv(kat *k, uint8_t tag, const uint8_t *v, size_t len)
{
    assert_true(len <= 0xFFFF);
    assert_true(len + 4 <= BODY_CAP - k->body_len);
    uint8_t *p = k->body + k->body_len;
    *p++ = tag;
    if (len < 0x80) {
        *p++ = (uint8_t)len;
    } else if (len <= 0xFF) {
        *p++ = 0x81;
        *p++ = (uint8_t)len;
    } else {
        *p++ = 0x82;
        *p++ = (uint8_t)(len >> 8);
        *p++ = (uint8_t)len;
    }
    if (len)
        memcpy(p, v, len);
    k->body_len = (size_t)(p - k->body) + len;
}

static void body_u8(kat *k, uint8_t tag, uint8_t v)
{
    body_tlv(k, tag, &v, 1);
}

static void body_u16(kat *k, uint8_t tag, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    body_tlv(k, tag, b, 2);
}

static void body_id(kat *k, uint32_t id)
{
    uint8_t b[4];
    ea_put_be32(b, id);
    body_tlv(k, EA_TAG_1, b, 4);
}

/* Send CLA 80 INS P1 P2 + the body (short Lc below 256 bytes, else
 * extended). Returns the SW, or SW_NOT_SENT when the emulator refused the
 * C-APDU without producing an R-APDU (only an over-long APDU may do that). */
static uint16_t send(kat *k, uint8_t ins, uint8_t p1, uint8_t p2)
{
    uint8_t r[EA_EMU_APDU_MAX];
    size_t rl = sizeof r;

    k->apdu_len = tu_apdu(k->apdu, sizeof k->apdu, EA_CLA_APPLET, ins, p1, p2, k->body,
                          k->body_len, 0);
    k->rsp_len = 0;
    if (ea_emu_transceive(k->ch, k->apdu, k->apdu_len, r, &rl) != EA_OK) {
        k->sw = SW_NOT_SENT;
        return k->sw;
    }
    assert_true(rl >= 2 && rl <= sizeof r);
    k->rsp_len = rl - 2;
    memcpy(k->rsp, r, k->rsp_len);
    k->sw = (uint16_t)((r[rl - 2] << 8) | r[rl - 1]);
    return k->sw;
}

/* A byte-array answer: exactly `41 82 LH LL <data>` then 9000. */
static bool rsp_bytes(const kat *k, const uint8_t **d, size_t *n)
{
    if (k->sw != EA_SW_OK || k->rsp_len < 4 || k->rsp[0] != EA_TAG_1 || k->rsp[1] != 0x82)
        return false;
    size_t len = ((size_t)k->rsp[2] << 8) | k->rsp[3];
    if (len + 4 != k->rsp_len)
        return false;
    *d = k->rsp + 4;
    *n = len;
    return true;
}

/* A Result answer `41 01 xx` then 9000: xx, or -1 for anything else. */
static int rsp_result(const kat *k)
{
    if (k->sw != EA_SW_OK || k->rsp_len != 3 || k->rsp[0] != EA_TAG_1 || k->rsp[1] != 0x01)
        return -1;
    return k->rsp[2];
}

static void hex_show(const uint8_t *b, size_t n, char *out)
{
    size_t m = n > SHOW_MAX ? SHOW_MAX : n;
    ea_hex_encode(b, m, out);
    if (m < n)
        strcat(out, "...");
}

/* Count a disagreement and print the exchange behind it. */
static void disagree(kat *k, long tc, const char *why)
{
    char a[2 * SHOW_MAX + 4], r[2 * SHOW_MAX + 4];

    k->bad++;
    if (k->bad > MAX_REPORTS) {
        if (k->bad == MAX_REPORTS + 1)
            print_message("  (further disagreements in %s not printed)\n", k->file);
        return;
    }
    hex_show(k->apdu, k->apdu_len, a);
    hex_show(k->rsp, k->rsp_len, r);
    print_message("  DISAGREE %s tcId %ld: %s\n    C-APDU (%zu bytes): %s\n"
                  "    R-APDU: %s SW %04X\n",
                  k->file, tc, why, k->apdu_len, a, r, (unsigned)k->sw);
}

/* ------------------------------------------------------------------------ */
/* Tallies: what each case's result allows, and how the chip answered.      */

enum { R_VALID, R_INVALID, R_ACCEPTABLE, R_COUNT_ };
static const char *const result_name[R_COUNT_] = { "valid", "invalid", "acceptable" };

typedef enum how {
    H_ACCEPTED,      /* succeeded with the expected output / verify said valid */
    H_WRONG,         /* succeeded with a wrong output, or malformed response: never right */
    H_LIMIT,         /* outside the applet's documented limits, refused with 6A80 */
    H_HOST,          /* refused on the host side (ours) before any APDU */
    H_IMPORT,        /* the chip refused the key at import */
    H_SW,            /* the chip answered the operation with an error SW */
    H_RESULT,        /* the chip answered Result FAILURE (41 01 02) / tag differs */
    H_NOT_SENT,      /* the C-APDU was refused as a whole (longer than the chip takes) */
    H_COUNT_
} how;

typedef struct tally {
    unsigned total;
    unsigned n[R_COUNT_];       /* cases per result */
    unsigned accepted[R_COUNT_];
    unsigned refused[R_COUNT_]; /* refused in any allowed way, limits included */
    unsigned by[H_COUNT_];      /* refusals by kind */
    unsigned limit_by[R_COUNT_];
    unsigned sw_6a80;           /* H_SW refusals that were 6A80 */
    uint16_t other_sw[8];       /* the distinct other SWs of H_SW refusals */
    unsigned n_other_sw;
    unsigned skipped;           /* cases of the file this test does not run */
    double t0;
} tally;

static int vec_result(const char *s)
{
    for (int i = 0; i < R_COUNT_; i++)
        if (strcmp(s, result_name[i]) == 0)
            return i;
    fail_msg("unknown vector result \"%s\"", s);
    return R_INVALID;
}

static void note_sw(tally *t, uint16_t sw)
{
    for (unsigned i = 0; i < t->n_other_sw; i++)
        if (t->other_sw[i] == sw)
            return;
    if (t->n_other_sw < sizeof t->other_sw / sizeof t->other_sw[0])
        t->other_sw[t->n_other_sw++] = sw;
}

static void judge(kat *k, tally *t, long tc, int result, how h, const char *why)
{
    char msg[256];

    t->total++;
    t->n[result]++;
    switch (h) {
    case H_ACCEPTED:
        if (result == R_INVALID) {
            snprintf(msg, sizeof msg, "invalid case accepted%s%s", why ? ": " : "", why ? why : "");
            disagree(k, tc, msg);
            return;
        }
        t->accepted[result]++;
        return;
    case H_WRONG:
        snprintf(msg, sizeof msg, "%s case: %s", result_name[result], why ? why : "wrong output");
        disagree(k, tc, msg);
        return;
    case H_LIMIT:
        t->limit_by[result]++;
        t->refused[result]++;
        t->by[h]++;
        return;
    default:
        if (result == R_VALID) {
            snprintf(msg, sizeof msg, "valid case refused%s%s", why ? ": " : "", why ? why : "");
            disagree(k, tc, msg);
            return;
        }
        t->refused[result]++;
        t->by[h]++;
        if (h == H_SW && k->sw == EA_SW_WRONG_DATA)
            t->sw_6a80++;
        else if (h == H_SW)
            note_sw(t, k->sw);
        return;
    }
}

static void summary(const kat *k, const tally *t)
{
    char other[64] = "";
    for (unsigned i = 0; i < t->n_other_sw; i++)
        snprintf(other + strlen(other), sizeof other - strlen(other), "%s%04X", i ? " " : ", other: ",
                 (unsigned)t->other_sw[i]);
    print_message("[vectors] %s: %u cases | valid %u/%u agreed (%u refused by applet limits) | "
                  "invalid %u/%u refused (%u by limits) | acceptable %u (%u accepted, %u refused) | "
                  "refusals: host %u, import %u, error SW %u (6A80: %u%s), Result FAILURE/tag differs %u, "
                  "APDU not taken %u | skipped %u | disagreements %u | %.2f s\n",
                  k->file, t->total, t->accepted[R_VALID] + t->limit_by[R_VALID], t->n[R_VALID],
                  t->limit_by[R_VALID], t->refused[R_INVALID], t->n[R_INVALID],
                  t->limit_by[R_INVALID], t->n[R_ACCEPTABLE], t->accepted[R_ACCEPTABLE],
                  t->refused[R_ACCEPTABLE], t->by[H_HOST], t->by[H_IMPORT], t->by[H_SW], t->sw_6a80,
                  other, t->by[H_RESULT], t->by[H_NOT_SENT], t->skipped, k->bad, now_s() - t->t0);
}

/* Every case counted once and agreed: the final word of each test. */
static void tally_check(const kat *k, const tally *t, unsigned expected_total)
{
    summary(k, t);
    assert_int_equal(k->bad, 0);
    assert_int_equal(t->total, expected_total);
    assert_int_equal(t->accepted[R_VALID] + t->limit_by[R_VALID], t->n[R_VALID]);
    assert_int_equal(t->refused[R_INVALID], t->n[R_INVALID]);
    assert_int_equal(t->accepted[R_ACCEPTABLE] + t->refused[R_ACCEPTABLE], t->n[R_ACCEPTABLE]);
}

/* ------------------------------------------------------------------------ */
/* Vector files                                                              */

static json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        fail_msg("vector field \"%s\" missing", key);
    return v;
}

static const char *jstr(json_object *o, const char *key)
{
    return json_object_get_string(jget(o, key));
}

static int jint(json_object *o, const char *key)
{
    return json_object_get_int(jget(o, key));
}

static size_t hex_into(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = cap;
    if (ea_hex_decode(hex, out, &n) != EA_OK)
        fail_msg("bad or over-long hex in vector: %.48s", hex);
    return n;
}

static json_object *vectors_or_skip(const char *relpath)
{
    json_object *j = tu_vectors_json(relpath); /* prints the reason when NULL */
    if (!j)
        skip();
    return j;
}

/* ------------------------------------------------------------------------ */
/* Key objects                                                               */

static uint16_t delete_object(kat *k, uint32_t id)
{
    body_reset(k);
    body_id(k, id);
    return send(k, EA_INS_MGMT, EA_P1_DEFAULT, EA_P2_DELETE_OBJECT);
}

/* One object id whose content the test remembers, so that consecutive cases
 * with the same key do not write it again. */
typedef struct slot {
    uint32_t id;
    bool present;
    uint8_t val[256];
    size_t len;
} slot;

static void slot_init(kat *k, slot *s, uint32_t id)
{
    memset(s, 0, sizeof *s);
    s->id = id;
    (void)delete_object(k, id); /* a leftover of an aborted run, if any: SW irrelevant */
}

static void slot_drop(kat *k, slot *s)
{
    if (!s->present)
        return;
    s->present = false;
    if (delete_object(k, s->id) != EA_SW_OK)
        fail_msg("DeleteSecureObject %08X: SW %04X", (unsigned)s->id, (unsigned)k->sw);
}

static bool slot_holds(const slot *s, const uint8_t *v, size_t n)
{
    return s->present && s->len == n && memcmp(s->val, v, n) == 0;
}

static void slot_set(slot *s, const uint8_t *v, size_t n)
{
    assert_true(n <= sizeof s->val);
    s->present = true;
    s->len = n;
    memcpy(s->val, v, n);
}

/* After a refused write nothing may linger under the id (a later write with
 * the curve TLV would then meet an existing object). */
static void slot_after_refusal(kat *k, slot *s)
{
    uint16_t sw = k->sw;
    uint8_t r[sizeof k->rsp];
    size_t rl = k->rsp_len;
    uint8_t a[sizeof k->apdu];
    size_t al = k->apdu_len;

    memcpy(r, k->rsp, rl);
    memcpy(a, k->apdu, al);
    (void)delete_object(k, s->id);
    /* keep the refused exchange for the report */
    k->sw = sw;
    memcpy(k->rsp, r, rl);
    k->rsp_len = rl;
    memcpy(k->apdu, a, al);
    k->apdu_len = al;
}

/* WriteSymmKey HMAC: 80 01 05 00 Lc 41 04 <id> 43 <key>. */
static uint16_t put_hmac(kat *k, slot *s, const uint8_t *key, size_t n)
{
    if (slot_holds(s, key, n))
        return EA_SW_OK;
    slot_drop(k, s);
    body_reset(k);
    body_id(k, s->id);
    body_tlv(k, EA_TAG_3, key, n);
    if (send(k, EA_INS_WRITE, EA_P1_HMAC, EA_P2_DEFAULT) == EA_SW_OK)
        slot_set(s, key, n);
    else
        slot_after_refusal(k, s);
    return k->sw;
}

/* WriteECKey, new object: 80 01 <01|part> 00 Lc 41 04 <id> 42 01 <curve>
 * [43 <private>] [44 <public>]. */
static uint16_t put_ec(kat *k, slot *s, uint8_t curve, uint8_t part, const uint8_t *v, size_t n)
{
    if (slot_holds(s, v, n))
        return EA_SW_OK;
    slot_drop(k, s);
    body_reset(k);
    body_id(k, s->id);
    body_u8(k, EA_TAG_2, curve);
    body_tlv(k, part == EA_P1_PRIVATE ? EA_TAG_3 : EA_TAG_4, v, n);
    if (send(k, EA_INS_WRITE, (uint8_t)(EA_P1_EC | part), EA_P2_DEFAULT) == EA_SW_OK)
        slot_set(s, v, n);
    else
        slot_after_refusal(k, s);
    return k->sw;
}

/* ------------------------------------------------------------------------ */
/* 1. ECDSA verify (Wycheproof EcdsaVerify)                                  */

typedef struct curve_info {
    uint8_t id;      /* SE05x curve id */
    size_t size;     /* field / scalar size in bytes */
    int nid;         /* OpenSSL */
} curve_info;

static const curve_info P256 = { EA_CURVE_NIST_P256, 32, NID_X9_62_prime256v1 };
static const curve_info P384 = { EA_CURVE_NIST_P384, 48, NID_secp384r1 };

static void run_ecdsa(void **state, const char *file, const curve_info *cv)
{
    json_object *j = vectors_or_skip(file);
    kat *k = kat_begin(state, file);
    tally t = { .t0 = now_s() };
    slot key;
    json_object *groups = jget(j, "testGroups");

    slot_init(k, &key, ID_ECDSA);
    for (size_t g = 0; g < json_object_array_length(groups); g++) {
        json_object *grp = json_object_array_get_idx(groups, g);
        json_object *tests = jget(grp, "tests");
        const char *sha = jstr(grp, "sha");
        const EVP_MD *md = NULL;
        uint8_t algo = 0;
        uint8_t pub[1 + 2 * 66];
        size_t pub_len = hex_into(jstr(jget(grp, "publicKey"), "uncompressed"), pub, sizeof pub);

        if (strcmp(sha, "SHA-256") == 0) {
            md = EVP_sha256();
            algo = EA_SIG_ECDSA_SHA256;
        } else if (strcmp(sha, "SHA-384") == 0) {
            md = EVP_sha384();
            algo = EA_SIG_ECDSA_SHA384;
        } else {
            fail_msg("%s: unexpected sha %s", file, sha);
        }
        assert_int_equal(pub_len, 1 + 2 * cv->size);

        /* Public-only import: P1 01|20. The group keys are all valid keys. */
        uint16_t isw = put_ec(k, &key, cv->id, EA_P1_PUBLIC, pub, pub_len);
        if (isw != EA_SW_OK)
            disagree(k, -1, "WriteECKey of a group's (valid) public key refused");

        for (size_t i = 0; i < json_object_array_length(tests); i++) {
            json_object *tc = json_object_array_get_idx(tests, i);
            long id = jint(tc, "tcId");
            int res = vec_result(jstr(tc, "result"));
            size_t msg_len, sig_len;
            uint8_t *msg = tu_json_hex(tc, "msg", &msg_len);
            uint8_t *sig = tu_json_hex(tc, "sig", &sig_len);
            uint8_t dg[EVP_MAX_MD_SIZE];
            unsigned dg_len = 0;

            assert_int_equal(EVP_Digest(msg, msg_len, dg, &dg_len, md, NULL), 1);
            if (isw != EA_SW_OK) {
                judge(k, &t, id, res, H_IMPORT, "group key refused at import");
                free(msg);
                free(sig);
                continue;
            }
            body_reset(k);
            body_id(k, key.id);
            body_u8(k, EA_TAG_2, algo);
            body_tlv(k, EA_TAG_3, dg, dg_len);
            body_tlv(k, EA_TAG_5, sig, sig_len);
            send(k, EA_INS_CRYPTO, EA_P1_SIGNATURE, EA_P2_VERIFY);

            int r = rsp_result(k);
            if (r == EA_RESULT_SUCCESS)
                judge(k, &t, id, res, H_ACCEPTED, "ECDSAVerify said 41 01 01");
            else if (r == EA_RESULT_FAILURE)
                judge(k, &t, id, res, H_RESULT, "ECDSAVerify said 41 01 02");
            else if (k->sw == SW_NOT_SENT)
                judge(k, &t, id, res, H_NOT_SENT, "C-APDU not taken");
            else if (k->sw != EA_SW_OK)
                judge(k, &t, id, res, H_SW, "error SW");
            else
                judge(k, &t, id, res, H_WRONG, "9000 without a `41 01 xx` Result");
            free(msg);
            free(sig);
        }
        slot_drop(k, &key);
    }
    unsigned expected = (unsigned)jint(j, "numberOfTests");
    json_object_put(j);
    tally_check(k, &t, expected);
}

static void test_ecdsa_p256_sha256(void **state)
{
    run_ecdsa(state, "wycheproof/ecdsa_secp256r1_sha256_test.json", &P256);
}

static void test_ecdsa_p384_sha384(void **state)
{
    run_ecdsa(state, "wycheproof/ecdsa_secp384r1_sha384_test.json", &P384);
}

/* ------------------------------------------------------------------------ */
/* 2. ECDH (Wycheproof EcdhEcpointTest and EcdhTest)                         */

static int curve_nid_from_name(const char *name)
{
    int nid = OBJ_sn2nid(name);
    if (nid == NID_undef)
        nid = EC_curve_nist2nid(name);
    return nid;
}

/* The host library's part for an X.509 SubjectPublicKeyInfo peer key: the SE
 * takes raw points only, so decode the SPKI (OpenSSL checks the point is on
 * the curve), insist on the chip key's named curve and hand over 04||X||Y.
 * false = the host refuses the peer key. */
static bool spki_to_point(const uint8_t *der, size_t len, const curve_info *cv, uint8_t *pt)
{
    const unsigned char *p = der;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)len);
    BIGNUM *x = NULL, *y = NULL;
    char name[80], enc[32];
    size_t name_len = 0;
    bool ok = false;

    if (!pk || p != der + len) /* undecodable, or trailing bytes after the SPKI */
        goto out;
    if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC)
        goto out;
    if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name,
                                        &name_len))
        goto out;
    if (curve_nid_from_name(name) != cv->nid)
        goto out;
    /* Named-curve OIDs only. OpenSSL maps explicit parameters to a named
     * curve when they look close enough (a missing cofactor, cofactor = n:
     * Wycheproof P-256 tcId 359/361, P-384 tcId 799), so a host that took
     * them would use a key whose stated group is wrong. */
    if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_EC_ENCODING, enc, sizeof enc, NULL) ||
        strcmp(enc, OSSL_PKEY_EC_ENCODING_GROUP) != 0)
        goto out;
    if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &x) ||
        !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &y))
        goto out;
    pt[0] = 0x04;
    if (BN_bn2binpad(x, pt + 1, (int)cv->size) != (int)cv->size ||
        BN_bn2binpad(y, pt + 1 + cv->size, (int)cv->size) != (int)cv->size)
        goto out;
    ok = true;
out:
    BN_free(x);
    BN_free(y);
    EVP_PKEY_free(pk);
    ERR_clear_error();
    return ok;
}

static void run_ecdh(void **state, const char *file, const curve_info *cv, bool asn)
{
    json_object *j = vectors_or_skip(file);
    kat *k = kat_begin(state, file);
    tally t = { .t0 = now_s() };
    slot key;
    json_object *groups = jget(j, "testGroups");

    slot_init(k, &key, ID_ECDH);
    for (size_t g = 0; g < json_object_array_length(groups); g++) {
        json_object *grp = json_object_array_get_idx(groups, g);
        json_object *tests = jget(grp, "tests");

        for (size_t i = 0; i < json_object_array_length(tests); i++) {
            json_object *tc = json_object_array_get_idx(tests, i);
            long id = jint(tc, "tcId");
            int res = vec_result(jstr(tc, "result"));
            size_t priv_len, pub_len, shared_len;
            uint8_t *priv = tu_json_hex(tc, "private", &priv_len);
            uint8_t *pub = tu_json_hex(tc, "public", &pub_len);
            uint8_t *shared = tu_json_hex(tc, "shared", &shared_len);
            uint8_t d[66] = { 0 };
            uint8_t pt[1 + 2 * 66];
            const uint8_t *peer = pub;
            size_t peer_len = pub_len;
            const uint8_t *p = priv;
            size_t n = priv_len;

            /* The private key is a big-endian integer: strip or pad to the
             * curve size. One larger than that is >= the order: no encoding
             * exists, so the host refuses it. */
            while (n > 0 && *p == 0) {
                p++;
                n--;
            }
            if (n > cv->size) {
                judge(k, &t, id, res, H_HOST, "private key longer than the curve size");
                goto next;
            }
            memcpy(d + cv->size - n, p, n);

            if (asn) {
                if (!spki_to_point(pub, pub_len, cv, pt)) {
                    judge(k, &t, id, res, H_HOST, "host could not use the SubjectPublicKeyInfo");
                    goto next;
                }
                peer = pt;
                peer_len = 1 + 2 * cv->size;
            }

            /* Private-only import: P1 01|40 (kept while the key repeats). */
            if (put_ec(k, &key, cv->id, EA_P1_PRIVATE, d, cv->size) != EA_SW_OK) {
                judge(k, &t, id, res, H_IMPORT, "WriteECKey private refused");
                goto next;
            }

            body_reset(k);
            body_id(k, key.id);
            body_tlv(k, EA_TAG_2, peer, peer_len);
            send(k, EA_INS_CRYPTO, EA_P1_EC, EA_P2_DH);

            const uint8_t *z;
            size_t z_len;
            if (rsp_bytes(k, &z, &z_len)) {
                if (z_len == shared_len && memcmp(z, shared, z_len) == 0)
                    judge(k, &t, id, res, H_ACCEPTED, "shared secret produced");
                else
                    judge(k, &t, id, res, H_WRONG, "shared secret differs from the vector's");
            } else if (k->sw == EA_SW_OK) {
                judge(k, &t, id, res, H_WRONG, "9000 without a `41 82 LH LL` byte array");
            } else if (k->sw == SW_NOT_SENT) {
                judge(k, &t, id, res, H_NOT_SENT, "C-APDU not taken");
            } else {
                judge(k, &t, id, res, H_SW, "ECDH refused with an error SW");
            }
        next:
            free(priv);
            free(pub);
            free(shared);
        }
    }
    slot_drop(k, &key);
    unsigned expected = (unsigned)jint(j, "numberOfTests");
    json_object_put(j);
    tally_check(k, &t, expected);
}

static void test_ecdh_p256_ecpoint(void **state)
{
    run_ecdh(state, "wycheproof/ecdh_secp256r1_ecpoint_test.json", &P256, false);
}

static void test_ecdh_p384_ecpoint(void **state)
{
    run_ecdh(state, "wycheproof/ecdh_secp384r1_ecpoint_test.json", &P384, false);
}

static void test_ecdh_p256_spki(void **state)
{
    run_ecdh(state, "wycheproof/ecdh_secp256r1_test.json", &P256, true);
}

static void test_ecdh_p384_spki(void **state)
{
    run_ecdh(state, "wycheproof/ecdh_secp384r1_test.json", &P384, true);
}

/* ------------------------------------------------------------------------ */
/* 3. HKDF-SHA256 (HKDF command) and HMAC-SHA256 (MACOneShot)                 */

static void test_hkdf_sha256(void **state)
{
    const char *file = "wycheproof/hkdf_sha256_test.json";
    json_object *j = vectors_or_skip(file);
    kat *k = kat_begin(state, file);
    tally t = { .t0 = now_s() };
    slot ikm_key;
    json_object *groups = jget(j, "testGroups");

    slot_init(k, &ikm_key, ID_HKDF);
    for (size_t g = 0; g < json_object_array_length(groups); g++) {
        json_object *tests = jget(json_object_array_get_idx(groups, g), "tests");

        for (size_t i = 0; i < json_object_array_length(tests); i++) {
            json_object *tc = json_object_array_get_idx(tests, i);
            long id = jint(tc, "tcId");
            int res = vec_result(jstr(tc, "result"));
            int size = jint(tc, "size");
            size_t ikm_len, salt_len, info_len, okm_len;
            uint8_t *ikm = tu_json_hex(tc, "ikm", &ikm_len);
            uint8_t *salt = tu_json_hex(tc, "salt", &salt_len);
            uint8_t *info = tu_json_hex(tc, "info", &info_len);
            uint8_t *okm = tu_json_hex(tc, "okm", &okm_len);
            bool in_limits = salt_len <= HKDF_SALT_MAX && info_len <= HKDF_INFO_MAX && size > 0 &&
                             (unsigned)size <= HKDF_L_MAX;

            if (size <= 0 || size > 0xFFFF) {
                judge(k, &t, id, res, H_HOST, "L does not fit the 2-byte TAG_5");
                goto next;
            }
            if (put_hmac(k, &ikm_key, ikm, ikm_len) != EA_SW_OK) {
                judge(k, &t, id, res, H_IMPORT, "WriteSymmKey HMAC (IKM) refused");
                goto next;
            }
            /* Empty salt / info: the optional TLV is left out (default salt). */
            body_reset(k);
            body_id(k, ikm_key.id);
            body_u8(k, EA_TAG_2, EA_DIGEST_SHA256);
            if (salt_len)
                body_tlv(k, EA_TAG_3, salt, salt_len);
            if (info_len)
                body_tlv(k, EA_TAG_4, info, info_len);
            body_u16(k, EA_TAG_5, (uint16_t)size);
            send(k, EA_INS_CRYPTO, EA_P1_DEFAULT, EA_P2_HKDF);

            const uint8_t *o;
            size_t o_len;
            if (!in_limits) {
                if (k->sw == EA_SW_WRONG_DATA)
                    judge(k, &t, id, res, H_LIMIT, NULL);
                else
                    judge(k, &t, id, res, H_WRONG,
                          "outside the applet limits (salt<=64, info<=80, 0<L<=800): 6A80 expected");
            } else if (rsp_bytes(k, &o, &o_len)) {
                if (o_len == okm_len && o_len == (size_t)size && memcmp(o, okm, o_len) == 0)
                    judge(k, &t, id, res, H_ACCEPTED, "OKM produced");
                else
                    judge(k, &t, id, res, H_WRONG, "OKM differs from the vector's");
            } else if (k->sw == EA_SW_OK) {
                judge(k, &t, id, res, H_WRONG, "9000 without a `41 82 LH LL` byte array");
            } else {
                judge(k, &t, id, res, H_SW, "HKDF refused with an error SW");
            }
        next:
            free(ikm);
            free(salt);
            free(info);
            free(okm);
        }
    }
    slot_drop(k, &ikm_key);
    unsigned expected = (unsigned)jint(j, "numberOfTests");
    json_object_put(j);
    tally_check(k, &t, expected);
}

static void test_hmac_sha256(void **state)
{
    const char *file = "wycheproof/hmac_sha256_test.json";
    json_object *j = vectors_or_skip(file);
    kat *k = kat_begin(state, file);
    tally t = { .t0 = now_s() };
    slot mac_key;
    unsigned validated = 0;
    json_object *groups = jget(j, "testGroups");

    slot_init(k, &mac_key, ID_HMAC);
    for (size_t g = 0; g < json_object_array_length(groups); g++) {
        json_object *grp = json_object_array_get_idx(groups, g);
        json_object *tests = jget(grp, "tests");
        int tag_bits = jint(grp, "tagSize");
        size_t tb = (size_t)tag_bits / 8;

        assert_true(tag_bits > 0 && tag_bits % 8 == 0 && tb <= 32);
        for (size_t i = 0; i < json_object_array_length(tests); i++) {
            json_object *tc = json_object_array_get_idx(tests, i);
            long id = jint(tc, "tcId");
            int res = vec_result(jstr(tc, "result"));
            size_t key_len, msg_len, tag_len;
            uint8_t *key = tu_json_hex(tc, "key", &key_len);
            uint8_t *msg = tu_json_hex(tc, "msg", &msg_len);
            uint8_t *tag = tu_json_hex(tc, "tag", &tag_len);
            uint8_t gen[32];
            const uint8_t *o;
            size_t o_len;

            if (put_hmac(k, &mac_key, key, key_len) != EA_SW_OK) {
                judge(k, &t, id, res, H_IMPORT, "WriteSymmKey HMAC refused");
                goto next;
            }
            /* generate: 41 id, 42 algo, 43 data (an empty message is `43 00`) */
            body_reset(k);
            body_id(k, mac_key.id);
            body_u8(k, EA_TAG_2, EA_MAC_HMAC_SHA256);
            body_tlv(k, EA_TAG_3, msg, msg_len);
            send(k, EA_INS_CRYPTO, EA_P1_MAC, EA_P2_GENERATE_ONESHOT);
            if (!rsp_bytes(k, &o, &o_len) || o_len != 32) {
                /* whatever the tag, key and message are fine: generation must work */
                judge(k, &t, id, res, H_WRONG,
                      "MACOneShot generate did not return `41 82 00 20 <tag>` 9000");
                goto next;
            }
            memcpy(gen, o, 32);
            /* a truncated tag (tagSize < 256) is the first tagSize/8 bytes */
            bool equal = tag_len == tb && memcmp(gen, tag, tb) == 0;

            if (tb == 32) {
                body_reset(k);
                body_id(k, mac_key.id);
                body_u8(k, EA_TAG_2, EA_MAC_HMAC_SHA256);
                body_tlv(k, EA_TAG_3, msg, msg_len);
                body_tlv(k, EA_TAG_5, tag, tag_len);
                send(k, EA_INS_CRYPTO, EA_P1_MAC, EA_P2_VALIDATE_ONESHOT);
                int r = rsp_result(k);
                validated++;
                if (r == EA_RESULT_SUCCESS && equal)
                    judge(k, &t, id, res, H_ACCEPTED, "tag generated equal and validated");
                else if (r == EA_RESULT_FAILURE && !equal)
                    judge(k, &t, id, res, H_RESULT, "tag differs and validate said 41 01 02");
                else if (r < 0)
                    judge(k, &t, id, res, H_WRONG, "MACOneShot validate did not answer `41 01 xx` 9000");
                else
                    judge(k, &t, id, res, H_WRONG,
                          equal ? "generate matched but validate said 41 01 02"
                                : "generate differs but validate said 41 01 01");
            } else {
                judge(k, &t, id, res, equal ? H_ACCEPTED : H_RESULT,
                      equal ? "truncated tag equal" : "truncated tag differs");
            }
        next:
            free(key);
            free(msg);
            free(tag);
        }
    }
    slot_drop(k, &mac_key);
    print_message("[vectors] %s: %u full-length tags also checked with MACOneShot validate\n", file,
                  validated);
    unsigned expected = (unsigned)jint(j, "numberOfTests");
    json_object_put(j);
    tally_check(k, &t, expected);
}

/* ------------------------------------------------------------------------ */
/* 4. TLS 1.2 PRF (TLSPerformPRF, all four P2 variants)                       */

typedef struct tls_case {
    long id;
    uint8_t pms[64];
    size_t pms_len;
    uint8_t ch_rnd[32], sh_rnd[32]; /* hello randoms: master secret */
    uint8_t c_rnd[32], s_rnd[32];   /* key-expansion randoms: key block */
    uint8_t ms[48];
    size_t ms_len;
    uint8_t kb[256];
    size_t kb_len;
} tls_case;

typedef struct tls_run {
    slot pms, ms;
    unsigned used[4]; /* cases per P2 4B, 4C, 4D, 4E */
    unsigned cases;
} tls_run;

static const char LABEL_MS[] = "master secret";
static const char LABEL_KB[] = "key expansion";

/* TLSPerformPRF: 80 03 0F P2 Lc 41 04 <key id> 42 01 <digest> 43 <label>
 * 44 20 <host random> 45 02 <len>. The SE-held random goes in through the
 * test hook right before (the PRF consumes it). */
static uint16_t tls_prf(kat *k, uint32_t key_id, uint8_t p2, uint8_t digest, const char *label,
                        const uint8_t se_rnd[32], const uint8_t host_rnd[32], size_t len)
{
    assert_true(len > 0 && len <= 0xFFFF);
    assert_int_equal(ea_emu_test_set_tls_random(k->ch, se_rnd), EA_OK);
    body_reset(k);
    body_id(k, key_id);
    body_u8(k, EA_TAG_2, digest);
    body_tlv(k, EA_TAG_3, (const uint8_t *)label, strlen(label));
    body_tlv(k, EA_TAG_4, host_rnd, 32);
    body_u16(k, EA_TAG_5, (uint16_t)len);
    return send(k, EA_INS_CRYPTO, EA_P1_TLS, p2);
}

static bool prf_output_is(const kat *k, const uint8_t *want, size_t len)
{
    const uint8_t *o;
    size_t o_len;
    return rsp_bytes(k, &o, &o_len) && o_len == len && memcmp(o, want, len) == 0;
}

/* One vector: master secret from the pre-master secret (4B on even cases,
 * 4C on odd), then the key block from the master secret (4D even, 4E odd). */
static void tls_case_run(kat *k, tally *t, tls_run *run, const tls_case *c, uint8_t digest)
{
    bool alt = (run->cases++ & 1) != 0;
    uint8_t p2;

    if (put_hmac(k, &run->pms, c->pms, c->pms_len) != EA_SW_OK) {
        judge(k, t, c->id, R_VALID, H_IMPORT, "WriteSymmKey HMAC (pre-master secret) refused");
        return;
    }
    /* 4B: host passes clientHello.random, SE holds serverHello.random;
     * 4C: the other way round. Seed = client || server either way. */
    p2 = alt ? EA_P2_TLS_PRF_SRV_HELLO : EA_P2_TLS_PRF_CLI_HELLO;
    tls_prf(k, run->pms.id, p2, digest, LABEL_MS, alt ? c->ch_rnd : c->sh_rnd,
            alt ? c->sh_rnd : c->ch_rnd, c->ms_len);
    run->used[p2 - EA_P2_TLS_PRF_CLI_HELLO]++;
    if (!prf_output_is(k, c->ms, c->ms_len)) {
        judge(k, t, c->id, R_VALID, k->sw == EA_SW_OK ? H_WRONG : H_SW,
              alt ? "master secret (P2 4C) differs or refused" : "master secret (P2 4B) differs or refused");
        return;
    }

    if (put_hmac(k, &run->ms, c->ms, c->ms_len) != EA_SW_OK) {
        judge(k, t, c->id, R_VALID, H_IMPORT, "WriteSymmKey HMAC (master secret) refused");
        return;
    }
    /* 4D: host passes client random, SE holds server random; 4E: the other
     * way round. Seed = server || client either way. */
    p2 = alt ? EA_P2_TLS_PRF_SRV_RND : EA_P2_TLS_PRF_CLI_RND;
    tls_prf(k, run->ms.id, p2, digest, LABEL_KB, alt ? c->c_rnd : c->s_rnd,
            alt ? c->s_rnd : c->c_rnd, c->kb_len);
    run->used[p2 - EA_P2_TLS_PRF_CLI_HELLO]++;
    if (!prf_output_is(k, c->kb, c->kb_len)) {
        judge(k, t, c->id, R_VALID, k->sw == EA_SW_OK ? H_WRONG : H_SW,
              alt ? "key block (P2 4E) differs or refused" : "key block (P2 4D) differs or refused");
        return;
    }
    judge(k, t, c->id, R_VALID, H_ACCEPTED, NULL);
}

static void tls_run_init(kat *k, tls_run *run)
{
    memset(run, 0, sizeof *run);
    slot_init(k, &run->pms, ID_TLS_PMS);
    slot_init(k, &run->ms, ID_TLS_MS);
}

static void tls_run_end(kat *k, tls_run *run)
{
    slot_drop(k, &run->pms);
    slot_drop(k, &run->ms);
    print_message("[vectors] %s: TLSPerformPRF calls per P2: 4B %u, 4C %u, 4D %u, 4E %u\n", k->file,
                  run->used[0], run->used[1], run->used[2], run->used[3]);
}

static void strip_eol(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
        s[--n] = '\0';
}

/* NIST CAVS 17.8 SP 800-135 response file: only [TLS 1.2, SHA-256]. */
static void test_tls12_prf_cavs(void **state)
{
    const char *rel = "nist-cavs-tls-kdf/tlsprf_vectors.txt";
    const char *dir = tu_vectors_dir();
    char path[1200];
    FILE *f;

    if (!dir) {
        print_message("skipped: vectors folder absent (set EDGEAUTH_VECTORS or provide ../shared/vectors)\n");
        skip();
    }
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    f = fopen(path, "r");
    if (!f) {
        print_message("skipped: cannot read %s\n", path);
        skip();
    }

    kat *k = kat_begin(state, rel);
    tally t = { .t0 = now_s() };
    tls_run run;
    tls_case c;
    char *line = NULL;
    size_t cap = 0;
    bool in12 = false, seen12 = false;
    unsigned have = 0, kb_bits = 0, pms_bits = 0;

    tls_run_init(k, &run);
    memset(&c, 0, sizeof c);
    while (getline(&line, &cap, f) >= 0) {
        strip_eol(line);
        if (line[0] == '[') {
            if (strncmp(line, "[TLS", 4) == 0) {
                in12 = strcmp(line, "[TLS 1.2, SHA-256]") == 0;
                seen12 |= in12;
            } else {
                (void)sscanf(line, "[key block length = %u]", &kb_bits);
                (void)sscanf(line, "[pre-master secret length = %u]", &pms_bits);
            }
            continue;
        }
        char *eq = strstr(line, " = ");
        if (!eq)
            continue;
        *eq = '\0';
        const char *key = line, *val = eq + 3;
        if (strcmp(key, "COUNT") == 0) {
            if (!in12) {
                t.skipped++; /* TLS 1.0/1.1: the MD5/SHA-1 PRF is no TLSPerformPRF mode */
                continue;
            }
            memset(&c, 0, sizeof c);
            c.id = strtol(val, NULL, 10);
            have = 1;
            continue;
        }
        if (!in12)
            continue;
        if (strcmp(key, "pre_master_secret") == 0) {
            c.pms_len = hex_into(val, c.pms, sizeof c.pms);
            assert_int_equal(c.pms_len * 8, pms_bits);
            have |= 2;
        } else if (strcmp(key, "serverHello_random") == 0) {
            assert_int_equal(hex_into(val, c.sh_rnd, 32), 32);
            have |= 4;
        } else if (strcmp(key, "clientHello_random") == 0) {
            assert_int_equal(hex_into(val, c.ch_rnd, 32), 32);
            have |= 8;
        } else if (strcmp(key, "server_random") == 0) {
            assert_int_equal(hex_into(val, c.s_rnd, 32), 32);
            have |= 16;
        } else if (strcmp(key, "client_random") == 0) {
            assert_int_equal(hex_into(val, c.c_rnd, 32), 32);
            have |= 32;
        } else if (strcmp(key, "master_secret") == 0) {
            c.ms_len = hex_into(val, c.ms, sizeof c.ms);
            assert_int_equal(c.ms_len, 48);
            have |= 64;
        } else if (strcmp(key, "key_block") == 0) {
            c.kb_len = hex_into(val, c.kb, sizeof c.kb);
            assert_int_equal(c.kb_len * 8, kb_bits);
            assert_int_equal(have, 127); /* every field of the case seen */
            tls_case_run(k, &t, &run, &c, EA_DIGEST_SHA256);
            have = 0;
        }
    }
    free(line);
    fclose(f);
    tls_run_end(k, &run);
    assert_true(seen12);
    print_message("[vectors] %s: skipped %u [TLS 1.0/1.1] cases (MD5/SHA-1 PRF)\n", rel, t.skipped);
    /* the file's TLS 1.2 section holds 100 cases (vectors/README.md §3) */
    tally_check(k, &t, 100);
    /* even and odd cases: every P2 variant ran */
    for (int i = 0; i < 4; i++)
        assert_true(run.used[i] > 0);
}

/* NIST ACVP kdf-components / tls 1.0 sample: v1.2 groups with SHA2-256 and
 * SHA2-384 (the digests TLSPerformPRF offers); the rest is skipped. */
static void test_tls12_prf_acvp(void **state)
{
    const char *file = "nist-acvp-tls12-kdf/kdf-components-tls-1.0/internalProjection.json";
    json_object *j = vectors_or_skip(file);
    kat *k = kat_begin(state, file);
    tally t = { .t0 = now_s() };
    tls_run run;
    unsigned run_groups = 0, skipped_groups = 0, expected = 0;
    unsigned by_digest[2] = { 0, 0 };
    json_object *groups = jget(j, "testGroups");

    tls_run_init(k, &run);
    for (size_t g = 0; g < json_object_array_length(groups); g++) {
        json_object *grp = json_object_array_get_idx(groups, g);
        json_object *tests = jget(grp, "tests");
        const char *ver = jstr(grp, "tlsVersion");
        const char *hash = jstr(grp, "hashAlg");
        unsigned kb_bits = (unsigned)jint(grp, "keyBlockLength");
        unsigned pms_bits = (unsigned)jint(grp, "preMasterSecretLength");
        uint8_t digest;

        if (strcmp(ver, "v1.2") == 0 && strcmp(hash, "SHA2-256") == 0) {
            digest = EA_DIGEST_SHA256;
        } else if (strcmp(ver, "v1.2") == 0 && strcmp(hash, "SHA2-384") == 0) {
            digest = EA_DIGEST_SHA384;
        } else {
            skipped_groups++;
            t.skipped += (unsigned)json_object_array_length(tests);
            continue;
        }
        run_groups++;
        expected += (unsigned)json_object_array_length(tests);
        by_digest[digest == EA_DIGEST_SHA384] += (unsigned)json_object_array_length(tests);
        for (size_t i = 0; i < json_object_array_length(tests); i++) {
            json_object *tc = json_object_array_get_idx(tests, i);
            tls_case c;

            memset(&c, 0, sizeof c);
            c.id = jint(tc, "tcId");
            c.pms_len = hex_into(jstr(tc, "preMasterSecret"), c.pms, sizeof c.pms);
            assert_int_equal(c.pms_len * 8, pms_bits);
            assert_int_equal(hex_into(jstr(tc, "clientHelloRandom"), c.ch_rnd, 32), 32);
            assert_int_equal(hex_into(jstr(tc, "serverHelloRandom"), c.sh_rnd, 32), 32);
            assert_int_equal(hex_into(jstr(tc, "clientRandom"), c.c_rnd, 32), 32);
            assert_int_equal(hex_into(jstr(tc, "serverRandom"), c.s_rnd, 32), 32);
            c.ms_len = hex_into(jstr(tc, "masterSecret"), c.ms, sizeof c.ms);
            assert_int_equal(c.ms_len, 48);
            c.kb_len = hex_into(jstr(tc, "keyBlock"), c.kb, sizeof c.kb);
            assert_int_equal(c.kb_len * 8, kb_bits);
            tls_case_run(k, &t, &run, &c, digest);
        }
    }
    tls_run_end(k, &run);
    json_object_put(j);
    print_message("[vectors] %s: ran %u groups (SHA-256 %u cases, SHA-384 %u cases), skipped %u groups "
                  "(%u cases: TLS 1.0/1.1 SHA-1 and TLS 1.2 SHA2-512)\n",
                  file, run_groups, by_digest[0], by_digest[1], skipped_groups, t.skipped);
    tally_check(k, &t, expected);
    assert_true(by_digest[0] > 0 && by_digest[1] > 0);
    for (int i = 0; i < 4; i++)
        assert_true(run.used[i] > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ecdsa_p256_sha256),
        cmocka_unit_test(test_ecdsa_p384_sha384),
        cmocka_unit_test(test_ecdh_p256_ecpoint),
        cmocka_unit_test(test_ecdh_p384_ecpoint),
        cmocka_unit_test(test_ecdh_p256_spki),
        cmocka_unit_test(test_ecdh_p384_spki),
        cmocka_unit_test(test_hkdf_sha256),
        cmocka_unit_test(test_hmac_sha256),
        cmocka_unit_test(test_tls12_prf_cavs),
        cmocka_unit_test(test_tls12_prf_acvp),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
