/* libFuzzer target: the host library's response decoders. A transport made
 * here answers every C-APDU with bytes from the input, and each typed
 * command of host.h is run against them: whatever comes back must be
 * refused or decoded within bounds, never crash or over-read.
 * Input: 1 byte choosing the command, then the R-APDU (SW included). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host/host_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fake {
    ea_transport base;
    const uint8_t *rsp;
    size_t n;
} fake;

static ea_err f_open(ea_transport *t, char *err, size_t errlen)
{
    (void)t, (void)err, (void)errlen;
    return EA_OK;
}

static ea_err f_xfer(ea_transport *t, const uint8_t *c, size_t cl, uint8_t *r, size_t *rl, int timeout_ms,
                     char *err, size_t errlen)
{
    fake *f = (fake *)t;
    (void)c, (void)cl, (void)timeout_ms, (void)err, (void)errlen;
    if (f->n < 2 || f->n > *rl)
        return EA_ERR_IO; /* what a transport reports for a short or huge frame */
    memcpy(r, f->rsp, f->n);
    *rl = f->n;
    return EA_OK;
}

static void f_close(ea_transport *t)
{
    (void)t;
}

static const ea_transport_ops fake_ops = { "fuzz", f_open, f_xfer, f_close, f_close };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fake f = { { &fake_ops }, data + 1, size - 1 };
    ea_host h;
    memset(&h, 0, sizeof h);
    pthread_mutex_init(&h.lock, NULL);
    h.tr = &f.base;
    h.connected = true;
    h.timeout_ms = 1000;

    uint8_t buf[4096], dg[32] = { 0 }, peer[65] = { 4 };
    size_t n = sizeof buf;
    bool b;
    uint8_t t8;
    uint16_t u16;
    uint32_t ids[64];
    ea_se_version v;
    switch (data[0] % 16) {
    case 0: (void)ea_host_get_version(&h, &v); break;
    case 1: (void)ea_host_get_random(&h, buf, 40); break;
    case 2: (void)ea_host_free_memory(&h, 1, &u16); break;
    case 3: (void)ea_host_exists(&h, 1, &b); break;
    case 4: n = 64; (void)ea_host_list(&h, 0xFF, ids, &n); break;
    case 5: (void)ea_host_read_type(&h, 1, &t8, &b); break;
    case 6: (void)ea_host_read_size(&h, 1, &u16); break;
    case 7: (void)ea_host_read_pubkey(&h, 1, buf, &n); break;
    case 8: (void)ea_host_ecdsa_sign(&h, 1, EA_SIG_ECDSA_SHA256, dg, 32, buf, &n); break;
    case 9: (void)ea_host_ecdsa_verify(&h, 1, EA_SIG_ECDSA_SHA256, dg, 32, dg, 8, &b); break;
    case 10: (void)ea_host_ecdh(&h, 1, peer, 65, 0, buf, &n); break;
    case 11: (void)ea_host_tls_random(&h, buf); break;
    case 12: (void)ea_host_digest(&h, EA_DIGEST_SHA256, dg, 3, buf, &n); break;
    case 13: (void)ea_host_mac_verify(&h, 1, EA_MAC_HMAC_SHA256, dg, 3, dg, 32, &b); break;
    case 14: {
        ea_attestation *a = malloc(sizeof *a);
        uint8_t fresh[16] = { 0 };
        if (a)
            (void)ea_host_read_attested(&h, 1, EA_OBJ_ATTEST_KEY, EA_SIG_ECDSA_SHA256, fresh, a);
        free(a);
        break;
    }
    default: (void)ea_host_read_object(&h, 1, buf, &n); break;
    }
    pthread_mutex_destroy(&h.lock);
    return 0;
}
