/* Benchmark: ECDSASign P-256 through the emulator — in-process and over
 * JRCP_v1 (unix and tcp loopback) — against OpenSSL's own in-process ECDSA
 * sign of the same digest, measured in the same run. The ratios are the
 * figures; absolute numbers depend on the machine.
 *   usage: bench_se_sign [ops-per-round] */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netdb.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>

#include "edgeauth/emu.h"
#include "emu/server.h"

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

typedef struct result {
    const char *name;
    double ops, p50, p99;
} result;

typedef int op_fn(void *ctx);

static result run(const char *name, op_fn *fn, void *ctx, int n)
{
    double *lat = malloc(sizeof(double) * (size_t)n), t0 = now_us();
    for (int i = 0; i < n; i++) {
        double s = now_us();
        if (fn(ctx) != 0) {
            fprintf(stderr, "bench: %s failed\n", name);
            exit(1);
        }
        lat[i] = now_us() - s;
    }
    double total = now_us() - t0;
    qsort(lat, (size_t)n, sizeof *lat, cmp_d);
    result r = { name, n / (total / 1e6), lat[n / 2], lat[(n * 99) / 100] };
    free(lat);
    return r;
}

/* ---- the four ways to sign ------------------------------------------------ */
static const uint8_t sign_apdu[] = {
    0x80, 0x03, 0x0C, 0x09, 0x2B, 0x41, 0x04, 0x7B, 0x00, 0x01, 0x00, 0x42, 0x01, 0x21, 0x43, 0x20,
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
};

static int op_openssl(void *ctx)
{
    EVP_PKEY_CTX *pc = ctx;
    uint8_t sig[80];
    size_t sl = sizeof sig;
    return EVP_PKEY_sign(pc, sig, &sl, sign_apdu + 16, 32) == 1 ? 0 : 1;
}

static int op_emu(void *ctx)
{
    uint8_t r[256];
    size_t rl = sizeof r;
    if (ea_emu_transceive(ctx, sign_apdu, sizeof sign_apdu, r, &rl) != EA_OK || rl < 2)
        return 1;
    return r[rl - 2] == 0x90 ? 0 : 1;
}

static int full_io(int fd, void *buf, size_t n, bool wr)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t k = wr ? write(fd, p, n) : read(fd, p, n);
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int jrcp(int fd, uint8_t type, const uint8_t *pl, size_t n, uint8_t *out, size_t *out_n)
{
    uint8_t h[4] = { type, 0, (uint8_t)(n >> 8), (uint8_t)n };
    if (full_io(fd, h, 4, true) || (n && full_io(fd, (void *)pl, n, true)) || full_io(fd, h, 4, false))
        return -1;
    size_t len = (size_t)(h[2] << 8 | h[3]);
    if (len > *out_n || full_io(fd, out, len, false))
        return -1;
    *out_n = len;
    return 0;
}

static int op_jrcp(void *ctx)
{
    int fd = *(int *)ctx;
    uint8_t r[256];
    size_t rl = sizeof r;
    if (jrcp(fd, 0x01, sign_apdu, sizeof sign_apdu, r, &rl) || rl < 2)
        return 1;
    return r[rl - 2] == 0x90 ? 0 : 1;
}

static int connect_uri(const char *uri)
{
    int fd = -1;
    if (!strncmp(uri, "unix:", 5)) {
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        snprintf(a.sun_path, sizeof a.sun_path, "%s", uri + 5);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
            return -1;
    } else if (!strncmp(uri, "tcp://", 6)) {
        char host[128], *colon;
        snprintf(host, sizeof host, "%s", uri + 6);
        if (!(colon = strrchr(host, ':')))
            return -1;
        *colon = '\0';
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
        if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
            return -1;
        fd = socket(ai->ai_family, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
            fd = -1;
        freeaddrinfo(ai);
    }
    return fd;
}

static void *serve_thread(void *arg)
{
    ea_serve_run(arg);
    return NULL;
}

static void print(result r, double base)
{
    printf("  %-34s %10.0f ops/s   p50 %8.1f us   p99 %8.1f us   ratio %.3f\n", r.name, r.ops, r.p50, r.p99,
           r.ops / base);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    char dir[] = "/tmp/edgeauth-bench-XXXXXX", err[256], sock[320], upath[300];
    ea_emu *emu;
    ea_emu_chan *ch;

    if (!mkdtemp(dir) || ea_emu_init(dir, NULL, err, sizeof err) != EA_OK ||
        ea_emu_open(dir, NULL, &emu, err, sizeof err) != EA_OK || ea_emu_chan_open(emu, &ch) != EA_OK) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    uint8_t r[256];
    size_t rl = sizeof r;
    static const uint8_t sel[] = { 0x00, 0xA4, 0x04, 0x00, 0x10, 0xA0, 0x00, 0x00, 0x03, 0x96, 0x54,
                                   0x53, 0x00, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00 };
    static const uint8_t gen[] = { 0x80, 0x01, 0x61, 0x00, 0x09, 0x41, 0x04, 0x7B, 0x00,
                                   0x01, 0x00, 0x42, 0x01, 0x03 };
    ea_emu_transceive(ch, sel, sizeof sel, r, &rl);
    rl = sizeof r;
    ea_emu_transceive(ch, gen, sizeof gen, r, &rl);

    snprintf(upath, sizeof upath, "%s/se.sock", dir);
    snprintf(sock, sizeof sock, "unix:%s", upath);
    const char *listen[] = { sock, "tcp://127.0.0.1:0" };
    ea_serve_opts so = { .listen = listen, .n_listen = 2 };
    ea_serve *srv;
    if (ea_serve_new(emu, &so, &srv, err, sizeof err) != EA_OK) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    const char *tcp_uri = NULL;
    for (size_t i = 0; i < ea_serve_count(srv); i++)
        if (!strncmp(ea_serve_uri(srv, i), "tcp://", 6))
            tcp_uri = ea_serve_uri(srv, i);
    pthread_t th;
    pthread_create(&th, NULL, serve_thread, srv);
    int ufd = connect_uri(sock), tfd = tcp_uri ? connect_uri(tcp_uri) : -1;
    if (ufd < 0 || tfd < 0) {
        fprintf(stderr, "bench: cannot connect to the server\n");
        return 1;
    }
    rl = sizeof r;
    jrcp(ufd, 0x01, sel, sizeof sel, r, &rl);
    rl = sizeof r;
    jrcp(tfd, 0x01, sel, sizeof sel, r, &rl);

    EVP_PKEY *k = EVP_EC_gen("P-256");
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(k, NULL);
    EVP_PKEY_sign_init(pc);

    printf("ECDSASign P-256 (SHA-256 digest), %d ops per round, 3 interleaved rounds, medians:\n", n);
    result best[4] = { 0 };
    double ops[4][3];
    for (int round = 0; round < 3; round++) {
        result rs[4] = {
            run("OpenSSL in-process (baseline)", op_openssl, pc, n),
            run("edgeauth-se in-process (emu:)", op_emu, ch, n),
            run("edgeauth-se JRCP_v1 unix:", op_jrcp, &ufd, n),
            run("edgeauth-se JRCP_v1 tcp://127.0.0.1", op_jrcp, &tfd, n),
        };
        for (int i = 0; i < 4; i++) {
            ops[i][round] = rs[i].ops;
            if (round == 1)
                best[i] = rs[i]; /* the median round's latencies */
        }
    }
    for (int i = 0; i < 4; i++) {
        qsort(ops[i], 3, sizeof(double), cmp_d);
        best[i].ops = ops[i][1];
    }
    for (int i = 0; i < 4; i++)
        print(best[i], best[0].ops);

    rl = sizeof r;
    jrcp(ufd, 0x03, NULL, 0, r, &rl);
    rl = sizeof r;
    jrcp(tfd, 0x03, NULL, 0, r, &rl);
    close(ufd);
    close(tfd);
    ea_serve_stop(srv);
    pthread_join(th, NULL);
    ea_serve_free(srv);
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(k);
    ea_emu_chan_close(ch);
    ea_emu_close(emu);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
