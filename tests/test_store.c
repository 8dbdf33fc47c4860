/* The sealed object store: round trips, tamper and truncation detection,
 * rollback and swap detection, crash safety under SIGKILL, the directory
 * lock and the sealing-secret sources. */
#include "tests/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "emu/store.h"

#define ENV_KEY "EDGEAUTH_SE_SEAL_KEY"

/* ---- fixture and helpers ----------------------------------------------- */

typedef struct fx {
    char *tmp;
    char dir[600]; /* tmp/chip: ea_store_create makes it */
} fx;

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    unsetenv(ENV_KEY);
    f->tmp = tu_tmpdir("store");
    snprintf(f->dir, sizeof f->dir, "%s/chip", f->tmp);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    unsetenv(ENV_KEY);
    tu_rmrf(f->tmp);
    free(f->tmp);
    free(f);
    return 0;
}

static ea_store *open_ok(const char *dir, const ea_store_opts *opts)
{
    char err[512] = "";
    ea_store *st = NULL;
    ea_err rc = ea_store_open(dir, opts, &st, err, sizeof err);
    if (rc != EA_OK)
        fail_msg("ea_store_open(%s): %s: %s", dir, ea_err_str(rc), err);
    return st;
}

static ea_store *create_open(const fx *f)
{
    assert_int_equal(ea_store_create(f->dir, NULL), EA_OK);
    return open_ok(f->dir, NULL);
}

static void put(ea_store *st, uint32_t id, const void *meta, size_t ml, const void *val, size_t vl)
{
    ea_store_rec r = { id, meta, ml, val, vl };
    ea_err rc = ea_store_put(st, &r);
    if (rc != EA_OK)
        fail_msg("ea_store_put(0x%08" PRIX32 "): %s", id, ea_err_str(rc));
}

static void put_str(ea_store *st, uint32_t id, const char *meta, const char *val)
{
    put(st, id, meta, strlen(meta), val, strlen(val));
}

static uint8_t *file_get(const char *path, size_t *len)
{
    uint8_t *b = NULL;
    ea_err rc = ea_file_read(path, 1u << 24, &b, len);
    if (rc != EA_OK)
        fail_msg("read %s: %s", path, ea_err_str(rc));
    return b;
}

/* Rewrite in place (not via rename): what a bit rot or an attacker with
 * write access does. */
static void file_put(const char *path, const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_true(write(fd, p, n) == (ssize_t)n);
    close(fd);
}

/* The one blob file of id in objects/ (asserts there is exactly one). */
static void blob_path(const fx *f, uint32_t id, char *out, size_t cap, uint64_t *gen)
{
    char objs[700], prefix[16];
    DIR *d;
    struct dirent *e;
    int found = 0;

    snprintf(objs, sizeof objs, "%s/objects", f->dir);
    snprintf(prefix, sizeof prefix, "%08" PRIx32 ".", id);
    d = opendir(objs);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, 9) != 0 || strlen(e->d_name) != 25)
            continue;
        found++;
        snprintf(out, cap, "%s/%s", objs, e->d_name);
        if (gen)
            *gen = strtoull(e->d_name + 9, NULL, 16);
    }
    closedir(d);
    assert_int_equal(found, 1);
}

static void index_path(const fx *f, char *out, size_t cap)
{
    snprintf(out, cap, "%s/objects/index", f->dir);
}

/* What a foreach saw. */
#define SEEN_MAX 64
typedef struct seen {
    size_t n;
    uint32_t id[SEEN_MAX];
    ea_err status[SEEN_MAX];
    uint8_t meta[SEEN_MAX][EA_STORE_META_MAX];
    size_t meta_len[SEEN_MAX];
    uint8_t *value[SEEN_MAX];
    size_t value_len[SEEN_MAX];
} seen;

static ea_err collect(void *ctx, ea_err status, const ea_store_rec *rec)
{
    seen *s = ctx;
    size_t i = s->n++;

    assert_true(i < SEEN_MAX);
    s->id[i] = rec->id;
    s->status[i] = status;
    if (status != EA_OK) {
        /* nothing unauthenticated may leak out */
        assert_null(rec->meta);
        assert_null(rec->value);
        assert_int_equal(rec->meta_len, 0);
        assert_int_equal(rec->value_len, 0);
        return EA_OK;
    }
    assert_true(rec->meta_len <= EA_STORE_META_MAX);
    memcpy(s->meta[i], rec->meta, rec->meta_len);
    s->meta_len[i] = rec->meta_len;
    s->value[i] = malloc(rec->value_len + 1);
    assert_non_null(s->value[i]);
    memcpy(s->value[i], rec->value, rec->value_len);
    s->value_len[i] = rec->value_len;
    return EA_OK;
}

static void seen_free(seen *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->value[i]);
    memset(s, 0, sizeof *s);
}

static void scan(ea_store *st, seen *s)
{
    memset(s, 0, sizeof *s);
    assert_int_equal(ea_store_foreach(st, collect, s), EA_OK);
    for (size_t i = 1; i < s->n; i++)
        assert_true(s->id[i - 1] < s->id[i]); /* ascending */
}

static ea_err status_of(const seen *s, uint32_t id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->id[i] == id)
            return s->status[i];
    return EA_ERR_NOT_FOUND;
}

static void expect_obj(const seen *s, uint32_t id, const char *meta, const char *val)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->id[i] != id)
            continue;
        assert_int_equal(s->status[i], EA_OK);
        assert_int_equal(s->meta_len[i], strlen(meta));
        assert_memory_equal(s->meta[i], meta, strlen(meta));
        assert_int_equal(s->value_len[i], strlen(val));
        assert_memory_equal(s->value[i], val, strlen(val));
        return;
    }
    fail_msg("object 0x%08" PRIX32 " not visited", id);
}

/* Three objects, A in the middle, used by the tamper tests. */
#define ID_A 0xF0000100u
#define ID_B 0x00000010u
#define ID_C 0xFFFFFFFFu
static void put_abc(ea_store *st)
{
    put_str(st, ID_C, "meta-C", "value of C");
    put_str(st, ID_A, "meta-A-0123456789",
            "the value of object A, long enough to span more than one AES block......");
    put_str(st, ID_B, "", "B");
}

static void expect_abc_intact(ea_store *st)
{
    seen s;
    scan(st, &s);
    assert_int_equal(s.n, 3);
    expect_obj(&s, ID_A, "meta-A-0123456789",
                 "the value of object A, long enough to span more than one AES block......");
    expect_obj(&s, ID_B, "", "B");
    expect_obj(&s, ID_C, "meta-C", "value of C");
    seen_free(&s);
}

/* Only A is damaged; B and C still read fine. */
static void expect_only_a_corrupt(ea_store *st, const char *what)
{
    seen s;
    scan(st, &s);
    if (s.n != 3 || status_of(&s, ID_A) != EA_ERR_CORRUPT || status_of(&s, ID_B) != EA_OK ||
        status_of(&s, ID_C) != EA_OK)
        fail_msg("%s: not detected (n=%zu, A=%s)", what, s.n, ea_err_str(status_of(&s, ID_A)));
    seen_free(&s);
}

static void expect_open_corrupt(const fx *f, const char *what)
{
    char err[512] = "";
    ea_store *st = NULL;
    ea_err rc = ea_store_open(f->dir, NULL, &st, err, sizeof err);
    if (rc != EA_ERR_CORRUPT)
        fail_msg("%s: open gave %s (%s)", what, ea_err_str(rc), err);
    assert_null(st);
    assert_non_null(strstr(err, "objects/index"));
}

/* ---- round trips ------------------------------------------------------- */

static void test_roundtrip(void **state)
{
    fx *f = *state;
    ea_store *st = create_open(f);
    uint8_t big_meta[EA_STORE_META_MAX], *big_val = malloc(EA_STORE_VALUE_MAX + 1);
    seen s;

    assert_non_null(big_val);
    for (size_t i = 0; i < sizeof big_meta; i++)
        big_meta[i] = (uint8_t)i;
    for (size_t i = 0; i <= EA_STORE_VALUE_MAX; i++)
        big_val[i] = (uint8_t)(i * 7);

    /* an empty store visits nothing */
    scan(st, &s);
    assert_int_equal(s.n, 0);

    put_str(st, 0x30, "m3", "three");
    put_str(st, 0x10, "m1", "one");
    put(st, 0x20, NULL, 0, NULL, 0); /* empty meta and value */
    put(st, 0x7FFF0206, big_meta, sizeof big_meta, big_val, EA_STORE_VALUE_MAX);

    /* the bounds of the contract are enforced, not cut down */
    ea_store_rec r = { 0x40, big_meta, EA_STORE_META_MAX + 1, big_val, 1 };
    assert_int_equal(ea_store_put(st, &r), EA_ERR_ARG);
    r.meta_len = 1;
    r.value_len = EA_STORE_VALUE_MAX + 1;
    assert_int_equal(ea_store_put(st, &r), EA_ERR_ARG);
    r.value = NULL;
    r.value_len = 3;
    assert_int_equal(ea_store_put(st, &r), EA_ERR_ARG);
    assert_int_equal(ea_store_put(st, NULL), EA_ERR_ARG);

    scan(st, &s);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.id[0], 0x10);
    assert_int_equal(s.id[1], 0x20);
    assert_int_equal(s.id[2], 0x30);
    assert_int_equal(s.id[3], 0x7FFF0206);
    expect_obj(&s, 0x10, "m1", "one");
    expect_obj(&s, 0x20, "", "");
    expect_obj(&s, 0x30, "m3", "three");
    assert_int_equal(s.value_len[3], EA_STORE_VALUE_MAX);
    assert_memory_equal(s.value[3], big_val, EA_STORE_VALUE_MAX);
    assert_int_equal(s.meta_len[3], EA_STORE_META_MAX);
    assert_memory_equal(s.meta[3], big_meta, EA_STORE_META_MAX);
    seen_free(&s);

    assert_int_equal(ea_store_del(st, 0x20), EA_OK);
    assert_int_equal(ea_store_del(st, 0x20), EA_ERR_NOT_FOUND);
    put_str(st, 0x10, "m1b", "one, replaced");

    /* persistence: close and reopen */
    ea_store_close(st);
    st = open_ok(f->dir, NULL);
    scan(st, &s);
    assert_int_equal(s.n, 3);
    expect_obj(&s, 0x10, "m1b", "one, replaced");
    expect_obj(&s, 0x30, "m3", "three");
    assert_int_equal(status_of(&s, 0x20), EA_ERR_NOT_FOUND);
    seen_free(&s);

    /* deleted then re-created: a new object, readable */
    put_str(st, 0x20, "again", "back");
    ea_store_close(st);
    st = open_ok(f->dir, NULL);
    scan(st, &s);
    expect_obj(&s, 0x20, "again", "back");
    seen_free(&s);
    ea_store_close(st);
    free(big_val);
}

static int keep_small(void *ctx, uint32_t id)
{
    (void)ctx;
    return id < 0x100;
}

static void test_del_where(void **state)
{
    fx *f = *state;
    ea_store *st = create_open(f);
    seen s;

    for (uint32_t id = 0xF0; id < 0x110; id += 4)
        put_str(st, id, "m", "v");
    assert_int_equal(ea_store_del_where(st, keep_small, NULL), EA_OK);
    assert_int_equal(ea_store_del_where(st, keep_small, NULL), EA_OK); /* nothing left to do */
    ea_store_close(st);
    st = open_ok(f->dir, NULL);
    scan(st, &s);
    assert_int_equal(s.n, 4);
    for (size_t i = 0; i < s.n; i++)
        assert_true(s.id[i] < 0x100);
    seen_free(&s);
    ea_store_close(st);

    /* and the removed blobs are gone from the disk */
    char objs[700];
    size_t files = 0;
    snprintf(objs, sizeof objs, "%s/objects", f->dir);
    DIR *d = opendir(objs);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strlen(e->d_name) == 25)
            files++;
    closedir(d);
    assert_int_equal(files, 4);
}

typedef struct mut_ctx {
    ea_store *st;
    size_t visits;
} mut_ctx;

/* Deleting the next object and adding a later one from inside the
 * callback: the walk sees the store as it is now. */
static ea_err mutate(void *ctx, ea_err status, const ea_store_rec *rec)
{
    mut_ctx *m = ctx;
    assert_int_equal(status, EA_OK);
    m->visits++;
    if (rec->id == 1) {
        assert_int_equal(ea_store_del(m->st, 2), EA_OK);
        put_str(m->st, 9, "m", "added");
    }
    if (rec->id == 2)
        fail_msg("visited a deleted object");
    return rec->id == 9 ? EA_ERR_DENIED : EA_OK; /* stop code is passed back */
}

static void test_foreach_mutation(void **state)
{
    fx *f = *state;
    ea_store *st = create_open(f);
    mut_ctx m = { st, 0 };

    put_str(st, 1, "m", "1");
    put_str(st, 2, "m", "2");
    put_str(st, 3, "m", "3");
    assert_int_equal(ea_store_foreach(st, mutate, &m), EA_ERR_DENIED);
    assert_int_equal(m.visits, 3); /* 1, 3, 9 */
    ea_store_close(st);
}

static void test_replace_generation(void **state)
{
    fx *f = *state;
    ea_store *st = create_open(f);
    char p1[800], p2[800], p3[800];
    uint64_t g1, g2, g3;

    put_str(st, ID_A, "m", "first");
    blob_path(f, ID_A, p1, sizeof p1, &g1);
    put_str(st, ID_A, "m", "second");
    blob_path(f, ID_A, p2, sizeof p2, &g2); /* exactly one file: the old one is gone */
    assert_true(g2 > g1);
    assert_string_not_equal(p1, p2);
    assert_int_equal(access(p1, F_OK), -1);

    /* generations are store-wide: a re-created object never reuses one */
    assert_int_equal(ea_store_del(st, ID_A), EA_OK);
    put_str(st, ID_A, "m", "third");
    blob_path(f, ID_A, p3, sizeof p3, &g3);
    assert_true(g3 > g2);
    ea_store_close(st);
}

static void test_create(void **state)
{
    fx *f = *state;
    char p[800];
    struct stat sb;

    assert_int_equal(ea_store_create(f->dir, NULL), EA_OK);
    assert_int_equal(stat(f->dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    snprintf(p, sizeof p, "%s/objects", f->dir);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    snprintf(p, sizeof p, "%s/seal.key", f->dir);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(sb.st_size, EA_STORE_SECRET_LEN);
    index_path(f, p, sizeof p);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    assert_int_equal(ea_store_create(f->dir, NULL), EA_ERR_EXISTS);

    /* a store keeps its files 0600 */
    ea_store *st = open_ok(f->dir, NULL);
    put_str(st, 5, "m", "v");
    blob_path(f, 5, p, sizeof p, NULL);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    snprintf(p, sizeof p, "%s/lock", f->dir);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    ea_store_close(st);

    /* a directory that is not a store */
    char other[700];
    snprintf(other, sizeof other, "%s/empty", f->tmp);
    assert_int_equal(mkdir(other, 0700), 0);
    char err[512] = "";
    assert_int_equal(ea_store_open(other, NULL, &st, err, sizeof err), EA_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "not a chip"));
}

/* Leftovers of an interrupted update are removed on open; files that are
 * not ours are left alone. */
static void test_strays(void **state)
{
    fx *f = *state;
    ea_store *st = create_open(f);
    char stray[800], tmp[800], foreign[800], cur[800];
    const uint8_t junk[] = "junk";

    put_str(st, 7, "m", "v");
    blob_path(f, 7, cur, sizeof cur, NULL);
    ea_store_close(st);
    snprintf(stray, sizeof stray, "%s/objects/00000007.00000000000000ff", f->dir);
    snprintf(tmp, sizeof tmp, "%s/objects/index.tmp", f->dir);
    snprintf(foreign, sizeof foreign, "%s/objects/README", f->dir);
    file_put(stray, junk, sizeof junk);
    file_put(tmp, junk, sizeof junk);
    file_put(foreign, junk, sizeof junk);

    st = open_ok(f->dir, NULL);
    assert_int_equal(access(stray, F_OK), -1);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(access(foreign, F_OK), 0);
    assert_int_equal(access(cur, F_OK), 0);
    /* the next put never reuses the stray's generation */
    put_str(st, 8, "m", "w");
    uint64_t g;
    blob_path(f, 8, cur, sizeof cur, &g);
    assert_true(g > 0xff);
    ea_store_close(st);
}

/* ---- tampering --------------------------------------------------------- */

static void test_tamper_blob_bytes(void **state)
{
    fx *f = *state;
    ea_store *st = create_open(f);
    char p[800], what[64];
    size_t len;

    put_abc(st);
    blob_path(f, ID_A, p, sizeof p, NULL);
    uint8_t *orig = file_get(p, &len);
    uint8_t *mod = malloc(len);
    assert_non_null(mod);
    for (size_t i = 0; i < len; i++) {
        /* every byte inverted, then one bit of it */
        const uint8_t masks[2] = { 0xFF, (uint8_t)(1u << (i % 8)) };
        for (int m = 0; m < 2; m++) {
            memcpy(mod, orig, len);
            mod[i] ^= masks[m];
            file_put(p, mod, len);
            snprintf(what, sizeof what, "blob byte %zu ^ %02x", i, masks[m]);
            expect_only_a_corrupt(st, what);
        }
    }
    file_put(p, orig, len);
    expect_abc_intact(st);
    free(mod);
    free(orig);
    ea_store_close(st);
}

static void test_tamper_index_bytes(void **state)
{
    fx *f = *state;
    ea_store *st = create_open(f);
    char p[800], what[64];
    size_t len;

    put_abc(st);
    ea_store_close(st);
    index_path(f, p, sizeof p);
    uint8_t *orig = file_get(p, &len);
    uint8_t *mod = malloc(len);
    assert_non_null(mod);
    for (size_t i = 0; i < len; i++) {
        memcpy(mod, orig, len);
        mod[i] ^= 0xFF;
        file_put(p, mod, len);
        snprintf(what, sizeof what, "index byte %zu", i);
        expect_open_corrupt(f, what);
    }
    /* a failed open touched nothing: every blob is still there */
    file_put(p, orig, len);
    st = open_ok(f->dir, NULL);
    expect_abc_intact(st);
    ea_store_close(st);
    free(mod);
    free(orig);
}

static void test_truncate_blob(void **state)
{
    fx *f = *state;
    ea_store *st = create_open(f);
    char p[800], what[64];
    size_t len;

    put_abc(st);
    blob_path(f, ID_A, p, sizeof p, NULL);
    uint8_t *orig = file_get(p, &len);
    for (size_t n = 0; n < len; n++) {
        file_put(p, orig, n);
        snprintf(what, sizeof what, "blob cut to %zu of %zu", n, len);
        expect_only_a_corrupt(st, what);
    }
    /* one byte too many is as wrong as one too few */
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, orig, len);
    longer[len] = 0;
    file_put(p, longer, len + 1);
    expect_only_a_corrupt(st, "blob with a trailing byte");
    /* missing altogether */
    assert_int_equal(unlink(p), 0);
    expect_only_a_corrupt(st, "blob missing");
    file_put(p, orig, len);
    expect_abc_intact(st);
    free(longer);
    free(orig);
    ea_store_close(st);
}

static void test_truncate_index(void **state)
{
    fx *f = *state;
    ea_store *st = create_open(f);
    char p[800], what[64];
    size_t len;

    put_abc(st);
    ea_store_close(st);
    index_path(f, p, sizeof p);
    uint8_t *orig = file_get(p, &len);
    for (size_t n = 0; n < len; n++) {
        file_put(p, orig, n);
        snprintf(what, sizeof what, "index cut to %zu of %zu", n, len);
        expect_open_corrupt(f, what);
    }
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, orig, len);
    longer[len] = 0;
    file_put(p, longer, len + 1);
    expect_open_corrupt(f, "index with a trailing byte");
    assert_int_equal(unlink(p), 0);
    expect_open_corrupt(f, "index missing");
    file_put(p, orig, len);
    st = open_ok(f->dir, NULL);
    expect_abc_intact(st);
    ea_store_close(st);
    free(longer);
    free(orig);
}

static void test_swap_blobs(void **state)
{
    fx *f = *state;
    ea_store *st = create_open(f);
    char pa[800], pc[800];
    size_t la, lc;
    seen s;

    put_abc(st);
    blob_path(f, ID_A, pa, sizeof pa, NULL);
    blob_path(f, ID_C, pc, sizeof pc, NULL);
    uint8_t *a = file_get(pa, &la), *c = file_get(pc, &lc);
    file_put(pa, c, lc);
    file_put(pc, a, la);
    scan(st, &s);
    assert_int_equal(status_of(&s, ID_A), EA_ERR_CORRUPT);
    assert_int_equal(status_of(&s, ID_C), EA_ERR_CORRUPT);
    assert_int_equal(status_of(&s, ID_B), EA_OK);
    seen_free(&s);

    /* a copy of C under A's name (C intact) is just as wrong */
    file_put(pc, c, lc);
    scan(st, &s);
    assert_int_equal(status_of(&s, ID_A), EA_ERR_CORRUPT);
    assert_int_equal(status_of(&s, ID_C), EA_OK);
    seen_free(&s);

    /* also after a reopen (the index, not the open handle, decides) */
    ea_store_close(st);
    st = open_ok(f->dir, NULL);
    scan(st, &s);
    assert_int_equal(status_of(&s, ID_A), EA_ERR_CORRUPT);
    seen_free(&s);
    file_put(pa, a, la);
    expect_abc_intact(st);
    ea_store_close(st);
    free(a);
    free(c);
}

static void test_rollback_blob(void **state)
{
    fx *f = *state;
    ea_store *st = create_open(f);
    char p_old[800], p_new[800];
    size_t lo, ln;
    seen s;

    put_abc(st);
    put_str(st, ID_A, "meta-A", "old value");
    blob_path(f, ID_A, p_old, sizeof p_old, NULL);
    uint8_t *old = file_get(p_old, &lo); /* kept aside */
    put_str(st, ID_B, "", "B2");
    put_str(st, ID_A, "meta-A", "new value");
    blob_path(f, ID_A, p_new, sizeof p_new, NULL);
    uint8_t *cur = file_get(p_new, &ln);

    /* the old blob renamed into place under the current generation's name */
    file_put(p_new, old, lo);
    scan(st, &s);
    assert_int_equal(status_of(&s, ID_A), EA_ERR_CORRUPT);
    assert_int_equal(status_of(&s, ID_B), EA_OK);
    seen_free(&s);
    ea_store_close(st);
    st = open_ok(f->dir, NULL);
    scan(st, &s);
    assert_int_equal(status_of(&s, ID_A), EA_ERR_CORRUPT);
    seen_free(&s);

    /* put back under its own old name, current blob removed: missing, not old */
    assert_int_equal(unlink(p_new), 0);
    file_put(p_old, old, lo);
    scan(st, &s);
    assert_int_equal(status_of(&s, ID_A), EA_ERR_CORRUPT);
    seen_free(&s);

    /* both present: the old one is a stray, removed on open, and A is new */
    file_put(p_new, cur, ln);
    ea_store_close(st);
    st = open_ok(f->dir, NULL);
    assert_int_equal(access(p_old, F_OK), -1);
    scan(st, &s);
    expect_obj(&s, ID_A, "meta-A", "new value");
    seen_free(&s);
    ea_store_close(st);
    free(old);
    free(cur);
}

/* ---- check ------------------------------------------------------------- */

typedef struct lines {
    size_t n, notes;
    char text[8][512];
} lines;

static void on_line(void *ctx, const char *line)
{
    lines *l = ctx;
    if (strncmp(line, "note:", 5) == 0) {
        l->notes++;
        return;
    }
    assert_true(l->n < 8);
    snprintf(l->text[l->n++], sizeof l->text[0], "%s", line);
}

static void test_check(void **state)
{
    fx *f = *state;
    ea_store *st = create_open(f);
    char pa[800], pb[800], stray[800], expect[200];
    uint64_t ga, gb;
    lines l = { 0 };

    put_abc(st);
    ea_store_close(st);
    assert_int_equal(ea_store_check(f->dir, NULL, on_line, &l), EA_OK);
    assert_int_equal(l.n, 0);

    blob_path(f, ID_A, pa, sizeof pa, &ga);
    blob_path(f, ID_B, pb, sizeof pb, &gb);
    size_t len;
    uint8_t *a = file_get(pa, &len);
    a[len - 1] ^= 1; /* the tag */
    file_put(pa, a, len);
    assert_int_equal(unlink(pb), 0);
    snprintf(stray, sizeof stray, "%s/objects/00000001.0000000000000999", f->dir);
    file_put(stray, a, len);

    memset(&l, 0, sizeof l);
    assert_int_equal(ea_store_check(f->dir, NULL, on_line, &l), EA_ERR_CORRUPT);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.notes, 1);
    snprintf(expect, sizeof expect,
             "object 0x00000010: blob is missing (objects/00000010.%016" PRIx64 ")", gb);
    assert_string_equal(l.text[0], expect);
    snprintf(expect, sizeof expect,
             "object 0xF0000100: blob fails authentication (objects/f0000100.%016" PRIx64 ")", ga);
    assert_string_equal(l.text[1], expect);
    /* check is read-only: the stray is still there */
    assert_int_equal(access(stray, F_OK), 0);

    /* a damaged index is one line and CORRUPT */
    char pi[800];
    size_t il;
    index_path(f, pi, sizeof pi);
    uint8_t *idx = file_get(pi, &il);
    idx[il / 2] ^= 0x40;
    file_put(pi, idx, il);
    memset(&l, 0, sizeof l);
    assert_int_equal(ea_store_check(f->dir, NULL, on_line, &l), EA_ERR_CORRUPT);
    assert_int_equal(l.n, 1);
    assert_non_null(strstr(l.text[0], "objects/index"));
    free(idx);
    free(a);
}

/* ---- lock -------------------------------------------------------------- */

static void test_lock_in_process(void **state)
{
    fx *f = *state;
    ea_store_opts o = { NULL, "edgeauth-se serve" };
    char err[512] = "", want[64];
    ea_store *st, *st2 = NULL;

    assert_int_equal(ea_store_create(f->dir, NULL), EA_OK);
    st = open_ok(f->dir, &o);
    assert_int_equal(ea_store_open(f->dir, NULL, &st2, err, sizeof err), EA_ERR_LOCKED);
    assert_null(st2);
    snprintf(want, sizeof want, "pid %ld (edgeauth-se serve)", (long)getpid());
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, f->dir));
    assert_int_equal(ea_store_check(f->dir, NULL, NULL, NULL), EA_ERR_LOCKED);
    ea_store_close(st);

    /* released on close */
    st = open_ok(f->dir, NULL);
    ea_store_close(st);
}

static void test_lock_other_process(void **state)
{
    fx *f = *state;
    int ready[2], quit[2];
    char err[512] = "", want[64], c;
    ea_store *st = NULL;
    pid_t pid;
    int wst;

    assert_int_equal(ea_store_create(f->dir, NULL), EA_OK);
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(quit), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ea_store_opts o = { NULL, "lock-holder test" };
        ea_store *cst = NULL;
        close(ready[0]);
        close(quit[1]);
        if (ea_store_open(f->dir, &o, &cst, NULL, 0) != EA_OK)
            _exit(2);
        (void)!write(ready[1], "R", 1);
        (void)!read(quit[0], &c, 1);
        ea_store_close(cst);
        _exit(0);
    }
    close(ready[1]);
    close(quit[0]);
    assert_int_equal(read(ready[0], &c, 1), 1);

    assert_int_equal(ea_store_open(f->dir, NULL, &st, err, sizeof err), EA_ERR_LOCKED);
    snprintf(want, sizeof want, "is in use by pid %ld (lock-holder test)", (long)pid);
    if (!strstr(err, want))
        fail_msg("lock message: %s", err);

    assert_int_equal(write(quit[1], "Q", 1), 1);
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    close(ready[0]);
    close(quit[1]);
    st = open_ok(f->dir, NULL);
    ea_store_close(st);
}

/* ---- sealing secret ---------------------------------------------------- */

static const char *const K1 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
static const char *const K2 = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

static void test_env_secret(void **state)
{
    fx *f = *state;
    char err[512] = "", p[800];
    ea_store *st = NULL;
    seen s;

    /* created under an environment secret: no key file is written */
    setenv(ENV_KEY, K1, 1);
    assert_int_equal(ea_store_create(f->dir, NULL), EA_OK);
    snprintf(p, sizeof p, "%s/seal.key", f->dir);
    assert_int_equal(access(p, F_OK), -1);
    st = open_ok(f->dir, NULL);
    put_str(st, 1, "m", "v");
    ea_store_close(st);

    /* the wrong secret fails authentication, and says so */
    setenv(ENV_KEY, K2, 1);
    assert_int_equal(ea_store_open(f->dir, NULL, &st, err, sizeof err), EA_ERR_CORRUPT);
    assert_non_null(strstr(err, "different sealing secret"));
    assert_non_null(strstr(err, ENV_KEY));
    assert_null(strstr(err, K2)); /* never echoed */

    /* malformed */
    setenv(ENV_KEY, "0011", 1);
    assert_int_equal(ea_store_open(f->dir, NULL, &st, err, sizeof err), EA_ERR_MALFORMED);
    assert_non_null(strstr(err, ENV_KEY));
    setenv(ENV_KEY, "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 1);
    assert_int_equal(ea_store_open(f->dir, NULL, &st, err, sizeof err), EA_ERR_MALFORMED);

    /* no secret at all */
    unsetenv(ENV_KEY);
    assert_int_equal(ea_store_open(f->dir, NULL, &st, err, sizeof err), EA_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "seal.key"));

    /* the environment wins over a key path, even one that does not exist */
    setenv(ENV_KEY, K1, 1);
    ea_store_opts o = { "/nonexistent/seal.key", NULL };
    st = open_ok(f->dir, &o);
    scan(st, &s);
    expect_obj(&s, 1, "m", "v");
    seen_free(&s);
    ea_store_close(st);
}

static void test_env_overrides_key_file(void **state)
{
    fx *f = *state;
    char p[800], hex[2 * EA_STORE_SECRET_LEN + 1], err[512] = "";
    size_t len;
    ea_store *st;

    st = create_open(f);
    put_str(st, 1, "m", "v");
    ea_store_close(st);
    snprintf(p, sizeof p, "%s/seal.key", f->dir);
    uint8_t *key = file_get(p, &len);
    assert_int_equal(len, EA_STORE_SECRET_LEN);
    ea_hex_encode(key, len, hex);

    /* the file replaced by a wrong one; the environment supplies the right one */
    uint8_t wrong[EA_STORE_SECRET_LEN];
    memcpy(wrong, key, sizeof wrong);
    wrong[0] ^= 1;
    file_put(p, wrong, sizeof wrong);
    assert_int_equal(ea_store_open(f->dir, NULL, &st, err, sizeof err), EA_ERR_CORRUPT);
    assert_non_null(strstr(err, "different sealing secret"));
    assert_non_null(strstr(err, p));
    setenv(ENV_KEY, hex, 1);
    st = open_ok(f->dir, NULL);
    ea_store_close(st);
    unsetenv(ENV_KEY);

    /* a key file in hex is accepted too */
    char line[2 * EA_STORE_SECRET_LEN + 2];
    snprintf(line, sizeof line, "%s\n", hex);
    file_put(p, (const uint8_t *)line, strlen(line));
    st = open_ok(f->dir, NULL);
    ea_store_close(st);
    /* and a garbage one is refused */
    file_put(p, (const uint8_t *)"short", 5);
    assert_int_equal(ea_store_open(f->dir, NULL, &st, err, sizeof err), EA_ERR_MALFORMED);
    ea_cleanse(key, len);
    free(key);
}

static ea_err count_corrupt(void *ctx, ea_err status, const ea_store_rec *rec)
{
    (void)rec;
    if (status == EA_ERR_CORRUPT)
        (*(int *)ctx)++;
    return EA_OK;
}

static void test_key_path(void **state)
{
    fx *f = *state;
    char kp[700], p[800], err[512] = "";
    ea_store_opts o = { kp, "test" };
    ea_store *st;
    struct stat sb;

    snprintf(kp, sizeof kp, "%s/elsewhere.key", f->tmp);
    assert_int_equal(ea_store_create(f->dir, &o), EA_OK);
    assert_int_equal(stat(kp, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    snprintf(p, sizeof p, "%s/seal.key", f->dir);
    assert_int_equal(access(p, F_OK), -1);
    st = open_ok(f->dir, &o);
    put_str(st, 1, "m", "v");
    ea_store_close(st);
    assert_int_equal(ea_store_open(f->dir, NULL, &st, err, sizeof err), EA_ERR_NOT_FOUND);

    /* An existing key file is shared, never overwritten: a second chip is
     * sealed under the same secret, and both open. */
    char dir2[700], blob1[1200], blob2[1200];
    uint8_t *before = NULL, *after = NULL;
    size_t bl = 0, al = 0;
    assert_int_equal(ea_file_read(kp, 256, &before, &bl), EA_OK);
    snprintf(dir2, sizeof dir2, "%s/chip2", f->tmp);
    assert_int_equal(ea_store_create(dir2, &o), EA_OK);
    assert_int_equal(ea_file_read(kp, 256, &after, &al), EA_OK);
    assert_int_equal(bl, al);
    assert_memory_equal(before, after, bl);
    free(before);
    free(after);
    st = open_ok(dir2, &o);
    put_str(st, 1, "m", "other chip");
    ea_store_close(st);
    st = open_ok(f->dir, &o);
    ea_store_close(st);

    /* Same secret, same id, same generation: chip 2's blob copied over chip
     * 1's must still fail, because each chip's keys are salted by its id. */
    DIR *d = NULL;
    struct dirent *de;
    char name1[300] = "", name2[300] = "";
    snprintf(p, sizeof p, "%s/objects", f->dir);
    d = opendir(p);
    while (d && (de = readdir(d)) != NULL)
        if (!strncmp(de->d_name, "00000001.", 9))
            snprintf(name1, sizeof name1, "%s", de->d_name);
    closedir(d);
    snprintf(p, sizeof p, "%s/objects", dir2);
    d = opendir(p);
    while (d && (de = readdir(d)) != NULL)
        if (!strncmp(de->d_name, "00000001.", 9))
            snprintf(name2, sizeof name2, "%s", de->d_name);
    closedir(d);
    assert_true(name1[0] && name2[0]);
    snprintf(blob1, sizeof blob1, "%s/objects/%s", f->dir, name1);
    snprintf(blob2, sizeof blob2, "%s/objects/%s", dir2, name2);
    uint8_t *b2 = NULL;
    size_t b2l = 0;
    assert_int_equal(ea_file_read(blob2, 1 << 20, &b2, &b2l), EA_OK);
    /* Chip 2's bytes under the name chip 1's index references. */
    assert_int_equal(ea_file_write_atomic(blob1, b2, b2l, 0600), EA_OK);
    free(b2);
    st = open_ok(f->dir, &o);
    int corrupt = 0;
    assert_int_equal(ea_store_foreach(st, count_corrupt, &corrupt), EA_OK);
    assert_int_equal(corrupt, 1);
    ea_store_close(st);
}

/* ---- crash safety ------------------------------------------------------ */

#define CRASH_IDS 6u
#define CRASH_ITERS 200u /* EDGEAUTH_STORE_CRASH_ITERS=N runs a longer soak */
#define CRASH_OPS_MAX 4000u
#define CRASH_VALUE_MAX 700u

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Op k of iteration it, the same in the child that runs it and in the
 * parent that checks it. */
typedef struct op {
    int del;
    uint32_t id;
    size_t len;
} op;

static op op_of(uint32_t it, uint32_t k)
{
    uint64_t r = mix(((uint64_t)it << 32) | k);
    op o;
    o.del = (r & 15) == 0; /* a few deletes */
    o.id = 0x100u + (uint32_t)((r >> 8) % CRASH_IDS);
    o.len = (size_t)((r >> 24) % CRASH_VALUE_MAX);
    return o;
}

static void value_of(uint32_t it, uint32_t k, uint8_t *out, size_t len)
{
    uint64_t s = mix(((uint64_t)k << 32) | it | 0x8000000000000000ull);
    for (size_t i = 0; i < len; i++) {
        if (i % 8 == 0)
            s = mix(s);
        out[i] = (uint8_t)(s >> (8 * (i % 8)));
    }
}

/* What each id holds: present, and which (iteration, op) wrote it. */
typedef struct model {
    int present[CRASH_IDS];
    uint32_t it[CRASH_IDS], k[CRASH_IDS];
} model;

static void model_apply(model *m, uint32_t it, uint32_t k)
{
    op o = op_of(it, k);
    uint32_t slot = o.id - 0x100u;
    if (o.del) {
        m->present[slot] = 0;
    } else {
        m->present[slot] = 1;
        m->it[slot] = it;
        m->k[slot] = k;
    }
}

static void crash_child(const char *dir, uint32_t it, int wfd)
{
    ea_store_opts opts = { NULL, "crash child" };
    ea_store *st = NULL;
    uint8_t meta[8], val[CRASH_VALUE_MAX];
    uint32_t ready = 0;

    if (ea_store_open(dir, &opts, &st, NULL, 0) != EA_OK)
        _exit(3);
    if (write(wfd, &ready, sizeof ready) != (ssize_t)sizeof ready)
        _exit(4);
    for (uint32_t k = 1; k <= CRASH_OPS_MAX; k++) {
        op o = op_of(it, k);
        ea_err rc;
        if (o.del) {
            rc = ea_store_del(st, o.id);
            if (rc == EA_ERR_NOT_FOUND)
                rc = EA_OK;
        } else {
            ea_put_be32(meta, it);
            ea_put_be32(meta + 4, k);
            value_of(it, k, val, o.len);
            ea_store_rec r = { o.id, meta, sizeof meta, val, o.len };
            rc = ea_store_put(st, &r);
        }
        if (rc != EA_OK)
            _exit(5);
        /* acknowledged: this op is durable now */
        if (write(wfd, &k, sizeof k) != (ssize_t)sizeof k)
            _exit(6);
    }
    ea_store_close(st);
    _exit(0);
}

typedef struct crash_seen {
    int present[CRASH_IDS];
    uint32_t it[CRASH_IDS], k[CRASH_IDS];
    int bad;
    char why[200];
} crash_seen;

static ea_err crash_collect(void *ctx, ea_err status, const ea_store_rec *rec)
{
    crash_seen *cs = ctx;
    uint8_t want[CRASH_VALUE_MAX];
    uint32_t slot = rec->id - 0x100u, it, k;

    if (slot >= CRASH_IDS || status != EA_OK || rec->meta_len != 8) {
        cs->bad = 1;
        snprintf(cs->why, sizeof cs->why, "object 0x%08" PRIX32 ": %s", rec->id,
                 ea_err_str(status));
        return EA_OK;
    }
    it = ea_get_be32(rec->meta);
    k = ea_get_be32(rec->meta + 4);
    op o = op_of(it, k);
    value_of(it, k, want, o.len);
    /* the value must be exactly the one that op wrote: never torn or mixed */
    if (o.del || o.id != rec->id || rec->value_len != o.len ||
        memcmp(rec->value, want, o.len) != 0) {
        cs->bad = 1;
        snprintf(cs->why, sizeof cs->why, "object 0x%08" PRIX32 ": value is not op %u/%u",
                 rec->id, it, k);
    }
    cs->present[slot] = 1;
    cs->it[slot] = it;
    cs->k[slot] = k;
    return EA_OK;
}

/* One ack from the child; 0 at end of file (the child is gone). */
static int read_ack(int fd, uint32_t *k)
{
    ssize_t r;
    do
        r = read(fd, k, sizeof *k);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return 0;
    assert_int_equal(r, sizeof *k); /* 4-byte pipe writes are atomic */
    return 1;
}

static int model_eq(const model *m, const crash_seen *cs)
{
    for (uint32_t i = 0; i < CRASH_IDS; i++) {
        if (m->present[i] != cs->present[i])
            return 0;
        if (m->present[i] && (m->it[i] != cs->it[i] || m->k[i] != cs->k[i]))
            return 0;
    }
    return 1;
}

static void test_crash_safety(void **state)
{
    fx *f = *state;
    model m = { { 0 }, { 0 }, { 0 } };
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    uint64_t rng = seed;
    unsigned total_acks = 0, applied_inflight = 0, forced = 0, iters = CRASH_ITERS;
    const char *soak = getenv("EDGEAUTH_STORE_CRASH_ITERS");

    if (soak && atoi(soak) > 0)
        iters = (unsigned)atoi(soak);

    assert_int_equal(ea_store_create(f->dir, NULL), EA_OK);
    for (uint32_t it = 1; it <= iters; it++) {
        int p[2], wst;
        uint32_t k, last = 0;
        pid_t pid;

        assert_int_equal(pipe(p), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            crash_child(f->dir, it, p[1]);
        }
        close(p[1]);
        rng = mix(rng);
        /* Mostly kill while puts run: wait until the child has the store
         * open and, some of the time, until it acked a few ops, so the
         * store keeps changing however slow the disk is. Every fourth time
         * count from the fork instead, so some kills land inside open (and
         * its stray removal). */
        if (it % 4 != 0) {
            unsigned want = (unsigned)(rng >> 40) % 4;
            if (!read_ack(p[0], &k) || k != 0) {
                waitpid(pid, &wst, 0);
                fail_msg("iteration %u: child did not open the store (status 0x%x)", it, wst);
            }
            while (last < want && read_ack(p[0], &k)) {
                assert_int_equal(k, last + 1);
                last = k;
            }
            forced += last;
        }
        struct timespec ts = { 0, (long)(rng % 20000u) * 1000L };
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        assert_int_equal(waitpid(pid, &wst, 0), pid);
        if (!(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL) &&
            !(WIFEXITED(wst) && WEXITSTATUS(wst) == 0))
            fail_msg("iteration %u: child failed (status 0x%x, seed %u)", it, wst, seed);
        while (read_ack(p[0], &k)) {
            if (k == 0)
                continue; /* the ready marker */
            assert_int_equal(k, last + 1);
            last = k;
        }
        close(p[0]);
        total_acks += last;

        /* Every acked op is in; the one after it may or may not be. */
        model acked = m, inflight;
        for (k = 1; k <= last; k++)
            model_apply(&acked, it, k);
        inflight = acked;
        model_apply(&inflight, it, last + 1);

        crash_seen cs;
        memset(&cs, 0, sizeof cs);
        ea_store *st = open_ok(f->dir, NULL);
        assert_int_equal(ea_store_foreach(st, crash_collect, &cs), EA_OK);
        ea_store_close(st);
        if (cs.bad)
            fail_msg("iteration %u (seed %u, %u acks): %s", it, seed, last, cs.why);
        if (model_eq(&acked, &cs)) {
            m = acked;
        } else if (model_eq(&inflight, &cs)) {
            m = inflight;
            applied_inflight++;
        } else {
            fail_msg("iteration %u (seed %u, %u acks): store is neither the acked state nor "
                     "that plus the op in flight",
                     it, seed, last);
        }
    }
    print_message("crash safety: %u kills, %u acknowledged ops, %u in-flight ops found applied\n",
                  iters, total_acks, applied_inflight);
    assert_true(forced > 0);
    assert_true(total_acks >= forced);
}

/* ---- cost of a put ----------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_put_cost(void **state)
{
    fx *f = *state;
    ea_store *st = create_open(f);
    enum { N = 200 };
    double us[N];
    uint8_t val[100], meta[16] = { 0 };

    memset(val, 0x5A, sizeof val);
    for (int i = 0; i < 10; i++)
        put(st, 0x1000u + (uint32_t)i, meta, sizeof meta, val, sizeof val);
    for (int i = 0; i < N; i++) {
        struct timespec a, b;
        val[0] = (uint8_t)i;
        clock_gettime(CLOCK_MONOTONIC, &a);
        put(st, 0x1000u + (uint32_t)(i % 10), meta, sizeof meta, val, sizeof val);
        clock_gettime(CLOCK_MONOTONIC, &b);
        us[i] = (double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3;
    }
    qsort(us, N, sizeof us[0], cmp_double);
    print_message("ea_store_put, 100-byte value, 10 live objects: median %.0f us, p90 %.0f us\n",
                  us[N / 2], us[N * 9 / 10]);
    ea_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_del_where, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_foreach_mutation, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_replace_generation, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_create, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_strays, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tamper_blob_bytes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tamper_index_bytes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_truncate_blob, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_truncate_index, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_swap_blobs, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rollback_blob, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_check, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_lock_in_process, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_lock_other_process, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_env_secret, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_env_overrides_key_file, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_key_path, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_crash_safety, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_put_cost, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
