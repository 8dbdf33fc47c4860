/* The cloud's broker-free parts: the topic jail and identity rules, the
 * audit-line writer, the registry (SQLite, two handles as broker and CLI),
 * the registry-file reader, and the plugin's session table and verdict
 * cache (cloud/sessions.c, cloud/vcache.c, compiled in here). The broker
 * itself is tested end to end by test_cloud.sh. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "cloud/audit.h"
#include "cloud/cloud_int.h"
#include "cloud/jail.h"
#include "cloud/registry.h"

/* ---- identities and the jail ------------------------------------------------- */

static void test_id_rules(void **state)
{
    static const struct {
        const char *id;
        size_t len; /* 0 = strlen */
        bool ok;
    } v[] = {
        { "dev-1", 0, true },
        { "A.b_c-9", 0, true },
        { "x", 0, true },
        { "", 0, false },
        { "dev+1", 0, false },
        { "dev#", 0, false },
        { "a/b", 0, false },
        { "$SYS", 0, false },
        { "has space", 0, false },
        { "tab\t", 0, false },
        { "caf\xc3\xa9", 0, false },          /* non-ASCII: look-alikes */
        { "dev-1\0evil", 10, false },         /* embedded NUL: stated length differs */
        { "0123456789012345678901234567890123456789012345678901234567890123", 0, true },   /* 64 */
        { "01234567890123456789012345678901234567890123456789012345678901234", 0, false }, /* 65 */
    };
    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t len = v[i].len ? v[i].len : strlen(v[i].id);
        if (ea_jail_id_ok(v[i].id, len) != v[i].ok)
            fail_msg("id case %zu ('%s'): expected %s", i, v[i].id, v[i].ok ? "ok" : "refused");
    }
}

static void test_jail(void **state)
{
    static const struct {
        const char *id, *s;
        bool topic_ok, filter_ok;
    } v[] = {
        { "dev-1", "devices/dev-1/telemetry", true, true },
        { "dev-1", "devices/dev-1", true, true },
        { "dev-1", "devices/dev-1/a/b/c", true, true },
        { "dev-1", "devices/dev-1/#", false, true },
        { "dev-1", "devices/dev-1/+/state", false, true },
        { "dev-1", "devices/dev-1/+", false, true },
        { "dev-1", "devices/dev-2/telemetry", false, false },
        { "dev-1", "devices/dev-10/telemetry", false, false }, /* prefix of another id */
        { "dev-1", "devices/dev-1x", false, false },
        { "dev-1", "devices/+/telemetry", false, false },
        { "dev-1", "devices/#", false, false },
        { "dev-1", "#", false, false },
        { "dev-1", "+/dev-1/telemetry", false, false },
        { "dev-1", "devices", false, false },
        { "dev-1", "devices/", false, false },
        { "dev-1", "Devices/dev-1/x", false, false },
        { "dev-1", "$SYS/broker/uptime", false, false },
        { "dev-1", "$share/g/devices/dev-1/x", false, false },
        { "dev-1", "/devices/dev-1/x", false, false },
        { "dev", "devices/dev-1/x", false, false },
        { "dev+", "devices/dev+/x", false, false }, /* a bad id never matches */
        { "", "devices//x", false, false },
    };
    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        if (ea_jail_topic_ok(v[i].id, v[i].s) != v[i].topic_ok)
            fail_msg("topic case %zu (%s, %s)", i, v[i].id, v[i].s);
        if (ea_jail_filter_ok(v[i].id, v[i].s) != v[i].filter_ok)
            fail_msg("filter case %zu (%s, %s)", i, v[i].id, v[i].s);
    }
    assert_true(ea_jail_backend_ok("devices/dev-1/commands"));
    assert_true(ea_jail_backend_ok("devices/+/telemetry"));
    assert_true(ea_jail_backend_ok("devices/#"));
    assert_false(ea_jail_backend_ok("#"));
    assert_false(ea_jail_backend_ok("$SYS/#"));
    assert_false(ea_jail_backend_ok("other/x"));
    assert_false(ea_jail_backend_ok(NULL));
}

/* ---- audit lines ------------------------------------------------------------- */

static void test_json_string(void **state)
{
    static const struct {
        const char *in, *out;
    } v[] = {
        { "plain", "\"plain\"" },
        { "q\"b\\", "\"q\\\"b\\\\\"" },
        { "nl\n\ttab\x01\x7f", "\"nl\\u000a\\u0009tab\\u0001\\u007f\"" },
        { "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91\"" },
        { "bad\xff", "\"bad\\ufffd\"" },
        { "cut\xc3", "\"cut\\ufffd\"" },
        { "overlong\xc0\xaf", "\"overlong\\ufffd\\ufffd\"" },
        { "surrogate\xed\xa0\x80", "\"surrogate\\ufffd\\ufffd\\ufffd\"" },
    };
    char buf[256];
    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t len = 0;
        assert_true(ea_audit_json_string(buf, sizeof buf, &len, v[i].in, 100));
        buf[len] = '\0';
        assert_string_equal(buf, v[i].out);
    }
    /* Does not fit: nothing written, length unchanged. */
    size_t len = 3;
    memcpy(buf, "abc", 3);
    assert_false(ea_audit_json_string(buf, 8, &len, "0123456789", 100));
    assert_int_equal(len, 3);
    /* max cuts the value. */
    len = 0;
    assert_true(ea_audit_json_string(buf, sizeof buf, &len, "0123456789", 4));
    buf[len] = '\0';
    assert_string_equal(buf, "\"0123\"");
}

static void test_audit_line(void **state)
{
    ea_audit_line *l = malloc(sizeof *l);
    char big[2000];
    const char *text;
    size_t len;
    json_object *o;
    (void)state;

    assert_non_null(l);
    ea_audit_begin(l, "connect");
    ea_audit_str(l, "subject", "CN=dev\"1\n,O=Evil\xff");
    ea_audit_str(l, "absent", NULL);
    ea_audit_int(l, "n", -42);
    ea_audit_bool(l, "b", true);
    text = ea_audit_end(l, &len);
    assert_true(len > 0 && text[len - 1] == '\n');
    assert_null(memchr(text, '\n', len - 1)); /* one line */
    o = json_tokener_parse(text);
    assert_non_null(o);
    assert_string_equal(json_object_get_string(json_object_object_get(o, "event")), "connect");
    assert_string_equal(json_object_get_string(json_object_object_get(o, "subject")), "CN=dev\"1\n,O=Evil\xef\xbf\xbd");
    assert_true(json_object_is_type(json_object_object_get(o, "absent"), json_type_null));
    assert_int_equal(json_object_get_int(json_object_object_get(o, "n")), -42);
    assert_true(json_object_get_boolean(json_object_object_get(o, "b")));
    assert_non_null(json_object_object_get(o, "time"));
    json_object_put(o);
    /* ea_audit_end twice: the same line. */
    assert_int_equal(strlen(ea_audit_end(l, NULL)), len);

    /* Too much: values are left out, the line stays valid JSON and says so. */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ea_audit_begin(l, "big");
    for (int i = 0; i < 40; i++)
        ea_audit_str(l, "v", big);
    text = ea_audit_end(l, &len);
    assert_true(len <= EA_AUDIT_LINE_MAX);
    o = json_tokener_parse(text);
    assert_non_null(o);
    assert_true(json_object_get_boolean(json_object_object_get(o, "truncated")));
    json_object_put(o);
    free(l);
}

static void test_audit_file(void **state)
{
    char *dir = tu_tmpdir("cloud-audit"), path[512], buf[4096];
    ea_audit *a = NULL;
    ea_audit_line l;
    int fd;
    ssize_t n;
    (void)state;

    snprintf(path, sizeof path, "%s/audit.jsonl", dir);
    assert_int_equal(ea_audit_open(path, &a, NULL, 0), EA_OK);
    for (int i = 0; i < 3; i++) {
        ea_audit_begin(&l, "e");
        ea_audit_int(&l, "i", i);
        assert_int_equal(ea_audit_write(a, &l), EA_OK);
    }
    /* Rotation: the old file moves away, reopen starts a new one. */
    char moved[600];
    snprintf(moved, sizeof moved, "%s.1", path);
    assert_int_equal(rename(path, moved), 0);
    assert_int_equal(ea_audit_reopen(a), EA_OK);
    ea_audit_begin(&l, "after");
    assert_int_equal(ea_audit_write(a, &l), EA_OK);
    ea_audit_close(a);
    assert_int_equal(ea_audit_write(NULL, &l), EA_OK); /* no file: dropped */

    fd = open(moved, O_RDONLY);
    assert_true(fd >= 0);
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "\"i\":2}\n"));
    assert_null(strstr(buf, "after"));
    fd = open(path, O_RDONLY);
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    assert_non_null(strstr(buf, "\"event\":\"after\""));
    tu_rmrf(dir);
    free(dir);
}

/* ---- the registry ------------------------------------------------------------ */

static ea_registry_device dev(const char *id, const char *serial, const char *fpr, const char *source)
{
    ea_registry_device d = { 0 };
    snprintf(d.device_id, sizeof d.device_id, "%s", id);
    snprintf(d.serial, sizeof d.serial, "%s", serial);
    snprintf(d.fingerprint, sizeof d.fingerprint, "%s", fpr);
    snprintf(d.source, sizeof d.source, "%s", source);
    return d;
}

static ea_err collect(void *ctx, const ea_registry_device *d)
{
    char *out = ctx;
    strcat(out, d->device_id);
    strcat(out, d->status == EA_REGISTRY_REVOKED ? "(r)," : ",");
    return EA_OK;
}

static void test_registry(void **state)
{
    char *dir = tu_tmpdir("cloud-reg"), path[512], err[256], seen[256];
    ea_registry *cli = NULL, *broker = NULL;
    ea_registry_device d, got;
    ea_registry_change ch;
    bool changed;
    uint64_t seq = 0;
    size_t act, rev;
    (void)state;

    snprintf(path, sizeof path, "%s/registry.db", dir);
    /* Without CREATE a missing registry is not made. */
    assert_int_equal(ea_registry_open(path, 0, &cli, err, sizeof err), EA_ERR_NOT_FOUND);
    assert_null(cli);
    assert_int_equal(ea_registry_open(path, EA_REGISTRY_CREATE, &cli, err, sizeof err), EA_OK);
    assert_int_equal(ea_registry_open(path, EA_REGISTRY_BROKER, &broker, err, sizeof err), EA_OK);
    assert_int_equal(ea_registry_changed(broker, &changed), EA_OK);
    assert_true(changed); /* the first answer */
    assert_int_equal(ea_registry_changed(broker, &changed), EA_OK);
    assert_false(changed);

    d = dev("dev-b", "1A2B", "", "provisioned");
    assert_int_equal(ea_registry_add(cli, &d, &ch), EA_OK);
    assert_int_equal(ch, EA_REGISTRY_ADDED);
    assert_int_equal(ea_registry_add(cli, &d, &ch), EA_OK);
    assert_int_equal(ch, EA_REGISTRY_UNCHANGED);
    d = dev("dev-b", "1a2b", "", "manifest"); /* the same certificate from a manifest */
    assert_int_equal(ea_registry_add(cli, &d, &ch), EA_OK);
    assert_int_equal(ch, EA_REGISTRY_UNCHANGED);
    snprintf(d.unique_id, sizeof d.unique_id, "04005001");
    assert_int_equal(ea_registry_add(cli, &d, &ch), EA_OK);
    assert_int_equal(ch, EA_REGISTRY_UPDATED); /* learns the unique id */
    assert_int_equal(ea_registry_get(cli, "dev-b", &got), EA_OK);
    assert_string_equal(got.source, "provisioned");
    assert_string_equal(got.unique_id, "04005001");
    d = dev("dev-b", "1A2C", "ab", "manifest"); /* re-provisioned: a new certificate */
    assert_int_equal(ea_registry_add(cli, &d, &ch), EA_OK);
    assert_int_equal(ch, EA_REGISTRY_UPDATED);
    d = dev("dev-a", "01", "", "auto-registered");
    assert_int_equal(ea_registry_add(cli, &d, &ch), EA_OK);
    /* Bad records are refused before SQL sees them. */
    d = dev("dev-c", "01", "", "guessed");
    assert_int_equal(ea_registry_add(cli, &d, NULL), EA_ERR_ARG);
    d = dev("", "01", "", "provisioned");
    assert_int_equal(ea_registry_add(cli, &d, NULL), EA_ERR_ARG);

    /* The broker's handle sees the CLI's commits. */
    assert_int_equal(ea_registry_changed(broker, &changed), EA_OK);
    assert_true(changed);
    assert_int_equal(ea_registry_get(broker, "dev-b", &got), EA_OK);
    assert_string_equal(got.serial, "1A2C");
    assert_string_equal(got.source, "manifest");
    assert_int_equal(got.status, EA_REGISTRY_ACTIVE);
    assert_int_equal(got.first_seen, 0);
    assert_true(got.added_at > 0);
    assert_int_equal(ea_registry_get(broker, "nobody", &got), EA_ERR_NOT_FOUND);

    /* Revocation: numbered, seen by the broker once, not renumbered twice. */
    assert_int_equal(ea_registry_revoked_since(broker, &seq, NULL, NULL), EA_OK);
    assert_int_equal(seq, 0);
    assert_int_equal(ea_registry_set_status(cli, "dev-b", EA_REGISTRY_REVOKED, &changed), EA_OK);
    assert_true(changed);
    assert_int_equal(ea_registry_set_status(cli, "dev-b", EA_REGISTRY_REVOKED, &changed), EA_OK);
    assert_false(changed);
    assert_int_equal(ea_registry_set_status(cli, "nobody", EA_REGISTRY_REVOKED, &changed), EA_ERR_NOT_FOUND);
    seen[0] = '\0';
    assert_int_equal(ea_registry_revoked_since(broker, &seq, collect, seen), EA_OK);
    assert_string_equal(seen, "dev-b(r),");
    assert_int_equal(seq, 1);
    seen[0] = '\0';
    assert_int_equal(ea_registry_revoked_since(broker, &seq, collect, seen), EA_OK);
    assert_string_equal(seen, "");
    /* An import does not bring a revoked device back. */
    d = dev("dev-b", "FF", "", "provisioned");
    assert_int_equal(ea_registry_add(cli, &d, &ch), EA_OK);
    assert_int_equal(ea_registry_get(cli, "dev-b", &got), EA_OK);
    assert_int_equal(got.status, EA_REGISTRY_REVOKED);
    assert_true(got.revoked_at > 0);
    /* Reinstate, revoke again: a new number. */
    assert_int_equal(ea_registry_set_status(cli, "dev-b", EA_REGISTRY_ACTIVE, &changed), EA_OK);
    assert_true(changed);
    assert_int_equal(ea_registry_set_status(cli, "dev-a", EA_REGISTRY_REVOKED, NULL), EA_OK);
    assert_int_equal(ea_registry_set_status(cli, "dev-b", EA_REGISTRY_REVOKED, NULL), EA_OK);
    seen[0] = '\0';
    assert_int_equal(ea_registry_revoked_since(broker, &seq, collect, seen), EA_OK);
    assert_string_equal(seen, "dev-a(r),dev-b(r),");
    assert_int_equal(seq, 3);

    /* last_seen in one batch; first_seen set once. */
    ea_registry_seen sv[3] = { { "dev-a", 1000 }, { "nobody", 5 }, { "dev-a", 900 } };
    assert_int_equal(ea_registry_touch(broker, sv, 3), EA_OK);
    sv[0].when = 2000;
    assert_int_equal(ea_registry_touch(broker, sv, 1), EA_OK);
    assert_int_equal(ea_registry_get(cli, "dev-a", &got), EA_OK);
    assert_int_equal(got.first_seen, 1000);
    assert_int_equal(got.last_seen, 2000);

    seen[0] = '\0';
    assert_int_equal(ea_registry_list(cli, collect, seen), EA_OK);
    assert_string_equal(seen, "dev-a(r),dev-b(r),");
    assert_int_equal(ea_registry_count(cli, &act, &rev), EA_OK);
    assert_int_equal(act, 0);
    assert_int_equal(rev, 2);
    ea_registry_close(broker);
    ea_registry_close(cli);
    ea_registry_close(NULL);

    /* Not a registry: refused with a reason. */
    char other[600];
    snprintf(other, sizeof other, "%s/other.txt", dir);
    FILE *f = fopen(other, "w");
    assert_non_null(f);
    fputs("this is not a database, not at all, just text........................................", f);
    fclose(f);
    assert_int_not_equal(ea_registry_open(other, 0, &cli, err, sizeof err), EA_OK);
    assert_true(err[0] != '\0');
    tu_rmrf(dir);
    free(dir);
}

/* ---- registry files ------------------------------------------------------------ */

static void test_parse_line(void **state)
{
    static const char good[] =
        "{\"device_id\":\"dev-0001\",\"unique_id\":\"04005001AABB\",\"serial\":\"5a0f\","
        "\"fingerprint\":\"15141DD8AA0243E9E9E83FD6206623A964E9B7604B0500002DC6A8307DAEC1C2\","
        "\"source\":\"provisioned\",\"attested\":true,\"time\":\"2025-01-01T00:00:00Z\",\"x\":{\"a\":[1,2.5e3,null]}}";
    static const struct {
        const char *line;
        const char *why; /* substring of the error */
    } bad[] = {
        { "", "not a JSON object" },
        { "[]", "not a JSON object" },
        { "{}", "no device_id" },
        { "{\"device_id\":\"a\",\"device_id\":\"b\"}", "twice" },
        { "{\"device_id\":\"dev+1\"}", "usable identity" },
        { "{\"device_id\":\"dev\\u00001\"}", "must be a string" },
        { "{\"device_id\":1}", "must be a string" },
        { "{\"device_id\":\"d\",\"source\":\"guess\"}", "source" },
        { "{\"device_id\":\"d\",\"fingerprint\":\"abc\"}", "fingerprint" },
        { "{\"device_id\":\"d\",\"serial\":\"xyz\"}", "serial" },
        { "{\"device_id\":\"d\"} x", "after the object" },
        { "{\"device_id\":\"d\",}", "member name" },
        { "{\"device_id\":\"d\"", "expected" },
        { "{\"device_id\":\"d\",\"deep\":[[[[[[[[[[[1]]]]]]]]]]]}", "bad value" },
        { "{\"device_id\":\"d\",\"v\":tru}", "bad value" },
    };
    ea_registry_device d;
    char err[256];
    (void)state;

    assert_int_equal(ea_registry_parse_line(good, strlen(good), &d, err, sizeof err), EA_OK);
    assert_string_equal(d.device_id, "dev-0001");
    assert_string_equal(d.unique_id, "04005001aabb");
    assert_string_equal(d.serial, "5A0F");
    assert_string_equal(d.fingerprint, "15141dd8aa0243e9e9e83fd6206623a964e9b7604b0500002dc6a8307daec1c2");
    assert_string_equal(d.source, "provisioned");
    /* Defaults, escapes, surrounding blanks. */
    static const char minimal[] = "  {\"device_id\":\"d\\u0065v\"}\r ";
    assert_int_equal(ea_registry_parse_line(minimal, strlen(minimal), &d, err, sizeof err), EA_OK);
    assert_string_equal(d.device_id, "dev");
    assert_string_equal(d.source, "provisioned");
    assert_string_equal(d.serial, "");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (ea_registry_parse_line(bad[i].line, strlen(bad[i].line), &d, err, sizeof err) != EA_ERR_MALFORMED)
            fail_msg("bad line %zu accepted: %s", i, bad[i].line);
        if (!strstr(err, bad[i].why))
            fail_msg("bad line %zu: error '%s' does not say '%s'", i, err, bad[i].why);
    }
    /* Every prefix of a good line is refused, none crashes. */
    for (size_t n = 0; n < strlen(good); n++)
        assert_int_equal(ea_registry_parse_line(good, n, &d, err, sizeof err), EA_ERR_MALFORMED);
}

/* ---- the plugin's session table and verdict cache ---------------------------------- */

/* Client pointers are only compared: any distinct addresses will do. */
static char clients[3000];
#define CLIENT(i) ((const struct mosquitto *)(const void *)&clients[i])

static void test_sessions(void **state)
{
    cloud_sessions t = { 0 };
    cloud_session s = { 0 }, *e;
    size_t i, n;
    (void)state;

    for (i = 0; i < 2000; i++) {
        s.client = CLIENT(i);
        snprintf(s.id, sizeof s.id, "dev-%zu", i);
        s.cert = NULL;
        assert_true(cloud_sessions_put(&t, &s));
    }
    assert_int_equal(t.live, 2000);
    /* Remove every other one: tombstones, then re-insert over them. */
    for (i = 0; i < 2000; i += 2) {
        e = cloud_sessions_get(&t, CLIENT(i));
        assert_non_null(e);
        cloud_sessions_del(&t, e);
    }
    assert_int_equal(t.live, 1000);
    assert_null(cloud_sessions_get(&t, CLIENT(0)));
    for (int round = 0; round < 5; round++) /* churn: the table must not fill up with tombstones */
        for (i = 2000; i < 3000; i++) {
            s.client = CLIENT(i);
            snprintf(s.id, sizeof s.id, "new-%zu", i);
            assert_true(cloud_sessions_put(&t, &s));
            cloud_sessions_del(&t, cloud_sessions_get(&t, CLIENT(i)));
        }
    assert_int_equal(t.live, 1000);
    assert_true(t.used < t.cap);
    /* Replacing keeps one entry. */
    s.client = CLIENT(1);
    snprintf(s.id, sizeof s.id, "dev-1-again");
    assert_true(cloud_sessions_put(&t, &s));
    assert_int_equal(t.live, 1000);
    assert_string_equal(cloud_sessions_get(&t, CLIENT(1))->id, "dev-1-again");
    e = cloud_sessions_find_id(&t, "dev-1999");
    assert_non_null(e);
    assert_ptr_equal(e->client, CLIENT(1999));
    assert_null(cloud_sessions_find_id(&t, "dev-2"));
    for (i = 0, n = 0; cloud_sessions_next(&t, &i);)
        n++;
    assert_int_equal(n, 1000);
    cloud_sessions_free(&t);
    assert_null(cloud_sessions_get(&t, CLIENT(1)));
}

static void test_vcache(void **state)
{
    cloud_vcache v;
    uint8_t a[32] = { 1, 2, 3 }, b[32] = { 1, 2, 3 };
    (void)state;

    b[31] = 9; /* same slot (the first 8 bytes pick it), another certificate */
    assert_true(cloud_vcache_init(&v, 1000));
    assert_int_equal(v.cap, 1024);
    assert_false(cloud_vcache_hit(&v, a, 1, 0));
    cloud_vcache_put(&v, a, 1, 1000);
    assert_true(cloud_vcache_hit(&v, a, 1, 999));
    assert_false(cloud_vcache_hit(&v, a, 1, 1000)); /* expired */
    assert_false(cloud_vcache_hit(&v, a, 2, 10));   /* trust changed */
    assert_false(cloud_vcache_hit(&v, b, 1, 10));   /* not the same certificate */
    cloud_vcache_put(&v, b, 1, 1000);               /* evicts a */
    assert_false(cloud_vcache_hit(&v, a, 1, 10));
    assert_true(cloud_vcache_hit(&v, b, 1, 10));
    assert_true(v.hits == 2 && v.misses == 5);
    cloud_vcache_free(&v);
    /* Off: never hits. */
    assert_true(cloud_vcache_init(&v, 0));
    assert_int_equal(v.cap, 0);
    cloud_vcache_put(&v, a, 1, 1000);
    assert_false(cloud_vcache_hit(&v, a, 1, 10));
    cloud_vcache_free(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_rules),   cmocka_unit_test(test_jail),     cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_audit_line), cmocka_unit_test(test_audit_file), cmocka_unit_test(test_registry),
        cmocka_unit_test(test_parse_line), cmocka_unit_test(test_sessions),   cmocka_unit_test(test_vcache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
