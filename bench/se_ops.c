/* Benchmark: the host library's ECDSASign P-256, ECDH P-256 and
 * GetRandom(32) over every transport (emu:, unix:, tcp://, t1-tcp://),
 * beside OpenSSL's in-process ECDSA sign of the same digest in the same run.
 * The ratio against that baseline is the figure.
 *   usage: bench_se_ops [ops-per-case] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "edgeauth/emu.h"
#include "edgeauth/host.h"
#include "emu/server.h"

#define KEY 0x7B000100u
#define PEER 0x7B000101u

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct ctx {
    ea_host *h;
    EVP_PKEY_CTX *pc;
    uint8_t peer[65];
} ctx;

typedef int op_fn(ctx *c);

static const uint8_t digest[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };

static int op_openssl(ctx *c)
{
    uint8_t sig[80];
    size_t sl = sizeof sig;
    return EVP_PKEY_sign(c->pc, sig, &sl, digest, 32) == 1 ? 0 : 1;
}

static int op_sign(ctx *c)
{
    uint8_t sig[80];
    size_t sl = sizeof sig;
    return ea_host_ecdsa_sign(c->h, KEY, EA_SIG_ECDSA_SHA256, digest, 32, sig, &sl) == EA_OK ? 0 : 1;
}

static int op_ecdh(ctx *c)
{
    uint8_t z[32];
    size_t zl = sizeof z;
    return ea_host_ecdh(c->h, KEY, c->peer, 65, 0, z, &zl) == EA_OK ? 0 : 1;
}

static int op_random(ctx *c)
{
    uint8_t r[32];
    return ea_host_get_random(c->h, r, 32) == EA_OK ? 0 : 1;
}

static double run(const char *transport, const char *name, op_fn *fn, ctx *c, int n, double base)
{
    double *lat = malloc(sizeof(double) * (size_t)n), t0 = now_us();
    for (int i = 0; i < n; i++) {
        double s = now_us();
        if (fn(c) != 0) {
            fprintf(stderr, "bench: %s %s failed: %s\n", transport, name, c->h ? ea_host_last_error(c->h) : "");
            exit(1);
        }
        lat[i] = now_us() - s;
    }
    double ops = n / ((now_us() - t0) / 1e6);
    qsort(lat, (size_t)n, sizeof *lat, cmp_d);
    printf("  %-10s %-10s %9.0f ops/s  p50 %8.1f us  p99 %8.1f us", transport, name, ops, lat[n / 2],
           lat[(n * 99) / 100]);
    if (base > 0)
        printf("  x%.2f of OpenSSL sign time", base / ops);
    printf("\n");
    free(lat);
    return ops;
}

static void *serve_main(void *arg)
{
    ea_serve_run(arg);
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    char dir[] = "/tmp/edgeauth-bench-XXXXXX", sdir[600], err[256], sock[700], uris[4][700];
    ea_emu *emu;
    ea_serve *srv;

    if (!mkdtemp(dir))
        return 1;
    /* Two chips: one served over the sockets, one opened in-process. */
    snprintf(sdir, sizeof sdir, "%s/served", dir);
    char edir[600];
    snprintf(edir, sizeof edir, "%s/inproc", dir);
    char keys[700];
    snprintf(keys, sizeof keys, "%s/scp03.keys", dir);
    ea_emu_init_opts io = { .scp03_keys_out = keys };
    if (ea_emu_init(sdir, &io, err, sizeof err) != EA_OK || ea_emu_init(edir, NULL, err, sizeof err) != EA_OK ||
        ea_emu_open(sdir, NULL, &emu, err, sizeof err) != EA_OK) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    snprintf(sock, sizeof sock, "unix:%s/se.sock", dir);
    const char *listen[] = { sock, "tcp://127.0.0.1:0", "t1-tcp://127.0.0.1:0" };
    ea_serve_opts so = { .listen = listen, .n_listen = 3 };
    if (ea_serve_new(emu, &so, &srv, err, sizeof err) != EA_OK) {
        so.n_listen = 2; /* a build without the T=1 listener */
        if (ea_serve_new(emu, &so, &srv, err, sizeof err) != EA_OK) {
            fprintf(stderr, "bench: %s\n", err);
            return 1;
        }
    }
    snprintf(uris[0], sizeof uris[0], "emu:%s", edir);
    int nu = 1;
    for (size_t i = 0; i < ea_serve_count(srv); i++)
        snprintf(uris[nu++], sizeof uris[0], "%s", ea_serve_uri(srv, i));
    pthread_t th;
    pthread_create(&th, NULL, serve_main, srv);

    ctx base = { 0 };
    EVP_PKEY *k = EVP_EC_gen("P-256");
    base.pc = EVP_PKEY_CTX_new(k, NULL);
    EVP_PKEY_sign_init(base.pc);
    printf("host library, %d ops per case (p50/p99 latency; ratio = time per op / OpenSSL sign time):\n", n);
    double t0 = now_us();
    for (int i = 0; i < n; i++)
        op_openssl(&base);
    double base_ops = n / ((now_us() - t0) / 1e6);
    run("in-process", "OpenSSL", op_openssl, &base, n, 0);

    for (int u = 0; u < nu; u++) {
        ctx c = { 0 };
        if (ea_host_open(uris[u], NULL, &c.h, err, sizeof err) != EA_OK) {
            fprintf(stderr, "bench: %s: %s\n", uris[u], err);
            return 1;
        }
        ea_host_ec_generate(c.h, KEY, EA_CURVE_NIST_P256, NULL, false);
        ea_host_ec_generate(c.h, PEER, EA_CURVE_NIST_P256, NULL, false);
        size_t pl = sizeof c.peer;
        ea_host_read_pubkey(c.h, PEER, c.peer, &pl);
        const char *t = ea_host_transport(c.h);
        run(t, "sign", op_sign, &c, n, base_ops);
        run(t, "ecdh", op_ecdh, &c, n, base_ops);
        run(t, "random32", op_random, &c, n, base_ops);
        ea_host_close(c.h);
    }
    /* Platform SCP03 on the socket links: the same chip and key, plain
     * and wrapped, one after the other in this run. */
    printf("Platform SCP03 (C-MAC, C-DEC, R-MAC, R-ENC) vs the plain link, same chip, same run:\n");
    for (int u = 1; u < nu; u++) {
        ctx p = { 0 }, q = { 0 };
        char su[1500];
        snprintf(su, sizeof su, "%s?scp03=%s", uris[u], keys);
        if (ea_host_open(uris[u], NULL, &p.h, err, sizeof err) != EA_OK ||
            ea_host_open(su, NULL, &q.h, err, sizeof err) != EA_OK) {
            fprintf(stderr, "bench: %s: %s\n", su, err);
            return 1;
        }
        const char *t = ea_host_transport(p.h);
        char tq[40];
        snprintf(tq, sizeof tq, "%s+scp03", t);
        run(t, "sign", op_sign, &p, n, base_ops);
        run(tq, "sign", op_sign, &q, n, base_ops);
        /* The ratio from interleaved blocks: both see the same load. */
        enum { ROUNDS = 9 };
        double ratio[ROUNDS];
        for (int r = 0; r < ROUNDS; r++) {
            double t1 = now_us();
            for (int i = 0; i < n / 4; i++)
                op_sign(&p);
            double t2 = now_us();
            for (int i = 0; i < n / 4; i++)
                op_sign(&q);
            ratio[r] = (now_us() - t2) / (t2 - t1);
        }
        qsort(ratio, ROUNDS, sizeof ratio[0], cmp_d);
        printf("  %-10s ECDSASign time with SCP03: x%.2f of plain (median of %d interleaved rounds; "
               "NXP SE050: 67/45 ms = x1.49)\n",
               t, ratio[ROUNDS / 2], ROUNDS);
        ea_host_close(p.h);
        ea_host_close(q.h);
    }
    ea_serve_stop(srv);
    pthread_join(th, NULL);
    ea_serve_free(srv);
    ea_emu_close(emu);
    EVP_PKEY_CTX_free(base.pc);
    EVP_PKEY_free(k);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
