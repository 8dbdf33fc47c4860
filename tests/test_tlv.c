/* The TLV cursor against a data file of cases, and every prefix of each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/tlv.h"
#include "common/util.h"
#include "tests/testutil.h"

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

static void test_tlv_cases(void **state)
{
    (void)state;
    FILE *f = fopen(EA_SOURCE_DIR "/tests/data/tlv_next.txt", "r");
    char line[256];
    int cases = 0;
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char *field[5];
        char *p = line;
        for (int i = 0; i < 5; i++) {
            char *colon = strchr(p, ':');
            if (colon)
                *colon = '\0';
            field[i] = trim(p);
            p = colon ? colon + 1 : p + strlen(p);
        }
        uint8_t in[64], val[64];
        size_t inl = sizeof in, vl = sizeof val;
        assert_int_equal(ea_hex_decode(field[1], in, &inl), EA_OK);
        assert_int_equal(ea_hex_decode(field[4], val, &vl), EA_OK);
        ea_cur c = ea_cur_make(in, inl), v;
        uint8_t tag;
        ea_err rc = ea_tlv_next(&c, &tag, &v);
        if (!strcmp(field[2], "OK")) {
            assert_int_equal(rc, EA_OK);
            assert_int_equal(tag, (uint8_t)strtoul(field[3], NULL, 16));
            assert_int_equal(v.n, vl);
            assert_memory_equal(v.p, val, vl);
            assert_int_equal(c.n, 0);
            /* Every proper prefix of a valid TLV is malformed, cursor untouched. */
            for (size_t k = 0; k < inl; k++) {
                ea_cur pc = ea_cur_make(in, k);
                assert_int_equal(ea_tlv_next(&pc, &tag, &v), EA_ERR_MALFORMED);
                assert_int_equal(pc.n, k);
            }
        } else {
            assert_int_equal(rc, EA_ERR_MALFORMED);
            assert_int_equal(c.n, inl); /* the cursor moves only on success */
        }
        cases++;
    }
    fclose(f);
    assert_true(cases >= 10);
}

static void test_wbuf_overflow_is_sticky(void **state)
{
    (void)state;
    uint8_t b[4];
    ea_wbuf w = ea_wbuf_make(b, sizeof b);
    ea_wbuf_u16(&w, 0x1234);
    ea_wbuf_u32(&w, 1); /* does not fit */
    ea_wbuf_u8(&w, 1);  /* would fit, but the writer has failed */
    assert_true(w.overflow);
    assert_int_equal(w.len, 2);
    uint8_t big[300];
    uint8_t out[400];
    memset(big, 0xAB, sizeof big);
    w = ea_wbuf_make(out, sizeof out);
    ea_tlv_put(&w, 0x41, big, 0x7F);
    assert_int_equal(out[1], 0x7F);
    w = ea_wbuf_make(out, sizeof out);
    ea_tlv_put(&w, 0x41, big, 0x80);
    assert_memory_equal(out, "\x41\x81\x80", 3);
    w = ea_wbuf_make(out, sizeof out);
    ea_tlv_put(&w, 0x41, big, 0x100);
    assert_memory_equal(out, "\x41\x82\x01\x00", 4);
    w = ea_wbuf_make(out, sizeof out);
    ea_tlv_put_long(&w, 0x41, big, 2);
    assert_memory_equal(out, "\x41\x82\x00\x02\xAB\xAB", 6);
    assert_false(w.overflow);
}

static void test_err_strings(void **state)
{
    (void)state;
    for (int e = 0; e < EA_ERR_COUNT_; e++)
        assert_string_not_equal(ea_err_str((ea_err)e), "unknown error");
    assert_string_equal(ea_err_str(EA_ERR_COUNT_), "unknown error");
    assert_string_equal(ea_err_str((ea_err)-1), "unknown error");
}

static void test_hex(void **state)
{
    (void)state;
    uint8_t b[4];
    size_t n = sizeof b;
    assert_int_equal(ea_hex_decode("0a 0B:ff", b, &n), EA_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(b, "\x0a\x0b\xff", 3);
    n = sizeof b;
    assert_int_equal(ea_hex_decode("abc", b, &n), EA_ERR_MALFORMED);
    n = sizeof b;
    assert_int_equal(ea_hex_decode("zz", b, &n), EA_ERR_MALFORMED);
    n = 1;
    assert_int_equal(ea_hex_decode("0102", b, &n), EA_ERR_BUF_TOO_SMALL);
    char out[8];
    ea_hex_encode((const uint8_t *)"\x01\xab\xff", 3, out);
    assert_string_equal(out, "01abff");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tlv_cases),
        cmocka_unit_test(test_wbuf_overflow_is_sticky),
        cmocka_unit_test(test_err_strings),
        cmocka_unit_test(test_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
