/* The factory station and the manifests, end to end in-process: real
 * emulated chips in temporary directories, a real CA made with
 * ea_ca_init, the key signing its CSR through our provider.
 *
 *  - the full flow: certificate and chain in the SE, read back, verifying
 *    with ea_pki_verify_chain; policies and origin as designed; one
 *    registry line; audit trail;
 *  - attestation refusals: wrong vendor CA, an imported key, a key whose
 *    policy lets it be replaced; --no-attestation recorded in the audit log;
 *  - a crash after each step (a forked child killed by the crash hook),
 *    then a rerun: completes, exactly one active certificate (the one
 *    issued before the crash, when there was one), one registry line;
 *  - objects left by others: a half-written certificate refused (read-only)
 *    or replaced (deletable), duplicate device ids and chips refused;
 *  - a batch of chips with a signed manifest that verifies, and tampered
 *    manifests (payload, signature, header, signer, chain, duplicates)
 *    that do not;
 *  - onboarding of pre-provisioned chips: two accepted, one under another
 *    vendor CA refused; a manifest under the wrong vendor CA refused;
 *  - the JSON reader, base64url and the registry file on their own. */
#include "tests/testutil.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/util.h"
#include "edgeauth/host.h"
#include "edgeauth/manifest.h"
#include "edgeauth/pki.h"
#include "pki/manifest.h"

/* ---- fixture -------------------------------------------------------------------- */

typedef struct fx {
    char *dir;
    char pki[1024];
    char reg[1100];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    char err[512] = "";
    ea_ca_init_opts io = { .org = "Example OEM" };

    assert_non_null(f);
    f->dir = tu_tmpdir("prov");
    snprintf(f->pki, sizeof f->pki, "%s/pki", f->dir);
    snprintf(f->reg, sizeof f->reg, "%s/registry.jsonl", f->pki);
    if (ea_ca_init(f->pki, &io, err, sizeof err) != EA_OK)
        fail_msg("ea_ca_init: %s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* A new chip DIR/name (vendor CA: vdir, or the chip's own DIR/name/vendor). */
static void chip_make(const fx *f, const char *name, const char *vdir, int preprovision, char *path, size_t cap)
{
    char err[512] = "";
    ea_emu_init_opts io = { .vendor_ca_dir = vdir, .preprovision = preprovision };
    snprintf(path, cap, "%s/%s", f->dir, name);
    if (ea_emu_init(path, &io, err, sizeof err) != EA_OK)
        fail_msg("ea_emu_init %s: %s", path, err);
}

static void uri_of(const char *chip, char *uri, size_t cap)
{
    snprintf(uri, cap, "emu:%s", chip);
}

static void vendor_pem(const char *chip, char *out, size_t cap)
{
    snprintf(out, cap, "%s/vendor/vendor-ca.pem", chip);
}

static ea_err provision(const fx *f, const char *chip, const char *vca, const char *id, bool no_att,
                        ea_provision_result *res, char *err, size_t errlen)
{
    char uri[1200];
    uri_of(chip, uri, sizeof uri);
    ea_provision_opts o = { .se_uri = uri, .ca_dir = f->pki, .device_id = id, .vendor_ca_pem = vca,
                            .no_attestation = no_att };
    return ea_provision_device(&o, res, err, errlen);
}

static ea_host *host(const char *chip)
{
    char uri[1200], err[300] = "";
    ea_host *h = NULL;
    uri_of(chip, uri, sizeof uri);
    if (ea_host_open(uri, NULL, &h, err, sizeof err) != EA_OK)
        fail_msg("ea_host_open %s: %s", uri, err);
    return h;
}

static uint8_t *se_read(ea_host *h, uint32_t id, size_t *n)
{
    uint8_t *b = malloc(0x8000);
    assert_non_null(b);
    *n = 0x8000;
    assert_int_equal(ea_host_read_object(h, id, b, n), EA_OK);
    return b;
}

static X509 *der_cert(const uint8_t *der, size_t n)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)n);
    assert_non_null(x);
    assert_ptr_equal(p, der + n);
    return x;
}

/* Registry lines for a device id (-1: file absent); *obj gets the last one. */
static int reg_count(const char *path, const char *device_id, json_object **obj)
{
    FILE *fp = fopen(path, "r");
    char line[8192];
    int n = 0;
    if (obj)
        *obj = NULL;
    if (!fp)
        return -1;
    while (fgets(line, sizeof line, fp)) {
        json_object *j = json_tokener_parse(line);
        json_object *v;
        if (j && json_object_object_get_ex(j, "device_id", &v) && !strcmp(json_object_get_string(v), device_id)) {
            n++;
            if (obj) {
                json_object_put(*obj);
                *obj = json_object_get(j);
            }
        }
        json_object_put(j);
    }
    fclose(fp);
    return n;
}

static const char *jstr(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : NULL;
}

/* Does the audit log hold an event (with the device, when given)? */
static int audit_count(const fx *f, const char *event, const char *device)
{
    char path[1200], line[8192], ev[128], dv[128];
    FILE *fp;
    int n = 0;
    snprintf(path, sizeof path, "%s/audit.log", f->pki);
    snprintf(ev, sizeof ev, "\"event\":\"%s\"", event);
    snprintf(dv, sizeof dv, "\"device\":\"%s\"", device ? device : "");
    assert_non_null(fp = fopen(path, "r"));
    while (fgets(line, sizeof line, fp))
        n += strstr(line, ev) && (!device || strstr(line, dv));
    fclose(fp);
    return n;
}

static ea_ca *ca_open(const fx *f)
{
    char err[300] = "";
    ea_ca *ca = NULL;
    if (ea_ca_open(f->pki, &ca, err, sizeof err) != EA_OK)
        fail_msg("ea_ca_open: %s", err);
    return ca;
}

/* ---- the full flow ---------------------------------------------------------------- */

static void test_full_flow(void **state)
{
    fx *f = *state;
    char chip[1100], vca[1200], err[1024] = "", uid_hex[40];
    ea_provision_result r, r2;
    uint8_t uid[EA_UNIQUE_ID_LEN];
    json_object *line = NULL;
    size_t lines = 0;

    chip_make(f, "chip", NULL, 0, chip, sizeof chip);
    vendor_pem(chip, vca, sizeof vca);
    if (provision(f, chip, vca, "dev-1", false, &r, err, sizeof err) != EA_OK)
        fail_msg("provision: %s", err);
    assert_false(r.already_done);
    assert_string_equal(r.device_id, "dev-1");
    assert_int_equal(strlen(r.fingerprint), 64);
    assert_true(strlen(r.serial) >= 16); /* >= 64 bits */

    /* The SE holds the certificate the CA issued, and the CA's chain. */
    ea_host *h = host(chip);
    assert_int_equal(ea_host_unique_id(h, uid), EA_OK);
    ea_hex_encode(uid, sizeof uid, uid_hex);
    assert_string_equal(r.unique_id, uid_hex);
    size_t n_dev, n_int, n_root;
    uint8_t *dev = se_read(h, EA_OBJ_DEVICE_CERT, &n_dev), *inter = se_read(h, EA_OBJ_OEM_INTERMEDIATE, &n_int),
            *root = se_read(h, EA_OBJ_OEM_ROOT, &n_root);
    X509 *xd = der_cert(dev, n_dev), *xi = der_cert(inter, n_int), *xr = der_cert(root, n_root);
    ea_ca *ca = ca_open(f);
    X509 *issued = NULL;
    assert_int_equal(ea_ca_device_cert(ca, "dev-1", &issued), EA_OK);
    assert_int_equal(X509_cmp(issued, xd), 0);
    assert_int_equal(X509_cmp(ea_ca_intermediate(ca), xi), 0);
    assert_int_equal(X509_cmp(ea_ca_root(ca), xr), 0);
    ea_ca_close(ca); /* the CA holds a lock on its directory while open */
    STACK_OF(X509) *tr = sk_X509_new_null(), *un = sk_X509_new_null();
    sk_X509_push(tr, xr);
    sk_X509_push(un, xi);
    ea_verify_opts vo = { .trusted = tr, .untrusted = un, .role = EA_VERIFY_CLIENT };
    ea_verify_reason why = EA_VERIFY_OTHER;
    char detail[256] = "";
    if (ea_pki_verify_chain(xd, &vo, &why, detail, sizeof detail) != EA_OK)
        fail_msg("chain: %s %s", ea_verify_reason_str(why), detail);
    /* The certificate is for the key in the SE, with O and CN as asked. */
    uint8_t pub[65], cpt[65];
    size_t pl = sizeof pub;
    char cn[80], o[80];
    assert_int_equal(ea_host_read_pubkey(h, EA_OBJ_DEVICE_KEY, pub, &pl), EA_OK);
    assert_true(pm_cert_p256_point(xd, cpt));
    assert_memory_equal(pub, cpt, 65);
    pm_name_entry(X509_get_subject_name(xd), NID_commonName, cn, sizeof cn);
    pm_name_entry(X509_get_subject_name(xd), NID_organizationName, o, sizeof o);
    assert_string_equal(cn, "dev-1");
    assert_string_equal(o, "Example OEM");

    /* Origin internal, key policy sign + read, certificates read-only. */
    pm_attested at;
    char why2[400] = "";
    X509_STORE *anchors = pm_anchor_store(vca, why2, sizeof why2);
    assert_non_null(anchors);
    assert_int_equal(pm_attest_key(h, EA_OBJ_DEVICE_KEY, anchors, 1u << EA_ORIGIN_INTERNAL, &at, why2, sizeof why2),
                     EA_OK);
    assert_int_equal(at.policy, EA_POL_ALLOW_SIGN | EA_POL_ALLOW_READ);
    ea_attestation *a = malloc(sizeof *a);
    uint8_t fresh[EA_FRESHNESS_LEN] = { 1 }, origin, type;
    uint32_t ar, id;
    for (uint32_t oid = EA_OBJ_DEVICE_CERT; oid; oid = oid == EA_OBJ_DEVICE_CERT ? EA_OBJ_OEM_INTERMEDIATE
                                                    : oid == EA_OBJ_OEM_INTERMEDIATE ? EA_OBJ_OEM_ROOT
                                                                                     : 0) {
        assert_int_equal(ea_host_read_attested(h, oid, EA_OBJ_ATTEST_KEY, EA_SIG_ECDSA_SHA256, fresh, a), EA_OK);
        assert_true(pm_attrs_policy(a->attrs, a->attrs_len, &ar, &origin, &id, &type));
        assert_int_equal(ar, EA_POL_ALLOW_READ);
    }
    free(a);
    X509_STORE_free(anchors);

    /* One registry line, complete. */
    assert_int_equal(reg_count(f->reg, "dev-1", &line), 1);
    assert_string_equal(jstr(line, "unique_id"), uid_hex);
    assert_string_equal(jstr(line, "serial"), r.serial);
    assert_string_equal(jstr(line, "fingerprint"), r.fingerprint);
    assert_string_equal(jstr(line, "source"), "provisioned");
    assert_string_equal(jstr(line, "attested"), "true");
    assert_non_null(jstr(line, "time"));
    json_object_put(line);
    assert_int_equal(audit_count(f, "issue", "dev-1"), 1);
    assert_int_equal(audit_count(f, "provision", "dev-1"), 1);

    /* A rerun finds everything in place. */
    ea_host_close(h);
    if (provision(f, chip, vca, "dev-1", false, &r2, err, sizeof err) != EA_OK)
        fail_msg("rerun: %s", err);
    assert_true(r2.already_done);
    assert_string_equal(r2.serial, r.serial);
    assert_int_equal(reg_count(f->reg, "dev-1", NULL), 1);
    assert_int_equal(audit_count(f, "issue", "dev-1"), 1);

    assert_int_equal(ea_ca_audit_verify(f->pki, &lines, err, sizeof err), EA_OK);
    sk_X509_free(tr);
    sk_X509_free(un);
    X509_free(issued);
    X509_free(xd);
    X509_free(xi);
    X509_free(xr);
    free(dev);
    free(inter);
    free(root);
}

/* ---- attestation refusals ----------------------------------------------------------- */

static void assert_nothing_issued(const fx *f, const char *id)
{
    ea_ca *ca = ca_open(f);
    assert_false(ea_ca_device_active(ca, id));
    ea_ca_close(ca);
    assert_true(reg_count(f->reg, id, NULL) <= 0);
}

static void test_wrong_vendor_ca(void **state)
{
    fx *f = *state;
    char chip[1100], other[1100], vca[1200], err[1024] = "";
    ea_provision_result r;

    chip_make(f, "chip-a", NULL, 0, chip, sizeof chip);
    chip_make(f, "chip-b", NULL, 0, other, sizeof other);
    vendor_pem(other, vca, sizeof vca); /* another vendor CA than chip-a's */
    assert_int_equal(provision(f, chip, vca, "dev-a", false, &r, err, sizeof err), EA_ERR_AUTH);
    assert_non_null(strstr(err, "does not chain to the SE vendor CA"));
    assert_nothing_issued(f, "dev-a");
}

static void test_imported_key(void **state)
{
    fx *f = *state;
    char chip[1100], vca[1200], err[1024] = "";
    uint8_t priv[32];
    ea_provision_result r;
    json_object *line = NULL;

    chip_make(f, "chip", NULL, 0, chip, sizeof chip);
    vendor_pem(chip, vca, sizeof vca);
    ea_host *h = host(chip);
    ea_policy pol = ea_policy_everyone(EA_POL_ALLOW_SIGN | EA_POL_ALLOW_READ);
    /* a whole key pair made outside, then imported: only the origin tells */
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIGNUM *d = NULL;
    uint8_t pub[65];
    size_t pl = 0;
    assert_non_null(k);
    assert_int_equal(EVP_PKEY_get_bn_param(k, "priv", &d), 1);
    assert_int_equal(BN_bn2binpad(d, priv, sizeof priv), 32);
    assert_int_equal(EVP_PKEY_get_octet_string_param(k, "pub", pub, sizeof pub, &pl), 1);
    assert_int_equal(ea_host_ec_import(h, EA_OBJ_DEVICE_KEY, EA_CURVE_NIST_P256, priv, sizeof priv, pub, pl, &pol,
                                       false),
                     EA_OK);
    BN_clear_free(d);
    EVP_PKEY_free(k);
    ea_cleanse(priv, sizeof priv);
    ea_host_close(h);

    assert_int_equal(provision(f, chip, vca, "dev-imp", false, &r, err, sizeof err), EA_ERR_AUTH);
    if (!strstr(err, "origin external"))
        fail_msg("imported key: %s", err);
    assert_nothing_issued(f, "dev-imp");

    /* --no-attestation takes it, and says so in the audit log and registry. */
    assert_int_equal(audit_count(f, "provision_no_attestation", "dev-imp"), 0);
    if (provision(f, chip, NULL, "dev-imp", true, &r, err, sizeof err) != EA_OK)
        fail_msg("--no-attestation: %s", err);
    assert_int_equal(audit_count(f, "provision_no_attestation", "dev-imp"), 1);
    assert_int_equal(reg_count(f->reg, "dev-imp", &line), 1);
    assert_string_equal(jstr(line, "attested"), "false");
    json_object_put(line);
}

static void test_replaceable_key(void **state)
{
    fx *f = *state;
    char chip[1100], vca[1200], err[1024] = "";
    ea_provision_result r;

    chip_make(f, "chip", NULL, 0, chip, sizeof chip);
    vendor_pem(chip, vca, sizeof vca);
    ea_host *h = host(chip);
    /* generated inside, but with the chip's default policy: write and gen allowed */
    assert_int_equal(ea_host_ec_generate(h, EA_OBJ_DEVICE_KEY, EA_CURVE_NIST_P256, NULL, false), EA_OK);
    ea_host_close(h);
    assert_int_equal(provision(f, chip, vca, "dev-pol", false, &r, err, sizeof err), EA_ERR_POLICY);
    assert_non_null(strstr(err, "could be replaced"));
    assert_nothing_issued(f, "dev-pol");
}

static void test_missing_arguments(void **state)
{
    fx *f = *state;
    char err[300] = "";
    ea_provision_result r;
    ea_provision_opts o = { .ca_dir = f->pki, .device_id = "x" };
    assert_int_equal(ea_provision_device(&o, &r, err, sizeof err), EA_ERR_ARG); /* no vendor CA */
    assert_non_null(strstr(err, "vendor CA"));
    ea_provision_opts o2 = { .device_id = "x", .no_attestation = true };
    assert_int_equal(ea_provision_device(&o2, &r, err, sizeof err), EA_ERR_ARG);
}

/* ---- crash at each step, then rerun -------------------------------------------------------- */

static const char *const steps[] = { "key", "attest", "csr", "issue", "cert", "intermediate", "root", "registry" };

static void test_crash_each_step(void **state)
{
    fx *f = *state;
    size_t total_issued = 0;

    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        char name[64], chip[1100], vca[1200], id[64], err[1024] = "", before[64] = "";
        ea_provision_result r;
        int st = 0;

        snprintf(name, sizeof name, "chip-%s", steps[i]);
        snprintf(id, sizeof id, "crash-%s", steps[i]);
        chip_make(f, name, NULL, 0, chip, sizeof chip);
        vendor_pem(chip, vca, sizeof vca);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            setenv("EDGEAUTH_PROVISION_CRASH_AT", steps[i], 1);
            provision(f, chip, vca, id, false, &r, err, sizeof err);
            _exit(3); /* the hook did not fire */
        }
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 99)
            fail_msg("step %s: the child did not crash there (status %d)", steps[i], st);

        /* What the crash left: never a registry line, except after the last step. */
        assert_int_equal(reg_count(f->reg, id, NULL), !strcmp(steps[i], "registry") ? 1 : 0);
        ea_ca *ca = ca_open(f);
        X509 *x = NULL;
        if (ea_ca_device_cert(ca, id, &x) == EA_OK)
            assert_true(pm_serial_hex(x, before, sizeof before));
        X509_free(x);
        ea_ca_close(ca);

        if (provision(f, chip, vca, id, false, &r, err, sizeof err) != EA_OK)
            fail_msg("rerun after a crash at %s: %s", steps[i], err);
        assert_int_equal(r.already_done, !strcmp(steps[i], "registry"));
        if (before[0]) /* issued before the crash: that certificate, not a second one */
            assert_string_equal(r.serial, before);
        assert_int_equal(reg_count(f->reg, id, NULL), 1);
        total_issued++;

        /* Exactly one certificate per device so far: nothing orphaned. */
        ca = ca_open(f);
        ea_ca_info info;
        ea_ca_get_info(ca, &info);
        assert_int_equal(info.devices_active, total_issued);
        assert_int_equal(info.devices_revoked, 0);
        ea_ca_close(ca);

        /* The SE holds the certificate of the registry line. */
        ea_host *h = host(chip);
        size_t n;
        uint8_t *der = se_read(h, EA_OBJ_DEVICE_CERT, &n);
        X509 *xd = der_cert(der, n);
        char fp[65];
        assert_true(pm_fingerprint(xd, fp));
        assert_string_equal(fp, r.fingerprint);
        X509_free(xd);
        free(der);
        ea_host_close(h);
    }
    size_t lines = 0;
    char err[300] = "";
    assert_int_equal(ea_ca_audit_verify(f->pki, &lines, err, sizeof err), EA_OK);
}

/* ---- objects somebody else left ------------------------------------------------------------ */

static void half_written(const char *chip, uint32_t ar)
{
    uint8_t junk[700];
    ea_host *h = host(chip);
    ea_policy pol = ea_policy_everyone(ar);
    memset(junk, 0xA5, sizeof junk);
    /* 500-byte chunks: the second needs ALLOW_WRITE, so a read-only file
     * stays half written. */
    ea_err rc = ea_host_write_binary(h, EA_OBJ_DEVICE_CERT, junk, sizeof junk, &pol);
    assert_true(rc == EA_OK || rc == EA_ERR_DENIED);
    bool exists = false;
    assert_int_equal(ea_host_exists(h, EA_OBJ_DEVICE_CERT, &exists), EA_OK);
    assert_true(exists);
    ea_host_close(h);
}

static void test_foreign_objects(void **state)
{
    fx *f = *state;
    char chip[1100], vca[1200], err[1024] = "";
    ea_provision_result r;

    /* Read-only junk: refused before anything is issued. */
    chip_make(f, "chip-ro", NULL, 0, chip, sizeof chip);
    vendor_pem(chip, vca, sizeof vca);
    half_written(chip, EA_POL_ALLOW_READ);
    assert_int_equal(provision(f, chip, vca, "dev-ro", false, &r, err, sizeof err), EA_ERR_DENIED);
    assert_non_null(strstr(err, "forbids deleting"));
    assert_nothing_issued(f, "dev-ro");

    /* Deletable junk: replaced. */
    chip_make(f, "chip-rd", NULL, 0, chip, sizeof chip);
    vendor_pem(chip, vca, sizeof vca);
    half_written(chip, EA_POL_ALLOW_READ | EA_POL_ALLOW_DELETE);
    if (provision(f, chip, vca, "dev-rd", false, &r, err, sizeof err) != EA_OK)
        fail_msg("deletable junk: %s", err);
    ea_host *h = host(chip);
    size_t n;
    uint8_t *der = se_read(h, EA_OBJ_DEVICE_CERT, &n);
    X509 *x = der_cert(der, n);
    char fp[65];
    assert_true(pm_fingerprint(x, fp));
    assert_string_equal(fp, r.fingerprint);
    X509_free(x);
    free(der);
    ea_host_close(h);
}

static void test_duplicates(void **state)
{
    fx *f = *state;
    char c1[1100], c2[1100], v1[1200], v2[1200], err[1024] = "";
    ea_provision_result r;

    chip_make(f, "chip-1", NULL, 0, c1, sizeof c1);
    chip_make(f, "chip-2", NULL, 0, c2, sizeof c2);
    vendor_pem(c1, v1, sizeof v1);
    vendor_pem(c2, v2, sizeof v2);
    if (provision(f, c1, v1, "dev-x", false, &r, err, sizeof err) != EA_OK)
        fail_msg("%s", err);
    /* the same id on another chip */
    assert_int_equal(provision(f, c2, v2, "dev-x", false, &r, err, sizeof err), EA_ERR_EXISTS);
    assert_non_null(strstr(err, "another chip"));
    /* the same chip under another id */
    assert_int_equal(provision(f, c1, v1, "dev-y", false, &r, err, sizeof err), EA_ERR_EXISTS);
    assert_non_null(strstr(err, "already registered as device dev-x"));
    assert_int_equal(reg_count(f->reg, "dev-x", NULL), 1);
    assert_nothing_issued(f, "dev-y");
    /* an id the CA refuses (pattern) */
    assert_int_equal(provision(f, c2, v2, "bad id!", false, &r, err, sizeof err), EA_ERR_DENIED);
}

/* ---- batch and manifest ---------------------------------------------------------------------- */

typedef struct seen {
    int n;
    char ids[8][80];
    char uids[8][40];
} seen;

static ea_err on_entry(void *ctx, const ea_manifest_entry *e)
{
    seen *s = ctx;
    assert_true(s->n < 8);
    assert_int_equal(e->index, (size_t)s->n);
    assert_string_equal(e->key_id, "0xF0000100");
    assert_string_equal(e->provisioner, "Example OEM");
    assert_int_equal(sk_X509_num(e->chain), 2);
    snprintf(s->ids[s->n], sizeof s->ids[0], "%s", e->device_id);
    snprintf(s->uids[s->n], sizeof s->uids[0], "%s", e->unique_id);
    s->n++;
    return EA_OK;
}

typedef struct mctx {
    X509 *signer, *root;
    STACK_OF(X509) *trusted;
} mctx;

static void mctx_load(const fx *f, mctx *m)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/manifest.pem", f->pki);
    assert_non_null(m->signer = pm_read_cert(p));
    snprintf(p, sizeof p, "%s/root.pem", f->pki);
    assert_non_null(m->root = pm_read_cert(p));
    m->trusted = sk_X509_new_null();
    sk_X509_push(m->trusted, m->root);
}

static void mctx_free(mctx *m)
{
    sk_X509_free(m->trusted);
    X509_free(m->signer);
    X509_free(m->root);
}

static ea_err verify_text(const mctx *m, const char *json, seen *s, char *err, size_t errlen)
{
    ea_manifest_verify_opts vo = { .signer = m->signer, .trusted = m->trusted };
    size_t count = 0;
    return ea_manifest_verify(json, strlen(json), &vo, s ? on_entry : NULL, s, &count, err, errlen);
}

/* Replace the character at offset off after the first occurrence of key. */
static char *mutate(const char *json, const char *key, size_t off)
{
    char *c = strdup(json);
    char *p = strstr(c, key);
    assert_non_null(p);
    p += strlen(key) + off;
    *p = *p == 'A' ? 'B' : 'A';
    return c;
}

/* Replace the first occurrence of from by to. */
static char *replace(const char *json, const char *from, const char *to)
{
    const char *p = strstr(json, from);
    size_t a, b = strlen(to);
    char *c;
    assert_non_null(p);
    a = (size_t)(p - json);
    c = malloc(strlen(json) - strlen(from) + b + 1);
    memcpy(c, json, a);
    memcpy(c + a, to, b);
    strcpy(c + a + b, p + strlen(from));
    return c;
}

static void test_batch_manifest(void **state)
{
    fx *f = *state;
    char sedir[1100], man[1200], err[1024] = "";
    ea_batch_result br;
    uint8_t *json = NULL;
    size_t jl = 0;
    seen s = { 0 };
    mctx m = { 0 };

    snprintf(sedir, sizeof sedir, "%s/line", f->dir);
    snprintf(man, sizeof man, "%s/manifest.json", f->dir);
    ea_batch_opts bo = { .count = 5, .se_dir = sedir, .ca_dir = f->pki, .manifest_path = man };
    if (ea_provision_batch(&bo, &br, err, sizeof err) != EA_OK)
        fail_msg("batch: %s", err);
    assert_int_equal(br.created, 5);
    assert_int_equal(br.provisioned, 5);
    assert_int_equal(br.already_done, 0);
    for (int i = 1; i <= 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "dev-%04d", i);
        assert_int_equal(reg_count(f->reg, id, NULL), 1);
    }

    mctx_load(f, &m);
    assert_int_equal(ea_file_read(man, 1 << 24, &json, &jl), EA_OK);
    json = realloc(json, jl + 1);
    json[jl] = '\0';
    if (verify_text(&m, (const char *)json, &s, err, sizeof err) != EA_OK)
        fail_msg("verify: %s", err);
    assert_int_equal(s.n, 5);
    for (int i = 0; i < 5; i++) {
        char id[16], chip[1200], uid_hex[40];
        uint8_t uid[EA_UNIQUE_ID_LEN];
        snprintf(id, sizeof id, "dev-%04d", i + 1);
        assert_string_equal(s.ids[i], id);
        snprintf(chip, sizeof chip, "%s/chip-%04d", sedir, i + 1);
        ea_host *h = host(chip);
        assert_int_equal(ea_host_unique_id(h, uid), EA_OK);
        ea_host_close(h);
        ea_hex_encode(uid, sizeof uid, uid_hex);
        assert_string_equal(s.uids[i], uid_hex);
    }

    /* The protected header is exactly what Microchip's consumers expect. */
    json_object *arr = json_tokener_parse((const char *)json);
    assert_non_null(arr);
    json_object *e0 = json_object_array_get_idx(arr, 0);
    const char *prot = jstr(e0, "protected");
    uint8_t hdr[256];
    size_t hl = sizeof hdr - 1;
    assert_int_equal(pm_b64url_dec(prot, strlen(prot), hdr, &hl), EA_OK);
    hdr[hl] = '\0';
    json_object *h = json_tokener_parse((const char *)hdr);
    assert_string_equal(jstr(h, "alg"), "ES256");
    assert_non_null(jstr(h, "kid"));
    assert_non_null(jstr(h, "x5t#S256"));
    json_object_put(h);
    size_t sl = 128;
    uint8_t sig[128];
    assert_int_equal(pm_b64url_dec(jstr(e0, "signature"), strlen(jstr(e0, "signature")), sig, &sl), EA_OK);
    assert_int_equal(sl, 64); /* r || s, not DER */
    json_object_put(arr);

    /* Tampering. */
    const char *txt = (const char *)json;
    struct {
        const char *what;
        char *text;
        ea_err want, alt; /* alt: a second acceptable answer (0 = none) */
        const char *reason;
    } bad[] = {
        { "payload byte", mutate(txt, "\"payload\":\"", 40), EA_ERR_AUTH, 0, "signature does not verify" },
        { "signature byte", mutate(txt, "\"signature\":\"", 10), EA_ERR_AUTH, 0, "signature does not verify" },
        { "protected header byte", mutate(txt, "\"protected\":\"", 33), EA_ERR_AUTH, EA_ERR_MALFORMED, NULL },
        { "unprotected uniqueId", mutate(txt, "\"uniqueId\":\"", 0), EA_ERR_AUTH, 0, "unprotected uniqueId" },
        { "alg none", replace(txt, "\"protected\":\"eyJhbGciOiJFUzI1NiIs",
                              "\"protected\":\"eyJhbGciOiJub25lIiwg"),
          EA_ERR_AUTH, 0, "not ES256" },
        { "extra member", replace(txt, "\"signature\":", "\"x\":1,\"signature\":"), EA_ERR_MALFORMED, 0,
          "unexpected member" },
        { "not an array", strdup("{}"), EA_ERR_MALFORMED, 0, "array" },
        { "garbage", strdup("[{\"payload\":"), EA_ERR_MALFORMED, 0, NULL },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        ea_err rc = verify_text(&m, bad[i].text, NULL, err, sizeof err);
        if ((rc != bad[i].want && (!bad[i].alt || rc != bad[i].alt)) || (bad[i].reason && !strstr(err, bad[i].reason)))
            fail_msg("%s: %s (%s), want %s", bad[i].what, ea_err_str(rc), err, ea_err_str(bad[i].want));
        free(bad[i].text);
    }
    /* An entry twice. */
    {
        const char *e1 = strstr(txt, "{\"payload\"");
        const char *e2 = strstr(e1 + 1, "{\"payload\"");
        assert_non_null(e2);
        size_t el = (size_t)(e2 - e1);
        char *two = malloc(el * 2 + 16);
        snprintf(two, el * 2 + 16, "[%.*s%.*s]", (int)el, e1, (int)(el - 4), e1);
        assert_int_equal(verify_text(&m, two, NULL, err, sizeof err), EA_ERR_AUTH);
        assert_non_null(strstr(err, "more than one entry"));
        free(two);
    }
    /* The wrong signer: kid and x5t no longer match, and no callback runs. */
    {
        mctx w = m;
        seen s2 = { 0 };
        w.signer = m.root; /* a certificate with an SKI, but not the signer */
        assert_int_equal(verify_text(&w, txt, &s2, err, sizeof err), EA_ERR_AUTH);
        assert_non_null(strstr(err, "kid"));
        assert_int_equal(s2.n, 0);
    }
    /* A chain that does not lead to the trusted root. */
    {
        char other[1100];
        ea_ca_init_opts io = { .org = "Other OEM" };
        snprintf(other, sizeof other, "%s/other-pki", f->dir);
        assert_int_equal(ea_ca_init(other, &io, err, sizeof err), EA_OK);
        char p[1200];
        snprintf(p, sizeof p, "%s/root.pem", other);
        X509 *oroot = pm_read_cert(p);
        mctx w = m;
        w.trusted = sk_X509_new_null();
        sk_X509_push(w.trusted, oroot);
        assert_int_equal(verify_text(&w, txt, NULL, err, sizeof err), EA_ERR_AUTH);
        assert_non_null(strstr(err, "chain"));
        sk_X509_free(w.trusted);
        X509_free(oroot);
    }

    /* A rerun of the batch: nothing to do, the same manifest content. */
    ea_batch_result br2;
    if (ea_provision_batch(&bo, &br2, err, sizeof err) != EA_OK)
        fail_msg("batch rerun: %s", err);
    assert_int_equal(br2.created, 0);
    assert_int_equal(br2.already_done, 5);
    for (int i = 1; i <= 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "dev-%04d", i);
        assert_int_equal(reg_count(f->reg, id, NULL), 1);
    }
    free(json);
    assert_int_equal(ea_file_read(man, 1 << 24, &json, &jl), EA_OK);
    json = realloc(json, jl + 1);
    json[jl] = '\0';
    memset(&s, 0, sizeof s);
    assert_int_equal(verify_text(&m, (const char *)json, &s, err, sizeof err), EA_OK);
    assert_int_equal(s.n, 5);
    free(json);
    mctx_free(&m);
}

/* A batch killed in the middle (at the 3rd certificate write) continues. */
static void test_batch_crash(void **state)
{
    fx *f = *state;
    char sedir[1100], man[1200], err[1024] = "";
    ea_batch_result br;
    int st = 0;

    snprintf(sedir, sizeof sedir, "%s/line2", f->dir);
    snprintf(man, sizeof man, "%s/manifest2.json", f->dir);
    ea_batch_opts bo = { .count = 4, .se_dir = sedir, .ca_dir = f->pki, .manifest_path = man, .id_prefix = "b-" };
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("EDGEAUTH_PROVISION_CRASH_AT", "cert@3", 1);
        ea_provision_batch(&bo, &br, err, sizeof err);
        _exit(3);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 99);
    assert_int_equal(access(man, F_OK), -1); /* no manifest from a batch that did not finish */
    if (ea_provision_batch(&bo, &br, err, sizeof err) != EA_OK)
        fail_msg("batch after crash: %s", err);
    assert_int_equal(br.created, 0);
    assert_int_equal(br.already_done, 2);
    assert_int_equal(br.provisioned, 2);
    for (int i = 1; i <= 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "b-%04d", i);
        assert_int_equal(reg_count(f->reg, id, NULL), 1);
    }
    ea_ca *ca = ca_open(f);
    ea_ca_info info;
    ea_ca_get_info(ca, &info);
    assert_int_equal(info.devices_active, 4);
    ea_ca_close(ca);
}

/* ---- onboarding ------------------------------------------------------------------------------ */

typedef struct ob_seen {
    int accepted, refused, checked;
    char reason[400];
} ob_seen;

static void on_chip(void *ctx, const ea_onboard_result *r)
{
    ob_seen *s = ctx;
    if (r->accepted) {
        s->accepted++;
        s->checked += r->chip_checked;
    } else {
        s->refused++;
        snprintf(s->reason, sizeof s->reason, "%s", r->reason);
    }
}

static void test_onboard(void **state)
{
    fx *f = *state;
    char sedir[1100], v1[1100], v2[1100], c[1200], man[1200], v1pem[1200], v2pem[1200], err[1024] = "";
    size_t n = 0, acc = 0, ref = 0;
    ob_seen s = { 0 };

    snprintf(sedir, sizeof sedir, "%s/pre", f->dir);
    snprintf(v1, sizeof v1, "%s/vendor1", f->dir);
    snprintf(v2, sizeof v2, "%s/vendor2", f->dir);
    snprintf(v1pem, sizeof v1pem, "%s/vendor-ca.pem", v1);
    snprintf(v2pem, sizeof v2pem, "%s/vendor-ca.pem", v2);
    snprintf(man, sizeof man, "%s/vendor-manifest.json", f->dir);
    assert_int_equal(mkdir(sedir, 0700), 0);
    chip_make(f, "pre/chip-1", v1, 1, c, sizeof c);
    chip_make(f, "pre/chip-2", v1, 1, c, sizeof c);
    chip_make(f, "pre/chip-3", v2, 1, c, sizeof c); /* another vendor's */

    if (ea_vendor_manifest_make(sedir, v1, man, &n, err, sizeof err) != EA_OK)
        fail_msg("vendor manifest: %s", err);
    assert_int_equal(n, 2);
    assert_non_null(strstr(err, "chip-3")); /* said what it left out */

    ea_onboard_opts oo = { .manifest_path = man, .vendor_ca_pem = v1pem, .se_dir = sedir, .ca_dir = f->pki,
                           .cb = on_chip, .cb_ctx = &s };
    if (ea_onboard(&oo, &acc, &ref, err, sizeof err) != EA_OK)
        fail_msg("onboard: %s", err);
    assert_int_equal(acc, 2);
    assert_int_equal(ref, 1);
    assert_int_equal(s.checked, 2);
    assert_non_null(strstr(s.reason, "attestation refused"));
    int lines = 0;
    for (int i = 1; i <= 3; i++) {
        char chip[1200], uid_hex[40];
        uint8_t uid[EA_UNIQUE_ID_LEN];
        json_object *line = NULL;
        snprintf(chip, sizeof chip, "%s/chip-%d", sedir, i);
        ea_host *h = host(chip);
        assert_int_equal(ea_host_unique_id(h, uid), EA_OK);
        ea_host_close(h);
        ea_hex_encode(uid, sizeof uid, uid_hex);
        int k = reg_count(f->reg, uid_hex, &line); /* device id = the vendor certificate's CN = uid */
        assert_int_equal(k, i < 3 ? 1 : 0);
        if (line) {
            assert_string_equal(jstr(line, "source"), "manifest");
            assert_string_equal(jstr(line, "attested"), "true");
            json_object_put(line);
        }
        lines += k;
    }
    assert_int_equal(lines, 2);
    assert_int_equal(audit_count(f, "onboard", NULL), 2);

    /* Again: the same two, already there; nothing appended. */
    memset(&s, 0, sizeof s);
    assert_int_equal(ea_onboard(&oo, &acc, &ref, err, sizeof err), EA_OK);
    assert_int_equal(acc, 2);
    assert_int_equal(ref, 1);
    assert_int_equal(audit_count(f, "onboard", NULL), 2);

    /* The manifest under the other vendor's CA: refused as a whole. */
    ea_onboard_opts bad = oo;
    bad.vendor_ca_pem = v2pem;
    memset(&s, 0, sizeof s);
    assert_int_equal(ea_onboard(&bad, &acc, &ref, err, sizeof err), EA_ERR_AUTH);
    assert_int_equal(s.accepted + s.refused, 0);
}

/* ---- the pieces on their own ------------------------------------------------------------------- */

static void test_json_reader(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool ok;
    } cases[] = {
        { "{\"a\":[1,2,{\"b\":null}],\"c\":\"x\\u00e9\\ud83d\\ude00\"}", true },
        { "  [true,false,-0.5e+3]  ", true },
        { "{\"a\":1,\"a\":2}", false },      /* duplicate member */
        { "\"\\u0000\"", false },            /* NUL inside a string */
        { "\"\\ud800\"", false },            /* lone surrogate */
        { "\"\\udc00\"", false },
        { "[1,]", false },
        { "{\"a\":1} x", false },            /* trailing data */
        { "\"a\nb\"", false },               /* raw control character */
        { "01", false },
        { "[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]", false }, /* 17 deep */
        { "[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]", true },    /* 16 deep */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[128] = "";
        pj *v = pj_parse(cases[i].text, strlen(cases[i].text), err, sizeof err);
        if ((v != NULL) != cases[i].ok)
            fail_msg("case %zu (%s): %s", i, cases[i].text, v ? "accepted" : err);
        pj_free(v);
    }
    const char *t = "{\"c\":\"x\\u00e9\\ud83d\\ude00\"}";
    pj *v = pj_parse(t, strlen(t), NULL, 0);
    assert_string_equal(pj_str(v, "c"), "x\xc3\xa9\xf0\x9f\x98\x80");
    pj_free(v);
    /* every prefix of a valid document is refused, never read past */
    const char *doc = "{\"payload\":\"eyJ2\",\"header\":{\"uniqueId\":\"0a\"},\"n\":[1.5,true,null]}";
    for (size_t k = 0; k < strlen(doc); k++) {
        char *p = malloc(k ? k : 1);
        memcpy(p, doc, k);
        pj *pv = pj_parse(p, k, NULL, 0);
        assert_null(pv);
        free(p);
    }
}

static void test_b64url(void **state)
{
    (void)state;
    uint8_t in[40], out[64];
    char enc[80];
    for (size_t n = 0; n < sizeof in; n++) {
        size_t ol = sizeof out;
        in[n] = (uint8_t)(n * 37 + 1);
        pm_b64url_enc(in, n, enc);
        assert_null(strchr(enc, '='));
        assert_int_equal(pm_b64url_dec(enc, strlen(enc), out, &ol), EA_OK);
        assert_int_equal(ol, n);
        assert_memory_equal(out, in, n);
    }
    size_t ol = sizeof out;
    assert_int_equal(pm_b64url_dec("AB", 2, out, &ol), EA_ERR_MALFORMED);   /* unused bits set */
    ol = sizeof out;
    assert_int_equal(pm_b64url_dec("AA==", 4, out, &ol), EA_ERR_MALFORMED); /* padding */
    ol = sizeof out;
    assert_int_equal(pm_b64url_dec("A+8", 3, out, &ol), EA_ERR_MALFORMED);  /* not the url alphabet */
    ol = sizeof out;
    assert_int_equal(pm_b64url_dec("AAAAA", 5, out, &ol), EA_ERR_MALFORMED);
    ol = 1;
    assert_int_equal(pm_b64url_dec("AAAA", 4, out, &ol), EA_ERR_BUF_TOO_SMALL);
    assert_int_equal(ol, 3);
}

static void test_registry_file(void **state)
{
    fx *f = *state;
    char path[1200], err[300] = "";
    pm_registry *r = NULL;
    bool added = false;
    const char *uid = NULL;

    snprintf(path, sizeof path, "%s/reg.jsonl", f->dir);
    /* a complete line, junk, then a torn write at the end */
    FILE *fp = fopen(path, "w");
    fputs("{\"device_id\":\"a\",\"unique_id\":\"01\",\"fingerprint\":\"ff\",\"serial\":\"1\"}\nnot json\n"
          "{\"device_id\":\"b\",\"uni",
          fp);
    fclose(fp);
    assert_int_equal(pm_registry_open(path, &r, err, sizeof err), EA_OK);
    assert_true(pm_registry_find_device(r, "a", &uid, NULL));
    assert_string_equal(uid, "01");
    assert_false(pm_registry_find_device(r, "b", NULL, NULL));
    pm_reg_rec rec = { "c", "02", "2", "ee", "provisioned", true };
    assert_int_equal(pm_registry_add(r, &rec, &added, err, sizeof err), EA_OK);
    assert_true(added);
    assert_int_equal(pm_registry_add(r, &rec, &added, err, sizeof err), EA_OK);
    assert_false(added);
    pm_reg_rec clash = { "c", "03", "3", "dd", "provisioned", true };
    assert_int_equal(pm_registry_add(r, &clash, &added, err, sizeof err), EA_ERR_EXISTS);
    pm_reg_rec clash2 = { "d", "01", "3", "dd", "provisioned", true };
    assert_int_equal(pm_registry_add(r, &clash2, &added, err, sizeof err), EA_ERR_EXISTS);
    assert_non_null(strstr(err, "already registered as device a"));
    pm_registry_close(r);
    /* the new line stands on its own after the torn one */
    assert_int_equal(reg_count(path, "c", NULL), 1);
    assert_int_equal(pm_registry_open(path, &r, err, sizeof err), EA_OK);
    assert_true(pm_registry_find_uid(r, "02", NULL));
    pm_registry_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_vendor_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_imported_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replaceable_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_each_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_objects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_manifest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_onboard, setup, teardown),
        cmocka_unit_test(test_json_reader),
        cmocka_unit_test(test_b64url),
        cmocka_unit_test_setup_teardown(test_registry_file, setup, teardown),
    };
    unsetenv("EDGEAUTH_PROVISION_CRASH_AT");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
