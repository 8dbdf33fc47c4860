/* `edgeauth demo`: until the cloud lands, a narrated conversation with a
 * freshly made chip — the real SE05x APDUs, shown as they go. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "cli/cli.h"
#include "common/tlv.h"
#include "common/util.h"
#include "edgeauth/emu.h"
#include "edgeauth/se05x.h"

typedef struct demo {
    ea_emu_chan *ch;
    int failures;
    uint8_t rsp[EA_EMU_APDU_MAX];
    size_t rsp_len; /* data part, without SW */
} demo;

static void show_hex(const char *dir, const uint8_t *p, size_t n)
{
    printf("      %s ", dir);
    for (size_t i = 0; i < n && i < 40; i++)
        printf("%02X", p[i]);
    printf("%s\n", n > 40 ? "..." : "");
}

/* Send an APDU, show both directions, and return the status word. */
static uint16_t xfer(demo *d, const uint8_t *apdu, size_t n)
{
    uint8_t r[EA_EMU_APDU_MAX];
    size_t rl = sizeof r;
    show_hex(">>", apdu, n);
    if (ea_emu_transceive(d->ch, apdu, n, r, &rl) != EA_OK || rl < 2) {
        printf("      (no answer)\n");
        return 0;
    }
    show_hex("<<", r, rl);
    d->rsp_len = rl - 2;
    memcpy(d->rsp, r, rl - 2);
    return (uint16_t)((r[rl - 2] << 8) | r[rl - 1]);
}

static void expect(demo *d, bool ok, const char *what)
{
    printf("   %s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok)
        d->failures++;
}

static size_t build(uint8_t *out, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *body,
                    size_t bl)
{
    out[0] = cla, out[1] = ins, out[2] = p1, out[3] = p2;
    if (!bl)
        return 4;
    out[4] = (uint8_t)bl;
    memcpy(out + 5, body, bl);
    return 5 + bl;
}

/* The value of the first TLV 41 in the last response. */
static bool tag1(demo *d, ea_cur *v)
{
    ea_cur c = ea_cur_make(d->rsp, d->rsp_len);
    uint8_t tag;
    return ea_tlv_next(&c, &tag, v) == EA_OK && tag == EA_TAG_1;
}

int cmd_demo(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    demo d = { 0 };
    char dir[] = "/tmp/edgeauth-demo-XXXXXX", err[256] = "";
    ea_emu *emu = NULL;
    uint8_t a[512], b[256], pub[65], dg[32], sig[80];
    size_t n, siglen = 0;
    const uint32_t key = 0x7B000100u;

    if (!mkdtemp(dir)) {
        perror("edgeauth demo: mkdtemp");
        return 1;
    }
    printf("edgeauth demo — a software SE05x secure element, spoken to in its own APDUs\n\n");
    printf("1. A new chip is made in %s: unique id, attestation key and its certificate\n"
           "   from an SE vendor CA, all sealed in the chip's object store.\n", dir);
    ea_emu_init_opts io = { 0 };
    if (ea_emu_init(dir, &io, err, sizeof err) != EA_OK ||
        ea_emu_open(dir, NULL, &emu, err, sizeof err) != EA_OK || ea_emu_chan_open(emu, &d.ch) != EA_OK) {
        fprintf(stderr, "edgeauth demo: %s\n", err);
        return 1;
    }

    printf("\n2. The host selects the IoT applet and asks its version.\n");
    uint8_t sel[] = { 0x00, 0xA4, 0x04, 0x00, 0x10, 0xA0, 0x00, 0x00, 0x03, 0x96, 0x54, 0x53, 0x00,
                      0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00 };
    expect(&d, xfer(&d, sel, sizeof sel) == EA_SW_OK && d.rsp_len == 7, "applet selected");
    printf("      applet version %u.%u.%u\n", d.rsp[0], d.rsp[1], d.rsp[2]);

    printf("\n3. The chip generates a NIST P-256 key pair inside; the private half never leaves.\n");
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, key);
    ea_tlv_u8(&w, EA_TAG_2, EA_CURVE_NIST_P256);
    n = build(a, EA_CLA_APPLET, EA_INS_WRITE, EA_P1_EC | EA_P1_KEY_PAIR, 0, b, w.len);
    expect(&d, xfer(&d, a, n) == EA_SW_OK, "key 0x7B000100 generated in the SE");

    w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, key);
    n = build(a, EA_CLA_APPLET, EA_INS_READ, 0, 0, b, w.len);
    ea_cur v;
    bool got_pub = xfer(&d, a, n) == EA_SW_OK && tag1(&d, &v) && v.n == sizeof pub;
    expect(&d, got_pub, "public key read back (uncompressed point)");
    if (got_pub)
        memcpy(pub, v.p, sizeof pub);

    printf("\n4. The host hashes a message; the SE signs the digest (ECDSASign, SHA-256).\n");
    const char *msg = "telemetry: temperature=21.5C";
    unsigned int dl = 0;
    EVP_Digest(msg, strlen(msg), dg, &dl, EVP_sha256(), NULL);
    w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, key);
    ea_tlv_u8(&w, EA_TAG_2, EA_SIG_ECDSA_SHA256);
    ea_tlv_put(&w, EA_TAG_3, dg, sizeof dg);
    n = build(a, EA_CLA_APPLET, EA_INS_CRYPTO, EA_P1_SIGNATURE, EA_P2_SIGN, b, w.len);
    bool signed_ok = xfer(&d, a, n) == EA_SW_OK && tag1(&d, &v) && v.n <= sizeof sig;
    expect(&d, signed_ok, "DER signature returned");
    if (signed_ok) {
        memcpy(sig, v.p, v.n);
        siglen = v.n;
    }

    printf("\n5. The signature is checked twice: by the SE (ECDSAVerify) and by OpenSSL on the host.\n");
    w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, key);
    ea_tlv_u8(&w, EA_TAG_2, EA_SIG_ECDSA_SHA256);
    ea_tlv_put(&w, EA_TAG_3, dg, sizeof dg);
    ea_tlv_put(&w, EA_TAG_5, sig, siglen);
    n = build(a, EA_CLA_APPLET, EA_INS_CRYPTO, EA_P1_SIGNATURE, EA_P2_VERIFY, b, w.len);
    expect(&d, xfer(&d, a, n) == EA_SW_OK && tag1(&d, &v) && v.n == 1 && v.p[0] == EA_RESULT_SUCCESS,
           "the SE says: valid");
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    OSSL_PARAM prm[] = { OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0),
                         OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub),
                         OSSL_PARAM_construct_end() };
    bool host_ok = false;
    if (pc && EVP_PKEY_fromdata_init(pc) > 0 && EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, prm) > 0) {
        EVP_PKEY_CTX *vc = EVP_PKEY_CTX_new(pk, NULL);
        host_ok = vc && EVP_PKEY_verify_init(vc) > 0 && EVP_PKEY_verify(vc, sig, siglen, dg, dl) == 1;
        EVP_PKEY_CTX_free(vc);
    }
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(pc);
    expect(&d, host_ok, "OpenSSL on the host says: valid");

    printf("\n6. A tampered digest must not verify, and the private key must not be readable.\n");
    dg[0] ^= 1;
    w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, key);
    ea_tlv_u8(&w, EA_TAG_2, EA_SIG_ECDSA_SHA256);
    ea_tlv_put(&w, EA_TAG_3, dg, sizeof dg);
    ea_tlv_put(&w, EA_TAG_5, sig, siglen);
    n = build(a, EA_CLA_APPLET, EA_INS_CRYPTO, EA_P1_SIGNATURE, EA_P2_VERIFY, b, w.len);
    expect(&d, xfer(&d, a, n) == EA_SW_OK && tag1(&d, &v) && v.n == 1 && v.p[0] == EA_RESULT_FAILURE,
           "the SE says: not valid");
    uint8_t hmac_key[32] = { 0 };
    w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, 0x7B000200u);
    ea_tlv_put(&w, EA_TAG_3, hmac_key, sizeof hmac_key);
    n = build(a, EA_CLA_APPLET, EA_INS_WRITE, EA_P1_HMAC, 0, b, w.len);
    xfer(&d, a, n);
    w = ea_wbuf_make(b, sizeof b);
    ea_tlv_u32(&w, EA_TAG_1, 0x7B000200u);
    n = build(a, EA_CLA_APPLET, EA_INS_READ, 0, 0, b, w.len);
    expect(&d, xfer(&d, a, n) == EA_SW_CONDITIONS_NOT_SATISFIED, "reading a secret key is refused (69 85)");

    ea_emu_close(emu);
    printf("\n%s: %d failure(s). The chip stays in %s (edgeauth-se serve --state %s serves it).\n",
           d.failures ? "FAILED" : "done", d.failures, dir, dir);
    return d.failures ? 1 : 0;
}
