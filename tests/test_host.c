/* The host library: golden bytes of every encoder, every decoder against
 * every prefix of its golden answer (through a scripted JRCP_v1 peer on a
 * real socket), the same command suite over every transport, threads,
 * timeouts, garbage, and a daemon killed and restarted. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "common/util.h"
#include "edgeauth/host.h"
#include "emu/server.h"
#include "host/transport.h"
#include "tests/testutil.h"

/* ---- capture of the C-APDUs a session sends -------------------------------- */
typedef struct capture {
    uint8_t last[EA_EMU_APDU_MAX];
    size_t last_len;
    int count;
} capture;

static void on_trace(void *ctx, int dir, const uint8_t *p, size_t n)
{
    capture *c = ctx;
    if (dir == 0 && n <= sizeof c->last) {
        memcpy(c->last, p, n);
        c->last_len = n;
        c->count++;
    }
}

static void expect_last(capture *c, const char *hex)
{
    size_t n;
    uint8_t *want = tu_hex(hex, &n);
    if (c->last_len != n || memcmp(c->last, want, n) != 0) {
        char got[2 * EA_EMU_APDU_MAX + 1];
        ea_hex_encode(c->last, c->last_len, got);
        fail_msg("sent %s, want %s", got, hex);
    }
    free(want);
}

typedef struct fx {
    tu_chip chip;
    char uri[1200];
    ea_host *h;
    capture cap;
} fx;

static int setup_emu(void **state)
{
    fx *f = calloc(1, sizeof *f);
    char err[256];
    f->chip.dir = tu_tmpdir("host");
    ea_emu_init_opts io = { 0 };
    assert_int_equal(ea_emu_init(f->chip.dir, &io, err, sizeof err), EA_OK);
    snprintf(f->uri, sizeof f->uri, "emu:%s", f->chip.dir);
    if (ea_host_open(f->uri, NULL, &f->h, err, sizeof err) != EA_OK)
        fail_msg("open %s: %s", f->uri, err);
    ea_host_set_trace(f->h, on_trace, &f->cap);
    *state = f;
    return 0;
}

static int teardown_emu(void **state)
{
    fx *f = *state;
    ea_host_close(f->h);
    tu_rmrf(f->chip.dir);
    free(f->chip.dir);
    free(f);
    return 0;
}

/* ---- golden encoders (spec §3 byte strings) ----------------------------------- */

static void test_golden_encoders(void **state)
{
    fx *f = *state;
    ea_host *h = f->h;
    bool ex;
    uint8_t buf[512], dg[32];
    size_t n;

    assert_int_equal(ea_host_exists(h, 0x7B000426u, &ex), EA_OK);
    expect_last(&f->cap, "80 04 00 27 06 41 04 7B 00 04 26");
    assert_false(ex);
    assert_int_equal(ea_host_ec_generate(h, 0x7B000426u, EA_CURVE_NIST_P256, NULL, false), EA_OK);
    expect_last(&f->cap, "80 01 61 00 09 41 04 7B 00 04 26 42 01 03");
    ea_policy sign_only = ea_policy_everyone(EA_POL_ALLOW_SIGN);
    assert_int_equal(ea_host_ec_generate(h, 0x7B000427u, EA_CURVE_NIST_P256, &sign_only, false), EA_OK);
    expect_last(&f->cap, "80 01 61 00 14 11 09 08 00 00 00 00 10 00 00 00 41 04 7B 00 04 27 42 01 03");
    /* An existing key: no curve, no policy (spec §3.3: regenerate). */
    assert_int_equal(ea_host_ec_generate(h, 0x7B000426u, EA_CURVE_NIST_P256, NULL, false), EA_OK);
    expect_last(&f->cap, "80 01 61 00 06 41 04 7B 00 04 26");
    n = sizeof buf;
    assert_int_equal(ea_host_read_pubkey(h, 0x7B000426u, buf, &n), EA_OK);
    expect_last(&f->cap, "80 02 00 00 00 00 06 41 04 7B 00 04 26 00 00");
    assert_int_equal(n, 65);
    assert_int_equal(ea_host_get_random(h, buf, 8), EA_OK);
    expect_last(&f->cap, "80 04 00 49 00 00 04 41 02 00 08 00 00");
    uint16_t mem;
    assert_int_equal(ea_host_free_memory(h, EA_MEM_PERSISTENT, &mem), EA_OK);
    expect_last(&f->cap, "80 04 00 22 03 41 01 01");
    ea_se_version v;
    assert_int_equal(ea_host_get_version(h, &v), EA_OK);
    expect_last(&f->cap, "80 04 00 20");
    assert_int_equal(v.major, 7);
    assert_int_equal(v.minor, 2);
    memset(dg, 0xA5, sizeof dg);
    n = sizeof buf;
    assert_int_equal(ea_host_ecdsa_sign(h, 0x7B000426u, EA_SIG_ECDSA_SHA256, dg, 32, buf, &n), EA_OK);
    expect_last(&f->cap, "80 03 0C 09 2B 41 04 7B 00 04 26 42 01 21 43 20 "
                         "A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5");
    bool valid = false;
    assert_int_equal(ea_host_ecdsa_verify(h, 0x7B000426u, EA_SIG_ECDSA_SHA256, dg, 32, buf, n, &valid), EA_OK);
    assert_true(valid);
    assert_int_equal(f->cap.last[4], (uint8_t)(6 + 3 + 34 + 2 + n));
    uint8_t out[64];
    size_t ol = sizeof out;
    assert_int_equal(ea_host_digest(h, EA_DIGEST_SHA256, (const uint8_t *)"abc", 3, out, &ol), EA_OK);
    expect_last(&f->cap, "80 03 00 0E 08 41 01 04 42 03 61 62 63");
    assert_int_equal(ol, 32);
    assert_memory_equal(out, "\xBA\x78\x16\xBF", 4);
    /* HKDF and TLSPerformPRF as Plug&Trust frames them (spec §3.12, §3.13). */
    uint8_t key[32] = { 0 };
    assert_int_equal(ea_host_write_symm(h, 0x7B000700u, EA_P1_HMAC, key, 32, NULL, false), EA_OK);
    uint8_t salt[16];
    memset(salt, 0x11, sizeof salt);
    ea_hkdf_args a = { .ikm_id = 0x7B000700u, .digest = EA_DIGEST_SHA256, .salt = salt, .salt_len = 16,
                       .info = (const uint8_t *)"info", .info_len = 4 };
    assert_int_equal(ea_host_hkdf(h, &a, out, 32), EA_OK);
    expect_last(&f->cap, "80 03 00 2D 00 00 25 41 04 7B 00 07 00 42 01 04 43 10 11111111111111111111111111111111 "
                         "44 04 69 6E 66 6F 45 02 00 20 00 00");
    uint8_t rnd[32];
    assert_int_equal(ea_host_tls_random(h, rnd), EA_OK);
    expect_last(&f->cap, "80 03 0F 49");
    memset(rnd, 0x22, sizeof rnd);
    assert_int_equal(ea_host_tls_prf(h, EA_P2_TLS_PRF_CLI_HELLO, 0x7B000700u, EA_DIGEST_SHA256, "master secret", rnd,
                                     32, out, 48),
                     EA_OK);
    expect_last(&f->cap, "80 03 0F 4B 00 00 3E 41 04 7B 00 07 00 42 01 04 43 0D 6D 61 73 74 65 72 20 73 65 63 72 65 74 "
                         "44 20 2222222222222222222222222222222222222222222222222222222222222222 45 02 00 30 00 00");
    assert_int_equal(ea_host_delete(h, 0x7B000426u), EA_OK);
    expect_last(&f->cap, "80 04 00 28 06 41 04 7B 00 04 26");
    /* The unique id through a chunked binary read (only TAG_3 on the first). */
    uint8_t uid[EA_UNIQUE_ID_LEN];
    assert_int_equal(ea_host_unique_id(h, uid), EA_OK);
    expect_last(&f->cap, "80 02 00 00 00 00 0A 41 04 7F FF 02 06 43 02 00 12 00 00");
    assert_memory_equal(uid, "\x04\x00\x50\x01", 4);
}

/* ---- errors are named -------------------------------------------------------- */

static void test_errors_named(void **state)
{
    fx *f = *state;
    uint8_t buf[128], dg[32] = { 0 };
    size_t n = sizeof buf;
    assert_int_equal(ea_host_read_pubkey(f->h, 0x7B00DEADu, buf, &n), EA_ERR_CONDITIONS);
    assert_int_equal(ea_host_last_sw(f->h), 0x6985);
    assert_non_null(strstr(ea_host_last_error(f->h), "0x7B00DEAD"));
    ea_policy sign_only = ea_policy_everyone(EA_POL_ALLOW_SIGN);
    assert_int_equal(ea_host_ec_generate(f->h, 0x7B000101u, EA_CURVE_NIST_P384, &sign_only, false), EA_OK);
    n = sizeof buf;
    assert_int_equal(ea_host_read_pubkey(f->h, 0x7B000101u, buf, &n), EA_ERR_DENIED);
    assert_int_equal(ea_host_last_sw(f->h), 0x6986);
    assert_non_null(strstr(ea_host_last_error(f->h), "policy"));
    n = 10; /* too small for a DER signature */
    assert_int_equal(ea_host_ecdsa_sign(f->h, 0x7B000101u, EA_SIG_ECDSA_SHA384, dg, 32, buf, &n), EA_ERR_CONDITIONS);
    uint8_t d48[48] = { 0 };
    n = 10;
    assert_int_equal(ea_host_ecdsa_sign(f->h, 0x7B000101u, EA_SIG_ECDSA_SHA384, d48, 48, buf, &n),
                     EA_ERR_BUF_TOO_SMALL);
    assert_true(n > 10 && n <= 104); /* the size of that signature (DER length varies) */
    size_t big = sizeof buf;
    assert_int_equal(ea_host_ecdsa_sign(f->h, 0x7B000101u, EA_SIG_ECDSA_SHA384, d48, 48, buf, &big), EA_OK);
}

/* ---- the command suite, run over each transport --------------------------------- */

static void suite(ea_host *h, const char *label)
{
    uint8_t pub[97], sig[128], dg[48], z1[48], z2[48], data[1500], back[1500];
    size_t n, sl, zl1 = sizeof z1, zl2 = sizeof z2;
    bool valid, ex;
    const uint32_t k1 = 0x7B001001u, k2 = 0x7B001002u, file = 0x7B001003u;

    ea_host_delete(h, k1);
    ea_host_delete(h, k2);
    ea_host_delete(h, file);
    assert_int_equal(ea_host_ec_generate(h, k1, EA_CURVE_NIST_P256, NULL, false), EA_OK);
    assert_int_equal(ea_host_ec_generate(h, k2, EA_CURVE_NIST_P256, NULL, true), EA_OK);
    n = sizeof pub;
    assert_int_equal(ea_host_read_pubkey(h, k1, pub, &n), EA_OK);
    assert_int_equal(n, 65);
    for (size_t i = 0; i < sizeof dg; i++)
        dg[i] = (uint8_t)i;
    sl = sizeof sig;
    assert_int_equal(ea_host_ecdsa_sign(h, k1, EA_SIG_ECDSA_SHA256, dg, 32, sig, &sl), EA_OK);
    assert_int_equal(ea_host_ecdsa_verify(h, k1, EA_SIG_ECDSA_SHA256, dg, 32, sig, sl, &valid), EA_OK);
    assert_true(valid);
    dg[0] ^= 1;
    assert_int_equal(ea_host_ecdsa_verify(h, k1, EA_SIG_ECDSA_SHA256, dg, 32, sig, sl, &valid), EA_OK);
    assert_false(valid);
    /* ECDH both ways agrees. */
    uint8_t pub2[65];
    size_t n2 = sizeof pub2;
    assert_int_equal(ea_host_read_pubkey(h, k2, pub2, &n2), EA_OK);
    assert_int_equal(ea_host_ecdh(h, k1, pub2, n2, 0, z1, &zl1), EA_OK);
    assert_int_equal(ea_host_ecdh(h, k2, pub, n, 0, z2, &zl2), EA_OK);
    assert_int_equal(zl1, 32);
    assert_memory_equal(z1, z2, 32);
    /* A 1400-byte file: chunked write and read (several APDUs each way). */
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7);
    assert_int_equal(ea_host_write_binary(h, file, data, 1400, NULL), EA_OK);
    n = sizeof back;
    assert_int_equal(ea_host_read_object(h, file, back, &n), EA_OK);
    assert_int_equal(n, 1400);
    assert_memory_equal(back, data, 1400);
    uint32_t ids[64];
    size_t nid = 64;
    assert_int_equal(ea_host_list(h, 0xFF, ids, &nid), EA_OK);
    assert_true(nid >= 5);
    uint8_t t;
    bool tr;
    assert_int_equal(ea_host_read_type(h, k2, &t, &tr), EA_OK);
    assert_true(tr);
    assert_int_equal(t, EA_TYPE_EC_P256_PAIR);
    uint16_t size;
    assert_int_equal(ea_host_read_size(h, file, &size), EA_OK);
    assert_int_equal(size, 1400);
    /* Attestation of the key: the signature verifies with the attestation key. */
    uint8_t fresh[16] = { 1, 2, 3 }, apub[65];
    size_t al = sizeof apub;
    ea_attestation *a = malloc(sizeof *a);
    assert_int_equal(ea_host_read_attested(h, k1, EA_OBJ_ATTEST_KEY, EA_SIG_ECDSA_SHA256, fresh, a), EA_OK);
    assert_int_equal(a->data_len, 65);
    assert_memory_equal(a->data, pub, 65);
    assert_int_equal(ea_host_read_pubkey(h, EA_OBJ_ATTEST_KEY, apub, &al), EA_OK);
    EVP_PKEY *ak = NULL;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    OSSL_PARAM prm[] = { OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0),
                         OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, apub, 65),
                         OSSL_PARAM_construct_end() };
    assert_true(EVP_PKEY_fromdata_init(pc) > 0 && EVP_PKEY_fromdata(pc, &ak, EVP_PKEY_PUBLIC_KEY, prm) > 0);
    EVP_PKEY_CTX *vc = EVP_PKEY_CTX_new(ak, NULL);
    assert_true(EVP_PKEY_verify_init(vc) > 0);
    assert_int_equal(EVP_PKEY_verify(vc, a->sig, a->sig_len, a->signed_hash, a->signed_hash_len), 1);
    a->signed_hash[0] ^= 1; /* and a changed statement does not */
    assert_int_not_equal(EVP_PKEY_verify(vc, a->sig, a->sig_len, a->signed_hash, a->signed_hash_len), 1);
    EVP_PKEY_CTX_free(vc);
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(ak);
    free(a);
    uint8_t r[64];
    assert_int_equal(ea_host_get_random(h, r, 64), EA_OK);
    assert_int_equal(ea_host_delete(h, file), EA_OK);
    assert_int_equal(ea_host_exists(h, file, &ex), EA_OK);
    assert_false(ex);
    print_message("suite over %s (%s): ok\n", label, ea_host_transport(h));
}

static void test_suite_emu(void **state)
{
    fx *f = *state;
    suite(f->h, f->uri);
}

/* An in-process server on a unix socket and a tcp port of its own chip. */
typedef struct served {
    char *dir;
    ea_emu *emu;
    ea_serve *srv;
    pthread_t th;
    char unix_uri[600], tcp_uri[128], t1_uri[128];
    char keys[700]; /* the chip's Platform SCP03 keys, exported at init */
} served;

static void *serve_main(void *arg)
{
    ea_serve_run(arg);
    return NULL;
}

static void served_start(served *s, const char *const *extra, size_t n_extra)
{
    char err[256], sock[600];
    s->dir = tu_tmpdir("hostsrv");
    snprintf(s->keys, sizeof s->keys, "%s/scp03.keys", s->dir);
    ea_emu_init_opts io = { .scp03_keys_out = s->keys };
    assert_int_equal(ea_emu_init(s->dir, &io, err, sizeof err), EA_OK);
    assert_int_equal(ea_emu_open(s->dir, NULL, &s->emu, err, sizeof err), EA_OK);
    snprintf(sock, sizeof sock, "unix:%s/se.sock", s->dir);
    const char *listen[8] = { sock, "tcp://127.0.0.1:0", "t1-tcp://127.0.0.1:0" };
    for (size_t i = 0; i < n_extra && i < 5; i++)
        listen[3 + i] = extra[i];
    ea_serve_opts so = { .listen = listen, .n_listen = 3 + n_extra };
    if (ea_serve_new(s->emu, &so, &s->srv, err, sizeof err) != EA_OK)
        fail_msg("server: %s", err);
    snprintf(s->unix_uri, sizeof s->unix_uri, "%s", sock);
    for (size_t i = 0; i < ea_serve_count(s->srv); i++)
        if (!strncmp(ea_serve_uri(s->srv, i), "tcp://", 6))
            snprintf(s->tcp_uri, sizeof s->tcp_uri, "%s", ea_serve_uri(s->srv, i));
        else if (!strncmp(ea_serve_uri(s->srv, i), "t1-tcp://", 9))
            snprintf(s->t1_uri, sizeof s->t1_uri, "%s", ea_serve_uri(s->srv, i));
    assert_true(s->tcp_uri[0] && s->t1_uri[0]);
    pthread_create(&s->th, NULL, serve_main, s->srv);
}

static void served_stop(served *s)
{
    ea_serve_stop(s->srv);
    pthread_join(s->th, NULL);
    ea_serve_free(s->srv);
    ea_emu_close(s->emu);
    tu_rmrf(s->dir);
    free(s->dir);
}

static void run_suite_on(const char *uri)
{
    ea_host *h;
    char err[256];
    if (ea_host_open(uri, NULL, &h, err, sizeof err) != EA_OK)
        fail_msg("open %s: %s", uri, err);
    suite(h, uri);
    ea_host_close(h);
}

/* The same suite through Platform SCP03 on every socket transport: every
 * command wrapped, every answer's R-MAC checked. */
static void test_suite_sockets_scp03(void **state)
{
    (void)state;
    served s;
    char uri[1400];
    served_start(&s, NULL, 0);
    const char *bases[] = { s.unix_uri, s.tcp_uri, s.t1_uri };
    for (size_t i = 0; i < 3; i++) {
        ea_host *h;
        char err[256];
        snprintf(uri, sizeof uri, "%s?scp03=%s", bases[i], s.keys);
        if (ea_host_open(uri, NULL, &h, err, sizeof err) != EA_OK)
            fail_msg("open %s: %s", uri, err);
        assert_true(ea_host_secure(h));
        assert_string_equal(ea_host_uri(h), bases[i]); /* the query is not the transport's */
        suite(h, uri);
        ea_host_close(h);
    }
    /* The environment variable does the same for every program. */
    setenv("EDGEAUTH_SE_SCP03", s.keys, 1);
    ea_host *h;
    char err[256];
    assert_int_equal(ea_host_open(s.unix_uri, NULL, &h, err, sizeof err), EA_OK);
    assert_true(ea_host_secure(h));
    ea_se_version v;
    assert_int_equal(ea_host_get_version(h, &v), EA_OK);
    ea_host_close(h);
    unsetenv("EDGEAUTH_SE_SCP03");
    served_stop(&s);
}

static void test_suite_sockets(void **state)
{
    (void)state;
    served s;
    served_start(&s, NULL, 0);
    run_suite_on(s.unix_uri);
    run_suite_on(s.tcp_uri);
    run_suite_on(s.t1_uri);
    served_stop(&s);
}

/* ---- threads share one session ---------------------------------------------------- */

typedef struct worker {
    ea_host *h;
    int ok;
} worker;

static void *sign_worker(void *arg)
{
    worker *w = arg;
    uint8_t dg[32] = { 9 }, sig[80];
    for (int i = 0; i < 50; i++) {
        size_t sl = sizeof sig;
        bool v = false;
        if (ea_host_ecdsa_sign(w->h, 0x7B002001u, EA_SIG_ECDSA_SHA256, dg, 32, sig, &sl) == EA_OK &&
            ea_host_ecdsa_verify(w->h, 0x7B002001u, EA_SIG_ECDSA_SHA256, dg, 32, sig, sl, &v) == EA_OK && v)
            w->ok++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    served s;
    ea_host *h;
    char err[256];
    served_start(&s, NULL, 0);
    assert_int_equal(ea_host_open(s.unix_uri, NULL, &h, err, sizeof err), EA_OK);
    assert_int_equal(ea_host_ec_generate(h, 0x7B002001u, EA_CURVE_NIST_P256, NULL, false), EA_OK);
    pthread_t th[4];
    worker w[4] = { { h, 0 }, { h, 0 }, { h, 0 }, { h, 0 } };
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, sign_worker, &w[i]);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].ok, 50);
    }
    ea_host_close(h);
    /* Again through SCP03: the counter and MAC chain stay in step under
     * concurrent use of one session. */
    char uri[1400];
    snprintf(uri, sizeof uri, "%s?scp03=%s", s.unix_uri, s.keys);
    assert_int_equal(ea_host_open(uri, NULL, &h, err, sizeof err), EA_OK);
    for (int i = 0; i < 4; i++) {
        w[i].h = h;
        w[i].ok = 0;
        pthread_create(&th[i], NULL, sign_worker, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].ok, 50);
    }
    ea_host_close(h);
    served_stop(&s);
}

/* ---- a scripted JRCP_v1 peer: decoders on every prefix, garbage, silence ------ */

typedef enum peer_mode { PEER_SCRIPT, PEER_SILENT, PEER_CLOSE, PEER_GARBAGE } peer_mode;

typedef struct peer {
    int lfd;
    char path[600];
    pthread_t th;
    pthread_mutex_t mu;
    peer_mode mode;
    uint8_t rsp[2048]; /* the R-APDU for the next non-SELECT command */
    size_t rsp_len;
    volatile int stop;
} peer;

static int rd(int fd, uint8_t *p, size_t n)
{
    while (n) {
        ssize_t k = read(fd, p, n);
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void wr(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

static void *peer_main(void *arg)
{
    peer *p = arg;
    while (!p->stop) {
        struct pollfd pf = { p->lfd, POLLIN, 0 };
        if (poll(&pf, 1, 100) <= 0)
            continue;
        int fd = accept(p->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        uint8_t h[4], buf[70000];
        while (!p->stop && rd(fd, h, 4) == 0) {
            size_t len = (size_t)(h[2] << 8 | h[3]);
            if (rd(fd, buf, len) != 0)
                break;
            pthread_mutex_lock(&p->mu);
            peer_mode mode = p->mode;
            uint8_t out[2100];
            size_t on = 0;
            if (h[0] == 0x00) { /* ATR */
                static const uint8_t atr[] = { 0x00, 0xA0, 0x00, 0x00, 0x03, 0x96 };
                memcpy(out, atr, sizeof atr);
                on = sizeof atr;
            } else if (h[0] == 0x01 && len >= 2 && buf[0] == 0x00 && buf[1] == 0xA4) {
                static const uint8_t ver[] = { 7, 2, 0, 0x14, 0x92, 1, 0x0B, 0x90, 0x00 };
                memcpy(out, ver, sizeof ver);
                on = sizeof ver;
            } else if (h[0] == 0x01) {
                memcpy(out, p->rsp, p->rsp_len);
                on = p->rsp_len;
            } else {
                on = 0;
            }
            pthread_mutex_unlock(&p->mu);
            bool is_cmd = h[0] == 0x01 && !(len >= 2 && buf[0] == 0x00);
            if (is_cmd && mode == PEER_SILENT) {
                struct timespec ts = { 0, 400 * 1000000L };
                nanosleep(&ts, NULL);
                break;
            }
            if (is_cmd && mode == PEER_CLOSE)
                break;
            if (is_cmd && mode == PEER_GARBAGE) {
                uint8_t g[40];
                for (size_t i = 0; i < sizeof g; i++)
                    g[i] = (uint8_t)(i * 37 + 11);
                wr(fd, g, sizeof g);
                break;
            }
            uint8_t hdr[4] = { h[0], 0, (uint8_t)(on >> 8), (uint8_t)on };
            wr(fd, hdr, 4);
            wr(fd, out, on);
            if (h[0] == 0x03)
                break;
        }
        close(fd);
    }
    return NULL;
}

static void peer_start(peer *p, const char *dir)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    snprintf(p->path, sizeof p->path, "%s/peer.sock", dir);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%.100s", p->path);
    p->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(p->lfd, 4), 0);
    pthread_create(&p->th, NULL, peer_main, p);
}

static void peer_set(peer *p, peer_mode m, const uint8_t *rsp, size_t n)
{
    pthread_mutex_lock(&p->mu);
    p->mode = m;
    memcpy(p->rsp, rsp, n);
    p->rsp_len = n;
    pthread_mutex_unlock(&p->mu);
}

static void peer_stop(peer *p)
{
    p->stop = 1;
    pthread_join(p->th, NULL);
    close(p->lfd);
    unlink(p->path);
}

/* Call one decoder; returns its ea_err. */
typedef ea_err decode_fn(ea_host *h);
static ea_err d_version(ea_host *h) { ea_se_version v; return ea_host_get_version(h, &v); }
static ea_err d_exists(ea_host *h) { bool e; return ea_host_exists(h, 1, &e); }
static ea_err d_type(ea_host *h) { uint8_t t; bool tr; return ea_host_read_type(h, 1, &t, &tr); }
static ea_err d_size(ea_host *h) { uint16_t s; return ea_host_read_size(h, 1, &s); }
static ea_err d_mem(ea_host *h) { uint16_t s; return ea_host_free_memory(h, 1, &s); }
static ea_err d_pub(ea_host *h) { uint8_t b[128]; size_t n = sizeof b; return ea_host_read_pubkey(h, 1, b, &n); }
static ea_err d_sign(ea_host *h)
{
    uint8_t d[32] = { 0 }, b[128];
    size_t n = sizeof b;
    return ea_host_ecdsa_sign(h, 1, EA_SIG_ECDSA_SHA256, d, 32, b, &n);
}
static ea_err d_verify(ea_host *h)
{
    uint8_t d[32] = { 0 }, s[8] = { 0x30 };
    bool v;
    return ea_host_ecdsa_verify(h, 1, EA_SIG_ECDSA_SHA256, d, 32, s, 8, &v);
}
static ea_err d_ecdh(ea_host *h) { uint8_t p[65] = { 4 }, o[64]; size_t n = sizeof o; return ea_host_ecdh(h, 1, p, 65, 0, o, &n); }
static ea_err d_random(ea_host *h) { uint8_t o[8]; return ea_host_get_random(h, o, 8); }
static ea_err d_list(ea_host *h) { uint32_t ids[8]; size_t n = 8; return ea_host_list(h, 0xFF, ids, &n); }
static ea_err d_tlsrnd(ea_host *h) { uint8_t o[32]; return ea_host_tls_random(h, o); }

static const struct {
    const char *name;
    decode_fn *fn;
    const char *golden; /* a valid R-APDU for it */
} decoders[] = {
    { "GetVersion", d_version, "41 82 00 07 07 02 00 14 92 01 0B 90 00" },
    { "CheckObjectExists", d_exists, "41 01 01 90 00" },
    { "ReadType", d_type, "41 01 29 42 01 01 90 00" },
    { "ReadSize", d_size, "41 02 00 20 90 00" },
    { "GetFreeMemory", d_mem, "41 02 7F FF 90 00" },
    { "ReadObject", d_pub, "41 82 00 41 04 " "1111111111111111111111111111111111111111111111111111111111111111"
                           "2222222222222222222222222222222222222222222222222222222222222222 90 00" },
    { "ECDSASign", d_sign, "41 82 00 08 30 06 02 01 01 02 01 01 90 00" },
    { "ECDSAVerify", d_verify, "41 01 02 90 00" },
    { "ECDH", d_ecdh, "41 82 00 20 3333333333333333333333333333333333333333333333333333333333333333 90 00" },
    { "GetRandom", d_random, "41 82 00 08 0102030405060708 90 00" },
    { "ReadIDList", d_list, "41 01 01 42 82 00 04 7B 00 00 01 90 00" },
    { "TLSGenerateRandom", d_tlsrnd, "41 82 00 20 4444444444444444444444444444444444444444444444444444444444444444 90 00" },
};

static void test_decoders_every_prefix(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("peer"), uri[700], err[256];
    peer p;
    ea_host *h;
    peer_start(&p, dir);
    snprintf(uri, sizeof uri, "unix:%s", p.path);
    assert_int_equal(ea_host_open(uri, NULL, &h, err, sizeof err), EA_OK);
    int checked = 0;
    for (size_t d = 0; d < sizeof decoders / sizeof decoders[0]; d++) {
        size_t n;
        uint8_t *g = tu_hex(decoders[d].golden, &n);
        peer_set(&p, PEER_SCRIPT, g, n);
        if (decoders[d].fn(h) != EA_OK)
            fail_msg("%s refuses its golden answer: %s", decoders[d].name, ea_host_last_error(h));
        /* Every shorter body (SW kept 90 00) must be refused as malformed. */
        for (size_t k = 0; k + 2 < n; k++) {
            uint8_t cut[2100];
            memcpy(cut, g, k);
            cut[k] = 0x90;
            cut[k + 1] = 0x00;
            peer_set(&p, PEER_SCRIPT, cut, k + 2);
            ea_err rc = decoders[d].fn(h);
            if (rc == EA_OK)
                fail_msg("%s accepts a %zu-byte prefix of its answer", decoders[d].name, k);
            checked++;
        }
        /* One byte too many is refused too. */
        uint8_t longer[2100];
        memcpy(longer, g, n - 2);
        longer[n - 2] = 0x00;
        longer[n - 1] = 0x90;
        longer[n] = 0x00;
        peer_set(&p, PEER_SCRIPT, longer, n + 1);
        assert_int_not_equal(decoders[d].fn(h), EA_OK);
        free(g);
    }
    print_message("decoders: %d truncated answers refused\n", checked);
    /* Error status words map to errors with the raw SW kept. */
    static const struct { const char *rsp; ea_err e; uint16_t sw; } sws[] = {
        { "69 85", EA_ERR_CONDITIONS, 0x6985 }, { "69 86", EA_ERR_DENIED, 0x6986 },
        { "6A 80", EA_ERR_WRONG_DATA, 0x6A80 }, { "6A 84", EA_ERR_FULL, 0x6A84 },
        { "6D 00", EA_ERR_UNSUPPORTED, 0x6D00 }, { "62 83", EA_ERR_CARD, 0x6283 },
    };
    for (size_t i = 0; i < sizeof sws / sizeof sws[0]; i++) {
        size_t n;
        uint8_t *r = tu_hex(sws[i].rsp, &n);
        peer_set(&p, PEER_SCRIPT, r, n);
        assert_int_equal(d_exists(h), sws[i].e);
        assert_int_equal(ea_host_last_sw(h), sws[i].sw);
        free(r);
    }
    ea_host_close(h);
    peer_stop(&p);
    tu_rmrf(dir);
    free(dir);
}

static void test_link_faults(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("peer"), uri[700], err[256];
    peer p;
    ea_host *h;
    peer_start(&p, dir);
    snprintf(uri, sizeof uri, "unix:%s", p.path);
    ea_host_opts o = { .timeout_ms = 200 };
    assert_int_equal(ea_host_open(uri, &o, &h, err, sizeof err), EA_OK);
    bool ex;
    static const uint8_t ok[] = { 0x41, 0x01, 0x01, 0x90, 0x00 };
    /* Silence: a timeout, bounded by the session's timeout. */
    peer_set(&p, PEER_SILENT, ok, sizeof ok);
    long long t0 = ea_now_ms();
    assert_int_equal(ea_host_exists(h, 1, &ex), EA_ERR_TIMEOUT);
    assert_true(ea_now_ms() - t0 < 2000);
    assert_non_null(strstr(ea_host_last_error(h), "reconnect"));
    /* The peer hangs up in mid-command: a clear I/O error. */
    peer_set(&p, PEER_CLOSE, ok, sizeof ok);
    assert_int_equal(ea_host_exists(h, 1, &ex), EA_ERR_IO);
    /* Garbage instead of JRCP: an error, not a crash. */
    peer_set(&p, PEER_GARBAGE, ok, sizeof ok);
    assert_int_not_equal(ea_host_exists(h, 1, &ex), EA_OK);
    /* And the next call reconnects, selects, and works. */
    peer_set(&p, PEER_SCRIPT, ok, sizeof ok);
    assert_int_equal(ea_host_exists(h, 1, &ex), EA_OK);
    assert_true(ex);
    ea_host_close(h);
    peer_stop(&p);
    tu_rmrf(dir);
    free(dir);
}

/* ---- the real daemon killed and restarted ----------------------------------------- */

static pid_t spawn_serve(const char *state, const char *sock)
{
    char bin[600], listen[700];
    tu_bin("edgeauth-se", bin, sizeof bin);
    snprintf(listen, sizeof listen, "unix:%s", sock);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", 1);
        dup2(null, 2);
        execl(bin, bin, "serve", "--state", state, "--listen", listen, (char *)NULL);
        _exit(127);
    }
    /* Wait for the socket (bounded). */
    for (int i = 0; i < 300; i++) {
        if (access(sock, F_OK) == 0)
            break;
        struct timespec ts = { 0, 20 * 1000000L };
        nanosleep(&ts, NULL);
    }
    return pid;
}

static void test_daemon_killed(void **state)
{
    (void)state;
    char *dir = tu_tmpdir("kill"), sock[700], uri[800], err[256], bin[600];
    snprintf(sock, sizeof sock, "%s/se.sock", dir);
    snprintf(uri, sizeof uri, "unix:%s", sock);
    tu_bin("edgeauth-se", bin, sizeof bin);
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "%s init --state %s/chip >/dev/null 2>&1", bin, dir);
    assert_int_equal(system(cmd), 0);
    char chip[700];
    snprintf(chip, sizeof chip, "%s/chip", dir);
    pid_t pid = spawn_serve(chip, sock);
    ea_host *h;
    assert_int_equal(ea_host_open(uri, NULL, &h, err, sizeof err), EA_OK);
    bool ex;
    assert_int_equal(ea_host_exists(h, EA_OBJ_ATTEST_KEY, &ex), EA_OK);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    unlink(sock);
    ea_err rc = ea_host_exists(h, EA_OBJ_ATTEST_KEY, &ex);
    assert_true(rc == EA_ERR_IO || rc == EA_ERR_TIMEOUT);
    assert_true(strlen(ea_host_last_error(h)) > 0);
    /* Still down: the reconnect fails cleanly. */
    assert_int_not_equal(ea_host_exists(h, EA_OBJ_ATTEST_KEY, &ex), EA_OK);
    assert_non_null(strstr(ea_host_last_error(h), sock));
    pid = spawn_serve(chip, sock);
    assert_int_equal(ea_host_exists(h, EA_OBJ_ATTEST_KEY, &ex), EA_OK);
    assert_true(ex);
    ea_host_close(h);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    /* Nothing listening at all: open fails with the reason. */
    assert_int_not_equal(ea_host_open(uri, NULL, &h, err, sizeof err), EA_OK);
    assert_non_null(strstr(err, sock));
    assert_int_not_equal(ea_host_open("tcp://127.0.0.1:1", NULL, &h, err, sizeof err), EA_OK);
    assert_non_null(strstr(err, "127.0.0.1:1"));
    assert_int_equal(ea_host_open("bogus://x", NULL, &h, err, sizeof err), EA_ERR_ARG);
    assert_int_not_equal(ea_host_open("i2c:/dev/i2c-99", NULL, &h, err, sizeof err), EA_OK);
    assert_non_null(strstr(err, "/dev/i2c-99"));
    tu_rmrf(dir);
    free(dir);
}

static void test_default_uri(void **state)
{
    (void)state;
    char *home = tu_tmpdir("home"), uri[1200], err[256];
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    unsetenv("EDGEAUTH_SE");
    unsetenv("XDG_DATA_HOME");
    setenv("HOME", home, 1);
    assert_int_equal(ea_host_default_uri(uri, sizeof uri), EA_OK);
    assert_non_null(strstr(uri, "emu:"));
    assert_non_null(strstr(uri, "/.local/share/edgeauth/se"));
    ea_host *h;
    /* First use creates the chip. */
    assert_int_equal(ea_host_open(NULL, NULL, &h, err, sizeof err), EA_OK);
    assert_string_equal(ea_host_transport(h), "emu");
    uint8_t uid[18];
    assert_int_equal(ea_host_unique_id(h, uid), EA_OK);
    ea_host_close(h);
    setenv("EDGEAUTH_SE", "tcp://127.0.0.1:1", 1);
    assert_int_equal(ea_host_default_uri(uri, sizeof uri), EA_OK);
    assert_string_equal(uri, "tcp://127.0.0.1:1");
    unsetenv("EDGEAUTH_SE");
    if (old_home)
        setenv("HOME", old_home, 1);
    free(old_home);
    tu_rmrf(home);
    free(home);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_golden_encoders, setup_emu, teardown_emu),
        cmocka_unit_test_setup_teardown(test_errors_named, setup_emu, teardown_emu),
        cmocka_unit_test_setup_teardown(test_suite_emu, setup_emu, teardown_emu),
        cmocka_unit_test(test_suite_sockets),
        cmocka_unit_test(test_suite_sockets_scp03),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_decoders_every_prefix),
        cmocka_unit_test(test_link_faults),
        cmocka_unit_test(test_daemon_killed),
        cmocka_unit_test(test_default_uri),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
