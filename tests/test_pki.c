/* The OEM CA and chain verification.
 *
 * - the hierarchy and the device profile, field by field with OpenSSL's
 *   own accessors, and the openssl CLI (openssl verify) as an outside judge;
 * - every CSR refusal with its reason;
 * - serial numbers: random, >= 64 bits, positive, unique over thousands;
 * - the index across reopen, compaction, a torn journal line, the lock;
 * - revocation, CRLs and ea_pki_verify_chain's reasons;
 * - the audit log: an edited, deleted, inserted, moved, truncated line;
 * - the CA key in an (emulated) secure element;
 * - x509-limbo: every supported case of limbo-ec-profile.json agrees. */
#define _GNU_SOURCE /* memmem */
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "edgeauth/emu.h"
#include "edgeauth/pki.h"

#define ORG "Example OEM"

/* ---- helpers ------------------------------------------------------------------ */

static EVP_PKEY *key_ec(const char *curve)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
    assert_non_null(k);
    return k;
}

static EVP_PKEY *key_rsa(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(k);
    return k;
}

/* A CSR for cn (DER, OPENSSL_free it). with_exts asks for CA:TRUE and a SAN,
 * which the CA must ignore. */
static uint8_t *make_csr(EVP_PKEY *k, const char *cn, bool with_exts, size_t *len)
{
    X509_REQ *r = X509_REQ_new();
    X509_NAME *n = X509_NAME_new();
    unsigned char *der = NULL;
    assert_non_null(r);
    if (cn)
        assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0), 1);
    assert_int_equal(X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"Evil Corp", -1, -1, 0),
                     1);
    assert_int_equal(X509_REQ_set_subject_name(r, n), 1);
    assert_int_equal(X509_REQ_set_pubkey(r, k), 1);
    if (with_exts) {
        STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
        X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
        X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, "DNS:evil.example");
        X509_EXTENSION *ku = X509V3_EXT_conf_nid(NULL, NULL, NID_key_usage, "keyCertSign");
        assert_non_null(bc);
        assert_non_null(san);
        assert_non_null(ku);
        sk_X509_EXTENSION_push(exts, bc);
        sk_X509_EXTENSION_push(exts, san);
        sk_X509_EXTENSION_push(exts, ku);
        assert_int_equal(X509_REQ_add_extensions(r, exts), 1);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    assert_true(X509_REQ_sign(r, k, EVP_sha256()) > 0);
    int l = i2d_X509_REQ(r, &der);
    assert_true(l > 0);
    *len = (size_t)l;
    X509_NAME_free(n);
    X509_REQ_free(r);
    return der;
}

static uint8_t *csr_p256(const char *cn, size_t *len)
{
    EVP_PKEY *k = key_ec("P-256");
    uint8_t *der = make_csr(k, cn, false, len);
    EVP_PKEY_free(k);
    return der;
}

typedef struct ca_fix {
    char *tmp;
    char dir[600];
    ea_ca *ca;
} ca_fix;

static void ca_make(ca_fix *f, const ea_ca_init_opts *o)
{
    char err[512] = "";
    ea_ca_init_opts dflt = { .org = ORG };
    f->tmp = tu_tmpdir("pki");
    snprintf(f->dir, sizeof f->dir, "%s/ca", f->tmp);
    ea_err rc = ea_ca_init(f->dir, o ? o : &dflt, err, sizeof err);
    if (rc != EA_OK)
        fail_msg("ea_ca_init: %s: %s", ea_err_str(rc), err);
    rc = ea_ca_open(f->dir, &f->ca, err, sizeof err);
    if (rc != EA_OK)
        fail_msg("ea_ca_open: %s: %s", ea_err_str(rc), err);
}

static void ca_reopen(ca_fix *f)
{
    char err[512] = "";
    ea_ca_close(f->ca);
    f->ca = NULL;
    ea_err rc = ea_ca_open(f->dir, &f->ca, err, sizeof err);
    if (rc != EA_OK)
        fail_msg("ea_ca_open: %s: %s", ea_err_str(rc), err);
}

static void ca_free(ca_fix *f)
{
    ea_ca_close(f->ca);
    tu_rmrf(f->tmp);
    free(f->tmp);
}

static X509 *issue(ea_ca *ca, const char *cn)
{
    char err[512] = "";
    size_t len;
    X509 *x = NULL;
    uint8_t *csr = csr_p256(cn, &len);
    ea_err rc = ea_ca_issue_device(ca, csr, len, NULL, NULL, &x, err, sizeof err);
    OPENSSL_free(csr);
    if (rc != EA_OK)
        fail_msg("issue %s: %s: %s", cn, ea_err_str(rc), err);
    return x;
}

static void write_pem(const char *path, X509 *x)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
}

/* Run the real openssl CLI; returns its exit status, output in out. */
static int run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    size_t n = 0;
    assert_non_null(p);
    while (n + 1 < cap) {
        size_t r = fread(out + n, 1, cap - 1 - n, p);
        if (r == 0)
            break;
        n += r;
    }
    out[n] = '\0';
    char sink[256];
    while (fread(sink, 1, sizeof sink, p) > 0) {
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int openssl_verify(const char *dir, const char *extra, const char *files, char *out, size_t cap)
{
    size_t len = strlen(dir) * 2 + strlen(files) + strlen(extra) + 128;
    char *cmd = malloc(len);
    assert_non_null(cmd);
    snprintf(cmd, len, "openssl verify %s -CAfile %s/root.pem -untrusted %s/intermediate.pem %s 2>&1", extra, dir,
             dir, files);
    int st = run(cmd, out, cap);
    free(cmd);
    return st;
}

static STACK_OF(X509) *stack_of(X509 *a, X509 *b)
{
    STACK_OF(X509) *s = sk_X509_new_null();
    assert_non_null(s);
    if (a)
        sk_X509_push(s, a);
    if (b)
        sk_X509_push(s, b);
    return s;
}

/* Every CRL in dir/crl.pem (the intermediate's, then the root's). */
static STACK_OF(X509_CRL) *load_crls(const char *dir)
{
    char path[700];
    STACK_OF(X509_CRL) *s = sk_X509_CRL_new_null();
    X509_CRL *c;
    snprintf(path, sizeof path, "%s/crl.pem", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while ((c = PEM_read_X509_CRL(f, NULL, NULL, NULL)) != NULL)
        sk_X509_CRL_push(s, c);
    ERR_clear_error();
    fclose(f);
    assert_int_equal(sk_X509_CRL_num(s), 2);
    return s;
}

static ea_verify_reason verify(ea_ca *ca, X509 *leaf, STACK_OF(X509_CRL) *crls, ea_verify_role role,
                               const char *dns, const char *ip, time_t at, char *detail, size_t dlen)
{
    STACK_OF(X509) *trusted = stack_of(ea_ca_root(ca), NULL), *untrusted = stack_of(ea_ca_intermediate(ca), NULL);
    ea_verify_opts o = { .trusted = trusted, .untrusted = untrusted, .crls = crls, .role = role,
                         .peer_dns = dns, .peer_ip = ip, .at = at };
    ea_verify_reason r = EA_VERIFY_OTHER;
    ea_err rc = ea_pki_verify_chain(leaf, &o, &r, detail, dlen);
    assert_true((rc == EA_OK) == (r == EA_VERIFY_OK));
    sk_X509_free(trusted);
    sk_X509_free(untrusted);
    return r;
}

static X509_EXTENSION *ext_of(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    assert_true(i >= 0);
    assert_true(X509_get_ext_by_NID(x, nid, i) < 0); /* exactly once */
    return X509_get_ext(x, i);
}

static bool is_curve(X509 *x, const char *group)
{
    char g[64];
    size_t gl = 0;
    EVP_PKEY *k = X509_get0_pubkey(x);
    return k && EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_utf8_string_param(k, "group", g, sizeof g, &gl) &&
           !strcmp(g, group);
}

static void check_serial(X509 *x)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    assert_non_null(bn);
    assert_false(BN_is_negative(bn));
    assert_true(BN_num_bits(bn) >= 64);
    assert_true(BN_num_bytes(bn) <= 20); /* RFC 5280 §4.1.2.2 */
    BN_free(bn);
}

static void check_ski_aki(X509 *x, X509 *issuer)
{
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(x), *iski = X509_get0_subject_key_id(issuer);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    const ASN1_BIT_STRING *pk = X509_get0_pubkey_bitstr(x);
    assert_non_null(ski);
    assert_non_null(iski);
    assert_non_null(aki);
    assert_false(X509_EXTENSION_get_critical(ext_of(x, NID_subject_key_identifier)));
    assert_false(X509_EXTENSION_get_critical(ext_of(x, NID_authority_key_identifier)));
    /* SKI = SHA-1 of the key (RFC 5280 §4.2.1.2 (1)); AKI = the issuer's SKI. */
    assert_int_equal(EVP_Digest(pk->data, (size_t)pk->length, md, &mdlen, EVP_sha1(), NULL), 1);
    assert_int_equal(ASN1_STRING_length(ski), (int)mdlen);
    assert_memory_equal(ASN1_STRING_get0_data(ski), md, mdlen);
    assert_int_equal(ASN1_OCTET_STRING_cmp(aki, iski), 0);
}

static void check_subject(X509 *x, const char *cn)
{
    X509_NAME *n = X509_get_subject_name(x);
    char buf[128];
    assert_int_equal(X509_NAME_entry_count(n), 2);
    assert_int_equal(OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(n, 0))), NID_organizationName);
    assert_int_equal(OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(n, 1))), NID_commonName);
    assert_true(X509_NAME_get_text_by_NID(n, NID_organizationName, buf, sizeof buf) > 0);
    assert_string_equal(buf, ORG);
    assert_true(X509_NAME_get_text_by_NID(n, NID_commonName, buf, sizeof buf) > 0);
    assert_string_equal(buf, cn);
}

/* ---- the hierarchy and the profile ------------------------------------------------ */

static void test_hierarchy(void **state)
{
    (void)state;
    ca_fix f;
    ca_make(&f, NULL);
    X509 *root = ea_ca_root(f.ca), *inter = ea_ca_intermediate(f.ca);
    X509_EXTENSION *e;
    char path[700];
    struct stat st;

    /* root: P-384, self-signed, CA:TRUE critical, KU keyCertSign|cRLSign critical, SKI */
    assert_true(is_curve(root, "secp384r1"));
    assert_int_equal(X509_get_signature_nid(root), NID_ecdsa_with_SHA384);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(root), X509_get_issuer_name(root)), 0);
    assert_int_equal(X509_verify(root, X509_get0_pubkey(root)), 1);
    assert_true(X509_EXTENSION_get_critical(ext_of(root, NID_basic_constraints)));
    assert_true(X509_get_extension_flags(root) & EXFLAG_CA);
    assert_int_equal(X509_get_pathlen(root), -1);
    assert_true(X509_EXTENSION_get_critical(ext_of(root, NID_key_usage)));
    assert_int_equal(X509_get_key_usage(root), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_non_null(X509_get0_subject_key_id(root));
    check_serial(root);

    /* intermediate: P-256, pathlen 0, name constraints dirName O=<org>, SKI/AKI */
    assert_true(is_curve(inter, "prime256v1"));
    assert_int_equal(X509_get_signature_nid(inter), NID_ecdsa_with_SHA384);
    assert_int_equal(X509_verify(inter, X509_get0_pubkey(root)), 1);
    assert_true(X509_EXTENSION_get_critical(ext_of(inter, NID_basic_constraints)));
    assert_true(X509_get_extension_flags(inter) & EXFLAG_CA);
    assert_int_equal(X509_get_pathlen(inter), 0);
    assert_true(X509_EXTENSION_get_critical(ext_of(inter, NID_key_usage)));
    assert_int_equal(X509_get_key_usage(inter), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    e = ext_of(inter, NID_name_constraints);
    assert_true(X509_EXTENSION_get_critical(e));
    NAME_CONSTRAINTS *nc = X509V3_EXT_d2i(e);
    assert_non_null(nc);
    assert_null(nc->excludedSubtrees);
    assert_int_equal(sk_GENERAL_SUBTREE_num(nc->permittedSubtrees), 1);
    GENERAL_SUBTREE *gs = sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, 0);
    assert_int_equal(gs->base->type, GEN_DIRNAME);
    char org[128];
    assert_int_equal(X509_NAME_entry_count(gs->base->d.directoryName), 1);
    assert_true(X509_NAME_get_text_by_NID(gs->base->d.directoryName, NID_organizationName, org, sizeof org) > 0);
    assert_string_equal(org, ORG);
    NAME_CONSTRAINTS_free(nc);
    check_ski_aki(inter, root);
    check_serial(inter);
    assert_true(ASN1_TIME_compare(X509_get0_notAfter(inter), X509_get0_notAfter(root)) <= 0);

    /* the manifest signer */
    EVP_PKEY *mk = NULL;
    X509 *mc = NULL;
    char err[256];
    assert_int_equal(ea_ca_manifest_signer(f.ca, &mk, &mc, err, sizeof err), EA_OK);
    assert_int_equal(X509_get_key_usage(mc), KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_get_extended_key_usage(mc), XKU_CODE_SIGN);
    assert_false(X509_get_extension_flags(mc) & EXFLAG_CA);
    check_ski_aki(mc, inter);
    check_subject(mc, ORG " Manifest Signing");
    assert_true(is_curve(mc, "prime256v1"));
    EVP_PKEY_free(mk);
    X509_free(mc);

    /* secrets are 0600 */
    const char *keys[] = { "root.key", "intermediate.key", "manifest.key" };
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", f.dir, keys[i]);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
    }

    /* a second init is refused and leaves the CA alone */
    ea_ca_init_opts o = { .org = "Other" };
    ea_ca_close(f.ca);
    f.ca = NULL;
    assert_int_equal(ea_ca_init(f.dir, &o, err, sizeof err), EA_ERR_EXISTS);
    assert_non_null(strstr(err, "already holds a CA"));
    ca_reopen(&f);
    assert_string_equal(ea_ca_org(f.ca), ORG);
    ca_free(&f);
}

static void test_device_profile(void **state)
{
    (void)state;
    ca_fix f;
    char err[512], path[700], out[4096];
    size_t len;
    X509 *x = NULL;
    ca_make(&f, NULL);

    /* The CSR asks for CA:TRUE, keyCertSign, a SAN and O=Evil Corp: none of it may show. */
    EVP_PKEY *k = key_ec("P-256");
    uint8_t *csr = make_csr(k, "dev-0001", true, &len);
    time_t before = time(NULL);
    assert_int_equal(ea_ca_issue_device(f.ca, csr, len, "dev-0001", "test", &x, err, sizeof err), EA_OK);
    OPENSSL_free(csr);

    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    check_serial(x);
    check_subject(x, "dev-0001");
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ea_ca_intermediate(f.ca))), 0);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), k), 1);
    assert_true(is_curve(x, "prime256v1"));
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    assert_int_equal(X509_verify(x, X509_get0_pubkey(ea_ca_intermediate(f.ca))), 1);
    EVP_PKEY_free(k);

    /* exactly five extensions: BC, KU, EKU, SKI, AKI */
    assert_int_equal(X509_get_ext_count(x), 5);
    assert_true(X509_EXTENSION_get_critical(ext_of(x, NID_basic_constraints)));
    assert_false(X509_get_extension_flags(x) & EXFLAG_CA);
    BASIC_CONSTRAINTS *bc = X509V3_EXT_d2i(ext_of(x, NID_basic_constraints));
    assert_non_null(bc);
    assert_false(bc->ca);
    assert_null(bc->pathlen);
    BASIC_CONSTRAINTS_free(bc);
    assert_true(X509_EXTENSION_get_critical(ext_of(x, NID_key_usage)));
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    assert_false(X509_EXTENSION_get_critical(ext_of(x, NID_ext_key_usage)));
    EXTENDED_KEY_USAGE *eku = X509V3_EXT_d2i(ext_of(x, NID_ext_key_usage));
    assert_int_equal(sk_ASN1_OBJECT_num(eku), 1);
    assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 0)), NID_client_auth);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    check_ski_aki(x, ea_ca_intermediate(f.ca));
    assert_true(X509_get_ext_by_NID(x, NID_subject_alt_name, -1) < 0);

    /* validity: from now, no expiry by default (RFC 5280 99991231235959Z) */
    time_t nb = 0, now = time(NULL);
    struct tm tm;
    assert_int_equal(ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm), 1);
    nb = timegm(&tm);
    assert_true(nb >= before - 1 && nb <= now);
    assert_int_equal(ASN1_STRING_type(X509_get0_notAfter(x)), V_ASN1_GENERALIZEDTIME);
    assert_string_equal((const char *)ASN1_STRING_get0_data(X509_get0_notAfter(x)), "99991231235959Z");

    /* the openssl CLI agrees, also with -x509_strict and the client purpose */
    snprintf(path, sizeof path, "%s/dev.pem", f.tmp);
    write_pem(path, x);
    int st = openssl_verify(f.dir, "-x509_strict -purpose sslclient", path, out, sizeof out);
    if (st != 0 || !strstr(out, ": OK"))
        fail_msg("openssl verify: %s", out);
    assert_int_equal(verify(f.ca, x, NULL, EA_VERIFY_CLIENT, NULL, NULL, 0, NULL, 0), EA_VERIFY_OK);
    X509_free(x);

    /* Requests of other shapes take OpenSSL's general parser: the same answer.
     * A compressed point, and a SHA-512 signature. */
    const struct { const char *cn, *point; const EVP_MD *md; } shapes[] = {
        { "dev-0003", "compressed", NULL }, { "dev-0004", "uncompressed", EVP_sha512() } };
    for (size_t i = 0; i < 2; i++) {
        EVP_PKEY *kk = key_ec("P-256");
        X509_REQ *r = X509_REQ_new();
        X509_NAME *n = X509_NAME_new();
        unsigned char *dd = NULL;
        assert_int_equal(EVP_PKEY_set_utf8_string_param(kk, "point-format", shapes[i].point), 1);
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)shapes[i].cn, -1, -1, 0);
        X509_REQ_set_subject_name(r, n);
        X509_REQ_set_pubkey(r, kk);
        assert_true(X509_REQ_sign(r, kk, shapes[i].md ? shapes[i].md : EVP_sha256()) > 0);
        int dl = i2d_X509_REQ(r, &dd);
        assert_true(dl > 0);
        assert_int_equal(ea_ca_issue_device(f.ca, dd, (size_t)dl, NULL, NULL, &x, err, sizeof err), EA_OK);
        assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), kk), 1);
        assert_int_equal(X509_get_ext_count(x), 5);
        check_subject(x, shapes[i].cn);
        assert_int_equal(verify(f.ca, x, NULL, EA_VERIFY_CLIENT, NULL, NULL, 0, NULL, 0), EA_VERIFY_OK);
        /* tampered: the general path refuses it the same way */
        dd[dl - 3] ^= 1;
        X509 *y = NULL;
        X509_NAME_free(n);
        n = NULL;
        assert_int_equal(ea_ca_issue_device(f.ca, dd, (size_t)dl, NULL, NULL, &y, err, sizeof err), EA_ERR_AUTH);
        X509_free(x);
        OPENSSL_free(dd);
        X509_REQ_free(r);
        EVP_PKEY_free(kk);
    }
    ca_free(&f);

    /* device_days: notAfter now + N days */
    ea_ca_init_opts o = { .org = ORG, .device_days = 365 };
    ca_make(&f, &o);
    x = issue(f.ca, "dev-0002");
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
    assert_int_equal(days, 365);
    assert_int_equal(secs, 0);
    X509_free(x);
    ca_free(&f);
}

/* ---- CSR policy ------------------------------------------------------------------- */

static void expect_refusal(ea_ca *ca, const uint8_t *csr, size_t len, const char *want_id, ea_err want,
                           const char *reason)
{
    char err[512] = "";
    X509 *x = (X509 *)1;
    ea_err rc = ea_ca_issue_device(ca, csr, len, want_id, NULL, &x, err, sizeof err);
    if (rc != want || !strstr(err, reason))
        fail_msg("expected %s with '%s', got %s: '%s'", ea_err_str(want), reason, ea_err_str(rc), err);
    assert_null(x);
    print_message("  refused: %s\n", err);
}

static void test_csr_refusals(void **state)
{
    (void)state;
    ca_fix f;
    size_t len;
    uint8_t *csr;
    char err[512];
    X509 *x;
    ea_ca_init_opts o = { .org = ORG, .device_id_pattern = "^dev-[0-9]{4}$" };
    ca_make(&f, &o);

    EVP_PKEY *k = key_ec("P-384");
    csr = make_csr(k, "dev-0001", false, &len);
    expect_refusal(f.ca, csr, len, NULL, EA_ERR_DENIED, "P-384");
    OPENSSL_free(csr);
    EVP_PKEY_free(k);

    k = key_rsa();
    csr = make_csr(k, "dev-0001", false, &len);
    expect_refusal(f.ca, csr, len, NULL, EA_ERR_DENIED, "RSA");
    OPENSSL_free(csr);
    EVP_PKEY_free(k);

    csr = csr_p256("sensor-1", &len);
    expect_refusal(f.ca, csr, len, NULL, EA_ERR_DENIED, "does not match the pattern");
    OPENSSL_free(csr);

    csr = csr_p256(NULL, &len);
    expect_refusal(f.ca, csr, len, NULL, EA_ERR_DENIED, "no CN");
    OPENSSL_free(csr);

    csr = csr_p256("dev-0001", &len);
    expect_refusal(f.ca, csr, len, "dev-0002", EA_ERR_DENIED, "is not the device id");

    /* tampered: one bit of the signature flipped */
    uint8_t *bad = malloc(len);
    memcpy(bad, csr, len);
    bad[len - 3] ^= 0x01;
    expect_refusal(f.ca, bad, len, NULL, EA_ERR_AUTH, "bad CSR signature");
    /* tampered: the CN changed after signing (same length) */
    memcpy(bad, csr, len);
    uint8_t *p = memmem(bad, len, "dev-0001", 8);
    assert_non_null(p);
    p[7] = '9';
    expect_refusal(f.ca, bad, len, NULL, EA_ERR_AUTH, "bad CSR signature");
    /* malformed: truncated, trailing garbage, not a CSR */
    expect_refusal(f.ca, csr, len - 10, NULL, EA_ERR_MALFORMED, "malformed CSR");
    expect_refusal(f.ca, (const uint8_t *)"hello", 5, NULL, EA_ERR_MALFORMED, "malformed CSR");
    free(bad);
    bad = malloc(len + 2);
    memcpy(bad, csr, len);
    bad[len] = 0;
    bad[len + 1] = 0;
    expect_refusal(f.ca, bad, len + 2, NULL, EA_ERR_MALFORMED, "malformed CSR");
    free(bad);

    /* duplicate active id -> refused; after revocation -> allowed again */
    assert_int_equal(ea_ca_issue_device(f.ca, csr, len, "dev-0001", NULL, &x, err, sizeof err), EA_OK);
    X509_free(x);
    assert_true(ea_ca_device_active(f.ca, "dev-0001"));
    uint8_t *csr2 = csr_p256("dev-0001", &len);
    expect_refusal(f.ca, csr2, len, NULL, EA_ERR_DENIED, "already has an active certificate");
    assert_int_equal(ea_ca_revoke(f.ca, "dev-0001", err, sizeof err), EA_OK);
    assert_false(ea_ca_device_active(f.ca, "dev-0001"));
    assert_int_equal(ea_ca_issue_device(f.ca, csr2, len, NULL, NULL, &x, err, sizeof err), EA_OK);
    /* the active one is the new one */
    X509 *cur = NULL;
    assert_int_equal(ea_ca_device_cert(f.ca, "dev-0001", &cur), EA_OK);
    assert_int_equal(X509_cmp(cur, x), 0);
    X509_free(cur);
    X509_free(x);
    OPENSSL_free(csr);
    OPENSSL_free(csr2);
    assert_int_equal(ea_ca_device_cert(f.ca, "dev-0404", &cur), EA_ERR_NOT_FOUND);
    ca_free(&f);

    /* whatever the pattern, some characters never become a device id */
    ea_ca_init_opts loose = { .org = ORG, .device_id_pattern = "^.*$" };
    ca_make(&f, &loose);
    const char *evil[] = { "a/b", "a+b", "a#b", "a b", "a\"b" };
    for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
        csr = csr_p256(evil[i], &len);
        expect_refusal(f.ca, csr, len, NULL, EA_ERR_DENIED, "device id");
        OPENSSL_free(csr);
    }
    ca_free(&f);
}

/* ---- serials, the index, the lock --------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_serials_and_index(void **state)
{
    (void)state;
    enum { N = 4200, SAMPLE = 150 }; /* past the journal's compaction threshold (4096) */
    ca_fix f;
    char cn[32], err[512], out[16384];
    char **serials = calloc(N, sizeof *serials);
    size_t flen = 0, fcap = (size_t)SAMPLE * 700 + 1;
    char *files = malloc(fcap);
    ca_make(&f, NULL);
    files[0] = '\0';

    /* One P-256 key for all (issuance is what is tested, not key generation). */
    EVP_PKEY *k = key_ec("P-256");
    assert_int_equal(ea_ca_batch_begin(f.ca), EA_OK);
    for (int i = 0; i < N; i++) {
        size_t len;
        X509 *x = NULL;
        snprintf(cn, sizeof cn, "s-%05d", i);
        uint8_t *csr = make_csr(k, cn, false, &len);
        ea_err rc = ea_ca_issue_device(f.ca, csr, len, NULL, NULL, &x, err, sizeof err);
        OPENSSL_free(csr);
        if (rc != EA_OK)
            fail_msg("issue %d: %s", i, err);
        check_serial(x);
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        serials[i] = BN_bn2hex(bn);
        BN_free(bn);
        if (i % (N / SAMPLE) == 0 && flen + 700 < fcap) {
            char path[700];
            snprintf(path, sizeof path, "%s/c%05d.pem", f.tmp, i);
            write_pem(path, x);
            flen += (size_t)snprintf(files + flen, fcap - flen, " %s", path);
        }
        X509_free(x);
    }
    assert_int_equal(ea_ca_batch_end(f.ca), EA_OK);
    EVP_PKEY_free(k);

    qsort(serials, N, sizeof *serials, cmp_str);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(serials[i - 1], serials[i]);
    for (int i = 0; i < N; i++)
        OPENSSL_free(serials[i]);
    free(serials);
    print_message("  %d serials, all distinct, all >= 64 bits and positive\n", N);

    /* The openssl CLI accepts a sample of them (one process for all). */
    int st = openssl_verify(f.dir, "-x509_strict", files, out, sizeof out);
    int oks = 0;
    for (char *p = out; (p = strstr(p, ": OK")); p++)
        oks++;
    if (st != 0 || oks < SAMPLE)
        fail_msg("openssl verify (%d OK): %.2000s", oks, out);
    free(files);

    /* The index survives reopening (snapshot + journal, compacted). */
    char path[700];
    struct stat sj;
    snprintf(path, sizeof path, "%s/issued/index.journal", f.dir);
    assert_int_equal(stat(path, &sj), 0);
    assert_true(sj.st_size < 4096); /* compacted at the end of the batch */
    ca_reopen(&f);
    ea_ca_info info;
    ea_ca_get_info(f.ca, &info);
    assert_int_equal(info.devices_active, N);
    assert_true(ea_ca_device_active(f.ca, "s-00000"));
    assert_true(ea_ca_device_active(f.ca, "s-04199"));

    /* A journal line torn by a crash is dropped on open. */
    FILE *j = fopen(path, "a");
    fputs("+ D 4AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA 99991231235959Z torn", j);
    fclose(j);
    ca_reopen(&f);
    ea_ca_get_info(f.ca, &info);
    assert_int_equal(info.devices_active, N);
    assert_false(ea_ca_device_active(f.ca, "torn"));
    /* ... but a complete line that is not a record means damage: refused. */
    ea_ca_close(f.ca);
    f.ca = NULL;
    j = fopen(path, "a");
    fputs("what is this\n", j);
    fclose(j);
    ea_ca *ca2 = NULL;
    assert_int_equal(ea_ca_open(f.dir, &ca2, err, sizeof err), EA_ERR_CORRUPT);
    assert_non_null(strstr(err, "index.journal line"));
    assert_int_equal(truncate(path, sj.st_size), 0);
    ca_reopen(&f);

    /* One process at a time. */
    setenv("EDGEAUTH_CA_LOCK_WAIT_MS", "50", 1);
    assert_int_equal(ea_ca_open(f.dir, &ca2, err, sizeof err), EA_ERR_LOCKED);
    assert_null(ca2);
    assert_non_null(strstr(err, "in use"));
    unsetenv("EDGEAUTH_CA_LOCK_WAIT_MS");
    ca_free(&f);
}

/* ---- revocation, CRL and chain verification ------------------------------------------ */

static X509 *forge(ea_ca *ca, const char *dir, EVP_PKEY *pub, const char *org, const char *cn)
{
    /* A certificate signed with the intermediate's key outside the CA's
     * profile, to see that verification catches what issuance never makes. */
    char path[700];
    snprintf(path, sizeof path, "%s/intermediate.key", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    EVP_PKEY *ik = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(ik);
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)org, -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 0x1234567);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, X509_get_subject_name(ea_ca_intermediate(ca)));
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pub);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ea_ca_intermediate(ca), x, NULL, NULL, 0);
    const char *exts[][2] = { { "basicConstraints", "critical,CA:FALSE" }, { "keyUsage", "critical,digitalSignature" },
                              { "extendedKeyUsage", "clientAuth" }, { "subjectKeyIdentifier", "hash" },
                              { "authorityKeyIdentifier", "keyid:always" } };
    for (size_t i = 0; i < 5; i++) {
        X509_EXTENSION *e = X509V3_EXT_nconf(NULL, &ctx, exts[i][0], exts[i][1]);
        assert_non_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, ik, EVP_sha256()) > 0);
    X509_NAME_free(n);
    EVP_PKEY_free(ik);
    (void)ca;
    return x;
}

static void test_revoke_and_verify(void **state)
{
    (void)state;
    ca_fix f, other;
    char err[512], detail[512], path[700], out[4096];
    ca_make(&f, NULL);
    X509 *a = issue(f.ca, "dev-a"), *b = issue(f.ca, "dev-b");

    /* a CRL with nothing revoked: both fine */
    STACK_OF(X509_CRL) *crls = load_crls(f.dir);
    assert_int_equal(verify(f.ca, a, crls, EA_VERIFY_CLIENT, NULL, NULL, 0, NULL, 0), EA_VERIFY_OK);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);

    /* revoke a by device id, write the CRL */
    assert_int_equal(ea_ca_revoke(f.ca, "dev-a", err, sizeof err), EA_OK);
    assert_int_equal(ea_ca_revoke(f.ca, "dev-a", err, sizeof err), EA_ERR_NOT_FOUND); /* no active cert left */
    X509_CRL *crl = NULL;
    assert_int_equal(ea_ca_crl(f.ca, &crl, err, sizeof err), EA_OK);
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 1);
    X509_REVOKED *rv = NULL;
    assert_int_equal(X509_CRL_get0_by_serial(crl, &rv, X509_get0_serialNumber(a)), 1);
    assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(ea_ca_intermediate(f.ca))), 1);
    X509_CRL_free(crl);
    crls = load_crls(f.dir);
    assert_int_equal(verify(f.ca, a, crls, EA_VERIFY_CLIENT, NULL, NULL, 0, detail, sizeof detail), EA_VERIFY_REVOKED);
    print_message("  revoked: %s\n", detail);
    assert_non_null(strstr(detail, "CN=dev-a"));
    assert_int_equal(verify(f.ca, b, crls, EA_VERIFY_CLIENT, NULL, NULL, 0, NULL, 0), EA_VERIFY_OK);
    /* without CRLs no revocation check */
    assert_int_equal(verify(f.ca, a, NULL, EA_VERIFY_CLIENT, NULL, NULL, 0, NULL, 0), EA_VERIFY_OK);
    /* the openssl CLI reads our crl.pem the same way */
    snprintf(path, sizeof path, "%s/a.pem", f.tmp);
    write_pem(path, a);
    char extra[800];
    snprintf(extra, sizeof extra, "-crl_check_all -CRLfile %s/crl.pem", f.dir);
    assert_int_not_equal(openssl_verify(f.dir, extra, path, out, sizeof out), 0);
    assert_non_null(strstr(out, "revoked"));
    sk_X509_CRL_pop_free(crls, X509_CRL_free);

    /* server certificate: names from the SAN, purpose by role */
    char kp[700], cp[700];
    snprintf(kp, sizeof kp, "%s/cloud.key", f.tmp);
    snprintf(cp, sizeof cp, "%s/cloud.pem", f.tmp);
    assert_int_equal(ea_ca_issue_server(f.ca, "cloud.example.com", "DNS:cloud.example.com,DNS:localhost,IP:127.0.0.1",
                                        kp, cp, err, sizeof err),
                     EA_OK);
    FILE *fp = fopen(cp, "r");
    X509 *srv = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(srv);
    assert_int_equal(X509_get_extended_key_usage(srv), XKU_SSL_SERVER);
    assert_int_equal(X509_get_key_usage(srv), KU_DIGITAL_SIGNATURE);
    check_ski_aki(srv, ea_ca_intermediate(f.ca));
    check_serial(srv);
    struct stat st;
    assert_int_equal(stat(kp, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(openssl_verify(f.dir, "-x509_strict -purpose sslserver -verify_hostname localhost", cp, out,
                                    sizeof out),
                     0);
    assert_int_equal(verify(f.ca, srv, NULL, EA_VERIFY_SERVER, "localhost", NULL, 0, NULL, 0), EA_VERIFY_OK);
    assert_int_equal(verify(f.ca, srv, NULL, EA_VERIFY_SERVER, "cloud.example.com", NULL, 0, NULL, 0), EA_VERIFY_OK);
    assert_int_equal(verify(f.ca, srv, NULL, EA_VERIFY_SERVER, NULL, "127.0.0.1", 0, NULL, 0), EA_VERIFY_OK);
    assert_int_equal(verify(f.ca, srv, NULL, EA_VERIFY_SERVER, "evil.example", NULL, 0, detail, sizeof detail),
                     EA_VERIFY_NAME_MISMATCH);
    assert_int_equal(verify(f.ca, srv, NULL, EA_VERIFY_SERVER, NULL, "10.0.0.1", 0, NULL, 0), EA_VERIFY_NAME_MISMATCH);
    assert_int_equal(verify(f.ca, srv, NULL, EA_VERIFY_CLIENT, NULL, NULL, 0, NULL, 0), EA_VERIFY_BAD_PURPOSE);
    assert_int_equal(verify(f.ca, b, NULL, EA_VERIFY_SERVER, NULL, NULL, 0, NULL, 0), EA_VERIFY_BAD_PURPOSE);
    assert_int_equal(ea_ca_revoke(f.ca, "cloud.example.com", err, sizeof err), EA_ERR_NOT_FOUND); /* not a device */
    char sserial[64];
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(srv), NULL);
    char *hex = BN_bn2hex(bn);
    snprintf(sserial, sizeof sserial, "0x%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    assert_int_equal(ea_ca_revoke(f.ca, sserial, err, sizeof err), EA_OK); /* by serial */
    crls = load_crls(f.dir);
    assert_int_equal(verify(f.ca, srv, crls, EA_VERIFY_SERVER, "localhost", NULL, 0, NULL, 0), EA_VERIFY_REVOKED);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    X509_free(srv);

    /* time */
    assert_int_equal(verify(f.ca, b, NULL, EA_VERIFY_CLIENT, NULL, NULL, 946684800 /* 2000 */, NULL, 0),
                     EA_VERIFY_NOT_YET_VALID);
    assert_int_equal(verify(f.ca, b, NULL, EA_VERIFY_CLIENT, NULL, NULL, 4102444800 /* 2100 */, detail, sizeof detail),
                     EA_VERIFY_EXPIRED); /* the intermediate and root have expired by then */

    /* another CA's root: unknown */
    ca_make(&other, NULL);
    STACK_OF(X509) *tr = stack_of(ea_ca_root(other.ca), NULL), *un = stack_of(ea_ca_intermediate(f.ca), NULL);
    ea_verify_opts o = { .trusted = tr, .untrusted = un, .role = EA_VERIFY_CLIENT };
    ea_verify_reason r;
    assert_int_equal(ea_pki_verify_chain(b, &o, &r, detail, sizeof detail), EA_ERR_AUTH);
    assert_int_equal(r, EA_VERIFY_UNKNOWN_CA);
    print_message("  unknown CA: %s\n", detail);
    /* no intermediate offered: unknown too (a trusted root alone does not do) */
    o.trusted = stack_of(ea_ca_root(f.ca), NULL);
    o.untrusted = NULL;
    assert_int_equal(ea_pki_verify_chain(b, &o, &r, NULL, 0), EA_ERR_AUTH);
    assert_int_equal(r, EA_VERIFY_UNKNOWN_CA);
    /* the intermediate alone as anchor: not a trust anchor (no partial chains) */
    sk_X509_free(o.trusted);
    o.trusted = stack_of(ea_ca_intermediate(f.ca), NULL);
    assert_int_equal(ea_pki_verify_chain(b, &o, &r, NULL, 0), EA_ERR_AUTH);
    assert_int_equal(r, EA_VERIFY_UNKNOWN_CA);
    sk_X509_free(o.trusted);
    sk_X509_free(tr);
    sk_X509_free(un);
    assert_int_equal(ea_pki_verify_chain(b, NULL, &r, NULL, 0), EA_ERR_ARG);
    ca_free(&other);

    /* outside the profile: an RSA key; a name outside O=<org> */
    EVP_PKEY *rsa = key_rsa();
    X509 *bad = forge(f.ca, f.dir, rsa, ORG, "rsa-dev");
    assert_int_equal(verify(f.ca, bad, NULL, EA_VERIFY_CLIENT, NULL, NULL, 0, detail, sizeof detail), EA_VERIFY_POLICY);
    print_message("  policy: %s\n", detail);
    X509_free(bad);
    EVP_PKEY_free(rsa);
    EVP_PKEY *ec = key_ec("P-256");
    bad = forge(f.ca, f.dir, ec, "Other Corp", "dev-x");
    assert_int_equal(verify(f.ca, bad, NULL, EA_VERIFY_CLIENT, NULL, NULL, 0, detail, sizeof detail),
                     EA_VERIFY_NAME_CONSTRAINT);
    print_message("  name constraint: %s\n", detail);
    X509_free(bad);
    EVP_PKEY *p384 = key_ec("P-384");
    bad = forge(f.ca, f.dir, p384, ORG, "dev-384"); /* P-384 is in the verification profile */
    assert_int_equal(verify(f.ca, bad, NULL, EA_VERIFY_CLIENT, NULL, NULL, 0, NULL, 0), EA_VERIFY_OK);
    X509_free(bad);
    EVP_PKEY_free(p384);
    /* a tampered signature */
    bad = X509_dup(b);
    const ASN1_BIT_STRING *sig;
    X509_get0_signature(&sig, NULL, bad);
    ((ASN1_BIT_STRING *)sig)->data[10] ^= 1;
    assert_int_equal(verify(f.ca, bad, NULL, EA_VERIFY_CLIENT, NULL, NULL, 0, NULL, 0), EA_VERIFY_BAD_SIGNATURE);
    X509_free(bad);
    EVP_PKEY_free(ec);

    /* revoking the intermediate (by the root): everything under it is revoked */
    char iserial[64];
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(ea_ca_intermediate(f.ca)), NULL);
    hex = BN_bn2hex(bn);
    snprintf(iserial, sizeof iserial, "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    assert_int_equal(ea_ca_revoke(f.ca, iserial, err, sizeof err), EA_OK);
    crls = load_crls(f.dir);
    assert_int_equal(verify(f.ca, b, crls, EA_VERIFY_CLIENT, NULL, NULL, 0, detail, sizeof detail), EA_VERIFY_REVOKED);
    print_message("  intermediate revoked: %s\n", detail);
    assert_non_null(strstr(detail, "Device CA"));
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    size_t len;
    X509 *x = NULL;
    uint8_t *csr = csr_p256("dev-c", &len);
    expect_refusal(f.ca, csr, len, NULL, EA_ERR_DENIED, "intermediate CA is revoked");
    OPENSSL_free(csr);
    (void)x;

    assert_string_equal(ea_verify_reason_str(EA_VERIFY_REVOKED), "revoked");
    assert_string_equal(ea_verify_reason_str(EA_VERIFY_UNKNOWN_CA), "unknown_ca");
    assert_string_equal(ea_verify_reason_str((ea_verify_reason)99), "unknown");
    for (int i = EA_VERIFY_OK; i <= EA_VERIFY_OTHER; i++)
        assert_string_not_equal(ea_verify_reason_str((ea_verify_reason)i), "unknown");

    X509_free(a);
    X509_free(b);
    ca_free(&f);
}

/* ---- the audit log -------------------------------------------------------------------- */

typedef struct lines {
    char **l;
    size_t n;
} lines;

static lines read_lines(const char *path)
{
    lines r = { 0 };
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    assert_non_null(f);
    while ((n = getline(&line, &cap, f)) > 0) {
        r.l = realloc(r.l, (r.n + 1) * sizeof *r.l);
        r.l[r.n++] = strdup(line);
    }
    free(line);
    fclose(f);
    return r;
}

/* Write lines in the order idx (n entries; -1 ends). */
static void write_lines(const char *path, const lines *ls, const int *idx, size_t n)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        fputs(ls->l[idx[i]], f);
    fclose(f);
}

static void expect_audit(const char *dir, ea_err want, const char *msg)
{
    char err[512] = "";
    size_t n = 0;
    ea_err rc = ea_ca_audit_verify(dir, &n, err, sizeof err);
    if (rc != want || (msg && !strstr(err, msg)))
        fail_msg("audit verify: expected %s '%s', got %s '%s'", ea_err_str(want), msg ? msg : "", ea_err_str(rc), err);
    if (msg)
        print_message("  audit: %s\n", err);
}

static void test_audit_chain(void **state)
{
    (void)state;
    ca_fix f;
    char path[700], err[512];
    ca_make(&f, NULL);
    /* init, crl, then: issue x3, revoke + crl, a caller's event */
    X509 *x = issue(f.ca, "dev-1");
    X509_free(x);
    x = issue(f.ca, "dev-2");
    X509_free(x);
    x = issue(f.ca, "dev-3");
    X509_free(x);
    assert_int_equal(ea_ca_revoke(f.ca, "dev-2", err, sizeof err), EA_OK);
    assert_int_equal(ea_ca_audit(f.ca, "provision", "\"device\":\"dev-3\",\"attestation\":\"skipped\""), EA_OK);
    assert_int_equal(ea_ca_audit(f.ca, "Bad Event", NULL), EA_ERR_ARG);
    assert_int_equal(ea_ca_audit(f.ca, "x", "\"a\":\"line\nbreak\""), EA_ERR_ARG);
    ea_ca_close(f.ca);
    f.ca = NULL;

    size_t n = 0;
    assert_int_equal(ea_ca_audit_verify(f.dir, &n, err, sizeof err), EA_OK);
    assert_int_equal(n, 8); /* init, crl, issue x3, revoke, crl, provision */
    snprintf(path, sizeof path, "%s/audit.log", f.dir);
    lines ls = read_lines(path);
    assert_int_equal(ls.n, 8);
    /* format: seq, time, event ... prev */
    assert_int_equal(strncmp(ls.l[0], "{\"seq\":1,\"time\":\"", 17), 0);
    assert_non_null(strstr(ls.l[0], "\"event\":\"init\""));
    assert_non_null(strstr(ls.l[0], "\"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\"}"));
    assert_non_null(strstr(ls.l[2], "\"event\":\"issue\""));
    assert_non_null(strstr(ls.l[2], "\"device\":\"dev-1\""));
    assert_non_null(strstr(ls.l[5], "\"event\":\"revoke\""));
    assert_null(strstr(ls.l[0], "PRIVATE")); /* no key material, ever */

    const int orig[] = { 0, 1, 2, 3, 4, 5, 6, 7 };
    /* edited line 3 (dev-1 -> dev-9) */
    char *saved = ls.l[2];
    ls.l[2] = strdup(saved);
    *strstr(ls.l[2], "dev-1") = 'D';
    write_lines(path, &ls, orig, 8);
    expect_audit(f.dir, EA_ERR_CORRUPT, "line 3 was edited");
    free(ls.l[2]);
    ls.l[2] = saved;
    /* deleted line 4 */
    const int del[] = { 0, 1, 2, 4, 5, 6, 7 };
    write_lines(path, &ls, del, 7);
    expect_audit(f.dir, EA_ERR_CORRUPT, "line 4: seq 5");
    /* swapped lines 4 and 5 */
    const int swp[] = { 0, 1, 2, 4, 3, 5, 6, 7 };
    write_lines(path, &ls, swp, 8);
    expect_audit(f.dir, EA_ERR_CORRUPT, "line 4: seq 5");
    /* a line inserted (a copy of line 2 after it) */
    const int ins[] = { 0, 1, 1, 2, 3, 4, 5, 6, 7 };
    write_lines(path, &ls, ins, 9);
    expect_audit(f.dir, EA_ERR_CORRUPT, "line 3: seq 2");
    /* the last line deleted: audit.head still names it */
    write_lines(path, &ls, orig, 7);
    expect_audit(f.dir, EA_ERR_CORRUPT, "line 8 missing");
    ea_ca *ca2 = NULL;
    assert_int_equal(ea_ca_open(f.dir, &ca2, err, sizeof err), EA_ERR_CORRUPT); /* and the CA refuses to go on */
    assert_null(ca2);
    /* the last line edited */
    saved = ls.l[7];
    ls.l[7] = strdup(saved);
    *strstr(ls.l[7], "skipped") = 'S';
    write_lines(path, &ls, orig, 8);
    expect_audit(f.dir, EA_ERR_CORRUPT, "line 8 was edited");
    free(ls.l[7]);
    ls.l[7] = saved;
    /* the first line gone (so seq 1 is missing) */
    write_lines(path, &ls, orig + 1, 7);
    expect_audit(f.dir, EA_ERR_CORRUPT, "line 1: seq 2");
    /* garbage */
    FILE *g = fopen(path, "w");
    fputs("hello\n", g);
    fclose(g);
    expect_audit(f.dir, EA_ERR_CORRUPT, "line 1: not an audit record");

    /* restored: fine again */
    write_lines(path, &ls, orig, 8);
    expect_audit(f.dir, EA_OK, NULL);

    /* an append cut short by a crash: the CA drops the fragment and says so */
    g = fopen(path, "a");
    fputs("{\"seq\":9,\"time\":\"20", g);
    fclose(g);
    expect_audit(f.dir, EA_ERR_CORRUPT, "line 9: incomplete");
    ca_reopen(&f);
    ea_ca_close(f.ca);
    f.ca = NULL;
    assert_int_equal(ea_ca_audit_verify(f.dir, &n, err, sizeof err), EA_OK);
    assert_int_equal(n, 9);
    lines l2 = read_lines(path);
    assert_non_null(strstr(l2.l[8], "\"event\":\"recover\""));
    for (size_t i = 0; i < l2.n; i++)
        free(l2.l[i]);
    free(l2.l);

    for (size_t i = 0; i < ls.n; i++)
        free(ls.l[i]);
    free(ls.l);
    ca_reopen(&f);
    ca_free(&f);
}

/* ---- the CA key in a secure element ----------------------------------------------------- */

static void test_se_ca_key(void **state)
{
    (void)state;
    char *chip = tu_tmpdir("pki-chip"), uri[700], err[512], out[4096], path[700];
    ea_emu_init_opts io = { 0 };
    ca_fix f;
    if (ea_emu_init(chip, &io, err, sizeof err) != EA_OK)
        fail_msg("ea_emu_init: %s", err);
    snprintf(uri, sizeof uri, "se05x:0x7D000010?se=emu:%s", chip);
    ea_ca_init_opts o = { .org = ORG, .ca_key_uri = uri };
    ca_make(&f, &o);
    snprintf(path, sizeof path, "%s/intermediate.key", f.dir);
    assert_int_not_equal(access(path, F_OK), 0); /* no key file */
    ea_ca_info info;
    ea_ca_get_info(f.ca, &info);
    assert_string_equal(info.intermediate_key, uri);

    X509 *x = issue(f.ca, "se-dev-1");
    snprintf(path, sizeof path, "%s/se-dev.pem", f.tmp);
    write_pem(path, x);
    if (openssl_verify(f.dir, "-x509_strict", path, out, sizeof out) != 0)
        fail_msg("openssl verify: %s", out);
    assert_int_equal(verify(f.ca, x, NULL, EA_VERIFY_CLIENT, NULL, NULL, 0, NULL, 0), EA_VERIFY_OK);
    X509_free(x);
    X509_CRL *crl = NULL;
    assert_int_equal(ea_ca_revoke(f.ca, "se-dev-1", err, sizeof err), EA_OK);
    assert_int_equal(ea_ca_crl(f.ca, &crl, err, sizeof err), EA_OK);
    assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(ea_ca_intermediate(f.ca))), 1);
    X509_CRL_free(crl);
    ca_reopen(&f);
    x = issue(f.ca, "se-dev-2");
    X509_free(x);

    /* the same SE object again: refused, and nothing is left behind */
    char dir2[700];
    snprintf(dir2, sizeof dir2, "%s/ca2", f.tmp);
    assert_int_equal(ea_ca_init(dir2, &o, err, sizeof err), EA_ERR_EXISTS);
    assert_non_null(strstr(err, "already exists"));
    assert_int_not_equal(access(dir2, F_OK), 0);
    ca_free(&f);
    tu_rmrf(chip);
    free(chip);
}

/* ---- x509-limbo ------------------------------------------------------------------------- */

static STACK_OF(X509) *pem_list(json_object *arr)
{
    STACK_OF(X509) *s = sk_X509_new_null();
    for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
        const char *pem = json_object_get_string(json_object_array_get_idx(arr, i));
        BIO *b = BIO_new_mem_buf(pem, -1);
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        BIO_free(b);
        if (!x) {
            sk_X509_pop_free(s, X509_free);
            return NULL;
        }
        sk_X509_push(s, x);
    }
    return s;
}

static const char *jstr(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) && !json_object_is_type(v, json_type_null) ? json_object_get_string(v)
                                                                                            : NULL;
}

static json_object *jget(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) && !json_object_is_type(v, json_type_null) ? v : NULL;
}

static bool parse_iso(const char *s, time_t *t)
{
    struct tm tm = { 0 };
    if (sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *t = timegm(&tm);
    return true;
}

/* Cases skipped by id or feature, each with the reason (docs/PKI.md lists
 * the same). Conflicting pairs (conflicts_with) cannot both agree: we keep
 * the stricter side. */
static const struct limbo_skip {
    const char *match; /* an id, an id prefix ending in "::", or "feature:NAME" */
    const char *why;
} limbo_skips[] = {
    { "feature:pedantic-public-suffix-wildcard", "wildcards over a public suffix: no public suffix list" },
    { "webpki::cn::", "CABF 7.1.4.3 (CN a copy of a SAN entry) not applied: the CN is never matched here, and "
                      "the rule contradicts other cases whose leaf has CN=example.com outside the SAN" },
    { "rfc5280::eku::ee-without-eku", "profile: the leaf must carry an EKU naming its purpose (conflicts_with "
                                      "webpki::eku::ee-without-eku, which we pass)" },
    { "webpki::nc::permitted-dns-match-noncritical", "RFC 5280 4.2.1.10: name constraints must be critical "
                                                     "(conflicts_with the rfc5280:: twin, which we pass)" },
    { "rfc5280::ca-as-leaf", "profile: a CA certificate is never an end entity (conflicts_with "
                             "webpki::ca-as-leaf)" },
    { "pathlen::validation-ignores-pathlen-in-leaf", "profile: a CA certificate is never an end entity" },
    { "rfc5280::root-and-intermediate-swapped", "a trust anchor that is not self-signed: no "
                                                "X509_V_FLAG_PARTIAL_CHAIN, by design" },
    { "cve::cve-2024-0567", "a trust anchor that is not self-signed (Root A is issued by another root): no "
                            "X509_V_FLAG_PARTIAL_CHAIN, by design" },
};

static const struct limbo_skip *limbo_skipped(json_object *tc)
{
    const char *id = jstr(tc, "id");
    json_object *feats = jget(tc, "features");
    for (size_t i = 0; i < sizeof limbo_skips / sizeof limbo_skips[0]; i++) {
        const char *m = limbo_skips[i].match;
        if (!strncmp(m, "feature:", 8)) {
            for (size_t k = 0; feats && k < json_object_array_length(feats); k++)
                if (!strcmp(json_object_get_string(json_object_array_get_idx(feats, k)), m + 8))
                    return &limbo_skips[i];
        } else if (id && (!strcmp(id, m) || (strlen(m) > 2 && !strcmp(m + strlen(m) - 2, "::") &&
                                             !strncmp(id, m, strlen(m))))) {
            return &limbo_skips[i];
        }
    }
    return NULL;
}

/* Skip reasons for what the API cannot express, counted and printed. */
enum skip_why {
    SKIP_EMAIL_PEER,  /* CLIENT case naming RFC822 peers: our client identity is the CN */
    SKIP_DEPTH_ZERO,  /* max_chain_depth 0: the API's 0 means "no limit" */
    SKIP_OTHER_EKU,   /* an EKU constraint that is neither serverAuth nor clientAuth */
    SKIP_KU,          /* key_usage constraints from the case (none in the file) */
    SKIP_SIGALG,      /* signature_algorithms constraints (none in the file) */
    SKIP_CRL,         /* crls (none in the EC profile file) */
    SKIP_COUNT_
};
static const char *const skip_text[SKIP_COUNT_] = {
    "CLIENT peer names (RFC822): client identity is the CN, no email matching",
    "max_chain_depth 0: ea_verify_opts.max_depth 0 means no limit",
    "extended_key_usage other than serverAuth/clientAuth",
    "key_usage constraints",
    "signature_algorithms constraints",
    "CRLs in the testcase",
};

static int limbo_case(json_object *tc, int *skip_counts, char *why, size_t whylen)
{
    const char *kind = jstr(tc, "validation_kind"), *expected = jstr(tc, "expected_result");
    json_object *eku = jget(tc, "extended_key_usage"), *names = jget(tc, "expected_peer_names");
    json_object *peer = jget(tc, "expected_peer_name"), *depth = jget(tc, "max_chain_depth");
    json_object *ku = jget(tc, "key_usage"), *algs = jget(tc, "signature_algorithms"), *crls = jget(tc, "crls");
    ea_verify_opts o = { 0 };
    ea_verify_reason r;
    int want_ok = expected && !strcmp(expected, "SUCCESS");

    o.role = kind && !strcmp(kind, "CLIENT") ? EA_VERIFY_CLIENT : EA_VERIFY_SERVER;
    if (o.role == EA_VERIFY_CLIENT && names && json_object_array_length(names) > 0) {
        skip_counts[SKIP_EMAIL_PEER]++;
        return -1;
    }
    if (depth && json_object_get_int(depth) == 0) {
        skip_counts[SKIP_DEPTH_ZERO]++;
        return -1;
    }
    if (ku && json_object_array_length(ku) > 0) {
        skip_counts[SKIP_KU]++;
        return -1;
    }
    if (algs && json_object_array_length(algs) > 0) {
        skip_counts[SKIP_SIGALG]++;
        return -1;
    }
    if (crls && json_object_array_length(crls) > 0) {
        skip_counts[SKIP_CRL]++;
        return -1;
    }
    if (eku && json_object_array_length(eku) > 0) {
        if (json_object_array_length(eku) != 1) {
            skip_counts[SKIP_OTHER_EKU]++;
            return -1;
        }
        const char *e = json_object_get_string(json_object_array_get_idx(eku, 0));
        if (!strcmp(e, "serverAuth"))
            o.role = EA_VERIFY_SERVER;
        else if (!strcmp(e, "clientAuth"))
            o.role = EA_VERIFY_CLIENT;
        else {
            skip_counts[SKIP_OTHER_EKU]++;
            return -1;
        }
    }
    if (peer) {
        const char *pk = jstr(peer, "kind"), *pv = jstr(peer, "value");
        if (pk && !strcmp(pk, "DNS"))
            o.peer_dns = pv;
        else if (pk && !strcmp(pk, "IP"))
            o.peer_ip = pv;
    }
    if (depth)
        o.max_depth = json_object_get_int(depth);
    const char *vt = jstr(tc, "validation_time");
    if (vt && !parse_iso(vt, &o.at)) {
        snprintf(why, whylen, "bad validation_time %s", vt);
        return 0;
    }
    STACK_OF(X509) *trusted = pem_list(jget(tc, "trusted_certs"));
    STACK_OF(X509) *untrusted = pem_list(jget(tc, "untrusted_intermediates"));
    X509 *leaf = NULL;
    const char *lp = jstr(tc, "peer_certificate");
    if (lp) {
        BIO *b = BIO_new_mem_buf(lp, -1);
        leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
        BIO_free(b);
    }
    ERR_clear_error();
    int agree;
    if (!trusted || !untrusted || !leaf) {
        /* a certificate OpenSSL cannot even parse: that is a rejection */
        r = EA_VERIFY_MALFORMED;
        snprintf(why, whylen, "a certificate does not parse");
        agree = !want_ok;
    } else {
        o.trusted = trusted;
        o.untrusted = untrusted;
        ea_err rc = ea_pki_verify_chain(leaf, &o, &r, why, whylen);
        agree = (rc == EA_OK) == want_ok;
    }
    (void)r;
    sk_X509_pop_free(trusted, X509_free);
    sk_X509_pop_free(untrusted, X509_free);
    X509_free(leaf);
    return agree;
}

static void test_limbo(void **state)
{
    (void)state;
    json_object *j = tu_vectors_json("x509-limbo/limbo-ec-profile.json"), *cases;
    int skips[SKIP_COUNT_] = { 0 }, run_n = 0, agree_n = 0, total;
    int listed[sizeof limbo_skips / sizeof limbo_skips[0]] = { 0 };
    if (!j) {
        skip();
        return;
    }
    assert_true(json_object_object_get_ex(j, "testcases", &cases));
    total = (int)json_object_array_length(cases);
    for (int i = 0; i < total; i++) {
        json_object *tc = json_object_array_get_idx(cases, (size_t)i);
        char why[512] = "";
        const struct limbo_skip *ls = limbo_skipped(tc);
        if (ls) {
            listed[ls - limbo_skips]++;
            continue;
        }
        int a = limbo_case(tc, skips, why, sizeof why);
        if (a < 0)
            continue;
        run_n++;
        if (a) {
            agree_n++;
        } else {
            print_message("  DISAGREE %s (expected %s): %s\n", jstr(tc, "id"), jstr(tc, "expected_result"),
                          why[0] ? why : "accepted");
        }
    }
    print_message("  x509-limbo (limbo-ec-profile.json): %d cases, %d run, %d agree, %d disagree, %d skipped\n", total,
                  run_n, agree_n, run_n - agree_n, total - run_n);
    for (int i = 0; i < SKIP_COUNT_; i++)
        if (skips[i])
            print_message("    skipped %3d: %s\n", skips[i], skip_text[i]);
    for (size_t i = 0; i < sizeof limbo_skips / sizeof limbo_skips[0]; i++) {
        print_message("    skipped %3d: %s (%s)\n", listed[i], limbo_skips[i].match, limbo_skips[i].why);
        assert_true(listed[i] > 0); /* a skip that matches nothing is stale */
    }
    json_object_put(j);
    assert_int_equal(agree_n, run_n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hierarchy),         cmocka_unit_test(test_device_profile),
        cmocka_unit_test(test_csr_refusals),      cmocka_unit_test(test_serials_and_index),
        cmocka_unit_test(test_revoke_and_verify), cmocka_unit_test(test_audit_chain),
        cmocka_unit_test(test_se_ca_key),         cmocka_unit_test(test_limbo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
