/* Benchmark: device certificates issued per second by the CA in-process
 * (ea_ca_issue_device: parse the CSR, verify its signature, policy,
 * profile, ECDSA P-256 signature, certificate file, index, audit line),
 * against OpenSSL's own in-process ECDSA P-256 sign of a certificate-sized
 * message, measured in the same run. Single thread: one core.
 *
 * Two durability modes:
 *   batch    ea_ca_batch_begin/end around the run: one sync at the end
 *            (its cost is inside the measured time)
 *   durable  every issuance fsyncs its certificate, index record and
 *            audit line before returning (the default mode of the CA)
 *
 *   usage: bench_ca_issue [-n N] [-d DURABLE_N] [--cpu C] [--keep]
 *   (N certificates in batch mode, default 5000; DURABLE_N in durable
 *   mode, default 500; --cpu pins the process to CPU C.) */
#define _GNU_SOURCE /* sched_setaffinity */
#include <getopt.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "edgeauth/pki.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct csr {
    unsigned char *der;
    size_t len;
} csr;

/* N CSRs, each with its own P-256 key and CN (a CA refuses a second active
 * certificate for one device id). */
static csr *make_csrs(int n, const char *prefix)
{
    csr *c = calloc((size_t)n, sizeof *c);
    for (int i = 0; c && i < n; i++) {
        char cn[32];
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        X509_REQ *r = X509_REQ_new();
        X509_NAME *nm = X509_NAME_new();
        snprintf(cn, sizeof cn, "%s-%06d", prefix, i);
        if (!k || !r || !nm ||
            !X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) ||
            !X509_REQ_set_subject_name(r, nm) || !X509_REQ_set_pubkey(r, k) || X509_REQ_sign(r, k, EVP_sha256()) <= 0) {
            fprintf(stderr, "bench: cannot make CSR %d\n", i);
            exit(1);
        }
        int len = i2d_X509_REQ(r, &c[i].der);
        c[i].len = (size_t)len;
        X509_NAME_free(nm);
        X509_REQ_free(r);
        EVP_PKEY_free(k);
    }
    return c;
}

static void free_csrs(csr *c, int n)
{
    for (int i = 0; i < n; i++)
        OPENSSL_free(c[i].der);
    free(c);
}

static double sync_time; /* the ea_ca_batch_end of the last batch run */

static double issue_all(ea_ca *ca, csr *c, int n, bool batch, size_t *der_total)
{
    char err[512];
    double t0 = now_s();
    if (batch)
        ea_ca_batch_begin(ca);
    for (int i = 0; i < n; i++) {
        X509 *x = NULL;
        if (ea_ca_issue_device(ca, c[i].der, c[i].len, NULL, NULL, &x, err, sizeof err) != EA_OK) {
            fprintf(stderr, "bench: issuance %d failed: %s\n", i, err);
            exit(1);
        }
        if (der_total)
            *der_total += (size_t)i2d_X509(x, NULL);
        X509_free(x);
    }
    double ts = now_s();
    if (batch && ea_ca_batch_end(ca) != EA_OK) {
        fprintf(stderr, "bench: batch end failed\n");
        exit(1);
    }
    sync_time = now_s() - ts;
    return now_s() - t0;
}

/* The floor: one ECDSA P-256 signature (SHA-256 over a 400-byte TBS) with a
 * key in the same process, through the same EVP interface. */
static double raw_sign_rate(int n)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    unsigned char msg[400], sig[80];
    memset(msg, 0xA5, sizeof msg);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        size_t sl = sizeof sig;
        msg[0] = (unsigned char)i;
        if (!m || EVP_DigestSignInit_ex(m, NULL, "SHA256", NULL, NULL, k, NULL) != 1 ||
            EVP_DigestSign(m, sig, &sl, msg, sizeof msg) != 1) {
            fprintf(stderr, "bench: raw sign failed\n");
            exit(1);
        }
        EVP_MD_CTX_free(m);
    }
    double dt = now_s() - t0;
    EVP_PKEY_free(k);
    return n / dt;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "cpu", required_argument, NULL, 'c' },
        { "keep", no_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int n = 5000, nd = 500, cpu = -1, o;
    bool keep = false;
    char tmpl[] = "/tmp/edgeauth-bench-ca-XXXXXX", dir[64], err[512];

    while ((o = getopt_long(argc, argv, "n:d:h", lo, NULL)) != -1) {
        switch (o) {
        case 'n': n = atoi(optarg); break;
        case 'd': nd = atoi(optarg); break;
        case 'c': cpu = atoi(optarg); break;
        case 'k': keep = true; break;
        default:
            fprintf(o == 'h' ? stdout : stderr, "usage: bench_ca_issue [-n N] [-d DURABLE_N] [--cpu C] [--keep]\n");
            return o == 'h' ? 0 : 2;
        }
    }
    if (n <= 0 || nd < 0) {
        fprintf(stderr, "bench_ca_issue: -n must be positive\n");
        return 2;
    }
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            perror("bench_ca_issue: sched_setaffinity");
    }
    const char *tmpdir = getenv("TMPDIR");
    if (tmpdir && *tmpdir) {
        static char t2[512];
        snprintf(t2, sizeof t2, "%s/edgeauth-bench-ca-XXXXXX", tmpdir);
        if (!mkdtemp(t2)) {
            perror("bench_ca_issue: mkdtemp");
            return 1;
        }
        snprintf(dir, sizeof dir, "%.40s/ca", t2);
    } else {
        if (!mkdtemp(tmpl)) {
            perror("bench_ca_issue: mkdtemp");
            return 1;
        }
        snprintf(dir, sizeof dir, "%s/ca", tmpl);
    }

    ea_ca_init_opts io = { .org = "Example OEM" };
    ea_ca *ca = NULL;
    if (ea_ca_init(dir, &io, err, sizeof err) != EA_OK || ea_ca_open(dir, &ca, err, sizeof err) != EA_OK) {
        fprintf(stderr, "bench_ca_issue: %s\n", err);
        return 1;
    }

    printf("CA issuance in-process, device profile, intermediate key in a PEM file, one thread\n");
    double t0 = now_s();
    csr *cb = make_csrs(n, "b"), *cd = nd ? make_csrs(nd, "d") : NULL;
    printf("  %d + %d CSRs (P-256, one key each) prepared in %.2f s (not timed)\n", n, nd, now_s() - t0);

    /* Rounds alternate issuance and the raw-sign baseline, so that a noisy
     * neighbour on a shared machine hits both alike; medians are reported. */
    enum { ROUNDS = 5 };
    double rate_b[ROUNDS], rate_raw[ROUNDS], sync_sum = 0, tb = 0;
    size_t der_total = 0;
    int per = n / ROUNDS;
    for (int r = 0; r < ROUNDS; r++) {
        int cnt = r == ROUNDS - 1 ? n - per * (ROUNDS - 1) : per;
        double t = issue_all(ca, cb + per * r, cnt, true, &der_total);
        tb += t;
        sync_sum += sync_time;
        rate_b[r] = cnt / t;
        rate_raw[r] = raw_sign_rate(cnt > 1000 ? 1000 : cnt);
    }
    qsort(rate_b, ROUNDS, sizeof rate_b[0], cmp_d);
    qsort(rate_raw, ROUNDS, sizeof rate_raw[0], cmp_d);
    double rb = rate_b[ROUNDS / 2], raw = rate_raw[ROUNDS / 2];
    printf("  batch mode    %6d certificates in %d batches, %.3f s: median %7.0f certs/s (min %.0f, max %.0f; "
           "%.3f ms each, avg %zu B DER; syncs %.3f s in all)\n",
           n, ROUNDS, tb, rb, rate_b[0], rate_b[ROUNDS - 1], 1e3 / rb, der_total / (size_t)n, sync_sum);
    double rd = 0;
    if (nd) {
        double td = issue_all(ca, cd, nd, false, NULL);
        rd = nd / td;
        printf("  durable mode  %6d certificates in %.3f s: %7.0f certs/s  (fsync of cert, index and audit line "
               "per certificate)\n",
               nd, td, rd);
    }
    printf("  baseline      OpenSSL in-process ECDSA P-256 sign (SHA-256, 400 B): median %7.0f signs/s\n", raw);
    printf("  ratio         batch issuance / raw sign = %.2f (the rest: CSR parse + verify, X.509 objects, "
           "bookkeeping)\n",
           rb / raw);
    printf("  goal          >= 2000 certs/s (openssl ca -infiles: ~1100/s here): %s\n",
           rb >= 2000 ? "met" : "NOT met");

    ea_ca_close(ca);
    size_t lines = 0;
    if (ea_ca_audit_verify(dir, &lines, err, sizeof err) != EA_OK) {
        fprintf(stderr, "bench_ca_issue: audit log: %s\n", err);
        return 1;
    }
    printf("  audit log     %zu lines, chain verified\n", lines);
    free_csrs(cb, n);
    if (cd)
        free_csrs(cd, nd);
    if (keep) {
        printf("  CA kept in %s\n", dir);
    } else {
        char cmd[128];
        char *slash = strrchr(dir, '/');
        *slash = '\0';
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_ca_issue: could not remove %s\n", dir);
    }
    return 0;
}
