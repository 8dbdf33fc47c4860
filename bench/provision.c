/* Benchmark: devices fully provisioned per second with the in-process
 * emulator (key generated in the SE, attested read checked against the
 * vendor CA, CSR signed through our provider, certificate issued, three
 * objects written and read back, registry line), next to what the same
 * run measures for the parts alone: chip creation, and the CA issuing
 * certificates for CSRs of software keys (the baseline the ratio is
 * against). Then the signed manifest of the batch: signing and verifying.
 *
 *   usage: bench_provision [devices (default 200)] [directory (default $TMPDIR or /tmp)]
 *
 * The chips, the CA and the registry live in a fresh directory below the
 * one given, removed at the end. Every write of the emulator's store and
 * of the CA is fsync()ed: on a disk the numbers include that cost; on
 * tmpfs (/dev/shm) they do not. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "edgeauth/emu.h"
#include "edgeauth/host.h"
#include "edgeauth/manifest.h"
#include "edgeauth/pki.h"
#include "edgeauth/se05x.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what, ea_err rc, const char *err)
{
    fprintf(stderr, "bench_provision: %s: %s%s%s\n", what, ea_err_str(rc), err && *err ? ": " : "", err ? err : "");
    exit(1);
}

/* A CSR (DER) for a fresh software P-256 key: the baseline's input. */
static unsigned char *make_csr(const char *cn, int *len)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509_REQ *r = X509_REQ_new();
    X509_NAME *n = X509_NAME_new();
    unsigned char *der = NULL;
    *len = -1;
    if (k && r && n &&
        X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"Bench OEM", -1, -1, 0) &&
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) &&
        X509_REQ_set_subject_name(r, n) && X509_REQ_set_pubkey(r, k) && X509_REQ_sign(r, k, EVP_sha256()) > 0)
        *len = i2d_X509_REQ(r, &der);
    X509_NAME_free(n);
    X509_REQ_free(r);
    EVP_PKEY_free(k);
    return der;
}

/* Baseline: the CA alone, CSRs made beforehand (not timed). */
static double bench_issue(const char *dir, int n)
{
    char path[4200], err[512] = "", cn[32];
    ea_ca_init_opts io = { .org = "Bench OEM" };
    ea_ca *ca = NULL;
    unsigned char **csr = calloc((size_t)n, sizeof *csr);
    int *len = calloc((size_t)n, sizeof *len);
    ea_err rc;

    snprintf(path, sizeof path, "%s/ca-baseline", dir);
    if ((rc = ea_ca_init(path, &io, err, sizeof err)) != EA_OK)
        die("ea_ca_init", rc, err);
    for (int i = 0; i < n; i++) {
        snprintf(cn, sizeof cn, "base-%04d", i);
        if (!(csr[i] = make_csr(cn, &len[i])))
            die("make_csr", EA_ERR_CRYPTO, NULL);
    }
    if ((rc = ea_ca_open(path, &ca, err, sizeof err)) != EA_OK)
        die("ea_ca_open", rc, err);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        X509 *x = NULL;
        snprintf(cn, sizeof cn, "base-%04d", i);
        if ((rc = ea_ca_issue_device(ca, csr[i], (size_t)len[i], cn, NULL, &x, err, sizeof err)) != EA_OK)
            die("ea_ca_issue_device", rc, err);
        X509_free(x);
    }
    double t = now_s() - t0;
    ea_ca_close(ca);
    for (int i = 0; i < n; i++)
        OPENSSL_free(csr[i]);
    free(csr);
    free(len);
    return n / t;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    const char *base = argc > 2 ? argv[2] : getenv("TMPDIR");
    char dir[4096], path[4200], pki[4200], vdir[4200], vpem[4300], err[1024] = "", id[32];
    ea_ca_init_opts io = { .org = "Example OEM" };
    ea_station *st = NULL;
    ea_err rc;

    if (n < 1 || n > 100000) {
        fprintf(stderr, "usage: bench_provision [devices] [directory]\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s/edgeauth-bench-prov-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(pki, sizeof pki, "%s/pki", dir);
    snprintf(vdir, sizeof vdir, "%s/vendor", dir);
    snprintf(vpem, sizeof vpem, "%s/vendor-ca.pem", vdir);
    if ((rc = ea_ca_init(pki, &io, err, sizeof err)) != EA_OK)
        die("ea_ca_init", rc, err);

    double issue_rate = bench_issue(dir, n);

    /* 1. chips (a factory line receives them made) */
    double t0 = now_s();
    for (int i = 1; i <= n; i++) {
        ea_emu_init_opts eo = { .vendor_ca_dir = vdir };
        snprintf(path, sizeof path, "%s/chip-%04d", dir, i);
        if ((rc = ea_emu_init(path, &eo, err, sizeof err)) != EA_OK)
            die("ea_emu_init", rc, err);
    }
    double t_chips = now_s() - t0;

    /* 2. provisioning, one station for the batch */
    ea_provision_opts po = { .ca_dir = pki, .vendor_ca_pem = vpem };
    X509 **certs = calloc((size_t)n, sizeof *certs);
    ea_provision_result *res = calloc((size_t)n, sizeof *res);
    t0 = now_s();
    if ((rc = ea_station_open(&po, &st, err, sizeof err)) != EA_OK)
        die("ea_station_open", rc, err);
    ea_station_set_batch(st, true);
    for (int i = 1; i <= n; i++) {
        snprintf(path, sizeof path, "emu:%s/chip-%04d", dir, i);
        snprintf(id, sizeof id, "dev-%04d", i);
        if ((rc = ea_station_provision(st, path, id, &res[i - 1], err, sizeof err)) != EA_OK)
            die("ea_station_provision", rc, err);
    }
    double t_prov = now_s() - t0;

    /* 3. the manifest of the batch: sign, then verify as the cloud would */
    EVP_PKEY *skey;
    X509 *scert;
    ea_manifest *m = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null(), *trusted = sk_X509_new_null();
    sk_X509_push(chain, ea_station_intermediate(st));
    sk_X509_push(chain, ea_station_root(st));
    sk_X509_push(trusted, ea_station_root(st));
    if ((rc = ea_station_signer(st, &skey, &scert, err, sizeof err)) != EA_OK ||
        (rc = ea_manifest_new(skey, scert, &m)) != EA_OK)
        die("manifest signer", rc, err);
    /* the certificates as the chips hold them (read outside the timing) */
    double t_sign;
    uint8_t *der = malloc(0x8000);
    for (int i = 0; i < n && der; i++) {
        ea_host *h = NULL;
        size_t dl = 0x8000;
        const unsigned char *p = der;
        snprintf(path, sizeof path, "emu:%s/chip-%04d", dir, i + 1);
        if ((rc = ea_host_open(path, NULL, &h, err, sizeof err)) != EA_OK ||
            (rc = ea_host_read_object(h, EA_OBJ_DEVICE_CERT, der, &dl)) != EA_OK)
            die("read the device certificate back", rc, err);
        ea_host_close(h);
        if (!(certs[i] = d2i_X509(NULL, &p, (long)dl)))
            die("parse the device certificate", EA_ERR_MALFORMED, path);
    }
    free(der);
    t0 = now_s();
    for (int i = 0; i < n; i++) {
        ea_manifest_item it = { .unique_id = res[i].unique_id, .device_id = res[i].device_id,
                                .key_id = EA_OBJ_DEVICE_KEY, .cert = certs[i], .chain = chain };
        if ((rc = ea_manifest_add(m, &it, err, sizeof err)) != EA_OK)
            die("ea_manifest_add", rc, err);
    }
    t_sign = now_s() - t0;
    size_t jl = 0, cnt = 0;
    const char *json = ea_manifest_json(m, &jl);
    ea_manifest_verify_opts vo = { .signer = scert, .trusted = trusted };
    t0 = now_s();
    if ((rc = ea_manifest_verify(json, jl, &vo, NULL, NULL, &cnt, err, sizeof err)) != EA_OK || cnt != (size_t)n)
        die("ea_manifest_verify", rc, err);
    double t_verify = now_s() - t0;

    double prov_rate = n / t_prov;
    printf("provisioning, %d devices, in-process emulator, chips in %s:\n", n, base && *base ? base : "/tmp");
    printf("  %-44s %9.0f /s   %7.2f ms each\n", "CA issuance alone (baseline, software CSRs)", issue_rate,
           1e3 / issue_rate);
    printf("  %-44s %9.0f /s   %7.2f ms each   ratio %.3f\n", "chips created (ea_emu_init, not provisioning)",
           n / t_chips, 1e3 * t_chips / n, (n / t_chips) / issue_rate);
    printf("  %-44s %9.0f /s   %7.2f ms each   ratio %.3f   (goal >= 200/s)\n", "devices fully provisioned",
           prov_rate, 1e3 / prov_rate, prov_rate / issue_rate);
    printf("  %-44s %9.0f /s   %7.2f ms each\n", "manifest entries signed (ES256)", n / t_sign, 1e3 * t_sign / n);
    printf("  %-44s %9.0f /s   %7.2f ms each   (%zu bytes)\n", "manifest entries verified (sig + chain)",
           n / t_verify, 1e3 * t_verify / n, jl);

    ea_manifest_free(m);
    sk_X509_free(chain);
    sk_X509_free(trusted);
    for (int i = 0; i < n; i++)
        X509_free(certs[i]);
    free(certs);
    free(res);
    if ((rc = ea_station_close(st)) != EA_OK)
        die("ea_station_close", rc, NULL);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_provision: could not remove %s\n", dir);
    return 0;
}
