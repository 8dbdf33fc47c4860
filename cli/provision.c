/* `edgeauth provision` (the factory station) and `edgeauth onboard`
 * (chips the SE vendor provisioned).
 *
 *   edgeauth [--se URI] provision --ca PKI --device-id ID
 *            (--vendor-ca FILE | --no-attestation) [--registry FILE] [--allow-delete] [--json]
 *   edgeauth provision --batch N --se-dir DIR --ca PKI [--vendor-ca DIR] [--manifest OUT.json]
 *            [--id-prefix dev-] [--registry FILE] [--allow-delete] [--json]
 *   edgeauth onboard --vendor-manifest FILE --vendor-ca FILE --ca PKI [--se-dir DIR | --se URI]
 *            [--registry FILE] [--json]
 *   edgeauth onboard --make-vendor-manifest --se-dir DIR --vendor-ca-dir VDIR --out FILE [--json]
 *
 * The work is done by the library (include/edgeauth/manifest.h); this file
 * reads options and prints. Errors go to stderr as "edgeauth provision:
 * ..."; exit status 0 on success, 1 on failure (for onboard: any chip
 * refused), 2 for a usage error. */
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli/cli.h"
#include "edgeauth/manifest.h"
#include "edgeauth/pki.h"
#include "edgeauth/se05x.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2

/* ---- JSON output ------------------------------------------------------------- */

static void j_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void j_kv(FILE *f, const char *k, const char *v, bool last)
{
    j_string(f, k);
    fputc(':', f);
    if (v)
        j_string(f, v);
    else
        fputs("null", f);
    if (!last)
        fputc(',', f);
}

static void j_kb(FILE *f, const char *k, bool v, bool last)
{
    j_string(f, k);
    fprintf(f, ":%s%s", v ? "true" : "false", last ? "" : ",");
}

static void j_kn(FILE *f, const char *k, double v, bool last)
{
    j_string(f, k);
    fprintf(f, ":%.6g%s", v, last ? "" : ",");
}

__attribute__((format(printf, 3, 4))) static int fail(const char *cmd, bool json, const char *fmt, ...)
{
    char msg[1200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "edgeauth %s: %s\n", cmd, msg);
    if (json) {
        putchar('{');
        j_kb(stdout, "ok", false, false);
        j_kv(stdout, "command", cmd, false);
        j_kv(stdout, "error", msg, true);
        puts("}");
    }
    return EXIT_FAIL;
}

__attribute__((format(printf, 3, 4))) static int usage_error(const char *cmd, const char *usage, const char *fmt,
                                                             ...)
{
    va_list ap;
    fprintf(stderr, "edgeauth %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage);
    return EXIT_USAGE;
}

/* ---- provision ---------------------------------------------------------------- */

static const char provision_usage[] =
    "usage: edgeauth [--se URI] provision --ca PKI --device-id ID (--vendor-ca FILE | --no-attestation)\n"
    "                [--registry FILE] [--allow-delete] [--json]\n"
    "       edgeauth provision --batch N --se-dir DIR --ca PKI [--vendor-ca DIR] [--manifest OUT.json]\n"
    "                [--id-prefix PREFIX] [--registry FILE] [--allow-delete] [--json]\n"
    "       edgeauth provision --verify-manifest FILE --ca PKI [--json]\n";

static void provision_help(void)
{
    printf("%s\n", provision_usage);
    printf("The factory station. For one chip (--se URI, else $EDGEAUTH_SE):\n"
           "  1. generate the device key 0x%08X inside the SE (policy: sign, read of the public half;\n"
           "     delete only with --allow-delete);\n"
           "  2. read its public key with attestation (0x%08X) and check it against the SE vendor CA:\n"
           "     chain, signature, chip id, and origin \"generated inside the chip\";\n"
           "  3. build a CSR signed by the SE key through the edgeauth provider; the CA in PKI issues\n"
           "     the certificate;\n"
           "  4. write the certificate (0x%08X) and the chain (0x%08X intermediate, 0x%08X root)\n"
           "     into the SE, read-only, and read them back;\n"
           "  5. record the device in the registry (default PKI/registry.jsonl).\n"
           "Safe to rerun: a run finishes what an interrupted one left, or reports \"already done\".\n\n"
           "options:\n"
           "  --ca PKI              the OEM CA directory (edgeauth ca init)\n"
           "  --device-id ID        the device id, the certificate's CN\n"
           "  --se URI              the secure element (also accepted before `provision`)\n"
           "  --vendor-ca FILE      the SE vendor CA (PEM) the attestation must chain to; with --batch\n"
           "                        the vendor CA directory the new chips share (default DIR/vendor)\n"
           "  --no-attestation      skip the attestation check (recorded in the CA's audit log)\n"
           "  --registry FILE       the registry (JSON lines) to append to\n"
           "  --allow-delete        the key and certificate objects may be deleted later (re-provisioning)\n"
           "  --batch N             create N emulated chips DIR/chip-0001... and provision each\n"
           "  --se-dir DIR          where the batch's chips live\n"
           "  --manifest FILE       write the batch's signed manifest (JWS entries, ES256)\n"
           "  --id-prefix PREFIX    device ids of the batch: PREFIX0001... (default dev-)\n"
           "  --verify-manifest FILE  check a manifest as the cloud will: signer PKI/manifest.pem,\n"
           "                        chains to PKI/root.pem; lists the entries\n"
           "  --json                one JSON object on stdout\n",
           EA_OBJ_DEVICE_KEY, EA_OBJ_ATTEST_KEY, EA_OBJ_DEVICE_CERT, EA_OBJ_OEM_INTERMEDIATE, EA_OBJ_OEM_ROOT);
}

typedef struct prov_args {
    const char *se, *ca, *device_id, *vendor_ca, *registry, *se_dir, *manifest, *id_prefix, *verify;
    bool no_attestation, allow_delete, json;
    long batch;
} prov_args;

static void print_one(const prov_args *a, const ea_provision_result *r, const char *se, const char *registry)
{
    if (a->json) {
        putchar('{');
        j_kb(stdout, "ok", true, false);
        j_kv(stdout, "command", "provision", false);
        j_kv(stdout, "device_id", r->device_id, false);
        j_kv(stdout, "unique_id", r->unique_id, false);
        j_kv(stdout, "serial", r->serial, false);
        j_kv(stdout, "fingerprint", r->fingerprint, false);
        j_kb(stdout, "attested", !a->no_attestation, false);
        j_kb(stdout, "already_done", r->already_done, false);
        j_kv(stdout, "se", se, false);
        j_kv(stdout, "registry", registry, true);
        puts("}");
        return;
    }
    if (r->already_done) {
        printf("already done: %s is provisioned on chip %s (nothing changed)\n", r->device_id, r->unique_id);
    } else {
        printf("provisioned %s on chip %s\n", r->device_id, r->unique_id);
        printf("  key          0x%08X, generated in the SE, %s\n", EA_OBJ_DEVICE_KEY,
               a->no_attestation ? "NOT attested (--no-attestation, recorded in the audit log)"
                                 : "attestation verified against the SE vendor CA");
        printf("  objects      0x%08X device, 0x%08X intermediate, 0x%08X root (read back)\n",
               EA_OBJ_DEVICE_CERT, EA_OBJ_OEM_INTERMEDIATE, EA_OBJ_OEM_ROOT);
    }
    printf("  certificate  serial %s\n", r->serial);
    printf("  sha256       %s\n", r->fingerprint);
    printf("  registry     %s\n", registry);
}

static int provision_one_cli(const cli_global *g, const prov_args *a)
{
    char err[1200] = "", registry[4200];
    ea_provision_result r;
    ea_provision_opts o = {
        .se_uri = a->se ? a->se : g->se_uri,
        .ca_dir = a->ca,
        .device_id = a->device_id,
        .vendor_ca_pem = a->vendor_ca,
        .no_attestation = a->no_attestation,
        .registry_path = a->registry,
        .allow_delete = a->allow_delete,
    };
    ea_err rc = ea_provision_device(&o, &r, err, sizeof err);

    if (rc != EA_OK)
        return fail("provision", a->json, "%s: %s", a->device_id, err[0] ? err : ea_err_str(rc));
    if (a->registry)
        snprintf(registry, sizeof registry, "%s", a->registry);
    else
        snprintf(registry, sizeof registry, "%s/registry.jsonl", a->ca);
    print_one(a, &r, o.se_uri ? o.se_uri : "(default)", registry);
    return 0;
}

typedef struct bar {
    bool tty, json;
} bar;

static void batch_progress(void *ctx, const ea_batch_progress *p)
{
    const bar *b = ctx;
    if (b->json)
        return;
    if (b->tty) {
        /* A bar on the terminal, redrawn in place on stderr. */
        const unsigned width = 40;
        unsigned fill = (unsigned)(p->done * width / (p->total ? p->total : 1));
        fprintf(stderr, "\r[");
        for (unsigned i = 0; i < width; i++)
            fputc(i < fill ? '#' : '.', stderr);
        fprintf(stderr, "] %zu/%zu %s", p->done, p->total, p->res->device_id);
        if (p->done == p->total)
            fputc('\n', stderr);
        fflush(stderr);
        return;
    }
    printf("%s %s %s %s %s\n", p->res->device_id, p->chip_dir, p->res->unique_id, p->res->serial,
           p->res->already_done ? "already-done" : "provisioned");
}

static int provision_batch_cli(const prov_args *a)
{
    char err[1200] = "";
    bar b = { .tty = isatty(STDERR_FILENO) == 1, .json = a->json };
    ea_batch_result r;
    ea_batch_opts o = {
        .count = (size_t)a->batch,
        .se_dir = a->se_dir,
        .ca_dir = a->ca,
        .vendor_ca_dir = a->vendor_ca,
        .manifest_path = a->manifest,
        .id_prefix = a->id_prefix,
        .registry_path = a->registry,
        .allow_delete = a->allow_delete,
        .progress = batch_progress,
        .progress_ctx = &b,
    };
    ea_err rc = ea_provision_batch(&o, &r, err, sizeof err);

    if (b.tty && !a->json && rc != EA_OK)
        fputc('\n', stderr);
    if (rc != EA_OK)
        return fail("provision", a->json, "batch: %s", err[0] ? err : ea_err_str(rc));
    double rate = r.provision_seconds > 0 ? (double)(r.provisioned + r.already_done) / r.provision_seconds : 0;
    if (a->json) {
        putchar('{');
        j_kb(stdout, "ok", true, false);
        j_kv(stdout, "command", "provision", false);
        j_kn(stdout, "chips", (double)a->batch, false);
        j_kn(stdout, "created", (double)r.created, false);
        j_kn(stdout, "provisioned", (double)r.provisioned, false);
        j_kn(stdout, "already_done", (double)r.already_done, false);
        j_kn(stdout, "create_seconds", r.create_seconds, false);
        j_kn(stdout, "provision_seconds", r.provision_seconds, false);
        j_kn(stdout, "devices_per_second", rate, false);
        j_kv(stdout, "se_dir", a->se_dir, false);
        j_kv(stdout, "manifest", a->manifest, true);
        puts("}");
        return 0;
    }
    printf("%ld chips in %s: %zu created (%.2f s), %zu provisioned, %zu already done (%.2f s, %.0f devices/s)\n",
           a->batch, a->se_dir, r.created, r.create_seconds, r.provisioned, r.already_done, r.provision_seconds,
           rate);
    if (a->manifest)
        printf("manifest %s: %ld signed entries (ES256, signer %s/manifest.pem)\n", a->manifest, a->batch, a->ca);
    return 0;
}

/* --verify-manifest: what the cloud import will check, from the command line. */
typedef struct vm_ctx {
    bool json;
    size_t shown;
    FILE *out; /* --json: the "entries" array being built */
} vm_ctx;

static ea_err vm_entry(void *ctx, const ea_manifest_entry *e)
{
    vm_ctx *v = ctx;
    char serial[64] = "?";
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(e->cert), NULL);
    char *h = bn ? BN_bn2hex(bn) : NULL;
    if (h)
        snprintf(serial, sizeof serial, "%s", h);
    OPENSSL_free(h);
    BN_free(bn);
    if (v->json) {
        if (v->shown)
            fputc(',', v->out);
        fputc('{', v->out);
        j_kv(v->out, "device_id", e->device_id, false);
        j_kv(v->out, "unique_id", e->unique_id, false);
        j_kv(v->out, "serial", serial, false);
        j_kv(v->out, "provisioned", e->timestamp, true);
        fputc('}', v->out);
    } else {
        printf("ok %s %s %s %s\n", e->device_id, e->unique_id, serial, e->timestamp);
    }
    v->shown++;
    return EA_OK;
}

static X509 *pem_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    return x;
}

static int verify_manifest_cli(const prov_args *a)
{
    char path[4200], err[1200] = "";
    X509 *signer, *root;
    STACK_OF(X509) *trusted = sk_X509_new_null();
    FILE *f;
    char *text = NULL;
    size_t len = 0, count = 0;
    vm_ctx v = { .json = a->json };
    int st = EXIT_FAIL;

    snprintf(path, sizeof path, "%s/manifest.pem", a->ca);
    signer = pem_cert(path);
    snprintf(path, sizeof path, "%s/root.pem", a->ca);
    root = pem_cert(path);
    if (!signer || !root || !trusted || !sk_X509_push(trusted, root)) {
        fail("provision", a->json, "cannot read %s/manifest.pem and %s/root.pem", a->ca, a->ca);
        goto out;
    }
    if (!(f = fopen(a->verify, "rb"))) {
        fail("provision", a->json, "cannot read %s", a->verify);
        goto out;
    }
    FILE *m = open_memstream(&text, &len);
    for (int c; m && (c = fgetc(f)) != EOF;)
        fputc(c, m);
    fclose(f);
    if (!m) {
        fail("provision", a->json, "out of memory");
        goto out;
    }
    fclose(m);
    ea_manifest_verify_opts vo = { .signer = signer, .trusted = trusted };
    char *entries = NULL;
    size_t elen = 0;
    if (a->json && !(v.out = open_memstream(&entries, &elen))) {
        fail("provision", true, "out of memory");
        goto out;
    }
    ea_err rc = ea_manifest_verify(text, len, &vo, vm_entry, &v, &count, err, sizeof err);
    if (a->json) {
        fclose(v.out);
        putchar('{');
        j_kb(stdout, "ok", rc == EA_OK, false);
        j_kv(stdout, "command", "provision", false);
        j_kv(stdout, "manifest", a->verify, false);
        printf("\"entries\":[%s],", rc == EA_OK && entries ? entries : "");
        j_kn(stdout, "count", (double)count, false);
        j_kv(stdout, "error", rc == EA_OK ? NULL : (err[0] ? err : ea_err_str(rc)), true);
        puts("}");
        free(entries);
    }
    if (rc != EA_OK) {
        fprintf(stderr, "edgeauth provision: manifest %s refused: %s\n", a->verify, err[0] ? err : ea_err_str(rc));
        goto out;
    }
    if (!a->json)
        printf("manifest %s: %zu entries verified (signer %s/manifest.pem, chains to %s/root.pem)\n", a->verify,
               count, a->ca, a->ca);
    st = 0;
out:
    free(text);
    sk_X509_free(trusted);
    X509_free(signer);
    X509_free(root);
    return st;
}

int cmd_provision(const cli_global *g, int argc, char **argv)
{
    enum { O_CA = 256, O_ID, O_VCA, O_NOATT, O_REG, O_DEL, O_JSON, O_BATCH, O_SEDIR, O_MAN, O_PREFIX, O_SE, O_HELP,
           O_VERIFY };
    static const struct option lo[] = {
        { "ca", required_argument, NULL, O_CA },
        { "device-id", required_argument, NULL, O_ID },
        { "vendor-ca", required_argument, NULL, O_VCA },
        { "no-attestation", no_argument, NULL, O_NOATT },
        { "registry", required_argument, NULL, O_REG },
        { "allow-delete", no_argument, NULL, O_DEL },
        { "json", no_argument, NULL, O_JSON },
        { "batch", required_argument, NULL, O_BATCH },
        { "se-dir", required_argument, NULL, O_SEDIR },
        { "manifest", required_argument, NULL, O_MAN },
        { "id-prefix", required_argument, NULL, O_PREFIX },
        { "se", required_argument, NULL, O_SE },
        { "help", no_argument, NULL, O_HELP },
        { "verify-manifest", required_argument, NULL, O_VERIFY },
        { NULL, 0, NULL, 0 },
    };
    prov_args a = { 0 };
    char *end;
    int o;

    argv[0] = "edgeauth provision";
    optind = 0; /* a fresh scan: main's scan stopped at the subcommand */
    opterr = 1;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case O_CA: a.ca = optarg; break;
        case O_ID: a.device_id = optarg; break;
        case O_VCA: a.vendor_ca = optarg; break;
        case O_NOATT: a.no_attestation = true; break;
        case O_REG: a.registry = optarg; break;
        case O_DEL: a.allow_delete = true; break;
        case O_JSON: a.json = true; break;
        case O_SEDIR: a.se_dir = optarg; break;
        case O_MAN: a.manifest = optarg; break;
        case O_PREFIX: a.id_prefix = optarg; break;
        case O_SE: a.se = optarg; break;
        case O_VERIFY: a.verify = optarg; break;
        case O_BATCH:
            a.batch = strtol(optarg, &end, 10);
            if (!*optarg || *end || a.batch < 1 || a.batch > 999999)
                return usage_error("provision", provision_usage, "--batch: '%s' is not a number of chips (1..999999)",
                                   optarg);
            break;
        case 'h':
        case O_HELP: provision_help(); return 0;
        default: fprintf(stderr, "%s", provision_usage); return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return usage_error("provision", provision_usage, "unexpected argument '%s'", argv[optind]);
    if (!a.ca || !*a.ca)
        return usage_error("provision", provision_usage, "--ca PKI is required");
    if (a.verify) {
        if (a.batch || a.device_id || a.se_dir)
            return usage_error("provision", provision_usage, "--verify-manifest goes alone (with --ca)");
        return verify_manifest_cli(&a);
    }
    if (a.batch) {
        if (!a.se_dir)
            return usage_error("provision", provision_usage, "--batch needs --se-dir DIR");
        if (a.device_id || a.se || a.no_attestation)
            return usage_error("provision", provision_usage,
                               "--batch makes its own chips and ids: no --device-id, --se or --no-attestation");
        return provision_batch_cli(&a);
    }
    if (a.se_dir || a.manifest || a.id_prefix)
        return usage_error("provision", provision_usage, "--se-dir, --manifest and --id-prefix go with --batch");
    if (!a.device_id || !*a.device_id)
        return usage_error("provision", provision_usage, "--device-id ID is required");
    if (!a.vendor_ca && !a.no_attestation)
        return usage_error("provision", provision_usage,
                           "--vendor-ca FILE is required (the SE vendor's CA; for an emulated chip made by "
                           "edgeauth-se init: DIR/vendor/vendor-ca.pem), or --no-attestation");
    if (a.vendor_ca && a.no_attestation)
        return usage_error("provision", provision_usage, "--vendor-ca and --no-attestation exclude each other");
    return provision_one_cli(g, &a);
}

/* ---- onboard --------------------------------------------------------------------- */

static const char onboard_usage[] =
    "usage: edgeauth onboard --vendor-manifest FILE --vendor-ca FILE --ca PKI [--se-dir DIR | --se URI]\n"
    "                [--registry FILE] [--json]\n"
    "       edgeauth onboard --make-vendor-manifest --se-dir DIR --vendor-ca-dir VDIR --out FILE [--json]\n";

static void onboard_help(void)
{
    printf("%s\n", onboard_usage);
    printf("Accept chips whose identity the SE vendor created (edgeauth-se init --preprovision).\n"
           "The vendor manifest (signed JWS entries, ES256) must verify against the vendor CA; then\n"
           "each chip in --se-dir (or --se) must prove with its attestation (0x%08X, certified by the\n"
           "vendor CA) that its key 0x%08X is the one in the manifest, and its certificate 0x%08X\n"
           "must be the manifest's. Accepted chips go to the registry (source \"manifest\") and to\n"
           "the CA's audit log. Without chips, the manifest's entries are recorded as not checked.\n"
           "Exit status 1 if any chip is refused.\n\n"
           "--make-vendor-manifest plays the vendor: it signs a manifest for the pre-provisioned\n"
           "emulated chips in --se-dir with the vendor CA key in --vendor-ca-dir.\n\n"
           "options:\n"
           "  --vendor-manifest FILE   the manifest the SE vendor shipped\n"
           "  --vendor-ca FILE         the SE vendor CA (PEM): manifest signer and trust anchor\n"
           "  --ca PKI                 the OEM CA directory (audit log, default registry)\n"
           "  --se-dir DIR             the chips to check: DIR/* (or DIR itself)\n"
           "  --se URI                 one chip to check (also accepted before `onboard`)\n"
           "  --registry FILE          the registry (default PKI/registry.jsonl)\n"
           "  --make-vendor-manifest   write a vendor manifest (with --se-dir, --vendor-ca-dir, --out)\n"
           "  --json                   one JSON object on stdout\n",
           EA_OBJ_ATTEST_KEY, EA_OBJ_DEVICE_KEY, EA_OBJ_DEVICE_CERT);
}

typedef struct ob_args {
    const char *manifest, *vendor_ca, *ca, *se_dir, *se, *registry, *vca_dir, *out;
    bool make, json;
    size_t shown;
    FILE *chips; /* --json: the "chips" array being built */
} ob_args;

static void onboard_cb(void *ctx, const ea_onboard_result *r)
{
    ob_args *a = ctx;
    if (a->json) {
        /* collected for the "chips" array of the final object */
        FILE *f = a->chips;
        if (!f)
            return;
        if (a->shown++)
            fputc(',', f);
        fputc('{', f);
        j_kv(f, "chip", r->chip[0] ? r->chip : NULL, false);
        j_kv(f, "device_id", r->device_id[0] ? r->device_id : NULL, false);
        j_kv(f, "unique_id", r->unique_id[0] ? r->unique_id : NULL, false);
        j_kb(f, "accepted", r->accepted, false);
        if (r->accepted) {
            j_kv(f, "serial", r->serial, false);
            j_kv(f, "fingerprint", r->fingerprint, false);
            j_kb(f, "chip_checked", r->chip_checked, false);
            j_kb(f, "already_done", r->already_done, true);
        } else {
            j_kv(f, "reason", r->reason, true);
        }
        fputc('}', f);
        return;
    }
    if (r->accepted)
        printf("accepted %s (chip %s, serial %s)%s%s\n", r->device_id, r->unique_id, r->serial,
               r->chip_checked ? "" : " [manifest only, chip not checked]",
               r->already_done ? " [already registered]" : "");
    else
        printf("refused  %s: %s\n", r->chip[0] ? r->chip : r->unique_id, r->reason);
}

static int make_vendor_manifest(const ob_args *a)
{
    char err[1200] = "";
    size_t n = 0;
    ea_err rc;

    if (!a->se_dir || !a->vca_dir || !a->out)
        return usage_error("onboard", onboard_usage,
                           "--make-vendor-manifest needs --se-dir, --vendor-ca-dir and --out");
    if ((rc = ea_vendor_manifest_make(a->se_dir, a->vca_dir, a->out, &n, err, sizeof err)) != EA_OK)
        return fail("onboard", a->json, "%s", err[0] ? err : ea_err_str(rc));
    if (a->json) {
        putchar('{');
        j_kb(stdout, "ok", true, false);
        j_kv(stdout, "command", "onboard", false);
        j_kv(stdout, "manifest", a->out, false);
        j_kn(stdout, "entries", (double)n, false);
        j_kv(stdout, "left_out", err[0] ? err : NULL, true);
        puts("}");
        return 0;
    }
    printf("vendor manifest %s: %zu signed entries (ES256, signer %s/vendor-ca.pem)\n", a->out, n, a->vca_dir);
    if (err[0])
        printf("left out: %s\n", err);
    return 0;
}

int cmd_onboard(const cli_global *g, int argc, char **argv)
{
    enum { O_MAN = 256, O_VCA, O_CA, O_SEDIR, O_SE, O_REG, O_MAKE, O_VCADIR, O_OUT, O_JSON, O_HELP };
    static const struct option lo[] = {
        { "vendor-manifest", required_argument, NULL, O_MAN },
        { "vendor-ca", required_argument, NULL, O_VCA },
        { "ca", required_argument, NULL, O_CA },
        { "se-dir", required_argument, NULL, O_SEDIR },
        { "se", required_argument, NULL, O_SE },
        { "registry", required_argument, NULL, O_REG },
        { "make-vendor-manifest", no_argument, NULL, O_MAKE },
        { "vendor-ca-dir", required_argument, NULL, O_VCADIR },
        { "out", required_argument, NULL, O_OUT },
        { "json", no_argument, NULL, O_JSON },
        { "help", no_argument, NULL, O_HELP },
        { NULL, 0, NULL, 0 },
    };
    ob_args a = { 0 };
    char err[1200] = "";
    size_t acc = 0, ref = 0;
    int o;

    argv[0] = "edgeauth onboard";
    optind = 0; /* a fresh scan: main's scan stopped at the subcommand */
    opterr = 1;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case O_MAN: a.manifest = optarg; break;
        case O_VCA: a.vendor_ca = optarg; break;
        case O_CA: a.ca = optarg; break;
        case O_SEDIR: a.se_dir = optarg; break;
        case O_SE: a.se = optarg; break;
        case O_REG: a.registry = optarg; break;
        case O_MAKE: a.make = true; break;
        case O_VCADIR: a.vca_dir = optarg; break;
        case O_OUT: a.out = optarg; break;
        case O_JSON: a.json = true; break;
        case 'h':
        case O_HELP: onboard_help(); return 0;
        default: fprintf(stderr, "%s", onboard_usage); return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return usage_error("onboard", onboard_usage, "unexpected argument '%s'", argv[optind]);
    if (a.make)
        return make_vendor_manifest(&a);
    if (!a.manifest || !a.vendor_ca || !a.ca)
        return usage_error("onboard", onboard_usage, "--vendor-manifest, --vendor-ca and --ca are required");
    if (!a.se)
        a.se = g->se_uri;
    if (a.se && a.se_dir)
        return usage_error("onboard", onboard_usage, "--se and --se-dir exclude each other");

    ea_onboard_opts oo = {
        .manifest_path = a.manifest,
        .vendor_ca_pem = a.vendor_ca,
        .se_dir = a.se_dir,
        .se_uri = a.se,
        .ca_dir = a.ca,
        .registry_path = a.registry,
        .cb = onboard_cb,
        .cb_ctx = &a,
    };
    char *chips = NULL;
    size_t chips_len = 0;
    if (a.json && !(a.chips = open_memstream(&chips, &chips_len)))
        return fail("onboard", true, "out of memory");
    ea_err rc = ea_onboard(&oo, &acc, &ref, err, sizeof err);
    if (a.json) {
        fclose(a.chips);
        putchar('{');
        j_kb(stdout, "ok", rc == EA_OK && ref == 0, false);
        j_kv(stdout, "command", "onboard", false);
        printf("\"chips\":[%s],", chips ? chips : "");
        j_kn(stdout, "accepted", (double)acc, false);
        j_kn(stdout, "refused", (double)ref, false);
        j_kv(stdout, "error", rc == EA_OK ? NULL : (err[0] ? err : ea_err_str(rc)), true);
        puts("}");
        free(chips);
    }
    if (rc != EA_OK) {
        fprintf(stderr, "edgeauth onboard: %s\n", err[0] ? err : ea_err_str(rc));
        return EXIT_FAIL;
    }
    if (!a.json)
        printf("%zu accepted, %zu refused\n", acc, ref);
    if (ref)
        fprintf(stderr, "edgeauth onboard: %zu chip%s refused\n", ref, ref == 1 ? "" : "s");
    return ref ? EXIT_FAIL : 0;
}
