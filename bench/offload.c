/* bench_offload [-n HANDSHAKES] [-r ROUNDS] [-t se050]: full mutual-TLS handshakes per
 * second and APDUs per handshake for each TLS offload combination (none,
 * random, ecdhe, prf, random+ecdhe+prf), TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256
 * and TLS 1.3, client key in the SE (emu: in-process), server in the same
 * process over a memory BIO pair. Rounds are interleaved; medians, and the
 * ratio to offload off in the same run. APDUs are counted from the
 * provider's APDU log (EDGEAUTH_APDU_LOG) in a separate, unmeasured pass.
 * -t se050 runs the chip under the emulator's SE050 timing model
 * (EDGEAUTH_SE_TIMING): the times are then the predicted handshake times on
 * that part, printed next to NXP's published figures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "edgeauth/emu.h"
#include "edgeauth/host.h"
#include "edgeauth/provider.h"

#define KEY_ID 0xF0000100u
#define MAX_ROUNDS 31

static const char *const combos[] = { "", "random", "ecdhe", "prf", "random,ecdhe,prf" };
#define NCOMBO (sizeof combos / sizeof combos[0])

static void die(const char *what)
{
    fprintf(stderr, "bench_offload: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static X509 *make_cert(EVP_PKEY *subj_key, EVP_PKEY *ca_key, X509 *ca, const char *cn)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    if (!x || !n)
        die("X509_new");
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(rand() & 0x7FFFFFFF));
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : n);
    X509_set_pubkey(x, subj_key);
    if (!ca) { /* the CA itself: libcrypto wants CA:TRUE on a trust anchor used as issuer */
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
        if (!e || !X509_add_ext(x, e, -1))
            die("basicConstraints");
        X509_EXTENSION_free(e);
    }
    if (!X509_sign(x, ca_key, EVP_sha256()))
        die("X509_sign");
    X509_NAME_free(n);
    return x;
}

typedef struct side {
    OSSL_LIB_CTX *libctx;
    OSSL_PROVIDER *def, *ea;
    SSL_CTX *ctx;
} side;

static EVP_PKEY *se_key(OSSL_LIB_CTX *lc)
{
    char uri[64];
    snprintf(uri, sizeof uri, "se05x:0x%08X", KEY_ID);
    OSSL_STORE_CTX *s = OSSL_STORE_open_ex(uri, lc, NULL, NULL, NULL, NULL, NULL, NULL);
    EVP_PKEY *k = NULL;
    while (s && !k && !OSSL_STORE_eof(s)) {
        OSSL_STORE_INFO *i = OSSL_STORE_load(s);
        if (i && OSSL_STORE_INFO_get_type(i) == OSSL_STORE_INFO_PKEY)
            k = OSSL_STORE_INFO_get1_PKEY(i);
        OSSL_STORE_INFO_free(i);
    }
    OSSL_STORE_close(s);
    if (!k)
        die("cannot load the SE key");
    return k;
}

static void client_new(side *c, const char *offload, int proto, EVP_PKEY *ca_key, X509 *ca)
{
    ea_provider_opts po = { .offload = offload };
    unsigned kx = strstr(offload, "ecdhe") != NULL, prf = strstr(offload, "prf") != NULL;
    c->libctx = OSSL_LIB_CTX_new();
    if (!(c->def = OSSL_PROVIDER_load(c->libctx, "default")) ||
        ea_provider_load_ex(c->libctx, &po, &c->ea) != EA_OK)
        die("providers");
    if (strstr(offload, "random") &&
        !RAND_set_DRBG_type(c->libctx, "EDGEAUTH-SE-RNG", "provider=edgeauth", NULL, NULL))
        die("RAND_set_DRBG_type");
    EVP_PKEY *k = se_key(c->libctx);
    X509 *cert = make_cert(k, ca_key, ca, "dev-1");
    c->ctx = SSL_CTX_new_ex(c->libctx, kx || prf ? EA_PROVIDER_OFFLOAD_PROPQ : NULL, TLS_client_method());
    if (!c->ctx || !SSL_CTX_use_certificate(c->ctx, cert) || !SSL_CTX_use_PrivateKey(c->ctx, k))
        die("client context");
    SSL_CTX_set_min_proto_version(c->ctx, proto);
    SSL_CTX_set_max_proto_version(c->ctx, proto);
    SSL_CTX_set_cipher_list(c->ctx, "ECDHE-ECDSA-AES128-GCM-SHA256");
    SSL_CTX_set1_groups_list(c->ctx, "P-256");
    SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_OFF);
    if (prf)
        SSL_CTX_set_options(c->ctx, SSL_OP_NO_EXTENDED_MASTER_SECRET);
    X509_free(cert);
    EVP_PKEY_free(k);
}

static void side_free(side *s)
{
    SSL_CTX_free(s->ctx);
    if (s->ea)
        OSSL_PROVIDER_unload(s->ea);
    if (s->def)
        OSSL_PROVIDER_unload(s->def);
    OSSL_LIB_CTX_free(s->libctx);
}

/* One full handshake and one byte each way, over a BIO pair. */
static void handshake(SSL_CTX *cctx, SSL_CTX *sctx)
{
    SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
    BIO *bc = NULL, *bs = NULL;
    char b = 'x';
    if (!c || !s || !BIO_new_bio_pair(&bc, 0, &bs, 0))
        die("SSL_new");
    SSL_set_bio(c, bc, bc);
    SSL_set_bio(s, bs, bs);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    for (int i = 0; i < 100; i++) {
        int rc = SSL_do_handshake(c), rs = SSL_do_handshake(s);
        if (rc == 1 && rs == 1)
            break;
        if ((rc <= 0 && SSL_get_error(c, rc) != SSL_ERROR_WANT_READ) ||
            (rs <= 0 && SSL_get_error(s, rs) != SSL_ERROR_WANT_READ))
            die("handshake");
    }
    /* A ping each way: the server has read the client's Finished. */
    if (SSL_write(c, &b, 1) != 1 || SSL_read(s, &b, 1) != 1 || SSL_write(s, &b, 1) != 1 || SSL_read(c, &b, 1) != 1)
        die("ping");
    SSL_free(c);
    SSL_free(s);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static long log_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    long n = 0;
    int ch;
    if (!f)
        return 0;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

int main(int argc, char **argv)
{
    int n = 100, rounds = 5, opt;
    const char *timing = NULL;
    while ((opt = getopt(argc, argv, "n:r:t:")) != -1) {
        if (opt == 'n')
            n = atoi(optarg);
        else if (opt == 'r')
            rounds = atoi(optarg);
        else if (opt == 't')
            timing = optarg;
        else {
            fprintf(stderr, "usage: bench_offload [-n HANDSHAKES] [-r ROUNDS] [-t se050]\n");
            return 2;
        }
    }
    if (n < 1 || rounds < 1 || rounds > MAX_ROUNDS)
        die("bad -n / -r");
    if (timing)
        setenv("EDGEAUTH_SE_TIMING", timing, 1); /* read when the chip opens */
    else
        unsetenv("EDGEAUTH_SE_TIMING");

    char tmpl[] = "/tmp/ea-bench-offload.XXXXXX", uri[128], err[256] = "", logp[160];
    if (!mkdtemp(tmpl))
        die("mkdtemp");
    ea_emu_init_opts io = { 0 };
    if (ea_emu_init(tmpl, &io, err, sizeof err) != EA_OK)
        die(err);
    snprintf(uri, sizeof uri, "emu:%s", tmpl);
    setenv("EDGEAUTH_SE", uri, 1);
    snprintf(logp, sizeof logp, "%s/apdu.log", tmpl);
    ea_host *h;
    ea_policy pol = ea_policy_everyone(EA_POL_ALLOW_SIGN | EA_POL_ALLOW_READ);
    if (ea_host_open(uri, NULL, &h, err, sizeof err) != EA_OK ||
        ea_host_ec_generate(h, KEY_ID, EA_CURVE_NIST_P256, &pol, false) != EA_OK)
        die("SE key");
    ea_host_close(h);

    /* The server: file key, its own CA, requires and verifies the client. */
    EVP_PKEY *ca_key = EVP_EC_gen("P-256");
    X509 *ca = make_cert(ca_key, ca_key, NULL, "bench-ca");
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    if (!ca_key || !sctx || !SSL_CTX_use_certificate(sctx, ca) || !SSL_CTX_use_PrivateKey(sctx, ca_key))
        die("server context");
    X509_STORE_add_cert(SSL_CTX_get_cert_store(sctx), ca);
    SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_session_cache_mode(sctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(sctx, 0);

    static const struct { int v; const char *name; } protos[] = { { TLS1_2_VERSION, "TLS 1.2" },
                                                                   { TLS1_3_VERSION, "TLS 1.3" } };
    printf("bench_offload: %d handshakes x %d rounds per case, SE emu: in-process%s%s\n", n, rounds,
           timing ? ", timing model " : "", timing ? timing : "");
    printf("| proto | offload | hs/s median | ratio to off | APDUs/handshake | ms/handshake |\n"
           "|---|---|---|---|---|---|\n");
    for (size_t pi = 0; pi < 2; pi++) {
        side cl[NCOMBO];
        double rate[NCOMBO][MAX_ROUNDS], apdus[NCOMBO];
        memset(cl, 0, sizeof cl);
        for (size_t c = 0; c < NCOMBO; c++) {
            client_new(&cl[c], combos[c], protos[pi].v, ca_key, ca);
            handshake(cl[c].ctx, sctx); /* warm-up: sessions, first seeds */
        }
        /* APDUs: one logged pass per combination, outside the timing. */
        for (size_t c = 0; c < NCOMBO; c++) {
            side t = { 0 };
            unlink(logp);
            setenv("EDGEAUTH_APDU_LOG", logp, 1);
            client_new(&t, combos[c], protos[pi].v, ca_key, ca);
            handshake(t.ctx, sctx);
            long base = log_lines(logp);
            for (int i = 0; i < 10; i++)
                handshake(t.ctx, sctx);
            apdus[c] = (double)(log_lines(logp) - base) / 10.0;
            side_free(&t);
            unsetenv("EDGEAUTH_APDU_LOG");
        }
        for (int r = 0; r < rounds; r++)
            for (size_t c = 0; c < NCOMBO; c++) {
                double t0 = now();
                for (int i = 0; i < n; i++)
                    handshake(cl[c].ctx, sctx);
                rate[c][r] = n / (now() - t0);
            }
        double off = 0;
        for (size_t c = 0; c < NCOMBO; c++) {
            qsort(rate[c], (size_t)rounds, sizeof rate[c][0], cmp_d);
            double med = rate[c][rounds / 2];
            if (c == 0)
                off = med;
            printf("| %s | %s | %.1f | %.3f | %.1f | %.1f |\n", protos[pi].name, *combos[c] ? combos[c] : "off",
                   med, med / off, apdus[c], 1000.0 / med);
            side_free(&cl[c]);
        }
    }
    if (timing)
        printf("\nNXP, SE050C1 over I2C (spec se05x-apdu.md 9.1), TLS 1.2 ECDHE-ECDSA P-256 client:\n"
               "  mbedTLS ALT: the SE verifies the server certificate (49.6 ms), generates the DH key (54 ms), signs (51.8 ms)\n"
               "  deep integration: client random 22 + DH key generation 104 + master secret 230 + sign 49 = 405 ms\n"
               "  (the model charges the measured per-command times; the handshake times above add them up)\n");
    SSL_CTX_free(sctx);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_offload: could not remove %s\n", tmpl);
    return 0;
}
