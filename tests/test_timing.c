/* The emulator's SE050 timing model and APDU log (emu/timing.c): each
 * command takes at least what NXP measured for it (the SCP03 figure when it
 * came wrapped), the log names every command with its header, SW and
 * channel kind, and never carries data. Only lower bounds are asserted:
 * the model must not be faster than the part it stands for. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "edgeauth/host.h"
#include "testutil.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

typedef struct fix {
    char *dir;
    char chip[700], keys[700], log[700], uri[1500];
} fix;

static int setup(void **state)
{
    fix *f = calloc(1, sizeof *f);
    char err[256];
    f->dir = tu_tmpdir("timing");
    snprintf(f->chip, sizeof f->chip, "%s/chip", f->dir);
    snprintf(f->keys, sizeof f->keys, "%s/scp03.keys", f->dir);
    snprintf(f->log, sizeof f->log, "%s/apdu.log", f->dir);
    ea_emu_init_opts io = { .scp03_keys_out = f->keys };
    if (ea_emu_init(f->chip, &io, err, sizeof err) != EA_OK)
        fail_msg("init: %s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix *f = *state;
    unsetenv("EDGEAUTH_SE_TIMING");
    unsetenv("EDGEAUTH_SE_APDU_LOG");
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static char *slurp(const char *path)
{
    uint8_t *b = NULL;
    size_t n = 0;
    assert_int_equal(ea_file_read(path, 1 << 20, &b, &n), EA_OK);
    char *s = malloc(n + 1);
    memcpy(s, b, n);
    s[n] = '\0';
    free(b);
    return s;
}

static size_t count(const char *s, const char *needle)
{
    size_t c = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p++)
        c++;
    return c;
}

static void test_se050_model(void **state)
{
    fix *f = *state;
    ea_host *h;
    char err[300], hex[65];
    uint8_t dg[32], sig[80];
    size_t sl = sizeof sig;

    setenv("EDGEAUTH_SE_TIMING", "se050", 1);
    setenv("EDGEAUTH_SE_APDU_LOG", f->log, 1);
    for (size_t i = 0; i < sizeof dg; i++)
        dg[i] = (uint8_t)(0xA0 + i);

    /* Plain: SELECT 132 ms, ECDSASign 45 ms. */
    snprintf(f->uri, sizeof f->uri, "emu:%s", f->chip);
    double t0 = now_ms();
    assert_int_equal(ea_host_open(f->uri, NULL, &h, err, sizeof err), EA_OK);
    double t_open = now_ms() - t0;
    assert_int_equal(ea_host_ec_generate(h, 0x7B000001u, EA_CURVE_NIST_P256, NULL, false), EA_OK);
    t0 = now_ms();
    assert_int_equal(ea_host_ecdsa_sign(h, 0x7B000001u, EA_SIG_ECDSA_SHA256, dg, 32, sig, &sl), EA_OK);
    double t_sign = now_ms() - t0;
    ea_host_close(h);
    assert_true(t_open >= 132.0);
    assert_true(t_sign >= 45.0);

    /* Through SCP03: the handshake adds 2 x 27.5 ms, the sign takes 67 ms. */
    snprintf(f->uri, sizeof f->uri, "emu:%s?scp03=%s", f->chip, f->keys);
    t0 = now_ms();
    assert_int_equal(ea_host_open(f->uri, NULL, &h, err, sizeof err), EA_OK);
    double t_open_scp = now_ms() - t0;
    sl = sizeof sig;
    t0 = now_ms();
    assert_int_equal(ea_host_ecdsa_sign(h, 0x7B000001u, EA_SIG_ECDSA_SHA256, dg, 32, sig, &sl), EA_OK);
    double t_sign_scp = now_ms() - t0;
    ea_host_close(h);
    assert_true(t_open_scp >= 132.0 + 55.0);
    assert_true(t_sign_scp >= 67.0);
    print_message("se050 model: open %.1f ms (SCP03 %.1f), sign %.1f ms (SCP03 %.1f)\n", t_open, t_open_scp, t_sign,
                  t_sign_scp);

    /* The log: every command named, wrapped ones marked, no data. */
    char *log = slurp(f->log);
    assert_int_equal(count(log, " SELECT "), 2);
    assert_int_equal(count(log, " INITIALIZE-UPDATE "), 1);
    assert_int_equal(count(log, " EXTERNAL-AUTHENTICATE "), 1);
    assert_int_equal(count(log, "ECDSASign                    plain"), 1);
    assert_int_equal(count(log, "ECDSASign                    scp03"), 1);
    assert_int_equal(count(log, "WriteECKey"), 1);
    assert_int_equal(count(log, " unknown "), 0);
    assert_non_null(strstr(log, "80 03 0C 09")); /* the header, as on the wire */
    ea_hex_encode(dg, sizeof dg, hex);
    assert_null(strstr(log, hex));
    for (char *p = hex; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_null(strstr(log, hex));
    free(log);
}

static void test_unknown_model_refused(void **state)
{
    fix *f = *state;
    ea_emu *emu;
    char err[256] = "";
    ea_emu_opts o = { .timing = "se051x" };
    assert_int_equal(ea_emu_open(f->chip, &o, &emu, err, sizeof err), EA_ERR_ARG);
    assert_non_null(strstr(err, "se051x"));
    ea_emu_opts l = { .apdu_log = "/nonexistent-dir/apdu.log" };
    assert_int_equal(ea_emu_open(f->chip, &l, &emu, err, sizeof err), EA_ERR_IO);
    assert_non_null(strstr(err, "APDU log"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_se050_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_model_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
