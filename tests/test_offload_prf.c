/* PRF offload against published vectors: the provider's TLS1-PRF (the SE's
 * TLSPerformPRF) and OpenSSL's default TLS1-PRF on the NIST CAVS 17.8 TLS 1.2
 * SHA-256 vectors and the NIST ACVP RFC 7627 (extended master secret)
 * samples, both compared with the expected master secret and key block; the
 * APDU log proves which outputs the SE computed. Also: the offload
 * algorithms exist only when `offload` asks for them. Skipped, with the
 * reason, when ../shared/vectors (or $EDGEAUTH_VECTORS) is absent. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "edgeauth/provider.h"
#include "testutil.h"

typedef struct fixture {
    char *dir;
    char log[1200];
    OSSL_LIB_CTX *libctx;
    OSSL_PROVIDER *def, *ea;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char err[256] = "", uri[1100];
    ea_emu_init_opts io = { 0 };
    ea_provider_opts po = { .offload = "prf" };

    f->dir = tu_tmpdir("offload");
    if (ea_emu_init(f->dir, &io, err, sizeof err) != EA_OK)
        fail_msg("ea_emu_init: %s", err);
    snprintf(uri, sizeof uri, "emu:%s", f->dir);
    setenv("EDGEAUTH_SE", uri, 1);
    snprintf(f->log, sizeof f->log, "%s/apdu.log", f->dir);
    setenv("EDGEAUTH_APDU_LOG", f->log, 1); /* read by the provider at load */
    assert_non_null(f->libctx = OSSL_LIB_CTX_new());
    assert_non_null(f->def = OSSL_PROVIDER_load(f->libctx, "default"));
    assert_int_equal(ea_provider_load_ex(f->libctx, &po, &f->ea), EA_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    OSSL_PROVIDER_unload(f->ea);
    OSSL_PROVIDER_unload(f->def);
    OSSL_LIB_CTX_free(f->libctx);
    unsetenv("EDGEAUTH_APDU_LOG");
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* APDUs named name in the log so far. */
static unsigned log_count(const fixture *f, const char *name)
{
    FILE *fp = fopen(f->log, "r");
    char line[256];
    unsigned n = 0;
    if (!fp)
        return 0;
    while (fgets(line, sizeof line, fp)) {
        const char *sp = strrchr(line, ' ');
        if (sp && !strncmp(sp + 1, name, strlen(name)) && sp[1 + strlen(name)] == '\n')
            n++;
    }
    fclose(fp);
    return n;
}

/* TLS1-PRF(secret, label || s1 || s2) from the provider named by propq. */
static void prf(const fixture *f, const char *propq, const uint8_t *secret, size_t sl, const char *label,
                const uint8_t *s1, size_t l1, const uint8_t *s2, size_t l2, uint8_t *out, size_t n)
{
    EVP_KDF *kdf = EVP_KDF_fetch(f->libctx, "TLS1-PRF", propq);
    assert_non_null(kdf);
    EVP_KDF_CTX *k = EVP_KDF_CTX_new(kdf);
    OSSL_PARAM ps[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, (void *)secret, sl),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, (void *)label, strlen(label)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, (void *)s1, l1),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, (void *)s2, l2),
        OSSL_PARAM_construct_end(),
    };
    assert_non_null(k);
    if (EVP_KDF_derive(k, out, n, ps) != 1)
        fail_msg("TLS1-PRF (%s, \"%s\") failed", propq, label);
    EVP_KDF_CTX_free(k);
    EVP_KDF_free(kdf);
}

/* Both implementations, and the expected value. */
static void check(const fixture *f, const char *what, unsigned tc, const uint8_t *secret, size_t sl,
                  const char *label, const uint8_t *s1, size_t l1, const uint8_t *s2, size_t l2,
                  const uint8_t *want, size_t n)
{
    uint8_t se[512], def[512];
    assert_true(n <= sizeof se);
    prf(f, "provider=edgeauth", secret, sl, label, s1, l1, s2, l2, se, n);
    prf(f, "provider=default", secret, sl, label, s1, l1, s2, l2, def, n);
    if (memcmp(def, want, n) != 0)
        fail_msg("%s case %u: the default provider's TLS1-PRF disagrees with the vector", what, tc);
    if (memcmp(se, want, n) != 0)
        fail_msg("%s case %u: the SE's TLS1-PRF (\"%s\") disagrees with the vector", what, tc, label);
}

static char *field(char *line, const char *key)
{
    size_t k = strlen(key);
    if (strncmp(line, key, k) || strncmp(line + k, " = ", 3))
        return NULL;
    char *v = line + k + 3;
    v[strcspn(v, "\r\n")] = '\0';
    return v;
}

/* CAVS 17.8 SP 800-135, [TLS 1.2, SHA-256]: master secret and key block,
 * both label || 64 bytes of randoms, so both in the SE. */
static void test_cavs_tls12(void **state)
{
    fixture *f = *state;
    const char *dir = tu_vectors_dir();
    char path[1200], *line = NULL;
    size_t cap = 0;
    FILE *fp;
    bool in12 = false;
    unsigned cases = 0;
    uint8_t *v[7] = { 0 };
    size_t l[7] = { 0 };
    static const char *const keys[7] = { "pre_master_secret", "serverHello_random", "clientHello_random",
                                         "server_random", "client_random", "master_secret", "key_block" };

    if (!dir) {
        print_message("skipped: vectors folder absent (set EDGEAUTH_VECTORS or provide ../shared/vectors)\n");
        skip();
    }
    snprintf(path, sizeof path, "%s/nist-cavs-tls-kdf/tlsprf_vectors.txt", dir);
    if (!(fp = fopen(path, "r"))) {
        print_message("skipped: cannot read %s\n", path);
        skip();
    }
    unsigned before = log_count(f, "TLSPerformPRF");
    while (getline(&line, &cap, fp) >= 0) {
        if (line[0] == '[' && !strncmp(line, "[TLS", 4))
            in12 = !strncmp(line, "[TLS 1.2, SHA-256]", 18);
        if (!in12)
            continue;
        for (int i = 0; i < 7; i++) {
            char *val = field(line, keys[i]);
            if (val) {
                free(v[i]);
                v[i] = tu_hex(val, &l[i]);
            }
        }
        if (v[6]) { /* key_block closes a case */
            uint8_t ms[48];
            for (int i = 0; i < 7; i++)
                assert_non_null(v[i]);
            assert_int_equal(l[5], 48);
            check(f, "CAVS master secret", cases, v[0], l[0], "master secret", v[2], l[2], v[1], l[1], v[5], 48);
            memcpy(ms, v[5], 48);
            check(f, "CAVS key block", cases, ms, 48, "key expansion", v[3], l[3], v[4], l[4], v[6], l[6]);
            for (int i = 0; i < 7; i++) {
                free(v[i]);
                v[i] = NULL;
            }
            cases++;
        }
    }
    free(line);
    fclose(fp);
    for (int i = 0; i < 7; i++)
        free(v[i]);
    assert_true(cases > 0);
    /* Every output of ours came from the SE: 2 TLSPerformPRF per case. */
    assert_int_equal(log_count(f, "TLSPerformPRF") - before, 2 * cases);
    print_message("%u CAVS TLS 1.2 cases: master secret and key block by TLSPerformPRF, equal to the "
                  "vectors and to the default provider\n", cases);
}

/* ACVP RFC 7627 samples: the extended master secret (seed: the session hash)
 * does not fit TLSPerformPRF and runs on the host; the key block is the SE's. */
static void test_acvp_ems(void **state)
{
    fixture *f = *state;
    json_object *root = tu_vectors_json("nist-acvp-tls12-kdf/TLS-v1.2-KDF-RFC7627/internalProjection.json");
    json_object *groups;
    unsigned cases = 0;

    if (!root)
        skip();
    unsigned before = log_count(f, "TLSPerformPRF");
    assert_true(json_object_object_get_ex(root, "testGroups", &groups));
    for (size_t g = 0; g < json_object_array_length(groups); g++) {
        json_object *grp = json_object_array_get_idx(groups, g), *alg, *tests;
        if (!json_object_object_get_ex(grp, "hashAlg", &alg) || strcmp(json_object_get_string(alg), "SHA2-256"))
            continue;
        assert_true(json_object_object_get_ex(grp, "tests", &tests));
        for (size_t i = 0; i < json_object_array_length(tests); i++) {
            json_object *t = json_object_array_get_idx(tests, i);
            size_t pl, hl, cl, sl, ml, kl;
            uint8_t *pms = tu_json_hex(t, "preMasterSecret", &pl), *sh = tu_json_hex(t, "sessionHash", &hl);
            uint8_t *cr = tu_json_hex(t, "clientRandom", &cl), *sr = tu_json_hex(t, "serverRandom", &sl);
            uint8_t *ms = tu_json_hex(t, "masterSecret", &ml), *kb = tu_json_hex(t, "keyBlock", &kl);
            check(f, "ACVP extended master secret", (unsigned)i, pms, pl, "extended master secret", sh, hl, NULL, 0,
                  ms, ml);
            check(f, "ACVP key block", (unsigned)i, ms, ml, "key expansion", sr, sl, cr, cl, kb, kl);
            free(pms), free(sh), free(cr), free(sr), free(ms), free(kb);
            cases++;
        }
    }
    json_object_put(root);
    assert_true(cases > 0);
    assert_int_equal(log_count(f, "TLSPerformPRF") - before, cases);
    print_message("%u ACVP RFC 7627 cases: EMS on the host, key block by TLSPerformPRF\n", cases);
}

/* Without `offload`, nothing of the kind is offered; a bad word is refused. */
static void test_offload_gating(void **state)
{
    fixture *f = *state;
    OSSL_LIB_CTX *lc = OSSL_LIB_CTX_new();
    OSSL_PROVIDER *ea = NULL, *def;
    ea_provider_opts bad = { .offload = "ecdhe,turbo" }, other = { .offload = "ecdhe" };
    (void)f;

    assert_non_null(lc);
    assert_non_null(def = OSSL_PROVIDER_load(lc, "default"));
    assert_int_equal(ea_provider_load_ex(lc, &bad, &ea), EA_ERR_ARG);
    assert_int_equal(ea_provider_load(lc, &ea), EA_OK);
    EVP_KDF *k = EVP_KDF_fetch(lc, "TLS1-PRF", "provider=edgeauth");
    assert_null(k);
    k = EVP_KDF_fetch(lc, "TLS13-KDF", "provider=edgeauth");
    assert_null(k);
    EVP_KEYEXCH *x = EVP_KEYEXCH_fetch(lc, "ECDH", "provider=edgeauth");
    assert_null(x);
    /* Loaded already without offload: another set cannot be honoured. */
    OSSL_PROVIDER *again = NULL;
    assert_int_equal(ea_provider_load_ex(lc, &other, &again), EA_ERR_CONDITIONS);
    OSSL_PROVIDER_unload(ea);
    OSSL_PROVIDER_unload(def);
    OSSL_LIB_CTX_free(lc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cavs_tls12, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acvp_ems, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offload_gating, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
