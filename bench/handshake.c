/* Benchmark: full mutual-TLS handshakes per second on loopback, with the
 * client's key in a PEM file (default provider) against the same client
 * with its key in the SE through the edgeauth provider: over JRCP_v1 on a
 * unix: socket (an edgeauth-se server thread in this process, as the
 * daemon would serve it) and in-process (emu:). TLS 1.3 and TLS 1.2
 * (ECDHE-ECDSA-AES128-GCM-SHA256).
 *
 * Our own small client and server (server in a thread, TCP on 127.0.0.1,
 * TCP_NODELAY), one process. No session resumption: no tickets, no session
 * cache, a new SSL per connection. A handshake counts only after a one-byte
 * ping round trip, so the server has verified the client's certificate and
 * CertificateVerify (TLS 1.3 otherwise lets the client finish first). Runs
 * are interleaved (rounds x configs, the config order rotating per round)
 * and the table shows medians; the ratio is SE / file per TLS version.
 *
 *   usage: bench_handshake [-n HANDSHAKES] [-r ROUNDS] [-m MODULE_DIR]
 *   defaults: 200 handshakes, 5 rounds; MODULE_DIR from -m, else
 *   $OPENSSL_MODULES, else <dir of this program>/../lib/ossl-modules.
 *
 * Providers: default first, edgeauth second, no property query (the setup
 * docs/PROVIDER.md recommends). Build without sanitizers for numbers that
 * mean something (make bench). */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "edgeauth/emu.h"
#include "emu/server.h"

#define SE_KEY_ID "0xF0000100"
#define MAX_ROUNDS 101
#define TLS12_CIPHER "ECDHE-ECDSA-AES128-GCM-SHA256"

enum { KEY_FILE, KEY_SE_UNIX, KEY_SE_SCP03, KEY_SE_EMU, KEY_N };
enum { V13, V12, V_N };

static const char *const key_name[KEY_N] = { "file", "se-unix", "se-scp03", "se-emu" };
static const char *const key_desc[KEY_N] = {
    "PEM file, default provider (SSL_CTX_use_PrivateKey_file)",
    "SE over JRCP_v1 unix: (OSSL_STORE se05x:" SE_KEY_ID "?se=unix:...)",
    "the same SE key through Platform SCP03 (se05x:" SE_KEY_ID "?se=unix:...?scp03=KEYS)",
    "SE in-process emu: (key-reference PEM via SSL_CTX_use_PrivateKey_file)",
};
static const char *const v_name[V_N] = { "TLS 1.3", "TLS 1.2" };

static void die(const char *what)
{
    fprintf(stderr, "bench_handshake: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static double now_s(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double s[MAX_ROUNDS];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_d);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* ---- PKI: a CA, the server, and one client certificate per client key ---- */

static X509 *make_cert(const char *cn, EVP_PKEY *subject_key, X509 *issuer, EVP_PKEY *issuer_key, bool ca)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    if (!x || !name || !X509_set_version(x, X509_VERSION_3) ||
        !ASN1_INTEGER_set(X509_get_serialNumber(x), serial++) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) ||
        !X509_set_subject_name(x, name) || !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) || !X509_gmtime_adj(X509_getm_notAfter(x), 86400) ||
        !X509_set_pubkey(x, subject_key))
        die("cannot build a certificate");
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    if (!(ext = X509V3_EXT_nconf_nid(NULL, &v3, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE")) ||
        !X509_add_ext(x, ext, -1))
        die("cannot add basicConstraints");
    X509_EXTENSION_free(ext);
    if (!ca) {
        if (!(ext = X509V3_EXT_nconf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1")) ||
            !X509_add_ext(x, ext, -1))
            die("cannot add subjectAltName");
        X509_EXTENSION_free(ext);
    }
    if (X509_sign(x, issuer_key, EVP_sha256()) <= 0)
        die("cannot sign a certificate");
    X509_NAME_free(name);
    return x;
}

static void write_pem_key(const char *path, EVP_PKEY *k)
{
    BIO *b = BIO_new_file(path, "w");
    if (!b || !PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL))
        die("cannot write a key file");
    BIO_free(b);
}

/* Generate an EC P-256 key pair inside the SE at uri (keygen of the
 * edgeauth keymgmt: the only place a property query is needed). */
static EVP_PKEY *se_keygen(const char *uri)
{
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", "?provider=edgeauth");
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0),
        OSSL_PARAM_construct_utf8_string("se05x-id", SE_KEY_ID, 0),
        OSSL_PARAM_construct_utf8_string("se05x-uri", (char *)uri, 0),
        OSSL_PARAM_construct_end(),
    };
    if (!pc || EVP_PKEY_keygen_init(pc) <= 0 || !EVP_PKEY_CTX_set_params(pc, p) || EVP_PKEY_generate(pc, &k) <= 0)
        die("key generation in the SE failed");
    EVP_PKEY_CTX_free(pc);
    return k;
}

static EVP_PKEY *store_load(const char *uri)
{
    EVP_PKEY *k = NULL;
    OSSL_STORE_CTX *st = OSSL_STORE_open(uri, NULL, NULL, NULL, NULL);
    while (st && !k && !OSSL_STORE_eof(st)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(st);
        if (info && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            k = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(st);
    if (!k)
        die("cannot load the SE key through OSSL_STORE");
    return k;
}

/* ---- the server thread ----------------------------------------------------- */

typedef struct server {
    SSL_CTX *ctx;
    int lfd;
    int port;
    volatile int stop;
    long ok, failed; /* only the server thread writes these while it runs */
    pthread_t th;
} server;

static void *server_main(void *arg)
{
    server *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (s->stop) {
            close(fd);
            break;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        SSL *ssl = SSL_new(s->ctx);
        char b = 0;
        bool good = ssl && SSL_set_fd(ssl, fd) == 1 && SSL_accept(ssl) == 1 && SSL_read(ssl, &b, 1) == 1;
        X509 *peer = good ? SSL_get1_peer_certificate(ssl) : NULL;
        good = good && peer && SSL_get_verify_result(ssl) == X509_V_OK && SSL_write(ssl, &b, 1) == 1;
        X509_free(peer);
        if (good)
            s->ok++;
        else
            s->failed++;
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
    }
    return NULL;
}

static void server_start(server *s, X509 *cert, EVP_PKEY *key, X509 *ca)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;

    s->ctx = SSL_CTX_new(TLS_server_method());
    if (!s->ctx || !SSL_CTX_set_min_proto_version(s->ctx, TLS1_2_VERSION) || SSL_CTX_use_certificate(s->ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey(s->ctx, key) != 1 || X509_STORE_add_cert(SSL_CTX_get_cert_store(s->ctx), ca) != 1)
        die("server SSL_CTX");
    SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    /* Full handshakes only: no tickets (TLS 1.3 sends them unless told not
     * to), no session cache. */
    SSL_CTX_set_options(s->ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(s->ctx, 0);
    SSL_CTX_set_session_cache_mode(s->ctx, SSL_SESS_CACHE_OFF);

    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->lfd, 64) != 0 ||
        getsockname(s->lfd, (struct sockaddr *)&a, &al) != 0)
        die("cannot listen on 127.0.0.1");
    s->port = ntohs(a.sin_port);
    if (pthread_create(&s->th, NULL, server_main, s) != 0)
        die("pthread_create");
}

static int tcp_connect(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void server_stop(server *s)
{
    s->stop = 1;
    int fd = tcp_connect(s->port); /* wake accept() */
    if (fd >= 0)
        close(fd);
    pthread_join(s->th, NULL);
    close(s->lfd);
    SSL_CTX_free(s->ctx);
}

/* ---- the client ------------------------------------------------------------- */

static SSL_CTX *client_ctx(int v, X509 *cert, X509 *ca, EVP_PKEY *key, const char *key_file)
{
    int ver = v == V13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (!c || !SSL_CTX_set_min_proto_version(c, ver) || !SSL_CTX_set_max_proto_version(c, ver) ||
        (v == V12 && SSL_CTX_set_cipher_list(c, TLS12_CIPHER) != 1) || SSL_CTX_use_certificate(c, cert) != 1 ||
        X509_STORE_add_cert(SSL_CTX_get_cert_store(c), ca) != 1)
        die("client SSL_CTX");
    if (key_file ? SSL_CTX_use_PrivateKey_file(c, key_file, SSL_FILETYPE_PEM) != 1 : SSL_CTX_use_PrivateKey(c, key) != 1)
        die("client key does not load");
    if (SSL_CTX_check_private_key(c) != 1)
        die("client key does not match its certificate");
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    return c;
}

/* One full handshake and a ping; 0 on success. */
static int handshake(SSL_CTX *c, int port, char *info, size_t info_len)
{
    int fd = tcp_connect(port), rc = 1;
    SSL *ssl = fd >= 0 ? SSL_new(c) : NULL;
    char b = 'p';
    if (ssl && SSL_set_fd(ssl, fd) == 1 && SSL_connect(ssl) == 1 && SSL_write(ssl, &b, 1) == 1 &&
        SSL_read(ssl, &b, 1) == 1 && SSL_get_verify_result(ssl) == X509_V_OK) {
        rc = 0;
        if (info)
            snprintf(info, info_len, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
    }
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    return rc;
}

typedef struct sample {
    double hs_per_s, client_cpu_ms, server_cpu_ms, se_cpu_ms;
} sample;

static sample run(SSL_CTX *c, server *s, pthread_t se_thread, bool se_cpu, int n)
{
    clockid_t srv_clk, se_clk;
    pthread_getcpuclockid(s->th, &srv_clk);
    pthread_getcpuclockid(se_thread, &se_clk);
    double t0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_THREAD_CPUTIME_ID), s0 = now_s(srv_clk), e0 = now_s(se_clk);
    for (int i = 0; i < n; i++)
        if (handshake(c, s->port, NULL, 0) != 0)
            die("a handshake failed");
    double t1 = now_s(CLOCK_MONOTONIC), c1 = now_s(CLOCK_THREAD_CPUTIME_ID), s1 = now_s(srv_clk), e1 = now_s(se_clk);
    return (sample){ n / (t1 - t0), (c1 - c0) * 1e3 / n, (s1 - s0) * 1e3 / n, se_cpu ? (e1 - e0) * 1e3 / n : 0 };
}

/* ---- the SE daemon, in a thread ---------------------------------------------- */

static void *serve_main(void *arg)
{
    ea_serve_run(arg);
    return NULL;
}

static void module_dir(const char *arg, char *out, size_t cap)
{
    const char *env = getenv("OPENSSL_MODULES");
    char exe[PATH_MAX];
    ssize_t n;
    if (arg) {
        snprintf(out, cap, "%s", arg);
    } else if (env && *env) {
        snprintf(out, cap, "%s", env);
    } else if ((n = readlink("/proc/self/exe", exe, sizeof exe - 1)) > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(out, cap, "%.4000s/../lib/ossl-modules", exe);
    } else {
        snprintf(out, cap, "lib/ossl-modules");
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_handshake [-n HANDSHAKES] [-r ROUNDS] [-m MODULE_DIR]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int n = 200, rounds = 5, opt;
    const char *marg = NULL;
    char moddir[PATH_MAX], dir[] = "/tmp/ea-bench-hs-XXXXXX", err[256];
    char chip_u[64], chip_e[64], sock_uri[96], emu_uri[96], path[400], info[KEY_N][V_N][96];

    while ((opt = getopt(argc, argv, "n:r:m:h")) != -1) {
        switch (opt) {
        case 'n':
            n = atoi(optarg);
            break;
        case 'r':
            rounds = atoi(optarg);
            break;
        case 'm':
            marg = optarg;
            break;
        default:
            usage();
        }
    }
    if (n < 1 || rounds < 1 || rounds > MAX_ROUNDS)
        usage();
    module_dir(marg, moddir, sizeof moddir);

    /* Two chips: one served over unix: by a server thread, one opened
     * in-process by the provider (an emu: chip is locked by its opener). */
    if (!mkdtemp(dir))
        die("mkdtemp");
    snprintf(chip_u, sizeof chip_u, "%s/chip-unix", dir);
    snprintf(chip_e, sizeof chip_e, "%s/chip-emu", dir);
    snprintf(sock_uri, sizeof sock_uri, "unix:%s/se.sock", dir);
    snprintf(emu_uri, sizeof emu_uri, "emu:%s", chip_e);
    ea_emu *emu = NULL;
    ea_serve *srv = NULL;
    ea_emu_opts eo = { .holder = "bench_handshake (unix: server thread)" };
    const char *listen[] = { sock_uri };
    ea_serve_opts so = { .listen = listen, .n_listen = 1 };
    char scp_keys[128];
    snprintf(scp_keys, sizeof scp_keys, "%s/scp03.keys", dir);
    ea_emu_init_opts io = { .scp03_keys_out = scp_keys };
    if (ea_emu_init(chip_u, &io, err, sizeof err) != EA_OK || ea_emu_init(chip_e, NULL, err, sizeof err) != EA_OK ||
        ea_emu_open(chip_u, &eo, &emu, err, sizeof err) != EA_OK || ea_serve_new(emu, &so, &srv, err, sizeof err) != EA_OK)
        die(err);
    pthread_t se_th;
    if (pthread_create(&se_th, NULL, serve_main, srv) != 0)
        die("pthread_create");

    /* default first, edgeauth second, no property query */
    OSSL_PROVIDER_set_default_search_path(NULL, moddir);
    OSSL_PROVIDER *pdef = OSSL_PROVIDER_load(NULL, "default"), *pea = OSSL_PROVIDER_load(NULL, "edgeauth");
    if (!pdef || !pea) {
        fprintf(stderr, "bench_handshake: module directory %s\n", moddir);
        die("cannot load the default and edgeauth providers");
    }

    /* PKI */
    EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *srv_key = EVP_EC_gen("P-256"), *file_key = EVP_EC_gen("P-256");
    if (!ca_key || !srv_key || !file_key)
        die("EVP_EC_gen");
    X509 *ca = make_cert("bench CA", ca_key, NULL, ca_key, true);
    X509 *srv_cert = make_cert("127.0.0.1", srv_key, ca, ca_key, false);

    EVP_PKEY *gen_u = se_keygen(sock_uri), *gen_e = se_keygen(emu_uri);
    EVP_PKEY *keys[KEY_N] = { NULL, NULL, NULL, NULL };
    char key_files[KEY_N][128] = { "", "", "", "" };
    snprintf(key_files[KEY_FILE], sizeof key_files[0], "%s/client.key", dir);
    write_pem_key(key_files[KEY_FILE], file_key);
    snprintf(key_files[KEY_SE_EMU], sizeof key_files[0], "%s/client-emu.ref.pem", dir);
    write_pem_key(key_files[KEY_SE_EMU], gen_e); /* EDGEAUTH SE KEY: id + emu: URI */
    snprintf(path, sizeof path, "se05x:%s?se=%s", SE_KEY_ID, sock_uri);
    keys[KEY_SE_UNIX] = store_load(path);
    snprintf(path, sizeof path, "se05x:%s?se=%s?scp03=%s", SE_KEY_ID, sock_uri, scp_keys);
    keys[KEY_SE_SCP03] = store_load(path);

    X509 *certs[KEY_N] = {
        make_cert("client file", file_key, ca, ca_key, false),
        make_cert("client se-unix", gen_u, ca, ca_key, false),
        make_cert("client se-scp03", gen_u, ca, ca_key, false),
        make_cert("client se-emu", gen_e, ca, ca_key, false),
    };
    EVP_PKEY_free(gen_u);
    EVP_PKEY_free(gen_e);

    server s = { 0 };
    server_start(&s, srv_cert, srv_key, ca);

    SSL_CTX *ctx[KEY_N][V_N];
    for (int k = 0; k < KEY_N; k++)
        for (int v = 0; v < V_N; v++) {
            ctx[k][v] = client_ctx(v, certs[k], ca, keys[k], key_files[k][0] ? key_files[k] : NULL);
            /* warm-up, and proof that this configuration works */
            for (int i = 0; i < 10; i++)
                if (handshake(ctx[k][v], s.port, info[k][v], sizeof info[k][v]) != 0) {
                    fprintf(stderr, "bench_handshake: %s %s: ", v_name[v], key_name[k]);
                    die("handshake failed");
                }
        }
    {
        EVP_PKEY *pk = SSL_CTX_get0_privatekey(ctx[KEY_SE_EMU][V13]);
        const OSSL_PROVIDER *pp = pk ? EVP_PKEY_get0_provider(pk) : NULL;
        if (!pp || strcmp(OSSL_PROVIDER_get0_name(pp), "edgeauth") != 0)
            die("the key-reference PEM did not load as an edgeauth key");
    }

    printf("bench_handshake: full mutual-TLS handshakes on 127.0.0.1 (client and server in one process),\n"
           "%d rounds x %d handshakes per configuration, interleaved; %s; module %s\n",
           rounds, n, OpenSSL_version(OPENSSL_VERSION), moddir);
    for (int k = 0; k < KEY_N; k++)
        printf("  %-8s %s\n", key_name[k], key_desc[k]);
    for (int v = 0; v < V_N; v++)
        printf("  %s negotiates %s (server: P-256 file key, verify peer, no tickets)\n", v_name[v],
               info[KEY_FILE][v]);
    fflush(stdout);

    static sample res[KEY_N][V_N][MAX_ROUNDS];
    for (int r = 0; r < rounds; r++)
        for (int v = 0; v < V_N; v++)
            for (int i = 0; i < KEY_N; i++) {
                int k = (i + r) % KEY_N; /* rotate the order: no config always runs first */
                res[k][v][r] = run(ctx[k][v], &s, se_th, k == KEY_SE_UNIX || k == KEY_SE_SCP03, n);
            }

    printf("\n%-8s %-8s %9s %15s %6s %6s | %9s %9s %9s %9s %9s\n", "proto", "key", "hs/s", "(min - max)", "ratio",
           "paired", "client ms", "server ms", "SE ms", "total ms", "CPU ratio");
    double ratio_min = 1e9;
    for (int v = 0; v < V_N; v++) {
        double med_file = 0, cpu_file = 0;
        for (int k = 0; k < KEY_N; k++) {
            double hs[MAX_ROUNDS], pr[MAX_ROUNDS], cc[MAX_ROUNDS], sc[MAX_ROUNDS], ec[MAX_ROUNDS], lo = 1e18, hi = 0;
            for (int r = 0; r < rounds; r++) {
                sample x = res[k][v][r];
                hs[r] = x.hs_per_s;
                pr[r] = x.hs_per_s / res[KEY_FILE][v][r].hs_per_s; /* same round: same machine load */
                cc[r] = x.client_cpu_ms;
                sc[r] = x.server_cpu_ms;
                ec[r] = x.se_cpu_ms;
                lo = hs[r] < lo ? hs[r] : lo;
                hi = hs[r] > hi ? hs[r] : hi;
            }
            double med = median(hs, rounds);
            double cpu = median(cc, rounds) + median(sc, rounds) + median(ec, rounds);
            if (k == KEY_FILE) {
                med_file = med;
                cpu_file = cpu;
            }
            char range[32], se_ms[16] = "-";
            snprintf(range, sizeof range, "(%.0f - %.0f)", lo, hi);
            if (k == KEY_SE_UNIX || k == KEY_SE_SCP03)
                snprintf(se_ms, sizeof se_ms, "%.3f", median(ec, rounds));
            printf("%-8s %-8s %9.1f %15s %6.3f %6.3f | %9.3f %9.3f %9s %9.3f %9.3f\n", v_name[v], key_name[k], med,
                   range, med / med_file, median(pr, rounds), median(cc, rounds), median(sc, rounds), se_ms, cpu,
                   cpu_file / cpu);
            if (k != KEY_FILE && k != KEY_SE_SCP03 && med / med_file < ratio_min)
                ratio_min = med / med_file;
        }
    }
    printf("\nratio = median SE hs/s / median file hs/s; paired = median over rounds of the same-round ratio.\n"
           "CPU per handshake (medians): client thread, TLS server thread, JRCP_v1 server thread (se-unix, se-scp03),\n"
           "their sum, and file sum / this sum (the cost ratio, less sensitive to other load on the machine).\n"
           "Goal: ratio >= 0.95 for both versions. Peers measured on this kind of machine (TLS 1.3 / 1.2):\n"
           "tpm2-openssl+swtpm 0.69/0.62, pkcs11-provider+SoftHSM2 0.90/0.75, libp11 engine+SoftHSM2 0.96/0.87.\n"
           "Lowest SE ratio here: %.3f\n",
           ratio_min);
    for (int v = 0; v < V_N; v++) {
        double pr[MAX_ROUNDS];
        for (int r = 0; r < rounds; r++)
            pr[r] = res[KEY_SE_UNIX][v][r].hs_per_s / res[KEY_SE_SCP03][v][r].hs_per_s;
        printf("Platform SCP03 cost, %s: handshake time x%.3f of the plain unix: link (paired median)\n",
               v_name[v], median(pr, rounds));
    }
    printf("server thread: %ld handshakes verified, %ld failed\n", s.ok, s.failed);

    for (int k = 0; k < KEY_N; k++) {
        for (int v = 0; v < V_N; v++)
            SSL_CTX_free(ctx[k][v]);
        X509_free(certs[k]);
        EVP_PKEY_free(keys[k]);
    }
    server_stop(&s);
    long failed = s.failed;
    X509_free(srv_cert);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(file_key);
    OSSL_PROVIDER_unload(pea);
    OSSL_PROVIDER_unload(pdef);
    ea_serve_stop(srv);
    pthread_join(se_th, NULL);
    ea_serve_free(srv);
    ea_emu_close(emu);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 && failed == 0 ? 0 : 1;
}
