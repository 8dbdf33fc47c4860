/* `edgeauth ca ...`: the OEM CA.
 *
 *   edgeauth ca init --dir PKI --org ORG [--ca-key se05x:0xID[?se=URI]] [--device-days N]
 *                    [--device-id-pattern RE] [--crl-days N] [--server-days N]
 *   edgeauth ca issue --dir PKI --csr FILE --out FILE [--device-id ID] [--note TEXT] [--der]
 *   edgeauth ca server-cert --dir PKI --cn NAME [--san DNS:x,IP:y] [--out-key F] [--out-cert F]
 *   edgeauth ca revoke --dir PKI SERIAL|DEVICE-ID     (or --intermediate: needs root.key)
 *   edgeauth ca crl --dir PKI [--days N] [--out FILE]
 *   edgeauth ca audit --dir PKI --verify
 *   edgeauth ca show --dir PKI
 *   edgeauth ca export --dir PKI SERIAL|DEVICE-ID [--out FILE] [--der]
 *
 * Every command takes --json (one JSON object on stdout). Errors go to
 * stderr as "edgeauth ca CMD: <reason>"; exit status 1 for a failure or a
 * refusal, 2 for a usage error. No key material is ever printed. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli/cli.h"
#include "common/util.h"
#include "edgeauth/pki.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define CSR_MAX (64u * 1024u)

enum {
    O_DIR = 1u << 0,
    O_ORG = 1u << 1,
    O_CA_KEY = 1u << 2,
    O_DEVICE_DAYS = 1u << 3,
    O_PATTERN = 1u << 4,
    O_CRL_DAYS = 1u << 5,
    O_SERVER_DAYS = 1u << 6,
    O_CSR = 1u << 7,
    O_OUT = 1u << 8,
    O_DEVICE_ID = 1u << 9,
    O_NOTE = 1u << 10,
    O_DER = 1u << 11,
    O_CN = 1u << 12,
    O_SAN = 1u << 13,
    O_OUT_KEY = 1u << 14,
    O_OUT_CERT = 1u << 15,
    O_INTERMEDIATE = 1u << 16,
    O_DAYS = 1u << 17,
    O_VERIFY = 1u << 18,
};
#define OPT_CODE0 256

static const struct opt_def {
    const char *name;
    int has_arg;
    const char *arg;
    const char *help;
} opt_defs[] = { /* index i has bit 1u << i */
    { "dir", required_argument, "PKI", "the CA directory" },
    { "org", required_argument, "ORG", "organisation (O=) of the CAs and of every certificate" },
    { "ca-key", required_argument, "URI", "se05x:0xID[?se=URI]: the intermediate's key in a secure element" },
    { "device-days", required_argument, "N", "device certificate validity (default 0: 99991231235959Z)" },
    { "device-id-pattern", required_argument, "RE", "POSIX extended regex for device ids" },
    { "crl-days", required_argument, "N", "CRL nextUpdate in days (default 30)" },
    { "server-days", required_argument, "N", "server certificate validity (default 825)" },
    { "csr", required_argument, "FILE", "PKCS#10 request, PEM or DER" },
    { "out", required_argument, "FILE", "where to write the result" },
    { "device-id", required_argument, "ID", "the CSR's CN must be this id" },
    { "note", required_argument, "TEXT", "a note for the audit line" },
    { "der", no_argument, NULL, "write DER instead of PEM" },
    { "cn", required_argument, "NAME", "the server's CN" },
    { "san", required_argument, "LIST", "DNS:name,IP:addr,... (default DNS:<cn>)" },
    { "out-key", required_argument, "FILE", "server key (default <cn>.key, mode 0600)" },
    { "out-cert", required_argument, "FILE", "server certificate (default <cn>.pem)" },
    { "intermediate", no_argument, NULL, "revoke the intermediate CA itself (root's CRL; needs root.key)" },
    { "days", required_argument, "N", "nextUpdate of this CRL in days (default: the CA's crl_days)" },
    { "verify", no_argument, NULL, "check the hash chain of the audit log" },
};

typedef struct ca_args {
    unsigned seen;
    const char *dir, *org, *ca_key, *pattern, *csr, *out, *device_id, *note, *cn, *san, *out_key, *out_cert;
    unsigned device_days, crl_days, server_days, days;
    const char *positional;
    bool json;
} ca_args;

typedef struct ca_cmd ca_cmd;
typedef int ca_fn(const cli_global *g, const ca_cmd *cmd, ca_args *a);
static ca_fn ca_init, ca_issue, ca_server, ca_revoke, ca_crl, ca_audit, ca_show, ca_export;

struct ca_cmd {
    const char *name;
    ca_fn *fn;
    unsigned opts, need;
    bool positional;
    const char *usage;
    const char *desc;
};

static const ca_cmd ca_cmds[] = {
    { "init", ca_init, O_DIR | O_ORG | O_CA_KEY | O_DEVICE_DAYS | O_PATTERN | O_CRL_DAYS | O_SERVER_DAYS,
      O_DIR | O_ORG, false,
      "init --dir PKI --org ORG [--ca-key se05x:0xID[?se=URI]] [--device-days N]\n"
      "          [--device-id-pattern RE] [--crl-days N] [--server-days N]",
      "create a root CA (P-384) and an OEM intermediate (P-256) in a new directory" },
    { "issue", ca_issue, O_DIR | O_CSR | O_OUT | O_DEVICE_ID | O_NOTE | O_DER, O_DIR | O_CSR | O_OUT, false,
      "issue --dir PKI --csr FILE --out FILE [--device-id ID] [--note TEXT] [--der]",
      "issue a device certificate for a CSR under the fixed device profile" },
    { "server-cert", ca_server, O_DIR | O_CN | O_SAN | O_OUT_KEY | O_OUT_CERT, O_DIR | O_CN, false,
      "server-cert --dir PKI --cn NAME [--san DNS:x,IP:y] [--out-key F] [--out-cert F]",
      "a new P-256 key and a server certificate (EKU serverAuth) for the cloud" },
    { "revoke", ca_revoke, O_DIR | O_INTERMEDIATE, O_DIR, true, "revoke --dir PKI SERIAL|DEVICE-ID | --intermediate",
      "revoke a certificate (and write a fresh CRL)" },
    { "crl", ca_crl, O_DIR | O_DAYS | O_OUT, O_DIR, false, "crl --dir PKI [--days N] [--out FILE]",
      "write a fresh CRL to PKI/crl.pem (and FILE)" },
    { "audit", ca_audit, O_DIR | O_VERIFY, O_DIR, false, "audit --dir PKI [--verify]",
      "check the audit log's hash chain (--verify), or print the log" },
    { "show", ca_show, O_DIR, O_DIR, false, "show --dir PKI", "a summary of the CA" },
    { "export", ca_export, O_DIR | O_OUT | O_DER, O_DIR, true, "export --dir PKI SERIAL|DEVICE-ID [--out FILE] [--der]",
      "an issued certificate, by serial or active device id (PEM on stdout by default)" },
};

static void ca_usage(FILE *f)
{
    fprintf(f, "usage: edgeauth ca <command> [options] [--json]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof ca_cmds / sizeof ca_cmds[0]; i++)
        fprintf(f, "  %-12s %s\n", ca_cmds[i].name, ca_cmds[i].desc);
    fprintf(f, "\nedgeauth ca COMMAND --help shows the options of COMMAND.\n");
}

static void cmd_usage(FILE *f, const ca_cmd *c)
{
    fprintf(f, "usage: edgeauth ca %s [--json]\n%s\n\noptions:\n", c->usage, c->desc);
    for (size_t i = 0; i < sizeof opt_defs / sizeof opt_defs[0]; i++) {
        if (!(c->opts & (1u << i)))
            continue;
        char left[48];
        snprintf(left, sizeof left, "--%s%s%s", opt_defs[i].name, opt_defs[i].arg ? " " : "",
                 opt_defs[i].arg ? opt_defs[i].arg : "");
        fprintf(f, "  %-26s %s\n", left, opt_defs[i].help);
    }
    fprintf(f, "  %-26s %s\n", "--json", "one JSON object on stdout");
}

static bool parse_uint(const char *s, unsigned max, unsigned *out)
{
    char *end;
    unsigned long v;
    if (!s || !*s || *s == '-')
        return false;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = (unsigned)v;
    return true;
}

/* 0 = go on; >0 = exit status; <0 = done (help printed). */
static int parse_args(const ca_cmd *c, int argc, char **argv, ca_args *a)
{
    struct option lo[sizeof opt_defs / sizeof opt_defs[0] + 3];
    size_t n = 0;
    int o;

    for (size_t i = 0; i < sizeof opt_defs / sizeof opt_defs[0]; i++)
        if (c->opts & (1u << i))
            lo[n++] = (struct option){ opt_defs[i].name, opt_defs[i].has_arg, NULL, OPT_CODE0 + (int)i };
    lo[n++] = (struct option){ "json", no_argument, NULL, 'j' };
    lo[n++] = (struct option){ "help", no_argument, NULL, 'h' };
    lo[n] = (struct option){ NULL, 0, NULL, 0 };

    optind = 1;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (o == 'h') {
            cmd_usage(stdout, c);
            return -1;
        }
        if (o == 'j') {
            a->json = true;
            continue;
        }
        if (o < OPT_CODE0) {
            cmd_usage(stderr, c);
            return EXIT_USAGE;
        }
        unsigned bit = 1u << (o - OPT_CODE0);
        const char *name = opt_defs[o - OPT_CODE0].name;
        a->seen |= bit;
        bool ok = true;
        switch (bit) {
        case O_DIR: a->dir = optarg; break;
        case O_ORG: a->org = optarg; break;
        case O_CA_KEY: a->ca_key = optarg; break;
        case O_PATTERN: a->pattern = optarg; break;
        case O_CSR: a->csr = optarg; break;
        case O_OUT: a->out = optarg; break;
        case O_DEVICE_ID: a->device_id = optarg; break;
        case O_NOTE: a->note = optarg; break;
        case O_CN: a->cn = optarg; break;
        case O_SAN: a->san = optarg; break;
        case O_OUT_KEY: a->out_key = optarg; break;
        case O_OUT_CERT: a->out_cert = optarg; break;
        case O_DEVICE_DAYS: ok = parse_uint(optarg, 36500, &a->device_days); break;
        case O_SERVER_DAYS: ok = parse_uint(optarg, 36500, &a->server_days) && a->server_days > 0; break;
        case O_CRL_DAYS: ok = parse_uint(optarg, 3650, &a->crl_days) && a->crl_days > 0; break;
        case O_DAYS: ok = parse_uint(optarg, 3650, &a->days) && a->days > 0; break;
        default: break;
        }
        if (!ok) {
            fprintf(stderr, "%s: --%s: expected a number of days (1-36500, device-days from 0)\n", argv[0], name);
            return EXIT_USAGE;
        }
        if (optarg && !*optarg) {
            fprintf(stderr, "%s: --%s needs a value\n", argv[0], name);
            return EXIT_USAGE;
        }
    }
    if (c->positional && optind < argc)
        a->positional = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
        return EXIT_USAGE;
    }
    unsigned missing = c->need & ~a->seen;
    for (size_t i = 0; missing && i < sizeof opt_defs / sizeof opt_defs[0]; i++)
        if (missing & (1u << i)) {
            fprintf(stderr, "%s: --%s is required\n", argv[0], opt_defs[i].name);
            cmd_usage(stderr, c);
            return EXIT_USAGE;
        }
    return 0;
}

/* ---- output helpers ----------------------------------------------------------- */

static void j_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void j_kv(FILE *f, bool *first, const char *k, const char *v)
{
    fputs(*first ? "{" : ",", f);
    *first = false;
    j_str(f, k);
    fputc(':', f);
    j_str(f, v);
}

static void j_kn(FILE *f, bool *first, const char *k, unsigned long long v)
{
    fputs(*first ? "{" : ",", f);
    *first = false;
    j_str(f, k);
    fprintf(f, ":%llu", v);
}

static void j_end(FILE *f, bool first)
{
    fputs(first ? "{}\n" : "}\n", f);
}

static void fail(const ca_cmd *c, const char *what, const char *err, ea_err rc)
{
    fprintf(stderr, "edgeauth ca %s: %s%s%s\n", c->name, what ? what : "", what && err && *err ? ": " : "",
            err && *err ? err : (what ? "" : ea_err_str(rc)));
}

static void serial_of(X509 *x, char *out, size_t cap)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    snprintf(out, cap, "%s", hex ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
}

static void sha256_of(X509 *x, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (X509_digest(x, EVP_sha256(), md, &len) == 1 && len == 32)
        ea_hex_encode(md, 32, out);
    else
        snprintf(out, 65, "?");
}

static void time_text(const ASN1_TIME *t, char *out, size_t cap)
{
    struct tm tm;
    if (t && ASN1_TIME_to_tm(t, &tm))
        strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else
        snprintf(out, cap, "?");
}

static void name_text(X509_NAME *n, char *out, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    int len;
    out[0] = '\0';
    if (b && X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0 &&
        (len = BIO_read(b, out, (int)cap - 1)) > 0)
        out[len] = '\0';
    BIO_free(b);
}

static int open_ca(const ca_cmd *c, const ca_args *a, ea_ca **ca)
{
    char err[512] = "";
    ea_err rc = ea_ca_open(a->dir, ca, err, sizeof err);
    if (rc != EA_OK) {
        fail(c, "cannot open the CA", err, rc);
        return EXIT_FAIL;
    }
    return 0;
}

/* ---- commands ------------------------------------------------------------------ */

static int ca_init(const cli_global *g, const ca_cmd *c, ca_args *a)
{
    char err[512] = "", key_uri[1024], sr[64], si[64], fr[65], fi[65], subj[256];
    ea_ca_init_opts o = {
        .org = a->org,
        .device_days = a->device_days,
        .device_id_pattern = a->pattern,
        .crl_days = a->crl_days,
        .server_days = a->server_days,
    };
    ea_ca *ca = NULL;
    ea_err rc;

    if (a->ca_key) {
        /* `edgeauth --se URI ca init --ca-key se05x:0xID`: the global SE
         * applies when the key URI names none. */
        if (g->se_uri && !strchr(a->ca_key, '?'))
            snprintf(key_uri, sizeof key_uri, "%s?se=%s", a->ca_key, g->se_uri);
        else
            snprintf(key_uri, sizeof key_uri, "%s", a->ca_key);
        o.ca_key_uri = key_uri;
    }
    if ((rc = ea_ca_init(a->dir, &o, err, sizeof err)) != EA_OK) {
        fail(c, NULL, err, rc);
        return EXIT_FAIL;
    }
    if (open_ca(c, a, &ca))
        return EXIT_FAIL;
    ea_ca_info info;
    ea_ca_get_info(ca, &info);
    serial_of(ea_ca_root(ca), sr, sizeof sr);
    serial_of(ea_ca_intermediate(ca), si, sizeof si);
    sha256_of(ea_ca_root(ca), fr);
    sha256_of(ea_ca_intermediate(ca), fi);
    if (a->json) {
        bool first = true;
        j_kv(stdout, &first, "dir", a->dir);
        j_kv(stdout, &first, "org", ea_ca_org(ca));
        j_kv(stdout, &first, "root_serial", sr);
        j_kv(stdout, &first, "root_sha256", fr);
        j_kv(stdout, &first, "intermediate_serial", si);
        j_kv(stdout, &first, "intermediate_sha256", fi);
        j_kv(stdout, &first, "intermediate_key", info.intermediate_key);
        j_kv(stdout, &first, "device_id_pattern", info.device_id_pattern);
        j_kn(stdout, &first, "device_days", info.device_days);
        j_end(stdout, first);
    } else {
        name_text(X509_get_subject_name(ea_ca_root(ca)), subj, sizeof subj);
        printf("created the CA in %s\n", a->dir);
        printf("  root          %s (P-384, serial %s)\n", subj, sr);
        printf("                sha256 %s\n", fr);
        name_text(X509_get_subject_name(ea_ca_intermediate(ca)), subj, sizeof subj);
        printf("  intermediate  %s (P-256, pathlen 0, names under O=%s, serial %s)\n", subj, ea_ca_org(ca), si);
        printf("                sha256 %s\n", fi);
        printf("                key: %s\n", strcmp(info.intermediate_key, "file") ? info.intermediate_key
                                                                                  : "intermediate.key (0600)");
        printf("  manifests     manifest.key / manifest.pem (signed by the intermediate)\n");
        printf("  devices       CN matching %s, %s\n", info.device_id_pattern,
               info.device_days ? "validity from device_days" : "notAfter 99991231235959Z");
        printf("  root.key is needed again only to revoke the intermediate: keep it offline.\n");
    }
    ea_ca_close(ca);
    return 0;
}

static int ca_issue(const cli_global *g, const ca_cmd *c, ca_args *a)
{
    char err[512] = "", serial[64], fp[65], na[32], subj[256];
    uint8_t *csr = NULL;
    size_t csr_len = 0;
    ea_ca *ca = NULL;
    X509 *x = NULL;
    BIO *b = NULL;
    ea_err rc;
    int st = EXIT_FAIL;
    (void)g;

    if ((rc = ea_file_read(a->csr, CSR_MAX, &csr, &csr_len)) != EA_OK) {
        fprintf(stderr, "edgeauth ca issue: cannot read %s: %s\n", a->csr,
                rc == EA_ERR_FULL ? "larger than 64 KiB" : ea_err_str(rc));
        return EXIT_FAIL;
    }
    if (open_ca(c, a, &ca))
        goto out;
    if ((rc = ea_ca_issue_device(ca, csr, csr_len, a->device_id, a->note, &x, err, sizeof err)) != EA_OK) {
        fail(c, NULL, err, rc);
        goto out;
    }
    if (!(b = BIO_new_file(a->out, "wb")) || (a->seen & O_DER ? i2d_X509_bio(b, x) : PEM_write_bio_X509(b, x)) != 1 ||
        BIO_flush(b) != 1) {
        /* The CA has recorded it: the certificate is in PKI/issued. */
        serial_of(x, serial, sizeof serial);
        fprintf(stderr, "edgeauth ca issue: cannot write %s (the certificate is issued: %s/issued/%s.der)\n", a->out,
                a->dir, serial);
        goto out;
    }
    serial_of(x, serial, sizeof serial);
    sha256_of(x, fp);
    time_text(X509_get0_notAfter(x), na, sizeof na);
    name_text(X509_get_subject_name(x), subj, sizeof subj);
    if (a->json) {
        bool first = true;
        j_kv(stdout, &first, "subject", subj);
        j_kv(stdout, &first, "serial", serial);
        j_kv(stdout, &first, "not_after", na);
        j_kv(stdout, &first, "sha256", fp);
        j_kv(stdout, &first, "out", a->out);
        j_end(stdout, first);
    } else {
        printf("issued %s\n  serial %s, not after %s\n  sha256 %s\n  written to %s\n", subj, serial, na, fp, a->out);
    }
    st = 0;
out:
    BIO_free(b);
    X509_free(x);
    ea_ca_close(ca);
    free(csr);
    return st;
}

static int ca_server(const cli_global *g, const ca_cmd *c, ca_args *a)
{
    char err[512] = "", key_path[PATH_MAX], cert_path[PATH_MAX], serial[64], fp[65], na[32];
    ea_ca *ca = NULL;
    X509 *x = NULL;
    ea_err rc;
    int st = EXIT_FAIL;
    (void)g;

    snprintf(key_path, sizeof key_path, "%s", a->out_key ? a->out_key : "");
    snprintf(cert_path, sizeof cert_path, "%s", a->out_cert ? a->out_cert : "");
    if (!a->out_key)
        snprintf(key_path, sizeof key_path, "%s.key", a->cn);
    if (!a->out_cert)
        snprintf(cert_path, sizeof cert_path, "%s.pem", a->cn);
    if (open_ca(c, a, &ca))
        return EXIT_FAIL;
    if ((rc = ea_ca_issue_server(ca, a->cn, a->san, key_path, cert_path, err, sizeof err)) != EA_OK) {
        fail(c, NULL, err, rc);
        goto out;
    }
    BIO *b = BIO_new_file(cert_path, "rb");
    x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!x) {
        fprintf(stderr, "edgeauth ca server-cert: cannot read back %s\n", cert_path);
        goto out;
    }
    serial_of(x, serial, sizeof serial);
    sha256_of(x, fp);
    time_text(X509_get0_notAfter(x), na, sizeof na);
    if (a->json) {
        bool first = true;
        j_kv(stdout, &first, "cn", a->cn);
        j_kv(stdout, &first, "san", a->san ? a->san : "");
        j_kv(stdout, &first, "serial", serial);
        j_kv(stdout, &first, "not_after", na);
        j_kv(stdout, &first, "sha256", fp);
        j_kv(stdout, &first, "key", key_path);
        j_kv(stdout, &first, "cert", cert_path);
        j_end(stdout, first);
    } else {
        printf("server certificate for %s (EKU serverAuth)\n  serial %s, not after %s\n  sha256 %s\n"
               "  key %s (0600), certificate %s\n",
               a->cn, serial, na, fp, key_path, cert_path);
    }
    st = 0;
out:
    X509_free(x);
    ea_ca_close(ca);
    return st;
}

static int ca_revoke(const cli_global *g, const ca_cmd *c, ca_args *a)
{
    char err[512] = "", serial[64];
    ea_ca *ca = NULL;
    ea_err rc;
    int st = EXIT_FAIL;
    bool inter = (a->seen & O_INTERMEDIATE) != 0;
    (void)g;

    if (inter == (a->positional != NULL)) {
        fprintf(stderr, "edgeauth ca revoke: give a SERIAL or DEVICE-ID, or --intermediate\n");
        cmd_usage(stderr, c);
        return EXIT_USAGE;
    }
    if (open_ca(c, a, &ca))
        return EXIT_FAIL;
    if (inter) {
        serial_of(ea_ca_intermediate(ca), serial, sizeof serial);
        a->positional = serial;
    }
    if ((rc = ea_ca_revoke(ca, a->positional, err, sizeof err)) != EA_OK) {
        fail(c, NULL, err, rc);
        goto out;
    }
    if (a->json) {
        bool first = true;
        j_kv(stdout, &first, "revoked", a->positional);
        j_kv(stdout, &first, "crl", "crl.pem");
        j_end(stdout, first);
    } else {
        printf("revoked %s%s; %s/crl.pem rewritten\n", inter ? "the intermediate, serial " : "", a->positional,
               a->dir);
        if (inter)
            printf("the CA will issue no more certificates: create a new intermediate\n");
    }
    st = 0;
out:
    ea_ca_close(ca);
    return st;
}

static int ca_crl(const cli_global *g, const ca_cmd *c, ca_args *a)
{
    char err[512] = "", nu[32];
    ea_ca *ca = NULL;
    X509_CRL *crl = NULL;
    ea_err rc;
    int st = EXIT_FAIL;
    (void)g;

    if (open_ca(c, a, &ca))
        return EXIT_FAIL;
    if (a->days)
        ea_ca_set_crl_days(ca, a->days);
    if ((rc = ea_ca_crl(ca, &crl, err, sizeof err)) != EA_OK) {
        fail(c, NULL, err, rc);
        goto out;
    }
    if (a->out) {
        BIO *b = BIO_new_file(a->out, "wb");
        bool ok = b && PEM_write_bio_X509_CRL(b, crl) == 1 && BIO_flush(b) == 1;
        BIO_free(b);
        if (!ok) {
            fprintf(stderr, "edgeauth ca crl: cannot write %s\n", a->out);
            goto out;
        }
    }
    int n = sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl));
    time_text(X509_CRL_get0_nextUpdate(crl), nu, sizeof nu);
    if (a->json) {
        bool first = true;
        j_kv(stdout, &first, "crl", "crl.pem");
        j_kn(stdout, &first, "revoked", n > 0 ? (unsigned)n : 0);
        j_kv(stdout, &first, "next_update", nu);
        j_end(stdout, first);
    } else {
        printf("wrote %s/crl.pem: %d revoked, next update %s\n", a->dir, n > 0 ? n : 0, nu);
    }
    st = 0;
out:
    X509_CRL_free(crl);
    ea_ca_close(ca);
    return st;
}

static int ca_audit(const cli_global *g, const ca_cmd *c, ca_args *a)
{
    char err[512] = "", path[PATH_MAX];
    size_t lines = 0;
    ea_err rc;
    (void)g;

    if (!(a->seen & O_VERIFY)) {
        /* Print the log as it is. */
        uint8_t *buf = NULL;
        size_t len = 0;
        snprintf(path, sizeof path, "%s/audit.log", a->dir);
        if ((rc = ea_file_read(path, 1u << 30, &buf, &len)) != EA_OK) {
            fprintf(stderr, "edgeauth ca audit: cannot read %s: %s\n", path, ea_err_str(rc));
            return EXIT_FAIL;
        }
        fwrite(buf, 1, len, stdout);
        free(buf);
        return 0;
    }
    rc = ea_ca_audit_verify(a->dir, &lines, err, sizeof err);
    if (a->json) {
        bool first = true;
        j_kv(stdout, &first, "result", rc == EA_OK ? "ok" : "bad");
        j_kn(stdout, &first, "lines", lines);
        if (rc != EA_OK)
            j_kv(stdout, &first, "error", err);
        j_end(stdout, first);
    }
    if (rc != EA_OK) {
        fail(c, NULL, err, rc);
        return EXIT_FAIL;
    }
    if (!a->json)
        printf("audit log OK: %zu lines, hash chain intact, end matches audit.head\n", lines);
    return 0;
}

static int ca_show(const cli_global *g, const ca_cmd *c, ca_args *a)
{
    char subj[256], fr[65], fi[65], ra[32], ia[32];
    ea_ca *ca = NULL;
    ea_ca_info info;
    (void)g;

    if (open_ca(c, a, &ca))
        return EXIT_FAIL;
    ea_ca_get_info(ca, &info);
    sha256_of(ea_ca_root(ca), fr);
    sha256_of(ea_ca_intermediate(ca), fi);
    time_text(X509_get0_notAfter(ea_ca_root(ca)), ra, sizeof ra);
    time_text(X509_get0_notAfter(ea_ca_intermediate(ca)), ia, sizeof ia);
    if (a->json) {
        bool first = true;
        j_kv(stdout, &first, "org", ea_ca_org(ca));
        j_kv(stdout, &first, "root_sha256", fr);
        j_kv(stdout, &first, "root_not_after", ra);
        j_kv(stdout, &first, "intermediate_sha256", fi);
        j_kv(stdout, &first, "intermediate_not_after", ia);
        j_kv(stdout, &first, "intermediate_key", info.intermediate_key);
        j_kv(stdout, &first, "intermediate_status", info.intermediate_revoked ? "revoked" : "valid");
        j_kv(stdout, &first, "device_id_pattern", info.device_id_pattern);
        j_kn(stdout, &first, "device_days", info.device_days);
        j_kn(stdout, &first, "crl_days", info.crl_days);
        j_kn(stdout, &first, "devices_active", info.devices_active);
        j_kn(stdout, &first, "devices_revoked", info.devices_revoked);
        j_kn(stdout, &first, "server_certs", info.server_certs);
        j_kn(stdout, &first, "audit_lines", info.audit_lines);
        j_end(stdout, first);
    } else {
        printf("CA %s (O=%s)\n", a->dir, ea_ca_org(ca));
        name_text(X509_get_subject_name(ea_ca_root(ca)), subj, sizeof subj);
        printf("  root          %s, until %s\n                sha256 %s\n", subj, ra, fr);
        name_text(X509_get_subject_name(ea_ca_intermediate(ca)), subj, sizeof subj);
        printf("  intermediate  %s, until %s%s\n                sha256 %s\n                key: %s\n", subj, ia,
               info.intermediate_revoked ? " (REVOKED)" : "", fi, info.intermediate_key);
        printf("  device ids    %s\n", info.device_id_pattern);
        if (info.device_days)
            printf("  device certs  %u days\n", info.device_days);
        else
            printf("  device certs  no expiry (99991231235959Z)\n");
        printf("  issued        %zu active, %zu revoked devices; %zu server certificates\n", info.devices_active,
               info.devices_revoked, info.server_certs);
        printf("  CRL           next update every %u days (crl.pem)\n", info.crl_days);
        printf("  audit log     %llu lines\n", (unsigned long long)info.audit_lines);
    }
    ea_ca_close(ca);
    return 0;
}

static int ca_export(const cli_global *g, const ca_cmd *c, ca_args *a)
{
    ea_ca *ca = NULL;
    X509 *x = NULL;
    BIO *b = NULL;
    ea_err rc;
    int st = EXIT_FAIL;
    (void)g;

    if (!a->positional) {
        fprintf(stderr, "edgeauth ca export: give a SERIAL or DEVICE-ID\n");
        cmd_usage(stderr, c);
        return EXIT_USAGE;
    }
    if (open_ca(c, a, &ca))
        return EXIT_FAIL;
    if ((rc = ea_ca_find_cert(ca, a->positional, &x)) != EA_OK) {
        fprintf(stderr, "edgeauth ca export: %s: %s\n", a->positional,
                rc == EA_ERR_NOT_FOUND ? "no certificate with that serial or active device id" : ea_err_str(rc));
        goto out;
    }
    b = a->out ? BIO_new_file(a->out, "wb") : BIO_new_fp(stdout, BIO_NOCLOSE);
    if (!b || (a->seen & O_DER ? i2d_X509_bio(b, x) : PEM_write_bio_X509(b, x)) != 1 || BIO_flush(b) != 1) {
        fprintf(stderr, "edgeauth ca export: cannot write %s\n", a->out ? a->out : "stdout");
        goto out;
    }
    st = 0;
out:
    BIO_free(b);
    X509_free(x);
    ea_ca_close(ca);
    return st;
}

int cmd_ca(const cli_global *g, int argc, char **argv)
{
    const ca_cmd *c = NULL;
    ca_args a = { 0 };
    char prog[48];
    int st;

    if (argc < 2) {
        ca_usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        ca_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof ca_cmds / sizeof ca_cmds[0]; i++)
        if (!strcmp(argv[1], ca_cmds[i].name))
            c = &ca_cmds[i];
    if (!c) {
        fprintf(stderr, "edgeauth ca: unknown command '%s'\n", argv[1]);
        ca_usage(stderr);
        return EXIT_USAGE;
    }
    snprintf(prog, sizeof prog, "edgeauth ca %s", c->name);
    argv[1] = prog;
    if ((st = parse_args(c, argc - 1, argv + 1, &a)) != 0)
        return st < 0 ? 0 : st;
    return c->fn(g, c, &a);
}
